//! The `weft` command line: run a pipeline, validate a config, print the resolved config.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weft::config::{self, Source};

/// mimalloc: fewer cycles per allocation than glibc's malloc on the many small, short-lived
/// allocations of decoding (README, Performance). Off with `--no-default-features`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "An OpenTelemetry-compatible telemetry pipeline"
)]
struct Cli {
    /// Config file(s); several merge in order, as in the OpenTelemetry Collector. Without
    /// any, the embedded default config runs.
    #[arg(long = "config", short = 'c', global = true)]
    config: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines (the default).
    Run,
    /// Check the config; print every error with file, line and key path, exit 1 on errors.
    Validate,
    /// Print the resolved config (merged, env substituted) with secrets redacted.
    PrintConfig,
}

fn sources(files: &[String]) -> Result<Vec<Source>, config::ConfigErrors> {
    if files.is_empty() {
        return Ok(vec![Source::embedded_default()]);
    }
    files.iter().map(|f| Source::file(f)).collect()
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    // Before the runtime and the pipelines allocate (see `weft::thp`).
    let thp = weft::thp::small_pages();
    weft::install_crypto_provider();
    let cli = Cli::parse();
    let loaded =
        sources(&cli.config).and_then(|s| config::load_and_validate(&s, &config::process_env));
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => match loaded {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                println!("config is valid: {} pipeline(s)", c.pipelines.len());
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("error: {e}");
                }
                eprintln!("{} error(s)", errs.0.len());
                ExitCode::from(1)
            }
        },
        Command::PrintConfig => match loaded {
            Ok(c) => {
                print!("{}", config::to_yaml(&config::redact(&c.resolved)));
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("error: {e}");
                }
                ExitCode::from(1)
            }
        },
        Command::Run => {
            let cfg = match loaded {
                Ok(c) => c,
                Err(errs) => {
                    init_logging(None);
                    for e in &errs.0 {
                        eprintln!("error: {e}");
                    }
                    return ExitCode::from(1);
                }
            };
            init_logging(cfg.log_level.as_deref());
            tracing::debug!(?thp, "transparent huge pages");
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(cfg: config::ValidConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let telemetry = weft::admin::Telemetry::new();
        let service = weft::pipeline::Service::start(&cfg, telemetry)
            .await
            .context("cannot start")?;
        tracing::info!("weft {} started", env!("CARGO_PKG_VERSION"));
        wait_for_signal().await;
        service.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
