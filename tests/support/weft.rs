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
/// A config with one traces pipeline from the OTLP receiver (both protocols on port 0)
/// into an `otlp` exporter at `endpoint` (plain text); `http_extra` (YAML lines indented
/// for `protocols.http`) is appended to the receiver's HTTP block.
pub fn forward_to(endpoint: &str, http_extra: &str) -> String {
    config(
        "",
        &format!("  otlp:\n    endpoint: {endpoint}\n    tls:\n      insecure: true\n"),
        "    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n",
    )
    .replace(
        "        endpoint: 127.0.0.1:0\nprocessors",
        &format!("        endpoint: 127.0.0.1:0\n{http_extra}processors"),
    )
}

pub fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_weft"))
}

/// weft as a child process, with its admin endpoint for readiness and metrics.
pub struct Process {
    pub child: tokio::process::Child,
    pub admin: String,
    pub log: std::path::PathBuf,
}

/// A port for a server that a test starts later (a weft child process, a restarted sink).
///
/// Binding port 0 and releasing it is racy twice over: the kernel may hand the same port to
/// the next `bind(0)` (two "free" ports that are one, which made CI's `faults` test fail with
/// "Address already in use"), and any outgoing connection may take it as its ephemeral source
/// port before the server binds. So ports come from below the kernel's ephemeral range
/// (`ip_local_port_range`, 32768–60999 by default), where neither `bind(0)` nor `connect`
/// picks, each is checked free by binding it, and none is handed out twice in a process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000; // 20000..32000, below the ephemeral range
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Start each test process at a different place so concurrent binaries rarely meet.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(2_654_435_761) >> 4) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

impl Process {
    /// Starts `weft --config <yaml>`; `admin_port` must be the health_check port in it.
    pub async fn start(dir: &std::path::Path, name: &str, yaml: &str, admin_port: u16) -> Process {
        init();
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, yaml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = tokio::process::Command::new(binary())
            .arg("--config")
            .arg(&cfg)
            .env(
                "WEFT_LOG",
                std::env::var("WEFT_PROCESS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let p = Process {
            child,
            admin: format!("http://127.0.0.1:{admin_port}"),
            log,
        };
        p.wait_ready().await;
        p
    }

    pub async fn wait_ready(&self) {
        for _ in 0..400 {
            if let Ok(r) = reqwest::get(format!("{}/health/ready", self.admin)).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("weft not ready; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A metric line's value (exact series text up to the value).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
    }

    pub async fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<i32> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("weft exits in time")
            .unwrap()
            .code()
    }
}

/// POSTs a batch as OTLP/HTTP protobuf to `base` + the signal's path; returns the status.
pub async fn post(base: &str, b: &weft::data::Batch) -> u16 {
    let path = match b.signal() {
        weft::data::Signal::Traces => "/v1/traces",
        weft::data::Signal::Logs => "/v1/logs",
        weft::data::Signal::Metrics => "/v1/metrics",
    };
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-protobuf")
        .body(b.encode_proto())
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Calls `Export` of `signal`'s OTLP gRPC service at `endpoint` with the serialized
/// request `body` and the given request metadata, optionally gzip-compressed; returns the
/// answer's status.
pub async fn grpc_export(
    endpoint: String,
    signal: weft::data::Signal,
    body: Vec<u8>,
    metadata: &[(&'static str, &str)],
    gzip: bool,
) -> Result<(), tonic::Status> {
    use weft::receivers::otlp::codec::RawCodec;
    let ch = tonic::transport::Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(match signal {
        weft::data::Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        weft::data::Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        weft::data::Signal::Metrics => {
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        }
    });
    let mut req = tonic::Request::new(body);
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    grpc.unary(req, path, RawCodec).await.map(|_| ())
}
