//! The `clockskew` processor: corrects span timestamps stamped by disagreeing clocks, in
//! the pipeline, so every backend receives consistent traces (Jaeger corrects only in its
//! query service, per trace, and silently).
//!
//! **Clock domains.** A span belongs to the clock of its node: the first resource
//! attribute of `clock_domain_attributes` it has (default `host.id`, `host.ip`,
//! `host.name`, `k8s.node.name`, `service.instance.id`; Jaeger uses the first three).
//! Spans whose resource has none of them are never shifted and give no evidence.
//!
//! **Evidence.** A synchronous edge (parent CLIENT → child SERVER) across domains bounds
//! δ = offset(child domain) − offset(parent domain) to `[parent.start − child.start,
//! parent.end − child.end]`: the child cannot start before, or end after, its parent.
//! These zero-latency bounds always contain the true offset, so they are intersected
//! rather than averaged (Marzullo's algorithm, outvoting a minority of contradicting
//! edges; see `clockskew/estimate.rs`). Any other cross-domain edge — PRODUCER → CONSUMER
//! above all — only says the child did not start before its parent: a consumer may start
//! long after its producer ended and is never pulled inside it. A child that outlasted its
//! CLIENT parent (a timeout) bounds the start only.
//!
//! **Estimation.** `estimator: per_trace` uses the trace's own edges. `cross_trace`
//! (default) also keeps every domain pair's bounds from the last `window` of traces (256
//! per pair at most), widened by 50 ppm of their age so slowly drifting clocks stay
//! covered while fresh evidence dominates. A pair's estimate is 0 when its evidence admits
//! 0 (consistent clocks are left alone), else the midpoint of the supported region
//! (symmetric latency). Each domain's offset relative to the trace's root domain is the
//! sum along the least uncertain chain of two-sided pair estimates, so a node linked to
//! the root only through other nodes is solved through them. A domain reached only by
//! one-sided (asynchronous) evidence gets the offset nearest 0 that this evidence allows
//! once its neighbours are corrected: a consumer moves only as far as needed to start
//! after its producer. Finally the offsets are projected onto the trace's own bounds:
//! after correction no synchronous child lies outside its parent and no consumer starts
//! before its producer, whatever the cross-trace estimate said. Spans of one domain all
//! move by the same amount, so their relative timing is kept exactly; start, end and
//! event timestamps move together.
//!
//! **Output.** Every shifted span gets `weft.clock_skew.adjustment_ns` (int: nanoseconds
//! added; accumulated over repeated passes), so the original timestamps stay recoverable.
//! A domain whose offset exceeds `max_adjustment` is left as it is and counted (so
//! `max_adjustment: 0` turns correction off, as in Jaeger).
//!
//! **Domain overrides and Debezium.** Some spans are stamped by another machine's clock
//! than their resource names. Debezium's outbox EventRouter creates a `db-log-write` span
//! (child of the span whose context the application wrote into the outbox row) whose
//! start is the database's commit time — the MySQL server's clock, truncated to the second
//! when binlogs lack GTIDs — while its resource is the Kafka Connect worker. Taken at face
//! value ("a child starts no earlier than its parent") it would drag the worker's clock by
//! up to a second plus the database's own skew. A rule fixes that:
//!
//! ```yaml
//! processors:
//!   clockskew:
//!     domain_overrides:
//!       - span_name: db-log-write       # match: exact span name, and/or
//!         attributes: {db.type: mysql}  #   attribute values (all must match)
//!         domain_attribute: db.server_id # the domain from a span attribute (Debezium
//!                                        # copies the binlog source block as db.*), or
//!         # domain: mysql-orders         # a fixed domain name
//!         coarse: true                   # its timestamps bound no offset
//! ```
//!
//! The first matching rule applies; a coarse span still moves with its domain.
//!
//! **Config** (keys and defaults): `decision_wait` (5s: a trace is corrected this long
//! after its last span arrived), `num_traces` (50000 traces held at most; also the number
//! of released traces whose reference domain is remembered for late spans),
//! `clock_domain_attributes` (above), `domain_overrides` (none), `max_adjustment` (1h),
//! `estimator` (`cross_trace` | `per_trace`, default `cross_trace`), `window` (5m). Spans
//! are also bounded by a memory estimate of [`MAX_BUFFER_BYTES`] encoded bytes.
//!
//! **Bad input.** Nothing is ever dropped. Spans with missing or inverted timestamps give
//! no evidence (and unset timestamps stay unset); contradicting evidence is outvoted and
//! the trace counted as inconsistent; when the buffer is full the oldest traces are
//! released uncorrected and counted. Logs and metrics pass through untouched.
//!
//! **Metrics** (label `component`): `weft_processor_clockskew_traces_total`,
//! `..._spans_adjusted_total`, `..._traces_uncorrected_total` (buffer full),
//! `..._traces_inconsistent_total`, `..._adjustments_over_max_total`, the histogram
//! `weft_processor_clockskew_adjustment_seconds{reference, domain}` (absolute offset per
//! domain pair and trace) and the gauge `weft_processor_clockskew_buffered_traces`.

