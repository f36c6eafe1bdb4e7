//! The direct Loki encoder: a logs batch → the push body (protobuf `PushRequest` or JSON)
//! written straight into one buffer, with no intermediate `Stream`/`Entry`/`PushRequest`
//! values and no allocation per record on the default path.
//!
//! It produces exactly what the reference path ([`super::encode::encode`] then
//! `to_proto` + prost, or `to_json`) produces — the same protobuf bytes, the same JSON
//! bytes — and the equivalence tests hold it to that. How it saves the work:
//! - labels depend only on the resource and the record's `level`, so they are computed
//!   once per resource and level (one label string and stream lookup per combination);
//! - structured metadata of the resource (the attributes that are not labels) is
//!   flattened once per resource; a record's own metadata is written into a reused arena;
//! - each entry is encoded once into an arena (protobuf: as its whole `entries` field,
//!   written in place, see `fast_proto`), then the arena is sorted by stream and timestamp
//!   (indices only) and read out once, in runs of entries that already follow each other:
//!   copied into the body, or for [`Format::ProtobufSnappy`] (the exporter's) compressed
//!   from the arena block by block, so no uncompressed body is laid out (`fast_body`);
//! - the arena, scratch and body buffers are kept per thread between batches (a body is
//!   given back by the exporter once snappy has compressed it, [`recycle_body`]).
//!
//! Decoded and raw batches take the same code: records are read through
//! [`crate::data::view`] (for a raw batch straight from the request bytes; resources and
//! scopes are decoded once each), so a raw batch costs no prost decoding per record.
//! Records of a raw resource that cannot be decoded at all are left out and reported in
//! [`Skipped`] (see [`crate::data::view_logs`]).
//!
//! It applies when the tenant is fixed and no label comes from record attributes
//! ([`applies`]); otherwise the exporter takes the reference path. The `json` line format
//! with structured metadata and `raw` are written directly; the `json` line without
//! metadata and `logfmt` reuse the reference line builders (correct, slower).

use std::collections::HashMap;

use super::encode::{
    EncodeOptions, LineFormat, Stats, TenantRule, flatten, json_line, limit_metadata, logfmt_line,
};
use super::labels::{label_string, normalize_into, normalize_name};
use super::proto::wire::entry_field;
use crate::data::view::{AnyRef, Attrs, KvRef, LogView};
use crate::data::view_logs::{LogsView, ScopeView};
use crate::data::{Batch, InstrumentationScope, KeyValue, Signal};
use crate::exporters::jsonw;

/// `{service_name="unknown_service"}` as a JSON object (what Loki stores for no labels).
const UNKNOWN_SERVICE_JSON: &[u8] = br#"{"service_name":"unknown_service"}"#;

/// Which push body to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    /// Protobuf, snappy-compressed as Loki wants it (compressed block by block from the
    /// encoder's arena: the uncompressed body is never laid out).
    ProtobufSnappy,
    Json,
}

/// One tenant's push body and what the exporter needs to account for it.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub tenant: Option<String>,
    /// Uncompressed protobuf or JSON; compressed for [`Format::ProtobufSnappy`] (empty
    /// when that failed, with `error` saying why).
    pub body: Vec<u8>,
    pub error: Option<String>,
    pub stats: Stats,
    pub entry_count: usize,
    /// Entries per label string (to count what Loki rejects stream by stream).
    pub entries_by_stream: HashMap<String, usize>,
}

/// Whether [`encode_direct`] handles these options.
pub fn applies(opts: &EncodeOptions) -> bool {
    matches!(opts.tenant, TenantRule::Fixed(_)) && !opts.labels.has_record_rules()
}

struct StreamAcc {
    labels: String,
    /// The labels as the JSON object Loki's JSON push format wants.
    labels_json: Vec<u8>,
    entries: usize,
}

#[derive(Clone, Copy)]
struct EntryRef {
    stream: u32,
    ts_ns: u64,
    start: u32,
    end: u32,
}

/// Per-resource state: its stream per level, and its metadata pairs.
struct ResourceCtx<'a> {
    attrs: &'a [KeyValue],
    used: std::collections::BTreeSet<String>,
    md: Vec<(String, String)>,
    /// `md` as encoded protobuf pairs (protobuf only).
    md_wire: fast_proto::ResMd,
    /// (level, stream index, label values truncated)
    variants: Vec<(Option<&'static str>, u32, u64)>,
}

/// Scratch buffers reused across records.
#[derive(Default)]
struct Scratch {
    /// Metadata names and values of the current record, back to back.
    md: Vec<u8>,
    /// (name end, value end) offsets into `md`.
    pairs: Vec<(u32, u32)>,
    line: Vec<u8>,
    name: Vec<u8>,
    order: Vec<u32>,
}

