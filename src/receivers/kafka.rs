//! The `kafka` receiver: consumes OTLP messages from Kafka topics in a consumer group.
//!
//! Config (the Collector's keys; shared ones in [`crate::kafka`]): `brokers`, `client_id`,
//! `topic` / `encoding` or per signal `traces|logs|metrics: {topic, encoding}` (default
//! topics `otlp_spans`, `otlp_logs`, `otlp_metrics`), `group_id` (`otel-collector`),
//! `initial_offset` (`latest` | `earliest`: where a group without a committed offset
//! starts), `session_timeout` (10s), `heartbeat_interval` (3s), `max_fetch_wait` (250ms),
//! `header_extraction`: `extract_headers` (false), `headers` (list): each named Kafka record
//! header becomes the resource attribute `kafka.header.<name>` of every resource in the
//! message — weft carries request metadata as attributes, so `attributes`/`filter`
//! processors and exporters (e.g. a Loki tenant from `kafka.header.tenant`) can use it.
//! `auth`, `tls`. `autocommit` and `message_marking` are accepted for Collector configs and
//! have no effect: weft always commits as described below.
//!
//! At-least-once: an offset is committed only after every pipeline accepted the message
//! (that is: after the processors ran and the exporters' queues took it — with a persistent
//! `sending_queue` that means it is in the WAL; with `sending_queue.enabled: false` it
//! means it was exported). When a pipeline refuses (full queue, memory limit), the receiver
//! waits (the pipeline's retry hint, at most 5 s) and offers the same message again; it
//! never skips it. A message that cannot be decoded can never succeed: it is counted
//! (`weft_receiver_kafka_undecodable_messages_total`), logged, and its offset committed.
//! After a crash or a rebalance, messages accepted but not yet committed are delivered
//! again (duplicates, never gaps).
//!
//! Each signal the receiver serves runs its own group member (same `group_id`, its own
//! topic); serving two signals from one topic is a configuration error, since a message
//! carries no signal tag. When the broker is unreachable the receiver keeps reconnecting
//! with backoff; weft itself starts regardless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Receiver;
use crate::admin::metrics::Counter;
use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError};
use crate::data::{Batch, DecodeError, Signal, set_attr, string_value};
use crate::exporters::BoxFuture;
use crate::kafka::{Common, Encoding, Invalid, default_client_id, field_error};
use crate::pipeline::build::BoundAddrs;
use crate::pipeline::{ConsumeError, Consumers};
use crate::receivers::otlp::ReceiverCounters;

/// The receiver's own keys; `common` holds the shared ones ([`crate::kafka::parse`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
    #[serde(skip)]
    pub common: Common,
    #[serde(default = "default_client_id")]
    pub group_id: String,
    #[serde(default)]
    pub initial_offset: InitialOffset,
    #[serde(default = "ten_seconds")]
    pub session_timeout: Dur,
    #[serde(default = "three_seconds")]
    pub heartbeat_interval: Dur,
    #[serde(default = "fetch_wait")]
    pub max_fetch_wait: Dur,
    #[serde(default)]
    pub header_extraction: HeaderExtraction,
    #[serde(default)]
    pub autocommit: Option<Value>,
    #[serde(default)]
    pub message_marking: Option<Value>,
}

