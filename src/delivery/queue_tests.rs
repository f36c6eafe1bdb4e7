//! Tests of the sending queue: delivery, and the delivery contract under random failures.

mod basic {
    use super::super::*;
    use crate::exporters::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(Arc<AtomicUsize>);
    impl Exporter for Counting {
        fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                self.0.fetch_add(batch.item_count(), Ordering::SeqCst);
                Ok(())
            })
        }
    }

    fn logs(n: usize) -> Batch {
        use crate::data::{LogRecord, ResourceLogs, ScopeLogs};
        Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n).map(|_| LogRecord::default()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    /// An in-memory queue with default settings in front of a [`Counting`] exporter.
    async fn counting() -> (Delivery, Arc<AtomicUsize>, Telemetry) {
        let n = Arc::new(AtomicUsize::new(0));
        let t = Telemetry::new();
        let e = Arc::new(Counting(n.clone()));
        let d = Delivery::start("x", e, DeliveryConfig::default(), None, &t)
            .await
            .unwrap();
        (d, n, t)
    }

    #[tokio::test]
    async fn in_memory_queue_delivers() {
        let (d, n, _t) = counting().await;
        let h = d.handle();
        h.push(Arc::new(logs(3)), false).await.unwrap();
        drop(h);
        d.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    /// The safety net for an exporter that needs decoded data and gets a raw batch: what
    /// decodes is sent, the resource message that does not is dropped and counted.
    #[tokio::test]
    async fn undecodable_resources_of_a_raw_batch_are_dropped_alone() {
        use crate::data::wire::tests::{not_utf8, traces};
        use crate::data::{Signal, raw::RawBatch};
        let bad = not_utf8(&traces(1, 2), b"span1");
        let good = RawBatch::new(Signal::Traces, traces(2, 3).encode_proto().into()).unwrap();
        let mut r = good.clone();
        r.append(RawBatch::new(Signal::Traces, bad.clone().into()).unwrap());
        let only_bad = RawBatch::new(Signal::Traces, bad.into()).unwrap();
        let (d, n, t) = counting().await;
        let h = d.handle();
        for b in [good, r, only_bad] {
            h.push(Arc::new(Batch::Raw(b)), false).await.unwrap();
        }
        drop(h);
        d.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(
            n.load(Ordering::SeqCst),
            12 + 12,
            "the good batch whole, then its copy"
        );
        let failed = t.metrics.value(
            "weft_exporter_send_failed_spans_total",
            &[("component", "x"), ("reason", "undecodable")],
        );
        assert_eq!(failed, Some(8.0), "the bad resource's four spans, twice");
    }

    /// Answers after 300ms and asks for a 100ms default attempt timeout.
    struct Slow(Arc<AtomicUsize>);
    impl Exporter for Slow {
        fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                self.0.fetch_add(batch.item_count(), Ordering::SeqCst);
                Ok(())
            })
        }
        fn default_timeout(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    /// The exporter's own default timeout applies when the config sets none, and a
    /// configured `timeout` overrides it.
    #[tokio::test]
    async fn exporter_default_timeout_applies_unless_configured() {
        for timeout in [None, Some("5s")] {
            let n = Arc::new(AtomicUsize::new(0));
            let t = Telemetry::new();
            let mut cfg: DeliveryConfig = serde_json::from_value(serde_json::json!({
                "retry_on_failure": {"initial_interval": "1h", "max_elapsed_time": "0s"},
            }))
            .unwrap();
            cfg.timeout = timeout.map(|s| serde_json::from_value(serde_json::json!(s)).unwrap());
            let d = Delivery::start("x", Arc::new(Slow(n.clone())), cfg, None, &t)
                .await
                .unwrap();
            let h = d.handle();
            h.push(Arc::new(logs(3)), false).await.unwrap();
            let retries = || {
                t.metrics
                    .value("weft_exporter_retries_total", &[("component", "x")])
                    .unwrap_or(0.0)
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while n.load(Ordering::SeqCst) == 0 && retries() == 0.0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if timeout.is_none() {
                assert_eq!(retries(), 1.0, "the 100ms default timed the attempt out");
                assert_eq!(n.load(Ordering::SeqCst), 0);
            } else {
                assert_eq!(
                    n.load(Ordering::SeqCst),
                    3,
                    "5s configured: the 300ms send ends"
                );
                assert_eq!(retries(), 0.0);
            }
            drop(h);
            d.shutdown(Instant::now() + Duration::from_millis(10)).await;
        }
    }

    /// Never answers: whatever a consumer took stays in flight.
    struct Stuck;
    impl Exporter for Stuck {
        fn send<'a>(&'a self, _: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(std::future::pending())
        }
    }

    /// A queue of `queue_size` in `sizer` units, one consumer that never finishes.
    async fn stuck_queue(sizer: &str, queue_size: usize) -> (Delivery, DeliveryHandle, Telemetry) {
        let t = Telemetry::new();
        let cfg: DeliveryConfig = serde_json::from_value(serde_json::json!({
            "sending_queue": {"num_consumers": 1, "queue_size": queue_size, "sizer": sizer},
            "timeout": "1h",
        }))
        .unwrap();
        let d = Delivery::start("x", Arc::new(Stuck), cfg, None, &t)
            .await
            .unwrap();
        let h = d.handle();
        (d, h, t)
    }

    /// Pushes until the queue refuses; returns how many pushes it took.
    async fn pushes_until_full(h: &DeliveryHandle, t: &Telemetry, b: &Batch) -> usize {
        // The first push is taken by the consumer (and hangs there), leaving the queue empty.
        h.push(Arc::new(b.clone()), false).await.unwrap();
        let level = || {
            t.metrics
                .value("weft_exporter_queue_size", &[("component", "x")])
                .unwrap_or(-1.0)
        };
        while level() != 0.0 {
            tokio::task::yield_now().await;
        }
        let mut n = 0;
        while h.push(Arc::new(b.clone()), false).await.is_ok() {
            n += 1;
            assert!(n < 1000, "never full");
        }
        n
    }

    #[tokio::test]
    async fn queue_size_counts_in_the_sizer_unit() {
        let b = logs(100);
        let bytes = b.encoded_len();
        for (sizer, size, fits) in [
            ("requests", 3, 3),
            ("items", 250, 2),
            ("bytes", bytes * 3 + bytes / 2, 3),
        ] {
            let (d, h, t) = stuck_queue(sizer, size).await;
            assert_eq!(pushes_until_full(&h, &t, &b).await, fits, "{sizer}");
            let level = t
                .metrics
                .value("weft_exporter_queue_size", &[("component", "x")]);
            let unit = match sizer {
                "requests" => 1,
                "items" => 100,
                _ => bytes,
            };
            assert_eq!(level, Some((fits * unit) as f64), "{sizer}");
            drop(h);
            d.shutdown(Instant::now()).await;
        }
    }

    #[tokio::test]
    async fn a_batch_larger_than_a_bytes_queue_still_goes_when_it_is_empty() {
        let (d, h, t) = stuck_queue("bytes", 10).await;
        let b = logs(100);
        assert_eq!(pushes_until_full(&h, &t, &b).await, 1);
        drop(h);
        d.shutdown(Instant::now()).await;
    }
}

