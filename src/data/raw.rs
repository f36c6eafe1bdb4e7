//! The forwarding fast path's batch: OTLP export requests kept as the bytes they arrived
//! in, with counts from a shallow wire scan ([`super::wire`]), instead of decoded messages.
//!
//! Why: decoding a span allocates a dozen strings and vectors and costs ~3× its encoding;
//! a collector that only forwards (receiver → `batch` → `memory_limiter` → queue → otlp
//! exporter) does not need any of it. OTLP export requests are one repeated field, so
//! serialized requests concatenate into a valid merged request: merging is appending byte
//! ranges ([`bytes::Bytes`] as the receiver got them), splitting is cutting at
//! resource-message boundaries, and the exporter writes the ranges out as the request body.
//!
//! Where contents are needed, the batch is *materialized* (decoded once) into the ordinary
//! `Batch::Traces/Logs/Metrics` form. Who decides, and where:
//! - The pipeline builder marks a pipeline raw-capable when each of its processors either
//!   does not [`touch_contents`](crate::processors::Processor::touches_contents) or
//!   [`accepts_raw`](crate::processors::Processor::accepts_raw) batches itself, and every
//!   exporter [`accepts_raw`](crate::exporters::Exporter::accepts_raw) (otlp; otlphttp with
//!   protobuf; kafka with protobuf and no `partition_*`; loki and elasticsearch, which read
//!   log records from the bytes through [`super::view`]) or lets its queue hold raw
//!   batches ([`queues_raw`](crate::exporters::Exporter::queues_raw): awss3, decoded by the
//!   delivery layer just before `send`). A receiver hands raw data only when *every*
//!   pipeline of the signal is raw-capable; otherwise it decodes once, up front, so a
//!   content pipeline behaves exactly as before (full validation, INVALID_ARGUMENT/400 for
//!   any decode error). Deciding per
//!   pipeline at build time, rather than decoding lazily wherever contents are first read,
//!   keeps every other processor and exporter untouched and correct: none of them ever
//!   sees a raw batch.
//! - A content processor that opts in with `accepts_raw` reads and edits the serialized
//!   requests itself and returns new raw batches ([`RawBatch::parts`] in,
//!   [`RawBatch::push_counted`] out). So far that is `attributes` for traces and logs
//!   (`crate::processors::attributes::wire`): it rewrites span / log record attributes in
//!   the bytes, so a pipeline with it still never decodes a span.
//! - As a safety net the pipeline task materializes a raw batch before any processor that
//!   touches contents without accepting raw batches and before handing it to an exporter
//!   that does not accept raw data, and every `Batch` method works on raw batches (decoding
//!   on demand where it must).
//!
//! What the fast path does not validate (documented in the README too): anything below the
//! levels the scan walks — UTF-8 of strings, the contents of resources, scopes, attributes,
//! events, status, log bodies and data points. Such data is forwarded as received.
//! Splitting happens at resource boundaries; a single resource message with more items than
//! the requested split is decoded (that resource only) and split item by item.

use bytes::Bytes;

use super::wire::{self, WireError};
use super::{Batch, DecodeError, Signal};

/// Serialized export requests of one signal (see the module docs).
#[derive(Clone, Debug)]
pub struct RawBatch {
    signal: Signal,
    parts: Vec<Part>,
    items: usize,
    resources: usize,
    len: usize,
}

/// One well-formed request body (a run of whole resource messages).
#[derive(Clone, Debug)]
struct Part {
    bytes: Bytes,
    items: usize,
    resources: usize,
}

impl PartialEq for RawBatch {
    /// Byte equality of the concatenated requests.
    fn eq(&self, other: &RawBatch) -> bool {
        self.signal == other.signal && self.len == other.len && self.to_vec() == other.to_vec()
    }
}

impl RawBatch {
    /// Scans `bytes` (an `Export*ServiceRequest` body) and keeps it as is.
    pub fn new(signal: Signal, bytes: Bytes) -> Result<RawBatch, WireError> {
        let c = wire::scan(signal, &bytes)?;
        let mut b = RawBatch::empty(signal);
        b.push(Part {
            bytes,
            items: c.items,
            resources: c.resources,
        });
        Ok(b)
    }

