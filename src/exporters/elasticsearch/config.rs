//! The exporter's configuration: the Collector's elasticsearchexporter keys (see the
//! module doc of [`super`] for meanings and defaults) and the checks serde cannot make.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::bulk::DocumentId;
use super::mapping::Mode;
use crate::config::{Dur, FieldError, parse_component};
use crate::exporters::http_client::TlsClientConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default)]
    pub logs_index: Option<String>,
    #[serde(default)]
    pub traces_index: Option<String>,
    #[serde(default)]
    pub metrics_index: Option<String>,
    #[serde(default)]
    pub logs_dynamic_index: DynamicIndex,
    #[serde(default)]
    pub traces_dynamic_index: DynamicIndex,
    #[serde(default)]
    pub metrics_dynamic_index: DynamicIndex,
    #[serde(default)]
    pub logs_dynamic_id: DynamicIndex,
    #[serde(default)]
    pub mapping: MappingConfig,
    #[serde(default)]
    pub document_id: DocumentId,
    #[serde(default)]
    pub flush: FlushConfig,
    #[serde(default)]
    pub retry: Option<EsRetryConfig>,
    #[serde(default = "default_compression")]
    pub compression: String,
    #[serde(default)]
    pub compression_params: crate::exporters::http_client::CompressionParams,
    #[serde(default)]
    pub pipeline: Option<String>,
}

fn default_compression() -> String {
    "gzip".into()
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub user: Option<String>,
    pub password: Option<String>,
    pub api_key: Option<String>,
    pub headers: BTreeMap<String, String>,
}

/// `{enabled: bool}` blocks (`*_dynamic_index`, `logs_dynamic_id`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicIndex {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    pub mode: Mode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushConfig {
    pub bytes: usize,
    pub interval: Dur,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            bytes: 5_000_000,
            interval: Dur::secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsRetryConfig {
    pub enabled: bool,
    pub max_retries: u32,
    pub initial_interval: Dur,
    pub max_interval: Dur,
    pub retry_on_status: Vec<u16>,
    /// Deprecated Collector key, accepted.
    pub max_requests: Option<u32>,
}

impl Default for EsRetryConfig {
    fn default() -> Self {
        EsRetryConfig {
            enabled: true,
            max_retries: 2,
            initial_interval: Dur::millis(100),
            max_interval: Dur::secs(60),
            retry_on_status: vec![429],
            max_requests: None,
        }
    }
}

impl ElasticsearchConfig {
    pub fn all_endpoints(&self) -> Vec<String> {
        let mut v = self.endpoints.clone();
        if let Some(e) = &self.endpoint {
            v.push(e.clone());
        }
        v
    }

    /// `(user, password, api_key)` from `auth` or the top-level keys; empty values (an
    /// unset `${env:VAR:-}`) count as not set.
    pub fn credentials(&self) -> (Option<&String>, Option<&String>, Option<&String>) {
        fn pick<'a>(a: &'a Option<String>, b: &'a Option<String>) -> Option<&'a String> {
            let a = a.as_ref().filter(|s| !s.is_empty());
            a.or(b.as_ref().filter(|s| !s.is_empty()))
        }
        (
            pick(&self.auth.user, &self.user),
            pick(&self.auth.password, &self.password),
            pick(&self.auth.api_key, &self.api_key),
        )
    }

    /// Checks what serde cannot: endpoints present and well-formed, auth complete,
    /// compression known.
    pub fn check(&self) -> Result<(), FieldError> {
        let err = |path: &str, message: String| FieldError {
            path: path.split('.').map(str::to_string).collect(),
            message,
            suggestion: None,
        };
        let eps = self.all_endpoints();
        if eps.is_empty() {
            return Err(err(
                "endpoints",
                "set endpoints (a list of Elasticsearch URLs)".into(),
            ));
        }
        for (i, e) in eps.iter().enumerate() {
            match reqwest::Url::parse(e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(err(
                        &format!("endpoints.{i}"),
                        format!("{e:?} is not an http(s) URL"),
                    ));
                }
            }
        }
        let (user, password, _) = self.credentials();
        if user.is_some() != password.is_some() {
            return Err(err(
                "auth.user",
                "auth.user and auth.password must be set together".into(),
            ));
        }
        crate::exporters::http_client::check_compression(
            &self.compression,
            &self.compression_params,
            &["gzip", "none"],
        )?;
        for (key, ix) in [
            ("logs_index", &self.logs_index),
            ("traces_index", &self.traces_index),
            ("metrics_index", &self.metrics_index),
        ] {
            if let Some(ix) = ix.as_deref().filter(|s| !s.is_empty())
                && let Some(problem) = index_name_problem(ix)
            {
                return Err(err(
                    key,
                    format!("{ix:?} is not a valid index name: {problem}"),
                ));
            }
        }
        if self.flush.bytes == 0 {
            return Err(err("flush.bytes", "must be greater than 0".into()));
        }
        Ok(())
    }
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    parse_component::<ElasticsearchConfig>(v)?.check()
}

