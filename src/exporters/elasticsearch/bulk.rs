//! The `_bulk` protocol without I/O: routing each item to an index or data stream, the
//! NDJSON body (one action line and one source line per document, every line ending in
//! `\n`), splitting it at `flush.bytes`, and rebuilding a batch from the items that must be
//! sent again. The answer is read in [`super::response`].
//!
//! Routing, in priority order: with `logs_dynamic_index.enabled` (`traces_…`, `metrics_…`),
//! the `elasticsearch.index` attribute (record / span / data point, then scope, then
//! resource); else `logs_index` / `traces_index` / `metrics_index`; else the data stream
//! `{type}-{dataset}-{namespace}` with
//! `data_stream.dataset` / `data_stream.namespace` from the attributes (same priority;
//! defaults `generic` / `default`; `otel` mode appends `.otel` to the dataset as the
//! Collector does: `logs-generic.otel-default`). Dataset and namespace are sanitised to
//! what Elasticsearch allows in a data stream name (lower case, no `-\/*?"<>| ,#:`).
//!
//! Actions: `create` for data streams (they accept nothing else) and for any index named
//! like one (`logs-*-*`, `traces-*-*`, `metrics-*-*`, which Elastic's index templates turn
//! into data streams); `index` for plain indices.
//!
//! Document ids: with `document_id: content_hash` (default) each document carries `_id` =
//! the first 128 bits of SHA-256 over its index and source. A retried `create` of a
//! document that was in fact indexed (the answer was lost to a timeout, or an item-level
//! retry raced) is answered 409 `version_conflict_engine_exception`, which counts as
//! success; a retried `index` overwrites the same document. Either way a document is
//! indexed once. The price: two records identical in every field (timestamp to the
//! nanosecond, body, attributes, resource, scope) are stored once, and Elasticsearch does
//! an id lookup per document. `document_id: auto` lets Elasticsearch generate ids. With
//! `logs_dynamic_id.enabled`, a log record's `elasticsearch.document_id` attribute (when
//! present and not empty) is its `_id` instead, as in the Collector.
//! Metric documents bound for a data stream never carry `_id`: metrics data streams are
//! time series (TSDB) indices, which derive the id from dimensions and timestamp
//! themselves and reject a client-chosen one — a resent point is answered 409 there too.

use std::ops::Range;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::mapping::{self, Context, DataStream, Mode};
use super::metrics;
use crate::data::{
    Batch, InstrumentationScope, KeyValue, Resource, ResourceLogs, ResourceSpans, ScopeLogs,
    ScopeSpans, Signal, attr_str, hex,
};

/// A document's content id: the first 128 bits of SHA-256 over its index, `\n` and its
/// source (see the module doc).
pub fn content_id(index: &str, source: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(index.as_bytes());
    h.update(b"\n");
    h.update(source);
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// The bulk action of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Index,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Index => "index",
        }
    }
}

/// One bulk item: where it goes, how, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub index: String,
    pub op: Op,
    pub id: Option<String>,
    pub source: Value,
    /// `source` serialised once (hashed for the id and written to the body).
    pub source_json: String,
}

impl Doc {
    /// The action line and the source line, each ending in `\n`.
    pub fn to_ndjson(&self) -> Vec<u8> {
        let mut meta = serde_json::Map::new();
        meta.insert("_index".into(), self.index.clone().into());
        if let Some(id) = &self.id {
            meta.insert("_id".into(), id.clone().into());
        }
        let action = json!({ self.op.as_str(): meta });
        let mut out = action.to_string().into_bytes();
        out.push(b'\n');
        out.extend_from_slice(self.source_json.as_bytes());
        out.push(b'\n');
        out
    }
}

/// `document_id`: how documents get their `_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentId {
    #[default]
    ContentHash,
    Auto,
}

/// Everything the pure encoding needs from the config.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    pub mode: Mode,
    pub logs_index: Option<String>,
    pub traces_index: Option<String>,
    pub logs_dynamic_index: bool,
    pub traces_dynamic_index: bool,
    pub metrics_index: Option<String>,
    pub metrics_dynamic_index: bool,
    /// `logs_dynamic_id.enabled`: a log record's `elasticsearch.document_id` attribute is its `_id`.
    pub logs_dynamic_id: bool,
    pub document_id: DocumentId,
}

/// `(index name, data stream it belongs to when routed by data stream)`.
pub type Target = (String, Option<DataStream>);

