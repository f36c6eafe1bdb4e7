//! A shallow, allocation-free scan of serialized OTLP export requests: the validation and
//! counting the forwarding fast path does instead of decoding (see [`super::raw`]).
//!
//! An export request is `repeated ResourceSpans|ResourceLogs|ResourceMetrics = 1`. The scan
//! walks the request, the resource messages, the scope messages and the items (spans, log
//! records, metrics and their data messages) field by field and checks, at those levels:
//! - varints are at most 10 bytes and fit in 64 bits, field numbers are not 0, wire types
//!   are 0, 1, 2, 5 or a balanced group (3/4), and every length fits in what is left;
//! - known fields carry the wire type of the schema (a span's `trace_id` is length-delimited,
//!   its `kind` a varint, ...), as prost's decoder would insist;
//! - ids have the lengths OTLP requires (the checks of `Batch::validate_ids`): span
//!   `trace_id` 16 bytes, `span_id` 8, `parent_span_id` empty or 8, link ids 16/8, log
//!   record `trace_id` empty or 16 and `span_id` empty or 8.
//!
//! It does **not** look inside: `Resource`, `InstrumentationScope`, attributes
//! (`KeyValue`/`AnyValue`), span events, status, log bodies, data points and exemplars are
//! only length-checked as opaque fields, and no string is checked for UTF-8. A request that
//! passes the scan can therefore still fail a full decode; the fast path forwards it as
//! received and leaves that check to whoever decodes it (a content processor or exporter in
//! weft materializes the batch and reports the decode error then).
//!
//! Counts: spans, log records or metric data points (a metric's points are counted in its
//! last data field, as prost keeps the last `oneof` member), and resource messages.

use crate::data::Signal;

/// Why bytes are not a well-formed export request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated or overlong varint at byte {0}")]
    Varint(usize),
    #[error("field number 0 at byte {0}")]
    FieldZero(usize),
    #[error("invalid wire type {wire_type} at byte {at}")]
    WireType { wire_type: u8, at: usize },
    #[error("length {len} at byte {at} exceeds the {left} bytes left")]
    Length { len: u64, at: usize, left: usize },
    #[error("truncated fixed-width field at byte {0}")]
    Fixed(usize),
    #[error("unbalanced or too deeply nested group at byte {0}")]
    Group(usize),
    #[error("{message}.{field}: wire type {got}, expected {expected}")]
    Schema {
        message: &'static str,
        field: u32,
        got: u8,
        expected: u8,
    },
    #[error("{field} must be {len} bytes ({} hex characters), got {got} bytes", len * 2)]
    IdLength {
        field: &'static str,
        len: usize,
        got: usize,
    },
}

/// Errors are boxed inside the scan: the hot functions then return a small `Result`.
pub(crate) type Res<T> = Result<T, Box<WireError>>;

pub(crate) const VARINT: u8 = 0;
pub(crate) const I64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const SGROUP: u8 = 3;
pub(crate) const EGROUP: u8 = 4;
pub(crate) const I32: u8 = 5;

/// One field of a message; `Len` carries the payload and its absolute offset.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    Scalar,
    Len(&'a [u8], usize),
}

