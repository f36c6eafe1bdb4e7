//! YAML into a tree that remembers where every node came from (file and line), so that
//! validation errors can point at the exact line of the offending key.
//!
//! Built on yaml-rust2's event parser (pure Rust). Scalars are typed by the YAML 1.2 core
//! schema: `null`/`~`, `true`/`false`, integers, floats; quoted scalars stay strings.
//! Anchors and aliases are supported; merge keys (`<<`) are applied.

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own position (the line an unknown key is reported at).
    Map(Vec<(String, Pos, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: invalid YAML: {message}")]
pub struct YamlError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n),
            _ => None,
        }
    }

    /// The position of `key` within this mapping.
    pub fn key_pos(&self, key: &str) -> Option<&Pos> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, p, _)| p),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts into JSON for typed deserialisation with serde.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(v) => J::Array(v.iter().map(Node::to_json).collect()),
            Value::Map(m) => {
                J::Object(m.iter().map(|(k, _, n)| (k.clone(), n.to_json())).collect())
            }
        }
    }

    /// Follows a path of keys and list indices, returning the deepest node reached and the
    /// position of the last key found (for errors about keys that do not exist).
    pub fn locate(&self, path: &[String]) -> Pos {
        let mut node = self;
        let mut pos = self.pos.clone();
        for seg in path {
            match &node.value {
                Value::Map(entries) => match entries.iter().find(|(k, _, _)| k == seg) {
                    Some((_, kp, n)) => {
                        pos = kp.clone();
                        node = n;
                    }
                    None => return pos,
                },
                Value::Seq(items) => match seg.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some(n) => {
                        pos = n.pos.clone();
                        node = n;
                    }
                    None => return pos,
                },
                _ => return pos,
            }
        }
        pos
    }
}

/// Types a plain scalar by the YAML 1.2 core schema.
pub fn plain_scalar(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Value::Int(i);
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    let looks_numeric = s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && s.chars().any(|c| c.is_ascii_digit());
    if looks_numeric && let Ok(f) = s.parse::<f64>() {
        return Value::Float(f);
    }
    Value::Str(s.to_string())
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(String, Pos, Node)>, Pos, usize, Option<(String, Pos)>),
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<(usize, String)>,
}

impl Builder {
    fn pos(&self, m: &Marker) -> Pos {
        Pos {
            file: self.file.clone(),
            line: m.line(),
        }
    }

    fn push_node(&mut self, node: Node, key_pos: Pos) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, _, _, pending)) => match pending.take() {
                None => {
                    let key = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_string(),
                        _ => {
                            self.error.get_or_insert((
                                key_pos.line,
                                "mapping keys must be scalars".into(),
                            ));
                            String::new()
                        }
                    };
                    *pending = Some((key, key_pos));
                }
                Some((key, kp)) => {
                    if key == "<<" {
                        // Merge key: copy the entries of the referenced mapping(s) that are
                        // not set explicitly.
                        let maps = match node.value {
                            Value::Map(m) => vec![m],
                            Value::Seq(items) => items
                                .into_iter()
                                .filter_map(|n| match n.value {
                                    Value::Map(m) => Some(m),
                                    _ => None,
                                })
                                .collect(),
                            _ => vec![],
                        };
                        for m in maps {
                            for (k, p, n) in m {
                                if !entries.iter().any(|(e, _, _)| *e == k) {
                                    entries.push((k, p, n));
                                }
                            }
                        }
                    } else if let Some(existing) = entries.iter_mut().find(|(k, _, _)| *k == key) {
                        // Duplicate key: YAML forbids it; the last one wins, as in most
                        // loaders, but we say so.
                        tracing::warn!(
                            "{}:{}: duplicate key {:?}; the later value wins",
                            kp.file,
                            kp.line,
                            key
                        );
                        *existing = (key, kp, node);
                    } else {
                        entries.push((key, kp, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = self.pos(&mark);
        match ev {
            Event::Scalar(s, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
                    plain_scalar(&s)
                } else {
                    Value::Str(s)
                };
                let node = Node {
                    value,
                    pos: pos.clone(),
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_node(node, pos);
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(n) => n.clone(),
                    None => {
                        self.error
                            .get_or_insert((pos.line, "alias to an unknown anchor".into()));
                        Node {
                            value: Value::Null,
                            pos: pos.clone(),
                        }
                    }
                };
                self.push_node(node, pos);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), pos, anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Vec::new(), pos, anchor, None))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, p, a)) => (
                        Node {
                            value: Value::Seq(items),
                            pos: p,
                        },
                        a,
                    ),
                    Some(Frame::Map(entries, p, a, _)) => (
                        Node {
                            value: Value::Map(entries),
                            pos: p,
                        },
                        a,
                    ),
                    None => return,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                let p = node.pos.clone();
                self.push_node(node, p);
            }
            _ => {}
        }
    }
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(file: &str, text: &str) -> Result<Node, YamlError> {
    let mut b = Builder {
        file: Arc::from(file),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, false).map_err(|e| YamlError {
        file: file.to_string(),
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    if let Some((line, message)) = b.error {
        return Err(YamlError {
            file: file.to_string(),
            line,
            message,
        });
    }
    Ok(b.root.unwrap_or(Node {
        value: Value::Map(Vec::new()),
        pos: Pos {
            file: Arc::from(file),
            line: 1,
        },
    }))
}

/// Merges `overlay` into `base`: mappings recursively, anything else replaced (as the
/// Collector merges several `--config` sources).
pub fn merge(base: &mut Node, overlay: Node) {
    match (&mut base.value, overlay.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, kp, n) in o {
                if let Some((_, bp, bn)) = b.iter_mut().find(|(bk, _, _)| *bk == k) {
                    *bp = kp;
                    merge(bn, n);
                } else {
                    b.push((k, kp, n));
                }
            }
        }
        (_, v) => {
            base.value = v;
            base.pos = overlay.pos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_types_and_anchors() {
        let n = parse(
            "a.yaml",
            "x: 1\ny:\n  z: \"2\"\n  w: [true, 1.5, ~]\nbase: &b {k: v}\nother:\n  <<: *b\n  j: 3\n",
        )
        .unwrap();
        assert_eq!(n.get("x").unwrap().value, Value::Int(1));
        let y = n.get("y").unwrap();
        assert_eq!(y.get("z").unwrap().value, Value::Str("2".into()));
        assert_eq!(n.key_pos("y").unwrap().line, 2);
        assert_eq!(y.key_pos("w").unwrap().line, 4);
        assert_eq!(
            n.get("other").unwrap().get("k").unwrap().as_str(),
            Some("v")
        );
        assert_eq!(n.locate(&["y".into(), "w".into()]).line, 4);
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = parse("b.yaml", "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        assert!(e.to_string().starts_with("b.yaml:"));
    }

    #[test]
    fn merge_overlays_maps() {
        let mut a = parse("a", "r: {x: 1, y: 2}\nl: [1]\n").unwrap();
        let b = parse("b", "r: {y: 3}\nl: [2, 3]\n").unwrap();
        merge(&mut a, b);
        let j = a.to_json();
        assert_eq!(j["r"]["x"], 1);
        assert_eq!(j["r"]["y"], 3);
        assert_eq!(j["l"], serde_json::json!([2, 3]));
    }
}
