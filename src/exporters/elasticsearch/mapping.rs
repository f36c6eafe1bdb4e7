//! Pure document mapping: one OTLP log record, span or metric data point (with its resource
//! and scope) → one Elasticsearch JSON document, in the `otel` or `ecs` shape.
//!
//! `otel` follows the document shape of the Collector's elasticsearchexporter in OTel mode,
//! which Elastic's `*-*.otel-*` data stream templates map: `@timestamp`, `resource.attributes`,
//! `scope`, `attributes` (flat OTel keys under a passthrough object), `body.text` /
//! `body.structured`, `severity_text`, `trace_id`, `span_id`, span `duration` in
//! nanoseconds (as those templates expect). Two deliberate differences: timestamps are
//! RFC 3339 with nanoseconds (readable, and accepted by `date` and `date_nanos`), and span
//! events are embedded in the span document (`events`) instead of being separate documents,
//! so that one OTLP item is exactly one bulk item and per-item retries map back 1:1.
//!
//! `ecs` writes Elastic Common Schema fields with flat dotted keys (Elasticsearch expands
//! them): `@timestamp`, `message`, `log.level`, `event.severity`, `trace.id`, `span.id`,
//! `service.*`, `host.*`, `kubernetes.*`, `event.dataset`; spans get `span.name`,
//! `span.kind`, `parent.id`, `span.duration.us` (microseconds), `event.outcome`. Resource
//! attributes without an ECS counterpart keep their OTel names, and record attributes are
//! written at the top level (OTel semantic conventions are aligned with ECS) unless the
//! name is already taken by a mapped field, in which case they go to `labels.<name>`.

use serde_json::{Map, Value, json};

use crate::data::{
    AnyValue, InstrumentationScope, KeyValue, LogRecord, Resource, Span, any_value, hex,
    value_to_json, value_to_string,
};

/// The document shape (`mapping.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Otel,
    Ecs,
}

/// The data stream a document goes to (its fields must be in the document: the data
/// stream's `constant_keyword` mappings reject other values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataStream {
    pub ty: &'static str,
    pub dataset: String,
    pub namespace: String,
}

/// Resource and scope of the item being mapped.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub resource: &'a Resource,
    pub resource_schema_url: &'a str,
    pub scope: &'a InstrumentationScope,
    pub scope_schema_url: &'a str,
}

/// Attributes that steer routing and are not data.
pub(super) const ROUTING_KEYS: &[&str] = &[
    "data_stream.type",
    "data_stream.dataset",
    "data_stream.namespace",
    "elasticsearch.index",
    "elasticsearch.document_id",
];

/// Nanoseconds since the epoch → RFC 3339 with nanoseconds (`1970-01-01T00:00:00.000000000Z`).
pub fn timestamp(nanos: u64) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let sub = (nanos % 1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, sub)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn put_str(doc: &mut Map<String, Value>, key: &str, v: &str) {
    if !v.is_empty() {
        doc.insert(key.to_string(), Value::String(v.to_string()));
    }
}

fn put_nonzero(doc: &mut Map<String, Value>, key: &str, v: i64) {
    if v != 0 {
        doc.insert(key.to_string(), Value::from(v));
    }
}

fn put_id(doc: &mut Map<String, Value>, key: &str, id: &[u8]) {
    if !id.is_empty() && id.iter().any(|b| *b != 0) {
        doc.insert(key.to_string(), Value::String(hex(id)));
    }
}

fn kv_json(kv: &KeyValue) -> Value {
    kv.value
        .as_ref()
        .and_then(|v| v.value.as_ref())
        .map(value_to_json)
        .unwrap_or(Value::Null)
}

/// Attributes as a flat object (OTel keys kept as they are), routing keys left out.
fn attributes(attrs: &[KeyValue]) -> Map<String, Value> {
    attrs
        .iter()
        .filter(|kv| !ROUTING_KEYS.contains(&kv.key.as_str()))
        .map(|kv| (kv.key.clone(), kv_json(kv)))
        .collect()
}

pub(super) fn put_attributes(doc: &mut Map<String, Value>, attrs: &[KeyValue]) {
    let m = attributes(attrs);
    if !m.is_empty() {
        doc.insert("attributes".into(), Value::Object(m));
    }
}

pub(super) fn put_data_stream(doc: &mut Map<String, Value>, ds: Option<&DataStream>) {
    if let Some(ds) = ds {
        doc.insert(
            "data_stream".into(),
            json!({"type": ds.ty, "dataset": ds.dataset, "namespace": ds.namespace}),
        );
    }
}

