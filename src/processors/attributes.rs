//! The `attributes` processor: runs a list of attribute actions (insert, update, upsert,
//! delete, hash, extract, convert) on span attributes, log record attributes and metric
//! data point attributes, as the Collector's attributesprocessor does.
//!
//! Config (the Collector's keys):
//! - `actions` (required, non-empty): see [`actions`] for each action's keys and rules.
//! - `include` / `exclude` (optional): match properties (see [`matching`]) choosing which
//!   spans, log records or metrics the actions apply to; `include` is checked first, then
//!   `exclude`. Supported: `match_type: strict|regexp`, `services`, `span_names`,
//!   `span_kinds`, `attributes`, `resources`, `libraries`, `log_bodies`,
//!   `log_severity_texts`, `log_severity_number`, `metric_names`. Not supported: the
//!   `expr` match type.
//!
//! Span events, links, scopes and resources are not touched (use `resource` for resource
//! attributes). `from_context` (e.g. `metadata.x-tenant`) reads the client metadata of the
//! request the data came from: it needs the receiver's `include_metadata: true` and the
//! processor placed before `batch`, or after a `batch` whose `metadata_keys` list the key
//! (see [`actions`] and [`crate::pipeline`]). Bad config
//! (unknown action, missing key, bad regex, `from_context: auth.…`) is a validation error
//! naming `actions.<i>.<field>`; properties that do not fit the pipeline's
//! signal fail the build. At run time the processor cannot fail: an action whose source is
//! missing or whose value cannot be converted does nothing.
//!
//! Undecoded batches (the forwarding fast path): in traces and logs pipelines whose actions
//! and match properties it supports, the processor edits the serialized requests itself
//! ([`Processor::accepts_raw`], [`wire`]), so the pipeline never decodes a span. There an
//! item whose attributes cannot be read (they were not checked by the receiver) is
//! forwarded unchanged and counted in `weft_processor_attributes_malformed_items_total`.

pub mod actions;
pub mod matching;
pub mod wire;
mod wire_item;
mod wire_read;

use serde::Deserialize;
use serde_json::Value;

use crate::components::{BuildContext, BuildError};
use crate::config::{FieldError, parse_component};
use crate::data::{Batch, Signal, metric};
use crate::pipeline::{ClientMetadata, Context};
use crate::processors::{Processor, ProcessorError};
use actions::{ActionConfig, Actions};
use matching::{MatchProperties, Matcher};
use wire::{Env, WirePath};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributesConfig {
    #[serde(default)]
    actions: Vec<ActionConfig>,
    #[serde(default)]
    include: Option<MatchProperties>,
    #[serde(default)]
    exclude: Option<MatchProperties>,
}

fn prefixed(prefix: &str, mut e: FieldError) -> FieldError {
    e.path.insert(0, prefix.to_string());
    e
}

