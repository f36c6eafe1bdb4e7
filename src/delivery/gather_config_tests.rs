//! `sending_queue.batch`: the Collector's exporterhelper batching keys, served by the same
//! gathering, for any exporter.

use super::*;

fn queue_batch(v: serde_json::Value) -> Result<Option<crate::delivery::QueueBatchConfig>, String> {
    serde_json::from_value::<DeliveryConfig>(serde_json::json!({ "sending_queue": { "batch": v } }))
        .map(|c| c.sending_queue.batch)
        .map_err(|e| e.to_string())
}

#[test]
fn batch_keys_defaults_and_errors() {
    let b = queue_batch(serde_json::json!({})).unwrap().unwrap();
    assert_eq!(b.flush_timeout.get(), Duration::from_millis(200));
    assert_eq!((b.min_size, b.max_size, b.sizer), (8192, 0, Sizer::Items));
    assert_eq!(queue_batch(serde_json::Value::Null).unwrap(), None);
    assert!(
        DeliveryConfig::default().sending_queue.batch.is_none(),
        "off by default"
    );
    let b =
        queue_batch(serde_json::json!({"flush_timeout": "2s", "min_size": 1000, "max_size": 5000}))
            .unwrap()
            .unwrap();
    assert_eq!(
        b.accumulate(),
        Accumulate {
            interval: Duration::from_secs(2),
            flush_size: 1000,
            sizer: Sizer::Items,
            max_items: 5000
        }
    );
    for (v, want) in [
        (
            serde_json::json!({"flush_timeout": "0s"}),
            "flush_timeout must be greater than zero",
        ),
        (
            serde_json::json!({"sizer": "requests"}),
            "`items` or `bytes`",
        ),
        (
            serde_json::json!({"sizer": "bytes", "max_size": 100}),
            "sizer: items",
        ),
        (
            serde_json::json!({"min_size": 10, "max_size": 5}),
            "at least batch.min_size",
        ),
        (serde_json::json!({"min_sise": 10}), "min_sise"),
    ] {
        let err = queue_batch(v.clone()).unwrap_err();
        assert!(err.contains(want), "{v}: {err}");
    }
}

#[tokio::test]
async fn min_size_in_items_gathers_for_an_exporter_that_does_not_ask() {
    let (e, mut told) = recording(None, vec![]);
    let cfg = config(serde_json::json!({
        "sending_queue": {"batch": {"flush_timeout": "1h", "min_size": 6}},
    }));
    let (d, h, _t) = start(e.clone(), cfg, None).await;
    push(&h, logs(0..2)).await;
    push(&h, logs(2..5)).await;
    push(&h, logs(5..6)).await;
    next_attempt(&mut told).await;
    assert_eq!(
        *e.attempts.lock().unwrap(),
        [(Signal::Logs, (0..6).collect())]
    );
    // Below min_size: held until shutdown, which sends it at once.
    push(&h, logs(6..8)).await;
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    assert_eq!(
        *e.attempts.lock().unwrap(),
        [
            (Signal::Logs, (0..6).collect()),
            (Signal::Logs, (6..8).collect())
        ]
    );
}

#[tokio::test]
async fn max_size_sends_a_merged_batch_in_pieces() {
    let (e, mut told) = recording(None, vec![]);
    let cfg = config(serde_json::json!({
        "sending_queue": {"batch": {"flush_timeout": "1h", "min_size": 4, "max_size": 4}},
    }));
    let (d, h, _t) = start(e.clone(), cfg, None).await;
    push(&h, logs(0..3)).await;
    push(&h, logs(3..9)).await;
    next_attempt(&mut told).await;
    next_attempt(&mut told).await;
    next_attempt(&mut told).await;
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    assert_eq!(
        *e.attempts.lock().unwrap(),
        [
            (Signal::Logs, (0..4).collect()),
            (Signal::Logs, (4..8).collect()),
            (Signal::Logs, (8..9).collect()),
        ]
    );
}

#[tokio::test]
async fn an_exporter_that_gathers_keeps_its_own_settings() {
    // The exporter asks for 1h / a huge size; `batch` would send at 2 items.
    let (e, _told) = recording(every(HOUR, 1 << 30), vec![]);
    let cfg = config(serde_json::json!({
        "sending_queue": {"batch": {"flush_timeout": "1h", "min_size": 2}},
    }));
    let (d, h, _t) = start(e.clone(), cfg, None).await;
    push(&h, logs(0..2)).await;
    push(&h, logs(2..4)).await;
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    assert_eq!(
        *e.attempts.lock().unwrap(),
        [(Signal::Logs, (0..4).collect())]
    );
}
