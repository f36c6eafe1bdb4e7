use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::format::{ACK_LEN, HEADER_LEN};
use super::*;

pub(super) fn options(max_size_bytes: u64, segment_bytes: u64) -> WalOptions {
    WalOptions {
        max_size_bytes,
        segment_bytes,
        fsync: FsyncPolicy::Never,
    }
}

/// 40-byte payloads make 64-byte records: four fill a 256-byte segment.
fn payload(n: u64) -> Vec<u8> {
    format!("payload {n:>32}").into_bytes()
}

pub(super) fn replayed_ids(replay: &Replay) -> Vec<u64> {
    replay.records.iter().map(|(id, _)| id.0).collect()
}

/// Segment starts in the directory, oldest first.
pub(super) fn segments(dir: &Path) -> Vec<u64> {
    let mut starts: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".wal")?.parse().ok()
        })
        .collect();
    starts.sort_unstable();
    starts
}

pub(super) fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "lock" && e.file_type().unwrap().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn append_n(wal: &Wal, range: std::ops::Range<u64>) -> Vec<RecordId> {
    range.map(|n| wal.append(&payload(n)).unwrap()).collect()
}

#[test]
fn append_ack_reopen_cycles_replay_exactly_the_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut last_id = 0;
    for round in 0..5u64 {
        let (wal, replay) = Wal::open(dir.path(), options(1 << 20, 512)).unwrap();
        let want: Vec<(RecordId, Vec<u8>)> = expected
            .iter()
            .map(|(id, p)| (RecordId(*id), p.clone()))
            .collect();
        assert_eq!(replay.records, want, "round {round}");
        assert_eq!((replay.corrupt_records, replay.torn_tail_bytes), (0, 0));
        assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
        assert_eq!(wal.pending(), expected.len());
        for n in 0..40 {
            let p = payload(round * 100 + n);
            let id = wal.append(&p).unwrap();
            assert!(id.0 > last_id, "ids keep increasing across restarts");
            last_id = id.0;
            expected.insert(id.0, p);
        }
        let to_ack: Vec<u64> = expected.keys().copied().step_by(2).collect();
        for id in to_ack {
            wal.ack(RecordId(id)).unwrap();
            expected.remove(&id);
        }
        assert_eq!(wal.pending(), expected.len());
        if round % 2 == 0 {
            wal.sync().unwrap();
        }
    }
}

#[test]
fn acked_records_are_never_replayed_and_ids_survive_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    let ids = append_n(&wal, 0..20);
    for id in &ids {
        wal.ack(*id).unwrap();
    }
    drop(wal); // no sync: a process crash keeps everything the kernel has
    let (wal, replay) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    assert!(replay.records.is_empty());
    assert_eq!(wal.pending(), 0);
    assert_eq!(segments(dir.path()).len(), 1, "only the new active segment");
    let next = wal.append(b"x").unwrap();
    assert!(next > ids[19]);
    drop(wal);
    let (wal, replay) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    assert_eq!(replayed_ids(&replay), vec![next.0]);
    wal.ack(next).unwrap();
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    assert!(wal.append(b"y").unwrap() > next);
}

#[test]
fn unacked_records_replay_in_append_order_across_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    let ids = append_n(&wal, 0..50);
    drop(wal);
    for _ in 0..3 {
        let (_wal, replay) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
        assert_eq!(replay.records.len(), 50);
        for (n, (id, p)) in replay.records.iter().enumerate() {
            assert_eq!((*id, p), (ids[n], &payload(n as u64)));
        }
    }
}

