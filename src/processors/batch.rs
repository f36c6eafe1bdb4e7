//! The `batch` processor: groups items into larger batches to cut per-request overhead.
//!
//! Config (the Collector's keys and defaults): `send_batch_size` (8192 items: a batch is
//! sent as soon as it holds this many), `send_batch_max_size` (0 = no limit: larger
//! batches are split to at most this many items), `timeout` (200ms: a non-empty batch is
//! sent at the latest this long after its first item arrived), `metadata_keys` (none:
//! batch per combination of these client metadata keys' values, see `batch/partition.rs`; keys
//! are case-insensitive, a duplicate is a validation error), `metadata_cardinality_limit`
//! (1000: at most this many combinations, 0 = no limit).
//!
//! A batch merges requests of different clients, so the request context (client metadata,
//! see [`crate::pipeline::context`]) ends here: processors after `batch` see none, or with
//! `metadata_keys` only those keys' values.
//!
//! [`Batcher`] is the one batching state machine in weft; the delivery queue's gathering
//! (`src/delivery/gather.rs`, behind `awss3`'s `flush_interval` and
//! `sending_queue.batch`) reuses it for the merged batch and its deadline. It never drops:
//! `flush` returns everything held.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError, parse_component};
use crate::data::Batch;
use crate::pipeline::Context;
use crate::processors::{Processor, ProcessorError, without_context};

mod partition;
use partition::Partitions;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub send_batch_size: usize,
    pub send_batch_max_size: usize,
    pub timeout: Dur,
    pub metadata_keys: Vec<String>,
    pub metadata_cardinality_limit: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Dur::millis(200),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
    }
}

/// Size/time batching of one signal.
pub struct Batcher {
    size: usize,
    max_size: usize,
    timeout: Duration,
    pending: Option<Batch>,
    pending_items: usize,
    deadline: Option<Instant>,
}

impl Batcher {
    pub fn new(send_batch_size: usize, send_batch_max_size: usize, timeout: Duration) -> Batcher {
        Batcher {
            size: send_batch_size.max(1),
            max_size: send_batch_max_size,
            timeout,
            pending: None,
            pending_items: 0,
            deadline: None,
        }
    }

    /// Adds a batch; returns the batches that are full.
    pub fn add(&mut self, batch: Batch, now: Instant) -> Vec<Batch> {
        let n = batch.item_count();
        if n == 0 {
            return Vec::new();
        }
        match &mut self.pending {
            Some(p) => p.merge(batch),
            None => {
                self.pending = Some(batch);
                self.deadline = Some(now + self.timeout);
            }
        }
        self.pending_items += n;
        let mut out = Vec::new();
        while self.pending_items >= self.size {
            let take = if self.max_size > 0 {
                self.max_size.min(self.pending_items)
            } else {
                self.pending_items
            };
            if let Some(b) = self.take(take) {
                out.push(b);
            }
            if self.pending_items > 0 {
                self.deadline = Some(now + self.timeout);
            }
        }
        if self.timeout.is_zero() {
            out.extend(self.flush());
        }
        out
    }

