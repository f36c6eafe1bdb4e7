//! A logs batch, decoded or raw, walked resource by resource as borrowed views
//! ([`super::view`]): what the Loki and Elasticsearch writers read.
//!
//! Resources and scopes (one per many records) are decoded with prost; records are
//! [`LogView`]s over the wire bytes. Malformed input: a raw batch was only shallow-scanned
//! at the receiver (framing down to the records; not UTF-8, attributes or bodies), so each
//! raw resource is checked in full (`view_check::read_log` on every record, prost
//! on its resource and scopes) before any of it is handed out. The check reads each record
//! as it goes (scalar fields, strings, body, attributes into a per-resource arena whose
//! allocations are reused), so the views hand out what it read: the bytes are walked and
//! UTF-8-checked once. A resource that fails the check (invalid
//! UTF-8, a truncated or mistyped nested value, a duplicated value field, a group, nesting
//! deeper than 32) is decoded with prost instead, so whatever prost accepts is written
//! exactly as the decoded path would; one that prost refuses too is skipped: its records
//! are counted in [`LogsView::dropped`] with prost's error in [`LogsView::error`] (the
//! exporter counts and logs them as a permanent failure), and the rest of the batch goes
//! on. Nothing here panics on any input.

use std::borrow::Cow;

use prost::Message;

use super::view::{Attrs, Field, LogView, Malformed, Rd};
use super::view_check::{WireKv, read_log, utf8};
use super::{Batch, InstrumentationScope, LogRecord, Resource, ResourceLogs, ScopeLogs};

/// The resources of a logs batch (nothing for other signals).
pub struct LogsView<'a> {
    owned: std::slice::Iter<'a, ResourceLogs>,
    chunks: std::vec::IntoIter<&'a [u8]>,
    rd: Option<Rd<'a>>,
    /// Records skipped because their resource could not be decoded at all.
    pub dropped: usize,
    /// The first such decode error.
    pub error: Option<String>,
}

impl<'a> LogsView<'a> {
    pub fn new(batch: &'a Batch) -> LogsView<'a> {
        let (owned, chunks): (&[ResourceLogs], Vec<&[u8]>) = match batch {
            Batch::Logs(v) => (v, Vec::new()),
            Batch::Raw(r) if r.signal() == super::Signal::Logs => {
                (&[], r.chunks().map(|b| &b[..]).collect())
            }
            _ => (&[], Vec::new()),
        };
        LogsView {
            owned: owned.iter(),
            chunks: chunks.into_iter(),
            rd: None,
            dropped: 0,
            error: None,
        }
    }

    /// The next resource message's bytes of the raw batch.
    fn next_wire(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(rd) = &mut self.rd {
                // Scanned at the receiver: the framing is sound (a stray field is skipped).
                for (n, f) in rd.by_ref() {
                    if let (1, Field::Len(b)) = (n, f) {
                        return Some(b);
                    }
                }
            }
            self.rd = Some(Rd::new(self.chunks.next()?));
        }
    }
}

impl<'a> Iterator for LogsView<'a> {
    type Item = ResourceView<'a>;

