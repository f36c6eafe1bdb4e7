//! Attribute helpers shared by processors and exporters: lookups, setting, rendering
//! values as text or JSON, and the hex form of trace and span ids.

use super::{AnyValue, KeyValue, any_value};

/// Looks up a string-valued attribute.
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => Some(s.as_str()),
            _ => None,
        })
}

/// Looks up an attribute value.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// Sets (inserts or replaces) an attribute.
pub fn set_attr(attrs: &mut Vec<KeyValue>, key: &str, value: any_value::Value) {
    let v = Some(AnyValue { value: Some(value) });
    if let Some(kv) = attrs.iter_mut().find(|kv| kv.key == key) {
        kv.value = v;
    } else {
        attrs.push(KeyValue {
            key: key.to_string(),
            value: v,
            ..Default::default()
        });
    }
}

/// An attribute (`key` = `value`), as tests and fixtures build them.
pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A string attribute (`key` = `"value"`).
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, string_value(value))
}

/// A string value.
pub fn string_value(s: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// Renders an attribute value as plain text (strings unquoted, others as JSON-ish text).
pub fn value_to_string(v: &any_value::Value) -> String {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => s.clone(),
        V::BoolValue(b) => b.to_string(),
        V::IntValue(i) => i.to_string(),
        V::DoubleValue(d) => d.to_string(),
        V::BytesValue(b) => hex(b),
        other => value_to_json(other).to_string(),
    }
}

/// Converts an attribute value into JSON (maps become objects, arrays arrays, bytes hex).
pub fn value_to_json(v: &any_value::Value) -> serde_json::Value {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => serde_json::Value::String(s.clone()),
        V::BoolValue(b) => serde_json::Value::Bool(*b),
        V::IntValue(i) => serde_json::Value::from(*i),
        V::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        V::BytesValue(b) => serde_json::Value::String(hex(b)),
        V::ArrayValue(a) => serde_json::Value::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map(value_to_json).unwrap_or_default())
                .collect(),
        ),
        V::KvlistValue(kv) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(value_to_json)
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}

/// Lower-case hex of bytes (trace and span ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&hex(&[0, 255, 16])).unwrap(), vec![0, 255, 16]);
        assert!(unhex("abc").is_none());
    }
}
