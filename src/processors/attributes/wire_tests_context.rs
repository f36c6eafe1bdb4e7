//! `from_context` on both paths: the wire path (raw batches) and the decoded path give
//! the same result for the same request metadata; no metadata leaves data unchanged.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fastrand::Rng;
use serde_json::{Value, json};

use super::tests::{processor, random_logs, random_traces, raw, wire_out};
use super::tests_units::{request, span_with_raw_attribute};
use crate::data::{Batch, KeyValue, Signal, attr_str};
use crate::pipeline::{ClientMetadata, Context};

fn context(pairs: &[(&str, &str)]) -> Context {
    Context::new(Some(Arc::new(ClientMetadata::from_pairs(
        pairs.iter().copied(),
    ))))
}

/// Runs `config` with `ctx` on `batch` raw (wire path) and decoded; asserts the same
/// result and returns it.
fn both_ways(config: &Value, batch: &Batch, ctx: &Context) -> Batch {
    let signal = batch.signal();
    let mut a = processor(config, signal).expect("builds");
    let mut b = processor(config, signal).expect("builds");
    assert!(a.accepts_raw(), "from_context stays on the wire path");
    let (items, resources) = (batch.item_count(), batch.resource_count());
    let mut out = a.process_in(raw(batch), ctx, Instant::now()).unwrap();
    let got = out.remove(0);
    assert!(got.is_raw());
    assert_eq!((got.item_count(), got.resource_count()), (items, resources));
    let got = got.materialize().unwrap();
    let want = b
        .process_in(batch.clone(), ctx, Instant::now())
        .unwrap()
        .remove(0);
    assert!(!want.is_raw());
    assert_eq!(got, want, "config {config}");
    got
}

fn item_attributes(b: &Batch) -> Vec<Vec<KeyValue>> {
    match b {
        Batch::Traces(v) => v
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.attributes.clone())
            .collect(),
        Batch::Logs(v) => v
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|l| l.attributes.clone())
            .collect(),
        _ => panic!("traces or logs"),
    }
}

fn config() -> Value {
    json!({"actions": [
        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"},
        // No prefix: looked up in the metadata too; two values are joined with ";".
        {"key": "team", "from_context": "X-Team", "action": "upsert"},
        {"key": "env", "from_context": "metadata.x-env", "action": "update"},
        {"key": "gone", "from_context": "metadata.x-absent", "action": "upsert"},
        {"key": "a", "action": "delete"},
    ]})
}

#[test]
fn from_context_on_the_wire_gives_the_decoded_paths_result() {
    let ctx = context(&[
        ("X-Tenant", "acme"),
        ("x-team", "blue"),
        ("x-team", "green"),
        ("x-env", "prod"),
    ]);
    let mut rng = Rng::with_seed(7);
    let mut items = 0;
    for i in 0..200 {
        let batch = if i % 2 == 0 {
            random_traces(&mut rng)
        } else {
            random_logs(&mut rng)
        };
        let before = item_attributes(&batch);
        let got = both_ways(&config(), &batch, &ctx);
        for (old, new) in before.iter().zip(item_attributes(&got)) {
            items += 1;
            let had = |k: &str| old.iter().any(|kv| kv.key == k);
            if !had("tenant") {
                assert_eq!(attr_str(&new, "tenant"), Some("acme"));
            }
            assert_eq!(attr_str(&new, "team"), Some("blue;green"));
            assert_eq!(new.iter().any(|kv| kv.key == "env"), had("env"));
            if had("env") {
                assert_eq!(attr_str(&new, "env"), Some("prod"));
            }
            assert!(!new.iter().any(|kv| kv.key == "gone"));
        }
    }
    assert!(items > 100, "the random batches hold items: {items}");
}

#[test]
fn without_the_metadata_key_the_actions_do_nothing() {
    let config = json!({"actions": [
        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "upsert"},
    ]});
    let mut rng = Rng::with_seed(11);
    for ctx in [Context::EMPTY, context(&[("x-other", "1")])] {
        for _ in 0..20 {
            let batch = random_traces(&mut rng);
            assert_eq!(both_ways(&config, &batch, &ctx), batch);
            // Nothing changed: the wire path forwards the request's own bytes.
            let mut p = processor(&config, Signal::Traces).unwrap();
            let input = raw(&batch);
            let out = p.process_in(input.clone(), &ctx, Instant::now()).unwrap();
            assert_eq!(out[0].encode_proto(), input.encode_proto());
        }
    }
    // `process` (no context at all) is the same as an empty context.
    let mut p = processor(&config, Signal::Traces).unwrap();
    let batch = random_traces(&mut rng);
    let out = wire_out(p.as_mut(), raw(&batch)).materialize().unwrap();
    assert_eq!(out, batch);
}

#[test]
fn each_request_gets_its_own_value() {
    let config = json!({"actions": [
        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"},
    ]});
    let mut p = processor(&config, Signal::Traces).unwrap();
    let batch = random_traces(&mut Rng::with_seed(3));
    let mut tenants = Vec::new();
    for ctx in [
        context(&[("x-tenant", "acme")]),
        Context::EMPTY,
        context(&[("x-tenant", "globex")]),
    ] {
        let out = p.process_in(raw(&batch), &ctx, Instant::now()).unwrap();
        let attrs = item_attributes(&out[0].clone().materialize().unwrap());
        tenants.push(
            attrs
                .first()
                .and_then(|a| attr_str(a, "tenant").map(String::from)),
        );
    }
    assert_eq!(
        tenants,
        [Some("acme".into()), None, Some("globex".into())],
        "a value bound for one request never leaks into the next"
    );
}

#[test]
fn rare_encodings_use_the_context_too() {
    // A KeyValue whose value field comes twice: that span goes through prost.
    let twice = [0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'x', 0x12, 2, 0x18, 5];
    let req = request(&[span_with_raw_attribute(&twice)]);
    let config = json!({"actions": [
        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"},
    ]});
    let ctx = context(&[("x-tenant", "acme")]);
    let mut p = processor(&config, Signal::Traces).unwrap();
    let input = Batch::from_proto_bytes(Signal::Traces, Bytes::from(req.clone())).unwrap();
    let got = p.process_in(input, &ctx, Instant::now()).unwrap().remove(0);
    let got = got.materialize().unwrap();
    let decoded = Batch::decode_proto(Signal::Traces, &req).unwrap();
    let mut q = processor(&config, Signal::Traces).unwrap();
    let want = q
        .process_in(decoded, &ctx, Instant::now())
        .unwrap()
        .remove(0);
    assert_eq!(got, want);
    assert_eq!(attr_str(&item_attributes(&got)[0], "tenant"), Some("acme"));
}

#[test]
fn metrics_data_points_get_the_value_on_the_decoded_path() {
    use crate::data::{Metric, ResourceMetrics, ScopeMetrics, metric};
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint};
    let config = json!({"actions": [
        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"},
    ]});
    let mut p = processor(&config, Signal::Metrics).unwrap();
    let batch = Batch::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "m".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint::default()],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = p
        .process_in(batch, &context(&[("x-tenant", "acme")]), Instant::now())
        .unwrap();
    let Batch::Metrics(v) = &out[0] else {
        panic!("metrics")
    };
    let Some(metric::Data::Gauge(g)) = &v[0].scope_metrics[0].metrics[0].data else {
        panic!("gauge")
    };
    assert_eq!(
        attr_str(&g.data_points[0].attributes, "tenant"),
        Some("acme")
    );
}