/// Why Elasticsearch would refuse this index name, if it would.
pub fn index_name_problem(ix: &str) -> Option<&'static str> {
    if ix.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("must be lower case");
    }
    if ix.chars().any(|c| "\\/*?\"<>| ,#:".contains(c)) {
        return Some("must not contain \\ / * ? \" < > | space , # :");
    }
    if ix.starts_with(['-', '_', '+']) || ix == "." || ix == ".." {
        return Some("must not start with -, _ or + and must not be . or ..");
    }
    if ix.len() > 255 {
        return Some("must be at most 255 bytes");
    }
    None
}

/// Standard base64 with padding (for the basic-auth header).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> Result<(), FieldError> {
        validate(&v)
    }

    #[test]
    fn config_defaults_and_checks() {
        let c: ElasticsearchConfig =
            parse_component(&serde_json::json!({"endpoints": ["http://es:9200"]})).unwrap();
        assert_eq!(c.flush.bytes, 5_000_000);
        assert_eq!(c.mapping.mode, Mode::Otel);
        assert_eq!(c.compression, "gzip");
        assert_eq!(c.compression_params.level, None);
        assert!(c.retry.is_none());
        let e = cfg(
            serde_json::json!({"endpoints": ["http://a"], "compression_params": {"level": 11}}),
        )
        .unwrap_err();
        assert_eq!(e.path, ["compression_params", "level"]);
        assert!(
            e.message.contains("level 11 is not a gzip level"),
            "{}",
            e.message
        );
        cfg(serde_json::json!({"endpoints": ["http://a"], "compression_params": {"level": 5}}))
            .unwrap();
        let e =
            cfg(serde_json::json!({"endpoints": ["http://a"], "compression": "zstd"})).unwrap_err();
        assert_eq!(e.path, ["compression"]);
        assert!(e.message.contains("use gzip, none"), "{}", e.message);
        let c: ElasticsearchConfig = parse_component(
            &serde_json::json!({"endpoints": ["http://a"], "retry": {"max_retries": 5}}),
        )
        .unwrap();
        let r = c.retry.unwrap();
        assert_eq!((r.max_retries, r.retry_on_status), (5, vec![429]));
        assert!(
            cfg(serde_json::json!({}))
                .unwrap_err()
                .message
                .contains("endpoints")
        );
        assert!(cfg(serde_json::json!({"endpoints": ["es:9200"]})).is_err());
        let e =
            cfg(serde_json::json!({"endpoints": ["http://a"], "logs_index": "Logs"})).unwrap_err();
        assert_eq!(e.path, vec!["logs_index"]);
        assert!(cfg(serde_json::json!({"endpoints": ["http://a"], "logs_index": "a b"})).is_err());
        assert!(
            cfg(serde_json::json!({"endpoints": ["http://a"], "logs_index": "app-logs"})).is_ok()
        );
        assert!(
            cfg(serde_json::json!({"endpoints": ["http://a"], "auth": {"user": "u"}})).is_err()
        );
        assert!(
            cfg(serde_json::json!({"endpoints": ["http://a"], "mapping": {"mode": "raw"}}))
                .is_err()
        );
        let e = cfg(serde_json::json!({"endpoints": ["http://a"], "logs_indx": "x"})).unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("logs_index"));
        assert!(cfg(serde_json::json!({"endpoint": "https://a", "auth": {"api_key": "k"}, "mapping": {"mode": "ecs"}})).is_ok());
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"elastic:changeme"), "ZWxhc3RpYzpjaGFuZ2VtZQ==");
    }
}
