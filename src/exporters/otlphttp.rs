//! The `otlphttp` exporter (OTLP/HTTP).
//!
//! Config (the Collector's keys): `endpoint` (base URL; signals go to `/v1/traces`,
//! `/v1/logs`, `/v1/metrics`), or `traces_endpoint` / `logs_endpoint` / `metrics_endpoint`
//! (full URLs), `encoding` (`proto` default, `json`), `compression` (`gzip` default,
//! `zstd`, `none`), `compression_params.level` (gzip: 1 = weft's own encoder, the
//! default; 2–9 or -1 = zlib's levels), `headers`, `tls`. Answers are classified per the
//! OTLP spec: 2xx success; 408, 429, 502, 503, 504 (and other 5xx) retryable honouring
//! `Retry-After`; other 4xx permanent.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::deflate::Shape;
use super::http_client::{
    CompressionParams, GzipLevel, TlsClientConfig, build_client, check_compression,
    classify_response, classify_transport_error, header_map,
};
use super::{BoxFuture, ExportError, Exporter};
use crate::components::{BuildContext, BuildError};
use crate::config::parse_component;
use crate::data::{Batch, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    #[serde(default)]
    pub encoding: HttpEncoding,
    #[serde(default = "gzip_default")]
    pub compression: String,
    #[serde(default)]
    pub compression_params: CompressionParams,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default)]
    pub auth: Option<Value>,
}

fn gzip_default() -> String {
    "gzip".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum HttpEncoding {
    #[default]
    Proto,
    Json,
}

const COMPRESSIONS: &[&str] = &["gzip", "zstd", "none"];

/// Checks what deserializing cannot: `compression` and `compression_params`.
pub fn validate(v: &Value) -> Result<(), crate::config::FieldError> {
    let cfg: OtlpHttpConfig = parse_component(v)?;
    check_compression(&cfg.compression, &cfg.compression_params, COMPRESSIONS).map(|_| ())
}

pub struct OtlpHttpExporter {
    client: reqwest::Client,
    urls: [Option<String>; 3],
    encoding: HttpEncoding,
    compression: String,
    gzip_level: GzipLevel,
    headers: reqwest::header::HeaderMap,
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let cfg: OtlpHttpConfig =
        parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    let base = cfg
        .endpoint
        .as_deref()
        .map(|e| e.trim_end_matches('/').to_string());
    let url = |specific: &Option<String>, path: &str| {
        specific
            .clone()
            .or_else(|| base.as_ref().map(|b| format!("{b}{path}")))
    };
    let urls = [
        url(&cfg.traces_endpoint, "/v1/traces"),
        url(&cfg.logs_endpoint, "/v1/logs"),
        url(&cfg.metrics_endpoint, "/v1/metrics"),
    ];
    if urls.iter().all(Option::is_none) {
        return Err(BuildError::new(
            &ctx.id,
            "set endpoint (or traces_endpoint / logs_endpoint / metrics_endpoint)",
        ));
    }
    let gzip_level = check_compression(&cfg.compression, &cfg.compression_params, COMPRESSIONS)
        .map_err(|e| BuildError::new(&ctx.id, e.message))?;
    Ok(Arc::new(OtlpHttpExporter {
        client: build_client(&cfg.tls, None).map_err(|e| BuildError::new(&ctx.id, e))?,
        urls,
        encoding: cfg.encoding,
        compression: cfg.compression,
        gzip_level,
        headers: header_map(&cfg.headers).map_err(|e| BuildError::new(&ctx.id, e))?,
    }))
}

fn idx(s: Signal) -> usize {
    match s {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}

impl Exporter for OtlpHttpExporter {
    fn accepts_raw(&self) -> bool {
        matches!(self.encoding, HttpEncoding::Proto)
    }
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let Some(url) = &self.urls[idx(batch.signal())] else {
                return Err(ExportError::permanent(
                    "no_endpoint",
                    format!("no endpoint configured for {}", batch.signal()),
                ));
            };
            let (body, ct) = match self.encoding {
                HttpEncoding::Proto => (batch.encode_proto(), "application/x-protobuf"),
                HttpEncoding::Json => (batch.encode_json(), "application/json"),
            };
            let mut req = self
                .client
                .post(url)
                .headers(self.headers.clone())
                .header("content-type", ct);
            let body = match self.compression.as_str() {
                "gzip" => {
                    req = req.header("content-encoding", "gzip");
                    let mut out = Vec::new();
                    let shape = match self.encoding {
                        HttpEncoding::Json => Shape::Json,
                        HttpEncoding::Proto => Shape::Proto,
                    };
                    self.gzip_level.gzip_shaped_into(&body, &mut out, shape);
                    out
                }
                "zstd" => {
                    req = req.header("content-encoding", "zstd");
                    zstd::bulk::compress(&body, 1)
                        .map_err(|e| ExportError::permanent("encode", e.to_string()))?
                }
                _ => body,
            };
            let resp = req
                .body(body)
                .send()
                .await
                .map_err(|e| classify_transport_error(&e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = if (200..300).contains(&status) {
                String::new()
            } else {
                resp.text().await.unwrap_or_default()
            };
            classify_response(status, &headers, &text)
        })
    }
}
