//! The `resourcedetection` processor: stamps attributes describing where weft runs (node,
//! pod, namespace, host) onto the resource of every batch, as the OpenTelemetry
//! Collector's processor of the same name does.
//!
//! Config keys (the Collector's names and defaults):
//! - `detectors` (required, non-empty): detectors in priority order; when two detect the
//!   same key, the earlier one wins.
//!   - `env`: `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, keys and values percent-decoded;
//!     `+` stays a plus, as in the OpenTelemetry SDKs) plus the Kubernetes downward-API
//!     variables weft's manifests set: `K8S_NODE_NAME` → `k8s.node.name`, `K8S_POD_NAME`
//!     → `k8s.pod.name`, `K8S_NAMESPACE` → `k8s.namespace.name`, and `HOSTNAME` →
//!     `host.name`. A key written in `OTEL_RESOURCE_ATTRIBUTES` beats the variable.
//!   - `system`: `host.name` (the kernel's host name) and `os.type` (`linux`, `darwin`, ...).
//! - `override` (default `true`): whether detected values replace attributes the data
//!   already carries; with `false` they only fill in missing keys.
//! - `timeout` (default `5s`): accepted for Collector configs; both detectors are local
//!   reads that cannot hang, so it bounds nothing.
//! - `env.allow_list` (default: all): only these keys of the `env` detector are used. A
//!   DaemonSet agent handles other pods' data, so it allows `k8s.node.name` but not its
//!   own `k8s.pod.name`.
//!
//! The environment is read once, when the processor is built (`build`); processing is a
//! pure function of the batch, so a variable changed later has no effect ("no hidden
//! knobs": nothing reads the environment per batch). An unknown detector is a config error
//! naming it; a malformed `OTEL_RESOURCE_ATTRIBUTES` fails the build with the offending
//! text (the Collector also refuses to start then). Detectors are local reads, so `build`
//! does not block.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError, parse_component, suggest};
use crate::data::{Batch, KeyValue, Resource, set_attr, string_value};
use crate::processors::{Processor, ProcessorError};

/// Detectors weft implements.
pub const DETECTORS: &[&str] = &["env", "system"];

/// Detectors the Collector has that weft does not (for a plainer error than a look-alike
/// suggestion).
const COLLECTOR_ONLY: &[&str] = &[
    "ec2",
    "ecs",
    "eks",
    "elasticbeanstalk",
    "lambda",
    "azure",
    "aks",
    "consul",
    "docker",
    "gcp",
    "heroku",
    "openshift",
    "k8snode",
    "k8s_api",
    "kubeadm",
];

/// The `env` detector's downward-API variables and the attribute each becomes.
const ENV_VARIABLES: &[(&str, &str)] = &[
    ("K8S_NODE_NAME", "k8s.node.name"),
    ("K8S_POD_NAME", "k8s.pod.name"),
    ("K8S_NAMESPACE", "k8s.namespace.name"),
    ("HOSTNAME", "host.name"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDetectionConfig {
    #[serde(default)]
    pub detectors: Vec<String>,
    #[serde(default = "default_override", rename = "override")]
    pub override_existing: bool,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    #[serde(default)]
    pub env: EnvDetectorConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvDetectorConfig {
    /// Only these keys; `None` = all.
    pub allow_list: Option<Vec<String>>,
}

fn default_override() -> bool {
    true
}

fn default_timeout() -> Dur {
    Dur::secs(5)
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    parse(v).map(|_| ())
}

fn parse(v: &Value) -> Result<ResourceDetectionConfig, FieldError> {
    let cfg: ResourceDetectionConfig = parse_component(v)?;
    if cfg.detectors.is_empty() {
        return Err(FieldError {
            path: vec!["detectors".into()],
            message: format!(
                "at least one detector is required (weft has: {})",
                DETECTORS.join(", ")
            ),
            suggestion: None,
        });
    }
    for (i, d) in cfg.detectors.iter().enumerate() {
        if DETECTORS.contains(&d.as_str()) {
            continue;
        }
        let collector_has_it = COLLECTOR_ONLY.contains(&d.as_str());
        let message = if collector_has_it {
            format!(
                "detector {d:?} exists in the OpenTelemetry Collector but not in weft (weft has: {})",
                DETECTORS.join(", ")
            )
        } else {
            format!(
                "unknown detector {d:?} (weft has: {})",
                DETECTORS.join(", ")
            )
        };
        return Err(FieldError {
            path: vec!["detectors".into(), i.to_string()],
            message,
            suggestion: if collector_has_it {
                None
            } else {
                suggest(d, DETECTORS.iter().copied())
            },
        });
    }
    Ok(cfg)
}

/// What the detectors read: injected so tests never touch the process environment.
pub struct HostEnvironment<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub hostname: &'a dyn Fn() -> Option<String>,
    /// `std::env::consts::OS`.
    pub os: &'a str,
}

/// Why detection failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DetectError(String);

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let var = |name: &str| std::env::var(name).ok();
    let env = HostEnvironment {
        var: &var,
        hostname: &kernel_hostname,
        os: std::env::consts::OS,
    };
    build_with(v, &env).map_err(|e| BuildError::new(&ctx.id, e))
}

/// Builds the processor from config and an explicit environment.
pub fn build_with(v: &Value, env: &HostEnvironment<'_>) -> Result<Box<dyn Processor>, String> {
    let cfg = parse(v).map_err(|e| format!("{}: {}", e.path.join("."), e.message))?;
    let attributes = detect(&cfg, env).map_err(|e| e.to_string())?;
    tracing::info!(
        detected = ?attributes.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        "resourcedetection: detected resource attributes"
    );
    Ok(Box::new(ResourceDetection {
        attributes,
        override_existing: cfg.override_existing,
    }))
}

/// Runs the configured detectors in order and merges their results (earlier wins).
pub fn detect(
    cfg: &ResourceDetectionConfig,
    env: &HostEnvironment<'_>,
) -> Result<Vec<KeyValue>, DetectError> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for d in &cfg.detectors {
        let found = match d.as_str() {
            "env" => detect_env(&cfg.env, env)?,
            "system" => detect_system(env),
            other => return Err(DetectError(format!("unknown detector {other:?}"))),
        };
        for (k, v) in found {
            if !merged.iter().any(|(mk, _)| *mk == k) {
                merged.push((k, v));
            }
        }
    }
    let mut attributes = Vec::with_capacity(merged.len());
    for (key, value) in merged {
        set_attr(&mut attributes, &key, string_value(value));
    }
    Ok(attributes)
}

