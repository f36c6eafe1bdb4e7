//! Opening a WAL directory: checks, the recovery scan of every segment and its acks, cleanup of
//! what is fully acknowledged or damaged beyond use, and a fresh active segment.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::Instant;

use super::format::{self, HEADER_LEN};
use super::{
    Active, FsyncPolicy, Inner, RecordId, Replay, Segment, WalError, WalOptions, ack_path,
    io_error, segment_path, sync_dir,
};

const LOCK_FILE: &str = "lock";

pub(super) fn open(dir: &Path, opts: WalOptions) -> Result<(Inner, Replay), WalError> {
    prepare_dir(dir)?;
    let lock = lock_dir(dir)?;
    let mut replay = Replay::default();
    let listing = list_dir(dir, &mut replay.warnings)?;
    let read_limit = opts
        .max_size_bytes
        .max(opts.segment_bytes)
        .saturating_mul(4)
        .max(64 << 20);

    let mut next_id = listing.min_next_id.max(1);
    let mut segments = BTreeMap::new();
    let starts: Vec<u64> = listing.segments.iter().copied().collect();
    for (i, &start) in starts.iter().enumerate() {
        let ctx = SegmentContext {
            dir,
            start,
            next_start: starts.get(i + 1).copied(),
            has_acks: listing.acks.contains(&start),
            read_limit,
            fsync: opts.fsync,
        };
        let (segment, after) = recover_segment(&ctx, &mut replay)?;
        next_id = next_id.max(after).max(start);
        match segment {
            Some(segment) => {
                segments.insert(start, segment);
            }
            None => remove_segment_files(dir, start)?,
        }
    }
    for &start in listing.acks.difference(&listing.segments) {
        remove_if_exists(&ack_path(dir, start))?;
    }

    let file = create_segment(dir, next_id)?;
    segments.insert(next_id, Segment::empty());
    if opts.fsync != FsyncPolicy::Never {
        sync_dir(dir)?;
    }
    let size: u64 = segments.values().map(Segment::footprint).sum();
    if size > opts.max_size_bytes {
        replay.warnings.push(format!(
            "{} holds {size} bytes, over the limit of {} bytes: appends are refused until \
             acknowledgements free space",
            dir.display(),
            opts.max_size_bytes
        ));
    }
    let inner = Inner {
        dir: dir.to_path_buf(),
        segments,
        active: Active::new(next_id, file),
        next_id,
        size,
        pending: replay.records.len(),
        dir_dirty: false,
        unsynced: Vec::new(),
        gc_pending: false,
        last_sync: Instant::now(),
        scratch: Vec::new(),
        opts,
        _lock: lock,
    };
    Ok((inner, replay))
}

fn prepare_dir(dir: &Path) -> Result<(), WalError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(WalError::NotADirectory {
            path: dir.display().to_string(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io_error(dir))
        }
        Err(err) => Err(io_error(dir)(err)),
    }
}

fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked {
            path: dir.display().to_string(),
        }),
        Err(TryLockError::Error(err)) => Err(io_error(&path)(err)),
    }
}

pub(super) fn create_segment(dir: &Path, start: u64) -> Result<File, WalError> {
    let path = segment_path(dir, start);
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error(&path))
}

#[derive(Default)]
struct Listing {
    segments: BTreeSet<u64>,
    acks: BTreeSet<u64>,
    /// Past every segment-like name, even ignored ones, so a new segment never collides.
    min_next_id: u64,
}

fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let start = stem.parse().ok()?;
    match ext {
        "wal" => Some((start, false)),
        "ack" => Some((start, true)),
        _ => None,
    }
}

fn list_dir(dir: &Path, warnings: &mut Vec<String>) -> Result<Listing, WalError> {
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            warnings.push(format!(
                "ignoring unexpected entry {name:?} in {}",
                dir.display()
            ));
            continue;
        };
        if name == LOCK_FILE {
            continue;
        }
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        match parse_name(name) {
            Some((start, is_ack)) if is_file => {
                if is_ack {
                    listing.acks.insert(start);
                } else {
                    listing.segments.insert(start);
                }
            }
            Some((start, _)) => {
                listing.min_next_id = listing.min_next_id.max(start.saturating_add(1));
                warnings.push(format!(
                    "ignoring {name} in {}: not a regular file",
                    dir.display()
                ));
            }
            None => warnings.push(format!(
                "ignoring unexpected entry {name} in {}",
                dir.display()
            )),
        }
    }
    Ok(listing)
}

