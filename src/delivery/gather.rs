//! Gathering: for an exporter that asks for it
//! ([`Exporter::accumulate`](crate::exporters::Exporter::accumulate), e.g. `awss3`'s
//! `flush_interval` and `max_object_size_mib`), the queue's consumers merge queued batches
//! into one before sending, so the backend gets few, large requests (objects) instead of
//! one per `batch` processor timeout.
//!
//! What is gathered stays the queue's, never the exporter's: while gathered, each batch
//! keeps its share of the capacity (`queue_size`; the `weft_exporter_queue_size` gauge still
//! counts it), and its WAL record stays until the merged batch's delivery is over (sent, or
//! failed permanently and counted); only then are all its records acknowledged. A crash,
//! or the shutdown deadline, before that replays every one of them at the next start
//! (persistent queue) or counts them dropped (in memory) — as for a batch still waiting
//! in the queue. A merged batch being sent no longer counts against the
//! capacity (as any batch a consumer took), so up to `num_consumers` of them are in memory
//! on top of `queue_size`.
//!
//! Design: the batches being gathered live next to the channel, behind the consumers' one
//! lock ([`Inbox`]). The consumer holding the lock takes batches into the gathering of their
//! signal — one per signal, because traces, logs and metrics pipelines may feed the same
//! exporter id and a batch holds one signal; a batch of another signal neither joins nor
//! cuts short the current gathering — until one gathering is due. It takes that one out,
//! gives its capacity back, releases the lock and sends it once through the normal retry
//! path; the next consumer takes the lock and carries on with what is left. So one consumer
//! gathers at a time (the others wait for the lock, as they wait for the channel without
//! gathering) while the others send. Holding the lock through the interval takes nothing
//! from the others: every batch they could take belongs in a gathering anyway. Sends of
//! merged batches still overlap (up to `num_consumers`), so a slow upload does not stop the
//! next gathering. Batches already queued join before any deadline is looked at, so how
//! fast the loop runs never splits what was pushed together.
//!
//! A gathering is due when
//! - its size in the gathering's sizer units reaches `flush_size` (awss3: serialized OTLP
//!   protobuf bytes, [`Batch::encoded_len`], up to `max_object_size_mib`;
//!   `sending_queue.batch`: its `min_size` in `items` or `bytes`),
//! - `interval` has passed since its first batch was taken (the `batch` processor's
//!   [`Batcher`], weft's one batching state machine, holds the merged batch and this
//!   deadline),
//! - the gathered batches of all signals hold more than half of the queue's capacity (the
//!   largest gathering goes): otherwise a full queue would refuse upstream for up to an
//!   interval. In `sizer: requests` units (the default, 1000) that is 500 batches: size the
//!   queue (better: `sizer: bytes`) for what one interval brings, or objects come earlier,
//! - the queue closes (shutdown): everything gathered goes at once.
//!
//! The abort at the shutdown deadline stops gathering where it is; shutdown then accounts
//! for what was gathered with what was still queued ([`Inbox::drain`]).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, OwnedSemaphorePermit, mpsc};

use super::{Item, Outcome, Shared, ack, count, deliver_batch, level};
use crate::data::{Batch, Signal};
use crate::delivery::wal::RecordId;
use crate::exporters::Accumulate;
use crate::processors::batch::Batcher;

/// The consumers' side of the queue, behind their one lock: the channel, and what is being
/// gathered from it (always empty for an exporter that does not accumulate).
///
/// The decisions (`take`, `take_due`, `next_deadline`) are pure, with time passed in, and
/// unit-tested without a clock; [`Inbox::next_due`] runs them against the channel.
pub(super) struct Inbox {
    pub(super) rx: mpsc::UnboundedReceiver<Item>,
    /// The queue's capacity in permits (half of it may be gathered).
    capacity: usize,
    open: Vec<Gathering>,
    /// The channel said it is closed and empty.
    closed: bool,
}

/// The batches of one signal gathered so far.
struct Gathering {
    signal: Signal,
    batcher: Batcher,
    /// What the batcher handed back instead of holding (never, with the settings used
    /// here; kept so that nothing could be lost if it did).
    spilled: Option<Batch>,
    records: Vec<RecordId>,
    /// The gathered batches' shares of the queue's capacity, as one permit.
    permit: Option<OwnedSemaphorePermit>,
    /// What is gathered, in the [`Accumulate`]'s sizer units.
    size: usize,
    full: bool,
}

impl Gathering {
    fn new(signal: Signal, acc: Accumulate) -> Gathering {
        Gathering {
            signal,
            // Never full by item count and never split: only time is the batcher's to track.
            batcher: Batcher::new(usize::MAX, 0, acc.interval),
            spilled: None,
            records: Vec::new(),
            permit: None,
            size: 0,
            full: false,
        }
    }

