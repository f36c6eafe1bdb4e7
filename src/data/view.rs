//! Borrowed views of OTLP log records and values: one read-only shape over either decoded
//! prost messages or the wire bytes of a raw batch ([`super::RawBatch`]), so an exporter
//! writes its output from either with one code path and, for raw batches, without
//! decoding records into owned structs (no allocation per record or attribute).
//!
//! - [`AnyRef`] is an `AnyValue`'s value; arrays and key/value lists are [`Values`] and
//!   [`Attrs`], iterated lazily (over a prost slice or over the bytes of the message).
//! - [`LogView`] is a log record: its scalar fields read in one walk of the record's bytes,
//!   attributes and body as lazy views.
//! - [`super::view_logs`] walks a logs batch resource by resource, validating each raw
//!   resource before anything of it is handed out (see there for malformed input).
//!
//! Field numbers are those of opentelemetry-proto (`LogRecord`: 1 time, 2 severity number,
//! 3 severity text, 5 body, 6 attributes, 7 dropped attributes count, 8 flags, 9 trace id,
//! 10 span id, 11 observed time, 12 event name; `AnyValue`: 1 string, 2 bool, 3 int,
//! 4 double, 5 array, 6 kvlist, 7 bytes, 8 string index; `KeyValue`: 1 key, 2 value).
//! Reading a view never fails: the walkers stop at the first malformed byte, and the
//! validation in [`super::view_check`] (run on a whole resource before its records are
//! viewed, reading each record as it checks it) guarantees there is none, and that every
//! view reads what prost would decode.

use std::borrow::Cow;

use prost::Message;

pub use super::view_check::WireKv;
#[cfg(test)]
pub(crate) use super::view_check::check_any;
#[cfg(test)]
pub use super::view_check::check_log;
use super::{AnyValue, KeyValue, LogRecord, any_value};

/// Malformed or not viewable as is (the caller decodes with prost instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// One field's payload.
#[derive(Clone, Copy, Debug)]
pub enum Field<'a> {
    Varint(u64),
    I64(u64),
    I32(u32),
    Len(&'a [u8]),
}

/// A protobuf field reader over one message's bytes.
#[derive(Clone, Debug)]
pub struct Rd<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    pub fn new(buf: &'a [u8]) -> Rd<'a> {
        Rd { buf, pos: 0 }
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        super::wire::read_varint(self.buf, &mut self.pos)
    }

    /// The next field, `Ok(None)` at the end, `Err` on malformed bytes or a group (groups
    /// are valid protobuf but never OTLP; prost, the fallback, skips them).
    #[inline(always)]
    pub fn field(&mut self) -> Result<Option<(u32, Field<'a>)>, Malformed> {
        let Some(&tag) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        // One-byte tags and lengths are the common case.
        if tag < 0x80
            && tag & 7 == 2
            && tag >= 8
            && let Some(&len) = self.buf.get(self.pos + 1)
            && len < 0x80
        {
            let start = self.pos + 2;
            let end = start + len as usize;
            if end <= self.buf.len() {
                self.pos = end;
                return Ok(Some((
                    u32::from(tag >> 3),
                    Field::Len(&self.buf[start..end]),
                )));
            }
            return Err(Malformed);
        }
        let key = self.varint().ok_or(Malformed)?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(Malformed);
        }
        let f = match key & 7 {
            0 => Field::Varint(self.varint().ok_or(Malformed)?),
            1 => {
                let b = self.buf.get(self.pos..self.pos + 8).ok_or(Malformed)?;
                self.pos += 8;
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                Field::I64(u64::from_le_bytes(w))
            }
            2 => {
                let len = self.varint().ok_or(Malformed)?;
                if len > (self.buf.len() - self.pos) as u64 {
                    return Err(Malformed);
                }
                let start = self.pos;
                self.pos += len as usize;
                Field::Len(&self.buf[start..self.pos])
            }
            5 => {
                let b = self.buf.get(self.pos..self.pos + 4).ok_or(Malformed)?;
                self.pos += 4;
                let mut w = [0u8; 4];
                w.copy_from_slice(b);
                Field::I32(u32::from_le_bytes(w))
            }
            _ => return Err(Malformed),
        };
        Ok(Some((number as u32, f)))
    }
}

