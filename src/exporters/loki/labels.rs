//! Stream labels: which attributes become Loki index labels, under which names, and the
//! label string Loki parses (`{k="v", k2="v2"}`, sorted by name, Go-quoted values).
//!
//! Defaults follow Loki 3's native OTLP ingestion so dashboards match logs that went
//! straight to Loki's `/otlp` endpoint: the resource attributes Loki indexes by default
//! ([`LOKI_DEFAULT_RESOURCE_LABELS`], without the high-cardinality `k8s.pod.name` and
//! `service.instance.id`) with every character outside `[a-zA-Z0-9_]` turned into `_`,
//! plus `level` from the record's severity.
//!
//! YAML shape (`labels:`), every key optional:
//! ```yaml
//! labels:
//!   defaults: true            # Loki 3's default resource labels
//!   level: true               # `level` label from severity (trace/debug/info/warn/error/fatal)
//!   resource:                 # more labels from resource attributes: attribute -> label name
//!     k8s.pod.name: pod       #   (an empty name means the normalized attribute name)
//!   attributes:               # labels from log record attributes (beware cardinality)
//!     http.route:
//!   drop: [k8s.replicaset.name]        # attribute or label names to leave out
//!   rename: {deployment.environment.name: env}   # label (or attribute) name -> new name
//! ```
//! An attribute that does not become a label stays in structured metadata or the line.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::data::{KeyValue, any_value, value_to_string};

/// The resource attributes Loki 3 turns into index labels by default, minus `k8s.pod.name`
/// and `service.instance.id` (Loki no longer recommends them: one stream per pod).
pub const LOKI_DEFAULT_RESOURCE_LABELS: &[&str] = &[
    "service.name",
    "service.namespace",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "container.name",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.container.name",
    "k8s.deployment.name",
    "k8s.daemonset.name",
    "k8s.statefulset.name",
    "k8s.replicaset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// What Loki stores for a stream that has no label at all.
pub const UNKNOWN_SERVICE: (&str, &str) = ("service_name", "unknown_service");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelsConfig {
    pub defaults: bool,
    pub level: bool,
    pub resource: BTreeMap<String, Option<String>>,
    pub attributes: BTreeMap<String, Option<String>>,
    pub drop: Vec<String>,
    pub rename: BTreeMap<String, String>,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            defaults: true,
            level: true,
            resource: BTreeMap::new(),
            attributes: BTreeMap::new(),
            drop: Vec::new(),
            rename: BTreeMap::new(),
        }
    }
}

/// The label mapping, resolved once from [`LabelsConfig`]: drops and renames applied.
#[derive(Debug, Clone)]
pub struct LabelRules {
    /// (resource attribute key, label name)
    resource: Vec<(String, String)>,
    /// (record attribute key, label name)
    attributes: Vec<(String, String)>,
    level: Option<String>,
    max_value_len: usize,
}

/// Labels of one record and the attribute keys they consumed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RecordLabels {
    pub labels: BTreeMap<String, String>,
    pub used_resource: BTreeSet<String>,
    pub used_record: BTreeSet<String>,
    pub truncated: u64,
}

impl LabelRules {
    pub fn new(cfg: &LabelsConfig, max_value_len: usize) -> LabelRules {
        let dropped: BTreeSet<String> = cfg.drop.iter().map(|d| normalize_name(d)).collect();
        let renames: BTreeMap<String, String> = cfg
            .rename
            .iter()
            .map(|(k, v)| (normalize_name(k), normalize_name(v)))
            .collect();
        let resolve = |attr: &str, name: &str| -> Option<String> {
            let name = normalize_name(name);
            if dropped.contains(&name) || dropped.contains(&normalize_name(attr)) {
                return None;
            }
            let renamed = renames.get(&name).cloned().unwrap_or(name);
            (!dropped.contains(&renamed)).then_some(renamed)
        };
        let mut resource: Vec<(String, String)> = Vec::new();
        if cfg.defaults {
            for a in LOKI_DEFAULT_RESOURCE_LABELS {
                if cfg.resource.contains_key(*a) {
                    continue;
                }
                if let Some(n) = resolve(a, a) {
                    resource.push((a.to_string(), n));
                }
            }
        }
        for (a, n) in &cfg.resource {
            let name = n.as_deref().filter(|n| !n.is_empty()).unwrap_or(a);
            if let Some(n) = resolve(a, name) {
                resource.push((a.clone(), n));
            }
        }
        let attributes = cfg
            .attributes
            .iter()
            .filter_map(|(a, n)| {
                let name = n.as_deref().filter(|n| !n.is_empty()).unwrap_or(a);
                resolve(a, name).map(|n| (a.clone(), n))
            })
            .collect();
        let level = if cfg.level {
            resolve("level", "level")
        } else {
            None
        };
        LabelRules {
            resource,
            attributes,
            level,
            max_value_len,
        }
    }

