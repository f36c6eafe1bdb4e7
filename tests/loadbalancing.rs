//! Load balancing on loopback: three weft gateways (each OTLP in → `otlp` out to its own
//! backend), one weft agent in front with the `loadbalancing` exporter, 10,000 traces sent
//! with the OTLP/gRPC client, each trace's spans spread over several requests.
//!
//! Then one gateway stops while more spans of the same traces arrive (the agent sets it
//! aside and retries its parts on the next gateway of the ring), the agent restarts with
//! the updated static list, and yet more spans arrive: the stopped gateway's traces move,
//! once, the others stay on their gateway, and every span id arrives.
//!
//! Also: with every backend down, data waits in the queue until one is back, or — with a
//! persistent queue — until the agent restarts with a new list; and `resolver.dns`.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use support::otlp_sink::Sink;
use support::weft::{Running, start};
use weft::data::*;

const TRACES: u64 = 10_000;
const PER_REQUEST: u64 = 1_000;

fn trace_id(t: u64) -> Vec<u8> {
    [t.to_be_bytes(), [0xab; 8]].concat()
}

fn span_id(t: u64, round: u64) -> Vec<u8> {
    (t * 16 + round + 1).to_be_bytes().to_vec()
}

fn trace_of(span_id: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(span_id);
    (u64::from_be_bytes(b) - 1) / 16
}

