//! The elasticsearch exporter's pure stages on 1000-log-record batches: documents (mapping,
//! routing, content ids), the NDJSON body, gzip, and parsing a `_bulk` answer: items/s.
//! `bulk_body_*` is the exporter's path for logs (documents written directly into the
//! body); `raw_bulk_body_*` the same writer on the raw batch the forwarding fast path hands
//! over (records read from the request bytes), `decode_bulk_body_*` decoding the request
//! first (what the exporter did before it took raw batches); `documents_*` + `ndjson_*` the
//! reference path it is tested against.
//!
//!   cargo bench --bench elasticsearch

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft::data::*;
use weft::exporters::elasticsearch::bulk::{Doc, DocumentId, Encoder};
use weft::exporters::elasticsearch::mapping::Mode;
use weft::exporters::elasticsearch::ndjson::BulkBody;
use weft::exporters::elasticsearch::response::parse_response;
use weft::exporters::http_client::gzip;

/// gzip as the exporter does it: with the JSON resync.
fn gzip_json(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() / 2 + 64);
    weft::exporters::deflate::gzip_shaped_into(
        body,
        &mut out,
        weft::exporters::deflate::Shape::Json,
    );
    out
}

const N: usize = 1000;

fn logs(n: usize) -> Batch {
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(string_value(v)),
        }),
        ..Default::default()
    };
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "checkout".into()),
                kv("host.name", "node-7".into()),
                kv("k8s.pod.name", "checkout-7d9f".into()),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: (0..n)
                .map(|i| LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(string_value(format!(
                            "order {i} accepted for customer c-{} in 12ms",
                            i % 97
                        ))),
                    }),
                    attributes: (0..8)
                        .map(|a| kv(&format!("attr.{a}"), format!("value-{a}-{}", i % 13)))
                        .collect(),
                    trace_id: vec![7; 16],
                    span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn bench(c: &mut Criterion) {
    let b = logs(N);
    let mut g = c.benchmark_group("elasticsearch");
    g.throughput(Throughput::Elements(N as u64));
    for (name, enc) in [
        ("documents_otel_1000_logs", Encoder::default()),
        (
            "documents_ecs_1000_logs",
            Encoder {
                mode: Mode::Ecs,
                ..Default::default()
            },
        ),
        (
            "documents_otel_auto_id_1000_logs",
            Encoder {
                document_id: DocumentId::Auto,
                ..Default::default()
            },
        ),
    ] {
        g.bench_function(name, |x| x.iter(|| enc.documents(&b)));
    }
    // The exporter's path: documents, ids and the NDJSON body written directly, from the
    // decoded batch and (`raw_`) from the request bytes the forwarding fast path hands over.
    let mut out = BulkBody::default();
    let bytes = bytes::Bytes::from(b.encode_proto());
    let raw = Batch::from_proto_bytes(Signal::Logs, bytes.clone()).unwrap();
    for (prefix, batch) in [("", &b), ("raw_", &raw)] {
        for (name, mode) in [
            ("bulk_body_otel_1000_logs", Mode::Otel),
            ("bulk_body_ecs_1000_logs", Mode::Ecs),
        ] {
            let enc = Encoder {
                mode,
                ..Default::default()
            };
            g.bench_function(format!("{prefix}{name}"), |x| {
                x.iter(|| {
                    out.clear();
                    enc.write_bulk(batch, &mut out);
                    out.body.len()
                })
            });
        }
        g.bench_function(format!("{prefix}bulk_body_otel_gzip_1000_logs"), |x| {
            x.iter(|| {
                out.clear();
                Encoder::default().write_bulk(batch, &mut out);
                gzip_json(&out.body).len()
            })
        });
    }
    g.bench_function("decode_bulk_body_otel_1000_logs", |x| {
        x.iter(|| {
            out.clear();
            let d = Batch::decode_proto(Signal::Logs, &bytes).unwrap();
            Encoder::default().write_bulk(&d, &mut out);
            out.body.len()
        })
    });
    let docs = Encoder::default().documents(&b);
    g.bench_function("ndjson_1000_logs", |x| {
        x.iter(|| {
            docs.iter()
                .map(Doc::to_ndjson)
                .map(|l| l.len())
                .sum::<usize>()
        })
    });
    let body: Vec<u8> = docs.iter().flat_map(Doc::to_ndjson).collect();
    // The exporter's gzip (the JSON resync) and the generic parser on the same body.
    g.bench_function("gzip_json_1000_logs", |x| x.iter(|| gzip_json(&body)));
    g.bench_function("gzip_1000_logs", |x| x.iter(|| gzip(&body)));
    // The encoder weft used before its own (flate2's default backend, level 1): the
    // comparison the deflate module's doc quotes.
    let flate2_fast = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, b).map(|_| e.finish())
    };
    g.bench_function("gzip_flate2_level1_1000_logs", |x| {
        x.iter(|| flate2_fast(&body))
    });
    let answer = serde_json::json!({
        "errors": true,
        "items": (0..N).map(|i| if i % 10 == 0 {
            serde_json::json!({"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}})
        } else {
            serde_json::json!({"create": {"status": 201}})
        }).collect::<Vec<_>>()
    })
    .to_string();
    g.bench_function("parse_answer_1000_items", |x| {
        x.iter(|| parse_response(answer.as_bytes(), N).map(|v| v.len()))
    });
    g.finish();
    eprintln!(
        "1000 log records: NDJSON {} bytes, gzip {} bytes with the JSON resync, {} without (flate2 level 1: {} bytes)",
        body.len(),
        gzip_json(&body).len(),
        gzip(&body).len(),
        flate2_fast(&body).map_or(0, |r| r.map_or(0, |v| v.len()))
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
