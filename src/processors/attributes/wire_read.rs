//! Reading serialized protobuf below the scanned levels for the `attributes` processor's
//! wire path (see [`super::wire`]): fields of a message with their byte ranges, and an
//! `AnyValue` as the actions and matchers read it — without allocating unless the value
//! is one of the rare encodings prost has to merge.

use std::fmt::Write as _;

use prost::Message;
use sha2::{Digest, Sha256};

use super::matching::{ValueMatch, value_matches};
use crate::data::wire::{I32, I64, LEN, Reader, SGROUP, VARINT};
use crate::data::{AnyValue, any_value};

/// Why an item does not take the borrowed-range path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Its attributes (or a string a match or action reads) cannot be read: the item is
    /// forwarded unchanged and counted.
    Malformed,
    /// Valid but unusual encoding whose merge rules the borrowed path does not model (a
    /// `KeyValue` carrying its value field twice): the item is decoded with prost instead.
    Irregular,
}

pub(super) type Res<T> = Result<T, Stop>;

/// What a field carries; `Len` is the payload's range in the message.
#[derive(Clone, Copy, Debug)]
pub(super) enum FieldValue {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Len(usize, usize),
    Group,
}

/// One field: its number, its whole encoding `start..end` and its value.
#[derive(Clone, Copy, Debug)]
pub(super) struct Field {
    pub number: u32,
    pub start: usize,
    pub end: usize,
    pub value: FieldValue,
}

/// The fields of one message, in wire order (the scan's `Reader` underneath).
pub(super) struct Fields<'a> {
    buf: &'a [u8],
    r: Reader<'a>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields {
            buf,
            r: Reader::new(buf, 0),
        }
    }

    #[inline(always)]
    pub(super) fn next_field(&mut self) -> Res<Option<Field>> {
        let start = self.r.pos;
        if start >= self.buf.len() {
            return Ok(None);
        }
        let bad = |_| Stop::Malformed;
        let key = self.r.varint().map_err(bad)?;
        let (number, wt) = Reader::split_key(key, start).map_err(bad)?;
        // Length-delimited fields are the common case: tested first, so the branch is
        // predicted (a `match` compiles to an indirect jump that often is not).
        let value = if wt == LEN {
            let len = self.r.varint().map_err(bad)?;
            let s = self.r.pos;
            if len > (self.buf.len() - s) as u64 {
                return Err(Stop::Malformed);
            }
            self.r.pos = s + len as usize;
            FieldValue::Len(s, self.r.pos)
        } else if wt == VARINT {
            FieldValue::Varint(self.r.varint().map_err(bad)?)
        } else if wt == I64 {
            let p = self.r.pos;
            let b = self.buf.get(p..p + 8).ok_or(Stop::Malformed)?;
            let mut v = [0u8; 8];
            v.copy_from_slice(b);
            self.r.pos = p + 8;
            FieldValue::Fixed64(u64::from_le_bytes(v))
        } else if wt == I32 {
            self.r.skip(4).map_err(bad)?;
            FieldValue::Fixed32
        } else if wt == SGROUP {
            self.r.skip_group(number, 1).map_err(bad)?;
            FieldValue::Group
        } else {
            return Err(Stop::Malformed);
        };
        Ok(Some(Field {
            number,
            start,
            end: self.r.pos,
            value,
        }))
    }
}

/// The value of an `AnyValue` as the actions and matchers read it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scalar<'a> {
    Nil,
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Bytes, array, map or string-table index.
    Other,
}

