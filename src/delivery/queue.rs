//! The sending queue and its consumers: one instance per exporter id, shared by every
//! pipeline that lists the exporter.
//!
//! Acknowledgement belongs to the queue: an item taken by a consumer is acknowledged (its
//! WAL record freed) only when the exporter reported success, or a permanent failure that
//! was counted. Pushing returns only after the item is enqueued (and, with a persistent
//! queue, written to the WAL per the fsync policy), so a client's request is answered
//! after its data is safe by the queue's guarantee.
//!
//! A consumer takes and sends one batch at a time, or, for an exporter that asks for it
//! ([`Exporter::accumulate`]), merges queued batches into fewer sends (`gather.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, watch};
use tokio::task::JoinHandle;

use self::gather::Inbox;
use super::backoff::Backoff;
use super::wal::{FsyncPolicy, RecordId, Wal, WalError, WalOptions};
use super::{DeliveryConfig, FileStorageConfig, FsyncMode, Sizer};
use crate::admin::{Counter, Gauge, Telemetry};
use crate::components::BuildError;
use crate::data::{Batch, RawBatch, Signal};
use crate::exporters::{ExportError, Exporter};

/// Why a push was refused. Always retryable from the client's point of view.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("sending queue of {0} is full")]
    QueueFull(String),
    #[error("persistent queue of {0} cannot store data: {1}")]
    Storage(String, String),
    #[error("exporter {0} is shutting down")]
    ShuttingDown(String),
}

struct Item {
    batch: Arc<Batch>,
    record: Option<RecordId>,
    /// The item's share of the queue's capacity, given back when a consumer takes it.
    permit: Option<OwnedSemaphorePermit>,
}

struct Shared {
    id: String,
    exporter: Arc<dyn Exporter>,
    cfg: DeliveryConfig,
    timeout: Duration,
    wal: Option<Arc<Wal>>,
    telemetry: Telemetry,
    queue_size: Gauge,
    /// Capacity in `sizer` units, and what is left of it.
    capacity: usize,
    budget: Arc<Semaphore>,
    sizer: Sizer,
    retries: Counter,
    abort: watch::Receiver<bool>,
}

/// The push side, cloned into every pipeline that feeds this exporter.
#[derive(Clone)]
pub struct DeliveryHandle {
    shared: Arc<Shared>,
    tx: Option<mpsc::UnboundedSender<Item>>,
}

/// A running exporter with its queue and consumers.
pub struct Delivery {
    handle: DeliveryHandle,
    workers: Vec<JoinHandle<()>>,
    abort_tx: watch::Sender<bool>,
    rx: Arc<Mutex<Inbox>>,
    fsync_task: Option<JoinHandle<()>>,
}

fn encode_record(batch: &Batch) -> Vec<u8> {
    let mut v = Vec::with_capacity(batch.encoded_len() + 1);
    v.push(batch.signal().tag());
    v.extend_from_slice(&batch.encode_proto());
    v
}

/// A WAL record back into a batch: kept raw (scanned, not decoded) for an exporter that
/// takes raw batches.
fn decode_record(bytes: &[u8], raw: bool) -> Option<Batch> {
    let (tag, rest) = bytes.split_first()?;
    let signal = Signal::from_tag(*tag)?;
    if raw {
        Batch::from_proto_bytes(signal, bytes::Bytes::copy_from_slice(rest)).ok()
    } else {
        Batch::decode_proto(signal, rest).ok()
    }
}

