use super::*;
use crate::data::*;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    NumberDataPoint, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::trace::v1::span::Link;

use crate::data::kv_str as kv;

/// `batch` encoded, with the first byte of the first `marker` in it made 0xff: a string
/// that is not UTF-8, which the fast path's shallow scan lets through and prost refuses.
pub(crate) fn not_utf8(batch: &Batch, marker: &[u8]) -> Vec<u8> {
    let mut bytes = batch.encode_proto();
    let i = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker is in the batch");
    bytes[i] = 0xff;
    bytes
}

pub(crate) fn traces(resources: usize, spans: usize) -> Batch {
    Batch::Traces(
        (0..resources)
            .map(|r| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("svc{r}"))],
                    ..Default::default()
                }),
                scope_spans: (0..2)
                    .map(|sc| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: format!("scope{sc}"),
                            ..Default::default()
                        }),
                        spans: (0..spans)
                            .map(|i| Span {
                                trace_id: vec![r as u8 + 1; 16],
                                span_id: vec![i as u8 + 1; 8],
                                parent_span_id: if i % 2 == 0 { vec![] } else { vec![9; 8] },
                                name: format!("span{i}"),
                                kind: 2,
                                start_time_unix_nano: 1_000 + i as u64,
                                end_time_unix_nano: 2_000 + i as u64,
                                attributes: vec![kv("a", "b"), kv("c", "d")],
                                links: vec![Link {
                                    trace_id: vec![7; 16],
                                    span_id: vec![8; 8],
                                    flags: 1,
                                    ..Default::default()
                                }],
                                flags: 257,
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: "s".into(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    )
}

pub(crate) fn logs(n: usize) -> Batch {
    Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: (0..n)
                .map(|i| LogRecord {
                    time_unix_nano: i as u64,
                    observed_time_unix_nano: 5,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(string_value("hello")),
                    }),
                    trace_id: if i % 2 == 0 { vec![] } else { vec![1; 16] },
                    span_id: if i % 2 == 0 { vec![] } else { vec![1; 8] },
                    flags: 1,
                    event_name: "e".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn metrics() -> Batch {
    use metric::Data;
    let n = |k: usize| {
        (0..k)
            .map(|_| NumberDataPoint::default())
            .collect::<Vec<_>>()
    };
    let m = |data| Metric {
        name: "m".into(),
        data: Some(data),
        ..Default::default()
    };
    Batch::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                m(Data::Gauge(Gauge { data_points: n(2) })),
                m(Data::Sum(Sum {
                    data_points: n(3),
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                m(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint::default(); 4],
                    aggregation_temporality: 1,
                })),
                m(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint::default(); 5],
                    aggregation_temporality: 1,
                })),
                m(Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint::default(); 6],
                })),
                Metric::default(),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn counts(b: &Batch) -> Counts {
    Counts {
        items: b.item_count(),
        resources: b.resource_count(),
    }
}

#[test]
fn counts_equal_decoded_counts_for_every_signal() {
    for b in [traces(3, 5), traces(0, 0), logs(7), metrics()] {
        let bytes = b.encode_proto();
        assert_eq!(
            scan(b.signal(), &bytes).unwrap(),
            counts(&b),
            "{:?}",
            b.signal()
        );
    }
    assert_eq!(counts(&metrics()).items, 20);
}

#[test]
fn concatenated_requests_are_the_merged_request() {
    let (a, b) = (traces(2, 3), traces(1, 4));
    let mut bytes = a.encode_proto();
    bytes.extend(b.encode_proto());
    let mut merged = a.clone();
    merged.merge(b.clone());
    assert_eq!(Batch::decode_proto(Signal::Traces, &bytes).unwrap(), merged);
    assert_eq!(bytes, merged.encode_proto());
    let c = scan(Signal::Traces, &bytes).unwrap();
    assert_eq!(c, counts(&merged));
    // Resource boundaries are valid cut points.
    let ends: Vec<_> = resources(Signal::Traces, &bytes)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ends.len(), 3);
    assert_eq!(ends[1].end, a.encode_proto().len());
    assert_eq!(ends.iter().map(|r| r.items).sum::<usize>(), 20);
}

/// A span message (field 2 of ScopeSpans, inside field 2 of ResourceSpans, inside field 1).
fn wrap_span(span: &[u8]) -> Vec<u8> {
    fn len_field(n: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2];
        prost::encoding::encode_varint(payload.len() as u64, &mut v);
        v.extend_from_slice(payload);
        v
    }
    len_field(1, &len_field(2, &len_field(2, span)))
}

fn ids() -> Vec<u8> {
    let mut v = vec![0x0a, 16];
    v.extend([1; 16]);
    v.extend([0x12, 8]);
    v.extend([2; 8]);
    v
}

