//! The logs-pipeline instance: applies the remap table kept by the traces instance of the
//! same processor id, holding records whose trace is not settled yet (at most `window`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::held::{Held, assemble_logs, take_logs};
use super::remap::{FateTable, Seen, StitchShared};
use super::rules::{TraceId, trace_id};
use super::{ATTR_ORIGINAL_TRACE_ID, ATTR_RULE, Base, Mode, set_if_absent};
use crate::data::{Batch, LogRecord, ResourceLogs, hex};
use crate::processors::{Processor, ProcessorError};

/// How often held records re-read the shared table when nothing else wakes this instance
/// (the traces pipeline settles traces on its own schedule and cannot wake this one).
const RECHECK: Duration = Duration::from_secs(1);

/// W3C trace flag: sampled.
const SAMPLED: u32 = 0x01;

pub(crate) struct StitchLogs {
    base: Base,
    shared: Arc<StitchShared>,
    /// Link mode keeps no remap table: records pass.
    active: bool,
    held: HashMap<u64, (TraceId, Held<LogRecord>)>,
    by_trace: HashMap<TraceId, Vec<u64>>,
    order: VecDeque<(Instant, u64)>,
    next_id: u64,
    last_check: Option<Instant>,
}

/// Applies the table to one record (rewrites and counts); returns whether its trace is
/// still unknown.
fn apply(base: &Base, fates: &FateTable, rec: &mut LogRecord, now: Instant) -> bool {
    let Some(tid) = trace_id(&rec.trace_id) else {
        return false;
    };
    match fates.lookup(&tid, now) {
        Seen::Remapped { target, rule, .. } => {
            rec.trace_id = target.to_vec();
            set_if_absent(
                &mut rec.attributes,
                ATTR_RULE,
                base.rules.name(rule).to_string(),
            );
            set_if_absent(&mut rec.attributes, ATTR_ORIGINAL_TRACE_ID, hex(&tid));
            base.metrics.rule(rule, |m| &m.remapped_log_records, 1);
            false
        }
        Seen::Expired { rule } => {
            base.metrics.rule(rule, |m| &m.late_log_records, 1);
            false
        }
        Seen::Unchanged => false,
        Seen::Unknown => true,
    }
}

impl StitchLogs {
    pub fn new(base: Base, shared: Arc<StitchShared>, mode: Mode) -> StitchLogs {
        StitchLogs {
            base,
            shared,
            active: mode == Mode::Merge,
            held: HashMap::new(),
            by_trace: HashMap::new(),
            order: VecDeque::new(),
            next_id: 0,
            last_check: None,
        }
    }

    fn process_logs(&mut self, mut batch: Vec<ResourceLogs>, now: Instant) -> Vec<Batch> {
        let shared = self.shared.clone();
        let fates = shared.lock();
        let mut out = Vec::new();
        self.expire(now, &fates, &mut out);
        let hold = shared.has_traces();
        let base = &self.base;
        let taken = take_logs(&mut batch, |rec| {
            apply(base, &fates, rec, now) && hold && rec.flags & SAMPLED != 0
        });
        for item in taken {
            let Some(tid) = trace_id(&item.1.trace_id) else {
                out.push(item);
                continue;
            };
            let id = self.next_id;
            self.next_id += 1;
            self.held.insert(id, (tid, item));
            self.by_trace.entry(tid).or_default().push(id);
            self.order.push_back((now, id));
        }
        while self.held.len() > self.base.max_pending {
            let Some((_, id)) = self.order.pop_front() else {
                break;
            };
            if self.release(id, &fates, now, &mut out) {
                self.base.metrics.overflow_log_records.inc();
            }
        }
        self.finish();
        drop(fates);
        let mut result = Vec::new();
        if !batch.is_empty() {
            result.push(Batch::Logs(batch));
        }
        if !out.is_empty() {
            result.push(Batch::Logs(assemble_logs(out)));
        }
        result
    }

    /// Releases one held record (applying the table); returns whether it was held.
    fn release(
        &mut self,
        id: u64,
        fates: &FateTable,
        now: Instant,
        out: &mut Vec<Held<LogRecord>>,
    ) -> bool {
        let Some((tid, mut item)) = self.held.remove(&id) else {
            return false;
        };
        if let Some(ids) = self.by_trace.get_mut(&tid) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                self.by_trace.remove(&tid);
            }
        }
        apply(&self.base, fates, &mut item.1, now);
        out.push(item);
        true
    }

    fn expire(&mut self, now: Instant, fates: &FateTable, out: &mut Vec<Held<LogRecord>>) {
        self.base.last_now = Some(now);
        while let Some(&(at, id)) = self.order.front() {
            if at + self.base.window > now {
                break;
            }
            self.order.pop_front();
            self.release(id, fates, now, out);
        }
        let due = self.last_check.is_none_or(|t| t + RECHECK <= now);
        if due && !self.by_trace.is_empty() {
            let settled: Vec<TraceId> = self
                .by_trace
                .keys()
                .filter(|t| fates.lookup(t, now) != Seen::Unknown)
                .copied()
                .collect();
            for tid in settled {
                for id in self.by_trace.get(&tid).cloned().unwrap_or_default() {
                    self.release(id, fates, now, out);
                }
            }
        }
        if due {
            self.last_check = Some(now);
        }
    }

    /// Keeps the queue front live and the gauge current.
    fn finish(&mut self) {
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
        self.base
            .metrics
            .held_log_records
            .set(self.held.len() as i64);
    }
}

impl Processor for StitchLogs {
    fn process(&mut self, batch: Batch, now: Instant) -> Result<Vec<Batch>, ProcessorError> {
        match batch {
            Batch::Logs(v) if self.active => Ok(self.process_logs(v, now)),
            other => Ok(vec![other]),
        }
    }

    /// What `process` returns may be data held from earlier requests.
    fn keeps_context(&self) -> bool {
        false
    }

    fn next_deadline(&self) -> Option<Instant> {
        let (at, _) = self.order.front()?;
        let expiry = *at + self.base.window;
        Some(match self.last_check {
            Some(t) => expiry.min(t + RECHECK),
            None => expiry,
        })
    }

    fn on_deadline(&mut self, now: Instant) -> Vec<Batch> {
        let shared = self.shared.clone();
        let fates = shared.lock();
        let mut out = Vec::new();
        self.expire(now, &fates, &mut out);
        self.finish();
        drop(fates);
        if out.is_empty() {
            Vec::new()
        } else {
            vec![Batch::Logs(assemble_logs(out))]
        }
    }

    fn flush(&mut self) -> Vec<Batch> {
        let Some(now) = self.base.last_now else {
            return Vec::new();
        };
        let shared = self.shared.clone();
        let fates = shared.lock();
        let mut out = Vec::new();
        // Ids grow with arrival, so sorting keeps arrival order.
        let mut ids: Vec<u64> = self.held.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.release(id, &fates, now, &mut out);
        }
        drop(fates);
        self.finish();
        if out.is_empty() {
            Vec::new()
        } else {
            vec![Batch::Logs(assemble_logs(out))]
        }
    }
}
