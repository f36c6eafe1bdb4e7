//! Loki's push message (`logproto.PushRequest` from `pkg/push/push.proto`), written by hand
//! for prost so no protoc is needed. Field numbers are Loki's: `PushRequest{streams=1}`,
//! `StreamAdapter{labels=1, entries=2, hash=3}`, `EntryAdapter{timestamp=1, line=2,
//! structuredMetadata=3}`, `LabelPairAdapter{name=1, value=2}`, and
//! `google.protobuf.Timestamp{seconds=1, nanos=2}`.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// The label set in Prometheus text form: `{k="v", k2="v2"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Filled in by Loki's distributor; clients leave it 0.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_unix_nanos(ns: u64) -> Timestamp {
        Timestamp {
            seconds: (ns / 1_000_000_000) as i64,
            nanos: (ns % 1_000_000_000) as i32,
        }
    }
}

/// The protobuf body Loki expects: the encoded message compressed with snappy's *block*
/// (raw) format, not the framed stream format.
pub fn encode_snappy(req: &PushRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())
}

/// [`encode_snappy`] of an encoded body: what `compress_vec` gives, through the
/// per-thread encoder and output buffer of [`snappy_pieces`] (no fresh worst-case buffer
/// zeroed and faulted in per request).
pub fn snappy(body: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snappy_pieces(body.len(), [body])
}

/// Snappy's block size: its encoder compresses its input 64 KiB at a time, each block on
/// its own.
const SNAPPY_BLOCK: usize = 1 << 16;

/// [`snappy`] of the concatenation of `pieces` (`total` bytes in all), without
/// concatenating them: compressed block by block, as snappy's encoder splits its input
/// (the stream is the varint of the total length followed by each block's elements), each
/// block straight from its piece when it lies within one, else from a copy of the block.
/// The same bytes as [`snappy`] of the concatenated body.
pub fn snappy_pieces<'p>(
    total: usize,
    pieces: impl IntoIterator<Item = &'p [u8]>,
) -> Result<Vec<u8>, snap::Error> {
    if snap::raw::max_compress_len(total) == 0 {
        return Err(snap::Error::TooBig {
            given: total as u64,
            max: u64::from(u32::MAX),
        });
    }
    SNAPPY_PIECES.with(|s| {
        let (enc, out, block) = &mut *s.borrow_mut();
        let mut head = Vec::with_capacity(10);
        wire::varint(&mut head, total as u64);
        if out.len() < head.len() {
            out.resize(head.len(), 0);
        }
        out[..head.len()].copy_from_slice(&head);
        let mut d = head.len();
        let mut seen = 0;
        block.clear();
        for mut p in pieces {
            seen += p.len();
            if seen > total {
                return Err(snap::Error::HeaderMismatch {
                    expected_len: total as u64,
                    got_len: seen as u64,
                });
            }
            while !p.is_empty() {
                if block.is_empty() && p.len() >= SNAPPY_BLOCK {
                    let (b, rest) = p.split_at(SNAPPY_BLOCK);
                    d = snappy_block(enc, out, d, b)?;
                    p = rest;
                    continue;
                }
                let take = p.len().min(SNAPPY_BLOCK - block.len());
                block.extend_from_slice(&p[..take]);
                p = &p[take..];
                if block.len() == SNAPPY_BLOCK {
                    d = snappy_block(enc, out, d, block)?;
                    block.clear();
                }
            }
        }
        if !block.is_empty() {
            d = snappy_block(enc, out, d, block)?;
        }
        if seen != total {
            return Err(snap::Error::HeaderMismatch {
                expected_len: total as u64,
                got_len: seen as u64,
            });
        }
        Ok(out.get(..d).unwrap_or_default().to_vec())
    })
}

