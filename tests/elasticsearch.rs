//! The elasticsearch exporter against the `_bulk` stand-in: exact documents for both
//! mappings, per-item retries through the delivery layer (every document indexed exactly
//! once), mapping errors, failover, whole-request 429 with Retry-After, 413 splitting, and
//! the ready-made pipeline from OTLP in to Elasticsearch out.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::elasticsearch::Elasticsearch;
use weft::admin::Telemetry;
use weft::components::BuildContext;
use weft::config::{Dur, Source};
use weft::data::*;
use weft::delivery::{Delivery, DeliveryConfig, QueueConfig, RetryConfig};
use weft::exporters::elasticsearch::bulk::{Encoder, Op};
use weft::exporters::elasticsearch::mapping::Mode;
use weft::exporters::{ExportError, Exporter};

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    string_value(v)
}

fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("service.version", s("1.4.2")),
            kv("host.name", s("node-7")),
            kv("k8s.pod.name", s("checkout-7d9f")),
            kv("deployment.environment", s("prod")),
            kv("data_stream.dataset", s("checkout")),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "io.weft.test".into(),
        version: "0.3.0".into(),
        attributes: vec![kv("lib.flag", any_value::Value::BoolValue(true))],
        ..Default::default()
    }
}

const SCHEMA: &str = "https://opentelemetry.io/schemas/1.26.0";
const T0: u64 = 1_700_000_000_000_000_000;

fn trace_id() -> Vec<u8> {
    (1..=16).collect()
}

fn log_record() -> LogRecord {
    LogRecord {
        time_unix_nano: T0 + 123_456_789,
        observed_time_unix_nano: T0 + 123_457_789,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(s("payment declined")),
        }),
        attributes: vec![
            kv("http.status_code", any_value::Value::IntValue(402)),
            kv("retry", any_value::Value::BoolValue(false)),
            kv("ratio", any_value::Value::DoubleValue(0.25)),
            kv(
                "tags",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("a")),
                        },
                        AnyValue {
                            value: Some(s("b")),
                        },
                    ],
                }),
            ),
            kv(
                "user",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("id", s("u1"))],
                }),
            ),
        ],
        trace_id: trace_id(),
        span_id: (0x11..=0x18).collect(),
        flags: 1,
        ..Default::default()
    }
}

fn span() -> Span {
    Span {
        trace_id: trace_id(),
        span_id: (0x21..=0x28).collect(),
        parent_span_id: (0x31..=0x38).collect(),
        trace_state: "vendor=x".into(),
        name: "POST /pay".into(),
        kind: 2,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1_500_000,
        attributes: vec![
            kv("http.request.method", s("POST")),
            kv("http.response.status_code", any_value::Value::IntValue(402)),
        ],
        events: vec![span::Event {
            time_unix_nano: T0 + 1_000_000,
            name: "exception".into(),
            attributes: vec![kv("exception.type", s("CardDeclined"))],
            dropped_attributes_count: 0,
        }],
        links: vec![span::Link {
            trace_id: vec![0xf0; 16],
            span_id: vec![0xf1; 8],
            trace_state: "k=v".into(),
            attributes: vec![kv("link.kind", s("follows"))],
            ..Default::default()
        }],
        status: Some(Status {
            message: "declined".into(),
            code: 2,
        }),
        ..Default::default()
    }
}

fn log_batch() -> Batch {
    Batch::Logs(vec![ResourceLogs {
        resource: Some(resource()),
        scope_logs: vec![ScopeLogs {
            scope: Some(scope()),
            log_records: vec![log_record()],
            schema_url: String::new(),
        }],
        schema_url: SCHEMA.into(),
    }])
}

fn span_batch() -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(resource()),
        scope_spans: vec![ScopeSpans {
            scope: Some(scope()),
            spans: vec![span()],
            schema_url: String::new(),
        }],
        schema_url: SCHEMA.into(),
    }])
}

fn otel_resource_scope() -> (Value, Value) {
    (
        json!({
            "schema_url": SCHEMA,
            "attributes": {
                "service.name": "checkout",
                "service.version": "1.4.2",
                "host.name": "node-7",
                "k8s.pod.name": "checkout-7d9f",
                "deployment.environment": "prod"
            }
        }),
        json!({"name": "io.weft.test", "version": "0.3.0", "attributes": {"lib.flag": true}}),
    )
}

