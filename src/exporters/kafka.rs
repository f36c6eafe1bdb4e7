//! The `kafka` exporter: writes OTLP batches to Kafka topics, one Kafka record per message.
//!
//! Config (the Collector's keys; shared ones in [`crate::kafka`]): `brokers`, `client_id`,
//! `topic` / `encoding` or per signal `traces|logs|metrics: {topic, encoding}`,
//! `partition_traces_by_id` (false: key = the hex trace id, one message per trace, so every
//! span of a trace lands in one partition), `partition_logs_by_trace_id` (false),
//! `partition_logs_by_resource_attributes` and `partition_metrics_by_resource_attributes`
//! (false: one message per resource, key = a hash of its attributes), `producer`:
//! `max_message_bytes` (1000000: larger batches are split; a single item that alone is
//! too large is dropped, counted and logged), `required_acks` (1; 0, 1 or -1 = all),
//! `compression` (`none`, `gzip`, `snappy`, `lz4`, `zstd`), `compression_params.level`,
//! `enable_idempotence` (false; needs `required_acks: -1`), `linger` (5ms),
//! `delivery_timeout` (4s: how long the client keeps re-trying one record itself before
//! the delivery layer's retry takes over; keep it below the exporter `timeout`, 5s),
//! `auth`, `tls`.
//!
//! Delivery: a send enqueues every message and waits for each acknowledgement. Messages
//! the broker refused are returned as `ExportError::Partial` (only those are re-sent by the
//! delivery layer), so one bad partition does not duplicate the whole batch. Errors the
//! broker will repeat (authorization, record too large, invalid record, authentication)
//! are permanent. A broker outage is retryable: with a persistent `sending_queue` nothing
//! is lost. Duplicates are possible when an acknowledgement is lost (at-least-once) unless
//! `enable_idempotence` is on.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::{BoxFuture, ExportError, Exporter};
use crate::admin::metrics::Counter;
use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError};
use crate::data::{Batch, KeyValue, ResourceLogs, ResourceSpans, Signal, value_to_string};
use crate::kafka::{Common, Encoding, Invalid, Topics, field_error};

/// The exporter's own keys; `common` holds the shared ones ([`crate::kafka::parse`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaExporterConfig {
    #[serde(skip)]
    pub common: Common,
    #[serde(default)]
    pub partition_traces_by_id: bool,
    #[serde(default)]
    pub partition_logs_by_trace_id: bool,
    #[serde(default)]
    pub partition_logs_by_resource_attributes: bool,
    #[serde(default)]
    pub partition_metrics_by_resource_attributes: bool,
    #[serde(default)]
    pub producer: ProducerSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSettings {
    pub max_message_bytes: usize,
    pub required_acks: i16,
    pub compression: String,
    pub compression_params: CompressionParams,
    pub enable_idempotence: bool,
    pub linger: Dur,
    pub delivery_timeout: Dur,
    /// Accepted for Collector configs; batching is done by weft's `batch` processor.
    pub flush_max_messages: Option<u64>,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            max_message_bytes: 1_000_000,
            required_acks: 1,
            compression: "none".into(),
            compression_params: CompressionParams::default(),
            enable_idempotence: false,
            linger: Dur(Duration::from_millis(5)),
            delivery_timeout: Dur(Duration::from_secs(4)),
            flush_max_messages: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    pub level: Option<i32>,
}

impl KafkaExporterConfig {
    pub fn parse(v: &Value) -> Result<KafkaExporterConfig, FieldError> {
        let (common, mut cfg): (Common, KafkaExporterConfig) = crate::kafka::parse(v)?;
        cfg.common = common;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), Invalid> {
        self.common.connection().check()?;
        let p = &self.producer;
        compression(&p.compression).map_err(|m| ("producer.compression", m))?;
        if !matches!(p.required_acks, -1..=1) {
            return Err((
                "producer.required_acks",
                format!("must be 0, 1 or -1 (all), got {}", p.required_acks),
            ));
        }
        if p.enable_idempotence && p.required_acks != -1 {
            return Err((
                "producer.enable_idempotence",
                "enable_idempotence needs producer.required_acks: -1".into(),
            ));
        }
        if p.delivery_timeout.0 < p.linger.0 + Duration::from_millis(500) {
            return Err((
                "producer.delivery_timeout",
                "must exceed producer.linger by at least 500ms".into(),
            ));
        }
        if p.max_message_bytes < 1024 {
            return Err(("producer.max_message_bytes", "must be at least 1024".into()));
        }
        Ok(())
    }
}

