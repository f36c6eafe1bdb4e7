//! The pure encoder: a logs [`Batch`] → one [`TenantPush`] per tenant → Loki's protobuf or
//! JSON push body. No I/O and no clock: `now_ns` (used for records without any timestamp)
//! is passed in.
//!
//! - Records with identical labels (per tenant) share one stream; streams are ordered by
//!   label string and entries within a stream by timestamp (stable), because Loki rejects
//!   entries older than the stream's newest one (`entry out of order`) or outside its
//!   out-of-order window (`entry too far behind`).
//! - Timestamp: `time_unix_nano`, else `observed_time_unix_nano`, else `now_ns` (as Loki's
//!   OTLP endpoint does).
//! - Structured metadata (on by default) carries what is not a label, with Loki 3's OTLP
//!   names: `trace_id`, `span_id`, `severity_text`, `severity_number`, `scope_name`,
//!   `scope_version`, then record attributes, then resource attributes (names normalized,
//!   maps flattened with `_`). It is kept within the limits (entries, then bytes of
//!   names + values, counted as Loki counts) by dropping the last entries and cutting the
//!   longest values; each truncated record is counted.
//! - Line formats: `json` (`{"body":…}` plus, when structured metadata is off, `traceid`,
//!   `spanid`, `severity`, `attributes`, `resources`, `instrumentation_scope` — the
//!   Collector's old Loki exporter layout), `logfmt` (`msg=…` or the body map's keys, plus
//!   `traceID`, `spanID`, `severity`, attributes and `resource_*` when metadata is off) and
//!   `raw` (the body as text).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::labels::{
    LabelRules, RecordLabels, UNKNOWN_SERVICE, label_string, normalize_name, truncate_at_boundary,
};
use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use crate::data::{
    AnyValue, Batch, KeyValue, LogRecord, ResourceLogs, ScopeLogs, any_value, hex, value_to_json,
    value_to_string,
};

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    #[default]
    Json,
    Logfmt,
    Raw,
}

/// Loki's per-tenant limits the encoder keeps within (Loki 3 defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// `limits_config.max_label_value_length`
    pub max_label_value_length: usize,
    /// `limits_config.max_structured_metadata_size` (bytes of names + values)
    pub max_structured_metadata_size: usize,
    /// `limits_config.max_structured_metadata_entries_count`
    pub max_structured_metadata_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_label_value_length: 2048,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries: 128,
        }
    }
}

/// Where a record's tenant comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TenantRule {
    /// One tenant (or none: no `X-Scope-OrgID`).
    Fixed(Option<String>),
    /// The record's attribute `key`, else the resource's, else `fallback`.
    Attribute {
        key: String,
        fallback: Option<String>,
    },
}

