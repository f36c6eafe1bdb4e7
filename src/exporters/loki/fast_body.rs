//! Laying out the direct encoder's push body ([`super`]) from its arena of entries:
//! streams in label order, entries by timestamp within each, the arena read in runs of
//! entries that already follow each other; protobuf is copied out or snappy-compressed
//! straight from those runs ([`proto::snappy_pieces`]).

use super::{BODY, Encoded, EntryRef, Format, Stats, StreamAcc};
use crate::exporters::loki::proto::{
    self,
    wire::{bytes_field, field_len, tag_len},
};

pub(super) fn finish(
    tenant: &Option<String>,
    streams: Vec<StreamAcc>,
    entries: &mut [EntryRef],
    arena: &[u8],
    stats: Stats,
    format: Format,
) -> Option<Encoded> {
    if entries.is_empty() {
        return None;
    }
    // Streams in label-string order, entries by timestamp within each (stable).
    let mut rank: Vec<u32> = (0..streams.len() as u32).collect();
    rank.sort_by(|a, b| {
        streams[*a as usize]
            .labels
            .cmp(&streams[*b as usize].labels)
    });
    let mut pos = vec![0u32; streams.len()];
    for (p, si) in rank.iter().enumerate() {
        pos[*si as usize] = p as u32;
    }
    entries.sort_by_key(|e| (pos[e.stream as usize], e.ts_ns));
    let mut error = None;
    let body = match format {
        Format::Json => {
            let mut body = BODY.take();
            body.clear();
            body.reserve(arena.len() + streams.len() * 128 + 64);
            write_json(&mut body, &streams, &rank, entries, arena);
            body
        }
        Format::Protobuf | Format::ProtobufSnappy => {
            let mut heads = Vec::with_capacity(streams.len() * 128);
            let mut runs = Vec::new();
            proto_runs(&mut heads, &mut runs, &streams, &rank, entries);
            let pieces = runs.iter().map(|r| match *r {
                Run::Head(a, b) => &heads[a as usize..b as usize],
                Run::Arena(a, b) => &arena[a as usize..b as usize],
            });
            let total = pieces.clone().map(<[u8]>::len).sum::<usize>();
            if format == Format::ProtobufSnappy {
                proto::snappy_pieces(total, pieces).unwrap_or_else(|e| {
                    error = Some(e.to_string());
                    Vec::new()
                })
            } else {
                let mut body = BODY.take();
                body.clear();
                body.reserve(total);
                pieces.for_each(|p| body.extend_from_slice(p));
                body
            }
        }
    };
    Some(Encoded {
        tenant: tenant.clone(),
        body,
        error,
        stats,
        entry_count: entries.len(),
        entries_by_stream: streams.into_iter().map(|s| (s.labels, s.entries)).collect(),
    })
}

/// A piece of the protobuf body: stream headers (in their own buffer) or a run of entries
/// of the arena, as byte ranges.
enum Run {
    Head(u32, u32),
    Arena(u32, u32),
}

/// The protobuf body as pieces, in order: each stream's header and its entries' runs.
fn proto_runs(
    heads: &mut Vec<u8>,
    runs: &mut Vec<Run>,
    streams: &[StreamAcc],
    rank: &[u32],
    entries: &[EntryRef],
) {
    let mut i = 0;
    for si in rank {
        let st = &streams[*si as usize];
        let group = &entries[i..i + st.entries];
        i += st.entries;
        // Each entry is its whole `entries` field already (see `entry`).
        let mut len = field_len(st.labels.len());
        for e in group {
            len += (e.end - e.start) as usize;
        }
        let h = heads.len() as u32;
        tag_len(heads, 1, len);
        bytes_field(heads, 1, st.labels.as_bytes());
        runs.push(Run::Head(h, heads.len() as u32));
        // Entries that follow each other in the arena make one run.
        let mut run: Option<(u32, u32)> = None;
        for e in group {
            run = match run {
                Some((a, b)) if b == e.start => Some((a, e.end)),
                _ => {
                    if let Some((a, b)) = run {
                        runs.push(Run::Arena(a, b));
                    }
                    Some((e.start, e.end))
                }
            };
        }
        if let Some((a, b)) = run {
            runs.push(Run::Arena(a, b));
        }
    }
}

fn write_json(
    out: &mut Vec<u8>,
    streams: &[StreamAcc],
    rank: &[u32],
    entries: &[EntryRef],
    arena: &[u8],
) {
    out.extend_from_slice(b"{\"streams\":[");
    let mut i = 0;
    for (n, si) in rank.iter().enumerate() {
        let st = &streams[*si as usize];
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":");
        out.extend_from_slice(&st.labels_json);
        out.extend_from_slice(b",\"values\":[");
        for (k, e) in entries[i..i + st.entries].iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&arena[e.start as usize..e.end as usize]);
        }
        i += st.entries;
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
}
