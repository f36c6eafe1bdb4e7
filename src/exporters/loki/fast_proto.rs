//! The protobuf entry of the direct encoder ([`super`]) written straight into the arena:
//! no scratch copy of the line and metadata, no separate pass computing sizes.
//!
//! Each length-delimited field is opened with a guessed length width (one byte for a
//! metadata pair, its name, value and the line; two for the whole entry), its content
//! written, and its length filled in when it is closed; a guess that was wrong (rare: a
//! value of 128 bytes or more, an entry under 128 or from 16 KiB) moves the content to
//! fit the real width, so the bytes are exactly prost's (minimal varints). The resource's
//! own metadata pairs, the same for all its records, are encoded once per resource
//! ([`ResMd`]) and appended to each record's. A record whose metadata is over Loki's
//! limits is left to the caller ([`entry_proto`] returns `false`), which cuts it with the
//! reference rules. The record's own pairs are listed by [`super::record_pairs`], the
//! same walk that fills the scratch.

use super::{EncodeOptions, PairSink, ResourceCtx, ScopeView, line, record_pairs};
use crate::data::view::{AnyRef, LogView};
use crate::exporters::loki::proto::wire::{timestamp_fields, varint, varint_len};

/// A resource's metadata pairs as encoded `structuredMetadata` fields, with their count
/// and size (names + values, as Loki's limits count them).
#[derive(Default)]
pub(super) struct ResMd {
    bytes: Vec<u8>,
    count: usize,
    size: usize,
}

impl ResMd {
    pub(super) fn new(md: &[(String, String)]) -> ResMd {
        let mut r = ResMd::default();
        let mut n = Count::default();
        for (k, v) in md {
            pair(&mut r.bytes, k.as_bytes(), &mut n, |o| {
                o.extend_from_slice(v.as_bytes())
            });
        }
        r.count = n.pairs;
        r.size = n.size;
        r
    }
}

#[derive(Default)]
struct Count {
    pairs: usize,
    size: usize,
}

/// Opens length-delimited field `field` with `guess` (1 or 2) bytes kept for its length;
/// returns where its content starts.
#[inline(always)]
fn open(out: &mut Vec<u8>, field: u8, guess: usize) -> usize {
    out.push((field << 3) | 2);
    out.extend_from_slice(&[0u8; 2][..guess]);
    out.len()
}

/// Closes the field opened at `start` (content start) with `guess` length bytes.
#[inline(always)]
fn close(out: &mut Vec<u8>, start: usize, guess: usize) {
    let len = out.len() - start;
    if guess == 1 && len < 0x80 {
        out[start - 1] = len as u8;
    } else if guess == 2 && (0x80..0x4000).contains(&len) {
        out[start - 2] = (len as u8) | 0x80;
        out[start - 1] = (len >> 7) as u8;
    } else {
        close_resized(out, start, guess, len);
    }
}

/// [`close`] when the length's varint is not `guess` bytes wide: the content moves.
#[cold]
fn close_resized(out: &mut Vec<u8>, start: usize, guess: usize, len: usize) {
    let mut head = Vec::with_capacity(10);
    varint(&mut head, len as u64);
    debug_assert_eq!(head.len(), varint_len(len as u64));
    out.splice(start - guess..start, head);
}

/// Encoded `structuredMetadata` pairs appended to `out`, counted in `n`.
struct Pairs<'o> {
    out: &'o mut Vec<u8>,
    n: &'o mut Count,
}

impl PairSink for Pairs<'_> {
    #[inline(always)]
    fn pair(&mut self, name: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        pair(self.out, name, self.n, value)
    }
}

/// One `structuredMetadata` pair (`LabelPairAdapter{name, value}`) with the value
/// `value` writes; left out when the value is empty (as the reference drops it).
#[inline(always)]
fn pair(out: &mut Vec<u8>, name: &[u8], n: &mut Count, value: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    let inner = open(out, 3, 1);
    if !name.is_empty() {
        out.push(0x0a);
        varint(out, name.len() as u64);
        out.extend_from_slice(name);
    }
    let v = open(out, 2, 1);
    value(out);
    let vlen = out.len() - v;
    if vlen == 0 {
        out.truncate(at);
        return;
    }
    close(out, v, 1);
    close(out, inner, 1);
    n.pairs += 1;
    n.size += name.len() + vlen;
}

/// Writes the record's whole `StreamAdapter.entries` field (tag, length, `EntryAdapter`)
/// into `arena`, exactly as [`super::proto::wire::entry_field`] would from the scratch
/// buffers. `false` (and `arena` as it was) when its metadata is over the limits.
#[allow(clippy::too_many_arguments)]
pub(super) fn entry_proto(
    arena: &mut Vec<u8>,
    name: &mut Vec<u8>,
    res: &ResourceCtx<'_>,
    sl: &ScopeView<'_>,
    rec: &LogView<'_>,
    ts_ns: u64,
    opts: &EncodeOptions,
) -> bool {
    let at = arena.len();
    let entry = open(arena, 2, 2);
    // google.protobuf.Timestamp: at most 17 bytes, its length one byte.
    let (secs, nanos) = (ts_ns / 1_000_000_000, ts_ns % 1_000_000_000);
    let ts = open(arena, 1, 1);
    timestamp_fields(arena, secs, nanos);
    close(arena, ts, 1);
    // The line (left out when empty); its length guessed from a string body.
    let guess = match rec.body {
        Some(AnyRef::Str(s)) if s.len() >= 100 => 2,
        _ => 1,
    };
    let l = open(arena, 2, guess);
    line(arena, res, sl, rec, opts);
    if arena.len() == l {
        arena.truncate(l - 1 - guess);
    } else {
        close(arena, l, guess);
    }
    let mut n = Count::default();
    if opts.structured_metadata {
        record_pairs(
            &mut Pairs {
                out: arena,
                n: &mut n,
            },
            name,
            sl.scope,
            rec,
        );
        arena.extend_from_slice(&res.md_wire.bytes);
        n.pairs += res.md_wire.count;
        n.size += res.md_wire.size;
    }
    let limits = &opts.limits;
    let over = (limits.max_structured_metadata_entries > 0
        && n.pairs > limits.max_structured_metadata_entries)
        || (limits.max_structured_metadata_size > 0
            && n.size > limits.max_structured_metadata_size);
    if over {
        arena.truncate(at);
        return false;
    }
    close(arena, entry, 2);
    true
}