fn compression(name: &str) -> Result<krafka::Compression, String> {
    use krafka::Compression;
    Ok(match name {
        "" | "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(format!(
                "compression {other:?} is not supported: use none, gzip, snappy, lz4 or zstd"
            ));
        }
    })
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    KafkaExporterConfig::parse(v)?.check().map_err(field_error)
}

pub struct KafkaExporter {
    cfg: KafkaExporterConfig,
    topics: Topics,
    producer: Mutex<Option<Arc<krafka::producer::Producer>>>,
    too_large: Counter,
    refused: Counter,
    id: String,
    health: crate::admin::health::Health,
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let cfg = KafkaExporterConfig::parse(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    cfg.check()
        .map_err(|(path, m)| BuildError::new(&ctx.id, format!("{path}: {m}")))?;
    let too_large = ctx.telemetry.metrics.counter(
        "weft_exporter_kafka_oversized_items_total",
        "Items dropped because one alone exceeds producer.max_message_bytes",
        &[("component", &ctx.id)],
    );
    let refused = ctx.telemetry.metrics.counter(
        "weft_exporter_kafka_refused_items_total",
        "Items in messages Kafka refused for good (not retried)",
        &[("component", &ctx.id)],
    );
    Ok(Arc::new(KafkaExporter {
        topics: cfg.common.topics(),
        cfg,
        producer: Mutex::new(None),
        too_large,
        refused,
        id: ctx.id.clone(),
        health: ctx.telemetry.health.clone(),
    }))
}

/// One Kafka record to be: the key, the items it carries (borrowed when the whole batch
/// goes as one message, so nothing is copied), and their encoding once it is known.
pub struct Message<'a> {
    pub key: Option<Vec<u8>>,
    pub batch: Cow<'a, Batch>,
    pub bytes: Vec<u8>,
}

impl<'a> Message<'a> {
    fn new(key: Option<Vec<u8>>, batch: Cow<'a, Batch>) -> Message<'a> {
        Message {
            key,
            batch,
            bytes: Vec::new(),
        }
    }
}

impl KafkaExporter {
    async fn producer(&self) -> Result<Arc<krafka::producer::Producer>, ExportError> {
        let mut slot = self.producer.lock().await;
        if let Some(p) = slot.as_ref().filter(|p| !p.is_closed()) {
            return Ok(p.clone());
        }
        let p = &self.cfg.producer;
        // krafka requires delivery_timeout >= linger + request_timeout.
        let request_timeout = p
            .delivery_timeout
            .0
            .saturating_sub(p.linger.0)
            .max(Duration::from_millis(500));
        let kafka = self
            .cfg
            .common
            .connection()
            .connect(request_timeout)
            .await
            .map_err(|e| self.failed("connecting to Kafka", &e))?;
        let comp = compression(&p.compression).map_err(|m| ExportError::permanent("config", m))?;
        let acks = match p.required_acks {
            0 => krafka::producer::Acks::None,
            1 => krafka::producer::Acks::Leader,
            _ => krafka::producer::Acks::All,
        };
        let producer = kafka
            .producer()
            .acks(acks)
            .compression(comp)
            .compression_level(p.compression_params.level)
            .idempotent(p.enable_idempotence)
            .linger(p.linger.0)
            .delivery_timeout(p.delivery_timeout.0)
            .max_request_size(p.max_message_bytes.max(1024) + 64 * 1024)
            .max_block(Duration::from_secs(1))
            .build()
            .await
            .map_err(|e| self.failed("starting the Kafka producer", &e))?;
        let producer = Arc::new(producer);
        *slot = Some(producer.clone());
        Ok(producer)
    }

