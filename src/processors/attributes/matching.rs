//! `include` / `exclude` match properties of the `attributes` processor (the Collector's
//! filterconfig.MatchProperties): which spans, log records or metrics the actions apply to.
//!
//! Keys: `match_type` (`strict` | `regexp`, required), `regexp` (cache options, accepted and
//! ignored), `services`, `span_names`, `span_kinds` (spans), `log_bodies`,
//! `log_severity_texts`, `log_severity_number: {min, match_undefined}` (logs),
//! `metric_names` (metrics), `attributes`, `resources` (`[{key, value?}]`), `libraries`
//! (`[{name, version?}]`). Every property given must match; a list of strings matches
//! when any entry does (strict: equal; regexp: the regex finds a match anywhere, as Go's
//! `MatchString`); `attributes`/`resources` need every listed key present and, when a
//! value is given, equal (strict, same type) or matching (regexp, on the value's text).
//! Which properties fit which signal is checked when the processor is built for a
//! pipeline (e.g. `span_names` in a logs pipeline is an error), as in the Collector.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::actions::json_to_any;
use crate::data::{
    AnyValue, InstrumentationScope, KeyValue, LogRecord, Metric, Resource, Signal, Span,
};
use crate::processors::ottl::Val;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchProperties {
    pub match_type: String,
    #[serde(default)]
    pub regexp: Option<RegexpOptions>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub span_names: Vec<String>,
    #[serde(default)]
    pub span_kinds: Vec<String>,
    #[serde(default)]
    pub log_bodies: Vec<String>,
    #[serde(default)]
    pub log_severity_texts: Vec<String>,
    #[serde(default)]
    pub log_severity_number: Option<SeverityProperties>,
    #[serde(default)]
    pub metric_names: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<AttributeProperty>,
    #[serde(default)]
    pub resources: Vec<AttributeProperty>,
    #[serde(default)]
    pub libraries: Vec<LibraryProperty>,
}

/// The Collector's regexp cache options; weft's regexes need no cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexpOptions {
    #[serde(default)]
    pub cacheenabled: bool,
    #[serde(default)]
    pub cachemaxnumentries: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeProperty {
    pub key: String,
    #[serde(default)]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryProperty {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityProperties {
    /// A severity number (1-24) or a short name (`INFO`, `warn2`, ...).
    pub min: Value,
    #[serde(default)]
    pub match_undefined: bool,
}

const SPAN_KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