fn detect_env(
    cfg: &EnvDetectorConfig,
    env: &HostEnvironment<'_>,
) -> Result<Vec<(String, String)>, DetectError> {
    let mut out = match (env.var)("OTEL_RESOURCE_ATTRIBUTES") {
        Some(text) => parse_resource_attributes(&text).map_err(|e| {
            DetectError(format!(
                "environment variable OTEL_RESOURCE_ATTRIBUTES: {e}"
            ))
        })?,
        None => Vec::new(),
    };
    for (var, key) in ENV_VARIABLES {
        let Some(value) = (env.var)(var) else {
            continue;
        };
        let value = value.trim();
        if !value.is_empty() && !out.iter().any(|(k, _)| k == key) {
            out.push(((*key).to_string(), value.to_string()));
        }
    }
    if let Some(allow) = &cfg.allow_list {
        let allow: BTreeSet<&str> = allow.iter().map(String::as_str).collect();
        out.retain(|(k, _)| allow.contains(k.as_str()));
    }
    Ok(out)
}

fn detect_system(env: &HostEnvironment<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(h) = (env.hostname)() {
        let h = h.trim();
        if !h.is_empty() {
            out.push(("host.name".to_string(), h.to_string()));
        }
    }
    // Semantic-conventions spelling of `os.type`.
    let os_type = match env.os {
        "macos" => "darwin",
        other => other,
    };
    if !os_type.is_empty() {
        out.push(("os.type".to_string(), os_type.to_string()));
    }
    out
}

/// The kernel's host name (what `hostname` prints), read once at build.
fn kernel_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: comma-separated `key=value`, surrounding spaces
/// ignored, keys and values percent-decoded. Empty entries are skipped.
pub fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((k, v)) = entry.split_once('=') else {
            return Err(format!("{entry:?} is not key=value"));
        };
        let key = percent_decode(k.trim()).map_err(|e| format!("in {entry:?}: {e}"))?;
        let value = percent_decode(v.trim()).map_err(|e| format!("in {entry:?}: {e}"))?;
        if key.is_empty() {
            return Err(format!("{entry:?} has an empty key"));
        }
        // A later duplicate wins, as in the SDKs.
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid percent escape at {:?}", &s[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not decode to UTF-8".to_string())
}

/// The built processor: detected attributes, fixed at build.
struct ResourceDetection {
    attributes: Vec<KeyValue>,
    override_existing: bool,
}

impl ResourceDetection {
    fn apply(&self, resource: &mut Option<Resource>) {
        let r = resource.get_or_insert_with(Resource::default);
        for kv in &self.attributes {
            let present = r.attributes.iter().any(|a| a.key == kv.key);
            if present && !self.override_existing {
                continue;
            }
            if let Some(value) = kv.value.as_ref().and_then(|v| v.value.clone()) {
                set_attr(&mut r.attributes, &kv.key, value);
            }
        }
    }
}

