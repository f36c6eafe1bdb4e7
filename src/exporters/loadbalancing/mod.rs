//! The `loadbalancing` exporter: sends every span of a trace (or every item with the same
//! routing key) to the same backend — typically one replica of a weft gateway — so that
//! trace-aware processors on the gateway (clock skew, stitch) see whole traces.
//!
//! Config (the Collector's keys and defaults):
//! - `routing_key`: `traceID` (default), `service`, `resource`, `metric`, or `attributes`
//!   with `routing_attributes: [names]`; see [`routing`] for what each means per signal.
//!   `streamID` is not supported (an error says so).
//! - `protocol.otlp`: the `otlp` exporter's keys (`compression`, `headers`, `tls`, ...);
//!   its `endpoint` is ignored (the resolver supplies one per backend). Its `timeout`, if
//!   set, limits each backend's attempt within one send; its `sending_queue` and
//!   `retry_on_failure` are accepted and ignored (see Delivery below).
//! - `resolver.static.hostnames`: fixed `host[:port]` list (port defaults to 4317), or
//!   `resolver.dns`: `hostname`, `port` (4317), `interval` (5s), `timeout` (1s): looked up
//!   with the system resolver at start and every `interval`; each address becomes a backend
//!   `ip:port`. `resolver.k8s` and `resolver.aws_cloud_map` are rejected with a pointer to
//!   `resolver.dns` (a headless Service's name answers with one address per ready pod).
//! - `timeout`, `sending_queue`, `retry_on_failure`: the outer delivery's, as everywhere.
//!
//! Backends are placed on a consistent-hash ring ([`ring`]): when a replica leaves or joins,
//! only its share of the keys moves. A DNS failure or an empty answer keeps the last known
//! backends; a backend whose client cannot be built is skipped and logged.
//!
//! Delivery — a deliberate difference from the Collector. The Collector keeps one exporter
//! (with its own queue and retries) per backend. weft has exactly one delivery layer: the
//! outer queue of this exporter. `send` splits the batch by routing key, sends each part
//! once to its backend (in parallel), and answers `Partial { retry }` with the parts that
//! failed retryably. The delivery layer retries only those, with backoff, and every retry
//! is routed again by the ring *current at that time*. Nothing is lost that the queue keeps
//! (with `sending_queue.storage`, not even across restarts; a persisted record is the whole
//! original batch, so after a restart parts already delivered may be delivered again — at
//! least once, as everywhere in weft). A part refused permanently is dropped and counted in
//! `weft_exporter_send_failed_*_total`.
//!
//! Backends that fail are set aside. One queue for all backends has a failure mode the
//! Collector's per-backend queues do not: a consumer retrying a dead replica's part holds
//! its batch, so a few such batches occupy every consumer and stall the healthy replicas
//! too (until DNS drops the dead one — with a static list, forever). So a backend whose
//! attempt fails retryably, or that has not answered when the send is dropped (the
//! delivery `timeout`), is set aside for `EJECT_FOR` (5 s, the default DNS interval;
//! doubling while it keeps failing, up to 60 s):
//! its keys go to the next endpoint on the ring — exactly where they go once resolution
//! drops it, so a trace moves once, not twice — and it is tried again afterwards. If every
//! backend is set aside, none is (the data then waits in the queue). The price: traces of
//! a replica that fails only briefly are split between it and their stand-in.
//!
//! Metrics: `weft_exporter_loadbalancing_backend_items_total{component, endpoint}` (items
//! a backend accepted), `weft_exporter_loadbalancing_backend_failed_items_total{component,
//! endpoint}`, `weft_exporter_loadbalancing_backend_ejections_total{component, endpoint}`
//! (times a failing backend was set aside),
//! `weft_exporter_loadbalancing_resolver_changes_total{component}`,
//! `weft_exporter_loadbalancing_resolver_errors_total{component}`, and the gauge
//! `weft_exporter_loadbalancing_backends{component}`.

pub mod config;
pub mod ring;
pub mod routing;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::task::{JoinHandle, JoinSet};

use super::otlp::{OtlpGrpcConfig, OtlpGrpcExporter, build_from};
use super::{BoxFuture, ExportError, Exporter};
use crate::admin::{Counter, Gauge, Telemetry};
use crate::components::{BuildContext, BuildError};
use crate::config::parse_component;
use crate::data::Batch;
use config::{Resolver, Settings};
use ring::Ring;
use routing::RoutingKey;

pub use config::validate;

