//! Stitch rules: which spans are producers and consumers, and the correlation key that
//! pairs them; plus the index of recently seen producer spans.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::ttl::TtlMap;
use crate::data::{Span, value_to_string};

pub(crate) type TraceId = [u8; 16];
pub(crate) type SpanId = [u8; 8];

/// Span flag bits (OTLP `SpanFlags`): whether the parent's remoteness is known, and whether
/// the parent is remote.
pub(crate) const FLAG_HAS_IS_REMOTE: u32 = 0x100;
pub(crate) const FLAG_IS_REMOTE: u32 = 0x200;

/// A span kind as written in config (`producer`, `consumer`, `client`, `server`,
/// `internal`, `unspecified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl KindName {
    /// The OTLP `Span.kind` number.
    fn proto(self) -> i32 {
        match self {
            KindName::Unspecified => 0,
            KindName::Internal => 1,
            KindName::Server => 2,
            KindName::Client => 3,
            KindName::Producer => 4,
            KindName::Consumer => 5,
        }
    }
}

/// One side of a rule as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideConfig {
    /// Span kinds this side matches; omitted = `[producer]` on the producer side and
    /// `[consumer]` on the consumer side; `[]` = any kind.
    #[serde(default)]
    pub span_kind: Option<Vec<KindName>>,
    /// Span attributes whose values, in order, form the correlation key.
    pub attributes: Vec<String>,
}

/// A rule as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub producer: SideConfig,
    pub consumer: SideConfig,
}

/// The rules used when `rules` is omitted: the OpenTelemetry messaging semantic
/// conventions' message id, and Kafka's topic/partition/offset triple.
pub fn default_rules() -> Vec<RuleConfig> {
    let side = |kind: KindName, attrs: &[&str]| SideConfig {
        span_kind: Some(vec![kind]),
        attributes: attrs.iter().map(|a| a.to_string()).collect(),
    };
    let kafka = [
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.kafka.offset",
    ];
    vec![
        RuleConfig {
            name: "message-id".into(),
            producer: side(KindName::Producer, &["messaging.message.id"]),
            consumer: side(KindName::Consumer, &["messaging.message.id"]),
        },
        RuleConfig {
            name: "kafka-offset".into(),
            producer: side(KindName::Producer, &kafka),
            consumer: side(KindName::Consumer, &kafka),
        },
    ]
}

