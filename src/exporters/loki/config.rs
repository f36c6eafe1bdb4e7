//! The `loki` exporter's config: the keys (see the module doc of [`super`]) and the checks
//! serde cannot make (combinations, non-empty values, a valid endpoint URL).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::encode::{Limits, LineFormat};
use super::labels::LabelsConfig;
use crate::config::{FieldError, parse_component};
use crate::exporters::http_client::{TlsClientConfig, header_map};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    pub endpoint: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub tenant: Option<TenantConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub compression: Option<Compression>,
    #[serde(default)]
    pub labels: LabelsConfig,
    #[serde(default)]
    pub line_format: LineFormat,
    #[serde(default = "yes")]
    pub structured_metadata: bool,
    #[serde(default)]
    pub limits: Limits,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub source: TenantSource,
    pub key: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TenantSource {
    Attribute,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub basic: Option<BasicAuth>,
    pub bearer: Option<BearerAuth>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    pub token: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Protobuf,
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    None,
}

fn field_error(path: &[&str], message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        suggestion: None,
    }
}

/// Parses and checks what serde cannot: combinations and non-empty values.
pub fn parse(v: &Value) -> Result<LokiConfig, FieldError> {
    let cfg: LokiConfig = parse_component(v)?;
    let url = reqwest::Url::parse(cfg.endpoint.trim()).map_err(|e| {
        field_error(
            &["endpoint"],
            format!("invalid URL {:?}: {e}", cfg.endpoint),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(field_error(
            &["endpoint"],
            "the endpoint must be an http:// or https:// URL",
        ));
    }
    if cfg.encoding == Encoding::Protobuf && cfg.compression == Some(Compression::Gzip) {
        return Err(field_error(
            &["compression"],
            "compression applies to encoding: json; protobuf bodies are always snappy-compressed",
        ));
    }
    if cfg.auth.basic.is_some() && cfg.auth.bearer.is_some() {
        return Err(field_error(
            &["auth"],
            "set either auth.basic or auth.bearer, not both",
        ));
    }
    if let Some(t) = &cfg.tenant
        && t.key.trim().is_empty()
    {
        return Err(field_error(
            &["tenant", "key"],
            "tenant.key must name an attribute",
        ));
    }
    for (from, name) in &cfg.labels.rename {
        if name.trim().is_empty() {
            return Err(field_error(
                &["labels", "rename", from],
                "a label cannot be renamed to an empty name",
            ));
        }
    }
    header_map(&cfg.auth.headers).map_err(|e| field_error(&["auth", "headers"], e))?;
    Ok(cfg)
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    parse(v).map(|_| ())
}
