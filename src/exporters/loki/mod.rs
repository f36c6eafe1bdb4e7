//! The `loki` exporter: OTLP logs to Loki's push API (`POST /loki/api/v1/push`) with
//! low-cardinality stream labels, Loki 3 structured metadata and per-record tenants.
//!
//! Config keys (defaults in brackets):
//! - `endpoint` (required): Loki's base URL; requests go to `<endpoint>/loki/api/v1/push`
//!   (a URL that already ends in that path is used as is).
//! - `tenant_id` \[none\]: sent as `X-Scope-OrgID`.
//! - `tenant: {source: attribute, key: <attr>}` \[none\]: the tenant per record, from the
//!   record attribute `key`, else the resource attribute, else `tenant_id`. Records are
//!   grouped per tenant: one request per tenant.
//! - `auth` \[none\]: `basic: {username, password}`, `bearer: {token}`, `headers: {k: v}`.
//! - `tls` \[plain\]: the Collector's client TLS keys (`ca_file`, `cert_file`, ...).
//! - `encoding` \[`protobuf`\]: `protobuf` (logproto `PushRequest`, snappy block-compressed,
//!   `Content-Type: application/x-protobuf`) or `json`.
//! - `compression` \[`none`\]: `gzip` or `none`; only for `json` (protobuf is always snappy).
//! - `labels`: see [`labels`] (Loki 3's default OTLP resource labels plus `level`).
//! - `line_format` \[`json`\]: `json`, `logfmt` or `raw` (see [`encode`]).
//! - `structured_metadata` \[true\]: non-label attributes and trace context go to Loki 3
//!   structured metadata instead of the line.
//! - `limits`: Loki's limits the encoder stays within: `max_label_value_length` \[2048\],
//!   `max_structured_metadata_size` \[65536\], `max_structured_metadata_entries` \[128\]. Longer
//!   label values and oversized metadata are truncated (never rejected) and counted in
//!   `weft_exporter_loki_truncations_total{component, reason}`.
//! - Framework keys (`sending_queue`, `retry_on_failure`, `timeout`) belong to delivery.
//!
//! Encoding: with a fixed tenant and no labels from record attributes, bodies are written
//! directly by [`fast`]; otherwise by [`encode`] (the reference both are tested against).
//! The exporter takes raw batches (the forwarding fast path's request bytes,
//! [`Exporter::accepts_raw`]): [`fast`] reads their records straight from the bytes through
//! [`crate::data::view`]; the reference path decodes them first.
//!
//! Bad input: other signals than logs are refused at validation (the registry lists logs
//! only). A raw batch was only shallow-scanned at the receiver: a resource whose contents
//! are malformed (invalid UTF-8, truncated or mistyped attributes or bodies) is decoded with
//! prost instead, and if prost refuses it too its records are dropped, counted in
//! `weft_exporter_loki_dropped_log_records_total{component, reason="malformed"}` and logged;
//! the rest of the batch is sent. A batch with nothing readable left is a permanent error
//! (`malformed`). A 400 in which Loki names the entries it refused (too old, too far behind, out of
//! order, line too long, ...) means Loki stored the rest (see [`send`]): those entries are
//! counted in `weft_exporter_loki_dropped_log_records_total{component, reason}`, logged at
//! most once per [`LOG_INTERVAL`], never retried. 429 and 5xx are retried by delivery.

pub mod config;
pub mod encode;
pub mod fast;
pub mod labels;
pub mod proto;
pub mod send;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::Value;

use prost::Message;

pub use self::config::{
    AuthConfig, BasicAuth, BearerAuth, Compression, Encoding, LokiConfig, TenantConfig,
    TenantSource, parse, validate,
};
use self::encode::{EncodeOptions, TenantRule};
use self::labels::LabelRules;
use self::send::{PushRequestParts, PushResult};
use super::http_client::{build_client, gzip, header_map};
use super::{BoxFuture, ExportError, Exporter};
use crate::admin::Metrics;
use crate::components::{BuildContext, BuildError};
use crate::data::{Batch, Signal};

pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// Rejections by Loki are logged at most this often (with a count of what was suppressed).
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let cfg = parse(v)
        .map_err(|e| BuildError::new(&ctx.id, format!("{}: {}", e.path.join("."), e.message)))?;
    Ok(Arc::new(
        LokiExporter::new(&ctx.id, &cfg, ctx.telemetry.metrics.clone())
            .map_err(|e| BuildError::new(&ctx.id, e))?,
    ))
}

pub struct LokiExporter {
    id: String,
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    encoding: Encoding,
    gzip: bool,
    opts: EncodeOptions,
    metrics: Metrics,
    log_gate: Mutex<LogGate>,
}

#[derive(Default)]
struct LogGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogGate {
    /// `Some(n)` when a line may be logged now (`n` similar lines were suppressed since
    /// the last one), `None` within [`LOG_INTERVAL`] of the last logged line.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl LokiExporter {
    pub fn new(id: &str, cfg: &LokiConfig, metrics: Metrics) -> Result<LokiExporter, String> {
        let base = cfg.endpoint.trim().trim_end_matches('/');
        let url = if base.ends_with(PUSH_PATH) {
            base.to_string()
        } else {
            format!("{base}{PUSH_PATH}")
        };
        let mut headers = header_map(&cfg.auth.headers)?;
        let auth = match (&cfg.auth.basic, &cfg.auth.bearer) {
            (Some(b), _) => Some(format!(
                "Basic {}",
                base64(&format!("{}:{}", b.username, b.password))
            )),
            (None, Some(b)) => Some(format!("Bearer {}", b.token)),
            (None, None) => None,
        };
        if let Some(a) = auth {
            let v = reqwest::header::HeaderValue::from_str(&a)
                .map_err(|_| "auth credentials are not a valid header value".to_string())?;
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        // An empty tenant_id (an unset `${env:...}`) means no X-Scope-OrgID, not an empty one.
        let tenant_id = cfg.tenant_id.clone().filter(|t| !t.trim().is_empty());
        let tenant = match &cfg.tenant {
            Some(t) => TenantRule::Attribute {
                key: t.key.clone(),
                fallback: tenant_id,
            },
            None => TenantRule::Fixed(tenant_id),
        };
        Ok(LokiExporter {
            id: id.to_string(),
            client: build_client(&cfg.tls, None)?,
            url,
            headers,
            encoding: cfg.encoding,
            gzip: cfg.encoding == Encoding::Json && cfg.compression == Some(Compression::Gzip),
            opts: EncodeOptions {
                labels: LabelRules::new(&cfg.labels, cfg.limits.max_label_value_length),
                line_format: cfg.line_format,
                structured_metadata: cfg.structured_metadata,
                limits: cfg.limits.clone(),
                tenant,
            },
            metrics,
            log_gate: Mutex::new(LogGate::default()),
        })
    }

    fn count_dropped(&self, reason: &str, n: u64) {
        self.metrics
            .counter(
                "weft_exporter_loki_dropped_log_records_total",
                "Log records Loki refused permanently (or that could not be sent), by reason",
                &[("component", &self.id), ("reason", reason)],
            )
            .add(n);
    }

    fn count_truncations(&self, push: &Prepared) {
        for (reason, n) in [
            ("label_value", push.stats.label_values),
            ("structured_metadata_size", push.stats.metadata_size),
            ("structured_metadata_entries", push.stats.metadata_entries),
        ] {
            if n > 0 {
                self.metrics
                    .counter(
                        "weft_exporter_loki_truncations_total",
                        "Label values and structured metadata truncated to stay within Loki's limits",
                        &[("component", &self.id), ("reason", reason)],
                    )
                    .add(n);
            }
        }
    }

    /// Logs a rejection unless one was logged less than [`LOG_INTERVAL`] ago.
    fn log_rejection(&self, tenant: Option<&str>, dropped: u64, message: &str) {
        let admitted = self
            .log_gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(Instant::now());
        let Some(suppressed) = admitted else {
            return;
        };
        let msg: String = message.chars().take(1000).collect();
        tracing::warn!(
            exporter = %self.id,
            tenant = tenant.unwrap_or(""),
            dropped,
            similar_suppressed = suppressed,
            "Loki refused log entries (not retried; the rest of the request was stored): {msg}"
        );
    }

    /// The push bodies for a batch: the direct encoder when it applies, else the
    /// reference path (tenants from attributes, labels from record attributes), and the
    /// records left out as unreadable.
    fn prepare(&self, batch: &Batch) -> (Vec<Prepared>, fast::Skipped) {
        let format = match self.encoding {
            Encoding::Protobuf => fast::Format::ProtobufSnappy,
            Encoding::Json => fast::Format::Json,
        };
        if fast::applies(&self.opts) {
            let (e, skipped) = fast::encode_direct_counted(batch, &self.opts, now_ns(), format);
            return (
                e.map(|e| self.finish(e, None, format == fast::Format::ProtobufSnappy))
                    .into_iter()
                    .collect(),
                skipped,
            );
        }
        let decoded;
        let mut skipped = fast::Skipped::default();
        let batch = if batch.is_raw() {
            let (b, dropped) = crate::data::view_logs::to_batch(batch, |_| true);
            if dropped > 0 {
                skipped = fast::Skipped {
                    records: dropped,
                    error: batch.clone().materialize().err().map(|e| e.to_string()),
                };
            }
            decoded = b;
            &decoded
        } else {
            batch
        };
        let pushes = encode::encode(batch, &self.opts, now_ns())
            .into_iter()
            .map(|push| {
                let body = match self.encoding {
                    Encoding::Protobuf => push.to_proto().encode_to_vec(),
                    Encoding::Json => push.to_json(),
                };
                let e = fast::Encoded {
                    entry_count: push.entry_count(),
                    entries_by_stream: push.entries_by_stream(),
                    tenant: push.tenant,
                    body,
                    error: None,
                    stats: push.stats,
                };
                self.finish(e, push.records, false)
            })
            .collect();
        (pushes, skipped)
    }

    /// Counts and logs records left out as unreadable; `Err` when nothing else is left.
    fn note_skipped(&self, skipped: &fast::Skipped, left: usize) -> Result<(), ExportError> {
        if skipped.records == 0 {
            return Ok(());
        }
        self.count_dropped("malformed", skipped.records as u64);
        let error = skipped.error.as_deref().unwrap_or("");
        tracing::warn!(
            exporter = %self.id,
            dropped = skipped.records,
            "log records dropped: their resource in the received request is malformed ({error}); the rest of the batch is sent"
        );
        if left == 0 {
            return Err(ExportError::permanent(
                "malformed",
                format!(
                    "{} log records could not be decoded: {error}",
                    skipped.records
                ),
            ));
        }
        Ok(())
    }

    /// Compresses an encoded body as the encoding wants it (unless `compressed` already).
    fn finish(&self, e: fast::Encoded, records: Option<Batch>, compressed: bool) -> Prepared {
        let body = match self.encoding {
            Encoding::Protobuf if compressed => match e.error {
                Some(error) => Err(error),
                None => Ok((e.body, "application/x-protobuf", None)),
            },
            Encoding::Protobuf => {
                let compressed = proto::snappy(&e.body);
                fast::recycle_body(e.body);
                compressed
                    .map(|b| (b, "application/x-protobuf", None))
                    .map_err(|e| e.to_string())
            }
            Encoding::Json if self.gzip => Ok((gzip(&e.body), "application/json", Some("gzip"))),
            Encoding::Json => Ok((e.body, "application/json", None)),
        };
        Prepared {
            tenant: e.tenant,
            body,
            stats: e.stats,
            entry_count: e.entry_count,
            entries_by_stream: e.entries_by_stream,
            records,
        }
    }

    /// Sends the prepared body (moved out: each is sent once per attempt).
    async fn push_one(&self, push: &mut Prepared) -> PushResult {
        let taken = std::mem::replace(&mut push.body, Err("already sent".into()));
        let (body, content_type, content_encoding) = match taken {
            Ok(b) => b,
            Err(e) => return PushResult::Failed(ExportError::permanent("encode", e)),
        };
        send::push(
            &self.client,
            PushRequestParts {
                url: &self.url,
                headers: &self.headers,
                tenant: push.tenant.as_deref(),
                body,
                content_type,
                content_encoding,
                entries_by_stream: &push.entries_by_stream,
            },
        )
        .await
    }
}

type Body = (Vec<u8>, &'static str, Option<&'static str>);

/// One request's worth: a tenant's compressed body and its accounting.
struct Prepared {
    tenant: Option<String>,
    body: Result<Body, String>,
    stats: encode::Stats,
    entry_count: usize,
    entries_by_stream: std::collections::HashMap<String, usize>,
    /// The tenant's records when tenants come from attributes (for a partial retry).
    records: Option<Batch>,
}

/// Standard base64 (for the basic auth header).
fn base64(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Exporter for LokiExporter {
    /// Raw batches are written from their wire bytes (see [`fast`]).
    fn accepts_raw(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            if batch.signal() != Signal::Logs {
                return Err(ExportError::permanent(
                    "unsupported_signal",
                    format!("loki exports logs, not {}", batch.signal()),
                ));
            }
            let (mut pushes, skipped) = self.prepare(batch);
            self.note_skipped(&skipped, pushes.len())?;
            let single = pushes.len() == 1;
            let mut retry = Batch::empty(Signal::Logs);
            let mut retry_after: Option<Duration> = None;
            let mut reasons: Vec<String> = Vec::new();
            let mut failed_permanently = 0usize;
            let mut last_permanent = None;
            let n_pushes = pushes.len();
            for push in &mut pushes {
                self.count_truncations(push);
                match self.push_one(push).await {
                    PushResult::Accepted => {}
                    PushResult::Rejected { drops, message } => {
                        let n: u64 = drops.iter().map(|(_, c)| c).sum();
                        for (reason, c) in &drops {
                            self.count_dropped(reason, *c);
                        }
                        self.log_rejection(push.tenant.as_deref(), n, &message);
                        reasons.push(format!("loki refused {n} entries"));
                    }
                    PushResult::Failed(ExportError::Retryable { reason, after }) if single => {
                        return Err(ExportError::Retryable { reason, after });
                    }
                    PushResult::Failed(ExportError::Permanent { reason, message }) if single => {
                        self.count_dropped(&reason, push.entry_count as u64);
                        return Err(ExportError::Permanent { reason, message });
                    }
                    PushResult::Failed(ExportError::Retryable { reason, after }) => {
                        if let Some(records) = &push.records {
                            retry.merge(records.clone());
                        }
                        retry_after = retry_after.max(after);
                        reasons.push(reason);
                    }
                    PushResult::Failed(ExportError::Permanent { reason, message }) => {
                        self.count_dropped(&reason, push.entry_count as u64);
                        failed_permanently += 1;
                        reasons.push(format!("{reason}: {message}"));
                        last_permanent = Some((reason, message));
                    }
                    PushResult::Failed(ExportError::Partial {
                        retry: r,
                        reason,
                        after,
                    }) => {
                        retry.merge(r);
                        retry_after = retry_after.max(after);
                        reasons.push(reason);
                    }
                }
            }
            if reasons.is_empty() {
                return Ok(());
            }
            if failed_permanently == n_pushes
                && let Some((reason, message)) = last_permanent
            {
                return Err(ExportError::Permanent { reason, message });
            }
            if retry.item_count() == batch.item_count() {
                return Err(ExportError::Retryable {
                    reason: reasons.join("; "),
                    after: retry_after,
                });
            }
            // Some tenants or entries were taken; refused entries are counted above.
            Err(ExportError::Partial {
                retry,
                reason: reasons.join("; "),
                after: retry_after,
            })
        })
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