impl Delivery {
    /// Opens the queue (replaying a persistent one) and starts the consumers.
    pub async fn start(
        id: &str,
        exporter: Arc<dyn Exporter>,
        cfg: DeliveryConfig,
        storage: Option<&FileStorageConfig>,
        telemetry: &Telemetry,
    ) -> Result<Delivery, BuildError> {
        let (abort_tx, abort) = watch::channel(false);
        let mut replayed = Vec::new();
        let wal = match storage {
            None => None,
            Some(fs) => {
                let dir = Path::new(&fs.directory).join(id.replace('/', "_"));
                let opts = WalOptions {
                    max_size_bytes: fs.max_size_mib.saturating_mul(1024 * 1024),
                    segment_bytes: 8 * 1024 * 1024,
                    fsync: match fs.fsync {
                        FsyncMode::Always => FsyncPolicy::Always,
                        FsyncMode::Interval => FsyncPolicy::Interval(fs.fsync_interval.get()),
                        FsyncMode::Never => FsyncPolicy::Never,
                    },
                };
                let (wal, replay) = Wal::open(&dir, opts).map_err(|e| {
                    BuildError::new(
                        id,
                        format!("cannot open persistent queue in {}: {e}", dir.display()),
                    )
                })?;
                let corrupt = telemetry.metrics.counter(
                    "weft_exporter_queue_corrupt_records_total",
                    "WAL records skipped at startup because their checksum did not match",
                    &[("component", id)],
                );
                corrupt.add(replay.corrupt_records + u64::from(replay.torn_tail_bytes > 0));
                for w in &replay.warnings {
                    tracing::warn!(exporter = id, "{w}");
                }
                for (rid, bytes) in replay.records {
                    match decode_record(&bytes, exporter.queues_raw()) {
                        Some(b) => replayed.push(Item {
                            batch: Arc::new(b),
                            record: Some(rid),
                            permit: None,
                        }),
                        None => {
                            corrupt.inc();
                            tracing::warn!(
                                exporter = id,
                                "WAL record {} does not decode; skipped",
                                rid.0
                            );
                            let _ = wal.ack(rid);
                        }
                    }
                }
                if !replayed.is_empty() {
                    tracing::info!(
                        exporter = id,
                        records = replayed.len(),
                        "replaying unacknowledged records from the persistent queue"
                    );
                }
                Some(Arc::new(wal))
            }
        };
        let sizer = cfg.sending_queue.sizer;
        let replayed_size: usize = replayed.iter().map(|i| sizer.size_of(&i.batch)).sum();
        let capacity = Sizer::capacity(cfg.sending_queue.queue_size.max(replayed_size));
        let budget = Arc::new(Semaphore::new(capacity));
        let m = &telemetry.metrics;
        let l: &[(&str, &str)] = &[("component", id)];
        let queue_size = m.gauge(
            "weft_exporter_queue_size",
            "What waits in the sending queue, in sending_queue.sizer units (default: batches)",
            l,
        );
        m.gauge(
            "weft_exporter_queue_capacity",
            "Capacity of the sending queue, in sending_queue.sizer units (default: batches)",
            l,
        )
        .set(capacity as i64);
        let shared = Arc::new(Shared {
            id: id.to_string(),
            exporter: exporter.clone(),
            timeout: cfg
                .timeout
                .map(|d| d.get())
                .unwrap_or_else(|| exporter.default_timeout()),
            cfg,
            wal: wal.clone(),
            telemetry: telemetry.clone(),
            queue_size,
            capacity,
            budget: budget.clone(),
            sizer,
            retries: m.counter(
                "weft_exporter_retries_total",
                "Send attempts that were retried",
                l,
            ),
            abort,
        });
        if let Err(e) = exporter.start().await {
            tracing::warn!(exporter = id, "exporter start: {e}");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for mut item in replayed {
            let n = Sizer::permits(sizer.size_of(&item.batch), capacity);
            item.permit = budget.clone().try_acquire_many_owned(n).ok();
            if tx.send(item).is_err() {
                break;
            }
        }
        shared.queue_size.set(level(&shared));
        let rx = Arc::new(Mutex::new(Inbox::new(rx, capacity)));
        // The exporter's own request wins over `sending_queue.batch`; a zero interval or
        // size would send every batch alone anyway.
        let accumulate = exporter
            .accumulate()
            .or_else(|| shared.cfg.sending_queue.batch.map(|b| b.accumulate()))
            .filter(|a| !a.interval.is_zero() && a.flush_size > 0);
        let consumers = if shared.cfg.sending_queue.enabled {
            shared.cfg.sending_queue.num_consumers.max(1)
        } else {
            if accumulate.is_some() {
                tracing::warn!(
                    exporter = id,
                    "sending_queue is disabled, so nothing is gathered: every batch is sent alone (flush_interval and sending_queue.batch need the queue)"
                );
            }
            0
        };
        let workers = (0..consumers)
            .map(|n| {
                let shared = shared.clone();
                let rx = rx.clone();
                match accumulate {
                    Some(acc) => tokio::spawn(gather::consume(shared, rx, acc, n as u64)),
                    None => tokio::spawn(async move { consume(shared, rx, n as u64).await }),
                }
            })
            .collect();
        let fsync_task = wal.as_ref().and_then(|w| {
            let fs = storage?;
            (fs.fsync == FsyncMode::Interval).then(|| {
                let w = w.clone();
                let every = fs.fsync_interval.get().max(Duration::from_millis(10));
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tick.tick().await;
                        let w = w.clone();
                        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || w.sync()).await {
                            tracing::warn!("persistent queue fsync failed: {e}");
                        }
                    }
                })
            })
        });
        Ok(Delivery {
            handle: DeliveryHandle {
                shared,
                tx: Some(tx),
            },
            workers,
            abort_tx,
            rx,
            fsync_task,
        })
    }

    pub fn handle(&self) -> DeliveryHandle {
        self.handle.clone()
    }

    /// Drains the queue until `deadline`. Call after every pipeline stopped pushing.
    pub async fn shutdown(mut self, deadline: Instant) {
        let id = self.handle.shared.id.clone();
        // Dropping our sender lets consumers finish once the queue is empty (pipelines
        // dropped theirs already).
        self.handle.tx = None;
        let shared = self.handle.shared.clone();
        if !shared.cfg.sending_queue.enabled {
            self.workers.clear();
        }
        let mut workers = std::mem::take(&mut self.workers);
        let mut timed_out = false;
        for w in workers.iter_mut() {
            if tokio::time::timeout_at(deadline.into(), &mut *w)
                .await
                .is_err()
            {
                timed_out = true;
                break;
            }
        }
        if timed_out {
            let _ = self.abort_tx.send(true);
            // Consumers stop at their next await point; wait for them so nothing (the WAL's
            // directory lock, in-flight acks) outlives shutdown.
            for w in workers.iter_mut() {
                if tokio::time::timeout(Duration::from_secs(2), &mut *w)
                    .await
                    .is_err()
                {
                    w.abort();
                    let _ = w.await;
                }
            }
        }
        // Whatever is still queued was not delivered in time.
        shared.budget.close();
        let left = self.rx.lock().await.drain(&shared);
        if left > 0 {
            if shared.wal.is_some() {
                tracing::warn!(exporter = %id, items = left, "shutdown timeout: undelivered data stays in the persistent queue and is sent after restart");
            } else {
                tracing::error!(exporter = %id, items = left, "shutdown timeout: undelivered data in the in-memory queue is dropped");
            }
        }
        if let Some(w) = &shared.wal {
            let _ = w.sync();
        }
        if let Some(t) = self.fsync_task.take() {
            t.abort();
            let _ = t.await;
        }
        shared.exporter.shutdown().await;
    }
}

