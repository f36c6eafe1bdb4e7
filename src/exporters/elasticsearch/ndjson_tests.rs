//! The direct writer against the reference mapping: identical bytes (hence identical
//! `_id`s) for random records in both mappings and every routing and id option.

use super::*;
use crate::data::{AnyValue, KeyValue, LogRecord, ResourceLogs, ScopeLogs, string_value};
use crate::exporters::jsonw::tests::{random_attrs, random_value};

use crate::data::kv;
use crate::data::view::tests::raw_of;

/// Random attributes plus, now and then, the keys the mappings treat specially.
fn attrs(rng: &mut fastrand::Rng) -> Vec<KeyValue> {
    let mut a = random_attrs(rng, 1);
    const SPECIAL: &[&str] = &[
        "data_stream.dataset",
        "data_stream.namespace",
        "elasticsearch.index",
        "elasticsearch.document_id",
        "event.name",
        "host.name",
        "k8s.pod.name",
        "message",
        "service.name",
        "log.level",
        "labels.message",
    ];
    for _ in 0..rng.usize(0..4) {
        let k = SPECIAL[rng.usize(0..SPECIAL.len())];
        let v = if rng.u8(0..4) == 0 {
            random_value(rng, 2)
        } else {
            string_value(["Nginx-Access", "", "x", "prod", "é\"\n"][rng.usize(0..5)])
        };
        a.insert(rng.usize(0..=a.len()), kv(k, v));
    }
    a
}

fn record(rng: &mut fastrand::Rng) -> LogRecord {
    LogRecord {
        time_unix_nano: if rng.bool() { rng.u64(..) } else { 0 },
        observed_time_unix_nano: if rng.bool() { rng.u64(..) } else { 0 },
        severity_number: rng.i32(-1..25),
        severity_text: ["", "INFO", "warn\u{1}"][rng.usize(0..3)].into(),
        body: rng.bool().then(|| AnyValue {
            value: rng.u8(0..5).ne(&0).then(|| random_value(rng, 0)),
        }),
        attributes: attrs(rng),
        dropped_attributes_count: rng.u32(0..2),
        flags: 0,
        trace_id: [vec![], vec![0; 16], vec![7; 16]][rng.usize(0..3)].clone(),
        span_id: [vec![], vec![0; 8], (1..9).collect()][rng.usize(0..3)].clone(),
        event_name: ["", "login"][rng.usize(0..2)].into(),
    }
}

fn batch(rng: &mut fastrand::Rng) -> Batch {
    Batch::Logs(
        (0..rng.usize(1..3))
            .map(|_| ResourceLogs {
                resource: rng.bool().then(|| Resource {
                    attributes: attrs(rng),
                    dropped_attributes_count: rng.u32(0..2),
                    ..Default::default()
                }),
                scope_logs: (0..rng.usize(1..3))
                    .map(|_| ScopeLogs {
                        scope: rng.bool().then(|| InstrumentationScope {
                            name: ["", "app.logger"][rng.usize(0..2)].into(),
                            version: ["", "1.2"][rng.usize(0..2)].into(),
                            attributes: attrs(rng),
                            dropped_attributes_count: rng.u32(0..2),
                        }),
                        log_records: (0..rng.usize(0..4)).map(|_| record(rng)).collect(),
                        schema_url: ["", "https://s/1"][rng.usize(0..2)].into(),
                    })
                    .collect(),
                schema_url: ["", "https://r/1"][rng.usize(0..2)].into(),
            })
            .collect(),
    )
}

fn reference(enc: &Encoder, b: &Batch) -> (Vec<u8>, Vec<Op>) {
    let docs = enc.documents(b);
    (
        docs.iter().flat_map(|d| d.to_ndjson()).collect(),
        docs.iter().map(|d| d.op).collect(),
    )
}