pub(super) fn otel_resource_scope(doc: &mut Map<String, Value>, ctx: &Context<'_>) {
    let mut r = Map::new();
    put_str(&mut r, "schema_url", ctx.resource_schema_url);
    put_attributes(&mut r, &ctx.resource.attributes);
    put_nonzero(
        &mut r,
        "dropped_attributes_count",
        ctx.resource.dropped_attributes_count as i64,
    );
    doc.insert("resource".into(), Value::Object(r));
    let mut s = Map::new();
    put_str(&mut s, "schema_url", ctx.scope_schema_url);
    put_str(&mut s, "name", &ctx.scope.name);
    put_str(&mut s, "version", &ctx.scope.version);
    put_attributes(&mut s, &ctx.scope.attributes);
    put_nonzero(
        &mut s,
        "dropped_attributes_count",
        ctx.scope.dropped_attributes_count as i64,
    );
    doc.insert("scope".into(), Value::Object(s));
}

/// `body.text` for scalars, `body.structured` for maps (and arrays, wrapped in
/// `{"value": [...]}` unless every element is a map, as Elasticsearch needs objects there).
fn otel_body(body: &AnyValue) -> Option<Value> {
    use any_value::Value as V;
    let v = body.value.as_ref()?;
    Some(match v {
        V::KvlistValue(_) => json!({ "structured": value_to_json(v) }),
        V::ArrayValue(a) => {
            let all_maps = a
                .values
                .iter()
                .all(|x| matches!(x.value, Some(V::KvlistValue(_))));
            if all_maps {
                json!({ "structured": value_to_json(v) })
            } else {
                json!({ "structured": { "value": value_to_json(v) } })
            }
        }
        other => json!({ "text": value_to_json(other) }),
    })
}

fn log_time(r: &LogRecord) -> u64 {
    if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    }
}

pub(super) fn event_name(r: &LogRecord) -> Option<&str> {
    if !r.event_name.is_empty() {
        return Some(&r.event_name);
    }
    crate::data::attr_str(&r.attributes, "event.name").filter(|s| !s.is_empty())
}

/// The document for one log record.
pub fn log_document(
    mode: Mode,
    ctx: &Context<'_>,
    r: &LogRecord,
    ds: Option<&DataStream>,
) -> Value {
    match mode {
        Mode::Otel => otel_log(ctx, r, ds),
        Mode::Ecs => ecs_log(ctx, r, ds),
    }
}

/// The document for one span.
pub fn span_document(mode: Mode, ctx: &Context<'_>, s: &Span, ds: Option<&DataStream>) -> Value {
    match mode {
        Mode::Otel => otel_span(ctx, s, ds),
        Mode::Ecs => ecs_span(ctx, s, ds),
    }
}

fn otel_log(ctx: &Context<'_>, r: &LogRecord, ds: Option<&DataStream>) -> Value {
    let mut d = Map::new();
    d.insert("@timestamp".into(), timestamp(log_time(r)).into());
    d.insert(
        "observed_timestamp".into(),
        timestamp(r.observed_time_unix_nano).into(),
    );
    put_data_stream(&mut d, ds);
    put_str(&mut d, "severity_text", &r.severity_text);
    put_nonzero(&mut d, "severity_number", r.severity_number as i64);
    put_id(&mut d, "trace_id", &r.trace_id);
    put_id(&mut d, "span_id", &r.span_id);
    put_attributes(&mut d, &r.attributes);
    put_nonzero(
        &mut d,
        "dropped_attributes_count",
        r.dropped_attributes_count as i64,
    );
    if let Some(n) = event_name(r) {
        put_str(&mut d, "event_name", n);
    }
    otel_resource_scope(&mut d, ctx);
    if let Some(b) = r.body.as_ref().and_then(otel_body) {
        d.insert("body".into(), b);
    }
    Value::Object(d)
}

/// Span kind as the Collector's pdata names it.
pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "Unspecified",
    }
}

fn status_code_name(code: i32) -> &'static str {
    match code {
        1 => "Ok",
        2 => "Error",
        _ => "Unset",
    }
}

