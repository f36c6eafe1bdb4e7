//! Exporters: encode a batch, send it, classify the answer. Queueing, retries, timeouts and
//! persistence belong to `crate::delivery`, which wraps every exporter the same way.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::data::Batch;

pub mod awss3;
pub mod coalesce;
pub mod debug;
pub mod deflate;
pub mod elasticsearch;
pub mod file;
pub mod grpc_unary;
pub mod http_client;
pub mod jsonw;
pub mod kafka;
pub mod loadbalancing;
pub mod loki;
pub mod otlp;
pub mod otlphttp;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer of one send, and the retry decision it carries.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Send the same batch again later (no sooner than `after` when the server said so).
    #[error("retryable: {reason}")]
    Retryable {
        reason: String,
        after: Option<Duration>,
    },
    /// Never retry: the backend will not take this batch. `reason` is a short label
    /// (`http_400`, `mapper_parsing_exception`, ...) used in metrics.
    #[error("permanent ({reason}): {message}")]
    Permanent { reason: String, message: String },
    /// Some items were taken, some failed permanently (already counted by the exporter),
    /// and `retry` holds the items to send again.
    #[error("partial: {} items to retry: {reason}", retry.item_count())]
    Partial {
        retry: Batch,
        reason: String,
        after: Option<Duration>,
    },
}

impl ExportError {
    pub fn retryable(reason: impl Into<String>) -> ExportError {
        ExportError::Retryable {
            reason: reason.into(),
            after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>, message: impl Into<String>) -> ExportError {
        ExportError::Permanent {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Classifies an HTTP status the way the OTLP spec and the Collector do: 408, 429, 502,
    /// 503 and 504 (and other 5xx) are retryable, other 4xx permanent.
    pub fn from_http_status(status: u16, retry_after: Option<Duration>, body: &str) -> ExportError {
        let snippet: String = body.chars().take(300).collect();
        match status {
            408 | 429 | 500..=599 => ExportError::Retryable {
                reason: format!("HTTP {status}: {snippet}"),
                after: retry_after,
            },
            _ => ExportError::Permanent {
                reason: format!("http_{status}"),
                message: snippet,
            },
        }
    }
}

/// Whether a permanent failure's `reason` says the backend could not read the request
/// itself: HTTP 400 (the Collector's OTLP/HTTP receiver on an unmarshal error), gRPC
/// INVALID_ARGUMENT, and INTERNAL (what gRPC servers answer when the request does not
/// unmarshal, e.g. a string that is not UTF-8). The delivery layer then looks for parts of
/// a raw batch that do not decode (see `crate::delivery`).
pub fn payload_refused(reason: &str) -> bool {
    matches!(
        reason,
        "http_400" | "grpc_invalidargument" | "grpc_internal"
    )
}

/// Parses an HTTP `Retry-After` header (delay seconds, or an HTTP date).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::Utc::now();
    let d = when.with_timezone(&chrono::Utc) - now;
    Some(d.to_std().unwrap_or(Duration::ZERO))
}

/// The one exporter trait. `send` makes one attempt; the delivery layer decides about
/// retries from the returned error.
pub trait Exporter: Send + Sync + 'static {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>>;

    /// Called once before the first send (open files, check buckets). Errors here are
    /// reported in readiness but do not stop weft: the backend may come up later.
    fn start(&self) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async { Ok(()) })
    }

    /// Called after the queue drained on shutdown.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Whether `send` takes raw batches ([`Batch::Raw`]: serialized requests, not decoded)
    /// as they are. An exporter that only writes the protobuf request out says yes, and so
    /// does one that reads logs through [`crate::data::view`] (`loki`, `elasticsearch`);
    /// every other exporter gets decoded batches (the pipeline and delivery layer decode
    /// first).
    fn accepts_raw(&self) -> bool {
        false
    }

    /// Whether the sending queue in front of this exporter may hold raw batches, decoded
    /// by the delivery layer just before `send` when [`Exporter::accepts_raw`] is false
    /// (only what does not decode is dropped: see [`crate::delivery`]). Defaults to
    /// `accepts_raw`. `awss3` says yes: what its `flush_interval` gathers then waits as
    /// bytes instead of decoded records several times their size, and a pipeline ending in
    /// it decodes nothing before the queue.
    fn queues_raw(&self) -> bool {
        self.accepts_raw()
    }

    /// Whether the delivery layer should gather queued batches into fewer, larger sends
    /// (see "Gathering" in [`crate::delivery`]). `None` (the default): every queued batch is
    /// sent as it is. The gathered data stays in the queue (its capacity and its write-ahead
    /// log) until the merged batch is delivered, so an exporter never holds data itself.
    fn accumulate(&self) -> Option<Accumulate> {
        None
    }

    /// The per-attempt `timeout` when the config sets none: 5s, the Collector's default,
    /// for exporters that send one batch per attempt. An exporter whose attempt can carry
    /// far more (awss3 writes a whole gathered batch, up to `max_object_size_mib` per
    /// object) says how long that may take, so its default cannot time out every attempt
    /// of a big batch and retry it forever.
    fn default_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// How queued batches are gathered before a send: asked by an exporter
/// ([`Exporter::accumulate`]) or configured (`sending_queue.batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accumulate {
    /// The longest a gathered batch waits, counted from its first queued batch.
    pub interval: Duration,
    /// Send once the gathered batches' size, in `sizer` units, reaches this.
    pub flush_size: usize,
    pub sizer: crate::delivery::Sizer,
    /// Items per send at most (0: no limit): a larger merged batch is sent in pieces.
    pub max_items: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_are_classified() {
        assert!(matches!(
            ExportError::from_http_status(429, None, ""),
            ExportError::Retryable { .. }
        ));
        assert!(matches!(
            ExportError::from_http_status(503, None, ""),
            ExportError::Retryable { .. }
        ));
        assert!(matches!(
            ExportError::from_http_status(400, None, "bad"),
            ExportError::Permanent { .. }
        ));
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
