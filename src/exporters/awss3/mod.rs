//! The `awss3` exporter: archives traces, logs and metrics as objects in S3 (or any
//! S3-compatible store), partitioned by the records' own time for Athena, DuckDB and Spark.
//!
//! Config (the Collector's awss3exporter keys, same defaults where they overlap):
//! - `s3uploader`:
//!   - `s3_bucket` (required), `s3_prefix` (""), `file_prefix` (""),
//!   - `region` (`us-east-1`; credentials and everything else from the standard AWS chain),
//!   - `s3_partition_format` (`year=%Y/month=%m/day=%d/hour=%H/minute=%M`): strftime in UTC
//!     over each record's timestamp, plus `%{attr}` for resource attributes, e.g.
//!     `service=%{service.name}/year=%Y/month=%m/day=%d/hour=%H`; `s3_partition_timezone`
//!     accepts only `UTC` (weft ships no time zone database),
//!   - `endpoint` (none = AWS; a URL for MinIO/Ceph/...; `https://` is assumed when the
//!     scheme is missing unless `disable_ssl`), `s3_force_path_style` (false),
//!   - `compression` (`none` | `gzip` | `zstd`; default none, except zstd for parquet),
//!   - `storage_class` (`STANDARD`), `acl` (none; a canned ACL such as
//!     `bucket-owner-full-control`),
//!   - `retry_mode`, `retry_max_attempts`, `retry_max_backoff`, `unique_key_func_name`:
//!     accepted and ignored — retries belong to the delivery layer (`retry_on_failure`) and
//!     the object id is always the content hash. `role_arn` is refused: use web identity
//!     (IRSA) or a profile, which the AWS chain handles.
//! - `marshaler`: `otlp_json` (default), `otlp_proto`, `parquet` (logs and traces; see
//!   `parquet.rs` for the schemas).
//! - `flush_interval` (5m) and `max_object_size_mib` (64): the exporter asks the delivery
//!   layer to gather its queued batches ([`Exporter::accumulate`]; see
//!   `src/delivery/gather.rs`), one gathering per signal, and to send the merged batch once
//!   `flush_interval` has passed since its first batch was taken, or once its serialized
//!   OTLP protobuf size reaches `max_object_size_mib`, whichever comes first. So the archive
//!   gets objects every few minutes instead of one per `batch` processor timeout (200ms by
//!   default). `flush_interval: 0s` sends every batch on its own, and so does a disabled
//!   `sending_queue` (a warning at start says so).
//!   The exporter itself still holds no data (a buffer inside an exporter would acknowledge
//!   data the persistent queue then forgets on a crash): gathered batches stay in the
//!   sending queue — in its WAL with `sending_queue.storage`, whose records are freed only
//!   after the merged batch is written — and count against `queue_size`. Gathering stops
//!   early when it holds more than half of `queue_size`, so upstream is not refused for
//!   minutes: with the default `sizer: requests` and `queue_size: 1000` that is 500
//!   batches; for big archives use `sizer: bytes` and a `queue_size` above twice
//!   `max_object_size_mib`; merged batches being uploaded (up to `num_consumers`) are in
//!   memory on top of it. Shutdown sends what is gathered at once. Without a queue
//!   (`sending_queue.enabled: false`) nothing can be gathered. The pipeline's `batch`
//!   processor only shapes what is queued: keep its short default timeout (a long one holds
//!   data in memory, outside the WAL, before the queue even sees it).
//!   Objects are split by halving their records when the marshaled object would exceed
//!   `max_object_size_mib` (JSON is larger than protobuf; Parquet and compressed objects
//!   are smaller), so no object exceeds it unless one record does.
//!
//! Framework keys (`sending_queue`, `retry_on_failure`, `timeout`) are the delivery layer's.
//! One attempt writes every object of a gathered batch, so awss3's `timeout` defaults to
//! 60s per attempt (the other exporters' is 5s); raise it if `max_object_size_mib` of
//! uploads takes longer on your link: an attempt that times out is retried whole (same
//! keys, so no duplicates, but the work is redone).
//!
//! Objects: one per partition per gathered batch (more when split at
//! `max_object_size_mib`), key
//! `{s3_prefix}/{partition}/{file_prefix}{signal}_{content id}.{ext}` (see `key.rs`). Above
//! 8 MiB an object goes up in multipart upload (aborted on failure). A retried batch writes
//! the same keys, so a retry overwrites instead of duplicating; objects that made it are
//! not re-sent (a `Partial` answer retries only the failed ones).
//!
//! At start a HeadBucket checks the bucket, so a missing bucket or bad credentials show in
//! readiness before the first batch (a 403 there is ignored: HeadBucket needs s3:ListBucket,
//! which a writer with only s3:PutObject and s3:AbortMultipartUpload does not have).
//!
//! Errors: NoSuchBucket, AccessDenied, InvalidAccessKeyId (and the like) are permanent,
//! counted and named by `/health/ready` until an upload succeeds again; SlowDown, 5xx and
//! network errors are retryable (only the objects that failed are retried); another 4xx
//! drops that object only: its items are counted in
//! `weft_exporter_s3_rejected_<items>_total{code}` and logged, and the batch's other objects
//! are still written (when every object is refused, the batch fails permanently and the
//! delivery layer counts it). A metrics batch with the parquet marshaler is a permanent
//! error, also named by readiness.
//!
//! Metrics: `weft_exporter_s3_objects_total`, `weft_exporter_s3_bytes_total` (after
//! compression), `weft_exporter_s3_permanent_errors_total{code}`,
//! `weft_exporter_s3_rejected_<items>_total{code}`, next to the delivery layer's
//! sent/failed/retry counters.
//!
//! The sending queue holds batches undecoded ([`Exporter::queues_raw`]); the delivery
//! layer decodes each gathered batch once, just before `send`, dropping only resource
//! messages that do not decode (`send_failed{reason="undecodable"}`). So gathered data
//! waits as protobuf bytes (`benches/s3_gather_memory.sh`: 710 → 236 MiB resident with
//! ~194 MB of logs gathered).

