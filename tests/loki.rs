//! The `loki` exporter against a Loki 3 stand-in (tests/support/loki.rs): wire formats,
//! labels, structured metadata, tenants, Loki's 400/429/5xx answers, and the whole
//! pipeline from an OTLP/HTTP client to stored Loki streams.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use serde_json::json;
use support::loki::{LokiLimits, LokiStandIn};
use weft::admin::{Metrics, Telemetry};
use weft::config::{Source, load_and_validate};
use weft::data::{
    AnyValue, Batch, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs, any_value,
};
use weft::exporters::loki::{LokiExporter, parse};
use weft::exporters::{ExportError, Exporter};
use weft::pipeline::Service;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

use weft::data::kv_str as kv;

fn rec(ts: u64, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: ts,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    }
}

fn logs(resources: Vec<(Vec<KeyValue>, Vec<LogRecord>)>) -> Batch {
    Batch::Logs(
        resources
            .into_iter()
            .map(|(attrs, records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                schema_url: String::new(),
            })
            .collect(),
    )
}

fn exporter(cfg: serde_json::Value) -> (LokiExporter, Metrics) {
    weft::install_crypto_provider();
    let metrics = Metrics::default();
    let cfg = parse(&cfg).unwrap();
    (
        LokiExporter::new("loki", &cfg, metrics.clone()).unwrap(),
        metrics,
    )
}

fn dropped(m: &Metrics, reason: &str) -> f64 {
    m.value(
        "weft_exporter_loki_dropped_log_records_total",
        &[("component", "loki"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn protobuf_push_stores_streams_with_default_labels_and_metadata() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, _) = exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme"}));
    let t = now_ns();
    let mut traced = rec(t + 2, "paid");
    traced.trace_id = vec![0xab; 16];
    traced.attributes.push(kv("order.id", "42"));
    let res = vec![
        kv("service.name", "checkout"),
        kv("k8s.namespace.name", "shop"),
        kv("k8s.pod.name", "checkout-abc"),
    ];
    let batch = logs(vec![
        (res.clone(), vec![traced, rec(t, "started")]),
        (vec![kv("service.name", "cart")], vec![rec(t + 1, "added")]),
    ]);
    exp.send(&batch).await.unwrap();

    let req = &loki.requests()[0];
    assert_eq!(req.content_type.as_deref(), Some("application/x-protobuf"));
    assert_eq!(req.tenant.as_deref(), Some("acme"));
    assert_eq!(req.status, 204);
    let streams = loki.streams("acme");
    assert_eq!(streams.len(), 2);
    let checkout = streams
        .iter()
        .find(|s| s.labels["service_name"] == "checkout")
        .unwrap();
    let names: Vec<&str> = checkout.labels.keys().map(String::as_str).collect();
    assert_eq!(names, ["k8s_namespace_name", "level", "service_name"]);
    let lines: Vec<&str> = checkout.entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, [r#"{"body":"started"}"#, r#"{"body":"paid"}"#]);
    let md = &checkout.entries[1].metadata;
    assert!(md.contains(&("trace_id".into(), "ab".repeat(16))));
    assert!(md.contains(&("order_id".into(), "42".into())));
    assert!(md.contains(&("k8s_pod_name".into(), "checkout-abc".into())));
}

#[tokio::test]
async fn json_with_gzip_is_decoded_like_loki_and_auth_is_sent() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, _) = exporter(json!({
        "endpoint": loki.endpoint(), "tenant_id": "t1", "encoding": "json", "compression": "gzip",
        "line_format": "raw", "auth": {"bearer": {"token": "s3cret"}}
    }));
    exp.send(&logs(vec![(
        vec![kv("service.name", "api")],
        vec![rec(now_ns(), "hello")],
    )]))
    .await
    .unwrap();
    let req = &loki.requests()[0];
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    assert_eq!(req.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(req.authorization.as_deref(), Some("Bearer s3cret"));
    let s = &loki.streams("t1")[0];
    assert_eq!(s.entries[0].line, "hello");
    assert_eq!(s.labels["service_name"], "api");
    // Structured metadata travels as the third element of each JSON value.
    assert!(
        s.entries[0]
            .metadata
            .contains(&("severity_text".into(), "INFO".into()))
    );
}

#[tokio::test]
async fn records_are_grouped_per_tenant_from_an_attribute() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, _) = exporter(json!({
        "endpoint": loki.endpoint(), "tenant_id": "shared",
        "tenant": {"source": "attribute", "key": "tenant"}
    }));
    let t = now_ns();
    let mut a = rec(t, "for a");
    a.attributes.push(kv("tenant", "team-a"));
    let b = rec(t, "for b");
    let batch = logs(vec![
        (
            vec![kv("service.name", "api")],
            vec![a, rec(t + 1, "no tenant")],
        ),
        (
            vec![kv("service.name", "api"), kv("tenant", "team-b")],
            vec![b],
        ),
    ]);
    exp.send(&batch).await.unwrap();
    assert_eq!(loki.tenants(), ["shared", "team-a", "team-b"]);
    let mut seen: Vec<String> = loki
        .requests()
        .iter()
        .filter_map(|r| r.tenant.clone())
        .collect();
    seen.sort();
    assert_eq!(seen, ["shared", "team-a", "team-b"]);
    assert_eq!(
        loki.streams("team-a")[0].entries[0].line,
        r#"{"body":"for a"}"#
    );
}