    /// Classifies a connection failure; one the broker will repeat (authentication,
    /// configuration) is permanent and named by readiness until weft is reconfigured.
    fn failed(&self, what: &str, e: &krafka::KrafkaError) -> ExportError {
        match classify(e) {
            ExportError::Permanent { reason, message } => {
                self.health
                    .set_failure(&self.id, format!("{what}: {message}"));
                ExportError::Permanent {
                    reason,
                    message: format!("{what}: {message}"),
                }
            }
            _ => ExportError::retryable(format!("{what}: {e}")),
        }
    }

    /// The batch as messages: grouped by the partitioning settings, then split until each
    /// encoded message fits `max_message_bytes`.
    pub fn messages<'a>(&self, batch: &'a Batch) -> Vec<Message<'a>> {
        let groups = partition(&self.cfg, batch);
        let encoding = self.topics.encoding(batch.signal());
        let limit = self.cfg.producer.max_message_bytes;
        let mut out = Vec::with_capacity(groups.len());
        for m in groups {
            split_to_fit(m, encoding, limit, &mut out, &mut |items| {
                self.too_large.add(items as u64);
            });
        }
        out
    }
}

/// Encodes `m` (once) and halves it until each part fits `limit` (minus room for the key
/// and the record framing); a single item that alone does not fit is reported to `dropped`.
fn split_to_fit<'a>(
    mut m: Message<'a>,
    encoding: Encoding,
    limit: usize,
    out: &mut Vec<Message<'a>>,
    dropped: &mut dyn FnMut(usize),
) {
    let room = limit.saturating_sub(m.key.as_ref().map_or(0, Vec::len) + 128);
    // Protobuf knows its length without encoding; JSON is encoded to be measured, and
    // that encoding is the one sent.
    let fits = match encoding {
        Encoding::OtlpProto => m.batch.encoded_len() <= room,
        Encoding::OtlpJson => {
            m.bytes = encoding.encode(&m.batch);
            m.bytes.len() <= room
        }
    };
    if fits {
        if m.bytes.is_empty() {
            m.bytes = encoding.encode(&m.batch);
        }
        out.push(m);
        return;
    }
    let n = m.batch.item_count();
    if n <= 1 {
        tracing::warn!(
            limit,
            "a single item exceeds producer.max_message_bytes; dropped"
        );
        dropped(n);
        return;
    }
    let mut rest = m.batch.into_owned();
    let front = rest.split_front(n / 2);
    split_to_fit(
        Message::new(m.key.clone(), Cow::Owned(front)),
        encoding,
        limit,
        out,
        dropped,
    );
    split_to_fit(
        Message::new(m.key, Cow::Owned(rest)),
        encoding,
        limit,
        out,
        dropped,
    );
}