/// Reads the varint at `*pos` and advances past it: at most 10 bytes, the tenth carrying
/// only the 64th bit (prost's rule). `None` when truncated or overlong (`*pos` is then
/// somewhere inside it). The one varint reader of the crate's wire code (the scan, the
/// `attributes` wire path and the log views).
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    // One-byte varints (tags, small lengths) are the common case.
    let b = *buf.get(*pos)?;
    *pos += 1;
    if b < 0x80 {
        return Some(u64::from(b));
    }
    let mut v = u64::from(b & 0x7f);
    for i in 1..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
    /// Offset of `buf` in the whole request (for error positions).
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Reader<'a> {
        Reader { buf, pos: 0, base }
    }

    fn at(&self) -> usize {
        self.base + self.pos
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Res<u64> {
        let start = self.at();
        read_varint(self.buf, &mut self.pos).ok_or_else(|| Box::new(WireError::Varint(start)))
    }

    #[inline(always)]
    pub(crate) fn skip(&mut self, n: usize) -> Res<()> {
        if self.buf.len() - self.pos < n {
            return Err(Box::new(WireError::Fixed(self.at())));
        }
        self.pos += n;
        Ok(())
    }

    /// The next field: `(number, wire type, value)`, or `None` at the end.
    #[inline(always)]
    pub(crate) fn field(&mut self) -> Res<Option<(u32, u8, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.at();
        let key = self.varint()?;
        let (number, wt) = Self::split_key(key, at)?;
        let value = match wt {
            VARINT => {
                self.varint()?;
                Value::Scalar
            }
            I64 => {
                self.skip(8)?;
                Value::Scalar
            }
            I32 => {
                self.skip(4)?;
                Value::Scalar
            }
            LEN => {
                let len_at = self.at();
                let len = self.varint()?;
                let left = self.buf.len() - self.pos;
                if len > left as u64 {
                    return Err(Box::new(WireError::Length {
                        len,
                        at: len_at,
                        left,
                    }));
                }
                let start = self.pos;
                self.pos += len as usize;
                Value::Len(&self.buf[start..self.pos], self.base + start)
            }
            SGROUP => {
                self.skip_group(number, 1)?;
                Value::Scalar
            }
            // An end-group without its start.
            _ => return Err(Box::new(WireError::Group(at))),
        };
        Ok(Some((number, wt, value)))
    }

    #[inline(always)]
    pub(crate) fn split_key(key: u64, at: usize) -> Res<(u32, u8)> {
        let wt = (key & 7) as u8;
        if wt > I32 {
            return Err(Box::new(WireError::WireType { wire_type: wt, at }));
        }
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(Box::new(WireError::FieldZero(at)));
        }
        Ok((number as u32, wt))
    }

    /// Skips a (deprecated, but valid) group up to its matching end tag.
    pub(crate) fn skip_group(&mut self, number: u32, depth: u32) -> Res<()> {
        if depth > 100 {
            return Err(Box::new(WireError::Group(self.at())));
        }
        loop {
            if self.pos >= self.buf.len() {
                return Err(Box::new(WireError::Group(self.at())));
            }
            let at = self.at();
            let key = self.varint()?;
            let (n, wt) = Self::split_key(key, at)?;
            match wt {
                EGROUP if n == number => return Ok(()),
                EGROUP => return Err(Box::new(WireError::Group(at))),
                SGROUP => self.skip_group(n, depth + 1)?,
                VARINT => {
                    self.varint()?;
                }
                I64 => self.skip(8)?,
                I32 => self.skip(4)?,
                _ => {
                    let len = self.varint()?;
                    let left = self.buf.len() - self.pos;
                    if len > left as u64 {
                        return Err(Box::new(WireError::Length { len, at, left }));
                    }
                    self.pos += len as usize;
                }
            }
        }
    }
}

/// The messages the scan walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Request,
    Resource,
    Scope,
    Span,
    Link,
    LogRecord,
    Metric,
    MetricData,
}

impl Msg {
    fn name(self) -> &'static str {
        match self {
            Msg::Request => "Export*ServiceRequest",
            Msg::Resource => "Resource{Spans,Logs,Metrics}",
            Msg::Scope => "Scope{Spans,Logs,Metrics}",
            Msg::Span => "Span",
            Msg::Link => "Span.Link",
            Msg::LogRecord => "LogRecord",
            Msg::Metric => "Metric",
            Msg::MetricData => "Metric data",
        }
    }

    /// The wire type a field must have (`None`: unknown field, skipped as prost does).
    #[inline]
    fn schema(self, field: u32) -> Option<u8> {
        match (self, field) {
            (Msg::Request, 1) => Some(LEN),
            (Msg::Resource | Msg::Scope, 1..=3) => Some(LEN),
            (Msg::Span, 1..=5 | 9 | 11 | 13 | 15) => Some(LEN),
            (Msg::Span, 6 | 10 | 12 | 14) => Some(VARINT),
            (Msg::Span, 7 | 8) => Some(I64),
            (Msg::Span, 16) => Some(I32),
            (Msg::Link, 1..=4) => Some(LEN),
            (Msg::Link, 5) => Some(VARINT),
            (Msg::Link, 6) => Some(I32),
            (Msg::LogRecord, 1 | 11) => Some(I64),
            (Msg::LogRecord, 2 | 7) => Some(VARINT),
            (Msg::LogRecord, 3 | 5 | 6 | 9 | 10 | 12) => Some(LEN),
            (Msg::LogRecord, 8) => Some(I32),
            (Msg::Metric, 1..=3 | 5 | 7 | 9..=12) => Some(LEN),
            (Msg::MetricData, 1) => Some(LEN),
            (Msg::MetricData, 2 | 3) => Some(VARINT),
            _ => None,
        }
    }
}

