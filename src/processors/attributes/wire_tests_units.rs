//! The wire path action by action, on rare encodings, across length-prefix widths, and on
//! malformed attribute bytes.

use std::time::Instant;

use bytes::Bytes;
use fastrand::Rng;
use prost::Message;
use prost::encoding::encode_varint;
use serde_json::{Value, json};

use super::tests::{
    malformed, processor, processor_with, random_traces, raw, same_both_ways, wire_out,
};
use crate::admin::Telemetry;
use crate::data::{
    Batch, KeyValue, ResourceSpans, ScopeSpans, Signal, Span, attr, attr_str, set_attr,
    string_value,
};

fn span(attrs: &[(&str, &str)]) -> Span {
    let mut attributes = Vec::new();
    for (k, v) in attrs {
        set_attr(&mut attributes, k, string_value(*v));
    }
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /".into(),
        attributes,
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn first_span(b: &Batch) -> Span {
    match b {
        Batch::Traces(v) => v[0].scope_spans[0].spans[0].clone(),
        _ => panic!("not traces"),
    }
}

/// Runs actions on one span with the wire path (checking the decoded path agrees).
fn on_wire(actions: Value, attrs: &[(&str, &str)]) -> Vec<KeyValue> {
    let config = json!({ "actions": actions });
    let b = traces(vec![span(attrs)]);
    same_both_ways(&config, &b);
    let mut p = processor(&config, Signal::Traces).expect("builds");
    first_span(&wire_out(p.as_mut(), raw(&b)).materialize().unwrap()).attributes
}

fn keys(attrs: &[KeyValue]) -> Vec<&str> {
    attrs.iter().map(|kv| kv.key.as_str()).collect()
}

#[test]
fn insert_adds_only_missing_keys_at_the_end() {
    let a = on_wire(
        json!([{"key": "env", "value": "prod", "action": "insert"},
               {"key": "a", "value": "new", "action": "insert"}]),
        &[("a", "1"), ("b", "2")],
    );
    assert_eq!(keys(&a), ["a", "b", "env"]);
    assert_eq!(attr_str(&a, "a"), Some("1"));
    assert_eq!(attr_str(&a, "env"), Some("prod"));
}

#[test]
fn update_changes_only_present_keys_and_upsert_both() {
    let a = on_wire(
        json!([{"key": "a", "value": 7, "action": "update"},
               {"key": "zz", "value": 7, "action": "update"},
               {"key": "b", "value": true, "action": "upsert"},
               {"key": "c", "value": ["x", 1], "action": "upsert"}]),
        &[("a", "1"), ("b", "2")],
    );
    assert_eq!(keys(&a), ["a", "b", "c"]);
    assert_eq!(
        attr(&a, "a").cloned(),
        Some(crate::data::any_value::Value::IntValue(7))
    );
    assert_eq!(
        attr(&a, "b").cloned(),
        Some(crate::data::any_value::Value::BoolValue(true))
    );
}

#[test]
fn from_attribute_copies_a_value_and_needs_the_source() {
    let a = on_wire(
        json!([{"key": "copy", "from_attribute": "a", "action": "insert"},
               {"key": "b", "from_attribute": "missing", "action": "upsert"}]),
        &[("a", "1"), ("b", "2")],
    );
    assert_eq!(keys(&a), ["a", "b", "copy"]);
    assert_eq!(attr_str(&a, "copy"), Some("1"));
    assert_eq!(attr_str(&a, "b"), Some("2"));
}

#[test]
fn delete_by_key_and_pattern_removes_every_duplicate() {
    let mut s = span(&[("a", "1"), ("x.1", "2"), ("b", "3")]);
    s.attributes.push(s.attributes[0].clone()); // a duplicate "a"
    let b = traces(vec![s]);
    for actions in [
        json!([{"key": "a", "action": "delete"}]),
        json!([{"pattern": "^x\\.", "action": "delete"}]),
        json!([{"key": "b", "pattern": "^a$", "action": "delete"}]),
    ] {
        let config = json!({ "actions": actions });
        assert!(same_both_ways(&config, &b));
    }
    let mut p = processor(
        &json!({"actions": [{"key": "a", "action": "delete"}]}),
        Signal::Traces,
    )
    .unwrap();
    let out = first_span(&wire_out(p.as_mut(), raw(&b)).materialize().unwrap());
    assert_eq!(keys(&out.attributes), ["x.1", "b"]);
}

#[test]
fn hash_is_sha256_hex_as_the_decoded_path() {
    let a = on_wire(
        json!([{"key": "a", "action": "hash"}, {"pattern": "^x", "action": "hash"}]),
        &[("a", "abc"), ("x.1", ""), ("b", "keep")],
    );
    assert_eq!(
        attr_str(&a, "a"),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(
        attr_str(&a, "x.1"),
        Some(""),
        "an empty string hashes to \"\""
    );
    assert_eq!(attr_str(&a, "b"), Some("keep"));
    // Ints, doubles, bools, maps; hashing twice.
    let mut s = span(&[]);
    for (k, v) in [
        ("i", crate::data::any_value::Value::IntValue(5)),
        ("d", crate::data::any_value::Value::DoubleValue(1.5)),
        ("t", crate::data::any_value::Value::BoolValue(true)),
        ("m", crate::data::any_value::Value::BytesValue(vec![1])),
    ] {
        set_attr(&mut s.attributes, k, v);
    }
    let config =
        json!({"actions": [{"pattern": ".", "action": "hash"}, {"key": "i", "action": "hash"}]});
    assert!(same_both_ways(&config, &traces(vec![s])));
}

#[test]
fn unchanged_spans_and_requests_are_forwarded_as_they_came() {
    let b = traces(vec![span(&[("a", "1")]), span(&[("env", "x")])]);
    let input = raw(&b);
    let bytes = input.encode_proto();
    let mut p = processor(
        &json!({"actions": [{"key": "env", "value": "p", "action": "insert"}, {"key": "nope", "action": "delete"}]}),
        Signal::Traces,
    )
    .unwrap();
    let out = wire_out(p.as_mut(), input).encode_proto();
    // The second span already had `env`: its bytes are in the output unchanged.
    let second = first_span(&traces(vec![span(&[("env", "x")])])).encode_to_vec();
    assert!(out.windows(second.len()).any(|w| w == second.as_slice()));
    assert_ne!(out, bytes);
    let mut p = processor(
        &json!({"actions": [{"key": "nope", "action": "delete"}]}),
        Signal::Traces,
    )
    .unwrap();
    assert_eq!(wire_out(p.as_mut(), raw(&b)).encode_proto(), bytes);
}

#[test]
fn length_prefixes_that_change_width_are_rewritten() {
    // Spans around 128 bytes and scopes around 16 KiB: inserting and deleting makes the
    // span, scope and resource lengths need one byte more or less.
    let mut seen = (false, false);
    for n in [1usize, 60, 110, 125, 140] {
        for pad in [40usize, 70, 90, 100, 150] {
            let v = "v".repeat(pad);
            let spans = (0..n).map(|_| span(&[("a", v.as_str())])).collect();
            let b = traces(spans);
            for actions in [
                json!([{"key": "big", "value": "x".repeat(40), "action": "insert"}]),
                json!([{"key": "a", "action": "delete"}]),
            ] {
                let config = json!({ "actions": actions });
                let before = b.encoded_len();
                assert!(same_both_ways(&config, &b));
                let mut p = processor(&config, Signal::Traces).unwrap();
                let after = wire_out(p.as_mut(), raw(&b)).encoded_len();
                let w = |l: usize| prost::encoding::encoded_len_varint(l as u64);
                seen.0 |= w(after) > w(before) || after / 16384 > before / 16384;
                seen.1 |= after / 16384 < before / 16384;
            }
        }
    }
    assert!(seen.0 && seen.1, "{seen:?}");
}

/// A request with one resource, one scope and these encoded spans.
pub(super) fn request(spans: &[Vec<u8>]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
        out.push(tag);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }
    let mut scope = Vec::new();
    for s in spans {
        field(&mut scope, 0x12, s);
    }
    let mut resource = Vec::new();
    field(&mut resource, 0x12, &scope);
    let mut req = Vec::new();
    field(&mut req, 0x0a, &resource);
    req
}

/// A span with `extra` appended as raw attribute field bytes (field 9).
pub(super) fn span_with_raw_attribute(extra: &[u8]) -> Vec<u8> {
    let mut s = span(&[("a", "1")]).encode_to_vec();
    s.push(0x4a);
    encode_varint(extra.len() as u64, &mut s);
    s.extend_from_slice(extra);
    s
}

#[test]
fn rare_encodings_are_decoded_for_that_item_and_agree() {
    // A KeyValue whose value field comes twice (prost merges: the int replaces the string),
    // and an AnyValue with two members (the last wins).
    let twice = [0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'x', 0x12, 2, 0x18, 5];
    let two_members = [0x0a, 1, b'm', 0x12, 5, 0x0a, 1, b'x', 0x18, 5];
    let req = request(&[
        span_with_raw_attribute(&twice),
        span_with_raw_attribute(&two_members),
    ]);
    let decoded = Batch::decode_proto(Signal::Traces, &req).expect("valid protobuf");
    for actions in [
        json!([{"key": "k", "action": "hash"}, {"key": "m", "action": "hash"}]),
        json!([{"key": "e", "value": 1, "action": "insert"}]),
        json!([{"key": "n", "from_attribute": "k", "action": "upsert"}]),
    ] {
        let config = json!({ "actions": actions });
        let t = Telemetry::new();
        let mut p = processor_with(&config, Signal::Traces, &t).unwrap();
        let input = Batch::from_proto_bytes(Signal::Traces, Bytes::from(req.clone())).unwrap();
        let got = wire_out(p.as_mut(), input).materialize().unwrap();
        let mut q = processor(&config, Signal::Traces).unwrap();
        let want = q
            .process(decoded.clone(), Instant::now())
            .unwrap()
            .remove(0);
        assert_eq!(got, want, "{config}");
        assert_eq!(malformed(&t), 0);
    }
    // Matching on such a value.
    let config = json!({"actions": [{"key": "e", "value": 1, "action": "insert"}],
        "include": {"match_type": "strict", "attributes": [{"key": "k", "value": 5}]}});
    let mut p = processor(&config, Signal::Traces).unwrap();
    let input = Batch::from_proto_bytes(Signal::Traces, Bytes::from(req.clone())).unwrap();
    let got = wire_out(p.as_mut(), input).materialize().unwrap();
    let mut q = processor(&config, Signal::Traces).unwrap();
    assert_eq!(got, q.process(decoded, Instant::now()).unwrap().remove(0));
}

/// Runs `config` on a request whose first span is `bad` (malformed below the scan) and
/// whose second is well-formed; returns the output bytes and the malformed count.
fn with_malformed(config: Value, bad: &[u8]) -> (Vec<u8>, u64) {
    let good = span(&[("a", "1")]).encode_to_vec();
    let req = request(&[bad.to_vec(), good]);
    let input = Batch::from_proto_bytes(Signal::Traces, Bytes::from(req)).expect("scans");
    let t = Telemetry::new();
    let mut p = processor_with(&config, Signal::Traces, &t).unwrap();
    let out = wire_out(p.as_mut(), input).encode_proto();
    let n = malformed(&t);
    // The malformed span goes on byte for byte.
    assert!(out.windows(bad.len()).any(|w| w == bad));
    (out, n)
}

#[test]
fn malformed_attributes_are_forwarded_unchanged_and_counted() {
    let insert = json!({"actions": [{"key": "env", "value": "p", "action": "insert"}]});
    // A KeyValue whose key length runs past its end.
    let truncated = span_with_raw_attribute(&[0x0a, 9, b'k']);
    // A KeyValue whose key has the wrong wire type.
    let wire_type = span_with_raw_attribute(&[0x08, 1, 0x12, 0]);
    // A KeyValue that is not a message at all (tag with wire type 7).
    let garbage = span_with_raw_attribute(&[0x0f, 0xff]);
    for bad in [&truncated, &wire_type, &garbage] {
        let (out, n) = with_malformed(insert.clone(), bad);
        assert_eq!(n, 1);
        // The good span was edited.
        assert!(out.windows(3).any(|w| w == b"env"));
    }
    // Invalid UTF-8 in a key: fine where keys are only compared, malformed where a pattern
    // reads it.
    let utf8 = span_with_raw_attribute(&[0x0a, 2, b'x', 0xff, 0x12, 0]);
    let (_, n) = with_malformed(insert, &utf8);
    assert_eq!(n, 0, "compared as bytes, not read as text");
    let pattern = json!({"actions": [{"pattern": "^x", "action": "delete"}]});
    let (_, n) = with_malformed(pattern, &utf8);
    assert_eq!(n, 1);
    // A hashed value and a matched span name that are not UTF-8.
    let value = span_with_raw_attribute(&[0x0a, 1, b'h', 0x12, 3, 0x0a, 1, 0xfe]);
    let hash = json!({"actions": [{"key": "h", "action": "hash"}]});
    assert_eq!(with_malformed(hash, &value).1, 1);
    let mut named = span(&[("a", "1")]);
    named.name = "zz".into();
    let mut named = named.encode_to_vec();
    let i = named.windows(2).position(|w| w == b"zz").unwrap();
    named[i] = 0xff;
    let names = json!({"actions": [{"key": "e", "value": 1, "action": "insert"}],
        "include": {"match_type": "regexp", "span_names": ["^G"]}});
    assert_eq!(with_malformed(names, &named).1, 1);
}

#[test]
fn random_corruption_never_panics_or_loses_items() {
    let configs = [
        json!({"actions": [{"key": "env", "value": "p", "action": "upsert"}, {"pattern": "^x", "action": "hash"}]}),
        json!({"actions": [{"key": "a", "action": "delete"}, {"key": "c", "from_attribute": "b", "action": "insert"}],
            "include": {"match_type": "regexp", "attributes": [{"key": "a", "value": "v"}], "services": ["a"]}}),
    ];
    let mut processors: Vec<_> = configs
        .iter()
        .map(|c| processor(c, Signal::Traces).unwrap())
        .collect();
    let mut tried = 0;
    for seed in 0..3000 {
        let mut rng = Rng::with_seed(seed);
        let mut bytes = random_traces(&mut rng).encode_proto();
        if bytes.is_empty() {
            continue;
        }
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(..bytes.len());
            bytes[i] = rng.u8(..);
        }
        let Ok(input) = Batch::from_proto_bytes(Signal::Traces, Bytes::from(bytes)) else {
            continue; // the receiver's scan refuses it
        };
        tried += 1;
        for p in processors.iter_mut() {
            wire_out(p.as_mut(), input.clone());
        }
    }
    assert!(tried > 300, "{tried}");
}

