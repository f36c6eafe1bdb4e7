//! agent → Kafka → gateways, with real processes and a real broker (tansu): a consumer
//! group of two gateways shares the partitions, keeps every trace whole on one gateway,
//! and when one gateway is killed with SIGKILL its partitions move on; a broker outage of
//! 20 s while the agent keeps receiving loses nothing.
//!
//! About the takeover: tansu 0.6 evicts a dead member on a survivor's heartbeat but the
//! survivor's next join still receives an assignment that counts the dead member (its
//! coordinator, `coordinator/group/administrator.rs`, answers the later heartbeats with
//! NONE), so on tansu the survivor alone keeps only its own partitions. Apache Kafka answers
//! REBALANCE_IN_PROGRESS and the survivor takes everything. The test therefore starts a
//! replacement gateway after the kill, as a Deployment does, and checks what matters for
//! data: every span arrives, every trace stays whole, duplicates are counted.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use support::kafka::{Broker, Storage};
use support::weft::{Process, free_port, post};
use weft::data::*;

const SPANS_PER_TRACE: u64 = 4;

/// `n` traces starting at `first`, each with SPANS_PER_TRACE spans.
fn request(first: u64, n: u64) -> Batch {
    support::samples::traces(first, n, SPANS_PER_TRACE)
}

fn agent_yaml(broker: &str, http: u16, admin: u16) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{http}\nexporters:\n  kafka:\n    brokers: [{broker}]\n    partition_traces_by_id: true\n    timeout: 10s\n    sending_queue: {{queue_size: 5000, num_consumers: 4}}\n    retry_on_failure: {{initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0s}}\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:{admin}\nservice:\n  extensions: [health_check]\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [kafka]}}\n"
    )
}

fn gateway_yaml(broker: &str, out: &Path, admin: u16) -> String {
    format!(
        "receivers:\n  kafka:\n    brokers: [{broker}]\n    group_id: gateways\n    initial_offset: earliest\n    session_timeout: 3s\n    heartbeat_interval: 1s\nexporters:\n  file:\n    path: {}\n    sending_queue: {{enabled: false}}\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:{admin}\nservice:\n  extensions: [health_check]\n  pipelines:\n    traces: {{receivers: [kafka], exporters: [file]}}\n",
        out.display()
    )
}

/// Span ids per trace id in a file exporter's output.
fn read_file(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(Batch::Traces(rs)) = Batch::decode_json(Signal::Traces, line.as_bytes()) else {
            panic!("bad line in {}: {line}", path.display());
        };
        for s in rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            out.push((s.trace_id.clone(), s.span_id.clone()));
        }
    }
    out
}