/// Records left out of a push because their resource could not be decoded (see
/// [`crate::data::view_logs`]), and the first decode error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    pub records: usize,
    pub error: Option<String>,
}

/// Encodes the batch for the fixed tenant of `opts` (see [`applies`]); `None` for other
/// signals or an empty batch, as the reference path gives no push then.
pub fn encode_direct(
    batch: &Batch,
    opts: &EncodeOptions,
    now_ns: u64,
    format: Format,
) -> Option<Encoded> {
    encode_direct_counted(batch, opts, now_ns, format).0
}

/// [`encode_direct`] for decoded and raw batches alike (raw records are read from the
/// wire bytes), with what had to be left out.
pub fn encode_direct_counted(
    batch: &Batch,
    opts: &EncodeOptions,
    now_ns: u64,
    format: Format,
) -> (Option<Encoded>, Skipped) {
    let TenantRule::Fixed(tenant) = &opts.tenant else {
        return (None, Skipped::default());
    };
    if batch.signal() != Signal::Logs {
        return (None, Skipped::default());
    }
    let mut streams: Vec<StreamAcc> = Vec::new();
    let mut by_label: HashMap<String, u32> = HashMap::new();
    let (mut arena, mut entries, mut s) = POOL.with(|p| std::mem::take(&mut *p.borrow_mut()));
    arena.clear();
    entries.clear();
    let mut stats = Stats::default();
    let mut view = LogsView::new(batch);
    for rv in view.by_ref() {
        let attrs: &[KeyValue] = rv.attributes();
        let base = opts.labels.labels_for(attrs, &[], 0, "");
        let mut res = ResourceCtx {
            attrs,
            md: Vec::new(),
            md_wire: Default::default(),
            used: base.used_resource,
            variants: Vec::new(),
        };
        if opts.structured_metadata {
            for kv in attrs.iter().filter(|kv| !res.used.contains(&kv.key)) {
                if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    flatten(&normalize_name(&kv.key), v, &mut res.md);
                }
            }
            if format != Format::Json {
                res.md_wire = fast_proto::ResMd::new(&res.md);
            }
        }
        for sv in rv.scopes() {
            for rec in sv.records.iter() {
                let level = super::labels::level_of(rec.severity_number, rec.severity_text);
                let (stream, truncated) = match res.variants.iter().find(|v| v.0 == level) {
                    Some(v) => (v.1, v.2),
                    None => {
                        let l = opts.labels.labels_for(
                            attrs,
                            &[],
                            rec.severity_number,
                            rec.severity_text,
                        );
                        let key = label_string(&l.labels);
                        let idx = *by_label.entry(key.clone()).or_insert_with(|| {
                            let mut labels_json = Vec::new();
                            if l.labels.is_empty() {
                                labels_json.extend_from_slice(UNKNOWN_SERVICE_JSON);
                            } else {
                                labels_object(&mut labels_json, &l.labels);
                            }
                            streams.push(StreamAcc {
                                labels: key,
                                labels_json,
                                entries: 0,
                            });
                            (streams.len() - 1) as u32
                        });
                        res.variants.push((level, idx, l.truncated));
                        (idx, l.truncated)
                    }
                };
                stats.label_values += truncated;
                streams[stream as usize].entries += 1;
                let ts_ns = [rec.time_unix_nano, rec.observed_time_unix_nano, now_ns]
                    .into_iter()
                    .find(|t| *t != 0)
                    .unwrap_or(0);
                let start = arena.len() as u32;
                let direct = format != Format::Json
                    && fast_proto::entry_proto(
                        &mut arena,
                        &mut s.name,
                        &res,
                        &sv,
                        &rec,
                        ts_ns,
                        opts,
                    );
                if !direct {
                    entry(
                        &mut arena, &mut s, &res, &sv, &rec, ts_ns, opts, format, &mut stats,
                    );
                }
                entries.push(EntryRef {
                    stream,
                    ts_ns,
                    start,
                    end: arena.len() as u32,
                });
            }
        }
    }
    let out = fast_body::finish(tenant, streams, &mut entries, &arena, stats, format);
    POOL.with(|p| *p.borrow_mut() = (arena, entries, s));
    let skipped = Skipped {
        records: view.dropped,
        error: view.error.take(),
    };
    (out, skipped)
}

