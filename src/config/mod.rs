//! Configuration: the OpenTelemetry Collector's layout (`receivers`, `processors`,
//! `exporters`, `extensions`, `service.pipelines`), loaded from one or more YAML files that
//! merge in order, with `${env:VAR}` / `${env:VAR:-default}` substitution (and `$$` for a
//! literal `$`).
//!
//! Validation is pure and collects every error with its file, line, key path and a "did
//! you mean" suggestion; building (I/O) happens in `crate::pipeline` only after it passed.

pub mod duration;
pub mod env;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;

pub use duration::Dur;
pub use validate::{ValidConfig, validate};
pub use yaml::{Node, Pos};

/// The default configuration compiled into the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");

/// One problem found while loading or validating.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    /// Dotted key path, e.g. `exporters.otlp/jaeger.compression`.
    pub path: String,
    pub message: String,
    pub suggestion: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)?;
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.path, self.message
            )?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean \"{s}\"?)")?;
        }
        Ok(())
    }
}

/// Every error found, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A configuration source: a file name (for messages) and its text.
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn embedded_default() -> Source {
        Source {
            name: "<embedded config/default.yaml>".into(),
            text: DEFAULT_CONFIG.into(),
        }
    }

    pub fn file(path: &str) -> Result<Source, ConfigErrors> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source {
                name: path.to_string(),
                text,
            }),
            Err(e) => Err(ConfigErrors(vec![ConfigError {
                file: path.to_string(),
                line: 0,
                path: String::new(),
                message: format!("cannot read config file: {e}"),
                suggestion: None,
            }])),
        }
    }
}

