//! The trace buffer shared by trace-aware processors (clock skew today; Kafka stitching
//! and tail decisions can reuse it): it groups spans by trace id across batches and
//! releases a trace once `decision_wait` has passed since its *last* span arrived.
//!
//! Bounds: at most `max_traces` traces and about `max_bytes` of spans (the protobuf
//! encoded size of what is held, a cheap and stable estimate of the memory a trace
//! needs). When a new span would exceed either bound, the least recently extended traces
//! (the ones closest to their own release anyway) are handed back at once as
//! [`Release::Evicted`] so the caller passes them on unprocessed and counts them. Nothing
//! is ever dropped: every span put in comes out exactly once, through `add`,
//! `take_due` or `drain`.
//!
//! Spans keep their resource and scope: a released trace is a list of `ResourceSpans`
//! fragments, one per (arrival, resource) holding spans of this trace only. Spans with a
//! malformed trace id are grouped by whatever bytes they carry; the receiver rejects
//! such ids before they get here, and grouping them is harmless.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use prost::Message;

use crate::data::{ResourceSpans, ScopeSpans};

/// How a trace left the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// `decision_wait` passed since its last span: as complete as it will get.
    Due,
    /// Pushed out early because the buffer was full.
    Evicted,
    /// Handed out by `drain` (shutdown).
    Drained,
}

/// The spans of one trace as held by the buffer.
#[derive(Debug)]
pub struct BufferedTrace {
    pub trace_id: Vec<u8>,
    /// Fragments in arrival order; each holds spans of this trace only.
    pub resource_spans: Vec<ResourceSpans>,
    pub span_count: usize,
    /// Encoded size of the fragments (the memory estimate).
    pub bytes: usize,
    pub first_seen: Instant,
    pub last_seen: Instant,
    pub release: Release,
}

/// The buffer's bounds.
#[derive(Clone, Copy, Debug)]
pub struct TraceBufferLimits {
    pub decision_wait: Duration,
    pub max_traces: usize,
    pub max_bytes: usize,
}

struct Entry {
    resource_spans: Vec<ResourceSpans>,
    span_count: usize,
    bytes: usize,
    first_seen: Instant,
    /// Position in `by_last_seen`: (last arrival, insertion sequence).
    key: (Instant, u64),
}

pub struct TraceBuffer {
    limits: TraceBufferLimits,
    traces: HashMap<Vec<u8>, Entry>,
    /// Traces ordered by their last arrival: the release and eviction order.
    by_last_seen: BTreeMap<(Instant, u64), Vec<u8>>,
    seq: u64,
    bytes: usize,
}

impl TraceBuffer {
    pub fn new(limits: TraceBufferLimits) -> TraceBuffer {
        TraceBuffer {
            limits: TraceBufferLimits {
                max_traces: limits.max_traces.max(1),
                ..limits
            },
            traces: HashMap::new(),
            by_last_seen: BTreeMap::new(),
            seq: 0,
            bytes: 0,
        }
    }

    /// Number of traces held.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// Encoded size of everything held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the spans of a batch, grouped by trace. Returns the traces pushed out to make
    /// room (oldest first); they may include a trace this very batch extended.
    pub fn add(&mut self, batch: Vec<ResourceSpans>, now: Instant) -> Vec<BufferedTrace> {
        let mut evicted = Vec::new();
        for (trace_id, fragment) in split_by_trace(batch) {
            self.insert(trace_id, fragment, now, &mut evicted);
        }
        evicted
    }

    fn insert(
        &mut self,
        trace_id: Vec<u8>,
        fragment: ResourceSpans,
        now: Instant,
        evicted: &mut Vec<BufferedTrace>,
    ) {
        let spans: usize = fragment.scope_spans.iter().map(|s| s.spans.len()).sum();
        let bytes = fragment.encoded_len();
        if !self.traces.contains_key(&trace_id) {
            while self.traces.len() >= self.limits.max_traces {
                match self.pop_oldest(Release::Evicted) {
                    Some(t) => evicted.push(t),
                    None => break,
                }
            }
        }
        self.seq += 1;
        let key = (now, self.seq);
        match self.traces.get_mut(&trace_id) {
            Some(entry) => {
                self.by_last_seen.remove(&entry.key);
                entry.key = key;
                entry.resource_spans.push(fragment);
                entry.span_count += spans;
                entry.bytes += bytes;
            }
            None => {
                self.traces.insert(
                    trace_id.clone(),
                    Entry {
                        resource_spans: vec![fragment],
                        span_count: spans,
                        bytes,
                        first_seen: now,
                        key,
                    },
                );
            }
        }
        self.by_last_seen.insert(key, trace_id);
        self.bytes += bytes;
        while self.bytes > self.limits.max_bytes {
            match self.pop_oldest(Release::Evicted) {
                Some(t) => evicted.push(t),
                None => break,
            }
        }
    }

