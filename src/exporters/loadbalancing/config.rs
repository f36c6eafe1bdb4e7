//! The `loadbalancing` exporter's config: the Collector's keys, validated purely, turned
//! into [`Settings`].

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::routing::RoutingKey;
use crate::config::validate::DELIVERY_KEYS;
use crate::config::{Dur, FieldError, parse_component, suggest};
use crate::exporters::otlp::OtlpGrpcConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    #[serde(default)]
    pub routing_attributes: Vec<String>,
    #[serde(default)]
    pub protocol: ProtocolConfig,
    pub resolver: ResolverConfig,
}

fn default_routing_key() -> String {
    "traceID".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// The `otlp` exporter's keys; checked as [`OtlpGrpcConfig`] with the endpoint filled
    /// in per backend.
    #[serde(default)]
    pub otlp: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    #[serde(default, rename = "static")]
    pub static_: Option<StaticResolver>,
    #[serde(default)]
    pub dns: Option<DnsResolver>,
    /// The Collector's other resolvers: named so the error can say what to use instead.
    #[serde(default)]
    pub k8s: Option<Value>,
    #[serde(default)]
    pub aws_cloud_map: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    pub hostnames: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    pub hostname: String,
    #[serde(default = "default_port")]
    pub port: Port,
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

fn default_port() -> Port {
    Port(4317)
}
fn default_interval() -> Dur {
    Dur::secs(5)
}
fn default_timeout() -> Dur {
    Dur::secs(1)
}

/// A port written as a number or, as the Collector's docs do, a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let n = match Raw::deserialize(d)? {
            Raw::N(n) => n,
            Raw::S(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| serde::de::Error::custom(format!("invalid port {s:?}")))?,
        };
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Port(p)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid port {n}: use 1-65535"
            ))),
        }
    }
}

/// Where the backend list comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolver {
    Static(Vec<String>),
    Dns {
        hostname: String,
        port: u16,
        interval: Duration,
        timeout: Duration,
    },
}

/// Everything the exporter needs, after validation.
#[derive(Debug, Clone)]
pub struct Settings {
    pub key: RoutingKey,
    pub resolver: Resolver,
    /// `protocol.otlp` without the delivery keys; `endpoint` is set per backend.
    pub otlp_template: Map<String, Value>,
    /// `protocol.otlp.timeout`: a per-backend attempt limit inside one send.
    pub backend_timeout: Option<Duration>,
}

const ROUTING_KEYS: &[&str] = &["traceID", "service", "resource", "metric", "attributes"];

fn err(path: &[&str], message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        suggestion: None,
    }
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    settings(v).map(|_| ())
}