/// Parses, substitutes environment variables in and merges the sources, in order.
pub fn load(
    sources: &[Source],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, ConfigErrors> {
    let mut merged: Option<Node> = None;
    let mut errors = Vec::new();
    for src in sources {
        match yaml::parse(&src.name, &src.text) {
            Ok(mut node) => {
                if let Err(mut e) = env::substitute_tree(&mut node, lookup) {
                    errors.append(&mut e);
                }
                match &mut merged {
                    None => merged = Some(node),
                    Some(m) => yaml::merge(m, node),
                }
            }
            Err(e) => errors.push(ConfigError {
                file: e.file,
                line: e.line,
                path: String::new(),
                message: format!("invalid YAML: {}", e.message),
                suggestion: None,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    merged.ok_or_else(|| {
        ConfigErrors(vec![ConfigError {
            file: String::new(),
            line: 0,
            path: String::new(),
            message: "no configuration given".into(),
            suggestion: None,
        }])
    })
}

/// Loads and validates in one step.
pub fn load_and_validate(
    sources: &[Source],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ValidConfig, ConfigErrors> {
    let node = load(sources, lookup)?;
    validate(&node)
}

/// Process environment lookup for `${env:VAR}`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Levenshtein distance, for suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn suggest<'a, I: IntoIterator<Item = &'a str>>(word: &str, candidates: I) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (word.chars().count() / 3).max(2);
    (d <= limit || c.starts_with(word) || word.starts_with(c)).then(|| c.to_string())
}

/// A key-path error from deserialising one component's config.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub path: Vec<String>,
    pub message: String,
    pub suggestion: Option<String>,
}

/// Deserialises a component's config (null = all defaults) and turns serde's error into
/// a key path, a message and, for unknown fields or variants, a suggestion.
pub fn parse_component<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, FieldError> {
    let owned;
    let v = if value.is_null() {
        owned = serde_json::Value::Object(Default::default());
        &owned
    } else {
        value
    };
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        let suggestion = unknown_name_suggestion(&message);
        if message.starts_with("unknown field") {
            // serde_path_to_error stops at the struct; name the field in the path.
            if let Some(name) = message.split('`').nth(1)
                && path.last().map(String::as_str) != Some(name)
            {
                path.push(name.to_string());
            }
        }
        FieldError {
            path,
            message,
            suggestion,
        }
    })
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" pick the closest expected name.
fn unknown_name_suggestion(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("unknown variant")) {
        return None;
    }
    let parts: Vec<&str> = message.split('`').collect();
    let given = parts.get(1)?;
    let expected: Vec<&str> = parts.iter().skip(3).step_by(2).copied().collect();
    suggest(given, expected)
}

/// Keys whose values `print-config` redacts.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    [
        "password",
        "passwd",
        "api_key",
        "apikey",
        "token",
        "secret",
        "authorization",
        "auth_token",
        "bearer",
        "x_api_key",
        "cookie",
        "private_key",
        "access_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A copy of the tree with secret values replaced by `[REDACTED]`.
pub fn redact(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::Object(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_object() && !v.is_null() {
                        J::String("[REDACTED]".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        J::Array(a) => J::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Renders JSON as YAML (block style) for `print-config`.
pub fn to_yaml(value: &serde_json::Value) -> String {
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => {
                let plain_ok = !s.is_empty()
                    && matches!(yaml::plain_scalar(s), yaml::Value::Str(_))
                    && !s.contains(": ")
                    && !s.contains(" #")
                    && !s.starts_with([
                        '-', '[', '{', '*', '&', '!', '|', '>', '\'', '"', '%', '@', '`', ' ',
                    ])
                    && !s.ends_with([' ', ':']);
                if plain_ok {
                    s.clone()
                } else {
                    serde_json::Value::String(s.clone()).to_string()
                }
            }
            serde_json::Value::Null => "null".into(),
            other => other.to_string(),
        }
    }
    fn walk(v: &serde_json::Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            serde_json::Value::Object(m) => {
                for (k, val) in m {
                    let key = scalar(&serde_json::Value::String(k.clone()));
                    match val {
                        serde_json::Value::Object(inner) if !inner.is_empty() => {
                            out.push_str(&format!("{pad}{key}:\n"));
                            walk(val, indent + 2, out);
                        }
                        serde_json::Value::Array(items) if !items.is_empty() => {
                            out.push_str(&format!("{pad}{key}:\n"));
                            walk(val, indent + 2, out);
                        }
                        serde_json::Value::Object(_) => {
                            out.push_str(&format!("{pad}{key}: {{}}\n"))
                        }
                        serde_json::Value::Array(_) => out.push_str(&format!("{pad}{key}: []\n")),
                        _ => out.push_str(&format!("{pad}{key}: {}\n", scalar(val))),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    match item {
                        serde_json::Value::Object(m) if !m.is_empty() => {
                            let mut inner = String::new();
                            walk(item, indent + 2, &mut inner);
                            let trimmed = inner.trim_start();
                            out.push_str(&format!("{pad}- {trimmed}"));
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other))),
        }
    }
    let mut out = String::new();
    walk(value, 0, &mut out);
    out
}

/// `type` or `type/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId {
    pub ty: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (ty, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        let valid = |x: &str| {
            !x.is_empty()
                && x.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !valid(ty) {
            return Err(format!(
                "invalid component id {s:?}: the type must be letters, digits or _"
            ));
        }
        if let Some(n) = name
            && (n.is_empty() || n.contains('/'))
        {
            return Err(format!(
                "invalid component id {s:?}: expected type or type/name"
            ));
        }
        Ok(ComponentId {
            ty: ty.to_string(),
            name: name.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.ty, n),
            None => f.write_str(&self.ty),
        }
    }
}

/// A pipeline as written in `service.pipelines`.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    pub id: String,
    pub signal: crate::data::Signal,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

/// Component configs by id, as JSON (typed by each component's factory).
pub type Components = BTreeMap<String, ComponentSpec>;

#[derive(Clone, Debug)]
pub struct ComponentSpec {
    pub id: ComponentId,
    /// The canonical type name (aliases resolved).
    pub ty: &'static str,
    pub value: serde_json::Value,
    pub pos: Pos,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("lokii", ["loki", "otlp", "debug"]),
            Some("loki".into())
        );
        assert_eq!(suggest("xyzzy", ["loki", "otlp"]), None);
        assert_eq!(
            suggest("endpoit", ["endpoint", "tls"]),
            Some("endpoint".into())
        );
    }

    #[test]
    fn redaction() {
        let v = serde_json::json!({"auth": {"password": "p", "user": "u"}, "headers": {"Authorization": "Bearer x"}, "api_key": "k"});
        let r = redact(&v);
        assert_eq!(r["auth"]["password"], "[REDACTED]");
        assert_eq!(r["auth"]["user"], "u");
        assert_eq!(r["headers"]["Authorization"], "[REDACTED]");
        assert_eq!(r["api_key"], "[REDACTED]");
    }

    #[test]
    fn yaml_output_reparses() {
        let v = serde_json::json!({"a": {"b": [1, "x: y", {"c": "d", "e": [true]}]}, "f": "", "g": "123"});
        let text = to_yaml(&v);
        let back = yaml::parse("t", &text).unwrap().to_json();
        assert_eq!(back, v, "{text}");
    }
}
