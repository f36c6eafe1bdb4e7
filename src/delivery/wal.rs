//! Write-ahead log (skeleton placeholder; the real implementation is being written).

use std::path::Path;
use std::time::Duration;

pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

pub struct WalOptions {
    pub max_size_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

pub struct Replay {
    pub records: Vec<(RecordId, Vec<u8>)>,
    pub corrupt_records: u64,
    pub torn_tail_bytes: u64,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log is full ({size} of {max} bytes)")]
    Full { size: u64, max: u64 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub struct Wal;

impl Wal {
    pub fn open(dir: &Path, _opts: WalOptions) -> Result<(Wal, Replay), WalError> {
        Err(WalError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other("not implemented yet"),
        })
    }
    pub fn append(&self, _payload: &[u8]) -> Result<RecordId, WalError> {
        Err(WalError::Full { size: 0, max: 0 })
    }
    pub fn ack(&self, _id: RecordId) -> Result<(), WalError> {
        Ok(())
    }
    pub fn sync(&self) -> Result<(), WalError> {
        Ok(())
    }
    pub fn size_bytes(&self) -> u64 {
        0
    }
    pub fn pending(&self) -> usize {
        0
    }
}
