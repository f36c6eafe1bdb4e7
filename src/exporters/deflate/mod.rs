//! A fast gzip (RFC 1952) / DEFLATE (RFC 1951) encoder for the bodies exporters send.
//!
//! Why our own: an exporter compresses every byte it sends, and on the Elasticsearch path
//! deflate was more than half of weft's CPU time. zlib-rs, miniz_oxide and libdeflate at
//! their fastest levels all ran at ~200–240 MB/s on the benchmark's `_bulk` bodies on the
//! reference machine (README, Performance). This encoder makes the trade-offs of a
//! "fastest level" for that kind of input — JSON/NDJSON/protobuf, where most redundancy is
//! short repeats of keys and structure a document or two back. On a captured `_bulk` body
//! it runs at 1.7–2.0× zlib-rs level 1 in the same process (~430–550 MB/s on that
//! machine), and compresses to 33.4% where zlib-rs level 1 gives 41.2%:
//! - **One 32 KiB hash table** of 4,096 entries that stays in L1: a larger one found
//!   slightly longer matches but made every lookup a cache miss (half the speed at 2^15
//!   entries). An entry holds the 4 bytes it was made from, so a stale candidate costs
//!   no read of the input.
//! - **Greedy LZ77 with one candidate per hash** (no chains, no lazy matching): a 4-byte
//!   hash indexes the most recent position with that prefix; a candidate within the 32 KiB
//!   window that really starts with those 4 bytes is extended 8 bytes at a time, up to 258.
//!   After a match only its last position is hashed; in a long literal run, positions
//!   are skipped progressively (as snappy and LZ4 do), and a match found after a skip is
//!   extended backwards over the literals it jumped (as LZ4 does). Skipping from the 8th
//!   literal on instead of the 16th made the encoder ~10% faster on `_bulk` bodies; with
//!   the backward extension their output grew from 33.4% to 33.9% of the input.
//! - **Dynamic Huffman codes per block** (two passes over a block's tokens: count, then
//!   write), so literals cost their entropy, not the fixed code's 8–9 bits. Each block is
//!   written as whichever of fixed-Huffman, dynamic-Huffman or stored is smallest, so
//!   incompressible input grows by a few bytes per 64 KiB, never more. Literal/length
//!   codes are limited to 11 bits, so five literals go into the bit buffer per store.
//! - A 64-bit bit buffer written with unconditional 8-byte stores into room reserved per
//!   block (a block's size is known before it is written): no branch per symbol. While a
//!   block's tokens are written the buffer's state lives in a local copy (`Bits::hot`),
//!   so it stays in registers, and each match length is one table entry with its extra
//!   bits already in place.
//! - The match search is a loop of its own (few live values, no spills), and a match is
//!   extended over two slices of the input (no bounds check per 8 bytes). These three
//!   changes (eleventh session) took gzip of 1,000 criterion `_bulk` documents from 674 to
//!   540 µs and a captured loadgen `_bulk` body (random attribute values: mostly literals)
//!   from ~1,230 to ~1,115 ns per document, on an Intel Xeon (family 6 model 207, Emerald
//!   Rapids class, 2.3 GHz).
//!
//! - **The JSON resync** ([`Shape::Json`]; thirteenth session), used for the
//!   Elasticsearch `_bulk` body and OTLP JSON (otlphttp, the S3 archive). In NDJSON a
//!   document repeats the previous one's keys and punctuation around new values, so
//!   after a match the input differs where a value starts. Instead of hashing its way
//!   through the value (a dozen lookups for 24 random bytes, and a mispredicted exit at
//!   the match), the parser tries the table's candidate at the value's start once
//!   (values seen before, in any document), then goes to the next `"` or space here and
//!   at the last match's distance: where the 4 bytes after both agree, the shared
//!   structure resumes there, at the new distance (a value of another length shifts
//!   it). Spans of more than 40 bytes without a delimiter, and anything the resync does
//!   not find, go to the hash search as before. Every match is verified byte by byte, so
//!   input that misleads it (escaped quotes, keys that come and go, not JSON at all)
//!   costs ratio or speed, never correctness. Measured in a scratch build of this module
//!   (best of 30, one core; generic → JSON):
//!
//!   | body | ns per document | output |
//!   |---|---|---|
//!   | captured loadgen `_bulk` body (random attribute values) | 1,305 → 850 | 34.0% → 31.1% |
//!   | e-commerce-like logs (templated messages, routes, 80% with trace ids) | 1,236 → 903 | 15.4% → 15.0% |
//!   | short logfmt lines with escaped quotes | 313 → 199 | 6.8% → 7.8% |
//!   | OTLP JSON, 3,000 spans with 4 attributes | 1.78 → 1.00 ns per byte | 17.0% → 15.8% |
//!   | Loki push JSON (free-text lines; Loki keeps the generic parser) | 2.53 → 2.03 ns per byte | 17.7% → 19.8% |
//!
//!   End to end, Elasticsearch with gzip: 3.20 → 2.74 CPU s per million records (mean of
//!   four alternated pinned pairs; README, Performance, *Thirteenth session*).
//! - **The protobuf resync** ([`Shape::Proto`]; thirteenth session), used for the `otlp`
//!   exporter's gzip (its default), `otlphttp` with `encoding: proto` and the S3
//!   archive's OTLP protobuf. Protobuf has no delimiters, but a batch of spans or records
//!   repeats each one's tags, keys and lengths around new values, and a new value of the
//!   same length (ids, fixed64 timestamps, same-size attribute values) leaves the rest at
//!   the same distance. So after a match the parser tries the table's candidate at the
//!   value's start once, then compares the next 48 bytes with those at the last match's
//!   distance, 8 at a time, and takes the first place where 4 bytes agree (a mask and a
//!   count of trailing zeros, not a lookup per position); else the hash search. A
//!   scratch build (best of 4 alternated, one core; generic → protobuf resync): the
//!   loadgen's requests, 4.5 MB (random attribute values) 2.20 → 1.50 ns per byte, output
//!   57.0% → 54.3%; the same with `--value-cardinality 50` 1.93 → 1.26, 25.9% → 26.4%.
//!   End to end, forwarding with the `otlp` exporter's gzip: 1.82 / 1.98 / 1.97 → 1.36 /
//!   1.34 / 1.56 CPU s per million spans (three alternated pinned pairs). On JSON it is no
//!   better than the JSON resync, and on free text (Loki's lines) it gives larger output
//!   (21.6% against 17.7%) at the same speed, so those keep their own parsers.
//!
//! The output is plain DEFLATE that any inflater reads; the gzip trailer's CRC-32 (of the
//! input, via `crc32fast`) lets the receiver detect any corruption. The tests decode every
//! output with flate2 and compare it byte for byte with the input.

