//! Running weft in-process (from YAML, receivers on port 0) and as a child process.

use std::net::SocketAddr;

use weft::admin::Telemetry;
use weft::config::{self, Source};
use weft::pipeline::Service;

pub fn init() {
    weft::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn valid(yaml: &str) -> config::ValidConfig {
    config::load_and_validate(
        &[Source {
            name: "test.yaml".into(),
            text: yaml.to_string(),
        }],
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("config invalid:\n{e}\n---\n{yaml}"))
}

pub struct Running {
    pub service: Service,
    pub telemetry: Telemetry,
}

impl Running {
    pub fn addr(&self, key: &str) -> SocketAddr {
        *self.service.bound.get(key).unwrap_or_else(|| {
            panic!(
                "no bound address {key}; have {:?}",
                self.service.bound.keys()
            )
        })
    }
    pub fn grpc(&self) -> String {
        format!("http://{}", self.addr("otlp/grpc"))
    }
    pub fn http(&self) -> String {
        format!("http://{}", self.addr("otlp/http"))
    }
    pub fn metric(&self, name: &str, component: &str) -> f64 {
        self.telemetry
            .metrics
            .value(name, &[("component", component)])
            .unwrap_or(0.0)
    }
}

pub async fn start(yaml: &str) -> Running {
    init();
    let cfg = valid(yaml);
    let telemetry = Telemetry::new();
    let service = Service::start(&cfg, telemetry.clone())
        .await
        .expect("weft starts");
    Running { service, telemetry }
}

/// A config: OTLP receiver on port 0 (both protocols), the given processors and exporters
/// sections, and pipelines.
pub fn config(processors: &str, exporters: &str, pipelines: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n      http:\n        endpoint: 127.0.0.1:0\nprocessors:\n{processors}\nexporters:\n{exporters}\nservice:\n  shutdown_timeout: 10s\n  pipelines:\n{pipelines}\n"
    )
}

/// Path of the weft binary built for the integration tests.
pub fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_weft"))
}
