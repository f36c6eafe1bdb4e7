//! Dynamic mapping as Elasticsearch does it for the stand-in: the first value of a field
//! fixes its type; later values must be compatible (numbers and numeric strings into
//! numbers, anything scalar into keyword, objects only into objects) or the document is
//! refused with `mapper_parsing_exception`.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Long,
    Double,
    Boolean,
    Keyword,
    Object,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            FieldType::Long => "long",
            FieldType::Double => "float",
            FieldType::Boolean => "boolean",
            FieldType::Keyword => "keyword",
            FieldType::Object => "object",
        }
    }
}

/// One index: its documents by `_id` and the field types dynamic mapping fixed.
#[derive(Default)]
pub struct Index {
    pub docs: BTreeMap<String, Value>,
    fields: HashMap<String, FieldType>,
}

/// Flattens a document into `path → type` the way dynamic mapping sees it (dotted keys
/// and nested objects are the same path; arrays take their elements' type).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, FieldType, String)>) {
    match v {
        Value::Object(m) => {
            if !prefix.is_empty() {
                out.push((prefix.to_string(), FieldType::Object, String::new()));
            }
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // A dotted key is a path of objects.
                let parts: Vec<&str> = p.split('.').collect();
                for i in 1..parts.len() {
                    out.push((parts[..i].join("."), FieldType::Object, String::new()));
                }
                flatten(&p, x, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                flatten(prefix, x, out);
            }
        }
        Value::Null => {}
        Value::Bool(_) => out.push((prefix.to_string(), FieldType::Boolean, v.to_string())),
        Value::Number(n) if n.is_f64() => {
            out.push((prefix.to_string(), FieldType::Double, v.to_string()))
        }
        Value::Number(_) => out.push((prefix.to_string(), FieldType::Long, v.to_string())),
        Value::String(s) => out.push((prefix.to_string(), FieldType::Keyword, s.clone())),
    }
}

/// Whether a value of type `new` (text `preview`) can go into a field mapped as `old`.
fn compatible(old: FieldType, new: FieldType, preview: &str) -> bool {
    use FieldType::*;
    match (old, new) {
        (a, b) if a == b => true,
        (Object, _) | (_, Object) => false,
        (Keyword, _) => true,
        (Long | Double, Long | Double) => true,
        (Long | Double, Keyword) => preview.trim().parse::<f64>().is_ok(),
        (Boolean, Keyword) => preview == "true" || preview == "false",
        _ => false,
    }
}

impl Index {
    /// Dynamic mapping: new fields are added, conflicting values rejected.
    pub fn map(&mut self, id: &str, source: &Value) -> Result<(), String> {
        let mut fields = Vec::new();
        flatten("", source, &mut fields);
        let mut added: HashMap<String, FieldType> = HashMap::new();
        for (path, ty, preview) in &fields {
            let known = self.fields.get(path).or(added.get(path)).copied();
            match known {
                None => {
                    added.insert(path.clone(), *ty);
                }
                Some(old) if compatible(old, *ty, preview) => {}
                Some(FieldType::Object) => {
                    return Err(format!(
                        "object mapping for [{path}] tried to parse field [{path}] as object, but found a concrete value"
                    ));
                }
                Some(old) => {
                    return Err(format!(
                        "failed to parse field [{path}] of type [{}] in document with id '{id}'. Preview of field's value: '{preview}'",
                        old.name()
                    ));
                }
            }
        }
        self.fields.extend(added);
        Ok(())
    }
}