    fn held(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    fn due(&self, now: Instant, closed: bool) -> bool {
        // No deadline: nothing with items is held (only empty batches), nothing to wait for.
        self.full || closed || self.batcher.deadline().is_none_or(|d| d <= now)
    }

    fn add(&mut self, item: Item, now: Instant) {
        self.records.extend(item.record);
        match (&mut self.permit, item.permit) {
            (Some(p), Some(q)) => p.merge(q),
            (p @ None, q) => *p = q,
            (Some(_), None) => {}
        }
        let batch = Arc::try_unwrap(item.batch).unwrap_or_else(|shared| (*shared).clone());
        for b in self.batcher.add(batch, now) {
            merge_into(&mut self.spilled, b);
        }
    }

    /// The merged batch (none if only empty batches were gathered) and the records to
    /// acknowledge once it is delivered.
    fn into_parts(mut self) -> (Option<Batch>, Vec<RecordId>) {
        let mut out = self.spilled.take();
        for b in self.batcher.flush() {
            merge_into(&mut out, b);
        }
        (out, self.records)
    }
}

fn merge_into(to: &mut Option<Batch>, b: Batch) {
    match to {
        Some(t) => t.merge(b),
        None => *to = Some(b),
    }
}

impl Inbox {
    pub(super) fn new(rx: mpsc::UnboundedReceiver<Item>, capacity: usize) -> Inbox {
        Inbox {
            rx,
            capacity,
            open: Vec::new(),
            closed: false,
        }
    }

    /// Adds a taken item to the gathering of its signal, and marks what is full.
    fn take(&mut self, item: Item, acc: Accumulate, now: Instant) {
        let signal = item.batch.signal();
        let i = match self.open.iter().position(|g| g.signal == signal) {
            Some(i) => i,
            None => {
                self.open.push(Gathering::new(signal, acc));
                self.open.len() - 1
            }
        };
        let g = &mut self.open[i];
        g.size = g.size.saturating_add(acc.sizer.size_of(&item.batch));
        g.add(item, now);
        if g.size >= acc.flush_size {
            g.full = true;
        }
        let held: usize = self.open.iter().map(Gathering::held).sum();
        if held.saturating_mul(2) > self.capacity
            && let Some(largest) = self.open.iter_mut().max_by_key(|g| g.held())
        {
            largest.full = true;
        }
    }

    /// Takes out a gathering that is due at `now`, its capacity given back.
    fn take_due(&mut self, now: Instant) -> Option<Gathering> {
        let i = self.open.iter().position(|g| g.due(now, self.closed))?;
        let mut g = self.open.swap_remove(i);
        g.permit = None;
        Some(g)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().filter_map(|g| g.batcher.deadline()).min()
    }

    /// Gathers until a gathering is due and takes it out. `None` when the queue is closed
    /// and nothing is left, or at the abort.
    async fn next_due(&mut self, s: &Shared, acc: Accumulate) -> Option<Gathering> {
        let mut abort = s.abort.clone();
        loop {
            if let Some(g) = self.take_due(Instant::now()) {
                return Some(g);
            }
            if self.closed {
                return None;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                item = self.rx.recv() => match item {
                    Some(item) => {
                        self.take(item, acc, Instant::now());
                        // What is queued already joins before any deadline is looked at, so
                        // how fast this loop runs never splits a gathering.
                        while !self.open.iter().any(|g| g.full)
                            && let Ok(item) = self.rx.try_recv()
                        {
                            self.take(item, acc, Instant::now());
                        }
                    }
                    None => self.closed = true,
                },
                _ = sleep_until(deadline) => {}
                _ = abort.wait_for(|a| *a) => return None,
            }
        }
    }

    /// At shutdown, after the consumers stopped: closes the queue and returns how many items
    /// were not delivered — still queued, or gathered when the deadline aborted the
    /// gathering. In-memory ones are counted dropped; persistent ones stay in the WAL.
    pub(super) fn drain(&mut self, s: &Shared) -> usize {
        self.rx.close();
        let mut left = 0;
        while let Ok(item) = self.rx.try_recv() {
            left += item.batch.item_count();
            if item.record.is_none() {
                count(s, &item.batch, "dropped", Some("shutdown_timeout"));
            }
        }
        for g in std::mem::take(&mut self.open) {
            let persistent = !g.records.is_empty();
            if let (Some(batch), _) = g.into_parts() {
                left += batch.item_count();
                if !persistent {
                    count(s, &batch, "dropped", Some("shutdown_timeout"));
                }
            }
        }
        left
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A consumer of an exporter that accumulates: gathers (see the module doc), sends the
/// merged batch through the retry path, and acknowledges all its records when that is done.
pub(super) async fn consume(
    shared: Arc<Shared>,
    inbox: Arc<Mutex<Inbox>>,
    acc: Accumulate,
    n: u64,
) {
    loop {
        let (due, left) = {
            let mut inbox = inbox.lock().await;
            let due = inbox.next_due(&shared, acc).await;
            (due, level(&shared))
        };
        let Some(gathered) = due else {
            tracing::debug!(exporter = %shared.id, consumer = n, "consumer stopped");
            return;
        };
        shared.queue_size.set(left);
        let (batch, records) = gathered.into_parts();
        let mut outcome = Outcome::Done;
        for piece in pieces(batch, acc.max_items) {
            outcome = deliver_batch(&shared, Arc::new(piece), n).await;
            if matches!(outcome, Outcome::Aborted) {
                break;
            }
        }
        if matches!(outcome, Outcome::Done) {
            ack(&shared, records).await;
        }
    }
}

/// A merged batch as sends of at most `max_items` items each (0: one send). Its records
/// are acknowledged once every piece is done, so an abort in between replays all of them
/// (at least once, as any retry).
fn pieces(batch: Option<Batch>, max_items: usize) -> Vec<Batch> {
    let Some(mut b) = batch else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while max_items > 0 && b.item_count() > max_items {
        out.push(b.split_front(max_items));
    }
    out.push(b);
    out
}

#[cfg(test)]
#[path = "gather_tests.rs"]
mod gather_tests;