/// Groups the batch into messages by the configured partition key.
pub fn partition<'a>(cfg: &KafkaExporterConfig, batch: &'a Batch) -> Vec<Message<'a>> {
    let keyed = match batch.signal() {
        Signal::Traces => cfg.partition_traces_by_id,
        Signal::Logs => cfg.partition_logs_by_trace_id || cfg.partition_logs_by_resource_attributes,
        Signal::Metrics => cfg.partition_metrics_by_resource_attributes,
    };
    if let (true, Batch::Raw(r)) = (keyed, batch) {
        // Keys come from contents: decode (the delivery layer only hands raw batches to
        // exporters that accept them, so this is a safety net).
        match r.decode() {
            Ok(decoded) => {
                return partition(cfg, &decoded)
                    .into_iter()
                    .map(|m| Message::new(m.key, Cow::Owned(m.batch.into_owned())))
                    .collect();
            }
            Err(e) => tracing::warn!("cannot key an undecodable batch: {e}; sent unkeyed"),
        }
    }
    match batch {
        Batch::Traces(rs) if cfg.partition_traces_by_id => group_by_trace(rs)
            .into_iter()
            .map(|(k, v)| {
                Message::new(
                    Some(crate::data::hex(&k).into_bytes()),
                    Cow::Owned(Batch::Traces(v)),
                )
            })
            .collect(),
        Batch::Logs(rl) if cfg.partition_logs_by_trace_id => group_logs_by_trace(rl)
            .into_iter()
            .map(|(k, v)| {
                Message::new(
                    (!k.is_empty()).then(|| crate::data::hex(&k).into_bytes()),
                    Cow::Owned(Batch::Logs(v)),
                )
            })
            .collect(),
        Batch::Logs(rl) if cfg.partition_logs_by_resource_attributes => rl
            .iter()
            .map(|r| {
                Message::new(
                    Some(resource_key(r.resource.as_ref().map(|r| &r.attributes[..]))),
                    Cow::Owned(Batch::Logs(vec![r.clone()])),
                )
            })
            .collect(),
        Batch::Metrics(rm) if cfg.partition_metrics_by_resource_attributes => rm
            .iter()
            .map(|r| {
                Message::new(
                    Some(resource_key(r.resource.as_ref().map(|r| &r.attributes[..]))),
                    Cow::Owned(Batch::Metrics(vec![r.clone()])),
                )
            })
            .collect(),
        other => vec![Message::new(None, Cow::Borrowed(other))],
    }
}

/// A stable key for a resource: FNV-1a over its attributes sorted by key, as hex.
pub fn resource_key(attrs: Option<&[KeyValue]>) -> Vec<u8> {
    let mut kv: Vec<(&str, String)> = attrs
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let v = a
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(value_to_string)
                .unwrap_or_default();
            (a.key.as_str(), v)
        })
        .collect();
    kv.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in kv {
        for b in k.bytes().chain([0u8]).chain(v.bytes()).chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}").into_bytes()
}

/// Groups the items of resource-level messages by trace id (first-seen order), keeping
/// each item's resource and scope: `$scopes`/`$items` name the nested fields.
macro_rules! group_by_trace_id {
    ($input:expr, $res:ident, $scopes:ident, $scope:ident, $items:ident) => {{
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        // Per group: its messages plus the (resource, scope) position of its last item.
        let mut groups: Vec<(Vec<u8>, Vec<$res>, (usize, usize))> = Vec::new();
        for (ri, r) in $input.iter().enumerate() {
            for (si, s) in r.$scopes.iter().enumerate() {
                for item in &s.$items {
                    let gi = *index.entry(&item.trace_id).or_insert_with(|| {
                        groups.push((item.trace_id.clone(), Vec::new(), (usize::MAX, 0)));
                        groups.len() - 1
                    });
                    let (_, out, last) = &mut groups[gi];
                    if last.0 != ri {
                        out.push($res {
                            resource: r.resource.clone(),
                            $scopes: Vec::new(),
                            schema_url: r.schema_url.clone(),
                        });
                        *last = (ri, usize::MAX);
                    }
                    let Some(res) = out.last_mut() else { continue };
                    if last.1 != si {
                        res.$scopes.push(crate::data::$scope {
                            $items: Vec::new(),
                            scope: s.scope.clone(),
                            schema_url: s.schema_url.clone(),
                        });
                        last.1 = si;
                    }
                    if let Some(scope) = res.$scopes.last_mut() {
                        scope.$items.push(item.clone());
                    }
                }
            }
        }
        groups.into_iter().map(|(k, v, _)| (k, v)).collect()
    }};
}

/// Spans grouped by trace id, one `Vec<ResourceSpans>` per trace.
pub fn group_by_trace(rs: &[ResourceSpans]) -> Vec<(Vec<u8>, Vec<ResourceSpans>)> {
    group_by_trace_id!(rs, ResourceSpans, scope_spans, ScopeSpans, spans)
}