#[test]
fn torn_tail_and_flipped_byte_skip_only_the_damaged_records() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    let ids = append_n(&wal, 0..30); // 4 records per segment
    drop(wal);
    let starts = segments(dir.path());
    // Second record of the first segment: one bit of its payload.
    let first = segment_path(dir.path(), starts[0]);
    let mut data = std::fs::read(&first).unwrap();
    data[64 + HEADER_LEN as usize + 5] ^= 0x08;
    std::fs::write(&first, &data).unwrap();
    // Last record of the newest segment: cut in the middle, as a crash mid-append leaves it.
    let newest = segment_path(dir.path(), *starts.last().unwrap());
    let file = OpenOptions::new().write(true).open(&newest).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - 10).unwrap();
    drop(file);

    let (wal, replay) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    let intact: Vec<u64> = ids[..29]
        .iter()
        .map(|i| i.0)
        .filter(|&i| i != ids[1].0)
        .collect();
    assert_eq!(replayed_ids(&replay), intact);
    for (id, p) in &replay.records {
        let n = ids.iter().position(|i| i == id).unwrap() as u64;
        assert_eq!(p, &payload(n));
    }
    assert_eq!(replay.corrupt_records, 1);
    assert_eq!(replay.torn_tail_bytes, 64 - 10);
    assert_eq!(replay.warnings.len(), 2, "{:?}", replay.warnings);
    assert_eq!(wal.pending(), 28);
    drop(wal);

    // The torn tail was cut off; the corrupt record stays reported until its segment goes.
    let (wal, replay) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    assert_eq!(replayed_ids(&replay), intact);
    assert_eq!((replay.corrupt_records, replay.torn_tail_bytes), (1, 0));
    for id in &intact {
        wal.ack(RecordId(*id)).unwrap();
    }
    drop(wal);
    let (_wal, replay) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    assert!(replay.records.is_empty());
    assert_eq!((replay.corrupt_records, replay.torn_tail_bytes), (0, 0));
    assert!(replay.warnings.is_empty(), "{:?}", replay.warnings);
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn fully_acked_segments_are_deleted_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    let ids = append_n(&wal, 0..12); // segments [0..4) [4..8) [8..12), the last active
    let per_segment = 4 * (64 + ACK_LEN);
    assert_eq!(segments(dir.path()).len(), 3);
    assert_eq!(wal.size_bytes(), 3 * per_segment);

    for id in &ids[..3] {
        wal.ack(*id).unwrap();
    }
    assert_eq!(segments(dir.path()).len(), 3);
    wal.ack(ids[3]).unwrap();
    assert_eq!(segments(dir.path()), vec![ids[4].0, ids[8].0]);
    assert!(!ack_path(dir.path(), ids[0].0).exists());
    assert_eq!(wal.size_bytes(), 2 * per_segment);

    for id in [ids[7], ids[5], ids[4], ids[6]] {
        wal.ack(id).unwrap();
    }
    assert_eq!(segments(dir.path()), vec![ids[8].0]);
    for id in &ids[8..] {
        wal.ack(*id).unwrap();
    }
    assert_eq!(segments(dir.path()), vec![ids[8].0], "active segment stays");
    assert_eq!(wal.pending(), 0);

    let next = wal.append(&payload(99)).unwrap(); // rolls; the acked segment goes
    assert_eq!(segments(dir.path()), vec![next.0]);
    assert_eq!(wal.size_bytes(), 64 + ACK_LEN);
    assert_eq!(disk_bytes(dir.path()), 64);
}

