//! Routing keys and splitting a batch into one part per backend.
//!
//! Keys (`routing_key`):
//! - `traceID` (default): spans by their trace id, log records by theirs (records without a
//!   trace id by their resource's `service.name`), metrics by `service.name` (metrics have
//!   no trace id; the Collector's default for metrics is `service` too).
//! - `service`: the resource's `service.name` (a whole resource goes to one backend).
//! - `resource`: all resource attributes (a whole resource goes to one backend).
//! - `metric`: metrics by metric name; spans and logs by trace id as with `traceID`.
//! - `attributes` with `routing_attributes: [..]`: the listed attributes, each looked up on
//!   the resource, then the scope, then the item (span or log record; metrics: resource
//!   and scope only), encoded as `name=value|` in the configured order, a missing one as
//!   `name=|`. Pseudo attributes: `span.name`, `span.kind` for spans, `log.severity`,
//!   `log.body` for log records.
//!
//! Splitting keeps the resource and scope of every item, so each part is a valid export
//! request on its own, and clones each item once.

use super::ring::{Hasher, Ring, hash64};
use crate::data::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingKey {
    TraceId,
    Service,
    Resource,
    Metric,
    Attributes(Vec<String>),
}

/// Splits `batch` by the ring's owner of each item's key: `(endpoint index, part)` for every
/// endpoint that gets something, in endpoint order. An empty ring yields nothing.
pub fn split(batch: &Batch, key: &RoutingKey, ring: &Ring) -> Vec<(usize, Batch)> {
    split_with(batch, key, ring.endpoints().len(), &|h| {
        ring.index_for(h).unwrap_or(0)
    })
}

/// [`split`] over `n` endpoints with a custom owner function (key hash → endpoint index
/// below `n`), for routing around backends that are down.
pub fn split_with(
    batch: &Batch,
    key: &RoutingKey,
    n: usize,
    route: &dyn Fn(u64) -> usize,
) -> Vec<(usize, Batch)> {
    if n == 0 {
        return Vec::new();
    }
    let parts: Vec<(usize, Batch)> = match batch {
        // Decoded on demand (the delivery layer decodes for this exporter already).
        Batch::Raw(r) => match r.decode() {
            Ok(b) => return split_with(&b, key, n, route),
            Err(e) => {
                tracing::error!("cannot decode forwarded data for routing: {e}");
                Vec::new()
            }
        },
        Batch::Traces(v) => split_spans(v, n, key, route)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i, Batch::Traces(p)))
            .collect(),
        Batch::Logs(v) => split_logs(v, n, key, route)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i, Batch::Logs(p)))
            .collect(),
        Batch::Metrics(v) => split_metrics(v, n, key, route)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i, Batch::Metrics(p)))
            .collect(),
    };
    parts.into_iter().filter(|(_, b)| !b.is_empty()).collect()
}

fn resource_attrs(r: &Option<Resource>) -> &[KeyValue] {
    r.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[])
}

fn scope_attrs(s: &Option<InstrumentationScope>) -> &[KeyValue] {
    s.as_ref().map(|s| s.attributes.as_slice()).unwrap_or(&[])
}

fn service_hash(r: &Option<Resource>) -> u64 {
    hash64(
        attr_str(resource_attrs(r), "service.name")
            .unwrap_or("")
            .as_bytes(),
    )
}

fn resource_hash(r: &Option<Resource>) -> u64 {
    let mut pairs: Vec<(&str, String)> = resource_attrs(r)
        .iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(value_to_string)
                .unwrap_or_default();
            (kv.key.as_str(), v)
        })
        .collect();
    pairs.sort();
    let mut h = Hasher::new();
    for (k, v) in pairs {
        h.write_part(k.as_bytes());
        h.write_part(v.as_bytes());
    }
    h.finish()
}

/// `name=value|...` over the configured names; `pseudo` answers item-level pseudo
/// attributes (`span.name`, ...).
fn attributes_hash(
    names: &[String],
    layers: [&[KeyValue]; 3],
    pseudo: &dyn Fn(&str) -> Option<String>,
) -> u64 {
    let mut key = String::new();
    for name in names {
        let value = pseudo(name).or_else(|| {
            layers
                .iter()
                .find_map(|attrs| attr(attrs, name))
                .map(value_to_string)
        });
        key.push_str(name);
        key.push('=');
        key.push_str(value.as_deref().unwrap_or(""));
        key.push('|');
    }
    hash64(key.as_bytes())
}

fn has_trace_id(id: &[u8]) -> bool {
    id.iter().any(|b| *b != 0)
}

/// Per resource: either one owner for the whole resource, or a key per item.
enum Granularity {
    Resource(u64),
    Items,
}