    fn take(&mut self, n: usize) -> Option<Batch> {
        let mut pending = self.pending.take()?;
        if n >= self.pending_items {
            self.pending_items = 0;
            self.deadline = None;
            return Some(pending);
        }
        let front = pending.split_front(n);
        self.pending_items = pending.item_count();
        self.pending = Some(pending);
        Some(front)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn on_deadline(&mut self, now: Instant) -> Vec<Batch> {
        match self.deadline {
            Some(d) if d <= now => self.flush(),
            _ => Vec::new(),
        }
    }

    /// Everything held, split to `send_batch_max_size` when set.
    pub fn flush(&mut self) -> Vec<Batch> {
        let mut out = Vec::new();
        while self.pending_items > 0 {
            let take = if self.max_size > 0 {
                self.max_size
            } else {
                self.pending_items
            };
            match self.take(take) {
                Some(b) => out.push(b),
                None => break,
            }
        }
        self.pending = None;
        self.pending_items = 0;
        self.deadline = None;
        out
    }

    pub fn pending_items(&self) -> usize {
        self.pending_items
    }
}

pub struct BatchProcessor {
    mode: Mode,
}

enum Mode {
    /// One batcher for everything (no `metadata_keys`).
    One(Batcher),
    /// `metadata_keys`: one batcher per combination of their values.
    Partitioned(Partitions),
}

fn strip_ctx(out: Vec<(Batch, Context)>) -> Vec<Batch> {
    out.into_iter().map(|(b, _)| b).collect()
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch, now: Instant) -> Result<Vec<Batch>, ProcessorError> {
        match &mut self.mode {
            Mode::One(b) => Ok(b.add(batch, now)),
            Mode::Partitioned(p) => p.add(batch, &Context::EMPTY, now).map(strip_ctx),
        }
    }
    fn next_deadline(&self) -> Option<Instant> {
        match &self.mode {
            Mode::One(b) => b.deadline(),
            Mode::Partitioned(p) => p.deadline(),
        }
    }
    fn on_deadline(&mut self, now: Instant) -> Vec<Batch> {
        match &mut self.mode {
            Mode::One(b) => b.on_deadline(now),
            Mode::Partitioned(p) => strip_ctx(p.on_deadline(now)),
        }
    }
    fn flush(&mut self) -> Vec<Batch> {
        match &mut self.mode {
            Mode::One(b) => b.flush(),
            Mode::Partitioned(p) => strip_ctx(p.flush()),
        }
    }
    fn touches_contents(&self) -> bool {
        false
    }
    /// A batch merges requests of different clients: the request's context ends here
    /// (with `metadata_keys`, each batch gets its partition's instead).
    fn keeps_context(&self) -> bool {
        false
    }
    fn assigns_context(&self) -> bool {
        matches!(self.mode, Mode::Partitioned(_))
    }
    fn process_ctx(
        &mut self,
        batch: Batch,
        ctx: &Context,
        now: Instant,
    ) -> Result<Vec<(Batch, Context)>, ProcessorError> {
        match &mut self.mode {
            Mode::One(b) => Ok(without_context(b.add(batch, now))),
            Mode::Partitioned(p) => p.add(batch, ctx, now),
        }
    }
    fn on_deadline_ctx(&mut self, now: Instant) -> Vec<(Batch, Context)> {
        match &mut self.mode {
            Mode::One(b) => without_context(b.on_deadline(now)),
            Mode::Partitioned(p) => p.on_deadline(now),
        }
    }
    fn flush_ctx(&mut self) -> Vec<(Batch, Context)> {
        match &mut self.mode {
            Mode::One(b) => without_context(b.flush()),
            Mode::Partitioned(p) => p.flush(),
        }
    }
}

