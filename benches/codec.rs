//! OTLP protobuf decode and encode, JSON decode, batch merge and split, and the forwarding
//! fast path's wire scan and raw merge/split: items/s. The decode+encode figure is the
//! ceiling for a collector that must touch every span. Group `gzip`: an exporter's gzip
//! of a batch of 8,200 spans (82 requests' bytes) by weft's encoder (with the protobuf
//! resync, as the `otlp` exporter does, and with the generic parser) and by flate2 at
//! level 6 (what tonic used for the `otlp` exporter) and level 1.
//!
//!   cargo bench --bench codec                                            (mimalloc)
//!   cargo bench --bench codec --no-default-features --features parquet   (system allocator)

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft::data::*;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub fn spans(n: usize, attrs: usize) -> Batch {
    let mut rng = fastrand::Rng::with_seed(7);
    let kv = |k: String, v: String| KeyValue {
        key: k,
        value: Some(AnyValue {
            value: Some(string_value(v)),
        }),
        ..Default::default()
    };
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name".into(), "order".into())],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    trace_id: (0..16).map(|_| rng.u8(..)).collect(),
                    span_id: rng.u64(..).to_be_bytes().to_vec(),
                    name: format!("GET /api/orders/{}", i % 16),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                    end_time_unix_nano: 1_700_000_000_001_000_000 + i as u64,
                    attributes: (0..attrs)
                        .map(|a| {
                            kv(
                                format!("attr.{a}"),
                                (0..24).map(|_| rng.alphanumeric()).collect(),
                            )
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn bench(c: &mut Criterion) {
    let b = spans(100, 10);
    let proto = b.encode_proto();
    let json = b.encode_json();
    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(100));
    g.bench_function("decode_proto_100_spans", |x| {
        x.iter(|| Batch::decode_proto(Signal::Traces, &proto).unwrap())
    });
    g.bench_function("encode_proto_100_spans", |x| x.iter(|| b.encode_proto()));
    g.bench_function("decode_encode_proto_100_spans", |x| {
        x.iter(|| {
            Batch::decode_proto(Signal::Traces, &proto)
                .unwrap()
                .encode_proto()
        })
    });
    g.bench_function("decode_json_100_spans", |x| {
        x.iter(|| Batch::decode_json(Signal::Traces, &json).unwrap())
    });
    g.bench_function("merge_then_split_100_spans", |x| {
        x.iter(|| {
            let mut m = b.clone();
            m.merge(b.clone());
            m.split_front(100)
        })
    });
    let bytes = bytes::Bytes::from(proto.clone());
    g.bench_function("scan_proto_100_spans (fast path)", |x| {
        x.iter(|| Batch::from_proto_bytes(Signal::Traces, bytes.clone()).unwrap())
    });
    let raw = Batch::from_proto_bytes(Signal::Traces, bytes.clone()).unwrap();
    g.bench_function("raw_merge_then_split_100_spans (fast path)", |x| {
        x.iter(|| {
            let mut m = raw.clone();
            m.merge(raw.clone());
            m.split_front(100)
        })
    });
    g.finish();
}

fn bench_gzip(c: &mut Criterion) {
    let one = spans(100, 10).encode_proto();
    let batch: Vec<u8> = (0..82).flat_map(|_| one.iter().copied()).collect();
    let flate2 = |level: u32| {
        move |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            std::io::Write::write_all(&mut e, b).map(|_| e.finish())
        }
    };
    let mut g = c.benchmark_group("gzip");
    g.throughput(Throughput::Elements(8_200));
    let proto = |b: &[u8]| {
        let mut out = Vec::new();
        weft::exporters::deflate::gzip_shaped_into(
            b,
            &mut out,
            weft::exporters::deflate::Shape::Proto,
        );
        out
    };
    // The `otlp` exporter's gzip (the protobuf resync), and the generic parser.
    g.bench_function("weft_proto_8200_spans", |x| x.iter(|| proto(&batch)));
    g.bench_function("weft_8200_spans", |x| {
        x.iter(|| weft::exporters::http_client::gzip(&batch))
    });
    g.bench_function("flate2_level6_8200_spans", |x| x.iter(|| flate2(6)(&batch)));
    g.bench_function("flate2_level1_8200_spans", |x| x.iter(|| flate2(1)(&batch)));
    g.finish();
    let size =
        |r: std::io::Result<std::io::Result<Vec<u8>>>| r.map_or(0, |r| r.map_or(0, |v| v.len()));
    eprintln!(
        "8,200 spans: protobuf {} bytes; gzip: weft {} (generic parser {}), flate2 level 6 {}, level 1 {}",
        batch.len(),
        proto(&batch).len(),
        weft::exporters::http_client::gzip(&batch).len(),
        size(flate2(6)(&batch)),
        size(flate2(1)(&batch)),
    );
}

criterion_group!(benches, bench, bench_gzip);
criterion_main!(benches);
