//! Tests of gathering: what is merged, when it goes, and that the queue (capacity and WAL)
//! keeps owning gathered data until the merged send is delivered.
//!
//! The decisions are tested with time passed in (`decisions`). The whole queue is tested in
//! real time without depending on it: either the interval is an hour and something else
//! (size, capacity, shutdown) makes the send, or the test waits for the send and checks only
//! what it held. Batches pushed in one go on the current-thread runtime are all queued
//! before a consumer runs, and queued batches join a gathering before any deadline is looked
//! at, so a slow machine cannot split them.

use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use super::super::*;
use super::Inbox;
use crate::data::{LogRecord, ResourceLogs, ResourceSpans, ScopeLogs, ScopeSpans, Span};
use crate::exporters::{Accumulate, BoxFuture};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
/// Short enough to wait for, in tests that never depend on it.
const SHORT: Duration = Duration::from_millis(50);
/// A hang guard, not a timing: every wait here is answered in milliseconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// Records every send (signal and item ids) and answers from a script, then `Ok`.
struct Recording {
    acc: Option<Accumulate>,
    script: StdMutex<VecDeque<ExportError>>,
    /// Every attempt, answered or not.
    attempts: StdMutex<Vec<(Signal, Vec<u64>)>>,
    /// Items the exporter took (whole successful sends, and the taken part of a Partial).
    delivered: StdMutex<Vec<u64>>,
    /// One message per attempt.
    tell: mpsc::UnboundedSender<()>,
}

impl Exporter for Recording {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let ids = ids(batch);
            self.attempts
                .lock()
                .unwrap()
                .push((batch.signal(), ids.clone()));
            let _ = self.tell.send(());
            let answer = self.script.lock().unwrap().pop_front();
            match answer {
                None => {
                    self.delivered.lock().unwrap().extend(ids);
                    Ok(())
                }
                Some(ExportError::Partial { reason, after, .. }) => {
                    // Take the first half, ask for the rest again.
                    let mut rest = batch.clone();
                    let first = rest.split_front(batch.item_count() / 2);
                    self.delivered.lock().unwrap().extend(self::ids(&first));
                    Err(ExportError::Partial {
                        retry: rest,
                        reason,
                        after,
                    })
                }
                Some(e) => Err(e),
            }
        })
    }

    fn accumulate(&self) -> Option<Accumulate> {
        self.acc
    }
}

fn recording(
    acc: Option<Accumulate>,
    script: Vec<ExportError>,
) -> (Arc<Recording>, mpsc::UnboundedReceiver<()>) {
    let (tell, told) = mpsc::unbounded_channel();
    let r = Recording {
        acc,
        script: StdMutex::new(script.into()),
        attempts: StdMutex::default(),
        delivered: StdMutex::default(),
        tell,
    };
    (Arc::new(r), told)
}

fn every(interval: Duration, max_bytes: usize) -> Option<Accumulate> {
    Some(Accumulate {
        interval,
        flush_size: max_bytes,
        sizer: Sizer::Bytes,
        max_items: 0,
    })
}

