use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::*;
use crate::admin::Telemetry;
use crate::components::SharedState;
use crate::data::{
    InstrumentationScope, LogRecord, Metric, Resource, ResourceLogs, ResourceMetrics,
    ResourceSpans, ScopeLogs, ScopeMetrics, ScopeSpans, Span, attr_str, set_attr, string_value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, HistogramDataPoint, NumberDataPoint, Sum,
};

fn ctx(signal: Signal) -> BuildContext {
    BuildContext {
        id: "attributes/test".into(),
        signal: Some(signal),
        telemetry: Telemetry::new(),
        shared: SharedState::default(),
        extensions: Arc::new(HashMap::new()),
    }
}

fn with_attrs(pairs: &[(&str, &str)]) -> Vec<crate::data::KeyValue> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        set_attr(&mut v, k, string_value(*val));
    }
    v
}

fn spans(service: &str, spans: Vec<Span>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: with_attrs(&[("service.name", service)]),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "io.opentelemetry.jdbc".into(),
                version: "2.1".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn span(name: &str, kind: i32, attrs: &[(&str, &str)]) -> Span {
    Span {
        name: name.into(),
        kind,
        attributes: with_attrs(attrs),
        ..Default::default()
    }
}

fn run(config: serde_json::Value, signal: Signal, batch: Batch) -> Batch {
    validate(&config).expect("valid");
    let mut p = build(&config, &ctx(signal)).expect("builds");
    p.process(batch, Instant::now())
        .expect("processes")
        .remove(0)
}

fn span_attr(b: &Batch, i: usize, key: &str) -> Option<String> {
    let Batch::Traces(v) = b else { return None };
    attr_str(&v[0].scope_spans[0].spans[i].attributes, key).map(str::to_string)
}

fn span_has(b: &Batch, i: usize, key: &str) -> bool {
    let Batch::Traces(v) = b else { return false };
    crate::data::attr(&v[0].scope_spans[0].spans[i].attributes, key).is_some()
}

#[test]
fn actions_apply_to_span_attributes() {
    let config = json!({"actions": [
        {"key": "db.statement", "action": "hash"},
        {"key": "env", "value": "prod", "action": "insert"},
    ]});
    let out = run(
        config,
        Signal::Traces,
        spans(
            "orders",
            vec![span("SELECT", 3, &[("db.statement", "abc")])],
        ),
    );
    assert_eq!(
        span_attr(&out, 0, "db.statement").as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(span_attr(&out, 0, "env").as_deref(), Some("prod"));
}

#[test]
fn include_and_exclude_select_spans() {
    let config = json!({
        "include": {"match_type": "strict", "services": ["orders"], "span_kinds": ["SPAN_KIND_CLIENT"]},
        "exclude": {"match_type": "regexp", "span_names": ["^SELECT 1$"], "attributes": [{"key": "db.system", "value": "my.*"}]},
        "actions": [{"key": "touched", "value": true, "action": "upsert"}],
    });
    let batch = spans(
        "orders",
        vec![
            span("SELECT * FROM t", 3, &[("db.system", "mysql")]),
            span("SELECT 1", 3, &[("db.system", "mysql")]), // excluded
            span("GET /orders", 2, &[]),                    // not a client span
            span("SELECT 1", 3, &[("db.system", "postgresql")]), // exclude needs both
        ],
    );
    let out = run(config.clone(), Signal::Traces, batch);
    let touched: Vec<bool> = (0..4).map(|i| span_has(&out, i, "touched")).collect();
    assert_eq!(touched, vec![true, false, false, true]);

    let other = run(
        config,
        Signal::Traces,
        spans("payments", vec![span("SELECT", 3, &[])]),
    );
    assert!(!span_has(&other, 0, "touched"), "service not included");
}

#[test]
fn libraries_and_resources_match() {
    let config = json!({
        "include": {"match_type": "regexp",
                    "libraries": [{"name": "jdbc$", "version": "^2\\."}],
                    "resources": [{"key": "service.name", "value": "^ord"}]},
        "actions": [{"key": "touched", "value": 1, "action": "insert"}],
    });
    let out = run(
        config,
        Signal::Traces,
        spans("orders", vec![span("q", 3, &[])]),
    );
    let Batch::Traces(v) = &out else { panic!() };
    assert!(crate::data::attr(&v[0].scope_spans[0].spans[0].attributes, "touched").is_some());
}

#[test]
fn actions_apply_to_log_records_with_severity_selection() {
    let log = |sev: i32, text: &str| LogRecord {
        severity_number: sev,
        severity_text: text.into(),
        attributes: with_attrs(&[("user.email", "a@b.c")]),
        ..Default::default()
    };
    let batch = Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![log(5, "DEBUG"), log(13, "WARN"), log(0, "")],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let config = json!({
        "include": {"match_type": "strict", "log_severity_number": {"min": "WARN", "match_undefined": true}},
        "actions": [{"key": "user.email", "action": "delete"}],
    });
    let Batch::Logs(v) = run(config, Signal::Logs, batch) else {
        panic!()
    };
    let kept: Vec<bool> = v[0].scope_logs[0]
        .log_records
        .iter()
        .map(|l| attr_str(&l.attributes, "user.email").is_some())
        .collect();
    assert_eq!(kept, vec![true, false, false]);
}

#[test]
fn actions_apply_to_every_data_point_of_selected_metrics() {
    let point = |attrs: &[(&str, &str)]| NumberDataPoint {
        attributes: with_attrs(attrs),
        ..Default::default()
    };
    let batch = Batch::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "http.server.requests".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point(&[("http.method", "GET")]), point(&[])],
                        ..Default::default()
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "http.server.duration".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint::default()],
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let config = json!({
        "include": {"match_type": "regexp", "metric_names": ["requests$"]},
        "actions": [{"key": "http.request.method", "from_attribute": "http.method", "action": "upsert"},
                    {"key": "region", "value": "eu", "action": "insert"}],
    });
    let Batch::Metrics(v) = run(config, Signal::Metrics, batch) else {
        panic!()
    };
    let ms = &v[0].scope_metrics[0].metrics;
    let Some(metric::Data::Sum(s)) = &ms[0].data else {
        panic!()
    };
    assert_eq!(
        attr_str(&s.data_points[0].attributes, "http.request.method"),
        Some("GET")
    );
    assert_eq!(attr_str(&s.data_points[0].attributes, "region"), Some("eu"));
    assert_eq!(attr_str(&s.data_points[1].attributes, "region"), Some("eu"));
    let Some(metric::Data::Histogram(h)) = &ms[1].data else {
        panic!()
    };
    assert!(h.data_points[0].attributes.is_empty(), "not included");
}