pub mod key;
pub mod marshal;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use self::key::PartitionFormat;
use self::marshal::{Compression, MarshalError, Marshaler};
use self::upload::{ClientSettings, Failure, Put};
use super::{Accumulate, BoxFuture, ExportError, Exporter};
use crate::admin::{Counter, Telemetry};
use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError, parse_component};
use crate::data::Batch;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsS3Config {
    #[serde(default)]
    pub s3uploader: S3Uploader,
    #[serde(default)]
    pub marshaler: Marshaler,
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Dur,
    #[serde(default = "default_max_object_size_mib")]
    pub max_object_size_mib: u64,
}

fn default_flush_interval() -> Dur {
    Dur::secs(300)
}
fn default_max_object_size_mib() -> u64 {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Uploader {
    pub region: String,
    pub s3_bucket: String,
    pub s3_prefix: String,
    pub s3_partition_format: String,
    pub s3_partition_timezone: Option<String>,
    pub file_prefix: String,
    pub endpoint: Option<String>,
    pub s3_force_path_style: bool,
    pub disable_ssl: bool,
    pub compression: Option<Compression>,
    pub storage_class: String,
    pub acl: Option<String>,
    pub role_arn: Option<String>,
    pub retry_mode: Option<String>,
    pub retry_max_attempts: Option<u32>,
    pub retry_max_backoff: Option<Dur>,
    pub unique_key_func_name: Option<String>,
}

impl Default for S3Uploader {
    fn default() -> Self {
        S3Uploader {
            region: "us-east-1".into(),
            s3_bucket: String::new(),
            s3_prefix: String::new(),
            s3_partition_format: key::DEFAULT_PARTITION_FORMAT.into(),
            s3_partition_timezone: None,
            file_prefix: String::new(),
            endpoint: None,
            s3_force_path_style: false,
            disable_ssl: false,
            compression: None,
            storage_class: "STANDARD".into(),
            acl: None,
            role_arn: None,
            retry_mode: None,
            retry_max_attempts: None,
            retry_max_backoff: None,
            unique_key_func_name: None,
        }
    }
}

const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "EXPRESS_ONEZONE",
];

