//! Delivery: the one path every exporter's data takes — a bounded queue (in memory, or a
//! write-ahead log when `sending_queue.storage` names a `file_storage` extension), a pool
//! of consumers, retries with exponential backoff and jitter that honour the server's
//! retry hint, and a per-attempt timeout. Exporters only send once and classify.
//!
//! Framework-owned keys on every exporter (the Collector's exporterhelper keys and defaults):
//! - `sending_queue`: `enabled` (true), `num_consumers` (10), `queue_size` (1000, counted
//!   in `sizer` units), `sizer` (`requests` = batches, `items` = spans/log records/data
//!   points, or `bytes` = serialized size; see [`sizer`]), `block_on_overflow` (false: a
//!   full queue refuses upstream with a retryable error and counts it; never a silent
//!   drop), `storage` (id of a `file_storage` extension), `batch` (off by default; `{}`
//!   turns it on with `flush_timeout` 200ms, `min_size` 8192, `max_size` 0, `sizer` items:
//!   queued batches are gathered into larger sends, see [`QueueBatchConfig`] and "Gathering"
//!   below).
//! - `retry_on_failure`: `enabled` (true), `initial_interval` (5s), `max_interval` (30s),
//!   `max_elapsed_time` (300s; 0 = retry forever), `multiplier` (1.5),
//!   `randomization_factor` (0.5).
//! - `timeout` per attempt: 5s, or the exporter's own default
//!   ([`crate::exporters::Exporter::default_timeout`]: awss3 60s).
//!
//! A raw batch (the forwarding fast path's serialized requests) that the backend cannot
//! read (a permanent failure whose reason [`crate::exporters::payload_refused`] names) is
//! decoded request by request and resource message by resource message: only what does not
//! decode (a string that is not UTF-8, which the fast path's scan does not check) is dropped,
//! as `send_failed{reason="undecodable"}`, and the rest is sent again at once.
//!
//! Extension `file_storage`: `directory` (required), `fsync` (`always` | `interval` |
//! `never`, default `interval`), `fsync_interval` (1s), `max_size_mib` (1024).
//!
//! Gathering: an exporter may ask ([`crate::exporters::Exporter::accumulate`]; `awss3`
//! does, from `flush_interval` and `max_object_size_mib`) for its queued batches to be
//! merged into fewer sends: per signal, until an interval after the first batch, a
//! serialized size, more than half of `queue_size` gathered, or shutdown. Gathered data
//! stays in the queue's capacity and WAL until the merged send is delivered; every other
//! exporter's consumers send batch by batch as before (see `gather.rs`).
//!
//! Shutdown order: the pipeline stops pushing, consumers drain the queue (sending what is
//! gathered at once) until the deadline; then in-memory leftovers, gathered or queued, are
//! counted as dropped, persistent ones stay on disk and are replayed at the next start.

pub mod backoff;
pub mod queue;
pub mod sizer;
pub mod wal;

use serde::Deserialize;

use crate::config::Dur;

pub use queue::{Delivery, DeliveryHandle, Refusal};
pub use sizer::Sizer;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub enabled: bool,
    pub num_consumers: usize,
    pub queue_size: usize,
    pub block_on_overflow: bool,
    pub storage: Option<String>,
    /// The unit of `queue_size`: `requests` (default), `items` or `bytes` (see [`sizer`]).
    pub sizer: Sizer,
    /// Accepted for Collector compatibility (deprecated alias of block_on_overflow).
    pub blocking: Option<bool>,
    /// Gathering queued batches into larger sends (off unless set; `batch: {}` for the
    /// defaults). See [`QueueBatchConfig`].
    pub batch: Option<QueueBatchConfig>,
}