fn parse(v: &Value) -> Result<BatchConfig, FieldError> {
    let c: BatchConfig = parse_component(v)?;
    let mut seen = std::collections::HashSet::new();
    for (i, k) in c.metadata_keys.iter().enumerate() {
        if !seen.insert(k.to_ascii_lowercase()) {
            return Err(FieldError {
                path: vec!["metadata_keys".into(), i.to_string()],
                message: format!(
                    "duplicate entry in metadata_keys: {:?} (case-insensitive)",
                    k.to_ascii_lowercase()
                ),
                suggestion: None,
            });
        }
    }
    Ok(c)
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    parse(v).map(|_| ())
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let c = parse(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    if c.send_batch_max_size > 0 && c.send_batch_max_size < c.send_batch_size {
        return Err(BuildError::new(
            &ctx.id,
            "send_batch_max_size must be 0 or at least send_batch_size",
        ));
    }
    let mode = if c.metadata_keys.is_empty() {
        Mode::One(Batcher::new(
            c.send_batch_size,
            c.send_batch_max_size,
            c.timeout.get(),
        ))
    } else {
        Mode::Partitioned(Partitions::new(
            &c.metadata_keys,
            c.metadata_cardinality_limit as usize,
            c.send_batch_size,
            c.send_batch_max_size,
            c.timeout.get(),
        ))
    };
    Ok(Box::new(BatchProcessor { mode }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LogRecord, ResourceLogs, ScopeLogs};

    /// A logs batch of `n` empty records (also used by `partition`'s tests).
    pub(super) fn logs(n: usize) -> Batch {
        Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n).map(|_| LogRecord::default()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn duplicate_metadata_keys_are_refused() {
        let e =
            validate(&serde_json::json!({"metadata_keys": ["x-tenant", "X-Tenant"]})).unwrap_err();
        assert_eq!(e.path, vec!["metadata_keys", "1"]);
        assert!(e.message.contains("duplicate"), "{}", e.message);
        validate(
            &serde_json::json!({"metadata_keys": ["x-tenant"], "metadata_cardinality_limit": 10}),
        )
        .unwrap();
    }

    #[test]
    fn sends_when_full_and_on_timeout() {
        let t0 = Instant::now();
        let mut b = Batcher::new(10, 0, Duration::from_millis(200));
        assert!(b.add(logs(4), t0).is_empty());
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(200)));
        let out = b.add(logs(7), t0 + Duration::from_millis(10));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].item_count(), 11);
        assert!(b.add(logs(3), t0 + Duration::from_millis(20)).is_empty());
        assert!(b.on_deadline(t0 + Duration::from_millis(100)).is_empty());
        let out = b.on_deadline(t0 + Duration::from_millis(220));
        assert_eq!(out.iter().map(Batch::item_count).sum::<usize>(), 3);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn max_size_splits() {
        let t0 = Instant::now();
        let mut b = Batcher::new(10, 10, Duration::from_secs(1));
        let out = b.add(logs(25), t0);
        assert_eq!(
            out.iter().map(Batch::item_count).collect::<Vec<_>>(),
            vec![10, 10]
        );
        assert_eq!(b.pending_items(), 5);
        assert_eq!(b.flush().iter().map(Batch::item_count).sum::<usize>(), 5);
    }

    /// One request of `n` log records in one resource, kept raw as a receiver would.
    fn raw_logs(n: usize) -> Batch {
        Batch::from_proto_bytes(crate::data::Signal::Logs, logs(n).encode_proto().into()).unwrap()
    }

    #[test]
    fn raw_batches_merge_by_concatenation_and_split_at_resources() {
        let t0 = Instant::now();
        let mut b = Batcher::new(250, 250, Duration::from_secs(1));
        assert!(b.add(raw_logs(100), t0).is_empty());
        assert!(b.add(raw_logs(100), t0).is_empty());
        let out = b.add(raw_logs(100), t0);
        // 300 pending, at most 250 per batch, cut between whole requests: 200 go now.
        assert_eq!(out.len(), 1);
        assert!(out[0].is_raw(), "merged and split without decoding");
        assert_eq!(out[0].item_count(), 200);
        assert_eq!(out[0].resource_count(), 2);
        let one = logs(100).encode_proto();
        assert_eq!(out[0].encode_proto(), [one.clone(), one.clone()].concat());
        assert_eq!(b.pending_items(), 100);
        let rest = b.flush();
        assert!(rest[0].is_raw());
        assert_eq!(rest[0].encode_proto(), one);
    }

    #[test]
    fn a_raw_request_larger_than_the_max_size_is_split_exactly() {
        let t0 = Instant::now();
        let mut b = Batcher::new(10, 10, Duration::from_secs(1));
        let out = b.add(raw_logs(25), t0);
        assert_eq!(
            out.iter().map(Batch::item_count).collect::<Vec<_>>(),
            vec![10, 10]
        );
        let rest = b.flush();
        assert_eq!(rest.iter().map(Batch::item_count).sum::<usize>(), 5);
    }
}