#[test]
fn otel_mapping_snapshot() {
    let enc = Encoder::default();
    let (resource, scope) = otel_resource_scope();

    let logs = enc.documents(&log_batch());
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].index, "logs-checkout.otel-default");
    assert_eq!(logs[0].op, Op::Create);
    assert_eq!(
        logs[0].source,
        json!({
            "@timestamp": "2023-11-14T22:13:20.123456789Z",
            "observed_timestamp": "2023-11-14T22:13:20.123457789Z",
            "data_stream": {"type": "logs", "dataset": "checkout.otel", "namespace": "default"},
            "severity_text": "ERROR",
            "severity_number": 17,
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "span_id": "1112131415161718",
            "attributes": {
                "http.status_code": 402,
                "retry": false,
                "ratio": 0.25,
                "tags": ["a", "b"],
                "user": {"id": "u1"}
            },
            "resource": resource,
            "scope": scope,
            "body": {"text": "payment declined"}
        })
    );

    let spans = enc.documents(&span_batch());
    assert_eq!(spans[0].index, "traces-checkout.otel-default");
    assert_eq!(
        spans[0].source,
        json!({
            "@timestamp": "2023-11-14T22:13:20.000000000Z",
            "data_stream": {"type": "traces", "dataset": "checkout.otel", "namespace": "default"},
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "span_id": "2122232425262728",
            "trace_state": "vendor=x",
            "parent_span_id": "3132333435363738",
            "name": "POST /pay",
            "kind": "Server",
            "duration": 1_500_000,
            "attributes": {"http.request.method": "POST", "http.response.status_code": 402},
            "events": [{
                "@timestamp": "2023-11-14T22:13:20.001000000Z",
                "name": "exception",
                "attributes": {"exception.type": "CardDeclined"}
            }],
            "links": [{
                "trace_id": "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0",
                "span_id": "f1f1f1f1f1f1f1f1",
                "trace_state": "k=v",
                "attributes": {"link.kind": "follows"}
            }],
            "status": {"message": "declined", "code": "Error"},
            "resource": resource,
            "scope": scope
        })
    );
}

#[test]
fn ecs_mapping_snapshot() {
    let enc = Encoder {
        mode: Mode::Ecs,
        ..Default::default()
    };
    let resource = json!({
        "service.name": "checkout",
        "service.version": "1.4.2",
        "host.name": "node-7",
        "host.hostname": "node-7",
        "kubernetes.pod.name": "checkout-7d9f",
        "service.environment": "prod",
    });
    let with_resource = |mut v: Value| {
        let m = v.as_object_mut().unwrap();
        m.extend(resource.as_object().unwrap().clone());
        v
    };

    let logs = enc.documents(&log_batch());
    assert_eq!(logs[0].index, "logs-checkout-default");
    assert_eq!(
        logs[0].source,
        with_resource(json!({
            "@timestamp": "2023-11-14T22:13:20.123456789Z",
            "event.created": "2023-11-14T22:13:20.123457789Z",
            "message": "payment declined",
            "log.level": "ERROR",
            "event.severity": 17,
            "trace.id": "0102030405060708090a0b0c0d0e0f10",
            "span.id": "1112131415161718",
            "log.logger": "io.weft.test",
            "data_stream.type": "logs",
            "data_stream.dataset": "checkout",
            "data_stream.namespace": "default",
            "event.dataset": "checkout",
            "http.status_code": 402,
            "retry": false,
            "ratio": 0.25,
            "tags": ["a", "b"],
            "user": {"id": "u1"}
        }))
    );

    let spans = enc.documents(&span_batch());
    assert_eq!(spans[0].index, "traces-checkout-default");
    assert_eq!(
        spans[0].source,
        with_resource(json!({
            "@timestamp": "2023-11-14T22:13:20.000000000Z",
            "processor.event": "span",
            "trace.id": "0102030405060708090a0b0c0d0e0f10",
            "span.id": "2122232425262728",
            "parent.id": "3132333435363738",
            "span.name": "POST /pay",
            "span.kind": "SERVER",
            "span.duration.us": 1500,
            "event.outcome": "failure",
            "span.status.code": "Error",
            "span.status.message": "declined",
            "service.framework.name": "io.weft.test",
            "service.framework.version": "0.3.0",
            "span.events": [{
                "@timestamp": "2023-11-14T22:13:20.001000000Z",
                "name": "exception",
                "exception.type": "CardDeclined"
            }],
            "span.links": [{"trace.id": "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", "span.id": "f1f1f1f1f1f1f1f1"}],
            "data_stream.type": "traces",
            "data_stream.dataset": "checkout",
            "data_stream.namespace": "default",
            "event.dataset": "checkout",
            "http.request.method": "POST",
            "http.response.status_code": 402
        }))
    );
}

