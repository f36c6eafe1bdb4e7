//! Builds the running service from a validated config — exporters with their delivery
//! queues first, then pipelines, then receivers, then the admin server — and shuts it
//! down in the reverse order: readiness off, receivers stop accepting, pipelines flush,
//! queues drain within `service.shutdown_timeout`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::run::PipelineTask;
use super::{Consumers, Inlet};
use crate::admin::Telemetry;
use crate::components::{BuildContext, BuildError, Constructor, Kind, Lookup, SharedState, lookup};
use crate::config::validate::DELIVERY_KEYS;
use crate::config::{ComponentSpec, ValidConfig, parse_component};
use crate::delivery::{Delivery, DeliveryConfig, FileStorageConfig};

/// Requests buffered in front of each pipeline before receivers refuse.
pub const PIPELINE_CHANNEL_CAPACITY: usize = 64;

pub struct Service {
    pub telemetry: Telemetry,
    stop_receivers: watch::Sender<bool>,
    receivers: Vec<JoinHandle<()>>,
    pipelines: Vec<JoinHandle<()>>,
    deliveries: Vec<Delivery>,
    admin: Option<JoinHandle<()>>,
    stop_admin: watch::Sender<bool>,
    shutdown_timeout: Duration,
    /// Addresses the receivers and admin server actually bound (for tests using port 0).
    pub bound: BTreeMap<String, std::net::SocketAddr>,
}

fn lookup_factory(
    kind: Kind,
    spec: &ComponentSpec,
) -> Result<&'static crate::components::Factory, BuildError> {
    match lookup(kind, spec.ty) {
        Lookup::Found(f) => Ok(f),
        Lookup::Unknown { .. } => Err(BuildError::new(
            &spec.id.to_string(),
            "unknown component type",
        )),
    }
}

/// Whether a receiver attaches client metadata to requests (`include_metadata`).
fn includes_metadata(spec: &ComponentSpec) -> bool {
    spec.ty == "otlp"
        && parse_component::<crate::receivers::otlp::OtlpReceiverConfig>(&spec.value).is_ok_and(
            |c| {
                c.protocols.grpc.is_some_and(|g| g.include_metadata)
                    || c.protocols.http.is_some_and(|h| h.include_metadata)
            },
        )
}

/// Why a processor of a pipeline that reads the request context (`from_context`) would
/// never see any: it comes after one that merges requests, or no receiver of the pipeline
/// captures metadata. The Collector silently does nothing there; weft says so at startup.
fn context_warnings(
    processors: &[(&String, &dyn crate::processors::Processor)],
    receivers_capture: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut ended_at: Option<&str> = None;
    for (id, p) in processors {
        if p.reads_context() {
            if let Some(at) = ended_at {
                out.push(format!(
                    "processor {id} reads client metadata (from_context) but comes after \
                     {at}, which merges requests of different clients: it will never see \
                     any; place it before {at}"
                ));
            } else if !receivers_capture {
                out.push(format!(
                    "processor {id} reads client metadata (from_context) but no receiver of \
                     this pipeline sets include_metadata: true"
                ));
            }
        }
        if !p.keeps_context() && !p.assigns_context() && ended_at.is_none() {
            ended_at = Some(id.as_str());
        }
    }
    out
}

/// A place where bound addresses are reported by receivers.
#[derive(Clone, Default)]
pub struct BoundAddrs(pub Arc<std::sync::Mutex<BTreeMap<String, std::net::SocketAddr>>>);

impl BoundAddrs {
    pub fn record(&self, key: String, addr: std::net::SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, addr);
    }
}

