//! The `stitch` processor: repairs traces broken at asynchronous hops (transactional
//! outbox → CDC → Kafka → consumer) by pairing a producer-side span with the consumer-side
//! span of the same message, matched on a correlation key taken from span attributes.
//!
//! ```yaml
//! processors:
//!   stitch:
//!     window: 60s          # how far apart producer and consumer may arrive (at most 24h)
//!     max_pending: 100000  # bound on held spans, held log records, producer index, remap table
//!     mode: merge          # or: link
//!     rules:               # default: message-id and kafka-offset (below)
//!       - name: outbox
//!         producer: {span_kind: [producer, client, internal], attributes: [outbox.event_id]}
//!         consumer: {span_kind: [consumer, server], attributes: [messaging.message.id]}
//!       - name: kafka-offset
//!         producer: {span_kind: [producer], attributes: [messaging.destination.name, messaging.destination.partition.id, messaging.kafka.offset]}
//!         consumer: {span_kind: [consumer], attributes: [messaging.destination.name, messaging.destination.partition.id, messaging.kafka.offset]}
//! ```
//!
//! Without `rules` two rules from the OpenTelemetry messaging semantic conventions apply:
//! `message-id` (`messaging.message.id`, producer → consumer) and `kafka-offset` (as above).
//! `span_kind` defaults to `[producer]` / `[consumer]`; `[]` means any kind. A side matches
//! a span of one of its kinds that has every listed span attribute (non-empty); values are
//! compared as text, in order, so an offset recorded as an int on one side and a string on
//! the other still matches. Both sides must list the same number of attributes.
//!
//! **merge** (traces): the consumer's whole trace is rewritten into the producer's trace id
//! and its root gets the producer span as parent (flagged remote); every rewritten span
//! carries `weft.stitch.rule` and `weft.stitch.original_trace_id`. To rewrite *every* span
//! of a trace, whichever batch it arrives in, a trace is held (grouped by trace id) until
//! it is settled: released as it is once its root span (no parent) has arrived and none of
//! its spans is a consumer; held while a consumer waits for its producer; merged as soon as
//! the producer is known and the root has arrived (and, for a two-hop chain, once the
//! producer's own trace has settled, so order → payment → notification ends in one trace
//! id). Nothing is held longer than
//! `window` after the first span of its trace arrived; then it is released unchanged and
//! counted as unmatched. Spans of a trace already settled pass at once (rewritten if it
//! was merged). Consequences, on purpose: traces whose root never reaches this weft wait
//! `window`, so run `stitch` where whole traces arrive (a gateway), not in a per-node agent
//! that sees one service. A consumer span whose parent is flagged remote (OTLP span flags:
//! context was propagated) is left alone, as is a consumer whose producer is in its own
//! trace. A consumer whose trace has no root by the end of the window is left alone too.
//! One message consumed by several services, or consumed twice, joins every consumer trace
//! (a producer stays matchable for `window`; the first producer of a key wins). If one
//! consumer trace matches producers in several traces, it merges into the first and its
//! other consumer spans get span links. Links in any span pointing to a merged trace are
//! rewritten too.
//!
//! **link** (traces): trace ids stay; a consumer span is held (at most `window`) until its
//! producer is known and then gains a span link to it with attribute `weft.stitch.rule`.
//!
//! **Logs, and the state shared by processor id.** List the same processor id in a logs
//! pipeline: that instance applies the remap table the traces instance keeps. The table is
//! the one deliberate piece of cross-pipeline state: built once per processor id into
//! `BuildContext::shared` under `stitch/<id>` (see [`remap`]), it records for each settled
//! trace whether it was merged (and into what) or left unchanged, bounded by `max_pending`
//! entries of each kind, with a TTL of `2 × window` from settling (a producer may be
//! matched up to `window` after the hop it belongs to was merged, so its merge must outlive
//! that). In a
//! logs pipeline a record whose trace was merged is rewritten to the producer's trace id
//! (and carries the two attributes); a record whose trace is not settled yet waits, at most
//! `window` (the table is re-read at least every second while records wait); a record of a
//! merged trace arriving after the TTL passes unchanged and is counted as late. Records
//! without a trace id, with the W3C sampled flag unset (their spans never come), in link
//! mode, or when no traces pipeline lists the processor, pass at once. Matching producers
//! with consumers happens within one traces pipeline; several traces pipelines listing the
//! same id share only the table.
//!
//! Bad input: spans or records with ids of the wrong length pass unchanged; nothing is
//! ever dropped or refused. When held spans (or held log records) exceed `max_pending`,
//! the oldest held trace is released at once as if its window had ended, and counted.
//!
//! Metrics (`component`, `rule` labels): `weft_processor_stitch_matched_total`,
//! `..._merged_spans_total`, `..._links_added_total`, `..._unmatched_expired_total`,
//! `..._remapped_log_records_total`, `..._late_log_records_total`, `..._overflow_total`
//! (consumers released early, producers or merges forgotten early); per component
//! `weft_processor_stitch_overflow_spans_total`, `..._overflow_log_records_total` and the
//! gauges `weft_processor_stitch_held_spans` / `..._held_log_records`.