/// Parses and checks the config (pure: no I/O).
pub fn settings(v: &Value) -> Result<Settings, FieldError> {
    let cfg: LoadBalancingConfig = parse_component(v)?;
    let key = match cfg.routing_key.as_str() {
        "traceID" => RoutingKey::TraceId,
        "service" => RoutingKey::Service,
        "resource" => RoutingKey::Resource,
        "metric" => RoutingKey::Metric,
        "attributes" => RoutingKey::Attributes(cfg.routing_attributes.clone()),
        "streamID" => {
            return Err(err(
                &["routing_key"],
                "routing_key streamID is not supported by weft: use metric, resource or attributes",
            ));
        }
        other => {
            let mut e = err(
                &["routing_key"],
                format!(
                    "unknown routing_key {other:?}: use one of {}",
                    ROUTING_KEYS.join(", ")
                ),
            );
            e.suggestion = suggest(other, ROUTING_KEYS.iter().copied());
            return Err(e);
        }
    };
    match (&key, cfg.routing_attributes.is_empty()) {
        (RoutingKey::Attributes(_), true) => {
            return Err(err(
                &["routing_attributes"],
                "routing_attributes must list at least one attribute when routing_key is attributes",
            ));
        }
        (RoutingKey::Attributes(_), false) | (_, true) => {}
        (_, false) => {
            return Err(err(
                &["routing_attributes"],
                "routing_attributes is only used with routing_key: attributes",
            ));
        }
    }

    let r = &cfg.resolver;
    if r.k8s.is_some() || r.aws_cloud_map.is_some() {
        let which = if r.k8s.is_some() {
            "k8s"
        } else {
            "aws_cloud_map"
        };
        return Err(err(
            &["resolver", which],
            format!(
                "resolver {which} is not supported by weft: use resolver.dns with a headless Service's name, or resolver.static"
            ),
        ));
    }
    let resolver = match (&r.static_, &r.dns) {
        (Some(_), Some(_)) => {
            return Err(err(
                &["resolver"],
                "set either resolver.static or resolver.dns, not both",
            ));
        }
        (None, None) => {
            return Err(err(
                &["resolver"],
                "a resolver is required: resolver.static.hostnames or resolver.dns.hostname",
            ));
        }
        (Some(s), None) => {
            if s.hostnames.is_empty() {
                return Err(err(
                    &["resolver", "static", "hostnames"],
                    "list at least one backend",
                ));
            }
            if let Some(i) = s.hostnames.iter().position(|h| h.trim().is_empty()) {
                return Err(err(
                    &["resolver", "static", "hostnames", &i.to_string()],
                    "empty hostname",
                ));
            }
            Resolver::Static(s.hostnames.iter().map(|h| with_port(h.trim())).collect())
        }
        (None, Some(d)) => {
            if d.hostname.trim().is_empty() {
                return Err(err(&["resolver", "dns", "hostname"], "empty hostname"));
            }
            if d.interval.get().is_zero() {
                return Err(err(
                    &["resolver", "dns", "interval"],
                    "interval must be positive",
                ));
            }
            Resolver::Dns {
                hostname: d.hostname.trim().to_string(),
                port: d.port.0,
                interval: d.interval.get(),
                timeout: d.timeout.get(),
            }
        }
    };

    let (otlp_template, backend_timeout) = otlp_template(&cfg.protocol.otlp)?;
    Ok(Settings {
        key,
        resolver,
        otlp_template,
        backend_timeout,
    })
}

/// `protocol.otlp` checked as the otlp exporter's config (with a stand-in endpoint), minus
/// the keys the outer delivery owns. `timeout` is kept aside as the per-backend limit.
fn otlp_template(v: &Value) -> Result<(Map<String, Value>, Option<Duration>), FieldError> {
    let mut m = match v {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => return Err(err(&["protocol", "otlp"], "expected a map")),
    };
    let mut timeout = None;
    for k in DELIVERY_KEYS {
        if let Some(val) = m.remove(*k)
            && *k == "timeout"
        {
            let d: Dur = parse_component(&val).map_err(|mut e| {
                e.path.insert(0, "timeout".into());
                prefix(e)
            })?;
            timeout = Some(d.get()).filter(|d| !d.is_zero());
        }
    }
    // The Collector ignores protocol.otlp.endpoint; so does weft (the resolver decides).
    m.remove("endpoint");
    let mut probe = m.clone();
    probe.insert("endpoint".into(), Value::String("localhost:4317".into()));
    parse_component::<OtlpGrpcConfig>(&Value::Object(probe)).map_err(prefix)?;
    Ok((m, timeout))
}

fn prefix(mut e: FieldError) -> FieldError {
    e.path
        .splice(0..0, ["protocol".to_string(), "otlp".to_string()]);
    e
}

