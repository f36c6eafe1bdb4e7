//! The `ecs` document written directly. The reference mapping builds a flat map by
//! inserting, in turn: the record's own fields, the resource's attributes (under their ECS
//! names; later inserts replace), the data stream fields, then the record's attributes —
//! one whose name is already taken goes to `labels.<name>`. Here the same map is built from
//! sorted runs instead of repeated lookups: the record's fields come in key order by
//! construction, the resource's members are sorted once per scope, the data stream's are in
//! order too; they are merged (later sources winning), record attributes are checked
//! against that by binary search, and the result is written in key order.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::super::mapping::{Context, DataStream, ECS_RESOURCE};
use super::{Fields, event_name, log_time, not_routing, not_routing_key, rfc3339_nanos};
use crate::data::Resource;
use crate::data::view::{AnyRef, KvRef, LogView};
use crate::exporters::jsonw;

/// A value of the flat `ecs` document.
#[derive(Clone)]
pub(super) enum Val<'a> {
    Str(&'a str),
    /// A value written as its text (`value_to_string`), as a JSON string.
    Text(AnyRef<'a>),
    Time(u64),
    Int(i64),
    Id(&'a [u8]),
    /// An attribute's value (`null` when unset).
    Attr(Option<AnyRef<'a>>),
}

/// One member; `prefix` (the key's first 8 bytes, big-endian, zero-padded) orders and
/// compares like the key for most keys, and the key decides ties.
#[derive(Clone)]
pub(super) struct Member<'a> {
    prefix: u64,
    key: Cow<'a, str>,
    val: Val<'a>,
}

fn prefix(k: &str) -> u64 {
    let mut w = [0u8; 8];
    let n = k.len().min(8);
    w[..n].copy_from_slice(&k.as_bytes()[..n]);
    u64::from_be_bytes(w)
}

impl<'a> Member<'a> {
    fn new(key: Cow<'a, str>, val: Val<'a>) -> Self {
        Member {
            prefix: prefix(&key),
            key,
            val,
        }
    }

    fn cmp_key(&self, prefix: u64, key: &str) -> Ordering {
        self.prefix.cmp(&prefix).then_with(|| (*self.key).cmp(key))
    }
}

/// Sorts by key and keeps the last member of each key (stable sort: input order decides).
fn sort_last_wins(v: &mut Vec<Member<'_>>) {
    v.sort_by(|a, b| a.cmp_key(b.prefix, &b.key));
    let mut w = 0;
    for r in 0..v.len() {
        if r + 1 == v.len() || v[r].cmp_key(v[r + 1].prefix, &v[r + 1].key) != Ordering::Equal {
            v.swap(w, r);
            w += 1;
        }
    }
    v.truncate(w);
}

/// The resource's members (ECS names, `host.hostname` too), sorted, one per key.
pub(super) fn resource_members(resource: &Resource) -> Vec<Member<'_>> {
    let mut v = Vec::with_capacity(resource.attributes.len() + 1);
    for kv in &resource.attributes {
        if !not_routing(kv) {
            continue;
        }
        let key = ECS_RESOURCE
            .iter()
            .find(|(k, _)| *k == kv.key)
            .map(|(_, e)| *e)
            .unwrap_or(kv.key.as_str());
        let value = KvRef::from_owned(kv).value;
        v.push(Member::new(Cow::Borrowed(key), Val::Attr(value)));
        if kv.key == "host.name" {
            v.push(Member::new(
                Cow::Borrowed("host.hostname"),
                Val::Attr(value),
            ));
        }
    }
    sort_last_wins(&mut v);
    v
}

/// Merges sorted, key-unique runs; on equal keys the later run's member wins.
fn merge<'a>(runs: [&[Member<'a>]; 3], out: &mut Vec<Member<'a>>) {
    let mut idx = [0usize; 3];
    loop {
        let mut best: Option<usize> = None;
        for r in 0..3 {
            let Some(m) = runs[r].get(idx[r]) else {
                continue;
            };
            best = match best {
                Some(b) => {
                    let bm = &runs[b][idx[b]];
                    match m.cmp_key(bm.prefix, &bm.key) {
                        Ordering::Less => Some(r),
                        Ordering::Equal => {
                            idx[b] += 1; // the later run replaces it
                            Some(r)
                        }
                        Ordering::Greater => Some(b),
                    }
                }
                None => Some(r),
            };
        }
        let Some(b) = best else {
            return;
        };
        out.push(runs[b][idx[b]].clone());
        idx[b] += 1;
    }
}