    fn deadline_of(&self, last_seen: Instant) -> Instant {
        last_seen
            .checked_add(self.limits.decision_wait)
            .unwrap_or(last_seen)
    }

    /// When the next trace becomes due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_last_seen
            .keys()
            .next()
            .map(|(last_seen, _)| self.deadline_of(*last_seen))
    }

    /// Removes and returns the traces whose wait is over at `now`, oldest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<BufferedTrace> {
        let mut due = Vec::new();
        while let Some((last_seen, _)) = self.by_last_seen.keys().next() {
            if self.deadline_of(*last_seen) > now {
                break;
            }
            match self.pop_oldest(Release::Due) {
                Some(t) => due.push(t),
                None => break,
            }
        }
        due
    }

    /// Removes and returns everything held, oldest first.
    pub fn drain(&mut self) -> Vec<BufferedTrace> {
        let mut all = Vec::with_capacity(self.traces.len());
        while let Some(t) = self.pop_oldest(Release::Drained) {
            all.push(t);
        }
        all
    }

    fn pop_oldest(&mut self, release: Release) -> Option<BufferedTrace> {
        let (key, trace_id) = self.by_last_seen.pop_first()?;
        let entry = self.traces.remove(&trace_id)?;
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        Some(BufferedTrace {
            trace_id,
            resource_spans: entry.resource_spans,
            span_count: entry.span_count,
            bytes: entry.bytes,
            first_seen: entry.first_seen,
            last_seen: key.0,
            release,
        })
    }
}

/// Splits resource-level messages into per-trace fragments, keeping resource and scope
/// (cloned once per trace and resource, not per span). Fragments come out in the order
/// their traces first appear.
pub fn split_by_trace(batch: Vec<ResourceSpans>) -> Vec<(Vec<u8>, ResourceSpans)> {
    let mut out: Vec<(Vec<u8>, ResourceSpans)> = Vec::new();
    for mut rs in batch {
        if let Some(single) = single_trace_id(&rs) {
            if rs.scope_spans.iter().any(|s| !s.spans.is_empty()) {
                out.push((single, rs));
            }
            continue;
        }
        // trace id -> (index into `out`, index of the scope last appended to)
        let mut index: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
        let scopes = std::mem::take(&mut rs.scope_spans);
        for (scope_idx, mut scope) in scopes.into_iter().enumerate() {
            let spans = std::mem::take(&mut scope.spans);
            for span in spans {
                let (at, last_scope) = match index.get(span.trace_id.as_slice()) {
                    Some(&slot) => slot,
                    None => {
                        out.push((
                            span.trace_id.clone(),
                            ResourceSpans {
                                resource: rs.resource.clone(),
                                scope_spans: Vec::new(),
                                schema_url: rs.schema_url.clone(),
                            },
                        ));
                        (out.len() - 1, usize::MAX)
                    }
                };
                if last_scope != scope_idx {
                    index.insert(span.trace_id.clone(), (at, scope_idx));
                    out[at].1.scope_spans.push(ScopeSpans {
                        scope: scope.scope.clone(),
                        spans: Vec::new(),
                        schema_url: scope.schema_url.clone(),
                    });
                }
                let fragment = &mut out[at].1;
                if let Some(last) = fragment.scope_spans.last_mut() {
                    last.spans.push(span);
                }
            }
        }
    }
    out
}

