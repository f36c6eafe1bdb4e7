//! One push request to Loki and the classification of its answer.
//!
//! How Loki answers (read from `pkg/distributor/distributor.go` `Push`,
//! `pkg/distributor/validator.go` and `pkg/ingester/stream.go` of Loki 3):
//! - The distributor validates entry by entry, **drops the invalid ones, pushes the valid
//!   ones to the ingesters**, and only then answers 400 with the grouped validation errors
//!   (`"<n> errors like: <msg>; ..."`). The ingester likewise appends what is in order and
//!   answers 400 `entry with timestamp … ignored, reason: 'entry out of order' | 'entry too
//!   far behind …', … total ignored: <n> out of <m> for stream: {…}`.
//! - So a 400 naming entries means "the rest is stored": re-sending would only duplicate
//!   (or, with unordered writes off, earn more `entry out of order`). Those entries are
//!   permanent drops, counted per Loki reason; nothing is retried.
//! - A 400 that names no entry (undecodable body) is a permanent failure of the request;
//!   429 and 5xx are retryable (honouring `Retry-After`); 204 is success.

use std::collections::{BTreeMap, HashMap};

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::exporters::ExportError;
use crate::exporters::http_client::{classify_response, classify_transport_error};

/// The answer to one push.
#[derive(Debug)]
pub enum PushResult {
    Accepted,
    /// Loki stored the request except the entries it named: `(reason, entries)`.
    Rejected {
        drops: Vec<(String, u64)>,
        message: String,
    },
    /// Nothing was stored (retryable) or the request itself is bad (permanent).
    Failed(ExportError),
}

pub struct PushRequestParts<'a> {
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub tenant: Option<&'a str>,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    /// Entries per label string in this request (to count stream-level rejections).
    pub entries_by_stream: &'a HashMap<String, usize>,
}

