//! The `attributes` processor without decoding: its actions run on the serialized export
//! requests of a raw batch (the forwarding fast path, [`crate::data::raw`]), so a pipeline
//! `receiver → attributes → batch → otlp` never decodes a span.
//!
//! How: the request is walked down to the items (`ResourceSpans` → `ScopeSpans` → `Span`,
//! `ResourceLogs` → `ScopeLogs` → `LogRecord`); every field that does not enclose an edited
//! item is copied byte for byte. In an item, the attribute entries (`KeyValue`, span field
//! 9, log record field 6) are read as borrowed key and value ranges, the actions run on
//! that list (see `wire_item`), and an item that changed is written with its
//! attribute fields replaced by the edited list (at the place of the first one) and its
//! other fields copied; the lengths of the item, its scope message and its resource message
//! are rewritten. The output is a new request with the same items and resources.
//!
//! Which configs take it (otherwise [`Processor::accepts_raw`] is false and the pipeline
//! decodes as before): traces and logs pipelines whose actions are `insert`, `update`,
//! `upsert` (with `value`, `from_attribute` or `from_context`: the request's value is
//! encoded once per request), `delete` and `hash` (with `key` and/or
//! `pattern`), with `include` / `exclude` on `services`, `span_names`, `span_kinds`,
//! `attributes`, `resources`, `libraries`, `log_severity_texts`, `log_severity_number`
//! (strict or regexp). Not: `extract`, `convert`, `log_bodies` and every metrics pipeline.
//! The resource and scope are decoded (once per resource / scope message) only when the
//! match properties read them.
//!
//! Semantics are the decoded path's: the same actions in the same order on the same list
//! (first entry of a key wins for finds, every entry for delete and hash, new entries at
//! the end), proven by a randomized comparison in the tests. Encodings whose merge rules
//! the borrowed path does not model (a `KeyValue` with its value field twice, an `AnyValue`
//! with several members) are decoded with prost, that item or value only.
//!
//! Bad input: the receiver's scan only checked framing down to the items. An item whose
//! attributes cannot be parsed (truncated entry, bad wire type), or whose string read by a
//! match or action (a key tested by a `pattern`, a span name, a hashed or regexp-matched
//! value) is not UTF-8, or whose resource / scope cannot be decoded when a match needs
//! them, is forwarded unchanged and counted in
//! `weft_processor_attributes_malformed_items_total{component}` with a warning at most
//! every 10 s. Strings that are only compared or copied are not checked for UTF-8 (as on
//! the fast path without the processor). Nothing is dropped and nothing panics.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};

use super::actions::Actions;
use super::matching::Matcher;
use super::wire_item::{Editor, compile};
use super::wire_read::{FieldValue, Fields, Stop};
use crate::admin::{Counter, Telemetry};
use crate::data::{InstrumentationScope, LogRecord, RawBatch, Resource, Signal, Span};
use crate::pipeline::ClientMetadata;
#[cfg(doc)]
use crate::processors::Processor;

const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the walk of one request found.
#[derive(Default)]
struct Stats {
    changed: bool,
    malformed: u64,
}

/// The processor's config as the wire path sees it.
pub(super) struct Env<'a> {
    pub actions: &'a Actions,
    pub include: Option<&'a Matcher>,
    pub exclude: Option<&'a Matcher>,
    /// The client metadata of the request being processed (`from_context`).
    pub metadata: Option<&'a ClientMetadata>,
}

pub(super) struct WirePath {
    editor: Editor,
    /// An action is `from_context`: its value is bound per request.
    binds_context: bool,
    needs_resource: bool,
    needs_scope: bool,
    id: String,
    malformed: Counter,
    warned: Option<Instant>,
    unwarned: u64,
}

impl WirePath {
    /// The wire path for this config and signal, or `None` if it needs the decoded path.
    pub(super) fn new(
        env: &Env<'_>,
        signal: Option<Signal>,
        id: &str,
        telemetry: &Telemetry,
    ) -> Option<WirePath> {
        let signal = signal.filter(|s| matches!(s, Signal::Traces | Signal::Logs))?;
        let matchers = [env.include, env.exclude];
        if matchers.iter().flatten().any(|m| !m.wire_supported()) {
            return None;
        }
        let actions = compile(env.actions)?;
        Some(WirePath {
            editor: Editor::new(signal, actions),
            binds_context: env.actions.uses_context(),
            needs_resource: matchers.iter().flatten().any(|m| m.needs_resource()),
            needs_scope: matchers.iter().flatten().any(|m| m.needs_scope()),
            id: id.to_string(),
            malformed: telemetry.metrics.counter(
                "weft_processor_attributes_malformed_items_total",
                "Spans and log records the attributes processor forwarded unchanged because \
                 their attributes could not be read",
                &[("component", id)],
            ),
            warned: None,
            unwarned: 0,
        })
    }