/// The trace id when every span of `rs` belongs to the same trace (the common case for
/// one service's export), so the message can be moved without being taken apart.
fn single_trace_id(rs: &ResourceSpans) -> Option<Vec<u8>> {
    let mut spans = rs.scope_spans.iter().flat_map(|s| s.spans.iter());
    let first = spans.next()?;
    spans
        .all(|s| s.trace_id == first.trace_id)
        .then(|| first.trace_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{InstrumentationScope, Resource, Span};

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: format!("s{id}"),
            ..Default::default()
        }
    }

    fn rs(service: &str, scopes: Vec<(&str, Vec<Span>)>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![crate::data::KeyValue {
                    key: "service.name".into(),
                    value: Some(crate::data::AnyValue {
                        value: Some(crate::data::string_value(service)),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: scopes
                .into_iter()
                .map(|(name, spans)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: name.into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        }
    }

    fn limits(max_traces: usize, max_bytes: usize) -> TraceBufferLimits {
        TraceBufferLimits {
            decision_wait: Duration::from_secs(5),
            max_traces,
            max_bytes,
        }
    }

    fn ids(traces: &[BufferedTrace]) -> Vec<u8> {
        traces.iter().map(|t| t.trace_id[0]).collect()
    }

    #[test]
    fn split_keeps_resource_and_scope_per_trace() {
        let batch = vec![rs(
            "a",
            vec![
                ("s1", vec![span(1, 1), span(2, 2), span(1, 3)]),
                ("s2", vec![span(2, 4)]),
            ],
        )];
        let parts = split_by_trace(batch);
        assert_eq!(parts.len(), 2);
        let (t1, f1) = &parts[0];
        assert_eq!(t1, &vec![1; 16]);
        assert_eq!(f1.scope_spans.len(), 1);
        assert_eq!(f1.scope_spans[0].spans.len(), 2);
        let (_, f2) = &parts[1];
        assert_eq!(f2.scope_spans.len(), 2);
        assert_eq!(f2.scope_spans[1].scope.as_ref().unwrap().name, "s2");
        assert_eq!(f2.resource, f1.resource);
    }

    #[test]
    fn trace_is_released_decision_wait_after_its_last_span() {
        let t0 = Instant::now();
        let mut b = TraceBuffer::new(limits(10, usize::MAX));
        assert!(
            b.add(vec![rs("a", vec![("s", vec![span(1, 1)])])], t0)
                .is_empty()
        );
        b.add(
            vec![rs("b", vec![("s", vec![span(1, 2)])])],
            t0 + Duration::from_secs(3),
        );
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_secs(8)));
        assert!(b.take_due(t0 + Duration::from_secs(6)).is_empty());
        let due = b.take_due(t0 + Duration::from_secs(8));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].span_count, 2);
        assert_eq!(due[0].resource_spans.len(), 2);
        assert_eq!(due[0].release, Release::Due);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn full_buffer_evicts_least_recently_extended_traces_and_never_drops() {
        let t0 = Instant::now();
        let mut b = TraceBuffer::new(limits(2, usize::MAX));
        let s = Duration::from_secs(1);
        b.add(vec![rs("a", vec![("s", vec![span(1, 1)])])], t0);
        b.add(vec![rs("a", vec![("s", vec![span(2, 2)])])], t0 + s);
        // Trace 1 is extended, so trace 2 is now the least recently extended.
        b.add(vec![rs("a", vec![("s", vec![span(1, 3)])])], t0 + 2 * s);
        let evicted = b.add(vec![rs("a", vec![("s", vec![span(3, 4)])])], t0 + 3 * s);
        assert_eq!(ids(&evicted), vec![2]);
        assert_eq!(evicted[0].release, Release::Evicted);
        let rest = b.drain();
        assert_eq!(ids(&rest), vec![1, 3]);
        let total: usize = evicted
            .iter()
            .chain(rest.iter())
            .map(|t| t.span_count)
            .sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn memory_bound_evicts_oldest() {
        let t0 = Instant::now();
        let one = rs("a", vec![("s", vec![span(1, 1)])]).encoded_len();
        let mut b = TraceBuffer::new(limits(100, one * 2 + one / 2));
        for i in 1..=3u8 {
            let ev = b.add(
                vec![rs("a", vec![("s", vec![span(i, i)])])],
                t0 + Duration::from_millis(i as u64),
            );
            if i < 3 {
                assert!(ev.is_empty());
            } else {
                assert_eq!(ids(&ev), vec![1]);
            }
        }
        assert_eq!(b.len(), 2);
        assert!(b.bytes() <= one * 2 + one / 2);
    }
}
