//! An Elasticsearch 8 stand-in for the `_bulk` API, following Elastic's bulk API docs:
//!
//! - `GET /`: cluster and version info (`version.number`), `X-Elastic-Product` header.
//! - `POST /_bulk`, `POST /{index}/_bulk`: NDJSON (action line + source line for `create`
//!   and `index`; `delete` has no source line), the body must end with `\n`,
//!   `Content-Type: application/x-ndjson` (or `application/json`), `Content-Encoding: gzip`
//!   accepted. Answers `{"took","errors","items":[{"<op>":{"_index","_id","status",
//!   "result"|"error":{"type","reason"}}}]}` in request order, compact (no white space).
//!   `filter_path` (comma-separated paths, `*` for any one key) keeps only what it lists,
//!   as Elasticsearch's response filtering does: objects left empty are dropped, an array
//!   keeps only the elements something was kept of, and the whole answer is at least `{}`.
//!   (`**` and `-` exclusions are not implemented; whole-request errors are not filtered.)
//! - Per item: a configurable fraction answered 429 `es_rejected_execution_exception`
//!   (deterministic from a seed); `create` of an existing `_id` → 409
//!   `version_conflict_engine_exception`; `index` into a data stream (`logs-*-*`, ...) → 400
//!   `illegal_argument_exception`; a field whose type conflicts with what the index
//!   already mapped dynamically (e.g. `"abc"` into a `long`, a value into an object) → 400
//!   `mapper_parsing_exception`.
//! - Whole request: decompressed body over `http.max_content_length` → 413; a switch
//!   that answers the next N requests 429 with `Retry-After`; optional basic/API-key auth
//!   → 401.
//!
//! Accepted documents are stored per index (by `_id`) for the tests to compare.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub use self::dynamic_mapping::Index;

mod dynamic_mapping;

/// One `_bulk` request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub at: Instant,
    pub status: u16,
    pub items: usize,
    pub gzip: bool,
    /// The query string (`pipeline=...`, `filter_path=...`).
    pub query: String,
    /// The body of a 200 answer, as sent (empty for other answers).
    pub answer: String,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub created: usize,
    pub rejected_429: usize,
    pub conflicts_409: usize,
    pub mapping_errors: usize,
}

struct Inner {
    rng: fastrand::Rng,
    reject_fraction: f64,
    max_content_length: usize,
    reject_next: u32,
    retry_after_secs: u64,
    auth: Option<String>,
    indices: BTreeMap<String, Index>,
    requests: Vec<RequestLog>,
    stats: Stats,
    auto_id: u64,
}

/// A running stand-in. Cheap to clone; the server stops with the test's runtime.
#[derive(Clone)]
pub struct Elasticsearch {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn is_data_stream(index: &str) -> bool {
    let p: Vec<&str> = index.splitn(3, '-').collect();
    p.len() == 3
        && matches!(p[0], "logs" | "traces" | "metrics")
        && !p[1].is_empty()
        && !p[2].is_empty()
}

fn error_body(status: u16, ty: &str, reason: &str) -> Value {
    json!({"error": {"root_cause": [{"type": ty, "reason": reason}], "type": ty, "reason": reason}, "status": status})
}

fn reply(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            ("content-type", "application/json"),
            ("x-elastic-product", "Elasticsearch"),
        ],
        body.to_string(),
    )
        .into_response();
    if status == 413 {
        *r.body_mut() = axum::body::Body::empty();
    }
    r
}