impl TenantRule {
    fn resolve(&self, resource: &[KeyValue], record: &[KeyValue]) -> Option<String> {
        match self {
            TenantRule::Fixed(t) => t.clone(),
            TenantRule::Attribute { key, fallback } => crate::data::attr(record, key)
                .or_else(|| crate::data::attr(resource, key))
                .map(value_to_string)
                .filter(|t| !t.is_empty())
                .or_else(|| fallback.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub labels: LabelRules,
    pub line_format: LineFormat,
    pub structured_metadata: bool,
    pub limits: Limits,
    pub tenant: TenantRule,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub ts_ns: u64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub labels: BTreeMap<String, String>,
    pub entries: Vec<Entry>,
}

/// Truncations made while encoding (counted in metrics by the exporter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub label_values: u64,
    pub metadata_size: u64,
    pub metadata_entries: u64,
}

/// Everything going to one tenant in one request.
#[derive(Debug, Clone)]
pub struct TenantPush {
    pub tenant: Option<String>,
    /// Sorted by label string.
    pub streams: Vec<Stream>,
    /// The records of this tenant, kept only when tenants come from attributes (a batch
    /// can then be partly retried); `None` means "the whole batch".
    pub records: Option<Batch>,
    pub stats: Stats,
}

#[derive(Default)]
struct Acc {
    streams: BTreeMap<String, Stream>,
    resources: Vec<ResourceLogs>,
    stats: Stats,
}

/// Groups the batch's log records per tenant and stream. Other signals give nothing.
pub fn encode(batch: &Batch, opts: &EncodeOptions, now_ns: u64) -> Vec<TenantPush> {
    let Batch::Logs(rls) = batch else {
        return Vec::new();
    };
    let keep_records = matches!(opts.tenant, TenantRule::Attribute { .. });
    let mut tenants: BTreeMap<Option<String>, Acc> = BTreeMap::new();
    for rl in rls {
        let res_attrs: &[KeyValue] = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let mut rl_parts: BTreeMap<Option<String>, ResourceLogs> = BTreeMap::new();
        for sl in &rl.scope_logs {
            let mut sl_parts: BTreeMap<Option<String>, ScopeLogs> = BTreeMap::new();
            for rec in &sl.log_records {
                let tenant = opts.tenant.resolve(res_attrs, &rec.attributes);
                if keep_records {
                    sl_parts
                        .entry(tenant.clone())
                        .or_insert_with(|| ScopeLogs {
                            scope: sl.scope.clone(),
                            log_records: Vec::new(),
                            schema_url: sl.schema_url.clone(),
                        })
                        .log_records
                        .push(rec.clone());
                }
                let acc = tenants.entry(tenant).or_default();
                let labels = opts.labels.labels_for(
                    res_attrs,
                    &rec.attributes,
                    rec.severity_number,
                    &rec.severity_text,
                );
                acc.stats.label_values += labels.truncated;
                let entry = encode_entry(rec, sl, res_attrs, &labels, opts, now_ns, &mut acc.stats);
                let mut label_map = labels.labels;
                if label_map.is_empty() {
                    label_map.insert(UNKNOWN_SERVICE.0.to_string(), UNKNOWN_SERVICE.1.to_string());
                }
                acc.streams
                    .entry(label_string(&label_map))
                    .or_insert_with(|| Stream {
                        labels: label_map,
                        entries: Vec::new(),
                    })
                    .entries
                    .push(entry);
            }
            for (t, part) in sl_parts {
                rl_parts
                    .entry(t)
                    .or_insert_with(|| ResourceLogs {
                        resource: rl.resource.clone(),
                        scope_logs: Vec::new(),
                        schema_url: rl.schema_url.clone(),
                    })
                    .scope_logs
                    .push(part);
            }
        }
        for (t, part) in rl_parts {
            tenants.entry(t).or_default().resources.push(part);
        }
    }
    tenants
        .into_iter()
        .map(|(tenant, acc)| TenantPush {
            tenant,
            streams: acc
                .streams
                .into_values()
                .map(|mut s| {
                    s.entries.sort_by_key(|e| e.ts_ns);
                    s
                })
                .collect(),
            records: keep_records.then_some(Batch::Logs(acc.resources)),
            stats: acc.stats,
        })
        .collect()
}

fn encode_entry(
    rec: &LogRecord,
    sl: &ScopeLogs,
    res_attrs: &[KeyValue],
    labels: &RecordLabels,
    opts: &EncodeOptions,
    now_ns: u64,
    stats: &mut Stats,
) -> Entry {
    let ts_ns = [rec.time_unix_nano, rec.observed_time_unix_nano, now_ns]
        .into_iter()
        .find(|t| *t != 0)
        .unwrap_or(0);
    let rec_attrs: Vec<&KeyValue> = rec
        .attributes
        .iter()
        .filter(|kv| !labels.used_record.contains(&kv.key))
        .collect();
    let res_attrs: Vec<&KeyValue> = res_attrs
        .iter()
        .filter(|kv| !labels.used_resource.contains(&kv.key))
        .collect();
    let mut metadata = Vec::new();
    if opts.structured_metadata {
        if !rec.trace_id.is_empty() {
            metadata.push(("trace_id".to_string(), hex(&rec.trace_id)));
        }
        if !rec.span_id.is_empty() {
            metadata.push(("span_id".to_string(), hex(&rec.span_id)));
        }
        if !rec.severity_text.is_empty() {
            metadata.push(("severity_text".to_string(), rec.severity_text.clone()));
        }
        if rec.severity_number != 0 {
            metadata.push((
                "severity_number".to_string(),
                rec.severity_number.to_string(),
            ));
        }
        if let Some(scope) = &sl.scope {
            if !scope.name.is_empty() {
                metadata.push(("scope_name".to_string(), scope.name.clone()));
            }
            if !scope.version.is_empty() {
                metadata.push(("scope_version".to_string(), scope.version.clone()));
            }
        }
        for kv in rec_attrs.iter().chain(res_attrs.iter()) {
            if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                flatten(&normalize_name(&kv.key), v, &mut metadata);
            }
        }
        limit_metadata(&mut metadata, &opts.limits, stats);
    }
    let line = match opts.line_format {
        LineFormat::Raw => rec
            .body
            .as_ref()
            .and_then(|b| b.value.as_ref())
            .map(value_to_string)
            .unwrap_or_default(),
        LineFormat::Json => json_line(rec, sl, &rec_attrs, &res_attrs, opts.structured_metadata),
        LineFormat::Logfmt => logfmt_line(rec, &rec_attrs, &res_attrs, opts.structured_metadata),
    };
    Entry {
        ts_ns,
        line,
        metadata,
    }
}

/// Maps become `parent_child` entries (as Loki's OTLP ingestion does); other values text.
pub(super) fn flatten(name: &str, v: &any_value::Value, out: &mut Vec<(String, String)>) {
    match v {
        any_value::Value::KvlistValue(kvs) => {
            for kv in &kvs.values {
                if let Some(inner) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    flatten(&format!("{name}_{}", normalize_name(&kv.key)), inner, out);
                }
            }
        }
        other => {
            let s = value_to_string(other);
            if !s.is_empty() {
                out.push((name.to_string(), s));
            }
        }
    }
}

