//! What the `kafka` exporter and receiver share: connection settings, authentication,
//! message encodings and per-signal topics.
//!
//! Client: [krafka](https://crates.io/crates/krafka), a pure-Rust Kafka client on tokio
//! and rustls (the TLS stack weft already uses). Chosen over `rdkafka` because the bundled
//! librdkafka is a long C build (and needs OpenSSL for TLS/SCRAM), and over `rskafka`
//! because that has no consumer groups. Smoke-tested against tansu 0.6 (the broker the
//! tests use): idempotent producer, gzip/lz4/zstd/snappy, headers, consumer groups with
//! committed offsets, SASL SCRAM-SHA-256/512, mutual TLS (tests/kafka.rs).
//!
//! Shared keys (the Collector's names):
//! - `brokers` (`[localhost:9092]`), `client_id` (`otel-collector`).
//! - `topic` / `encoding`: one topic and encoding for every signal the component serves;
//!   or per signal `traces: {topic, encoding}`, `logs: {...}`, `metrics: {...}`. Default
//!   topics `otlp_spans`, `otlp_logs`, `otlp_metrics`; default encoding `otlp_proto`
//!   (`otlp_json` is the other one).
//! - `auth.sasl`: `username`, `password`, `mechanism` (`PLAIN`, `SCRAM-SHA-256`,
//!   `SCRAM-SHA-512`); `tls` (or the older `auth.tls`): `insecure` (plain text),
//!   `insecure_skip_verify`, `ca_file`, `cert_file`, `key_file`, `server_name_override`.
//!   Without a `tls` block the connection is plain text, as in the Collector.

use std::time::Duration;

use serde::Deserialize;

use crate::data::{Batch, DecodeError, Signal};
use crate::exporters::http_client::TlsClientConfig;

pub fn default_brokers() -> Vec<String> {
    vec!["localhost:9092".into()]
}

pub fn default_client_id() -> String {
    "otel-collector".into()
}

/// The Collector's default topic per signal.
pub fn default_topic(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "otlp_spans",
        Signal::Logs => "otlp_logs",
        Signal::Metrics => "otlp_metrics",
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    OtlpProto,
    OtlpJson,
}

impl Encoding {
    pub fn encode(self, batch: &Batch) -> Vec<u8> {
        match self {
            Encoding::OtlpProto => batch.encode_proto(),
            Encoding::OtlpJson => batch.encode_json(),
        }
    }

    pub fn decode(self, signal: Signal, bytes: &[u8]) -> Result<Batch, DecodeError> {
        match self {
            Encoding::OtlpProto => Batch::decode_proto(signal, bytes),
            Encoding::OtlpJson => Batch::decode_json(signal, bytes),
        }
    }
}

/// `traces:` / `logs:` / `metrics:` blocks.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SignalTopic {
    pub topic: Option<String>,
    pub encoding: Option<Encoding>,
}

/// Topic and encoding settings, resolved per signal.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    pub topic: Option<String>,
    pub encoding: Option<Encoding>,
    pub traces: SignalTopic,
    pub logs: SignalTopic,
    pub metrics: SignalTopic,
}

impl Topics {
    fn block(&self, s: Signal) -> &SignalTopic {
        match s {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }

    pub fn topic(&self, s: Signal) -> String {
        self.block(s)
            .topic
            .clone()
            .or_else(|| self.topic.clone())
            .unwrap_or_else(|| default_topic(s).to_string())
    }

    pub fn encoding(&self, s: Signal) -> Encoding {
        self.block(s).encoding.or(self.encoding).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub sasl: Option<SaslSettings>,
    /// The Collector's older place for `tls`.
    pub tls: Option<TlsClientConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    pub username: String,
    pub password: String,
    #[serde(default = "plain")]
    pub mechanism: String,
    /// SASL handshake version (accepted for Collector configs; krafka negotiates it).
    #[serde(default)]
    pub version: Option<i64>,
}

fn plain() -> String {
    "PLAIN".into()
}

/// The keys the exporter and the receiver share. Parsed apart from each side's own keys
/// (both strict about unknown keys), see [`parse`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    #[serde(default = "default_brokers")]
    pub brokers: Vec<String>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub traces: SignalTopic,
    #[serde(default)]
    pub logs: SignalTopic,
    #[serde(default)]
    pub metrics: SignalTopic,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
    /// Accepted for Collector configs (Sarama needs it; krafka negotiates versions).
    #[serde(default)]
    pub protocol_version: Option<String>,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            brokers: default_brokers(),
            client_id: default_client_id(),
            topic: None,
            encoding: None,
            traces: SignalTopic::default(),
            logs: SignalTopic::default(),
            metrics: SignalTopic::default(),
            auth: AuthSettings::default(),
            tls: None,
            protocol_version: None,
        }
    }
}

