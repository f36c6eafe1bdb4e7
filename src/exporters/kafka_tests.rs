use super::*;
use crate::data::{LogRecord, Resource, ScopeLogs, ScopeSpans, Span, string_value};

use crate::data::kv_str as kv;

fn span(trace: u8, id: u8, pad: usize) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: "x".repeat(pad),
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn cfg(yaml: serde_json::Value) -> KafkaExporterConfig {
    KafkaExporterConfig::parse(&yaml).expect("config")
}

#[test]
fn defaults_match_the_collector() {
    let c = cfg(serde_json::json!({}));
    assert_eq!(c.common.brokers, vec!["localhost:9092"]);
    assert_eq!(c.common.client_id, "otel-collector");
    assert_eq!(c.producer.max_message_bytes, 1_000_000);
    assert_eq!(c.producer.required_acks, 1);
    assert_eq!(c.producer.compression, "none");
    assert!(!c.partition_traces_by_id);
    let t = c.common.topics();
    assert_eq!(t.topic(Signal::Traces), "otlp_spans");
    assert_eq!(t.encoding(Signal::Logs), Encoding::OtlpProto);
}

#[test]
fn bad_settings_are_named() {
    for (v, want) in [
        (
            serde_json::json!({"producer": {"compression": "brotli"}}),
            "compression \"brotli\"",
        ),
        (
            serde_json::json!({"producer": {"required_acks": 2}}),
            "required_acks",
        ),
        (
            serde_json::json!({"producer": {"enable_idempotence": true}}),
            "enable_idempotence needs",
        ),
        (serde_json::json!({"brokers": []}), "brokers is empty"),
        (serde_json::json!({"brokers": ["kafka"]}), "not host:port"),
        (
            serde_json::json!({"auth": {"sasl": {"username": "u", "password": "p", "mechanism": "GSSAPI"}}}),
            "GSSAPI",
        ),
    ] {
        let e = validate(&v).expect_err(want);
        let text = format!("{}: {}", e.path.join("."), e.message);
        assert!(text.contains(want), "{text} lacks {want}");
    }
    let e = validate(&serde_json::json!({"encoding": "avro"})).expect_err("encoding");
    assert!(e.message.contains("avro"), "{}", e.message);
    assert!(
        validate(&serde_json::json!({"producer": {"enable_idempotence": true, "required_acks": -1, "compression": "zstd"}}))
            .is_ok()
    );
}

#[test]
fn traces_by_id_put_every_span_of_a_trace_in_one_message() {
    let c = cfg(serde_json::json!({"partition_traces_by_id": true}));
    let b = Batch::Traces(vec![
        traces("order", vec![span(1, 1, 0), span(2, 2, 0), span(1, 3, 0)]),
        traces("payment", vec![span(2, 4, 0), span(3, 5, 0)]),
    ]);
    let msgs = partition(&c, &b);
    assert_eq!(msgs.len(), 3);
    let mut total = 0;
    for m in &msgs {
        let Batch::Traces(rs) = m.batch.as_ref() else {
            panic!()
        };
        let ids: Vec<&Vec<u8>> = rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| &s.trace_id)
            .collect();
        assert!(ids.iter().all(|t| *t == ids[0]));
        assert_eq!(m.key.as_deref(), Some(crate::data::hex(ids[0]).as_bytes()));
        total += ids.len();
    }
    assert_eq!(total, 5);
    // Trace 2 spans two resources: both resources travel with it.
    let Batch::Traces(t2) = msgs[1].batch.as_ref() else {
        panic!()
    };
    assert_eq!(t2.len(), 2);
    // Without the option: one unkeyed message.
    let one = partition(&cfg(serde_json::json!({})), &b);
    assert_eq!(one.len(), 1);
    assert!(one[0].key.is_none());
}