impl DeliveryHandle {
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Whether the queue takes raw batches (see [`Exporter::queues_raw`]): the pipeline
    /// need not decode for this exporter.
    pub fn accepts_raw(&self) -> bool {
        self.shared.exporter.queues_raw()
    }

    /// Enqueues a batch. Returns after it is queued (and in the WAL, when persistent);
    /// refuses with a retryable error when full, unless `block_on_overflow` is set.
    ///
    /// `must_block` makes a full queue wait for space instead (used for data a processor
    /// held and whose client was already answered, so refusing it would lose it).
    pub async fn push(&self, batch: Arc<Batch>, must_block: bool) -> Result<(), Refusal> {
        let s = &self.shared;
        if batch.is_empty() {
            return Ok(());
        }
        if !s.cfg.sending_queue.enabled {
            // No queue: deliver in the caller's task, as the Collector does.
            deliver(
                s,
                Item {
                    batch,
                    record: None,
                    permit: None,
                },
                0,
            )
            .await;
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            return Err(Refusal::ShuttingDown(s.id.clone()));
        };
        let block = must_block
            || s.cfg.sending_queue.block_on_overflow
            || s.cfg.sending_queue.blocking == Some(true);
        let n = Sizer::permits(s.sizer.size_of(&batch), s.capacity);
        let permit = if block {
            s.budget
                .clone()
                .acquire_many_owned(n)
                .await
                .map_err(|_| Refusal::ShuttingDown(s.id.clone()))?
        } else {
            match s.budget.clone().try_acquire_many_owned(n) {
                Ok(p) => p,
                Err(TryAcquireError::NoPermits) => {
                    count(s, &batch, "enqueue_failed", None);
                    return Err(Refusal::QueueFull(s.id.clone()));
                }
                Err(TryAcquireError::Closed) => {
                    return Err(Refusal::ShuttingDown(s.id.clone()));
                }
            }
        };
        let record = match &s.wal {
            None => None,
            Some(w) => {
                let bytes = encode_record(&batch);
                let w = w.clone();
                let r = tokio::task::spawn_blocking(move || w.append(&bytes)).await;
                match r {
                    Ok(Ok(rid)) => Some(rid),
                    Ok(Err(e)) => {
                        count(s, &batch, "enqueue_failed", None);
                        let msg = match &e {
                            WalError::Full { .. } => e.to_string(),
                            _ => format!("{e}"),
                        };
                        return Err(Refusal::Storage(s.id.clone(), msg));
                    }
                    Err(e) => return Err(Refusal::Storage(s.id.clone(), e.to_string())),
                }
            }
        };
        if tx
            .send(Item {
                batch,
                record,
                permit: Some(permit),
            })
            .is_err()
        {
            return Err(Refusal::ShuttingDown(s.id.clone()));
        }
        s.queue_size.set(level(s));
        Ok(())
    }
}