/// Appends the record's `ecs` document to `out`.
pub(super) fn log<'a>(
    out: &mut Vec<u8>,
    ctx: &Context<'a>,
    resource: &[Member<'a>],
    r: &LogView<'a>,
    ds: Option<&'a DataStream>,
) {
    // The record's own fields, pushed in key order.
    let mut own: Vec<Member<'a>> = Vec::with_capacity(9);
    let mut push = |k: &'static str, v: Val<'a>| own.push(Member::new(Cow::Borrowed(k), v));
    push("@timestamp", Val::Time(log_time(r)));
    if let Some(n) = event_name(r) {
        push("event.action", Val::Str(n));
    }
    if r.observed_time_unix_nano != 0 {
        push("event.created", Val::Time(r.observed_time_unix_nano));
    }
    if r.severity_number != 0 {
        push("event.severity", Val::Int(r.severity_number as i64));
    }
    if !r.severity_text.is_empty() {
        push("log.level", Val::Str(r.severity_text));
    }
    if !ctx.scope.name.is_empty() {
        push("log.logger", Val::Str(&ctx.scope.name));
    }
    if let Some(v) = r.body {
        push(
            "message",
            match v {
                AnyRef::Str(s) => Val::Str(s),
                other => Val::Text(other),
            },
        );
    }
    let id = |v: &[u8]| !v.is_empty() && v.iter().any(|b| *b != 0);
    if id(r.span_id) {
        push("span.id", Val::Id(r.span_id));
    }
    if id(r.trace_id) {
        push("trace.id", Val::Id(r.trace_id));
    }
    let mut stream: Vec<Member<'a>> = Vec::new();
    if let Some(ds) = ds {
        for (k, v) in [
            ("data_stream.dataset", ds.dataset.as_str()),
            ("data_stream.namespace", ds.namespace.as_str()),
            ("data_stream.type", ds.ty),
            ("event.dataset", ds.dataset.as_str()),
        ] {
            stream.push(Member::new(Cow::Borrowed(k), Val::Str(v)));
        }
    }
    let mut base = Vec::with_capacity(own.len() + resource.len() + stream.len());
    merge([&own, resource, &stream], &mut base);
    // Record attributes: a name already taken goes to `labels.<name>`; the last write of
    // a key wins.
    let mut attrs: Vec<Member<'a>> = Vec::new();
    for kv in r.attributes.iter().filter(|kv| not_routing_key(kv.key)) {
        let p = prefix(kv.key);
        let taken = base.binary_search_by(|m| m.cmp_key(p, kv.key)).is_ok()
            || attrs.iter().any(|m| m.prefix == p && m.key == kv.key);
        let key = if taken {
            Cow::Owned(format!("labels.{}", kv.key.replace('.', "_")))
        } else {
            Cow::Borrowed(kv.key)
        };
        attrs.push(Member::new(key, Val::Attr(kv.value)));
    }
    sort_last_wins(&mut attrs);
    let mut all = Vec::with_capacity(base.len() + attrs.len());
    merge([&base, &attrs, &[]], &mut all);
    let mut d = Fields::open(out);
    for Member { key, val, .. } in &all {
        let out = d.key(key);
        match val {
            Val::Str(s) => jsonw::string(out, s),
            Val::Text(v) => {
                let mut text = Vec::new();
                jsonw::any_text(&mut text, *v);
                jsonw::string_bytes(out, &text);
            }
            Val::Time(t) => {
                out.push(b'"');
                rfc3339_nanos(out, *t);
                out.push(b'"');
            }
            Val::Int(i) => jsonw::int(out, *i),
            Val::Id(id) => jsonw::hex_string(out, id),
            Val::Attr(v) => jsonw::any_or_null(out, *v),
        }
    }
    d.close();
}