fn lookup<'a>(key: &str, chain: &[&'a [KeyValue]; 3]) -> Option<&'a str> {
    chain
        .iter()
        .find_map(|attrs| attr_str(attrs, key))
        .filter(|s| !s.is_empty())
}

/// Lower case, and `_` for every character a data stream name cannot hold (`-` separates
/// type, dataset and namespace, so it is replaced too). At most 100 characters.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .take(100)
        .collect()
}

/// Whether an index name is a data stream by Elastic's naming scheme.
pub fn is_data_stream_name(index: &str) -> bool {
    let mut parts = index.splitn(3, '-');
    matches!(parts.next(), Some("logs" | "traces" | "metrics"))
        && parts.next().is_some_and(|p| !p.is_empty())
        && parts.next().is_some_and(|p| !p.is_empty())
}

impl Encoder {
    /// Where an item with these attributes (record, scope, resource) goes.
    pub fn route(&self, signal: Signal, chain: [&[KeyValue]; 3]) -> Target {
        let (dynamic, fixed) = match signal {
            Signal::Logs => (self.logs_dynamic_index, &self.logs_index),
            Signal::Traces => (self.traces_dynamic_index, &self.traces_index),
            Signal::Metrics => (self.metrics_dynamic_index, &self.metrics_index),
        };
        if dynamic && let Some(ix) = lookup("elasticsearch.index", &chain) {
            return (ix.to_string(), None);
        }
        if let Some(ix) = fixed.as_ref().filter(|s| !s.is_empty()) {
            return (ix.clone(), None);
        }
        let ty = signal.as_str();
        let mut dataset = sanitize(lookup("data_stream.dataset", &chain).unwrap_or("generic"));
        let namespace = sanitize(lookup("data_stream.namespace", &chain).unwrap_or("default"));
        if self.mode == Mode::Otel && !dataset.ends_with(".otel") {
            dataset.push_str(".otel");
        }
        let index = format!("{ty}-{dataset}-{namespace}");
        (
            index,
            Some(DataStream {
                ty,
                dataset,
                namespace,
            }),
        )
    }

    fn doc(&self, signal: Signal, (index, ds): Target, source: Value) -> Doc {
        let source_json = source.to_string();
        let data_stream = ds.is_some() || is_data_stream_name(&index);
        let op = if data_stream { Op::Create } else { Op::Index };
        let id = match self.document_id {
            DocumentId::Auto => None,
            DocumentId::ContentHash if signal == Signal::Metrics && data_stream => None,
            DocumentId::ContentHash => Some(hex(&content_id(&index, source_json.as_bytes()))),
        };
        Doc {
            index,
            op,
            id,
            source,
            source_json,
        }
    }

