//! The `elasticsearch` exporter: logs, spans and metric data points into Elasticsearch
//! through the `_bulk` API, one document per item, in shapes Kibana understands
//! (`mapping.mode: otel` or `ecs`, see [`mapping`] and [`metrics`]).
//!
//! **Client.** A direct `reqwest` `_bulk` client, not the `elasticsearch` crate: the crate
//! has only ever been released as `-alpha.1` (nothing since 2025-08), pulls a second reqwest
//! (0.12) and flips rustls features (+5 min per cold build here), and its `_bulk` answer is
//! untyped JSON anyway. What this exporter needs — NDJSON, gzip bodies, per-item status,
//! failover — is a few dozen lines over the shared `http_client`.
//!
//! **Config** (the Collector's elasticsearchexporter keys where they overlap):
//! - `endpoints` (list of URLs; or `endpoint`): round-robin, failing over to the next on
//!   connection errors (see [`send`]).
//! - `auth`: `user` + `password` (basic), or `api_key` (sent as `ApiKey <key>`, the
//!   base64 `id:key` form Kibana shows), and `headers`; the Collector's top-level `user`,
//!   `password`, `api_key`, `headers` are accepted too. `tls`: the client TLS block.
//! - `logs_index`, `traces_index`, `metrics_index` (default empty: data stream routing),
//!   `logs_dynamic_index.enabled` / `traces_…` / `metrics_…` (false): index from the
//!   `elasticsearch.index` attribute. Routing and actions: see [`bulk`].
//! - `mapping.mode`: `otel` (default) or `ecs`.
//! - `document_id`: `content_hash` (default) or `auto` — how "indexed exactly once" is kept
//!   under retries, see [`bulk`]. `logs_dynamic_id.enabled` (false): a log record's
//!   `elasticsearch.document_id` attribute is its `_id`.
//! - `flush.bytes` (5000000): the NDJSON body is split into `_bulk` requests of at most
//!   this many (uncompressed) bytes. `flush.interval` (30s) is accepted: time-based
//!   batching is the `batch` processor's job (or `sending_queue.batch`), one
//!   implementation for every exporter.
//! - `retry` (`enabled`, `max_retries` (2), `initial_interval`, `max_interval`,
//!   `retry_on_status` (\[429\])) is accepted for Collector configs. This exporter never
//!   retries by itself: it answers the delivery layer, whose `retry_on_failure` owns
//!   backoff, jitter and `Retry-After`, bounded by `max_elapsed_time` rather than a count
//!   (`max_retries` is not enforced). `retry_on_status` adds item statuses to retry.
//! - `compression`: `gzip` (default) or `none`; `compression_params.level`: 1 (weft's own
//!   encoder, the default) or 2–9 / -1 (zlib's levels). `pipeline`: ingest pipeline name.
//! - Not supported (an error names the key): `cloudid`, `discover`, `logstash_format`,
//!   `batcher`, `num_workers` and other Collector keys not listed here.
//!
//! **Encoding.** Log documents are written straight into one reused `_bulk` body (see
//! [`ndjson`]), byte-identical to the [`mapping`] + [`bulk::Doc`] reference path, which
//! spans and metric points still take. The exporter takes raw batches (the forwarding fast
//! path's request bytes, [`Exporter::accepts_raw`]): log records are read straight from the
//! bytes through [`crate::data::view`], never decoded into prost structs; raw spans and
//! metric points are decoded first.
//!
//! **Bad input.** Items are mapped whatever their content (NaN values become `null`); a
//! document Elasticsearch refuses is dropped and counted as below, never retried. A raw
//! batch was only shallow-scanned at the receiver: a resource whose contents are malformed
//! (invalid UTF-8, truncated or mistyped attributes or bodies) is decoded with prost instead,
//! and if prost refuses it too its records are dropped, counted in
//! `weft_exporter_elasticsearch_dropped_log_records_total{component, error_type="malformed"}`
//! and logged; the rest of the batch is sent. A batch with nothing readable left is a
//! permanent error (`malformed`).
//!
//! **Answers.** 2xx: per item, 2xx (and 409 on `create`: already indexed under its content
//! id) is done, 429 and 5xx are returned as `ExportError::Partial` holding only those items,
//! other 4xx (`mapper_parsing_exception`, ...) are dropped, counted in
//! `weft_exporter_elasticsearch_dropped_<items>_total{component, error_type}` and the first
//! reason per error type is logged once a minute. Whole request 408/429/5xx: the request's
//! documents are retried (`Retry-After` honoured) and later chunks are not sent in this
//! attempt. 413: the chunk is split in halves and resent within the attempt; a single
//! document over the limit is dropped (`document_too_large`), or fails the batch
//! permanently when it is the only one. Other 4xx: permanent; 401 and 403 also make
//! `/health/ready` name this exporter until a request is accepted again.

