//! The `filter` processor: drops spans, span events, log records, metrics and metric data
//! points that match any of its OTTL conditions, as the Collector's filterprocessor does
//! (Kubernetes health probes, for example, create spans by the thousand).
//!
//! Config (the Collector's keys; every list is ORed — an item matching any condition is
//! dropped):
//! - `error_mode`: `ignore` (default), `propagate` or `silent`. The default follows the
//!   Collector, which made `ignore` its permanent default when it promoted the
//!   `processor.filter.defaultErrorModeIgnore` gate to stable (contrib PR #49668).
//! - The per-context form: `traces: {resource, span, spanevent}`,
//!   `logs: {resource, log_record}`, `metrics: {resource, metric, datapoint}`, each a list
//!   of conditions whose paths may omit the context prefix (`attributes["http.route"]`) or
//!   carry it (`span.attributes["http.route"]`).
//! - The newer flat form (Collector v0.146+): `trace_conditions`, `log_conditions`,
//!   `metric_conditions`. Each entry is a condition whose context is inferred from its path
//!   prefixes (`span.name == "x"` runs per span, `spanevent.name == "x"` per span event,
//!   `resource.attributes[..]` per resource; every path needs a prefix), or a group
//!   `{context: span, conditions: [...], error_mode: ...}` whose `error_mode` overrides
//!   the top-level one for its conditions.
//! - The legacy `include`/`exclude` match properties (`spans:`, `logs.include`, ...) are not
//!   supported: they are a config error that says to write OTTL conditions instead.
//!
//! The condition language is the subset documented in [`super::ottl`]; an unsupported
//! function, path or enum, a bad regex or a syntax error is a config error naming it, at the
//! key path of the condition (e.g. `traces.span.0`).
//!
//! Behaviour: conditions run from the outside in — resource, scope, then span / log record /
//! metric, then span event / data point — and a dropped parent is never looked into. Empty
//! scopes and resources are removed; a metric whose data points were all dropped is
//! dropped. Dropped items are counted in `weft_processor_dropped_<spans|log_records|
//! metric_points>_total{component}`, span events in
//! `weft_processor_dropped_span_events_total{component}`.
//!
//! Bad input: a condition that fails to evaluate (e.g. `HasPrefix` of a non-string) is, per
//! `error_mode`, skipped with one warning per batch (`ignore`), skipped quietly (`silent`),
//! or fails the whole batch (`propagate`: the receiver answers the client with an error).

mod apply;

use serde::Deserialize;
use serde_json::Value;

use crate::admin::{ComponentCounters, Counter, Telemetry};
use crate::components::{BuildContext, BuildError};
use crate::config::{FieldError, parse_component, suggest};
use crate::data::{Batch, Signal};
use crate::processors::ottl::{Condition, Context, ContextSpec};
use crate::processors::{Processor, ProcessorError};

/// What a condition that fails to evaluate means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorMode {
    Ignore,
    Propagate,
    Silent,
}

pub const DEFAULT_ERROR_MODE: ErrorMode = ErrorMode::Ignore;

