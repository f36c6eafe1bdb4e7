//! Link mode for traces: trace ids stay; a consumer span is held until its producer is
//! known (at most `window`) and then gains a span link to it.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::held::{Held, assemble_spans, take_spans};
use super::rules::{Key, TraceId, parent_is_remote, trace_id};
use super::{Base, add_link};
use crate::data::{Batch, ResourceSpans, Span};
use crate::processors::{Processor, ProcessorError};

pub(crate) struct LinkTraces {
    base: Base,
    held: HashMap<u64, HeldSpan>,
    order: VecDeque<(Instant, u64)>,
    waiting: HashMap<Key, Vec<u64>>,
    next_id: u64,
}

struct HeldSpan {
    keys: Vec<Key>,
    item: Held<Span>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    Linked,
    Expired,
    Overflow,
}

/// Adds links to the live producers of `keys`; returns whether any producer was found
/// (then the span needs no more waiting).
fn try_link(base: &Base, s: &mut Span, trace: TraceId, keys: &[Key], now: Instant) -> bool {
    let mut found = false;
    for k in keys {
        if let Some(p) = base.producers.get(k, now) {
            found = true;
            // A producer in the consumer's own trace means context was propagated.
            if p.trace != trace && add_link(s, p.trace, &p, base.rules.name(k.rule)) {
                base.metrics.rule(k.rule, |m| &m.matched, 1);
                base.metrics.rule(k.rule, |m| &m.links_added, 1);
            }
        }
    }
    found
}

impl LinkTraces {
    pub fn new(base: Base) -> LinkTraces {
        LinkTraces {
            base,
            held: HashMap::new(),
            order: VecDeque::new(),
            waiting: HashMap::new(),
            next_id: 0,
        }
    }

    fn process_spans(&mut self, mut batch: Vec<ResourceSpans>, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        let mut new_keys = Vec::new();
        let base = &mut self.base;
        let taken = take_spans(&mut batch, |s| {
            let Some(tid) = trace_id(&s.trace_id) else {
                return false;
            };
            new_keys.extend(base.index_producers(s, tid, now));
            if parent_is_remote(s) {
                return false;
            }
            let keys = base.rules.consumer_keys(s);
            !keys.is_empty() && !try_link(base, s, tid, &keys, now)
        });
        for item in taken {
            let id = self.next_id;
            self.next_id += 1;
            let keys = self.base.rules.consumer_keys(&item.1);
            for k in &keys {
                self.waiting.entry(k.clone()).or_default().push(id);
            }
            self.order.push_back((now, id));
            self.held.insert(id, HeldSpan { keys, item });
        }
        for key in &new_keys {
            let ids = self.waiting.get(key).cloned().unwrap_or_default();
            for id in ids {
                let Some(h) = self.held.get_mut(&id) else {
                    continue;
                };
                let Some(tid) = trace_id(&h.item.1.trace_id) else {
                    continue;
                };
                if try_link(&self.base, &mut h.item.1, tid, &h.keys, now) {
                    self.release(id, &mut out, Reason::Linked);
                }
            }
        }
        while self.held.len() > self.base.max_pending {
            let Some((_, id)) = self.order.pop_front() else {
                break;
            };
            self.release(id, &mut out, Reason::Overflow);
        }
        self.trim_order();
        self.base.metrics.held_spans.set(self.held.len() as i64);
        let mut result = Vec::new();
        if !batch.is_empty() {
            result.push(Batch::Traces(batch));
        }
        if !out.is_empty() {
            result.push(Batch::Traces(assemble_spans(out)));
        }
        result
    }

    fn release(&mut self, id: u64, out: &mut Vec<Held<Span>>, reason: Reason) {
        let Some(h) = self.held.remove(&id) else {
            return;
        };
        for k in &h.keys {
            if let Some(w) = self.waiting.get_mut(k) {
                w.retain(|x| *x != id);
                if w.is_empty() {
                    self.waiting.remove(k);
                }
            }
            match reason {
                Reason::Linked => {}
                Reason::Expired => self.base.metrics.rule(k.rule, |m| &m.unmatched_expired, 1),
                Reason::Overflow => self.base.metrics.rule(k.rule, |m| &m.overflow, 1),
            }
        }
        if reason == Reason::Overflow {
            self.base.metrics.overflow_spans.inc();
        }
        out.push(h.item);
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Held<Span>>) {
        self.base.last_now = Some(now);
        self.base.producers.purge(now);
        while let Some(&(at, id)) = self.order.front() {
            if at + self.base.window > now {
                break;
            }
            self.order.pop_front();
            self.release(id, out, Reason::Expired);
        }
    }

    fn trim_order(&mut self) {
        while self
            .order
            .front()
            .is_some_and(|(_, id)| !self.held.contains_key(id))
        {
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.held.len() + 64 {
            let held = &self.held;
            self.order.retain(|(_, id)| held.contains_key(id));
        }
    }
}

impl Processor for LinkTraces {
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
        self.order.front().map(|(at, _)| *at + self.base.window)
    }

    fn on_deadline(&mut self, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        self.trim_order();
        self.base.metrics.held_spans.set(self.held.len() as i64);
        if out.is_empty() {
            Vec::new()
        } else {
            vec![Batch::Traces(assemble_spans(out))]
        }
    }

    fn flush(&mut self) -> Vec<Batch> {
        let mut out = Vec::new();
        while let Some((_, id)) = self.order.pop_front() {
            self.release(id, &mut out, Reason::Expired);
        }
        self.base.metrics.held_spans.set(0);
        if out.is_empty() {
            Vec::new()
        } else {
            vec![Batch::Traces(assemble_spans(out))]
        }
    }
}