struct Compiled {
    actions: Actions,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

fn compile(v: &Value) -> Result<Compiled, FieldError> {
    let c: AttributesConfig = parse_component(v)?;
    if c.actions.is_empty() {
        return Err(FieldError {
            path: vec!["actions".into()],
            message: "the attributes processor needs at least one action".into(),
            suggestion: None,
        });
    }
    let actions = Actions::compile(&c.actions).map_err(|e| prefixed("actions", e))?;
    let matcher = |key: &str, p: &Option<MatchProperties>| -> Result<Option<Matcher>, FieldError> {
        p.as_ref()
            .map(|p| {
                Matcher::compile(p).map_err(|(field, message)| FieldError {
                    path: vec![key.to_string(), field],
                    message,
                    suggestion: None,
                })
            })
            .transpose()
    };
    Ok(Compiled {
        actions,
        include: matcher("include", &c.include)?,
        exclude: matcher("exclude", &c.exclude)?,
    })
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    compile(v).map(|_| ())
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let error =
        |e: FieldError| BuildError::new(&ctx.id, format!("{}: {}", e.path.join("."), e.message));
    let c = compile(v).map_err(error)?;
    if let Some(signal) = ctx.signal {
        fits(&c, signal).map_err(error)?;
    }
    let env = Env {
        actions: &c.actions,
        include: c.include.as_ref(),
        exclude: c.exclude.as_ref(),
        metadata: None,
    };
    let wire = WirePath::new(&env, ctx.signal, &ctx.id, &ctx.telemetry);
    Ok(Box::new(AttributesProcessor {
        actions: c.actions,
        include: c.include,
        exclude: c.exclude,
        wire,
    }))
}

/// Whether the match properties fit a signal (e.g. `span_names` only for traces). The
/// pipeline builder checks this per pipeline; config validation, which does not know the
/// pipelines of a processor, may call [`check_signal`].
fn fits(c: &Compiled, signal: Signal) -> Result<(), FieldError> {
    for (key, m) in [("include", &c.include), ("exclude", &c.exclude)] {
        if let Some(Err((field, message))) = m.as_ref().map(|m| m.check_for(signal)) {
            return Err(FieldError {
                path: vec![key.to_string(), field],
                message,
                suggestion: None,
            });
        }
    }
    Ok(())
}

/// Validation for a processor used in a pipeline of `signal`.
pub fn check_signal(v: &Value, signal: Signal) -> Result<(), FieldError> {
    fits(&compile(v)?, signal)
}

pub struct AttributesProcessor {
    actions: Actions,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
    /// The path for raw batches (`None`: this config or signal decodes, see [`wire`]).
    wire: Option<WirePath>,
}

impl AttributesProcessor {
    /// Include first, then exclude, as the Collector does.
    fn selected(&self, matches: impl Fn(&Matcher) -> bool) -> bool {
        self.include.as_ref().is_none_or(&matches) && !self.exclude.as_ref().is_some_and(&matches)
    }
}

fn point_attributes(data: &mut metric::Data, mut f: impl FnMut(&mut Vec<crate::data::KeyValue>)) {
    use metric::Data;
    match data {
        Data::Gauge(g) => g.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Data::Sum(s) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Data::Histogram(h) => h.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Data::ExponentialHistogram(h) => {
            h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Data::Summary(s) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
    }
}

impl AttributesProcessor {
    /// Runs the actions on `batch`, a request (or part of one) whose client metadata is
    /// `metadata`.
    fn run(
        &mut self,
        batch: Batch,
        metadata: Option<&ClientMetadata>,
        now: std::time::Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        if let (Batch::Raw(raw), Some(wire)) = (&batch, self.wire.as_mut())
            && raw.signal() == wire.signal()
        {
            let env = Env {
                actions: &self.actions,
                include: self.include.as_ref(),
                exclude: self.exclude.as_ref(),
                metadata,
            };
            return Ok(vec![Batch::Raw(wire.process(&env, raw, now))]);
        }
        let mut batch = super::decoded(batch)?;
        match &mut batch {
            Batch::Raw(_) => {}
            Batch::Traces(v) => {
                for rs in v.iter_mut() {
                    for ss in rs.scope_spans.iter_mut() {
                        for span in ss.spans.iter_mut() {
                            let (r, s) = (rs.resource.as_ref(), ss.scope.as_ref());
                            if self.selected(|m| m.matches_span(r, s, span)) {
                                self.actions.apply_in(&mut span.attributes, metadata);
                            }
                        }
                    }
                }
            }
            Batch::Logs(v) => {
                for rl in v.iter_mut() {
                    for sl in rl.scope_logs.iter_mut() {
                        for log in sl.log_records.iter_mut() {
                            let (r, s) = (rl.resource.as_ref(), sl.scope.as_ref());
                            if self.selected(|m| m.matches_log(r, s, log)) {
                                self.actions.apply_in(&mut log.attributes, metadata);
                            }
                        }
                    }
                }
            }
            Batch::Metrics(v) => {
                for rm in v.iter_mut() {
                    for sm in rm.scope_metrics.iter_mut() {
                        for m in sm.metrics.iter_mut() {
                            let (r, s) = (rm.resource.as_ref(), sm.scope.as_ref());
                            if !self.selected(|matcher| matcher.matches_metric(r, s, m)) {
                                continue;
                            }
                            if let Some(data) = m.data.as_mut() {
                                point_attributes(data, |attrs| {
                                    self.actions.apply_in(attrs, metadata)
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(vec![batch])
    }
}

impl Processor for AttributesProcessor {
    fn process(
        &mut self,
        batch: Batch,
        now: std::time::Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        self.run(batch, None, now)
    }

    fn process_in(
        &mut self,
        batch: Batch,
        ctx: &Context,
        now: std::time::Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        self.run(batch, ctx.metadata(), now)
    }

    fn reads_context(&self) -> bool {
        self.actions.uses_context()
    }

    /// Raw traces and logs are edited on the wire when the config allows (see [`wire`]).
    fn accepts_raw(&self) -> bool {
        self.wire.is_some()
    }
}

#[cfg(test)]
mod tests;