/// Log records with the given ids (as their time).
fn logs(ids: std::ops::Range<u64>) -> Batch {
    Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: ids
                .map(|t| LogRecord {
                    time_unix_nano: t,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Spans with the given ids (as their start time).
fn spans(ids: std::ops::Range<u64>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: ids
                .map(|t| Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    start_time_unix_nano: t,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn ids(b: &Batch) -> Vec<u64> {
    match b {
        Batch::Logs(v) => v
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|r| r.time_unix_nano)
            .collect(),
        Batch::Traces(v) => v
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.start_time_unix_nano)
            .collect(),
        _ => vec![],
    }
}

fn config(v: serde_json::Value) -> DeliveryConfig {
    serde_json::from_value(v).unwrap()
}

async fn start(
    e: Arc<Recording>,
    cfg: DeliveryConfig,
    storage: Option<&FileStorageConfig>,
) -> (Delivery, DeliveryHandle, Telemetry) {
    let t = Telemetry::new();
    let d = Delivery::start("s3", e, cfg, storage, &t).await.unwrap();
    let h = d.handle();
    (d, h, t)
}

async fn push(h: &DeliveryHandle, b: Batch) {
    h.push(Arc::new(b), false).await.unwrap();
}

fn deadline(after: Duration) -> Instant {
    Instant::now() + after
}

async fn next_attempt(told: &mut mpsc::UnboundedReceiver<()>) {
    let r = tokio::time::timeout(PATIENCE, told.recv()).await;
    assert!(matches!(r, Ok(Some(()))), "no send");
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

mod decisions {
    use super::*;
    use crate::delivery::wal::RecordId;
    use tokio::sync::Semaphore;

    struct Fixture {
        inbox: Inbox,
        budget: Arc<Semaphore>,
        _tx: mpsc::UnboundedSender<Item>,
        t0: Instant,
    }

    fn fixture(capacity: usize) -> Fixture {
        let (tx, rx) = mpsc::unbounded_channel();
        Fixture {
            inbox: Inbox::new(rx, capacity),
            budget: Arc::new(Semaphore::new(capacity)),
            _tx: tx,
            t0: Instant::now(),
        }
    }

    impl Fixture {
        fn take(&mut self, b: Batch, record: u64, acc: Option<Accumulate>, at: Duration) {
            let permit = self.budget.clone().try_acquire_many_owned(1).ok();
            assert!(permit.is_some(), "queue full");
            let item = Item {
                batch: Arc::new(b),
                record: Some(RecordId(record)),
                permit,
            };
            let acc = acc.unwrap();
            self.inbox.take(item, acc, self.t0 + at);
        }

        /// The due gathering at `at`: its items and records.
        fn due(&mut self, at: Duration) -> Option<(Signal, Vec<u64>, Vec<u64>)> {
            let g = self.inbox.take_due(self.t0 + at)?;
            let (batch, records) = g.into_parts();
            let batch = batch.unwrap();
            Some((
                batch.signal(),
                ids(&batch),
                records.into_iter().map(|r| r.0).collect(),
            ))
        }

        fn free(&self) -> usize {
            self.budget.available_permits()
        }
    }

    #[test]
    fn an_interval_after_the_first_batch_everything_goes_as_one() {
        let acc = every(5 * MINUTE, 1 << 20);
        let mut f = fixture(100);
        f.take(logs(0..2), 1, acc, Duration::ZERO);
        f.take(logs(2..5), 2, acc, MINUTE);
        f.take(logs(5..6), 3, acc, 4 * MINUTE);
        assert_eq!(f.free(), 97, "gathered batches keep their capacity");
        assert_eq!(f.inbox.next_deadline(), Some(f.t0 + 5 * MINUTE));
        assert!(f.due(5 * MINUTE - Duration::from_nanos(1)).is_none());
        let due = f.due(5 * MINUTE);
        assert_eq!(
            due,
            Some((Signal::Logs, (0..6).collect(), vec![1, 2, 3])),
            "one batch, every record"
        );
        assert_eq!(f.free(), 100, "taken out: capacity given back");
        assert!(f.due(HOUR).is_none(), "nothing left");
        // The next batch starts a new interval.
        f.take(logs(6..7), 4, acc, HOUR);
        assert_eq!(f.inbox.next_deadline(), Some(f.t0 + HOUR + 5 * MINUTE));
    }

    #[test]
    fn reaching_max_bytes_makes_it_due_at_once() {
        let (a, b, c) = (logs(0..3), logs(3..6), logs(6..9));
        let acc = every(HOUR, a.encoded_len() + b.encoded_len() + c.encoded_len());
        let mut f = fixture(100);
        f.take(a, 1, acc, Duration::ZERO);
        f.take(b, 2, acc, Duration::ZERO);
        assert!(f.due(Duration::ZERO).is_none(), "below max_bytes");
        f.take(c, 3, acc, Duration::ZERO);
        assert_eq!(
            f.due(Duration::ZERO),
            Some((Signal::Logs, (0..9).collect(), vec![1, 2, 3]))
        );
    }

    #[test]
    fn more_than_half_the_capacity_gathered_makes_the_largest_due() {
        let acc = every(HOUR, 1 << 20);
        let mut f = fixture(6);
        f.take(spans(100..101), 1, acc, Duration::ZERO);
        f.take(logs(0..1), 2, acc, Duration::ZERO);
        f.take(logs(1..2), 3, acc, Duration::ZERO);
        assert!(f.due(Duration::ZERO).is_none(), "half is allowed");
        f.take(logs(2..3), 4, acc, Duration::ZERO);
        assert_eq!(
            f.due(Duration::ZERO),
            Some((Signal::Logs, vec![0, 1, 2], vec![2, 3, 4])),
            "the largest gathering goes"
        );
        assert!(f.due(Duration::ZERO).is_none(), "the spans wait");
    }

    #[test]
    fn signals_are_gathered_apart() {
        let acc = every(MINUTE, 1 << 20);
        let mut f = fixture(100);
        f.take(logs(0..2), 1, acc, Duration::ZERO);
        f.take(spans(100..101), 2, acc, Duration::from_secs(1));
        f.take(logs(2..3), 3, acc, Duration::from_secs(2));
        f.take(spans(101..103), 4, acc, Duration::from_secs(3));
        assert_eq!(
            f.due(MINUTE),
            Some((Signal::Logs, vec![0, 1, 2], vec![1, 3])),
            "another signal neither joins nor cuts it short"
        );
        assert!(f.due(MINUTE).is_none(), "the spans have their own interval");
        assert_eq!(
            f.due(MINUTE + Duration::from_secs(1)),
            Some((Signal::Traces, vec![100, 101, 102], vec![2, 4]))
        );
    }
}

#[tokio::test]
async fn batches_of_one_interval_are_sent_as_one() {
    let (e, mut told) = recording(every(SHORT, 1 << 20), vec![]);
    let (d, h, _t) = start(e.clone(), DeliveryConfig::default(), None).await;
    push(&h, logs(0..2)).await;
    push(&h, logs(2..5)).await;
    push(&h, logs(5..6)).await;
    next_attempt(&mut told).await;
    assert_eq!(
        *e.attempts.lock().unwrap(),
        [(Signal::Logs, (0..6).collect())]
    );
    // The next batch is gathered anew and goes after its own interval.
    push(&h, logs(6..7)).await;
    next_attempt(&mut told).await;
    assert_eq!(e.attempts.lock().unwrap()[1], (Signal::Logs, vec![6]));
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    assert_eq!(e.attempts.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn reaching_max_bytes_sends_before_the_interval() {
    let (a, b, c) = (logs(0..3), logs(3..6), logs(6..9));
    let max = a.encoded_len() + b.encoded_len() + c.encoded_len();
    let (e, mut told) = recording(every(HOUR, max), vec![]);
    let (d, h, _t) = start(e.clone(), DeliveryConfig::default(), None).await;
    for batch in [a, b, c, logs(9..10)] {
        push(&h, batch).await;
    }
    next_attempt(&mut told).await;
    assert_eq!(
        *e.attempts.lock().unwrap(),
        [(Signal::Logs, (0..9).collect())],
        "exactly the batches that reached max_bytes"
    );
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    assert_eq!(e.attempts.lock().unwrap()[1], (Signal::Logs, vec![9]));
}

#[tokio::test]
async fn more_than_half_the_queue_gathered_is_sent() {
    let (e, mut told) = recording(every(HOUR, 1 << 30), vec![]);
    let cfg = config(serde_json::json!({"sending_queue": {"queue_size": 4}}));
    let (d, h, _t) = start(e.clone(), cfg, None).await;
    for i in 0..3 {
        push(&h, logs(i..i + 1)).await;
    }
    next_attempt(&mut told).await;
    // Two batches are half of four: the third made it more.
    assert_eq!(*e.attempts.lock().unwrap(), [(Signal::Logs, vec![0, 1, 2])]);
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
}

#[tokio::test]
async fn shutdown_sends_what_is_gathered_at_once() {
    let (e, _told) = recording(every(HOUR, 1 << 20), vec![]);
    let (d, h, t) = start(e.clone(), DeliveryConfig::default(), None).await;
    push(&h, logs(0..2)).await;
    push(&h, logs(2..4)).await;
    push(&h, spans(10..12)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let level = t
        .metrics
        .value("weft_exporter_queue_size", &[("component", "s3")]);
    assert_eq!(
        level,
        Some(3.0),
        "gathered batches still count in the queue"
    );
    assert!(e.attempts.lock().unwrap().is_empty());
    drop(h);
    // Waiting for the interval would hit this deadline and drop the data.
    d.shutdown(deadline(MINUTE)).await;
    let mut attempts = e.attempts.lock().unwrap().clone();
    attempts.sort();
    assert_eq!(
        attempts,
        [
            (Signal::Traces, vec![10, 11]),
            (Signal::Logs, vec![0, 1, 2, 3]),
        ]
    );
    let dropped = t.metrics.value(
        "weft_exporter_dropped_log_records_total",
        &[("component", "s3"), ("reason", "shutdown_timeout")],
    );
    assert_eq!(dropped, None);
}

#[tokio::test]
async fn signals_are_not_merged_and_do_not_cut_each_other_short() {
    let (e, mut told) = recording(every(SHORT, 1 << 20), vec![]);
    let (d, h, _t) = start(e.clone(), DeliveryConfig::default(), None).await;
    push(&h, logs(0..2)).await;
    push(&h, spans(100..101)).await;
    push(&h, logs(2..3)).await;
    push(&h, spans(101..103)).await;
    push(&h, logs(3..4)).await;
    next_attempt(&mut told).await;
    next_attempt(&mut told).await;
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    let mut attempts = e.attempts.lock().unwrap().clone();
    attempts.sort();
    assert_eq!(
        attempts,
        [
            (Signal::Traces, vec![100, 101, 102]),
            (Signal::Logs, vec![0, 1, 2, 3]),
        ]
    );
}

#[tokio::test]
async fn a_retried_merged_batch_delivers_every_item_once() {
    let script = vec![
        ExportError::retryable("503"),
        ExportError::Partial {
            retry: Batch::empty(Signal::Logs),
            reason: "some items 429".into(),
            after: None,
        },
    ];
    let (e, mut told) = recording(every(SHORT, 1 << 20), script);
    let cfg = config(serde_json::json!({
        "retry_on_failure": {"initial_interval": "1ms", "max_interval": "1ms"},
    }));
    let (d, h, t) = start(e.clone(), cfg, None).await;
    push(&h, logs(0..3)).await;
    push(&h, logs(3..8)).await;
    for _ in 0..3 {
        next_attempt(&mut told).await;
    }
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    let attempts = e.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(attempts[0].1, (0..8).collect::<Vec<_>>(), "merged");
    assert_eq!(attempts[1].1, attempts[0].1, "the whole merged batch again");
    assert_eq!(
        attempts[2].1,
        (4..8).collect::<Vec<_>>(),
        "only what failed"
    );
    assert_eq!(*e.delivered.lock().unwrap(), (0..8).collect::<Vec<_>>());
    let sent = t.metrics.value(
        "weft_exporter_sent_log_records_total",
        &[("component", "s3")],
    );
    assert_eq!(sent, Some(8.0));
}

#[tokio::test]
async fn without_accumulate_every_batch_is_sent_alone() {
    let (e, _told) = recording(None, vec![]);
    let (d, h, _t) = start(e.clone(), DeliveryConfig::default(), None).await;
    for i in 0..3 {
        push(&h, logs(i..i + 1)).await;
    }
    drop(h);
    d.shutdown(deadline(MINUTE)).await;
    let mut attempts = e.attempts.lock().unwrap().clone();
    attempts.sort();
    assert_eq!(
        attempts,
        [
            (Signal::Logs, vec![0]),
            (Signal::Logs, vec![1]),
            (Signal::Logs, vec![2]),
        ]
    );
}

/// Gathers five records with an hour to go, lets the shutdown deadline strike while
/// gathering (a second handle keeps the queue open), checks nothing was sent and returns
/// how many records were counted dropped.
async fn abort_while_gathering(
    cfg: DeliveryConfig,
    storage: Option<&FileStorageConfig>,
) -> Option<f64> {
    let (e, _told) = recording(every(HOUR, 1 << 20), vec![]);
    let (d, h, t) = start(e.clone(), cfg, storage).await;
    let keep_open = h.clone();
    push(&h, logs(0..3)).await;
    push(&h, logs(3..5)).await;
    drop(h);
    d.shutdown(deadline(Duration::from_millis(100))).await;
    drop(keep_open);
    assert!(e.attempts.lock().unwrap().is_empty());
    t.metrics.value(
        "weft_exporter_dropped_log_records_total",
        &[("component", "s3"), ("reason", "shutdown_timeout")],
    )
}

#[tokio::test]
async fn in_memory_gathered_data_aborted_by_the_deadline_is_counted_dropped() {
    assert_eq!(
        abort_while_gathering(DeliveryConfig::default(), None).await,
        Some(5.0)
    );
}

mod persistent {
    use super::*;

    fn storage(dir: &std::path::Path) -> FileStorageConfig {
        serde_json::from_value(serde_json::json!({
            "directory": dir.to_str().unwrap(),
            "fsync": "never",
        }))
        .unwrap()
    }

    fn cfg() -> DeliveryConfig {
        config(serde_json::json!({
            "sending_queue": {"num_consumers": 2},
            "retry_on_failure": {"initial_interval": "1ms", "max_interval": "1ms"},
        }))
    }

    /// Starts the queue on `dir` again with an exporter that takes everything, lets it send
    /// what it replays and returns the replayed items.
    async fn replayed(dir: &std::path::Path) -> Vec<u64> {
        let (e, _told) = recording(every(HOUR, 1 << 20), vec![]);
        let (d, h, _t) = start(e.clone(), cfg(), Some(&storage(dir))).await;
        drop(h);
        d.shutdown(deadline(MINUTE)).await;
        sorted(e.delivered.lock().unwrap().clone())
    }

    #[tokio::test]
    async fn gathered_records_stay_until_the_merged_send_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let script = (0..1_000_000)
            .map(|_| ExportError::retryable("down"))
            .collect();
        let (e, mut told) = recording(every(SHORT, 1 << 20), script);
        let (d, h, _t) = start(e.clone(), cfg(), Some(&storage(dir.path()))).await;
        push(&h, logs(0..2)).await;
        push(&h, logs(2..3)).await;
        push(&h, logs(3..6)).await;
        // The merged batch was tried (and failed) twice: a crash now must lose nothing.
        next_attempt(&mut told).await;
        next_attempt(&mut told).await;
        assert_eq!(e.attempts.lock().unwrap()[0].1, (0..6).collect::<Vec<_>>());
        drop(h);
        d.shutdown(deadline(Duration::ZERO)).await;
        assert!(e.delivered.lock().unwrap().is_empty());
        assert_eq!(replayed(dir.path()).await, (0..6).collect::<Vec<_>>());
        // That replay was delivered and acknowledged: nothing comes back a second time.
        assert_eq!(replayed(dir.path()).await, Vec::<u64>::new());
    }

    #[tokio::test]
    async fn every_gathered_record_is_acknowledged_after_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let (e, mut told) = recording(every(SHORT, 1 << 20), vec![]);
        let (d, h, _t) = start(e.clone(), cfg(), Some(&storage(dir.path()))).await;
        for i in 0..4 {
            push(&h, logs(i * 2..i * 2 + 2)).await;
        }
        next_attempt(&mut told).await;
        assert_eq!(
            *e.attempts.lock().unwrap(),
            [(Signal::Logs, (0..8).collect())]
        );
        drop(h);
        d.shutdown(deadline(MINUTE)).await;
        assert_eq!(replayed(dir.path()).await, Vec::<u64>::new());
    }

    #[tokio::test]
    async fn aborted_while_gathering_keeps_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let dropped = abort_while_gathering(cfg(), Some(&storage(dir.path()))).await;
        assert_eq!(dropped, None, "persistent records are not dropped");
        assert_eq!(replayed(dir.path()).await, (0..5).collect::<Vec<_>>());
    }
}

#[path = "gather_config_tests.rs"]
mod sending_queue_batch;
