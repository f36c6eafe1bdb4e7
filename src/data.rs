//! The unit of work that flows through weft: a [`Batch`] of one signal, held as the
//! opentelemetry-proto resource-level messages.
//!
//! Counting, splitting, merging and (de)serialisation are written once here and used by
//! receivers, processors, the delivery queue and exporters. OTLP's export requests are a
//! single repeated field, so a batch *is* the body of an export request.
//!
//! A batch is either decoded (`Traces`/`Logs`/`Metrics`) or [`Batch::Raw`]: the request
//! bytes as received, validated and counted by a shallow wire scan, for pipelines that only
//! forward (the fast path; see [`raw`] for who decides and what it does not validate).
//! Every method here works on both forms; code that matches on the decoded variants gets
//! decoded batches only (the pipeline materializes raw data before it).

pub mod attrs;
mod encode;
pub mod raw;
mod split;
pub mod view;
pub mod view_check;
pub mod view_logs;
pub mod wire;

pub use attrs::*;
pub use raw::RawBatch;
pub use split::{ResourceItems, metric_points};
use split::{prune, split_front_items};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

pub use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
pub use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
pub use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
pub use opentelemetry_proto::tonic::resource::v1::Resource;
pub use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

/// The three OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The name of one item of this signal, as used in metric names and log lines.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Logs => "log_records",
            Signal::Metrics => "metric_points",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "traces" => Some(Signal::Traces),
            "logs" => Some(Signal::Logs),
            "metrics" => Some(Signal::Metrics),
            _ => None,
        }
    }

    pub fn tag(self) -> u8 {
        match self {
            Signal::Traces => 1,
            Signal::Logs => 2,
            Signal::Metrics => 3,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Signal> {
        match tag {
            1 => Some(Signal::Traces),
            2 => Some(Signal::Logs),
            3 => Some(Signal::Metrics),
            _ => None,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Telemetry of one signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Traces(Vec<ResourceSpans>),
    Logs(Vec<ResourceLogs>),
    Metrics(Vec<ResourceMetrics>),
    /// Serialized export requests, not decoded (the forwarding fast path).
    Raw(RawBatch),
}

/// Why bytes could not be turned into a batch.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid protobuf: {0}")]
    Wire(#[from] wire::WireError),
    #[error("{0}")]
    Invalid(String),
}

impl Batch {
    pub fn empty(signal: Signal) -> Batch {
        match signal {
            Signal::Traces => Batch::Traces(Vec::new()),
            Signal::Logs => Batch::Logs(Vec::new()),
            Signal::Metrics => Batch::Metrics(Vec::new()),
        }
    }

    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Logs(_) => Signal::Logs,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Raw(r) => r.signal(),
        }
    }

    /// Spans, log records or metric data points.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(v) => v.iter().map(ResourceItems::item_count).sum(),
            Batch::Logs(v) => v.iter().map(ResourceItems::item_count).sum(),
            Batch::Metrics(v) => v.iter().map(ResourceItems::item_count).sum(),
            Batch::Raw(r) => r.item_count(),
        }
    }

    /// Resource messages (`ResourceSpans`, `ResourceLogs`, `ResourceMetrics`).
    pub fn resource_count(&self) -> usize {
        match self {
            Batch::Traces(v) => v.len(),
            Batch::Logs(v) => v.len(),
            Batch::Metrics(v) => v.len(),
            Batch::Raw(r) => r.resource_count(),
        }
    }

    /// A protobuf export request kept as bytes (the fast path): scanned, not decoded.
    pub fn from_proto_bytes(signal: Signal, bytes: bytes::Bytes) -> Result<Batch, DecodeError> {
        Ok(Batch::Raw(RawBatch::new(signal, bytes)?))
    }

    pub fn is_raw(&self) -> bool {
        matches!(self, Batch::Raw(_))
    }

    /// The decoded form: decodes a raw batch, returns a decoded one as is.
    pub fn materialize(self) -> Result<Batch, DecodeError> {
        match self {
            Batch::Raw(r) => r.decode(),
            b => Ok(b),
        }
    }

    /// The raw form: encodes a decoded batch once, returns a raw one as is.
    pub fn into_raw(self) -> RawBatch {
        match self {
            Batch::Raw(r) => r,
            b => {
                let mut r = RawBatch::empty(b.signal());
                r.append_encoded(b.encode_proto(), b.item_count(), b.resource_count());
                r
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    /// Appends `other` (of the same signal) to this batch. Batches of another signal are
    /// a programming error and are ignored. If either side is raw the result is raw (the
    /// decoded side is encoded: merging never decodes, so it cannot fail).
    pub fn merge(&mut self, other: Batch) {
        if self.signal() == other.signal() && (self.is_raw() || other.is_raw()) {
            let me = std::mem::replace(self, Batch::empty(other.signal()));
            let mut r = me.into_raw();
            r.append(other.into_raw());
            *self = Batch::Raw(r);
            return;
        }
        match (self, other) {
            (Batch::Traces(a), Batch::Traces(b)) => a.extend(b),
            (Batch::Logs(a), Batch::Logs(b)) => a.extend(b),
            (Batch::Metrics(a), Batch::Metrics(b)) => a.extend(b),
            (me, other) => {
                tracing::error!(
                    "internal error: merging {} into {} batch",
                    other.signal(),
                    me.signal()
                );
            }
        }
    }

    /// Removes and returns the first `n` items (keeping resource and scope structure);
    /// `self` keeps the rest. A raw batch is cut at resource boundaries (the front may hold
    /// fewer than `n` items); only a first resource with more than `n` items is decoded.
    pub fn split_front(&mut self, n: usize) -> Batch {
        match self {
            Batch::Traces(v) => Batch::Traces(split_front_items(v, n)),
            Batch::Logs(v) => Batch::Logs(split_front_items(v, n)),
            Batch::Metrics(v) => Batch::Metrics(split_front_items(v, n)),
            Batch::Raw(r) => split_front_raw(r, n),
        }
    }

    /// Drops resource and scope entries that hold no items (raw batches are left as they
    /// are: they are forwarded as received).
    pub fn prune_empty(&mut self) {
        match self {
            Batch::Traces(v) => prune(v),
            Batch::Logs(v) => prune(v),
            Batch::Metrics(v) => prune(v),
            Batch::Raw(_) => {}
        }
    }

    /// The protobuf encoding of the matching `Export*ServiceRequest`. Each request is one
    /// repeated field 1, so the resource messages are written directly, without building
    /// (and cloning into) a request message first.
    pub fn encode_proto(&self) -> Vec<u8> {
        fn write<M: Message>(items: &[M], len: usize) -> Vec<u8> {
            let mut buf = Vec::with_capacity(len);
            for m in items {
                prost::encoding::message::encode(1, m, &mut buf);
            }
            buf
        }
        match self {
            Batch::Traces(v) => encode::traces(v),
            Batch::Logs(v) => encode::logs(v),
            Batch::Metrics(v) => write(v, self.encoded_len()),
            Batch::Raw(r) => r.to_vec(),
        }
    }

    /// The encoded length of `encode_proto()` without encoding.
    pub fn encoded_len(&self) -> usize {
        fn field_len<M: Message>(items: &[M]) -> usize {
            items
                .iter()
                .map(|m| {
                    let l = m.encoded_len();
                    1 + prost::encoding::encoded_len_varint(l as u64) + l
                })
                .sum()
        }
        match self {
            Batch::Traces(v) => field_len(v),
            Batch::Logs(v) => field_len(v),
            Batch::Metrics(v) => field_len(v),
            Batch::Raw(r) => r.byte_len(),
        }
    }

    pub fn decode_proto(signal: Signal, bytes: &[u8]) -> Result<Batch, DecodeError> {
        let batch = match signal {
            Signal::Traces => {
                Batch::Traces(ExportTraceServiceRequest::decode(bytes)?.resource_spans)
            }
            Signal::Logs => Batch::Logs(ExportLogsServiceRequest::decode(bytes)?.resource_logs),
            Signal::Metrics => {
                Batch::Metrics(ExportMetricsServiceRequest::decode(bytes)?.resource_metrics)
            }
        };
        Ok(batch)
    }

    /// OTLP/JSON (hex ids, enums as integers, lowerCamelCase keys).
    pub fn encode_json(&self) -> Vec<u8> {
        // Borrowing views of the export requests: the generated request types own their
        // vectors, and building one would deep-copy the batch just to serialise it.
        #[derive(serde::Serialize)]
        struct Req<'a, T> {
            #[serde(rename = "resourceSpans", skip_serializing_if = "Option::is_none")]
            spans: Option<&'a [T]>,
            #[serde(rename = "resourceLogs", skip_serializing_if = "Option::is_none")]
            logs: Option<&'a [T]>,
            #[serde(rename = "resourceMetrics", skip_serializing_if = "Option::is_none")]
            metrics: Option<&'a [T]>,
        }
        fn view<T: serde::Serialize>(signal: Signal, items: &[T]) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(&Req {
                spans: (signal == Signal::Traces).then_some(items),
                logs: (signal == Signal::Logs).then_some(items),
                metrics: (signal == Signal::Metrics).then_some(items),
            })
        }
        let r = match self {
            Batch::Traces(v) => view(Signal::Traces, v),
            Batch::Logs(v) => view(Signal::Logs, v),
            Batch::Metrics(v) => view(Signal::Metrics, v),
            Batch::Raw(r) => match r.decode() {
                Ok(b) => return b.encode_json(),
                Err(e) => {
                    tracing::error!("cannot decode forwarded {} data for JSON: {e}", r.signal());
                    return b"{}".to_vec();
                }
            },
        };
        // Serialising these generated types to a Vec cannot fail (no maps with non-string
        // keys, no I/O); an empty object keeps the output valid JSON if it ever did.
        r.unwrap_or_else(|_| b"{}".to_vec())
    }

    pub fn decode_json(signal: Signal, bytes: &[u8]) -> Result<Batch, DecodeError> {
        let batch = match signal {
            Signal::Traces => Batch::Traces(
                serde_json::from_slice::<ExportTraceServiceRequest>(bytes)?.resource_spans,
            ),
            Signal::Logs => Batch::Logs(
                serde_json::from_slice::<ExportLogsServiceRequest>(bytes)?.resource_logs,
            ),
            Signal::Metrics => Batch::Metrics(
                serde_json::from_slice::<ExportMetricsServiceRequest>(bytes)?.resource_metrics,
            ),
        };
        Ok(batch)
    }

    /// Checks what the OTLP spec requires of ids: trace ids are 16 bytes, span ids 8 bytes
    /// (empty parent / log ids allowed). Returns a message naming the first offender.
    pub fn validate_ids(&self) -> Result<(), String> {
        match self {
            Batch::Traces(v) => {
                for rs in v {
                    for ss in &rs.scope_spans {
                        for s in &ss.spans {
                            check_id("trace_id", &s.trace_id, 16, false)?;
                            check_id("span_id", &s.span_id, 8, false)?;
                            check_id("parent_span_id", &s.parent_span_id, 8, true)?;
                            for l in &s.links {
                                check_id("links.trace_id", &l.trace_id, 16, false)?;
                                check_id("links.span_id", &l.span_id, 8, false)?;
                            }
                        }
                    }
                }
            }
            Batch::Logs(v) => {
                for rl in v {
                    for sl in &rl.scope_logs {
                        for r in &sl.log_records {
                            check_id("trace_id", &r.trace_id, 16, true)?;
                            check_id("span_id", &r.span_id, 8, true)?;
                        }
                    }
                }
            }
            // Raw batches had their ids checked by the wire scan.
            Batch::Metrics(_) | Batch::Raw(_) => {}
        }
        Ok(())
    }
}

