//! The `_bulk` body written directly: log records → NDJSON (action line + source line per
//! document) appended to one reused buffer, with no `serde_json::Value` per record.
//!
//! The bytes are exactly those of the reference path ([`Encoder::documents`] +
//! [`super::bulk::Doc::to_ndjson`], which stays for spans and metric points and as the
//! oracle of the equivalence tests): same key order (sorted, as serde_json's map prints),
//! same escaping, hence the same content-hash `_id`s. What is constant for a resource and
//! scope — the `otel` mapping's `resource` and `scope` objects and the routing target — is
//! computed once per scope, not per record; a record is re-routed only when it carries a
//! routing attribute itself.
//!
//! Decoded and raw batches take the same code: records are read through
//! [`crate::data::view`] (for a raw batch straight from the request bytes, with no record
//! decoded into prost structs), resources and scopes are decoded once each. Records of a
//! raw resource that cannot be decoded at all are left out and counted in
//! [`BulkBody::malformed`] (see [`crate::data::view_logs`]).

use std::ops::Range;

use super::bulk::{DocumentId, Encoder, Op, Target, is_data_stream_name};
use super::mapping::{Context, DataStream, Mode, ROUTING_KEYS};
use super::sha2x;
use crate::data::view::{AnyRef, Attrs, KvRef, LogView};
use crate::data::view_logs::LogsView;
use crate::data::{Batch, InstrumentationScope, KeyValue, Resource, Signal};
use crate::exporters::jsonw;

/// A `_bulk` body and where each document's two lines end in it.
#[derive(Debug, Default, Clone)]
pub struct BulkBody {
    pub body: Vec<u8>,
    /// End offset (exclusive) of each document's lines in `body`.
    pub ends: Vec<usize>,
    pub ops: Vec<Op>,
    /// Log records left out because their resource could not be decoded.
    pub malformed: usize,
    /// The first decode error of those.
    pub malformed_error: Option<String>,
    /// Documents whose content ids wait for the next ones', so that
    /// [`sha2x::lanes`] of them are hashed together ([`super::sha2x`]): where each id goes
    /// and its source, in `body`, and its index, in `pending_index`.
    /// [`Encoder::write_bulk`] fills them before returning.
    pending: Vec<Pending>,
    pending_index: String,
    /// The last gzipped request body, taken back when the request is done, so the next
    /// one is compressed into memory already paged in (not part of the batch: kept by
    /// [`BulkBody::clear`]).
    pub gzipped: Vec<u8>,
}

/// A document waiting for its content id: the offsets of its id placeholder, its source
/// (in [`BulkBody::body`]) and its index name (in [`BulkBody::pending_index`]).
#[derive(Debug, Clone)]
struct Pending {
    id_at: usize,
    source: Range<usize>,
    index: Range<usize>,
}

impl BulkBody {
    pub fn clear(&mut self) {
        self.body.clear();
        self.ends.clear();
        self.ops.clear();
        self.malformed = 0;
        self.malformed_error = None;
        self.pending.clear();
        self.pending_index.clear();
    }

    /// A document's content id, to be written at `at` (a placeholder of 32 hex digits):
    /// hashed with the ones pending when there are [`sha2x::lanes`] of them, else pending.
    fn content_id_at(&mut self, at: usize, index: &str, source: Range<usize>) {
        let from = self.pending_index.len();
        self.pending_index.push_str(index);
        self.pending.push(Pending {
            id_at: at,
            source,
            index: from..self.pending_index.len(),
        });
        if self.pending.len() >= sha2x::lanes() {
            self.finish_ids();
        }
    }