/// Appends one block's elements at `out[d..]`; returns the new end. The encoder writes
/// the block's own length header first: it is written over the bytes just before `d`
/// (at most 3; the stream's header is at least as long as any block's), which are put
/// back after.
fn snappy_block(
    enc: &mut snap::raw::Encoder,
    out: &mut Vec<u8>,
    d: usize,
    block: &[u8],
) -> Result<usize, snap::Error> {
    let head = wire::varint_len(block.len() as u64);
    let at = d - head;
    let need = at + snap::raw::max_compress_len(block.len());
    if out.len() < need {
        out.resize(need, 0);
    }
    let mut saved = [0u8; 10];
    saved[..head].copy_from_slice(&out[at..d]);
    let n = enc.compress(block, &mut out[at..])?;
    out[at..d].copy_from_slice(&saved[..head]);
    Ok(at + n)
}

thread_local! {
    /// Snappy's encoder (it keeps a hash table), an output buffer as large as the largest
    /// body yet (zeroed once) and the copy of a block that spans pieces, per thread.
    static SNAPPY_PIECES: std::cell::RefCell<(snap::raw::Encoder, Vec<u8>, Vec<u8>)> =
        std::cell::RefCell::new((snap::raw::Encoder::new(), Vec::new(), Vec::new()));
}

/// Protobuf wire-format writers for the direct encoder ([`super::fast`]), which lays out
/// `PushRequest` bytes itself (exactly as prost would encode the messages above).
pub mod wire {
    #[inline]
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[inline]
    pub fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    /// The encoded size of a length-delimited field (tag < 16) holding `len` bytes.
    #[inline]
    pub fn field_len(len: usize) -> usize {
        1 + varint_len(len as u64) + len
    }

    #[inline]
    pub fn tag_len(out: &mut Vec<u8>, field: u8, len: usize) {
        out.push((field << 3) | 2);
        varint(out, len as u64);
    }

