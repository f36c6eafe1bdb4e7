//! The direct encoder against the reference path: identical protobuf and JSON bytes for
//! random records, label options, line formats and limits.

use prost::Message;

use super::*;
use crate::data::{
    AnyValue, InstrumentationScope, LogRecord, Resource, ResourceLogs, ScopeLogs, string_value,
};
use crate::exporters::jsonw::tests::{random_attrs, random_value};
use crate::exporters::loki::encode::{Limits, encode};
use crate::exporters::loki::labels::{LabelRules, LabelsConfig};
use crate::exporters::loki::proto::PushRequest;

use crate::data::kv;
use crate::data::view::tests::raw_of;

fn attrs(rng: &mut fastrand::Rng) -> Vec<KeyValue> {
    let mut a = random_attrs(rng, 1);
    const SPECIAL: &[&str] = &[
        "service.name",
        "k8s.namespace.name",
        "host.name",
        "1st",
        "a.b",
    ];
    for _ in 0..rng.usize(0..4) {
        let k = SPECIAL[rng.usize(0..SPECIAL.len())];
        let v = if rng.u8(0..4) == 0 {
            random_value(rng, 1)
        } else {
            string_value(["api", "", "x\"y\\z\n", "ééééé"][rng.usize(0..4)])
        };
        a.insert(rng.usize(0..=a.len()), kv(k, v));
    }
    a
}