struct SegmentContext<'a> {
    dir: &'a Path,
    start: u64,
    /// First id of the following segment: every id here must be below it.
    next_start: Option<u64>,
    has_acks: bool,
    read_limit: u64,
    fsync: FsyncPolicy,
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, WalError> {
    let len = std::fs::metadata(path).map_err(io_error(path))?.len();
    if len > limit {
        return Err(WalError::SegmentTooLarge {
            path: path.display().to_string(),
            len,
            limit,
        });
    }
    std::fs::read(path).map_err(io_error(path))
}

/// Replays one segment. Returns the segment if it still holds unacknowledged records, and an
/// id above every id it holds or acknowledged.
fn recover_segment(
    ctx: &SegmentContext<'_>,
    replay: &mut Replay,
) -> Result<(Option<Segment>, u64), WalError> {
    let path = segment_path(ctx.dir, ctx.start);
    let name = path.display();
    let data = read_limited(&path, ctx.read_limit)?;
    let scan = format::scan_records(&data);
    let newest = ctx.next_start.is_none();
    let mut keep_len = data.len();
    for region in &scan.bad {
        let (at, len) = (region.bytes.start, region.bytes.len());
        if region.at_end && newest {
            replay.torn_tail_bytes += len as u64;
            keep_len = at;
            replay.warnings.push(format!(
                "{name}: cut off {len} bytes at offset {at}, the remains of an interrupted append"
            ));
        } else {
            let damaged = region.headers.max(1);
            replay.corrupt_records += damaged;
            replay.warnings.push(format!(
                "{name}: skipped {damaged} damaged record(s), {len} bytes at offset {at} \
                 (checksum mismatch)"
            ));
        }
    }

    // Ids are consecutive and a record takes at least a header, which bounds the ids this file
    // can hold (and the pending bitmap's size).
    let mut id_limit = ctx.start.saturating_add(data.len() as u64 / HEADER_LEN + 1);
    if let Some(next_start) = ctx.next_start {
        id_limit = id_limit.min(next_start);
    }
    let mut next_id = ctx.start;
    let mut records = Vec::with_capacity(scan.records.len());
    // Ids whose record is damaged stay used: the previous run may have handed them out.
    let damaged_ids = scan.bad.iter().filter_map(|region| region.max_header_id);
    let above_damaged = damaged_ids
        .filter(|id| (ctx.start..id_limit).contains(id))
        .max()
        .map_or(ctx.start, |id| id + 1);
    for record in scan.records {
        if record.id < next_id || record.id >= id_limit {
            replay.corrupt_records += 1;
            replay.warnings.push(format!(
                "{name}: skipped record with out-of-place id {}",
                record.id
            ));
            continue;
        }
        next_id = record.id + 1;
        records.push(record);
    }

    next_id = next_id.max(above_damaged);
    let mut segment = Segment::empty();
    let mut acked = Vec::new();
    if ctx.has_acks {
        let ack_file = ack_path(ctx.dir, ctx.start);
        let ack_data = read_limited(&ack_file, ctx.read_limit)?;
        let (ids, skipped) = format::scan_acks(&ack_data);
        if skipped > 0 {
            replay.warnings.push(format!(
                "{}: skipped {skipped} unreadable bytes; records acknowledged there will be \
                 delivered again",
                ack_file.display()
            ));
        }
        segment.ack_bytes = ack_data.len() as u64;
        acked = ids;
        acked.retain(|id| (ctx.start..id_limit).contains(id));
        acked.sort_unstable();
        if let Some(last) = acked.last() {
            next_id = next_id.max(last + 1);
        }
    }

    segment.len = keep_len as u64;
    for record in records {
        segment.records += 1;
        if acked.binary_search(&record.id).is_err() {
            segment.pending.insert(record.id - ctx.start);
            let payload = data[record.payload].to_vec();
            replay.records.push((RecordId(record.id), payload));
        }
    }
    if segment.pending.count == 0 {
        return Ok((None, next_id));
    }
    if keep_len < data.len() {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.set_len(segment.len).map_err(io_error(&path))?;
        if ctx.fsync != FsyncPolicy::Never {
            file.sync_data().map_err(io_error(&path))?;
        }
    }
    Ok((Some(segment), next_id))
}

fn remove_if_exists(path: &Path) -> Result<(), WalError> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(err)),
        _ => Ok(()),
    }
}

/// Data before acks, as at run time: a crash in between leaves only an orphan ack file.
fn remove_segment_files(dir: &Path, start: u64) -> Result<(), WalError> {
    remove_if_exists(&segment_path(dir, start))?;
    remove_if_exists(&ack_path(dir, start))
}