#[test]
fn configs_the_wire_path_does_not_take_decode() {
    let cases = [
        (
            json!({"actions": [{"key": "a", "value": 1, "action": "insert"}]}),
            Signal::Traces,
            true,
        ),
        (
            json!({"actions": [{"key": "a", "value": 1, "action": "insert"}]}),
            Signal::Logs,
            true,
        ),
        (
            json!({"actions": [{"key": "a", "value": 1, "action": "insert"}]}),
            Signal::Metrics,
            false,
        ),
        (
            json!({"actions": [{"key": "a", "pattern": "(?P<x>.)", "action": "extract"}]}),
            Signal::Traces,
            false,
        ),
        (
            json!({"actions": [{"key": "a", "converted_type": "int", "action": "convert"}]}),
            Signal::Traces,
            false,
        ),
        (
            json!({"actions": [{"key": "a", "action": "delete"}],
            "include": {"match_type": "strict", "log_bodies": ["x"]}}),
            Signal::Logs,
            false,
        ),
        (
            json!({"actions": [{"key": "a", "action": "delete"}],
            "exclude": {"match_type": "regexp", "libraries": [{"name": "x"}], "span_kinds": ["S"]}}),
            Signal::Traces,
            true,
        ),
    ];
    for (config, signal, wire) in cases.clone() {
        let p = processor(&config, signal).expect("builds");
        assert_eq!(p.accepts_raw(), wire, "{config} {signal}");
    }
    // A decoded batch still takes the decoded path in a processor that accepts raw ones.
    let mut p = processor(&cases[0].0, Signal::Traces).unwrap();
    let b = traces(vec![span(&[])]);
    let out = p.process(b, Instant::now()).unwrap().remove(0);
    assert!(!out.is_raw());
    assert!(attr(&first_span(&out).attributes, "a").is_some());
}