/// What waits in the queue, in sizer units.
fn level(s: &Shared) -> i64 {
    s.capacity.saturating_sub(s.budget.available_permits()) as i64
}

fn count(s: &Shared, batch: &Batch, what: &str, reason: Option<&str>) {
    count_items(s, batch.signal(), batch.item_count(), what, reason);
}

fn count_items(s: &Shared, signal: Signal, items: usize, what: &str, reason: Option<&str>) {
    let item = signal.item_name();
    let name = format!("weft_exporter_{what}_{item}_total");
    let help = match what {
        "sent" => "Items the backend accepted",
        "send_failed" => "Items that failed permanently and were dropped, by reason",
        "enqueue_failed" => "Items refused because the sending queue was full",
        _ => "Items dropped at shutdown",
    };
    let c = match reason {
        Some(r) => s
            .telemetry
            .metrics
            .counter(&name, help, &[("component", &s.id), ("reason", r)]),
        None => s
            .telemetry
            .metrics
            .counter(&name, help, &[("component", &s.id)]),
    };
    c.add(items as u64);
}

async fn consume(shared: Arc<Shared>, inbox: Arc<Mutex<Inbox>>, n: u64) {
    loop {
        // The item's share of the capacity is given back under the same lock, so the level
        // read here is consistent.
        let (item, left) = {
            let mut inbox = inbox.lock().await;
            let mut abort = shared.abort.clone();
            let item = tokio::select! {
                item = inbox.rx.recv() => item,
                _ = abort.wait_for(|a| *a) => None,
            };
            let item = item.map(|mut i| {
                i.permit = None;
                i
            });
            (item, level(&shared))
        };
        let Some(item) = item else {
            tracing::debug!(exporter = %shared.id, consumer = n, "consumer stopped");
            return;
        };
        shared.queue_size.set(left);
        deliver(&shared, item, n).await;
    }
}

enum Outcome {
    Done,
    Aborted,
}

/// Sends one item until it succeeds, fails permanently, runs out of retry time, or the
/// shutdown deadline aborts it.
async fn deliver(s: &Shared, item: Item, seed: u64) {
    let record = item.record;
    if let Outcome::Done = deliver_batch(s, item.batch, seed).await {
        ack(s, record).await;
    }
}

/// Frees delivered records in the WAL (none for an in-memory queue).
async fn ack<R>(s: &Shared, records: R)
where
    R: IntoIterator<Item = RecordId> + Send + 'static,
{
    let Some(w) = s.wal.clone() else {
        return;
    };
    // Every record is tried, whatever an earlier one did.
    let failed = tokio::task::spawn_blocking(move || {
        records
            .into_iter()
            .filter_map(|rid| w.ack(rid).err())
            .last()
    })
    .await;
    if let Ok(Some(e)) = failed {
        tracing::warn!(exporter = %s.id, "cannot acknowledge WAL record: {e}");
    }
}

/// A raw batch decoded as far as it decodes ([`crate::data::RawBatch::decode_lenient`]):
/// the resource messages that do not decode are counted as
/// `send_failed{reason="undecodable"}` and logged with `why`. Returns the decoded rest and
/// whether anything was dropped.
fn decode_counting(s: &Shared, raw: &RawBatch, why: &str) -> (Batch, bool) {
    let (good, lost) = raw.decode_lenient();
    let Some((items, e)) = lost else {
        return (good, false);
    };
    tracing::warn!(exporter = %s.id, items, kept = good.item_count(), "{why}; items whose resource message does not decode are dropped: {e}");
    count_items(s, raw.signal(), items, "send_failed", Some("undecodable"));
    (good, true)
}

