//! Write-ahead log behind the persistent sending queue (`sending_queue.storage`).
//!
//! The queue appends each batch (already encoded) before it acknowledges the client, and acks
//! the record once the backend accepted it; after a restart every record that was appended and
//! not acknowledged is replayed, in append order, before new data is accepted.
//!
//! # Layout of the directory
//! - `NNNNNNNNNNNNNNNNNNNN.wal` — a segment, named by the id of its first record (20 digits, so
//!   names sort like ids). Append-only; the newest one is the *active* segment. Record ids are
//!   consecutive within a segment and keep increasing across segments and restarts (an id can
//!   be issued again only after a machine crash destroyed every trace of its record).
//! - `NNNNNNNNNNNNNNNNNNNN.ack` — the ids acknowledged so far in that segment, append-only.
//!   Acks are written to a side file (rather than compacting segments) so acknowledging costs one
//!   16-byte append and never rewrites payload data.
//! - `lock` — held with an exclusive file lock while a `Wal` is open, so two processes cannot
//!   share a directory (the kernel drops the lock when a process dies, even by `kill -9`).
//!
//! A segment whose records are all acknowledged is deleted (`.wal` first, then `.ack`: a crash
//! in between leaves an orphan `.ack` that the next open removes, never a segment that lost its
//! acks), unless it is the active one; the active segment is closed ("rolled") when the next record
//! would take it past the segment size. Every open starts a fresh active segment.
//!
//! Record format and damage detection: see `wal/format.rs`. Each record carries a magic
//! marker, its length, its id and two CRC32s (one over the header, so a damaged length is never
//! trusted, one over the payload).
//!
//! # Bad input
//! Opening never panics on a damaged directory. Damaged records are skipped and the scan
//! resynchronises at the next magic marker, so every intact record after them is still replayed;
//! each damaged stretch is a line in [`Replay::warnings`] and is counted in
//! [`Replay::corrupt_records`]. Damage that runs to the end of the newest segment is what an
//! interrupted append leaves behind: it is reported as [`Replay::torn_tail_bytes`] and cut off the
//! file. Unknown files are reported and left alone; orphan ack files and segments without any
//! unacknowledged intact record are deleted. A path that is not a directory, a directory that
//! cannot be written or is locked by another process, and a segment file far larger than any
//! this configuration writes are errors from [`Wal::open`]. At run time a failing write (full
//! disk, removed directory) is a [`WalError`] and leaves the log consistent: the half-written
//! record is cut off (or, if even that fails, the next append starts a new segment).
//!
//! # Size bound
//! [`Wal::size_bytes`] counts each live segment plus the 16 bytes its ack file will need for each
//! of its records, so the directory never grows past `max_size_bytes` through appends; an append
//! that would cross it fails with [`WalError::Full`] (retryable: acks free whole segments). A
//! segment is at most a quarter of `max_size_bytes` (whatever `segment_bytes` says) so one
//! partly acknowledged segment cannot pin the whole budget.
//!
//! # Durability and duplicates (at-least-once)
//! A process crash (`kill -9`, panic, OOM kill) loses nothing: an append or ack is in the
//! kernel's page cache when the call returns. `fsync` only matters when the machine itself goes
//! down (kernel crash, power or VM loss):
//! - [`FsyncPolicy::Always`]: `append` returns after the record (and, for a new segment, the
//!   directory entry) is on stable storage; `ack` after the ack entry is. Nothing acknowledged to a
//!   client is lost.
//! - [`FsyncPolicy::Interval`]: records and acks reach stable storage at the next [`Wal::sync`]
//!   (called by the queue's timer) or at the first append after the interval elapsed, whichever
//!   is first. A machine crash loses at most the records appended within about one interval.
//! - [`FsyncPolicy::Never`]: the kernel writes back when it likes (Linux: typically within ~30 s);
//!   a machine crash can lose anything appended since then. [`Wal::sync`] still syncs on demand.
//!
//! Duplicates: a record is delivered again after restart when the backend accepted it but its ack
//! was not yet written (in flight at the crash) or, after a machine crash, not yet synced (under
//! `Interval` the acks of the last interval, under `Never` any unflushed ack). If `fsync` itself
//! fails during `append`, the append returns an error and the record is acked at once, so the
//! client's retry does not become a duplicate.

mod format;
mod pending;
mod recover;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use format::{ACK_LEN, HEADER_LEN};
use pending::PendingSet;

/// When appended data is forced to stable storage. See the module docs for what each risks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Upper bound for the directory; appends beyond it fail with [`WalError::Full`].
    pub max_size_bytes: u64,
    /// A segment rolls over when the next record would take it past this size
    /// ([`WalOptions::DEFAULT_SEGMENT_BYTES`] unless configured).
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl WalOptions {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

    /// The segment size actually used: see "Size bound" in the module docs.
    fn segment_limit(&self) -> u64 {
        self.segment_bytes.min(self.max_size_bytes / 4).max(1)
    }
}