#[tokio::test]
async fn entries_loki_refuses_are_counted_and_the_rest_is_not_resent() {
    let loki = LokiStandIn::start(LokiLimits {
        max_line_size: 100,
        ..LokiLimits::default()
    })
    .await;
    let (exp, metrics) =
        exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme", "line_format": "raw"}));
    let t = now_ns();
    let ten_days_ago = t - 10 * 24 * 3600 * 1_000_000_000;
    let batch = logs(vec![(
        vec![kv("service.name", "api")],
        vec![
            rec(t, "fine"),
            rec(ten_days_ago, "ancient"),
            rec(t + 1, &"x".repeat(200)),
            rec(t + 2, "also fine"),
        ],
    )]);
    match exp.send(&batch).await {
        Err(ExportError::Partial { retry, .. }) => assert!(retry.is_empty(), "nothing is retried"),
        other => panic!("expected a partial answer, got {other:?}"),
    }
    let stored: Vec<String> = loki.streams("acme")[0]
        .entries
        .iter()
        .map(|e| e.line.clone())
        .collect();
    assert_eq!(stored, ["fine", "also fine"]);
    assert_eq!(loki.requests().len(), 1);
    assert_eq!(loki.requests()[0].status, 400);
    assert_eq!(dropped(&metrics, "greater_than_max_sample_age"), 1.0);
    assert_eq!(dropped(&metrics, "line_too_long"), 1.0);
}

#[tokio::test]
async fn ordering_errors_from_the_ingester_are_permanent_for_those_entries() {
    // Unordered writes off: an entry older than the stream's newest is refused.
    let loki = LokiStandIn::start(LokiLimits {
        unordered_writes: false,
        ..LokiLimits::default()
    })
    .await;
    let (exp, metrics) = exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme"}));
    let t = now_ns();
    let res = vec![kv("service.name", "api")];
    // Within one batch the exporter sorts, so Loki sees them in order.
    exp.send(&logs(vec![(
        res.clone(),
        vec![rec(t + 10, "b"), rec(t, "a")],
    )]))
    .await
    .unwrap();
    let late = logs(vec![(
        res.clone(),
        vec![rec(t + 5, "late"), rec(t + 20, "c")],
    )]);
    assert!(
        matches!(exp.send(&late).await, Err(ExportError::Partial { ref retry, .. }) if retry.is_empty())
    );
    assert_eq!(dropped(&metrics, "out_of_order"), 1.0);
    assert_eq!(loki.streams("acme")[0].entries.len(), 3);

    // Unordered writes on (Loki's default): only entries behind the window are refused.
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, metrics) = exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme"}));
    exp.send(&logs(vec![(res.clone(), vec![rec(t, "now")])]))
        .await
        .unwrap();
    let hour = 3600 * 1_000_000_000u64;
    let older = logs(vec![(
        res,
        vec![
            rec(t - 2 * hour, "too far"),
            rec(t - hour / 2, "within window"),
        ],
    )]);
    assert!(matches!(
        exp.send(&older).await,
        Err(ExportError::Partial { .. })
    ));
    assert_eq!(dropped(&metrics, "too_far_behind"), 1.0);
    assert_eq!(loki.streams("acme")[0].entries.len(), 2);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable_with_retry_after() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, _) = exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme"}));
    let batch = logs(vec![(
        vec![kv("service.name", "api")],
        vec![rec(now_ns(), "x")],
    )]);
    loki.fail_next(429, 1, Some(7));
    loki.fail_next(500, 1, None);
    match exp.send(&batch).await {
        Err(ExportError::Retryable { after, .. }) => {
            assert_eq!(after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        exp.send(&batch).await,
        Err(ExportError::Retryable { after: None, .. })
    ));
    exp.send(&batch).await.unwrap();
    assert_eq!(loki.entry_count(), 1);
}

