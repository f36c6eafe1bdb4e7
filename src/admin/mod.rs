//! Admin endpoints (the `health_check` extension): `/health/live`, `/health/ready` and
//! Prometheus `/metrics`, plus the shared [`Telemetry`] handle every component gets.
//!
//! Config (`extensions.health_check`): `endpoint` (default `localhost:13133`), `path`
//! (unused alias kept for Collector configs). Metric names follow
//! `weft_<receiver|processor|exporter>_<what>_total{component="type/name", ...}`.

pub mod health;
pub mod metrics;
pub mod server;

pub use health::Health;
pub use metrics::{Counter, Gauge, Histogram, Metrics};

use crate::data::Signal;

/// Metrics and health, cloned into every component.
#[derive(Clone, Default)]
pub struct Telemetry {
    pub metrics: Metrics,
    pub health: Health,
}

impl Telemetry {
    pub fn new() -> Telemetry {
        Telemetry::default()
    }
}

/// The standard per-component counters for one signal.
#[derive(Clone)]
pub struct ComponentCounters {
    pub accepted: Counter,
    pub refused: Counter,
    pub dropped: Counter,
}

impl ComponentCounters {
    /// `kind` is `receiver`, `processor` or `exporter`.
    pub fn new(t: &Telemetry, kind: &str, component: &str, signal: Signal) -> ComponentCounters {
        let item = signal.item_name();
        let m = &t.metrics;
        let l: &[(&str, &str)] = &[("component", component)];
        ComponentCounters {
            accepted: m.counter(
                &format!("weft_{kind}_accepted_{item}_total"),
                &format!("{item} accepted by the {kind}"),
                l,
            ),
            refused: m.counter(
                &format!("weft_{kind}_refused_{item}_total"),
                &format!("{item} refused by the {kind} with a retryable error"),
                l,
            ),
            dropped: m.counter(
                &format!("weft_{kind}_dropped_{item}_total"),
                &format!("{item} dropped by the {kind}"),
                l,
            ),
        }
    }
}

/// The `health_check` extension's config (the Collector's keys).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub endpoint: String,
    /// Accepted for Collector compatibility; weft serves fixed paths.
    pub path: Option<String>,
    pub check_collector_pipeline: Option<serde_json::Value>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: "localhost:13133".into(),
            path: None,
            check_collector_pipeline: None,
        }
    }
}
