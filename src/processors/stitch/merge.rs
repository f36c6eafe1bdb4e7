//! Merge mode for traces: hold each unsettled trace, grouped by trace id, until it is known
//! whether it is a consumer trace to be rewritten into its producer's trace.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::held::{Held, assemble_spans, take_spans};
use super::remap::{Fate, FateTable, Seen, StitchShared};
use super::rules::{Key, Producer, SpanId, TraceId, parent_is_remote, span_id, trace_id};
use super::{Base, add_link, rewrite_links, rewrite_span};
use crate::data::{Batch, ResourceSpans, Span};
use crate::processors::{Processor, ProcessorError};

pub(crate) struct MergeTraces {
    base: Base,
    shared: Arc<StitchShared>,
    groups: HashMap<TraceId, Group>,
    /// Groups by first arrival (entries of released groups are skipped when met).
    order: VecDeque<(Instant, TraceId)>,
    held_spans: usize,
    /// Consumer keys → held traces waiting for that producer.
    waiting: HashMap<Key, Vec<TraceId>>,
    /// Matched traces waiting for their producer's trace to settle (chains).
    deferred: BTreeSet<TraceId>,
}

struct Group {
    first_seen: Instant,
    spans: Vec<Held<Span>>,
    has_root: bool,
    candidates: Vec<Candidate>,
    /// A consumer span of it has a remote parent: context was propagated.
    left_alone: bool,
    matched: Option<Match>,
}

struct Candidate {
    key: Key,
    span: SpanId,
}

#[derive(Clone, Copy)]
struct Match {
    rule: usize,
    producer: Producer,
}

enum Outcome {
    /// Released as it is; `unmatched` if it had consumers that found no producer.
    Unchanged {
        unmatched: bool,
    },
    Merge {
        m: Match,
        target: TraceId,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    Settled,
    Expired,
    Overflow,
}

impl MergeTraces {
    pub fn new(base: Base, shared: Arc<StitchShared>) -> MergeTraces {
        MergeTraces {
            base,
            shared,
            groups: HashMap::new(),
            order: VecDeque::new(),
            held_spans: 0,
            waiting: HashMap::new(),
            deferred: BTreeSet::new(),
        }
    }

    fn process_spans(&mut self, mut batch: Vec<ResourceSpans>, now: Instant) -> Vec<Batch> {
        let shared = self.shared.clone();
        let mut fates = shared.lock();
        let mut out = Vec::new();
        self.expire(now, &mut fates, &mut out);

        let mut new_keys = Vec::new();
        let base = &mut self.base;
        let taken = take_spans(&mut batch, |s| {
            let Some(tid) = trace_id(&s.trace_id) else {
                return false;
            };
            new_keys.extend(base.index_producers(s, tid, now));
            match fates.lookup(&tid, now) {
                Seen::Remapped {
                    target,
                    producer_span,
                    rule,
                } => {
                    // A straggler of a merged trace: rewrite it now. If it is itself a
                    // consumer of a producer elsewhere, it gets a link.
                    rewrite_span(s, &tid, target, producer_span, base.rules.name(rule));
                    base.metrics.rule(rule, |m| &m.merged_spans, 1);
                    for k in base.rules.consumer_keys(s) {
                        if let Some(p) = base.producers.get(&k, now) {
                            let pt = fates.resolve(&p.trace, now);
                            if pt != target && add_link(s, pt, &p, base.rules.name(k.rule)) {
                                base.metrics.rule(k.rule, |m| &m.links_added, 1);
                            }
                        }
                    }
                    rewrite_links(s, &fates, now);
                    false
                }
                Seen::Unchanged | Seen::Expired { .. } => {
                    rewrite_links(s, &fates, now);
                    false
                }
                Seen::Unknown => true,
            }
        });

        let mut touched = Vec::new();
        let mut touched_set = HashSet::new();
        for (origin, s) in taken {
            let Some(tid) = trace_id(&s.trace_id) else {
                continue;
            };
            let g = self.groups.entry(tid).or_insert_with(|| Group {
                first_seen: now,
                spans: Vec::new(),
                has_root: false,
                candidates: Vec::new(),
                left_alone: false,
                matched: None,
            });
            if g.spans.is_empty() {
                self.order.push_back((now, tid));
            }
            if touched_set.insert(tid) {
                touched.push(tid);
            }
            if s.parent_span_id.is_empty() {
                g.has_root = true;
            }
            let keys = self.base.rules.consumer_keys(&s);
            if !keys.is_empty() {
                if parent_is_remote(&s) {
                    g.left_alone = true;
                } else if let Some(sid) = span_id(&s.span_id) {
                    for key in keys {
                        let w = self.waiting.entry(key.clone()).or_default();
                        if !w.contains(&tid) {
                            w.push(tid);
                        }
                        g.candidates.push(Candidate { key, span: sid });
                    }
                }
            }
            g.spans.push((origin, s));
            self.held_spans += 1;
        }
        for key in &new_keys {
            for tid in self.waiting.get(key).into_iter().flatten() {
                if touched_set.insert(*tid) {
                    touched.push(*tid);
                }
            }
        }
        self.settle(touched, now, &mut fates, &mut out);
        self.enforce_bound(now, &mut fates, &mut out);
        self.trim_order();
        drop(fates);
        self.base.metrics.held_spans.set(self.held_spans as i64);

        let mut result = Vec::new();
        if !batch.is_empty() {
            result.push(Batch::Traces(batch));
        }
        if !out.is_empty() {
            result.push(Batch::Traces(assemble_spans(out)));
        }
        result
    }

