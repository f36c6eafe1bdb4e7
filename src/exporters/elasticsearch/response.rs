//! The `_bulk` answer: per-item status and error, in request order, and what each means
//! for the item (indexed, retry, drop).

use serde_json::Value;

use super::bulk::Op;

/// The answer for one bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    pub status: u16,
    pub error_type: Option<String>,
    pub reason: Option<String>,
}

/// What to do with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Indexed,
    Retry,
    /// Dropped for good, with the error type used as the metric label.
    Drop(String),
}

/// 2xx indexed; 409 on `create` is a document already indexed under its content id (a
/// retry of something that succeeded) and counts as indexed; 429 and 5xx are retried;
/// other 4xx (`mapper_parsing_exception`, `illegal_argument_exception`, ...) dropped.
pub fn classify_item(op: Op, r: &ItemResult) -> ItemOutcome {
    match r.status {
        200..=299 => ItemOutcome::Indexed,
        409 if op == Op::Create => ItemOutcome::Indexed,
        429 | 500..=599 => ItemOutcome::Retry,
        s => ItemOutcome::Drop(r.error_type.clone().unwrap_or_else(|| format!("http_{s}"))),
    }
}

/// Parses a `_bulk` answer: `errors` and `items[i].<op>.status` / `.error.type` /
/// `.error.reason`. With `errors: false` the items need not be present (as with
/// `filter_path=errors`). Item order is the request's order.
pub fn parse_response(body: &[u8], expected: usize) -> Result<Vec<ItemResult>, String> {
    if all_succeeded(body, expected) {
        return Ok(vec![ok_item(); expected]);
    }
    // Any other `errors: false` answer with one item per document (with `took`, white
    // space, more fields per item: a proxy that dropped `filter_path`): Elasticsearch sets
    // `errors` when any item failed, so every item was indexed. Its items are only
    // counted (no allocation per item).
    if let Ok(h) = serde_json::from_slice::<Head>(body)
        && h.errors == Some(false)
        && h.items.is_none_or(|n| n.0 == expected)
    {
        return Ok(vec![ok_item(); expected]);
    }
    // Other well-formed answers are read into borrowed typed structs (no `Value` per
    // item); anything else takes the general path, which words the errors.
    if let Ok(a) = serde_json::from_slice::<Answer<'_>>(body) {
        let errors = a.errors.as_ref().and_then(Value::as_bool).unwrap_or(true);
        match a.items {
            None if !errors => return Ok(vec![ok_item(); expected]),
            Some(items)
                if items.len() == expected
                    && items.iter().all(|i| {
                        i.values()
                            .next()
                            .is_some_and(|b| b.status.as_ref().is_some_and(Value::is_u64))
                    }) =>
            {
                return Ok(items
                    .iter()
                    .filter_map(|i| i.values().next())
                    .map(|b| {
                        let text = |k: &str| {
                            b.error
                                .as_ref()
                                .and_then(|e| e.get(k))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        };
                        ItemResult {
                            status: b
                                .status
                                .as_ref()
                                .and_then(Value::as_u64)
                                .and_then(|s| u16::try_from(s).ok())
                                .unwrap_or(500),
                            error_type: text("type"),
                            reason: text("reason"),
                        }
                    })
                    .collect());
            }
            _ => {}
        }
    }
    parse_general(body, expected)
}

/// Whether `body` is, byte for byte, what Elasticsearch answers the exporter's
/// `filter_path` when every document succeeded:
/// `{"errors":false,"items":[{"create":{"status":201}},…]}` with `expected` items, each a
/// `create`, `index`, `update` or `delete` with a 2xx status. Matched without a JSON parser
/// (~25 bytes an item, where parsing cost ~2% of weft's CPU on the Elasticsearch path);
/// any other answer, or this one with white space, is left to the parsers.
fn all_succeeded(body: &[u8], expected: usize) -> bool {
    let Some(mut rest) = body.strip_prefix(br#"{"errors":false,"items":["#) else {
        return false;
    };
    for i in 0..expected {
        let item = if i == 0 {
            Some(rest)
        } else {
            rest.strip_prefix(b",")
        };
        let Some(item) = item.and_then(|r| r.strip_prefix(b"{\"")) else {
            return false;
        };
        let Some(item) = [&b"create"[..], b"index", b"update", b"delete"]
            .iter()
            .find_map(|op| item.strip_prefix(*op))
            .and_then(|r| r.strip_prefix(br#"":{"status":2"#))
        else {
            return false;
        };
        match item {
            [a, b, b'}', b'}', r @ ..] if a.is_ascii_digit() && b.is_ascii_digit() => rest = r,
            _ => return false,
        }
    }
    rest == b"]}"
}

/// An answer's `errors` flag and how many items it lists (each skipped unread).
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    errors: Option<bool>,
    #[serde(default)]
    items: Option<ItemCount>,
}

struct ItemCount(usize);

impl<'de> serde::Deserialize<'de> for ItemCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> serde::de::Visitor<'de> for Counter {
            type Value = ItemCount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of items")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ItemCount, A::Error> {
                let mut n = 0;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(ItemCount(n))
            }
        }
        d.deserialize_seq(Counter)
    }
}