impl<'a> Iterator for Rd<'a> {
    type Item = (u32, Field<'a>);
    /// Lenient: ends at the first malformed byte.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        self.field().ok().flatten()
    }
}

/// A string field's text (validated beforehand; empty if it somehow is not UTF-8).
#[inline]
pub(crate) fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// An `AnyValue`'s value.
#[derive(Clone, Copy, Debug)]
pub enum AnyRef<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Values<'a>),
    Kvlist(Attrs<'a>),
    /// `string_value_strindex` (profiles only): written as `null`, as prost's value is.
    Other,
}

impl<'a> AnyRef<'a> {
    pub fn from_value(v: &'a any_value::Value) -> AnyRef<'a> {
        use any_value::Value as V;
        match v {
            V::StringValue(s) => AnyRef::Str(s),
            V::BoolValue(b) => AnyRef::Bool(*b),
            V::IntValue(i) => AnyRef::Int(*i),
            V::DoubleValue(d) => AnyRef::Double(*d),
            V::BytesValue(b) => AnyRef::Bytes(b),
            V::ArrayValue(a) => AnyRef::Array(Values::Owned(&a.values)),
            V::KvlistValue(k) => AnyRef::Kvlist(Attrs::Owned(&k.values)),
            V::StringValueStrindex(_) => AnyRef::Other,
        }
    }

    /// An `AnyValue` (`None`: no value set).
    pub fn from_any(v: Option<&'a AnyValue>) -> Option<AnyRef<'a>> {
        v.and_then(|v| v.value.as_ref()).map(AnyRef::from_value)
    }

    /// An `AnyValue` message's bytes (`None`: no value set).
    #[inline]
    pub fn from_wire(b: &'a [u8]) -> Option<AnyRef<'a>> {
        let mut v = None;
        for (n, f) in Rd::new(b) {
            v = match (n, f) {
                (1, Field::Len(s)) => Some(AnyRef::Str(text(s))),
                (2, Field::Varint(x)) => Some(AnyRef::Bool(x != 0)),
                (3, Field::Varint(x)) => Some(AnyRef::Int(x as i64)),
                (4, Field::I64(x)) => Some(AnyRef::Double(f64::from_bits(x))),
                (5, Field::Len(s)) => Some(AnyRef::Array(Values::Wire(s))),
                (6, Field::Len(s)) => Some(AnyRef::Kvlist(Attrs::Wire(s, 1))),
                (7, Field::Len(s)) => Some(AnyRef::Bytes(s)),
                (8, Field::Varint(_)) => Some(AnyRef::Other),
                _ => continue,
            };
        }
        v
    }

    /// The owned value (for the rare paths that need prost types).
    pub fn to_value(self) -> any_value::Value {
        use any_value::Value as V;
        match self {
            AnyRef::Str(s) => V::StringValue(s.to_string()),
            AnyRef::Bool(b) => V::BoolValue(b),
            AnyRef::Int(i) => V::IntValue(i),
            AnyRef::Double(d) => V::DoubleValue(d),
            AnyRef::Bytes(b) => V::BytesValue(b.to_vec()),
            AnyRef::Array(a) => V::ArrayValue(super::ArrayValue {
                values: a
                    .iter()
                    .map(|v| AnyValue {
                        value: v.map(AnyRef::to_value),
                    })
                    .collect(),
            }),
            AnyRef::Kvlist(k) => V::KvlistValue(super::KeyValueList {
                values: k.to_vec().into_owned(),
            }),
            AnyRef::Other => V::StringValueStrindex(0),
        }
    }
}

/// The elements of an array value.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    Owned(&'a [AnyValue]),
    /// An `ArrayValue` message (`repeated AnyValue values = 1`).
    Wire(&'a [u8]),
}

impl<'a> Values<'a> {
    /// Each element's value (`None`: an element with no value set).
    pub fn iter(self) -> impl Iterator<Item = Option<AnyRef<'a>>> {
        let (owned, wire) = match self {
            Values::Owned(v) => (Some(v.iter()), None),
            Values::Wire(b) => (None, Some(Rd::new(b))),
        };
        owned
            .into_iter()
            .flatten()
            .map(|v| AnyRef::from_any(Some(v)))
            .chain(
                wire.into_iter()
                    .flatten()
                    .filter_map(|(n, f)| match (n, f) {
                        (1, Field::Len(s)) => Some(AnyRef::from_wire(s)),
                        _ => None,
                    }),
            )
    }
}

/// One attribute.
#[derive(Clone, Copy, Debug)]
pub struct KvRef<'a> {
    pub key: &'a str,
    pub value: Option<AnyRef<'a>>,
}

impl<'a> KvRef<'a> {
    pub fn from_owned(kv: &'a KeyValue) -> KvRef<'a> {
        KvRef {
            key: &kv.key,
            value: AnyRef::from_any(kv.value.as_ref()),
        }
    }

    /// A `KeyValue` message's bytes.
    #[inline]
    pub fn from_wire(b: &'a [u8]) -> KvRef<'a> {
        let mut kv = KvRef {
            key: "",
            value: None,
        };
        for (n, f) in Rd::new(b) {
            match (n, f) {
                (1, Field::Len(s)) => kv.key = text(s),
                (2, Field::Len(s)) => kv.value = AnyRef::from_wire(s),
                _ => {}
            }
        }
        kv
    }

    /// The value if it is a string (as [`super::attr_str`] reads it).
    pub fn str_value(&self) -> Option<&'a str> {
        match self.value {
            Some(AnyRef::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// A `KeyValue` message's key (the last, as prost keeps it), unchecked.
fn wire_key(kv: &[u8]) -> &[u8] {
    let mut key: &[u8] = &[];
    for (n, f) in Rd::new(kv) {
        if let (1, Field::Len(s)) = (n, f) {
            key = s;
        }
    }
    key
}

/// A list of attributes: a prost slice, or the `KeyValue` fields numbered `.1` of a
/// message's bytes (a log record's attributes are its field 6, a `KeyValueList`'s field 1).
#[derive(Clone, Copy, Debug)]
pub enum Attrs<'a> {
    Owned(&'a [KeyValue]),
    Wire(&'a [u8], u32),
    /// Read by `view_check::read_log` (a raw record's checked attributes).
    Checked(&'a [WireKv<'a>]),
}

/// The iterator of [`Attrs`].
pub enum AttrIter<'a> {
    Owned(std::slice::Iter<'a, KeyValue>),
    Wire(Rd<'a>, u32),
    Checked(std::slice::Iter<'a, WireKv<'a>>),
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = KvRef<'a>;
    #[inline]
    fn next(&mut self) -> Option<KvRef<'a>> {
        match self {
            AttrIter::Owned(it) => it.next().map(KvRef::from_owned),
            AttrIter::Checked(it) => it.next().map(|w| w.kv),
            AttrIter::Wire(rd, field) => loop {
                match rd.next()? {
                    (n, Field::Len(b)) if n == *field => return Some(KvRef::from_wire(b)),
                    _ => {}
                }
            },
        }
    }
}

impl<'a> Attrs<'a> {
    pub fn iter(self) -> AttrIter<'a> {
        match self {
            Attrs::Owned(v) => AttrIter::Owned(v.iter()),
            Attrs::Wire(b, f) => AttrIter::Wire(Rd::new(b), f),
            Attrs::Checked(v) => AttrIter::Checked(v.iter()),
        }
    }

    /// The first attribute named `key`, if its value is a string ([`super::attr_str`]).
    /// On wire bytes only keys are read until one matches.
    pub fn get_str(self, key: &str) -> Option<&'a str> {
        match self {
            Attrs::Owned(_) | Attrs::Checked(_) => {
                self.iter().find(|kv| kv.key == key)?.str_value()
            }
            Attrs::Wire(b, field) => Rd::new(b)
                .find_map(|(n, f)| match f {
                    Field::Len(s) if n == field && wire_key(s) == key.as_bytes() => Some(s),
                    _ => None,
                })
                .and_then(|s| KvRef::from_wire(s).str_value()),
        }
    }

    /// The attributes' keys (values are not read).
    pub fn keys(self) -> impl Iterator<Item = &'a str> {
        let (owned, checked, wire) = match self {
            Attrs::Owned(v) => (Some(v.iter()), None, None),
            Attrs::Checked(v) => (None, Some(v.iter()), None),
            Attrs::Wire(b, field) => (None, None, Some((Rd::new(b), field))),
        };
        let checked = checked.into_iter().flatten().map(|w| w.kv.key);
        owned
            .into_iter()
            .flatten()
            .map(|kv| kv.key.as_str())
            .chain(checked)
            .chain(
                wire.into_iter()
                    .flat_map(|(rd, field)| rd.map(move |f| (field, f)))
                    .filter_map(|(field, (n, f))| match f {
                        Field::Len(s) if n == field => Some(text(wire_key(s))),
                        _ => None,
                    }),
            )
    }

    /// The attributes as prost values (borrowed when they are).
    pub fn to_vec(self) -> Cow<'a, [KeyValue]> {
        match self {
            Attrs::Owned(v) => Cow::Borrowed(v),
            Attrs::Wire(b, field) => Cow::Owned(
                Rd::new(b)
                    .filter_map(|(n, f)| match f {
                        Field::Len(s) if n == field => KeyValue::decode(s).ok(),
                        _ => None,
                    })
                    .collect(),
            ),
            Attrs::Checked(v) => Cow::Owned(
                v.iter()
                    .filter_map(|w| KeyValue::decode(w.raw).ok())
                    .collect(),
            ),
        }
    }
}

/// A log record.
#[derive(Clone, Copy, Debug)]
pub struct LogView<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    /// The body's value (`None`: no body, or a body with no value set).
    pub body: Option<AnyRef<'a>>,
    pub attributes: Attrs<'a>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
    source: Source<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    Owned(&'a LogRecord),
    Wire(&'a [u8]),
}

impl<'a> LogView<'a> {
    pub fn from_owned(r: &'a LogRecord) -> LogView<'a> {
        LogView {
            time_unix_nano: r.time_unix_nano,
            observed_time_unix_nano: r.observed_time_unix_nano,
            severity_number: r.severity_number,
            severity_text: &r.severity_text,
            body: AnyRef::from_any(r.body.as_ref()),
            attributes: Attrs::Owned(&r.attributes),
            dropped_attributes_count: r.dropped_attributes_count,
            flags: r.flags,
            trace_id: &r.trace_id,
            span_id: &r.span_id,
            event_name: &r.event_name,
            source: Source::Owned(r),
        }
    }

    /// A `LogRecord` message's bytes (checked by [`check_log`] beforehand), read field by
    /// field: the independent reader the tests compare `view_check::read_log`
    /// against (the exporters read records through the check itself).
    #[cfg(test)]
    pub fn from_wire(b: &'a [u8]) -> LogView<'a> {
        let mut v = LogView::from_wire_unread(b);
        for (n, f) in Rd::new(b) {
            match (n, f) {
                (1, Field::I64(x)) => v.time_unix_nano = x,
                (2, Field::Varint(x)) => v.severity_number = x as i32,
                (3, Field::Len(s)) => v.severity_text = text(s),
                (5, Field::Len(s)) => v.body = AnyRef::from_wire(s),
                (7, Field::Varint(x)) => v.dropped_attributes_count = x as u32,
                (8, Field::I32(x)) => v.flags = x,
                (9, Field::Len(s)) => v.trace_id = s,
                (10, Field::Len(s)) => v.span_id = s,
                (11, Field::I64(x)) => v.observed_time_unix_nano = x,
                (12, Field::Len(s)) => v.event_name = text(s),
                _ => {}
            }
        }
        v
    }

    /// A `LogRecord` message's view with nothing read yet (for
    /// `view_check::read_log`, which fills it in).
    pub(crate) fn from_wire_unread(b: &'a [u8]) -> LogView<'a> {
        LogView {
            time_unix_nano: 0,
            observed_time_unix_nano: 0,
            severity_number: 0,
            severity_text: "",
            body: None,
            attributes: Attrs::Wire(b, 6),
            dropped_attributes_count: 0,
            flags: 0,
            trace_id: &[],
            span_id: &[],
            event_name: "",
            source: Source::Wire(b),
        }
    }

    /// The same record with its attributes read from elsewhere (equal to its own).
    pub(crate) fn with_attributes(&self, attributes: Attrs<'a>) -> LogView<'a> {
        LogView {
            attributes,
            ..*self
        }
    }

    /// The record as prost's type (decoded for a wire view: the rare paths only).
    pub fn record(&self) -> Cow<'a, LogRecord> {
        match self.source {
            Source::Owned(r) => Cow::Borrowed(r),
            Source::Wire(b) => Cow::Owned(LogRecord::decode(b).unwrap_or_default()),
        }
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
pub(crate) mod tests;
