//! The trace-id remap table one stitch processor id shares between its traces and logs
//! pipelines: for every trace the traces instance released, whether it was merged into
//! another trace (and which) or left as it is.
//!
//! Entries are bounded (`max_pending` merged and `max_pending` unchanged traces, each kept
//! apart so ordinary traffic cannot push merges out; oldest evicted first) and have a fixed
//! TTL counted from when the trace was settled. A merged trace's entry is *live* for one TTL (spans and
//! log records of it are rewritten) and then a *tombstone* for one more TTL, so that records
//! arriving too late are recognised (left unchanged and counted) rather than mistaken for
//! an unknown trace. "Left unchanged" entries stay valid for both periods.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::rules::{SpanId, TraceId};
use super::ttl::TtlMap;

/// What became of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Merged into `target`; the consumer-side root hangs under `producer_span`.
    Remapped {
        target: TraceId,
        producer_span: SpanId,
        rule: usize,
    },
    /// Released as it arrived.
    Unchanged,
}

/// The answer to "what do I do with an item of this trace now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Rewrite into `target` (already resolved through later hops).
    Remapped {
        target: TraceId,
        producer_span: SpanId,
        rule: usize,
    },
    /// Pass as it is.
    Unchanged,
    /// It was merged, but its TTL has passed: pass as it is and count it as late.
    Expired { rule: usize },
    /// Not settled yet (or forgotten).
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Remap {
    target: TraceId,
    producer_span: SpanId,
    rule: usize,
}

/// Bounded, TTL'd map from trace id to [`Fate`]. Merged and unchanged traces are bounded
/// separately, so a flood of ordinary traces cannot push merges out early.
pub(crate) struct FateTable {
    remapped: TtlMap<TraceId, Remap>,
    unchanged: TtlMap<TraceId, ()>,
    ttl: Duration,
}

/// Hops followed when resolving a chain (a → b → c); more means a cycle in the data.
const MAX_HOPS: usize = 32;

impl FateTable {
    /// Entries physically live `2 × ttl` (the second half as tombstones for merges).
    pub fn new(ttl: Duration, capacity: usize) -> FateTable {
        FateTable {
            remapped: TtlMap::new(ttl * 2, capacity),
            unchanged: TtlMap::new(ttl * 2, capacity),
            ttl,
        }
    }

    /// Records a trace's fate; returns the rule of a live merge evicted to stay within
    /// capacity (counted as overflow).
    pub fn record(&mut self, trace: TraceId, fate: Fate, now: Instant) -> Option<usize> {
        match fate {
            Fate::Remapped {
                target,
                producer_span,
                rule,
            } => {
                self.unchanged.remove(&trace);
                let r = Remap {
                    target,
                    producer_span,
                    rule,
                };
                let evicted = self.remapped.insert(trace, r, now)?;
                (evicted.2 + self.ttl > now).then_some(evicted.1.rule)
            }
            Fate::Unchanged => {
                self.unchanged.insert(trace, (), now);
                None
            }
        }
    }

    fn fate(&self, trace: &TraceId, now: Instant) -> Option<(Fate, bool)> {
        if let Some((r, at)) = self.remapped.get(trace, now) {
            let fate = Fate::Remapped {
                target: r.target,
                producer_span: r.producer_span,
                rule: r.rule,
            };
            return Some((fate, at + self.ttl > now));
        }
        self.unchanged
            .get(trace, now)
            .map(|_| (Fate::Unchanged, true))
    }

    /// What to do with an item of `trace` at `now`.
    pub fn lookup(&self, trace: &TraceId, now: Instant) -> Seen {
        match self.fate(trace, now) {
            None => Seen::Unknown,
            Some((Fate::Unchanged, _)) => Seen::Unchanged,
            Some((Fate::Remapped { rule, .. }, false)) => Seen::Expired { rule },
            Some((
                Fate::Remapped {
                    target,
                    producer_span,
                    rule,
                },
                true,
            )) => Seen::Remapped {
                target: self.resolve(&target, now),
                producer_span,
                rule,
            },
        }
    }

