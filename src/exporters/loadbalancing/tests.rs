//! Exporter-level tests without a backend: resolution, ring updates and the answers when
//! nothing (or nothing reachable) is there. Delivery to real backends is covered by
//! tests/loadbalancing.rs.

use serde_json::json;

use super::*;
use crate::data::{ResourceSpans, ScopeSpans, Span};

fn exporter(v: serde_json::Value) -> LoadBalancingExporter {
    crate::install_crypto_provider();
    let s = config::settings(&v).unwrap();
    LoadBalancingExporter::new("loadbalancing", s, &Telemetry::new()).unwrap()
}

fn traces(n: u64) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    trace_id: [i.to_be_bytes(), [1; 8]].concat(),
                    span_id: (i + 1).to_be_bytes().to_vec(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn static_backends_are_on_the_ring_at_once() {
    let e = exporter(json!({"resolver": {"static": {"hostnames": ["b:1", "a", "b:1"]}}}));
    assert_eq!(e.endpoints(), vec!["a:4317".to_string(), "b:1".to_string()]);
    let before = e.inner.current();
    e.inner.update(vec!["b:1".into(), "a:4317".into()]);
    assert!(
        Arc::ptr_eq(&before, &e.inner.current()),
        "same set, no rebuild"
    );
    e.inner.update(vec!["b:1".into(), "c:4317".into()]);
    let after = e.inner.current();
    assert_eq!(after.ring.endpoints(), ["b:1", "c:4317"]);
    assert!(
        Arc::ptr_eq(&before.backends[1], &after.backends[0]),
        "the client of a remaining backend is kept"
    );
    assert_eq!(e.inner.changes.get(), 2);
    assert_eq!(e.inner.backend_count.get(), 2);
}

#[tokio::test]
async fn unreachable_backends_make_the_whole_batch_retryable() {
    let (p1, p2) = (closed_port(), closed_port());
    let e = exporter(json!({
        "protocol": {"otlp": {"tls": {"insecure": true}}},
        "resolver": {"static": {"hostnames": [format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}")]}}
    }));
    match e.send(&traces(50)).await {
        Err(ExportError::Retryable { reason, .. }) => assert!(reason.contains("127.0.0.1")),
        other => panic!("expected retryable, got {other:?}"),
    }
    let failed: u64 = e
        .inner
        .current()
        .backends
        .iter()
        .map(|b| b.failed.get())
        .sum();
    assert_eq!(failed, 50);
}

#[tokio::test]
async fn no_backends_is_retryable() {
    let e = exporter(json!({"resolver": {"dns": {"hostname": "localhost"}}}));
    // Not started: nothing resolved yet.
    assert!(matches!(
        e.send(&traces(3)).await,
        Err(ExportError::Retryable { .. })
    ));
}

#[tokio::test]
async fn dns_resolver_finds_localhost_and_keeps_it_on_failure() {
    let e = exporter(
        json!({"resolver": {"dns": {"hostname": "localhost", "port": 5317, "interval": "1h"}}}),
    );
    e.start().await.unwrap();
    let eps = e.endpoints();
    assert!(
        eps.contains(&"127.0.0.1:5317".to_string()) || eps.contains(&"[::1]:5317".to_string()),
        "{eps:?}"
    );
    // A failing lookup keeps what was known.
    assert!(
        e.inner
            .resolve_dns("no-such-host.invalid", 5317, Duration::from_secs(2))
            .await
            .is_none()
    );
    assert_eq!(e.endpoints(), eps);
    assert_eq!(e.inner.resolve_errors.get(), 1);
    e.shutdown().await;
    assert!(e.task.lock().unwrap().is_none());
}

#[tokio::test]
async fn a_bad_protocol_config_fails_the_build() {
    crate::install_crypto_provider();
    let s = config::settings(&json!({
        "protocol": {"otlp": {"compression": "lz4"}},
        "resolver": {"static": {"hostnames": ["a"]}}
    }))
    .unwrap();
    let err = LoadBalancingExporter::new("loadbalancing", s, &Telemetry::new())
        .err()
        .expect("lz4 is refused");
    assert!(err.message.contains("lz4"), "{err}");
}

/// Accepts connections and never answers (a hung backend).
async fn silent_backend() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, h)
}

#[tokio::test]
async fn a_hung_backend_is_set_aside_when_the_send_is_dropped() {
    let (addr, h) = silent_backend().await;
    let e = exporter(json!({
        "protocol": {"otlp": {"tls": {"insecure": true}}},
        "resolver": {"static": {"hostnames": [addr]}}
    }));
    let b = e.inner.current().backends[0].clone();
    assert!(b.usable(Instant::now()));
    // What the delivery layer's timeout does.
    let r = tokio::time::timeout(Duration::from_millis(200), e.send(&traces(5))).await;
    assert!(r.is_err(), "a silent backend does not answer");
    assert!(!b.usable(Instant::now()));
    assert_eq!(b.ejections.get(), 1);
    h.abort();
}

#[tokio::test]
async fn protocol_timeout_limits_each_backend_and_sets_it_aside() {
    let (addr, h) = silent_backend().await;
    let e = exporter(json!({
        "protocol": {"otlp": {"tls": {"insecure": true}, "timeout": "100ms"}},
        "resolver": {"static": {"hostnames": [addr]}}
    }));
    match e.send(&traces(5)).await {
        Err(ExportError::Retryable { reason, .. }) => assert!(reason.contains("timed out")),
        other => panic!("expected retryable, got {other:?}"),
    }
    assert!(!e.inner.current().backends[0].usable(Instant::now()));
    h.abort();
}

#[tokio::test]
async fn a_backend_that_keeps_failing_is_set_aside_longer() {
    let e = exporter(json!({"resolver": {"static": {"hostnames": ["a"]}}}));
    let b = e.inner.current().backends[0].clone();
    b.eject("lb", "first");
    let first = b.down_until.lock().unwrap().0.unwrap() - Instant::now();
    assert!(first <= EJECT_FOR && first > EJECT_FOR / 2);
    b.eject("lb", "in flight when set aside");
    assert_eq!(b.ejections.get(), 1, "one ejection while set aside");
    // Its time ran out and it failed again: twice as long.
    b.down_until.lock().unwrap().0 = Some(Instant::now());
    b.eject("lb", "again");
    let second = b.down_until.lock().unwrap().0.unwrap() - Instant::now();
    assert!(second > EJECT_FOR && second <= 2 * EJECT_FOR, "{second:?}");
    // Never beyond the cap.
    for _ in 0..20 {
        b.down_until.lock().unwrap().0 = Some(Instant::now());
        b.eject("lb", "again");
    }
    assert!(b.down_until.lock().unwrap().0.unwrap() - Instant::now() <= EJECT_MAX);
    b.succeeded();
    assert!(b.usable(Instant::now()));
    assert_eq!(b.down_until.lock().unwrap().1, 0);
}
