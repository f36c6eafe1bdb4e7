//! `weft-loadgen`: an OTLP load generator and a counting sink, for the end-to-end benchmark.
//!
//! `weft-loadgen send ...` sends traces, logs or metrics over gRPC or HTTP (protobuf or
//! JSON, optional gzip/zstd) at a target rate or as fast as the server accepts, and prints
//! achieved items/s, refused and failed requests and client-side latency percentiles. It
//! exits 2 when the server refused more than `--max-refused` of the requests.
//!
//! `weft-loadgen sink ...` is an OTLP/gRPC server (`--mode loki`: Loki's push API,
//! `--mode elasticsearch`: Elasticsearch's `_bulk` API) that counts and discards what it gets and
//! measures the end-to-end latency: every span's start time (and log record's time) is the
//! generator's clock when the request was sent, so `now - start` at the sink is the
//! latency a pipeline adds (both processes on one machine share the clock).
//!
//! Requests are generated once into a pool (`--distinct` bodies) and only their timestamp
//! bytes are patched per send, so the generator's own CPU cost stays small.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use weft::data::*;

/// mimalloc: fewer cycles per allocation than glibc's malloc on the many small, short-lived
/// allocations of decoding (README, Performance). Off with `--no-default-features`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weft-loadgen",
    version,
    about = "OTLP load generator and counting sink"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Proto {
    Grpc,
    Http,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Enc {
    Proto,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Comp {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Sig {
    Traces,
    Logs,
    Metrics,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send load.
    Send {
        /// gRPC: host:port or http://host:port; HTTP: base URL (http://host:4318).
        #[arg(long, default_value = "http://127.0.0.1:4317")]
        endpoint: String,
        #[arg(long, value_enum, default_value = "grpc")]
        protocol: Proto,
        #[arg(long, value_enum, default_value = "proto")]
        encoding: Enc,
        #[arg(long, value_enum, default_value = "none")]
        compression: Comp,
        #[arg(long, value_enum, default_value = "traces")]
        signal: Sig,
        /// Target items per second over all connections; 0 = as fast as accepted.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Items (spans, log records, data points) per request.
        #[arg(long, default_value_t = 100)]
        items_per_request: usize,
        /// Attributes per item.
        #[arg(long, default_value_t = 10)]
        attributes: usize,
        /// Bytes per attribute value.
        #[arg(long, default_value_t = 24)]
        value_size: usize,
        /// Distinct values per attribute key, drawn uniformly (0: every value is new random
        /// text, the worst case for compression; real attributes repeat: methods, routes,
        /// pod names, status codes).
        #[arg(long, default_value_t = 0)]
        value_cardinality: usize,
        /// Distinct trace ids per request (spans are spread over them).
        #[arg(long, default_value_t = 10)]
        traces_per_request: usize,
        /// Distinct pre-generated request bodies.
        #[arg(long, default_value_t = 64)]
        distinct: usize,
        /// Concurrent connections / in-flight requests.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = parse_dur)]
        duration: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Exit 2 when more than this fraction of requests was refused.
        #[arg(long, default_value_t = 0.01)]
        max_refused: f64,
    },
    /// Count and discard OTLP/gRPC (or Loki pushes, or Elasticsearch `_bulk` requests),
    /// reporting items/s and end-to-end latency.
    Sink {
        #[arg(long, default_value = "127.0.0.1:14317")]
        listen: String,
        /// What to speak: OTLP/gRPC, Loki's push API or Elasticsearch's `_bulk` API.
        #[arg(long, value_enum, default_value = "otlp")]
        mode: SinkMode,
        /// Print a line every interval.
        #[arg(long, default_value = "1s", value_parser = parse_dur)]
        report: Duration,
        /// Stop after this long (0 = run until killed).
        #[arg(long, default_value = "0s", value_parser = parse_dur)]
        duration: Duration,
        /// The HTTP/2 SETTINGS_MAX_FRAME_SIZE the OTLP/gRPC sink advertises: the largest
        /// DATA frame a client may send it. 16384 is HTTP/2's default and what gRPC servers
        /// in Go (the Collector, Jaeger) advertise; weft's own receiver advertises more
        /// (see the README's Performance section).
        #[arg(long, default_value_t = 16384)]
        max_frame_size: u32,
    },
}

/// The sink's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SinkMode {
    Otlp,
    Loki,
    Elasticsearch,
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    weft::config::duration::parse_duration(s)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A sentinel timestamp, found in the encoded body and replaced at send time.
const STAMP: u64 = 0x5EED_5EED_5EED_5EED;

struct Body {
    bytes: Vec<u8>,
    /// Offsets of the 8 timestamp bytes to patch (protobuf only).
    stamps: Vec<usize>,
}

/// Attribute values: new random text each time, or drawn from a vocabulary per key.
struct Values {
    size: usize,
    vocab: Vec<Vec<String>>,
}

impl Values {
    fn new(attrs: usize, size: usize, cardinality: usize, rng: &mut fastrand::Rng) -> Self {
        let vocab = if cardinality == 0 {
            Vec::new()
        } else {
            (0..attrs)
                .map(|_| (0..cardinality).map(|_| random_text(size, rng)).collect())
                .collect()
        };
        Values { size, vocab }
    }

    fn get(&self, attr: usize, rng: &mut fastrand::Rng) -> String {
        match self.vocab.get(attr) {
            Some(v) => v[rng.usize(..v.len())].clone(),
            None => random_text(self.size, rng),
        }
    }
}

fn random_text(size: usize, rng: &mut fastrand::Rng) -> String {
    (0..size).map(|_| rng.alphanumeric()).collect()
}

fn generate(
    sig: Sig,
    n: usize,
    attrs: usize,
    values: &Values,
    traces: usize,
    rng: &mut fastrand::Rng,
) -> Batch {
    let kv = |k: String, v: String| KeyValue {
        key: k,
        value: Some(AnyValue {
            value: Some(string_value(v)),
        }),
        ..Default::default()
    };
    let value = |rng: &mut fastrand::Rng| random_text(values.size, rng);
    let resource = Some(Resource {
        attributes: vec![
            kv("service.name".into(), "loadgen".into()),
            kv("host.name".into(), "bench-node".into()),
        ],
        ..Default::default()
    });
    let trace_ids: Vec<Vec<u8>> = (0..traces.max(1))
        .map(|_| (0..16).map(|_| rng.u8(..)).collect())
        .collect();
    match sig {
        Sig::Traces => Batch::Traces(vec![ResourceSpans {
            resource,
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: trace_ids[i % trace_ids.len()].clone(),
                        span_id: rng.u64(1..).to_be_bytes().to_vec(),
                        name: format!("GET /api/orders/{}", i % 16),
                        kind: 2,
                        start_time_unix_nano: STAMP,
                        end_time_unix_nano: STAMP,
                        attributes: (0..attrs)
                            .map(|a| kv(format!("attr.{a}"), values.get(a, rng)))
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]),
        Sig::Logs => Batch::Logs(vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|i| LogRecord {
                        time_unix_nano: STAMP,
                        observed_time_unix_nano: STAMP,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(string_value(format!(
                                "order {i} processed {}",
                                value(rng)
                            ))),
                        }),
                        attributes: (0..attrs)
                            .map(|a| kv(format!("attr.{a}"), values.get(a, rng)))
                            .collect(),
                        trace_id: trace_ids[i % trace_ids.len()].clone(),
                        span_id: rng.u64(1..).to_be_bytes().to_vec(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]),
        Sig::Metrics => {
            use opentelemetry_proto::tonic::metrics::v1 as m;
            Batch::Metrics(vec![ResourceMetrics {
                resource,
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "requests".into(),
                        data: Some(metric::Data::Sum(m::Sum {
                            data_points: (0..n)
                                .map(|i| m::NumberDataPoint {
                                    attributes: (0..attrs)
                                        .map(|a| kv(format!("attr.{a}"), values.get(a, rng)))
                                        .collect(),
                                    start_time_unix_nano: STAMP,
                                    time_unix_nano: STAMP,
                                    value: Some(m::number_data_point::Value::AsInt(i as i64)),
                                    ..Default::default()
                                })
                                .collect(),
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }])
        }
    }
}

fn find_stamps(bytes: &[u8]) -> Vec<usize> {
    let needle = STAMP.to_le_bytes();
    bytes
        .windows(8)
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn stamp(body: &Body) -> Vec<u8> {
    let mut b = body.bytes.clone();
    let t = now_nanos().to_le_bytes();
    for &o in &body.stamps {
        b[o..o + 8].copy_from_slice(&t);
    }
    b
}

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    items: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    weft::install_crypto_provider();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    match cli.cmd {
        Cmd::Sink {
            listen,
            mode,
            report,
            duration,
            max_frame_size,
        } => rt.block_on(sink::run(listen, report, duration, mode, max_frame_size)),
        Cmd::Send {
            endpoint,
            protocol,
            encoding,
            compression,
            signal,
            rate,
            items_per_request,
            attributes,
            value_size,
            value_cardinality,
            traces_per_request,
            distinct,
            concurrency,
            duration,
            seed,
            max_refused,
        } => {
            if protocol == Proto::Grpc && encoding == Enc::Json {
                bail!("gRPC carries protobuf only; use --protocol http for JSON");
            }
            let mut rng = fastrand::Rng::with_seed(seed);
            let values = Values::new(attributes, value_size, value_cardinality, &mut rng);
            let bodies: Vec<Body> = (0..distinct.max(1))
                .map(|_| {
                    let b = generate(
                        signal,
                        items_per_request,
                        attributes,
                        &values,
                        traces_per_request,
                        &mut rng,
                    );
                    match encoding {
                        Enc::Proto => {
                            let bytes = b.encode_proto();
                            let stamps = find_stamps(&bytes);
                            Body { bytes, stamps }
                        }
                        // JSON carries the timestamps as decimal strings; not patched.
                        Enc::Json => Body {
                            bytes: b.encode_json(),
                            stamps: Vec::new(),
                        },
                    }
                })
                .collect();
            let bytes_per_item = bodies[0].bytes.len() as f64 / items_per_request as f64;
            let bodies = Arc::new(bodies);
            let stats = Arc::new(Stats::default());
            let lat = rt.block_on(send::run(send::Opts {
                endpoint,
                grpc: protocol == Proto::Grpc,
                json: encoding == Enc::Json,
                compression,
                signal,
                rate,
                items: items_per_request as u64,
                concurrency: concurrency.max(1),
                duration,
                bodies,
                stats: stats.clone(),
            }))?;
            let ok = stats.ok.load(Ordering::Relaxed);
            let refused = stats.refused.load(Ordering::Relaxed);
            let failed = stats.failed.load(Ordering::Relaxed);
            let items = stats.items.load(Ordering::Relaxed);
            let secs = duration.as_secs_f64();
            let total = (ok + refused + failed).max(1);
            println!(
                "sent {items} items in {secs:.1}s = {:.0} items/s ({bytes_per_item:.0} bytes/item); requests ok {ok}, refused {refused}, failed {failed}",
                items as f64 / secs
            );
            println!(
                "client latency ms: p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
                lat.0, lat.1, lat.2, lat.3
            );
            if refused as f64 / total as f64 > max_refused {
                eprintln!(
                    "refused {:.2}% > --max-refused {:.2}%",
                    100.0 * refused as f64 / total as f64,
                    100.0 * max_refused
                );
                std::process::exit(2);
            }
            Ok(())
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

mod send {
    use super::*;

    pub struct Opts {
        pub endpoint: String,
        pub grpc: bool,
        pub json: bool,
        pub compression: Comp,
        pub signal: Sig,
        pub rate: u64,
        pub items: u64,
        pub concurrency: usize,
        pub duration: Duration,
        pub bodies: Arc<Vec<Body>>,
        pub stats: Arc<Stats>,
    }

    fn grpc_path(s: Sig) -> &'static str {
        match s {
            Sig::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Sig::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Sig::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    fn http_path(s: Sig) -> &'static str {
        match s {
            Sig::Traces => "/v1/traces",
            Sig::Logs => "/v1/logs",
            Sig::Metrics => "/v1/metrics",
        }
    }

    /// Returns latency percentiles (p50, p90, p99, max) in ms.
    pub async fn run(o: Opts) -> anyhow::Result<(f64, f64, f64, f64)> {
        let o = Arc::new(o);
        let deadline = Instant::now() + o.duration;
        // Requests per second per worker for the target rate.
        let per_worker_interval = (o.rate > 0).then(|| {
            let reqs_per_sec = o.rate as f64 / o.items as f64 / o.concurrency as f64;
            Duration::from_secs_f64(1.0 / reqs_per_sec.max(1e-6))
        });
        let mut tasks = Vec::new();
        for w in 0..o.concurrency {
            let o = o.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let client = Client::new(&o).await;
                let mut next = Instant::now();
                let mut i = w;
                while Instant::now() < deadline {
                    if let Some(iv) = per_worker_interval {
                        tokio::time::sleep_until(next.into()).await;
                        next += iv;
                    }
                    let body = stamp(&o.bodies[i % o.bodies.len()]);
                    i += o.concurrency;
                    let t0 = Instant::now();
                    match client.send(&o, body).await {
                        Outcome::Ok => {
                            o.stats.ok.fetch_add(1, Ordering::Relaxed);
                            o.stats.items.fetch_add(o.items, Ordering::Relaxed);
                        }
                        Outcome::Refused => {
                            o.stats.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Outcome::Failed => {
                            o.stats.failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await?);
        }
        all.sort_by(|a, b| a.total_cmp(b));
        Ok((
            percentile(&all, 0.5),
            percentile(&all, 0.9),
            percentile(&all, 0.99),
            all.last().copied().unwrap_or(0.0),
        ))
    }

    /// A refusal the server asks to retry (backpressure) or a failure.
    fn refused_or_failed(st: &tonic::Status) -> Outcome {
        match st.code() {
            tonic::Code::Unavailable | tonic::Code::ResourceExhausted => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }

    enum Outcome {
        Ok,
        Refused,
        Failed,
    }

    enum Client {
        /// Uncompressed gRPC through [`weft::exporters::grpc_unary`].
        Raw(
            tonic::transport::Channel,
            weft::exporters::coalesce::SharedBuffers,
        ),
        Grpc(tonic::client::Grpc<tonic::transport::Channel>),
        Http(reqwest::Client),
    }

    impl Client {
        async fn new(o: &Opts) -> Client {
            if o.grpc {
                let uri = if o.endpoint.contains("://") {
                    o.endpoint.clone()
                } else {
                    format!("http://{}", o.endpoint)
                };
                let ep = tonic::transport::Endpoint::from_shared(uri)
                    .expect("valid endpoint")
                    .tcp_nodelay(true);
                // Uncompressed: the request written as it is, its HTTP/2 frames coalesced
                // into few writes (as Go's and Java's gRPC clients write), the same path
                // as weft's `otlp` exporter; the generator then costs the machine less
                // than tonic's encode copy and one write per frame, so weft can be driven
                // harder on the same cores.
                if matches!(o.compression, Comp::None) {
                    let connector = weft::exporters::coalesce::CoalescingConnector::new(true, None);
                    let shared = connector.shared();
                    return Client::Raw(ep.connect_with_connector_lazy(connector), shared);
                }
                let ch = ep.connect_lazy();
                let mut g = tonic::client::Grpc::new(ch).max_decoding_message_size(64 << 20);
                g = match o.compression {
                    Comp::Gzip => g.send_compressed(tonic::codec::CompressionEncoding::Gzip),
                    Comp::Zstd => g.send_compressed(tonic::codec::CompressionEncoding::Zstd),
                    Comp::None => g,
                };
                Client::Grpc(g)
            } else {
                Client::Http(
                    reqwest::Client::builder()
                        .tcp_nodelay(true)
                        .build()
                        .expect("http client"),
                )
            }
        }

        async fn send(&self, o: &Opts, body: Vec<u8>) -> Outcome {
            match self {
                Client::Raw(ch, shared) => {
                    let r = weft::exporters::grpc_unary::call(
                        ch.clone(),
                        Some(shared),
                        grpc_path(o.signal),
                        http::HeaderMap::new(),
                        vec![bytes::Bytes::from(body)],
                        None,
                    )
                    .await;
                    match r {
                        Ok(()) => Outcome::Ok,
                        Err(st) => refused_or_failed(&st),
                    }
                }
                Client::Grpc(g) => {
                    let mut g = g.clone();
                    if g.ready().await.is_err() {
                        return Outcome::Failed;
                    }
                    let path = http::uri::PathAndQuery::from_static(grpc_path(o.signal));
                    match g
                        .unary(
                            tonic::Request::new(body),
                            path,
                            weft::receivers::otlp::codec::RawCodec,
                        )
                        .await
                    {
                        Ok(_) => Outcome::Ok,
                        Err(st) => refused_or_failed(&st),
                    }
                }
                Client::Http(c) => {
                    let mut req = c
                        .post(format!(
                            "{}{}",
                            o.endpoint.trim_end_matches('/'),
                            http_path(o.signal)
                        ))
                        .header(
                            "content-type",
                            if o.json {
                                "application/json"
                            } else {
                                "application/x-protobuf"
                            },
                        );
                    let body = match o.compression {
                        Comp::Gzip => {
                            req = req.header("content-encoding", "gzip");
                            weft::exporters::http_client::gzip(&body)
                        }
                        Comp::Zstd => {
                            req = req.header("content-encoding", "zstd");
                            zstd::bulk::compress(&body, 1).unwrap_or_default()
                        }
                        Comp::None => body,
                    };
                    match req.body(body).send().await {
                        Ok(r) if r.status().is_success() => Outcome::Ok,
                        Ok(r) if matches!(r.status().as_u16(), 429 | 503) => Outcome::Refused,
                        _ => Outcome::Failed,
                    }
                }
            }
        }
    }
}

mod http_sink;
mod pb;
mod sink;
