//! On-disk encoding of WAL records and ack entries, and the scanners that read them back.
//!
//! Pure functions over byte slices (no I/O), so damage handling is unit-tested directly.
//!
//! Record (little endian), 24-byte header then the payload:
//! ```text
//! 0..4    magic        F7 57 41 4C
//! 4..8    payload len  u32
//! 8..16   record id    u64
//! 16..20  header crc   crc32 of bytes 0..16 (so a damaged length is never trusted)
//! 20..24  payload crc  crc32 of the payload
//! 24..    payload
//! ```
//! Ack entry, 16 bytes: magic `F7 57 41 4B`, record id u64, crc32 of the first 12 bytes.
//! Both carry a magic marker so a scanner can resynchronise after damage at any byte offset.

use std::ops::Range;

pub(super) const RECORD_MAGIC: [u8; 4] = [0xF7, b'W', b'A', b'L'];
pub(super) const HEADER_LEN: u64 = 24;
pub(super) const ACK_MAGIC: [u8; 4] = [0xF7, b'W', b'A', b'K'];
pub(super) const ACK_LEN: u64 = 16;

/// Appends one encoded record to `out`.
pub(super) fn encode_record(out: &mut Vec<u8>, id: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + 16]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

pub(super) fn encode_ack(id: u64) -> [u8; ACK_LEN as usize] {
    let mut entry = [0u8; ACK_LEN as usize];
    entry[..4].copy_from_slice(&ACK_MAGIC);
    entry[4..12].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&entry[..12]);
    entry[12..].copy_from_slice(&crc.to_le_bytes());
    entry
}

/// One intact record found by [`scan_records`]: its id and where its payload lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FoundRecord {
    pub id: u64,
    pub payload: Range<usize>,
}

/// A run of bytes between intact records (or before end of file) that holds no intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadRegion {
    pub bytes: Range<usize>,
    /// Headers with a valid header checksum inside the region: how many records it damaged
    /// (at least one is reported for a region without any).
    pub headers: u64,
    /// Highest id among those headers: it may have been handed out, so it is not reused.
    pub max_header_id: Option<u64>,
    /// The region runs to the end of the data (candidate torn tail).
    pub at_end: bool,
}

#[derive(Debug, Default)]
pub(super) struct Scan {
    pub records: Vec<FoundRecord>,
    pub bad: Vec<BadRegion>,
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(b)
}

enum Parsed {
    Record {
        id: u64,
        end: usize,
    },
    /// Header checks out but the payload is missing or fails its checksum.
    BadPayload {
        id: u64,
    },
    Invalid,
}

fn parse_record(data: &[u8], at: usize) -> Parsed {
    let header_len = HEADER_LEN as usize;
    if data.len() - at < header_len || data[at..at + 4] != RECORD_MAGIC {
        return Parsed::Invalid;
    }
    if crc32fast::hash(&data[at..at + 16]) != u32_at(data, at + 16) {
        return Parsed::Invalid;
    }
    let len = u32_at(data, at + 4) as usize;
    let id = u64_at(data, at + 8);
    let body = at + header_len;
    match body.checked_add(len) {
        Some(end) if end <= data.len() => {
            if crc32fast::hash(&data[body..end]) == u32_at(data, at + 20) {
                Parsed::Record { id, end }
            } else {
                Parsed::BadPayload { id }
            }
        }
        _ => Parsed::BadPayload { id },
    }
}

fn find_magic(data: &[u8], from: usize, magic: &[u8; 4]) -> usize {
    if from >= data.len() {
        return data.len();
    }
    data[from..]
        .windows(4)
        .position(|w| w == magic)
        .map_or(data.len(), |p| from + p)
}

/// Reads every intact record of a segment; damaged stretches are skipped and described in
/// `bad`, resuming at the next magic marker that starts an intact record.
pub(super) fn scan_records(data: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0;
    let mut bad_start: Option<usize> = None;
    let mut bad_headers = 0;
    let mut max_header_id = None;
    while at < data.len() {
        match parse_record(data, at) {
            Parsed::Record { id, end } => {
                if let Some(start) = bad_start.take() {
                    scan.bad.push(BadRegion {
                        bytes: start..at,
                        headers: bad_headers,
                        max_header_id: max_header_id.take(),
                        at_end: false,
                    });
                    bad_headers = 0;
                }
                scan.records.push(FoundRecord {
                    id,
                    payload: at + HEADER_LEN as usize..end,
                });
                at = end;
            }
            parsed => {
                if let Parsed::BadPayload { id } = parsed {
                    bad_headers += 1;
                    max_header_id = max_header_id.max(Some(id));
                }
                bad_start.get_or_insert(at);
                at = find_magic(data, at + 1, &RECORD_MAGIC);
            }
        }
    }
    if let Some(start) = bad_start {
        scan.bad.push(BadRegion {
            bytes: start..data.len(),
            headers: bad_headers,
            max_header_id,
            at_end: true,
        });
    }
    scan
}