mod held;
mod link;
mod logs;
mod merge;
pub mod remap;
pub mod rules;
mod ttl;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_logs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::admin::{Counter, Gauge, Telemetry};
use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError, parse_component};
use crate::data::{AnyValue, KeyValue, Signal, Span, hex, span, string_value};
use crate::processors::Processor;

use remap::{FateTable, Seen, StitchShared};
use rules::{
    FLAG_HAS_IS_REMOTE, FLAG_IS_REMOTE, Key, Producer, ProducerIndex, RuleConfig, Rules, SpanId,
    TraceId,
};

pub(crate) const ATTR_RULE: &str = "weft.stitch.rule";
pub(crate) const ATTR_ORIGINAL_TRACE_ID: &str = "weft.stitch.original_trace_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Merge,
    Link,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StitchConfig {
    #[serde(default = "default_window")]
    pub window: Dur,
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "rules::default_rules")]
    pub rules: Vec<RuleConfig>,
}

/// Keeps every `Instant + 4 × window` far from overflow.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

fn default_window() -> Dur {
    Dur::secs(60)
}

fn default_max_pending() -> usize {
    100_000
}

impl Default for StitchConfig {
    fn default() -> Self {
        StitchConfig {
            window: default_window(),
            max_pending: default_max_pending(),
            mode: Mode::Merge,
            rules: rules::default_rules(),
        }
    }
}

fn parse(v: &Value) -> Result<StitchConfig, FieldError> {
    let c: StitchConfig = parse_component(v)?;
    let err = |path: Vec<String>, message: String| FieldError {
        path,
        message,
        suggestion: None,
    };
    if c.window.get().is_zero() || c.window.get() > MAX_WINDOW {
        return Err(err(
            vec!["window".into()],
            "window must be greater than zero and at most 24h".into(),
        ));
    }
    if c.max_pending == 0 {
        return Err(err(
            vec!["max_pending".into()],
            "max_pending must be greater than zero".into(),
        ));
    }
    rules::check_rules(&c.rules).map_err(|(path, message)| err(path, message))?;
    Ok(c)
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    parse(v).map(|_| ())
}

/// Builds the instance for the pipeline's signal (`ctx.signal`; none is taken as traces).
/// Instances of one id share the remap table through `ctx.shared`.
pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let c = parse(v).map_err(|e| {
        let path = e.path.join(".");
        BuildError::new(&ctx.id, format!("{path}: {}", e.message))
    })?;
    let window = c.window.get();
    let shared = ctx.shared.get_or_insert(&format!("stitch/{}", ctx.id), || {
        StitchShared::new(window * 2, c.max_pending)
    });
    build_with(&c, &ctx.id, ctx.signal, &ctx.telemetry, shared)
}

pub(crate) fn build_with(
    c: &StitchConfig,
    id: &str,
    signal: Option<Signal>,
    telemetry: &Telemetry,
    shared: Arc<StitchShared>,
) -> Result<Box<dyn Processor>, BuildError> {
    let rules = Arc::new(Rules::compile(&c.rules));
    let metrics = Arc::new(StitchMetrics::new(telemetry, id, &rules));
    let window = c.window.get();
    let base = Base {
        rules,
        metrics,
        window,
        max_pending: c.max_pending,
        producers: ProducerIndex::new(window, c.max_pending),
        last_now: None,
    };
    match (signal.unwrap_or(Signal::Traces), c.mode) {
        (Signal::Traces, Mode::Merge) => {
            shared.attach_traces();
            Ok(Box::new(merge::MergeTraces::new(base, shared)))
        }
        (Signal::Traces, Mode::Link) => {
            shared.attach_traces();
            Ok(Box::new(link::LinkTraces::new(base)))
        }
        (Signal::Logs, mode) => Ok(Box::new(logs::StitchLogs::new(base, shared, mode))),
        (Signal::Metrics, _) => Err(BuildError::new(
            id,
            "stitch works in traces and logs pipelines, not metrics",
        )),
    }
}

/// What every instance has.
pub(crate) struct Base {
    pub rules: Arc<Rules>,
    pub metrics: Arc<StitchMetrics>,
    pub window: Duration,
    pub max_pending: usize,
    pub producers: ProducerIndex,
    /// The last time passed in, for `flush` (which gets none).
    pub last_now: Option<Instant>,
}

impl Base {
    /// Records `span` in the producer index under each rule it is a producer of; returns
    /// the keys seen for the first time.
    pub fn index_producers(&mut self, span: &Span, trace: TraceId, now: Instant) -> Vec<Key> {
        let keys = self.rules.producer_keys(span);
        let Some(sid) = rules::span_id(&span.span_id) else {
            return Vec::new();
        };
        let mut new = Vec::new();
        for k in keys {
            let p = Producer {
                trace,
                span: sid,
                trace_flags: span.flags & 0xff,
            };
            let (is_new, evicted) = self.producers.insert(k.clone(), p, now);
            if let Some(r) = evicted {
                self.metrics.rule(r, |m| &m.overflow, 1);
            }
            if is_new {
                new.push(k);
            }
        }
        new
    }
}

