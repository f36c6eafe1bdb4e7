//! A logs batch, decoded or raw, walked resource by resource as borrowed views
//! ([`super::view`]): what the Loki and Elasticsearch writers read.
//!
//! Resources and scopes (one per many records) are decoded with prost; records are
//! [`LogView`]s over the wire bytes. Malformed input: a raw batch was only shallow-scanned
//! at the receiver (framing down to the records; not UTF-8, attributes or bodies), so each
//! raw resource is checked in full ([`check_log`] on every record, prost on its resource
//! and scopes) before any of it is handed out. A resource that fails the check (invalid
//! UTF-8, a truncated or mistyped nested value, a duplicated value field, a group, nesting
//! deeper than 32) is decoded with prost instead, so whatever prost accepts is written
//! exactly as the decoded path would; one that prost refuses too is skipped: its records
//! are counted in [`LogsView::dropped`] with prost's error in [`LogsView::error`] (the
//! exporter counts and logs them as a permanent failure), and the rest of the batch goes
//! on. Nothing here panics on any input.

use std::borrow::Cow;

use prost::Message;

use super::view::{Field, LogView, Malformed, Rd, check_log};
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
    Wire(Vec<WireScope<'a>>),
}

struct WireScope<'a> {
    scope: Option<InstrumentationScope>,
    schema_url: &'a str,
    bytes: &'a [u8],
}

impl<'a> ResourceView<'a> {
    /// Checks a whole resource message and decodes its resource and scopes.
    fn wire(b: &'a [u8]) -> Result<ResourceView<'a>, Malformed> {
        let mut resource: Option<&[u8]> = None;
        let mut schema_url = "";
        let mut scopes = Vec::new();
        let mut rd = Rd::new(b);
        while let Some((n, f)) = rd.field()? {
            match (n, f) {
                (1, Field::Len(s)) if resource.is_none() => resource = Some(s),
                (2, Field::Len(s)) => scopes.push(scope(s)?),
                (3, Field::Len(s)) => schema_url = utf8(s)?,
                (1..=3, _) => return Err(Malformed),
                _ => {}
            }
        }
        let resource = match resource {
            Some(r) => Some(Cow::Owned(Resource::decode(r).map_err(|_| Malformed)?)),
            None => None,
        };
        Ok(ResourceView {
            resource,
            schema_url: Cow::Borrowed(schema_url),
            scopes: Scopes::Wire(scopes),
        })
    }

    /// The resource's attributes (empty without a resource).
    pub fn attributes(&self) -> &[super::KeyValue] {
        self.resource
            .as_deref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[])
    }

    pub fn scopes(&self) -> impl Iterator<Item = ScopeView<'_>> {
        let (owned, wire): (&[ScopeLogs], &[WireScope<'_>]) = match &self.scopes {
            Scopes::Owned(v) => (v, &[]),
            Scopes::Decoded(v) => (v, &[]),
            Scopes::Wire(v) => (&[], v),
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
                records: Records::Wire(w.bytes),
            }))
    }
}

fn utf8(b: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(b).map_err(|_| Malformed)
}

/// Checks a `ScopeLogs` message (records included) and decodes its scope.
fn scope(b: &[u8]) -> Result<WireScope<'_>, Malformed> {
    let mut scope: Option<&[u8]> = None;
    let mut schema_url = "";
    let mut rd = Rd::new(b);
    while let Some((n, f)) = rd.field()? {
        match (n, f) {
            (1, Field::Len(s)) if scope.is_none() => scope = Some(s),
            (2, Field::Len(s)) => check_log(s)?,
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
        bytes: b,
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
    /// A `ScopeLogs` message (`repeated LogRecord log_records = 2`), checked.
    Wire(&'a [u8]),
}

impl<'a> Records<'a> {
    pub fn iter(self) -> impl Iterator<Item = LogView<'a>> {
        let (owned, wire) = match self {
            Records::Owned(v) => (Some(v.iter()), None),
            Records::Wire(b) => (None, Some(Rd::new(b))),
        };
        owned.into_iter().flatten().map(LogView::from_owned).chain(
            wire.into_iter()
                .flatten()
                .filter_map(|(n, f)| match (n, f) {
                    (2, Field::Len(s)) => Some(LogView::from_wire(s)),
                    _ => None,
                }),
        )
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
                resource: rv.resource.map(Cow::into_owned),
                scope_logs,
                schema_url: rv.schema_url.into_owned(),
            });
        }
    }
    (Batch::Logs(out), view.dropped)
}