/// Generic over the three signals: the resource, scope and item types and their field
/// names differ, the splitting does not.
macro_rules! split_fn {
    ($name:ident, $R:ty, $scopes:ident, $S:ty, $items:ident, $I:ty) => {
        fn $name(
            resources: &[$R],
            n: usize,
            granularity: &dyn Fn(&$R) -> Granularity,
            item_key: &dyn Fn(&$R, &$S, &$I) -> u64,
            route: &dyn Fn(u64) -> usize,
        ) -> Vec<Vec<$R>> {
            let mut out: Vec<Vec<$R>> = (0..n).map(|_| Vec::new()).collect();
            for r in resources {
                if let Granularity::Resource(h) = granularity(r) {
                    out[route(h)].push(r.clone());
                    continue;
                }
                let mut shells: Vec<Option<$R>> = (0..n).map(|_| None).collect();
                for s in &r.$scopes {
                    let mut parts: Vec<Option<$S>> = (0..n).map(|_| None).collect();
                    for item in &s.$items {
                        let e = route(item_key(r, s, item));
                        parts[e]
                            .get_or_insert_with(|| <$S>::shell(s))
                            .$items
                            .push(item.clone());
                    }
                    for (e, part) in parts.into_iter().enumerate() {
                        if let Some(part) = part {
                            shells[e]
                                .get_or_insert_with(|| <$R>::shell(r))
                                .$scopes
                                .push(part);
                        }
                    }
                }
                for (e, shell) in shells.into_iter().enumerate() {
                    if let Some(shell) = shell {
                        out[e].push(shell);
                    }
                }
            }
            out
        }
    };
}

/// A copy of a resource or scope entry without its items.
trait Shell {
    fn shell(&self) -> Self;
}

macro_rules! shell {
    ($T:ty, { $($f:ident),* }, $items:ident) => {
        impl Shell for $T {
            fn shell(&self) -> Self {
                Self { $($f: self.$f.clone(),)* $items: Vec::new() }
            }
        }
    };
}

shell!(ResourceSpans, { resource, schema_url }, scope_spans);
shell!(ScopeSpans, { scope, schema_url }, spans);
shell!(ResourceLogs, { resource, schema_url }, scope_logs);
shell!(ScopeLogs, { scope, schema_url }, log_records);
shell!(ResourceMetrics, { resource, schema_url }, scope_metrics);
shell!(ScopeMetrics, { scope, schema_url }, metrics);

split_fn!(
    split_spans_by,
    ResourceSpans,
    scope_spans,
    ScopeSpans,
    spans,
    Span
);
split_fn!(
    split_logs_by,
    ResourceLogs,
    scope_logs,
    ScopeLogs,
    log_records,
    LogRecord
);
split_fn!(
    split_metrics_by,
    ResourceMetrics,
    scope_metrics,
    ScopeMetrics,
    metrics,
    Metric
);

fn split_spans(
    v: &[ResourceSpans],
    n: usize,
    key: &RoutingKey,
    route: &dyn Fn(u64) -> usize,
) -> Vec<Vec<ResourceSpans>> {
    let granularity = |r: &ResourceSpans| match key {
        RoutingKey::Service => Granularity::Resource(service_hash(&r.resource)),
        RoutingKey::Resource => Granularity::Resource(resource_hash(&r.resource)),
        _ => Granularity::Items,
    };
    let item_key = |r: &ResourceSpans, s: &ScopeSpans, sp: &Span| match key {
        RoutingKey::Attributes(names) => {
            let pseudo = |name: &str| match name {
                "span.name" => Some(sp.name.clone()),
                "span.kind" => Some(
                    span::SpanKind::try_from(sp.kind)
                        .map(|k| k.as_str_name().to_string())
                        .unwrap_or_else(|_| sp.kind.to_string()),
                ),
                _ => None,
            };
            attributes_hash(
                names,
                [
                    resource_attrs(&r.resource),
                    scope_attrs(&s.scope),
                    &sp.attributes,
                ],
                &pseudo,
            )
        }
        _ => hash64(&sp.trace_id),
    };
    split_spans_by(v, n, &granularity, &item_key, route)
}

fn split_logs(
    v: &[ResourceLogs],
    n: usize,
    key: &RoutingKey,
    route: &dyn Fn(u64) -> usize,
) -> Vec<Vec<ResourceLogs>> {
    let granularity = |r: &ResourceLogs| match key {
        RoutingKey::Service => Granularity::Resource(service_hash(&r.resource)),
        RoutingKey::Resource => Granularity::Resource(resource_hash(&r.resource)),
        _ => Granularity::Items,
    };
    let item_key = |r: &ResourceLogs, s: &ScopeLogs, rec: &LogRecord| match key {
        RoutingKey::Attributes(names) => {
            let pseudo = |name: &str| match name {
                "log.severity" => Some(rec.severity_text.clone()),
                "log.body" => Some(
                    rec.body
                        .as_ref()
                        .and_then(|b| b.value.as_ref())
                        .map(value_to_string)
                        .unwrap_or_default(),
                ),
                _ => None,
            };
            attributes_hash(
                names,
                [
                    resource_attrs(&r.resource),
                    scope_attrs(&s.scope),
                    &rec.attributes,
                ],
                &pseudo,
            )
        }
        _ if has_trace_id(&rec.trace_id) => hash64(&rec.trace_id),
        _ => service_hash(&r.resource),
    };
    split_logs_by(v, n, &granularity, &item_key, route)
}

