//! The S3 archive's marshalers (OTLP JSON, OTLP protobuf, Parquet) with each compression:
//! log records/s. `cargo bench --bench s3`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft::data::*;
use weft::exporters::awss3::marshal::{Compression, Marshaler, marshal};

fn logs(n: usize) -> Batch {
    let mut rng = fastrand::Rng::with_seed(3);
    let kv = |k: String, v: String| KeyValue {
        key: k,
        value: Some(AnyValue {
            value: Some(string_value(v)),
        }),
        ..Default::default()
    };
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("service.name".into(), "checkout".into())],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: (0..n)
                .map(|i| LogRecord {
                    time_unix_nano: 1_764_064_800_000_000_000 + i as u64 * 1_000_000,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(string_value(format!(
                            "order {i} paid {}",
                            (0..40).map(|_| rng.alphanumeric()).collect::<String>()
                        ))),
                    }),
                    attributes: (0..8)
                        .map(|a| {
                            kv(
                                format!("attr.{a}"),
                                (0..24).map(|_| rng.alphanumeric()).collect(),
                            )
                        })
                        .collect(),
                    trace_id: (0..16).map(|_| rng.u8(..)).collect(),
                    span_id: (0..8).map(|_| rng.u8(..)).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn bench(c: &mut Criterion) {
    let b = logs(1000);
    let mut g = c.benchmark_group("awss3_marshal");
    g.throughput(Throughput::Elements(1000));
    let mut cases = vec![
        ("otlp_json_none", Marshaler::OtlpJson, Compression::None),
        ("otlp_json_gzip", Marshaler::OtlpJson, Compression::Gzip),
        ("otlp_proto_zstd", Marshaler::OtlpProto, Compression::Zstd),
    ];
    if cfg!(feature = "parquet") {
        cases.push(("parquet_zstd", Marshaler::Parquet, Compression::Zstd));
    }
    for (name, m, comp) in cases {
        g.bench_function(name, |x| x.iter(|| marshal(&b, m, comp).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