/// The Collector's static hostnames may omit the port; OTLP/gRPC's 4317 is the default.
pub fn with_port(h: &str) -> String {
    if h.contains("://") {
        return h.to_string();
    }
    if let Some(rest) = h.strip_prefix('[') {
        return if rest.contains("]:") {
            h.to_string()
        } else {
            format!("{h}:4317")
        };
    }
    match h.matches(':').count() {
        0 => format!("{h}:4317"),
        1 => h.to_string(),
        _ => format!("[{h}]:4317"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_deploy_agent_config_is_accepted() {
        let s = settings(&json!({
            "routing_key": "traceID",
            "protocol": {"otlp": {"tls": {"insecure": true}, "timeout": "2s"}},
            "resolver": {"dns": {"hostname": "gw-headless.obs.svc.cluster.local", "port": 4317, "interval": "5s"}}
        }))
        .unwrap();
        assert_eq!(s.key, RoutingKey::TraceId);
        assert_eq!(s.backend_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            s.resolver,
            Resolver::Dns {
                hostname: "gw-headless.obs.svc.cluster.local".into(),
                port: 4317,
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
            }
        );
        assert!(!s.otlp_template.contains_key("timeout"));
    }

    #[test]
    fn defaults_and_static_hostnames() {
        let s = settings(&json!({
            "resolver": {"static": {"hostnames": ["gw-1", "gw-2:5317", "10.0.0.1", "[::1]", "http://gw-3:4317"]}}
        }))
        .unwrap();
        assert_eq!(s.key, RoutingKey::TraceId);
        assert_eq!(
            s.resolver,
            Resolver::Static(vec![
                "gw-1:4317".into(),
                "gw-2:5317".into(),
                "10.0.0.1:4317".into(),
                "[::1]:4317".into(),
                "http://gw-3:4317".into()
            ])
        );
        let d = settings(&json!({"resolver": {"dns": {"hostname": "h", "port": "5317"}}})).unwrap();
        assert!(matches!(d.resolver, Resolver::Dns { port: 5317, .. }));
    }

    #[test]
    fn bad_configs_name_the_key() {
        let cases = [
            (json!({"resolver": {}}), "resolver"),
            (
                json!({"resolver": {"static": {"hostnames": []}}}),
                "resolver.static.hostnames",
            ),
            (
                json!({"routing_key": "traceid", "resolver": {"static": {"hostnames": ["a"]}}}),
                "routing_key",
            ),
            (
                json!({"routing_key": "attributes", "resolver": {"static": {"hostnames": ["a"]}}}),
                "routing_attributes",
            ),
            (
                json!({"routing_attributes": ["x"], "resolver": {"static": {"hostnames": ["a"]}}}),
                "routing_attributes",
            ),
            (
                json!({"resolver": {"k8s": {"service": "gw"}}}),
                "resolver.k8s",
            ),
            (
                json!({"resolver": {"static": {"hostnames": ["a"]}, "dns": {"hostname": "b"}}}),
                "resolver",
            ),
            (
                json!({"resolver": {"dns": {"hostname": "b", "port": 70000}}}),
                "resolver.dns.port",
            ),
            (
                json!({"protocol": {"otlp": {"compresion": "gzip"}}, "resolver": {"dns": {"hostname": "b"}}}),
                "protocol.otlp.compresion",
            ),
            (
                json!({"resolver": {"static": {"hostnames": ["a"]}}, "resolvr": {}}),
                "resolvr",
            ),
        ];
        for (v, path) in cases {
            let e = settings(&v).expect_err(path);
            assert_eq!(e.path.join("."), path, "{v}: {}", e.message);
        }
        let e = settings(
            &json!({"routing_key": "traceid", "resolver": {"static": {"hostnames": ["a"]}}}),
        )
        .unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("traceID"));
    }

    #[test]
    fn attributes_key_keeps_its_names() {
        let s = settings(&json!({
            "routing_key": "attributes",
            "routing_attributes": ["tenant", "span.name"],
            "resolver": {"static": {"hostnames": ["a"]}}
        }))
        .unwrap();
        assert_eq!(
            s.key,
            RoutingKey::Attributes(vec!["tenant".into(), "span.name".into()])
        );
    }
}
