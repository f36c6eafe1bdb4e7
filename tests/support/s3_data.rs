//! Telemetry builders and read-back helpers shared by the `awss3` tests.

use std::collections::HashMap;
use std::sync::Arc;

use weft::admin::Telemetry;
use weft::components::{BuildContext, SharedState};
use weft::data::{
    AnyValue, Batch, InstrumentationScope, LogRecord, Resource, ResourceLogs, ResourceSpans,
    ScopeLogs, ScopeSpans, Signal, Span, Status, set_attr, span, string_value,
};
use weft::exporters::Exporter;
use weft::exporters::awss3::marshal::{Compression, decompress};

/// 2026-11-25T10:15:00Z
pub const T10: u64 = 1_795_601_700_000_000_000;
pub const MINUTE: u64 = 60_000_000_000;
pub const HOUR: u64 = 60 * MINUTE;

pub fn ctx(id: &str, telemetry: &Telemetry) -> BuildContext {
    BuildContext {
        id: id.to_string(),
        signal: None,
        telemetry: telemetry.clone(),
        shared: SharedState::default(),
        extensions: Arc::new(HashMap::new()),
    }
}

pub fn exporter(cfg: &serde_json::Value, id: &str, t: &Telemetry) -> Arc<dyn Exporter> {
    weft::exporters::awss3::build(cfg, &ctx(id, t)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn resource(service: &str) -> Option<Resource> {
    let mut attributes = Vec::new();
    set_attr(&mut attributes, "service.name", string_value(service));
    set_attr(&mut attributes, "k8s.namespace.name", string_value("shop"));
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

pub use weft::data::kv;

pub fn log_records(tag: &str, times: &[u64]) -> Vec<LogRecord> {
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

pub fn logs(service: &str, times: &[u64]) -> ResourceLogs {
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

pub fn spans(service: &str, times: &[u64]) -> ResourceSpans {
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

pub fn decode(bytes: &[u8], key: &str, signal: Signal) -> Batch {
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

pub fn records(b: &Batch) -> Vec<LogRecord> {
    let Batch::Logs(v) = b else {
        panic!("not logs")
    };
    v.iter()
        .flat_map(|r| r.scope_logs.iter())
        .flat_map(|s| s.log_records.iter().cloned())
        .collect()
}
