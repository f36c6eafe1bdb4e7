//! The `awss3` exporter against a real S3-compatible server started in-process
//! (`s3s` + `s3s-fs`, SigV4-checked; see tests/support/s3.rs), driven through the exporter's
//! real `aws-sdk-s3` client and the standard AWS credential chain.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::s3::S3Server;
use weft::admin::Telemetry;
use weft::components::{BuildContext, SharedState};
use weft::config::Dur;
use weft::data::{
    AnyValue, Batch, InstrumentationScope, KeyValue, LogRecord, Resource, ResourceLogs,
    ResourceSpans, ScopeLogs, ScopeSpans, Signal, Span, Status, set_attr, span, string_value,
};
use weft::delivery::{Delivery, DeliveryConfig, QueueConfig, RetryConfig};
use weft::exporters::awss3::marshal::{Compression, decompress};
use weft::exporters::{ExportError, Exporter};

/// 2026-11-25T10:15:00Z
const T10: u64 = 1_795_601_700_000_000_000;
const MINUTE: u64 = 60_000_000_000;
const HOUR: u64 = 60 * MINUTE;

fn ctx(id: &str, telemetry: &Telemetry) -> BuildContext {
    BuildContext {
        id: id.to_string(),
        signal: None,
        telemetry: telemetry.clone(),
        shared: SharedState::default(),
        extensions: Arc::new(HashMap::new()),
    }
}

fn exporter(cfg: &serde_json::Value, id: &str, t: &Telemetry) -> Arc<dyn Exporter> {
    weft::exporters::awss3::build(cfg, &ctx(id, t)).unwrap_or_else(|e| panic!("{e}"))
}

fn resource(service: &str) -> Option<Resource> {
    let mut attributes = Vec::new();
    set_attr(&mut attributes, "service.name", string_value(service));
    set_attr(&mut attributes, "k8s.namespace.name", string_value("shop"));
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn kv(k: &str, v: weft::data::any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn log_records(tag: &str, times: &[u64]) -> Vec<LogRecord> {
    times
        .iter()
        .enumerate()
        .map(|(i, t)| LogRecord {
            time_unix_nano: *t,
            observed_time_unix_nano: t + 1_000,
            severity_number: 9 + (i as i32 % 4),
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(string_value(format!("{tag} record {i}"))),
            }),
            attributes: vec![
                kv("i", weft::data::any_value::Value::IntValue(i as i64)),
                kv("user", string_value("u-7")),
            ],
            trace_id: vec![i as u8 + 1; 16],
            span_id: vec![i as u8 + 2; 8],
            flags: 1,
            ..Default::default()
        })
        .collect()
}