fn split_metrics(
    v: &[ResourceMetrics],
    n: usize,
    key: &RoutingKey,
    route: &dyn Fn(u64) -> usize,
) -> Vec<Vec<ResourceMetrics>> {
    let granularity = |r: &ResourceMetrics| match key {
        RoutingKey::Metric | RoutingKey::Attributes(_) => Granularity::Items,
        RoutingKey::Resource => Granularity::Resource(resource_hash(&r.resource)),
        RoutingKey::TraceId | RoutingKey::Service => {
            Granularity::Resource(service_hash(&r.resource))
        }
    };
    let item_key = |r: &ResourceMetrics, s: &ScopeMetrics, m: &Metric| match key {
        RoutingKey::Attributes(names) => attributes_hash(
            names,
            [resource_attrs(&r.resource), scope_attrs(&s.scope), &[]],
            &|_| None,
        ),
        _ => hash64(m.name.as_bytes()),
    };
    split_metrics_by(v, n, &granularity, &item_key, route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn ring3() -> Ring {
        Ring::new(&["a:4317".into(), "b:4317".into(), "c:4317".into()])
    }

    fn resource(service: &str, extra: &[(&str, &str)]) -> Option<Resource> {
        let mut attributes = Vec::new();
        set_attr(&mut attributes, "service.name", string_value(service));
        for (k, v) in extra {
            set_attr(&mut attributes, k, string_value(*v));
        }
        Some(Resource {
            attributes,
            ..Default::default()
        })
    }

    fn trace_id(t: u64) -> Vec<u8> {
        [t.to_be_bytes(), [9; 8]].concat()
    }

    /// `traces` traces of 3 spans each, the spans of a trace spread over two resources
    /// and two scopes.
    fn spans(traces: u64) -> Batch {
        let mut out = Vec::new();
        for (ri, service) in ["order", "payment"].iter().enumerate() {
            let mut scopes = Vec::new();
            for si in 0..2u64 {
                let spans = (0..traces)
                    .flat_map(|t| (0..3u64).map(move |k| (t, k)))
                    .filter(|(t, k)| (t + k) % 2 == si && (*k as usize % 2 == ri || *k == 2))
                    .map(|(t, k)| Span {
                        trace_id: trace_id(t),
                        span_id: [t.to_be_bytes(), [k as u8; 8]].concat(),
                        name: format!("op{k}"),
                        ..Default::default()
                    })
                    .collect();
                scopes.push(ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("scope{si}"),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                });
            }
            out.push(ResourceSpans {
                resource: resource(service, &[]),
                scope_spans: scopes,
                ..Default::default()
            });
        }
        Batch::Traces(out)
    }

    fn span_owners(parts: &[(usize, Batch)]) -> HashMap<Vec<u8>, HashSet<usize>> {
        let mut m: HashMap<Vec<u8>, HashSet<usize>> = HashMap::new();
        for (e, b) in parts {
            let Batch::Traces(v) = b else { panic!() };
            for sp in v.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                m.entry(sp.trace_id.clone()).or_default().insert(*e);
            }
        }
        m
    }

    #[test]
    fn every_span_of_a_trace_goes_to_one_endpoint() {
        let batch = spans(300);
        let parts = split(&batch, &RoutingKey::TraceId, &ring3());
        let total: usize = parts.iter().map(|(_, b)| b.item_count()).sum();
        assert_eq!(total, batch.item_count());
        assert_eq!(parts.len(), 3, "300 traces reach all three endpoints");
        let owners = span_owners(&parts);
        assert_eq!(owners.len(), 300);
        assert!(owners.values().all(|s| s.len() == 1));
        // Resource and scope survive the split.
        for (_, b) in &parts {
            let Batch::Traces(v) = b else { panic!() };
            for r in v {
                assert!(attr_str(resource_attrs(&r.resource), "service.name").is_some());
                assert!(r.scope_spans.iter().all(|s| s.scope.is_some()));
                assert!(r.scope_spans.iter().all(|s| !s.spans.is_empty()));
            }
        }
    }

    #[test]
    fn the_same_trace_in_another_batch_goes_to_the_same_endpoint() {
        let ring = ring3();
        let a = span_owners(&split(&spans(100), &RoutingKey::TraceId, &ring));
        let b = span_owners(&split(&spans(50), &RoutingKey::TraceId, &ring));
        for (t, e) in b {
            assert_eq!(a[&t], e);
        }
    }

    #[test]
    fn service_routing_keeps_a_resource_whole() {
        let mut v = Vec::new();
        for i in 0..60 {
            let Batch::Traces(mut r) = spans(2) else {
                panic!()
            };
            r[0].resource = resource(&format!("svc{}", i % 20), &[]);
            v.push(r.swap_remove(0));
        }
        let parts = split(&Batch::Traces(v), &RoutingKey::Service, &ring3());
        let mut owner: HashMap<String, usize> = HashMap::new();
        for (e, b) in &parts {
            let Batch::Traces(v) = b else { panic!() };
            for r in v {
                let s = attr_str(resource_attrs(&r.resource), "service.name").unwrap();
                assert_eq!(*owner.entry(s.to_string()).or_insert(*e), *e);
            }
        }
        assert_eq!(owner.len(), 20);
        assert!(parts.len() > 1, "20 services spread over endpoints");
    }

    #[test]
    fn attributes_routing_uses_resource_and_span_values() {
        let key = RoutingKey::Attributes(vec!["tenant".into(), "span.name".into()]);
        let mut batch = spans(100);
        if let Batch::Traces(v) = &mut batch {
            for r in v.iter_mut() {
                set_attr(
                    &mut r.resource.as_mut().unwrap().attributes,
                    "tenant",
                    string_value("acme"),
                );
            }
        }
        let parts = split(&batch, &key, &ring3());
        // All spans with the same name share an endpoint: names are op0, op1, op2.
        let mut owner: HashMap<String, usize> = HashMap::new();
        for (e, b) in &parts {
            let Batch::Traces(v) = b else { panic!() };
            for sp in v.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                assert_eq!(*owner.entry(sp.name.clone()).or_insert(*e), *e);
            }
        }
        assert_eq!(owner.len(), 3);
    }

    #[test]
    fn logs_route_by_trace_id_and_untraced_by_service() {
        let recs: Vec<LogRecord> = (0..200u64)
            .map(|i| LogRecord {
                trace_id: if i % 2 == 0 {
                    trace_id(i / 2)
                } else {
                    Vec::new()
                },
                ..Default::default()
            })
            .collect();
        let batch = Batch::Logs(vec![ResourceLogs {
            resource: resource("order", &[]),
            scope_logs: vec![ScopeLogs {
                log_records: recs,
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let ring = ring3();
        let parts = split(&batch, &RoutingKey::TraceId, &ring);
        let untraced_owner = ring.index_for(hash64(b"order")).unwrap();
        for (e, b) in &parts {
            let Batch::Logs(v) = b else { panic!() };
            for rec in v
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
            {
                if rec.trace_id.is_empty() {
                    assert_eq!(*e, untraced_owner);
                } else {
                    assert_eq!(*e, ring.index_for(hash64(&rec.trace_id)).unwrap());
                }
            }
        }
        let total: usize = parts.iter().map(|(_, b)| b.item_count()).sum();
        assert_eq!(total, 200);
    }

    #[test]
    fn metrics_route_by_service_or_by_name() {
        let metrics: Vec<Metric> = (0..30)
            .map(|i| Metric {
                name: format!("m{i}"),
                data: Some(metric::Data::Gauge(
                    opentelemetry_proto::tonic::metrics::v1::Gauge {
                        data_points: vec![Default::default()],
                    },
                )),
                ..Default::default()
            })
            .collect();
        let batch = Batch::Metrics(vec![ResourceMetrics {
            resource: resource("order", &[]),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let ring = ring3();
        assert_eq!(split(&batch, &RoutingKey::TraceId, &ring).len(), 1);
        let by_name = split(&batch, &RoutingKey::Metric, &ring);
        assert!(by_name.len() > 1);
        for (e, b) in &by_name {
            let Batch::Metrics(v) = b else { panic!() };
            for m in v
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                assert_eq!(*e, ring.index_for(hash64(m.name.as_bytes())).unwrap());
            }
        }
    }

    #[test]
    fn resource_routing_ignores_attribute_order() {
        let a = resource("x", &[("k1", "v1"), ("k2", "v2")]);
        let mut b = resource("x", &[("k2", "v2"), ("k1", "v1")]);
        assert_eq!(resource_hash(&a), resource_hash(&b));
        set_attr(
            &mut b.as_mut().unwrap().attributes,
            "k2",
            string_value("other"),
        );
        assert_ne!(resource_hash(&a), resource_hash(&b));
    }

    #[test]
    fn empty_ring_yields_nothing() {
        assert!(split(&spans(3), &RoutingKey::TraceId, &Ring::new(&[])).is_empty());
    }
}
