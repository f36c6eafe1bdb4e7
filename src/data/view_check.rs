//! Checking raw log records, and reading them in the same walk: what makes a raw resource
//! safe to hand out as views ([`super::view_logs`]) without a second pass over its bytes.
//!
//! `read_log` walks a `LogRecord` message once: it checks every field the views read
//! (known fields with their wire types, UTF-8 where prost wants a `String`, nested values)
//! and returns the record's [`LogView`] with its scalar fields, body and string slices
//! already read, its attributes appended to an arena as [`WireKv`]s (key and value read,
//! the message's bytes kept for the rare paths that decode with prost). A record that
//! reads fails the check, and the caller decodes its whole resource with prost instead.
//! What the walk returns is what `LogView::from_wire` / [`KvRef::from_wire`] read from the
//! same bytes, which is what prost decodes (the tests hold all three to it).
//!
//! Nested arrays and key/value lists are checked in full here but read lazily, as wire
//! views ([`super::view::Values`], [`Attrs::Wire`]), by whoever writes them (rare: the
//! second reading of their bytes is left there).

use super::view::{AnyRef, Attrs, Field, KvRef, LogView, Malformed, Rd, Values};

/// Nesting deeper than this is left to prost (which allows 100 levels in all).
const MAX_DEPTH: u32 = 32;

/// One attribute of a checked record: as read, and its `KeyValue` message's bytes.
#[derive(Clone, Copy, Debug)]
pub struct WireKv<'a> {
    pub kv: KvRef<'a>,
    pub raw: &'a [u8],
}

/// The text of a string field, or `Malformed` if it is not UTF-8.
#[inline]
pub(crate) fn utf8(b: &[u8]) -> Result<&str, Malformed> {
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8. Why: attribute keys and values are short and
        // almost always ASCII; `is_ascii` (word at a time) then no second check is about
        // twice as fast as `from_utf8` on 4-40 byte strings (measured: 4.1 vs 8.5 ns a
        // call), and this runs for ~20 strings of every record of a raw batch.
        return Ok(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).map_err(|_| Malformed)
}

/// Checks and reads an `AnyValue` message: known fields with their wire types, UTF-8,
/// nested values; more than one value field (prost would merge or replace) is left to
/// prost. `None`: no value set.
pub(crate) fn check_any(b: &[u8], depth: u32) -> Result<Option<AnyRef<'_>>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let mut rd = Rd::new(b);
    let mut v = None;
    while let Some((n, f)) = rd.field()? {
        if !(1..=8).contains(&n) {
            continue;
        }
        if v.is_some() {
            return Err(Malformed);
        }
        v = Some(match (n, f) {
            (1, Field::Len(s)) => AnyRef::Str(utf8(s)?),
            (2, Field::Varint(x)) => AnyRef::Bool(x != 0),
            (3, Field::Varint(x)) => AnyRef::Int(x as i64),
            (4, Field::I64(x)) => AnyRef::Double(f64::from_bits(x)),
            (5, Field::Len(s)) => {
                check_list(s, depth, |b, d| check_any(b, d).map(drop))?;
                AnyRef::Array(Values::Wire(s))
            }
            (6, Field::Len(s)) => {
                check_list(s, depth, |b, d| check_kv(b, d).map(drop))?;
                AnyRef::Kvlist(Attrs::Wire(s, 1))
            }
            (7, Field::Len(s)) => AnyRef::Bytes(s),
            (8, Field::Varint(_)) => AnyRef::Other,
            _ => return Err(Malformed),
        });
    }
    Ok(v)
}

