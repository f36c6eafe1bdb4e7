//! Telemetry used by several tests: one span and one log record with resource, scope,
//! attributes, events, links and trace context, a metric batch, and numbered log lines.

use super::*;

pub use weft::data::kv;

pub fn s(v: &str) -> any_value::Value {
    string_value(v)
}

pub fn resource() -> Resource {
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

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "io.weft.test".into(),
        version: "0.3.0".into(),
        attributes: vec![kv("lib.flag", any_value::Value::BoolValue(true))],
        ..Default::default()
    }
}

pub const SCHEMA: &str = "https://opentelemetry.io/schemas/1.26.0";
pub const T0: u64 = 1_700_000_000_000_000_000;

pub fn trace_id() -> Vec<u8> {
    (1..=16).collect()
}

pub fn log_record() -> LogRecord {
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

pub fn span() -> Span {
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

pub fn log_batch() -> Batch {
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

pub fn span_batch() -> Batch {
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

pub fn otel_resource_scope() -> (Value, Value) {
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

pub fn metric_batch() -> Batch {
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
