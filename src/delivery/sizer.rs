//! `sending_queue.sizer`: the unit `queue_size` is counted in, as in the Collector's
//! exporterhelper — `requests` (batches; the default, and weft's only unit before),
//! `items` (spans, log records, metric data points) or `bytes` (the batch's serialized
//! protobuf size: known without work for raw batches, computed for decoded ones).
//!
//! The in-memory queue admits a batch when its size fits in what is left of `queue_size`
//! (otherwise it refuses, or waits with `block_on_overflow`); the size is given back when a
//! consumer takes the batch. A batch larger than the whole queue is admitted alone when the
//! queue is empty (weft never drops it for being large; the Collector refuses it). A
//! persistent queue's disk use is bounded separately by `file_storage.max_size_mib`.
//! Capacities above 2³²−1 units are clamped to it (4 GiB in bytes).

use crate::data::Batch;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    #[default]
    Requests,
    Items,
    Bytes,
}

impl Sizer {
    /// The unit's name, for metric help and log lines.
    pub fn unit(self) -> &'static str {
        match self {
            Sizer::Requests => "batches",
            Sizer::Items => "items",
            Sizer::Bytes => "bytes",
        }
    }

    /// What `batch` counts against the queue's capacity (at least 1).
    pub fn size_of(self, batch: &Batch) -> usize {
        match self {
            Sizer::Requests => 1,
            Sizer::Items => batch.item_count(),
            Sizer::Bytes => batch.encoded_len(),
        }
        .max(1)
    }

    /// Permits for a batch of `size` in a queue of `capacity` units.
    pub fn permits(size: usize, capacity: usize) -> u32 {
        size.min(capacity).min(u32::MAX as usize) as u32
    }

    /// The capacity in permits.
    pub fn capacity(queue_size: usize) -> usize {
        queue_size.clamp(1, u32::MAX as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Signal;

    #[test]
    fn sizes_in_each_unit() {
        let b = crate::data::wire::tests::traces(2, 5);
        let raw = Batch::from_proto_bytes(Signal::Traces, b.encode_proto().into()).unwrap();
        assert_eq!(Sizer::Requests.size_of(&b), 1);
        assert_eq!(Sizer::Items.size_of(&b), 20);
        assert_eq!(Sizer::Items.size_of(&raw), 20);
        assert_eq!(Sizer::Bytes.size_of(&b), b.encode_proto().len());
        assert_eq!(Sizer::Bytes.size_of(&raw), b.encode_proto().len());
        assert_eq!(Sizer::Items.size_of(&Batch::empty(Signal::Logs)), 1);
    }

    #[test]
    fn parsing_and_clamping() {
        let parse = |v| serde_json::from_value::<Sizer>(serde_json::json!(v));
        assert_eq!(parse("bytes").unwrap(), Sizer::Bytes);
        assert_eq!(parse("items").unwrap(), Sizer::Items);
        assert!(parse("spans").unwrap_err().to_string().contains("requests"));
        assert_eq!(
            Sizer::permits(500, 100),
            100,
            "an oversized batch takes the whole queue"
        );
        assert_eq!(Sizer::capacity(0), 1);
        assert_eq!(Sizer::capacity(usize::MAX), u32::MAX as usize);
    }
}