/// `repeated <message> = 1` (ArrayValue, KeyValueList).
fn check_list(
    b: &[u8],
    depth: u32,
    item: impl Fn(&[u8], u32) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    let mut rd = Rd::new(b);
    while let Some((n, f)) = rd.field()? {
        match (n, f) {
            (1, Field::Len(s)) => item(s, depth + 1)?,
            (1, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(())
}

/// Checks and reads a `KeyValue` message (the last key, as prost keeps it; a second value
/// is left to prost). (Inlined: its result is built in registers, not returned through
/// memory to the record walk.)
#[inline(always)]
pub(crate) fn check_kv(b: &[u8], depth: u32) -> Result<KvRef<'_>, Malformed> {
    match string_kv(b) {
        // (At the deepest level the walk refuses the value: it decides.)
        Some((key, value)) if depth < MAX_DEPTH => Ok(KvRef {
            key: utf8(key)?,
            value: Some(AnyRef::Str(utf8(value)?)),
        }),
        _ => check_kv_walk(b, depth),
    }
}

/// The common attribute's exact bytes, `KeyValue{key, value: AnyValue{string_value}}` with
/// one-byte lengths (`0a kl key 12 vl 0a sl str`, vl = sl + 2): its key and string, not
/// yet checked for UTF-8. `None` for any other layout (the general walk reads those).
#[inline(always)]
fn string_kv(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let [0x0a, kl, rest @ ..] = b else {
        return None;
    };
    if *kl >= 0x80 {
        return None;
    }
    let (key, rest) = rest.split_at_checked(usize::from(*kl))?;
    match rest {
        [0x12, vl, 0x0a, sl, s @ ..]
            if *vl < 0x80
                && usize::from(*sl) + 2 == usize::from(*vl)
                && s.len() == usize::from(*sl) =>
        {
            Some((key, s))
        }
        _ => None,
    }
}

/// [`check_kv`] field by field.
#[inline(never)]
fn check_kv_walk(b: &[u8], depth: u32) -> Result<KvRef<'_>, Malformed> {
    let mut rd = Rd::new(b);
    let mut kv = KvRef {
        key: "",
        value: None,
    };
    let mut value = false;
    while let Some((n, f)) = rd.field()? {
        match (n, f) {
            (1, Field::Len(s)) => kv.key = utf8(s)?,
            (2, Field::Len(s)) if !value => {
                value = true;
                kv.value = check_any(s, depth + 1)?;
            }
            (3, Field::Varint(_)) => {}
            (1..=3, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(kv)
}

/// Checks and reads a `LogRecord` message in one walk; its attributes are appended to
/// `kvs` (the view's own `attributes` stay a wire view of the record, which reads the
/// same).
pub(crate) fn read_log<'a>(
    b: &'a [u8],
    kvs: &mut Vec<WireKv<'a>>,
) -> Result<LogView<'a>, Malformed> {
    let mut v = LogView::from_wire_unread(b);
    let mut body = false;
    let mut rd = Rd::new(b);
    while let Some((n, f)) = rd.field()? {
        match (n, f) {
            (1, Field::I64(x)) => v.time_unix_nano = x,
            (11, Field::I64(x)) => v.observed_time_unix_nano = x,
            (2, Field::Varint(x)) => v.severity_number = x as i32,
            (7, Field::Varint(x)) => v.dropped_attributes_count = x as u32,
            (8, Field::I32(x)) => v.flags = x,
            (9, Field::Len(s)) => v.trace_id = s,
            (10, Field::Len(s)) => v.span_id = s,
            (3, Field::Len(s)) => v.severity_text = utf8(s)?,
            (12, Field::Len(s)) => v.event_name = utf8(s)?,
            (5, Field::Len(s)) if !body => {
                body = true;
                v.body = check_any(s, 1)?;
            }
            // The common string attribute pushed as built (no `KvRef` merged from the two
            // reads first: that went through the stack).
            (6, Field::Len(s)) => match string_kv(s) {
                Some((key, value)) => kvs.push(WireKv {
                    kv: KvRef {
                        key: utf8(key)?,
                        value: Some(AnyRef::Str(utf8(value)?)),
                    },
                    raw: s,
                }),
                None => kvs.push(WireKv {
                    kv: check_kv_walk(s, 1)?,
                    raw: s,
                }),
            },
            (1..=3 | 5..=12, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(v)
}

/// Checks a `LogRecord` message: everything `LogView::from_wire` and the views of its
/// body and attributes read is well-formed, UTF-8 where prost wants a `String`, and reads
/// as prost would decode it. (The exporters call `read_log`, which checks and reads in
/// one walk; this is the tests' entry.)
#[cfg(test)]
pub fn check_log(b: &[u8]) -> Result<(), Malformed> {
    read_log(b, &mut Vec::new()).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `KeyValue` bytes: the common layout, its near misses, and invalid UTF-8.
    fn kv_bytes(rng: &mut fastrand::Rng) -> Vec<u8> {
        let text = |rng: &mut fastrand::Rng| -> Vec<u8> {
            let n = [0, 1, 24, 125, 126, 127, 128, 300][rng.usize(0..8)];
            let mut t: Vec<u8> = (0..n).map(|_| rng.alphanumeric() as u8).collect();
            if n > 0 && rng.u8(0..8) == 0 {
                t[rng.usize(0..n)] = [0xff, 0xc3, 0x80][rng.usize(0..3)];
            }
            t
        };
        let field = |out: &mut Vec<u8>, tag: u8, b: &[u8]| {
            out.push(tag);
            let mut n = b.len();
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
            out.extend_from_slice(b);
        };
        let mut any = Vec::new();
        match rng.u8(0..4) {
            0 => any.extend_from_slice(&[0x18, 0x05]),
            1 => {}
            _ => field(&mut any, 0x0a, &text(rng)),
        }
        let mut b = Vec::new();
        if rng.u8(0..8) != 0 {
            field(&mut b, 0x0a, &text(rng));
        }
        if rng.u8(0..8) != 0 {
            field(&mut b, 0x12, &any);
        }
        if rng.u8(0..8) == 0 {
            b.extend_from_slice(&[0x18, 0x01]);
        }
        if rng.u8(0..8) == 0 && !b.is_empty() {
            b.truncate(rng.usize(0..b.len()));
        }
        b
    }

    #[test]
    fn the_string_attribute_shortcut_reads_as_the_walk() {
        let mut rng = fastrand::Rng::with_seed(8);
        let mut shortcut = 0;
        for _ in 0..20_000 {
            let b = kv_bytes(&mut rng);
            shortcut += usize::from(string_kv(&b).is_some());
            for depth in [0, 1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
                let got = check_kv(&b, depth).map(|kv| (kv.key, format!("{:?}", kv.value)));
                let want = check_kv_walk(&b, depth).map(|kv| (kv.key, format!("{:?}", kv.value)));
                assert_eq!(got, want, "{b:?} at depth {depth}");
            }
        }
        assert!(shortcut > 2_000, "the shortcut was taken {shortcut} times");
    }
}