#[test]
fn full_at_max_size_and_recovers_after_acks() {
    let dir = tempfile::tempdir().unwrap();
    let max = 2048; // segments of 512 bytes: 8 records of 64 bytes
    let (wal, _) = Wal::open(dir.path(), options(max, 512)).unwrap();
    let fill = |from: u64| {
        let mut ids = Vec::new();
        loop {
            match wal.append(&payload(from + ids.len() as u64)) {
                Ok(id) => ids.push(id),
                Err(err) => return (ids, err),
            }
            assert!(ids.len() < 100, "never became full");
        }
    };
    let (ids, err) = fill(0);
    match err {
        WalError::Full { size, max: m } => {
            assert_eq!(m, max);
            assert!(size + 64 + ACK_LEN > max && size <= max);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(err_is_retryable(wal.append(&payload(999))));
    assert_eq!(ids.len(), (max / (64 + ACK_LEN)) as usize); // 3 full segments + 1 record
    assert_eq!(wal.pending(), ids.len());
    assert!(disk_bytes(dir.path()) <= max);

    // One ack frees nothing: its segment still holds pending records.
    wal.ack(ids[0]).unwrap();
    assert!(matches!(
        wal.append(&payload(999)),
        Err(WalError::Full { .. })
    ));
    // The active segment holding only acked records is rolled away to make room.
    wal.ack(ids[24]).unwrap();
    let (more, _) = fill(100);
    assert_eq!(more.len(), 1);
    // Acking the rest of the first segment frees all of it.
    for id in &ids[1..8] {
        wal.ack(*id).unwrap();
    }
    let (more2, _) = fill(200);
    assert_eq!(more2.len(), 8);
    assert!(disk_bytes(dir.path()) <= max && wal.size_bytes() <= max);

    for id in ids[8..24].iter().chain(&more).chain(&more2) {
        wal.ack(*id).unwrap();
    }
    let (last, _) = fill(300);
    assert!(last.len() >= 16, "{}", last.len());
    drop(wal);
    let (_wal, replay) = Wal::open(dir.path(), options(max, 512)).unwrap();
    assert_eq!(
        replayed_ids(&replay),
        last.iter().map(|i| i.0).collect::<Vec<_>>()
    );
}

fn err_is_retryable<T>(result: Result<T, WalError>) -> bool {
    result.is_err_and(|e| e.is_retryable())
}

#[test]
fn lowered_max_size_on_reopen_refuses_appends_until_acks_drain() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    let ids = append_n(&wal, 0..40);
    drop(wal);
    let (wal, replay) = Wal::open(dir.path(), options(1024, 256)).unwrap();
    assert_eq!(replay.records.len(), 40);
    assert!(replay.warnings.iter().any(|w| w.contains("over the limit")));
    assert!(matches!(wal.append(b"x"), Err(WalError::Full { .. })));
    for id in &ids {
        wal.ack(*id).unwrap();
    }
    wal.append(b"x").unwrap();
}

#[test]
fn oversized_record_is_refused_permanently() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1024, 256)).unwrap();
    let err = wal.append(&[0u8; 1000]).unwrap_err();
    assert!(matches!(
        err,
        WalError::TooLarge {
            len: 1000,
            max: 1024
        }
    ));
    assert!(!err.is_retryable());
    assert_eq!((wal.pending(), wal.size_bytes()), (0, 0));
    // A record bigger than a segment still fits in one of its own.
    wal.append(&[7u8; 600]).unwrap();
}

#[test]
fn ack_is_idempotent_and_rejects_ids_never_issued() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 256)).unwrap();
    let ids = append_n(&wal, 0..6);
    wal.ack(ids[0]).unwrap();
    wal.ack(ids[0]).unwrap();
    assert_eq!(wal.pending(), 5);
    for id in &ids[..4] {
        wal.ack(*id).unwrap(); // the first segment goes
    }
    wal.ack(ids[1]).unwrap(); // its segment is gone: still fine
    assert!(matches!(
        wal.ack(RecordId(ids[5].0 + 1)),
        Err(WalError::UnknownRecord { .. })
    ));
    assert_eq!(wal.pending(), 2);
}

#[test]
fn every_fsync_policy_round_trips() {
    let policies = [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::ZERO),
        FsyncPolicy::Interval(Duration::from_secs(3600)),
        FsyncPolicy::Never,
    ];
    for fsync in policies {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            fsync,
            ..options(1 << 20, 256)
        };
        let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let ids = append_n(&wal, 0..20);
        for id in &ids[..6] {
            wal.ack(*id).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let (_wal, replay) = Wal::open(dir.path(), opts).unwrap();
        let want: Vec<u64> = ids[6..].iter().map(|i| i.0).collect();
        assert_eq!(replayed_ids(&replay), want, "{fsync:?}");
    }
}

#[test]
fn a_file_where_the_directory_should_be_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queue");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = Wal::open(&file, options(1 << 20, 256)).unwrap_err();
    assert!(matches!(err, WalError::NotADirectory { .. }), "{err}");
    assert!(err.to_string().contains("is not a directory"));
    let err = Wal::open(&file.join("below"), options(1 << 20, 256)).unwrap_err();
    assert!(matches!(err, WalError::Io { .. }), "{err}");
    assert!(err.to_string().contains("queue"), "{err}");
}