impl Processor for ResourceDetection {
    fn process(&mut self, mut batch: Batch, _now: Instant) -> Result<Vec<Batch>, ProcessorError> {
        if !self.attributes.is_empty() {
            batch = super::decoded(batch)?;
            match &mut batch {
                Batch::Raw(_) => {}
                Batch::Traces(v) => v.iter_mut().for_each(|r| self.apply(&mut r.resource)),
                Batch::Logs(v) => v.iter_mut().for_each(|r| self.apply(&mut r.resource)),
                Batch::Metrics(v) => v.iter_mut().for_each(|r| self.apply(&mut r.resource)),
            }
        }
        Ok(vec![batch])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ResourceLogs, ResourceMetrics, ResourceSpans, attr_str};
    use serde_json::json;
    use std::collections::HashMap;

    fn environment(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn build_from(
        cfg: Value,
        vars: &[(&str, &str)],
        host: Option<&str>,
    ) -> Result<Box<dyn Processor>, String> {
        let map = environment(vars);
        let var = move |k: &str| map.get(k).cloned();
        let hostname = move || host.map(str::to_string);
        let env = HostEnvironment {
            var: &var,
            hostname: &hostname,
            os: "linux",
        };
        build_with(&cfg, &env)
    }

    fn detected(cfg: Value, vars: &[(&str, &str)]) -> Vec<(String, String)> {
        let cfg = parse(&cfg).unwrap();
        let map = environment(vars);
        let var = move |k: &str| map.get(k).cloned();
        let env = HostEnvironment {
            var: &var,
            hostname: &|| Some("node-7".into()),
            os: "linux",
        };
        detect(&cfg, &env)
            .unwrap()
            .into_iter()
            .map(|kv| {
                let v = kv
                    .value
                    .and_then(|v| v.value)
                    .map(|v| crate::data::value_to_string(&v));
                (kv.key, v.unwrap_or_default())
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn traces_with(resource_attrs: &[(&str, &str)]) -> Batch {
        let mut attributes = Vec::new();
        for (k, v) in resource_attrs {
            set_attr(&mut attributes, k, string_value(*v));
        }
        Batch::Traces(vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            ..Default::default()
        }])
    }

    fn resource_of(b: &Batch) -> Vec<KeyValue> {
        match b {
            Batch::Traces(v) => v[0].resource.clone().unwrap_or_default().attributes,
            Batch::Logs(v) => v[0].resource.clone().unwrap_or_default().attributes,
            Batch::Metrics(v) => v[0].resource.clone().unwrap_or_default().attributes,
            Batch::Raw(_) => unreachable!("processors output decoded batches"),
        }
    }

    #[test]
    fn env_detector_reads_downward_api_variables() {
        let got = detected(
            json!({"detectors": ["env"]}),
            &[
                ("K8S_NODE_NAME", "node-a"),
                ("K8S_POD_NAME", "weft-agent-x1"),
                ("K8S_NAMESPACE", "observability"),
                ("HOSTNAME", "weft-agent-x1"),
                ("UNRELATED", "ignored"),
            ],
        );
        assert_eq!(
            got,
            pairs(&[
                ("k8s.node.name", "node-a"),
                ("k8s.pod.name", "weft-agent-x1"),
                ("k8s.namespace.name", "observability"),
                ("host.name", "weft-agent-x1"),
            ])
        );
    }

    #[test]
    fn otel_resource_attributes_are_parsed_decoded_and_win_over_variables() {
        let got = detected(
            json!({"detectors": ["env"]}),
            &[
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    " service.namespace = shop , k8s.node.name=from%20otel,team=a%2Cb+c,",
                ),
                ("K8S_NODE_NAME", "node-a"),
            ],
        );
        assert_eq!(
            got,
            pairs(&[
                ("service.namespace", "shop"),
                ("k8s.node.name", "from otel"),
                ("team", "a,b+c"),
            ])
        );
    }

    #[test]
    fn malformed_otel_resource_attributes_fail_the_build_naming_the_variable() {
        for bad in ["novalue", "k=%zz", "=v", "k=%e2%28"] {
            let err = build_from(
                json!({"detectors": ["env"]}),
                &[("OTEL_RESOURCE_ATTRIBUTES", bad)],
                None,
            )
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(err.contains("OTEL_RESOURCE_ATTRIBUTES"), "{err}");
        }
    }

    #[test]
    fn allow_list_limits_the_env_detector() {
        let got = detected(
            json!({"detectors": ["env"], "env": {"allow_list": ["k8s.node.name"]}}),
            &[
                ("K8S_NODE_NAME", "node-a"),
                ("K8S_POD_NAME", "agent-pod"),
                ("OTEL_RESOURCE_ATTRIBUTES", "a=b"),
            ],
        );
        assert_eq!(got, pairs(&[("k8s.node.name", "node-a")]));
    }

    #[test]
    fn system_detector_and_detector_priority() {
        // env first: its host.name wins over the system detector's.
        let got = detected(
            json!({"detectors": ["env", "system"]}),
            &[("HOSTNAME", "pod-1")],
        );
        assert_eq!(got, pairs(&[("host.name", "pod-1"), ("os.type", "linux")]));
        let got = detected(
            json!({"detectors": ["system", "env"]}),
            &[("HOSTNAME", "pod-1")],
        );
        assert_eq!(got, pairs(&[("host.name", "node-7"), ("os.type", "linux")]));
    }

    #[test]
    fn unknown_and_missing_detectors_are_config_errors() {
        let e = validate(&json!({"detectors": ["env", "sytem"]})).unwrap_err();
        assert_eq!(e.path, vec!["detectors", "1"]);
        assert!(e.message.contains("\"sytem\""), "{}", e.message);
        assert_eq!(e.suggestion.as_deref(), Some("system"));

        let e = validate(&json!({"detectors": ["ec2"]})).unwrap_err();
        assert!(e.message.contains("Collector"), "{}", e.message);
        assert_eq!(e.suggestion, None);

        let e = validate(&json!({})).unwrap_err();
        assert_eq!(e.path, vec!["detectors"]);

        let e = validate(&json!({"detectors": ["env"], "overide": false})).unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("override"));

        validate(&json!({"detectors": ["env", "system"], "override": false, "timeout": "2s"}))
            .unwrap();
    }