mod bits;
mod huffman;
mod tables;
#[cfg(test)]
mod tests;

use bits::Bits;
use huffman::{DynHeader, canonical, huffman_lengths};
use tables::{DIST_BASE, DIST_EXTRA, FIXED_LIT_LEN, LEN_BASE, LEN_EXTRA, LEN_SYM, dist_code};

/// Tokens per block: large enough that a dynamic block's header (~60–90 bytes) is noise,
/// small enough that the codes follow the data.
const BLOCK_TOKENS: usize = 1 << 15;
const WINDOW: usize = 32 * 1024;
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
const HASH_BITS: u32 = 12;
/// The longest literal/length code written, see [`Block::write`].
const LIT_LIMIT: usize = 11;

/// What a body is, which decides how the parser looks for the next match after one ends
/// (module doc). Every shape gives plain DEFLATE that any inflater reads, for any input:
/// a wrong shape costs speed or ratio, never correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Anything, free text included: the hash search only.
    Any,
    /// JSON or NDJSON: the JSON resync (`"` and space).
    Json,
    /// Protobuf, or other records of a repeated binary layout: the same-distance resync.
    Proto,
}

const ANY: u8 = 0;
const JSON: u8 = 1;
const PROTO: u8 = 2;

/// `input` compressed as one gzip member, appended to `out` ([`Shape::Any`]).
pub fn gzip_into(input: &[u8], out: &mut Vec<u8>) {
    gzip_with::<ANY>(input, out);
}

