//! Views against prost: the same values from wire bytes as from decoded messages, and each
//! class of malformed content handled as documented (fallback to prost, or dropped and
//! counted), never a panic.

use bytes::Bytes;
use prost::Message;

use super::*;
use crate::data::view_logs::LogsView;
use crate::data::{Batch, ResourceLogs, ScopeLogs, Signal, string_value};
use crate::exporters::jsonw;
use crate::exporters::jsonw::tests::{random_attrs, random_value};

/// The batch as a raw batch: one request, or one request per resource (several parts).
pub(crate) fn raw_of(b: &Batch, per_resource: bool) -> Batch {
    let Batch::Logs(v) = b else {
        panic!("logs only")
    };
    if !per_resource {
        return Batch::from_proto_bytes(Signal::Logs, Bytes::from(b.encode_proto())).unwrap();
    }
    let mut out = Batch::from_proto_bytes(Signal::Logs, Bytes::new()).unwrap();
    for rl in v {
        let one = Batch::Logs(vec![rl.clone()]);
        out.merge(Batch::from_proto_bytes(Signal::Logs, Bytes::from(one.encode_proto())).unwrap());
    }
    assert!(out.is_raw());
    out
}

fn json(v: Option<AnyRef<'_>>) -> String {
    let mut out = Vec::new();
    jsonw::any_or_null(&mut out, v);
    String::from_utf8(out).unwrap()
}

fn any_value(rng: &mut fastrand::Rng) -> AnyValue {
    AnyValue {
        value: match rng.u8(0..10) {
            0 => None,
            1 => Some(any_value::Value::StringValueStrindex(rng.i32(..))),
            _ => Some(random_value(rng, 0)),
        },
    }
}

#[test]
fn wire_values_read_as_prost_decodes_them() {
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..3000 {
        let v = any_value(&mut rng);
        let bytes = v.encode_to_vec();
        check_any(&bytes, 0).unwrap();
        let (wire, owned) = (AnyRef::from_wire(&bytes), AnyRef::from_any(Some(&v)));
        assert_eq!(json(wire), json(owned), "{v:?}");
        let mut a = Vec::new();
        let mut b = Vec::new();
        if let (Some(w), Some(o)) = (wire, owned) {
            jsonw::any_text(&mut a, w);
            jsonw::any_text(&mut b, o);
            assert_eq!(a, b);
            let back = AnyValue {
                value: Some(w.to_value()),
            };
            assert_eq!(json(AnyRef::from_any(Some(&back))), json(owned));
        }
        let attrs = random_attrs(&mut rng, 0);
        let kvl = crate::data::KeyValueList {
            values: attrs.clone(),
        };
        let bytes = kvl.encode_to_vec();
        let wire: Vec<_> = Attrs::Wire(&bytes, 1).iter().collect();
        let owned: Vec<_> = Attrs::Owned(&attrs).iter().collect();
        assert_eq!(wire.len(), owned.len());
        for (w, o) in wire.iter().zip(&owned) {
            assert_eq!(w.key, o.key);
            assert_eq!(json(w.value), json(o.value));
        }
        // (Compared encoded: NaN is not equal to itself.)
        let enc = |v: &[KeyValue]| v.iter().map(|kv| kv.encode_to_vec()).collect::<Vec<_>>();
        assert_eq!(enc(&Attrs::Wire(&bytes, 1).to_vec()), enc(&attrs));
        let keys: Vec<&str> = Attrs::Wire(&bytes, 1).keys().collect();
        assert_eq!(
            keys,
            attrs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>()
        );
        for k in ["a", "b", "é", "zz"] {
            assert_eq!(
                Attrs::Wire(&bytes, 1).get_str(k),
                crate::data::attr_str(&attrs, k)
            );
        }
    }
}

fn random_record(rng: &mut fastrand::Rng) -> LogRecord {
    LogRecord {
        time_unix_nano: rng.u64(..),
        observed_time_unix_nano: [0, rng.u64(..)][rng.usize(0..2)],
        severity_number: rng.i32(-3..25),
        severity_text: ["", "INFO", "é\n"][rng.usize(0..3)].into(),
        body: rng.bool().then(|| any_value(rng)),
        attributes: random_attrs(rng, 0),
        dropped_attributes_count: rng.u32(..),
        flags: rng.u32(..),
        trace_id: [vec![], vec![3; 16]][rng.usize(0..2)].clone(),
        span_id: [vec![], vec![4; 8]][rng.usize(0..2)].clone(),
        event_name: ["", "e"][rng.usize(0..2)].into(),
    }
}

#[test]
fn wire_records_read_as_prost_decodes_them() {
    let mut rng = fastrand::Rng::with_seed(6);
    for _ in 0..2000 {
        let r = random_record(&mut rng);
        let bytes = r.encode_to_vec();
        check_log(&bytes).unwrap();
        let w = LogView::from_wire(&bytes);
        assert_same_record(&w, &LogView::from_owned(&r));
        assert_eq!(w.record().encode_to_vec(), bytes);
    }
}