#[tokio::test]
async fn a_failing_tenant_is_retried_alone() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, _) = exporter(
        json!({"endpoint": loki.endpoint(), "tenant": {"source": "attribute", "key": "tenant"}}),
    );
    let t = now_ns();
    let batch = logs(vec![
        (
            vec![kv("service.name", "a"), kv("tenant", "team-a")],
            vec![rec(t, "a1"), rec(t + 1, "a2")],
        ),
        (
            vec![kv("service.name", "b"), kv("tenant", "team-b")],
            vec![rec(t, "b1")],
        ),
    ]);
    loki.fail_next(503, 1, Some(2)); // tenants go out in name order: team-a fails
    let retry = match exp.send(&batch).await {
        Err(ExportError::Partial { retry, after, .. }) => {
            assert_eq!(after, Some(Duration::from_secs(2)));
            retry
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(retry.item_count(), 2);
    assert_eq!(loki.tenants(), ["team-b"]);
    exp.send(&retry).await.unwrap();
    assert_eq!(loki.tenants(), ["team-a", "team-b"]);
    assert_eq!(loki.entry_count(), 3);
}

#[tokio::test]
async fn oversized_structured_metadata_is_truncated_and_accepted() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, metrics) = exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme"}));
    let mut r = rec(now_ns(), "boom");
    r.attributes
        .push(kv("exception.stacktrace", &"at frame\n".repeat(20_000)));
    // A label value over Loki's 2048 bytes would get the whole stream refused.
    let long_service = "s".repeat(3000);
    exp.send(&logs(vec![(
        vec![kv("service.name", &long_service)],
        vec![r],
    )]))
    .await
    .unwrap();
    let e = &loki.streams("acme")[0].entries[0];
    let size: usize = e.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(size <= 64 * 1024);
    let truncations = metrics.value(
        "weft_exporter_loki_truncations_total",
        &[
            ("component", "loki"),
            ("reason", "structured_metadata_size"),
        ],
    );
    assert_eq!(truncations, Some(1.0));
    assert_eq!(loki.streams("acme")[0].labels["service_name"].len(), 2048);
    let label_truncations = metrics.value(
        "weft_exporter_loki_truncations_total",
        &[("component", "loki"), ("reason", "label_value")],
    );
    assert_eq!(label_truncations, Some(1.0));
}

#[tokio::test]
async fn a_request_loki_cannot_read_is_permanent() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    // No tenant while Loki runs with auth_enabled: 401, permanent.
    let (exp, metrics) = exporter(json!({"endpoint": loki.endpoint()}));
    let batch = logs(vec![(
        vec![kv("service.name", "api")],
        vec![rec(now_ns(), "x")],
    )]);
    assert!(
        matches!(exp.send(&batch).await, Err(ExportError::Permanent { ref reason, .. }) if reason == "http_401")
    );
    assert_eq!(dropped(&metrics, "http_401"), 1.0);
}

fn pipeline_yaml(loki: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: 10ms
exporters:
  loki:
    endpoint: {loki}
    tenant_id: acme
    labels:
      resource:
        k8s.pod.name: pod
    retry_on_failure:
      initial_interval: 10ms
      max_interval: 20ms
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [loki]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_http_to_loki_through_the_whole_pipeline() {
    weft::install_crypto_provider();
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    loki.fail_next(503, 1, None); // the delivery layer retries it
    let cfg = load_and_validate(
        &[Source {
            name: "test.yaml".into(),
            text: pipeline_yaml(&loki.endpoint()),
        }],
        &|_| None,
    )
    .unwrap();
    let svc = Service::start(&cfg, Telemetry::new()).await.unwrap();
    let addr = svc.bound["otlp/http"];

    let t = now_ns();
    let Batch::Logs(resource_logs) = logs(vec![(
        vec![
            kv("service.name", "checkout"),
            kv("k8s.pod.name", "checkout-1"),
        ],
        vec![rec(t + 1, "second"), rec(t, "first")],
    )]) else {
        unreachable!()
    };
    let body = ExportLogsServiceRequest { resource_logs }.encode_to_vec();
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Wait for delivery (bounded; no timing is asserted).
    for _ in 0..500 {
        if loki.entry_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let streams = loki.streams("acme");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].labels["pod"], "checkout-1");
    assert_eq!(streams[0].labels["service_name"], "checkout");
    let lines: Vec<&str> = streams[0].entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, [r#"{"body":"first"}"#, r#"{"body":"second"}"#]);
    let statuses: Vec<u16> = loki.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 204]);
    svc.shutdown().await;
}