    /// Whether some label comes from record attributes (labels then vary per record, not
    /// only per resource and level).
    pub fn has_record_rules(&self) -> bool {
        !self.attributes.is_empty()
    }

    /// Labels for one record. Record-attribute labels win over resource labels of the same
    /// name; empty values are left out (Loki drops them too); values longer than the limit
    /// are cut at a character boundary and counted.
    pub fn labels_for(
        &self,
        resource_attrs: &[KeyValue],
        record_attrs: &[KeyValue],
        severity_number: i32,
        severity_text: &str,
    ) -> RecordLabels {
        let mut out = RecordLabels::default();
        for (key, name) in &self.resource {
            if let Some(v) = lookup(resource_attrs, key)
                && self.insert(&mut out, name, v)
            {
                out.used_resource.insert(key.clone());
            }
        }
        for (key, name) in &self.attributes {
            if let Some(v) = lookup(record_attrs, key)
                && self.insert(&mut out, name, v)
            {
                out.used_record.insert(key.clone());
            }
        }
        if let (Some(name), Some(level)) = (&self.level, level_of(severity_number, severity_text)) {
            self.insert(&mut out, name, level.to_string());
        }
        out
    }

    fn insert(&self, out: &mut RecordLabels, name: &str, mut value: String) -> bool {
        if value.is_empty() {
            return false;
        }
        if truncate_at_boundary(&mut value, self.max_value_len) {
            out.truncated += 1;
        }
        out.labels.insert(name.to_string(), value);
        true
    }
}

fn lookup(attrs: &[KeyValue], key: &str) -> Option<String> {
    crate::data::attr(attrs, key).map(value_to_string)
}

/// Cuts `s` to at most `max` bytes without splitting a character. Returns whether it cut.
pub fn truncate_at_boundary(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    true
}

/// Loki's (Prometheus's) label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`. Other characters become
/// `_`; a leading digit gets a `_` prefix.
pub fn normalize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The `level` label value for an OTLP severity: the number's range when set, otherwise
/// the common spellings of the text. Unknown texts give `unknown` (never free text: that
/// would make the label's cardinality unbounded).
pub fn level_of(severity_number: i32, severity_text: &str) -> Option<&'static str> {
    match severity_number {
        1..=4 => return Some("trace"),
        5..=8 => return Some("debug"),
        9..=12 => return Some("info"),
        13..=16 => return Some("warn"),
        17..=20 => return Some("error"),
        21..=24 => return Some("fatal"),
        _ => {}
    }
    let t = severity_text.trim();
    if t.is_empty() {
        return None;
    }
    // Compared ignoring ASCII case, without lower-casing a copy (this runs per record).
    const SPELLINGS: &[(&[&str], &str)] = &[
        (&["trace", "trc"], "trace"),
        (&["debug", "dbg"], "debug"),
        (&["info", "information", "informational", "notice"], "info"),
        (&["warn", "warning", "wrn"], "warn"),
        (&["error", "err", "eror"], "error"),
        (
            &["fatal", "critical", "crit", "panic", "emerg", "alert"],
            "fatal",
        ),
    ];
    Some(
        SPELLINGS
            .iter()
            .find(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(t)))
            .map_or("unknown", |(_, level)| level),
    )
}

