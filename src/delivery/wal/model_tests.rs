//! Property-style test: seeded random sequences of append / ack / sync / reopen / crash /
//! corruption, checked after every step against a model (a map of unacknowledged records).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::format::{self, ACK_LEN, HEADER_LEN};
use super::tests::{disk_bytes, replayed_ids, segments};
use super::*;

struct Run {
    rng: fastrand::Rng,
    dir: tempfile::TempDir,
    opts: WalOptions,
    wal: Option<Wal>,
    /// Unacknowledged records: what a reopen must replay, in this order.
    model: BTreeMap<u64, Vec<u8>>,
    acked: Vec<u64>,
    last_id: u64,
    /// Corruption was injected: later opens may report it again until its segment is deleted.
    damaged: bool,
}

impl Run {
    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open")
    }

    fn reopen(&mut self, expect_torn: u64) {
        self.wal = None;
        let (wal, replay) = Wal::open(self.dir.path(), self.opts.clone()).expect("reopen");
        let want: Vec<(RecordId, Vec<u8>)> = self
            .model
            .iter()
            .map(|(id, p)| (RecordId(*id), p.clone()))
            .collect();
        assert_eq!(
            replayed_ids(&replay),
            want.iter().map(|r| r.0.0).collect::<Vec<_>>()
        );
        assert_eq!(replay.records, want);
        assert_eq!(replay.torn_tail_bytes, expect_torn, "{:?}", replay.warnings);
        if !self.damaged {
            assert_eq!(replay.corrupt_records, 0, "{:?}", replay.warnings);
            assert_eq!(replay.warnings.len(), usize::from(expect_torn > 0));
        }
        self.wal = Some(wal);
    }

    fn append(&mut self) {
        let len = if self.rng.u8(..) == 0 {
            self.rng.usize(0..4096) // sometimes larger than a segment, or than the whole log
        } else {
            self.rng.usize(0..200)
        };
        let payload: Vec<u8> = (0..len).map(|_| self.rng.u8(..)).collect();
        let needed = HEADER_LEN + len as u64 + ACK_LEN;
        let before = self.wal().size_bytes();
        match self.wal().append(&payload) {
            Ok(id) => {
                assert!(id.0 > self.last_id);
                self.last_id = id.0;
                self.model.insert(id.0, payload);
            }
            Err(WalError::Full { size, max }) => {
                assert!(size + needed > max && size <= before);
            }
            Err(WalError::TooLarge { .. }) => assert!(needed > self.opts.max_size_bytes),
            Err(other) => panic!("append failed: {other}"),
        }
    }

    fn ack(&mut self) {
        if self.rng.u8(0..8) == 0 && !self.acked.is_empty() {
            let again = self.acked[self.rng.usize(..self.acked.len())];
            self.wal()
                .ack(RecordId(again))
                .expect("repeated ack is a no-op");
            return;
        }
        if self.model.is_empty() {
            return;
        }
        // Mostly oldest-first like a queue, sometimes any pending record.
        let index = if self.rng.bool() {
            0
        } else {
            self.rng.usize(..self.model.len())
        };
        let id = *self.model.keys().nth(index).expect("index in range");
        self.wal().ack(RecordId(id)).expect("ack");
        self.model.remove(&id);
        self.acked.push(id);
    }

    /// Drop without sync, optionally leaving half of a record at the end of the active segment
    /// as an append interrupted by the crash would.
    fn crash(&mut self) {
        self.wal = None;
        let mut torn = 0;
        if self.rng.bool() {
            let newest = *segments(self.dir.path()).last().expect("active segment");
            let mut record = Vec::new();
            let payload: Vec<u8> = (0..self.rng.usize(1..100))
                .map(|_| self.rng.u8(..))
                .collect();
            format::encode_record(&mut record, self.last_id + 1, &payload);
            record.truncate(self.rng.usize(1..record.len()));
            torn = record.len() as u64;
            let path = segment_path(self.dir.path(), newest);
            let mut data = std::fs::read(&path).expect("read");
            data.extend_from_slice(&record);
            std::fs::write(&path, data).expect("write");
        }
        self.reopen(torn);
    }

    /// Flip one payload byte of a random unacknowledged record; it must not come back.
    fn corrupt(&mut self) {
        self.wal = None;
        let mut candidates = Vec::new();
        for start in segments(self.dir.path()) {
            let path = segment_path(self.dir.path(), start);
            let data = std::fs::read(&path).expect("read");
            for found in format::scan_records(&data).records {
                if self.model.contains_key(&found.id) && !found.payload.is_empty() {
                    candidates.push((path.clone(), found));
                }
            }
        }
        if candidates.is_empty() {
            return self.reopen(0);
        }
        let (path, found) = candidates.swap_remove(self.rng.usize(..candidates.len()));
        let mut data = std::fs::read(&path).expect("read");
        data[self.rng.usize(found.payload.clone())] ^= 1 << self.rng.u8(0..8);
        std::fs::write(&path, data).expect("write");
        self.model.remove(&found.id);
        self.damaged = true;

        let (wal, replay) = Wal::open(self.dir.path(), self.opts.clone()).expect("open");
        let want: Vec<u64> = self.model.keys().copied().collect();
        assert_eq!(replayed_ids(&replay), want);
        assert!(replay.corrupt_records + u64::from(replay.torn_tail_bytes > 0) >= 1);
        self.wal = Some(wal);
    }

    fn check_invariants(&self) {
        let wal = self.wal();
        assert_eq!(wal.pending(), self.model.len());
        let size = wal.size_bytes();
        let disk = disk_bytes(self.dir.path());
        assert!(disk <= size, "disk {disk} > accounted {size}");
        assert!(size <= self.opts.max_size_bytes, "{size} over the limit");
        // Every segment but the active one still holds an unacknowledged record.
        let starts = segments(self.dir.path());
        for pair in starts.windows(2) {
            assert!(
                self.model.range(pair[0]..pair[1]).next().is_some(),
                "segment {} should have been deleted",
                pair[0]
            );
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let fsync = match seed % 8 {
        0 => FsyncPolicy::Always,
        1 | 2 => FsyncPolicy::Interval(Duration::ZERO),
        3 => FsyncPolicy::Interval(Duration::from_secs(3600)),
        _ => FsyncPolicy::Never,
    };
    let opts = WalOptions {
        max_size_bytes: rng.u64(2048..16384),
        segment_bytes: rng.u64(100..2048),
        fsync,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, replay) = Wal::open(dir.path(), opts.clone()).expect("open");
    assert!(replay.records.is_empty());
    let mut run = Run {
        rng,
        dir,
        opts,
        wal: Some(wal),
        model: BTreeMap::new(),
        acked: Vec::new(),
        last_id: 0,
        damaged: false,
    };
    for _ in 0..steps {
        match run.rng.u8(0..100) {
            0..=49 => run.append(),
            50..=79 => run.ack(),
            80..=84 => run.wal().sync().expect("sync"),
            85..=91 => {
                run.wal().sync().expect("sync");
                run.reopen(0);
            }
            92..=97 => run.crash(),
            _ => run.corrupt(),
        }
        run.check_invariants();
    }
    // Acknowledge everything: the directory must shrink to one empty active segment.
    let pending: Vec<u64> = run.model.keys().copied().collect();
    for id in pending {
        run.wal().ack(RecordId(id)).expect("ack");
        run.model.remove(&id);
    }
    run.reopen(0);
    assert_eq!(run.wal().size_bytes(), 0);
    assert_eq!(segments(run.dir.path()).len(), 1);
    assert_eq!(only_acks(run.dir.path()), 0);
}

fn only_acks(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ack"))
        })
        .count()
}

#[test]
fn random_operations_match_the_model() {
    for seed in 0..32 {
        run(seed, 400);
    }
}