async fn post_ok(base: &str, b: &Batch) {
    for _ in 0..100 {
        if post(base, b).await == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("agent kept refusing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_group_keeps_traces_whole_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(Storage::Memory, dir.path()).await;
    broker.create_topic("otlp_spans", 6).await;
    let b = broker.addr();
    let (gw_out, mut gateways) = (
        [
            dir.path().join("gw-1.jsonl"),
            dir.path().join("gw-2.jsonl"),
            dir.path().join("gw-3.jsonl"),
        ],
        Vec::new(),
    );
    for (i, out) in gw_out[..2].iter().enumerate() {
        let admin = free_port();
        gateways.push(
            Process::start(
                dir.path(),
                &format!("gw-{}", i + 1),
                &gateway_yaml(&b, out, admin),
                admin,
            )
            .await,
        );
    }
    let (http, admin) = (free_port(), free_port());
    let agent = Process::start(dir.path(), "agent", &agent_yaml(&b, http, admin), admin).await;
    let base = format!("http://127.0.0.1:{http}");
    // Let the group settle so both gateways own partitions.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let (requests, per) = (200u64, 5u64);
    let mut killed = false;
    for r in 0..requests {
        post_ok(&base, &request(r * per, per)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !killed && r >= 60 && !read_file(&gw_out[1]).is_empty() {
            gateways[1].signal("-KILL");
            killed = true;
            // Its replacement, as a Deployment would start one (see the note above).
            let admin = free_port();
            gateways.push(
                Process::start(
                    dir.path(),
                    "gw-3",
                    &gateway_yaml(&b, &gw_out[2], admin),
                    admin,
                )
                .await,
            );
        }
    }
    assert!(
        killed,
        "gateway 2 never received data, so it was not killed"
    );
    let total = (requests * per * SPANS_PER_TRACE) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (mut g1, mut g2, mut g3);
    loop {
        g1 = read_file(&gw_out[0]);
        g2 = read_file(&gw_out[1]);
        g3 = read_file(&gw_out[2]);
        let unique: HashSet<&(Vec<u8>, Vec<u8>)> = g1.iter().chain(&g2).chain(&g3).collect();
        if unique.len() >= total {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let in_kafka: usize = broker
                .read_all("otlp_spans", 6)
                .await
                .iter()
                .map(|r| {
                    Batch::decode_proto(Signal::Traces, r.value.as_deref().unwrap_or_default())
                        .map(|b| b.item_count())
                        .unwrap_or(0)
                })
                .sum();
            panic!(
                "only {} of {total} spans arrived ({in_kafka} in Kafka)\ngw-1 log:\n{}\nagent log:\n{}",
                unique.len(),
                gateways[0].log_text(),
                agent.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let unique: HashSet<&(Vec<u8>, Vec<u8>)> = g1.iter().chain(&g2).chain(&g3).collect();
    let duplicates = g1.len() + g2.len() + g3.len() - unique.len();
    println!(
        "gateway 1: {} spans, gateway 2 (killed): {} spans, gateway 3 (replacement): {} spans, duplicates after the takeover: {duplicates}",
        g1.len(),
        g2.len(),
        g3.len()
    );
    // Every trace is whole on (at least) one gateway.
    let by_trace = |v: &[(Vec<u8>, Vec<u8>)]| {
        let mut m: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
        for (t, s) in v {
            m.entry(t.clone()).or_default().insert(s.clone());
        }
        m
    };
    let per_gateway = [by_trace(&g1), by_trace(&g2), by_trace(&g3)];
    let traces: HashSet<&Vec<u8>> = per_gateway.iter().flat_map(|m| m.keys()).collect();
    assert_eq!(traces.len() as u64, requests * per);
    for t in traces {
        // Wherever a trace's spans went, they went all together (a message is a trace).
        for m in &per_gateway {
            if let Some(s) = m.get(t) {
                assert_eq!(s.len() as u64, SPANS_PER_TRACE, "trace {} split", hex(t));
            }
        }
    }
    assert!(!g1.is_empty() && !g2.is_empty(), "both gateways worked");
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_of_20s_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(Storage::Sqlite(dir.path().join("kafka.db")), dir.path()).await;
    broker.create_topic("otlp_spans", 2).await;
    let (http, admin) = (free_port(), free_port());
    let agent = Process::start(
        dir.path(),
        "agent",
        &agent_yaml(&broker.addr(), http, admin),
        admin,
    )
    .await;
    let base = format!("http://127.0.0.1:{http}");
    let per = 10u64;
    let mut r = 0u64;
    let send_for = async |secs: u64, r: &mut u64| {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < until {
            post_ok(&base, &request(*r * per, per)).await;
            *r += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    send_for(3, &mut r).await;
    broker.stop();
    send_for(20, &mut r).await;
    broker.restart().await;
    send_for(3, &mut r).await;
    let total = (r * per * SPANS_PER_TRACE) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut ids = Vec::new();
        for rec in broker.read_all("otlp_spans", 2).await {
            let b = Batch::decode_proto(Signal::Traces, rec.value.as_deref().unwrap()).unwrap();
            if let Batch::Traces(rs) = b {
                for s in rs
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                {
                    ids.push(s.span_id.clone());
                }
            }
        }
        let unique: HashSet<&Vec<u8>> = ids.iter().collect();
        if unique.len() >= total {
            println!(
                "broker outage: {total} spans sent over {r} requests, all in Kafka; duplicates: {}",
                ids.len() - unique.len()
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} spans in Kafka after the outage\nagent log:\n{}",
            unique.len(),
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