    /// One document per item (span, log record, metric data point), in the batch's order
    /// (the order [`retain`] uses).
    pub fn documents(&self, batch: &Batch) -> Vec<Doc> {
        let none = Resource::default();
        let no_scope = InstrumentationScope::default();
        let mut out = Vec::with_capacity(batch.item_count());
        match batch {
            // Decoded on demand (the delivery layer decodes for this exporter already).
            Batch::Raw(r) => {
                if let Ok(b) = r.decode() {
                    return self.documents(&b);
                }
            }
            Batch::Logs(v) => {
                for rl in v {
                    let resource = rl.resource.as_ref().unwrap_or(&none);
                    for sl in &rl.scope_logs {
                        let scope = sl.scope.as_ref().unwrap_or(&no_scope);
                        let ctx = Context {
                            resource,
                            resource_schema_url: &rl.schema_url,
                            scope,
                            scope_schema_url: &sl.schema_url,
                        };
                        for r in &sl.log_records {
                            let t = self.route(
                                Signal::Logs,
                                [&r.attributes, &scope.attributes, &resource.attributes],
                            );
                            let src = mapping::log_document(self.mode, &ctx, r, t.1.as_ref());
                            let mut d = self.doc(Signal::Logs, t, src);
                            if self.logs_dynamic_id
                                && let Some(id) =
                                    attr_str(&r.attributes, "elasticsearch.document_id")
                                        .filter(|s| !s.is_empty())
                            {
                                d.id = Some(id.to_string());
                            }
                            out.push(d);
                        }
                    }
                }
            }
            Batch::Traces(v) => {
                for rs in v {
                    let resource = rs.resource.as_ref().unwrap_or(&none);
                    for ss in &rs.scope_spans {
                        let scope = ss.scope.as_ref().unwrap_or(&no_scope);
                        let ctx = Context {
                            resource,
                            resource_schema_url: &rs.schema_url,
                            scope,
                            scope_schema_url: &ss.schema_url,
                        };
                        for s in &ss.spans {
                            let t = self.route(
                                Signal::Traces,
                                [&s.attributes, &scope.attributes, &resource.attributes],
                            );
                            let src = mapping::span_document(self.mode, &ctx, s, t.1.as_ref());
                            out.push(self.doc(Signal::Traces, t, src));
                        }
                    }
                }
            }
            Batch::Metrics(v) => {
                for rm in v {
                    let resource = rm.resource.as_ref().unwrap_or(&none);
                    for sm in &rm.scope_metrics {
                        let scope = sm.scope.as_ref().unwrap_or(&no_scope);
                        let ctx = Context {
                            resource,
                            resource_schema_url: &rm.schema_url,
                            scope,
                            scope_schema_url: &sm.schema_url,
                        };
                        for m in &sm.metrics {
                            for p in metrics::points(m) {
                                let t = self.route(
                                    Signal::Metrics,
                                    [p.attributes(), &scope.attributes, &resource.attributes],
                                );
                                let src =
                                    metrics::point_document(self.mode, &ctx, m, p, t.1.as_ref());
                                out.push(self.doc(Signal::Metrics, t, src));
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// Splits documents (given as their NDJSON lengths) into consecutive ranges whose bodies
/// stay within `max_bytes`; a document larger than that gets a range of its own.
pub fn chunk_ranges(sizes: &[usize], max_bytes: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0usize;
    for (i, s) in sizes.iter().enumerate() {
        if i > start && acc + s > max_bytes {
            out.push(start..i);
            start = i;
            acc = 0;
        }
        acc += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// A new batch holding only the items whose flag is true (in [`Encoder::documents`] order);
/// empty resources and scopes are left out.
pub fn retain(batch: &Batch, keep: &[bool]) -> Batch {
    let mut flags = keep.iter().copied();
    let mut next = move || flags.next().unwrap_or(false);
    match batch {
        // Logs: the records the writer saw, in its order (unreadable resources left out).
        Batch::Raw(r) if r.signal() == Signal::Logs => {
            crate::data::view_logs::to_batch(batch, |i| keep.get(i).copied().unwrap_or(false)).0
        }
        Batch::Raw(r) => match r.decode() {
            Ok(b) => retain(&b, keep),
            Err(_) => Batch::empty(r.signal()),
        },
        Batch::Logs(v) => Batch::Logs(
            v.iter()
                .filter_map(|rl| {
                    let scope_logs: Vec<ScopeLogs> = rl
                        .scope_logs
                        .iter()
                        .filter_map(|sl| {
                            let log_records: Vec<_> =
                                sl.log_records.iter().filter(|_| next()).cloned().collect();
                            (!log_records.is_empty()).then(|| ScopeLogs {
                                log_records,
                                scope: sl.scope.clone(),
                                schema_url: sl.schema_url.clone(),
                            })
                        })
                        .collect();
                    (!scope_logs.is_empty()).then(|| ResourceLogs {
                        resource: rl.resource.clone(),
                        scope_logs,
                        schema_url: rl.schema_url.clone(),
                    })
                })
                .collect(),
        ),
        Batch::Traces(v) => Batch::Traces(
            v.iter()
                .filter_map(|rs| {
                    let scope_spans: Vec<ScopeSpans> = rs
                        .scope_spans
                        .iter()
                        .filter_map(|ss| {
                            let spans: Vec<_> =
                                ss.spans.iter().filter(|_| next()).cloned().collect();
                            (!spans.is_empty()).then(|| ScopeSpans {
                                spans,
                                scope: ss.scope.clone(),
                                schema_url: ss.schema_url.clone(),
                            })
                        })
                        .collect();
                    (!scope_spans.is_empty()).then(|| ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans,
                        schema_url: rs.schema_url.clone(),
                    })
                })
                .collect(),
        ),
        Batch::Metrics(v) => Batch::Metrics(metrics::retain(v, &mut next)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{AnyValue, LogRecord, string_value};

    use crate::data::kv_str as kv;

    fn logs(n: usize) -> Batch {
        let recs = (0..n)
            .map(|i| LogRecord {
                time_unix_nano: i as u64 + 1,
                body: Some(AnyValue {
                    value: Some(string_value(format!("line {i}"))),
                }),
                ..Default::default()
            })
            .collect();
        Batch::Logs(vec![ResourceLogs {
            resource: Some(Resource::default()),
            scope_logs: vec![ScopeLogs {
                log_records: recs,
                ..Default::default()
            }],
            schema_url: String::new(),
        }])
    }

    #[test]
    fn routes_by_data_stream_attributes_with_otel_suffix() {
        let e = Encoder::default();
        let rec = [kv("data_stream.dataset", "Nginx-Access")];
        let res = [
            kv("data_stream.namespace", "prod"),
            kv("data_stream.dataset", "x"),
        ];
        let (ix, ds) = e.route(Signal::Logs, [&rec, &[], &res]);
        assert_eq!(ix, "logs-nginx_access.otel-prod");
        assert_eq!(ds.unwrap().dataset, "nginx_access.otel");
        assert_eq!(
            e.route(Signal::Traces, [&[], &[], &[]]).0,
            "traces-generic.otel-default"
        );
        let ecs = Encoder {
            mode: Mode::Ecs,
            ..Default::default()
        };
        assert_eq!(
            ecs.route(Signal::Logs, [&[], &[], &[]]).0,
            "logs-generic-default"
        );
    }

    #[test]
    fn static_and_dynamic_indices() {
        let e = Encoder {
            logs_index: Some("app-logs".into()),
            logs_dynamic_index: true,
            ..Default::default()
        };
        assert_eq!(
            e.route(Signal::Logs, [&[], &[], &[]]),
            ("app-logs".into(), None)
        );
        let res = [kv("elasticsearch.index", "tenant-a")];
        assert_eq!(e.route(Signal::Logs, [&[], &[], &res]).0, "tenant-a");
        let docs = e.documents(&logs(1));
        assert_eq!(docs[0].op, Op::Index);
        assert!(is_data_stream_name("logs-foo-bar"));
        assert!(!is_data_stream_name("logs-foo"));
        assert!(!is_data_stream_name("app-logs"));
    }

    #[test]
    fn ndjson_ends_every_line_and_ids_are_deterministic() {
        let e = Encoder::default();
        let a = e.documents(&logs(3));
        let b = e.documents(&logs(3));
        assert_eq!(a, b);
        assert_eq!(a[0].op, Op::Create);
        assert_ne!(a[0].id, a[1].id);
        let nd = String::from_utf8(a[0].to_ndjson()).unwrap();
        let lines: Vec<&str> = nd.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        assert!(nd.ends_with('\n'));
        let action: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(action["create"]["_index"], "logs-generic.otel-default");
        assert_eq!(action["create"]["_id"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn dynamic_document_ids_come_from_the_record() {
        let mut b = logs(2);
        if let Batch::Logs(v) = &mut b {
            v[0].scope_logs[0].log_records[0]
                .attributes
                .push(kv("elasticsearch.document_id", "order-17"));
        }
        let e = Encoder {
            logs_dynamic_id: true,
            ..Default::default()
        };
        let docs = e.documents(&b);
        assert_eq!(docs[0].id.as_deref(), Some("order-17"));
        assert_eq!(docs[1].id.as_ref().map(String::len), Some(32));
        assert!(docs[0].source.get("attributes").is_none());
        assert_ne!(
            Encoder::default().documents(&b)[0].id.as_deref(),
            Some("order-17")
        );
    }

    #[test]
    fn chunks_respect_the_byte_limit() {
        assert_eq!(chunk_ranges(&[4, 4, 4], 8), vec![0..2, 2..3]);
        assert_eq!(chunk_ranges(&[10, 1], 8), vec![0..1, 1..2]);
        assert_eq!(chunk_ranges(&[], 8), Vec::<Range<usize>>::new());
    }

    #[test]
    fn retain_keeps_only_flagged_items_in_order() {
        let b = logs(4);
        let r = retain(&b, &[false, true, false, true]);
        assert_eq!(r.item_count(), 2);
        let Batch::Logs(v) = r else { panic!() };
        let bodies: Vec<_> = v[0].scope_logs[0]
            .log_records
            .iter()
            .map(|r| r.time_unix_nano)
            .collect();
        assert_eq!(bodies, vec![2, 4]);
        assert!(retain(&b, &[false; 4]).is_empty());
    }
}