fn batch(rng: &mut fastrand::Rng) -> Batch {
    Batch::Logs(
        (0..rng.usize(0..4))
            .map(|_| ResourceLogs {
                resource: rng.bool().then(|| Resource {
                    attributes: attrs(rng),
                    ..Default::default()
                }),
                scope_logs: (0..rng.usize(1..3))
                    .map(|_| ScopeLogs {
                        scope: rng.bool().then(|| InstrumentationScope {
                            name: ["", "app.logger"][rng.usize(0..2)].into(),
                            version: ["", "1.2"][rng.usize(0..2)].into(),
                            ..Default::default()
                        }),
                        log_records: (0..rng.usize(0..5))
                            .map(|_| LogRecord {
                                time_unix_nano: [0, 5, 1_700_000_000_123_456_789][rng.usize(0..3)],
                                observed_time_unix_nano: [0, 7][rng.usize(0..2)],
                                severity_number: rng.i32(0..25),
                                severity_text: ["", "INFO", "warning", "x"][rng.usize(0..4)].into(),
                                body: rng.bool().then(|| AnyValue {
                                    value: rng.u8(0..5).ne(&0).then(|| random_value(rng, 0)),
                                }),
                                attributes: attrs(rng),
                                trace_id: [vec![], vec![7; 16]][rng.usize(0..2)].clone(),
                                span_id: [vec![], vec![1; 8]][rng.usize(0..2)].clone(),
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    )
}

fn options(rng: &mut fastrand::Rng) -> EncodeOptions {
    let labels = LabelsConfig {
        defaults: rng.u8(0..4) != 0,
        level: rng.bool(),
        resource: if rng.bool() {
            [("host.name".to_string(), None)].into()
        } else {
            Default::default()
        },
        ..Default::default()
    };
    let limits = if rng.u8(0..4) == 0 {
        Limits {
            max_label_value_length: 3,
            max_structured_metadata_size: 40,
            max_structured_metadata_entries: 4,
        }
    } else {
        Limits::default()
    };
    EncodeOptions {
        labels: LabelRules::new(&labels, limits.max_label_value_length),
        line_format: [LineFormat::Json, LineFormat::Raw, LineFormat::Logfmt][rng.usize(0..3)],
        structured_metadata: rng.u8(0..4) != 0,
        limits,
        tenant: TenantRule::Fixed([None, Some("acme".to_string())][rng.usize(0..2)].clone()),
    }
}

#[test]
fn direct_bodies_equal_the_reference_bytes() {
    let mut rng = fastrand::Rng::with_seed(11);
    for round in 0..1500 {
        let opts = options(&mut rng);
        assert!(applies(&opts));
        let b = batch(&mut rng);
        let reference = encode(&b, &opts, 99);
        let proto = encode_direct(&b, &opts, 99, Format::Protobuf);
        let json = encode_direct(&b, &opts, 99, Format::Json);
        let (Some(proto), Some(json)) = (proto, json) else {
            assert!(reference.is_empty(), "round {round}");
            continue;
        };
        assert_eq!(reference.len(), 1);
        let r = &reference[0];
        let want = r.to_proto();
        assert_eq!(
            PushRequest::decode(proto.body.as_slice()).unwrap(),
            want,
            "round {round}"
        );
        assert_eq!(proto.body, want.encode_to_vec(), "round {round}");
        let snappy = encode_direct(&b, &opts, 99, Format::ProtobufSnappy).unwrap();
        let compressed = snap::raw::Encoder::new().compress_vec(&proto.body).unwrap();
        assert_eq!(snappy.body, compressed, "round {round}");
        assert_eq!(
            String::from_utf8(json.body.clone()).unwrap(),
            String::from_utf8(r.to_json()).unwrap(),
            "round {round}"
        );
        serde_json::from_slice::<serde_json::Value>(&json.body).unwrap();
        assert_eq!(proto.stats, r.stats);
        assert_eq!(proto.tenant, r.tenant);
        assert_eq!(proto.entry_count, r.entry_count());
        assert_eq!(proto.entries_by_stream, r.entries_by_stream());
        // The same bytes from the raw (wire) form of the batch.
        let raw = raw_of(&b, rng.bool());
        for (format, owned) in [(Format::Protobuf, &proto), (Format::Json, &json)] {
            let (got, skipped) = encode_direct_counted(&raw, &opts, 99, format);
            let got = got.expect("raw batch encodes too");
            assert_eq!(skipped, Skipped::default());
            assert_eq!(got.body, owned.body, "round {round}, raw");
            assert_eq!(got.stats, owned.stats);
            assert_eq!(got.entries_by_stream, owned.entries_by_stream);
        }
    }
}

#[test]
fn attribute_tenants_and_record_labels_take_the_reference_path() {
    let mut o = options(&mut fastrand::Rng::with_seed(1));
    o.tenant = TenantRule::Attribute {
        key: "t".into(),
        fallback: None,
    };
    assert!(!applies(&o));
    o.tenant = TenantRule::Fixed(None);
    o.labels = LabelRules::new(
        &LabelsConfig {
            attributes: [("http.route".to_string(), None)].into(),
            ..Default::default()
        },
        2048,
    );
    assert!(!applies(&o));
}

/// Lengths around the varint widths the direct protobuf writer guesses (one byte for a
/// pair, its name and value and the line; two for an entry): every field still has
/// prost's minimal length.
#[test]
fn direct_protobuf_lengths_around_varint_widths_equal_the_reference() {
    let mut rng = fastrand::Rng::with_seed(5);
    let text = |rng: &mut fastrand::Rng| -> String {
        let n = [
            0, 1, 99, 100, 125, 126, 127, 128, 129, 300, 16_383, 16_384, 20_000,
        ][rng.usize(0..13)];
        (0..n).map(|_| rng.alphanumeric()).collect()
    };
    for round in 0..300 {
        let mut opts = options(&mut rng);
        opts.limits = Limits::default();
        let record = |rng: &mut fastrand::Rng| LogRecord {
            time_unix_nano: [0, 5, 1_700_000_000_123_456_789][rng.usize(0..3)],
            body: rng.bool().then(|| AnyValue {
                value: Some(string_value(text(rng))),
            }),
            attributes: (0..rng.usize(0..3))
                .map(|_| {
                    let key = text(rng);
                    kv(&key, string_value(text(rng)))
                })
                .collect(),
            ..Default::default()
        };
        let b = Batch::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv(&text(&mut rng), string_value(text(&mut rng)))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..rng.usize(1..4)).map(|_| record(&mut rng)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let reference = encode(&b, &opts, 99);
        let want = reference[0].to_proto().encode_to_vec();
        let got = encode_direct(&b, &opts, 99, Format::Protobuf).unwrap();
        assert_eq!(got.body, want, "round {round}");
        let (raw, _) = encode_direct_counted(&raw_of(&b, false), &opts, 99, Format::Protobuf);
        assert_eq!(raw.unwrap().body, want, "round {round}, raw");
    }
}

/// Bodies from empty-ish to several snappy blocks (64 KiB), with streams interleaved and
/// timestamps out of order, so the arena is copied out in many runs: the blockwise snappy
/// body is snappy's compression of the protobuf body, and decompresses to it.
#[test]
fn direct_snappy_bodies_are_the_compressed_protobuf_bodies() {
    let mut rng = fastrand::Rng::with_seed(9);
    let opts = EncodeOptions {
        labels: LabelRules::new(&LabelsConfig::default(), 2048),
        line_format: LineFormat::Raw,
        structured_metadata: true,
        limits: Limits::default(),
        tenant: TenantRule::Fixed(None),
    };
    for n in [1, 2, 50, 200, 700, 3000] {
        let b = Batch::Logs(
            (0..n)
                .map(|i| ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", string_value(["a", "b", "c"][i % 3]))],
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![LogRecord {
                            time_unix_nano: rng.u64(1..1000),
                            body: Some(AnyValue {
                                value: Some(string_value(
                                    (0..rng.usize(0..200))
                                        .map(|_| rng.alphanumeric())
                                        .collect::<String>(),
                                )),
                            }),
                            attributes: vec![kv("k", string_value("v".repeat(i % 50)))],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        );
        let plain = encode_direct(&b, &opts, 1, Format::Protobuf).unwrap();
        for batch in [b.clone(), raw_of(&b, rng.bool())] {
            let snappy = encode_direct(&batch, &opts, 1, Format::ProtobufSnappy).unwrap();
            assert_eq!(snappy.error, None);
            let back = snap::raw::Decoder::new()
                .decompress_vec(&snappy.body)
                .unwrap();
            assert_eq!(back, plain.body, "{n} records");
            let want = snap::raw::Encoder::new().compress_vec(&plain.body).unwrap();
            assert_eq!(snappy.body, want, "{n} records");
            assert_eq!(snappy.entry_count, n);
        }
        if n == 3000 {
            assert!(plain.body.len() > 3 * 65536, "{}", plain.body.len());
        }
    }
}