/// `input` of the given shape compressed as one gzip member, appended to `out`.
pub fn gzip_shaped_into(input: &[u8], out: &mut Vec<u8>, shape: Shape) {
    match shape {
        Shape::Any => gzip_with::<ANY>(input, out),
        Shape::Json => gzip_with::<JSON>(input, out),
        Shape::Proto => gzip_with::<PROTO>(input, out),
    }
}

fn gzip_with<const SHAPE: u8>(input: &[u8], out: &mut Vec<u8>) {
    // Header: magic, CM=8 (deflate), no flags, no mtime, XFL=4 (fastest), OS=255.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
    deflate_with::<SHAPE>(input, out);
    out.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
}

/// `input` compressed as a gzip member.
pub fn gzip(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    gzip_into(input, &mut out);
    out
}

/// Raw DEFLATE of `input`, appended to `out`.
pub fn deflate_into(input: &[u8], out: &mut Vec<u8>) {
    deflate_with::<ANY>(input, out);
}

/// Raw DEFLATE of `input`, parsed for its shape (`ANY`, `JSON`, `PROTO`), appended to
/// `out`.
fn deflate_with<const SHAPE: u8>(input: &[u8], out: &mut Vec<u8>) {
    let mut w = Bits::new(out);
    let mut table: Box<Table> = Box::new([u64::MAX; 1 << HASH_BITS]);
    let mut block = Block::default();
    let mut p = 0;
    loop {
        let start = p;
        p = block.parse::<SHAPE>(input, p, &mut table);
        let last = p >= input.len();
        block.write(&mut w, &input[start..p], last);
        if last {
            break;
        }
    }
    w.finish();
}

/// A token: a run of `n` literal bytes (1 ≤ `n` ≤ 2^16, see [`literals`]), or
/// `MATCH | (distance - 1) << 8 | (length - 3)`.
const MATCH: u32 = 1 << 31;

/// Records a run of literals: one token per 2^16 bytes, each byte counted.
///
/// Counted in four tables, a byte in four to each: a repeated byte then increments four
/// counters in turn instead of waiting on its own last increment (~1.5% of the encoder on
/// `_bulk` bodies). [`Block::parse`] sums them when the block ends.
fn literals(tokens: &mut Vec<u32>, counts: &mut [[u32; 256]; 4], run: &[u8]) {
    for chunk in run.chunks(1 << 16) {
        tokens.push(chunk.len() as u32);
        let mut quads = chunk.chunks_exact(4);
        for q in &mut quads {
            counts[0][q[0] as usize] += 1;
            counts[1][q[1] as usize] += 1;
            counts[2][q[2] as usize] += 1;
            counts[3][q[3] as usize] += 1;
        }
        for &b in quads.remainder() {
            counts[0][b as usize] += 1;
        }
    }
}

struct Block {
    tokens: Vec<u32>,
    /// Symbol counts; only the first 286 and 30 are symbols, the rest let an index be
    /// masked instead of checked.
    lit: [u32; 512],
    dist: [u32; 32],
    /// Literal byte counts while the block is parsed, see [`literals`].
    bytes: [[u32; 256]; 4],
}

impl Default for Block {
    fn default() -> Self {
        Block {
            tokens: Vec::with_capacity(BLOCK_TOKENS),
            lit: [0; 512],
            dist: [0; 32],
            bytes: [[0; 256]; 4],
        }
    }
}

#[inline(always)]
fn read32(b: &[u8], i: usize) -> u32 {
    let w: [u8; 4] = b[i..i + 4].try_into().unwrap_or_default();
    u32::from_le_bytes(w)
}

