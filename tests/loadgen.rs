//! The load generator works end to end (it is what the benchmarks stand on): gRPC and HTTP
//! (JSON + gzip) into a weft, refusal accounting and exit code, and its counting sink.

mod support;

use std::process::Command;
use std::time::Duration;

use support::otlp_sink::Sink;
use support::weft::{config, free_port, start};

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft-loadgen"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_grpc_and_http_and_reports() {
    let sink = Sink::start().await;
    let w = start(&config(
        "  batch:\n    timeout: 20ms\n",
        &format!("  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n", sink.endpoint()),
        "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n",
    ))
    .await;
    let grpc = w.grpc();
    let out = tokio::task::spawn_blocking(move || {
        loadgen()
            .args([
                "send",
                "--endpoint",
                &grpc,
                "--duration",
                "1s",
                "--rate",
                "2000",
                "--items-per-request",
                "50",
                "--concurrency",
                "2",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("items/s") && text.contains("p99"), "{text}");
    let http = w.http();
    let out = tokio::task::spawn_blocking(move || {
        loadgen()
            .args([
                "send",
                "--endpoint",
                &http,
                "--protocol",
                "http",
                "--encoding",
                "json",
                "--compression",
                "gzip",
                "--signal",
                "logs",
                "--duration",
                "1s",
                "--rate",
                "500",
                "--items-per-request",
                "10",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sink.wait_for_items(1, Duration::from_secs(5)).await > 0);
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_non_zero_when_refused_too_often() {
    // A memory limit every process exceeds: every request is refused.
    let sink = Sink::start().await;
    let w = start(&config(
        "  memory_limiter:\n    check_interval: 1s\n    limit_mib: 2\n    spike_limit_mib: 1\n",
        &format!("  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n", sink.endpoint()),
        "    traces:\n      receivers: [otlp]\n      processors: [memory_limiter]\n      exporters: [otlp]\n",
    ))
    .await;
    let grpc = w.grpc();
    let out = tokio::task::spawn_blocking(move || {
        loadgen()
            .args([
                "send",
                "--endpoint",
                &grpc,
                "--duration",
                "1s",
                "--rate",
                "200",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counting_sink_counts_and_measures_latency() {
    let port = free_port();
    let mut sink = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-loadgen"))
        .args([
            "sink",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "3s",
            "--report",
            "1s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::task::spawn_blocking(move || {
        loadgen()
            .args([
                "send",
                "--endpoint",
                &format!("127.0.0.1:{port}"),
                "--duration",
                "1s",
                "--rate",
                "1000",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let status = tokio::time::timeout(Duration::from_secs(10), sink.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut text = String::new();
    use tokio::io::AsyncReadExt;
    sink.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .await
        .unwrap();
    let total: u64 = text
        .lines()
        .filter_map(|l| l.split("total ").nth(1))
        .filter_map(|t| t.split(')').next())
        .filter_map(|n| n.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(total > 0, "{text}");
    assert!(text.contains("e2e latency ms p50"), "{text}");
}

/// weft with `exporter` (YAML, `{sink}` replaced by the sink's URL) between the generator
/// and `weft-loadgen sink --mode <mode>`: every log record the generator got accepted
/// arrives at the sink (counts only; waits at most a generous deadline, asserts no time).
async fn logs_reach_the_sink(mode: &str, exporter: &str) {
    use tokio::io::AsyncBufReadExt;
    let port = free_port();
    let mut sink = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-loadgen"))
        .args([
            "sink",
            "--mode",
            mode,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--report",
            "200ms",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sink.stdout.take().unwrap()).lines();
    // The sink reports once it is listening and serving.
    lines.next_line().await.unwrap();
    let exporter = exporter.replace("{sink}", &format!("http://127.0.0.1:{port}"));
    let w = start(&config(
        "  batch:\n    timeout: 20ms\n",
        &exporter,
        &format!(
            "    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [{}]\n",
            exporter.trim().split(':').next().unwrap()
        ),
    ))
    .await;
    let grpc = w.grpc();
    let out = tokio::task::spawn_blocking(move || {
        loadgen()
            .args([
                "send",
                "--endpoint",
                &grpc,
                "--signal",
                "logs",
                "--duration",
                "1s",
                "--rate",
                "3000",
                "--items-per-request",
                "50",
                "--concurrency",
                "2",
                "--max-refused",
                "0",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let sent: u64 = text
        .split("sent ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(sent > 0, "{text}");
    w.service.shutdown().await;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen != sent {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the sink saw {seen} of {sent} records"))
            .unwrap()
            .unwrap();
        if let Some(n) = line
            .split("total ")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|n| n.parse().ok())
        {
            seen = n;
            assert!(
                seen <= sent,
                "the sink saw {seen} records, {sent} were sent"
            );
            if seen == sent {
                assert!(line.contains("e2e latency ms p50"), "{line}");
            }
        }
    }
    sink.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_through_loki_reach_the_loki_sink() {
    logs_reach_the_sink("loki", "  loki:\n    endpoint: {sink}\n    tenant_id: t\n").await;
    logs_reach_the_sink(
        "loki",
        "  loki:\n    endpoint: {sink}\n    encoding: json\n    compression: gzip\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_through_elasticsearch_reach_the_bulk_sink() {
    logs_reach_the_sink("elasticsearch", "  elasticsearch:\n    endpoint: {sink}\n").await;
    logs_reach_the_sink(
        "elasticsearch",
        "  elasticsearch:\n    endpoint: {sink}\n    mapping: {mode: ecs}\n    compression: none\n",
    )
    .await;
}