/// `sending_queue.batch`, the Collector exporterhelper's batching keys: queued batches are
/// gathered (`gather.rs`) until `min_size` (in `sizer` units: `items`, the default, or
/// `bytes`) or `flush_timeout` since the first of them, and sent as one; with `max_size`
/// (items; 0 = no limit) a larger merged batch is sent in pieces. Unlike the `batch`
/// processor, what is gathered stays in the queue — in its WAL with `storage` — until it
/// is delivered. An exporter that gathers by itself (`awss3`'s `flush_interval`) keeps its
/// own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawQueueBatch")]
pub struct QueueBatchConfig {
    pub flush_timeout: Dur,
    pub min_size: usize,
    pub max_size: usize,
    pub sizer: Sizer,
}

impl QueueBatchConfig {
    pub fn accumulate(&self) -> crate::exporters::Accumulate {
        crate::exporters::Accumulate {
            interval: self.flush_timeout.get(),
            flush_size: self.min_size.max(1),
            sizer: self.sizer,
            max_items: self.max_size,
        }
    }
}

/// The keys as written, checked into a [`QueueBatchConfig`]; missing keys take the
/// Collector's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawQueueBatch {
    flush_timeout: Dur,
    min_size: usize,
    max_size: usize,
    sizer: Sizer,
}

impl Default for RawQueueBatch {
    fn default() -> Self {
        RawQueueBatch {
            flush_timeout: Dur::millis(200),
            min_size: 8192,
            max_size: 0,
            sizer: Sizer::Items,
        }
    }
}

impl TryFrom<RawQueueBatch> for QueueBatchConfig {
    type Error = String;
    fn try_from(r: RawQueueBatch) -> Result<Self, String> {
        if r.flush_timeout.get().is_zero() {
            return Err("batch.flush_timeout must be greater than zero".into());
        }
        if r.sizer == Sizer::Requests {
            return Err("batch.sizer must be `items` or `bytes`".into());
        }
        if r.max_size > 0 && r.sizer == Sizer::Bytes {
            return Err(
                "batch.max_size is supported with `sizer: items` only (a gathered batch is split by items)"
                    .into(),
            );
        }
        if r.max_size > 0 && r.max_size < r.min_size {
            return Err(format!(
                "batch.max_size ({}) must be 0 or at least batch.min_size ({})",
                r.max_size, r.min_size
            ));
        }
        Ok(QueueBatchConfig {
            flush_timeout: r.flush_timeout,
            min_size: r.min_size,
            max_size: r.max_size,
            sizer: r.sizer,
        })
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            block_on_overflow: false,
            storage: None,
            sizer: Sizer::Requests,
            blocking: None,
            batch: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_interval: Dur,
    pub max_interval: Dur,
    pub max_elapsed_time: Dur,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Dur::secs(5),
            max_interval: Dur::secs(30),
            max_elapsed_time: Dur::secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

/// `fsync` of the `file_storage` extension. Booleans are accepted as the Collector writes
/// them (`true` = always, `false` = interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncMode {
    Always,
    #[default]
    Interval,
    Never,
}

impl<'de> Deserialize<'de> for FsyncMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(true) => Ok(FsyncMode::Always),
            Raw::B(false) => Ok(FsyncMode::Interval),
            Raw::S(s) => match s.as_str() {
                "always" => Ok(FsyncMode::Always),
                "interval" => Ok(FsyncMode::Interval),
                "never" => Ok(FsyncMode::Never),
                other => Err(serde::de::Error::custom(format!(
                    "unknown variant `{other}`, expected one of `always`, `interval`, `never`"
                ))),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStorageConfig {
    pub directory: String,
    #[serde(default)]
    pub fsync: FsyncMode,
    #[serde(default = "default_fsync_interval")]
    pub fsync_interval: Dur,
    #[serde(default = "default_max_size_mib")]
    pub max_size_mib: u64,
    /// Accepted for Collector compatibility.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Accepted for Collector compatibility; weft compacts by deleting acknowledged segments.
    #[serde(default)]
    pub compaction: Option<serde_json::Value>,
    #[serde(default)]
    pub create_directory: Option<bool>,
}

fn default_fsync_interval() -> Dur {
    Dur::secs(1)
}
fn default_max_size_mib() -> u64 {
    1024
}
