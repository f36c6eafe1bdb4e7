//! The counting sink: OTLP/gRPC (or, with `--mode loki|elasticsearch`, the logs
//! exporters' HTTP APIs, see [`super::http_sink`]) in, items/s and end-to-end latency out.

use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::sync::Mutex;

#[derive(Default)]
pub struct Counts {
    items: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

#[derive(Clone)]
struct Svc(Arc<Counts>);

impl Svc {
    fn observe(&self, n: usize, first_ts: Option<u64>) {
        self.0.observe(n, first_ts)
    }
}

impl Counts {
    /// Counts `n` items; `first_ts` (ns, the generator's send time) gives a latency sample.
    pub fn observe(&self, n: usize, first_ts: Option<u64>) {
        self.items.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(ts) = first_ts {
            let now = now_nanos();
            if ts > 0 && ts <= now {
                self.latencies_us
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((now - ts) / 1000);
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let r = r.into_inner();
        let n = r
            .resource_spans
            .iter()
            .flat_map(|x| &x.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let ts = r
            .resource_spans
            .iter()
            .flat_map(|x| &x.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.start_time_unix_nano)
            .max();
        self.observe(n, ts);
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        r: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let r = r.into_inner();
        let n = r
            .resource_logs
            .iter()
            .flat_map(|x| &x.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        let ts = r
            .resource_logs
            .iter()
            .flat_map(|x| &x.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|l| l.time_unix_nano)
            .max();
        self.observe(n, ts);
        Ok(tonic::Response::new(Default::default()))
    }
}

async fn otlp_server(svc: Svc, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(svc.clone())
                .max_decoding_message_size(256 << 20)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .accept_compressed(tonic::codec::CompressionEncoding::Zstd),
        )
        .add_service(
            LogsServiceServer::new(svc)
                .max_decoding_message_size(256 << 20)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .accept_compressed(tonic::codec::CompressionEncoding::Zstd),
        )
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .context("sink server")
}

pub async fn run(
    listen: String,
    report: Duration,
    duration: Duration,
    mode: SinkMode,
) -> anyhow::Result<()> {
    let counts = Arc::new(Counts::default());
    let svc = Svc(counts.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("sink ({mode:?}) listening on {}", listener.local_addr()?);
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> =
        if mode == SinkMode::Otlp {
            Box::pin(otlp_server(svc, listener))
        } else {
            let app = super::http_sink::router(mode, counts.clone());
            Box::pin(async move { axum::serve(listener, app).await.context("sink server") })
        };
    let started = Instant::now();
    let reporter = async {
        let mut last = 0;
        loop {
            tokio::time::sleep(report).await;
            let n = counts.items.load(Ordering::Relaxed);
            let mut l = std::mem::take(
                &mut *counts
                    .latencies_us
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            l.sort_unstable();
            let ms = |p: f64| {
                l.get(((l.len().max(1) - 1) as f64 * p) as usize)
                    .copied()
                    .unwrap_or(0) as f64
                    / 1000.0
            };
            println!(
                "sink: {:.0} items/s (total {n}); e2e latency ms p50 {:.2} p99 {:.2}",
                (n - last) as f64 / report.as_secs_f64(),
                ms(0.5),
                ms(0.99)
            );
            last = n;
            if !duration.is_zero() && started.elapsed() >= duration {
                return;
            }
        }
    };
    tokio::select! {
        r = server => r?,
        _ = reporter => {}
    }
    Ok(())
}