#[test]
fn logs_by_resource_get_a_stable_key_per_resource() {
    let c = cfg(serde_json::json!({"partition_logs_by_resource_attributes": true}));
    let logs = |attrs: Vec<KeyValue>| ResourceLogs {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let b = Batch::Logs(vec![
        logs(vec![kv("a", "1"), kv("b", "2")]),
        logs(vec![kv("b", "2"), kv("a", "1")]),
        logs(vec![kv("a", "1")]),
    ]);
    let msgs = partition(&c, &b);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].key, msgs[1].key, "attribute order does not matter");
    assert_ne!(msgs[0].key, msgs[2].key);
    let mut a = vec![kv("x", "1")];
    let key = resource_key(Some(&a));
    set_attr_string(&mut a, "x", "2");
    assert_ne!(key, resource_key(Some(&a)));
}

fn set_attr_string(attrs: &mut Vec<KeyValue>, k: &str, v: &str) {
    crate::data::set_attr(attrs, k, string_value(v));
}

#[test]
fn logs_by_trace_id_group_records_and_leave_untraced_ones_unkeyed() {
    let c = cfg(serde_json::json!({"partition_logs_by_trace_id": true}));
    let rec = |t: Vec<u8>| LogRecord {
        trace_id: t,
        ..Default::default()
    };
    let b = Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![rec(vec![7; 16]), rec(vec![]), rec(vec![7; 16])],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let msgs = partition(&c, &b);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].batch.item_count(), 2);
    assert!(msgs[1].key.is_none());
}

fn exporter(c: KafkaExporterConfig) -> KafkaExporter {
    let registry = crate::admin::Telemetry::new();
    KafkaExporter {
        topics: c.common.topics(),
        cfg: c,
        producer: Mutex::new(None),
        too_large: registry.metrics.counter("t", "t", &[]),
        refused: registry.metrics.counter("r", "r", &[]),
        id: "kafka".into(),
        health: registry.health.clone(),
    }
}

#[test]
fn a_batch_that_fits_goes_whole_uncopied_and_encoded_once() {
    let b = Batch::Traces(vec![traces("order", vec![span(1, 1, 10), span(2, 2, 10)])]);
    for (encoding, e) in [
        ("otlp_proto", Encoding::OtlpProto),
        ("otlp_json", Encoding::OtlpJson),
    ] {
        let ex = exporter(cfg(serde_json::json!({ "encoding": encoding })));
        let msgs = ex.messages(&b);
        assert_eq!(msgs.len(), 1);
        assert!(
            matches!(msgs[0].batch, Cow::Borrowed(_)),
            "{encoding}: copied"
        );
        assert_eq!(msgs[0].bytes, e.encode(&b), "{encoding}");
    }
}

#[test]
fn big_batches_are_split_until_each_message_fits() {
    let c = cfg(serde_json::json!({"producer": {"max_message_bytes": 4096}}));
    let b = Batch::Traces(vec![traces(
        "order",
        (0..40).map(|i| span(i, i, 300)).collect(),
    )]);
    assert!(b.encoded_len() > 4096 * 3);
    let ex = exporter(c);
    let msgs = ex.messages(&b);
    assert!(msgs.len() >= 4, "{}", msgs.len());
    let mut n = 0;
    for m in &msgs {
        assert!(m.batch.encoded_len() <= 4096 - 128);
        assert_eq!(
            m.bytes,
            m.batch.encode_proto(),
            "each part carries its own encoding"
        );
        n += m.batch.item_count();
    }
    assert_eq!(n, 40, "nothing lost in splitting");
    // One span alone larger than the limit: dropped and counted, the rest goes.
    let b = Batch::Traces(vec![traces(
        "order",
        vec![span(1, 1, 10), span(2, 2, 9000)],
    )]);
    let msgs = ex.messages(&b);
    assert_eq!(msgs.iter().map(|m| m.batch.item_count()).sum::<usize>(), 1);
    assert_eq!(ex.too_large.get(), 1);
}

#[test]
fn json_encoding_round_trips() {
    let b = Batch::Traces(vec![traces("order", vec![span(1, 1, 3)])]);
    for e in [Encoding::OtlpProto, Encoding::OtlpJson] {
        let bytes = e.encode(&b);
        let back = e.decode(Signal::Traces, &bytes).expect("decode");
        assert_eq!(back, b);
    }
}