/// Reads the acked ids of an ack file; returns them and the number of bytes that were not part
/// of an intact entry (torn or damaged).
pub(super) fn scan_acks(data: &[u8]) -> (Vec<u64>, u64) {
    let entry_len = ACK_LEN as usize;
    let mut ids = Vec::with_capacity(data.len() / entry_len);
    let mut skipped = 0u64;
    let mut at = 0;
    while at < data.len() {
        let intact = data.len() - at >= entry_len
            && data[at..at + 4] == ACK_MAGIC
            && crc32fast::hash(&data[at..at + 12]) == u32_at(data, at + 12);
        if intact {
            ids.push(u64_at(data, at + 4));
            at += entry_len;
        } else {
            let next = find_magic(data, at + 1, &ACK_MAGIC);
            skipped += (next - at) as u64;
            at = next;
        }
    }
    (ids, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, payload) in records {
            encode_record(&mut out, *id, payload);
        }
        out
    }

    #[test]
    fn clean_segment_round_trips() {
        let data = segment(&[(1, b"a"), (2, b""), (3, b"hello world")]);
        let scan = scan_records(&data);
        assert!(scan.bad.is_empty());
        let got: Vec<(u64, &[u8])> = scan
            .records
            .iter()
            .map(|r| (r.id, &data[r.payload.clone()]))
            .collect();
        assert_eq!(
            got,
            vec![(1, &b"a"[..]), (2, &b""[..]), (3, &b"hello world"[..])]
        );
    }

    #[test]
    fn flipped_payload_byte_is_one_bad_region_and_later_records_survive() {
        let mut data = segment(&[(1, b"first"), (2, b"second"), (3, b"third")]);
        let second_payload = 24 + 5 + 24;
        data[second_payload + 2] ^= 0x40;
        let scan = scan_records(&data);
        assert_eq!(
            scan.records.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(scan.bad.len(), 1);
        assert_eq!(scan.bad[0].headers, 1);
        assert!(!scan.bad[0].at_end);
    }

    #[test]
    fn damaged_length_does_not_swallow_following_records() {
        let mut data = segment(&[(1, b"x"), (2, b"y"), (3, b"z")]);
        // Length field of record 2 becomes huge: its header checksum must reject it.
        data[25 + 4 + 3] = 0x7F;
        let scan = scan_records(&data);
        assert_eq!(
            scan.records.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(scan.bad.len(), 1);
    }

    #[test]
    fn truncated_last_record_is_a_tail_region() {
        let data = segment(&[(1, b"one"), (2, b"two two two")]);
        for cut in 1..(24 + 11) {
            let truncated = &data[..data.len() - cut];
            let scan = scan_records(truncated);
            assert_eq!(scan.records.len(), 1, "cut {cut}");
            assert_eq!(scan.bad.len(), 1, "cut {cut}");
            assert!(scan.bad[0].at_end);
            assert_eq!(scan.bad[0].bytes, 27..truncated.len());
        }
    }

    #[test]
    fn garbage_and_magic_lookalikes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..500 {
            let len = rng.usize(0..300);
            let mut data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            // Sprinkle magic markers so the slow paths run.
            for _ in 0..rng.usize(0..5) {
                if data.len() >= 4 {
                    let at = rng.usize(0..=data.len() - 4);
                    data[at..at + 4].copy_from_slice(&RECORD_MAGIC);
                }
            }
            if round % 3 == 0 {
                encode_record(&mut data, 9, b"after garbage");
            }
            let scan = scan_records(&data);
            if round % 3 == 0 {
                assert_eq!(scan.records.last().map(|r| r.id), Some(9));
            }
            let _ = scan_acks(&data);
        }
    }

    #[test]
    fn ack_entries_resync_after_partial_write() {
        let mut data = Vec::new();
        data.extend_from_slice(&encode_ack(5));
        data.extend_from_slice(&encode_ack(6)[..7]); // torn write, later appends follow it
        data.extend_from_slice(&encode_ack(7));
        let mut flipped = encode_ack(8);
        flipped[6] ^= 1;
        data.extend_from_slice(&flipped);
        data.extend_from_slice(&encode_ack(9));
        let (ids, skipped) = scan_acks(&data);
        assert_eq!(ids, vec![5, 7, 9]);
        assert_eq!(skipped, 7 + 16);
    }
}