fn field_err(path: &[&str], message: impl Into<String>, suggestion: Option<String>) -> FieldError {
    FieldError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        suggestion,
    }
}

/// Everything the exporter needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bucket: String,
    pub prefix: String,
    pub file_prefix: String,
    pub format: PartitionFormat,
    pub marshaler: Marshaler,
    pub compression: Compression,
    pub storage_class: Option<String>,
    pub acl: Option<String>,
    pub max_object_bytes: usize,
    /// Zero: every queued batch is sent (becomes objects) on its own.
    pub flush_interval: Duration,
    pub client: ClientSettings,
}

impl Settings {
    pub fn from_config(c: &AwsS3Config) -> Result<Settings, FieldError> {
        let u = &c.s3uploader;
        if u.s3_bucket.trim().is_empty() {
            return Err(field_err(
                &["s3uploader", "s3_bucket"],
                "s3_bucket is required",
                None,
            ));
        }
        let format = PartitionFormat::parse(&u.s3_partition_format)
            .map_err(|e| field_err(&["s3uploader", "s3_partition_format"], e, None))?;
        if let Some(tz) = &u.s3_partition_timezone
            && !matches!(tz.as_str(), "" | "UTC" | "Etc/UTC")
        {
            return Err(field_err(
                &["s3uploader", "s3_partition_timezone"],
                format!("only UTC is supported, got {tz:?}"),
                None,
            ));
        }
        if u.role_arn.is_some() {
            return Err(field_err(
                &["s3uploader", "role_arn"],
                "role_arn is not supported: use web identity (IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE) or a profile with role_arn, which the AWS credential chain handles",
                None,
            ));
        }
        if !STORAGE_CLASSES.contains(&u.storage_class.as_str()) {
            let s = crate::config::suggest(&u.storage_class, STORAGE_CLASSES.iter().copied());
            return Err(field_err(
                &["s3uploader", "storage_class"],
                format!("unknown storage class {:?}", u.storage_class),
                s,
            ));
        }
        let compression = match (c.marshaler, u.compression) {
            (Marshaler::Parquet, None) => Compression::Zstd,
            (Marshaler::Parquet, Some(Compression::Gzip)) => {
                return Err(field_err(
                    &["s3uploader", "compression"],
                    "the parquet marshaler compresses column chunks with zstd or none; gzip is not supported",
                    None,
                ));
            }
            (_, c) => c.unwrap_or(Compression::None),
        };
        if c.marshaler == Marshaler::Parquet && !cfg!(feature = "parquet") {
            return Err(field_err(
                &["marshaler"],
                "this weft was built without the `parquet` cargo feature",
                None,
            ));
        }
        if c.max_object_size_mib == 0 {
            return Err(field_err(
                &["max_object_size_mib"],
                "must be at least 1",
                None,
            ));
        }
        let endpoint = u.endpoint.as_ref().filter(|e| !e.is_empty()).map(|e| {
            if e.contains("://") {
                e.clone()
            } else if u.disable_ssl {
                format!("http://{e}")
            } else {
                format!("https://{e}")
            }
        });
        Ok(Settings {
            bucket: u.s3_bucket.clone(),
            prefix: u.s3_prefix.clone(),
            file_prefix: u.file_prefix.clone(),
            format,
            marshaler: c.marshaler,
            compression,
            storage_class: (u.storage_class != "STANDARD").then(|| u.storage_class.clone()),
            acl: u.acl.clone().filter(|a| !a.is_empty()),
            max_object_bytes: usize::try_from(c.max_object_size_mib.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            flush_interval: c.flush_interval.get(),
            client: ClientSettings {
                region: u.region.clone(),
                endpoint,
                force_path_style: u.s3_force_path_style,
            },
        })
    }
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    let c: AwsS3Config = parse_component(v)?;
    Settings::from_config(&c).map(|_| ())
}

/// One object of a send: its key, bytes and the records it holds.
pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub batch: Batch,
}