    /// The trace id `trace` ends up in: follows live merges (a → b → c) to the last one.
    pub fn resolve(&self, trace: &TraceId, now: Instant) -> TraceId {
        let mut cur = *trace;
        for _ in 0..MAX_HOPS {
            match self.fate(&cur, now) {
                Some((Fate::Remapped { target, .. }, true)) if target != *trace => cur = target,
                _ => break,
            }
        }
        cur
    }

    pub fn purge(&mut self, now: Instant) {
        self.remapped.purge(now);
        self.unchanged.purge(now);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.remapped.len() + self.unchanged.len()
    }
}

/// The state shared by every pipeline instance of one stitch processor id, registered in
/// `BuildContext::shared` under `stitch/<id>`.
pub(crate) struct StitchShared {
    fates: Mutex<FateTable>,
    /// Set when a traces pipeline built this processor: without one nothing is ever
    /// settled, so a logs instance must not hold records waiting for it.
    traces_attached: AtomicBool,
}

impl StitchShared {
    pub fn new(ttl: Duration, capacity: usize) -> StitchShared {
        StitchShared {
            fates: Mutex::new(FateTable::new(ttl, capacity)),
            traces_attached: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, FateTable> {
        self.fates.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn attach_traces(&self) {
        self.traces_attached.store(true, Ordering::Relaxed);
    }

    pub fn has_traces(&self) -> bool {
        self.traces_attached.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remap(to: u8) -> Fate {
        Fate::Remapped {
            target: [to; 16],
            producer_span: [to; 8],
            rule: 0,
        }
    }

    #[test]
    fn live_then_tombstone_then_forgotten() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut t = FateTable::new(ttl, 10);
        t.record([1; 16], remap(2), t0);
        t.record([3; 16], Fate::Unchanged, t0);
        assert!(
            matches!(t.lookup(&[1; 16], t0), Seen::Remapped { target, .. } if target == [2; 16])
        );
        assert_eq!(t.lookup(&[1; 16], t0 + ttl), Seen::Expired { rule: 0 });
        assert_eq!(t.lookup(&[3; 16], t0 + ttl), Seen::Unchanged);
        assert_eq!(t.lookup(&[1; 16], t0 + ttl * 2), Seen::Unknown);
        t.purge(t0 + ttl * 2);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn chains_resolve_transitively_and_cycles_stop() {
        let t0 = Instant::now();
        let mut t = FateTable::new(Duration::from_secs(10), 10);
        t.record([1; 16], remap(2), t0);
        t.record([2; 16], remap(3), t0);
        assert_eq!(t.resolve(&[1; 16], t0), [3; 16]);
        assert!(
            matches!(t.lookup(&[1; 16], t0), Seen::Remapped { target, producer_span, .. }
            if target == [3; 16] && producer_span == [2; 8])
        );
        t.record([3; 16], remap(1), t0);
        // A cycle cannot come from the processor, but must not hang.
        let _ = t.resolve(&[1; 16], t0);
    }

    #[test]
    fn capacity_evicts_oldest_merges_and_unchanged_traces_separately() {
        let t0 = Instant::now();
        let mut t = FateTable::new(Duration::from_secs(10), 2);
        t.record([1; 16], remap(9), t0);
        for i in 2..10 {
            assert_eq!(t.record([i; 16], Fate::Unchanged, t0), None);
        }
        assert!(
            matches!(t.lookup(&[1; 16], t0), Seen::Remapped { .. }),
            "kept"
        );
        assert_eq!(
            t.lookup(&[2; 16], t0),
            Seen::Unknown,
            "oldest unchanged evicted"
        );
        t.record([10; 16], remap(9), t0);
        assert_eq!(
            t.record([11; 16], remap(9), t0),
            Some(0),
            "live merge evicted"
        );
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup(&[1; 16], t0), Seen::Unknown);
    }
}
