//! The counting sink: OTLP/gRPC (or, with `--mode loki|elasticsearch`, the logs
//! exporters' HTTP APIs, see [`super::http_sink`]) in, items/s and end-to-end latency out.

use super::pb::{Field, fields, len};
use super::*;
use bytes::Bytes;
use std::sync::Mutex;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use weft::receivers::otlp::codec::BytesCodec;

#[derive(Default)]
pub struct Counts {
    items: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

#[derive(Clone)]
struct Svc(Arc<Counts>);

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

    /// Counts `n` items with one latency sample per generator timestamp in `stamps` (ns).
    pub fn observe_stamps(&self, n: usize, stamps: &[u64]) {
        self.items.fetch_add(n as u64, Ordering::Relaxed);
        let now = now_nanos();
        let mut l = self.latencies_us.lock().unwrap_or_else(|p| p.into_inner());
        l.extend(
            stamps
                .iter()
                .filter(|&&ts| ts > 0 && ts <= now)
                .map(|ts| (now - ts) / 1000),
        );
    }
}

/// The generator's timestamps of a request: per resource message (one generator request
/// each), the time of its first item, found by walking the protobuf wire format without
/// decoding — the sink must stay much cheaper per item than what it measures, or it becomes
/// the bottleneck of the benchmark (decoding every request made it top out at 180,000–
/// 320,000 spans/s). Returns the item count; `None` for bytes that are not a request.
/// Spans: `ResourceSpans(1).ScopeSpans(2).Span(2).start_time_unix_nano(7)`; logs:
/// `ResourceLogs(1).ScopeLogs(2).LogRecord(2).time_unix_nano(1)`.
pub fn scan_request(signal: Signal, buf: &[u8], stamps: &mut Vec<u64>) -> Option<usize> {
    let time_field = match signal {
        Signal::Traces => 7,
        Signal::Logs => 1,
        Signal::Metrics => return None,
    };
    let mut items = 0;
    for (n, resource) in fields(buf) {
        let resource = resource?;
        if n != 1 {
            continue;
        }
        let mut first = None;
        for (n, scope) in fields(len(resource)?) {
            if n != 2 {
                continue;
            }
            for (n, item) in fields(len(scope?)?) {
                if n != 2 {
                    continue;
                }
                items += 1;
                if first.is_none() {
                    first = fields(len(item?)?)
                        .find(|(n, _)| *n == time_field)
                        .and_then(|(_, v)| match v? {
                            Field::I64(t) => Some(t),
                            _ => None,
                        });
                }
            }
        }
        stamps.extend(first);
    }
    Some(items)
}

/// The sink's OTLP/gRPC services over a pass-through codec (no decoding, see
/// [`scan_request`]); metrics, which the benchmarks do not time, are decoded and counted.
#[derive(Clone)]
struct ExportService<const SIG: u8>(Svc);

impl NamedService for ExportService<1> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl NamedService for ExportService<2> {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}
impl NamedService for ExportService<3> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

struct Unary(Svc, Signal);

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Vec<Bytes>;
    type Future = std::future::Ready<Result<tonic::Response<Vec<Bytes>>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let body = req.into_inner();
        let mut stamps = Vec::new();
        let n = match self.1 {
            Signal::Metrics => Batch::from_proto_bytes(Signal::Metrics, body)
                .ok()
                .map(|b| b.item_count()),
            s => scan_request(s, &body, &mut stamps),
        };
        std::future::ready(match n {
            Some(n) => {
                self.0.0.observe_stamps(n, &stamps);
                Ok(tonic::Response::new(Vec::new()))
            }
            None => Err(tonic::Status::invalid_argument(
                "not an OTLP export request",
            )),
        })
    }
}

impl<const SIG: u8, B> tower::Service<http::Request<B>> for ExportService<SIG>
where
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let signal = Signal::from_tag(SIG).unwrap_or(Signal::Traces);
        let svc = self.0.clone();
        Box::pin(async move {
            // Uncompressed requests are read as weft's receiver reads them (one copy into
            // an exactly sized buffer), so the sink costs the shared core less.
            if signal != Signal::Metrics && !req.headers().contains_key("grpc-encoding") {
                let body = match weft::receivers::otlp::grpc_body::read_message(
                    req.into_body(),
                    256 << 20,
                )
                .await
                {
                    Ok(b) => b,
                    Err(st) => return Ok(st.into_http()),
                };
                let mut stamps = Vec::new();
                return Ok(match scan_request(signal, &body, &mut stamps) {
                    Some(n) => {
                        svc.0.observe_stamps(n, &stamps);
                        weft::receivers::otlp::grpc_body::ok_response()
                    }
                    None => {
                        tonic::Status::invalid_argument("not an OTLP export request").into_http()
                    }
                });
            }
            let mut grpc = tonic::server::Grpc::new(BytesCodec)
                .max_decoding_message_size(256 << 20)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd);
            Ok(grpc.unary(Unary(svc, signal), req).await)
        })
    }
}