    fn next(&mut self) -> Option<ResourceView<'a>> {
        if let Some(rl) = self.owned.next() {
            return Some(ResourceView {
                resource: rl.resource.as_ref().map(Cow::Borrowed),
                schema_url: Cow::Borrowed(&rl.schema_url),
                scopes: Scopes::Owned(&rl.scope_logs),
            });
        }
        loop {
            let b = self.next_wire()?;
            if let Ok(v) = ResourceView::wire(b) {
                return Some(v);
            }
            match ResourceLogs::decode(b) {
                Ok(rl) => {
                    return Some(ResourceView {
                        resource: rl.resource.map(Cow::Owned),
                        schema_url: Cow::Owned(rl.schema_url),
                        scopes: Scopes::Decoded(rl.scope_logs),
                    });
                }
                Err(e) => {
                    self.dropped += count_records(b);
                    self.error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Log records in a resource message, counted leniently.
fn count_records(b: &[u8]) -> usize {
    Rd::new(b)
        .filter_map(|(n, f)| match (n, f) {
            (2, Field::Len(s)) => Some(
                Rd::new(s)
                    .filter(|(n, f)| *n == 2 && matches!(f, Field::Len(_)))
                    .count(),
            ),
            _ => None,
        })
        .sum()
}

/// One resource: its prost `Resource`, and its scopes.
pub struct ResourceView<'a> {
    pub resource: Option<Cow<'a, Resource>>,
    pub schema_url: Cow<'a, str>,
    scopes: Scopes<'a>,
}

enum Scopes<'a> {
    Owned(&'a [ScopeLogs]),
    Decoded(Vec<ScopeLogs>),
    Wire(Vec<WireScope<'a>>, Arena<'a>),
}

struct WireScope<'a> {
    scope: Option<InstrumentationScope>,
    schema_url: &'a str,
    /// Its records: a range of the arena's `records`.
    records: (usize, usize),
}

/// A checked raw resource's records as read, and their attributes (each record's a
/// range of `kvs`).
#[derive(Default)]
struct Arena<'a> {
    records: Vec<(LogView<'a>, (usize, usize))>,
    kvs: Vec<WireKv<'a>>,
}

thread_local! {
    /// The arena's allocations, kept between resources (empty while not in use).
    static SPARE: std::cell::Cell<Arena<'static>> = Default::default();
}

impl Arena<'_> {
    fn take<'a>() -> Arena<'a> {
        SPARE.take()
    }

    /// Empties the arena and gives its allocations back for the next resource.
    // (`filter` would keep the element type: the point is to change its lifetime.)
    #[allow(clippy::unnecessary_filter_map)]
    fn recycle(self) {
        let Arena { records, kvs } = self;
        // Nothing is kept (`None` for every element): collecting in place keeps the
        // allocations while the element type's lifetime becomes `'static`.
        let records = records.into_iter().filter_map(|_| None).collect();
        let kvs = kvs.into_iter().filter_map(|_| None).collect();
        SPARE.set(Arena { records, kvs });
    }
}

impl Drop for ResourceView<'_> {
    fn drop(&mut self) {
        if let Scopes::Wire(_, arena) = &mut self.scopes {
            std::mem::take(arena).recycle();
        }
    }
}

impl<'a> ResourceView<'a> {
    /// Checks a whole resource message, reading its records as it goes, and decodes its
    /// resource and scopes.
    fn wire(b: &'a [u8]) -> Result<ResourceView<'a>, Malformed> {
        let mut arena = Arena::take();
        arena.records.clear();
        arena.kvs.clear();
        match Self::read(b, &mut arena) {
            Ok((resource, schema_url, scopes)) => Ok(ResourceView {
                resource,
                schema_url: Cow::Borrowed(schema_url),
                scopes: Scopes::Wire(scopes, arena),
            }),
            Err(e) => {
                arena.recycle();
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn read(
        b: &'a [u8],
        arena: &mut Arena<'a>,
    ) -> Result<(Option<Cow<'a, Resource>>, &'a str, Vec<WireScope<'a>>), Malformed> {
        let mut resource: Option<&[u8]> = None;
        let mut schema_url = "";
        let mut scopes = Vec::new();
        let mut rd = Rd::new(b);
        while let Some((n, f)) = rd.field()? {
            match (n, f) {
                (1, Field::Len(s)) if resource.is_none() => resource = Some(s),
                (2, Field::Len(s)) => scopes.push(scope(s, arena)?),
                (3, Field::Len(s)) => schema_url = utf8(s)?,
                (1..=3, _) => return Err(Malformed),
                _ => {}
            }
        }
        let resource = match resource {
            Some(r) => Some(Cow::Owned(Resource::decode(r).map_err(|_| Malformed)?)),
            None => None,
        };
        Ok((resource, schema_url, scopes))
    }

    /// The resource's attributes (empty without a resource).
    pub fn attributes(&self) -> &[super::KeyValue] {
        self.resource
            .as_deref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[])
    }

    pub fn scopes(&self) -> impl Iterator<Item = ScopeView<'_>> {
        let none = (&[][..], &[][..]);
        let (owned, wire, (records, kvs)): (&[ScopeLogs], &[WireScope<'_>], _) = match &self.scopes
        {
            Scopes::Owned(v) => (v, &[], none),
            Scopes::Decoded(v) => (v, &[], none),
            Scopes::Wire(v, a) => (&[], v, (&a.records[..], &a.kvs[..])),
        };
        owned
            .iter()
            .map(|sl| ScopeView {
                scope: sl.scope.as_ref(),
                schema_url: &sl.schema_url,
                records: Records::Owned(&sl.log_records),
            })
            .chain(wire.iter().map(|w| ScopeView {
                scope: w.scope.as_ref(),
                schema_url: w.schema_url,
                records: Records::Checked(
                    records.get(w.records.0..w.records.1).unwrap_or_default(),
                    kvs,
                ),
            }))
    }
}

/// Checks a `ScopeLogs` message, reading its records into the arena, and decodes its
/// scope.
fn scope<'a>(b: &'a [u8], arena: &mut Arena<'a>) -> Result<WireScope<'a>, Malformed> {
    let mut scope: Option<&[u8]> = None;
    let mut schema_url = "";
    let first = arena.records.len();
    let mut rd = Rd::new(b);
    while let Some((n, f)) = rd.field()? {
        match (n, f) {
            (1, Field::Len(s)) if scope.is_none() => scope = Some(s),
            (2, Field::Len(s)) => {
                let start = arena.kvs.len();
                let view = read_log(s, &mut arena.kvs)?;
                arena.records.push((view, (start, arena.kvs.len())));
            }
            (3, Field::Len(s)) => schema_url = utf8(s)?,
            (1..=3, _) => return Err(Malformed),
            _ => {}
        }
    }
    let scope = match scope {
        Some(s) => Some(InstrumentationScope::decode(s).map_err(|_| Malformed)?),
        None => None,
    };
    Ok(WireScope {
        scope,
        schema_url,
        records: (first, arena.records.len()),
    })
}

/// One scope: its prost `InstrumentationScope`, and its records.
pub struct ScopeView<'a> {
    pub scope: Option<&'a InstrumentationScope>,
    pub schema_url: &'a str,
    pub records: Records<'a>,
}

impl<'a> ScopeView<'a> {
    /// The scope as a prost `ScopeLogs` without records (for the rare paths that take one).
    pub fn scope_logs(&self) -> ScopeLogs {
        ScopeLogs {
            scope: self.scope.cloned(),
            log_records: Vec::new(),
            schema_url: self.schema_url.to_string(),
        }
    }
}

/// The records of a scope.
#[derive(Clone, Copy)]
pub enum Records<'a> {
    Owned(&'a [LogRecord]),
    /// Raw records as read by the check, and the attributes they index.
    Checked(&'a [(LogView<'a>, (usize, usize))], &'a [WireKv<'a>]),
}