#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(default)]
    errors: Option<Value>,
    #[serde(borrow, default)]
    items: Option<Vec<std::collections::BTreeMap<std::borrow::Cow<'a, str>, ItemBody>>>,
}

#[derive(serde::Deserialize)]
struct ItemBody {
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

fn parse_general(body: &[u8], expected: usize) -> Result<Vec<ItemResult>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid _bulk answer: {e}"))?;
    let errors = v.get("errors").and_then(Value::as_bool).unwrap_or(true);
    let items = v.get("items").and_then(Value::as_array);
    let Some(items) = items else {
        if !errors {
            return Ok(vec![ok_item(); expected]);
        }
        return Err("_bulk answer has errors but no items".into());
    };
    if items.len() != expected {
        return Err(format!(
            "_bulk answer has {} items for {expected} documents",
            items.len()
        ));
    }
    items
        .iter()
        .map(|it| {
            let inner = it
                .as_object()
                .and_then(|o| o.values().next())
                .ok_or_else(|| "_bulk answer item is not an object".to_string())?;
            let status = inner
                .get("status")
                .and_then(Value::as_u64)
                .ok_or_else(|| "_bulk answer item without status".to_string())?;
            let err = inner.get("error");
            let text = |k: &str| {
                err.and_then(|e| e.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            Ok(ItemResult {
                status: u16::try_from(status).unwrap_or(500),
                error_type: text("type"),
                reason: text("reason"),
            })
        })
        .collect()
}

fn ok_item() -> ItemResult {
    ItemResult {
        status: 200,
        error_type: None,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_items_and_classifies() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"x","status":201}},
            {"create":{"_index":"x","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"x","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}},
            {"create":{"_index":"x","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}]}"#;
        let items = parse_response(body, 4).unwrap();
        let outcomes: Vec<_> = items.iter().map(|r| classify_item(Op::Create, r)).collect();
        assert_eq!(
            outcomes,
            vec![
                ItemOutcome::Indexed,
                ItemOutcome::Retry,
                ItemOutcome::Drop("mapper_parsing_exception".into()),
                ItemOutcome::Indexed
            ]
        );
        assert_eq!(
            classify_item(Op::Index, &items[3]),
            ItemOutcome::Drop("version_conflict_engine_exception".into())
        );
        assert_eq!(parse_response(br#"{"errors":false}"#, 2).unwrap().len(), 2);
        // `errors: false`: every item indexed, as long as there is one per document.
        let ok = br#"{"took":1,"errors":false,"items":[{"create":{"status":201}},{"index":{"status":200}}]}"#;
        assert_eq!(parse_response(ok, 2).unwrap(), vec![ok_item(); 2]);
        assert!(parse_response(ok, 3).is_err());
        // The answer to the exporter's filter_path, matched without a parser: exactly
        // this shape, or the parsers decide.
        let filtered = br#"{"errors":false,"items":[{"create":{"status":201}},{"index":{"status":200}},{"delete":{"status":200}}]}"#;
        assert!(all_succeeded(filtered, 3));
        assert_eq!(parse_response(filtered, 3).unwrap(), vec![ok_item(); 3]);
        assert!(!all_succeeded(filtered, 2) && !all_succeeded(filtered, 4));
        assert!(parse_response(filtered, 2).is_err() && parse_response(filtered, 4).is_err());
        assert!(all_succeeded(br#"{"errors":false,"items":[]}"#, 0));
        for not_plain in [
            &br#"{"errors":false,"items":[{"create":{"status":429}}]}"#[..],
            br#"{"errors":false,"items":[{"create":{"status":2x1}}]}"#,
            br#"{"errors":false,"items":[{"create":{"status":2011}}]}"#,
            br#"{"errors":false,"items":[{"upsert":{"status":201}}]}"#,
            br#"{"errors":false,"items":[{"create":{"status":201}}] }"#,
            br#"{"errors":false,"items":[{"create":{"status":201}}]"#,
            br#"{"errors":true,"items":[{"create":{"status":201}}]}"#,
            br#"{"errors":false, "items":[{"create":{"status":201}}]}"#,
        ] {
            assert!(
                !all_succeeded(not_plain, 1),
                "{}",
                String::from_utf8_lossy(not_plain)
            );
        }
        // The parsers still read what the matcher leaves to them.
        let spaced = br#"{"errors":false, "items":[{"create":{"status":201}}]}"#;
        assert_eq!(parse_response(spaced, 1).unwrap(), vec![ok_item()]);
        let failed = br#"{"errors":true,"items":[{"create":{"status":429}}]}"#;
        assert_eq!(parse_response(failed, 1).unwrap()[0].status, 429);
        // A flag that is not a boolean is not trusted: the items decide.
        let odd = br#"{"errors":"no","items":[{"create":{"status":429}}]}"#;
        assert_eq!(parse_response(odd, 1).unwrap()[0].status, 429);
        assert!(parse_response(body, 3).is_err());
        assert!(parse_response(b"nope", 1).is_err());
    }
}