// ---- hand-crafted bytes

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(n: u32, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, u64::from(n << 3 | 2));
    varint(&mut out, b.len() as u64);
    out.extend_from_slice(b);
    out
}

/// A request of one resource with one scope holding `records` (encoded `LogRecord`s).
fn request(records: &[Vec<u8>]) -> Vec<u8> {
    let recs: Vec<u8> = records.iter().flat_map(|r| len_field(2, r)).collect();
    len_field(1, &len_field(2, &recs))
}

fn good(n: usize) -> Vec<u8> {
    let b = Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: (0..n)
                .map(|i| LogRecord {
                    time_unix_nano: i as u64 + 1,
                    body: Some(AnyValue {
                        value: Some(string_value("ok")),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }]);
    b.encode_proto()
}

/// `good(2)`, then a resource of `bad` + one good record, then `good(3)`: what the views
/// read (records, dropped) and what prost makes of the middle resource.
fn walk(bad: Vec<u8>) -> (usize, usize, Option<String>, Batch) {
    let ok = LogRecord {
        body: Some(AnyValue {
            value: Some(string_value("fine")),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let middle = request(&[bad, ok]);
    let all = [good(2), middle.clone(), good(3)].concat();
    let raw = Batch::from_proto_bytes(Signal::Logs, Bytes::from(all)).expect("passes the scan");
    let mut view = LogsView::new(&raw);
    let mut n = 0;
    for rv in view.by_ref() {
        for sv in rv.scopes() {
            for r in sv.records.iter() {
                let _ = json(r.body);
                r.attributes.iter().for_each(|kv| drop(json(kv.value)));
                n += 1;
            }
        }
    }
    let decoded = Batch::decode_proto(Signal::Logs, &middle).unwrap_or(Batch::Logs(vec![]));
    (n, view.dropped, view.error, decoded)
}

#[test]
fn invalid_utf8_drops_that_resource_only() {
    // An attribute value that is not UTF-8: prost refuses it too.
    let kv = [len_field(1, b"k"), len_field(2, &len_field(1, b"\xff\xfe"))].concat();
    let (n, dropped, error, _) = walk(len_field(6, &kv));
    assert_eq!((n, dropped), (5, 2));
    assert!(error.unwrap().contains("UTF-8"));
    // In the severity text and in a key, the same.
    let (n, dropped, _, _) = walk(len_field(3, b"\xc3"));
    assert_eq!((n, dropped), (5, 2));
    let kv = len_field(1, b"\xff");
    assert_eq!(walk(len_field(6, &kv)).1, 2);
}

#[test]
fn truncated_and_mistyped_nested_values_drop_that_resource_only() {
    // A body kvlist whose key/value claims 5 bytes and has 1.
    let body = len_field(6, &[0x0a, 0x05, b'a']);
    let (n, dropped, error, _) = walk(len_field(5, &body));
    assert_eq!((n, dropped), (5, 2));
    assert!(error.is_some());
    // An attribute whose value field is a varint instead of a message.
    let kv = [len_field(1, b"k"), vec![0x10, 0x01]].concat();
    assert_eq!(walk(len_field(6, &kv)).1, 2);
    // A nested array element with a bad wire type (fixed32 where a message goes).
    let arr = len_field(5, &[0x0d, 0, 0, 0, 0]);
    assert_eq!(walk(len_field(5, &arr)).1, 2);
}

#[test]
fn what_prost_accepts_but_the_views_do_not_read_is_decoded_with_prost() {
    // A body with two value fields (prost keeps the last), an unknown group field and
    // deep nesting: the resource is decoded with prost, nothing is dropped.
    let two = [len_field(1, b"first"), vec![0x18, 0x07]].concat();
    let group = [
        vec![0xa3, 0x01, 0x08, 0x01, 0xa4, 0x01],
        len_field(5, &len_field(1, b"x")),
    ]
    .concat();
    let mut deep = len_field(1, b"leaf");
    for _ in 0..40 {
        deep = len_field(5, &len_field(1, &deep));
    }
    for bad in [len_field(5, &two), group, len_field(5, &deep)] {
        let (n, dropped, error, decoded) = walk(bad);
        assert_eq!((n, dropped, error), (7, 0, None));
        assert_eq!(decoded.item_count(), 2);
    }
    // The views give prost's reading of the double-valued body.
    let raw =
        Batch::from_proto_bytes(Signal::Logs, Bytes::from(request(&[len_field(5, &two)]))).unwrap();
    let rv = LogsView::new(&raw).next().unwrap();
    let body = rv
        .scopes()
        .next()
        .unwrap()
        .records
        .iter()
        .next()
        .unwrap()
        .body;
    assert_eq!(json(body), "7");
}

/// 3,000 random encoded records (empty ones skipped), each with 1–3 bytes overwritten.
fn corrupted_records(seed: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..3000).filter_map(move |_| {
        let mut rec = random_record(&mut rng).encode_to_vec();
        if rec.is_empty() {
            return None;
        }
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(0..rec.len());
            rec[i] = rng.u8(..);
        }
        Some(rec)
    })
}

#[test]
fn garbage_never_panics() {
    for rec in corrupted_records(8) {
        // Whatever the record holds, the views read it or leave it to prost.
        let _ = check_log(&rec);
        let v = LogView::from_wire(&rec);
        let _ = json(v.body);
        v.attributes.iter().for_each(|kv| drop(json(kv.value)));
        if let Ok(raw) = Batch::from_proto_bytes(Signal::Logs, Bytes::from(request(&[rec]))) {
            let mut view = LogsView::new(&raw);
            let n: usize = view
                .by_ref()
                .map(|rv| rv.scopes().map(|s| s.records.iter().count()).sum::<usize>())
                .sum();
            assert_eq!(n + view.dropped, 1);
        }
    }
}

/// Every field of two views of the same record, compared as prost would see them.
fn assert_same_record(w: &LogView<'_>, o: &LogView<'_>) {
    assert_eq!(w.time_unix_nano, o.time_unix_nano);
    assert_eq!(w.observed_time_unix_nano, o.observed_time_unix_nano);
    assert_eq!(w.severity_number, o.severity_number);
    assert_eq!(w.severity_text, o.severity_text);
    assert_eq!(json(w.body), json(o.body));
    assert_eq!(w.dropped_attributes_count, o.dropped_attributes_count);
    assert_eq!(w.flags, o.flags);
    assert_eq!(w.trace_id, o.trace_id);
    assert_eq!(w.span_id, o.span_id);
    assert_eq!(w.event_name, o.event_name);
    let (wa, oa): (Vec<_>, Vec<_>) = (w.attributes.iter().collect(), o.attributes.iter().collect());
    assert_eq!(wa.len(), oa.len());
    for (a, b) in wa.iter().zip(&oa) {
        assert_eq!(a.key, b.key);
        assert_eq!(json(a.value), json(b.value));
    }
    let enc = |v: &[KeyValue]| v.iter().map(|kv| kv.encode_to_vec()).collect::<Vec<_>>();
    assert_eq!(enc(&w.attributes.to_vec()), enc(&o.attributes.to_vec()));
    assert!(w.attributes.keys().eq(o.attributes.keys()));
    for k in ["a", "b", "é", "zz"] {
        assert_eq!(w.attributes.get_str(k), o.attributes.get_str(k));
    }
    assert_eq!(w.record().encode_to_vec(), o.record().encode_to_vec());
}

#[test]
fn records_read_by_the_check_equal_the_wire_views_and_prost() {
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..2000 {
        let r = random_record(&mut rng);
        let bytes = r.encode_to_vec();
        let mut kvs = Vec::new();
        let read = crate::data::view_check::read_log(&bytes, &mut kvs).unwrap();
        let read = read.with_attributes(Attrs::Checked(&kvs));
        assert_same_record(&read, &LogView::from_owned(&r));
        assert_same_record(&read, &LogView::from_wire(&bytes));
    }
}

#[test]
fn a_raw_batch_views_as_its_decoded_batch() {
    let mut rng = fastrand::Rng::with_seed(10);
    for _ in 0..200 {
        let b = Batch::Logs(
            (0..rng.usize(1..4))
                .map(|_| ResourceLogs {
                    scope_logs: (0..rng.usize(0..3))
                        .map(|_| ScopeLogs {
                            log_records: (0..rng.usize(0..5))
                                .map(|_| random_record(&mut rng))
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        );
        let raw = raw_of(&b, rng.bool());
        let (mut w, mut o) = (LogsView::new(&raw), LogsView::new(&b));
        let mut n = 0;
        for (rw, ro) in w.by_ref().zip(o.by_ref()) {
            for (sw, so) in rw.scopes().zip(ro.scopes()) {
                let (rw, ro): (Vec<_>, Vec<_>) =
                    (sw.records.iter().collect(), so.records.iter().collect());
                assert_eq!(rw.len(), ro.len());
                for (a, b) in rw.iter().zip(&ro) {
                    assert_same_record(a, b);
                    n += 1;
                }
            }
        }
        assert!(w.next().is_none() && o.next().is_none());
        assert_eq!((n, w.dropped), (b.item_count(), 0));
    }
}

#[test]
fn the_check_reads_corrupted_records_as_the_wire_views_or_refuses_them() {
    for rec in corrupted_records(11) {
        let mut kvs = Vec::new();
        if let Ok(read) = crate::data::view_check::read_log(&rec, &mut kvs) {
            // Whatever it accepts, prost decodes to the same.
            let decoded = LogRecord::decode(&rec[..]).expect("prost accepts what the check does");
            let read = read.with_attributes(Attrs::Checked(&kvs));
            assert_same_record(&read, &LogView::from_owned(&decoded));
            assert_same_record(&read, &LogView::from_wire(&rec));
        }
    }
}
