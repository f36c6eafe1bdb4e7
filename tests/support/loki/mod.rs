//! A stand-in for Loki 3's push endpoint, `POST /loki/api/v1/push`, written from Loki's
//! source (`pkg/loghttp/push`, `pkg/distributor/{distributor,validator,http}.go`,
//! `pkg/ingester/stream.go`, `pkg/validation/validate.go`):
//!
//! - Bodies: protobuf `logproto.PushRequest` compressed with snappy *block* format (the
//!   default when the Content-Type is not `application/json`), or JSON
//!   `{"streams":[{"stream":{…},"values":[["<ns>","line",{metadata}]]}]}`;
//!   `Content-Encoding: gzip` is undone first, unknown encodings get 415.
//! - Tenants: `X-Scope-OrgID` (401 `no org id` without it when `auth_enabled`, else
//!   the tenant is `fake`).
//! - Streams: the label string `{k="v", …}` is parsed (400 `Error parsing labels …`),
//!   `service_name` is added when missing (discovered from `service`, `app`, … or
//!   `unknown_service`), then label validation (count without `service_name`, name and
//!   value length, duplicates) and entry validation (too old, too new, line size,
//!   structured metadata allowed / size / count) with Loki's messages. Invalid entries are
//!   dropped, valid ones stored; the answer is then 400 with the grouped errors
//!   (`"<n> errors like: <msg>; …"`).
//! - Ingester rules per stream: identical (timestamp, line) entries are deduplicated;
//!   with unordered writes, entries older than the stream's newest minus
//!   `max_chunk_age / 2` are refused (`entry too far behind`); without, any entry older
//!   than the newest (`entry out of order`). The first failing stream's error is the
//!   answer (400), as the distributor returns the first ingester error.
//! - `fail_next(status, times, retry_after)` answers 429/500/503 before decoding.
//! - 204 on success.
#![allow(dead_code)]

mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use wire::{decode_json, decode_proto, go_time, label_string, parse_labels, rfc3339};

/// Loki's per-tenant limits and ingester settings (Loki 3 defaults).
#[derive(Clone, Debug)]
pub struct LokiLimits {
    pub auth_enabled: bool,
    pub reject_old_samples: bool,
    pub reject_old_samples_max_age: Duration,
    pub creation_grace_period: Duration,
    pub max_line_size: usize,
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub allow_structured_metadata: bool,
    pub max_structured_metadata_size: usize,
    pub max_structured_metadata_entries: usize,
    pub unordered_writes: bool,
    pub max_chunk_age: Duration,
}