/// Identifies an appended record; increases with every append, across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

/// What [`Wal::open`] found on disk.
#[derive(Debug, Default)]
pub struct Replay {
    /// Unacknowledged intact records, in append order.
    pub records: Vec<(RecordId, Vec<u8>)>,
    /// Damaged records skipped (a damaged stretch without a readable header counts as one).
    pub corrupt_records: u64,
    /// Bytes of an interrupted append cut off the end of the newest segment.
    pub torn_tail_bytes: u64,
    /// One line per problem found (damage, unknown files), for the log.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log is full: {size} of {max} bytes in use")]
    Full { size: u64, max: u64 },
    #[error("write-ahead log I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write-ahead log directory {path} exists and is not a directory")]
    NotADirectory { path: String },
    #[error("write-ahead log directory {path} is in use by another weft process (locked)")]
    Locked { path: String },
    #[error("record of {len} bytes can never fit a write-ahead log of at most {max} bytes")]
    TooLarge { len: u64, max: u64 },
    #[error(
        "write-ahead log segment {path} is {len} bytes, over the {limit} bytes this \
         configuration could have written; move it away or raise the size limits"
    )]
    SegmentTooLarge { path: String, len: u64, limit: u64 },
    #[error("record id {id} was never issued by this write-ahead log")]
    UnknownRecord { id: u64 },
}

impl WalError {
    /// Whether trying again later can succeed (the queue refuses with a retryable answer).
    pub fn is_retryable(&self) -> bool {
        matches!(self, WalError::Full { .. } | WalError::Io { .. })
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.wal"))
}

fn ack_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.ack"))
}

/// The write-ahead log. All methods take `&self`; state sits behind one mutex, and `fsync`s run
/// after it is released so a slow disk does not serialise unrelated appends and acks.
pub struct Wal {
    inner: Mutex<Inner>,
    /// Held across taking and running a sync, so `sync()` returning means everything written
    /// before the call is durable even when another sync was already in flight.
    sync_lock: Mutex<()>,
}

#[derive(Debug)]
struct Segment {
    /// Length of the `.wal` file: intact records and any damaged stretches between them.
    len: u64,
    /// Intact records in the file, acknowledged or not.
    records: u64,
    /// Bytes in the `.ack` file.
    ack_bytes: u64,
    pending: PendingSet,
    ack_file: Option<Arc<File>>,
    ack_dirty: bool,
}

impl Segment {
    fn empty() -> Segment {
        Segment {
            len: 0,
            records: 0,
            ack_bytes: 0,
            pending: PendingSet::default(),
            ack_file: None,
            ack_dirty: false,
        }
    }

    /// Bytes this segment may occupy: its records plus room to acknowledge all of them.
    fn footprint(&self) -> u64 {
        self.len + self.ack_bytes.max(self.records * ACK_LEN)
    }
}

struct Active {
    start: u64,
    file: Arc<File>,
    dirty: bool,
    /// A failed write could not be cut off again: start a new segment before the next append.
    broken: bool,
}

/// Files to fsync, collected under the state lock and synced after releasing it.
#[derive(Default)]
struct SyncWork {
    files: Vec<(Arc<File>, PathBuf)>,
    dir: Option<PathBuf>,
}