/// Checks what serde cannot: returns the key path below `rules` and a message.
pub fn check_rules(rules: &[RuleConfig]) -> Result<(), (Vec<String>, String)> {
    if rules.is_empty() {
        return Err((
            vec!["rules".into()],
            "at least one rule is required (omit `rules` for the messaging defaults)".into(),
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        let at = |k: &[&str]| {
            let mut p = vec!["rules".to_string(), i.to_string()];
            p.extend(k.iter().map(|s| s.to_string()));
            p
        };
        if r.name.trim().is_empty() {
            return Err((at(&["name"]), "a rule needs a non-empty name".into()));
        }
        if rules[..i].iter().any(|o| o.name == r.name) {
            return Err((at(&["name"]), format!("duplicate rule name {:?}", r.name)));
        }
        for (side_name, side) in [("producer", &r.producer), ("consumer", &r.consumer)] {
            if side.attributes.is_empty() {
                return Err((
                    at(&[side_name, "attributes"]),
                    "at least one attribute is required (it forms the correlation key)".into(),
                ));
            }
            if let Some(j) = side.attributes.iter().position(|a| a.trim().is_empty()) {
                return Err((
                    at(&[side_name, "attributes", &j.to_string()]),
                    "attribute names must not be empty".into(),
                ));
            }
        }
        if r.producer.attributes.len() != r.consumer.attributes.len() {
            return Err((
                at(&["consumer", "attributes"]),
                format!(
                    "producer lists {} attributes and consumer {}: the correlation key is \
                     compared position by position, so both must list the same number",
                    r.producer.attributes.len(),
                    r.consumer.attributes.len()
                ),
            ));
        }
    }
    Ok(())
}

/// A correlation key: the rule's index and the attribute values joined.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub rule: usize,
    pub value: String,
}

struct Side {
    /// Empty = any kind.
    kinds: Vec<i32>,
    attributes: Vec<String>,
}

impl Side {
    fn compile(c: &SideConfig, default_kind: KindName) -> Side {
        let kinds = match &c.span_kind {
            Some(k) => k.iter().map(|k| k.proto()).collect(),
            None => vec![default_kind.proto()],
        };
        Side {
            kinds,
            attributes: c.attributes.clone(),
        }
    }

    /// The key value, if the span has this side's kind and every attribute (non-empty).
    /// Values are compared as text, so an offset sent as int by one SDK and as string by
    /// another still matches.
    fn key(&self, span: &Span) -> Option<String> {
        if !self.kinds.is_empty() && !self.kinds.contains(&span.kind) {
            return None;
        }
        let mut out = String::new();
        for (i, name) in self.attributes.iter().enumerate() {
            let v = crate::data::attr(&span.attributes, name)?;
            let text = value_to_string(v);
            if text.is_empty() {
                return None;
            }
            if i > 0 {
                // A separator that does not occur in sane attribute values keeps
                // ("a|b", "c") and ("a", "b|c") apart.
                out.push('\u{1f}');
            }
            out.push_str(&text);
        }
        Some(out)
    }
}

pub(crate) struct Rule {
    pub name: String,
    producer: Side,
    consumer: Side,
}

/// The compiled rules of one processor.
pub(crate) struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    pub fn compile(configs: &[RuleConfig]) -> Rules {
        Rules {
            rules: configs
                .iter()
                .map(|c| Rule {
                    name: c.name.clone(),
                    producer: Side::compile(&c.producer, KindName::Producer),
                    consumer: Side::compile(&c.consumer, KindName::Consumer),
                })
                .collect(),
        }
    }

    pub fn name(&self, rule: usize) -> &str {
        self.rules.get(rule).map(|r| r.name.as_str()).unwrap_or("")
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// The keys under which `span` is a producer (one per matching rule).
    pub fn producer_keys(&self, span: &Span) -> Vec<Key> {
        self.keys(span, |r| &r.producer)
    }

    /// The keys under which `span` is a consumer.
    pub fn consumer_keys(&self, span: &Span) -> Vec<Key> {
        self.keys(span, |r| &r.consumer)
    }

    fn keys(&self, span: &Span, side: impl Fn(&Rule) -> &Side) -> Vec<Key> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| side(r).key(span).map(|value| Key { rule: i, value }))
            .collect()
    }
}

pub(crate) fn trace_id(bytes: &[u8]) -> Option<TraceId> {
    let t: TraceId = bytes.try_into().ok()?;
    (t != [0; 16]).then_some(t)
}

pub(crate) fn span_id(bytes: &[u8]) -> Option<SpanId> {
    let s: SpanId = bytes.try_into().ok()?;
    (s != [0; 8]).then_some(s)
}

/// Whether the span's parent is known (from the span flags) to live in another process:
/// then context was propagated and the span is left alone.
pub(crate) fn parent_is_remote(span: &Span) -> bool {
    !span.parent_span_id.is_empty()
        && span.flags & FLAG_HAS_IS_REMOTE != 0
        && span.flags & FLAG_IS_REMOTE != 0
}

/// A producer span seen recently.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Producer {
    /// The producer's trace id as it arrived (resolve it through the remap table).
    pub trace: TraceId,
    pub span: SpanId,
    /// The producer span's W3C trace flags (low 8 bits), copied into links.
    pub trace_flags: u32,
}

/// Producer spans by correlation key, each kept for `window` after it was seen, at most
/// `capacity` of them (the oldest is forgotten first). The first producer of a key wins:
/// a producer seen again with the same key within the window does not replace it.
pub(crate) struct ProducerIndex {
    map: TtlMap<Key, Producer>,
}