impl Service {
    pub async fn start(cfg: &ValidConfig, telemetry: Telemetry) -> Result<Service, BuildError> {
        let shared = SharedState::default();
        let extensions: Arc<HashMap<String, serde_json::Value>> = Arc::new(
            cfg.extensions
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        );
        let ctx = |id: &str, signal| BuildContext {
            id: id.to_string(),
            signal,
            telemetry: telemetry.clone(),
            shared: shared.clone(),
            extensions: extensions.clone(),
        };

        // Exporters and their queues: one per exporter id, shared by its pipelines.
        let mut deliveries = BTreeMap::new();
        for p in &cfg.pipelines {
            for eid in &p.exporters {
                if deliveries.contains_key(eid) {
                    continue;
                }
                let spec = &cfg.exporters[eid];
                let f = lookup_factory(Kind::Exporter, spec)?;
                let mut own = spec.value.clone();
                let mut delivery_json = serde_json::Map::new();
                if let serde_json::Value::Object(m) = &mut own {
                    for k in DELIVERY_KEYS {
                        if let Some(v) = m.remove(*k) {
                            delivery_json.insert(k.to_string(), v);
                        }
                    }
                }
                let dcfg: DeliveryConfig =
                    parse_component(&serde_json::Value::Object(delivery_json))
                        .map_err(|e| BuildError::new(eid, e.message))?;
                let storage = match &dcfg.sending_queue.storage {
                    Some(sid) => {
                        let v = extensions.get(sid).ok_or_else(|| {
                            BuildError::new(eid, format!("storage extension {sid} is not defined"))
                        })?;
                        Some(
                            parse_component::<FileStorageConfig>(v)
                                .map_err(|e| BuildError::new(sid, e.message))?,
                        )
                    }
                    None => None,
                };
                let Constructor::Exporter(build) = f.construct else {
                    return Err(BuildError::new(eid, "not an exporter"));
                };
                let exporter = build(&own, &ctx(eid, None))?;
                let d = Delivery::start(eid, exporter, dcfg, storage.as_ref(), &telemetry).await?;
                deliveries.insert(eid.clone(), d);
            }
        }

        // Pipelines.
        let mut consumers: BTreeMap<String, Consumers> = BTreeMap::new();
        let mut pipelines = Vec::new();
        for p in &cfg.pipelines {
            let mut processors = Vec::new();
            for pid in &p.processors {
                let spec = &cfg.processors[pid];
                let f = lookup_factory(Kind::Processor, spec)?;
                let Constructor::Processor(build) = f.construct else {
                    return Err(BuildError::new(pid, "not a processor"));
                };
                processors.push(build(&spec.value, &ctx(pid, Some(p.signal)))?);
            }
            let captures = p
                .receivers
                .iter()
                .any(|r| cfg.receivers.get(r).is_some_and(includes_metadata));
            let named: Vec<_> = p
                .processors
                .iter()
                .zip(processors.iter().map(|b| &**b))
                .collect();
            for w in context_warnings(&named, captures) {
                tracing::warn!(pipeline = %p.id, "{w}");
            }
            let exporters: Vec<_> = p.exporters.iter().map(|e| deliveries[e].handle()).collect();
            // Raw-capable: every processor either ignores contents or handles raw batches.
            let accepts_raw = processors
                .iter()
                .all(|p| !p.touches_contents() || p.accepts_raw())
                && exporters.iter().all(|e| e.accepts_raw());
            tracing::debug!(pipeline = %p.id, accepts_raw, "pipeline built");
            let (tx, rx) = mpsc::channel(PIPELINE_CHANNEL_CAPACITY);
            for rid in &p.receivers {
                consumers.entry(rid.clone()).or_default().push(
                    p.signal,
                    Inlet {
                        pipeline: p.id.clone(),
                        tx: tx.clone(),
                        accepts_raw,
                    },
                );
            }
            let task = PipelineTask {
                id: p.id.clone(),
                processors,
                exporters,
            };
            pipelines.push(tokio::spawn(task.run(rx)));
        }

        // Receivers.
        let (stop_receivers, stop_rx) = watch::channel(false);
        let bound = BoundAddrs::default();
        let mut receivers = Vec::new();
        for (rid, cons) in consumers {
            let spec = &cfg.receivers[&rid];
            let f = lookup_factory(Kind::Receiver, spec)?;
            let Constructor::Receiver(build) = f.construct else {
                return Err(BuildError::new(&rid, "not a receiver"));
            };
            let r = build(&spec.value, &ctx(&rid, None))?;
            receivers.extend(r.start(cons, stop_rx.clone(), bound.clone()).await?);
        }

        // Admin (health_check extension).
        let (stop_admin, mut stop_admin_rx) = watch::channel(false);
        let mut admin = None;
        for eid in &cfg.service_extensions {
            let Some(spec) = cfg.extensions.get(eid) else {
                continue;
            };
            if spec.ty != "health_check" {
                continue;
            }
            let hc: crate::admin::HealthCheckConfig =
                parse_component(&spec.value).map_err(|e| BuildError::new(eid, e.message))?;
            let listener =
                tokio::net::TcpListener::bind(crate::receivers::normalize_endpoint(&hc.endpoint))
                    .await
                    .map_err(|e| {
                        BuildError::new(eid, format!("cannot listen on {}: {e}", hc.endpoint))
                    })?;
            if let Ok(a) = listener.local_addr() {
                bound.record(eid.to_string(), a);
                tracing::info!(
                    "health_check listening on http://{a} (/health/live, /health/ready, /metrics)"
                );
            }
            let router = crate::admin::server::router(telemetry.clone());
            admin = Some(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop_admin_rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!("admin server: {e}");
                }
            }));
            break;
        }

        telemetry.health.set_started();
        let bound = bound.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Service {
            telemetry,
            stop_receivers,
            receivers,
            pipelines,
            deliveries: deliveries.into_values().collect(),
            admin,
            stop_admin,
            shutdown_timeout: cfg.shutdown_timeout,
            bound,
        })
    }

    /// Graceful shutdown within `service.shutdown_timeout`.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        self.telemetry.health.set_shutting_down();
        tracing::info!("shutting down: readiness off, receivers stop accepting");
        let _ = self.stop_receivers.send(true);
        for r in self.receivers {
            let _ = tokio::time::timeout_at(deadline.into(), r).await;
        }
        for p in self.pipelines {
            let _ = tokio::time::timeout_at(deadline.into(), p).await;
        }
        for d in self.deliveries {
            d.shutdown(deadline).await;
        }
        let _ = self.stop_admin.send(true);
        if let Some(a) = self.admin {
            let _ = tokio::time::timeout(Duration::from_secs(2), a).await;
        }
        tracing::info!("shutdown complete");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::Processor;

    fn build(ty: &str, v: serde_json::Value) -> Box<dyn Processor> {
        let ctx = BuildContext {
            id: ty.into(),
            signal: Some(crate::data::Signal::Traces),
            telemetry: Telemetry::new(),
            shared: SharedState::default(),
            extensions: Arc::new(HashMap::new()),
        };
        match ty {
            "batch" => crate::processors::batch::build(&v, &ctx).unwrap(),
            _ => crate::processors::attributes::build(&v, &ctx).unwrap(),
        }
    }

    fn warnings(chain: &[&str], capture: bool) -> Vec<String> {
        let tenant = serde_json::json!({"actions": [
            {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"}]});
        let plain = serde_json::json!({"actions": [{"key": "a", "value": 1, "action": "insert"}]});
        let ids: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
        let procs: Vec<Box<dyn Processor>> = chain
            .iter()
            .map(|id| match *id {
                "batch" => build("batch", serde_json::json!({})),
                "attributes/tenant" => build("attributes", tenant.clone()),
                _ => build("attributes", plain.clone()),
            })
            .collect();
        let named: Vec<_> = ids.iter().zip(procs.iter().map(|b| &**b)).collect();
        context_warnings(&named, capture)
    }

    #[test]
    fn a_from_context_processor_that_can_never_see_metadata_is_named() {
        assert!(warnings(&["attributes/tenant", "batch"], true).is_empty());
        assert!(warnings(&["attributes/plain", "batch"], false).is_empty());
        let w = warnings(&["batch", "attributes/plain", "attributes/tenant"], true);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("attributes/tenant") && w[0].contains("after batch"));
        let w = warnings(&["attributes/tenant", "batch"], false);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("include_metadata"), "{w:?}");
    }

    #[test]
    fn only_otlp_receivers_with_include_metadata_capture() {
        let cfg = crate::config::load_and_validate(
            &[crate::config::Source {
                name: "t.yaml".into(),
                text: "receivers:\n  otlp:\n    protocols:\n      grpc:\n        include_metadata: true\n  otlp/off:\n    protocols:\n      http:\n  kafka:\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp, otlp/off, kafka]\n      exporters: [debug]\n".into(),
            }],
            &|_| None,
        )
        .unwrap();
        let captures = |id: &str| includes_metadata(&cfg.receivers[id]);
        assert!(captures("otlp"));
        assert!(!captures("otlp/off"));
        assert!(!captures("kafka"));
    }
}