/// Checks a known field's wire type.
#[inline]
fn expect(message: Msg, field: u32, got: u8, expected: u8) -> Res<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Box::new(WireError::Schema {
            message: message.name(),
            field,
            got,
            expected,
        }))
    }
}

/// Walks one message, checking known wire types; `f` sees every known field.
#[inline]
fn walk<'a>(
    message: Msg,
    buf: &'a [u8],
    base: usize,
    mut f: impl FnMut(u32, Value<'a>) -> Res<()>,
) -> Res<()> {
    let mut r = Reader::new(buf, base);
    while let Some((number, wt, value)) = r.field()? {
        if let Some(expected) = message.schema(number) {
            expect(message, number, wt, expected)?;
            f(number, value)?;
        }
    }
    Ok(())
}

fn id_len(field: &'static str, got: usize, len: usize, may_be_empty: bool) -> Res<()> {
    if got == len || (may_be_empty && got == 0) {
        Ok(())
    } else {
        Err(Box::new(WireError::IdLength { field, len, got }))
    }
}

fn len_of(v: Value<'_>) -> usize {
    match v {
        Value::Len(b, _) => b.len(),
        Value::Scalar => 0,
    }
}

/// A span: the common shape is checked by [`span_common`]; anything else (and every
/// error, so that it is named) by the general walk.
#[inline]
fn span(buf: &[u8], base: usize) -> Res<()> {
    if span_common(buf) {
        return Ok(());
    }
    span_walk(buf, base)
}

/// The scan's hot loop (a request holds hundreds of spans): accepts a span whose fields are
/// all known, carry their schema's wire type and have their shortest tags, and whose ids
/// have the lengths OTLP requires — exactly what [`span_walk`] accepts for such input.
/// Returns `false` for anything else (links, unknown fields, groups, any error), leaving the
/// verdict to the walk: this only skips the generic machinery for the common case.
#[inline]
fn span_common(buf: &[u8]) -> bool {
    let varint = read_varint;
    let (mut trace, mut span, mut parent) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < buf.len() {
        let key = buf[i];
        i += 1;
        match (key >> 3, key & 7) {
            // 13 (links) is left to the walk.
            (f @ (1..=5 | 9 | 11 | 15), LEN) => {
                let Some(len) = varint(buf, &mut i) else {
                    return false;
                };
                if len > (buf.len() - i) as u64 {
                    return false;
                }
                let len = len as usize;
                match f {
                    1 => trace = len,
                    2 => span = len,
                    4 => parent = len,
                    _ => {}
                }
                i += len;
            }
            (6 | 10 | 12 | 14, VARINT) => {
                if varint(buf, &mut i).is_none() {
                    return false;
                }
            }
            (7 | 8, I64) => {
                if buf.len() - i < 8 {
                    return false;
                }
                i += 8;
            }
            // `flags` (16, fixed32: recent SDKs set it on every span) has the two-byte tag
            // 0x85 0x01.
            (16, I32) if buf.get(i) == Some(&0x01) => {
                if buf.len() - i < 5 {
                    return false;
                }
                i += 5;
            }
            // Other multi-byte tags (their first byte lands here), unknown fields, wrong
            // wire types.
            _ => return false,
        }
    }
    trace == 16 && span == 8 && (parent == 0 || parent == 8)
}