/// Log records grouped by trace id; records without one share the empty key.
pub fn group_logs_by_trace(rl: &[ResourceLogs]) -> Vec<(Vec<u8>, Vec<ResourceLogs>)> {
    group_by_trace_id!(rl, ResourceLogs, scope_logs, ScopeLogs, log_records)
}

/// Permanent when the broker (or the client) says the same record will fail again.
fn classify(e: &krafka::KrafkaError) -> ExportError {
    use krafka::KrafkaError as K;
    let text = e.to_string();
    match e {
        K::Auth { .. } | K::Config { .. } => ExportError::permanent("kafka_auth_or_config", text),
        K::Broker { code, .. } if !code.is_retriable() => {
            ExportError::permanent(format!("kafka_{code:?}").to_lowercase(), text)
        }
        _ => ExportError::retryable(format!("Kafka: {text}")),
    }
}

impl Exporter for KafkaExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let producer = self.producer().await?;
            let signal: Signal = batch.signal();
            let topic = self.topics.topic(signal);
            let mut messages = self.messages(batch);
            let mut pending = Vec::with_capacity(messages.len());
            let mut failed: Vec<(usize, krafka::KrafkaError)> = Vec::new();
            for (i, m) in messages.iter_mut().enumerate() {
                let mut rec = krafka::Record::new(topic.clone(), std::mem::take(&mut m.bytes));
                if let Some(k) = &m.key {
                    rec = rec.key(k.clone());
                }
                match producer.enqueue(rec).await {
                    Ok(h) => pending.push((i, h)),
                    Err(e) => failed.push((i, e)),
                }
            }
            for (i, h) in pending {
                if let Err(e) = h.await {
                    failed.push((i, e));
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            // Messages refused for good are counted and dropped; the rest is retried, alone
            // when some messages went through (no duplicates of those).
            let mut retry: Option<Batch> = None;
            let mut first_retryable = None;
            let mut permanent = None;
            let mut refused_items = 0u64;
            for (i, e) in &failed {
                let b = &messages[*i].batch;
                match classify(e) {
                    ExportError::Permanent { reason, message } => {
                        tracing::warn!(%reason, %message, "Kafka refused a message for good");
                        refused_items += b.item_count() as u64;
                        permanent.get_or_insert(ExportError::Permanent { reason, message });
                    }
                    other => {
                        first_retryable.get_or_insert(other);
                        let b = b.as_ref().clone();
                        match &mut retry {
                            Some(r) => r.merge(b),
                            None => retry = Some(b),
                        }
                    }
                }
            }
            let all_failed = failed.len() == messages.len();
            if !(all_failed && retry.is_none()) {
                // When everything failed for good the delivery layer counts the batch.
                self.refused.add(refused_items);
            }
            match (retry, first_retryable, permanent) {
                (Some(_), Some(err), None) if all_failed => Err(err),
                (Some(retry), Some(err), _) => Err(ExportError::Partial {
                    retry,
                    reason: err.to_string(),
                    after: None,
                }),
                (_, _, Some(p)) if all_failed => Err(p),
                _ => Ok(()),
            }
        })
    }

    /// Raw (undecoded) batches go to Kafka as they came when nothing needs their contents:
    /// protobuf for every signal and no key taken from the data.
    fn accepts_raw(&self) -> bool {
        let c = &self.cfg;
        [Signal::Traces, Signal::Logs, Signal::Metrics]
            .iter()
            .all(|s| self.topics.encoding(*s) == Encoding::OtlpProto)
            && !(c.partition_traces_by_id
                || c.partition_logs_by_trace_id
                || c.partition_logs_by_resource_attributes
                || c.partition_metrics_by_resource_attributes)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(p) = self.producer.lock().await.take()
                && let Err(e) = p.close().await
            {
                tracing::warn!("closing the Kafka producer: {e}");
            }
        })
    }
}

#[cfg(test)]
#[path = "kafka_tests.rs"]
mod tests;