// ---- exporter against the stand-in ----

fn init() {
    weft::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn exporter(cfg: Value, t: &Telemetry) -> Arc<dyn Exporter> {
    let ctx = BuildContext {
        id: "elasticsearch".into(),
        signal: None,
        telemetry: t.clone(),
        shared: Default::default(),
        extensions: Default::default(),
    };
    match weft::exporters::elasticsearch::build(&cfg, &ctx) {
        Ok(e) => e,
        Err(e) => panic!("build: {e}"),
    }
}

/// `n` log records with bodies `line {first}` … `line {first+n-1}`.
fn logs(first: usize, n: usize) -> Batch {
    let recs = (first..first + n)
        .map(|i| LogRecord {
            time_unix_nano: T0 + i as u64,
            body: Some(AnyValue {
                value: Some(s(&format!("line {i}"))),
            }),
            ..Default::default()
        })
        .collect();
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s("checkout"))],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: recs,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

/// Bodies of every stored document, sorted.
fn stored_bodies(es: &Elasticsearch, index: &str) -> Vec<String> {
    let mut v: Vec<String> = es
        .docs(index)
        .iter()
        .map(|d| d["body"]["text"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

fn expected_bodies(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
    v.sort();
    v
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fast_delivery() -> DeliveryConfig {
    DeliveryConfig {
        sending_queue: QueueConfig {
            num_consumers: 4,
            ..Default::default()
        },
        retry_on_failure: RetryConfig {
            initial_interval: Dur::millis(10),
            max_interval: Dur::millis(50),
            max_elapsed_time: Dur::secs(120),
            ..Default::default()
        },
        timeout: Some(Dur::secs(10)),
    }
}

const LOGS_INDEX: &str = "logs-generic.otel-default";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_30_percent_items_rejected_every_document_is_indexed_exactly_once() {
    init();
    let es = Elasticsearch::start(0.3, 42).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    let d = Delivery::start("elasticsearch", exp, fast_delivery(), None, &t)
        .await
        .unwrap();
    let h = d.handle();
    for b in 0..20 {
        h.push(Arc::new(logs(b * 50, 50)), false).await.unwrap();
    }
    wait_for("1000 documents", || es.doc_count() >= 1000).await;
    drop(h);
    d.shutdown(Instant::now() + Duration::from_secs(5)).await;

    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(1000));
    let st = es.stats();
    assert_eq!(st.created, 1000);
    assert!(
        st.rejected_429 > 200,
        "the stand-in rejected {} items",
        st.rejected_429
    );
    // Only rejected items were sent again: no whole-bulk retries, no duplicates.
    assert_eq!(st.conflicts_409, 0);
    let sent_items: usize = es.requests().iter().map(|r| r.items).sum();
    assert_eq!(sent_items, st.created + st.rejected_429);
    assert!(es.requests().iter().all(|r| r.gzip));
    let sent = t.metrics.value(
        "weft_exporter_sent_log_records_total",
        &[("component", "elasticsearch")],
    );
    assert_eq!(sent, Some(1000.0));
}

#[tokio::test]
async fn partial_answer_holds_exactly_the_rejected_items() {
    init();
    let es = Elasticsearch::start(0.5, 7).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()], "compression": "none"}), &t);
    let batch = logs(0, 20);
    let retry = match exp.send(&batch).await {
        Err(ExportError::Partial { retry, .. }) => retry,
        other => panic!("expected a partial failure, got {other:?}"),
    };
    assert_eq!(retry.item_count(), es.stats().rejected_429);
    assert_eq!(retry.item_count() + es.doc_count(), 20);
    es.set_reject_fraction(0.0);
    exp.send(&retry).await.unwrap();
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(20));
    // Sending everything again is harmless: content ids make it a no-op (409 = indexed).
    exp.send(&batch).await.unwrap();
    assert_eq!(es.doc_count(), 20);
    assert_eq!(es.stats().conflicts_409, 20);
}

#[tokio::test]
async fn a_mapping_error_drops_only_that_document() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    let mut batch = logs(0, 5);
    if let Batch::Logs(v) = &mut batch {
        let recs = &mut v[0].scope_logs[0].log_records;
        recs[0]
            .attributes
            .push(kv("code", any_value::Value::IntValue(1)));
        recs[2].attributes.push(kv("code", s("not-a-number")));
    }
    exp.send(&batch).await.unwrap();
    let mut want = expected_bodies(5);
    want.retain(|b| b != "line 2");
    assert_eq!(stored_bodies(&es, LOGS_INDEX), want);
    assert_eq!(es.stats().mapping_errors, 1);
    let dropped = t.metrics.value(
        "weft_exporter_elasticsearch_dropped_log_records_total",
        &[
            ("component", "elasticsearch"),
            ("error_type", "mapper_parsing_exception"),
        ],
    );
    assert_eq!(dropped, Some(1.0));
}