#[test]
fn direct_bodies_equal_the_reference_byte_for_byte() {
    let mut rng = fastrand::Rng::with_seed(10);
    for round in 0..1500 {
        let enc = Encoder {
            mode: if rng.bool() { Mode::Otel } else { Mode::Ecs },
            logs_index: [None, Some("app-logs".to_string()), Some("logs-a-b".into())]
                [rng.usize(0..3)]
            .clone(),
            logs_dynamic_index: rng.bool(),
            logs_dynamic_id: rng.bool(),
            document_id: if rng.bool() {
                DocumentId::ContentHash
            } else {
                DocumentId::Auto
            },
            ..Default::default()
        };
        let b = batch(&mut rng);
        let mut out = BulkBody::default();
        enc.write_bulk(&b, &mut out);
        let (want, ops) = reference(&enc, &b);
        assert_eq!(
            String::from_utf8_lossy(&out.body),
            String::from_utf8_lossy(&want),
            "round {round}, {enc:?}"
        );
        assert_eq!(out.ops, ops);
        assert_eq!(out.len(), b.item_count());
        // Every line parses; sizes add up; slices are whole documents.
        for line in out.body.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(line).unwrap();
        }
        assert_eq!(out.sizes().iter().sum::<usize>(), out.body.len());
        assert_eq!(out.slice(0..out.len()), &out.body[..]);
        // The same bytes (hence `_id`s) from the raw (wire) form of the batch.
        let raw = raw_of(&b, rng.bool());
        let mut got = BulkBody::default();
        enc.write_bulk(&raw, &mut got);
        assert_eq!(
            String::from_utf8_lossy(&got.body),
            String::from_utf8_lossy(&out.body),
            "round {round}, raw, {enc:?}"
        );
        assert_eq!((got.ops, got.ends), (out.ops, out.ends));
        assert_eq!(got.malformed, 0);
        // A partial retry keeps the same records from either form.
        let keep: Vec<bool> = (0..b.item_count()).map(|_| rng.bool()).collect();
        assert_eq!(
            super::super::bulk::retain(&raw, &keep).encode_proto(),
            super::super::bulk::retain(&b, &keep).encode_proto()
        );
    }
}

#[test]
fn timestamps_match_chrono() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut cases = vec![
        0,
        1,
        999_999_999,
        1_000_000_000,
        u64::MAX,
        951_782_400_000_000_000,
    ];
    cases.extend((0..20_000).map(|_| rng.u64(..)));
    // Runs within a second and across its boundaries (the kept date and time of day).
    let base = 1_764_115_199_000_000_000;
    cases.extend((0..200).map(|k| base + k * 123_456_789));
    cases.extend([base, base - 1, base, base + 86_400_000_000_000, base]);
    for n in cases {
        let mut out = Vec::new();
        rfc3339_nanos(&mut out, n);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            super::super::mapping::timestamp(n)
        );
    }
}

#[test]
fn non_log_batches_take_the_reference_path() {
    let b = Batch::Traces(vec![crate::data::ResourceSpans::default()]);
    let mut out = BulkBody::default();
    Encoder::default().write_bulk(&b, &mut out);
    assert!(out.is_empty());
}

/// Batches of 17–120 records: content ids are hashed in groups ([`sha2x::lanes`] at a
/// time, then the rest when the batch ends), and every id is still its own document's.
#[test]
fn content_ids_of_large_batches_equal_the_reference() {
    let mut rng = fastrand::Rng::with_seed(16);
    let enc = Encoder {
        document_id: DocumentId::ContentHash,
        ..Default::default()
    };
    for round in 0..40 {
        let mut resources = Vec::new();
        let mut n = 0;
        let want_n = rng.usize(17..120);
        while n < want_n {
            if let Batch::Logs(r) = batch(&mut rng) {
                n += r
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .map(|s| s.log_records.len())
                    .sum::<usize>();
                resources.extend(r);
            }
        }
        let b = Batch::Logs(resources);
        let mut out = BulkBody::default();
        enc.write_bulk(&b, &mut out);
        let (want, _) = reference(&enc, &b);
        assert_eq!(out.len(), n, "round {round}");
        assert!(
            out.body == want,
            "round {round}: {n} documents differ from the reference"
        );
    }
}
