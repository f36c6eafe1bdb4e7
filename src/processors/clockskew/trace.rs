//! One buffered trace seen as clock domains: which domain stamped each span, the reference
//! (root) domain, the constraints its parent/child edges put on domain offsets, and the
//! shifting of timestamps once offsets are known.

use std::collections::HashMap;
use std::sync::Arc;

use super::domain::{Domains, SpanClock};
use super::estimate::Interval;
use super::solve::Constraint;
use crate::data::{ResourceSpans, Span, any_value, attr, set_attr, span::SpanKind};

/// The attribute recording what was added to a span's timestamps.
pub const ADJUSTMENT_ATTRIBUTE: &str = "weft.clock_skew.adjustment_ns";

/// Where a span sits in the fragments and which local domain stamped it.
#[derive(Clone, Copy, Debug)]
pub struct SpanSlot {
    pub fragment: usize,
    pub scope: usize,
    pub index: usize,
    /// Index into [`TraceView::domains`]; `None` for spans without a clock identity.
    pub domain: Option<usize>,
}

#[derive(Debug, Default)]
pub struct TraceView {
    pub domains: Vec<Arc<str>>,
    pub spans: Vec<SpanSlot>,
    /// The domain every offset is relative to.
    pub reference: Option<usize>,
    pub constraints: Vec<Constraint>,
}

/// How a parent/child edge between two domains bounds their offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// CLIENT → SERVER: the child ran inside its parent.
    Synchronous,
    /// Anything else (PRODUCER → CONSUMER above all): the child started no earlier.
    Causal,
}

pub fn edge_kind(parent: &Span, child: &Span) -> EdgeKind {
    if parent.kind == SpanKind::Client as i32 && child.kind == SpanKind::Server as i32 {
        EdgeKind::Synchronous
    } else {
        EdgeKind::Causal
    }
}

/// Bounds on δ = o_child − o_parent from one edge, with zero latency assumed (so the
/// true offset is always inside). `None` when timestamps are missing or inverted.
pub fn edge_bound(parent: &Span, child: &Span) -> Option<Interval> {
    let valid =
        |s: &Span| s.start_time_unix_nano > 0 && s.end_time_unix_nano >= s.start_time_unix_nano;
    if !valid(parent) || !valid(child) {
        return None;
    }
    let diff = |a: u64, b: u64| i64::try_from(a as i128 - b as i128).ok();
    let lo = diff(parent.start_time_unix_nano, child.start_time_unix_nano)?;
    match edge_kind(parent, child) {
        EdgeKind::Synchronous => {
            let hi = diff(parent.end_time_unix_nano, child.end_time_unix_nano)?;
            // A child outlasting its parent (client timeout) bounds the start only.
            Some(if lo <= hi {
                Interval::new(lo, hi)
            } else {
                Interval::at_least(lo)
            })
        }
        EdgeKind::Causal => Some(Interval::at_least(lo)),
    }
}

fn span_at<'a>(fragments: &'a [ResourceSpans], s: &SpanSlot) -> &'a Span {
    &fragments[s.fragment].scope_spans[s.scope].spans[s.index]
}

fn is_root(span: &Span) -> bool {
    span.parent_span_id.iter().all(|b| *b == 0)
}

/// Reads a buffered trace. `remembered` is the reference domain used for earlier parts of
/// the same trace (a late fragment is corrected relative to the same domain).
pub fn analyse(
    fragments: &[ResourceSpans],
    rules: &Domains,
    remembered: Option<&Arc<str>>,
) -> TraceView {
    let mut view = TraceView::default();
    let mut domain_index: HashMap<Arc<str>, usize> = HashMap::new();
    let mut local = |d: &Arc<str>, view: &mut TraceView| -> usize {
        *domain_index.entry(d.clone()).or_insert_with(|| {
            view.domains.push(d.clone());
            view.domains.len() - 1
        })
    };
    let mut coarse: Vec<bool> = Vec::new();
    for (f, rs) in fragments.iter().enumerate() {
        let resource_domain = rules.of_resource(rs.resource.as_ref());
        for (s, scope) in rs.scope_spans.iter().enumerate() {
            for (i, span) in scope.spans.iter().enumerate() {
                let SpanClock { domain, coarse: c } = rules.of_span(span, &resource_domain);
                let domain = domain.map(|d| local(&d, &mut view));
                view.spans.push(SpanSlot {
                    fragment: f,
                    scope: s,
                    index: i,
                    domain,
                });
                coarse.push(c);
            }
        }
    }

    let mut by_id: HashMap<&[u8], usize> = HashMap::with_capacity(view.spans.len());
    for (n, slot) in view.spans.iter().enumerate() {
        by_id
            .entry(span_at(fragments, slot).span_id.as_slice())
            .or_insert(n);
    }

    // Reference: a remembered domain, else the root span's, else an orphan's, else any
    // span's; earliest start first, spans with coarse clocks last.
    view.reference = match remembered {
        Some(d) => Some(local(d, &mut view)),
        None => view
            .spans
            .iter()
            .enumerate()
            .filter_map(|(n, slot)| {
                let span = span_at(fragments, slot);
                let tier = if is_root(span) {
                    0
                } else if !by_id.contains_key(span.parent_span_id.as_slice()) {
                    1
                } else {
                    2
                };
                let tier = tier + if coarse[n] { 3 } else { 0 };
                slot.domain.map(|d| ((tier, span.start_time_unix_nano), d))
            })
            .min_by_key(|(key, _)| *key)
            .map(|(_, d)| d),
    };

    for (n, slot) in view.spans.iter().enumerate() {
        let child = span_at(fragments, slot);
        if is_root(child) || coarse[n] {
            continue;
        }
        let Some(&p) = by_id.get(child.parent_span_id.as_slice()) else {
            continue;
        };
        let parent_slot = &view.spans[p];
        let (Some(a), Some(b)) = (parent_slot.domain, slot.domain) else {
            continue;
        };
        if a == b || coarse[p] {
            continue;
        }
        if let Some(iv) = edge_bound(span_at(fragments, parent_slot), child) {
            view.constraints.push(Constraint { a, b, iv });
        }
    }
    view
}

/// Adds `offsets[domain]` to every timestamp of every span of that domain and records it
/// in [`ADJUSTMENT_ATTRIBUTE`] (accumulated if an earlier pass already shifted the span).
/// Returns the number of spans changed.
pub fn apply(fragments: &mut [ResourceSpans], view: &TraceView, offsets: &[i64]) -> usize {
    let mut changed = 0;
    for slot in &view.spans {
        let Some(by) = slot.domain.map(|d| offsets[d]).filter(|o| *o != 0) else {
            continue;
        };
        let span = &mut fragments[slot.fragment].scope_spans[slot.scope].spans[slot.index];
        span.start_time_unix_nano = shift(span.start_time_unix_nano, by);
        span.end_time_unix_nano = shift(span.end_time_unix_nano, by);
        for event in &mut span.events {
            event.time_unix_nano = shift(event.time_unix_nano, by);
        }
        let previous = match attr(&span.attributes, ADJUSTMENT_ATTRIBUTE) {
            Some(any_value::Value::IntValue(v)) => *v,
            _ => 0,
        };
        set_attr(
            &mut span.attributes,
            ADJUSTMENT_ATTRIBUTE,
            any_value::Value::IntValue(previous.saturating_add(by)),
        );
        changed += 1;
    }
    changed
}

/// Unset (0) timestamps stay unset; a shift that would leave the u64 range is not made.
fn shift(t: u64, by: i64) -> u64 {
    if t == 0 {
        return 0;
    }
    t.checked_add_signed(by).unwrap_or(t)
}