/// [`Batch::split_front`] of a raw batch.
fn split_front_raw(r: &mut RawBatch, n: usize) -> Batch {
    let signal = r.signal();
    if n == 0 {
        return Batch::empty(signal);
    }
    if let Some(front) = r.split_front(n) {
        return Batch::Raw(front);
    }
    // The first resource alone holds more than `n` items: decode that one and split it.
    let Some(first) = r.pop_first_resource() else {
        return Batch::empty(signal);
    };
    match Batch::decode_proto(signal, &first) {
        Ok(mut rest) => {
            let front = rest.split_front(n);
            if rest.item_count() > 0 {
                r.prepend_encoded(
                    rest.encode_proto(),
                    rest.item_count(),
                    rest.resource_count(),
                );
            }
            front
        }
        Err(e) => {
            // Scanned but undecodable: it cannot be split, so it goes whole.
            tracing::warn!("cannot split a forwarded {signal} resource: {e}");
            RawBatch::new(signal, first)
                .map(Batch::Raw)
                .unwrap_or_else(|_| Batch::empty(signal))
        }
    }
}

fn check_id(field: &str, id: &[u8], len: usize, may_be_empty: bool) -> Result<(), String> {
    if id.len() == len || (may_be_empty && id.is_empty()) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be {len} bytes ({} hex characters), got {} bytes",
            len * 2,
            id.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(n: usize) -> Batch {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: vec![i as u8 + 1; 8],
                name: format!("s{i}"),
                ..Default::default()
            })
            .collect();
        Batch::Traces(vec![ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }])
    }

    #[test]
    fn split_and_merge_keep_every_item() {
        let mut b = spans(10);
        let front = b.split_front(3);
        assert_eq!(front.item_count(), 3);
        assert_eq!(b.item_count(), 7);
        let mut merged = front;
        merged.merge(b);
        assert_eq!(merged.item_count(), 10);
    }

    #[test]
    fn proto_and_json_round_trip() {
        let b = spans(4);
        assert_eq!(
            Batch::decode_proto(Signal::Traces, &b.encode_proto()).unwrap(),
            b
        );
        assert_eq!(
            Batch::decode_json(Signal::Traces, &b.encode_json()).unwrap(),
            b
        );
        assert_eq!(b.encoded_len(), b.encode_proto().len());
    }

    #[test]
    fn ids_of_wrong_length_are_reported() {
        let mut b = spans(1);
        if let Batch::Traces(v) = &mut b {
            v[0].scope_spans[0].spans[0].trace_id = vec![1; 5];
        }
        assert!(b.validate_ids().unwrap_err().contains("trace_id"));
    }
}