/// How long a backend whose attempt failed retryably is first routed around; doubled for
/// each further failure without a success in between, up to `EJECT_MAX`.
pub const EJECT_FOR: Duration = Duration::from_secs(5);
pub const EJECT_MAX: Duration = Duration::from_secs(60);

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let settings = config::settings(v).map_err(|e| {
        let path = e.path.join(".");
        BuildError::new(&ctx.id, format!("{path}: {}", e.message))
    })?;
    Ok(Arc::new(LoadBalancingExporter::new(
        &ctx.id,
        settings,
        &ctx.telemetry,
    )?))
}

struct Backend {
    endpoint: String,
    exporter: OtlpGrpcExporter,
    items: Counter,
    failed: Counter,
    ejections: Counter,
    /// Routed around until then (after a retryable failure), and how many times in a row
    /// it was set aside.
    down_until: Mutex<(Option<Instant>, u32)>,
}

impl Backend {
    fn usable(&self, now: Instant) -> bool {
        let d = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        d.0.is_none_or(|until| now >= until)
    }

    fn eject(&self, id: &str, reason: &str) {
        let mut d = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if d.0.is_some_and(|until| now < until) {
            // Parts that were in flight when it was set aside: already counted.
            return;
        }
        let streak = d.1.min(8);
        let span = EJECT_FOR.saturating_mul(1 << streak).min(EJECT_MAX);
        *d = (Some(now + span), d.1.saturating_add(1));
        self.ejections.inc();
        tracing::warn!(exporter = %id, endpoint = %self.endpoint, "backend failed, routing its keys to the next backends for {span:?}: {reason}");
    }

    fn succeeded(&self) {
        let mut d = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        *d = (None, 0);
    }
}

/// The ring and the backend for each of its endpoints (same order).
struct Backends {
    ring: Ring,
    backends: Vec<Arc<Backend>>,
}

struct Inner {
    id: String,
    key: RoutingKey,
    otlp_template: Map<String, Value>,
    backend_timeout: Option<Duration>,
    current: RwLock<Arc<Backends>>,
    telemetry: Telemetry,
    changes: Counter,
    resolve_errors: Counter,
    backend_count: Gauge,
}

pub struct LoadBalancingExporter {
    inner: Arc<Inner>,
    resolver: Resolver,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl LoadBalancingExporter {
    /// Builds the exporter; a static backend list takes effect at once, a DNS one at
    /// `start`. Fails when `protocol.otlp` cannot make a client (bad TLS files, ...).
    pub fn new(
        id: &str,
        settings: Settings,
        telemetry: &Telemetry,
    ) -> Result<LoadBalancingExporter, BuildError> {
        let m = &telemetry.metrics;
        let l: &[(&str, &str)] = &[("component", id)];
        let inner = Arc::new(Inner {
            id: id.to_string(),
            key: settings.key,
            otlp_template: settings.otlp_template,
            backend_timeout: settings.backend_timeout,
            current: RwLock::new(Arc::new(Backends {
                ring: Ring::new(&[]),
                backends: Vec::new(),
            })),
            telemetry: telemetry.clone(),
            changes: m.counter(
                "weft_exporter_loadbalancing_resolver_changes_total",
                "Times the set of backends changed",
                l,
            ),
            resolve_errors: m.counter(
                "weft_exporter_loadbalancing_resolver_errors_total",
                "Failed resolutions and backends that could not be built",
                l,
            ),
            backend_count: m.gauge(
                "weft_exporter_loadbalancing_backends",
                "Backends currently on the ring",
                l,
            ),
        });
        // Surface protocol.otlp problems that only show when building a client.
        inner.make_backend("localhost:4317")?;
        if let Resolver::Static(hosts) = &settings.resolver {
            inner.update(hosts.clone());
        }
        Ok(LoadBalancingExporter {
            inner,
            resolver: settings.resolver,
            task: Mutex::new(None),
        })
    }

    /// The endpoints currently on the ring (sorted).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.current().ring.endpoints().to_vec()
    }

    fn stop_task(&self) {
        let mut t = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = t.take() {
            h.abort();
        }
    }
}

impl Drop for LoadBalancingExporter {
    fn drop(&mut self) {
        self.stop_task();
    }
}

impl Inner {
    fn current(&self) -> Arc<Backends> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn make_backend(&self, endpoint: &str) -> Result<Backend, BuildError> {
        let mut m = self.otlp_template.clone();
        m.insert("endpoint".into(), Value::String(endpoint.to_string()));
        let cfg: OtlpGrpcConfig = parse_component(&Value::Object(m))
            .map_err(|e| BuildError::new(&self.id, format!("protocol.otlp: {}", e.message)))?;
        let exporter = build_from(&cfg, &self.id)?;
        let metrics = &self.telemetry.metrics;
        let l: &[(&str, &str)] = &[("component", &self.id), ("endpoint", endpoint)];
        Ok(Backend {
            endpoint: endpoint.to_string(),
            exporter,
            items: metrics.counter(
                "weft_exporter_loadbalancing_backend_items_total",
                "Items a backend accepted",
                l,
            ),
            failed: metrics.counter(
                "weft_exporter_loadbalancing_backend_failed_items_total",
                "Items a backend did not accept (retried or dropped by the delivery layer)",
                l,
            ),
            ejections: metrics.counter(
                "weft_exporter_loadbalancing_backend_ejections_total",
                "Times a failing backend was set aside and its keys routed to the next",
                l,
            ),
            down_until: Mutex::new((None, 0)),
        })
    }