/// Counters of one rule.
pub(crate) struct RuleCounters {
    pub matched: Counter,
    pub merged_spans: Counter,
    pub links_added: Counter,
    pub unmatched_expired: Counter,
    pub remapped_log_records: Counter,
    pub late_log_records: Counter,
    pub overflow: Counter,
}

pub(crate) struct StitchMetrics {
    rules: Vec<RuleCounters>,
    pub overflow_spans: Counter,
    pub overflow_log_records: Counter,
    pub held_spans: Gauge,
    pub held_log_records: Gauge,
}

impl StitchMetrics {
    fn new(t: &Telemetry, id: &str, rules: &Rules) -> StitchMetrics {
        let m = &t.metrics;
        let per_rule = |rule: &str| {
            let l: &[(&str, &str)] = &[("component", id), ("rule", rule)];
            let c = |what: &str, help: &str| {
                m.counter(&format!("weft_processor_stitch_{what}_total"), help, l)
            };
            RuleCounters {
                matched: c("matched", "consumers joined to their producer"),
                merged_spans: c("merged_spans", "spans rewritten into the producer's trace"),
                links_added: c("links_added", "span links added from consumer to producer"),
                unmatched_expired: c(
                    "unmatched_expired",
                    "consumers released unchanged after the window without a producer",
                ),
                remapped_log_records: c(
                    "remapped_log_records",
                    "log records rewritten to the producer's trace id",
                ),
                late_log_records: c(
                    "late_log_records",
                    "log records of a merged trace that arrived after the remap TTL",
                ),
                overflow: c(
                    "overflow",
                    "consumers, producers or merges released or forgotten early (max_pending)",
                ),
            }
        };
        let l: &[(&str, &str)] = &[("component", id)];
        StitchMetrics {
            rules: rules.names().map(per_rule).collect(),
            overflow_spans: m.counter(
                "weft_processor_stitch_overflow_spans_total",
                "held spans released early because max_pending was reached",
                l,
            ),
            overflow_log_records: m.counter(
                "weft_processor_stitch_overflow_log_records_total",
                "held log records released early because max_pending was reached",
                l,
            ),
            held_spans: m.gauge("weft_processor_stitch_held_spans", "spans held", l),
            held_log_records: m.gauge(
                "weft_processor_stitch_held_log_records",
                "log records held waiting for their trace to settle",
                l,
            ),
        }
    }

    /// Adds `n` to one counter of rule `rule`.
    pub fn rule(&self, rule: usize, which: impl Fn(&RuleCounters) -> &Counter, n: u64) {
        if let Some(r) = self.rules.get(rule) {
            which(r).add(n);
        }
    }
}

fn set_if_absent(attrs: &mut Vec<KeyValue>, key: &str, value: String) {
    if !attrs.iter().any(|kv| kv.key == key) {
        attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(string_value(value)),
            }),
            ..Default::default()
        });
    }
}

/// Moves a span of trace `original` into `target`; a root span (no parent) gets the
/// producer span as its (remote) parent. Marks already present from an earlier hop or
/// another weft are kept, so `original_trace_id` stays the very first one.
pub(crate) fn rewrite_span(
    s: &mut Span,
    original: &TraceId,
    target: TraceId,
    producer_span: SpanId,
    rule: &str,
) {
    s.trace_id = target.to_vec();
    if s.parent_span_id.is_empty() {
        s.parent_span_id = producer_span.to_vec();
        s.flags |= FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE;
    }
    set_if_absent(&mut s.attributes, ATTR_RULE, rule.to_string());
    set_if_absent(&mut s.attributes, ATTR_ORIGINAL_TRACE_ID, hex(original));
}

/// Points links at merged traces to where those traces went.
pub(crate) fn rewrite_links(s: &mut Span, fates: &FateTable, now: Instant) {
    for l in s.links.iter_mut() {
        if let Some(t) = rules::trace_id(&l.trace_id)
            && let Seen::Remapped { target, .. } = fates.lookup(&t, now)
        {
            l.trace_id = target.to_vec();
        }
    }
}

/// Adds a link to the producer span (once); returns whether it was added.
pub(crate) fn add_link(s: &mut Span, trace: TraceId, p: &Producer, rule: &str) -> bool {
    if s.links
        .iter()
        .any(|l| l.span_id == p.span && l.trace_id == trace)
    {
        return false;
    }
    s.links.push(span::Link {
        trace_id: trace.to_vec(),
        span_id: p.span.to_vec(),
        trace_state: String::new(),
        attributes: vec![KeyValue {
            key: ATTR_RULE.into(),
            value: Some(AnyValue {
                value: Some(string_value(rule)),
            }),
            ..Default::default()
        }],
        dropped_attributes_count: 0,
        flags: p.trace_flags | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE,
    });
    true
}