async fn deliver_batch(s: &Shared, mut batch: Arc<Batch>, seed: u64) -> Outcome {
    if let Batch::Raw(raw) = &*batch
        && !s.exporter.accepts_raw()
    {
        // Decoded here for an exporter whose queue holds raw batches (`queues_raw`:
        // awss3), and as the safety net for any other that needs decoded data.
        let (decoded, dropped) = decode_counting(s, raw, "the exporter needs decoded data");
        if dropped && decoded.is_empty() {
            return Outcome::Done;
        }
        batch = Arc::new(decoded);
    }
    let retry = &s.cfg.retry_on_failure;
    let mut backoff = Backoff::new(retry, seed ^ fastrand::u64(..));
    let started = Instant::now();
    let persistent = s.wal.is_some();
    let mut abort = s.abort.clone();
    loop {
        let attempt = tokio::time::timeout(s.timeout, s.exporter.send(&batch));
        let result = tokio::select! {
            r = attempt => r,
            _ = abort.wait_for(|a| *a) => {
                if !persistent {
                    count(s, &batch, "dropped", Some("shutdown_timeout"));
                }
                return Outcome::Aborted;
            }
        };
        let (reason, hint) = match result {
            Ok(Ok(())) => {
                count(s, &batch, "sent", None);
                return Outcome::Done;
            }
            Ok(Err(ExportError::Permanent { reason, message })) => {
                if let Batch::Raw(raw) = &*batch
                    && crate::exporters::payload_refused(&reason)
                {
                    // The backend could not read the request: a raw batch carries what the
                    // fast path's shallow scan does not check (a string that is not
                    // UTF-8). If that is it, only those resource messages are dropped and
                    // the rest is sent again at once (decoded, so re-encoded).
                    let why = format!("the backend refused the batch ({reason}: {message})");
                    let (rest, dropped) = decode_counting(s, raw, &why);
                    if dropped {
                        if rest.is_empty() {
                            return Outcome::Done;
                        }
                        batch = Arc::new(rest);
                        continue;
                    }
                }
                tracing::warn!(exporter = %s.id, items = batch.item_count(), reason = %reason, "permanent error, batch dropped: {message}");
                count(s, &batch, "send_failed", Some(&reason));
                return Outcome::Done;
            }
            Ok(Err(ExportError::Partial {
                retry,
                reason,
                after,
            })) => {
                let done = batch.item_count().saturating_sub(retry.item_count());
                if done > 0 {
                    let item = batch.signal().item_name();
                    s.telemetry
                        .metrics
                        .counter(
                            &format!("weft_exporter_sent_{item}_total"),
                            "Items the backend accepted",
                            &[("component", &s.id)],
                        )
                        .add(done as u64);
                }
                if retry.is_empty() {
                    return Outcome::Done;
                }
                batch = Arc::new(retry);
                (reason, after)
            }
            Ok(Err(ExportError::Retryable { reason, after })) => (reason, after),
            Err(_) => (format!("attempt timed out after {:?}", s.timeout), None),
        };
        if !retry.enabled {
            tracing::warn!(exporter = %s.id, items = batch.item_count(), "send failed and retry_on_failure is disabled, batch dropped: {reason}");
            count(s, &batch, "send_failed", Some("retry_disabled"));
            return Outcome::Done;
        }
        let delay = backoff.next_delay(hint);
        let max_elapsed = retry.max_elapsed_time.get();
        if !persistent && !max_elapsed.is_zero() && started.elapsed() + delay > max_elapsed {
            tracing::error!(exporter = %s.id, items = batch.item_count(), "giving up after max_elapsed_time {max_elapsed:?}, batch dropped: {reason}");
            count(s, &batch, "send_failed", Some("retry_exhausted"));
            return Outcome::Done;
        }
        s.retries.inc();
        tracing::debug!(exporter = %s.id, "retrying in {delay:?}: {reason}");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = abort.wait_for(|a| *a) => {
                if !persistent {
                    count(s, &batch, "dropped", Some("shutdown_timeout"));
                }
                return Outcome::Aborted;
            }
        }
    }
}

#[path = "gather.rs"]
mod gather;

#[cfg(test)]
#[path = "queue_tests.rs"]
mod queue_tests;