#[test]
fn creates_missing_directories_and_refuses_a_second_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/wal");
    let (wal, _) = Wal::open(&path, options(1 << 20, 256)).unwrap();
    let err = Wal::open(&path, options(1 << 20, 256)).unwrap_err();
    assert!(matches!(err, WalError::Locked { .. }), "{err}");
    drop(wal);
    Wal::open(&path, options(1 << 20, 256)).unwrap();
}

#[test]
fn unwritable_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro");
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(path.join("probe"), b"").is_ok() {
        return; // running as root: permissions are not enforced
    }
    let err = Wal::open(&path, options(1 << 20, 256)).unwrap_err();
    assert!(matches!(err, WalError::Io { .. }), "{err}");
}

#[test]
fn garbage_directory_contents_never_break_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (wal, _) = Wal::open(d, options(1 << 20, 4096)).unwrap();
    let ids = append_n(&wal, 0..3);
    drop(wal);
    let first = segments(d)[0];
    std::fs::write(d.join("notes.txt"), b"hello").unwrap();
    std::fs::write(d.join("abc.wal"), b"\xF7WAL").unwrap();
    std::fs::write(segment_path(d, 300), fastrand_bytes(1, 1000)).unwrap();
    std::fs::write(
        segment_path(d, 400),
        [0xF7, b'W', b'A', b'L', 0, 0, 0, 0, 1, 0],
    )
    .unwrap();
    std::fs::write(segment_path(d, 500), b"").unwrap();
    std::fs::write(ack_path(d, first), fastrand_bytes(2, 100)).unwrap();
    std::fs::write(ack_path(d, 777), format::encode_ack(777)).unwrap();
    std::fs::create_dir(segment_path(d, 900)).unwrap();

    let (wal, replay) = Wal::open(d, options(1 << 20, 4096)).unwrap();
    let want: Vec<u64> = ids.iter().map(|i| i.0).collect();
    assert_eq!(replayed_ids(&replay), want);
    assert_eq!(replay.corrupt_records, 2, "{:?}", replay.warnings); // segments 300 and 400
    assert_eq!(replay.torn_tail_bytes, 0, "segment 500 is empty");
    let joined = replay.warnings.join("\n");
    for needle in [
        "notes.txt",
        "abc.wal",
        "00000000000000000900.wal",
        ".ack: skipped",
    ] {
        assert!(joined.contains(needle), "{needle} missing in {joined}");
    }
    assert!(!segment_path(d, 300).exists() && !segment_path(d, 500).exists());
    assert!(!ack_path(d, 777).exists(), "orphan ack file removed");
    assert!(d.join("notes.txt").exists(), "unknown files are left alone");
    assert!(wal.append(b"new").unwrap().0 > 900);
}

fn fastrand_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