    /// Hashes the pending documents and fills in their content ids.
    fn finish_ids(&mut self) {
        for group in self.pending.chunks(sha2x::MAX_LANES) {
            let mut docs: [(&str, &[u8]); sha2x::MAX_LANES] = [("", &[]); sha2x::MAX_LANES];
            for (d, p) in docs.iter_mut().zip(group) {
                *d = (
                    &self.pending_index[p.index.clone()],
                    &self.body[p.source.clone()],
                );
            }
            let mut ids = [[0u8; 16]; sha2x::MAX_LANES];
            sha2x::content_ids(&docs[..group.len()], &mut ids);
            for (p, id) in group.iter().zip(&ids) {
                jsonw::hex_fill(&mut self.body[p.id_at..p.id_at + 32], id);
            }
        }
        self.pending.clear();
        self.pending_index.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// The NDJSON length of each document.
    pub fn sizes(&self) -> Vec<usize> {
        (0..self.len())
            .map(|i| self.ends[i] - self.start(i))
            .collect()
    }

    /// The body bytes of the documents in `range` (contiguous).
    pub fn slice(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.body[self.byte_range(range)]
    }

    /// Where the documents in `range` are in the body.
    pub fn byte_range(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        if range.is_empty() {
            return 0..0;
        }
        self.start(range.start)..self.ends[range.end - 1]
    }

    fn push_line(&mut self, op: Op, ndjson: &[u8]) {
        self.body.extend_from_slice(ndjson);
        self.ends.push(self.body.len());
        self.ops.push(op);
    }
}

impl Encoder {
    /// Appends the `_bulk` lines of every item of `batch` to `out` (in
    /// [`Encoder::documents`] order). Logs take the direct path; spans and metric points
    /// the reference one.
    pub fn write_bulk(&self, batch: &Batch, out: &mut BulkBody) {
        match batch {
            Batch::Logs(_) => self.write_logs(batch, out),
            Batch::Raw(r) if r.signal() == Signal::Logs => self.write_logs(batch, out),
            Batch::Raw(r) => match r.decode() {
                Ok(b) => self.write_bulk(&b, out),
                Err(e) => {
                    out.malformed += r.item_count();
                    out.malformed_error.get_or_insert_with(|| e.to_string());
                }
            },
            other => {
                for d in self.documents(other) {
                    out.push_line(d.op, &d.to_ndjson());
                }
            }
        }
    }

    /// Logs, decoded or raw, through the views.
    fn write_logs(&self, batch: &Batch, out: &mut BulkBody) {
        let none = Resource::default();
        let no_scope = InstrumentationScope::default();
        let mut ctx_json = Vec::new();
        let (mut scope_ds, mut own_ds) = (Vec::new(), Vec::new());
        out.body.reserve(batch.item_count() * 640);
        let mut view = LogsView::new(batch);
        for rv in view.by_ref() {
            let resource = rv.resource.as_deref().unwrap_or(&none);
            // Scratch for sorting attributes (borrows this resource's data).
            let mut kept: Vec<KvRef<'_>> = Vec::new();
            for sv in rv.scopes() {
                let scope = sv.scope.unwrap_or(&no_scope);
                let ctx = Context {
                    resource,
                    resource_schema_url: &rv.schema_url,
                    scope,
                    scope_schema_url: sv.schema_url,
                };
                ctx_json.clear();
                let ecs_resource = match self.mode {
                    Mode::Otel => {
                        otel_resource_scope(&mut ctx_json, &ctx, &mut kept);
                        Vec::new()
                    }
                    Mode::Ecs => ecs::resource_members(resource),
                };
                let scope_target =
                    self.route(Signal::Logs, [&[], &scope.attributes, &resource.attributes]);
                data_stream_json(&mut scope_ds, scope_target.1.as_ref());
                for r in sv.records.iter() {
                    let own;
                    let (target, ds_json) = if r.attributes.keys().any(|k| self.routes_by(k)) {
                        let attrs = r.attributes.to_vec();
                        own = self.route(
                            Signal::Logs,
                            [&attrs, &scope.attributes, &resource.attributes],
                        );
                        data_stream_json(&mut own_ds, own.1.as_ref());
                        (&own, &own_ds)
                    } else {
                        (&scope_target, &scope_ds)
                    };
                    self.push_doc(out, target, &r, |src| match self.mode {
                        Mode::Otel => otel_log(src, &mut kept, &ctx_json, &r, ds_json),
                        Mode::Ecs => ecs::log(src, &ctx, &ecs_resource, &r, target.1.as_ref()),
                    });
                }
            }
        }
        out.finish_ids();
        out.malformed += view.dropped;
        if let Some(e) = view.error.take() {
            out.malformed_error.get_or_insert(e);
        }
    }

