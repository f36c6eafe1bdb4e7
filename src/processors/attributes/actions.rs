//! Attribute actions, shared by the `attributes` processor (span, log record and data point
//! attributes) and the `resource` processor (resource attributes): the Collector's
//! `attraction` package.
//!
//! Each action is `{key, action, value, from_attribute, pattern, converted_type}`; actions
//! run in order. `action` is case-insensitive:
//! - `insert` — set `key` if absent; `update` — set it if present; `upsert` — either. The
//!   value is `value` (YAML scalar, list or map), a copy of `from_attribute` (no-op when
//!   that attribute is absent) or `from_context` (below). Exactly one of the three is
//!   required.
//! - `delete` — remove `key` and/or every key matching `pattern`.
//! - `hash` — replace the value of `key` and/or of every key matching `pattern` by the
//!   lower-case hex SHA-256 of its bytes (strings as UTF-8, ints and doubles as 8
//!   little-endian bytes, bools as one byte; maps, lists and bytes hash to ""). This is the
//!   Collector's current behaviour: its attraction code hashes with SHA-256 since the
//!   SHA-1 hasher was deprecated (v0.75), although its README still says SHA1.
//! - `extract` — match `pattern` (every group must be named) against the string value of
//!   `key` and set one string attribute per named group; `key` is kept.
//! - `convert` — convert `key` to `converted_type` `int`, `double` or `string`; a value that
//!   cannot be converted is left as is.
//!
//! `from_context` reads the request's client metadata (see [`crate::pipeline::context`]),
//! as the Collector's `attraction` does: `metadata.<key>` is the value of request header /
//! gRPC metadata `<key>` (case-insensitive); a name without a prefix is looked up in the
//! metadata as well (the Collector's fallback). One value becomes a string attribute;
//! several values of the key are joined with `;` into one string (the Collector's rule).
//! When the request carries no such key — the receiver's `include_metadata` is off, the
//! client did not send it, or the data comes after `batch` (see [`crate::pipeline`]; a
//! `batch` with `metadata_keys` passes those keys on) — the action does nothing. `auth.<attr>` (authenticator data) and `client.address` are
//! validation errors: weft has no authenticator extensions and does not record the
//! client's address.
//!
//! Regexes use Rust `regex` syntax, which agrees with Go's RE2 for everything RE2 accepts.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{FieldError, suggest};
use crate::data::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value, hex};
use crate::pipeline::ClientMetadata;
use crate::processors::ottl::Val;

/// One action as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    #[serde(default)]
    pub key: String,
    pub action: String,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub from_attribute: String,
    #[serde(default)]
    pub from_context: String,
    #[serde(default)]
    pub pattern: String,
    #[serde(default)]
    pub converted_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    Int,
    Double,
    String,
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Value(AnyValue),
    FromAttribute(String),
    /// A client metadata key (without the `metadata.` prefix).
    FromContext(String),
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Insert(String, Source),
    Update(String, Source),
    Upsert(String, Source),
    Delete(Option<String>, Option<Regex>),
    Hash(Option<String>, Option<Regex>),
    Extract(String, Regex, Vec<String>),
    Convert(String, Target),
}

/// A compiled, ordered list of actions.
#[derive(Debug, Clone, Default)]
pub struct Actions(Vec<Action>);

const ACTIONS: [&str; 7] = [
    "insert", "update", "upsert", "delete", "hash", "extract", "convert",
];