/// The objects a batch becomes: one per partition, split further so none exceeds
/// `max_object_bytes` (unless a single record does). Pure: `now_nanos` stands in for
/// records without a timestamp.
pub fn plan_objects(
    batch: &Batch,
    s: &Settings,
    now_nanos: u64,
) -> Result<Vec<Object>, MarshalError> {
    let ext = marshal::extension(s.marshaler, s.compression);
    let mut out = Vec::new();
    for (partition, group) in key::group_by_partition(batch, &s.format, now_nanos) {
        let mut pieces = Vec::new();
        fit(group, s, &mut pieces)?;
        for (b, body) in pieces {
            let id = key::content_id(&b);
            let key = key::object_key(&s.prefix, &partition, &s.file_prefix, b.signal(), &id, &ext);
            out.push(Object {
                key,
                body,
                batch: b,
            });
        }
    }
    Ok(out)
}

fn fit(batch: Batch, s: &Settings, out: &mut Vec<(Batch, Vec<u8>)>) -> Result<(), MarshalError> {
    let body = marshal::marshal(&batch, s.marshaler, s.compression)?;
    let n = batch.item_count();
    if body.len() <= s.max_object_bytes || n <= 1 {
        out.push((batch, body));
        return Ok(());
    }
    let mut rest = batch;
    let front = rest.split_front(n / 2);
    if front.is_empty() || rest.is_empty() {
        // Metrics split whole; one metric's points cannot be divided further.
        let mut whole = front;
        whole.merge(rest);
        out.push((whole, body));
        return Ok(());
    }
    fit(front, s, out)?;
    fit(rest, s, out)
}