#[test]
fn the_shipped_otlp_to_loki_pipeline_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/otlp-to-loki.yaml"
    ))
    .unwrap();
    let cfg = load_and_validate(
        &[Source {
            name: "pipelines/otlp-to-loki.yaml".into(),
            text,
        }],
        &|_| None,
    );
    assert!(cfg.is_ok(), "{:?}", cfg.err());
}

#[tokio::test]
async fn label_values_with_quotes_backslashes_and_newlines_survive_the_label_string() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, _) = exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme"}));
    let odd = "say \"hi\"\\n\nnext\tline";
    exp.send(&logs(vec![(
        vec![kv("service.name", odd)],
        vec![rec(now_ns(), "x")],
    )]))
    .await
    .unwrap();
    assert_eq!(loki.streams("acme")[0].labels["service_name"], odd);
}

#[test]
fn config_errors_name_the_key_and_suggest_the_fix() {
    let yaml = r#"
receivers:
  otlp:
    protocols:
      http:
exporters:
  loki:
    endpoint: http://loki:3100
    line_fromat: raw
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [loki]
"#;
    let errs = load_and_validate(
        &[Source {
            name: "bad.yaml".into(),
            text: yaml.into(),
        }],
        &|_| None,
    )
    .unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("line_fromat"), "{text}");
    assert!(text.contains("line_format"), "{text}");
}

#[tokio::test]
async fn lifecycle_through_the_registry() {
    use weft::components::{BuildContext, Constructor, Kind, Lookup, SharedState, lookup};
    weft::install_crypto_provider();
    let Lookup::Found(f) = lookup(Kind::Exporter, "loki") else {
        panic!("loki is not registered")
    };
    assert_eq!(f.signals, &[weft::data::Signal::Logs]);
    let cfg = json!({"endpoint": "http://127.0.0.1:1", "tenant_id": "acme"});
    (f.validate)(&cfg).unwrap();
    assert!((f.validate)(&json!({})).is_err());
    let Constructor::Exporter(build) = f.construct else {
        panic!("not an exporter")
    };
    let ctx = BuildContext {
        id: "loki".into(),
        signal: None,
        telemetry: Telemetry::new(),
        shared: SharedState::default(),
        extensions: Default::default(),
    };
    // Shut down without start, then a normal start / send / shutdown.
    build(&cfg, &ctx).unwrap().shutdown().await;
    let e = build(&cfg, &ctx).unwrap();
    e.start().await.unwrap();
    let batch = logs(vec![(
        vec![kv("service.name", "api")],
        vec![rec(now_ns(), "x")],
    )]);
    // Nobody listens on port 1: a transport error, retryable.
    assert!(matches!(
        e.send(&batch).await,
        Err(ExportError::Retryable { .. })
    ));
    assert!(matches!(
        e.send(&Batch::Traces(vec![])).await,
        Err(ExportError::Permanent { .. })
    ));
    e.shutdown().await;
}

/// `batch` as the forwarding fast path hands it over: request bytes, not decoded; the
/// body `zzzz` of any record is made invalid UTF-8 (which the receiver's scan lets pass).
fn raw_with_bad_utf8(batch: &Batch) -> Batch {
    let mut bytes = batch.encode_proto();
    while let Some(i) = bytes.windows(4).position(|w| w == b"zzzz") {
        bytes[i] = 0xff;
    }
    Batch::from_proto_bytes(weft::data::Signal::Logs, bytes.into()).unwrap()
}

