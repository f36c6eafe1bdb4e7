//! The core exporters end to end: `otlphttp` (proto and JSON) into a second weft, `jaeger`
//! with its defaults, `file` (OTLP/JSON lines, rotation), and `debug`.

mod support;

use std::time::Duration;

use support::otlp_sink::Sink;
use support::weft::{config, post, start};
use weft::data::*;

fn spans(n: usize) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    trace_id: vec![3; 16],
                    span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                    name: format!("s{i}"),
                    kind: 2,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlphttp_in_both_encodings_reaches_a_second_weft() {
    let sink = Sink::start().await;
    // The "backend" weft: OTLP/HTTP in, OTLP/gRPC out to the sink.
    let backend = start(&config(
        "",
        &format!(
            "  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n",
            sink.endpoint()
        ),
        "    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n",
    ))
    .await;
    for (encoding, compression) in [("proto", "gzip"), ("json", "none"), ("json", "zstd")] {
        let before = sink.item_count();
        let front = start(&config(
            "",
            &format!("  otlphttp:\n    endpoint: {}\n    encoding: {encoding}\n    compression: {compression}\n", backend.http()),
            "    traces:\n      receivers: [otlp]\n      exporters: [otlphttp]\n",
        ))
        .await;
        assert_eq!(200, post(&front.http(), &spans(5)).await);
        assert_eq!(
            sink.wait_for_items(before + 5, Duration::from_secs(10))
                .await,
            before + 5,
            "{encoding}/{compression}"
        );
        front.service.shutdown().await;
    }
    let got = sink.batches();
    assert_eq!(got[0], spans(5), "content survives otlphttp");
    backend.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_preset_speaks_otlp_grpc_in_plain_text() {
    let sink = Sink::start().await;
    // No scheme and no tls block: the jaeger preset defaults to plain text, as Jaeger's
    // collector serves OTLP on 4317 without TLS by default.
    let w = start(&config(
        "",
        &format!("  jaeger:\n    endpoint: {}\n", sink.addr),
        "    traces:\n      receivers: [otlp]\n      exporters: [jaeger]\n",
    ))
    .await;
    assert_eq!(200, post(&w.http(), &spans(3)).await);
    assert_eq!(sink.wait_for_items(3, Duration::from_secs(10)).await, 3);
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_exporter_writes_otlp_json_lines_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/traces.jsonl");
    let w = start(&config(
        "",
        &format!(
            "  file:\n    path: {}\n    rotation:\n      max_megabytes: 1\n      max_backups: 2\n",
            path.display()
        ),
        "    traces:\n      receivers: [otlp]\n      exporters: [file]\n",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(200, post(&w.http(), &spans(2)).await);
    }
    for _ in 0..100 {
        if std::fs::read_to_string(&path)
            .map(|s| s.lines().count())
            .unwrap_or(0)
            >= 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one export request per line");
    for l in &lines {
        let b = Batch::decode_json(Signal::Traces, l.as_bytes()).unwrap();
        assert_eq!(b, spans(2));
        assert!(
            l.contains("\"traceId\":\"03030303030303030303030303030303\""),
            "OTLP/JSON with hex ids: {l}"
        );
    }
    // Rotation: over 1 MiB a new file starts and the old one becomes .1
    let big = Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..400)
                .map(|i| Span {
                    trace_id: vec![3; 16],
                    span_id: vec![4; 8],
                    name: format!("{i}{}", "x".repeat(3000)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }]);
    assert_eq!(200, post(&w.http(), &big).await);
    assert_eq!(200, post(&w.http(), &spans(1)).await);
    let rotated = std::path::PathBuf::from(format!("{}.1", path.display()));
    for _ in 0..100 {
        if rotated.exists()
            && std::fs::read_to_string(&path)
                .map(|s| s.lines().count() == 1)
                .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated.exists(), "rotated file exists");
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_type_builds_starts_and_shuts_down() {
    // Lifecycle: each core component in a pipeline, started and shut down; and a service
    // shut down right after start (nothing sent).
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let w = start(&config(
        "  batch:\n  memory_limiter:\n    check_interval: 1s\n    limit_mib: 4000\n  filter:\n    traces:\n      span: ['name == \"drop-me\"']\n  attributes:\n    actions: [{key: a, value: b, action: insert}]\n  resource:\n    attributes: [{key: r, value: s, action: upsert}]\n",
        &format!(
            "  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n  otlphttp:\n    endpoint: http://127.0.0.1:9\n  jaeger:\n    endpoint: 127.0.0.1:9\n  debug:\n    verbosity: detailed\n  file:\n    path: {}\n",
            sink.endpoint(),
            dir.path().join("f.json").display()
        ),
        "    traces:\n      receivers: [otlp]\n      processors: [memory_limiter, filter, attributes, resource, batch]\n      exporters: [otlp, debug, file]\n    logs:\n      receivers: [otlp]\n      exporters: [otlphttp]\n    metrics:\n      receivers: [otlp]\n      exporters: [debug]\n    traces/jaeger:\n      receivers: [otlp]\n      exporters: [jaeger]\n",
    ))
    .await;
    let t0 = std::time::Instant::now();
    w.service.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "an idle service shuts down promptly"
    );
}