    pub(super) fn signal(&self) -> Signal {
        self.editor.signal
    }

    /// Runs the actions on every request of `raw` (all of them from the client whose
    /// metadata `env` carries).
    pub(super) fn process(&mut self, env: &Env<'_>, raw: &RawBatch, now: Instant) -> RawBatch {
        if self.binds_context {
            self.editor.bind_context(env.metadata);
        }
        let mut out = RawBatch::empty(raw.signal());
        let mut bad = 0;
        for (bytes, items, resources) in raw.parts() {
            let mut buf = Vec::with_capacity(bytes.len() + bytes.len() / 4 + 64);
            let mut st = Stats::default();
            match self.request(env, bytes, &mut buf, &mut st) {
                Ok(()) if st.changed => {
                    out.push_counted(Bytes::from(buf), items, resources);
                    bad += st.malformed;
                }
                Ok(()) => {
                    out.push_counted(bytes.clone(), items, resources);
                    bad += st.malformed;
                }
                // Cannot happen to a scanned request; if it did, it goes on as it came.
                Err(_) => {
                    out.push_counted(bytes.clone(), items, resources);
                    bad += items as u64;
                }
            }
        }
        if bad > 0 {
            self.note_malformed(bad, now);
        }
        out
    }

    fn note_malformed(&mut self, n: u64, now: Instant) {
        self.malformed.add(n);
        self.unwarned += n;
        if self
            .warned
            .is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY)
        {
            tracing::warn!(
                component = %self.id,
                items = self.unwarned,
                "forwarded {} item(s) unchanged: their attributes (or a string a match or an \
                 action reads) could not be read",
                self.unwarned
            );
            self.warned = Some(now);
            self.unwarned = 0;
        }
    }

    fn request(
        &mut self,
        env: &Env<'_>,
        req: &[u8],
        out: &mut Vec<u8>,
        st: &mut Stats,
    ) -> Result<(), Stop> {
        let mut f = Fields::new(req);
        while let Some(fd) = f.next_field()? {
            match (fd.number, fd.value) {
                (1, FieldValue::Len(s, e)) => {
                    let at = open(out, 0x0a, e - s);
                    self.resource(env, &req[s..e], out, st)?;
                    close(out, at);
                }
                _ => out.extend_from_slice(&req[fd.start..fd.end]),
            }
        }
        Ok(())
    }

    fn resource(
        &mut self,
        env: &Env<'_>,
        buf: &[u8],
        out: &mut Vec<u8>,
        st: &mut Stats,
    ) -> Result<(), Stop> {
        // Field 1 (`Resource`), merged as prost merges repeated message fields.
        let (mut resource, mut bad) = (None::<Resource>, false);
        if self.needs_resource {
            let mut f = Fields::new(buf);
            while let Some(fd) = f.next_field()? {
                if let (1, FieldValue::Len(s, e)) = (fd.number, fd.value) {
                    bad |= resource.get_or_insert_default().merge(&buf[s..e]).is_err();
                }
            }
        }
        let mut f = Fields::new(buf);
        while let Some(fd) = f.next_field()? {
            match (fd.number, fd.value) {
                (2, FieldValue::Len(s, e)) => {
                    let at = open(out, 0x12, e - s);
                    self.scope(env, resource.as_ref(), bad, &buf[s..e], out, st)?;
                    close(out, at);
                }
                _ => out.extend_from_slice(&buf[fd.start..fd.end]),
            }
        }
        Ok(())
    }

    fn scope(
        &mut self,
        env: &Env<'_>,
        resource: Option<&Resource>,
        mut bad: bool,
        buf: &[u8],
        out: &mut Vec<u8>,
        st: &mut Stats,
    ) -> Result<(), Stop> {
        let mut scope = None::<InstrumentationScope>;
        if self.needs_scope {
            let mut f = Fields::new(buf);
            while let Some(fd) = f.next_field()? {
                if let (1, FieldValue::Len(s, e)) = (fd.number, fd.value) {
                    bad |= scope.get_or_insert_default().merge(&buf[s..e]).is_err();
                }
            }
        }
        // What the matchers decide once for the whole scope.
        let traces = self.editor.signal == Signal::Traces;
        let outer = |m: &Matcher| {
            (!traces || m.matches_service(resource)) && m.matches_scope(resource, scope.as_ref())
        };
        let include = env.include.map(|m| (m, !bad && outer(m)));
        let exclude = env.exclude.map(|m| (m, !bad && outer(m)));
        let mut f = Fields::new(buf);
        while let Some(fd) = f.next_field()? {
            let whole = &buf[fd.start..fd.end];
            let (2, FieldValue::Len(s, e)) = (fd.number, fd.value) else {
                out.extend_from_slice(whole);
                continue;
            };
            if bad {
                st.malformed += 1;
                out.extend_from_slice(whole);
                continue;
            }
            if include.is_some_and(|(_, outer)| !outer) {
                out.extend_from_slice(whole);
                continue;
            }
            let item = &buf[s..e];
            match self.editor.edit(item, include, exclude) {
                Ok(true) => {
                    self.editor.write(0x12, item, out);
                    st.changed = true;
                }
                Ok(false) => out.extend_from_slice(whole),
                Err(Stop::Irregular) => {
                    match fallback(env, self.editor.signal, item, include, exclude, out) {
                        Ok(true) => st.changed = true,
                        Ok(false) => out.extend_from_slice(whole),
                        Err(_) => {
                            st.malformed += 1;
                            out.extend_from_slice(whole);
                        }
                    }
                }
                Err(Stop::Malformed) => {
                    st.malformed += 1;
                    out.extend_from_slice(whole);
                }
            }
        }
        Ok(())
    }
}