impl SyncWork {
    /// Syncs everything even after a failure (the dirty flags are already cleared) and
    /// reports the first error.
    fn run(self) -> Result<(), WalError> {
        let mut first_error = None;
        for (file, path) in &self.files {
            if let Err(err) = file.sync_data() {
                first_error.get_or_insert(io_error(path)(err));
            }
        }
        if let Some(dir) = &self.dir
            && let Err(err) = sync_dir(dir)
        {
            first_error.get_or_insert(err);
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

struct Inner {
    dir: PathBuf,
    opts: WalOptions,
    /// Live segments by first id; the last one is the active segment.
    segments: BTreeMap<u64, Segment>,
    active: Active,
    next_id: u64,
    size: u64,
    pending: usize,
    /// The directory changed (segment created or deleted) since the last sync.
    dir_dirty: bool,
    /// Rolled-over segments with data not yet synced (Interval / Never).
    unsynced: Vec<(Arc<File>, PathBuf)>,
    /// A fully acknowledged segment could not be deleted; retry on the next append or ack.
    gc_pending: bool,
    last_sync: Instant,
    scratch: Vec<u8>,
    _lock: File,
}

impl Wal {
    /// Opens (creating if missing) the log in `dir` and returns what must be replayed.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Replay), WalError> {
        let (inner, replay) = recover::open(dir, opts)?;
        let wal = Wal {
            inner: Mutex::new(inner),
            sync_lock: Mutex::new(()),
        };
        Ok((wal, replay))
    }

    fn state(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one record and makes it as durable as the fsync policy promises.
    pub fn append(&self, payload: &[u8]) -> Result<RecordId, WalError> {
        let (id, own_work) = {
            let mut inner = self.state();
            let id = inner.append(payload)?;
            let own_work = match inner.opts.fsync {
                FsyncPolicy::Always => Some(inner.always_work()),
                // Overdue: sync everything now rather than wait for the queue's timer.
                FsyncPolicy::Interval(every) if inner.last_sync.elapsed() >= every => None,
                _ => return Ok(RecordId(id)),
            };
            (id, own_work)
        };
        let synced = match own_work {
            Some(work) => work.run(),
            None => self.sync(),
        };
        if let Err(err) = synced {
            // The caller treats this append as refused and retries: don't replay it as well.
            let _ = self.ack(RecordId(id));
            return Err(err);
        }
        Ok(RecordId(id))
    }

    /// Marks a record delivered. Acking an id twice, or one whose segment is gone, is a no-op.
    pub fn ack(&self, id: RecordId) -> Result<(), WalError> {
        let work = self.state().ack(id.0)?;
        match work {
            Some(work) => work.run(),
            None => Ok(()),
        }
    }

    /// Forces everything written so far to stable storage, whatever the policy.
    pub fn sync(&self) -> Result<(), WalError> {
        let _one_at_a_time = self
            .sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let work = self.state().take_sync_work();
        work.run()
    }

    /// Bytes accounted against `max_size_bytes` (see "Size bound" in the module docs).
    pub fn size_bytes(&self) -> u64 {
        self.state().size
    }

    /// Unacknowledged records.
    pub fn pending(&self) -> usize {
        self.state().pending
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.state();
        f.debug_struct("Wal")
            .field("dir", &inner.dir)
            .field("segments", &inner.segments.len())
            .field("size", &inner.size)
            .field("pending", &inner.pending)
            .finish()
    }
}

impl Inner {
    fn append(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        let max = self.opts.max_size_bytes;
        let record_len = HEADER_LEN + payload.len() as u64;
        let needed = record_len + ACK_LEN;
        if u32::try_from(payload.len()).is_err() || needed > max {
            return Err(WalError::TooLarge {
                len: payload.len() as u64,
                max,
            });
        }
        if self.gc_pending {
            self.collect_garbage();
        }
        let active_len = self.active_segment().len;
        if self.active.broken
            || (active_len > 0 && active_len + record_len > self.opts.segment_limit())
        {
            self.roll()?;
        }
        if self.size + needed > max {
            let active = self.active_segment();
            if active.len > 0 && active.pending.count == 0 {
                // Only acknowledged records hold the space: close the segment to free it.
                self.roll()?;
            }
            if self.size + needed > max {
                return Err(WalError::Full {
                    size: self.size,
                    max,
                });
            }
        }

        let id = self.next_id;
        self.scratch.clear();
        format::encode_record(&mut self.scratch, id, payload);
        let start = self.active.start;
        if let Err(source) = (&*self.active.file).write_all(&self.scratch) {
            // The file is opened for append: cutting it back puts the next record right after
            // the last intact one.
            let old_len = self.active_segment().len;
            if self.active.file.set_len(old_len).is_err() {
                self.active.broken = true;
            }
            return Err(WalError::Io {
                path: segment_path(&self.dir, start).display().to_string(),
                source,
            });
        }
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = Vec::new();
        }
        let segment = self.segments.entry(start).or_insert_with(Segment::empty);
        let before = segment.footprint();
        segment.len += record_len;
        segment.records += 1;
        segment.pending.insert(id - start);
        self.size = self.size - before + segment.footprint();
        self.pending += 1;
        self.next_id += 1;
        self.active.dirty = true;
        Ok(id)
    }

    fn active_segment(&mut self) -> &mut Segment {
        self.segments
            .entry(self.active.start)
            .or_insert_with(Segment::empty)
    }

    /// Closes the active segment and starts a new one at the next id.
    fn roll(&mut self) -> Result<(), WalError> {
        let old_start = self.active.start;
        let old_records = self.active_segment().records;
        let path = segment_path(&self.dir, old_start);
        if old_records == 0 {
            // Nothing in it (a failed first write): start it over under the same name.
            std::fs::remove_file(&path).map_err(io_error(&path))?;
            let file = recover::create_segment(&self.dir, old_start)?;
            *self.active_segment() = Segment::empty();
            self.active = Active::new(old_start, file);
            self.dir_dirty = true;
            return Ok(());
        }
        let start = self.next_id;
        let file = recover::create_segment(&self.dir, start)?;
        let old = std::mem::replace(&mut self.active, Active::new(start, file));
        self.segments.insert(start, Segment::empty());
        self.dir_dirty = true;
        if old.dirty && self.opts.fsync != FsyncPolicy::Always {
            self.unsynced.push((old.file, path));
        }
        if self
            .segments
            .get(&old_start)
            .is_some_and(|s| s.pending.count == 0)
        {
            self.delete_segment(old_start);
        }
        Ok(())
    }

    fn ack(&mut self, id: u64) -> Result<Option<SyncWork>, WalError> {
        if id >= self.next_id {
            return Err(WalError::UnknownRecord { id });
        }
        if self.gc_pending {
            self.collect_garbage();
        }
        let always = self.opts.fsync == FsyncPolicy::Always;
        let active_start = self.active.start;
        let Some((&start, segment)) = self.segments.range_mut(..=id).next_back() else {
            return Ok(None);
        };
        if !segment.pending.contains(id - start) {
            return Ok(None);
        }
        let path = ack_path(&self.dir, start);
        let file = match &segment.ack_file {
            Some(file) => Arc::clone(file),
            None => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_error(&path))?;
                let file = Arc::new(file);
                segment.ack_file = Some(Arc::clone(&file));
                self.dir_dirty = true;
                file
            }
        };
        let before = segment.footprint();
        let written = (&*file).write_all(&format::encode_ack(id));
        if let Err(source) = written {
            // A partial entry is skipped by the reader; only the byte count needs fixing.
            if let Ok(meta) = file.metadata() {
                segment.ack_bytes = meta.len();
                self.size = self.size - before + segment.footprint();
            }
            return Err(WalError::Io {
                path: path.display().to_string(),
                source,
            });
        }
        segment.ack_bytes += ACK_LEN;
        segment.pending.remove(id - start);
        let emptied = segment.pending.count == 0 && start != active_start;
        if !always {
            segment.ack_dirty = true;
        }
        self.size = self.size - before + segment.footprint();
        self.pending -= 1;
        if emptied {
            self.delete_segment(start);
        }
        if !always {
            return Ok(None);
        }
        let mut work = SyncWork::default();
        if !emptied {
            work.files.push((file, path));
        }
        if std::mem::take(&mut self.dir_dirty) {
            work.dir = Some(self.dir.clone());
        }
        Ok(Some(work))
    }