impl ProducerIndex {
    pub fn new(window: Duration, capacity: usize) -> ProducerIndex {
        ProducerIndex {
            map: TtlMap::new(window, capacity),
        }
    }

    /// Records a producer; returns whether the key is new, and the rule of a live entry
    /// evicted to stay within capacity.
    pub fn insert(&mut self, key: Key, p: Producer, now: Instant) -> (bool, Option<usize>) {
        if self.map.get(&key, now).is_some() {
            return (false, None);
        }
        let evicted = self.map.insert(key, p, now).map(|(k, _, _)| k.rule);
        (true, evicted)
    }

    /// The live producer for `key`.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Producer> {
        self.map.get(key, now).map(|(p, _)| *p)
    }

    pub fn purge(&mut self, now: Instant) {
        self.map.purge(now);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{KeyValue, any_value, set_attr, string_value};

    fn span(kind: i32, attrs: &[(&str, any_value::Value)]) -> Span {
        let mut attributes: Vec<KeyValue> = Vec::new();
        for (k, v) in attrs {
            set_attr(&mut attributes, k, v.clone());
        }
        Span {
            kind,
            attributes,
            ..Default::default()
        }
    }

    #[test]
    fn keys_need_kind_and_every_attribute_and_compare_as_text() {
        let rules = Rules::compile(&default_rules());
        let p = span(
            4,
            &[
                ("messaging.destination.name", string_value("orders")),
                ("messaging.destination.partition.id", string_value("3")),
                ("messaging.kafka.offset", any_value::Value::IntValue(42)),
            ],
        );
        let c = span(
            5,
            &[
                ("messaging.destination.name", string_value("orders")),
                (
                    "messaging.destination.partition.id",
                    any_value::Value::IntValue(3),
                ),
                ("messaging.kafka.offset", string_value("42")),
            ],
        );
        let pk = rules.producer_keys(&p);
        let ck = rules.consumer_keys(&c);
        assert_eq!(pk.len(), 1);
        assert_eq!(pk, ck);
        assert_eq!(rules.name(pk[0].rule), "kafka-offset");
        // Wrong kind, or an attribute missing: no key.
        assert!(rules.consumer_keys(&p).is_empty());
        let partial = span(5, &[("messaging.destination.name", string_value("orders"))]);
        assert!(rules.consumer_keys(&partial).is_empty());
    }

    #[test]
    fn rule_checks_name_the_offending_key() {
        let mut r = default_rules();
        r[1].name = "message-id".into();
        assert_eq!(check_rules(&r).unwrap_err().0, vec!["rules", "1", "name"]);
        let mut r = default_rules();
        r[0].consumer.attributes.push("x".into());
        assert_eq!(
            check_rules(&r).unwrap_err().0,
            vec!["rules", "0", "consumer", "attributes"]
        );
        assert!(check_rules(&[]).is_err());
        assert!(check_rules(&default_rules()).is_ok());
    }

    #[test]
    fn producer_index_expires_keeps_first_and_is_bounded() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut idx = ProducerIndex::new(w, 2);
        let key = |v: &str| Key {
            rule: 0,
            value: v.into(),
        };
        let p = |b: u8, _at: Instant| Producer {
            trace: [b; 16],
            span: [b; 8],
            trace_flags: 1,
        };
        assert_eq!(idx.insert(key("a"), p(1, t0), t0), (true, None));
        assert_eq!(idx.insert(key("a"), p(2, t0), t0), (false, None));
        assert_eq!(idx.get(&key("a"), t0).unwrap().trace, [1; 16]);
        assert!(idx.get(&key("a"), t0 + w).is_none());
        idx.insert(key("b"), p(3, t0), t0);
        assert_eq!(idx.insert(key("c"), p(4, t0), t0), (true, Some(0)));
        assert_eq!(idx.len(), 2);
        assert!(idx.get(&key("a"), t0).is_none());
        idx.purge(t0 + w);
        assert_eq!(idx.len(), 0);
    }
}
