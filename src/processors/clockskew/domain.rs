//! Which clock stamped a span: its resource's clock domain, unless a `domain_overrides`
//! rule says otherwise (see the module doc of `clockskew` for the Debezium example).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::data::{AnyValue, Resource, Span, any_value, attr, value_to_string};

/// One `domain_overrides` rule as written in the config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DomainOverride {
    /// Matches spans with exactly this name.
    pub span_name: Option<String>,
    /// Matches spans whose attributes have all these values (compared as text).
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Takes the domain from this span attribute (when the span has it).
    pub domain_attribute: Option<String>,
    /// A fixed domain name (used when `domain_attribute` is not set or absent on the span).
    pub domain: Option<String>,
    /// The span's timestamps are too coarse to bound an offset: it gives no evidence and
    /// no constraint, it is only shifted with its domain.
    pub coarse: bool,
}

impl DomainOverride {
    /// Why the rule cannot work, if it cannot: (key, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.span_name.is_none() && self.attributes.is_empty() {
            return Some((
                "span_name",
                "a rule must match on span_name and/or attributes".into(),
            ));
        }
        if self.domain_attribute.is_none() && self.domain.is_none() && !self.coarse {
            return Some((
                "domain_attribute",
                "a rule must set domain_attribute, domain or coarse".into(),
            ));
        }
        for (k, v) in &self.attributes {
            if v.is_object() || v.is_array() || v.is_null() {
                return Some((
                    "attributes",
                    format!("attribute {k:?}: expected a string, number or boolean"),
                ));
            }
        }
        None
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    span_name: Option<String>,
    attributes: Vec<(String, String)>,
    domain_attribute: Option<String>,
    domain: Option<Arc<str>>,
    coarse: bool,
}

/// Where a span's timestamps come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanClock {
    /// `None`: no identity found; such spans are never shifted and give no evidence.
    pub domain: Option<Arc<str>>,
    pub coarse: bool,
}

/// The domain rules of one processor.
#[derive(Debug, Clone)]
pub struct Domains {
    attributes: Vec<String>,
    rules: Vec<Rule>,
}

impl Domains {
    pub fn new(attributes: &[String], overrides: &[DomainOverride]) -> Domains {
        Domains {
            attributes: attributes.to_vec(),
            rules: overrides
                .iter()
                .map(|o| Rule {
                    span_name: o.span_name.clone(),
                    attributes: o
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), json_text(v)))
                        .collect(),
                    domain_attribute: o.domain_attribute.clone(),
                    domain: o.domain.as_deref().map(Arc::from),
                    coarse: o.coarse,
                })
                .collect(),
        }
    }

    /// The clock domain of a resource: the first of the configured attributes it has.
    pub fn of_resource(&self, resource: Option<&Resource>) -> Option<Arc<str>> {
        let attrs = &resource?.attributes;
        self.attributes
            .iter()
            .find_map(|key| attr(attrs, key).and_then(identity))
            .map(Arc::from)
    }

    /// The clock of one span of a resource in `resource_domain`.
    pub fn of_span(&self, span: &Span, resource_domain: &Option<Arc<str>>) -> SpanClock {
        let Some(rule) = self.rules.iter().find(|r| matches(r, span)) else {
            return SpanClock {
                domain: resource_domain.clone(),
                coarse: false,
            };
        };
        let from_attribute = rule
            .domain_attribute
            .as_deref()
            .and_then(|k| attr(&span.attributes, k))
            .and_then(identity)
            .map(Arc::from);
        SpanClock {
            domain: from_attribute
                .or_else(|| rule.domain.clone())
                .or_else(|| resource_domain.clone()),
            coarse: rule.coarse,
        }
    }
}

fn matches(rule: &Rule, span: &Span) -> bool {
    if rule.span_name.as_deref().is_some_and(|n| n != span.name) {
        return false;
    }
    rule.attributes
        .iter()
        .all(|(k, want)| attr(&span.attributes, k).is_some_and(|v| value_to_string(v) == *want))
}

/// A domain name from an attribute value: strings as they are, the first element of an
/// array (`host.ip` is often a list), other scalars as text. Empty values do not count.
fn identity(v: &any_value::Value) -> Option<String> {
    let s = match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::ArrayValue(a) => {
            let first: &AnyValue = a.values.first()?;
            identity(first.value.as_ref()?)?
        }
        any_value::Value::KvlistValue(_) => return None,
        other => value_to_string(other),
    };
    (!s.is_empty()).then_some(s)
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string attribute (test helper).
#[cfg(test)]
pub(crate) use crate::data::kv_str as kv;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ArrayValue, KeyValue};

    fn resource(attrs: Vec<KeyValue>) -> Resource {
        Resource {
            attributes: attrs,
            ..Default::default()
        }
    }

    #[test]
    fn first_configured_attribute_wins_and_arrays_use_their_first_element() {
        let d = Domains::new(
            &["host.id".into(), "host.ip".into(), "host.name".into()],
            &[],
        );
        let r = resource(vec![kv("host.name", "n1"), kv("host.id", "id-1")]);
        assert_eq!(d.of_resource(Some(&r)).as_deref(), Some("id-1"));
        let ips = KeyValue {
            key: "host.ip".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::StringValue("10.0.0.7".into())),
                    }],
                })),
            }),
            ..Default::default()
        };
        let r = resource(vec![ips, kv("host.name", "n1")]);
        assert_eq!(d.of_resource(Some(&r)).as_deref(), Some("10.0.0.7"));
        assert_eq!(
            d.of_resource(Some(&resource(vec![kv("host.id", "")]))),
            None
        );
        assert_eq!(d.of_resource(None), None);
    }

    #[test]
    fn override_takes_the_domain_from_a_span_attribute_and_marks_coarse() {
        let rule = DomainOverride {
            span_name: Some("db-log-write".into()),
            attributes: [("db.type".to_string(), serde_json::json!("mysql"))].into(),
            domain_attribute: Some("db.server.address".into()),
            coarse: true,
            ..Default::default()
        };
        assert_eq!(rule.problem(), None);
        let d = Domains::new(&["host.name".into()], &[rule]);
        let connect: Option<Arc<str>> = Some(Arc::from("connect-node"));
        let mut span = Span {
            name: "db-log-write".into(),
            attributes: vec![kv("db.type", "mysql"), kv("db.server.address", "mysql-0")],
            ..Default::default()
        };
        let c = d.of_span(&span, &connect);
        assert_eq!(c.domain.as_deref(), Some("mysql-0"));
        assert!(c.coarse);
        span.attributes.remove(1);
        let c = d.of_span(&span, &connect);
        assert_eq!(c.domain.as_deref(), Some("connect-node"));
        assert!(c.coarse);
        span.name = "debezium-read".into();
        assert_eq!(
            d.of_span(&span, &connect),
            SpanClock {
                domain: connect.clone(),
                coarse: false
            }
        );
    }

    #[test]
    fn rules_that_cannot_work_are_reported() {
        assert!(DomainOverride::default().problem().is_some());
        let no_action = DomainOverride {
            span_name: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(no_action.problem().unwrap().0, "domain_attribute");
    }
}