    /// Removes a fully acknowledged, inactive segment. A failure is retried later rather than
    /// failing the ack that triggered it: the acks are safe on disk either way.
    fn delete_segment(&mut self, start: u64) {
        let path = segment_path(&self.dir, start);
        if let Err(err) = std::fs::remove_file(&path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            let path = path.display();
            tracing::warn!(%path, %err, "cannot delete acknowledged WAL segment; will retry");
            self.gc_pending = true;
            return;
        }
        let ack = ack_path(&self.dir, start);
        if let Err(err) = std::fs::remove_file(&ack)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            let path = ack.display();
            tracing::warn!(%path, %err, "cannot delete WAL ack file; the next open removes it");
        }
        if let Some(segment) = self.segments.remove(&start) {
            self.size -= segment.footprint();
        }
        self.dir_dirty = true;
    }

    fn collect_garbage(&mut self) {
        self.gc_pending = false;
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(start, s)| **start != self.active.start && s.pending.count == 0)
            .map(|(start, _)| *start)
            .collect();
        for start in done {
            self.delete_segment(start);
        }
    }

    /// What an `Always` append must sync: the active segment and, after a roll, the directory.
    fn always_work(&mut self) -> SyncWork {
        self.active.dirty = false;
        let path = segment_path(&self.dir, self.active.start);
        SyncWork {
            files: vec![(Arc::clone(&self.active.file), path)],
            dir: std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone()),
        }
    }

    fn take_sync_work(&mut self) -> SyncWork {
        self.last_sync = Instant::now();
        let mut files = std::mem::take(&mut self.unsynced);
        if std::mem::take(&mut self.active.dirty) {
            let path = segment_path(&self.dir, self.active.start);
            files.push((Arc::clone(&self.active.file), path));
        }
        for (start, segment) in &mut self.segments {
            if std::mem::take(&mut segment.ack_dirty)
                && let Some(file) = &segment.ack_file
            {
                files.push((Arc::clone(file), ack_path(&self.dir, *start)));
            }
        }
        SyncWork {
            files,
            dir: std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone()),
        }
    }
}

impl Active {
    fn new(start: u64, file: File) -> Active {
        Active {
            start,
            file: Arc::new(file),
            dirty: false,
            broken: false,
        }
    }
}
