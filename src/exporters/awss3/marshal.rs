//! Marshalling one object: the batch in the chosen format, then the chosen compression.
//! Pure functions (no I/O), so the bytes of an object are a function of its records.
//!
//! - `otlp_json`: one OTLP/JSON export request (`.json`), what the Collector's
//!   awss3exporter writes and what `weft`'s OTLP/HTTP receiver reads back.
//! - `otlp_proto`: one protobuf export request (`.binpb`).
//! - `parquet`: columnar (see `parquet.rs`); compression is inside the file (column
//!   chunks), so the object stays readable by DuckDB, Athena and Spark: `.parquet`.
//!
//! `compression` wraps json/proto objects whole (`.gz`, `.zst`).

use serde::Deserialize;

use crate::data::Batch;
use crate::exporters::deflate::Shape;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Marshaler {
    #[default]
    OtlpJson,
    OtlpProto,
    /// Needs the `parquet` cargo feature (on by default).
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, thiserror::Error)]
pub enum MarshalError {
    #[error("{0}")]
    Unsupported(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// The zstd level for whole-object compression: the library default, a good ratio at a
/// few hundred MB/s.
const ZSTD_LEVEL: i32 = 3;

impl Marshaler {
    /// File extension before any compression suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Marshaler::OtlpJson => "json",
            Marshaler::OtlpProto => "binpb",
            Marshaler::Parquet => "parquet",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Marshaler::OtlpJson => "application/json",
            Marshaler::OtlpProto => "application/x-protobuf",
            Marshaler::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// The object's extension: `json`, `binpb.gz`, `json.zst`, `parquet` (parquet compresses
/// inside the file and never gets a suffix).
pub fn extension(m: Marshaler, c: Compression) -> String {
    match (m, c) {
        (Marshaler::Parquet, _) | (_, Compression::None) => m.extension().to_string(),
        (_, Compression::Gzip) => format!("{}.gz", m.extension()),
        (_, Compression::Zstd) => format!("{}.zst", m.extension()),
    }
}

/// Encodes one object.
pub fn marshal(batch: &Batch, m: Marshaler, c: Compression) -> Result<Vec<u8>, MarshalError> {
    let (raw, shape) = match m {
        Marshaler::OtlpJson => (batch.encode_json(), Shape::Json),
        Marshaler::OtlpProto => (batch.encode_proto(), Shape::Proto),
        Marshaler::Parquet => return marshal_parquet(batch, c),
    };
    compress(raw, c, shape)
}

/// `raw` compressed; gzip parses it for its shape ([`crate::exporters::deflate::Shape`]).
fn compress(raw: Vec<u8>, c: Compression, shape: Shape) -> Result<Vec<u8>, MarshalError> {
    match c {
        Compression::None => Ok(raw),
        Compression::Gzip => {
            let mut out = Vec::with_capacity(raw.len() / 2 + 64);
            crate::exporters::deflate::gzip_shaped_into(&raw, &mut out, shape);
            Ok(out)
        }
        Compression::Zstd => zstd::encode_all(raw.as_slice(), ZSTD_LEVEL)
            .map_err(|e| MarshalError::Encode(e.to_string())),
    }
}

#[cfg(feature = "parquet")]
fn marshal_parquet(batch: &Batch, c: Compression) -> Result<Vec<u8>, MarshalError> {
    super::parquet::encode(batch, c)
}

#[cfg(not(feature = "parquet"))]
fn marshal_parquet(_: &Batch, _: Compression) -> Result<Vec<u8>, MarshalError> {
    Err(MarshalError::Unsupported(
        "this weft was built without the `parquet` cargo feature".into(),
    ))
}

/// Reverses whole-object compression (for reading objects back: tests, tools).
pub fn decompress(bytes: &[u8], c: Compression) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    match c {
        Compression::None => Ok(bytes.to_vec()),
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
            Ok(out)
        }
        Compression::Zstd => zstd::decode_all(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LogRecord, ResourceLogs, ScopeLogs, Signal};

    fn batch() -> Batch {
        Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..50)
                    .map(|i| LogRecord {
                        time_unix_nano: i,
                        severity_text: "INFO".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn every_format_and_compression_round_trips() {
        let b = batch();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let json = decompress(&marshal(&b, Marshaler::OtlpJson, c).unwrap(), c).unwrap();
            assert_eq!(Batch::decode_json(Signal::Logs, &json).unwrap(), b);
            let proto = decompress(&marshal(&b, Marshaler::OtlpProto, c).unwrap(), c).unwrap();
            assert_eq!(Batch::decode_proto(Signal::Logs, &proto).unwrap(), b);
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(extension(Marshaler::OtlpJson, Compression::Gzip), "json.gz");
        assert_eq!(
            extension(Marshaler::OtlpProto, Compression::Zstd),
            "binpb.zst"
        );
        assert_eq!(extension(Marshaler::OtlpProto, Compression::None), "binpb");
        assert_eq!(extension(Marshaler::Parquet, Compression::Zstd), "parquet");
    }
}
