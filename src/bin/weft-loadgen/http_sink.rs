//! Counting sinks for the logs exporters: Loki's push API and Elasticsearch's `_bulk`,
//! answered as the real servers answer success, counted and discarded.
//!
//! - `--mode loki`: `POST /loki/api/v1/push`, protobuf (snappy block) or JSON (optionally
//!   gzip), answered 204. Entries are counted with a shallow protobuf walk (no decoding
//!   into messages), so the sink's own CPU stays small.
//! - `--mode elasticsearch`: `GET /` (version 8 info, which the exporter reads at start),
//!   `POST /_bulk` and `POST /{index}/_bulk` with NDJSON (optionally gzip), answered with
//!   one `201` item per document under the action's own name (`create` / `index`). A
//!   `filter_path` query keeps only the fields it lists, as Elasticsearch does: the
//!   exporter's `filter_path=errors,items.*.status,…` gets `{"errors":false,"items":
//!   [{"create":{"status":201}},…]}`, the answer a real cluster sends it.
//!
//! The end-to-end latency is taken from the newest record time in the request (the
//! generator stamps its send time there): the entry timestamp for Loki, the last
//! document's `@timestamp` for Elasticsearch. A body the sink cannot read is answered 400.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::pb::{Field, fields, len};
use super::sink::Counts;

type Shared = State<Arc<Counts>>;

pub fn router(mode: super::SinkMode, counts: Arc<Counts>) -> Router {
    match mode {
        super::SinkMode::Loki => Router::new().route("/loki/api/v1/push", post(loki_push)),
        _ => Router::new()
            .route("/", get(es_info))
            .route("/_bulk", post(es_bulk))
            .route("/{index}/_bulk", post(es_bulk_index)),
    }
    // Batches of thousands of records are larger than axum's 2 MB default.
    .layer(axum::extract::DefaultBodyLimit::disable())
    .with_state(counts)
}

fn bad(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, msg.to_string()).into_response()
}

fn is_gzip(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
}

fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

async fn loki_push(State(c): Shared, h: HeaderMap, body: Bytes) -> Response {
    let json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let counted = if json {
        let raw = if is_gzip(&h) {
            match gunzip(&body) {
                Ok(b) => b,
                Err(e) => return bad(e),
            }
        } else {
            body.to_vec()
        };
        loki_json(&raw)
    } else {
        match snap::raw::Decoder::new().decompress_vec(&body) {
            Ok(raw) => loki_proto(&raw),
            Err(e) => return bad(e),
        }
    };
    match counted {
        Some((n, ts)) => {
            c.observe(n, Some(ts));
            StatusCode::NO_CONTENT.into_response()
        }
        None => bad("unreadable push request"),
    }
}

/// `(entries, newest entry time in ns)` of a `logproto.PushRequest`: streams (1) →
/// entries (2) → timestamp (1) → seconds (1), nanos (2).
pub fn loki_proto(b: &[u8]) -> Option<(usize, u64)> {
    let (mut n, mut newest) = (0usize, 0u64);
    for (f, stream) in fields(b) {
        let stream = stream?;
        if f != 1 {
            continue;
        }
        for (f, entry) in fields(len(stream)?) {
            let entry = entry?;
            if f != 2 {
                continue;
            }
            n += 1;
            for (f, ts) in fields(len(entry)?) {
                let ts = ts?;
                if f != 1 {
                    continue;
                }
                let (mut secs, mut nanos) = (0, 0);
                for (f, v) in fields(len(ts)?) {
                    match (f, v?) {
                        (1, Field::Varint(v)) => secs = v,
                        (2, Field::Varint(v)) => nanos = v,
                        _ => return None,
                    }
                }
                newest = newest.max(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
            }
        }
    }
    Some((n, newest))
}

/// `(entries, newest entry time in ns)` of Loki's JSON push body.
pub fn loki_json(b: &[u8]) -> Option<(usize, u64)> {
    #[derive(serde::Deserialize)]
    struct Push {
        streams: Vec<Stream>,
    }
    #[derive(serde::Deserialize)]
    struct Stream {
        /// `["<ns>", "<line>"]` or `["<ns>", "<line>", {metadata}]`.
        values: Vec<Vec<serde_json::Value>>,
    }
    let p: Push = serde_json::from_slice(b).ok()?;
    let mut n = 0;
    let mut newest = 0u64;
    for s in &p.streams {
        n += s.values.len();
        for v in &s.values {
            newest = newest.max(v.first()?.as_str()?.parse().ok()?);
        }
    }
    Some((n, newest))
}

async fn es_info() -> Response {
    (
        [("x-elastic-product", "Elasticsearch")],
        axum::Json(serde_json::json!({
            "name": "weft-loadgen-sink",
            "cluster_name": "weft-loadgen",
            "version": {"number": "8.17.0", "build_flavor": "default"},
            "tagline": "You Know, for Search"
        })),
    )
        .into_response()
}

async fn es_bulk_index(
    c: Shared,
    _index: axum::extract::Path<String>,
    q: RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    es_bulk(c, q, h, body).await
}

async fn es_bulk(State(c): Shared, RawQuery(q): RawQuery, h: HeaderMap, body: Bytes) -> Response {
    let raw = if is_gzip(&h) {
        match gunzip(&body) {
            Ok(b) => b,
            Err(e) => return bad(e),
        }
    } else {
        body.to_vec()
    };
    match bulk_answer(&raw, &Filter::from_query(q.as_deref())) {
        Some((answer, n, ts)) => {
            c.observe(n, ts);
            ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
        }
        None => bad("malformed _bulk body"),
    }
}

/// Which fields of a `_bulk` answer are sent: all of them, or what `filter_path` lists.
pub struct Filter {
    took: bool,
    errors: bool,
    status: bool,
    result: bool,
}

impl Filter {
    /// From the request's query string: `filter_path=a,b.*.c` (comma-separated paths, `*`
    /// for any key, as Elasticsearch reads it; `items.*` keeps whole items).
    pub fn from_query(q: Option<&str>) -> Filter {
        let paths = q
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("filter_path="));
        let Some(paths) = paths else {
            return Filter {
                took: true,
                errors: true,
                status: true,
                result: true,
            };
        };
        let paths = paths.replace("%2C", ",").replace("%2c", ",");
        let paths: Vec<&str> = paths.split(',').collect();
        let has = |p: &str| paths.contains(&p);
        let whole_items = has("items") || has("items.*");
        Filter {
            took: has("took"),
            errors: has("errors"),
            status: whole_items || has("items.*.status"),
            result: whole_items || has("items.*.result"),
        }
    }
}