fn otel_span(ctx: &Context<'_>, s: &Span, ds: Option<&DataStream>) -> Value {
    let mut d = Map::new();
    d.insert(
        "@timestamp".into(),
        timestamp(s.start_time_unix_nano).into(),
    );
    put_data_stream(&mut d, ds);
    put_id(&mut d, "trace_id", &s.trace_id);
    put_id(&mut d, "span_id", &s.span_id);
    put_str(&mut d, "trace_state", &s.trace_state);
    put_id(&mut d, "parent_span_id", &s.parent_span_id);
    put_str(&mut d, "name", &s.name);
    put_str(&mut d, "kind", kind_name(s.kind));
    d.insert(
        "duration".into(),
        s.end_time_unix_nano
            .saturating_sub(s.start_time_unix_nano)
            .into(),
    );
    put_attributes(&mut d, &s.attributes);
    put_nonzero(
        &mut d,
        "dropped_attributes_count",
        s.dropped_attributes_count as i64,
    );
    put_nonzero(
        &mut d,
        "dropped_events_count",
        s.dropped_events_count as i64,
    );
    if !s.events.is_empty() {
        let events = s
            .events
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("@timestamp".into(), timestamp(e.time_unix_nano).into());
                put_str(&mut m, "name", &e.name);
                put_attributes(&mut m, &e.attributes);
                put_nonzero(
                    &mut m,
                    "dropped_attributes_count",
                    e.dropped_attributes_count as i64,
                );
                Value::Object(m)
            })
            .collect();
        d.insert("events".into(), Value::Array(events));
    }
    let links = s
        .links
        .iter()
        .map(|l| {
            let mut m = Map::new();
            put_id(&mut m, "trace_id", &l.trace_id);
            put_id(&mut m, "span_id", &l.span_id);
            put_str(&mut m, "trace_state", &l.trace_state);
            put_attributes(&mut m, &l.attributes);
            put_nonzero(
                &mut m,
                "dropped_attributes_count",
                l.dropped_attributes_count as i64,
            );
            Value::Object(m)
        })
        .collect();
    d.insert("links".into(), Value::Array(links));
    put_nonzero(&mut d, "dropped_links_count", s.dropped_links_count as i64);
    let mut st = Map::new();
    if let Some(status) = &s.status {
        put_str(&mut st, "message", &status.message);
        put_str(&mut st, "code", status_code_name(status.code));
    } else {
        put_str(&mut st, "code", "Unset");
    }
    d.insert("status".into(), Value::Object(st));
    otel_resource_scope(&mut d, ctx);
    Value::Object(d)
}

/// OTel resource attribute → ECS field. Unlisted keys keep their OTel names.
pub(super) const ECS_RESOURCE: &[(&str, &str)] = &[
    ("service.instance.id", "service.node.name"),
    ("deployment.environment", "service.environment"),
    ("deployment.environment.name", "service.environment"),
    ("telemetry.sdk.name", "agent.name"),
    ("telemetry.sdk.version", "agent.version"),
    ("telemetry.sdk.language", "service.language.name"),
    ("host.arch", "host.architecture"),
    ("os.type", "host.os.platform"),
    ("os.description", "host.os.full"),
    ("os.name", "host.os.name"),
    ("os.version", "host.os.version"),
    ("k8s.namespace.name", "kubernetes.namespace"),
    ("k8s.node.name", "kubernetes.node.name"),
    ("k8s.pod.name", "kubernetes.pod.name"),
    ("k8s.pod.uid", "kubernetes.pod.uid"),
    ("k8s.deployment.name", "kubernetes.deployment.name"),
    ("k8s.statefulset.name", "kubernetes.statefulset.name"),
    ("k8s.daemonset.name", "kubernetes.daemonset.name"),
    ("k8s.container.name", "kubernetes.container.name"),
    ("container.image.tag", "container.image.tag"),
];

pub(super) fn ecs_common(d: &mut Map<String, Value>, ctx: &Context<'_>, ds: Option<&DataStream>) {
    for kv in &ctx.resource.attributes {
        if ROUTING_KEYS.contains(&kv.key.as_str()) {
            continue;
        }
        let key = ECS_RESOURCE
            .iter()
            .find(|(k, _)| *k == kv.key)
            .map(|(_, e)| *e)
            .unwrap_or(kv.key.as_str());
        d.insert(key.to_string(), kv_json(kv));
        if kv.key == "host.name" {
            d.insert("host.hostname".into(), kv_json(kv));
        }
    }
    if let Some(ds) = ds {
        d.insert("data_stream.type".into(), ds.ty.into());
        d.insert("data_stream.dataset".into(), ds.dataset.clone().into());
        d.insert("data_stream.namespace".into(), ds.namespace.clone().into());
        d.insert("event.dataset".into(), ds.dataset.clone().into());
    }
}

/// Record attributes at the top level; a name already used by a mapped field goes to
/// `labels.<name>` instead of overwriting it.
pub(super) fn ecs_attributes(d: &mut Map<String, Value>, attrs: &[KeyValue]) {
    for kv in attrs {
        if ROUTING_KEYS.contains(&kv.key.as_str()) {
            continue;
        }
        let key = if d.contains_key(&kv.key) {
            format!("labels.{}", kv.key.replace('.', "_"))
        } else {
            kv.key.clone()
        };
        d.insert(key, kv_json(kv));
    }
}

