use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::*;
use crate::components::SharedState;
use crate::data::{
    AnyValue, LogRecord, Metric, Resource, ResourceLogs, ResourceMetrics, ResourceSpans, ScopeLogs,
    ScopeMetrics, ScopeSpans, Span, any_value, metric, span,
};
use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, number_data_point};

use crate::data::kv_str as kv;

fn ctx(signal: Signal) -> BuildContext {
    BuildContext {
        id: "filter/test".into(),
        signal: Some(signal),
        telemetry: Telemetry::new(),
        shared: SharedState::default(),
        extensions: Arc::new(HashMap::new()),
    }
}

fn span(name: &str, attrs: &[(&str, &str)]) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        kind: 2,
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn span_names(out: &[Batch]) -> Vec<String> {
    out.iter()
        .flat_map(|b| match b {
            Batch::Traces(v) => v.clone(),
            _ => Vec::new(),
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .map(|s| s.name)
        .collect()
}

fn run(
    config: serde_json::Value,
    c: &BuildContext,
    batch: Batch,
) -> Result<Vec<Batch>, ProcessorError> {
    validate(&config).expect("valid config");
    let mut p = build(&config, c).expect("builds");
    p.process(batch, Instant::now())
}

fn dropped(c: &BuildContext, what: &str) -> f64 {
    c.telemetry
        .metrics
        .value(
            &format!("weft_processor_dropped_{what}_total"),
            &[("component", "filter/test")],
        )
        .unwrap_or(0.0)
}

fn probe_batch() -> Batch {
    traces(
        "checkout",
        vec![
            span(
                "GET /health/live",
                &[("http.route", "/health/live"), ("url.path", "/health/live")],
            ),
            span("GET /health/ready", &[("url.path", "/health/ready")]),
            span(
                "POST /orders",
                &[("http.route", "/orders"), ("url.path", "/orders")],
            ),
        ],
    )
}

#[test]
fn drops_health_probe_spans_and_counts_them() {
    let c = ctx(Signal::Traces);
    let config = json!({"traces": {"span": [
        "attributes[\"http.route\"] == \"/health/live\"",
        "IsMatch(attributes[\"url.path\"], \"^/health\")",
    ]}});
    let out = run(config, &c, probe_batch()).unwrap();
    assert_eq!(span_names(&out), vec!["POST /orders"]);
    assert_eq!(dropped(&c, "spans"), 2.0);
}

#[test]
fn newer_prefixed_and_flat_forms() {
    let c = ctx(Signal::Traces);
    let config =
        json!({"traces": {"span": ["span.attributes[\"http.route\"] == \"/health/live\""]}});
    assert_eq!(
        span_names(&run(config, &c, probe_batch()).unwrap()).len(),
        2
    );

    let config = json!({"trace_conditions": [
        "span.attributes[\"http.route\"] == \"/health/live\"",
        {"context": "span", "conditions": ["IsRootSpan() and IsMatch(span.attributes[\"url.path\"], \"^/health/ready\")"]},
    ]});
    assert_eq!(
        span_names(&run(config, &c, probe_batch()).unwrap()),
        vec!["POST /orders"]
    );
}

#[test]
fn resource_condition_drops_the_whole_resource() {
    let c = ctx(Signal::Traces);
    let config =
        json!({"trace_conditions": ["resource.attributes[\"service.name\"] == \"checkout\""]});
    let out = run(config, &c, probe_batch()).unwrap();
    assert!(out.is_empty(), "nothing left means no batch");
    assert_eq!(dropped(&c, "spans"), 3.0);
}

#[test]
fn drops_span_events_but_keeps_the_span() {
    let c = ctx(Signal::Traces);
    let mut s = span("GET /x", &[]);
    s.events = vec![
        span::Event {
            name: "cache.miss".into(),
            ..Default::default()
        },
        span::Event {
            name: "exception".into(),
            ..Default::default()
        },
    ];
    let config = json!({"traces": {"spanevent": ["name == \"cache.miss\""]}});
    let out = run(config, &c, traces("svc", vec![s])).unwrap();
    let Batch::Traces(v) = &out[0] else { panic!() };
    let kept = &v[0].scope_spans[0].spans[0];
    assert_eq!(kept.events.len(), 1);
    assert_eq!(kept.events[0].name, "exception");
    assert_eq!(dropped(&c, "span_events"), 1.0);
    assert_eq!(dropped(&c, "spans"), 0.0);
}

#[test]
fn drops_logs_below_a_severity() {
    let c = ctx(Signal::Logs);
    let log = |n: i32| LogRecord {
        severity_number: n,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!("sev {n}"))),
        }),
        ..Default::default()
    };
    let batch = Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![log(5), log(9), log(13), log(17)],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let config = json!({"logs": {"log_record": ["severity_number < SEVERITY_NUMBER_WARN"]}});
    let out = run(config, &c, batch).unwrap();
    let Batch::Logs(v) = &out[0] else { panic!() };
    let kept: Vec<i32> = v[0].scope_logs[0]
        .log_records
        .iter()
        .map(|l| l.severity_number)
        .collect();
    assert_eq!(kept, vec![13, 17]);
    assert_eq!(dropped(&c, "log_records"), 2.0);
}

