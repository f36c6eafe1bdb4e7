//! Shared HTTP plumbing for exporters: a reqwest client from the Collector's TLS keys,
//! header maps, gzip, and the classification of transport errors and HTTP answers into
//! the delivery layer's retry decision.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::deflate::Shape;
use super::{ExportError, parse_retry_after};

/// Client TLS settings (the Collector's `tls` block for clients).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// Plain text (for `http://` this is implied).
    pub insecure: bool,
    /// Do not verify the server certificate (testing only).
    pub insecure_skip_verify: bool,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name_override: Option<String>,
    pub min_version: Option<String>,
}

pub fn build_client(
    tls: &TlsClientConfig,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .danger_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read tls.ca_file {ca}: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("invalid tls.ca_file {ca}: {e}"))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = std::fs::read(cert)
                .map_err(|e| format!("cannot read tls.cert_file {cert}: {e}"))?;
            pem.extend(
                std::fs::read(key).map_err(|e| format!("cannot read tls.key_file {key}: {e}"))?,
            );
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("invalid client certificate: {e}"))?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => return Err("tls.cert_file and tls.key_file must be set together".into()),
    }
    b.build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

pub fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut m = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("invalid header name {k:?}"))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k:?}"))?;
        m.insert(name, value);
    }
    Ok(m)
}

/// `bytes` as one gzip member, from weft's own fast DEFLATE encoder
/// ([`super::deflate`]): about twice zlib's level 1 speed, at a better ratio on telemetry.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    super::deflate::gzip(bytes)
}

/// `compression_params` (the Collector's key) of the exporters that gzip: `level`.
/// Unset or 1: weft's own encoder (the fastest, [`super::deflate`]); 2–9: zlib's levels
/// (flate2 on zlib-rs), smaller bodies for more CPU; -1: zlib's default, 6.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    #[serde(default)]
    pub level: Option<i32>,
}

/// How a gzip body is compressed (from [`CompressionParams`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GzipLevel {
    /// weft's encoder.
    #[default]
    Fast,
    /// zlib at this level (2–9).
    Zlib(u32),
}

impl CompressionParams {
    /// The gzip level asked for, given the exporter's `compression`; an error names the
    /// key and the values that work.
    pub fn gzip_level(&self, compression: &str) -> Result<GzipLevel, String> {
        let Some(level) = self.level else {
            return Ok(GzipLevel::Fast);
        };
        if compression != "gzip" {
            return Err(format!(
                "compression_params.level is supported with compression: gzip only (compression is {compression:?})"
            ));
        }
        match level {
            1 => Ok(GzipLevel::Fast),
            -1 => Ok(GzipLevel::Zlib(6)),
            2..=9 => Ok(GzipLevel::Zlib(level as u32)),
            _ => Err(format!(
                "compression_params.level {level} is not a gzip level: use 1 (the fastest, the default), 2–9, or -1 (zlib's default, 6)"
            )),
        }
    }
}

/// `weft validate`'s check of an exporter's `compression` (one of `known`, "" meaning
/// none) and `compression_params`, with the key path of what is wrong.
pub fn check_compression(
    compression: &str,
    params: &CompressionParams,
    known: &[&str],
) -> Result<GzipLevel, crate::config::FieldError> {
    let err = |path: &[&str], message: String| crate::config::FieldError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message,
        suggestion: None,
    };
    if !compression.is_empty() && !known.contains(&compression) {
        return Err(err(
            &["compression"],
            format!(
                "unsupported compression {compression:?}: use {}",
                known.join(", ")
            ),
        ));
    }
    params
        .gzip_level(compression)
        .map_err(|m| err(&["compression_params", "level"], m))
}

impl GzipLevel {
    /// `bytes` as one gzip member at this level.
    pub fn gzip(self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.gzip_into(bytes, &mut out);
        out
    }

    /// `bytes` as one gzip member at this level, in `out` (cleared first): a buffer kept
    /// from the last body keeps its capacity, so a multi-megabyte body does not fault in
    /// fresh pages each time.
    pub fn gzip_into(self, bytes: &[u8], out: &mut Vec<u8>) {
        self.gzip_shaped_into(bytes, out, Shape::Any);
    }

    /// [`Self::gzip_into`] for a body of a known shape: `fast` parses JSON and protobuf
    /// with their resyncs ([`super::deflate::Shape`]), zlib levels as any input.
    pub fn gzip_shaped_into(self, bytes: &[u8], out: &mut Vec<u8>, shape: Shape) {
        out.clear();
        match self {
            GzipLevel::Fast => {
                out.reserve(bytes.len() / 2 + 64);
                super::deflate::gzip_shaped_into(bytes, out, shape);
            }
            GzipLevel::Zlib(level) => {
                out.reserve(bytes.len() / 3 + 64);
                let mut e = flate2::write::GzEncoder::new(
                    std::mem::take(out),
                    flate2::Compression::new(level),
                );
                // Writing into a Vec cannot fail.
                let _ = std::io::Write::write_all(&mut e, bytes);
                *out = e.finish().unwrap_or_default();
            }
        }
    }
}

pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Connection failures and timeouts are retryable; a request that could not even be
/// built (bad URL) is permanent.
pub fn classify_transport_error(e: &reqwest::Error) -> ExportError {
    if e.is_builder() {
        return ExportError::permanent("invalid_request", e.to_string());
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ExportError::retryable(msg)
}

/// 2xx is success; otherwise as [`ExportError::from_http_status`].
pub fn classify_response(status: u16, headers: &HeaderMap, body: &str) -> Result<(), ExportError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(ExportError::from_http_status(
        status,
        retry_after(headers),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn params(level: Option<i32>) -> CompressionParams {
        CompressionParams { level }
    }

    #[test]
    fn compression_params_pick_the_encoder() {
        assert_eq!(params(None).gzip_level("gzip"), Ok(GzipLevel::Fast));
        assert_eq!(params(None).gzip_level("none"), Ok(GzipLevel::Fast));
        assert_eq!(params(Some(1)).gzip_level("gzip"), Ok(GzipLevel::Fast));
        assert_eq!(params(Some(-1)).gzip_level("gzip"), Ok(GzipLevel::Zlib(6)));
        for l in 2..=9 {
            assert_eq!(
                params(Some(l)).gzip_level("gzip"),
                Ok(GzipLevel::Zlib(l as u32))
            );
        }
        for l in [0, 10, -2] {
            let e = params(Some(l)).gzip_level("gzip").unwrap_err();
            assert!(e.contains(&format!("level {l} is not a gzip level")), "{e}");
        }
        let e = params(Some(3)).gzip_level("zstd").unwrap_err();
        assert!(e.contains("gzip only"), "{e}");
    }

    #[test]
    fn every_level_writes_gzip_and_higher_levels_are_smaller() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| {
                format!("{{\"span\":{i},\"name\":\"GET /orders/{}\"}}\n", i % 97).into_bytes()
            })
            .collect();
        let fast = GzipLevel::Fast.gzip(&text);
        let best = GzipLevel::Zlib(9).gzip(&text);
        for z in [&fast, &best] {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == text);
        }
        assert!(
            best.len() < fast.len(),
            "level 9 {} vs fast {}",
            best.len(),
            fast.len()
        );
        // Into a buffer kept from an earlier body: the same bytes, nothing of the old ones.
        for (level, alone) in [(GzipLevel::Fast, &fast), (GzipLevel::Zlib(9), &best)] {
            let mut kept = vec![0xAB; 100_000];
            level.gzip_into(&text, &mut kept);
            assert!(&kept == alone, "{level:?}");
        }
    }
}