    #[test]
    fn override_true_replaces_and_false_fills_in() {
        let vars = [("K8S_NODE_NAME", "node-a"), ("K8S_NAMESPACE", "prod")];
        let input = traces_with(&[("k8s.node.name", "from-sdk"), ("service.name", "order")]);

        let mut p = build_from(json!({"detectors": ["env"]}), &vars, None).unwrap();
        let out = p.process(input.clone(), Instant::now()).unwrap();
        let attrs = resource_of(&out[0]);
        assert_eq!(attr_str(&attrs, "k8s.node.name"), Some("node-a"));
        assert_eq!(attr_str(&attrs, "k8s.namespace.name"), Some("prod"));
        assert_eq!(attr_str(&attrs, "service.name"), Some("order"));

        let mut p = build_from(
            json!({"detectors": ["env"], "override": false}),
            &vars,
            None,
        )
        .unwrap();
        let out = p.process(input, Instant::now()).unwrap();
        let attrs = resource_of(&out[0]);
        assert_eq!(attr_str(&attrs, "k8s.node.name"), Some("from-sdk"));
        assert_eq!(attr_str(&attrs, "k8s.namespace.name"), Some("prod"));
    }

    #[test]
    fn every_signal_gets_attributes_even_without_a_resource() {
        let mut p = build_from(
            json!({"detectors": ["env"]}),
            &[("K8S_NODE_NAME", "n1")],
            None,
        )
        .unwrap();
        let batches = [
            Batch::Traces(vec![ResourceSpans::default()]),
            Batch::Logs(vec![ResourceLogs::default()]),
            Batch::Metrics(vec![ResourceMetrics::default()]),
        ];
        for b in batches {
            let out = p.process(b, Instant::now()).unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(attr_str(&resource_of(&out[0]), "k8s.node.name"), Some("n1"));
        }
    }

    #[test]
    fn environment_is_read_once_at_build() {
        use std::cell::Cell;
        let reads = Cell::new(0usize);
        let var = |k: &str| {
            reads.set(reads.get() + 1);
            (k == "K8S_NODE_NAME").then(|| "n1".to_string())
        };
        let env = HostEnvironment {
            var: &var,
            hostname: &|| None,
            os: "linux",
        };
        let mut p = build_with(&json!({"detectors": ["env"]}), &env).unwrap();
        let after_build = reads.get();
        for _ in 0..3 {
            p.process(traces_with(&[]), Instant::now()).unwrap();
        }
        assert_eq!(reads.get(), after_build);
    }

    #[test]
    fn nothing_detected_passes_batches_through_unchanged() {
        let mut p = build_from(json!({"detectors": ["env"]}), &[], None).unwrap();
        let input = traces_with(&[("service.name", "x")]);
        let out = p.process(input.clone(), Instant::now()).unwrap();
        assert_eq!(out, vec![input]);
    }
}