pub mod domain;
pub mod estimate;
pub mod solve;
pub mod trace;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::admin::{Counter, Gauge, Histogram, Telemetry};
use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError, parse_component};
use crate::data::{Batch, ResourceSpans};
use crate::processors::trace_buffer::{BufferedTrace, Release, TraceBuffer, TraceBufferLimits};
use crate::processors::{Processor, ProcessorError};

pub use domain::DomainOverride;
use domain::Domains;
use estimate::{CrossTraceWindow, Estimate};
use solve::{Chained, Freedom};
pub use trace::ADJUSTMENT_ATTRIBUTE;

/// Memory bound of the trace buffer (protobuf-encoded size of the spans held).
pub const MAX_BUFFER_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    PerTrace,
    #[default]
    CrossTrace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockSkewConfig {
    pub decision_wait: Dur,
    pub num_traces: usize,
    pub clock_domain_attributes: Vec<String>,
    pub domain_overrides: Vec<DomainOverride>,
    pub max_adjustment: Dur,
    pub estimator: Estimator,
    pub window: Dur,
}

impl Default for ClockSkewConfig {
    fn default() -> Self {
        ClockSkewConfig {
            decision_wait: Dur::secs(5),
            num_traces: 50_000,
            clock_domain_attributes: [
                "host.id",
                "host.ip",
                "host.name",
                "k8s.node.name",
                "service.instance.id",
            ]
            .map(String::from)
            .to_vec(),
            domain_overrides: Vec::new(),
            max_adjustment: Dur::secs(3600),
            estimator: Estimator::CrossTrace,
            window: Dur::secs(300),
        }
    }
}

fn field_error(path: &[&str], message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        suggestion: None,
    }
}