pub struct AwsS3Exporter {
    id: String,
    settings: Settings,
    client: OnceCell<aws_sdk_s3::Client>,
    telemetry: Telemetry,
    objects: Counter,
    /// Set while readiness names an S3 setup problem (bucket, credentials) that a later
    /// successful upload clears. A config problem (`unsupported`) is never cleared.
    s3_failure: AtomicBool,
    bytes: Counter,
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let c: AwsS3Config = parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    let settings = Settings::from_config(&c)
        .map_err(|e| BuildError::new(&ctx.id, format!("{}: {}", e.path.join("."), e.message)))?;
    let l: &[(&str, &str)] = &[("component", &ctx.id)];
    let m = &ctx.telemetry.metrics;
    Ok(Arc::new(AwsS3Exporter {
        id: ctx.id.clone(),
        settings,
        client: OnceCell::new(),
        s3_failure: AtomicBool::new(false),
        telemetry: ctx.telemetry.clone(),
        objects: m.counter("weft_exporter_s3_objects_total", "Objects written to S3", l),
        bytes: m.counter(
            "weft_exporter_s3_bytes_total",
            "Bytes written to S3 (after compression)",
            l,
        ),
    }))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl AwsS3Exporter {
    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| upload::build_client(&self.settings.client))
            .await
    }

    /// A permanent setup problem: counted, named by readiness, and returned.
    fn broken(&self, code: &str, message: &str) -> ExportError {
        self.telemetry
            .metrics
            .counter(
                "weft_exporter_s3_permanent_errors_total",
                "Uploads that failed permanently, by S3 error code",
                &[("component", &self.id), ("code", code)],
            )
            .inc();
        if code != "unsupported" {
            self.s3_failure.store(true, Ordering::SeqCst);
        }
        self.telemetry.health.set_failure(
            &self.id,
            format!("{code}: {message} (bucket {})", self.settings.bucket),
        );
        ExportError::permanent(code, message)
    }

    /// Counts and logs the items of one object S3 refused while others were written.
    fn note_rejected(&self, code: &str, message: &str, batch: &Batch) {
        let item = batch.signal().item_name();
        self.telemetry
            .metrics
            .counter(
                &format!("weft_exporter_s3_rejected_{item}_total"),
                "Items of objects S3 refused (dropped) while the batch's other objects were written, by S3 error code",
                &[("component", &self.id), ("code", code)],
            )
            .add(batch.item_count() as u64);
        tracing::warn!(exporter = %self.id, code, items = batch.item_count(), "object refused, its items are dropped: {message}");
    }

    async fn send_batch(&self, batch: &Batch) -> Result<(), ExportError> {
        let objects = match plan_objects(batch, &self.settings, now_nanos()) {
            Ok(o) => o,
            Err(MarshalError::Unsupported(m)) => return Err(self.broken("unsupported", &m)),
            Err(e) => return Err(ExportError::permanent("marshal_failed", e.to_string())),
        };
        let client = self.client().await;
        let mut retry: Option<Batch> = None;
        let mut last_reason = String::new();
        let mut written = 0usize;
        // Objects S3 refused for themselves (a 4xx other than the bucket's or the
        // credentials'): counted and dropped here, while the batch's other objects are
        // still written — with `flush_interval` gathering, one batch is minutes of data.
        let mut rejected: Vec<(String, String, Batch)> = Vec::new();
        for obj in objects {
            let len = obj.body.len() as u64;
            let put = Put {
                bucket: &self.settings.bucket,
                key: &obj.key,
                body: obj.body,
                content_type: self.settings.marshaler.content_type(),
                storage_class: self.settings.storage_class.as_deref(),
                acl: self.settings.acl.as_deref(),
            };
            match upload::upload(client, put).await {
                Ok(()) => {
                    written += 1;
                    self.objects.inc();
                    self.bytes.add(len);
                    tracing::debug!(exporter = %self.id, key = %obj.key, bytes = len, "object written");
                }
                Err(Failure::Permanent { code, message }) => {
                    return Err(self.broken(&code, &message));
                }
                Err(Failure::Rejected { code, message }) => {
                    rejected.push((code, format!("{} rejected: {message}", obj.key), obj.batch));
                }
                Err(Failure::Retryable { reason }) => {
                    last_reason = reason;
                    match &mut retry {
                        Some(r) => r.merge(obj.batch),
                        None => retry = Some(obj.batch),
                    }
                }
            }
        }
        if written == 0 && retry.is_none() && !rejected.is_empty() {
            // Every object refused: the delivery layer counts the batch as failed (under
            // the first refusal's code) and logs it.
            let (code, message, _) = rejected.swap_remove(0);
            return Err(ExportError::permanent(code, message));
        }
        for (code, message, b) in &rejected {
            self.note_rejected(code, message, b);
        }
        match retry {
            None => {
                if self.s3_failure.swap(false, Ordering::SeqCst) {
                    self.telemetry.health.clear_failure(&self.id);
                }
                Ok(())
            }
            // Only the failed objects' records are retried: not those of objects that
            // were written, nor those of objects S3 refused (dropped and counted above).
            Some(r) if written > 0 || !rejected.is_empty() => Err(ExportError::Partial {
                retry: r,
                reason: last_reason,
                after: None,
            }),
            Some(_) => Err(ExportError::retryable(last_reason)),
        }
    }
}

