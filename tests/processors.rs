//! filter, attributes and resource in a running weft: OTLP/HTTP in, the otlp exporter out
//! to an in-process backend. Health-probe spans and DEBUG logs are dropped (and counted),
//! attributes are rewritten, the resource is stamped; a condition failing under
//! `error_mode: propagate` turns the request into a 400.

mod support;

use std::time::Duration;

use support::otlp_sink::Sink;
use support::weft::{config, post, start};
use weft::data::*;

const PROCESSORS: &str = r#"  filter/health:
    traces:
      span:
        - 'attributes["http.route"] == "/health/live"'
        - 'IsMatch(attributes["url.path"], "^/health")'
    logs:
      log_record:
        - 'severity_number < SEVERITY_NUMBER_INFO'
  filter/strict:
    error_mode: propagate
    trace_conditions:
      - 'HasPrefix(span.attributes["tenant"], "test-")'
  attributes/scrub:
    actions:
      - key: user.email
        action: hash
      - key: http.request.method
        from_attribute: http.method
        action: insert
      - key: http.method
        action: delete
  resource:
    attributes:
      - key: deployment.environment.name
        value: production
        action: upsert
"#;

use weft::data::kv_str as kv;

fn span(id: u8, name: &str, attrs: &[(&str, &str)]) -> Span {
    Span {
        trace_id: vec![9; 16],
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", "checkout")],
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_attributes_and_resource_in_a_pipeline() {
    let sink = Sink::start().await;
    let exporters = format!(
        "  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n",
        sink.endpoint()
    );
    let pipelines = "    traces:\n      receivers: [otlp]\n      processors: [filter/health, attributes/scrub, resource]\n      exporters: [otlp]\n    traces/strict:\n      receivers: [otlp]\n      processors: [filter/strict]\n      exporters: [otlp]\n    logs:\n      receivers: [otlp]\n      processors: [filter/health, attributes/scrub, resource]\n      exporters: [otlp]\n";
    let weft = start(&config(PROCESSORS, &exporters, pipelines)).await;

    let traces = Batch::Traces(vec![ResourceSpans {
        resource: resource(),
        scope_spans: vec![ScopeSpans {
            spans: vec![
                span(
                    1,
                    "GET /health/live",
                    &[("http.route", "/health/live"), ("tenant", "a")],
                ),
                span(
                    2,
                    "GET /health/ready",
                    &[("url.path", "/health/ready"), ("tenant", "a")],
                ),
                span(
                    3,
                    "POST /orders",
                    &[
                        ("http.route", "/orders"),
                        ("url.path", "/orders"),
                        ("http.method", "POST"),
                        ("user.email", "abc"),
                        ("tenant", "a"),
                    ],
                ),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    assert_eq!(post(&weft.http(), &traces).await, 200);
    // The main pipeline keeps one span, traces/strict keeps all three.
    assert_eq!(
        weft.metric("weft_processor_dropped_spans_total", "filter/health"),
        2.0
    );
    assert_eq!(sink.wait_for_items(4, Duration::from_secs(20)).await, 4);

    let mut seen = Vec::new();
    for b in sink.batches() {
        let Batch::Traces(v) = b else { continue };
        for rs in v {
            let env = rs.resource.as_ref().and_then(|r| {
                attr_str(&r.attributes, "deployment.environment.name").map(str::to_string)
            });
            for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                seen.push((s.name.clone(), env.clone(), s));
            }
        }
    }
    let scrubbed: Vec<_> = seen.iter().filter(|(_, env, _)| env.is_some()).collect();
    assert_eq!(
        scrubbed.len(),
        1,
        "only the main pipeline stamps the resource"
    );
    let (name, _, s) = scrubbed[0];
    assert_eq!(name, "POST /orders");
    assert_eq!(
        attr_str(&s.attributes, "user.email"),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(attr_str(&s.attributes, "http.request.method"), Some("POST"));
    assert_eq!(attr_str(&s.attributes, "http.method"), None);
    assert_eq!(seen.len(), 4);

    // A condition that fails under error_mode: propagate rejects the request (400).
    let no_tenant = Batch::Traces(vec![ResourceSpans {
        resource: resource(),
        scope_spans: vec![ScopeSpans {
            spans: vec![span(4, "GET /x", &[])],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    assert_eq!(post(&weft.http(), &no_tenant).await, 400);
    // The main pipeline, which has no such condition, still forwards that span.
    assert_eq!(sink.wait_for_items(5, Duration::from_secs(20)).await, 5);

    let log = |sev: i32, body: &str| LogRecord {
        severity_number: sev,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes: vec![kv("user.email", "abc")],
        ..Default::default()
    };
    let logs = Batch::Logs(vec![ResourceLogs {
        resource: resource(),
        scope_logs: vec![ScopeLogs {
            log_records: vec![log(5, "debug noise"), log(13, "disk almost full")],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    assert_eq!(post(&weft.http(), &logs).await, 200);
    assert_eq!(
        weft.metric("weft_processor_dropped_log_records_total", "filter/health"),
        1.0
    );
    assert_eq!(sink.wait_for_items(6, Duration::from_secs(20)).await, 6);
    let kept: Vec<LogRecord> = sink
        .batches()
        .into_iter()
        .filter_map(|b| match b {
            Batch::Logs(v) => Some(v),
            _ => None,
        })
        .flatten()
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].severity_number, 13);
    assert_ne!(attr_str(&kept[0].attributes, "user.email"), Some("abc"));
}