impl ErrorMode {
    fn parse(v: &Value, path: Vec<String>) -> Result<ErrorMode, FieldError> {
        let s = v.as_str().unwrap_or_default().to_ascii_lowercase();
        match s.as_str() {
            "ignore" => Ok(ErrorMode::Ignore),
            "propagate" => Ok(ErrorMode::Propagate),
            "silent" => Ok(ErrorMode::Silent),
            _ => Err(FieldError {
                path,
                message: format!("unknown error_mode {v}, expected ignore, propagate or silent"),
                suggestion: suggest(&s, ["ignore", "propagate", "silent"]),
            }),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FilterConfig {
    error_mode: Option<Value>,
    traces: TraceFilters,
    logs: LogFilters,
    metrics: MetricFilters,
    trace_conditions: Vec<Value>,
    log_conditions: Vec<Value>,
    metric_conditions: Vec<Value>,
    /// Legacy include/exclude form: refused with a message.
    spans: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TraceFilters {
    resource: Vec<String>,
    span: Vec<String>,
    spanevent: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LogFilters {
    resource: Vec<String>,
    log_record: Vec<String>,
    include: Option<Value>,
    exclude: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MetricFilters {
    resource: Vec<String>,
    metric: Vec<String>,
    datapoint: Vec<String>,
    include: Option<Value>,
    exclude: Option<Value>,
    regexp: Option<Value>,
}

/// One compiled condition with its error mode and config key (for messages).
pub(crate) struct Rule {
    pub cond: Condition,
    pub mode: ErrorMode,
    pub key: String,
}

/// The conditions of one signal by level: resource, scope, item (span / log record /
/// metric) and sub-item (span event / data point).
#[derive(Default)]
pub(crate) struct SignalRules {
    pub resource: Vec<Rule>,
    pub scope: Vec<Rule>,
    pub item: Vec<Rule>,
    pub sub: Vec<Rule>,
}

impl SignalRules {
    fn is_empty(&self) -> bool {
        self.resource.is_empty()
            && self.scope.is_empty()
            && self.item.is_empty()
            && self.sub.is_empty()
    }

    fn add(&mut self, rule: Rule) {
        match rule.cond.context() {
            Context::Resource => self.resource.push(rule),
            Context::Scope => self.scope.push(rule),
            Context::Span | Context::Log | Context::Metric => self.item.push(rule),
            Context::SpanEvent | Context::DataPoint => self.sub.push(rule),
        }
    }
}

#[derive(Default)]
pub(crate) struct Rules {
    pub traces: SignalRules,
    pub logs: SignalRules,
    pub metrics: SignalRules,
}

impl Rules {
    fn of(&self, signal: Signal) -> &SignalRules {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }
}

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn legacy_form(key: &[&str]) -> FieldError {
    FieldError {
        path: path(key),
        message: "the legacy include/exclude form of the filter processor is not supported; \
                  write OTTL conditions instead, e.g. traces: {span: ['attributes[\"http.route\"] \
                  == \"/health/live\"']}"
            .into(),
        suggestion: None,
    }
}

fn compile_one(
    text: &str,
    spec: ContextSpec,
    mode: ErrorMode,
    key: Vec<String>,
) -> Result<Rule, FieldError> {
    match Condition::parse(text, spec) {
        Ok(cond) => Ok(Rule {
            cond,
            mode,
            key: key.join("."),
        }),
        Err(e) => Err(FieldError {
            suggestion: e.suggestion().map(str::to_string),
            message: format!("invalid condition {text:?}: {e}"),
            path: key,
        }),
    }
}

fn compile_list(
    out: &mut SignalRules,
    list: &[String],
    ctx: Context,
    mode: ErrorMode,
    key: &[&str],
) -> Result<(), FieldError> {
    for (i, text) in list.iter().enumerate() {
        let mut p = path(key);
        p.push(i.to_string());
        out.add(compile_one(text, ContextSpec::Fixed(ctx), mode, p)?);
    }
    Ok(())
}

/// `trace_conditions` and friends: strings (context inferred) or groups.
fn compile_flat(
    out: &mut SignalRules,
    list: &[Value],
    signal: Signal,
    default_mode: ErrorMode,
    key: &str,
) -> Result<(), FieldError> {
    for (i, entry) in list.iter().enumerate() {
        let at = |rest: &[&str]| {
            let mut p = vec![key.to_string(), i.to_string()];
            p.extend(rest.iter().map(|s| s.to_string()));
            p
        };
        match entry {
            Value::String(text) => {
                out.add(compile_one(
                    text,
                    ContextSpec::Infer(signal),
                    default_mode,
                    at(&[]),
                )?);
            }
            Value::Object(m) => {
                const KEYS: [&str; 3] = ["context", "conditions", "error_mode"];
                if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
                    return Err(FieldError {
                        path: at(&[k]),
                        message: format!(
                            "unknown field `{k}`, expected one of `context`, `conditions`, `error_mode`"
                        ),
                        suggestion: suggest(k, KEYS),
                    });
                }
                let mode = match m.get("error_mode") {
                    None | Some(Value::Null) => default_mode,
                    Some(v) => ErrorMode::parse(v, at(&["error_mode"]))?,
                };
                let spec = match m.get("context") {
                    None | Some(Value::Null) => ContextSpec::Infer(signal),
                    Some(v) => {
                        let allowed = Context::of_signal(signal);
                        let name = v.as_str().unwrap_or_default().to_ascii_lowercase();
                        match Context::parse(&name).filter(|c| allowed.contains(c)) {
                            Some(c) => ContextSpec::Fixed(c),
                            None => {
                                let names: Vec<&str> = allowed.iter().map(|c| c.name()).collect();
                                return Err(FieldError {
                                    path: at(&["context"]),
                                    message: format!(
                                        "unknown context {v} for {key}, expected one of {}",
                                        names.join(", ")
                                    ),
                                    suggestion: suggest(&name, names.iter().copied()),
                                });
                            }
                        }
                    }
                };
                let conditions = match m.get("conditions") {
                    Some(Value::Array(a)) if !a.is_empty() => a,
                    _ => {
                        return Err(FieldError {
                            path: at(&["conditions"]),
                            message: "a condition group needs a non-empty `conditions` list".into(),
                            suggestion: None,
                        });
                    }
                };
                for (j, c) in conditions.iter().enumerate() {
                    let j = j.to_string();
                    let Some(text) = c.as_str() else {
                        return Err(FieldError {
                            path: at(&["conditions", &j]),
                            message: "a condition must be a string".into(),
                            suggestion: None,
                        });
                    };
                    out.add(compile_one(text, spec, mode, at(&["conditions", &j]))?);
                }
            }
            _ => {
                return Err(FieldError {
                    path: at(&[]),
                    message:
                        "expected a condition string or a group {context, conditions, error_mode}"
                            .into(),
                    suggestion: None,
                });
            }
        }
    }
    Ok(())
}

/// Parses and compiles the whole config (every signal, whatever the pipeline).
pub(crate) fn compile(v: &Value) -> Result<(Rules, ErrorMode), FieldError> {
    let c: FilterConfig = parse_component(v)?;
    if c.spans.is_some() {
        return Err(legacy_form(&["spans"]));
    }
    for (present, key) in [
        (c.logs.include.is_some(), ["logs", "include"]),
        (c.logs.exclude.is_some(), ["logs", "exclude"]),
        (c.metrics.include.is_some(), ["metrics", "include"]),
        (c.metrics.exclude.is_some(), ["metrics", "exclude"]),
        (c.metrics.regexp.is_some(), ["metrics", "regexp"]),
    ] {
        if present {
            return Err(legacy_form(&key));
        }
    }
    let mode = match &c.error_mode {
        None | Some(Value::Null) => DEFAULT_ERROR_MODE,
        Some(v) => ErrorMode::parse(v, path(&["error_mode"]))?,
    };
    let mut r = Rules::default();
    compile_list(
        &mut r.traces,
        &c.traces.resource,
        Context::Resource,
        mode,
        &["traces", "resource"],
    )?;
    compile_list(
        &mut r.traces,
        &c.traces.span,
        Context::Span,
        mode,
        &["traces", "span"],
    )?;
    compile_list(
        &mut r.traces,
        &c.traces.spanevent,
        Context::SpanEvent,
        mode,
        &["traces", "spanevent"],
    )?;
    compile_list(
        &mut r.logs,
        &c.logs.resource,
        Context::Resource,
        mode,
        &["logs", "resource"],
    )?;
    compile_list(
        &mut r.logs,
        &c.logs.log_record,
        Context::Log,
        mode,
        &["logs", "log_record"],
    )?;
    compile_list(
        &mut r.metrics,
        &c.metrics.resource,
        Context::Resource,
        mode,
        &["metrics", "resource"],
    )?;
    compile_list(
        &mut r.metrics,
        &c.metrics.metric,
        Context::Metric,
        mode,
        &["metrics", "metric"],
    )?;
    compile_list(
        &mut r.metrics,
        &c.metrics.datapoint,
        Context::DataPoint,
        mode,
        &["metrics", "datapoint"],
    )?;
    compile_flat(
        &mut r.traces,
        &c.trace_conditions,
        Signal::Traces,
        mode,
        "trace_conditions",
    )?;
    compile_flat(
        &mut r.logs,
        &c.log_conditions,
        Signal::Logs,
        mode,
        "log_conditions",
    )?;
    compile_flat(
        &mut r.metrics,
        &c.metric_conditions,
        Signal::Metrics,
        mode,
        "metric_conditions",
    )?;
    Ok((r, mode))
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    compile(v).map(|_| ())
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let (rules, _) = compile(v)
        .map_err(|e| BuildError::new(&ctx.id, format!("{}: {}", e.path.join("."), e.message)))?;
    Ok(Box::new(Filter::new(
        rules,
        ctx.id.clone(),
        ctx.signal,
        ctx.telemetry.clone(),
    )))
}

/// The processor: compiled rules plus drop counters.
pub struct Filter {
    rules: Rules,
    id: String,
    signal: Option<Signal>,
    telemetry: Telemetry,
    dropped: [Option<Counter>; 3],
    dropped_events: Counter,
}

impl Filter {
    pub(crate) fn new(
        rules: Rules,
        id: String,
        signal: Option<Signal>,
        telemetry: Telemetry,
    ) -> Filter {
        let dropped_events = telemetry.metrics.counter(
            "weft_processor_dropped_span_events_total",
            "span events dropped by the processor",
            &[("component", &id)],
        );
        let mut f = Filter {
            rules,
            id,
            signal,
            telemetry,
            dropped: [None, None, None],
            dropped_events,
        };
        if let Some(s) = signal {
            f.dropped_counter(s);
        }
        f
    }

    fn dropped_counter(&mut self, signal: Signal) -> &Counter {
        let slot = usize::from(signal.tag() - 1);
        let (telemetry, id) = (&self.telemetry, &self.id);
        self.dropped[slot].get_or_insert_with(|| {
            ComponentCounters::new(telemetry, "processor", id, signal).dropped
        })
    }
}

impl Processor for Filter {
    fn process(
        &mut self,
        batch: Batch,
        _now: std::time::Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        let signal = batch.signal();
        let rules = self.rules.of(signal);
        if rules.is_empty() {
            return Ok(vec![batch]);
        }
        let mut batch = super::decoded(batch)?;
        let mut errors = apply::Errors::default();
        let outcome = match &mut batch {
            Batch::Raw(_) => Ok(Default::default()),
            Batch::Traces(v) => apply::traces(rules, v, &mut errors),
            Batch::Logs(v) => apply::logs(rules, v, &mut errors),
            Batch::Metrics(v) => apply::metrics(rules, v, &mut errors),
        };
        let dropped = outcome.map_err(|e| ProcessorError::Invalid(format!("{}: {e}", self.id)))?;
        if errors.count > 0 {
            tracing::warn!(
                component = %self.id,
                errors = errors.count,
                first = errors.first.as_deref().unwrap_or_default(),
                "filter conditions failed to evaluate and were skipped (error_mode: ignore)"
            );
        }
        if dropped.items > 0 {
            self.dropped_counter(signal).add(dropped.items as u64);
        }
        if dropped.events > 0 {
            self.dropped_events.add(dropped.events as u64);
        }
        batch.prune_empty();
        let nothing_left = match &batch {
            Batch::Raw(r) => r.item_count() == 0,
            Batch::Traces(v) => v.is_empty(),
            Batch::Logs(v) => v.is_empty(),
            Batch::Metrics(v) => v.is_empty(),
        };
        Ok(if nothing_left {
            Vec::new()
        } else {
            vec![batch]
        })
    }

    fn touches_contents(&self) -> bool {
        match self.signal {
            Some(s) => !self.rules.of(s).is_empty(),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests;