impl Exporter for AwsS3Exporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(self.send_batch(batch))
    }

    /// The queue holds raw batches, which the delivery layer decodes just before `send`:
    /// what `flush_interval` gathers (up to `max_object_size_mib` of protobuf) waits as
    /// those bytes, not as decoded records several times their size, and a pipeline that
    /// ends only in awss3 (and exporters that take raw batches) decodes nothing before the
    /// queue.
    fn queues_raw(&self) -> bool {
        true
    }

    fn accumulate(&self) -> Option<Accumulate> {
        Some(Accumulate {
            interval: self.settings.flush_interval,
            flush_size: self.settings.max_object_bytes,
            sizer: crate::delivery::Sizer::Bytes,
            max_items: 0,
        })
    }

    /// One attempt writes a whole gathered batch (up to `max_object_size_mib` of
    /// protobuf, more once marshaled as JSON): 60s, where the delivery layer's 5s would
    /// time out every attempt of a big batch on a ~10 MB/s link and retry it forever.
    fn default_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    fn start(&self) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move {
            let client = self.client().await;
            match upload::check_bucket(client, &self.settings.bucket).await {
                Ok(()) => Ok(()),
                // HeadBucket needs s3:ListBucket, which a least-privilege archive writer
                // (s3:PutObject only) lacks: a refusal here says nothing about uploads.
                Err(Failure::Permanent { code, .. }) if code == "AccessDenied" => {
                    tracing::info!(exporter = %self.id, bucket = %self.settings.bucket, "cannot check the bucket at start (HeadBucket needs s3:ListBucket); uploads will tell");
                    Ok(())
                }
                Err(Failure::Permanent { code, message }) => Err(self.broken(&code, &message)),
                Err(Failure::Rejected { code, message }) => {
                    Err(ExportError::permanent(code, message))
                }
                Err(Failure::Retryable { reason }) => Err(ExportError::retryable(reason)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LogRecord, ResourceLogs, ScopeLogs};

    fn cfg(v: Value) -> Result<Settings, FieldError> {
        Settings::from_config(&parse_component::<AwsS3Config>(&v)?)
    }

    #[test]
    fn defaults_and_checks() {
        let s = cfg(serde_json::json!({"s3uploader": {"s3_bucket": "b"}})).unwrap();
        assert_eq!(s.client.region, "us-east-1");
        assert_eq!(s.compression, Compression::None);
        assert_eq!(s.max_object_bytes, 64 << 20);
        let parquet = cfg(
            serde_json::json!({"s3uploader": {"s3_bucket": "b", "endpoint": "minio:9000", "disable_ssl": true}, "marshaler": "parquet"}),
        );
        if cfg!(feature = "parquet") {
            let s = parquet.unwrap();
            assert_eq!(s.compression, Compression::Zstd);
            assert_eq!(s.client.endpoint.as_deref(), Some("http://minio:9000"));
        } else {
            assert!(
                parquet
                    .unwrap_err()
                    .message
                    .contains("`parquet` cargo feature")
            );
        }
        assert_eq!(
            cfg(serde_json::json!({})).unwrap_err().path,
            ["s3uploader", "s3_bucket"]
        );
        let e = cfg(
            serde_json::json!({"s3uploader": {"s3_bucket": "b", "storage_class": "GLACIERIR"}}),
        )
        .unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("GLACIER_IR"));
        assert!(cfg(serde_json::json!({"s3uploader": {"s3_bucket": "b", "compression": "gzip"}, "marshaler": "parquet"})).is_err());
        assert!(
            cfg(
                serde_json::json!({"s3uploader": {"s3_bucket": "b", "s3_partition_format": "%{x"}})
            )
            .is_err()
        );
        assert!(cfg(serde_json::json!({"s3uploader": {"s3_bucket": "b", "s3_partition_timezone": "Europe/Paris"}})).is_err());
        let e =
            parse_component::<AwsS3Config>(&serde_json::json!({"s3uploader": {"s3_buckt": "b"}}))
                .unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("s3_bucket"));
    }

    #[test]
    fn oversized_groups_are_split_and_keys_are_stable() {
        let s = cfg(serde_json::json!({"s3uploader": {"s3_bucket": "b", "s3_prefix": "arch", "s3_partition_format": "h=%H"}, "max_object_size_mib": 1})).unwrap();
        let body = "x".repeat(100_000);
        let b = Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..30)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_000_000_000 + i,
                        body: Some(crate::data::AnyValue {
                            value: Some(crate::data::string_value(body.clone())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let objs = plan_objects(&b, &s, 0).unwrap();
        assert!(objs.len() >= 3, "{} objects", objs.len());
        assert!(objs.iter().all(|o| o.body.len() <= 1 << 20));
        assert_eq!(objs.iter().map(|o| o.batch.item_count()).sum::<usize>(), 30);
        assert!(objs[0].key.starts_with("arch/h=00/logs_") && objs[0].key.ends_with(".json"));
        let again: Vec<String> = plan_objects(&b, &s, 0)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(
            again,
            objs.iter().map(|o| o.key.clone()).collect::<Vec<_>>()
        );
    }
}