pub mod bulk;
pub mod config;
pub mod mapping;
pub mod metrics;
pub mod ndjson;
pub mod response;
pub mod send;
pub mod sha2x;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use self::bulk::{Encoder, chunk_ranges, retain};
use self::config::base64;
pub use self::config::{ElasticsearchConfig, validate};
use self::ndjson::BulkBody;
use self::response::{ItemOutcome, classify_item, parse_response};
use self::send::{Endpoints, Verdict, verdict};
use super::deflate::Shape;
use super::http_client::{GzipLevel, build_client, header_map};
use super::{BoxFuture, ExportError, Exporter};
use crate::admin::Telemetry;
use crate::components::{BuildContext, BuildError};
use crate::config::parse_component;
use crate::data::Batch;

pub struct ElasticsearchExporter {
    id: String,
    client: reqwest::Client,
    endpoints: Endpoints,
    headers: HeaderMap,
    path: String,
    /// How bodies are gzipped; `None`: sent uncompressed.
    gzip: Option<GzipLevel>,
    flush_bytes: usize,
    encoder: Encoder,
    retry_on_status: Vec<u16>,
    telemetry: Telemetry,
    /// Body buffers kept between sends (their capacity is what is reused).
    spare: Mutex<Vec<BulkBody>>,
    last_logged: Mutex<HashMap<String, Instant>>,
}

/// Bodies kept for reuse (each holds a batch's NDJSON: memory traded for page faults).
const MAX_SPARE_BODIES: usize = 4;

/// How often the first reason of each dropped-item error type is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let bad = |m: String| BuildError::new(&ctx.id, m);
    let cfg: ElasticsearchConfig = parse_component(v).map_err(|e| bad(e.message))?;
    if cfg.retry.is_some() {
        tracing::info!(exporter = %ctx.id, "retry.* is accepted for Collector configs; weft retries through retry_on_failure (only failed items are resent)");
    }
    cfg.check()
        .map_err(|e| bad(format!("{}: {}", e.path.join("."), e.message)))?;
    ElasticsearchExporter::new(&ctx.id, &cfg, ctx.telemetry.clone())
        .map(|e| Arc::new(e) as Arc<dyn Exporter>)
        .map_err(bad)
}