fn ten_seconds() -> Dur {
    Dur(Duration::from_secs(10))
}
fn three_seconds() -> Dur {
    Dur(Duration::from_secs(3))
}
fn fetch_wait() -> Dur {
    Dur(Duration::from_millis(250))
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderExtraction {
    pub extract_headers: bool,
    pub headers: Vec<String>,
}

impl KafkaReceiverConfig {
    pub fn parse(v: &Value) -> Result<KafkaReceiverConfig, FieldError> {
        let (common, mut cfg): (Common, KafkaReceiverConfig) = crate::kafka::parse(v)?;
        cfg.common = common;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), Invalid> {
        self.common.connection().check()?;
        if self.group_id.is_empty() {
            return Err(("group_id", "group_id is empty".into()));
        }
        if self.heartbeat_interval.0 >= self.session_timeout.0 {
            return Err((
                "heartbeat_interval",
                "must be shorter than session_timeout".into(),
            ));
        }
        Ok(())
    }
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    KafkaReceiverConfig::parse(v)?.check().map_err(field_error)
}

pub struct KafkaReceiver {
    id: String,
    cfg: KafkaReceiverConfig,
    counters: ReceiverCounters,
    undecodable: Counter,
    commits_failed: Counter,
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Receiver>, BuildError> {
    let cfg = KafkaReceiverConfig::parse(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    cfg.check()
        .map_err(|(path, m)| BuildError::new(&ctx.id, format!("{path}: {m}")))?;
    let m = &ctx.telemetry.metrics;
    Ok(Box::new(KafkaReceiver {
        id: ctx.id.clone(),
        counters: ReceiverCounters::new(ctx),
        undecodable: m.counter(
            "weft_receiver_kafka_undecodable_messages_total",
            "Kafka messages that could not be decoded (skipped and committed)",
            &[("component", &ctx.id)],
        ),
        commits_failed: m.counter(
            "weft_receiver_kafka_commit_failures_total",
            "Offset commits the group coordinator did not take (those messages come again)",
            &[("component", &ctx.id)],
        ),
        cfg,
    }))
}

impl Receiver for KafkaReceiver {
    fn start(
        self: Box<Self>,
        consumers: Consumers,
        shutdown: watch::Receiver<bool>,
        _bound: BoundAddrs,
    ) -> BoxFuture<'static, Result<Vec<JoinHandle<()>>, BuildError>> {
        Box::pin(async move {
            let topics = self.cfg.common.topics();
            let signals: Vec<Signal> = [Signal::Traces, Signal::Logs, Signal::Metrics]
                .into_iter()
                .filter(|s| consumers.accepts(*s))
                .collect();
            let mut seen: HashMap<String, Signal> = HashMap::new();
            for s in &signals {
                let t = topics.topic(*s);
                if let Some(other) = seen.insert(t.clone(), *s) {
                    return Err(BuildError::new(
                        &self.id,
                        format!(
                            "{other} and {s} would both read topic {t:?}; set {other}.topic and \
                             {s}.topic to different topics"
                        ),
                    ));
                }
            }
            let me = Arc::new(*self);
            let mut tasks = Vec::new();
            for s in signals {
                let member = Member {
                    rx: me.clone(),
                    signal: s,
                    topic: topics.topic(s),
                    encoding: topics.encoding(s),
                    consumers: consumers.clone(),
                };
                tasks.push(tokio::spawn(member.run(shutdown.clone())));
            }
            Ok(tasks)
        })
    }
}

/// One group member: one signal, one topic.
struct Member {
    rx: Arc<KafkaReceiver>,
    signal: Signal,
    topic: String,
    encoding: Encoding,
    consumers: Consumers,
}

/// Sleeps `d` unless shutdown comes first; true when shutting down.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

impl Member {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let consumer = match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(receiver = %self.rx.id, topic = %self.topic,
                        "cannot join the Kafka consumer group: {e}; retrying in {backoff:?}");
                    if pause(&mut shutdown, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            tracing::info!(receiver = %self.rx.id, topic = %self.topic,
                group = %self.rx.cfg.group_id, "consuming from Kafka");
            backoff = Duration::from_millis(500);
            let result = self.consume(&consumer, &mut shutdown).await;
            if let Err(e) = consumer.close().await {
                tracing::debug!("closing the Kafka consumer: {e}");
            }
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(receiver = %self.rx.id, topic = %self.topic,
                        "Kafka consumer failed: {e}; reconnecting");
                    if pause(&mut shutdown, backoff).await {
                        return;
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<krafka::consumer::Consumer, String> {
        let cfg = &self.rx.cfg;
        let kafka = cfg
            .common
            .connection()
            .connect(Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        let reset = match cfg.initial_offset {
            InitialOffset::Latest => krafka::consumer::AutoOffsetReset::Latest,
            InitialOffset::Earliest => krafka::consumer::AutoOffsetReset::Earliest,
        };
        let consumer = kafka
            .consumer(cfg.group_id.clone())
            .auto_offset_reset(reset)
            .enable_auto_commit(false)
            .session_timeout(cfg.session_timeout.0)
            .heartbeat_interval(cfg.heartbeat_interval.0)
            .fetch_max_wait(cfg.max_fetch_wait.0)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        consumer
            .subscribe([self.topic.as_str()])
            .await
            .map_err(|e| e.to_string())?;
        Ok(consumer)
    }

    /// Polls until shutdown. Returns an error when the consumer must be rebuilt.
    async fn consume(
        &self,
        consumer: &krafka::consumer::Consumer,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut failures = 0u32;
        loop {
            // `poll` is not cancelled by shutdown (records taken from its buffer would be
            // lost to this member); its short timeout bounds the shutdown delay.
            if *shutdown.borrow() {
                return Ok(());
            }
            let records = match consumer.poll(Duration::from_millis(500)).await {
                Ok(r) => {
                    failures = 0;
                    r
                }
                Err(e) => {
                    failures += 1;
                    if failures >= 5 {
                        return Err(e.to_string());
                    }
                    tracing::debug!("Kafka poll: {e}");
                    if pause(shutdown, Duration::from_millis(200)).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            let mut done: HashMap<(Arc<str>, i32), i64> = HashMap::new();
            let mut stopped = false;
            for rec in &records {
                if !self.deliver(rec, shutdown).await {
                    // Shutting down before the pipelines took this message: it is not
                    // committed (nor anything after it in this partition).
                    stopped = true;
                    break;
                }
                done.insert((rec.topic.clone(), rec.partition), rec.offset + 1);
            }
            self.commit(consumer, &done).await;
            if stopped {
                return Ok(());
            }
        }
    }

    async fn commit(
        &self,
        consumer: &krafka::consumer::Consumer,
        done: &HashMap<(Arc<str>, i32), i64>,
    ) {
        if done.is_empty() {
            return;
        }
        let offsets: Vec<(
            krafka::consumer::TopicPartition,
            krafka::consumer::OffsetAndMetadata,
        )> = done
            .iter()
            .map(|((t, p), o)| {
                (
                    krafka::consumer::TopicPartition::new(t.to_string(), *p),
                    krafka::consumer::OffsetAndMetadata::new(*o),
                )
            })
            .collect();
        if let Err(e) = consumer.commit_offsets(offsets).await {
            self.rx.commits_failed.inc();
            tracing::warn!(receiver = %self.rx.id,
                "offset commit failed (these messages will be delivered again): {e}");
        }
    }

    /// Decodes one message and offers it until every pipeline took it. False only when
    /// shutdown came first.
    async fn deliver(
        &self,
        rec: &krafka::consumer::ConsumerRecord,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let counters = self.rx.counters.get(self.signal);
        let mut wait = Duration::from_millis(100);
        loop {
            let mut batch = match self.decode(rec) {
                Ok(b) => b,
                Err(e) => {
                    self.rx.undecodable.inc();
                    tracing::warn!(receiver = %self.rx.id, topic = %rec.topic,
                        partition = rec.partition, offset = rec.offset,
                        "skipping a Kafka message that is not {:?} {}: {e}",
                        self.encoding, self.signal);
                    return true;
                }
            };
            self.extract_headers(&mut batch, &rec.headers);
            let n = batch.item_count() as u64;
            if n == 0 {
                return true;
            }
            match self.consumers.consume(batch).await {
                Ok(()) => {
                    counters.accepted.add(n);
                    return true;
                }
                Err(ConsumeError::Invalid(reason)) => {
                    counters.dropped.add(n);
                    tracing::warn!(receiver = %self.rx.id, offset = rec.offset,
                        "a pipeline rejected a Kafka message for good: {reason}");
                    return true;
                }
                Err(ConsumeError::Refused {
                    reason,
                    retry_after,
                }) => {
                    counters.refused.add(n);
                    let d = retry_after.unwrap_or(wait).min(Duration::from_secs(5));
                    tracing::debug!("pipeline refused a Kafka message ({reason}); again in {d:?}");
                    if pause(shutdown, d).await {
                        return false;
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The message as a batch: raw (zero-copy, wire-scanned) when it is OTLP protobuf,
    /// nothing needs its contents here and every pipeline forwards raw; decoded otherwise.
    fn decode(&self, rec: &krafka::consumer::ConsumerRecord) -> Result<Batch, DecodeError> {
        let value = rec.value.clone().unwrap_or_default();
        if self.encoding == Encoding::OtlpProto
            && !self.extracts_headers()
            && self.consumers.accepts_raw(self.signal)
        {
            return Batch::from_proto_bytes(self.signal, value);
        }
        self.encoding.decode(self.signal, &value)
    }

    fn extracts_headers(&self) -> bool {
        let he = &self.rx.cfg.header_extraction;
        he.extract_headers && !he.headers.is_empty()
    }

    fn extract_headers(&self, batch: &mut Batch, headers: &krafka::Headers) {
        let he = &self.rx.cfg.header_extraction;
        if !self.extracts_headers() {
            return;
        }
        let found: Vec<(String, String)> = he
            .headers
            .iter()
            .filter_map(|name| {
                let (_, v) = headers.iter().find(|(k, _)| k == name)?;
                let v = v.as_ref()?;
                Some((
                    format!("kafka.header.{name}"),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            })
            .collect();
        if found.is_empty() {
            return;
        }
        let apply = |res: &mut Option<crate::data::Resource>| {
            let r = res.get_or_insert_with(Default::default);
            for (k, v) in &found {
                set_attr(&mut r.attributes, k, string_value(v.clone()));
            }
        };
        match batch {
            Batch::Traces(v) => v.iter_mut().for_each(|r| apply(&mut r.resource)),
            Batch::Logs(v) => v.iter_mut().for_each(|r| apply(&mut r.resource)),
            Batch::Metrics(v) => v.iter_mut().for_each(|r| apply(&mut r.resource)),
            // `decode` never returns raw batches when headers are extracted.
            Batch::Raw(_) => {}
        }
    }
}