    /// Decides what to do with a held trace now. `last_call` is set when the trace may not
    /// be held any longer (window over, overflow, shutdown).
    fn decide(
        &mut self,
        tid: TraceId,
        now: Instant,
        fates: &FateTable,
        last_call: bool,
    ) -> Option<Outcome> {
        let producers = &self.base.producers;
        let g = self.groups.get_mut(&tid)?;
        if g.left_alone {
            return Some(Outcome::Unchanged { unmatched: false });
        }
        if g.candidates.is_empty() {
            return (g.has_root || last_call).then_some(Outcome::Unchanged { unmatched: false });
        }
        if g.matched.is_none() {
            for c in &g.candidates {
                if let Some(p) = producers.get(&c.key, now) {
                    if fates.resolve(&p.trace, now) == tid {
                        // The producer is in this very trace: context was propagated.
                        return Some(Outcome::Unchanged { unmatched: false });
                    }
                    g.matched = Some(Match {
                        rule: c.key.rule,
                        producer: p,
                    });
                    break;
                }
            }
        }
        let Some(m) = g.matched else {
            return last_call.then_some(Outcome::Unchanged { unmatched: true });
        };
        let target = fates.resolve(&m.producer.trace, now);
        if target == tid {
            return Some(Outcome::Unchanged { unmatched: false });
        }
        if !g.has_root {
            // Without the root we cannot tell whether the consumer's parent is local (the
            // root is still coming) or remote (context was propagated): wait for it, and
            // leave the trace alone if it never comes.
            return last_call.then_some(Outcome::Unchanged { unmatched: true });
        }
        if !last_call && self.groups.contains_key(&target) {
            // The producer's trace is still held and may itself be merged (a two-hop
            // chain): wait for it so this trace ends in the final trace id.
            self.deferred.insert(tid);
            return None;
        }
        Some(Outcome::Merge { m, target })
    }

    fn evaluate(
        &mut self,
        tid: TraceId,
        now: Instant,
        fates: &mut FateTable,
        out: &mut Vec<Held<Span>>,
        reason: Reason,
    ) -> bool {
        let last_call = reason != Reason::Settled;
        match self.decide(tid, now, fates, last_call) {
            Some(o) => {
                self.release(tid, o, now, fates, out, reason);
                true
            }
            None => false,
        }
    }

    /// Evaluates `todo`, then the deferred traces again as long as anything was released
    /// (a release may settle the producer trace a deferred one waits for).
    fn settle(
        &mut self,
        mut todo: Vec<TraceId>,
        now: Instant,
        fates: &mut FateTable,
        out: &mut Vec<Held<Span>>,
    ) {
        loop {
            let mut released = false;
            for tid in todo.drain(..) {
                released |= self.evaluate(tid, now, fates, out, Reason::Settled);
            }
            if !released || self.deferred.is_empty() {
                break;
            }
            todo = self.deferred.iter().copied().collect();
        }
    }

    fn release(
        &mut self,
        tid: TraceId,
        outcome: Outcome,
        now: Instant,
        fates: &mut FateTable,
        out: &mut Vec<Held<Span>>,
        reason: Reason,
    ) {
        let Some(g) = self.groups.remove(&tid) else {
            return;
        };
        self.deferred.remove(&tid);
        self.held_spans = self.held_spans.saturating_sub(g.spans.len());
        for c in &g.candidates {
            if let Some(w) = self.waiting.get_mut(&c.key) {
                w.retain(|t| *t != tid);
                if w.is_empty() {
                    self.waiting.remove(&c.key);
                }
            }
        }
        let metrics = self.base.metrics.clone();
        let n = g.spans.len() as u64;
        if reason == Reason::Overflow {
            metrics.overflow_spans.add(n);
        }
        match outcome {
            Outcome::Unchanged { unmatched } => {
                if let Some(r) = fates.record(tid, Fate::Unchanged, now) {
                    metrics.rule(r, |m| &m.overflow, 1);
                }
                if unmatched {
                    for c in &g.candidates {
                        match reason {
                            Reason::Overflow => metrics.rule(c.key.rule, |m| &m.overflow, 1),
                            _ => metrics.rule(c.key.rule, |m| &m.unmatched_expired, 1),
                        }
                    }
                }
                for (o, mut s) in g.spans {
                    rewrite_links(&mut s, fates, now);
                    out.push((o, s));
                }
            }
            Outcome::Merge { m, target } => {
                let fate = Fate::Remapped {
                    target,
                    producer_span: m.producer.span,
                    rule: m.rule,
                };
                if let Some(r) = fates.record(tid, fate, now) {
                    metrics.rule(r, |m| &m.overflow, 1);
                }
                metrics.rule(m.rule, |c| &c.matched, 1);
                metrics.rule(m.rule, |c| &c.merged_spans, n);
                // Other consumer spans of this trace whose producer lives elsewhere.
                let mut extra: Vec<(SpanId, TraceId, Producer, usize)> = Vec::new();
                for c in &g.candidates {
                    if let Some(p) = self.base.producers.get(&c.key, now) {
                        let pt = fates.resolve(&p.trace, now);
                        if pt != target && pt != tid {
                            extra.push((c.span, pt, p, c.key.rule));
                        }
                    }
                }
                let rules = &self.base.rules;
                for (o, mut s) in g.spans {
                    rewrite_span(&mut s, &tid, target, m.producer.span, rules.name(m.rule));
                    for (sid, pt, p, rule) in &extra {
                        if s.span_id == sid && add_link(&mut s, *pt, p, rules.name(*rule)) {
                            metrics.rule(*rule, |c| &c.matched, 1);
                            metrics.rule(*rule, |c| &c.links_added, 1);
                        }
                    }
                    rewrite_links(&mut s, fates, now);
                    out.push((o, s));
                }
            }
        }
    }