#[tokio::test]
async fn raw_batches_are_written_from_their_bytes_and_an_unreadable_resource_is_dropped_and_counted()
 {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let (exp, metrics) = exporter(json!({"endpoint": loki.endpoint(), "tenant_id": "acme"}));
    assert!(exp.accepts_raw());
    let t = now_ns();
    let batch = logs(vec![
        (
            vec![kv("service.name", "a")],
            vec![rec(t, "one"), rec(t + 1, "two")],
        ),
        (
            vec![kv("service.name", "b")],
            vec![rec(t, "zzzz"), rec(t, "ok")],
        ),
        (vec![kv("service.name", "c")], vec![rec(t + 2, "three")]),
    ]);
    exp.send(&raw_with_bad_utf8(&batch)).await.unwrap();
    assert_eq!(loki.entry_count(), 3, "the readable resources are stored");
    let services: Vec<String> = loki
        .streams("acme")
        .iter()
        .map(|s| s.labels["service_name"].clone())
        .collect();
    assert_eq!(services, ["a", "c"]);
    assert_eq!(dropped(&metrics, "malformed"), 2.0);
    // Nothing readable: a permanent error, counted too.
    let bad = logs(vec![(vec![kv("service.name", "b")], vec![rec(t, "zzzz")])]);
    let r = exp.send(&raw_with_bad_utf8(&bad)).await;
    assert!(
        matches!(r, Err(ExportError::Permanent { ref reason, .. }) if reason == "malformed"),
        "{r:?}"
    );
    assert_eq!(dropped(&metrics, "malformed"), 3.0);
}

/// POSTs a logs request as OTLP/HTTP protobuf, with `X-Scope-OrgID` when given.
async fn post_logs(base: &str, org: Option<&str>, body: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/logs"))
        .header("content-type", "application/x-protobuf");
    if let Some(org) = org {
        req = req.header("X-Scope-OrgID", org);
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

/// The shipped multi-tenant gateway (`pipelines/loki-multitenant.yaml`): each client's
/// logs land in the Loki tenant its `X-Scope-OrgID` header (HTTP) or metadata (gRPC)
/// names, also when the application set a `loki.tenant` of its own; without the header
/// they go to the default tenant, never to the one the data claims. A shop origin passes
/// the CORS preflight, another origin does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_multitenant_pipeline_puts_each_client_in_its_tenant() {
    let loki = LokiStandIn::start(LokiLimits::default()).await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/loki-multitenant.yaml"
    ))
    .unwrap();
    let yaml = text
        .replace("0.0.0.0:4317", "127.0.0.1:0")
        .replace("0.0.0.0:4318", "127.0.0.1:0")
        .replace("0.0.0.0:13133", "127.0.0.1:0")
        .replace(
            "${env:LOKI_ENDPOINT:-http://localhost:3100}",
            &loki.endpoint(),
        );
    assert!(yaml.contains(&loki.endpoint()));
    let w = support::weft::start(&yaml).await;
    let body = |claimed: Option<&str>, line: &str| {
        let mut attrs = vec![kv("service.name", "checkout")];
        if let Some(t) = claimed {
            attrs.push(kv("loki.tenant", t));
        }
        logs(vec![(attrs, vec![rec(now_ns(), line)])]).encode_proto()
    };
    let http = w.http();
    assert_eq!(post_logs(&http, Some("acme"), body(None, "a1")).await, 200);
    assert_eq!(
        post_logs(&http, Some("acme"), body(Some("globex"), "a2")).await,
        200
    );
    assert_eq!(post_logs(&http, None, body(Some("acme"), "n1")).await, 200);
    support::weft::grpc_export(
        w.grpc(),
        weft::data::Signal::Logs,
        body(None, "g1"),
        &[("x-scope-orgid", "globex")],
        false,
    )
    .await
    .unwrap();
    // Wait for delivery (the pipeline batches for up to 1 s; bounded, no timing asserted).
    for _ in 0..1000 {
        if loki.entry_count() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut tenants = loki.tenants();
    tenants.sort();
    assert_eq!(tenants, ["acme", "anonymous", "globex"]);
    let lines = |tenant: &str| -> Vec<String> {
        let mut l: Vec<String> = loki
            .streams(tenant)
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.line.clone()))
            .collect();
        l.sort();
        l
    };
    assert_eq!(lines("acme"), [r#"{"body":"a1"}"#, r#"{"body":"a2"}"#]);
    assert_eq!(lines("globex"), [r#"{"body":"g1"}"#]);
    assert_eq!(lines("anonymous"), [r#"{"body":"n1"}"#]);
    // Browsers: a shop origin may send with the tenant header, another origin may not.
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{http}/v1/logs"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,x-scope-orgid",
            )
            .send()
    };
    let ok = preflight("https://www.shop.example").await.unwrap();
    assert_eq!(ok.status().as_u16(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://www.shop.example"
    );
    let other = preflight("https://www.evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    w.service.shutdown().await;
}
