//! The Loki encoder: log records → per-tenant streams (labels, structured metadata, JSON
//! line) → protobuf + snappy, or JSON: records/s. The exporter's CPU cost per batch.
//!
//! `direct_*` is the exporter's path ([`encode_direct`]) on a decoded batch, `raw_direct_*`
//! the same writer on the raw batch the forwarding fast path hands over (records read from
//! the request bytes), `decode_direct_*` decoding the request first (what the exporter did
//! before it took raw batches); `encode_*` the reference path it is tested against.
//!
//!   cargo bench --bench loki

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft::data::*;
use weft::exporters::loki::encode::{EncodeOptions, Limits, LineFormat, TenantRule, encode};
use weft::exporters::loki::fast::{Format, encode_direct};
use weft::exporters::loki::labels::{LabelRules, LabelsConfig};
use weft::exporters::loki::proto::encode_snappy;

fn records(services: usize, per_service: usize, attrs: usize) -> Batch {
    let mut rng = fastrand::Rng::with_seed(7);
    let kv = |k: String, v: String| KeyValue {
        key: k,
        value: Some(AnyValue {
            value: Some(string_value(v)),
        }),
        ..Default::default()
    };
    Batch::Logs(
        (0..services)
            .map(|s| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name".into(), format!("svc-{s}")),
                        kv("k8s.namespace.name".into(), "shop".into()),
                        kv("k8s.pod.name".into(), format!("svc-{s}-7d9f-abcde")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: (0..per_service)
                        .map(|i| LogRecord {
                            time_unix_nano: 1_700_000_000_000_000_000 + (per_service - i) as u64,
                            severity_number: 9,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue {
                                value: Some(string_value(format!("GET /api/orders/{i} 200"))),
                            }),
                            trace_id: (0..16).map(|_| rng.u8(..)).collect(),
                            span_id: rng.u64(..).to_be_bytes().to_vec(),
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
            })
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let b = records(5, 200, 10);
    let opts = EncodeOptions {
        labels: LabelRules::new(&LabelsConfig::default(), 2048),
        line_format: LineFormat::Json,
        structured_metadata: true,
        limits: Limits::default(),
        tenant: TenantRule::Fixed(Some("acme".into())),
    };
    let mut g = c.benchmark_group("loki");
    g.throughput(Throughput::Elements(1000));
    let mut snappy = snap::raw::Encoder::new();
    let mut out = Vec::new();
    g.bench_function("direct_protobuf_snappy_1000_records", |x| {
        x.iter(|| {
            let e = encode_direct(&b, &opts, 0, Format::Protobuf).unwrap_or_default();
            out.resize(snap::raw::max_compress_len(e.body.len()), 0);
            snappy.compress(&e.body, &mut out).unwrap_or(0)
        })
    });
    g.bench_function("direct_protobuf_1000_records", |x| {
        x.iter(|| encode_direct(&b, &opts, 0, Format::Protobuf).map(|e| e.body.len()))
    });
    g.bench_function("direct_json_1000_records", |x| {
        x.iter(|| encode_direct(&b, &opts, 0, Format::Json).map(|e| e.body.len()))
    });
    let bytes = bytes::Bytes::from(b.encode_proto());
    let raw = Batch::from_proto_bytes(Signal::Logs, bytes.clone()).unwrap();
    g.bench_function("raw_direct_protobuf_snappy_1000_records", |x| {
        x.iter(|| {
            let e = encode_direct(&raw, &opts, 0, Format::Protobuf).unwrap_or_default();
            out.resize(snap::raw::max_compress_len(e.body.len()), 0);
            snappy.compress(&e.body, &mut out).unwrap_or(0)
        })
    });
    // What the exporter does: compressed block by block from the encoder's arena.
    g.bench_function("raw_direct_protobuf_snappy_arena_1000_records", |x| {
        x.iter(|| encode_direct(&raw, &opts, 0, Format::ProtobufSnappy).map(|e| e.body.len()))
    });
    g.bench_function("raw_direct_protobuf_1000_records", |x| {
        x.iter(|| encode_direct(&raw, &opts, 0, Format::Protobuf).map(|e| e.body.len()))
    });
    g.bench_function("decode_direct_protobuf_snappy_1000_records", |x| {
        x.iter(|| {
            let d = Batch::decode_proto(Signal::Logs, &bytes).unwrap();
            let e = encode_direct(&d, &opts, 0, Format::Protobuf).unwrap_or_default();
            out.resize(snap::raw::max_compress_len(e.body.len()), 0);
            snappy.compress(&e.body, &mut out).unwrap_or(0)
        })
    });
    // The reference path (intermediate streams, prost messages), for comparison.
    g.bench_function("encode_protobuf_snappy_1000_records", |x| {
        x.iter(|| {
            encode(&b, &opts, 0)
                .iter()
                .map(|p| encode_snappy(&p.to_proto()).map(|v| v.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    g.bench_function("encode_json_1000_records", |x| {
        x.iter(|| {
            encode(&b, &opts, 0)
                .iter()
                .map(|p| p.to_json().len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