impl ElasticsearchExporter {
    pub fn new(
        id: &str,
        cfg: &ElasticsearchConfig,
        telemetry: Telemetry,
    ) -> Result<ElasticsearchExporter, String> {
        let mut extra = cfg.headers.clone();
        extra.extend(cfg.auth.headers.clone());
        let mut headers = header_map(&extra)?;
        let (user, password, api_key) = cfg.credentials();
        let auth = match (api_key, user, password) {
            (Some(k), _, _) => Some(format!("ApiKey {k}")),
            (None, Some(u), Some(p)) => {
                Some(format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
            }
            _ => None,
        };
        if let Some(a) = auth {
            let mut v = HeaderValue::from_str(&a)
                .map_err(|_| "auth contains characters not allowed in a header".to_string())?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut bulk_headers = headers.clone();
        bulk_headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let gzip = (cfg.compression == "gzip")
            .then(|| cfg.compression_params.gzip_level(&cfg.compression))
            .transpose()?;
        if gzip.is_some() {
            bulk_headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        let mut path =
            "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"
                .to_string();
        if let Some(p) = cfg.pipeline.as_ref().filter(|p| !p.is_empty()) {
            path.push_str("&pipeline=");
            for b in p.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    path.push(b as char);
                } else {
                    path.push_str(&format!("%{b:02X}"));
                }
            }
        }
        Ok(ElasticsearchExporter {
            id: id.to_string(),
            client: build_client(&cfg.tls, None)?,
            endpoints: Endpoints::new(cfg.all_endpoints()),
            headers: bulk_headers,
            path,
            gzip,
            flush_bytes: cfg.flush.bytes,
            encoder: Encoder {
                mode: cfg.mapping.mode,
                logs_index: cfg.logs_index.clone(),
                traces_index: cfg.traces_index.clone(),
                logs_dynamic_index: cfg.logs_dynamic_index.enabled,
                traces_dynamic_index: cfg.traces_dynamic_index.enabled,
                metrics_index: cfg.metrics_index.clone(),
                metrics_dynamic_index: cfg.metrics_dynamic_index.enabled,
                logs_dynamic_id: cfg.logs_dynamic_id.enabled,
                document_id: cfg.document_id,
            },
            retry_on_status: cfg
                .retry
                .as_ref()
                .map(|r| r.retry_on_status.clone())
                .unwrap_or_else(|| vec![429]),
            telemetry,
            last_logged: Mutex::new(HashMap::new()),
            spare: Mutex::new(Vec::new()),
        })
    }

    fn note_drop(&self, batch: &Batch, error_type: &str, reason: &str, n: usize) {
        let item = batch.signal().item_name();
        self.telemetry
            .metrics
            .counter(
                &format!("weft_exporter_elasticsearch_dropped_{item}_total"),
                "Items Elasticsearch rejected permanently (per-item 4xx), by error type",
                &[("component", &self.id), ("error_type", error_type)],
            )
            .add(n as u64);
        let now = Instant::now();
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        let due = last
            .get(error_type)
            .is_none_or(|t| now.duration_since(*t) >= LOG_EVERY);
        if due {
            last.insert(error_type.to_string(), now);
            tracing::warn!(exporter = %self.id, error_type, dropped = n, "Elasticsearch rejected {item}, dropped (further reasons of this type are logged at most once a minute): {reason}");
        } else {
            tracing::debug!(exporter = %self.id, error_type, dropped = n, "{reason}");
        }
    }

    /// Credentials the cluster refuses make readiness name this exporter until a request
    /// is accepted again: no retry can fix them, an operator must.
    fn note_health(&self, status: u16, v: &Verdict) {
        let health = &self.telemetry.health;
        match (status, v) {
            (401 | 403, Verdict::Reject { message, .. }) => health.set_failure(
                &self.id,
                format!("Elasticsearch refuses the configured credentials: {message}"),
            ),
            (_, Verdict::Items) => health.clear_failure(&self.id),
            _ => {}
        }
    }

    /// One attempt for a whole batch: every chunk is sent at most once (413 halves aside).
    async fn send_batch(&self, batch: &Batch) -> Result<(), ExportError> {
        let mut docs = self
            .spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        docs.clear();
        self.encoder.write_bulk(batch, &mut docs);
        let result = if docs.malformed > 0 {
            let n = docs.malformed;
            let error = docs.malformed_error.clone().unwrap_or_default();
            self.note_drop(
                batch,
                "malformed",
                &format!("{n} records could not be decoded: {error}"),
                n,
            );
            if docs.is_empty() {
                Err(ExportError::permanent(
                    "malformed",
                    format!("{n} records could not be decoded: {error}"),
                ))
            } else {
                self.send_body(batch, &mut docs).await
            }
        } else {
            self.send_body(batch, &mut docs).await
        };
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < MAX_SPARE_BODIES {
            spare.push(docs);
        }
        result
    }

    async fn send_body(&self, batch: &Batch, docs: &mut BulkBody) -> Result<(), ExportError> {
        if docs.is_empty() {
            return Ok(());
        }
        // Uncompressed chunks are slices of the body itself, not copies; the buffer is
        // taken back after the last request (for the next batch) when no request holds it.
        let whole = self
            .gzip
            .is_none()
            .then(|| bytes::Bytes::from(std::mem::take(&mut docs.body)));
        let sizes = docs.sizes();
        let mut outcome: Vec<Option<ItemOutcome>> = vec![None; docs.len()];
        let mut pending: VecDeque<Range<usize>> = chunk_ranges(&sizes, self.flush_bytes).into();
        let mut stop: Option<(String, Option<Duration>)> = None;
        let mut rejected: Option<(String, String)> = None;
        let mut reasons: HashMap<String, (String, usize)> = HashMap::new();
        while let Some(range) = pending.pop_front() {
            if stop.is_some() {
                outcome[range].fill(Some(ItemOutcome::Retry));
                continue;
            }
            // `whole` is taken exactly when there is no gzip level.
            let body = match &whole {
                Some(w) => w.slice(docs.byte_range(range.clone())),
                None => {
                    let level = self.gzip.unwrap_or_default();
                    let mut out = std::mem::take(&mut docs.gzipped);
                    level.gzip_shaped_into(docs.slice(range.clone()), &mut out, Shape::Json);
                    bytes::Bytes::from(out)
                }
            };
            // A gzipped body's buffer is taken back for the next one when no request
            // holds it any more.
            let gzipped = whole.is_none().then(|| body.clone());
            let sent = self
                .endpoints
                .bulk(&self.client, &self.path, &self.headers, body)
                .await;
            if let Some(Ok(b)) = gzipped.map(bytes::Bytes::try_into_mut) {
                docs.gzipped = b.into();
            }
            let answer = match sent {
                Ok(a) => a,
                Err(ExportError::Retryable { reason, after }) => {
                    outcome[range].fill(Some(ItemOutcome::Retry));
                    stop = Some((reason, after));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let v = verdict(&answer);
            self.note_health(answer.status, &v);
            match v {
                Verdict::Items => match parse_response(&answer.body, range.len()) {
                    Ok(items) => {
                        for (i, r) in range.clone().zip(items) {
                            let o = if self.retry_on_status.contains(&r.status) {
                                ItemOutcome::Retry
                            } else {
                                classify_item(docs.ops[i], &r)
                            };
                            if let ItemOutcome::Drop(t) = &o {
                                let e = reasons
                                    .entry(t.clone())
                                    .or_insert_with(|| (r.reason.clone().unwrap_or_default(), 0));
                                e.1 += 1;
                            }
                            outcome[i] = Some(o);
                        }
                    }
                    Err(e) => {
                        outcome[range].fill(Some(ItemOutcome::Retry));
                        stop = Some((format!("{}: {e}", answer.endpoint), None));
                    }
                },
                Verdict::TooLarge if range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    pending.push_front(mid..range.end);
                    pending.push_front(range.start..mid);
                }
                Verdict::TooLarge => {
                    let t = "document_too_large".to_string();
                    let msg = format!(
                        "a document of {} bytes is larger than {} accepts (HTTP 413): raise http.max_content_length or shrink the record",
                        sizes[range.start], answer.endpoint
                    );
                    reasons
                        .entry(t.clone())
                        .or_insert_with(|| (msg.clone(), 0))
                        .1 += 1;
                    outcome[range.start] = Some(ItemOutcome::Drop(t.clone()));
                    rejected = Some((t, msg));
                }
                Verdict::RetryAll { reason, after } => {
                    outcome[range].fill(Some(ItemOutcome::Retry));
                    stop = Some((reason, after));
                }
                Verdict::Reject { reason, message } => {
                    reasons
                        .entry(reason.clone())
                        .or_insert_with(|| (message.clone(), 0))
                        .1 += range.len();
                    outcome[range].fill(Some(ItemOutcome::Drop(reason.clone())));
                    rejected = Some((reason, message));
                }
            }
        }
        if let Some(Ok(body)) = whole.map(bytes::Bytes::try_into_mut) {
            docs.body = body.into();
        }
        let indexed = outcome
            .iter()
            .filter(|o| matches!(o, Some(ItemOutcome::Indexed)))
            .count();
        let retry: Vec<bool> = outcome
            .iter()
            .map(|o| matches!(o, Some(ItemOutcome::Retry) | None))
            .collect();
        let n_retry = retry.iter().filter(|r| **r).count();
        let n_dropped = docs.len() - indexed - n_retry;
        if indexed == 0 && n_dropped == 0 {
            let (reason, after) = stop.unwrap_or_else(|| ("no document was indexed".into(), None));
            return Err(ExportError::Retryable { reason, after });
        }
        // A request-level rejection of everything is the delivery layer's permanent error
        // (counted there); item-level drops are counted here.
        if let (0, 0, Some((reason, message))) = (indexed, n_retry, &rejected)
            && reasons.len() == 1
        {
            return Err(ExportError::permanent(reason.clone(), message.clone()));
        }
        for (t, (reason, n)) in &reasons {
            self.note_drop(batch, t, reason, *n);
        }
        if n_retry == 0 {
            return Ok(());
        }
        let (reason, after) = stop.unwrap_or_else(|| {
            (
                format!("{n_retry} of {} documents answered 429/5xx", docs.len()),
                None,
            )
        });
        Err(ExportError::Partial {
            retry: retain(batch, &retry),
            reason,
            after,
        })
    }
}

impl Exporter for ElasticsearchExporter {
    /// Raw logs are written from their wire bytes; raw spans and metrics are decoded here.
    fn accepts_raw(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(self.send_batch(batch))
    }

    fn start(&self) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move {
            let mut headers = self.headers.clone();
            headers.remove(reqwest::header::CONTENT_TYPE);
            headers.remove(reqwest::header::CONTENT_ENCODING);
            let v = self.endpoints.version(&self.client, &headers).await?;
            tracing::info!(exporter = %self.id, version = %v, endpoint = self.endpoints.first().unwrap_or(""), "connected to Elasticsearch");
            if v.split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| m < 8)
            {
                tracing::warn!(exporter = %self.id, "Elasticsearch {v} is older than 8: data streams and the OTel mapping need 8.x");
            }
            Ok(())
        })
    }
}