#[tokio::test]
async fn fails_over_when_one_of_two_endpoints_is_down() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    es.require_auth("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let t = Telemetry::new();
    let exp = exporter(
        json!({"endpoints": [dead, es.url()], "auth": {"user": "elastic", "password": "changeme"}}),
        &t,
    );
    exp.start().await.unwrap();
    for b in 0..4 {
        exp.send(&logs(b * 10, 10)).await.unwrap();
    }
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(40));
    assert!(es.requests().iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn refused_credentials_are_permanent_and_named_in_readiness() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    es.require_auth("ApiKey right");
    let t = Telemetry::new();
    t.health.set_started();
    let wrong = exporter(
        json!({"endpoints": [es.url()], "auth": {"api_key": "wrong"}}),
        &t,
    );
    match wrong.send(&logs(0, 3)).await {
        Err(ExportError::Permanent { reason, .. }) => assert_eq!(reason, "http_401"),
        other => panic!("expected permanent, got {other:?}"),
    }
    let r = t.health.readiness();
    assert!(!r.ready);
    assert!(
        r.reasons[0].contains("elasticsearch: Elasticsearch refuses the configured credentials"),
        "{r:?}"
    );
    let right = exporter(json!({"endpoints": [es.url()], "api_key": "right"}), &t);
    right.send(&logs(0, 3)).await.unwrap();
    assert!(t.health.readiness().ready);
    assert_eq!(es.doc_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_429_is_retried_after_retry_after() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);

    es.reject_next_requests(1, 1);
    match exp.send(&logs(0, 10)).await {
        Err(ExportError::Retryable { after, .. }) => {
            assert_eq!(after, Some(Duration::from_secs(1)))
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    assert_eq!(es.doc_count(), 0);

    es.reject_next_requests(1, 1);
    let d = Delivery::start("elasticsearch", exp, fast_delivery(), None, &t)
        .await
        .unwrap();
    d.handle().push(Arc::new(logs(0, 10)), false).await.unwrap();
    wait_for("10 documents", || es.doc_count() >= 10).await;
    d.shutdown(Instant::now() + Duration::from_secs(5)).await;
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(10));
    let reqs = es.requests();
    let i = reqs.iter().rposition(|r| r.status == 429).unwrap();
    let next = &reqs[i + 1];
    // retry_on_failure would wait ~10ms; the server asked for 1s.
    assert!(next.at.duration_since(reqs[i].at) >= Duration::from_millis(990));
}

#[tokio::test]
async fn oversized_bodies_are_split_and_a_single_oversized_document_is_permanent() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    es.set_max_content_length(4000);
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    exp.send(&logs(0, 40)).await.unwrap();
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(40));
    assert!(es.requests().iter().any(|r| r.status == 413));

    let mut big = logs(100, 1);
    if let Batch::Logs(v) = &mut big {
        v[0].scope_logs[0].log_records[0].body = Some(AnyValue {
            value: Some(s(&"x".repeat(5000))),
        });
    }
    match exp.send(&big).await {
        Err(ExportError::Permanent { reason, message }) => {
            assert_eq!(reason, "document_too_large");
            assert!(message.contains("http.max_content_length"), "{message}");
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn static_index_uses_index_actions_and_spans_are_indexed() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    let t = Telemetry::new();
    let exp = exporter(
        json!({"endpoints": [es.url()], "traces_index": "spans", "mapping": {"mode": "ecs"}, "pipeline": "otel"}),
        &t,
    );
    exp.send(&span_batch()).await.unwrap();
    let docs = es.docs("spans");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["span.duration.us"], 1500);
    assert_eq!(docs[0]["trace.id"], "0102030405060708090a0b0c0d0e0f10");
}

// ---- the ready-made pipeline ----

fn pipeline_source() -> Source {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/otlp-to-elasticsearch.yaml"
    );
    Source {
        name: path.into(),
        text: std::fs::read_to_string(path).unwrap(),
    }
}