    #[inline]
    pub fn bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
        tag_len(out, field, bytes.len());
        out.extend_from_slice(bytes);
    }

    /// A `google.protobuf.Timestamp`'s fields (each left out when zero).
    #[inline]
    pub fn timestamp_fields(out: &mut Vec<u8>, secs: u64, nanos: u64) {
        if secs != 0 {
            out.push(0x08);
            varint(out, secs);
        }
        if nanos != 0 {
            out.push(0x10);
            varint(out, nanos);
        }
    }

    /// The size of a `string` field that is left out when empty (proto3).
    #[inline]
    fn opt_len(b: &[u8]) -> usize {
        if b.is_empty() { 0 } else { field_len(b.len()) }
    }

    /// One `EntryAdapter` as a `StreamAdapter.entries` field (tag 2, its length, the
    /// message), from its timestamp, line and structured metadata pairs: the bytes prost
    /// writes for it. The whole field's size is computed first, so it is written in one
    /// reserved run.
    pub fn entry_field<'b>(
        out: &mut Vec<u8>,
        ts_ns: u64,
        line: &[u8],
        pairs: impl Iterator<Item = (&'b [u8], &'b [u8])> + Clone,
    ) {
        let (secs, nanos) = (ts_ns / 1_000_000_000, ts_ns % 1_000_000_000);
        let mut ts_len = 0;
        if secs != 0 {
            ts_len += 1 + varint_len(secs);
        }
        if nanos != 0 {
            ts_len += 1 + varint_len(nanos);
        }
        let pair_len = |n: &[u8], v: &[u8]| opt_len(n) + opt_len(v);
        let mut len = 1 + varint_len(ts_len as u64) + ts_len + opt_len(line);
        for (n, v) in pairs.clone() {
            len += field_len(pair_len(n, v));
        }
        out.reserve(1 + varint_len(len as u64) + len);
        tag_len(out, 2, len);
        tag_len(out, 1, ts_len);
        timestamp_fields(out, secs, nanos);
        if !line.is_empty() {
            bytes_field(out, 2, line);
        }
        for (n, v) in pairs {
            tag_len(out, 3, pair_len(n, v));
            if !n.is_empty() {
                bytes_field(out, 1, n);
            }
            if !v.is_empty() {
                bytes_field(out, 2, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_block_round_trip_keeps_every_field() {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{service_name="api"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp::from_unix_nanos(1_700_000_000_123_456_789)),
                    line: "hello".into(),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let body = encode_snappy(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = PushRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back, req);
        let ts = back.streams[0].entries[0].timestamp.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
    }

    #[test]
    fn entry_fields_are_what_prost_writes() {
        let mut rng = fastrand::Rng::with_seed(4);
        for _ in 0..500 {
            let text = |rng: &mut fastrand::Rng| -> String {
                let n = [0, 1, 5, 130, 20_000][rng.usize(0..5)];
                (0..n).map(|_| rng.alphanumeric()).collect()
            };
            let ts_ns = [0, 7, 1_000_000_000, rng.u64(..)][rng.usize(0..4)];
            let line = text(&mut rng);
            let pairs: Vec<(String, String)> = (0..rng.usize(0..4))
                .map(|_| (text(&mut rng), text(&mut rng)))
                .collect();
            let entry = EntryAdapter {
                timestamp: Some(Timestamp::from_unix_nanos(ts_ns)),
                line: line.clone(),
                structured_metadata: pairs
                    .iter()
                    .map(|(name, value)| LabelPairAdapter {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            };
            let want = StreamAdapter {
                labels: String::new(),
                entries: vec![entry],
                hash: 0,
            }
            .encode_to_vec();
            let mut got = Vec::new();
            let it = pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
            wire::entry_field(&mut got, ts_ns, line.as_bytes(), it);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn snappy_of_pieces_is_snappy_of_their_concatenation() {
        let mut rng = fastrand::Rng::with_seed(6);
        const B: usize = SNAPPY_BLOCK;
        let sizes = [
            0,
            1,
            16,
            17,
            100,
            B - 1,
            B,
            B + 1,
            2 * B,
            3 * B + 5,
            300_000,
        ];
        for round in 0..200 {
            // Compressible and incompressible runs, cut into pieces of any size.
            let n = sizes[rng.usize(0..sizes.len())];
            let body: Vec<u8> = (0..n)
                .map(|i| {
                    if (i / 1000) % 2 == 0 {
                        rng.u8(..)
                    } else {
                        b'a' + (i % 7) as u8
                    }
                })
                .collect();
            let mut pieces = Vec::new();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let cut = [0, 1, 40, 600, B - 3, B, B + 9, rest.len()][rng.usize(0..8)];
                let (p, r) = rest.split_at(cut.min(rest.len()));
                pieces.push(p);
                rest = r;
            }
            if rng.bool() {
                pieces.insert(rng.usize(0..=pieces.len()), &[]);
            }
            let got = snappy_pieces(n, pieces.iter().copied()).unwrap();
            let want = snap::raw::Encoder::new().compress_vec(&body).unwrap();
            assert_eq!(
                got,
                want,
                "round {round}: {n} bytes in {} pieces",
                pieces.len()
            );
            let back = snap::raw::Decoder::new().decompress_vec(&got).unwrap();
            assert_eq!(back, body);
        }
        assert_eq!(snappy_pieces(0, []).unwrap(), vec![0]);
        assert!(snappy_pieces(3, [&b"ab"[..]]).is_err());
        assert!(snappy_pieces(3, [&[7u8; 200][..]]).is_err());
    }

    #[test]
    fn the_reused_snappy_buffer_gives_what_compress_vec_gives() {
        let mut rng = fastrand::Rng::with_seed(3);
        // Large, small, empty, large again: the buffer is reused across sizes.
        for n in [200_000, 17, 0, 1, 70_000, 300_000, 5] {
            let body: Vec<u8> = (0..n).map(|i| [rng.u8(..), b'a'][i % 3 / 2]).collect();
            let want = snap::raw::Encoder::new().compress_vec(&body).unwrap();
            assert_eq!(snappy(&body).unwrap(), want);
        }
    }
}
