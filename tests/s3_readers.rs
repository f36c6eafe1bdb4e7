//! Reading the `awss3` archive back with other readers: the parquet crate (row by row
//! against the input), DuckDB from PyPI over the hive-partitioned keys (optional), and the
//! same uploads against moto's S3 server (optional). See tests/s3.rs for the exporter's
//! behaviour against the in-process s3s server.

mod support;

use support::s3_data::*;
use weft::admin::Telemetry;
use weft::data::{AnyValue, Batch, Signal, string_value};
use weft::exporters::ExportError;

#[cfg(feature = "parquet")]
mod parquet_archive {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampNanosecondType};
    use arrow_array::{Array, MapArray, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use support::s3::S3Server;
    use weft::data::KeyValue;
    use weft::data::{hex, value_to_string};

    fn read(bytes: Vec<u8>) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        arrow_select_one(batches)
    }

    fn arrow_select_one(mut b: Vec<RecordBatch>) -> RecordBatch {
        assert_eq!(b.len(), 1);
        b.remove(0)
    }

    fn str_col<'a>(rb: &'a RecordBatch, name: &str) -> &'a arrow_array::StringArray {
        rb.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_string::<i32>()
    }

    fn map_at(m: &MapArray, i: usize) -> Vec<(String, String)> {
        let entries = m.value(i);
        let k = entries.column(0).as_string::<i32>();
        let v = entries.column(1).as_string::<i32>();
        (0..entries.len())
            .map(|j| (k.value(j).to_string(), v.value(j).to_string()))
            .collect()
    }

    fn attrs(a: &[KeyValue]) -> Vec<(String, String)> {
        a.iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    value_to_string(kv.value.as_ref().unwrap().value.as_ref().unwrap()),
                )
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn parquet_logs_and_spans_read_back_row_by_row() {
        let server = S3Server::start().await;
        server.create_bucket("archive").await;
        let t = Telemetry::new();
        let cfg = server.exporter_config("archive", serde_json::json!({"marshaler": "parquet", "s3uploader": {"s3_partition_format": "%{service.name}"}}));
        let e = exporter(&cfg, "awss3", &t);
        let log_batch = Batch::Logs(vec![logs(
            "checkout",
            &[T10, T10 + 1, T10 + 2, T10 + 3, T10 + 4],
        )]);
        let span_batch = Batch::Traces(vec![spans("checkout", &[T10, T10 + 5, T10 + 9])]);
        e.send(&log_batch).await.unwrap();
        e.send(&span_batch).await.unwrap();
        let keys = server.keys("archive", "checkout/").await;
        assert_eq!(keys.len(), 2, "{keys:?}");
        let log_key = keys.iter().find(|k| k.contains("/logs_")).unwrap();
        let span_key = keys.iter().find(|k| k.contains("/traces_")).unwrap();
        assert!(log_key.ends_with(".parquet") && span_key.ends_with(".parquet"));

        let rb = read(server.get("archive", log_key).await);
        let input = records(&log_batch);
        assert_eq!(rb.num_rows(), input.len());
        let time = rb
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let observed = rb
            .column_by_name("observed_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let sev = rb
            .column_by_name("severity_number")
            .unwrap()
            .as_primitive::<Int32Type>();
        let res_attrs = rb.column_by_name("resource_attributes").unwrap().as_map();
        let rec_attrs = rb.column_by_name("attributes").unwrap().as_map();
        let Batch::Logs(rl) = &log_batch else {
            unreachable!()
        };
        for (i, r) in input.iter().enumerate() {
            assert_eq!(time.value(i) as u64, r.time_unix_nano);
            assert_eq!(observed.value(i) as u64, r.observed_time_unix_nano);
            assert_eq!(sev.value(i), r.severity_number);
            assert_eq!(str_col(&rb, "severity_text").value(i), r.severity_text);
            assert_eq!(
                str_col(&rb, "body").value(i),
                value_to_string(r.body.as_ref().unwrap().value.as_ref().unwrap())
            );
            assert!(str_col(&rb, "body_json").is_null(i));
            assert_eq!(str_col(&rb, "trace_id").value(i), hex(&r.trace_id));
            assert_eq!(str_col(&rb, "span_id").value(i), hex(&r.span_id));
            assert_eq!(str_col(&rb, "service_name").value(i), "checkout");
            assert_eq!(str_col(&rb, "scope_name").value(i), "app.logger");
            assert_eq!(str_col(&rb, "scope_version").value(i), "1.2");
            assert_eq!(map_at(rec_attrs, i), attrs(&r.attributes));
            assert_eq!(
                map_at(res_attrs, i),
                attrs(&rl[0].resource.as_ref().unwrap().attributes)
            );
        }

        let rb = read(server.get("archive", span_key).await);
        let Batch::Traces(rs) = &span_batch else {
            unreachable!()
        };
        let input = &rs[0].scope_spans[0].spans;
        assert_eq!(rb.num_rows(), input.len());
        let start = rb
            .column_by_name("start_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let end = rb
            .column_by_name("end_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        let dur = rb
            .column_by_name("duration_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let events = rb.column_by_name("events").unwrap().as_list::<i32>();
        let links = rb.column_by_name("links").unwrap().as_list::<i32>();
        let span_attrs = rb.column_by_name("attributes").unwrap().as_map();
        for (i, s) in input.iter().enumerate() {
            assert_eq!(str_col(&rb, "trace_id").value(i), hex(&s.trace_id));
            assert_eq!(str_col(&rb, "span_id").value(i), hex(&s.span_id));
            if s.parent_span_id.is_empty() {
                assert!(str_col(&rb, "parent_span_id").is_null(i));
            } else {
                assert_eq!(
                    str_col(&rb, "parent_span_id").value(i),
                    hex(&s.parent_span_id)
                );
            }
            assert_eq!(str_col(&rb, "name").value(i), s.name);
            assert_eq!(
                str_col(&rb, "kind").value(i),
                weft::exporters::awss3::parquet::kind_name(s.kind)
            );
            assert_eq!(start.value(i) as u64, s.start_time_unix_nano);
            assert_eq!(end.value(i) as u64, s.end_time_unix_nano);
            assert_eq!(
                dur.value(i) as u64,
                s.end_time_unix_nano - s.start_time_unix_nano
            );
            let st = s.status.as_ref().unwrap();
            assert_eq!(
                str_col(&rb, "status_code").value(i),
                weft::exporters::awss3::parquet::status_name(st.code)
            );
            assert_eq!(
                str_col(&rb, "status_message").is_null(i),
                st.message.is_empty()
            );
            assert_eq!(map_at(span_attrs, i), attrs(&s.attributes));
            let ev = events.value(i);
            let ev = ev.as_struct();
            assert_eq!(ev.len(), s.events.len());
            for (j, want) in s.events.iter().enumerate() {
                assert_eq!(
                    ev.column_by_name("name")
                        .unwrap()
                        .as_string::<i32>()
                        .value(j),
                    want.name
                );
                let et = ev
                    .column_by_name("time")
                    .unwrap()
                    .as_primitive::<TimestampNanosecondType>();
                assert_eq!(et.value(j) as u64, want.time_unix_nano);
                assert_eq!(
                    map_at(ev.column_by_name("attributes").unwrap().as_map(), j),
                    attrs(&want.attributes)
                );
            }
            let l = links.value(i);
            let l = l.as_struct();
            assert_eq!(l.len(), s.links.len());
            for (j, want) in s.links.iter().enumerate() {
                assert_eq!(
                    l.column_by_name("trace_id")
                        .unwrap()
                        .as_string::<i32>()
                        .value(j),
                    hex(&want.trace_id)
                );
                assert_eq!(
                    l.column_by_name("span_id")
                        .unwrap()
                        .as_string::<i32>()
                        .value(j),
                    hex(&want.span_id)
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn metrics_with_parquet_are_refused_and_named_by_readiness() {
        let server = S3Server::start().await;
        server.create_bucket("archive").await;
        let t = Telemetry::new();
        t.health.set_started();
        let cfg = server.exporter_config("archive", serde_json::json!({"marshaler": "parquet"}));
        let e = exporter(&cfg, "awss3/m", &t);
        let metric = weft::data::Metric {
            name: "m".into(),
            ..Default::default()
        };
        let b = Batch::Metrics(vec![weft::data::ResourceMetrics {
            scope_metrics: vec![weft::data::ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        assert!(matches!(
            e.send(&b).await,
            Err(ExportError::Permanent { .. })
        ));
        assert!(
            t.health
                .readiness()
                .reasons
                .iter()
                .any(|r| r.contains("awss3/m") && r.contains("parquet"))
        );
    }

    /// Reads the archive with DuckDB from PyPI, the way the README's query does (hive
    /// partitions over the key layout). Optional: needs python3 and network for the first
    /// `pip install` (~6 s, cached in target/py-venv; PyPI is one of the registries CI reaches).
    #[tokio::test(flavor = "multi_thread")]
    async fn duckdb_reads_the_partitioned_parquet_archive() {
        let server = S3Server::start().await;
        server.create_bucket("archive").await;
        let t = Telemetry::new();
        let cfg = server.exporter_config(
            "archive",
            serde_json::json!({"marshaler": "parquet", "s3uploader": {"s3_prefix": "logs", "s3_partition_format": "service=%{service.name}/year=%Y/month=%m/day=%d/hour=%H"}}),
        );
        let e = exporter(&cfg, "awss3", &t);
        e.send(&Batch::Logs(vec![
            logs("checkout", &[T10, T10 + 1, T10 - HOUR]),
            logs("payment", &[T10]),
        ]))
        .await
        .unwrap();

        let python = support::s3::py_venv(&["duckdb==1.4.4"]);
        // s3s-fs keeps objects as plain files: <root>/<bucket>/<key>.
        let glob = server.root.path().join("archive/logs/**/*.parquet");
        let script = format!(
            "import duckdb\n\
             rows = duckdb.sql(\"\"\"SELECT service, hour, count(*) AS n, min(severity_text), max(body)\n\
               FROM read_parquet('{0}', hive_partitioning = true)\n\
               WHERE year = 2026 AND month = 11 AND day = 25\n\
               GROUP BY ALL ORDER BY ALL\"\"\").fetchall()\n\
             print(rows)\n\
             readme = duckdb.sql(\"\"\"SELECT count(*) FROM (SELECT time, severity_text, body, trace_id\n\
               FROM read_parquet('{0}', hive_partitioning = true)\n\
               WHERE service = 'checkout' AND year = '2026' AND month = '11' AND day = '25'\n\
                 AND hour BETWEEN '09' AND '11' AND attributes['user'] = 'u-7'\n\
               ORDER BY time)\"\"\").fetchone()\n\
             print(readme[0])\n",
            glob.display()
        );
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.trim(),
            "[('checkout', '09', 1, 'INFO', 'checkout record 2'), ('checkout', '10', 2, 'INFO', 'checkout record 1'), ('payment', '10', 1, 'INFO', 'payment record 0')]\n3"
        );
    }
}

/// The same exporter against moto's S3 server (PyPI), a second and looser target.
/// Optional: the first run installs moto into target/py-venv (~2 min). Run with
/// `cargo test --test s3_readers -- --ignored moto`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "installs moto from PyPI into target/py-venv"]
async fn moto_takes_the_same_objects() {
    let moto = support::s3::Moto::start().await;
    let client = moto.client().await;
    client
        .create_bucket()
        .bucket("archive")
        .send()
        .await
        .unwrap();
    let t = Telemetry::new();
    t.health.set_started();
    let cfg = |bucket: &str, extra| support::s3::exporter_config(&moto.endpoint(), bucket, extra);
    // Small objects, each compression.
    let batch = Batch::Logs(vec![logs("checkout", &[T10, T10 - HOUR])]);
    for c in ["none", "gzip", "zstd"] {
        let e = exporter(
            &cfg(
                "archive",
                serde_json::json!({"s3uploader": {"s3_prefix": c, "compression": c}}),
            ),
            "awss3",
            &t,
        );
        e.send(&batch).await.unwrap();
    }
    // A multipart object.
    let mut rng = fastrand::Rng::with_seed(3);
    let mut big = logs("bulk", &vec![T10; 90]);
    for r in &mut big.scope_logs[0].log_records {
        let body: String = (0..100 * 1024).map(|_| rng.alphanumeric()).collect();
        r.body = Some(AnyValue {
            value: Some(string_value(body)),
        });
    }
    let big = Batch::Logs(vec![big]);
    let e = exporter(
        &cfg(
            "archive",
            serde_json::json!({"marshaler": "otlp_proto", "s3uploader": {"s3_prefix": "big"}}),
        ),
        "awss3",
        &t,
    );
    e.send(&big).await.unwrap();

    let list = client
        .list_objects_v2()
        .bucket("archive")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = list
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 7, "{keys:?}");
    for k in &keys {
        let body = client
            .get_object()
            .bucket("archive")
            .key(k)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        if k.starts_with("big/") {
            assert_eq!(Batch::decode_proto(Signal::Logs, &body).unwrap(), big);
        } else {
            assert_eq!(records(&decode(&body, k, Signal::Logs)).len(), 1, "{k}");
        }
    }
    // A missing bucket is permanent and named by readiness.
    let e = exporter(&cfg("missing", serde_json::json!({})), "awss3/missing", &t);
    match e.send(&batch).await {
        Err(ExportError::Permanent { reason, .. }) => assert_eq!(reason, "NoSuchBucket"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert!(
        t.health
            .readiness()
            .reasons
            .iter()
            .any(|r| r.contains("awss3/missing"))
    );
}
