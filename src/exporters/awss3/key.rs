//! Object keys: `{s3_prefix}/{partition}/{file_prefix}{signal}_{id}.{ext}`.
//!
//! The partition is rendered from each record's own timestamp (not the upload time), so a
//! batch holding late data is split into one group per partition and every record lands in
//! the hour it happened in. The format is strftime (UTC) plus `%{attribute}` placeholders
//! naming resource attributes (`service=%{service.name}/year=%Y/...`; a missing attribute
//! renders as `unknown`; a `resource.` prefix is accepted and stripped when the attribute
//! itself has no such key). Attribute values are made key-safe: anything but ASCII letters,
//! digits, `.`, `-` and `_` becomes `_`, so a value can never add a path level.
//!
//! Which timestamp: logs `time_unix_nano`, else `observed_time_unix_nano`; spans
//! `start_time_unix_nano`; metrics the first data point's `time_unix_nano`. A record with
//! none of these uses the `now` passed in (the upload time) — such a record may land in a
//! different partition on a retry; records from OTel SDKs always carry one.
//!
//! The unique id is a hash of the object's content, so a retried send writes the very same
//! keys (an overwrite, never a second copy), and so does a replay from the persistent queue.

use std::collections::BTreeMap;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::data::{
    Batch, KeyValue, Metric, ResourceLogs, ResourceMetrics, ResourceSpans, ScopeLogs, ScopeMetrics,
    ScopeSpans, Signal, attr, hex, metric, value_to_string,
};

/// The Collector's default `s3_partition_format`.
pub const DEFAULT_PARTITION_FORMAT: &str = "year=%Y/month=%m/day=%d/hour=%H/minute=%M";

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    /// A strftime fragment (may be plain text).
    Time(String),
    /// `%{name}`: a resource attribute.
    Attr(String),
}

/// A parsed `s3_partition_format`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionFormat {
    segments: Vec<Segment>,
}

impl PartitionFormat {
    /// Parses and checks the format: every strftime specifier must be known (chrono would
    /// otherwise fail while rendering) and every `%{` must be closed.
    pub fn parse(format: &str) -> Result<PartitionFormat, String> {
        let mut segments = Vec::new();
        let mut time = String::new();
        let mut rest = format;
        while let Some(pos) = rest.find('%') {
            time.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(inner) = after.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("unclosed %{{ in partition format {format:?}"))?;
                let name = inner[..end].trim();
                if name.is_empty() {
                    return Err(format!("empty %{{}} in partition format {format:?}"));
                }
                if !time.is_empty() {
                    segments.push(Segment::Time(std::mem::take(&mut time)));
                }
                segments.push(Segment::Attr(name.to_string()));
                rest = &inner[end + 1..];
            } else {
                // Keep `%X` (including `%%`) for strftime; specifiers are one character
                // after optional padding flags, which chrono validates below.
                let mut chars = after.char_indices();
                let mut take = 0;
                for (i, c) in chars.by_ref() {
                    take = i + c.len_utf8();
                    if !matches!(c, '-' | '_' | '0' | '.' | ':' | '#' | '3' | '6' | '9') {
                        break;
                    }
                }
                time.push('%');
                time.push_str(&after[..take]);
                rest = &after[take..];
            }
        }
        time.push_str(rest);
        if !time.is_empty() {
            segments.push(Segment::Time(time));
        }
        for s in &segments {
            if let Segment::Time(t) = s
                && StrftimeItems::new(t).any(|i| matches!(i, Item::Error))
            {
                return Err(format!(
                    "invalid strftime specifier in partition format {format:?}"
                ));
            }
        }
        Ok(PartitionFormat { segments })
    }

    /// The partition of a record with timestamp `t` from a resource with `attrs`.
    pub fn render(&self, t: DateTime<Utc>, attrs: &[KeyValue]) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Time(f) => out.push_str(&t.format(f).to_string()),
                Segment::Attr(name) => {
                    let v = attr(attrs, name)
                        .or_else(|| name.strip_prefix("resource.").and_then(|n| attr(attrs, n)));
                    match v {
                        Some(v) => out.push_str(&key_safe(&value_to_string(v))),
                        None => out.push_str("unknown"),
                    }
                }
            }
        }
        out
    }
}