thread_local! {
    /// The entry arena and scratch buffers, kept per thread between batches.
    static POOL: std::cell::RefCell<(Vec<u8>, Vec<EntryRef>, Scratch)> = Default::default();
    /// A body's buffer given back by [`recycle_body`] once it is compressed.
    static BODY: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Gives an [`Encoded::body`] that is no longer needed (compressed into another buffer)
/// back for the next batch on this thread: no fresh pages to fault in and zero per batch.
pub fn recycle_body(body: Vec<u8>) {
    BODY.set(body);
}

fn labels_object(out: &mut Vec<u8>, labels: &std::collections::BTreeMap<String, String>) {
    out.push(b'{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        jsonw::key(out, k);
        jsonw::string(out, v);
    }
    out.push(b'}');
}

/// One entry, appended to `arena`: the `EntryAdapter` message body, or the JSON
/// `["<ns>","<line>",{metadata}]` array.
#[allow(clippy::too_many_arguments)]
fn entry(
    arena: &mut Vec<u8>,
    s: &mut Scratch,
    res: &ResourceCtx<'_>,
    sl: &ScopeView<'_>,
    rec: &LogView<'_>,
    ts_ns: u64,
    opts: &EncodeOptions,
    format: Format,
    stats: &mut Stats,
) {
    s.md.clear();
    s.pairs.clear();
    if opts.structured_metadata {
        record_metadata(s, res, sl.scope, rec);
    }
    let limits = &opts.limits;
    let size = s.md.len();
    let over = (limits.max_structured_metadata_entries > 0
        && s.pairs.len() > limits.max_structured_metadata_entries)
        || (limits.max_structured_metadata_size > 0 && size > limits.max_structured_metadata_size);
    if over {
        // Rare: let the reference rules cut it, then lay the result out again.
        let mut md = pairs_owned(s);
        limit_metadata(&mut md, limits, stats);
        s.md.clear();
        s.pairs.clear();
        for (k, v) in &md {
            s.md.extend_from_slice(k.as_bytes());
            let ne = s.md.len() as u32;
            s.md.extend_from_slice(v.as_bytes());
            s.pairs.push((ne, s.md.len() as u32));
        }
    }
    s.line.clear();
    line(&mut s.line, res, sl, rec, opts);
    match format {
        Format::Protobuf | Format::ProtobufSnappy => {
            // With its field header: the body's entries are copied out in runs.
            let pairs = (0..s.pairs.len()).map(|i| pair(s, i));
            entry_field(arena, ts_ns, &s.line, pairs);
        }
        Format::Json => {
            arena.extend_from_slice(b"[\"");
            jsonw::uint(arena, ts_ns);
            arena.extend_from_slice(b"\",");
            // The line and metadata are UTF-8 by construction (built from `str`s and cut
            // at character boundaries).
            jsonw::string_bytes(arena, &s.line);
            if !s.pairs.is_empty() {
                arena.push(b',');
                metadata_object(arena, s);
            }
            arena.push(b']');
        }
    }
}

fn pair(s: &Scratch, i: usize) -> (&[u8], &[u8]) {
    let start = if i == 0 { 0 } else { s.pairs[i - 1].1 as usize };
    let (ne, ve) = s.pairs[i];
    (&s.md[start..ne as usize], &s.md[ne as usize..ve as usize])
}

fn pairs_owned(s: &Scratch) -> Vec<(String, String)> {
    (0..s.pairs.len())
        .map(|i| {
            let (k, v) = pair(s, i);
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// The metadata as a JSON object: names sorted, the last of duplicate names winning.
fn metadata_object(out: &mut Vec<u8>, s: &mut Scratch) {
    let mut order = std::mem::take(&mut s.order);
    order.clear();
    order.extend(0..s.pairs.len() as u32);
    order.sort_by(|a, b| pair(s, *a as usize).0.cmp(pair(s, *b as usize).0));
    out.push(b'{');
    let mut first = true;
    for (n, i) in order.iter().enumerate() {
        let (k, v) = pair(s, *i as usize);
        if order
            .get(n + 1)
            .is_some_and(|j| pair(s, *j as usize).0 == k)
        {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        jsonw::string_bytes(out, k);
        out.push(b':');
        jsonw::string_bytes(out, v);
    }
    out.push(b'}');
    s.order = order;
}

fn push_pair(s: &mut Scratch, name: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
    let start = s.md.len();
    s.md.extend_from_slice(name);
    let ne = s.md.len();
    value(&mut s.md);
    if s.md.len() == ne {
        s.md.truncate(start);
        return;
    }
    s.pairs.push((ne as u32, s.md.len() as u32));
}

/// Where a record's metadata pairs go: the scratch (JSON, and records over Loki's
/// limits) or straight into the protobuf entry (`fast_proto`). A pair whose value
/// writes nothing is left out.
trait PairSink {
    fn pair(&mut self, name: &[u8], value: impl FnOnce(&mut Vec<u8>));
}

impl PairSink for Scratch {
    #[inline(always)]
    fn pair(&mut self, name: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        push_pair(self, name, value)
    }
}

/// Metadata in the reference order: the record's own pairs, then the resource's
/// (precomputed).
fn record_metadata(
    s: &mut Scratch,
    res: &ResourceCtx<'_>,
    scope: Option<&InstrumentationScope>,
    rec: &LogView<'_>,
) {
    let mut name = std::mem::take(&mut s.name);
    record_pairs(s, &mut name, scope, rec);
    s.name = name;
    for (k, v) in &res.md {
        push_pair(s, k.as_bytes(), |o| o.extend_from_slice(v.as_bytes()));
    }
}

/// A record's own metadata pairs in the reference order: trace context, severity, scope,
/// then its attributes (maps flattened to `parent_child` names). `name` is scratch.
#[inline(always)]
fn record_pairs(
    out: &mut impl PairSink,
    name: &mut Vec<u8>,
    scope: Option<&InstrumentationScope>,
    rec: &LogView<'_>,
) {
    out.pair(b"trace_id", |o| jsonw::hex_into(o, rec.trace_id));
    out.pair(b"span_id", |o| jsonw::hex_into(o, rec.span_id));
    out.pair(b"severity_text", |o| {
        o.extend_from_slice(rec.severity_text.as_bytes())
    });
    if rec.severity_number != 0 {
        out.pair(b"severity_number", |o| {
            jsonw::int(o, rec.severity_number as i64)
        });
    }
    if let Some(scope) = scope {
        out.pair(b"scope_name", |o| {
            o.extend_from_slice(scope.name.as_bytes())
        });
        out.pair(b"scope_version", |o| {
            o.extend_from_slice(scope.version.as_bytes())
        });
    }
    // A raw record's attributes as the check read them: the slice itself (no iterator
    // call per attribute).
    if let Attrs::Checked(kvs) = rec.attributes {
        for w in kvs {
            attribute(out, name, w.kv);
        }
    } else {
        for kv in rec.attributes.iter() {
            attribute(out, name, kv);
        }
    }
}

#[inline(always)]
fn attribute(out: &mut impl PairSink, name: &mut Vec<u8>, kv: KvRef<'_>) {
    let Some(v) = kv.value else {
        return;
    };
    name.clear();
    normalize_into(name, kv.key);
    match v {
        AnyRef::Str(s) => out.pair(name, |o| o.extend_from_slice(s.as_bytes())),
        other => flatten_into(out, name, other),
    }
}

/// [`flatten`] as pairs: maps become `parent_child` names.
#[inline(never)]
fn flatten_into(out: &mut impl PairSink, name: &mut Vec<u8>, v: AnyRef<'_>) {
    match v {
        AnyRef::Kvlist(kvs) => {
            for kv in kvs.iter() {
                if let Some(inner) = kv.value {
                    let len = name.len();
                    name.push(b'_');
                    normalize_into(name, kv.key);
                    flatten_into(out, name, inner);
                    name.truncate(len);
                }
            }
        }
        other => out.pair(name, |o| jsonw::any_text(o, other)),
    }
}

fn line(
    out: &mut Vec<u8>,
    res: &ResourceCtx<'_>,
    sl: &ScopeView<'_>,
    rec: &LogView<'_>,
    o: &EncodeOptions,
) {
    let body = rec.body;
    match (o.line_format, o.structured_metadata) {
        (LineFormat::Raw, _) => {
            if let Some(b) = body {
                jsonw::any_text(out, b);
            }
        }
        (LineFormat::Json, true) => {
            out.push(b'{');
            if let Some(b) = body {
                out.extend_from_slice(b"\"body\":");
                jsonw::any(out, b);
            }
            out.push(b'}');
        }
        (LineFormat::Json, false) | (LineFormat::Logfmt, _) => {
            // Not the default: the reference line builders, on prost types.
            let rec = rec.record();
            let rec_attrs: Vec<&KeyValue> = rec.attributes.iter().collect();
            let res_attrs: Vec<&KeyValue> = res
                .attrs
                .iter()
                .filter(|kv| !res.used.contains(&kv.key))
                .collect();
            let text = if o.line_format == LineFormat::Json {
                json_line(&rec, &sl.scope_logs(), &rec_attrs, &res_attrs, false)
            } else {
                logfmt_line(&rec, &rec_attrs, &res_attrs, o.structured_metadata)
            };
            out.extend_from_slice(text.as_bytes());
        }
    }
}

#[path = "fast_body.rs"]
mod fast_body;
#[path = "fast_proto.rs"]
mod fast_proto;

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
