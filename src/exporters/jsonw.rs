//! A small JSON writer for the exporters' hot paths: appends JSON text straight into a
//! reused `Vec<u8>`, without building `serde_json::Value`s.
//!
//! Its output is byte-for-byte what `serde_json` (without `preserve_order`) prints for the
//! same values: strings escaped as serde_json escapes them (`"`, `\`, `\b \f \n \r \t`,
//! other control characters as `\u00xx`, everything else — non-ASCII included — as is),
//! object keys in byte order with the last of duplicate keys winning (serde_json's `Map` is
//! a `BTreeMap`), floats through serde_json itself (non-finite → `null`). Keeping the exact
//! bytes keeps content-hash document ids stable across encoder versions. Nothing here
//! fails: writing into a `Vec` cannot.

use crate::data::view::{AnyRef, Attrs, KvRef};
use crate::data::{KeyValue, any_value};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 0: no escape; b'u': `\u00xx`; other: the character after the backslash.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Whether any of the 8 bytes of `x` needs escaping (`< 0x20`, `"` or `\`). Exact: the
/// "has a zero byte" / "has a byte less than n" word tricks have no false negatives, and a
/// false positive only sends the chunk through the byte loop.
#[inline]
fn chunk_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let less_than_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    (less_than_space | has_zero(x ^ (ONES * b'"' as u64)) | has_zero(x ^ (ONES * b'\\' as u64)))
        != 0
}

/// The string's characters, escaped, without the surrounding quotes.
pub fn escaped(out: &mut Vec<u8>, s: &str) {
    escaped_bytes(out, s.as_bytes())
}

/// [`escaped`] for UTF-8 held as bytes (bytes from 0x80 up pass through unchanged).
///
/// The common string needs no escape at all: it is scanned a word (8 bytes) at a time,
/// the last word overlapping the one before it (a string shorter than a word is padded
/// with spaces, which need no escape), and then copied in one append. A string with
/// something to escape goes through `escape_from` from the first word that has it.
pub fn escaped_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    let mut words = bytes.chunks_exact(8);
    let mut clean = 0;
    for w in &mut words {
        if chunk_needs_escape(word(w)) {
            break;
        }
        clean += 8;
    }
    if clean == n {
        out.extend_from_slice(bytes);
        return;
    }
    if clean + 8 > n {
        // Only a tail of fewer than 8 bytes is left unchecked.
        let last = if n >= 8 {
            word(&bytes[n - 8..])
        } else {
            short_word(bytes)
        };
        if !chunk_needs_escape(last) {
            out.extend_from_slice(bytes);
            return;
        }
    }
    out.extend_from_slice(&bytes[..clean]);
    escape_from(out, &bytes[clean..]);
}

/// Eight bytes as a word (`w` is at least 8 bytes long).
#[inline]
fn word(w: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&w[..8]);
    u64::from_le_bytes(a)
}

/// The bytes of a string shorter than 8 as a word that has every one of them and is
/// otherwise spaces, which need no escape. Built from overlapping loads, not by copying
/// into a padded buffer: reading that buffer back as a word stalls on the byte stores
/// (store-to-load forwarding fails), which cost more than the check itself.
#[inline]
fn short_word(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        u64::from(lo) | (u64::from(hi) << 32)
    } else if n > 0 {
        // b[0], b[n / 2] and b[n - 1] are all of 1, 2 or 3 bytes.
        u64::from(b[0])
            | (u64::from(b[n / 2]) << 8)
            | (u64::from(b[n - 1]) << 16)
            | 0x2020_2020_2000_0000
    } else {
        0x2020_2020_2020_2020
    }
}

/// The escaping loop for a string that has something to escape in its first word.
fn escape_from(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time; a shorter tail as a word padded with spaces.
        let n = (bytes.len() - i).min(8);
        let w = if n == 8 {
            word(&bytes[i..])
        } else {
            short_word(&bytes[i..])
        };
        if !chunk_needs_escape(w) {
            i += n;
            continue;
        }
        let end = i + n;
        while i < end {
            let b = bytes[i];
            let e = ESCAPE[b as usize];
            if e != 0 {
                out.extend_from_slice(&bytes[start..i]);
                if e == b'u' {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                } else {
                    out.push(b'\\');
                    out.push(e);
                }
                start = i + 1;
            }
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A quoted, escaped JSON string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// Lower-case hex of `bytes`, unquoted.
pub fn hex_into(out: &mut Vec<u8>, bytes: &[u8]) {
    // Trace and span ids: appends of a constant size, which compile to plain stores
    // instead of a call to memcpy.
    if let Ok(id) = <&[u8; 16]>::try_from(bytes) {
        let mut buf = [0u8; 32];
        hex_fill(&mut buf, id);
        out.extend_from_slice(&buf);
        return;
    }
    if let Ok(id) = <&[u8; 8]>::try_from(bytes) {
        let mut buf = [0u8; 16];
        hex_fill(&mut buf, id);
        out.extend_from_slice(&buf);
        return;
    }
    // Up to 32 bytes at a time through a stack buffer: one append each.
    for chunk in bytes.chunks(32) {
        let mut buf = [0u8; 64];
        hex_fill(&mut buf, chunk);
        out.extend_from_slice(&buf[..chunk.len() * 2]);
    }
}

/// Lower-case hex of `bytes` written over `dst` (two characters per byte; `dst` is at
/// least twice as long as `bytes`).
pub fn hex_fill(dst: &mut [u8], bytes: &[u8]) {
    for (pair, b) in dst.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 0xf) as usize];
    }
}

/// A quoted, escaped JSON string from UTF-8 bytes.
pub fn string_bytes(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    escaped_bytes(out, s);
    out.push(b'"');
}

/// A quoted hex string.
pub fn hex_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    hex_into(out, bytes);
    out.push(b'"');
}

/// An unsigned integer in decimal.
pub fn uint(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A signed integer in decimal.
pub fn int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    uint(out, v.unsigned_abs());
}

/// A float as serde_json prints it (`null` when not finite).
pub fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        // Writing into a Vec cannot fail; serde_json formats finite floats with ryu.
        let _ = serde_json::to_writer(&mut *out, &v);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `"key":` (escaped).
pub fn key(out: &mut Vec<u8>, k: &str) {
    string(out, k);
    out.push(b':');
}

/// The value of an attribute: `null` when unset, as `value_to_json` makes it.
pub fn kv_value(out: &mut Vec<u8>, kv: &KeyValue) {
    any_or_null(out, KvRef::from_owned(kv).value)
}

/// An OTLP value as JSON, exactly as `crate::data::value_to_json(v).to_string()`.
pub fn value(out: &mut Vec<u8>, v: &any_value::Value) {
    any(out, AnyRef::from_value(v))
}

/// [`value`] for a borrowed view (decoded or wire).
pub fn any(out: &mut Vec<u8>, v: AnyRef<'_>) {
    match v {
        AnyRef::Str(s) => string(out, s),
        AnyRef::Bool(true) => out.extend_from_slice(b"true"),
        AnyRef::Bool(false) => out.extend_from_slice(b"false"),
        AnyRef::Int(i) => int(out, i),
        AnyRef::Double(d) => float(out, d),
        AnyRef::Bytes(b) => hex_string(out, b),
        AnyRef::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                any_or_null(out, x);
            }
            out.push(b']');
        }
        AnyRef::Kvlist(kvs) => {
            let mut scratch = Vec::new();
            object_view(out, kvs, |_| true, &mut scratch);
        }
        AnyRef::Other => out.extend_from_slice(b"null"),
    }
}

/// A value, or `null` when unset.
pub fn any_or_null(out: &mut Vec<u8>, v: Option<AnyRef<'_>>) {
    match v {
        Some(v) => any(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A value as text, exactly as `crate::data::value_to_string` makes it (strings as they
/// are, bytes as hex, arrays and maps as JSON).
pub fn any_text(out: &mut Vec<u8>, v: AnyRef<'_>) {
    use std::io::Write;
    match v {
        AnyRef::Str(s) => out.extend_from_slice(s.as_bytes()),
        AnyRef::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        AnyRef::Int(i) => int(out, i),
        // Writing into a Vec cannot fail.
        AnyRef::Double(d) => {
            let _ = write!(out, "{d}");
        }
        AnyRef::Bytes(b) => hex_into(out, b),
        other => any(out, other),
    }
}

/// Fills `kept` with the `keep`-ed attributes in key order, one per key (the last
/// occurrence wins, as in a map built by inserting them in turn).
pub fn sorted_unique_view<'a>(
    attrs: Attrs<'a>,
    keep: impl Fn(&KvRef<'a>) -> bool,
    kept: &mut Vec<KvRef<'a>>,
) {
    kept.clear();
    kept.extend(attrs.iter().filter(|kv| keep(kv)));
    if kept.windows(2).all(|w| w[0].key < w[1].key) {
        return;
    }
    // Stable: equal keys keep their input order, so the last of each run is the winner.
    kept.sort_by(|a, b| a.key.cmp(b.key));
    let mut w = 0;
    for r in 0..kept.len() {
        if r + 1 == kept.len() || kept[r].key != kept[r + 1].key {
            kept[w] = kept[r];
            w += 1;
        }
    }
    kept.truncate(w);
}

/// The `keep`-ed attributes as a JSON object (`{}` when none), keys sorted, last duplicate
/// winning. `scratch` is scratch space.
pub fn object_view<'a>(
    out: &mut Vec<u8>,
    attrs: Attrs<'a>,
    keep: impl Fn(&KvRef<'a>) -> bool,
    scratch: &mut Vec<KvRef<'a>>,
) {
    sorted_unique_view(attrs, keep, scratch);
    out.push(b'{');
    for (n, kv) in scratch.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        key(out, kv.key);
        any_or_null(out, kv.value);
    }
    out.push(b'}');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::{AnyValue, ArrayValue, KeyValueList, value_to_json};

    fn s(v: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        v(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hex_is_the_attribute_helpers_hex() {
        let mut rng = fastrand::Rng::with_seed(2);
        for n in [0, 1, 8, 16, 31, 32, 33, 64, 100] {
            let b: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            assert_eq!(s(|o| hex_into(o, &b)), crate::data::hex(&b));
        }
    }

    fn random_string(rng: &mut fastrand::Rng) -> String {
        let n = rng.usize(0..12);
        (0..n)
            .map(|_| match rng.u8(0..6) {
                0 => char::from(rng.u8(0..0x20)),
                1 => ['"', '\\', '/', '\u{7f}'][rng.usize(0..4)],
                2 => ['é', '€', '😀', '\u{2028}', '\u{fffd}'][rng.usize(0..5)],
                _ => rng.alphanumeric(),
            })
            .collect()
    }

    pub(crate) fn random_value(rng: &mut fastrand::Rng, depth: u32) -> any_value::Value {
        use any_value::Value as V;
        match rng.u8(0..if depth > 2 { 5 } else { 7 }) {
            0 => V::StringValue(random_string(rng)),
            1 => V::BoolValue(rng.bool()),
            2 => V::IntValue(rng.i64(..)),
            3 => V::DoubleValue(
                [f64::NAN, f64::INFINITY, -0.0, 1e300, 0.1, 1.5][rng.usize(0..6)]
                    * if rng.bool() { 1.0 } else { rng.f64() },
            ),
            4 => V::BytesValue((0..rng.usize(0..5)).map(|_| rng.u8(..)).collect()),
            5 => V::ArrayValue(ArrayValue {
                values: (0..rng.usize(0..4))
                    .map(|_| AnyValue {
                        value: rng.bool().then(|| random_value(rng, depth + 1)),
                    })
                    .collect(),
            }),
            _ => V::KvlistValue(KeyValueList {
                values: random_attrs(rng, depth + 1),
            }),
        }
    }

    pub(crate) fn random_attrs(rng: &mut fastrand::Rng, depth: u32) -> Vec<KeyValue> {
        (0..rng.usize(0..6))
            .map(|_| KeyValue {
                // Few distinct keys, so duplicates and disorder are common.
                key: if rng.bool() {
                    ["a", "b", "a.b", "B", "é", ""][rng.usize(0..6)].to_string()
                } else {
                    random_string(rng)
                },
                value: rng.bool().then(|| AnyValue {
                    value: Some(random_value(rng, depth)),
                }),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn strings_escape_exactly_like_serde_json() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..5000 {
            let v = random_string(&mut rng);
            let got = s(|o| string(o, &v));
            assert_eq!(got, serde_json::to_string(&v).unwrap());
            assert_eq!(serde_json::from_str::<String>(&got).unwrap(), v);
        }
        let all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        assert_eq!(s(|o| string(o, &all)), serde_json::to_string(&all).unwrap());
        // Every length over four 8-byte steps, with each character that needs an escape
        // (and a space, the tail's padding) at every position: full words and padded tails.
        for len in 0..=33 {
            for at in 0..len {
                for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '\u{7f}', 'é'] {
                    let v: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    assert_eq!(s(|o| string(o, &v)), serde_json::to_string(&v).unwrap());
                }
            }
        }
    }

    #[test]
    fn values_print_exactly_like_value_to_json() {
        let mut rng = fastrand::Rng::with_seed(2);
        for _ in 0..5000 {
            let v = random_value(&mut rng, 0);
            let got = s(|o| value(o, &v));
            assert_eq!(got, value_to_json(&v).to_string(), "{v:?}");
        }
    }

    #[test]
    fn numbers() {
        for v in [0, 1, -1, i64::MIN, i64::MAX, 1234567890] {
            assert_eq!(s(|o| int(o, v)), v.to_string());
        }
        assert_eq!(s(|o| uint(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| float(o, f64::NAN)), "null");
        assert_eq!(s(|o| float(o, 1.0)), "1.0");
    }
}