    pub fn empty(signal: Signal) -> RawBatch {
        RawBatch {
            signal,
            parts: Vec::new(),
            items: 0,
            resources: 0,
            len: 0,
        }
    }

    fn push(&mut self, p: Part) {
        if p.bytes.is_empty() {
            return;
        }
        self.items += p.items;
        self.resources += p.resources;
        self.len += p.bytes.len();
        self.parts.push(p);
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Spans, log records or metric data points.
    pub fn item_count(&self) -> usize {
        self.items
    }

    /// Resource messages.
    pub fn resource_count(&self) -> usize {
        self.resources
    }

    /// Bytes of the serialized request.
    pub fn byte_len(&self) -> usize {
        self.len
    }

    /// Appends `other`'s requests (no copy).
    pub fn append(&mut self, other: RawBatch) {
        for p in other.parts {
            self.push(p);
        }
    }

    /// Appends an already-encoded batch of the same signal (the caller encoded it).
    pub(super) fn append_encoded(&mut self, bytes: Vec<u8>, items: usize, resources: usize) {
        self.push(Part {
            bytes: Bytes::from(bytes),
            items,
            resources,
        });
    }

    /// The requests it holds, one by one, each with its item and resource counts (for a
    /// processor that rewrites them, see [`RawBatch::push_counted`]).
    pub fn parts(&self) -> impl Iterator<Item = (&Bytes, usize, usize)> {
        self.parts.iter().map(|p| (&p.bytes, p.items, p.resources))
    }

    /// Appends one serialized request without scanning it: the caller vouches that `bytes`
    /// is a well-formed export request of this signal holding `items` items in `resources`
    /// resource messages — e.g. a rewrite of one of [`RawBatch::parts`] that kept every
    /// item and only changed contents below the levels the scan checks.
    pub fn push_counted(&mut self, bytes: Bytes, items: usize, resources: usize) {
        self.push(Part {
            bytes,
            items,
            resources,
        });
    }

    /// The serialized request, as one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for p in &self.parts {
            v.extend_from_slice(&p.bytes);
        }
        v
    }

    /// The serialized request in pieces (for writers that take them one by one).
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter().map(|p| &p.bytes)
    }

    /// Decodes every request into the ordinary form.
    pub fn decode(&self) -> Result<Batch, DecodeError> {
        let mut out = Batch::empty(self.signal);
        for p in &self.parts {
            out.merge(Batch::decode_proto(self.signal, &p.bytes)?);
        }
        Ok(out)
    }

    /// Decodes what decodes: each request part whole, and a part that fails resource
    /// message by resource message, leaving out only the resource messages that do not
    /// decode (what the fast path forwards unchecked, e.g. a string that is not UTF-8).
    /// Returns the decoded batch and, if any were left out, how many items they held and
    /// the first error.
    pub fn decode_lenient(&self) -> (Batch, Option<(usize, DecodeError)>) {
        let mut out = Batch::empty(self.signal);
        let mut lost: Option<(usize, DecodeError)> = None;
        let mut drop = |items: usize, e: DecodeError| match &mut lost {
            Some((n, _)) => *n += items,
            None => lost = Some((items, e)),
        };
        for p in &self.parts {
            let e = match Batch::decode_proto(self.signal, &p.bytes) {
                Ok(b) => {
                    out.merge(b);
                    continue;
                }
                Err(e) => e,
            };
            // A part is a run of whole resource messages that the scan accepted (see
            // `Part`), so each one can be cut out and decoded on its own.
            let mut start = 0;
            let mut counted = 0;
            for r in super::wire::resources(self.signal, &p.bytes) {
                let Ok(r) = r else { break };
                match Batch::decode_proto(self.signal, &p.bytes[start..r.end]) {
                    Ok(b) => out.merge(b),
                    Err(e) => drop(r.items, e),
                }
                counted += r.items;
                start = r.end;
            }
            if counted < p.items {
                drop(p.items - counted, e);
            }
        }
        (out, lost)
    }

    /// Removes whole resource messages from the front while they hold at most `n` items in
    /// total. Returns the front, or `Err(self)` unchanged when the first resource alone
    /// holds more than `n` items (the caller decodes it to split it further).
    pub fn split_front(&mut self, n: usize) -> Option<RawBatch> {
        if n >= self.items {
            return Some(std::mem::replace(self, RawBatch::empty(self.signal)));
        }
        let mut front = RawBatch::empty(self.signal);
        let mut parts = std::mem::take(&mut self.parts).into_iter();
        let mut rest = RawBatch::empty(self.signal);
        for p in parts.by_ref() {
            let room = n - front.items;
            if p.items <= room {
                front.push(p);
                continue;
            }
            if room == 0 {
                rest.push(p);
                break;
            }
            // Cut inside this part at the last resource boundary that fits. The part was
            // scanned when it was made, so the walk cannot fail; if it somehow did, the
            // whole part stays in `rest`.
            let (mut cut, mut taken, mut taken_res) = (0, 0, 0);
            for r in wire::resources(self.signal, &p.bytes) {
                let Ok(r) = r else {
                    (cut, taken, taken_res) = (0, 0, 0);
                    break;
                };
                if taken + r.items > room {
                    break;
                }
                (cut, taken, taken_res) = (r.end, taken + r.items, taken_res + 1);
            }
            if cut > 0 {
                front.push(Part {
                    bytes: p.bytes.slice(..cut),
                    items: taken,
                    resources: taken_res,
                });
                rest.push(Part {
                    bytes: p.bytes.slice(cut..),
                    items: p.items - taken,
                    resources: p.resources - taken_res,
                });
            } else {
                rest.push(p);
            }
            break;
        }
        for p in parts {
            rest.push(p);
        }
        *self = rest;
        if front.items == 0 && front.resources == 0 {
            None
        } else {
            Some(front)
        }
    }

    /// Removes the first resource message (whole) and returns its bytes.
    pub(super) fn pop_first_resource(&mut self) -> Option<Bytes> {
        let first = self.parts.first()?;
        let r = wire::resources(self.signal, &first.bytes).next()?.ok()?;
        let bytes = first.bytes.slice(..r.end);
        let rest = Part {
            bytes: first.bytes.slice(r.end..),
            items: first.items - r.items,
            resources: first.resources.saturating_sub(1),
        };
        self.items -= r.items;
        self.resources = self.resources.saturating_sub(1);
        self.len -= r.end;
        if rest.bytes.is_empty() {
            self.parts.remove(0);
        } else {
            self.parts[0] = rest;
        }
        Some(bytes)
    }

    /// Puts encoded resource messages back in front.
    pub(super) fn prepend_encoded(&mut self, bytes: Vec<u8>, items: usize, resources: usize) {
        let rest = std::mem::replace(self, RawBatch::empty(self.signal));
        self.append_encoded(bytes, items, resources);
        self.append(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::wire::tests::{not_utf8, traces};

    fn raw(b: &Batch) -> Batch {
        Batch::from_proto_bytes(b.signal(), Bytes::from(b.encode_proto())).unwrap()
    }

    #[test]
    fn merging_raw_batches_concatenates_their_requests() {
        let (a, b) = (traces(2, 3), traces(1, 4));
        let mut m = raw(&a);
        m.merge(raw(&b));
        assert!(m.is_raw());
        assert_eq!(m.item_count(), a.item_count() + b.item_count());
        assert_eq!(m.resource_count(), 3);
        let mut expected = a.encode_proto();
        expected.extend(b.encode_proto());
        assert_eq!(m.encode_proto(), expected);
        assert_eq!(m.encoded_len(), expected.len());
        let mut decoded = a.clone();
        decoded.merge(b.clone());
        assert_eq!(m.clone().materialize().unwrap(), decoded);
        // A decoded batch merged into a raw one is encoded, not the other way round.
        m.merge(a.clone());
        assert!(m.is_raw());
        assert_eq!(m.item_count(), decoded.item_count() + a.item_count());
        let mut d = a.clone();
        d.merge(raw(&b));
        assert!(d.is_raw());
        assert_eq!(d.materialize().unwrap(), decoded);
    }

    #[test]
    fn raw_batches_split_at_resource_boundaries_without_decoding() {
        // Three resources of 10 spans, arriving as two requests.
        let (a, b) = (traces(2, 5), traces(1, 5));
        let mut m = raw(&a);
        m.merge(raw(&b));
        let front = m.split_front(25);
        assert!(front.is_raw() && m.is_raw());
        assert_eq!((front.item_count(), m.item_count()), (20, 10));
        assert_eq!(front.encode_proto(), a.encode_proto());
        assert_eq!(m.encode_proto(), b.encode_proto());
        // A cut inside one request.
        let mut m = raw(&a);
        let front = m.split_front(10);
        assert!(front.is_raw());
        assert_eq!((front.item_count(), m.item_count()), (10, 10));
        let mut joined = front.materialize().unwrap();
        joined.merge(m.materialize().unwrap());
        assert_eq!(joined, a);
        // Everything, and nothing.
        let mut m = raw(&a);
        assert_eq!(m.split_front(0).item_count(), 0);
        assert_eq!(m.split_front(1000).item_count(), 20);
        assert!(m.is_empty());
    }

    #[test]
    fn a_resource_larger_than_the_split_is_decoded_and_split_by_items() {
        let a = traces(2, 5);
        let mut m = raw(&a);
        let front = m.split_front(4);
        assert!(!front.is_raw(), "the oversized resource was decoded");
        assert_eq!(front.item_count(), 4);
        assert!(m.is_raw(), "the rest stays raw");
        assert_eq!(m.item_count(), 16);
        let mut joined = front;
        joined.merge(m.materialize().unwrap());
        assert_eq!(joined.item_count(), 20);
        let mut expected = a.clone();
        let mut got = joined;
        expected.split_front(4);
        got.split_front(4);
        assert_eq!(got, expected);
    }

    /// One bad string among several requests: only its resource message is left out.
    #[test]
    fn lenient_decode_leaves_out_only_the_resources_that_do_not_decode() {
        let good = traces(3, 2);
        let mut bad = traces(2, 2);
        if let Batch::Traces(v) = &mut bad {
            v[1].scope_spans[0].spans[0].name = "zzzz".into();
        }
        let bad_bytes = not_utf8(&bad, b"zzzz");
        let mut r = RawBatch::new(Signal::Traces, Bytes::from(good.encode_proto())).unwrap();
        r.append(RawBatch::new(Signal::Traces, Bytes::from(bad_bytes)).unwrap());
        r.append(RawBatch::new(Signal::Traces, Bytes::from(good.encode_proto())).unwrap());
        assert!(r.decode().is_err());
        let (b, lost) = r.decode_lenient();
        let (n, _) = lost.expect("one resource left out");
        assert_eq!(n, 4, "the bad resource's four spans (two scopes of two)");
        assert_eq!(b.item_count(), 12 + 4 + 12);
        let mut want = good.clone();
        if let (Batch::Traces(w), Batch::Traces(bad)) = (&mut want, &bad) {
            w.push(bad[0].clone());
            w.extend(match &good {
                Batch::Traces(g) => g.clone(),
                _ => unreachable!(),
            });
        }
        assert_eq!(b, want);
        let (all, none) = RawBatch::new(Signal::Traces, Bytes::from(good.encode_proto()))
            .unwrap()
            .decode_lenient();
        assert!(none.is_none());
        assert_eq!(all, good);
    }

    #[test]
    fn the_fast_path_does_not_check_utf8() {
        let mut b = traces(1, 1);
        if let Batch::Traces(v) = &mut b {
            v[0].scope_spans[0].spans[0].name = "zzzz".into();
        }
        let bytes = not_utf8(&b, b"zzzz");
        let r = Batch::from_proto_bytes(Signal::Traces, Bytes::from(bytes)).unwrap();
        assert_eq!(r.item_count(), 2);
        assert!(r.materialize().is_err(), "a full decode reports it");
    }
}