fn logs(service: &str, times: &[u64]) -> ResourceLogs {
    ResourceLogs {
        resource: resource(service),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "app.logger".into(),
                version: "1.2".into(),
                ..Default::default()
            }),
            log_records: log_records(service, times),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn spans(service: &str, times: &[u64]) -> ResourceSpans {
    let spans = times
        .iter()
        .enumerate()
        .map(|(i, t)| Span {
            trace_id: vec![7; 16],
            span_id: vec![i as u8 + 1; 8],
            parent_span_id: if i == 0 { vec![] } else { vec![1; 8] },
            name: format!("op-{i}"),
            kind: 2 + (i as i32 % 3),
            start_time_unix_nano: *t,
            end_time_unix_nano: t + 1_500_000,
            attributes: vec![kv("http.route", string_value("/pay"))],
            events: vec![span::Event {
                time_unix_nano: t + 10,
                name: "retry".into(),
                attributes: vec![kv("n", weft::data::any_value::Value::IntValue(2))],
                ..Default::default()
            }],
            links: if i % 2 == 0 {
                vec![span::Link {
                    trace_id: vec![9; 16],
                    span_id: vec![8; 8],
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            status: Some(Status {
                code: (i % 3) as i32,
                message: if i % 3 == 2 {
                    "boom".into()
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        })
        .collect();
    ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "app.tracer".into(),
                ..Default::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn decode(bytes: &[u8], key: &str, signal: Signal) -> Batch {
    let c = if key.ends_with(".gz") {
        Compression::Gzip
    } else if key.ends_with(".zst") {
        Compression::Zstd
    } else {
        Compression::None
    };
    let raw = decompress(bytes, c).unwrap();
    if key.contains(".json") {
        Batch::decode_json(signal, &raw).unwrap()
    } else {
        Batch::decode_proto(signal, &raw).unwrap()
    }
}

fn records(b: &Batch) -> Vec<LogRecord> {
    let Batch::Logs(v) = b else {
        panic!("not logs")
    };
    v.iter()
        .flat_map(|r| r.scope_logs.iter())
        .flat_map(|s| s.log_records.iter().cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_partitioned_by_record_time_and_service() {
    let server = S3Server::start().await;
    server.create_bucket("archive").await;
    let t = Telemetry::new();
    let cfg = server.exporter_config(
        "archive",
        serde_json::json!({"s3uploader": {"s3_prefix": "logs", "s3_partition_format": "service=%{service.name}/year=%Y/month=%m/day=%d/hour=%H"}}),
    );
    let e = exporter(&cfg, "awss3", &t);
    // One batch: checkout at 10:15 and 10:45, a late checkout record from 08:59, payment at 10:20.
    let batch = Batch::Logs(vec![
        logs("checkout", &[T10, T10 - 76 * MINUTE, T10 + 30 * MINUTE]),
        logs("payment", &[T10 + 5 * MINUTE]),
    ]);
    e.send(&batch).await.unwrap();
    let keys = server.keys("archive", "logs/").await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    let prefixes: Vec<&str> = keys.iter().map(|k| k.rsplit_once('/').unwrap().0).collect();
    assert_eq!(
        prefixes,
        [
            "logs/service=checkout/year=2026/month=11/day=25/hour=08",
            "logs/service=checkout/year=2026/month=11/day=25/hour=10",
            "logs/service=payment/year=2026/month=11/day=25/hour=10",
        ]
    );
    for k in &keys {
        let name = k.rsplit_once('/').unwrap().1;
        assert!(
            name.starts_with("logs_") && name.ends_with(".json"),
            "{name}"
        );
    }
    // Each object holds exactly its partition's records.
    let late = records(&decode(
        &server.get("archive", &keys[0]).await,
        &keys[0],
        Signal::Logs,
    ));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].time_unix_nano, T10 - 76 * MINUTE);
    let checkout10 = records(&decode(
        &server.get("archive", &keys[1]).await,
        &keys[1],
        Signal::Logs,
    ));
    assert_eq!(
        checkout10
            .iter()
            .map(|r| r.time_unix_nano)
            .collect::<Vec<_>>(),
        [T10, T10 + 30 * MINUTE]
    );

    // Sending the same batch again (a retry) overwrites the same keys: no second copy.
    e.send(&batch).await.unwrap();
    assert_eq!(server.keys("archive", "logs/").await, keys);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_marshaler_and_compression_reads_back_record_by_record() {
    let server = S3Server::start().await;
    server.create_bucket("archive").await;
    let t = Telemetry::new();
    let log_batch = Batch::Logs(vec![logs("checkout", &[T10, T10 + 1, T10 + 2, T10 + 3])]);
    let span_batch = Batch::Traces(vec![spans("checkout", &[T10, T10 + 5, T10 + 9])]);
    for marshaler in ["otlp_json", "otlp_proto"] {
        for compression in ["none", "gzip", "zstd"] {
            let prefix = format!("{marshaler}-{compression}");
            let cfg = server.exporter_config(
                "archive",
                serde_json::json!({"marshaler": marshaler, "s3uploader": {"s3_prefix": prefix, "compression": compression}}),
            );
            let e = exporter(&cfg, "awss3", &t);
            e.send(&log_batch).await.unwrap();
            e.send(&span_batch).await.unwrap();
            let keys = server.keys("archive", &format!("{prefix}/")).await;
            assert_eq!(keys.len(), 2, "{keys:?}");
            let ext = match (marshaler, compression) {
                ("otlp_json", "none") => ".json".to_string(),
                ("otlp_proto", "none") => ".binpb".to_string(),
                (m, c) => format!(
                    ".{}.{}",
                    if m == "otlp_json" { "json" } else { "binpb" },
                    if c == "gzip" { "gz" } else { "zst" }
                ),
            };
            for k in &keys {
                assert!(k.ends_with(&ext), "{k} should end with {ext}");
                assert!(
                    k.starts_with(&format!(
                        "{prefix}/year=2026/month=11/day=25/hour=10/minute=15/"
                    )),
                    "{k}"
                );
                let bytes = server.get("archive", k).await;
                if k.contains("/logs_") {
                    let back = decode(&bytes, k, Signal::Logs);
                    assert_eq!(records(&back), records(&log_batch), "{k}");
                    assert_eq!(back, log_batch, "{k}: resource and scope survive too");
                } else {
                    assert_eq!(decode(&bytes, k, Signal::Traces), span_batch, "{k}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_over_8_mib_use_multipart_upload() {
    let server = S3Server::start().await;
    server.create_bucket("archive").await;
    let t = Telemetry::new();
    let cfg = server.exporter_config("archive", serde_json::json!({"marshaler": "otlp_proto"}));
    let e = exporter(&cfg, "awss3", &t);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut rl = logs("bulk", &vec![T10; 90]);
    for r in &mut rl.scope_logs[0].log_records {
        let body: String = (0..100 * 1024).map(|_| rng.alphanumeric()).collect();
        r.body = Some(AnyValue {
            value: Some(string_value(body)),
        });
    }
    let batch = Batch::Logs(vec![rl]);
    e.send(&batch).await.unwrap();
    let keys = server.keys("archive", "").await;
    assert_eq!(keys.len(), 1);
    let bytes = server.get("archive", &keys[0]).await;
    assert!(bytes.len() > 8 * 1024 * 1024, "{} bytes", bytes.len());
    assert_eq!(Batch::decode_proto(Signal::Logs, &bytes).unwrap(), batch);
    // A multipart object's ETag is "<md5 of part md5s>-<number of parts>".
    let etag = server.etag("archive", &keys[0]).await;
    assert!(etag.trim_matches('"').ends_with("-2"), "etag {etag}");
}

/// Throttling on one partition: the others are written, only the throttled records come
/// back for a retry (`Partial`), and the retry writes the key the first attempt would have.
#[tokio::test(flavor = "multi_thread")]
async fn throttled_partition_is_retried_alone_under_the_same_key() {
    let server = S3Server::start().await;
    server.create_bucket("archive").await;
    let t = Telemetry::new();
    let cfg = server.exporter_config(
        "archive",
        serde_json::json!({"s3uploader": {"s3_partition_format": "hour=%H"}}),
    );
    let e = exporter(&cfg, "awss3", &t);
    let batch = Batch::Logs(vec![logs("checkout", &[T10, T10 - 2 * HOUR, T10 + 1])]);
    server.slow_down(Some("hour=08"));
    let retry = match e.send(&batch).await {
        Err(ExportError::Partial { retry, reason, .. }) => {
            assert!(reason.contains("SlowDown"), "{reason}");
            retry
        }
        other => panic!("expected a partial failure, got {other:?}"),
    };
    assert_eq!(records(&retry).len(), 1);
    assert_eq!(records(&retry)[0].time_unix_nano, T10 - 2 * HOUR);
    let first = server.keys("archive", "").await;
    assert_eq!(first.len(), 1);
    assert!(first[0].starts_with("hour=10/"));

    // Throttled everywhere: nothing was written, the whole batch is retryable.
    server.slow_down(Some("hour="));
    assert!(matches!(
        e.send(&retry).await,
        Err(ExportError::Retryable { .. })
    ));

    server.slow_down(None);
    e.send(&retry).await.unwrap();
    let keys = server.keys("archive", "").await;
    assert_eq!(keys.len(), 2);
    // Sending the original batch again overwrites the very same two keys.
    e.send(&batch).await.unwrap();
    assert_eq!(server.keys("archive", "").await, keys);
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_recovers_after_the_server_was_down() {
    let server = S3Server::start().await;
    server.create_bucket("archive").await;
    server.set_down(true);
    let t = Telemetry::new();
    let id = "awss3/archive";
    let cfg = server.exporter_config("archive", serde_json::json!({"marshaler": "otlp_proto"}));
    let dcfg = DeliveryConfig {
        sending_queue: QueueConfig {
            num_consumers: 2,
            ..Default::default()
        },
        retry_on_failure: RetryConfig {
            initial_interval: Dur::millis(20),
            max_interval: Dur::millis(100),
            max_elapsed_time: Dur::secs(120),
            ..Default::default()
        },
        timeout: Some(Dur::secs(10)),
    };
    let delivery = Delivery::start(id, exporter(&cfg, id, &t), dcfg, None, &t)
        .await
        .unwrap();
    let batch = Batch::Logs(vec![logs("checkout", &[T10, T10 + HOUR])]);
    delivery
        .handle()
        .push(Arc::new(batch.clone()), false)
        .await
        .unwrap();

    let retries = t
        .metrics
        .counter("weft_exporter_retries_total", "", &[("component", id)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while retries.get() < 3 {
        assert!(
            Instant::now() < deadline,
            "no retries while the server was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.set_down(false);
    let mut keys = Vec::new();
    while keys.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "not delivered after the server came back: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        keys = server.keys("archive", "").await;
    }
    delivery
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(
        server.keys("archive", "").await.len(),
        2,
        "one object per hour, no duplicates"
    );
    let mut back = Vec::new();
    for k in &keys {
        back.extend(records(
            &Batch::decode_proto(Signal::Logs, &server.get("archive", k).await).unwrap(),
        ));
    }
    assert_eq!(back, records(&batch));
    let sent = t.metrics.counter(
        "weft_exporter_sent_log_records_total",
        "",
        &[("component", id)],
    );
    assert_eq!(sent.get(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_bucket_is_permanent_and_named_by_readiness() {
    let server = S3Server::start().await;
    let t = Telemetry::new();
    t.health.set_started();
    let id = "awss3/archive";
    let e = exporter(
        &server.exporter_config("no-such-bucket", serde_json::json!({})),
        id,
        &t,
    );
    // At start: HeadBucket finds no bucket.
    assert!(matches!(
        e.start().await,
        Err(ExportError::Permanent { .. })
    ));
    let r = t.health.readiness();
    assert!(!r.ready);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains(id) && x.contains("NoSuchBucket") && x.contains("no-such-bucket")),
        "{r:?}"
    );
    // At send: PutObject says NoSuchBucket; the delivery layer will not retry a permanent error.
    let batch = Batch::Logs(vec![logs("checkout", &[T10])]);
    match e.send(&batch).await {
        Err(ExportError::Permanent { reason, .. }) => assert_eq!(reason, "NoSuchBucket"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    let errors = t.metrics.counter(
        "weft_exporter_s3_permanent_errors_total",
        "",
        &[("component", id), ("code", "NoSuchBucket")],
    );
    assert_eq!(errors.get(), 2);
    // Once someone creates the bucket, uploads work and readiness recovers.
    server.create_bucket("no-such-bucket").await;
    e.send(&batch).await.unwrap();
    assert!(t.health.readiness().ready, "{:?}", t.health.readiness());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_permanent() {
    let server = S3Server::start().await;
    server.create_bucket("archive").await;
    // The bucket exists, but an endpoint that does not know our key refuses: here the
    // signature is checked against a server built with other keys.
    let other = {
        let root = tempfile::tempdir().unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        std::fs::create_dir(root.path().join("archive")).unwrap();
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            "someone-else",
            "their-secret",
        ));
        (root, b.build())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = other.1.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    let t = Telemetry::new();
    t.health.set_started();
    let cfg = serde_json::json!({"s3uploader": {"s3_bucket": "archive", "endpoint": format!("http://{addr}"), "s3_force_path_style": true}});
    let e = exporter(&cfg, "awss3", &t);
    match e.send(&Batch::Logs(vec![logs("checkout", &[T10])])).await {
        Err(ExportError::Permanent { reason, .. }) => {
            assert!(
                [
                    "InvalidAccessKeyId",
                    "NotSignedUp",
                    "AccessDenied",
                    "SignatureDoesNotMatch"
                ]
                .contains(&reason.as_str()),
                "{reason}"
            )
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert!(!t.health.readiness().ready);
    task.abort();
}

/// The registered component from YAML, fed by the OTLP/HTTP receiver through `batch`.
#[tokio::test(flavor = "multi_thread")]
async fn service_from_yaml_archives_otlp_logs_and_spans() {
    let server = S3Server::start().await;
    server.create_bucket("archive").await;
    let exporters = format!(
        "  awss3:\n    s3uploader:\n      region: us-east-1\n      s3_bucket: archive\n      s3_prefix: otel\n      endpoint: {}\n      s3_force_path_style: true\n      s3_partition_format: \"service=%{{service.name}}/year=%Y/month=%m/day=%d/hour=%H\"\n      compression: zstd\n    marshaler: otlp_proto\n    timeout: 30s\n",
        server.endpoint()
    );
    let yaml = support::weft::config(
        "  batch:\n    timeout: 100ms\n",
        &exporters,
        "    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [awss3]\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [awss3]\n",
    );
    let running = support::weft::start(&yaml).await;
    let http = reqwest::Client::new();
    let log_batch = Batch::Logs(vec![logs("checkout", &[T10, T10 - 2 * HOUR])]);
    let span_batch = Batch::Traces(vec![spans("payment", &[T10])]);
    for (path, b) in [("/v1/logs", &log_batch), ("/v1/traces", &span_batch)] {
        let r = http
            .post(format!("{}{path}", running.http()))
            .header("content-type", "application/x-protobuf")
            .body(b.encode_proto())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut keys = Vec::new();
    while keys.len() < 3 {
        assert!(Instant::now() < deadline, "objects: {keys:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        keys = server.keys("archive", "otel/").await;
    }
    running.service.shutdown().await;
    let dirs: Vec<&str> = keys.iter().map(|k| k.rsplit_once('/').unwrap().0).collect();
    assert_eq!(
        dirs,
        [
            "otel/service=checkout/year=2026/month=11/day=25/hour=08",
            "otel/service=checkout/year=2026/month=11/day=25/hour=10",
            "otel/service=payment/year=2026/month=11/day=25/hour=10",
        ]
    );
    let mut back = Vec::new();
    for k in &keys[..2] {
        assert!(k.ends_with(".binpb.zst"), "{k}");
        back.extend(records(&decode(
            &server.get("archive", k).await,
            k,
            Signal::Logs,
        )));
    }
    back.sort_by_key(|r| r.time_unix_nano);
    let mut want = records(&log_batch);
    want.sort_by_key(|r| r.time_unix_nano);
    assert_eq!(back, want);
    assert_eq!(
        decode(
            &server.get("archive", &keys[2]).await,
            &keys[2],
            Signal::Traces
        ),
        span_batch
    );
    assert_eq!(
        running
            .telemetry
            .metrics
            .value("weft_exporter_s3_objects_total", &[("component", "awss3")]),
        Some(3.0)
    );
}

#[test]
fn tiering_pipeline_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/loki-s3-tiering.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let src = weft::config::Source {
        name: path.into(),
        text,
    };
    match weft::config::load_and_validate(&[src], &|_| None) {
        Ok(_) => {}
        Err(errors) => {
            // The `loki` exporter is built in parallel; until it is registered, an unknown
            // `loki` type is the only error tolerated here (and, in a build without the
            // `parquet` feature, the refusal of `marshaler: parquet`).
            let loki_registered =
                weft::components::type_names(weft::components::Kind::Exporter).contains(&"loki");
            for e in &errors.0 {
                let about_loki = e.path.contains("loki") || e.message.contains("loki");
                let no_parquet =
                    !cfg!(feature = "parquet") && e.message.contains("`parquet` cargo feature");
                assert!((!loki_registered && about_loki) || no_parquet, "{e}");
            }
        }
    }
}

#[cfg(feature = "parquet")]
mod parquet_archive {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampNanosecondType};
    use arrow_array::{Array, MapArray, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use weft::data::{hex, value_to_string};

    fn read(bytes: Vec<u8>) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        arrow_select_one(batches)
    }

    fn arrow_select_one(mut b: Vec<RecordBatch>) -> RecordBatch {
        assert_eq!(b.len(), 1);
        b.remove(0)
    }

    fn str_col<'a>(rb: &'a RecordBatch, name: &str) -> &'a arrow_array::StringArray {
        rb.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_string::<i32>()
    }

    fn map_at(m: &MapArray, i: usize) -> Vec<(String, String)> {
        let entries = m.value(i);
        let k = entries.column(0).as_string::<i32>();
        let v = entries.column(1).as_string::<i32>();
        (0..entries.len())
            .map(|j| (k.value(j).to_string(), v.value(j).to_string()))
            .collect()
    }

    fn attrs(a: &[KeyValue]) -> Vec<(String, String)> {
        a.iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    value_to_string(kv.value.as_ref().unwrap().value.as_ref().unwrap()),
                )
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn parquet_logs_and_spans_read_back_row_by_row() {
        let server = S3Server::start().await;
        server.create_bucket("archive").await;
        let t = Telemetry::new();
        let cfg = server.exporter_config("archive", serde_json::json!({"marshaler": "parquet", "s3uploader": {"s3_partition_format": "%{service.name}"}}));
        let e = exporter(&cfg, "awss3", &t);
        let log_batch = Batch::Logs(vec![logs(
            "checkout",
            &[T10, T10 + 1, T10 + 2, T10 + 3, T10 + 4],
        )]);
        let span_batch = Batch::Traces(vec![spans("checkout", &[T10, T10 + 5, T10 + 9])]);
        e.send(&log_batch).await.unwrap();
        e.send(&span_batch).await.unwrap();
        let keys = server.keys("archive", "checkout/").await;
        assert_eq!(keys.len(), 2, "{keys:?}");
        let log_key = keys.iter().find(|k| k.contains("/logs_")).unwrap();
        let span_key = keys.iter().find(|k| k.contains("/traces_")).unwrap();
        assert!(log_key.ends_with(".parquet") && span_key.ends_with(".parquet"));

        let rb = read(server.get("archive", log_key).await);
        let input = records(&log_batch);
        assert_eq!(rb.num_rows(), input.len());
        let time = rb
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let observed = rb
            .column_by_name("observed_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let sev = rb
            .column_by_name("severity_number")
            .unwrap()
            .as_primitive::<Int32Type>();
        let res_attrs = rb.column_by_name("resource_attributes").unwrap().as_map();
        let rec_attrs = rb.column_by_name("attributes").unwrap().as_map();
        let Batch::Logs(rl) = &log_batch else {
            unreachable!()
        };
        for (i, r) in input.iter().enumerate() {
            assert_eq!(time.value(i) as u64, r.time_unix_nano);
            assert_eq!(observed.value(i) as u64, r.observed_time_unix_nano);
            assert_eq!(sev.value(i), r.severity_number);
            assert_eq!(str_col(&rb, "severity_text").value(i), r.severity_text);
            assert_eq!(
                str_col(&rb, "body").value(i),
                value_to_string(r.body.as_ref().unwrap().value.as_ref().unwrap())
            );
            assert!(str_col(&rb, "body_json").is_null(i));
            assert_eq!(str_col(&rb, "trace_id").value(i), hex(&r.trace_id));
            assert_eq!(str_col(&rb, "span_id").value(i), hex(&r.span_id));
            assert_eq!(str_col(&rb, "service_name").value(i), "checkout");
            assert_eq!(str_col(&rb, "scope_name").value(i), "app.logger");
            assert_eq!(str_col(&rb, "scope_version").value(i), "1.2");
            assert_eq!(map_at(rec_attrs, i), attrs(&r.attributes));
            assert_eq!(
                map_at(res_attrs, i),
                attrs(&rl[0].resource.as_ref().unwrap().attributes)
            );
        }

        let rb = read(server.get("archive", span_key).await);
        let Batch::Traces(rs) = &span_batch else {
            unreachable!()
        };
        let input = &rs[0].scope_spans[0].spans;
        assert_eq!(rb.num_rows(), input.len());
        let start = rb
            .column_by_name("start_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let end = rb
            .column_by_name("end_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let dur = rb
            .column_by_name("duration_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let events = rb.column_by_name("events").unwrap().as_list::<i32>();
        let links = rb.column_by_name("links").unwrap().as_list::<i32>();
        let span_attrs = rb.column_by_name("attributes").unwrap().as_map();
        for (i, s) in input.iter().enumerate() {
            assert_eq!(str_col(&rb, "trace_id").value(i), hex(&s.trace_id));
            assert_eq!(str_col(&rb, "span_id").value(i), hex(&s.span_id));
            if s.parent_span_id.is_empty() {
                assert!(str_col(&rb, "parent_span_id").is_null(i));
            } else {
                assert_eq!(
                    str_col(&rb, "parent_span_id").value(i),
                    hex(&s.parent_span_id)
                );
            }
            assert_eq!(str_col(&rb, "name").value(i), s.name);
            assert_eq!(
                str_col(&rb, "kind").value(i),
                weft::exporters::awss3::parquet::kind_name(s.kind)
            );
            assert_eq!(start.value(i) as u64, s.start_time_unix_nano);
            assert_eq!(end.value(i) as u64, s.end_time_unix_nano);
            assert_eq!(
                dur.value(i) as u64,
                s.end_time_unix_nano - s.start_time_unix_nano
            );
            let st = s.status.as_ref().unwrap();
            assert_eq!(
                str_col(&rb, "status_code").value(i),
                weft::exporters::awss3::parquet::status_name(st.code)
            );
            assert_eq!(
                str_col(&rb, "status_message").is_null(i),
                st.message.is_empty()
            );
            assert_eq!(map_at(span_attrs, i), attrs(&s.attributes));
            let ev = events.value(i);
            let ev = ev.as_struct();
            assert_eq!(ev.len(), s.events.len());
            for (j, want) in s.events.iter().enumerate() {
                assert_eq!(
                    ev.column_by_name("name")
                        .unwrap()
                        .as_string::<i32>()
                        .value(j),
                    want.name
                );
                let et = ev
                    .column_by_name("time")
                    .unwrap()
                    .as_primitive::<TimestampNanosecondType>();
                assert_eq!(et.value(j) as u64, want.time_unix_nano);
                assert_eq!(
                    map_at(ev.column_by_name("attributes").unwrap().as_map(), j),
                    attrs(&want.attributes)
                );
            }
            let l = links.value(i);
            let l = l.as_struct();
            assert_eq!(l.len(), s.links.len());
            for (j, want) in s.links.iter().enumerate() {
                assert_eq!(
                    l.column_by_name("trace_id")
                        .unwrap()
                        .as_string::<i32>()
                        .value(j),
                    hex(&want.trace_id)
                );
                assert_eq!(
                    l.column_by_name("span_id")
                        .unwrap()
                        .as_string::<i32>()
                        .value(j),
                    hex(&want.span_id)
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn metrics_with_parquet_are_refused_and_named_by_readiness() {
        let server = S3Server::start().await;
        server.create_bucket("archive").await;
        let t = Telemetry::new();
        t.health.set_started();
        let cfg = server.exporter_config("archive", serde_json::json!({"marshaler": "parquet"}));
        let e = exporter(&cfg, "awss3/m", &t);
        let metric = weft::data::Metric {
            name: "m".into(),
            ..Default::default()
        };
        let b = Batch::Metrics(vec![weft::data::ResourceMetrics {
            scope_metrics: vec![weft::data::ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        assert!(matches!(
            e.send(&b).await,
            Err(ExportError::Permanent { .. })
        ));
        assert!(
            t.health
                .readiness()
                .reasons
                .iter()
                .any(|r| r.contains("awss3/m") && r.contains("parquet"))
        );
    }

    /// Reads the archive with DuckDB from PyPI, the way the README's query does (hive
    /// partitions over the key layout). Optional: needs python3 and network for the first
    /// `pip install` (~6 s, cached in target/py-venv). Run with
    /// `cargo test --test s3 -- --ignored duckdb`.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "installs duckdb from PyPI into target/py-venv"]
    async fn duckdb_reads_the_partitioned_parquet_archive() {
        let server = S3Server::start().await;
        server.create_bucket("archive").await;
        let t = Telemetry::new();
        let cfg = server.exporter_config(
            "archive",
            serde_json::json!({"marshaler": "parquet", "s3uploader": {"s3_prefix": "logs", "s3_partition_format": "service=%{service.name}/year=%Y/month=%m/day=%d/hour=%H"}}),
        );
        let e = exporter(&cfg, "awss3", &t);
        e.send(&Batch::Logs(vec![
            logs("checkout", &[T10, T10 + 1, T10 - HOUR]),
            logs("payment", &[T10]),
        ]))
        .await
        .unwrap();

        let python = support::s3::py_venv(&["duckdb==1.4.4"]);
        // s3s-fs keeps objects as plain files: <root>/<bucket>/<key>.
        let glob = server.root.path().join("archive/logs/**/*.parquet");
        let script = format!(
            "import duckdb\n\
             rows = duckdb.sql(\"\"\"SELECT service, hour, count(*) AS n, min(severity_text), max(body)\n\
               FROM read_parquet('{0}', hive_partitioning = true)\n\
               WHERE year = 2026 AND month = 11 AND day = 25\n\
               GROUP BY ALL ORDER BY ALL\"\"\").fetchall()\n\
             print(rows)\n\
             readme = duckdb.sql(\"\"\"SELECT count(*) FROM (SELECT time, severity_text, body, trace_id\n\
               FROM read_parquet('{0}', hive_partitioning = true)\n\
               WHERE service = 'checkout' AND year = '2026' AND month = '11' AND day = '25'\n\
                 AND hour BETWEEN '09' AND '11' AND attributes['user'] = 'u-7'\n\
               ORDER BY time)\"\"\").fetchone()\n\
             print(readme[0])\n",
            glob.display()
        );
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.trim(),
            "[('checkout', '09', 1, 'INFO', 'checkout record 2'), ('checkout', '10', 2, 'INFO', 'checkout record 1'), ('payment', '10', 1, 'INFO', 'payment record 0')]\n3"
        );
    }
}

/// The same exporter against moto's S3 server (PyPI), a second and looser target.
/// Optional: the first run installs moto into target/py-venv (~2 min). Run with
/// `cargo test --test s3 -- --ignored moto`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "installs moto from PyPI into target/py-venv"]
async fn moto_takes_the_same_objects() {
    let moto = support::s3::Moto::start().await;
    let client = moto.client().await;
    client
        .create_bucket()
        .bucket("archive")
        .send()
        .await
        .unwrap();
    let t = Telemetry::new();
    t.health.set_started();
    let cfg = |bucket: &str, extra| support::s3::exporter_config(&moto.endpoint(), bucket, extra);
    // Small objects, each compression.
    let batch = Batch::Logs(vec![logs("checkout", &[T10, T10 - HOUR])]);
    for c in ["none", "gzip", "zstd"] {
        let e = exporter(
            &cfg(
                "archive",
                serde_json::json!({"s3uploader": {"s3_prefix": c, "compression": c}}),
            ),
            "awss3",
            &t,
        );
        e.send(&batch).await.unwrap();
    }
    // A multipart object.
    let mut rng = fastrand::Rng::with_seed(3);
    let mut big = logs("bulk", &vec![T10; 90]);
    for r in &mut big.scope_logs[0].log_records {
        let body: String = (0..100 * 1024).map(|_| rng.alphanumeric()).collect();
        r.body = Some(AnyValue {
            value: Some(string_value(body)),
        });
    }
    let big = Batch::Logs(vec![big]);
    let e = exporter(
        &cfg(
            "archive",
            serde_json::json!({"marshaler": "otlp_proto", "s3uploader": {"s3_prefix": "big"}}),
        ),
        "awss3",
        &t,
    );
    e.send(&big).await.unwrap();

    let list = client
        .list_objects_v2()
        .bucket("archive")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = list
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 7, "{keys:?}");
    for k in &keys {
        let body = client
            .get_object()
            .bucket("archive")
            .key(k)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        if k.starts_with("big/") {
            assert_eq!(Batch::decode_proto(Signal::Logs, &body).unwrap(), big);
        } else {
            assert_eq!(records(&decode(&body, k, Signal::Logs)).len(), 1, "{k}");
        }
    }
    // A missing bucket is permanent and named by readiness.
    let e = exporter(&cfg("missing", serde_json::json!({})), "awss3/missing", &t);
    match e.send(&batch).await {
        Err(ExportError::Permanent { reason, .. }) => assert_eq!(reason, "NoSuchBucket"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert!(
        t.health
            .readiness()
            .reasons
            .iter()
            .any(|r| r.contains("awss3/missing"))
    );
}
