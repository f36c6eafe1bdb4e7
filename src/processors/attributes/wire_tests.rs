//! The wire path against the decoded path: random batches and configs, each action, rare
//! encodings, and malformed attribute bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fastrand::Rng;
use serde_json::{Value, json};

use crate::admin::Telemetry;
use crate::components::{BuildContext, SharedState};
use crate::data::{
    AnyValue, ArrayValue, Batch, InstrumentationScope, KeyValue, KeyValueList, LogRecord, Resource,
    ResourceLogs, ResourceSpans, ScopeLogs, ScopeSpans, Signal, Span, any_value, wire,
};
use crate::processors::Processor;

fn ctx(signal: Signal, telemetry: &Telemetry) -> BuildContext {
    BuildContext {
        id: "attributes/wire".into(),
        signal: Some(signal),
        telemetry: telemetry.clone(),
        shared: SharedState::default(),
        extensions: Arc::new(HashMap::new()),
    }
}

pub(super) fn processor(config: &Value, signal: Signal) -> Option<Box<dyn Processor>> {
    processor_with(config, signal, &Telemetry::new())
}

pub(super) fn processor_with(
    config: &Value,
    signal: Signal,
    t: &Telemetry,
) -> Option<Box<dyn Processor>> {
    super::super::validate(config).ok()?;
    super::super::build(config, &ctx(signal, t)).ok()
}

pub(super) fn malformed(t: &Telemetry) -> u64 {
    t.metrics
        .counter(
            "weft_processor_attributes_malformed_items_total",
            "",
            &[("component", "attributes/wire")],
        )
        .get()
}

pub(super) fn raw(b: &Batch) -> Batch {
    Batch::from_proto_bytes(b.signal(), Bytes::from(b.encode_proto())).expect("scans")
}

/// The wire path's output, checked to be a raw batch that scans to the same counts.
pub(super) fn wire_out(p: &mut dyn Processor, input: Batch) -> Batch {
    assert!(p.accepts_raw());
    let (items, resources) = (input.item_count(), input.resource_count());
    let mut out = p.process(input, Instant::now()).expect("processes");
    assert_eq!(out.len(), 1);
    let out = out.remove(0);
    assert!(out.is_raw(), "the wire path keeps the batch raw");
    let bytes = out.encode_proto();
    let c = wire::scan(out.signal(), &bytes).expect("the output scans");
    assert_eq!((c.items, c.resources), (items, resources));
    assert_eq!((out.item_count(), out.resource_count()), (items, resources));
    out
}

/// Runs `config` on `batch` both ways, asserts equal results and returns whether the
/// actions changed anything.
pub(super) fn same_both_ways(config: &Value, batch: &Batch) -> bool {
    let signal = batch.signal();
    let t = Telemetry::new();
    let (Some(mut a), Some(mut b)) = (
        processor_with(config, signal, &t),
        processor(config, signal),
    ) else {
        panic!("config {config} does not build");
    };
    let got = wire_out(a.as_mut(), raw(batch))
        .materialize()
        .expect("decodes");
    let want = b
        .process(batch.clone(), Instant::now())
        .expect("processes")
        .remove(0);
    assert!(!want.is_raw());
    assert_eq!(got, want, "config {config}");
    assert_eq!(malformed(&t), 0, "well-formed input is never malformed");
    &want != batch
}

const KEYS: [&str; 6] = ["a", "b", "env", "http.method", "x.1", "x.2"];

fn any_value(rng: &mut Rng, depth: u32) -> Option<any_value::Value> {
    use any_value::Value as V;
    let s = ["", "GET", "a", "prod", "x.1", "ünï"];
    Some(match rng.u8(0..9) {
        0 => return None,
        1 => V::StringValue(s[rng.usize(..s.len())].into()),
        2 => V::BoolValue(rng.bool()),
        3 => V::IntValue([0, 1, -7, i64::MAX][rng.usize(..4)]),
        4 => V::DoubleValue([0.0, 1.5, -2.0, 1e300][rng.usize(..4)]),
        5 => V::BytesValue(vec![0xff; rng.usize(..3)]),
        6 if depth < 2 => V::ArrayValue(ArrayValue {
            values: (0..rng.usize(..3))
                .map(|_| AnyValue {
                    value: any_value(rng, depth + 1),
                })
                .collect(),
        }),
        7 if depth < 2 => V::KvlistValue(KeyValueList {
            values: attributes(rng, depth + 1),
        }),
        _ => V::StringValue(format!("v{}", rng.u8(..3))),
    })
}

