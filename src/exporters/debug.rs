//! The `debug` exporter: writes what it receives to weft's log (stderr).
//!
//! Config: `verbosity` (`basic` default: one line per batch with counts; `normal`: one
//! line per span / log record / metric; `detailed`: every field as OTLP/JSON),
//! `sampling_initial` and `sampling_thereafter` (accepted, as the Collector's).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{BoxFuture, ExportError, Exporter};
use crate::components::{BuildContext, BuildError};
use crate::config::parse_component;
use crate::data::{Batch, hex};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
    #[serde(default)]
    pub sampling_initial: Option<u64>,
    #[serde(default)]
    pub sampling_thereafter: Option<u64>,
    /// The old `logging` exporter's key.
    #[serde(default)]
    pub loglevel: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let c: DebugConfig = parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    Ok(Arc::new(DebugExporter {
        id: ctx.id.clone(),
        verbosity: c.verbosity,
    }))
}

/// The lines `normal` verbosity prints for a batch.
pub fn normal_lines(batch: &Batch) -> Vec<String> {
    let mut out = Vec::new();
    match batch {
        Batch::Raw(r) => match r.decode() {
            Ok(b) => return normal_lines(&b),
            Err(e) => out.push(format!("undecodable {} batch: {e}", r.signal())),
        },
        Batch::Traces(v) => {
            for s in v.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                out.push(format!(
                    "span {} trace_id={} span_id={} kind={} duration={}ns attributes={}",
                    s.name,
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    s.kind,
                    s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano),
                    s.attributes.len()
                ));
            }
        }
        Batch::Logs(v) => {
            for r in v
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
            {
                let body = r
                    .body
                    .as_ref()
                    .and_then(|b| b.value.as_ref())
                    .map(crate::data::value_to_string)
                    .unwrap_or_default();
                out.push(format!(
                    "log {} {}: {}",
                    r.time_unix_nano, r.severity_text, body
                ));
            }
        }
        Batch::Metrics(v) => {
            for m in v
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                out.push(format!(
                    "metric {} points={}",
                    m.name,
                    crate::data::metric_points(m)
                ));
            }
        }
    }
    out
}

impl Exporter for DebugExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let item = batch.signal().item_name();
            tracing::info!(exporter = %self.id, resources = resource_count(batch), "{} {item}", batch.item_count());
            match self.verbosity {
                Verbosity::Basic => {}
                Verbosity::Normal => {
                    for l in normal_lines(batch) {
                        tracing::info!(exporter = %self.id, "{l}");
                    }
                }
                Verbosity::Detailed => {
                    tracing::info!(exporter = %self.id, "{}", String::from_utf8_lossy(&batch.encode_json()));
                }
            }
            Ok(())
        })
    }
}

fn resource_count(b: &Batch) -> usize {
    b.resource_count()
}