const COMMON_KEYS: &[&str] = &[
    "brokers",
    "client_id",
    "topic",
    "encoding",
    "traces",
    "logs",
    "metrics",
    "auth",
    "tls",
    "protocol_version",
];

impl Common {
    pub fn connection(&self) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
        }
    }

    pub fn topics(&self) -> Topics {
        Topics {
            topic: self.topic.clone(),
            encoding: self.encoding,
            traces: self.traces.clone(),
            logs: self.logs.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Splits a component config into the shared keys and the side's own keys `T`.
pub fn parse<T: serde::de::DeserializeOwned>(
    v: &serde_json::Value,
) -> Result<(Common, T), crate::config::FieldError> {
    let mut own = v.clone();
    let mut common = serde_json::Map::new();
    if let serde_json::Value::Object(m) = &mut own {
        for k in COMMON_KEYS {
            if let Some(x) = m.remove(*k) {
                common.insert(k.to_string(), x);
            }
        }
    }
    let c = crate::config::parse_component(&serde_json::Value::Object(common))?;
    let t = crate::config::parse_component(&own).map_err(|mut e| {
        // An unknown top-level key: the shared keys are valid too, so list and suggest them.
        if e.path.len() == 1 && e.message.starts_with("unknown field") {
            e.message = format!(
                "{}, {}",
                e.message,
                COMMON_KEYS
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if e.suggestion.is_none() {
                e.suggestion = crate::config::suggest(&e.path[0], COMMON_KEYS.iter().copied());
            }
        }
        e
    })?;
    Ok((c, t))
}

/// Everything needed to open a connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub auth: AuthSettings,
    pub tls: Option<TlsClientConfig>,
}

/// Why a Kafka configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConfigError {
    #[error("brokers is empty: list at least one host:port")]
    NoBrokers,
    #[error("broker {0:?} is not host:port")]
    BadBroker(String),
    #[error(
        "auth.sasl.mechanism {0:?} is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )]
    Mechanism(String),
    #[error("auth.sasl.username is empty")]
    EmptyUser,
    #[error("tls: {0}")]
    Tls(String),
}

impl KafkaConfigError {
    /// The config key the error is about.
    pub fn path(&self) -> &'static str {
        match self {
            KafkaConfigError::NoBrokers | KafkaConfigError::BadBroker(_) => "brokers",
            KafkaConfigError::Mechanism(_) => "auth.sasl.mechanism",
            KafkaConfigError::EmptyUser => "auth.sasl.username",
            KafkaConfigError::Tls(_) => "tls",
        }
    }
}