/// Keeps metadata within Loki's entry-count and size limits: drops the entries past the
/// count (attributes of the resource go first, trace context last), then cuts the longest
/// values until names + values fit.
pub fn limit_metadata(md: &mut Vec<(String, String)>, limits: &Limits, stats: &mut Stats) {
    if limits.max_structured_metadata_entries > 0
        && md.len() > limits.max_structured_metadata_entries
    {
        md.truncate(limits.max_structured_metadata_entries);
        stats.metadata_entries += 1;
    }
    let max = limits.max_structured_metadata_size;
    let size =
        |md: &Vec<(String, String)>| md.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut total = size(md);
    if max == 0 || total <= max {
        return;
    }
    stats.metadata_size += 1;
    while total > max {
        let Some((i, longest)) = md
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (i, v.len()))
            .max_by_key(|(_, l)| *l)
        else {
            return;
        };
        if longest == 0 {
            // Only names are left and they alone are too large: drop entries from the end.
            md.pop();
        } else {
            truncate_at_boundary(&mut md[i].1, longest.saturating_sub(total - max));
        }
        total = size(md);
    }
}

fn body_json(rec: &LogRecord) -> Option<Json> {
    rec.body
        .as_ref()
        .and_then(|b| b.value.as_ref())
        .map(value_to_json)
}

fn attrs_json(attrs: &[&KeyValue]) -> Map<String, Json> {
    attrs
        .iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(value_to_json)
                .unwrap_or(Json::Null);
            (kv.key.clone(), v)
        })
        .collect()
}

pub(super) fn json_line(
    rec: &LogRecord,
    sl: &ScopeLogs,
    rec_attrs: &[&KeyValue],
    res_attrs: &[&KeyValue],
    metadata: bool,
) -> String {
    let mut o = Map::new();
    if let Some(b) = body_json(rec) {
        o.insert("body".into(), b);
    }
    if !metadata {
        if !rec.trace_id.is_empty() {
            o.insert("traceid".into(), Json::String(hex(&rec.trace_id)));
        }
        if !rec.span_id.is_empty() {
            o.insert("spanid".into(), Json::String(hex(&rec.span_id)));
        }
        if let Some(sev) = severity(rec) {
            o.insert("severity".into(), Json::String(sev));
        }
        if !rec_attrs.is_empty() {
            o.insert("attributes".into(), Json::Object(attrs_json(rec_attrs)));
        }
        if !res_attrs.is_empty() {
            o.insert("resources".into(), Json::Object(attrs_json(res_attrs)));
        }
        if let Some(scope) = sl.scope.as_ref().filter(|s| !s.name.is_empty()) {
            let mut s = Map::new();
            s.insert("name".into(), Json::String(scope.name.clone()));
            if !scope.version.is_empty() {
                s.insert("version".into(), Json::String(scope.version.clone()));
            }
            o.insert("instrumentation_scope".into(), Json::Object(s));
        }
    }
    Json::Object(o).to_string()
}