    /// Replaces the backend set when `endpoints` differ from the current ones; clients of
    /// endpoints that stay are kept (with their connections).
    fn update(&self, endpoints: Vec<String>) {
        let wanted = Ring::new(&endpoints);
        let cur = self.current();
        if cur.ring.endpoints() == wanted.endpoints() {
            return;
        }
        let mut backends = Vec::new();
        for ep in wanted.endpoints() {
            if let Some(b) = cur.backends.iter().find(|b| &b.endpoint == ep) {
                backends.push(b.clone());
                continue;
            }
            match self.make_backend(ep) {
                Ok(b) => backends.push(Arc::new(b)),
                Err(e) => {
                    self.resolve_errors.inc();
                    tracing::warn!(exporter = %self.id, endpoint = %ep, "backend skipped: {e}");
                }
            }
        }
        let names: Vec<String> = backends.iter().map(|b| b.endpoint.clone()).collect();
        let ring = Ring::new(&names);
        let added: Vec<&String> = names
            .iter()
            .filter(|n| !cur.ring.endpoints().contains(n))
            .collect();
        let removed: Vec<&String> = cur
            .ring
            .endpoints()
            .iter()
            .filter(|n| !names.contains(n))
            .collect();
        if added.is_empty() && removed.is_empty() {
            return;
        }
        tracing::info!(exporter = %self.id, ?added, ?removed, backends = names.len(), "load-balancing backends changed");
        self.changes.inc();
        self.backend_count.set(names.len() as i64);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Backends { ring, backends });
    }

    /// One DNS round: the new endpoint list, or `None` (error, timeout, empty answer) to
    /// keep the current one.
    async fn resolve_dns(&self, hostname: &str, port: u16, timeout: Duration) -> Option<()> {
        match resolve(hostname, port, timeout).await {
            Ok(eps) if !eps.is_empty() => {
                self.update(eps);
                Some(())
            }
            Ok(_) => {
                self.resolve_errors.inc();
                tracing::warn!(exporter = %self.id, hostname, "DNS answered with no addresses; keeping the last known backends");
                None
            }
            Err(e) => {
                self.resolve_errors.inc();
                tracing::warn!(exporter = %self.id, hostname, "DNS lookup failed, keeping the last known backends: {e}");
                None
            }
        }
    }

    fn count_dropped(&self, part: &Batch, reason: &str) {
        let item = part.signal().item_name();
        self.telemetry
            .metrics
            .counter(
                &format!("weft_exporter_send_failed_{item}_total"),
                "Items that failed permanently and were dropped, by reason",
                &[("component", &self.id), ("reason", reason)],
            )
            .add(part.item_count() as u64);
    }
}

/// `hostname:port` through the system resolver: sorted, de-duplicated `ip:port` strings
/// (IPv6 in brackets).
pub async fn resolve(hostname: &str, port: u16, timeout: Duration) -> Result<Vec<String>, String> {
    let lookup = tokio::net::lookup_host((hostname, port));
    let addrs = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let mut out: Vec<String> = addrs.map(|a| a.to_string()).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Sets aside the backends still sending when a send is dropped — the delivery layer's
/// `timeout` fired — so a backend that hangs (rather than refusing) is routed around too.
struct EjectUnanswered<'a> {
    id: &'a str,
    pending: Vec<Option<Arc<Backend>>>,
}

impl Drop for EjectUnanswered<'_> {
    fn drop(&mut self) {
        for b in self.pending.iter().flatten() {
            b.eject(self.id, "no answer before the send timed out");
        }
    }
}

/// What became of one part.
enum PartResult {
    Sent,
    Retry(Batch, String, Option<Duration>),
    Dropped(Batch, String, String),
}