    /// Whether a record attribute named `key` can change the record's target.
    fn routes_by(&self, key: &str) -> bool {
        key == "data_stream.dataset"
            || key == "data_stream.namespace"
            || (self.logs_dynamic_index && key == "elasticsearch.index")
    }

    /// Appends a document's action line and its source, which `source` writes straight
    /// into the body. A content-hash `_id` is written as a placeholder of its fixed width
    /// and filled in once the source it hashes is there, in pairs of documents
    /// ([`BulkBody::content_id_at`]; the last odd one at the end of the batch).
    fn push_doc(
        &self,
        out: &mut BulkBody,
        (index, ds): &Target,
        r: &LogView<'_>,
        source: impl FnOnce(&mut Vec<u8>),
    ) {
        let data_stream = ds.is_some() || is_data_stream_name(index);
        let op = if data_stream { Op::Create } else { Op::Index };
        let b = &mut out.body;
        b.extend_from_slice(b"{\"");
        b.extend_from_slice(op.as_str().as_bytes());
        b.extend_from_slice(b"\":{");
        let dynamic = self
            .logs_dynamic_id
            .then(|| r.attributes.get_str("elasticsearch.document_id"))
            .flatten()
            .filter(|s| !s.is_empty());
        let mut id_at = None;
        if let Some(id) = dynamic {
            jsonw::key(b, "_id");
            jsonw::string(b, id);
            b.push(b',');
        } else if self.document_id == DocumentId::ContentHash {
            b.extend_from_slice(b"\"_id\":\"");
            id_at = Some(b.len());
            b.extend_from_slice(&[b'0'; 32]);
            b.extend_from_slice(b"\",");
        }
        jsonw::key(b, "_index");
        jsonw::string(b, index);
        b.extend_from_slice(b"}}\n");
        let start = b.len();
        source(b);
        if let Some(at) = id_at {
            let end = b.len();
            out.content_id_at(at, index, start..end);
        }
        let b = &mut out.body;
        b.push(b'\n');
        out.ends.push(out.body.len());
        out.ops.push(op);
    }
}

/// Writes `"key":` with a leading comma unless it is the object's first member.
struct Fields<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Fields<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Fields { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        jsonw::key(self.out, k);
        self.out
    }

    /// A key of the mapping itself (a literal that needs no escaping): written as it is,
    /// without the escape check every document would otherwise repeat.
    fn field(&mut self, k: &'static str) -> &mut Vec<u8> {
        debug_assert!(!k.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, k: &'static str, v: &str) {
        if !v.is_empty() {
            jsonw::string(self.field(k), v);
        }
    }

    fn nonzero(&mut self, k: &'static str, v: i64) {
        if v != 0 {
            jsonw::int(self.field(k), v);
        }
    }

    fn id(&mut self, k: &'static str, id: &[u8]) {
        if !id.is_empty() && id.iter().any(|b| *b != 0) {
            jsonw::hex_string(self.field(k), id);
        }
    }

    fn timestamp(&mut self, k: &'static str, nanos: u64) {
        let out = self.field(k);
        out.push(b'"');
        rfc3339_nanos(out, nanos);
        out.push(b'"');
    }

    /// `"attributes":{…}` unless no attribute is left once routing keys are taken out.
    fn attributes<'a>(&mut self, attrs: Attrs<'a>, kept: &mut Vec<KvRef<'a>>) {
        // A raw record's checked attributes that are already in key order, one per key,
        // none of them a routing key (the usual case) are written as they are, without
        // being gathered and sorted first.
        if let Attrs::Checked(kvs) = attrs
            && !kvs.is_empty()
            && kvs.windows(2).all(|w| w[0].kv.key < w[1].kv.key)
            && kvs.iter().all(|w| not_routing_key(w.kv.key))
        {
            self.attribute_object(kvs.iter().map(|w| &w.kv));
            return;
        }
        jsonw::sorted_unique_view(attrs, |kv| not_routing_key(kv.key), kept);
        if !kept.is_empty() {
            self.attribute_object(kept.iter());
        }
    }