/// Reads an `AnyValue` with one member; `None` when it has several (prost merges those:
/// the caller decodes it).
pub(super) fn scalar(buf: &[u8]) -> Res<Option<Scalar<'_>>> {
    let mut found = Scalar::Nil;
    let mut n = 0;
    let mut f = Fields::new(buf);
    while let Some(fd) = f.next_field()? {
        found = match (fd.number, fd.value) {
            (1, FieldValue::Len(s, e)) => Scalar::Str(&buf[s..e]),
            (2, FieldValue::Varint(v)) => Scalar::Bool(v != 0),
            (3, FieldValue::Varint(v)) => Scalar::Int(v as i64),
            (4, FieldValue::Fixed64(v)) => Scalar::Double(f64::from_bits(v)),
            (5..=7, FieldValue::Len(..)) | (8, FieldValue::Varint(_)) => Scalar::Other,
            (1..=8, _) => return Err(Stop::Malformed),
            _ => continue,
        };
        n += 1;
    }
    Ok((n <= 1).then_some(found))
}

pub(super) fn decode_any(buf: &[u8]) -> Res<AnyValue> {
    AnyValue::decode(buf).map_err(|_| Stop::Malformed)
}

pub(super) fn utf8(b: &[u8]) -> Res<&str> {
    std::str::from_utf8(b).map_err(|_| Stop::Malformed)
}

/// The bytes the Collector's hasher digests for a value (`None`: hashes to "").
pub(super) fn digest(v: Scalar<'_>) -> Res<Option<[u8; 32]>> {
    let d = |b: &[u8]| Some(<[u8; 32]>::from(Sha256::digest(b)));
    Ok(match v {
        Scalar::Str(s) if !s.is_empty() => d(utf8(s)?.as_bytes()),
        Scalar::Bool(b) => d(&[u8::from(b)]),
        Scalar::Int(i) => d(&i.to_le_bytes()),
        Scalar::Double(x) => d(&x.to_bits().to_le_bytes()),
        Scalar::Str(_) | Scalar::Nil | Scalar::Other => None,
    })
}

pub(super) fn decoded_scalar(v: &AnyValue) -> Scalar<'_> {
    use any_value::Value as V;
    match &v.value {
        None => Scalar::Nil,
        Some(V::StringValue(s)) => Scalar::Str(s.as_bytes()),
        Some(V::BoolValue(b)) => Scalar::Bool(*b),
        Some(V::IntValue(i)) => Scalar::Int(*i),
        Some(V::DoubleValue(d)) => Scalar::Double(*d),
        Some(_) => Scalar::Other,
    }
}

/// A value match on a borrowed `AnyValue` (`None`: the pair has no value), as
/// [`value_matches`] on the decoded value.
pub(super) fn value_match(m: &ValueMatch, value: Option<&[u8]>, text: &mut String) -> Res<bool> {
    let Some(b) = value else {
        return Ok(value_matches(m, None));
    };
    if let ValueMatch::Any = m {
        return Ok(true);
    }
    let Some(v) = scalar(b)? else {
        return Ok(value_matches(m, Some(&decode_any(b)?)));
    };
    use any_value::Value as V;
    match (m, v) {
        (ValueMatch::Equal(want), v) => Ok(match (&want.value, v) {
            (None, Scalar::Nil) => true,
            (Some(V::StringValue(w)), Scalar::Str(s)) => w.as_bytes() == s,
            (Some(V::BoolValue(w)), Scalar::Bool(x)) => *w == x,
            (Some(V::IntValue(w)), Scalar::Int(x)) => *w == x,
            (Some(V::DoubleValue(w)), Scalar::Double(x)) => *w == x,
            (_, Scalar::Other) => value_matches(m, Some(&decode_any(b)?)),
            _ => false,
        }),
        (ValueMatch::Regexp(re), v) => {
            text.clear();
            let t: &str = match v {
                Scalar::Str(s) => utf8(s)?,
                Scalar::Bool(x) => {
                    if x {
                        "true"
                    } else {
                        "false"
                    }
                }
                Scalar::Int(x) => {
                    let _ = write!(text, "{x}");
                    text
                }
                Scalar::Double(x) => {
                    let _ = write!(text, "{x}");
                    text
                }
                Scalar::Nil | Scalar::Other => return Ok(false),
            };
            Ok(re.is_match(t))
        }
        (ValueMatch::Any, _) => Ok(true),
    }
}