/// One item through prost and the decoded actions (rare encodings); `Ok(false)` when it
/// stays as it is (not selected), an error when prost cannot decode it.
fn fallback(
    env: &Env<'_>,
    signal: Signal,
    item: &[u8],
    include: Option<(&Matcher, bool)>,
    exclude: Option<(&Matcher, bool)>,
    out: &mut Vec<u8>,
) -> Result<bool, prost::DecodeError> {
    let selected = |matches: &dyn Fn(&Matcher) -> bool| {
        include.is_none_or(|(m, outer)| outer && matches(m))
            && !exclude.is_some_and(|(m, outer)| outer && matches(m))
    };
    match signal {
        Signal::Traces => {
            let mut span = Span::decode(item)?;
            if !selected(&|m| m.matches_span_item(&span)) {
                return Ok(false);
            }
            env.actions.apply_in(&mut span.attributes, env.metadata);
            out.push(0x12);
            encode_varint(span.encoded_len() as u64, out);
            span.encode_raw(out);
        }
        _ => {
            let mut log = LogRecord::decode(item)?;
            if !selected(&|m| m.matches_log_item(&log)) {
                return Ok(false);
            }
            env.actions.apply_in(&mut log.attributes, env.metadata);
            out.push(0x12);
            encode_varint(log.encoded_len() as u64, out);
            log.encode_raw(out);
        }
    }
    Ok(true)
}

/// Starts a length-delimited field whose length is not known yet: writes the tag and
/// reserves room for a length of about `guess`. Returns where the length goes.
fn open(out: &mut Vec<u8>, tag: u8, guess: usize) -> (usize, usize) {
    out.push(tag);
    let at = out.len();
    let w = encoded_len_varint(guess as u64);
    out.resize(at + w, 0);
    (at, w)
}

/// Writes the length of the field started by [`open`], moving its contents when the
/// length needs a different number of bytes than reserved.
fn close(out: &mut Vec<u8>, (at, w): (usize, usize)) {
    let content = at + w;
    let len = out.len() - content;
    let need = encoded_len_varint(len as u64);
    if need > w {
        let d = need - w;
        let end = out.len();
        out.resize(end + d, 0);
        out.copy_within(content..end, content + d);
    } else if need < w {
        let d = w - need;
        out.copy_within(content.., content - d);
        out.truncate(out.len() - d);
    }
    let mut v = len as u64;
    let mut i = at;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "wire_tests_context.rs"]
mod tests_context;
#[cfg(test)]
#[path = "wire_tests_units.rs"]
mod tests_units;