async fn otlp_server(
    svc: Svc,
    listener: tokio::net::TcpListener,
    max_frame_size: u32,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .max_frame_size(Some(max_frame_size))
        .add_service(ExportService::<1>(svc.clone()))
        .add_service(ExportService::<2>(svc.clone()))
        .add_service(ExportService::<3>(svc))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .context("sink server")
}

pub async fn run(
    listen: String,
    report: Duration,
    duration: Duration,
    mode: SinkMode,
    max_frame_size: u32,
) -> anyhow::Result<()> {
    let counts = Arc::new(Counts::default());
    let svc = Svc(counts.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("sink ({mode:?}) listening on {}", listener.local_addr()?);
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> =
        if mode == SinkMode::Otlp {
            Box::pin(otlp_server(svc, listener, max_frame_size))
        } else {
            let app = super::http_sink::router(mode, counts.clone());
            Box::pin(async move { axum::serve(listener, app).await.context("sink server") })
        };
    let started = Instant::now();
    // Every latency sample of the run, for the summary printed at the end.
    let mut all: Vec<u64> = Vec::new();
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
            println!(
                "sink: {:.0} items/s (total {n}); e2e latency ms p50 {:.2} p99 {:.2}",
                (n - last) as f64 / report.as_secs_f64(),
                percentile_ms(&l, 0.5),
                percentile_ms(&l, 0.99)
            );
            all.extend_from_slice(&l);
            last = n;
            if !duration.is_zero() && started.elapsed() >= duration {
                return;
            }
        }
    };
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        r = server => r?,
        _ = reporter => {}
        // SIGTERM (the e2e script stops the sink so) or Ctrl-C: print the summary first.
        _ = terminated => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    all.sort_unstable();
    println!(
        "sink summary: {} items, {} latency samples; e2e latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        counts.items.load(Ordering::Relaxed),
        all.len(),
        percentile_ms(&all, 0.5),
        percentile_ms(&all, 0.9),
        percentile_ms(&all, 0.99),
        percentile_ms(&all, 0.999),
        percentile_ms(&all, 1.0)
    );
    Ok(())
}

/// The `p` quantile (0..=1) of sorted microsecond samples, in milliseconds (0 if none).
fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p) as usize)
        .copied()
        .unwrap_or(0) as f64
        / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(signal: Signal, resources: usize, items: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(7);
        let values = Values::new(3, 8, 0, &mut rng);
        let one = |i: usize| {
            let sig = if signal == Signal::Traces {
                Sig::Traces
            } else {
                Sig::Logs
            };
            let mut b = generate(sig, items, 3, &values, 4, &mut rng);
            let ts = 1_000 + i as u64;
            match &mut b {
                Batch::Traces(r) => r[0].scope_spans[0]
                    .spans
                    .iter_mut()
                    .for_each(|s| s.start_time_unix_nano = ts),
                Batch::Logs(r) => r[0].scope_logs[0]
                    .log_records
                    .iter_mut()
                    .for_each(|l| l.time_unix_nano = ts),
                _ => {}
            }
            b.encode_proto()
        };
        (0..resources).flat_map(one).collect()
    }

    #[test]
    fn attribute_values_are_random_or_drawn_from_a_vocabulary_per_key() {
        let mut rng = fastrand::Rng::with_seed(3);
        let fresh = Values::new(2, 12, 0, &mut rng);
        let a: std::collections::HashSet<String> =
            (0..50).map(|_| fresh.get(0, &mut rng)).collect();
        assert_eq!(a.len(), 50);
        assert!(a.iter().all(|v| v.len() == 12));
        let few = Values::new(2, 12, 3, &mut rng);
        let per_key = |k| -> std::collections::HashSet<String> {
            let mut r = fastrand::Rng::with_seed(9);
            (0..200).map(|_| few.get(k, &mut r)).collect()
        };
        let (k0, k1) = (per_key(0), per_key(1));
        assert_eq!((k0.len(), k1.len()), (3, 3));
        assert!(k0.is_disjoint(&k1));
    }

    #[test]
    fn scan_counts_items_and_finds_one_stamp_per_resource() {
        for signal in [Signal::Traces, Signal::Logs] {
            let body = stamped(signal, 3, 7);
            let mut stamps = Vec::new();
            assert_eq!(scan_request(signal, &body, &mut stamps), Some(21));
            assert_eq!(stamps, vec![1_000, 1_001, 1_002]);
        }
    }

    #[test]
    fn scan_rejects_truncated_bytes_instead_of_miscounting() {
        let body = stamped(Signal::Traces, 2, 5);
        let mut stamps = Vec::new();
        assert_eq!(
            scan_request(Signal::Traces, &body[..body.len() - 3], &mut stamps),
            None
        );
        assert_eq!(
            scan_request(Signal::Traces, &[0x0a, 0xff], &mut stamps),
            None
        );
        assert_eq!(scan_request(Signal::Traces, &[], &mut stamps), Some(0));
    }
}