impl Default for LokiLimits {
    fn default() -> Self {
        LokiLimits {
            auth_enabled: true,
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            creation_grace_period: Duration::from_secs(600),
            max_line_size: 256 * 1024,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            allow_structured_metadata: true,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries: 128,
            unordered_writes: true,
            max_chunk_age: Duration::from_secs(2 * 3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntry {
    pub ts_ns: i128,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct StoredStream {
    pub labels: BTreeMap<String, String>,
    pub entries: Vec<StoredEntry>,
}

/// What the stand-in saw of each request (for header assertions).
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub tenant: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct StreamState {
    labels: BTreeMap<String, String>,
    entries: Vec<StoredEntry>,
    highest: Option<i128>,
    last: Option<(i128, String)>,
}

struct Inner {
    limits: LokiLimits,
    /// (tenant, canonical label string) → stream
    streams: BTreeMap<(String, String), StreamState>,
    seen: Vec<SeenRequest>,
    failures: VecDeque<(u16, Option<u64>)>,
}

#[derive(Clone)]
pub struct LokiStandIn {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl LokiStandIn {
    pub async fn start(limits: LokiLimits) -> LokiStandIn {
        let inner = Arc::new(Mutex::new(Inner {
            limits,
            streams: BTreeMap::new(),
            seen: Vec::new(),
            failures: VecDeque::new(),
        }));
        let app = Router::new()
            .route("/loki/api/v1/push", post(push))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LokiStandIn { addr, inner }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` requests get `status` (with `Retry-After: secs` when given).
    pub fn fail_next(&self, status: u16, times: usize, retry_after: Option<u64>) {
        let mut g = self.inner.lock().unwrap();
        for _ in 0..times {
            g.failures.push_back((status, retry_after));
        }
    }

    pub fn streams(&self, tenant: &str) -> Vec<StoredStream> {
        let g = self.inner.lock().unwrap();
        g.streams
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, s)| StoredStream {
                labels: s.labels.clone(),
                entries: s.entries.clone(),
            })
            .collect()
    }

    pub fn tenants(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap();
        let mut t: Vec<String> = g.streams.keys().map(|(t, _)| t.clone()).collect();
        t.dedup();
        t
    }

    pub fn entry_count(&self) -> usize {
        let g = self.inner.lock().unwrap();
        g.streams.values().map(|s| s.entries.len()).sum()
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.inner.lock().unwrap().seen.clone()
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn text(status: StatusCode, body: String) -> Response {
    // Loki answers errors with Go's http.Error: text/plain, message plus a newline.
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn push(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = inner.lock().unwrap();
    let mut seen = SeenRequest {
        tenant: header(&headers, "x-scope-orgid"),
        content_type: header(&headers, "content-type"),
        content_encoding: header(&headers, "content-encoding"),
        authorization: header(&headers, "authorization"),
        status: 0,
    };
    let resp = handle(&mut g, &headers, &body);
    seen.status = resp.status().as_u16();
    g.seen.push(seen);
    resp
}

fn handle(g: &mut Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    let tenant = match (g.limits.auth_enabled, header(headers, "x-scope-orgid")) {
        (true, Some(t)) if !t.is_empty() => t,
        (true, _) => return text(StatusCode::UNAUTHORIZED, "no org id".into()),
        (false, _) => "fake".to_string(),
    };
    if let Some((status, retry_after)) = g.failures.pop_front() {
        let mut r = text(
            StatusCode::from_u16(status).unwrap(),
            match status {
                429 => format!(
                    "Ingestion rate limit exceeded for user {tenant} (limit: 4194304 bytes/sec) while attempting to ingest '1' lines totaling '10' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
                ),
                _ => "rpc error: code = Unavailable desc = stand-in failure".to_string(),
            },
        );
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return r;
    }
    let raw = match header(headers, "content-encoding").as_deref() {
        None | Some("") | Some("snappy") => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            if let Err(e) = flate2::read::GzDecoder::new(body).read_to_end(&mut out) {
                return text(StatusCode::BAD_REQUEST, format!("gzip: {e}"));
            }
            out
        }
        Some(other) => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} not supported"),
            );
        }
    };
    let is_json =
        header(headers, "content-type").is_some_and(|c| c.starts_with("application/json"));
    let streams = if is_json {
        decode_json(&raw)
    } else {
        decode_proto(&raw)
    };
    let streams = match streams {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    if streams.is_empty() {
        return text(
            StatusCode::UNPROCESSABLE_ENTITY,
            "error at least one valid stream is required for ingestion".into(),
        );
    }
    let now = now_ns();
    let limits = g.limits.clone();
    let mut errors: Vec<String> = Vec::new();
    let mut valid: Vec<(BTreeMap<String, String>, String, Vec<StoredEntry>)> = Vec::new();
    for s in streams {
        if s.entries.is_empty() {
            continue;
        }
        let mut labels = match parse_labels(&s.labels) {
            Ok(l) => l,
            Err(e) => {
                errors.push(format!(
                    "Error parsing labels '{}' with error: {e}",
                    s.labels
                ));
                continue;
            }
        };
        if !labels.iter().any(|(k, _)| k == "service_name") {
            let discovered = DISCOVER_SERVICE_NAME
                .iter()
                .find_map(|d| labels.iter().find(|(k, _)| k == d).map(|(_, v)| v.clone()))
                .unwrap_or_else(|| "unknown_service".into());
            labels.push(("service_name".into(), discovered));
        }
        labels.sort();
        let canonical = label_string(&labels);
        if let Err(e) = validate_labels(&limits, &labels, &s.labels) {
            errors.push(e);
            continue;
        }
        let mut ok = Vec::new();
        for e in s.entries {
            match validate_entry(&limits, &canonical, &e, now) {
                Ok(()) => ok.push(e),
                Err(msg) => errors.push(msg),
            }
        }
        if !ok.is_empty() {
            valid.push((labels.into_iter().collect(), canonical, ok));
        }
    }
    // The ingester: stores what is in order, answers with the first failing stream.
    let mut ingester_error: Option<String> = None;
    for (labels, canonical, entries) in valid {
        let st = g
            .streams
            .entry((tenant.clone(), canonical.clone()))
            .or_default();
        st.labels = labels;
        let total = entries.len();
        let mut failed: Vec<(i128, String)> = Vec::new();
        for e in entries {
            if st
                .last
                .as_ref()
                .is_some_and(|(ts, line)| *ts == e.ts_ns && *line == e.line)
                || st
                    .entries
                    .iter()
                    .any(|x| x.ts_ns == e.ts_ns && x.line == e.line)
            {
                continue;
            }
            if let Some(highest) = st.highest {
                if limits.unordered_writes {
                    let cutoff = highest - (limits.max_chunk_age.as_nanos() as i128) / 2;
                    if e.ts_ns < cutoff {
                        failed.push((
                            e.ts_ns,
                            format!(
                                "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
                                rfc3339(e.ts_ns),
                                rfc3339(cutoff)
                            ),
                        ));
                        continue;
                    }
                } else if e.ts_ns < highest {
                    failed.push((e.ts_ns, "entry out of order".into()));
                    continue;
                }
            }
            st.highest = Some(st.highest.map_or(e.ts_ns, |h| h.max(e.ts_ns)));
            st.last = Some((e.ts_ns, e.line.clone()));
            st.entries.push(e);
        }
        if !failed.is_empty() && ingester_error.is_none() {
            let mut msg = String::new();
            for (ts, reason) in &failed {
                msg.push_str(&format!(
                    "entry with timestamp {} ignored, reason: '{reason}',\n",
                    go_time(*ts)
                ));
            }
            msg.push_str(&format!(
                "user '{tenant}', total ignored: {} out of {total} for stream: {canonical}",
                failed.len()
            ));
            ingester_error = Some(msg);
        }
    }
    if let Some(e) = ingester_error {
        return text(StatusCode::BAD_REQUEST, e);
    }
    if !errors.is_empty() {
        return text(StatusCode::BAD_REQUEST, grouped(&errors));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Loki's `util.GroupedErrors`: identical messages counted, `"; "`-joined, with the
/// `"<n> errors like: "` prefix when there is more than one message or one repeated.
fn grouped(errors: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in errors {
        match counts.iter_mut().find(|(m, _)| m == e) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.clone(), 1)),
        }
    }
    let unique = counts.len();
    counts
        .iter()
        .map(|(m, n)| {
            if unique > 1 || *n > 1 {
                format!("{n} errors like: {m}")
            } else {
                m.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

const DISCOVER_SERVICE_NAME: &[&str] = &[
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

fn validate_labels(l: &LokiLimits, labels: &[(String, String)], raw: &str) -> Result<(), String> {
    let count = labels.iter().filter(|(k, _)| k != "service_name").count();
    if count > l.max_label_names_per_series {
        return Err(format!(
            "entry for stream '{raw}' has {count} label names; limit {}",
            l.max_label_names_per_series
        ));
    }
    let mut last = "";
    for (k, v) in labels {
        if k.len() > l.max_label_name_length {
            return Err(format!("stream '{raw}' has label name too long: '{k}'"));
        }
        if v.len() > l.max_label_value_length {
            return Err(format!("stream '{raw}' has label value too long: '{v}'"));
        }
        if k == last {
            return Err(format!("stream '{raw}' has duplicate label name: '{k}'"));
        }
        last = k;
    }
    Ok(())
}

fn validate_entry(l: &LokiLimits, stream: &str, e: &StoredEntry, now: i128) -> Result<(), String> {
    let oldest = now - l.reject_old_samples_max_age.as_nanos() as i128;
    if l.reject_old_samples && e.ts_ns < oldest {
        return Err(format!(
            "entry for stream '{stream}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
            rfc3339(e.ts_ns),
            rfc3339(oldest)
        ));
    }
    if e.ts_ns > now + l.creation_grace_period.as_nanos() as i128 {
        return Err(format!(
            "entry for stream '{stream}' has timestamp too new: {}",
            rfc3339(e.ts_ns)
        ));
    }
    if l.max_line_size != 0 && e.line.len() > l.max_line_size {
        return Err(format!(
            "Max entry size '{}' bytes exceeded for stream '{stream}' while adding an entry with length '{}' bytes",
            l.max_line_size,
            e.line.len()
        ));
    }
    if !e.metadata.is_empty() {
        if !l.allow_structured_metadata {
            return Err(format!(
                "stream '{stream}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it."
            ));
        }
        let size: usize = e.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if l.max_structured_metadata_size != 0 && size > l.max_structured_metadata_size {
            return Err(format!(
                "stream '{stream}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
                l.max_structured_metadata_size
            ));
        }
        let n = e.metadata.len();
        if l.max_structured_metadata_entries != 0 && n > l.max_structured_metadata_entries {
            return Err(format!(
                "stream '{stream}' has too many structured metadata labels: '{n}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
                l.max_structured_metadata_entries
            ));
        }
    }
    Ok(())
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}