#[test]
fn every_class_of_malformed_input_is_rejected() {
    let good = traces(1, 2).encode_proto();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated varint", vec![0x0a, 0x80]),
        ("overlong varint", {
            let mut v = vec![0x08];
            v.extend([0xff; 10]);
            v.push(0x01);
            v
        }),
        ("tenth varint byte > 1", {
            let mut v = vec![0x08];
            v.extend([0xff; 9]);
            v.push(0x02);
            v
        }),
        ("field number 0", vec![0x02, 0x00]),
        ("wire type 6", vec![0x0e, 0x00]),
        ("wire type 7", vec![0x0f]),
        ("length past the end", vec![0x0a, 0x05, 0x01]),
        ("truncated request", good[..good.len() - 3].to_vec()),
        ("truncated fixed64", vec![0x11, 1, 2, 3]),
        ("truncated fixed32", vec![0x15, 1, 2]),
        ("end group without start", vec![0x0c]),
        ("unterminated group", vec![0x13, 0x08, 0x01]),
        ("request field 1 as varint", vec![0x08, 0x01]),
        ("span trace_id as varint", wrap_span(&[0x08, 0x01])),
        ("span kind as bytes", {
            let mut s = ids();
            s.extend([0x32, 0x00]);
            wrap_span(&s)
        }),
        ("span length past its parent", {
            let mut v = wrap_span(&ids());
            v[5] += 1; // the span's length byte
            v
        }),
        ("trace_id of 3 bytes", {
            let mut s = vec![0x0a, 3, 1, 2, 3];
            s.extend(&ids()[18..]);
            wrap_span(&s)
        }),
        ("missing trace_id", wrap_span(&ids()[18..])),
        ("missing span_id", wrap_span(&ids()[..18])),
        ("parent_span_id of 5 bytes", {
            let mut s = ids();
            s.extend([0x22, 5, 1, 1, 1, 1, 1]);
            wrap_span(&s)
        }),
        ("link without ids", {
            let mut s = ids();
            s.extend([0x6a, 0x00]);
            wrap_span(&s)
        }),
    ];
    for (name, bytes) in cases {
        let e = scan(Signal::Traces, &bytes);
        assert!(e.is_err(), "{name}: accepted");
        // Whatever the scan rejects, a full decode (with the id checks) rejects too.
        let decoded = Batch::decode_proto(Signal::Traces, &bytes)
            .map_err(|e| e.to_string())
            .and_then(|b| b.validate_ids());
        assert!(
            decoded.is_err(),
            "{name}: scan rejects ({e:?}) what prost accepts"
        );
    }
    // Log record ids may be empty, but not of another length.
    let mut l = logs(1);
    if let Batch::Logs(v) = &mut l {
        v[0].scope_logs[0].log_records[0].trace_id = vec![1; 5];
    }
    let e = scan(Signal::Logs, &l.encode_proto()).unwrap_err();
    assert!(e.to_string().contains("trace_id"), "{e}");
}

#[test]
fn unknown_fields_and_balanced_groups_are_skipped_like_prost() {
    let mut s = ids();
    // Unknown field 50 (varint), unknown field 51 as a group holding a nested group.
    s.extend([0x90, 0x03, 0x07]);
    s.extend([0x9b, 0x03, 0x0b, 0x08, 0x01, 0x0c, 0x9c, 0x03]);
    let bytes = wrap_span(&s);
    assert_eq!(
        scan(Signal::Traces, &bytes).unwrap(),
        Counts {
            items: 1,
            resources: 1
        }
    );
    assert_eq!(
        Batch::decode_proto(Signal::Traces, &bytes)
            .unwrap()
            .item_count(),
        1
    );
}

#[test]
fn mutated_requests_never_pass_the_scan_when_prost_rejects_their_framing() {
    // Random byte changes: the scan may accept what a full decode rejects deeper down
    // (documented), but must never reject what decodes and validates.
    let good = traces(2, 3).encode_proto();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(..b.len());
            b[i] = rng.u8(..);
        }
        if rng.bool() {
            b.truncate(rng.usize(..b.len()));
        }
        let decoded = Batch::decode_proto(Signal::Traces, &b)
            .ok()
            .filter(|d| d.validate_ids().is_ok());
        match (scan(Signal::Traces, &b), decoded) {
            (Ok(c), Some(d)) => assert_eq!(c, counts(&d)),
            (Err(e), Some(_)) => panic!("scan rejects a valid request: {e}"),
            _ => {}
        }
    }
}

#[test]
fn the_common_span_loop_accepts_only_what_the_walk_accepts() {
    use prost::Message;
    // Real spans (every field the generator and SDKs set) take the short loop...
    let Batch::Traces(rs) = traces(1, 5) else {
        unreachable!()
    };
    // (without the links the sample spans carry; `flags` stays set)
    let spans: Vec<Vec<u8>> = rs[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.links.clear();
            s.encode_to_vec()
        })
        .collect();
    for s in &spans {
        assert!(span_common(s), "a plain span must take the short loop");
        assert!(span_walk(s, 0).is_ok());
    }
    // ...a span with a link or a bad id does not (the walk decides and names the error)...
    let mut linked = rs[0].scope_spans[0].spans[0].clone();
    linked.links.push(Link {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        ..Default::default()
    });
    assert!(!span_common(&linked.encode_to_vec()));
    assert!(span_walk(&linked.encode_to_vec(), 0).is_ok());
    let mut short = rs[0].scope_spans[0].spans[0].clone();
    short.span_id = vec![1; 4];
    assert!(!span_common(&short.encode_to_vec()));
    // ...and on random damage it never accepts what the walk rejects.
    let mut rng = fastrand::Rng::with_seed(11);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut b = spans[rng.usize(..spans.len())].clone();
        for _ in 0..rng.usize(1..3) {
            let i = rng.usize(..b.len());
            b[i] = rng.u8(..);
        }
        if rng.u8(..) < 32 {
            b.truncate(rng.usize(..b.len()));
        }
        if span_common(&b) {
            accepted += 1;
            assert!(span_walk(&b, 0).is_ok(), "short loop accepted {b:?}");
        }
    }
    assert!(
        accepted > 1000,
        "the damage left too few valid spans to compare"
    );
}
