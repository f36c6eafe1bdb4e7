//! Processors on 100-span batches (10 attributes of 24 bytes per span): items/s.
//!
//!   cargo bench --bench processors
//!   cargo bench --bench processors -- attributes --quick   # wire path vs decoded path

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft::admin::Telemetry;
use weft::components::{BuildContext, SharedState};
use weft::data::*;

#[path = "codec.rs"]
#[allow(dead_code)]
mod codec;

fn ctx(id: &str) -> BuildContext {
    BuildContext {
        id: id.into(),
        signal: Some(Signal::Traces),
        telemetry: Telemetry::new(),
        shared: SharedState::default(),
        extensions: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let b = codec::spans(100, 10);
    let t0 = Instant::now();
    let mut g = c.benchmark_group("processors");
    g.throughput(Throughput::Elements(100));
    let cases: Vec<(&str, &str, serde_json::Value)> = vec![
        (
            "filter",
            "filter",
            serde_json::json!({"traces": {"span": ["attributes[\"http.route\"] == \"/health/live\"", "IsMatch(name, \"^GET /health\")"]}}),
        ),
        (
            "attributes",
            "attributes",
            serde_json::json!({"actions": [{"key": "env", "value": "prod", "action": "upsert"}, {"key": "attr.1", "action": "hash"}, {"key": "attr.2", "action": "delete"}]}),
        ),
        (
            "batch",
            "batch",
            serde_json::json!({"send_batch_size": 1000}),
        ),
    ];
    for (name, ty, cfg) in cases {
        let f = weft::components::FACTORIES
            .iter()
            .find(|f| {
                f.ty == ty && matches!(f.construct, weft::components::Constructor::Processor(_))
            })
            .unwrap();
        let weft::components::Constructor::Processor(build) = f.construct else {
            unreachable!()
        };
        let mut p = build(&cfg, &ctx(name)).unwrap();
        g.bench_function(name, |x| x.iter(|| p.process(b.clone(), t0).unwrap()));
        let _ = p.flush();
    }
    // `attributes` on what the receiver hands over (a raw request): edited on the wire, or
    // decoded, processed and encoded again (the path every request took before).
    let raw = Batch::from_proto_bytes(Signal::Traces, b.encode_proto().into()).unwrap();
    for (name, cfg) in [
        (
            "insert_upsert",
            serde_json::json!({"actions": [{"key": "deployment.environment", "value": "bench", "action": "insert"}, {"key": "http.method", "value": "GET", "action": "upsert"}]}),
        ),
        (
            "upsert_hash_delete",
            serde_json::json!({"actions": [{"key": "env", "value": "prod", "action": "upsert"}, {"key": "attr.1", "action": "hash"}, {"key": "attr.2", "action": "delete"}]}),
        ),
    ] {
        let mut p = weft::processors::attributes::build(&cfg, &ctx(name)).unwrap();
        assert!(p.accepts_raw());
        g.bench_function(format!("attributes_wire/{name}"), |x| {
            x.iter(|| p.process(raw.clone(), t0).unwrap())
        });
        g.bench_function(format!("attributes_decode_process_encode/{name}"), |x| {
            x.iter(|| {
                let decoded = raw.clone().materialize().unwrap();
                let out = p.process(decoded, t0).unwrap();
                out[0].encode_proto()
            })
        });
    }
    for (name, ty, cfg) in [
        (
            "clockskew",
            "clockskew",
            serde_json::json!({"decision_wait": "1s"}),
        ),
        (
            "stitch",
            "stitch",
            serde_json::json!({"rules": [{"name": "outbox", "producer": {"span_kind": ["producer"], "attributes": ["outbox.event_id"]}, "consumer": {"span_kind": ["consumer"], "attributes": ["messaging.message.id"]}}]}),
        ),
    ] {
        let Some(f) = weft::components::FACTORIES.iter().find(|f| f.ty == ty) else {
            continue;
        };
        let weft::components::Constructor::Processor(build) = f.construct else {
            continue;
        };
        let mut p = build(&cfg, &ctx(name)).unwrap();
        let mut now = Instant::now();
        g.bench_function(name, |x| {
            x.iter(|| {
                now += Duration::from_millis(1);
                let mut out = p.process(b.clone(), now).unwrap();
                out.extend(p.on_deadline(now));
                out
            })
        });
        let _ = p.flush();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
