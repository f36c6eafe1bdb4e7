//! The `file` exporter: OTLP/JSON lines, one export request per line, as the Collector's
//! file exporter writes them.
//!
//! Config: `path` (required), `format` (`json` only), `rotation`: `max_megabytes` (100),
//! `max_backups` (100; rotated files are `path.1` (newest) … `path.N`), `max_days`
//! (accepted), `localtime` (accepted); `flush_interval` (accepted: every line is flushed).
//! A write error (disk full, directory gone) is retryable: the batch stays queued.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;

use super::{BoxFuture, ExportError, Exporter};
use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, parse_component};
use crate::data::Batch;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub rotation: Option<Rotation>,
    #[serde(default)]
    pub flush_interval: Option<Dur>,
    #[serde(default)]
    pub append: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    pub max_megabytes: u64,
    pub max_backups: usize,
    pub max_days: Option<u64>,
    pub localtime: Option<bool>,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_megabytes: 100,
            max_backups: 100,
            max_days: None,
            localtime: None,
        }
    }
}

struct State {
    file: Option<std::fs::File>,
    size: u64,
}

struct FileWriter {
    path: PathBuf,
    rotation: Option<Rotation>,
    state: Mutex<State>,
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let c: FileConfig = parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    if let Some(f) = &c.format
        && f != "json"
    {
        return Err(BuildError::new(
            &ctx.id,
            format!("format {f:?} is not supported; use json"),
        ));
    }
    Ok(Arc::new(FileExporter(Arc::new(FileWriter {
        path: PathBuf::from(c.path),
        rotation: c.rotation,
        state: Mutex::new(State {
            file: None,
            size: 0,
        }),
    }))))
}

impl FileWriter {
    fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &self.rotation
            && st.file.is_some()
            && st.size + line.len() as u64 > r.max_megabytes * 1024 * 1024
        {
            st.file = None;
            self.rotate(r.max_backups)?;
        }
        if st.file.is_none() {
            if let Some(dir) = self.path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            st.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            st.file = Some(f);
        }
        if let Some(f) = st.file.as_mut() {
            f.write_all(line)?;
            f.flush()?;
        }
        st.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&self, max_backups: usize) -> std::io::Result<()> {
        let name = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        if max_backups == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(name(max_backups));
        for i in (1..max_backups).rev() {
            if name(i).exists() {
                std::fs::rename(name(i), name(i + 1))?;
            }
        }
        std::fs::rename(&self.path, name(1))
    }
}

/// File I/O (writes, rotation) runs on the blocking pool, never on a runtime worker.
pub struct FileExporter(Arc<FileWriter>);

impl Exporter for FileExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let mut line = batch.encode_json();
            line.push(b'\n');
            let w = self.0.clone();
            let r = tokio::task::spawn_blocking(move || w.write_line(&line)).await;
            match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ExportError::retryable(format!(
                    "cannot write {}: {e}",
                    self.0.path.display()
                ))),
                Err(e) => Err(ExportError::retryable(format!(
                    "file writer task failed: {e}"
                ))),
            }
        })
    }
}