#[derive(Debug, Clone)]
pub(super) enum Strings {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl Strings {
    pub(super) fn matches(&self, s: &str) -> bool {
        match self {
            Strings::Strict(v) => v.iter().any(|x| x == s),
            Strings::Regexp(v) => v.iter().any(|re| re.is_match(s)),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum ValueMatch {
    Any,
    Equal(AnyValue),
    Regexp(Regex),
}

#[derive(Debug, Clone)]
pub(super) struct AttributeMatcher {
    pub(super) key: String,
    pub(super) value: ValueMatch,
}

#[derive(Debug, Clone)]
struct LibraryMatcher {
    name: Strings,
    version: Option<Strings>,
}

/// Compiled match properties.
#[derive(Debug, Clone)]
pub struct Matcher {
    props: MatchProperties,
    services: Option<Strings>,
    pub(super) span_names: Option<Strings>,
    pub(super) span_kinds: Option<Strings>,
    log_bodies: Option<Strings>,
    pub(super) log_severity_texts: Option<Strings>,
    severity: Option<(i32, bool)>,
    metric_names: Option<Strings>,
    pub(super) attributes: Vec<AttributeMatcher>,
    resources: Vec<AttributeMatcher>,
    libraries: Vec<LibraryMatcher>,
}

/// A severity number from a number or a short name (`INFO`, `WARN2`, case-insensitive).
fn severity(v: &Value) -> Option<i32> {
    if let Some(n) = v.as_i64() {
        return i32::try_from(n).ok().filter(|n| (1..=24).contains(n));
    }
    let s = v.as_str()?.to_ascii_uppercase();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=24).contains(&n).then_some(n);
    }
    let (level, step) = match s.strip_suffix(['2', '3', '4']) {
        Some(level) => (level, i32::from(s.as_bytes()[s.len() - 1] - b'1')),
        None => (s.as_str(), 0),
    };
    let idx = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
        .iter()
        .position(|l| *l == level)?;
    Some(1 + 4 * idx as i32 + step)
}

impl Matcher {
    /// Compiles; the error names the offending key (relative to `include`/`exclude`).
    pub fn compile(p: &MatchProperties) -> Result<Matcher, (String, String)> {
        let regexp = match p.match_type.as_str() {
            "strict" => false,
            "regexp" => true,
            other => {
                return Err((
                    "match_type".into(),
                    format!("unrecognized match_type {other:?}, valid types are: regexp, strict"),
                ));
            }
        };
        let strings = |key: &str, v: &[String]| -> Result<Option<Strings>, (String, String)> {
            if v.is_empty() {
                return Ok(None);
            }
            if !regexp {
                return Ok(Some(Strings::Strict(v.to_vec())));
            }
            v.iter()
                .map(|s| {
                    Regex::new(s)
                        .map_err(|e| (key.to_string(), format!("invalid regexp {s:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|r| Some(Strings::Regexp(r)))
        };
        if !regexp
            && let Some(k) = p
                .span_kinds
                .iter()
                .find(|k| !SPAN_KINDS.contains(&k.as_str()))
        {
            return Err((
                "span_kinds".into(),
                format!(
                    "span kind {k:?} is not one of {} (match_type: strict)",
                    SPAN_KINDS.join(", ")
                ),
            ));
        }
        let attrs = |key: &str,
                     list: &[AttributeProperty]|
         -> Result<Vec<AttributeMatcher>, (String, String)> {
            list.iter()
                .map(|a| {
                    if a.key.is_empty() {
                        return Err((
                            key.to_string(),
                            "can't have an empty key in the list".into(),
                        ));
                    }
                    let value = match &a.value {
                        None | Some(Value::Null) => ValueMatch::Any,
                        Some(Value::String(s)) if regexp => {
                            ValueMatch::Regexp(Regex::new(s).map_err(|e| {
                                (key.to_string(), format!("invalid regexp {s:?}: {e}"))
                            })?)
                        }
                        Some(_) if regexp => {
                            return Err((
                                key.to_string(),
                                format!(
                                    "match_type=regexp for {:?} only supports string values",
                                    a.key
                                ),
                            ));
                        }
                        Some(v) => ValueMatch::Equal(json_to_any(v)),
                    };
                    Ok(AttributeMatcher {
                        key: a.key.clone(),
                        value,
                    })
                })
                .collect()
        };
        let mut libraries = Vec::new();
        for l in &p.libraries {
            libraries.push(LibraryMatcher {
                name: strings("libraries", std::slice::from_ref(&l.name))?
                    .unwrap_or(Strings::Strict(Vec::new())),
                version: match &l.version {
                    Some(v) => strings("libraries", std::slice::from_ref(v))?,
                    None => None,
                },
            });
        }
        let severity = match &p.log_severity_number {
            None => None,
            Some(s) => Some((
                severity(&s.min).ok_or_else(|| {
                    (
                        "log_severity_number".to_string(),
                        format!("min {} is not a severity (1-24 or TRACE..FATAL4)", s.min),
                    )
                })?,
                s.match_undefined,
            )),
        };
        Ok(Matcher {
            services: strings("services", &p.services)?,
            span_names: strings("span_names", &p.span_names)?,
            span_kinds: strings("span_kinds", &p.span_kinds)?,
            log_bodies: strings("log_bodies", &p.log_bodies)?,
            log_severity_texts: strings("log_severity_texts", &p.log_severity_texts)?,
            severity,
            metric_names: strings("metric_names", &p.metric_names)?,
            attributes: attrs("attributes", &p.attributes)?,
            resources: attrs("resources", &p.resources)?,
            libraries,
            props: p.clone(),
        })
    }

    /// Which properties fit a signal (the Collector's ValidateForSpans/Logs and its
    /// metric conversion); the error names the key.
    pub fn check_for(&self, signal: Signal) -> Result<(), (String, String)> {
        let p = &self.props;
        let set: [(&str, bool); 11] = [
            ("services", !p.services.is_empty()),
            ("span_names", !p.span_names.is_empty()),
            ("span_kinds", !p.span_kinds.is_empty()),
            ("log_bodies", !p.log_bodies.is_empty()),
            ("log_severity_texts", !p.log_severity_texts.is_empty()),
            ("log_severity_number", p.log_severity_number.is_some()),
            ("metric_names", !p.metric_names.is_empty()),
            ("attributes", !p.attributes.is_empty()),
            ("resources", !p.resources.is_empty()),
            ("libraries", !p.libraries.is_empty()),
            ("match_type", true),
        ];
        let allowed: &[&str] = match signal {
            Signal::Traces => &[
                "services",
                "span_names",
                "span_kinds",
                "attributes",
                "resources",
                "libraries",
            ],
            Signal::Logs => &[
                "log_bodies",
                "log_severity_texts",
                "log_severity_number",
                "attributes",
                "resources",
                "libraries",
            ],
            Signal::Metrics => &["metric_names", "resources"],
        };
        for (key, present) in &set[..10] {
            if *present && !allowed.contains(key) {
                return Err((
                    key.to_string(),
                    format!("{key} cannot be used for {signal}"),
                ));
            }
        }
        if !set[..10].iter().any(|(_, present)| *present) {
            return Err((
                "match_type".into(),
                format!(
                    "at least one of {} must be specified for {signal}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Whether the properties that need a log body or a metric are absent: what the
    /// `attributes` processor's wire path can evaluate without decoding items.
    pub(super) fn wire_supported(&self) -> bool {
        self.log_bodies.is_none() && self.metric_names.is_none()
    }

    /// Whether matching reads the resource (`services`, `resources`).
    pub(super) fn needs_resource(&self) -> bool {
        self.services.is_some() || !self.resources.is_empty()
    }

    /// Whether matching reads the instrumentation scope (`libraries`).
    pub(super) fn needs_scope(&self) -> bool {
        !self.libraries.is_empty()
    }

    /// `libraries` and `resources`: what is the same for every item of a scope.
    pub(super) fn matches_scope(
        &self,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> bool {
        for l in &self.libraries {
            let (name, version) = scope.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            if !l.name.matches(name) || l.version.as_ref().is_some_and(|v| !v.matches(version)) {
                return false;
            }
        }
        self.resources.is_empty()
            || attributes_match(&self.resources, resource.map_or(&[][..], |r| &r.attributes))
    }

    /// `services` (spans only): the resource's `service.name`.
    pub(super) fn matches_service(&self, resource: Option<&Resource>) -> bool {
        let Some(s) = &self.services else {
            return true;
        };
        let service = resource
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map_or_else(
                || "<nil-service-name>".to_string(),
                |kv| {
                    Val::from_any(kv.value.as_ref())
                        .to_text()
                        .unwrap_or_default()
                },
            );
        s.matches(&service)
    }

    /// The span's own properties: `span_names`, `span_kinds`, `attributes`.
    pub(super) fn matches_span_item(&self, span: &Span) -> bool {
        if self
            .span_names
            .as_ref()
            .is_some_and(|n| !n.matches(&span.name))
        {
            return false;
        }
        if self
            .span_kinds
            .as_ref()
            .is_some_and(|k| !k.matches(kind_name(span.kind)))
        {
            return false;
        }
        self.attributes.is_empty() || attributes_match(&self.attributes, &span.attributes)
    }

    pub fn matches_span(
        &self,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
        span: &Span,
    ) -> bool {
        self.matches_service(resource)
            && self.matches_span_item(span)
            && self.matches_scope(resource, scope)
    }

    /// `log_severity_number`: whether a record of severity number `n` passes.
    pub(super) fn severity_ok(&self, n: i32) -> bool {
        match self.severity {
            None => true,
            Some((_, undefined)) if n == 0 => undefined,
            Some((min, _)) => n >= min,
        }
    }

    /// The record's own properties: `log_bodies`, `log_severity_texts`,
    /// `log_severity_number`, `attributes`.
    pub(super) fn matches_log_item(&self, log: &LogRecord) -> bool {
        if let Some(b) = &self.log_bodies
            && !b.matches(
                &Val::from_any(log.body.as_ref())
                    .to_text()
                    .unwrap_or_default(),
            )
        {
            return false;
        }
        if self
            .log_severity_texts
            .as_ref()
            .is_some_and(|t| !t.matches(&log.severity_text))
        {
            return false;
        }
        if !self.severity_ok(log.severity_number) {
            return false;
        }
        self.attributes.is_empty() || attributes_match(&self.attributes, &log.attributes)
    }

    pub fn matches_log(
        &self,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
        log: &LogRecord,
    ) -> bool {
        self.matches_log_item(log) && self.matches_scope(resource, scope)
    }

    pub fn matches_metric(
        &self,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
        m: &Metric,
    ) -> bool {
        if self
            .metric_names
            .as_ref()
            .is_some_and(|n| !n.matches(&m.name))
        {
            return false;
        }
        self.matches_scope(resource, scope)
    }
}

/// The name `span_kinds` matches for a span kind number ("" when out of range).
pub(super) fn kind_name(kind: i32) -> &'static str {
    usize::try_from(kind)
        .ok()
        .and_then(|i| SPAN_KINDS.get(i))
        .copied()
        .unwrap_or("")
}

/// Every listed key present, with an equal (strict) or matching (regexp) value if given.
fn attributes_match(matchers: &[AttributeMatcher], attrs: &[KeyValue]) -> bool {
    matchers.iter().all(|m| {
        let Some(kv) = attrs.iter().find(|kv| kv.key == m.key) else {
            return false;
        };
        value_matches(&m.value, kv.value.as_ref())
    })
}

/// Whether an attribute's value (`None`: the pair has no value) passes a value match.
pub(super) fn value_matches(m: &ValueMatch, value: Option<&AnyValue>) -> bool {
    match m {
        ValueMatch::Any => true,
        ValueMatch::Equal(want) => value == Some(want),
        ValueMatch::Regexp(re) => {
            // Only scalar values have a text form to match (as in the Collector).
            match Val::from_any(value) {
                v @ (Val::Str(_) | Val::Bool(_) | Val::Int(_) | Val::Float(_)) => {
                    v.to_text().is_some_and(|t| re.is_match(&t))
                }
                _ => false,
            }
        }
    }
}
