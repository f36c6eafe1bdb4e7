//! The `kafka` exporter and receiver against a real Kafka-compatible broker (tansu 0.6,
//! see tests/support/kafka.rs): round trips per signal and encoding, trace-id
//! partitioning, every compression codec, header extraction, undecodable messages,
//! committed offsets, and a pipeline that refuses.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::kafka::{Broker, Storage};
use support::otlp_sink::Sink;
use support::samples::{full_batches, traces};
use support::weft::{post, start};
use weft::data::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn span_ids(b: &Batch) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Batch::Traces(rs) = b else {
        return Vec::new();
    };
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_every_signal_in_both_encodings() {
    let dir = tmp();
    let broker = Broker::start(Storage::Memory, dir.path()).await;
    let sink = Sink::start().await;
    for encoding in ["otlp_proto", "otlp_json"] {
        let t = |s: &str| format!("{s}-{encoding}");
        for s in ["spans", "logs", "metrics"] {
            broker.create_topic(&t(s), 2).await;
        }
        let topics = format!(
            "traces: {{topic: {}}}\n    logs: {{topic: {}}}\n    metrics: {{topic: {}}}\n    encoding: {encoding}",
            t("spans"),
            t("logs"),
            t("metrics")
        );
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n  kafka:\n    brokers: [{b}]\n    group_id: rt-{encoding}\n    initial_offset: earliest\n    {topics}\nexporters:\n  kafka:\n    brokers: [{b}]\n    producer: {{compression: gzip}}\n    {topics}\n  otlp/sink:\n    endpoint: {sink}\n    tls: {{insecure: true}}\nservice:\n  pipelines:\n    traces/in: {{receivers: [otlp], exporters: [kafka]}}\n    logs/in: {{receivers: [otlp], exporters: [kafka]}}\n    metrics/in: {{receivers: [otlp], exporters: [kafka]}}\n    traces/out: {{receivers: [kafka], exporters: [otlp/sink]}}\n    logs/out: {{receivers: [kafka], exporters: [otlp/sink]}}\n    metrics/out: {{receivers: [kafka], exporters: [otlp/sink]}}\n",
            b = broker.addr(),
            sink = sink.endpoint(),
        );
        let before = sink.batches().len();
        let w = start(&yaml).await;
        let originals = full_batches();
        for b in &originals {
            assert_eq!(post(&w.http(), b).await, 200);
        }
        wait_until(
            "three batches through Kafka",
            Duration::from_secs(60),
            || sink.batches().len() >= before + 3,
        )
        .await;
        let got = sink.batches()[before..].to_vec();
        for o in &originals {
            assert!(
                got.contains(o),
                "{encoding}: {} batch changed on the way through Kafka",
                o.signal()
            );
        }
        w.service.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_partitioned_by_id_keep_each_trace_in_one_partition() {
    let dir = tmp();
    let broker = Broker::start(Storage::Memory, dir.path()).await;
    broker.create_topic("otlp_spans", 4).await;
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\nexporters:\n  kafka:\n    brokers: [{}]\n    partition_traces_by_id: true\nservice:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [kafka]}}\n",
        broker.addr()
    );
    let w = start(&yaml).await;
    // 40 traces, each spread over two requests (3 spans in each).
    let mut sent = 0;
    for round in 0..2u64 {
        for group in 0..4u64 {
            let mut b = traces(group * 10, 10, 3);
            if let Batch::Traces(rs) = &mut b {
                for s in rs[0].scope_spans[0].spans.iter_mut() {
                    s.span_id[0] = round as u8 + 1;
                }
            }
            sent += b.item_count();
            assert_eq!(post(&w.http(), &b).await, 200);
        }
    }
    w.service.shutdown().await;
    let records = broker.read_all("otlp_spans", 4).await;
    let mut partitions: HashMap<Vec<u8>, HashSet<i32>> = HashMap::new();
    let mut spans = 0;
    for r in &records {
        let b = Batch::decode_proto(Signal::Traces, r.value.as_deref().unwrap()).unwrap();
        let ids = span_ids(&b);
        let trace = &ids[0].0;
        assert!(ids.iter().all(|(t, _)| t == trace), "one trace per message");
        assert_eq!(
            r.key.as_deref(),
            Some(hex(trace).as_bytes()),
            "key is the hex trace id"
        );
        partitions
            .entry(trace.clone())
            .or_default()
            .insert(r.partition);
        spans += ids.len();
    }
    assert_eq!(spans, sent, "every span written once");
    assert_eq!(partitions.len(), 40);
    assert!(
        partitions.values().all(|p| p.len() == 1),
        "a trace landed in two partitions: {partitions:?}"
    );
    let used: HashSet<i32> = partitions.values().flatten().copied().collect();
    assert!(used.len() > 1, "traces spread over partitions: {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_compression_codec_round_trips_and_shrinks_what_is_sent() {
    let dir = tmp();
    // Memory storage: tansu cannot read snappy batches back from sqlite. The broker sits
    // behind a front that counts the bytes producers send, so a codec that silently sent
    // uncompressed batches would fail here, not only one that garbles them.
    let (broker, sent) = Broker::start_counted(Storage::Memory, dir.path()).await;
    // Compressible like real spans: repeated names and attribute values.
    let b = traces(1, 50, 20);
    let mut wire = Vec::new();
    for c in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("c-{c}");
        broker.create_topic(&topic, 1).await;
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\nexporters:\n  kafka:\n    brokers: [{}]\n    topic: {topic}\n    producer: {{compression: {c}}}\nservice:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [kafka]}}\n",
            broker.addr()
        );
        let w = start(&yaml).await;
        let before = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(post(&w.http(), &b).await, 200);
        w.service.shutdown().await;
        wire.push((c, sent.load(std::sync::atomic::Ordering::Relaxed) - before));
        let recs = broker.read_all(&topic, 1).await;
        let mut got = Batch::empty(Signal::Traces);
        for r in &recs {
            got.merge(Batch::decode_proto(Signal::Traces, r.value.as_deref().unwrap()).unwrap());
        }
        assert_eq!(got.materialize().unwrap(), b, "{c}");
    }
    println!("bytes sent to the broker per codec: {wire:?}");
    let none = wire[0].1;
    assert!(none as usize > b.encoded_len(), "{wire:?}");
    for (c, n) in &wire[1..] {
        assert!(*n * 2 < none, "{c} did not compress: {wire:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiver_extracts_headers_skips_garbage_and_commits() {
    let dir = tmp();
    let broker = Broker::start(Storage::Memory, dir.path()).await;
    broker.create_topic("otlp_logs", 1).await;
    let sink = Sink::start().await;
    let logs = full_batches().remove(1);
    broker
        .produce(
            "otlp_logs",
            vec![
                krafka::Record::new("otlp_logs", b"\xff\xffnot protobuf".to_vec()),
                krafka::Record::new("otlp_logs", logs.encode_proto())
                    .header("tenant", "acme")
                    .header("other", "x"),
            ],
        )
        .await;
    let yaml = format!(
        "receivers:\n  kafka:\n    brokers: [{}]\n    initial_offset: earliest\n    header_extraction:\n      extract_headers: true\n      headers: [tenant, missing]\nexporters:\n  otlp/sink:\n    endpoint: {}\n    tls: {{insecure: true}}\nservice:\n  pipelines:\n    logs: {{receivers: [kafka], exporters: [otlp/sink]}}\n",
        broker.addr(),
        sink.endpoint()
    );
    let w = start(&yaml).await;
    wait_until("the valid message", Duration::from_secs(30), || {
        !sink.batches().is_empty()
    })
    .await;
    let Batch::Logs(rl) = &sink.batches()[0] else {
        panic!("not logs")
    };
    let attrs = &rl[0].resource.as_ref().unwrap().attributes;
    assert_eq!(attr_str(attrs, "kafka.header.tenant"), Some("acme"));
    assert_eq!(
        attr_str(attrs, "kafka.header.other"),
        None,
        "only named headers"
    );
    assert_eq!(attr_str(attrs, "kafka.header.missing"), None);
    assert_eq!(attr_str(attrs, "service.name"), Some("payment"));
    assert_eq!(
        w.metric("weft_receiver_kafka_undecodable_messages_total", "kafka"),
        1.0
    );
    assert_eq!(
        w.metric("weft_receiver_accepted_log_records_total", "kafka"),
        1.0
    );
    w.service.shutdown().await;

    // Same group again: the committed offsets hold, only the new message arrives.
    broker
        .produce(
            "otlp_logs",
            vec![krafka::Record::new("otlp_logs", logs.encode_proto())],
        )
        .await;
    let w = start(&yaml).await;
    wait_until("the new message", Duration::from_secs(30), || {
        sink.batches().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.batches().len(), 2, "nothing delivered twice");
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusing_pipeline_pauses_the_receiver_and_loses_nothing() {
    let dir = tmp();
    let broker = Broker::start(Storage::Memory, dir.path()).await;
    broker.create_topic("otlp_spans", 2).await;
    // The backend is down: its one-slot queue fills, the pipeline refuses.
    let port = support::weft::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let yaml = format!(
        "receivers:\n  kafka:\n    brokers: [{}]\n    initial_offset: earliest\nexporters:\n  otlp/sink:\n    endpoint: http://{addr}\n    tls: {{insecure: true}}\n    timeout: 1s\n    sending_queue: {{num_consumers: 1, queue_size: 1}}\n    retry_on_failure: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 0s}}\nservice:\n  pipelines:\n    traces: {{receivers: [kafka], exporters: [otlp/sink]}}\n",
        broker.addr(),
    );
    let w = start(&yaml).await;
    let mut records = Vec::new();
    let mut expected = Vec::new();
    for i in 0..30 {
        let b = traces(i * 10, 2, 2);
        expected.extend(span_ids(&b));
        records.push(krafka::Record::new("otlp_spans", b.encode_proto()).key(format!("k{i}")));
    }
    broker.produce("otlp_spans", records).await;
    wait_until("refusals", Duration::from_secs(30), || {
        w.metric("weft_receiver_refused_spans_total", "kafka") > 0.0
    })
    .await;
    let sink = Sink::start_at(addr).await;
    wait_until("every span", Duration::from_secs(60), || {
        sink.item_count() >= expected.len()
    })
    .await;
    let got = sink.span_ids();
    for (_, id) in &expected {
        assert!(got.contains_key(id), "span lost");
    }
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exporter_and_receiver_speak_mutual_tls() {
    let dir = tmp();
    let broker = Broker::start_tls(Storage::Memory, dir.path()).await;
    broker.create_topic("otlp_spans", 1).await;
    let sink = Sink::start().await;
    let d = format!("{}/tests/support/tls", env!("CARGO_MANIFEST_DIR"));
    let tls = format!(
        "tls: {{ca_file: {d}/ca.pem, cert_file: {d}/client.pem, key_file: {d}/client.key}}"
    );
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n  kafka:\n    brokers: [{b}]\n    initial_offset: earliest\n    {tls}\nexporters:\n  kafka:\n    brokers: [{b}]\n    {tls}\n  otlp/sink:\n    endpoint: {sink}\n    tls: {{insecure: true}}\nservice:\n  pipelines:\n    traces/in: {{receivers: [otlp], exporters: [kafka]}}\n    traces/out: {{receivers: [kafka], exporters: [otlp/sink]}}\n",
        b = broker.addr(),
        sink = sink.endpoint(),
    );
    let w = start(&yaml).await;
    let b = traces(1, 3, 2);
    assert_eq!(post(&w.http(), &b).await, 200);
    wait_until(
        "the batch through TLS Kafka",
        Duration::from_secs(60),
        || sink.item_count() >= 6,
    )
    .await;
    assert_eq!(sink.batches()[0], b);
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sasl_scram_authenticates_and_a_wrong_password_is_named_by_readiness() {
    let dir = tmp();
    let broker = Broker::start_sasl(
        dir.path(),
        &[
            ("alice", "s3cret", "scram512"),
            ("bob", "hunter2", "scram256"),
        ],
        &[("otlp_spans", 1)],
    )
    .await;
    let sink = Sink::start().await;
    let sasl = |user: &str, pw: &str, mech: &str| {
        format!("auth: {{sasl: {{username: {user}, password: {pw}, mechanism: {mech}}}}}")
    };
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n  kafka:\n    brokers: [{b}]\n    initial_offset: earliest\n    {r}\nexporters:\n  kafka:\n    brokers: [{b}]\n    {e}\n  kafka/wrong:\n    brokers: [{b}]\n    topic: otlp_spans\n    {w}\n  otlp/sink:\n    endpoint: {sink}\n    tls: {{insecure: true}}\nservice:\n  pipelines:\n    traces/in: {{receivers: [otlp], exporters: [kafka, kafka/wrong]}}\n    traces/out: {{receivers: [kafka], exporters: [otlp/sink]}}\n",
        b = broker.addr(),
        sink = sink.endpoint(),
        r = sasl("alice", "s3cret", "SCRAM-SHA-512"),
        e = sasl("bob", "hunter2", "SCRAM-SHA-256"),
        w = sasl("alice", "wrong", "SCRAM-SHA-512"),
    );
    let w = start(&yaml).await;
    let b = traces(1, 2, 2);
    assert_eq!(post(&w.http(), &b).await, 200);
    wait_until(
        "the batch through SASL Kafka",
        Duration::from_secs(60),
        || sink.item_count() >= 4,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.item_count(), 4, "the wrong password wrote nothing");
    wait_until(
        "readiness names the wrong password",
        Duration::from_secs(30),
        || {
            let r = w.telemetry.health.readiness();
            !r.ready
                && r.reasons
                    .iter()
                    .any(|m| m.starts_with("kafka/wrong:") && m.to_lowercase().contains("auth"))
        },
    )
    .await;
    w.service.shutdown().await;
}

#[tokio::test]
async fn two_signals_on_one_topic_is_a_startup_error() {
    let yaml = "receivers:\n  kafka:\n    brokers: [127.0.0.1:1]\n    topic: everything\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces: {receivers: [kafka], exporters: [debug]}\n    logs: {receivers: [kafka], exporters: [debug]}\n";
    support::weft::init();
    let cfg = support::weft::valid(yaml);
    let err = weft::pipeline::Service::start(&cfg, weft::admin::Telemetry::new())
        .await
        .err()
        .expect("must not start");
    let msg = err.to_string();
    assert!(
        msg.contains("\"everything\"") && msg.contains("traces.topic"),
        "{msg}"
    );
}