fn key_safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.as_str() {
        "" => "unknown".into(),
        "." | ".." => cleaned.replace('.', "_"),
        _ => cleaned,
    }
}

/// Nanoseconds since the epoch to a UTC time (saturating far-future values).
pub fn time_of(nanos: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// `{prefix}/{partition}/{file_prefix}{signal}_{id}.{ext}` without empty levels.
pub fn object_key(
    prefix: &str,
    partition: &str,
    file_prefix: &str,
    signal: Signal,
    id: &str,
    ext: &str,
) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let prefix = prefix.trim_matches('/');
    let partition = partition.trim_matches('/');
    if !prefix.is_empty() {
        parts.push(prefix);
    }
    if !partition.is_empty() {
        parts.push(partition);
    }
    let name = format!("{file_prefix}{}_{id}.{ext}", signal.as_str());
    parts.push(&name);
    parts.join("/")
}

/// The content id of an object: 24 hex characters of SHA-256 over the signal and the
/// protobuf encoding of what it holds (deterministic, so retries reuse the key).
pub fn content_id(batch: &Batch) -> String {
    let mut h = Sha256::new();
    h.update([batch.signal().tag()]);
    h.update(batch.encode_proto());
    hex(&h.finalize()[..12])
}

fn resource_attrs(r: &Option<crate::data::Resource>) -> &[KeyValue] {
    r.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[])
}

/// Groups a batch's records by partition, keeping resource and scope structure. Partitions
/// come out sorted; records keep their order within a partition.
pub fn group_by_partition(
    batch: &Batch,
    format: &PartitionFormat,
    now_nanos: u64,
) -> BTreeMap<String, Batch> {
    let pick = |t: u64| if t == 0 { now_nanos } else { t };
    match batch {
        // Decoded on demand (the delivery layer decodes for exporters that need contents).
        Batch::Raw(r) => match r.decode() {
            Ok(b) => group_by_partition(&b, format, now_nanos),
            Err(e) => {
                tracing::error!("cannot decode forwarded data: {e}");
                BTreeMap::new()
            }
        },
        Batch::Traces(v) => {
            let mut out: BTreeMap<String, Vec<ResourceSpans>> = BTreeMap::new();
            for rs in v {
                let attrs = resource_attrs(&rs.resource);
                let mut by: BTreeMap<String, ResourceSpans> = BTreeMap::new();
                for ss in &rs.scope_spans {
                    let mut scopes: BTreeMap<String, ScopeSpans> = BTreeMap::new();
                    for s in &ss.spans {
                        let p = format.render(time_of(pick(s.start_time_unix_nano)), attrs);
                        scopes
                            .entry(p)
                            .or_insert_with(|| ss.clone_empty())
                            .spans
                            .push(s.clone());
                    }
                    for (p, scope) in scopes {
                        by.entry(p)
                            .or_insert_with(|| rs.clone_empty())
                            .scope_spans
                            .push(scope);
                    }
                }
                for (p, r) in by {
                    out.entry(p).or_default().push(r);
                }
            }
            out.into_iter()
                .map(|(k, v)| (k, Batch::Traces(v)))
                .collect()
        }
        Batch::Logs(v) => {
            let mut out: BTreeMap<String, Vec<ResourceLogs>> = BTreeMap::new();
            for rl in v {
                let attrs = resource_attrs(&rl.resource);
                let mut by: BTreeMap<String, ResourceLogs> = BTreeMap::new();
                for sl in &rl.scope_logs {
                    let mut scopes: BTreeMap<String, ScopeLogs> = BTreeMap::new();
                    for r in &sl.log_records {
                        let t = if r.time_unix_nano != 0 {
                            r.time_unix_nano
                        } else {
                            r.observed_time_unix_nano
                        };
                        let p = format.render(time_of(pick(t)), attrs);
                        scopes
                            .entry(p)
                            .or_insert_with(|| sl.clone_empty())
                            .log_records
                            .push(r.clone());
                    }
                    for (p, scope) in scopes {
                        by.entry(p)
                            .or_insert_with(|| rl.clone_empty())
                            .scope_logs
                            .push(scope);
                    }
                }
                for (p, r) in by {
                    out.entry(p).or_default().push(r);
                }
            }
            out.into_iter().map(|(k, v)| (k, Batch::Logs(v))).collect()
        }
        Batch::Metrics(v) => {
            let mut out: BTreeMap<String, Vec<ResourceMetrics>> = BTreeMap::new();
            for rm in v {
                let attrs = resource_attrs(&rm.resource);
                let mut by: BTreeMap<String, ResourceMetrics> = BTreeMap::new();
                for sm in &rm.scope_metrics {
                    let mut scopes: BTreeMap<String, ScopeMetrics> = BTreeMap::new();
                    for m in &sm.metrics {
                        let p = format.render(time_of(pick(metric_time(m))), attrs);
                        scopes
                            .entry(p)
                            .or_insert_with(|| sm.clone_empty())
                            .metrics
                            .push(m.clone());
                    }
                    for (p, scope) in scopes {
                        by.entry(p)
                            .or_insert_with(|| rm.clone_empty())
                            .scope_metrics
                            .push(scope);
                    }
                }
                for (p, r) in by {
                    out.entry(p).or_default().push(r);
                }
            }
            out.into_iter()
                .map(|(k, v)| (k, Batch::Metrics(v)))
                .collect()
        }
    }
}