fn ecs_log(ctx: &Context<'_>, r: &LogRecord, ds: Option<&DataStream>) -> Value {
    let mut d = Map::new();
    d.insert("@timestamp".into(), timestamp(log_time(r)).into());
    if r.observed_time_unix_nano != 0 {
        d.insert(
            "event.created".into(),
            timestamp(r.observed_time_unix_nano).into(),
        );
    }
    if let Some(v) = r.body.as_ref().and_then(|b| b.value.as_ref()) {
        d.insert("message".into(), value_to_string(v).into());
    }
    put_str(&mut d, "log.level", &r.severity_text);
    put_nonzero(&mut d, "event.severity", r.severity_number as i64);
    put_id(&mut d, "trace.id", &r.trace_id);
    put_id(&mut d, "span.id", &r.span_id);
    put_str(&mut d, "log.logger", &ctx.scope.name);
    if let Some(n) = event_name(r) {
        put_str(&mut d, "event.action", n);
    }
    ecs_common(&mut d, ctx, ds);
    ecs_attributes(&mut d, &r.attributes);
    Value::Object(d)
}

fn ecs_span(ctx: &Context<'_>, s: &Span, ds: Option<&DataStream>) -> Value {
    let mut d = Map::new();
    d.insert(
        "@timestamp".into(),
        timestamp(s.start_time_unix_nano).into(),
    );
    d.insert("processor.event".into(), "span".into());
    put_id(&mut d, "trace.id", &s.trace_id);
    put_id(&mut d, "span.id", &s.span_id);
    put_id(&mut d, "parent.id", &s.parent_span_id);
    put_str(&mut d, "span.name", &s.name);
    put_str(&mut d, "span.kind", &kind_name(s.kind).to_ascii_uppercase());
    let micros = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1_000;
    d.insert("span.duration.us".into(), micros.into());
    let (outcome, code) = match s.status.as_ref().map(|st| st.code).unwrap_or(0) {
        1 => ("success", "Ok"),
        2 => ("failure", "Error"),
        _ => ("unknown", "Unset"),
    };
    d.insert("event.outcome".into(), outcome.into());
    d.insert("span.status.code".into(), code.into());
    if let Some(st) = &s.status {
        put_str(&mut d, "span.status.message", &st.message);
    }
    put_str(&mut d, "service.framework.name", &ctx.scope.name);
    put_str(&mut d, "service.framework.version", &ctx.scope.version);
    if !s.events.is_empty() {
        let events = s
            .events
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("@timestamp".into(), timestamp(e.time_unix_nano).into());
                put_str(&mut m, "name", &e.name);
                for kv in &e.attributes {
                    m.insert(kv.key.clone(), kv_json(kv));
                }
                Value::Object(m)
            })
            .collect();
        d.insert("span.events".into(), Value::Array(events));
    }
    if !s.links.is_empty() {
        let links = s
            .links
            .iter()
            .map(|l| {
                let mut m = Map::new();
                put_id(&mut m, "trace.id", &l.trace_id);
                put_id(&mut m, "span.id", &l.span_id);
                Value::Object(m)
            })
            .collect();
        d.insert("span.links".into(), Value::Array(links));
    }
    ecs_common(&mut d, ctx, ds);
    ecs_attributes(&mut d, &s.attributes);
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::string_value;

    use crate::data::kv;

    #[test]
    fn timestamps_keep_nanoseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            timestamp(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn bodies_pick_text_or_structured() {
        use any_value::Value as V;
        let text = AnyValue {
            value: Some(string_value("hi")),
        };
        assert_eq!(otel_body(&text), Some(json!({"text": "hi"})));
        let arr = AnyValue {
            value: Some(V::ArrayValue(crate::data::ArrayValue {
                values: vec![AnyValue {
                    value: Some(V::IntValue(1)),
                }],
            })),
        };
        assert_eq!(otel_body(&arr), Some(json!({"structured": {"value": [1]}})));
        assert_eq!(otel_body(&AnyValue { value: None }), None);
    }

    #[test]
    fn routing_attributes_are_not_data_and_ecs_collisions_go_to_labels() {
        let attrs = vec![
            kv("data_stream.dataset", string_value("nginx")),
            kv("message", string_value("shadow")),
            kv("http.method", string_value("GET")),
        ];
        assert_eq!(attributes(&attrs).len(), 2);
        let mut d = Map::new();
        d.insert("message".into(), "real".into());
        ecs_attributes(&mut d, &attrs);
        assert_eq!(d["message"], "real");
        assert_eq!(d["labels.message"], "shadow");
        assert_eq!(d["http.method"], "GET");
        assert!(!d.contains_key("data_stream.dataset"));
    }
}