/// The label string Loki parses: sorted names, values quoted the way Go's `strconv.Quote`
/// does for the characters that matter. An empty set becomes
/// `{service_name="unknown_service"}`, as Loki would store it.
pub fn label_string(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{");
    let unknown;
    let pairs: Vec<(&str, &str)> = if labels.is_empty() {
        unknown = [UNKNOWN_SERVICE];
        unknown.to_vec()
    } else {
        labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    };
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// A string attribute value, for building test records.
pub fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(crate::data::AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// An ASCII character as [`normalize_name`] writes it: itself if alphanumeric or `_`,
/// else `_`.
const NAME_BYTE: [u8; 128] = {
    let mut t = [b'_'; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        if c.is_ascii_alphanumeric() {
            t[i] = c;
        }
        i += 1;
    }
    t
};

/// [`normalize_name`], appended.
#[inline]
pub(super) fn normalize_into(out: &mut Vec<u8>, name: &str) {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push(b'_');
    }
    if name.is_ascii() {
        // One byte per character, mapped as it is appended (names are short: no memcpy
        // call, one exact-size append).
        out.extend(name.bytes().map(|b| NAME_BYTE[usize::from(b & 0x7f)]));
        return;
    }
    for c in name.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c as u8
        } else {
            b'_'
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_names_are_normalize_names() {
        let mut rng = fastrand::Rng::with_seed(12);
        let chars = [
            'a', 'Z', '0', '9', '_', '.', '-', ' ', 'é', '字', '\u{7f}', '/',
        ];
        for _ in 0..2000 {
            let name: String = (0..rng.usize(0..8))
                .map(|_| chars[rng.usize(0..chars.len())])
                .collect();
            let mut out = b"x".to_vec();
            normalize_into(&mut out, &name);
            assert_eq!(out[1..], *normalize_name(&name).as_bytes(), "{name:?}");
        }
    }

    fn rules(cfg: LabelsConfig) -> LabelRules {
        LabelRules::new(&cfg, 2048)
    }

    #[test]
    fn defaults_follow_loki3_otlp_with_dots_replaced_and_level() {
        let r = rules(LabelsConfig::default());
        let res = [
            string_kv("service.name", "checkout"),
            string_kv("k8s.namespace.name", "shop"),
            string_kv("k8s.pod.name", "checkout-7d9f-abcde"),
            string_kv("service.instance.id", "i-1"),
            string_kv("host.name", "node-1"),
        ];
        let l = r.labels_for(&res, &[], 17, "");
        let names: Vec<&str> = l.labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["k8s_namespace_name", "level", "service_name"]);
        assert_eq!(l.labels["level"], "error");
        assert!(l.used_resource.contains("service.name"));
        assert!(!l.used_resource.contains("k8s.pod.name"));
    }

    #[test]
    fn add_drop_and_rename() {
        let cfg = LabelsConfig {
            resource: [("k8s.pod.name".to_string(), Some("pod".to_string()))].into(),
            attributes: [("http.route".to_string(), None)].into(),
            drop: vec!["k8s.namespace.name".into(), "level".into()],
            rename: [("service.name".to_string(), "app".to_string())].into(),
            ..Default::default()
        };
        let r = rules(cfg);
        let res = [
            string_kv("service.name", "checkout"),
            string_kv("k8s.namespace.name", "shop"),
            string_kv("k8s.pod.name", "p-1"),
        ];
        let l = r.labels_for(&res, &[string_kv("http.route", "/pay")], 9, "INFO");
        let got: Vec<(&str, &str)> = l
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [("app", "checkout"), ("http_route", "/pay"), ("pod", "p-1")]
        );
        assert!(l.used_record.contains("http.route"));
        assert!(!l.used_resource.contains("k8s.namespace.name"));
    }

    #[test]
    fn long_values_are_truncated_on_char_boundary_and_counted() {
        let r = LabelRules::new(&LabelsConfig::default(), 5);
        let l = r.labels_for(&[string_kv("service.name", "ééééé")], &[], 0, "");
        assert_eq!(l.labels["service_name"], "éé");
        assert_eq!(l.truncated, 1);
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize_name("k8s.pod.name"), "k8s_pod_name");
        assert_eq!(normalize_name("1st-try"), "_1st_try");
        assert_eq!(normalize_name("ok_Name9"), "ok_Name9");
    }

    #[test]
    fn label_string_is_sorted_quoted_and_never_empty() {
        let mut m = BTreeMap::new();
        assert_eq!(label_string(&m), r#"{service_name="unknown_service"}"#);
        m.insert("b".to_string(), "x\"y\\z\n".to_string());
        m.insert("a".to_string(), "1".to_string());
        assert_eq!(label_string(&m), r#"{a="1", b="x\"y\\z\n"}"#);
    }

    #[test]
    fn severity_text_maps_to_a_bounded_set() {
        assert_eq!(level_of(0, "WARNING"), Some("warn"));
        assert_eq!(level_of(0, "whatever"), Some("unknown"));
        assert_eq!(level_of(0, ""), None);
        assert_eq!(level_of(21, ""), Some("fatal"));
    }
}
