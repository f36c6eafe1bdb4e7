//! Sample data shared by the tests: one request per signal that uses every field the
//! protocol has (nested attribute values, events, links, status, histograms), so a round
//! trip that loses or reorders anything shows up as a difference.

use weft::data::*;

pub fn full_batches() -> Vec<Batch> {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let resource = Resource {
        attributes: vec![
            kv("service.name", string_value("payment")),
            kv("k8s.pod.name", string_value("payment-1")),
        ],
        dropped_attributes_count: 1,
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "io.opentelemetry.kafka".into(),
        version: "2.1".into(),
        attributes: vec![kv("a", any_value::Value::IntValue(1))],
        dropped_attributes_count: 0,
    };
    let span = Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        parent_span_id: vec![0xef; 8],
        trace_state: "vendor=x".into(),
        name: "payment.process".into(),
        kind: 5,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_223_456_789,
        attributes: vec![
            kv("messaging.system", string_value("kafka")),
            kv("bytes", any_value::Value::BytesValue(vec![1, 2, 3])),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(string_value("x")),
                    }],
                }),
            ),
            kv(
                "map",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", any_value::Value::DoubleValue(2.5))],
                }),
            ),
        ],
        dropped_attributes_count: 2,
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_150_000_000,
            name: "retry".into(),
            attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 0,
        links: vec![span::Link {
            trace_id: vec![0x11; 16],
            span_id: vec![0x22; 8],
            trace_state: String::new(),
            attributes: vec![kv("weft.test", any_value::Value::BoolValue(true))],
            dropped_attributes_count: 0,
            flags: 1,
        }],
        dropped_links_count: 0,
        status: Some(Status {
            message: "card declined".into(),
            code: 2,
        }),
        flags: 1,
    };
    let log = LogRecord {
        time_unix_nano: 1_700_000_000_000_000_001,
        observed_time_unix_nano: 1_700_000_000_000_000_002,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(string_value("card declined")),
        }),
        attributes: vec![kv("exception.type", string_value("CardError"))],
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        flags: 1,
        event_name: "payment.failed".into(),
        ..Default::default()
    };
    use opentelemetry_proto::tonic::metrics::v1 as m;
    let metric = Metric {
        name: "payment_latency".into(),
        description: "latency".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(m::Histogram {
            data_points: vec![m::HistogramDataPoint {
                attributes: vec![kv("method", string_value("card"))],
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                count: 3,
                sum: Some(30.0),
                bucket_counts: vec![1, 2],
                explicit_bounds: vec![10.0],
                min: Some(5.0),
                max: Some(15.0),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    vec![
        Batch::Traces(vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope.clone()),
                spans: vec![span],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: "s".into(),
        }]),
        Batch::Logs(vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope.clone()),
                log_records: vec![log],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]),
        Batch::Metrics(vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope),
                metrics: vec![metric],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]),
    ]
}

/// Traces of one `order` service: trace ids `first_trace..first_trace + traces` (8-byte
/// big-endian number + 8 × 9), `spans` spans each (span id = trace × 1000 + span + 1),
/// interleaved across the batch as concurrent requests are.
pub fn traces(first_trace: u64, traces: u64, spans: u64) -> Batch {
    let mut out = Vec::new();
    for s in 0..spans {
        for t in first_trace..first_trace + traces {
            out.push(Span {
                trace_id: [t.to_be_bytes(), [9; 8]].concat(),
                span_id: (t * 1000 + s + 1).to_be_bytes().to_vec(),
                name: format!("op-{s}"),
                start_time_unix_nano: 1_700_000_000_000_000_000 + s,
                end_time_unix_nano: 1_700_000_000_000_100_000 + s,
                ..Default::default()
            });
        }
    }
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", string_value("order"))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: out,
            ..Default::default()
        }],
        ..Default::default()
    }])
}