fn gauge(name: &str, values: &[i64]) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: values
                .iter()
                .map(|v| NumberDataPoint {
                    value: Some(number_data_point::Value::AsInt(*v)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn metrics_batch() -> Batch {
    Batch::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                gauge("http.server.duration", &[1, 2]),
                gauge("jvm.gc.count", &[3]),
                gauge("queue.depth", &[0, 7, 0]),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn metric_points_by_name(out: &[Batch]) -> Vec<(String, usize)> {
    let Some(Batch::Metrics(v)) = out.first() else {
        return Vec::new();
    };
    v[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| (m.name.clone(), crate::data::metric_points(m)))
        .collect()
}

#[test]
fn drops_metrics_by_name_and_data_points_by_value() {
    let c = ctx(Signal::Metrics);
    let config = json!({"metrics": {
        "metric": ["IsMatch(name, \"^jvm\\\\.\")"],
        "datapoint": ["value_int == 0", "metric.name == \"http.server.duration\" and value_int < 5"],
    }});
    let out = run(config, &c, metrics_batch()).unwrap();
    // jvm.* dropped by name; http.server.duration lost both points so it goes too;
    // queue.depth keeps its non-zero point.
    assert_eq!(
        metric_points_by_name(&out),
        vec![("queue.depth".to_string(), 1)]
    );
    assert_eq!(dropped(&c, "metric_points"), 5.0);
}

#[test]
fn metric_conditions_flat_form() {
    let c = ctx(Signal::Metrics);
    let config = json!({"metric_conditions": ["metric.name == \"jvm.gc.count\"", "datapoint.value_int == 7"]});
    let out = run(config, &c, metrics_batch()).unwrap();
    assert_eq!(
        metric_points_by_name(&out),
        vec![
            ("http.server.duration".to_string(), 2),
            ("queue.depth".to_string(), 2)
        ]
    );
}

#[test]
fn other_signals_pass_through() {
    let c = ctx(Signal::Logs);
    let config = json!({"traces": {"span": ["true"]}});
    let batch = Batch::Logs(vec![ResourceLogs::default()]);
    let out = run(config, &c, batch.clone()).unwrap();
    assert_eq!(out, vec![batch]);
}

const FAILING: &str = "HasPrefix(attributes[\"missing\"], \"x\")";

#[test]
fn error_mode_ignore_skips_the_failing_condition() {
    let c = ctx(Signal::Traces);
    // The default is ignore: the failing condition counts as false, the next still applies.
    let config = json!({"traces": {"span": [FAILING, "name == \"POST /orders\""]}});
    let out = run(config, &c, probe_batch()).unwrap();
    assert_eq!(
        span_names(&out),
        vec!["GET /health/live", "GET /health/ready"]
    );
    let config = json!({"error_mode": "silent", "traces": {"span": [FAILING]}});
    assert_eq!(
        span_names(&run(config, &c, probe_batch()).unwrap()).len(),
        3
    );
}

#[test]
fn error_mode_propagate_fails_the_batch() {
    let c = ctx(Signal::Traces);
    let config = json!({"error_mode": "propagate", "traces": {"span": [FAILING]}});
    let err = run(config, &c, probe_batch()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("filter/test") && msg.contains("traces.span.0") && msg.contains("HasPrefix"),
        "{msg}"
    );
    // A group's error_mode overrides the top-level one.
    let config = json!({"error_mode": "propagate", "trace_conditions": [
        {"error_mode": "ignore", "conditions": ["HasPrefix(span.attributes[\"missing\"], \"x\")"]}
    ]});
    assert_eq!(
        span_names(&run(config, &c, probe_batch()).unwrap()).len(),
        3
    );
}

fn invalid(config: serde_json::Value) -> FieldError {
    validate(&config).expect_err("invalid config")
}

#[test]
fn config_errors_name_the_construct_and_key_path() {
    let e = invalid(json!({"traces": {"span": ["name == \"a\"", "IsMach(name, \"x\")"]}}));
    assert_eq!(e.path, vec!["traces", "span", "1"]);
    assert!(e.message.contains("IsMach()"), "{}", e.message);
    assert_eq!(e.suggestion.as_deref(), Some("IsMatch"));

    let e = invalid(json!({"logs": {"log_record": ["severity_nmber < 9"]}}));
    assert_eq!(e.path, vec!["logs", "log_record", "0"]);
    assert!(e.message.contains("severity_nmber"), "{}", e.message);
    assert_eq!(e.suggestion.as_deref(), Some("severity_number"));

    let e = invalid(json!({"traces": {"span": ["IsMatch(name, \"([a-z\")"]}}));
    assert!(
        e.message.contains("invalid regex") && e.message.contains("([a-z"),
        "{}",
        e.message
    );

    let e = invalid(json!({"metrics": {"metric": ["name == "]}}));
    assert!(e.message.contains("syntax error"), "{}", e.message);

    let e = invalid(json!({"trace_conditions": ["attributes[\"x\"] == 1"]}));
    assert_eq!(e.path, vec!["trace_conditions", "0"]);
    assert!(e.message.contains("context prefix"), "{}", e.message);

    let e = invalid(json!({"trace_conditions": [{"context": "log", "conditions": ["true"]}]}));
    assert_eq!(e.path, vec!["trace_conditions", "0", "context"]);

    let e = invalid(json!({"trace_conditions": [{"condition": ["true"]}]}));
    assert_eq!(e.suggestion.as_deref(), Some("conditions"));

    let e = invalid(json!({"error_mode": "ignroe"}));
    assert_eq!(e.suggestion.as_deref(), Some("ignore"));

    let e = invalid(json!({"traces": {"spans": []}}));
    assert!(e.message.contains("unknown field"), "{}", e.message);

    let e = invalid(json!({"logs": {"include": {"match_type": "strict"}}}));
    assert_eq!(e.path, vec!["logs", "include"]);
    assert!(e.message.contains("OTTL"), "{}", e.message);
}

#[test]
fn empty_config_is_a_passthrough() {
    let c = ctx(Signal::Traces);
    let p = build(&serde_json::Value::Null, &c).unwrap();
    assert!(!p.touches_contents());
    let out = run(json!({}), &c, probe_batch()).unwrap();
    assert_eq!(span_names(&out).len(), 3);
}

#[test]
fn collector_documentation_examples_validate() {
    // The filterprocessor README's example.
    validate(&json!({
        "error_mode": "ignore",
        "traces": {
            "span": [
                "attributes[\"container.name\"] == \"app_container_1\"",
                "resource.attributes[\"host.name\"] == \"localhost\"",
                "name == \"app_3\"",
            ],
            "spanevent": ["attributes[\"grpc\"] == true", "IsMatch(name, \".*grpc.*\")"],
        },
        "metrics": {
            "metric": [
                "name == \"my.metric\" and resource.attributes[\"my_label\"] == \"abc123\"",
                "type == METRIC_DATA_TYPE_HISTOGRAM",
            ],
            "datapoint": [
                "metric.type == METRIC_DATA_TYPE_SUMMARY",
                "resource.attributes[\"service.name\"] == \"my_service_name\"",
            ],
        },
        "logs": {"log_record": [
            "IsMatch(body, \".*password.*\")",
            "severity_number < SEVERITY_NUMBER_WARN",
        ]},
    }))
    .unwrap();
    // The context-inference examples (collector-contrib v0.146+).
    validate(&json!({
        "error_mode": "ignore",
        "trace_conditions": [
            "resource.attributes[\"host.name\"] == \"localhost\"",
            "span.attributes[\"container.name\"] == \"app_container_1\"",
            "span.name == \"app_3\"",
            "spanevent.attributes[\"grpc\"] == true",
            "IsMatch(spanevent.name, \".*grpc.*\")",
            "resource.attributes[\"host.name\"] == \"localhost\" or spanevent.name == \"grpc.timeout\"",
            "span.kind != SPAN_KIND_CLIENT or span.attributes[\"db.system.name\"] == nil",
        ],
        "log_conditions": [
            {"error_mode": "propagate", "conditions": ["log.severity_number < SEVERITY_NUMBER_WARN"]},
            {"error_mode": "silent", "conditions": ["resource.attributes[\"service.name\"] == \"noisy-service\""]},
        ],
    }))
    .unwrap();
}