#[test]
fn random_damage_never_panics_open() {
    for seed in 0..60u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), options(1 << 20, 300)).unwrap();
        let ids = append_n(&wal, 0..rng.u64(0..30));
        for id in ids.iter().filter(|_| rng.bool()) {
            wal.ack(*id).unwrap();
        }
        drop(wal);
        for _ in 0..rng.usize(1..6) {
            let entries: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap() != "lock")
                .collect();
            if entries.is_empty() {
                break;
            }
            let target = &entries[rng.usize(..entries.len())];
            let mut data = std::fs::read(target).unwrap();
            match rng.u8(0..4) {
                0 if !data.is_empty() => data.truncate(rng.usize(..data.len())),
                1 if !data.is_empty() => {
                    let at = rng.usize(..data.len());
                    data[at] ^= 1 << rng.u8(0..8);
                }
                2 => data.extend((0..rng.usize(0..64)).map(|_| rng.u8(..))),
                _ => data.clear(),
            }
            std::fs::write(target, data).unwrap();
        }
        let (wal, replay) = Wal::open(dir.path(), options(1 << 20, 300)).unwrap();
        assert_eq!(wal.pending(), replay.records.len());
        let replayed = replayed_ids(&replay);
        assert!(replayed.windows(2).all(|w| w[0] < w[1]), "seed {seed}");
        let id = wal.append(b"after damage").unwrap();
        assert!(replayed.iter().all(|r| *r < id.0));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn failed_write_is_an_error_and_the_log_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 4096)).unwrap();
    let before = append_n(&wal, 0..3);
    let (size, pending) = (wal.size_bytes(), wal.pending());
    // Every write to /dev/full fails with ENOSPC, and it cannot be truncated either.
    wal.state().active.file = Arc::new(OpenOptions::new().append(true).open("/dev/full").unwrap());
    let err = wal.append(b"lost").unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!((wal.size_bytes(), wal.pending()), (size, pending));
    let after = wal.append(b"kept").unwrap(); // starts a new segment
    assert_eq!(after.0, before[2].0 + 1);
    drop(wal);
    let (_wal, replay) = Wal::open(dir.path(), options(1 << 20, 4096)).unwrap();
    let mut want: Vec<u64> = before.iter().map(|i| i.0).collect();
    want.push(after.0);
    assert_eq!(replayed_ids(&replay), want);
    assert_eq!(replay.records.last().unwrap().1, b"kept");
}

#[test]
fn directory_removed_at_runtime_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let (wal, _) = Wal::open(&path, options(1 << 20, 256)).unwrap();
    let ids = append_n(&wal, 0..4);
    std::fs::remove_dir_all(&path).unwrap();
    assert!(
        matches!(wal.append(&payload(9)), Err(WalError::Io { .. })),
        "roll fails"
    );
    assert!(
        matches!(wal.ack(ids[0]), Err(WalError::Io { .. })),
        "ack file"
    );
    assert_eq!(wal.pending(), 4);
    wal.sync().unwrap(); // unlinked files still sync
    std::fs::create_dir_all(&path).unwrap();
    wal.append(&payload(10)).unwrap();
    wal.ack(ids[0]).unwrap();
    assert_eq!(wal.pending(), 4);
}

#[test]
fn concurrent_appends_from_threads_are_all_kept_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options(1 << 20, 1024)).unwrap();
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                (0..200)
                    .map(|n| wal.append(&payload(t * 1000 + n)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut by_thread = Vec::new();
    for thread in threads {
        by_thread.push(thread.join().unwrap());
    }
    assert_eq!(wal.pending(), 800);
    drop(wal);
    let (_wal, replay) = Wal::open(dir.path(), options(1 << 20, 1024)).unwrap();
    assert_eq!(replay.records.len(), 800);
    assert!(replayed_ids(&replay).windows(2).all(|w| w[0] < w[1]));
    let replayed: BTreeMap<RecordId, Vec<u8>> = replay.records.into_iter().collect();
    for (t, ids) in by_thread.iter().enumerate() {
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(replayed[id], payload(t as u64 * 1000 + n as u64));
        }
    }
}

#[test]
fn wal_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
}

/// Append throughput for 1 KiB records per fsync policy. Prints, never asserts a timing:
/// `cargo test --release --lib wal::tests::append_throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn append_throughput() {
    let record = vec![0xA5u8; 1024];
    let runs = [
        ("always", FsyncPolicy::Always, 2_000u32),
        (
            "interval 1s",
            FsyncPolicy::Interval(Duration::from_secs(1)),
            200_000,
        ),
        ("never", FsyncPolicy::Never, 200_000),
    ];
    for (name, fsync, count) in runs {
        let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let opts = WalOptions {
            max_size_bytes: 1 << 30,
            segment_bytes: WalOptions::DEFAULT_SEGMENT_BYTES,
            fsync,
        };
        let (wal, _) = Wal::open(dir.path(), opts).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..count {
            wal.append(&record).unwrap();
        }
        wal.sync().unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name:>12}: {count} x 1 KiB in {secs:.3} s = {:.0} records/s, {:.1} MiB/s",
            f64::from(count) / secs,
            f64::from(count) / 1024.0 / secs
        );
    }
}