#[test]
fn config_errors_name_the_key_path() {
    let e = validate(&json!({"actions": []})).unwrap_err();
    assert_eq!(e.path, vec!["actions"]);
    let e = validate(&json!({"actions": [{"key": "a", "action": "frob"}]})).unwrap_err();
    assert_eq!(e.path, vec!["actions", "0", "action"]);
    let e = validate(
        &json!({"include": {"match_type": "fuzzy", "services": ["a"]},
                             "actions": [{"key": "a", "action": "delete"}]}),
    )
    .unwrap_err();
    assert_eq!(e.path, vec!["include", "match_type"]);
    let e = validate(
        &json!({"exclude": {"match_type": "regexp", "span_names": ["("]},
                             "actions": [{"key": "a", "action": "delete"}]}),
    )
    .unwrap_err();
    assert_eq!(e.path, vec!["exclude", "span_names"]);
    let e = validate(
        &json!({"include": {"match_type": "strict", "span_kinds": ["SERVER"]},
                             "actions": [{"key": "a", "action": "delete"}]}),
    )
    .unwrap_err();
    assert!(e.message.contains("SPAN_KIND_SERVER"), "{}", e.message);
}

#[test]
fn properties_must_fit_the_pipeline_signal() {
    let config = json!({"include": {"match_type": "strict", "span_names": ["x"]},
                        "actions": [{"key": "a", "action": "delete"}]});
    assert!(build(&config, &ctx(Signal::Traces)).is_ok());
    let e = build(&config, &ctx(Signal::Logs))
        .err()
        .expect("span_names in logs");
    assert!(e.to_string().contains("include.span_names"), "{e}");
    let e = check_signal(&config, Signal::Metrics).unwrap_err();
    assert_eq!(e.path, vec!["include", "span_names"]);
    let empty =
        json!({"include": {"match_type": "strict"}, "actions": [{"key": "a", "action": "delete"}]});
    assert!(
        check_signal(&empty, Signal::Traces)
            .unwrap_err()
            .message
            .contains("at least one")
    );
}