/// The delivery contract: whatever a backend answers, every item is either delivered or
/// counted as a permanent failure, and a permanent failure is never retried.
mod contract_tests {
    use super::super::*;
    use crate::config::Dur;
    use crate::data::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::exporters::BoxFuture;
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    /// Fails at random: retryable, permanent (for whole batches), or partially.
    struct Flaky {
        rng: StdMutex<fastrand::Rng>,
        delivered: StdMutex<Vec<i64>>,
        attempts: StdMutex<HashMap<i64, usize>>,
        permanent: StdMutex<Vec<i64>>,
    }

    fn batch_ids(b: &Batch) -> Vec<i64> {
        match b {
            Batch::Logs(v) => v
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .map(|r| r.time_unix_nano as i64)
                .collect(),
            _ => vec![],
        }
    }

    impl Exporter for Flaky {
        fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                let ids = batch_ids(batch);
                {
                    let mut a = self.attempts.lock().unwrap();
                    for id in &ids {
                        *a.entry(*id).or_default() += 1;
                    }
                    let p = self.permanent.lock().unwrap();
                    assert!(
                        !ids.iter().any(|i| p.contains(i)),
                        "a permanently failed item was sent again"
                    );
                }
                let roll = self.rng.lock().unwrap().u32(0..100);
                match roll {
                    0..30 => Err(ExportError::Retryable {
                        reason: "flaky".into(),
                        after: None,
                    }),
                    30..35 => {
                        self.permanent.lock().unwrap().extend(&ids);
                        Err(ExportError::permanent("http_400", "rejected"))
                    }
                    35..50 if batch.item_count() > 1 => {
                        // Take the first half, ask to retry the rest.
                        let mut rest = batch.clone();
                        let first = rest.split_front(batch.item_count() / 2);
                        self.delivered.lock().unwrap().extend(batch_ids(&first));
                        Err(ExportError::Partial {
                            retry: rest,
                            reason: "some items 429".into(),
                            after: None,
                        })
                    }
                    _ => {
                        self.delivered.lock().unwrap().extend(ids);
                        Ok(())
                    }
                }
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_failures_lose_nothing_and_never_retry_permanent_errors() {
        for seed in 0..4u64 {
            let flaky = Arc::new(Flaky {
                rng: StdMutex::new(fastrand::Rng::with_seed(seed)),
                delivered: StdMutex::default(),
                attempts: StdMutex::default(),
                permanent: StdMutex::default(),
            });
            let mut cfg = DeliveryConfig::default();
            cfg.retry_on_failure.initial_interval = Dur::millis(1);
            cfg.retry_on_failure.max_interval = Dur::millis(5);
            cfg.retry_on_failure.max_elapsed_time = Dur::secs(0);
            cfg.sending_queue.num_consumers = 4;
            let t = Telemetry::new();
            let d = Delivery::start("flaky", flaky.clone(), cfg, None, &t)
                .await
                .unwrap();
            let h = d.handle();
            let mut next = 0i64;
            for _ in 0..200 {
                let n = 1 + (next % 7) as usize;
                let records = (0..n)
                    .map(|i| LogRecord {
                        time_unix_nano: (next + i as i64) as u64,
                        ..Default::default()
                    })
                    .collect();
                next += n as i64;
                let b = Batch::Logs(vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }]);
                h.push(Arc::new(b), true).await.unwrap();
            }
            drop(h);
            d.shutdown(Instant::now() + Duration::from_secs(60)).await;
            let delivered = flaky.delivered.lock().unwrap().clone();
            let permanent = flaky.permanent.lock().unwrap().clone();
            for id in 0..next {
                assert!(
                    delivered.contains(&id) || permanent.contains(&id),
                    "seed {seed}: item {id} neither delivered nor counted as failed"
                );
            }
            let failed = t
                .metrics
                .value(
                    "weft_exporter_send_failed_log_records_total",
                    &[("component", "flaky"), ("reason", "http_400")],
                )
                .unwrap_or(0.0);
            assert_eq!(
                failed as usize,
                permanent.len(),
                "seed {seed}: permanent failures are counted"
            );
        }
    }
}