#[test]
fn pipeline_file_is_valid() {
    weft::config::load_and_validate(&[pipeline_source()], &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_file_carries_otlp_logs_and_spans_into_elasticsearch() {
    init();
    let es = Elasticsearch::start(0.2, 3).await;
    let env: HashMap<&str, String> = HashMap::from([
        ("ELASTICSEARCH_URL", es.url()),
        ("OTLP_GRPC_ENDPOINT", "127.0.0.1:0".to_string()),
        ("OTLP_HTTP_ENDPOINT", "127.0.0.1:0".to_string()),
        ("HEALTH_ENDPOINT", "127.0.0.1:0".to_string()),
    ]);
    let overrides = Source {
        name: "test-overrides.yaml".into(),
        text: "exporters:\n  elasticsearch:\n    retry_on_failure:\n      initial_interval: 10ms\n      max_interval: 50ms\nprocessors:\n  batch:\n    timeout: 20ms\n".into(),
    };
    let cfg =
        weft::config::load_and_validate(&[pipeline_source(), overrides], &|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{e}"));
    let service = weft::pipeline::Service::start(&cfg, Telemetry::new())
        .await
        .unwrap();
    let http = service.bound["otlp/http"];
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/v1/logs", logs(0, 30).encode_proto()),
        ("/v1/traces", span_batch().encode_proto()),
    ] {
        let resp = client
            .post(format!("http://{http}{path}"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    wait_for("31 documents", || es.doc_count() >= 31).await;
    service.shutdown().await;
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(30));
    let spans = es.docs("traces-checkout.otel-default");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["name"], "POST /pay");
    assert_eq!(es.stats().conflicts_409, 0);
}

// ---- metrics ----

fn metric_batch() -> Batch {
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, NumberDataPoint, Summary, SummaryDataPoint,
        number_data_point,
    };
    let point = |i: i64| NumberDataPoint {
        attributes: vec![kv("cpu", any_value::Value::IntValue(i))],
        time_unix_nano: T0,
        value: Some(number_data_point::Value::AsDouble(0.5 + i as f64)),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "system.cpu.utilization".into(),
            unit: "1".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..4).map(point).collect(),
            })),
            ..Default::default()
        },
        Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: T0 - 60_000_000_000,
                    time_unix_nano: T0,
                    count: 6,
                    bucket_counts: vec![1, 0, 3, 2],
                    explicit_bounds: vec![0.1, 0.2, 0.4],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc.latency".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: T0,
                    count: 3,
                    sum: 1.5,
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ];
    Batch::Metrics(vec![ResourceMetrics {
        resource: Some(resource()),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(scope()),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: SCHEMA.into(),
    }])
}

#[test]
fn metric_points_become_one_document_each() {
    let docs = Encoder::default().documents(&metric_batch());
    assert_eq!(docs.len(), 6);
    // Time series data streams choose their own ids.
    assert!(
        docs.iter()
            .all(|d| d.id.is_none() && d.index == "metrics-checkout.otel-default")
    );
    let (resource, scope) = otel_resource_scope();
    assert_eq!(
        docs[4].source,
        json!({
            "@timestamp": "2023-11-14T22:13:20.000000000Z",
            "start_timestamp": "2023-11-14T22:12:20.000000000Z",
            "data_stream": {"type": "metrics", "dataset": "checkout.otel", "namespace": "default"},
            "resource": resource,
            "scope": scope,
            "unit": "s",
            "metrics": {"http.server.request.duration": {"counts": [1, 3, 2], "values": [0.05, 0.30000000000000004, 0.4]}}
        })
    );
    assert_eq!(docs[1].source["metrics"]["system.cpu.utilization"], 1.5);
    assert_eq!(docs[1].source["attributes"]["cpu"], 1);
    assert_eq!(
        docs[5].source["metrics"]["rpc.latency"],
        json!({"sum": 1.5, "value_count": 3})
    );
    let ecs = Encoder {
        mode: Mode::Ecs,
        ..Default::default()
    }
    .documents(&metric_batch());
    assert_eq!(ecs[0].index, "metrics-checkout-default");
    assert_eq!(ecs[0].source["system.cpu.utilization"], 0.5);
    assert_eq!(ecs[0].source["service.name"], "checkout");
}

#[tokio::test]
async fn metric_points_are_retried_individually() {
    init();
    let es = Elasticsearch::start(0.5, 11).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    let mut batch = metric_batch();
    let mut rounds = 0;
    loop {
        match exp.send(&batch).await {
            Ok(()) => break,
            Err(ExportError::Partial { retry, .. }) => {
                assert!(retry.item_count() < batch.item_count());
                batch = retry;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        rounds += 1;
        assert!(rounds < 50);
    }
    assert!(es.stats().rejected_429 > 0);
    assert_eq!(es.docs("metrics-checkout.otel-default").len(), 6);
}
