//! Builders for the stitch tests: the order → payment → notification services as spans,
//! processors with injected time, and readers for what comes out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::remap::StitchShared;
use super::rules::{FLAG_HAS_IS_REMOTE, FLAG_IS_REMOTE};
use super::{ATTR_ORIGINAL_TRACE_ID, ATTR_RULE, Mode, StitchConfig, build_with, parse};
use crate::admin::Telemetry;
use crate::data::{
    AnyValue, Batch, KeyValue, LogRecord, Resource, ResourceLogs, ResourceSpans, ScopeLogs,
    ScopeSpans, Signal, Span, attr_str, hex, string_value,
};
use crate::processors::Processor;

pub const W: Duration = Duration::from_secs(60);

pub const PRODUCER: i32 = 4;
pub const CONSUMER: i32 = 5;
pub const CLIENT: i32 = 3;
pub const SERVER: i32 = 2;
pub const INTERNAL: i32 = 1;

/// The example config.
pub fn config(mode: Mode, max_pending: usize) -> StitchConfig {
    let kafka = json!([
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.kafka.offset"
    ]);
    parse(&json!({
        "window": "60s",
        "max_pending": max_pending,
        "mode": if mode == Mode::Merge { "merge" } else { "link" },
        "rules": [
            {"name": "outbox",
             "producer": {"span_kind": ["producer", "client", "internal"], "attributes": ["outbox.event_id"]},
             "consumer": {"span_kind": ["consumer", "server"], "attributes": ["messaging.message.id"]}},
            {"name": "kafka-offset",
             "producer": {"span_kind": ["producer"], "attributes": kafka},
             "consumer": {"span_kind": ["consumer"], "attributes": kafka}}
        ]
    }))
    .expect("test config is valid")
}

/// A traces instance and a logs instance of one processor id, sharing state as `build` does.
pub struct Harness {
    pub t0: Instant,
    pub telemetry: Telemetry,
    pub traces: Box<dyn Processor>,
    pub logs: Box<dyn Processor>,
}

impl Harness {
    pub fn new(mode: Mode, max_pending: usize) -> Harness {
        let c = config(mode, max_pending);
        let telemetry = Telemetry::new();
        let shared = Arc::new(StitchShared::new(c.window.get() * 2, c.max_pending));
        let traces = build_with(
            &c,
            "stitch",
            Some(Signal::Traces),
            &telemetry,
            shared.clone(),
        )
        .expect("builds");
        let logs =
            build_with(&c, "stitch", Some(Signal::Logs), &telemetry, shared).expect("builds");
        Harness {
            t0: Instant::now(),
            telemetry,
            traces,
            logs,
        }
    }

    pub fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    /// Sends spans at `secs`; returns the spans let through.
    pub fn send(&mut self, secs: f64, spans: Vec<Span>) -> Vec<Span> {
        let now = self.at(secs);
        spans_of(
            self.traces
                .process(traces_batch(spans), now)
                .expect("never fails"),
        )
    }

    pub fn tick(&mut self, secs: f64) -> Vec<Span> {
        spans_of(self.traces.on_deadline(self.at(secs)))
    }

    pub fn send_logs(&mut self, secs: f64, logs: Vec<LogRecord>) -> Vec<LogRecord> {
        let now = self.at(secs);
        logs_of(
            self.logs
                .process(logs_batch(logs), now)
                .expect("never fails"),
        )
    }

    pub fn tick_logs(&mut self, secs: f64) -> Vec<LogRecord> {
        logs_of(self.logs.on_deadline(self.at(secs)))
    }

    pub fn metric(&self, what: &str, rule: &str) -> u64 {
        self.telemetry
            .metrics
            .value(
                &format!("weft_processor_stitch_{what}_total"),
                &[("component", "stitch"), ("rule", rule)],
            )
            .unwrap_or(-1.0) as u64
    }

    pub fn component_metric(&self, name: &str) -> i64 {
        self.telemetry
            .metrics
            .value(name, &[("component", "stitch")])
            .unwrap_or(-1.0) as i64
    }
}

pub fn trace(n: u8) -> Vec<u8> {
    vec![n; 16]
}

/// Span ids are unique across traces: trace number, then span number.
pub fn sid(trace: u8, n: u8) -> Vec<u8> {
    vec![trace, n, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa]
}