impl<'a> Records<'a> {
    pub fn iter(self) -> impl Iterator<Item = LogView<'a>> {
        let (owned, checked, kvs) = match self {
            Records::Owned(v) => (v, &[][..], &[][..]),
            Records::Checked(r, kvs) => (&[][..], r, kvs),
        };
        owned
            .iter()
            .map(LogView::from_owned)
            .chain(checked.iter().map(move |(v, (a, b))| {
                v.with_attributes(Attrs::Checked(kvs.get(*a..*b).unwrap_or_default()))
            }))
    }
}

/// The batch's records with everything above them, decoded into prost types: what the
/// views walk, with unreadable resources left out (their records counted in `.1`).
/// `keep` picks records by their position in that walk.
pub fn to_batch(batch: &Batch, mut keep: impl FnMut(usize) -> bool) -> (Batch, usize) {
    let mut view = LogsView::new(batch);
    let mut out = Vec::new();
    let mut i = 0;
    for rv in view.by_ref() {
        let mut scope_logs = Vec::new();
        for sv in rv.scopes() {
            let mut sl = sv.scope_logs();
            for r in sv.records.iter() {
                if keep(i) {
                    sl.log_records.push(r.record().into_owned());
                }
                i += 1;
            }
            if !sl.log_records.is_empty() {
                scope_logs.push(sl);
            }
        }
        if !scope_logs.is_empty() {
            out.push(ResourceLogs {
                resource: rv.resource.as_deref().cloned(),
                scope_logs,
                schema_url: rv.schema_url.to_string(),
            });
        }
    }
    (Batch::Logs(out), view.dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arena_keeps_its_allocations_between_resources() {
        let b = crate::data::view::tests::raw_of(
            &Batch::Logs(vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 50],
                    ..Default::default()
                }],
                ..Default::default()
            }]),
            false,
        );
        for rv in LogsView::new(&b) {
            assert_eq!(
                rv.scopes().map(|s| s.records.iter().count()).sum::<usize>(),
                50
            );
        }
        let spare = SPARE.take();
        assert!(spare.records.is_empty() && spare.records.capacity() >= 50);
    }
}
