//! Shared HTTP plumbing for exporters: a reqwest client from the Collector's TLS keys,
//! header maps, gzip, and the classification of transport errors and HTTP answers into
//! the delivery layer's retry decision.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

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