pub fn span(
    trace_no: u8,
    n: u8,
    parent: Option<u8>,
    kind: i32,
    name: &str,
    attrs: &[(&str, &str)],
) -> Span {
    Span {
        trace_id: trace(trace_no),
        span_id: sid(trace_no, n),
        parent_span_id: parent.map(|p| sid(trace_no, p)).unwrap_or_default(),
        kind,
        name: name.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: Some(AnyValue {
                    value: Some(string_value(*v)),
                }),
                ..Default::default()
            })
            .collect(),
        // What current SDKs send: the parent's remoteness is known, and it is local.
        flags: 0x01 | FLAG_HAS_IS_REMOTE,
        ..Default::default()
    }
}

/// A span whose parent lives in another process (context was propagated).
pub fn with_remote_parent(mut s: Span, parent: Vec<u8>) -> Span {
    s.parent_span_id = parent;
    s.flags |= FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE;
    s
}

const KAFKA_PAYMENTS: [(&str, &str); 3] = [
    ("messaging.destination.name", "payments"),
    ("messaging.destination.partition.id", "0"),
    ("messaging.kafka.offset", "7"),
];

/// order service, trace `t`: `create_order` (root) → `INSERT outbox` (producer of `event`).
pub fn order(t: u8, event: &str) -> Vec<Span> {
    vec![
        span(t, 1, None, SERVER, "create_order", &[]),
        span(
            t,
            2,
            Some(1),
            CLIENT,
            "INSERT outbox",
            &[("outbox.event_id", event)],
        ),
    ]
}

/// payment service, trace `t`: consumes `event` (root) → charge, and publishes
/// `payment.done` to Kafka (payments/0/7).
pub fn payment(t: u8, event: &str) -> Vec<Span> {
    let mut publish = span(t, 3, Some(1), PRODUCER, "payments publish", &KAFKA_PAYMENTS);
    publish.attributes.push(KeyValue {
        key: "messaging.system".into(),
        value: Some(AnyValue {
            value: Some(string_value("kafka")),
        }),
        ..Default::default()
    });
    vec![
        span(
            t,
            1,
            None,
            CONSUMER,
            "order.created process",
            &[("messaging.message.id", event)],
        ),
        span(t, 2, Some(1), CLIENT, "charge card", &[]),
        publish,
    ]
}

/// notification service, trace `t`: consumes payments/0/7 (root) → send email.
pub fn notification(t: u8) -> Vec<Span> {
    vec![
        span(t, 1, None, CONSUMER, "payments process", &KAFKA_PAYMENTS),
        span(t, 2, Some(1), INTERNAL, "send email", &[]),
    ]
}

pub fn traces_batch(spans: Vec<Span>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource::default()),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

pub fn spans_of(batches: Vec<Batch>) -> Vec<Span> {
    let mut out = Vec::new();
    for b in batches {
        if let Batch::Traces(v) = b {
            for rs in v {
                for ss in rs.scope_spans {
                    out.extend(ss.spans);
                }
            }
        }
    }
    out
}

pub fn log(trace_no: Option<u8>, body: &str) -> LogRecord {
    LogRecord {
        trace_id: trace_no.map(trace).unwrap_or_default(),
        span_id: trace_no.map(|t| sid(t, 1)).unwrap_or_default(),
        flags: 0x01,
        body: Some(AnyValue {
            value: Some(string_value(body)),
        }),
        ..Default::default()
    }
}

pub fn logs_batch(records: Vec<LogRecord>) -> Batch {
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource::default()),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

pub fn logs_of(batches: Vec<Batch>) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for b in batches {
        if let Batch::Logs(v) = b {
            for rl in v {
                for sl in rl.scope_logs {
                    out.extend(sl.log_records);
                }
            }
        }
    }
    out
}

pub fn find<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {:?}", names(spans)))
}

pub fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

/// Asserts `s` was merged from trace `from` into trace `into` by `rule`.
pub fn assert_merged(s: &Span, from: u8, into: u8, rule: &str) {
    assert_eq!(s.trace_id, trace(into), "{} not in trace {into}", s.name);
    assert_eq!(attr_str(&s.attributes, ATTR_RULE), Some(rule), "{}", s.name);
    assert_eq!(
        attr_str(&s.attributes, ATTR_ORIGINAL_TRACE_ID),
        Some(hex(&trace(from)).as_str()),
        "{}",
        s.name
    );
}

pub fn assert_untouched(s: &Span, t: u8) {
    assert_eq!(s.trace_id, trace(t), "{}", s.name);
    assert!(
        attr_str(&s.attributes, ATTR_RULE).is_none(),
        "{} was marked",
        s.name
    );
    assert!(s.links.is_empty(), "{} got links", s.name);
}