    /// `"attributes":{…}` of attributes in the order given.
    fn attribute_object<'k, 'a: 'k>(&mut self, kvs: impl Iterator<Item = &'k KvRef<'a>>) {
        let out = self.field("attributes");
        out.push(b'{');
        for (n, kv) in kvs.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            jsonw::key(out, kv.key);
            jsonw::any_or_null(out, kv.value);
        }
        out.push(b'}');
    }

    /// `"data_stream":` and the object [`data_stream_json`] made, unless there is none.
    fn data_stream(&mut self, json: &[u8]) {
        if !json.is_empty() {
            self.field("data_stream").extend_from_slice(json);
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

pub(super) fn not_routing(kv: &KeyValue) -> bool {
    not_routing_key(&kv.key)
}

pub(super) fn not_routing_key(key: &str) -> bool {
    !ROUTING_KEYS.contains(&key)
}

/// The record's event name: its `event_name` field, else a non-empty `event.name`
/// attribute (as `mapping::event_name`).
pub(super) fn event_name<'a>(r: &LogView<'a>) -> Option<&'a str> {
    if !r.event_name.is_empty() {
        return Some(r.event_name);
    }
    r.attributes.get_str("event.name").filter(|s| !s.is_empty())
}

/// A target's `{"dataset":…,"namespace":…,"type":…}`, made once for all the documents
/// that go to it; empty when it has no data stream.
fn data_stream_json(out: &mut Vec<u8>, ds: Option<&DataStream>) {
    out.clear();
    if let Some(ds) = ds {
        let mut f = Fields::open(out);
        jsonw::string(f.field("dataset"), &ds.dataset);
        jsonw::string(f.field("namespace"), &ds.namespace);
        jsonw::string(f.field("type"), ds.ty);
        f.close();
    }
}

/// `"resource":{…},"scope":{…}` of the `otel` mapping (keys in sorted order).
fn otel_resource_scope<'a>(out: &mut Vec<u8>, ctx: &Context<'a>, kept: &mut Vec<KvRef<'a>>) {
    jsonw::key(out, "resource");
    let mut r = Fields::open(out);
    r.attributes(Attrs::Owned(&ctx.resource.attributes), kept);
    r.nonzero(
        "dropped_attributes_count",
        ctx.resource.dropped_attributes_count as i64,
    );
    r.str("schema_url", ctx.resource_schema_url);
    r.close();
    out.push(b',');
    jsonw::key(out, "scope");
    let mut s = Fields::open(out);
    s.attributes(Attrs::Owned(&ctx.scope.attributes), kept);
    s.nonzero(
        "dropped_attributes_count",
        ctx.scope.dropped_attributes_count as i64,
    );
    s.str("name", &ctx.scope.name);
    s.str("schema_url", ctx.scope_schema_url);
    s.str("version", &ctx.scope.version);
    s.close();
}

pub(super) fn log_time(r: &LogView<'_>) -> u64 {
    if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    }
}