fn span_walk(buf: &[u8], base: usize) -> Res<()> {
    let (mut trace, mut span, mut parent) = (0, 0, 0);
    walk(Msg::Span, buf, base, |n, v| {
        match (n, v) {
            (1, v) => trace = len_of(v),
            (2, v) => span = len_of(v),
            (4, v) => parent = len_of(v),
            (13, Value::Len(b, at)) => {
                let (mut lt, mut ls) = (0, 0);
                walk(Msg::Link, b, at, |n, v| {
                    match n {
                        1 => lt = len_of(v),
                        2 => ls = len_of(v),
                        _ => {}
                    }
                    Ok(())
                })?;
                id_len("links.trace_id", lt, 16, false)?;
                id_len("links.span_id", ls, 8, false)?;
            }
            _ => {}
        }
        Ok(())
    })?;
    id_len("trace_id", trace, 16, false)?;
    id_len("span_id", span, 8, false)?;
    id_len("parent_span_id", parent, 8, true)
}

fn log_record(buf: &[u8], base: usize) -> Res<()> {
    let (mut trace, mut span) = (0, 0);
    walk(Msg::LogRecord, buf, base, |n, v| {
        match n {
            9 => trace = len_of(v),
            10 => span = len_of(v),
            _ => {}
        }
        Ok(())
    })?;
    id_len("trace_id", trace, 16, true)?;
    id_len("span_id", span, 8, true)
}

/// Data points of one metric.
fn metric(buf: &[u8], base: usize) -> Res<usize> {
    let mut kind = 0;
    let mut points = 0;
    walk(Msg::Metric, buf, base, |n, v| {
        if let (5 | 7 | 9 | 10 | 11, Value::Len(b, at)) = (n, v) {
            let mut p = 0;
            walk(Msg::MetricData, b, at, |n, _| {
                if n == 1 {
                    p += 1;
                }
                Ok(())
            })?;
            // prost merges a repeated oneof member of the same kind and replaces another.
            points = if kind == n { points + p } else { p };
            kind = n;
        }
        Ok(())
    })?;
    Ok(points)
}

/// Items in one resource message of `signal`.
fn resource(signal: Signal, buf: &[u8], base: usize) -> Res<usize> {
    let mut items = 0;
    walk(Msg::Resource, buf, base, |n, v| {
        let (2, Value::Len(b, at)) = (n, v) else {
            return Ok(());
        };
        walk(Msg::Scope, b, at, |n, v| {
            let (2, Value::Len(b, at)) = (n, v) else {
                return Ok(());
            };
            match signal {
                Signal::Traces => {
                    span(b, at)?;
                    items += 1;
                }
                Signal::Logs => {
                    log_record(b, at)?;
                    items += 1;
                }
                Signal::Metrics => items += metric(b, at)?,
            }
            Ok(())
        })
    })?;
    Ok(items)
}

/// What a scan found in a well-formed request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spans, log records or metric data points.
    pub items: usize,
    /// Resource messages (entries of field 1).
    pub resources: usize,
}

/// Validates and counts a serialized export request of `signal`.
pub fn scan(signal: Signal, buf: &[u8]) -> Result<Counts, WireError> {
    let mut c = Counts::default();
    for r in resources(signal, buf) {
        let r = r?;
        c.items += r.items;
        c.resources += 1;
    }
    Ok(c)
}

/// One resource message of a request: where it ends (the offset just past it, a valid
/// cut point) and how many items it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceEntry {
    pub end: usize,
    pub items: usize,
}

/// The resource messages of a request, validated one by one.
pub fn resources(signal: Signal, buf: &[u8]) -> Resources<'_> {
    Resources {
        signal,
        reader: Reader::new(buf, 0),
        failed: false,
    }
}

pub struct Resources<'a> {
    signal: Signal,
    reader: Reader<'a>,
    failed: bool,
}

impl Iterator for Resources<'_> {
    type Item = Result<ResourceEntry, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let field = match self.reader.field() {
                Ok(f) => f?,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(*e));
                }
            };
            let (number, wt, value) = field;
            if number != 1 {
                continue; // unknown top-level field: skipped, as prost does
            }
            let r = expect(Msg::Request, 1, wt, LEN).and_then(|()| match value {
                Value::Len(b, at) => resource(self.signal, b, at),
                Value::Scalar => Ok(0),
            });
            return Some(match r {
                Ok(items) => Ok(ResourceEntry {
                    end: self.reader.pos,
                    items,
                }),
                Err(e) => {
                    self.failed = true;
                    Err(*e)
                }
            });
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
pub(crate) mod tests;