/// Converts a config value (YAML scalar, list or map) into an attribute value.
pub fn json_to_any(v: &Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(V::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(V::StringValue(s.clone())),
        Value::Array(a) => Some(V::ArrayValue(ArrayValue {
            values: a.iter().map(json_to_any).collect(),
        })),
        Value::Object(m) => Some(V::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(json_to_any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

fn regex(pattern: &str, at: usize) -> Result<Regex, FieldError> {
    Regex::new(pattern).map_err(|e| FieldError {
        path: vec![at.to_string(), "pattern".into()],
        message: format!("invalid pattern {pattern:?}: {e}"),
        suggestion: None,
    })
}

impl Actions {
    /// Checks and compiles the actions as the Collector does. Errors carry the path
    /// `<index>.<field>` relative to the list.
    pub fn compile(list: &[ActionConfig]) -> Result<Actions, FieldError> {
        let mut out = Vec::with_capacity(list.len());
        for (i, a) in list.iter().enumerate() {
            let err = |field: &str, message: String| FieldError {
                path: vec![i.to_string(), field.to_string()],
                message,
                suggestion: None,
            };
            let action = a.action.to_ascii_lowercase();
            if !ACTIONS.contains(&action.as_str()) {
                return Err(FieldError {
                    suggestion: suggest(&action, ACTIONS),
                    ..err(
                        "action",
                        format!(
                            "unsupported action {:?}, expected one of {}",
                            a.action,
                            ACTIONS.join(", ")
                        ),
                    )
                });
            }
            let by_pattern = matches!(action.as_str(), "delete" | "hash");
            if a.key.is_empty() && (!by_pattern || a.pattern.is_empty()) {
                let what = if by_pattern {
                    "at least one of key and pattern"
                } else {
                    "key"
                };
                return Err(err("key", format!("action {action} requires {what}")));
            }
            let sources = usize::from(a.value.as_ref().is_some_and(|v| !v.is_null()))
                + usize::from(!a.from_attribute.is_empty())
                + usize::from(!a.from_context.is_empty());
            // The source field named when an action that takes none has one.
            let source_field = if !a.from_context.is_empty() {
                "from_context"
            } else if !a.from_attribute.is_empty() {
                "from_attribute"
            } else {
                "value"
            };
            let unused = |field: &str, set: bool| {
                if set {
                    Err(err(field, format!("action {action} does not use {field}")))
                } else {
                    Ok(())
                }
            };
            let key = a.key.clone();
            let compiled = match action.as_str() {
                "insert" | "update" | "upsert" => {
                    unused("pattern", !a.pattern.is_empty())?;
                    unused("converted_type", !a.converted_type.is_empty())?;
                    if sources != 1 {
                        return Err(err(
                            "value",
                            format!(
                                "action {action} needs exactly one of value, from_attribute \
                                 and from_context"
                            ),
                        ));
                    }
                    let source = match &a.value {
                        Some(v) if !v.is_null() => Source::Value(json_to_any(v)),
                        _ if !a.from_context.is_empty() => Source::FromContext(
                            context_key(&a.from_context).map_err(|m| err("from_context", m))?,
                        ),
                        _ => Source::FromAttribute(a.from_attribute.clone()),
                    };
                    match action.as_str() {
                        "insert" => Action::Insert(key, source),
                        "update" => Action::Update(key, source),
                        _ => Action::Upsert(key, source),
                    }
                }
                "delete" | "hash" => {
                    unused(source_field, sources > 0)?;
                    unused("converted_type", !a.converted_type.is_empty())?;
                    let re = (!a.pattern.is_empty())
                        .then(|| regex(&a.pattern, i))
                        .transpose()?;
                    let key = (!key.is_empty()).then_some(key);
                    if action == "delete" {
                        Action::Delete(key, re)
                    } else {
                        Action::Hash(key, re)
                    }
                }
                "extract" => {
                    unused(source_field, sources > 0)?;
                    unused("converted_type", !a.converted_type.is_empty())?;
                    if a.pattern.is_empty() {
                        return Err(err("pattern", "action extract requires pattern".into()));
                    }
                    let re = regex(&a.pattern, i)?;
                    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
                    if names.is_empty() || names.iter().any(Option::is_none) {
                        return Err(err(
                            "pattern",
                            format!(
                                "pattern {:?} must have only named groups, such as (?P<name>...)",
                                a.pattern
                            ),
                        ));
                    }
                    let names = names.into_iter().flatten().map(str::to_string).collect();
                    Action::Extract(key, re, names)
                }
                _ => {
                    unused(source_field, sources > 0)?;
                    unused("pattern", !a.pattern.is_empty())?;
                    let to = match a.converted_type.as_str() {
                        "int" => Target::Int,
                        "double" => Target::Double,
                        "string" => Target::String,
                        other => {
                            return Err(FieldError {
                                suggestion: suggest(other, ["int", "double", "string"]),
                                ..err(
                                    "converted_type",
                                    format!(
                                        "action convert needs converted_type int, double or string, got {other:?}"
                                    ),
                                )
                            });
                        }
                    };
                    Action::Convert(key, to)
                }
            };
            out.push(compiled);
        }
        Ok(Actions(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The compiled actions, in order (for the `attributes` processor's wire path).
    pub(crate) fn list(&self) -> &[Action] {
        &self.0
    }

    /// Whether an action reads the request's context (`from_context`).
    pub fn uses_context(&self) -> bool {
        self.0.iter().any(|a| {
            matches!(
                a,
                Action::Insert(_, Source::FromContext(_))
                    | Action::Update(_, Source::FromContext(_))
                    | Action::Upsert(_, Source::FromContext(_))
            )
        })
    }

    /// Applies every action, in order, to one attribute list (no request context: a
    /// `from_context` action does nothing).
    pub fn apply(&self, attrs: &mut Vec<KeyValue>) {
        self.apply_in(attrs, None)
    }

    /// Applies every action, in order, to one attribute list of a request whose client
    /// metadata is `metadata`.
    pub fn apply_in(&self, attrs: &mut Vec<KeyValue>, metadata: Option<&ClientMetadata>) {
        for a in &self.0 {
            match a {
                Action::Insert(key, source) => {
                    if let Some(v) = resolve(source, attrs, metadata)
                        && !attrs.iter().any(|kv| kv.key == *key)
                    {
                        attrs.push(KeyValue {
                            key: key.clone(),
                            value: Some(v),
                            ..Default::default()
                        });
                    }
                }
                Action::Update(key, source) => {
                    if let Some(v) = resolve(source, attrs, metadata)
                        && let Some(kv) = attrs.iter_mut().find(|kv| kv.key == *key)
                    {
                        kv.value = Some(v);
                    }
                }
                Action::Upsert(key, source) => {
                    if let Some(v) = resolve(source, attrs, metadata) {
                        set(attrs, key, v);
                    }
                }
                Action::Delete(key, re) => attrs.retain(|kv| !selected(&kv.key, key, re)),
                Action::Hash(key, re) => {
                    for kv in attrs.iter_mut().filter(|kv| selected(&kv.key, key, re)) {
                        kv.value = Some(hash(kv.value.as_ref()));
                    }
                }
                Action::Extract(key, re, names) => extract(attrs, key, re, names),
                Action::Convert(key, to) => {
                    if let Some(kv) = attrs.iter_mut().find(|kv| kv.key == *key) {
                        convert(&mut kv.value, *to);
                    }
                }
            }
        }
    }
}

fn selected(k: &str, key: &Option<String>, re: &Option<Regex>) -> bool {
    key.as_deref() == Some(k) || re.as_ref().is_some_and(|re| re.is_match(k))
}

fn resolve(
    source: &Source,
    attrs: &[KeyValue],
    metadata: Option<&ClientMetadata>,
) -> Option<AnyValue> {
    match source {
        Source::Value(v) => Some(v.clone()),
        Source::FromAttribute(k) => attrs
            .iter()
            .find(|kv| kv.key == *k)
            .map(|kv| kv.value.clone().unwrap_or_default()),
        Source::FromContext(k) => context_value(metadata?, k),
    }
}

/// The metadata key a `from_context` names, or why weft cannot serve it.
fn context_key(from: &str) -> Result<String, String> {
    if let Some(rest) = from.strip_prefix("auth.") {
        return Err(format!(
            "from_context {from:?} reads authenticator data ({rest:?}), but weft has no \
             authenticator extensions; use metadata.<header> to read a request header"
        ));
    }
    if from == "client.address" {
        return Err(
            "from_context \"client.address\" is not supported: weft does not record the \
             client's address; use metadata.<header> (e.g. metadata.x-forwarded-for)"
                .into(),
        );
    }
    // A name without a prefix is a metadata key too (the Collector's fallback).
    let key = from.strip_prefix("metadata.").unwrap_or(from);
    if key.is_empty() {
        return Err(format!("from_context {from:?} names no metadata key"));
    }
    // Lower-case once here: the lookup per item then never allocates.
    Ok(key.to_ascii_lowercase())
}

/// The attribute value of metadata key `key`: one value as it is, several joined with `;`
/// (the Collector's rule); `None` when the request did not carry the key.
pub(crate) fn context_value(metadata: &ClientMetadata, key: &str) -> Option<AnyValue> {
    let text = match metadata.get(key)? {
        [one] => one.clone(),
        many => many.join(";"),
    };
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(text)),
    })
}

fn set(attrs: &mut Vec<KeyValue>, key: &str, v: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(v),
        None => attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(v),
            ..Default::default()
        }),
    }
}

/// SHA-256 of the value's bytes as the Collector's `sha2Hasher` computes them.
fn hash(v: Option<&AnyValue>) -> AnyValue {
    use any_value::Value as V;
    let bytes: Vec<u8> = match v.and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => s.as_bytes().to_vec(),
        Some(V::BoolValue(b)) => vec![u8::from(*b)],
        Some(V::IntValue(i)) => i.to_le_bytes().to_vec(),
        Some(V::DoubleValue(d)) => d.to_bits().to_le_bytes().to_vec(),
        _ => Vec::new(),
    };
    let hashed = if bytes.is_empty() {
        String::new()
    } else {
        hex(&Sha256::digest(&bytes))
    };
    AnyValue {
        value: Some(V::StringValue(hashed)),
    }
}

fn extract(attrs: &mut Vec<KeyValue>, key: &str, re: &Regex, names: &[String]) {
    let source = match attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
    {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) => s.clone(),
        _ => return,
    };
    let Some(caps) = re.captures(&source) else {
        return;
    };
    for (i, name) in names.iter().enumerate() {
        let text = caps.get(i + 1).map_or("", |m| m.as_str());
        set(
            attrs,
            name,
            AnyValue {
                value: Some(any_value::Value::StringValue(text.to_string())),
            },
        );
    }
}

fn convert(value: &mut Option<AnyValue>, to: Target) {
    use any_value::Value as V;
    let current = value.as_ref().and_then(|v| v.value.as_ref());
    let converted = match (to, current) {
        (Target::String, Some(V::StringValue(_))) => None,
        (Target::String, _) => Some(V::StringValue(
            Val::from_any(value.as_ref()).to_text().unwrap_or_default(),
        )),
        (Target::Int, Some(V::DoubleValue(d))) => Some(V::IntValue(*d as i64)),
        (Target::Int, Some(V::BoolValue(b))) => Some(V::IntValue(i64::from(*b))),
        (Target::Int, Some(V::StringValue(s))) => s.parse::<i64>().ok().map(V::IntValue),
        (Target::Double, Some(V::IntValue(i))) => Some(V::DoubleValue(*i as f64)),
        (Target::Double, Some(V::BoolValue(b))) => Some(V::DoubleValue(f64::from(u8::from(*b)))),
        (Target::Double, Some(V::StringValue(s))) => s.parse::<f64>().ok().map(V::DoubleValue),
        _ => None,
    };
    if let Some(v) = converted {
        *value = Some(AnyValue { value: Some(v) });
    }
}

#[cfg(test)]
mod tests;