/// Parses and checks a config.
pub fn parse(v: &Value) -> Result<ClockSkewConfig, FieldError> {
    let cfg: ClockSkewConfig = parse_component(v)?;
    if cfg.num_traces == 0 {
        return Err(field_error(&["num_traces"], "must be at least 1"));
    }
    if cfg.clock_domain_attributes.is_empty() {
        return Err(field_error(
            &["clock_domain_attributes"],
            "must name at least one resource attribute",
        ));
    }
    if cfg.estimator == Estimator::CrossTrace && cfg.window.get().is_zero() {
        return Err(field_error(
            &["window"],
            "must be positive with estimator cross_trace",
        ));
    }
    for (i, rule) in cfg.domain_overrides.iter().enumerate() {
        if let Some((key, message)) = rule.problem() {
            return Err(field_error(
                &["domain_overrides", &i.to_string(), key],
                message,
            ));
        }
    }
    Ok(cfg)
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    parse(v).map(|_| ())
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let cfg = parse(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    Ok(Box::new(ClockSkew::new(&cfg, &ctx.id, &ctx.telemetry)))
}

struct ClockSkewMetrics {
    traces: Counter,
    spans_adjusted: Counter,
    uncorrected: Counter,
    inconsistent: Counter,
    over_max: Counter,
    buffered: Gauge,
}

/// The processor state: the trace buffer, cross-trace evidence, remembered references.
pub struct ClockSkew {
    component: String,
    telemetry: Telemetry,
    domains: Domains,
    estimator: Estimator,
    max_adjustment_ns: u64,
    buffer: TraceBuffer,
    window: CrossTraceWindow,
    /// Reference domains of released traces, so late spans use the same one.
    recent: HashMap<Vec<u8>, Arc<str>>,
    recent_order: VecDeque<Vec<u8>>,
    recent_capacity: usize,
    metrics: ClockSkewMetrics,
    histograms: HashMap<(Arc<str>, Arc<str>), Histogram>,
    last_now: Option<Instant>,
}

impl ClockSkew {
    pub fn new(cfg: &ClockSkewConfig, component: &str, telemetry: &Telemetry) -> ClockSkew {
        let m = &telemetry.metrics;
        let l: &[(&str, &str)] = &[("component", component)];
        let name = |what: &str| format!("weft_processor_clockskew_{what}");
        ClockSkew {
            component: component.to_string(),
            telemetry: telemetry.clone(),
            domains: Domains::new(&cfg.clock_domain_attributes, &cfg.domain_overrides),
            estimator: cfg.estimator,
            max_adjustment_ns: u64::try_from(cfg.max_adjustment.get().as_nanos())
                .unwrap_or(u64::MAX),
            buffer: TraceBuffer::new(TraceBufferLimits {
                decision_wait: cfg.decision_wait.get(),
                max_traces: cfg.num_traces,
                max_bytes: MAX_BUFFER_BYTES,
            }),
            window: CrossTraceWindow::new(cfg.window.get().max(Duration::from_nanos(1))),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            recent_capacity: cfg.num_traces,
            metrics: ClockSkewMetrics {
                traces: m.counter(
                    &name("traces_total"),
                    "traces released by the clock-skew processor",
                    l,
                ),
                spans_adjusted: m.counter(
                    &name("spans_adjusted_total"),
                    "spans whose timestamps were shifted",
                    l,
                ),
                uncorrected: m.counter(
                    &name("traces_uncorrected_total"),
                    "traces released uncorrected because the trace buffer was full",
                    l,
                ),
                inconsistent: m.counter(
                    &name("traces_inconsistent_total"),
                    "traces whose edges contradicted each other or could not all be satisfied",
                    l,
                ),
                over_max: m.counter(
                    &name("adjustments_over_max_total"),
                    "domain offsets larger than max_adjustment, left uncorrected",
                    l,
                ),
                buffered: m.gauge(
                    &name("buffered_traces"),
                    "traces held by the clock-skew processor",
                    l,
                ),
            },
            histograms: HashMap::new(),
            last_now: None,
        }
    }

    fn observe(&mut self, reference: &Arc<str>, domain: &Arc<str>, offset_ns: i64) {
        let key = (reference.clone(), domain.clone());
        let h = self.histograms.entry(key).or_insert_with(|| {
            self.telemetry.metrics.histogram(
                "weft_processor_clockskew_adjustment_seconds",
                "absolute clock offset applied to a domain relative to the trace's root domain",
                &[
                    ("component", &self.component),
                    ("reference", reference),
                    ("domain", domain),
                ],
                &[1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 60.0, 3600.0],
            )
        });
        h.observe(offset_ns.unsigned_abs() as f64 / 1e9);
    }

    fn remember(&mut self, trace_id: &[u8], reference: &Arc<str>) {
        if self
            .recent
            .insert(trace_id.to_vec(), reference.clone())
            .is_none()
        {
            self.recent_order.push_back(trace_id.to_vec());
            while self.recent_order.len() > self.recent_capacity {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// Offsets before the projection: chained two-sided estimates (with their uncertainty)
    /// and, for every domain, the starting offset including one-sided evidence.
    fn initial_offsets(
        &mut self,
        view: &trace::TraceView,
        reference: usize,
        bounds: &[solve::PairBound],
        now: Instant,
    ) -> (Vec<Option<Chained>>, Vec<Option<i64>>) {
        let n = view.domains.len();
        let reference_name = view.domains[reference].clone();
        let mut chained: Vec<Option<Chained>> = vec![None; n];
        let mut one_sided: Vec<Option<i64>> = vec![None; n];
        match self.estimator {
            Estimator::CrossTrace => {
                for c in &view.constraints {
                    self.window
                        .add(&view.domains[c.a], &view.domains[c.b], c.iv, now);
                }
                let window = &mut self.window;
                let found = solve::chain_offsets(reference_name.clone(), &view.domains, |k| {
                    window
                        .neighbours(k)
                        .into_iter()
                        .filter_map(|other| window.estimate(k, &other, now).map(|e| (other, e)))
                        .collect()
                });
                for (d, name) in view.domains.iter().enumerate() {
                    chained[d] = found.get(name).copied();
                    one_sided[d] = chained[d].map(|c| c.offset);
                }
                let local: HashMap<&str, usize> = view
                    .domains
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (&**d, i))
                    .collect();
                let domains = &view.domains;
                solve::one_sided_offsets(&mut one_sided, |d| {
                    let name = &domains[d];
                    window
                        .neighbours(name)
                        .into_iter()
                        .filter_map(|other| {
                            let n = *local.get(&*other)?;
                            window.estimate(name, &other, now).map(|e| (n, e))
                        })
                        .collect()
                });
            }
            Estimator::PerTrace => {
                let mut adjacent: Vec<Vec<(usize, Estimate)>> = vec![Vec::new(); n];
                for p in bounds {
                    let e = Estimate::from_region(p.region);
                    adjacent[p.a].push((p.b, e));
                    adjacent[p.b].push((p.a, e.reversed()));
                }
                let all: Vec<usize> = (0..n).collect();
                let found = solve::chain_offsets(reference, &all, |k| adjacent[*k].clone());
                for d in 0..n {
                    chained[d] = found.get(&d).copied();
                    one_sided[d] = chained[d].map(|c| c.offset);
                }
                solve::one_sided_offsets(&mut one_sided, |d| adjacent[d].clone());
            }
        }

        (chained, one_sided)
    }

    /// Corrects one released trace and returns its fragments.
    fn correct(&mut self, trace: BufferedTrace, now: Instant) -> Vec<ResourceSpans> {
        self.metrics.traces.inc();
        let mut fragments = trace.resource_spans;
        let remembered = self.recent.get(&trace.trace_id).cloned();
        let view = trace::analyse(&fragments, &self.domains, remembered.as_ref());
        let Some(reference) = view.reference else {
            return fragments;
        };
        let reference_name = view.domains[reference].clone();
        self.remember(&trace.trace_id, &reference_name);
        let n = view.domains.len();
        if n < 2 {
            return fragments;
        }
        let (bounds, mut inconsistent) = solve::combine_pairs(&view.constraints);
        let (chained, one_sided) = self.initial_offsets(&view, reference, &bounds, now);

        let mut offsets: Vec<i64> = one_sided.iter().map(|o| o.unwrap_or(0)).collect();
        let mut freedom = vec![Freedom::Free; n];
        for (d, c) in chained.iter().enumerate() {
            if let Some(c) = c {
                freedom[d] = Freedom::Estimated(c.uncertainty);
            }
        }
        offsets[reference] = 0;
        freedom[reference] = Freedom::Pinned;
        let mut over_max = vec![false; n];
        for d in 0..n {
            if offsets[d].unsigned_abs() > self.max_adjustment_ns {
                offsets[d] = 0;
                freedom[d] = Freedom::Pinned;
                over_max[d] = true;
            }
        }
        let satisfied = solve::project(&mut offsets, &freedom, &bounds);
        for d in 0..n {
            if offsets[d].unsigned_abs() > self.max_adjustment_ns {
                offsets[d] = 0;
                over_max[d] = true;
            }
        }
        let any_over_max = over_max.iter().any(|o| *o);
        inconsistent |= !satisfied && !any_over_max;
        if inconsistent {
            self.metrics.inconsistent.inc();
        }
        self.metrics
            .over_max
            .add(over_max.iter().filter(|o| **o).count() as u64);

        let changed = trace::apply(&mut fragments, &view, &offsets);
        self.metrics.spans_adjusted.add(changed as u64);
        if changed > 0 {
            for (d, offset) in offsets.iter().enumerate() {
                if *offset != 0 {
                    self.observe(&reference_name, &view.domains[d], *offset);
                }
            }
        }
        fragments
    }

    fn release(&mut self, traces: Vec<BufferedTrace>, now: Instant, out: &mut Vec<ResourceSpans>) {
        for t in traces {
            if t.release == Release::Evicted {
                self.metrics.traces.inc();
                self.metrics.uncorrected.inc();
                out.extend(t.resource_spans);
            } else {
                let now = now.max(t.last_seen);
                out.extend(self.correct(t, now));
            }
        }
    }

    fn finish(&mut self, out: Vec<ResourceSpans>) -> Vec<Batch> {
        self.metrics.buffered.set(self.buffer.len() as i64);
        if out.is_empty() {
            Vec::new()
        } else {
            vec![Batch::Traces(out)]
        }
    }
}

impl Processor for ClockSkew {
    fn process(&mut self, batch: Batch, now: Instant) -> Result<Vec<Batch>, ProcessorError> {
        let Batch::Traces(resource_spans) = batch else {
            return Ok(vec![batch]);
        };
        self.last_now = Some(now);
        let mut out = Vec::new();
        let evicted = self.buffer.add(resource_spans, now);
        self.release(evicted, now, &mut out);
        let due = self.buffer.take_due(now);
        self.release(due, now, &mut out);
        Ok(self.finish(out))
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.buffer.next_deadline()
    }

    /// What `process` returns may be traces of earlier requests (evicted or due).
    fn keeps_context(&self) -> bool {
        false
    }

    fn on_deadline(&mut self, now: Instant) -> Vec<Batch> {
        self.last_now = Some(now);
        let mut out = Vec::new();
        let due = self.buffer.take_due(now);
        self.release(due, now, &mut out);
        self.finish(out)
    }

    fn flush(&mut self) -> Vec<Batch> {
        let mut out = Vec::new();
        let all = self.buffer.drain();
        // Without a clock of our own, "now" is the latest time we were told about.
        for t in all {
            let now = self.last_now.map_or(t.last_seen, |n| n.max(t.last_seen));
            self.release(vec![t], now, &mut out);
        }
        self.finish(out)
    }
}