/// The `_bulk` answer for an NDJSON body (every document created, the fields `filter`
/// keeps), the number of documents and the last document's `@timestamp` in ns.
pub fn bulk_answer(body: &[u8], filter: &Filter) -> Option<(Vec<u8>, usize, Option<u64>)> {
    let mut lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let mut out = Vec::with_capacity(body.len() / 16);
    out.push(b'{');
    if filter.took {
        out.extend_from_slice(br#""took":1,"#);
    }
    if filter.errors {
        out.extend_from_slice(br#""errors":false,"#);
    }
    let item: &[u8] = match (filter.status, filter.result) {
        (true, true) => br#"":{"status":201,"result":"created"}}"#,
        (true, false) => br#"":{"status":201}}"#,
        (false, true) => br#"":{"result":"created"}}"#,
        // Nothing of the items is kept: Elasticsearch leaves the array out.
        (false, false) => b"",
    };
    if !item.is_empty() {
        out.extend_from_slice(br#""items":["#);
    }
    let mut n = 0;
    let mut last_src = None;
    while let Some(action) = lines.next() {
        let op: &[u8] = if action.starts_with(br#"{"create""#) {
            b"create"
        } else if action.starts_with(br#"{"index""#) {
            b"index"
        } else {
            return None;
        };
        last_src = Some(lines.next()?);
        if !item.is_empty() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"");
            out.extend_from_slice(op);
            out.extend_from_slice(item);
        }
        n += 1;
    }
    if !item.is_empty() {
        out.push(b']');
    } else if out.last() == Some(&b',') {
        out.pop();
    }
    out.push(b'}');
    Some((out, n, last_src.and_then(timestamp_of)))
}

fn timestamp_of(src: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""@timestamp":""#;
    let at = src.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = src.get(at..)?;
    let end = rest.iter().position(|b| *b == b'"')?;
    let s = std::str::from_utf8(&rest[..end]).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    u64::try_from(t.timestamp_nanos_opt()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_bodies_are_counted() {
        let json =
            br#"{"streams":[{"stream":{"a":"b"},"values":[["5","x"],["7","y",{"k":"v"}]]}]}"#;
        assert_eq!(loki_json(json), Some((2, 7)));
        assert_eq!(loki_json(b"{}"), None);
        use prost::Message;
        use weft::exporters::loki::proto::*;
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: "{a=\"b\"}".into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(Timestamp::from_unix_nanos(3_000_000_004)),
                        line: "x".into(),
                        structured_metadata: vec![],
                    };
                    3
                ],
                hash: 0,
            }],
        };
        assert_eq!(loki_proto(&req.encode_to_vec()), Some((3, 3_000_000_004)));
        assert_eq!(loki_proto(&[0x0a, 0x05]), None);
    }

    #[test]
    fn bulk_answers_one_item_per_document() {
        let body = b"{\"create\":{\"_index\":\"logs-a-b\"}}\n{\"@timestamp\":\"1970-01-01T00:00:01.000000005Z\"}\n{\"index\":{}}\n{}\n";
        let all = Filter::from_query(None);
        let (answer, n, ts) = bulk_answer(body, &all).unwrap();
        assert_eq!((n, ts), (2, None));
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(v["took"], 1);
        assert_eq!(v["errors"], false);
        assert_eq!(v["items"][0]["create"]["status"], 201);
        assert_eq!(v["items"][0]["create"]["result"], "created");
        assert_eq!(v["items"][1]["index"]["status"], 201);
        let (_, _, ts) = bulk_answer(&body[..body.len() - 16], &all).unwrap();
        assert_eq!(ts, Some(1_000_000_005));
        // The exporter's filter_path: what Elasticsearch sends back to it.
        let exporter = Filter::from_query(Some(
            "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason",
        ));
        let (answer, ..) = bulk_answer(body, &exporter).unwrap();
        assert_eq!(
            answer,
            br#"{"errors":false,"items":[{"create":{"status":201}},{"index":{"status":201}}]}"#
        );
        let (answer, ..) =
            bulk_answer(body, &Filter::from_query(Some("filter_path=errors"))).unwrap();
        assert_eq!(answer, br#"{"errors":false}"#);
        let (answer, ..) =
            bulk_answer(body, &Filter::from_query(Some("x=1&filter_path=took"))).unwrap();
        assert_eq!(answer, br#"{"took":1}"#);
    }
}