impl Elasticsearch {
    /// Starts on `127.0.0.1:0`. `reject_fraction` of items (drawn from `seed`) get 429.
    pub async fn start(reject_fraction: f64, seed: u64) -> Elasticsearch {
        let inner = Arc::new(Mutex::new(Inner {
            rng: fastrand::Rng::with_seed(seed),
            reject_fraction,
            max_content_length: 100 * 1024 * 1024,
            reject_next: 0,
            retry_after_secs: 0,
            auth: None,
            indices: BTreeMap::new(),
            requests: Vec::new(),
            stats: Stats::default(),
            auto_id: 0,
        }));
        let app = Router::new()
            .route("/", get(root))
            .route("/_bulk", post(bulk_all))
            .route("/{index}/_bulk", post(bulk_index))
            .layer(DefaultBodyLimit::disable())
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Elasticsearch { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_max_content_length(&self, bytes: usize) {
        self.lock().max_content_length = bytes;
    }

    pub fn set_reject_fraction(&self, f: f64) {
        self.lock().reject_fraction = f;
    }

    /// The next `n` `_bulk` requests are answered 429 with `Retry-After: secs`.
    pub fn reject_next_requests(&self, n: u32, retry_after_secs: u64) {
        let mut g = self.lock();
        g.reject_next = n;
        g.retry_after_secs = retry_after_secs;
    }

    /// Requires this exact `Authorization` header value.
    pub fn require_auth(&self, header_value: &str) {
        self.lock().auth = Some(header_value.to_string());
    }

    pub fn docs(&self, index: &str) -> Vec<Value> {
        self.lock()
            .indices
            .get(index)
            .map(|i| i.docs.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn index_names(&self) -> Vec<String> {
        self.lock().indices.keys().cloned().collect()
    }

    pub fn doc_count(&self) -> usize {
        self.lock().indices.values().map(|i| i.docs.len()).sum()
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.lock().requests.clone()
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn root(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = check_auth(&s, &headers) {
        return r;
    }
    reply(
        200,
        json!({
            "name": "weft-test-node",
            "cluster_name": "weft-test",
            "cluster_uuid": "dGVzdC1jbHVzdGVyLXV1aWQ",
            "version": {
                "number": "8.7.1",
                "build_flavor": "default",
                "build_type": "docker",
                "lucene_version": "9.5.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

fn check_auth(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let want = s.lock().unwrap_or_else(|p| p.into_inner()).auth.clone()?;
    let got = headers.get("authorization").and_then(|v| v.to_str().ok());
    (got != Some(want.as_str())).then(|| {
        reply(
            401,
            error_body(
                401,
                "security_exception",
                "missing authentication credentials for REST request [/_bulk]",
            ),
        )
    })
}

async fn bulk_all(State(s): State<Shared>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    bulk(s, None, headers, uri, body)
}

async fn bulk_index(
    State(s): State<Shared>,
    Path(index): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    bulk(s, Some(index), headers, uri, body)
}

fn bulk(
    s: Shared,
    path_index: Option<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let query = uri.query().unwrap_or("").to_string();
    let gz = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let log = |status: u16, items: usize| {
        s.lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
            .push(RequestLog {
                at: started,
                status,
                items,
                gzip: gz,
                query: query.clone(),
                answer: String::new(),
            });
    };
    if let Some(r) = check_auth(&s, &headers) {
        log(401, 0);
        return r;
    }
    {
        let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
        if g.reject_next > 0 {
            g.reject_next -= 1;
            let secs = g.retry_after_secs;
            drop(g);
            log(429, 0);
            let mut r = reply(
                429,
                error_body(
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation",
                ),
            );
            r.headers_mut().insert("retry-after", secs.into());
            return r;
        }
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !matches!(mime, "application/x-ndjson" | "application/json") {
        log(406, 0);
        return reply(
            406,
            json!({"error": format!("Content-Type header [{ct}] is not supported"), "status": 406}),
        );
    }
    let raw = if gz {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            log(400, 0);
            return reply(
                400,
                error_body(400, "parse_exception", "request body is not valid gzip"),
            );
        }
        out
    } else {
        body.to_vec()
    };
    let max = s
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .max_content_length;
    if raw.len() > max {
        log(413, 0);
        return reply(413, Value::Null);
    }
    if !raw.ends_with(b"\n") {
        log(400, 0);
        return reply(
            400,
            error_body(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            ),
        );
    }
    // Parse everything first: a malformed action line fails the whole request.
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.split_terminator('\n');
    let mut actions = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let action: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                log(400, 0);
                return reply(
                    400,
                    error_body(
                        400,
                        "x_content_parse_exception",
                        &format!("malformed action/metadata line: {e}"),
                    ),
                );
            }
        };
        let Some((op, meta)) = action
            .as_object()
            .and_then(|o| o.iter().next())
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            log(400, 0);
            return reply(
                400,
                error_body(
                    400,
                    "illegal_argument_exception",
                    "Malformed action/metadata line",
                ),
            );
        };
        if !matches!(op.as_str(), "create" | "index" | "delete") {
            log(400, 0);
            return reply(
                400,
                error_body(
                    400,
                    "illegal_argument_exception",
                    &format!("Action/metadata line [1] contains an unknown parameter [{op}]"),
                ),
            );
        }
        let source = if op == "delete" {
            None
        } else {
            Some(lines.next().unwrap_or(""))
        };
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| path_index.clone());
        let Some(index) = index else {
            log(400, 0);
            return reply(
                400,
                error_body(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;",
                ),
            );
        };
        let id = meta.get("_id").and_then(Value::as_str).map(str::to_string);
        actions.push((op, index, id, source.map(str::to_string)));
    }
    let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
    let mut items = Vec::with_capacity(actions.len());
    let mut errors = false;
    for (op, index, id, source) in actions {
        let id = id.unwrap_or_else(|| {
            g.auto_id += 1;
            format!("auto-{}", g.auto_id)
        });
        let item = |status: u16, extra: Value| {
            let mut m = json!({"_index": index, "_id": id, "status": status});
            if let (Some(m), Value::Object(x)) = (m.as_object_mut(), extra) {
                m.extend(x);
            }
            json!({ op.clone(): m })
        };
        let err = |status: u16, ty: &str, reason: String| {
            item(
                status,
                json!({"error": {"type": ty, "reason": reason, "index": index}}),
            )
        };
        if op == "delete" {
            let existed = g
                .indices
                .get_mut(&index)
                .and_then(|i| i.docs.remove(&id))
                .is_some();
            items.push(item(
                if existed { 200 } else { 404 },
                json!({"result": if existed { "deleted" } else { "not_found" }}),
            ));
            continue;
        }
        let reject = g.reject_fraction;
        if reject > 0.0 && g.rng.f64() < reject {
            errors = true;
            g.stats.rejected_429 += 1;
            items.push(err(
                429,
                "es_rejected_execution_exception",
                "rejected execution of org.elasticsearch.action.support.replication.TransportWriteAction (queue capacity 10000)".into(),
            ));
            continue;
        }
        if op == "index" && is_data_stream(&index) {
            errors = true;
            items.push(err(
                400,
                "illegal_argument_exception",
                format!(
                    "only write ops with an op_type of create are allowed in data streams [{index}]"
                ),
            ));
            continue;
        }
        let doc: Value = match serde_json::from_str(source.as_deref().unwrap_or("")) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                errors = true;
                g.stats.mapping_errors += 1;
                items.push(err(
                    400,
                    "mapper_parsing_exception",
                    "failed to parse".into(),
                ));
                continue;
            }
        };
        let ix = g.indices.entry(index.clone()).or_default();
        let exists = ix.docs.contains_key(&id);
        if op == "create" && exists {
            errors = true;
            g.stats.conflicts_409 += 1;
            items.push(err(
                409,
                "version_conflict_engine_exception",
                format!("[{id}]: version conflict, document already exists (current version [1])"),
            ));
            continue;
        }
        if is_data_stream(&index) && doc.get("@timestamp").is_none() {
            errors = true;
            g.stats.mapping_errors += 1;
            items.push(err(
                400,
                "mapper_parsing_exception",
                "data stream timestamp field [@timestamp] is missing".into(),
            ));
            continue;
        }
        if let Err(reason) = ix.map(&id, &doc) {
            errors = true;
            g.stats.mapping_errors += 1;
            items.push(err(400, "mapper_parsing_exception", reason));
            continue;
        }
        ix.docs.insert(id.clone(), doc);
        g.stats.created += 1;
        let (status, result) = if exists {
            (200, "updated")
        } else {
            (201, "created")
        };
        items.push(item(
            status,
            json!({"_version": 1, "result": result, "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1}),
        ));
    }
    let n = items.len();
    let answer =
        json!({"took": started.elapsed().as_millis() as u64, "errors": errors, "items": items});
    let answer = filter_path(&query, answer);
    g.requests.push(RequestLog {
        at: started,
        status: 200,
        items: n,
        gzip: gz,
        query,
        answer: answer.to_string(),
    });
    drop(g);
    reply(200, answer)
}

/// `answer` reduced to the paths the query's `filter_path` lists (all of it without one).
fn filter_path(query: &str, answer: Value) -> Value {
    let Some(list) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("filter_path="))
    else {
        return answer;
    };
    let list = list.replace("%2C", ",").replace("%2c", ",");
    let paths: Vec<Vec<&str>> = list.split(',').map(|p| p.split('.').collect()).collect();
    let refs: Vec<&[&str]> = paths.iter().map(Vec::as_slice).collect();
    keep(answer, &refs).unwrap_or_else(|| json!({}))
}

/// What is left of `v` under `paths` (the rest of each path below `v`); `None` when
/// nothing is.
fn keep(v: Value, paths: &[&[&str]]) -> Option<Value> {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                let below: Vec<&[&str]> = paths
                    .iter()
                    .filter(|p| p.first().is_some_and(|f| *f == "*" || *f == k))
                    .map(|p| &p[1..])
                    .collect();
                if below.is_empty() {
                    continue;
                }
                if below.iter().any(|p| p.is_empty()) {
                    out.insert(k, x);
                } else if let Some(x) = keep(x, &below) {
                    out.insert(k, x);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a.into_iter().filter_map(|x| keep(x, paths)).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => None,
    }
}