fn severity(rec: &LogRecord) -> Option<String> {
    if !rec.severity_text.is_empty() {
        return Some(rec.severity_text.clone());
    }
    super::labels::level_of(rec.severity_number, "").map(str::to_string)
}

pub(super) fn logfmt_line(
    rec: &LogRecord,
    rec_attrs: &[&KeyValue],
    res_attrs: &[&KeyValue],
    metadata: bool,
) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::KvlistValue(kvs)) => {
            for kv in &kvs.values {
                let v = kv
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                    .map(value_to_string)
                    .unwrap_or_default();
                pairs.push((normalize_name(&kv.key), v));
            }
        }
        Some(v) => pairs.push(("msg".into(), value_to_string(v))),
        None => {}
    }
    if !metadata {
        if !rec.trace_id.is_empty() {
            pairs.push(("traceID".into(), hex(&rec.trace_id)));
        }
        if !rec.span_id.is_empty() {
            pairs.push(("spanID".into(), hex(&rec.span_id)));
        }
        if let Some(sev) = severity(rec) {
            pairs.push(("severity".into(), sev));
        }
        for (prefix, attrs) in [("", rec_attrs), ("resource_", res_attrs)] {
            for kv in attrs {
                let v = kv
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                    .map(value_to_string)
                    .unwrap_or_default();
                pairs.push((format!("{prefix}{}", normalize_name(&kv.key)), v));
            }
        }
    }
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&k);
        out.push('=');
        out.push_str(&logfmt_value(&v));
    }
    out
}

fn logfmt_value(v: &str) -> String {
    let needs_quotes = v.is_empty()
        || v.chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if !needs_quotes {
        return v.to_string();
    }
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

impl TenantPush {
    pub fn entry_count(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }

    /// Entries per label string (to count what Loki rejects stream by stream).
    pub fn entries_by_stream(&self) -> HashMap<String, usize> {
        self.streams
            .iter()
            .map(|s| (label_string(&s.labels), s.entries.len()))
            .collect()
    }

    pub fn to_proto(&self) -> PushRequest {
        PushRequest {
            streams: self
                .streams
                .iter()
                .map(|s| StreamAdapter {
                    labels: label_string(&s.labels),
                    entries: s
                        .entries
                        .iter()
                        .map(|e| EntryAdapter {
                            timestamp: Some(Timestamp::from_unix_nanos(e.ts_ns)),
                            line: e.line.clone(),
                            structured_metadata: e
                                .metadata
                                .iter()
                                .map(|(name, value)| LabelPairAdapter {
                                    name: name.clone(),
                                    value: value.clone(),
                                })
                                .collect(),
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        }
    }

    /// Loki's JSON push body: `{"streams":[{"stream":{…},"values":[["<ns>","line",{…}]]}]}`
    /// (the third element, structured metadata, only when there is some).
    pub fn to_json(&self) -> Vec<u8> {
        let streams: Vec<Json> = self
            .streams
            .iter()
            .map(|s| {
                let values: Vec<Json> = s
                    .entries
                    .iter()
                    .map(|e| {
                        let mut v = vec![
                            Json::String(e.ts_ns.to_string()),
                            Json::String(e.line.clone()),
                        ];
                        if !e.metadata.is_empty() {
                            let md: Map<String, Json> = e
                                .metadata
                                .iter()
                                .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                                .collect();
                            v.push(Json::Object(md));
                        }
                        Json::Array(v)
                    })
                    .collect();
                let labels: Map<String, Json> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                    .collect();
                serde_json::json!({"stream": labels, "values": values})
            })
            .collect();
        serde_json::json!({ "streams": streams })
            .to_string()
            .into_bytes()
    }
}

/// A string-bodied record (tests and examples).
pub fn text_record(ts_ns: u64, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: ts_ns,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.to_string())),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