/// The time of a metric's first data point (metrics are partitioned whole).
pub fn metric_time(m: &Metric) -> u64 {
    use metric::Data;
    let first = match &m.data {
        Some(Data::Gauge(g)) => g.data_points.first().map(|p| p.time_unix_nano),
        Some(Data::Sum(s)) => s.data_points.first().map(|p| p.time_unix_nano),
        Some(Data::Histogram(h)) => h.data_points.first().map(|p| p.time_unix_nano),
        Some(Data::ExponentialHistogram(h)) => h.data_points.first().map(|p| p.time_unix_nano),
        Some(Data::Summary(s)) => s.data_points.first().map(|p| p.time_unix_nano),
        None => None,
    };
    first.unwrap_or(0)
}

/// A copy of a resource- or scope-level message without its items (which may be large).
trait CloneEmpty {
    fn clone_empty(&self) -> Self;
}

impl CloneEmpty for ResourceSpans {
    fn clone_empty(&self) -> Self {
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}
impl CloneEmpty for ResourceLogs {
    fn clone_empty(&self) -> Self {
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}
impl CloneEmpty for ResourceMetrics {
    fn clone_empty(&self) -> Self {
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}
impl CloneEmpty for ScopeSpans {
    fn clone_empty(&self) -> Self {
        ScopeSpans {
            scope: self.scope.clone(),
            spans: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}
impl CloneEmpty for ScopeLogs {
    fn clone_empty(&self) -> Self {
        ScopeLogs {
            scope: self.scope.clone(),
            log_records: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}
impl CloneEmpty for ScopeMetrics {
    fn clone_empty(&self) -> Self {
        ScopeMetrics {
            scope: self.scope.clone(),
            metrics: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LogRecord, Resource, Span, set_attr, string_value};

    const HOUR: u64 = 3_600_000_000_000;
    // 2026-11-25T10:15:00Z
    const T10: u64 = 1_795_601_700_000_000_000;

    fn logs(service: &str, times: &[u64]) -> ResourceLogs {
        let mut attrs = Vec::new();
        set_attr(&mut attrs, "service.name", string_value(service));
        ResourceLogs {
            resource: Some(Resource {
                attributes: attrs,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: times
                    .iter()
                    .map(|t| LogRecord {
                        time_unix_nano: *t,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }
    }

    #[test]
    fn renders_time_and_attributes() {
        let f = PartitionFormat::parse("service=%{service.name}/year=%Y/month=%m/day=%d/hour=%H")
            .unwrap();
        let mut attrs = Vec::new();
        set_attr(&mut attrs, "service.name", string_value("check out/../x"));
        assert_eq!(
            f.render(time_of(T10), &attrs),
            "service=check_out_.._x/year=2026/month=11/day=25/hour=10"
        );
        assert_eq!(
            f.render(time_of(T10), &[]),
            "service=unknown/year=2026/month=11/day=25/hour=10"
        );
        let f = PartitionFormat::parse("%{resource.service.name}/%Y").unwrap();
        assert_eq!(f.render(time_of(T10), &attrs), "check_out_.._x/2026");
        let f = PartitionFormat::parse(DEFAULT_PARTITION_FORMAT).unwrap();
        assert_eq!(
            f.render(time_of(T10), &[]),
            "year=2026/month=11/day=25/hour=10/minute=15"
        );
        let f = PartitionFormat::parse("100%%/%-H").unwrap();
        assert_eq!(f.render(time_of(T10), &[]), "100%/10");
    }

    #[test]
    fn rejects_bad_formats() {
        assert!(PartitionFormat::parse("year=%Y/%{service.name").is_err());
        assert!(PartitionFormat::parse("%{}").is_err());
        assert!(PartitionFormat::parse("%Q").is_err());
    }

    #[test]
    fn keys_have_no_empty_levels() {
        assert_eq!(
            object_key("", "p=1", "", Signal::Logs, "ab", "json.gz"),
            "p=1/logs_ab.json.gz"
        );
        assert_eq!(
            object_key("/arch/", "p=1/", "x-", Signal::Traces, "ab", "parquet"),
            "arch/p=1/x-traces_ab.parquet"
        );
    }

    #[test]
    fn late_records_land_in_their_own_hour() {
        let f = PartitionFormat::parse("svc=%{service.name}/hour=%H").unwrap();
        let b = Batch::Logs(vec![
            logs("a", &[T10, T10 - 2 * HOUR, T10 + 1]),
            logs("b", &[T10]),
        ]);
        let groups = group_by_partition(&b, &f, 0);
        let keys: Vec<&str> = groups.keys().map(String::as_str).collect();
        assert_eq!(keys, ["svc=a/hour=08", "svc=a/hour=10", "svc=b/hour=10"]);
        assert_eq!(groups["svc=a/hour=10"].item_count(), 2);
        assert_eq!(groups["svc=a/hour=08"].item_count(), 1);
        let total: usize = groups.values().map(Batch::item_count).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn untimed_records_use_now_and_spans_their_start() {
        let f = PartitionFormat::parse("%H").unwrap();
        let b = Batch::Logs(vec![logs("a", &[0])]);
        assert_eq!(
            group_by_partition(&b, &f, T10 + HOUR)
                .keys()
                .next()
                .unwrap(),
            "11"
        );
        let b = Batch::Traces(vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    start_time_unix_nano: T10,
                    end_time_unix_nano: T10 + 2 * HOUR,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }]);
        assert_eq!(group_by_partition(&b, &f, 0).keys().next().unwrap(), "10");
    }

    #[test]
    fn content_id_is_stable_and_content_dependent() {
        let a = Batch::Logs(vec![logs("a", &[T10])]);
        let b = Batch::Logs(vec![logs("a", &[T10 + 1])]);
        assert_eq!(content_id(&a), content_id(&a.clone()));
        assert_ne!(content_id(&a), content_id(&b));
        assert_eq!(content_id(&a).len(), 24);
    }
}