pub async fn push(client: &reqwest::Client, p: PushRequestParts<'_>) -> PushResult {
    let mut rb = client
        .post(p.url)
        .headers(p.headers.clone())
        .header(CONTENT_TYPE, p.content_type);
    if let Some(enc) = p.content_encoding {
        rb = rb.header(CONTENT_ENCODING, enc);
    }
    if let Some(t) = p.tenant {
        match HeaderValue::from_str(t) {
            Ok(v) => rb = rb.header("X-Scope-OrgID", v),
            Err(_) => {
                return PushResult::Failed(ExportError::permanent(
                    "invalid_tenant",
                    format!("tenant {t:?} is not a valid X-Scope-OrgID header value"),
                ));
            }
        }
    }
    let resp = match rb.body(p.body).send().await {
        Ok(r) => r,
        Err(e) => return PushResult::Failed(classify_transport_error(&e)),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = if (200..300).contains(&status) {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    classify(status, &headers, &text, p.entries_by_stream)
}

pub fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    entries_by_stream: &HashMap<String, usize>,
) -> PushResult {
    if status == 400 {
        return match parse_rejections(body, entries_by_stream) {
            Some(drops) => PushResult::Rejected {
                drops,
                message: body.trim().to_string(),
            },
            None => PushResult::Failed(ExportError::permanent(
                "http_400",
                body.trim().chars().take(500).collect::<String>(),
            )),
        };
    }
    match classify_response(status, headers, body) {
        Ok(()) => PushResult::Accepted,
        Err(e) => PushResult::Failed(e),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// The message is about one entry.
    Entry,
    /// The message rejects a whole stream (all its entries).
    Stream,
}

/// Loki's validation messages (`pkg/validation/validate.go`), the reason Loki counts them
/// under in `loki_discarded_samples_total`, and whether they cover an entry or a stream.
const MESSAGES: &[(&str, &str, Scope)] = &[
    (
        "has timestamp too old",
        "greater_than_max_sample_age",
        Scope::Entry,
    ),
    ("has timestamp too new", "too_far_in_future", Scope::Entry),
    ("Max entry size", "line_too_long", Scope::Entry),
    (
        "has structured metadata too large",
        "structured_metadata_too_large",
        Scope::Entry,
    ),
    (
        "has too many structured metadata labels",
        "structured_metadata_too_many",
        Scope::Entry,
    ),
    (
        "includes structured metadata, but this feature is disallowed",
        "disallowed_structured_metadata",
        Scope::Entry,
    ),
    (
        "label names; limit",
        "max_label_names_per_series",
        Scope::Stream,
    ),
    (
        "has label name too long",
        "label_name_too_long",
        Scope::Stream,
    ),
    (
        "has label value too long",
        "label_value_too_long",
        Scope::Stream,
    ),
    (
        "has duplicate label name",
        "duplicate_label_names",
        Scope::Stream,
    ),
    ("Error parsing labels", "invalid_labels", Scope::Stream),
    (
        "at least one label pair is required",
        "missing_labels",
        Scope::Stream,
    ),
    (
        "missing required labels",
        "missing_enforced_labels",
        Scope::Stream,
    ),
];

/// Counts the entries a Loki 400 says it dropped, by reason. `None` when the body names no
/// entry (then the whole request failed).
pub fn parse_rejections(
    body: &str,
    entries_by_stream: &HashMap<String, usize>,
) -> Option<Vec<(String, u64)>> {
    let body = body.trim();
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(n) = ingester_total_ignored(body) {
        let reason = if body.contains("entry too far behind") {
            "too_far_behind"
        } else if body.contains("entry out of order") {
            "out_of_order"
        } else {
            "other"
        };
        drops.insert(reason.to_string(), n);
        return Some(drops.into_iter().collect());
    }
    let mut recognized = false;
    for (n, msg) in grouped_segments(body) {
        match MESSAGES.iter().find(|(needle, _, _)| msg.contains(needle)) {
            Some((_, reason, scope)) => {
                recognized = true;
                let per = match scope {
                    Scope::Entry => 1,
                    Scope::Stream => quoted_stream(msg)
                        .and_then(|s| entries_by_stream.get(s))
                        .map(|c| *c as u64)
                        .unwrap_or(1),
                };
                *drops.entry(reason.to_string()).or_default() += n * per;
            }
            None => *drops.entry("other".to_string()).or_default() += n,
        }
    }
    recognized.then(|| drops.into_iter().collect())
}

/// Splits Loki's `GroupedErrors` text: `"<n> errors like: <msg>; <n> errors like: <msg>"`
/// when there are several (messages themselves may contain `"; "`), or one bare message.
fn grouped_segments(body: &str) -> Vec<(u64, &str)> {
    const MARK: &str = " errors like: ";
    // (header start, message start, count)
    let mut headers: Vec<(usize, usize, u64)> = Vec::new();
    let mut from = 0;
    while let Some(off) = body.get(from..).and_then(|rest| rest.find(MARK)) {
        let i = from + off;
        let before = &body[..i];
        let digits_start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_ascii_digit())
            .map(|(p, c)| p + c.len_utf8())
            .unwrap_or(0);
        if digits_start < i
            && (digits_start == 0 || before[..digits_start].ends_with("; "))
            && let Ok(n) = before[digits_start..].parse::<u64>()
        {
            headers.push((digits_start, i + MARK.len(), n));
        }
        from = i + MARK.len();
    }
    if headers.first().map(|h| h.0) != Some(0) {
        return vec![(1, body)];
    }
    headers
        .iter()
        .enumerate()
        .map(|(k, (_, msg_start, n))| {
            let end = headers
                .get(k + 1)
                .map(|h| h.0.saturating_sub(2))
                .unwrap_or(body.len());
            (*n, body.get(*msg_start..end.max(*msg_start)).unwrap_or(""))
        })
        .collect()
}

/// `total ignored: <n> out of <m>` from the ingester's answer.
fn ingester_total_ignored(body: &str) -> Option<u64> {
    let rest = body.split("total ignored: ").nth(1)?;
    rest.split(" out of ").next()?.trim().parse().ok()
}

/// The label string in `stream '{…}'` or `labels '{…}'`.
fn quoted_stream(msg: &str) -> Option<&str> {
    let start = msg
        .find("stream '")
        .map(|i| i + 8)
        .or_else(|| msg.find("labels '").map(|i| i + 8))?;
    let rest = msg.get(start..)?;
    let end = rest.find("}'")?;
    rest.get(..end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams() -> HashMap<String, usize> {
        [(r#"{service_name="api"}"#.to_string(), 3)].into()
    }

    #[test]
    fn grouped_distributor_errors_are_counted_by_reason() {
        let body = "2 errors like: entry for stream '{service_name=\"api\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-18T00:00:00Z; \
                    1 errors like: Max entry size '10' bytes exceeded for stream '{service_name=\"api\"}' while adding an entry with length '20' bytes; \
                    1 errors like: entry for stream '{service_name=\"api\"}' has 20 label names; limit 15\n";
        let d = parse_rejections(body, &streams()).unwrap();
        assert_eq!(
            d,
            [
                ("greater_than_max_sample_age".to_string(), 2),
                ("line_too_long".to_string(), 1),
                ("max_label_names_per_series".to_string(), 3),
            ]
        );
    }

    #[test]
    fn single_error_without_prefix() {
        let body = "stream '{service_name=\"api\"}' has structured metadata too large: '70000' bytes, limit: '65536' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.";
        let d = parse_rejections(body, &streams()).unwrap();
        assert_eq!(d, [("structured_metadata_too_large".to_string(), 1)]);
    }

    #[test]
    fn ingester_out_of_order_uses_total_ignored() {
        let body = "entry with timestamp 2026-11-25 10:00:00 +0000 UTC ignored, reason: 'entry out of order',\n\
                    user 'fake', total ignored: 4 out of 9 for stream: {service_name=\"api\"}";
        assert_eq!(
            parse_rejections(body, &streams()).unwrap(),
            [("out_of_order".to_string(), 4)]
        );
        let body = "entry with timestamp 2026-11-25 10:00:00 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-11-25T10:00:00Z, oldest acceptable timestamp is: 2026-11-25T11:00:00Z',\n\
                    user 'fake', total ignored: 1 out of 2 for stream: {service_name=\"api\"}";
        assert_eq!(
            parse_rejections(body, &streams()).unwrap(),
            [("too_far_behind".to_string(), 1)]
        );
    }

    #[test]
    fn statuses_are_classified() {
        let h = HeaderMap::new();
        assert!(matches!(
            classify(204, &h, "", &streams()),
            PushResult::Accepted
        ));
        assert!(matches!(
            classify(400, &h, "loghttp: unexpected EOF", &streams()),
            PushResult::Failed(ExportError::Permanent { .. })
        ));
        let mut h429 = HeaderMap::new();
        h429.insert("retry-after", HeaderValue::from_static("3"));
        match classify(429, &h429, "Ingestion rate limit exceeded", &streams()) {
            PushResult::Failed(ExportError::Retryable { after, .. }) => {
                assert_eq!(after, Some(std::time::Duration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(503, &h, "", &streams()),
            PushResult::Failed(ExportError::Retryable { .. })
        ));
        assert!(matches!(
            classify(
                400,
                &h,
                "1 errors like: entry for stream '{a=\"b\"}' has timestamp too new: x",
                &streams()
            ),
            PushResult::Rejected { .. }
        ));
    }
}
