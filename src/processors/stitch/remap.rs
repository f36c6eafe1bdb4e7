//! The trace-id remap table one stitch processor id shares between its traces and logs
//! pipelines: for every trace the traces instance released, whether it was merged into
//! another trace (and which) or left as it is.
//!
//! Entries are bounded (`max_pending`, oldest evicted first) and have a fixed TTL counted
//! from when the trace was settled. A merged trace's entry is *live* for one TTL (spans and
//! log records of it are rewritten) and then a *tombstone* for one more TTL, so that records
//! arriving too late are recognised (left unchanged and counted) rather than mistaken for
//! an unknown trace. "Left unchanged" entries stay valid for both periods.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::rules::{SpanId, TraceId};

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

struct Entry {
    fate: Fate,
    at: Instant,
}

/// Bounded, TTL'd map from trace id to [`Fate`].
pub(crate) struct FateTable {
    map: HashMap<TraceId, Entry>,
    order: VecDeque<(Instant, TraceId)>,
    ttl: Duration,
    capacity: usize,
}

/// Hops followed when resolving a chain (a → b → c); more means a cycle in the data.
const MAX_HOPS: usize = 32;

impl FateTable {
    pub fn new(ttl: Duration, capacity: usize) -> FateTable {
        FateTable {
            map: HashMap::new(),
            order: VecDeque::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// Records a trace's fate; returns the rule of a live merge evicted to stay within
    /// capacity (counted as overflow).
    pub fn record(&mut self, trace: TraceId, fate: Fate, now: Instant) -> Option<usize> {
        self.purge(now);
        let mut evicted = None;
        if !self.map.contains_key(&trace) && self.map.len() >= self.capacity {
            while let Some((at, t)) = self.order.pop_front() {
                if self.map.get(&t).is_some_and(|e| e.at == at) {
                    if let Some(Entry {
                        fate: Fate::Remapped { rule, .. },
                        at,
                    }) = self.map.remove(&t)
                        && at + self.ttl > now
                    {
                        evicted = Some(rule);
                    }
                    break;
                }
            }
        }
        self.order.push_back((now, trace));
        self.map.insert(trace, Entry { fate, at: now });
        // Re-recorded traces leave stale queue entries behind; keep the queue in step.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(at, t)| map.get(t).is_some_and(|e| e.at == *at));
        }
        evicted
    }

    fn fate(&self, trace: &TraceId, now: Instant) -> Option<(Fate, bool)> {
        let e = self.map.get(trace)?;
        let age = now.saturating_duration_since(e.at);
        if age >= self.ttl * 2 {
            return None;
        }
        Some((e.fate, age < self.ttl))
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
        while let Some((at, _)) = self.order.front() {
            if *at + self.ttl * 2 > now {
                break;
            }
            if let Some((at, t)) = self.order.pop_front()
                && self.map.get(&t).is_some_and(|e| e.at == at)
            {
                self.map.remove(&t);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
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
    fn capacity_evicts_oldest_and_reports_live_merges() {
        let t0 = Instant::now();
        let mut t = FateTable::new(Duration::from_secs(10), 2);
        t.record([1; 16], remap(9), t0);
        t.record([2; 16], Fate::Unchanged, t0);
        assert_eq!(t.record([3; 16], Fate::Unchanged, t0), Some(0));
        assert_eq!(t.record([4; 16], Fate::Unchanged, t0), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(&[1; 16], t0), Seen::Unknown);
    }
}