/// One request: span number `round` of traces `first..first+n`.
fn request(first: u64, round: u64, n: u64) -> ExportTraceServiceRequest {
    let mut attributes = Vec::new();
    set_attr(&mut attributes, "service.name", string_value("checkout"));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (first..first + n)
                    .map(|t| Span {
                        trace_id: trace_id(t),
                        span_id: span_id(t, round),
                        name: format!("step{round}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000 + t,
                        end_time_unix_nano: 1_700_000_000_000_100_000 + t,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends span `round` of every trace, PER_REQUEST spans per request, retrying refusals.
async fn send_round(agent: &str, round: u64) {
    send_round_of(agent, round, TRACES).await
}

async fn send_round_of(agent: &str, round: u64, traces: u64) {
    let ch = tonic::transport::Channel::from_shared(agent.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TraceServiceClient::new(ch);
    for first in (0..traces).step_by(PER_REQUEST as usize) {
        let req = request(first, round, PER_REQUEST.min(traces - first));
        loop {
            match client.export(req.clone()).await {
                Ok(_) => break,
                Err(st) => {
                    assert!(
                        matches!(
                            st.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ),
                        "non-retryable refusal: {st}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

struct Gateway {
    weft: Running,
    sink: Sink,
    endpoint: String,
}

async fn gateway() -> Gateway {
    let sink = Sink::start().await;
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\nexporters:\n  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\n    retry_on_failure:\n      initial_interval: 50ms\n      max_interval: 200ms\nservice:\n  shutdown_timeout: 5s\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n",
        sink.endpoint()
    );
    let weft = start(&yaml).await;
    let endpoint = weft.addr("otlp/grpc").to_string();
    Gateway {
        weft,
        sink,
        endpoint,
    }
}

/// The agent: OTLP in, `loadbalancing` out over `gateways`, with a persistent queue in
/// `queue_dir` and quick retries.
async fn agent(gateways: &[&str], queue_dir: &Path) -> Running {
    let yaml = agent_yaml(gateways, queue_dir);
    // After an in-process shutdown the previous agent's queue may stay locked a moment
    // (its consumers still hold the write-ahead log); a new process would not wait.
    support::weft::init();
    let cfg = support::weft::valid(&yaml);
    let started = std::time::Instant::now();
    loop {
        let telemetry = weft::admin::Telemetry::new();
        match weft::pipeline::Service::start(&cfg, telemetry.clone()).await {
            Ok(service) => {
                if started.elapsed() > Duration::from_millis(100) {
                    eprintln!("queue directory was locked for {:?}", started.elapsed());
                }
                return Running { service, telemetry };
            }
            Err(e)
                if e.message.contains("locked") && started.elapsed() < Duration::from_secs(10) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("agent starts: {e}"),
        }
    }
}

fn agent_yaml(gateways: &[&str], queue_dir: &Path) -> String {
    let hosts: Vec<String> = gateways.iter().map(|g| format!("\"{g}\"")).collect();
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\nexporters:\n  loadbalancing:\n    routing_key: traceID\n    protocol:\n      otlp:\n        tls:\n          insecure: true\n        timeout: 2s\n    resolver:\n      static:\n        hostnames: [{}]\n    timeout: 5s\n    sending_queue:\n      num_consumers: 4\n      storage: file_storage\n    retry_on_failure:\n      initial_interval: 50ms\n      max_interval: 200ms\n      max_elapsed_time: 0s\nextensions:\n  file_storage:\n    directory: {}\n    fsync: never\nservice:\n  extensions: [file_storage]\n  shutdown_timeout: 1s\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n",
        hosts.join(", "),
        queue_dir.display()
    )
}

/// Span ids per gateway (index), with how often each arrived there.
fn received(sinks: &[&Sink]) -> Vec<HashMap<Vec<u8>, usize>> {
    sinks.iter().map(|s| s.span_ids()).collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_stay_whole_across_gateways_and_a_gateway_leaving_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let gws = [gateway().await, gateway().await, gateway().await];
    let sinks: Vec<Sink> = gws.iter().map(|g| g.sink.clone()).collect();
    let sinks: Vec<&Sink> = sinks.iter().collect();
    let eps: Vec<String> = gws.iter().map(|g| g.endpoint.clone()).collect();
    let eps: Vec<&str> = eps.iter().map(String::as_str).collect();

    // Phase 1: three spans per trace, each round in its own requests.
    let a1 = agent(&eps, &queue).await;
    assert_eq!(
        a1.metric("weft_exporter_loadbalancing_backends", "loadbalancing"),
        3.0
    );
    for round in 0..3 {
        send_round(&a1.grpc(), round).await;
    }
    wait_until("phase 1 spans at the gateways", || {
        sinks.iter().map(|s| s.item_count()).sum::<usize>() >= 3 * TRACES as usize
    })
    .await;
    let got = received(&sinks);
    let mut owner: HashMap<u64, usize> = HashMap::new();
    for (g, ids) in got.iter().enumerate() {
        for (id, n) in ids {
            assert_eq!(*n, 1, "phase 1 span delivered twice");
            let t = trace_of(id);
            let prev = *owner.entry(t).or_insert(g);
            assert_eq!(prev, g, "trace {t} split over gateways {prev} and {g}");
        }
    }
    assert_eq!(owner.len(), TRACES as usize);
    let mut shares = [0usize; 3];
    for g in owner.values() {
        shares[*g] += 1;
    }
    for (g, s) in shares.iter().enumerate() {
        assert!(
            (2667..=4000).contains(s),
            "gateway {g} got {s} of {TRACES} traces: {shares:?}"
        );
    }
    for (g, ep) in eps.iter().enumerate() {
        let v = a1
            .telemetry
            .metrics
            .value(
                "weft_exporter_loadbalancing_backend_items_total",
                &[("component", "loadbalancing"), ("endpoint", ep)],
            )
            .unwrap_or(0.0);
        assert_eq!(v as usize, 3 * shares[g], "backend_items_total of {ep}");
    }

    // Phase 2: gateway 2 stops; a fourth span of every trace arrives at the agent, which
    // still lists it. Its parts fail, the agent sets it aside and their retries go to the
    // next gateway on the ring.
    let [g0, g1, g2] = gws;
    g2.weft.service.shutdown().await;
    send_round(&a1.grpc(), 3).await;
    let round3: Vec<Vec<u8>> = (0..TRACES).map(|t| span_id(t, 3)).collect();
    wait_until("round 3 at the remaining gateways", || {
        let (a, b) = (g0.sink.span_ids(), g1.sink.span_ids());
        round3
            .iter()
            .all(|id| a.contains_key(id) || b.contains_key(id))
    })
    .await;
    assert_eq!(
        g2.sink.item_count(),
        3 * shares[2],
        "a stopped gateway got data"
    );
    let ejections = a1
        .telemetry
        .metrics
        .value(
            "weft_exporter_loadbalancing_backend_ejections_total",
            &[("component", "loadbalancing"), ("endpoint", eps[2])],
        )
        .unwrap_or(0.0);
    assert!(ejections >= 1.0, "the stopped gateway was set aside");
    a1.service.shutdown().await;

    // Phase 3: the agent restarts with the updated list and the same queue directory
    // (replaying anything still waiting), and a fifth span of every trace arrives.
    let a2 = agent(&eps[..2], &queue).await;
    assert_eq!(
        a2.metric("weft_exporter_loadbalancing_backends", "loadbalancing"),
        2.0
    );
    send_round(&a2.grpc(), 4).await;
    let all: Vec<Vec<u8>> = (0..TRACES)
        .flat_map(|t| (0..5).map(move |r| span_id(t, r)))
        .collect();
    let sinks = [&g0.sink, &g1.sink, &g2.sink];
    wait_until("every span id", || {
        let got = received(&sinks);
        all.iter().all(|id| got.iter().any(|g| g.contains_key(id)))
    })
    .await;

    // Where did each trace's later spans go?
    let got = received(&sinks);
    let mut later: HashMap<u64, HashSet<usize>> = HashMap::new();
    let mut duplicates = 0;
    for (g, ids) in got.iter().enumerate() {
        for (id, n) in ids {
            let t = trace_of(id);
            let round = (u64::from_be_bytes(id[..].try_into().unwrap()) - 1) % 16;
            if *n > 1 {
                // A replayed record is the whole original batch: its delivered parts
                // may arrive again, at the same gateway (checked below).
                assert_eq!(round, 3, "only replayed round-3 spans may repeat");
                duplicates += n - 1;
            }
            if round >= 3 {
                later.entry(t).or_default().insert(g);
            }
        }
    }
    let mut moved = [0usize; 2];
    for (t, first) in &owner {
        let gs = &later[t];
        assert_eq!(gs.len(), 1, "trace {t}'s later spans split over {gs:?}");
        let now = *gs.iter().next().unwrap();
        if *first == 2 {
            assert_ne!(now, 2);
            moved[now] += 1;
        } else {
            assert_eq!(now, *first, "trace {t} moved from a gateway that stayed");
        }
    }
    assert_eq!(moved[0] + moved[1], shares[2]);
    assert!(
        moved[0] > 0 && moved[1] > 0,
        "moved keys spread over both: {moved:?}"
    );
    eprintln!(
        "shares {shares:?}, moved {moved:?}, replayed duplicates {duplicates}, spans {}",
        all.len()
    );
    a2.service.shutdown().await;
    g0.weft.service.shutdown().await;
    g1.weft.service.shutdown().await;
}

/// `resolver.dns` against `localhost`: every address it answers with becomes a backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_resolver_balances_over_the_addresses_of_localhost() {
    let first = Sink::start().await;
    let port = first.addr.port();
    let mut sinks = vec![first];
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", port))
        .await
        .unwrap()
        .collect();
    let first_ip = sinks[0].addr.ip();
    for a in addrs.iter().filter(|a| a.ip() != first_ip) {
        sinks.push(Sink::start_at(*a).await);
    }
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\nexporters:\n  loadbalancing:\n    protocol:\n      otlp:\n        tls:\n          insecure: true\n    resolver:\n      dns:\n        hostname: localhost\n        port: {port}\n        interval: 1s\n    retry_on_failure:\n      initial_interval: 50ms\nservice:\n  shutdown_timeout: 5s\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n"
    );
    let agent = start(&yaml).await;
    assert_eq!(
        agent.metric("weft_exporter_loadbalancing_backends", "loadbalancing") as usize,
        sinks.len()
    );
    let ch = tonic::transport::Channel::from_shared(agent.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    TraceServiceClient::new(ch)
        .export(request(0, 0, PER_REQUEST))
        .await
        .unwrap();
    wait_until("1000 spans", || {
        sinks.iter().map(|s| s.item_count()).sum::<usize>() >= PER_REQUEST as usize
    })
    .await;
    let total: usize = sinks.iter().map(|s| s.item_count()).sum();
    assert_eq!(total, PER_REQUEST as usize);
    agent.service.shutdown().await;
}

/// The only backend is down: the data waits in the agent's queue and arrives when the
/// backend is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_down_data_waits_in_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let ep = sink.addr.to_string();
    let agent = agent(&[&ep], &dir.path().join("queue")).await;
    sink.stop();
    send_round(&agent.grpc(), 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.item_count(), 0);
    sink.restart().await;
    wait_until("all spans after the outage", || {
        sink.item_count() >= TRACES as usize
    })
    .await;
    let ids = sink.span_ids();
    assert!((0..TRACES).all(|t| ids.contains_key(&span_id(t, 0))));
    agent.service.shutdown().await;
}

/// Every backend of the old list is gone: the data stays in the persistent queue across
/// the agent's restart and goes to the new list's backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_data_is_rerouted_to_the_new_backends_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let old = Sink::start().await;
    old.stop();
    let old_ep = old.addr.to_string();
    let first = agent(&[&old_ep], &queue).await;
    send_round(&first.grpc(), 0).await;
    first.service.shutdown().await;
    assert_eq!(old.item_count(), 0);
    let new = Sink::start().await;
    let new_ep = new.addr.to_string();
    let second = agent(&[&new_ep], &queue).await;
    wait_until("replayed spans at the new backend", || {
        new.item_count() >= TRACES as usize
    })
    .await;
    let ids = new.span_ids();
    assert!((0..TRACES).all(|t| ids.contains_key(&span_id(t, 0))));
    second.service.shutdown().await;
}

/// Logs go through the same exporter (the shipped agent config balances traces and logs):
/// records with a trace id land where that trace's spans land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_follow_their_trace() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let sinks = [
        Sink::start().await,
        Sink::start().await,
        Sink::start().await,
    ];
    let eps: Vec<String> = sinks.iter().map(|s| s.addr.to_string()).collect();
    let eps: Vec<&str> = eps.iter().map(String::as_str).collect();
    let yaml = agent_yaml(&eps, &dir.path().join("queue")).replace(
        "    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n",
        "    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n    logs:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n",
    );
    let agent = start(&yaml).await;
    let traces = 300u64;
    send_round_of(&agent.grpc(), 0, traces).await;
    let ch = tonic::transport::Channel::from_shared(agent.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let records: Vec<LogRecord> = (0..traces)
        .map(|t| LogRecord {
            trace_id: trace_id(t),
            span_id: span_id(t, 0),
            body: Some(AnyValue {
                value: Some(string_value(format!("record of trace {t}"))),
            }),
            ..Default::default()
        })
        .collect();
    LogsServiceClient::new(ch)
        .export(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    wait_until("spans and records", || {
        sinks.iter().map(Sink::item_count).sum::<usize>() >= 2 * traces as usize
    })
    .await;
    for s in &sinks {
        let spans: HashSet<u64> = s.span_ids().keys().map(|id| trace_of(id)).collect();
        for b in s.batches() {
            if let Batch::Logs(v) = b {
                for rec in v
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                {
                    assert!(
                        spans.contains(&trace_of(&rec.span_id)),
                        "a record left its trace"
                    );
                }
            }
        }
    }
    agent.service.shutdown().await;
}