/// A failed check: the key path (dotted) and the message.
pub type Invalid = (&'static str, String);

impl From<KafkaConfigError> for Invalid {
    fn from(e: KafkaConfigError) -> Invalid {
        (e.path(), e.to_string())
    }
}

/// A check failure as a config error at its key path.
pub fn field_error((path, message): Invalid) -> crate::config::FieldError {
    crate::config::FieldError {
        path: path.split('.').map(str::to_string).collect(),
        message,
        suggestion: None,
    }
}

impl Connection {
    pub fn check(&self) -> Result<(), KafkaConfigError> {
        if self.brokers.is_empty() {
            return Err(KafkaConfigError::NoBrokers);
        }
        for b in &self.brokers {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(KafkaConfigError::BadBroker(b.clone()));
            }
        }
        self.auth_config().map(|_| ())
    }

    fn tls_settings(&self) -> Option<&TlsClientConfig> {
        self.tls.as_ref().or(self.auth.tls.as_ref())
    }

    /// krafka's security settings: SASL and/or TLS.
    pub fn auth_config(&self) -> Result<krafka::auth::AuthConfig, KafkaConfigError> {
        use krafka::auth::{AuthConfig, TlsConfig};
        let mut auth = match &self.auth.sasl {
            None => AuthConfig::plaintext(),
            Some(s) => {
                if s.username.is_empty() {
                    return Err(KafkaConfigError::EmptyUser);
                }
                match s.mechanism.to_ascii_uppercase().as_str() {
                    "PLAIN" => AuthConfig::sasl_plain(&s.username, &s.password),
                    "SCRAM-SHA-256" => AuthConfig::sasl_scram_sha256(&s.username, &s.password),
                    "SCRAM-SHA-512" => AuthConfig::sasl_scram_sha512(&s.username, &s.password),
                    other => return Err(KafkaConfigError::Mechanism(other.to_string())),
                }
            }
        };
        if let Some(t) = self.tls_settings().filter(|t| !t.insecure) {
            let mut tls = if t.insecure_skip_verify {
                TlsConfig::insecure()
            } else {
                TlsConfig::new()
            };
            if let Some(ca) = &t.ca_file {
                std::fs::metadata(ca).map_err(|e| KafkaConfigError::Tls(format!("{ca}: {e}")))?;
                tls = tls.with_ca_cert(ca.clone());
            }
            match (&t.cert_file, &t.key_file) {
                (Some(c), Some(k)) => tls = tls.with_client_cert(c.clone(), k.clone()),
                (None, None) => {}
                _ => {
                    return Err(KafkaConfigError::Tls(
                        "cert_file and key_file must be set together".into(),
                    ));
                }
            }
            if let Some(sni) = &t.server_name_override {
                tls = tls.with_sni_hostname(sni.clone());
            }
            auth = auth.with_tls(tls);
        }
        Ok(auth)
    }

    /// Opens the client (fetches cluster metadata from one of `brokers`); one broker
    /// request may take up to `request_timeout`.
    pub async fn connect(
        &self,
        request_timeout: Duration,
    ) -> Result<krafka::Kafka, krafka::KrafkaError> {
        crate::install_crypto_provider();
        let auth = self
            .auth_config()
            .map_err(|e| krafka::KrafkaError::config(e.to_string()))?;
        krafka::Kafka::builder(self.brokers.join(","))
            .client_id(self.client_id.clone())
            .security(auth)
            .connect_timeout(request_timeout.min(Duration::from_secs(5)))
            .request_timeout(request_timeout)
            .connect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(brokers: &[&str]) -> Connection {
        Connection {
            brokers: brokers.iter().map(|s| s.to_string()).collect(),
            client_id: "c".into(),
            auth: AuthSettings::default(),
            tls: None,
        }
    }

    #[test]
    fn topics_resolve_per_signal_then_shared_then_default() {
        let mut t = Topics::default();
        assert_eq!(t.topic(Signal::Traces), "otlp_spans");
        assert_eq!(t.topic(Signal::Logs), "otlp_logs");
        assert_eq!(t.topic(Signal::Metrics), "otlp_metrics");
        t.topic = Some("all".into());
        t.logs.topic = Some("logs-only".into());
        t.logs.encoding = Some(Encoding::OtlpJson);
        assert_eq!(t.topic(Signal::Traces), "all");
        assert_eq!(t.topic(Signal::Logs), "logs-only");
        assert_eq!(t.encoding(Signal::Logs), Encoding::OtlpJson);
        assert_eq!(t.encoding(Signal::Traces), Encoding::OtlpProto);
    }

    #[test]
    fn broker_lists_and_auth_are_checked() {
        assert!(conn(&["localhost:9092", "10.0.0.1:9093"]).check().is_ok());
        assert!(matches!(
            conn(&[]).check(),
            Err(KafkaConfigError::NoBrokers)
        ));
        assert!(matches!(
            conn(&["kafka"]).check(),
            Err(KafkaConfigError::BadBroker(_))
        ));
        let mut c = conn(&["k:9092"]);
        c.auth.sasl = Some(SaslSettings {
            username: "u".into(),
            password: "p".into(),
            mechanism: "GSSAPI".into(),
            version: None,
        });
        assert!(matches!(c.check(), Err(KafkaConfigError::Mechanism(_))));
        for m in ["PLAIN", "scram-sha-256", "SCRAM-SHA-512"] {
            if let Some(s) = c.auth.sasl.as_mut() {
                s.mechanism = m.into();
            }
            let a = c.auth_config().expect(m);
            assert!(a.requires_sasl(), "{m}");
            assert!(!a.requires_tls(), "{m}");
        }
        c.tls = Some(TlsClientConfig {
            insecure_skip_verify: true,
            ..Default::default()
        });
        assert!(c.auth_config().expect("sasl_ssl").requires_tls());
        c.tls = Some(TlsClientConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        });
        assert!(matches!(c.check(), Err(KafkaConfigError::Tls(_))));
        c.tls = Some(TlsClientConfig {
            insecure: true,
            ..Default::default()
        });
        assert!(!c.auth_config().expect("plain").requires_tls());
    }
}