#[inline(always)]
fn hash(v: u32) -> usize {
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// How many bytes from `a` and `b` (`a < b`) are equal, up to `max`.
#[inline(always)]
fn common(input: &[u8], a: usize, b: usize, max: usize) -> usize {
    // Two slices of `max` bytes: the loop below then needs no bounds check per read.
    let (x, y) = (&input[a..a + max], &input[b..b + max]);
    let mut n = 0;
    for (cx, cy) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        let d = u64::from_le_bytes(cx.try_into().unwrap_or_default())
            ^ u64::from_le_bytes(cy.try_into().unwrap_or_default());
        if d != 0 {
            return n + (d.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && x[n] == y[n] {
        n += 1;
    }
    n
}

/// Puts `p` in the table; returns the position it replaced if that one starts with the
/// same 4 bytes and is within the window (a match of at least 4 bytes).
#[inline(always)]
fn probe(input: &[u8], p: usize, table: &mut Table) -> Option<usize> {
    let v = read32(input, p);
    let h = hash(v);
    let e = table[h];
    table[h] = p as u64 | u64::from(v) << 32;
    let c = e as u32 as usize;
    // `c < p` and `p - c <= WINDOW` in one comparison.
    ((e >> 32) as u32 == v && p.wrapping_sub(c).wrapping_sub(1) < WINDOW).then_some(c)
}

/// After a match, hashes its last position (the only one of its positions in the table).
#[inline(always)]
fn remember_end(input: &[u8], p: usize, hash_end: usize, table: &mut Table) {
    if p - 1 < hash_end {
        let w = read32(input, p - 1);
        table[hash(w)] = (p - 1) as u64 | u64::from(w) << 32;
    }
}

/// How far [`json_resync`] looks for the `"` or space that ends a value or a word: longer
/// spans (free text without spaces, long tokens) are left to the hash search, which finds
/// the repeats inside them.
const RESYNC: usize = 40;

/// The first `"` or space in `input[from..end]`, eight bytes at a time.
#[inline(always)]
fn delimiter(input: &[u8], from: usize, end: usize) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let mut i = from;
    while i + 8 <= end {
        let w = u64::from_le_bytes(input[i..i + 8].try_into().unwrap_or_default());
        // Zero bytes of `w ^ "…"` and `w ^ " …"`: the lowest flagged byte is exact (a
        // borrow only flags bytes above a zero byte).
        let (q, s) = (w ^ (LOW * 0x22), w ^ (LOW * 0x20));
        let zero = (q.wrapping_sub(LOW) & !q | s.wrapping_sub(LOW) & !s) & (LOW * 0x80);
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..end).find(|&i| matches!(input[i], b'"' | b' '))
}

/// The JSON resync: the next match after one of distance `rep` that ended at `p`, where
/// the input differs from the bytes `rep` back, found without the hash search — or
/// `None` to leave it to the hash search. Returns where the match starts and its
/// candidate, 4 equal bytes verified.
///
/// In JSON the difference is usually a value: a document repeats the previous one's keys
/// and punctuation around new values. So: first the hash table's candidate for `p` (the
/// value may have occurred before, in any document; `p` is hashed for later ones);
/// then the next delimiter here and the next one at the last match's distance (within
/// [`RESYNC`] bytes), where the shared structure resumes — the bytes between are
/// literals, never searched. Delimiters are `"`, which ends a string value, and space,
/// which ends a word of text: in `msg=\"order 485499 created\" user=u-040188 dur=12ms`
/// the words after a new number resume the earlier line's (the space made the output
/// 2–6% smaller on every body measured, and the parser 5% slower on the benchmark's
/// documents).
#[inline(always)]
fn json_resync(
    input: &[u8],
    p: usize,
    rep: usize,
    hash_end: usize,
    table: &mut Table,
) -> Option<(usize, usize)> {
    let end = delimiter(input, p, (p + RESYNC).min(hash_end))?;
    if end > p
        && let Some(c) = probe(input, p, table)
    {
        return Some((p, c));
    }
    // `p - rep` < `p` ≤ `end`: the earlier delimiter is before this one.
    let r = p - rep;
    let earlier = delimiter(input, r, (r + RESYNC).min(end))?;
    (end - earlier <= WINDOW && read32(input, end) == read32(input, earlier))
        .then_some((end, earlier))
}

/// How far [`proto_resync`] looks for the bytes at the last match's distance to agree
/// again, in 8-byte words: past a differing value of up to ~44 bytes.
const SAME_WORDS: usize = 6;

/// Bit `i` set where byte `i` of `a` and `b` are equal.
#[inline(always)]
fn equal_bytes(a: u64, b: u64) -> u64 {
    const L7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = a ^ b;
    // Bit 7 of each byte: set exactly where that byte of `x` is zero (no carry crosses
    // bytes: each byte's low 7 bits plus 0x7f stay within it).
    let zero = !((x & L7).wrapping_add(L7) | x | L7);
    // Bit 7 of byte i moved to bit i.
    (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

#[inline(always)]
fn read64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default())
}

/// The same-distance resync for binary records (protobuf): the next match after one of
/// distance `rep` that ended at `p`, where the input differs from the bytes `rep` back,
/// found without the hash search — or `None` to leave it to the hash search.
///
/// In a batch of spans or records each one repeats the previous one's tags, keys and
/// lengths around new values (ids, timestamps, attribute values), and a value of the
/// same length leaves the rest at the same distance. So: first the hash table's
/// candidate for `p` (a value seen before), then the first position in the next
/// [`SAME_WORDS`] words where 4 bytes agree with those `rep` back — found with word-wide
/// compares, one mask and one count of trailing zeros, not a lookup per position.
#[inline(always)]
fn proto_resync(input: &[u8], p: usize, rep: usize, table: &mut Table) -> Option<(usize, usize)> {
    if let Some(c) = probe(input, p, table) {
        return Some((p, c));
    }
    if p + 8 * SAME_WORDS > input.len() {
        return None;
    }
    let r = p - rep;
    let mut equal = 0u64;
    for i in 0..SAME_WORDS {
        equal |= equal_bytes(read64(input, p + 8 * i), read64(input, r + 8 * i)) << (8 * i);
    }
    // Where 4 equal bytes start. Bit 0 is `p` itself: set only when the last match stopped
    // at its 258-byte limit, and then the same match goes on.
    let runs = equal & equal >> 1 & equal >> 2 & equal >> 3;
    if runs == 0 {
        return None;
    }
    let k = runs.trailing_zeros() as usize;
    // Checked again: the mask decides where to look, not what is written.
    (read32(input, p + k) == read32(input, r + k)).then_some((p + k, r + k))
}

/// Per hash: the last position with that hash (low 32 bits) and its 4 bytes (high 32),
/// so a stale candidate is rejected without reading the input at it. Empty entries are
/// `u64::MAX`: a position past any input.
type Table = [u64; 1 << HASH_BITS];

impl Block {
    /// Tokenizes `input` from `p` until the block is full or the input ends; returns
    /// where it stopped. After each match, `JSON` tries the JSON resync and `PROTO` the
    /// same-distance resync before the hash search (module doc).
    #[inline(never)]
    fn parse<const SHAPE: u8>(&mut self, input: &[u8], mut p: usize, table: &mut Table) -> usize {
        self.tokens.clear();
        self.lit = [0; 512];
        self.dist = [0; 32];
        self.bytes = [[0; 256]; 4];
        let end = input.len();
        // Positions from which 4 bytes can be hashed.
        let hash_end = end.saturating_sub(MIN_MATCH - 1);
        let mut run = p;
        // The distance of the last match, 0 before the first.
        let mut rep = 0;
        'block: while self.tokens.len() < BLOCK_TOKENS {
            if SHAPE != ANY
                && rep != 0
                && p < hash_end
                && let Some((at, c)) = if SHAPE == JSON {
                    json_resync(input, p, rep, hash_end, table)
                } else {
                    proto_resync(input, p, rep, table)
                }
            {
                rep = at - c;
                p = self.matched(input, &mut run, at, c);
                remember_end(input, p, hash_end, table);
                continue 'block;
            }
            // The next match: a tight loop of its own, with little to keep in registers.
            let c = loop {
                if p >= hash_end {
                    break 'block;
                }
                if let Some(c) = probe(input, p, table) {
                    break c;
                }
                // Past 8 literals in a row, look at every other position, then every
                // third...: random values (ids, hashes) are skipped faster, and the
                // table keeps more of the positions worth matching. A match found past
                // the bytes it should have started at is extended back over them.
                p += 1 + ((p - run) >> 3);
            };
            rep = p - c;
            p = self.matched(input, &mut run, p, c);
            remember_end(input, p, hash_end, table);
        }
        if self.tokens.len() < BLOCK_TOKENS {
            p = end;
        }
        if run < p {
            literals(&mut self.tokens, &mut self.bytes, &input[run..p]);
        }
        self.lit[256] += 1;
        let [a, b, c, d] = &self.bytes;
        for (i, n) in self.lit[..256].iter_mut().enumerate() {
            *n = a[i] + b[i] + c[i] + d[i];
        }
        p
    }

    /// Records the literals pending since `run` and a match at `p` of the bytes at `c`,
    /// first extended backwards over the pending literals (the bytes a skip-ahead jumped
    /// over); returns where the match ends.
    #[inline(always)]
    fn matched(&mut self, input: &[u8], run: &mut usize, p: usize, c: usize) -> usize {
        let (mut s, mut cs) = (p, c);
        while s > *run && cs > 0 && p + MIN_MATCH - s < MAX_MATCH && input[s - 1] == input[cs - 1] {
            s -= 1;
            cs -= 1;
        }
        if *run < s {
            literals(&mut self.tokens, &mut self.bytes, &input[*run..s]);
        }
        // Bytes `s..p + MIN_MATCH` are known to match; at most MAX_MATCH of them.
        let known = p + MIN_MATCH - s;
        let max = (input.len() - s).min(MAX_MATCH);
        let len = known + common(input, c + MIN_MATCH, p + MIN_MATCH, max - known);
        let d = p - c;
        self.tokens
            .push(MATCH | ((d as u32 - 1) << 8) | (len as u32 - 3));
        self.lit[(LEN_SYM[(len - 3) & 0xff] & 0x1ff) as usize] += 1;
        self.dist[dist_code(d - 1) & 31] += 1;
        *run = s + len;
        s + len
    }

    /// Writes the tokens as one block of whichever kind is smallest; `raw` is the input
    /// they encode (for a stored block).
    fn write(&mut self, w: &mut Bits<'_>, raw: &[u8], last: bool) {
        let (lit, dist) = (&self.lit[..286], &self.dist[..30]);
        // Literal/length codes of at most 11 bits (DEFLATE allows 15), so five literals fit
        // the bit buffer between flushes (5 × 11 + 7 held < 64): the literal loop of
        // `write_tokens` stores once per five bytes instead of three. The codes of rare
        // symbols get longer: +0.1% output on `_bulk` bodies, ~3% faster.
        let lit_len = huffman_lengths(lit, LIT_LIMIT);
        let dist_len = huffman_lengths(dist, 15);
        let header = DynHeader::new(&lit_len, &dist_len);
        let mut extra = 0u64;
        for (i, &f) in lit.iter().enumerate().skip(257) {
            extra += f as u64 * LEN_EXTRA[i - 257] as u64;
        }
        for (i, &f) in dist.iter().enumerate() {
            extra += f as u64 * DIST_EXTRA[i] as u64;
        }
        let cost = |ll: &[u8], dl: &[u8]| -> u64 {
            let a: u64 = lit.iter().zip(ll).map(|(&f, &l)| f as u64 * l as u64).sum();
            let b: u64 = dist
                .iter()
                .zip(dl)
                .map(|(&f, &l)| f as u64 * l as u64)
                .sum();
            a + b + extra
        };
        let dynamic = 3 + header.bits() + cost(&lit_len, &dist_len);
        let fixed = 3 + cost(&FIXED_LIT_LEN, &[5u8; 30]);
        // Stored: per 65,535 bytes a 3-bit header padded to a byte plus LEN and NLEN.
        let stored = (raw.len().div_ceil(65535).max(1) as u64) * (5 * 8 + 7) + 8 * raw.len() as u64;
        if stored < dynamic.min(fixed) {
            w.stored(raw, last);
        } else if fixed <= dynamic {
            w.room(fixed + 64);
            w.put(u64::from(last) | 1 << 1, 3);
            let codes = Codes::new(&FIXED_LIT_LEN, &[5u8; 30]);
            codes.write_tokens(w, &self.tokens, raw);
        } else {
            w.room(dynamic + 64);
            w.put(u64::from(last) | 2 << 1, 3);
            header.write(w);
            let codes = Codes::new(&lit_len, &dist_len);
            codes.write_tokens(w, &self.tokens, raw);
        }
    }
}

/// The bit-reversed canonical codes of both alphabets, as (bits, length) pairs ready for
/// the bit writer. A length's code and extra bits depend only on the length, so each of
/// the 256 lengths has its whole (code | extra) pair, made once per block: a match looks
/// up one entry instead of its symbol, code, base and extra-bit count.
struct Codes {
    lit: [(u32, u8); 286],
    /// Per `length - 3`: the length symbol's code with the extra bits above it.
    len: [(u32, u8); 256],
    /// Per distance code, its code; 30 and 31 are never used (masking an index to 5 bits
    /// needs no bounds check).
    dist: [(u32, u8); 32],
}

impl Codes {
    fn new(lit_len: &[u8], dist_len: &[u8]) -> Self {
        let mut lit = [(0, 0); 286];
        for ((slot, c), &l) in lit.iter_mut().zip(canonical(lit_len)).zip(lit_len) {
            *slot = (c, l);
        }
        let mut len = [(0, 0); 256];
        for (len3, slot) in len.iter_mut().enumerate() {
            let sym = LEN_SYM[len3] as usize;
            let (c, l) = lit[sym];
            let k = sym - 257;
            let extra = (len3 + 3 - LEN_BASE[k] as usize) as u32;
            *slot = (c | extra << l, l + LEN_EXTRA[k]);
        }
        let mut dist = [(0, 0); 32];
        for ((slot, c), &l) in dist.iter_mut().zip(canonical(dist_len)).zip(dist_len) {
            *slot = (c, l);
        }
        Codes { lit, len, dist }
    }

    #[inline(never)]
    fn write_tokens(&self, w: &mut Bits<'_>, tokens: &[u32], raw: &[u8]) {
        w.hot(|w| self.write_tokens_hot(w, tokens, raw));
    }

    #[inline(always)]
    fn write_tokens_hot(&self, w: &mut Bits<'_>, tokens: &[u32], raw: &[u8]) {
        let mut at = 0;
        for &t in tokens {
            if t & MATCH == 0 {
                let n = t as usize;
                let run = &raw[at..at + n];
                // At most 11 bits a code (LIT_LIMIT; 9 in the fixed code): five fit.
                let mut fives = run.chunks_exact(5);
                for t in &mut fives {
                    for &b in t {
                        let (c, l) = self.lit[b as usize];
                        w.add(c as u64, l as u32);
                    }
                    w.flush();
                }
                for &b in fives.remainder() {
                    let (c, l) = self.lit[b as usize];
                    w.add(c as u64, l as u32);
                }
                w.flush();
                at += n;
            } else {
                let len3 = (t & 0xff) as usize;
                let d1 = ((t >> 8) & 0x7fff) as usize;
                // At most 15 + 5 bits for the length, 15 + 13 for the distance: 48 + 7.
                let (c, l) = self.len[len3];
                let dc = dist_code(d1) & 31;
                let (dcode, dl) = self.dist[dc];
                let db = DIST_EXTRA[dc] as u32;
                let dv = (d1 + 1 - DIST_BASE[dc] as usize) as u64;
                w.add(c as u64, l as u32);
                w.add(dcode as u64 | dv << dl, dl as u32 + db);
                w.flush();
                at += len3 + 3;
            }
        }
        let (c, l) = self.lit[256];
        w.put(c as u64, l as u32);
    }
}