fn attributes(rng: &mut Rng, depth: u32) -> Vec<KeyValue> {
    (0..rng.usize(..6))
        .map(|_| KeyValue {
            key: KEYS[rng.usize(..KEYS.len())].into(),
            // No value at all, an empty AnyValue, or a value.
            value: match rng.u8(..8) {
                0 => None,
                _ => Some(AnyValue {
                    value: any_value(rng, depth),
                }),
            },
            ..Default::default()
        })
        .collect()
}

fn resource(rng: &mut Rng) -> Option<Resource> {
    (rng.u8(..5) > 0).then(|| {
        let mut attributes = attributes(rng, 0);
        if rng.bool() {
            attributes.push(crate::data::KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(crate::data::string_value(["api", "db"][rng.usize(..2)])),
                }),
                ..Default::default()
            });
        }
        Resource {
            attributes,
            ..Default::default()
        }
    })
}

fn scope(rng: &mut Rng) -> Option<InstrumentationScope> {
    (rng.u8(..5) > 0).then(|| InstrumentationScope {
        name: ["jdbc", "http"][rng.usize(..2)].into(),
        version: ["1", "2"][rng.usize(..2)].into(),
        ..Default::default()
    })
}

pub(super) fn random_traces(rng: &mut Rng) -> Batch {
    Batch::Traces(
        (0..rng.usize(1..4))
            .map(|_| ResourceSpans {
                resource: resource(rng),
                scope_spans: (0..rng.usize(..3))
                    .map(|_| ScopeSpans {
                        scope: scope(rng),
                        spans: (0..rng.usize(..4))
                            .map(|i| Span {
                                trace_id: vec![1; 16],
                                span_id: vec![i as u8 + 1; 8],
                                name: ["GET /", "db", ""][rng.usize(..3)].into(),
                                kind: rng.i32(0..6),
                                attributes: attributes(rng, 0),
                                dropped_attributes_count: rng.u32(..2),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    )
}

pub(super) fn random_logs(rng: &mut Rng) -> Batch {
    Batch::Logs(
        (0..rng.usize(1..4))
            .map(|_| ResourceLogs {
                resource: resource(rng),
                scope_logs: (0..rng.usize(..3))
                    .map(|_| ScopeLogs {
                        scope: scope(rng),
                        log_records: (0..rng.usize(..4))
                            .map(|_| LogRecord {
                                severity_number: rng.i32(0..25),
                                severity_text: ["", "INFO", "ERROR"][rng.usize(..3)].into(),
                                body: Some(AnyValue {
                                    value: any_value(rng, 0),
                                }),
                                attributes: attributes(rng, 0),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    )
}

fn json_value(rng: &mut Rng) -> Value {
    match rng.u8(..6) {
        0 => json!("prod"),
        1 => json!(42),
        2 => json!(true),
        3 => json!(2.5),
        4 => json!(["a", 1]),
        _ => json!({"k": "v"}),
    }
}

fn key(rng: &mut Rng) -> &'static str {
    KEYS[rng.usize(..KEYS.len())]
}

fn action(rng: &mut Rng) -> Value {
    let patterns = ["^x\\.", "a|b", "^h"];
    let pattern = patterns[rng.usize(..patterns.len())];
    match rng.u8(..8) {
        k @ 0..=2 => {
            let action = ["insert", "update", "upsert"][usize::from(k)];
            if rng.bool() {
                json!({"key": key(rng), "action": action, "value": json_value(rng)})
            } else {
                json!({"key": key(rng), "action": action, "from_attribute": key(rng)})
            }
        }
        3 => json!({"key": key(rng), "action": "delete"}),
        4 => json!({"action": "delete", "pattern": pattern}),
        5 => json!({"key": key(rng), "action": "hash"}),
        6 => json!({"action": "hash", "pattern": pattern}),
        _ => json!({"key": key(rng), "action": "hash", "pattern": pattern}),
    }
}

fn properties(rng: &mut Rng, signal: Signal) -> Value {
    let regexp = rng.bool();
    let mut p = serde_json::Map::new();
    p.insert(
        "match_type".into(),
        json!(if regexp { "regexp" } else { "strict" }),
    );
    let attr = |rng: &mut Rng| match (rng.u8(..3), regexp) {
        (0, _) => json!({"key": key(rng)}),
        (_, true) => {
            let re = ["^v", "GET|prod", "1", "true"][rng.usize(..4)];
            json!({"key": key(rng), "value": re})
        }
        (_, false) => json!({"key": key(rng), "value": json_value(rng)}),
    };
    let mut any = false;
    while !any {
        if rng.u8(..3) == 0 {
            p.insert("attributes".into(), json!([attr(rng)]));
            any = true;
        }
        if rng.u8(..4) == 0 {
            p.insert("resources".into(), json!([attr(rng)]));
            any = true;
        }
        if rng.u8(..4) == 0 {
            let lib = if rng.bool() {
                json!({"name": "jdbc"})
            } else {
                json!({"name": "http", "version": if regexp { "^1" } else { "1" }})
            };
            p.insert("libraries".into(), json!([lib]));
            any = true;
        }
        match signal {
            Signal::Traces => {
                if rng.u8(..3) == 0 {
                    p.insert(
                        "services".into(),
                        json!([if regexp { "^a" } else { "api" }]),
                    );
                    any = true;
                }
                if rng.u8(..3) == 0 {
                    p.insert(
                        "span_names".into(),
                        json!([if regexp { "GET" } else { "db" }]),
                    );
                    any = true;
                }
                if rng.u8(..3) == 0 {
                    let kind = if regexp {
                        "SERVER|CLIENT"
                    } else {
                        "SPAN_KIND_SERVER"
                    };
                    p.insert("span_kinds".into(), json!([kind]));
                    any = true;
                }
            }
            _ => {
                if rng.u8(..3) == 0 {
                    p.insert(
                        "log_severity_texts".into(),
                        json!([if regexp { "^E" } else { "INFO" }]),
                    );
                    any = true;
                }
                if rng.u8(..3) == 0 {
                    let min = [json!("INFO"), json!("warn2"), json!(17)][rng.usize(..3)].clone();
                    p.insert(
                        "log_severity_number".into(),
                        json!({"min": min, "match_undefined": rng.bool()}),
                    );
                    any = true;
                }
            }
        }
    }
    Value::Object(p)
}

fn random_config(rng: &mut Rng, signal: Signal) -> Value {
    let actions: Vec<Value> = (0..rng.usize(1..5)).map(|_| action(rng)).collect();
    let mut c = json!({ "actions": actions });
    if rng.u8(..3) == 0 {
        c["include"] = properties(rng, signal);
    }
    if rng.u8(..3) == 0 {
        c["exclude"] = properties(rng, signal);
    }
    c
}

#[test]
fn random_batches_and_actions_give_the_decoded_paths_result() {
    let (mut compared, mut changed) = (0, 0);
    for seed in 0..3000 {
        let mut rng = Rng::with_seed(seed);
        let signal = if seed % 2 == 0 {
            Signal::Traces
        } else {
            Signal::Logs
        };
        let config = random_config(&mut rng, signal);
        if processor(&config, signal).is_none() {
            continue; // e.g. an update and a from_attribute both missing: invalid config
        }
        let batch = match signal {
            Signal::Traces => random_traces(&mut rng),
            _ => random_logs(&mut rng),
        };
        changed += usize::from(same_both_ways(&config, &batch));
        compared += 1;
    }
    assert!(compared > 2500, "only {compared} configs were valid");
    assert!(
        changed > compared / 3,
        "only {changed} of {compared} runs changed anything"
    );
}