async fn send_part(b: &Backend, id: &str, part: Batch, limit: Option<Duration>) -> PartResult {
    let attempt = b.exporter.send(&part);
    let r = match limit {
        Some(t) => tokio::time::timeout(t, attempt)
            .await
            .unwrap_or_else(|_| Err(ExportError::retryable(format!("timed out after {t:?}")))),
        None => attempt.await,
    };
    let n = part.item_count() as u64;
    match r {
        Ok(()) => {
            b.items.add(n);
            b.succeeded();
            PartResult::Sent
        }
        Err(ExportError::Retryable { reason, after }) => {
            b.failed.add(n);
            b.eject(id, &reason);
            PartResult::Retry(part, format!("{}: {reason}", b.endpoint), after)
        }
        Err(ExportError::Partial {
            retry,
            reason,
            after,
        }) => {
            let r = retry.item_count() as u64;
            b.items.add(n.saturating_sub(r));
            b.failed.add(r);
            PartResult::Retry(retry, format!("{}: {reason}", b.endpoint), after)
        }
        Err(ExportError::Permanent { reason, message }) => {
            b.failed.add(n);
            PartResult::Dropped(part, reason, format!("{}: {message}", b.endpoint))
        }
    }
}

impl Exporter for LoadBalancingExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let cur = self.inner.current();
            if cur.backends.is_empty() {
                return Err(ExportError::retryable(
                    "no load-balancing backends resolved",
                ));
            }
            let now = Instant::now();
            let usable: Vec<bool> = cur.backends.iter().map(|b| b.usable(now)).collect();
            let route = |h: u64| cur.ring.index_for_usable(h, &|i| usable[i]).unwrap_or(0);
            let parts = routing::split_with(batch, &self.inner.key, cur.backends.len(), &route);
            let total = batch.item_count();
            // Parts run as tasks so one slow backend does not delay the others; dropping
            // this future (the delivery timeout) aborts them with the set.
            let mut set = JoinSet::new();
            let mut unanswered = EjectUnanswered {
                id: &self.inner.id,
                pending: vec![None; cur.backends.len()],
            };
            for (i, part) in parts {
                let backend = cur.backends[i].clone();
                unanswered.pending[i] = Some(backend.clone());
                let limit = self.inner.backend_timeout;
                let id = self.inner.id.clone();
                set.spawn(async move { (i, send_part(&backend, &id, part, limit).await) });
            }
            let mut retry: Option<Batch> = None;
            let mut reasons: Vec<String> = Vec::new();
            let mut after: Option<Duration> = None;
            let mut dropped: Vec<(Batch, String, String)> = Vec::new();
            while let Some(joined) = set.join_next().await {
                let result = match joined {
                    Ok((i, r)) => {
                        unanswered.pending[i] = None;
                        r
                    }
                    Err(e) => {
                        // Cancelled at runtime shutdown, or (not by design) panicked:
                        // the whole batch is retried rather than losing a part.
                        if !e.is_cancelled() {
                            tracing::error!(exporter = %self.inner.id, "send task failed: {e}");
                        }
                        return Err(ExportError::retryable("internal: send task failed"));
                    }
                };
                match result {
                    PartResult::Sent => {}
                    PartResult::Retry(part, reason, a) => {
                        match &mut retry {
                            Some(r) => r.merge(part),
                            None => retry = Some(part),
                        }
                        reasons.push(reason);
                        after = after.max(a);
                    }
                    PartResult::Dropped(part, reason, message) => {
                        dropped.push((part, reason, message))
                    }
                }
            }
            let dropped_items: usize = dropped.iter().map(|(p, ..)| p.item_count()).sum();
            if dropped_items == total && total > 0 {
                // Everything refused: the delivery layer counts it.
                let (_, reason, message) = dropped.swap_remove(0);
                return Err(ExportError::Permanent { reason, message });
            }
            for (part, reason, message) in &dropped {
                tracing::warn!(exporter = %self.inner.id, items = part.item_count(), reason = %reason, "permanent error, part dropped: {message}");
                self.inner.count_dropped(part, reason);
            }
            match retry {
                None => Ok(()),
                Some(r) if r.item_count() == total => Err(ExportError::Retryable {
                    reason: reasons.join("; "),
                    after,
                }),
                Some(r) => Err(ExportError::Partial {
                    retry: r,
                    reason: reasons.join("; "),
                    after,
                }),
            }
        })
    }

    fn start(&self) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move {
            let Resolver::Dns {
                hostname,
                port,
                interval,
                timeout,
            } = self.resolver.clone()
            else {
                return Ok(());
            };
            let first = self.inner.resolve_dns(&hostname, port, timeout).await;
            let inner = self.inner.clone();
            let h = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    inner.resolve_dns(&hostname, port, timeout).await;
                }
            });
            self.stop_task();
            *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
            match first {
                Some(()) => Ok(()),
                None => Err(ExportError::retryable(
                    "no load-balancing backends resolved yet; retrying every interval",
                )),
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.stop_task() })
    }
}

#[cfg(test)]
mod tests;
