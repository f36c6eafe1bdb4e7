//! Whole-service behaviour: fan-out to two exporters, two pipelines sharing a receiver,
//! named pipelines, health and readiness, metric values after a known number of spans, and
//! a SIGTERM that drains everything accepted before it (the real binary).

mod support;

use std::time::Duration;

use support::otlp_sink::Sink;
use support::weft::{config, post, start};
use weft::data::*;

fn spans(n: usize, service: &str) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(string_value(service)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    trace_id: vec![9; 16],
                    span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                    name: format!("op{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_shared_receiver_and_named_pipelines() {
    let a = Sink::start().await;
    let b = Sink::start().await;
    let c = Sink::start().await;
    let exporters = format!(
        "  otlp/a:\n    endpoint: {}\n    tls: {{insecure: true}}\n  otlp/b:\n    endpoint: {}\n    tls: {{insecure: true}}\n  otlp/c:\n    endpoint: {}\n    tls: {{insecure: true}}\n",
        a.endpoint(),
        b.endpoint(),
        c.endpoint()
    );
    let yaml = config(
        "  batch:\n    timeout: 20ms\n  attributes/mark:\n    actions:\n      - key: pipeline\n        value: backup\n        action: insert\n",
        &exporters,
        // traces fans out to a and b; traces/backup shares the receiver and goes to c;
        // logs uses the same receiver too.
        "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp/a, otlp/b]\n    traces/backup:\n      receivers: [otlp]\n      exporters: [otlp/c]\n    logs:\n      receivers: [otlp]\n      exporters: [otlp/c]\n",
    );
    let weft = start(&yaml).await;
    assert_eq!(post(&weft.http(), &spans(10, "order")).await, 200);
    let logs = Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default(); 3],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    assert_eq!(post(&weft.http(), &logs).await, 200);
    assert_eq!(a.wait_for_items(10, Duration::from_secs(10)).await, 10);
    assert_eq!(b.wait_for_items(10, Duration::from_secs(10)).await, 10);
    assert_eq!(c.wait_for_items(13, Duration::from_secs(10)).await, 13);
    assert_eq!(
        a.batches(),
        b.batches(),
        "fan-out delivers the same data to both"
    );
    weft.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_after_known_traffic() {
    let sink = Sink::start().await;
    let yaml = config(
        "  batch:\n    timeout: 20ms\n",
        &format!("  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n", sink.endpoint()),
        "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n",
    )
    .replace("service:\n", "extensions:\n  health_check:\n    endpoint: 127.0.0.1:0\nservice:\n  extensions: [health_check]\n");
    let weft = start(&yaml).await;
    let admin = format!("http://{}", weft.addr("health_check"));
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{admin}/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{admin}/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for _ in 0..7 {
        assert_eq!(post(&weft.http(), &spans(3, "order")).await, 200);
    }
    assert_eq!(sink.wait_for_items(21, Duration::from_secs(10)).await, 21);
    // The sink holds the spans before the exporter has counted its answer: wait for it.
    let mut text = String::new();
    for _ in 0..500 {
        text = c
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("weft_exporter_sent_spans_total{component=\"otlp\"} 21") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for line in [
        "weft_receiver_accepted_spans_total{component=\"otlp\"} 21",
        "weft_receiver_refused_spans_total{component=\"otlp\"} 0",
        "weft_exporter_sent_spans_total{component=\"otlp\"} 21",
        "weft_exporter_queue_capacity{component=\"otlp\"} 1000",
        "weft_exporter_queue_size{component=\"otlp\"} 0",
        "# TYPE weft_receiver_accepted_spans_total counter",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // A component reporting a permanent failure makes readiness 503 and names it.
    weft.telemetry
        .health
        .set_failure("exporter/otlp", "NoSuchBucket: archive");
    let r = c.get(format!("{admin}/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("NoSuchBucket"));
    weft.telemetry.health.clear_failure("exporter/otlp");
    let telemetry = weft.telemetry.clone();
    weft.service.shutdown().await;
    assert!(
        !telemetry.health.readiness().ready,
        "not ready after shutdown began"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_everything_accepted_and_exits_zero() {
    let sink = Sink::start().await;
    // Slow backend: data is still in the batch processor and the queue when SIGTERM comes.
    sink.state.lock().unwrap().delay = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("weft.yaml");
    let port = free_port();
    let admin = free_port();
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\nprocessors:\n  batch:\n    timeout: 10s\n    send_batch_size: 100000\nexporters:\n  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n    sending_queue:\n      num_consumers: 1\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:{admin}\nservice:\n  extensions: [health_check]\n  shutdown_timeout: 20s\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n",
            sink.endpoint()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(support::weft::binary())
        .arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("http://127.0.0.1:{admin}/health/ready")).await;
    for _ in 0..20 {
        assert_eq!(post(&base, &spans(50, "order")).await, 200);
    }
    assert_eq!(sink.item_count(), 0, "still held by the batch processor");
    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within shutdown_timeout")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        sink.item_count(),
        1000,
        "everything accepted before SIGTERM was delivered"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(url: &str) {
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(url).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("weft did not become ready at {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_refuses_with_a_retry_hint() {
    let sink = Sink::start().await;
    // A 2 MiB limit: any real process is above its 1 MiB soft limit, so data is refused.
    let yaml = config(
        "  memory_limiter:\n    check_interval: 1s\n    limit_mib: 2\n    spike_limit_mib: 1\n",
        &format!(
            "  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n",
            sink.endpoint()
        ),
        "    traces:\n      receivers: [otlp]\n      processors: [memory_limiter]\n      exporters: [otlp]\n",
    );
    let weft = start(&yaml).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/traces", weft.http()))
        .header("content-type", "application/x-protobuf")
        .body(spans(2, "order").encode_proto())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        r.headers().get("retry-after").is_some(),
        "HTTP refusal carries Retry-After"
    );
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
    };
    let Batch::Traces(rs) = spans(2, "order") else {
        unreachable!()
    };
    let st = TraceServiceClient::connect(weft.grpc())
        .await
        .unwrap()
        .export(ExportTraceServiceRequest { resource_spans: rs })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unavailable);
    assert!(
        weft::receivers::otlp::codec::retry_delay_of(&st).is_some(),
        "gRPC refusal carries RetryInfo"
    );
    assert_eq!(
        weft.metric("weft_receiver_refused_spans_total", "otlp"),
        4.0
    );
    assert_eq!(sink.item_count(), 0);
    weft.service.shutdown().await;
}

/// The weft process runs without transparent huge pages (`weft::thp`); with
/// `MIMALLOC_ALLOW_THP` set, it keeps what it inherited.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_runs_without_transparent_huge_pages() {
    fn thp_enabled(pid: u32) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no THP_enabled line in /proc/{pid}/status"))
    }
    weft::install_crypto_provider();
    // Huge pages allowed for this process (the default), so that the child's inherited
    // value differs from what weft sets: otherwise the first check could not fail.
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and sets a flag of the
    // calling process.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) },
        0
    );
    let inherited = thp_enabled(std::process::id());
    assert_eq!(inherited, "1");
    let dir = tempfile::tempdir().unwrap();
    for (allow, want) in [(None, "0"), (Some("1"), inherited.as_str())] {
        let (port, admin) = (free_port(), free_port());
        let cfg = dir.path().join("weft.yaml");
        std::fs::write(
            &cfg,
            format!(
                "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\nexporters:\n  debug: {{}}\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:{admin}\nservice:\n  extensions: [health_check]\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
            ),
        )
        .unwrap();
        let mut cmd = tokio::process::Command::new(support::weft::binary());
        cmd.arg("--config").arg(&cfg).kill_on_drop(true);
        cmd.env_remove("MIMALLOC_ALLOW_THP");
        if let Some(v) = allow {
            cmd.env("MIMALLOC_ALLOW_THP", v);
        }
        let mut child = cmd.stderr(std::process::Stdio::null()).spawn().unwrap();
        wait_ready(&format!("http://127.0.0.1:{admin}/health/ready")).await;
        let pid = child.id().unwrap();
        assert_eq!(thp_enabled(pid), want, "MIMALLOC_ALLOW_THP={allow:?}");
        child.kill().await.unwrap();
    }
}