/// The `otel` document; `ctx_json` is the record's `"resource":…,"scope":…`, `ds_json`
/// its target's [`data_stream_json`].
fn otel_log<'a>(
    out: &mut Vec<u8>,
    kept: &mut Vec<KvRef<'a>>,
    ctx_json: &[u8],
    r: &LogView<'a>,
    ds_json: &[u8],
) {
    let mut d = Fields::open(out);
    d.timestamp("@timestamp", log_time(r));
    d.attributes(r.attributes, kept);
    if let Some(v) = r.body {
        otel_body(d.field("body"), v);
    }
    d.data_stream(ds_json);
    d.nonzero(
        "dropped_attributes_count",
        r.dropped_attributes_count as i64,
    );
    if let Some(n) = event_name(r) {
        d.str("event_name", n);
    }
    d.timestamp("observed_timestamp", r.observed_time_unix_nano);
    d.out.push(b',');
    d.out.extend_from_slice(ctx_json);
    d.nonzero("severity_number", r.severity_number as i64);
    d.str("severity_text", r.severity_text);
    d.id("span_id", r.span_id);
    d.id("trace_id", r.trace_id);
    d.close();
}

/// `{"text":…}` for scalars, `{"structured":…}` for maps and arrays of maps, and
/// `{"structured":{"value":[…]}}` for other arrays.
fn otel_body(out: &mut Vec<u8>, v: AnyRef<'_>) {
    match v {
        AnyRef::Kvlist(_) => {
            out.extend_from_slice(b"{\"structured\":");
            jsonw::any(out, v);
        }
        AnyRef::Array(a) if a.iter().all(|x| matches!(x, Some(AnyRef::Kvlist(_)))) => {
            out.extend_from_slice(b"{\"structured\":");
            jsonw::any(out, v);
        }
        AnyRef::Array(_) => {
            out.extend_from_slice(b"{\"structured\":{\"value\":");
            jsonw::any(out, v);
            out.push(b'}');
        }
        other => {
            out.extend_from_slice(b"{\"text\":");
            jsonw::any(out, other);
        }
    }
    out.push(b'}');
}

/// Nanoseconds since the epoch as RFC 3339 with nine fractional digits and `Z`, as
/// `mapping::timestamp` (chrono) prints it. The date and time of day of the last second
/// printed on this thread are kept: a batch's records mostly share their second.
pub fn rfc3339_nanos(out: &mut Vec<u8>, nanos: u64) {
    thread_local! {
        static LAST: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let secs = nanos / 1_000_000_000;
    let (last, mut head) = LAST.get();
    if last != secs {
        head = date_time(secs);
        LAST.set((secs, head));
    }
    let mut buf = *b"000000000Z";
    if let Some(digits) = buf.first_chunk_mut::<9>() {
        nine_digits(digits, nanos % 1_000_000_000);
    }
    out.extend_from_slice(&head);
    out.extend_from_slice(&buf);
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch.
fn date_time(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut buf = *b"0000-00-00T00:00:00.";
    put_digits(&mut buf[0..4], year as u64);
    put_digits(&mut buf[5..7], month as u64);
    put_digits(&mut buf[8..10], day as u64);
    put_digits(&mut buf[11..13], rem / 3600);
    put_digits(&mut buf[14..16], rem / 60 % 60);
    put_digits(&mut buf[17..19], rem % 60);
    buf
}

/// The nine digits of `v` (< 10^9). Each digit is its own division by a
/// constant (a multiply and a shift), none waiting on another, where a loop dividing by
/// ten nine times in turn is one long chain of them: twice per document.
fn nine_digits(dst: &mut [u8; 9], v: u64) {
    const POW: [u64; 9] = [
        100_000_000,
        10_000_000,
        1_000_000,
        100_000,
        10_000,
        1_000,
        100,
        10,
        1,
    ];
    for (d, p) in dst.iter_mut().zip(POW) {
        *d = b'0' + (v / p % 10) as u8;
    }
}

/// The last `dst.len()` decimal digits of `v`, zero-padded.
fn put_digits(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[path = "ndjson_ecs.rs"]
mod ecs;

#[cfg(test)]
#[path = "ndjson_tests.rs"]
mod tests;