    fn expire(&mut self, now: Instant, fates: &mut FateTable, out: &mut Vec<Held<Span>>) {
        self.base.last_now = Some(now);
        self.base.producers.purge(now);
        fates.purge(now);
        let window = self.base.window;
        let mut any = false;
        while let Some(&(first, tid)) = self.order.front() {
            if first + window > now {
                break;
            }
            self.order.pop_front();
            if self.groups.get(&tid).is_some_and(|g| g.first_seen == first) {
                self.evaluate(tid, now, fates, out, Reason::Expired);
                any = true;
            }
        }
        if any && !self.deferred.is_empty() {
            let todo = self.deferred.iter().copied().collect();
            self.settle(todo, now, fates, out);
        }
    }

    /// Releases the oldest held traces while more than `max_pending` spans are held.
    fn enforce_bound(&mut self, now: Instant, fates: &mut FateTable, out: &mut Vec<Held<Span>>) {
        let mut any = false;
        while self.held_spans > self.base.max_pending {
            let Some((first, tid)) = self.order.pop_front() else {
                break;
            };
            if self.groups.get(&tid).is_some_and(|g| g.first_seen == first) {
                self.evaluate(tid, now, fates, out, Reason::Overflow);
                any = true;
            }
        }
        if any && !self.deferred.is_empty() {
            let todo = self.deferred.iter().copied().collect();
            self.settle(todo, now, fates, out);
        }
    }

    /// Drops queue entries of released traces from the front (so `next_deadline` is
    /// exact) and compacts the queue when most of it is stale.
    fn trim_order(&mut self) {
        let groups = &self.groups;
        let live = |(first, tid): &(Instant, TraceId)| {
            groups.get(tid).is_some_and(|g| g.first_seen == *first)
        };
        while self.order.front().is_some_and(|e| !live(e)) {
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.groups.len() + 64 {
            self.order.retain(live);
        }
    }
}

impl Processor for MergeTraces {
    fn process(&mut self, batch: Batch, now: Instant) -> Result<Vec<Batch>, ProcessorError> {
        match batch {
            Batch::Traces(v) => Ok(self.process_spans(v, now)),
            other => Ok(vec![other]),
        }
    }

    /// What `process` returns may be data held from earlier requests.
    fn keeps_context(&self) -> bool {
        false
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.order
            .front()
            .map(|(first, _)| *first + self.base.window)
    }

    fn on_deadline(&mut self, now: Instant) -> Vec<Batch> {
        let shared = self.shared.clone();
        let mut fates = shared.lock();
        let mut out = Vec::new();
        self.expire(now, &mut fates, &mut out);
        self.trim_order();
        drop(fates);
        self.base.metrics.held_spans.set(self.held_spans as i64);
        if out.is_empty() {
            Vec::new()
        } else {
            vec![Batch::Traces(assemble_spans(out))]
        }
    }

    fn flush(&mut self) -> Vec<Batch> {
        let Some(now) = self.base.last_now else {
            return Vec::new();
        };
        let shared = self.shared.clone();
        let mut fates = shared.lock();
        let mut out = Vec::new();
        while let Some((first, tid)) = self.order.pop_front() {
            if self.groups.get(&tid).is_some_and(|g| g.first_seen == first) {
                self.evaluate(tid, now, &mut fates, &mut out, Reason::Expired);
            }
        }
        drop(fates);
        self.base.metrics.held_spans.set(self.held_spans as i64);
        if out.is_empty() {
            Vec::new()
        } else {
            vec![Batch::Traces(assemble_spans(out))]
        }
    }
}
