//! The item level of the `attributes` processor's wire path (see [`super::wire`]): reads one
//! serialized span or log record, runs the actions on its attribute entries as borrowed
//! byte ranges, and writes the edited item. Nothing here allocates per item in the common
//! case: the entry lists and the hash output live in a [`Scratch`] kept by the processor.

use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};
use regex::Regex;

use super::actions::{Action, Actions, Source, context_value};
use super::matching::{Matcher, kind_name};
use super::wire_read::{
    FieldValue, Fields, Res, Stop, decode_any, decoded_scalar, digest, scalar, utf8, value_match,
};
use crate::data::Signal;
use crate::pipeline::ClientMetadata;

/// One attribute entry (`KeyValue`) of an item; offsets in the item's bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Kv {
    /// The whole field (tag, length, payload).
    field: (usize, usize),
    payload: (usize, usize),
    key: (usize, usize),
    /// The value field (whole) and its payload (the `AnyValue`).
    value: Option<((usize, usize), (usize, usize))>,
}

impl Kv {
    fn field_len(&self) -> usize {
        self.field.1 - self.field.0
    }

    /// Payload bytes other than the value field (key, `key_strindex`, unknown fields).
    fn rest_len(&self) -> usize {
        let v = self.value.map_or(0, |((s, e), _)| e - s);
        self.payload.1 - self.payload.0 - v
    }
}

/// Where the bytes of a key or a value are.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// In the item.
    Item(usize, usize),
    /// Action `i`'s key.
    Key(usize),
    /// Action `i`'s encoded value.
    Value(usize),
    /// In the scratch buffer (hash results).
    Scratch(usize, usize),
    /// An empty `AnyValue` (copied from an attribute that has no value).
    Empty,
}

/// One attribute of the edited list.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The original entry it started as (its other fields are kept when it is rewritten).
    kv: Option<usize>,
    /// Still byte for byte the original entry.
    unchanged: bool,
    /// The key's length (compared before the bytes).
    key_len: usize,
    key: Src,
    value: Option<Src>,
}

/// Buffers reused from item to item.
#[derive(Default)]
pub(super) struct Scratch {
    kvs: Vec<Kv>,
    list: Vec<Entry>,
    buf: Vec<u8>,
    text: String,
}

/// What the matchers read of an item besides its attributes.
#[derive(Clone, Copy, Debug, Default)]
struct ItemInfo {
    /// Span name or log severity text.
    text: (usize, usize),
    /// Span kind or log severity number.
    number: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Insert,
    Update,
    Upsert,
}

/// An action as the wire path runs it.
#[derive(Debug)]
pub(super) enum WireAction {
    Set {
        mode: Mode,
        key: String,
        /// The configured value, encoded (`None`: `from_attribute`); for `from_context`,
        /// the current request's value (`None`: the request does not carry the key).
        value: Option<Vec<u8>>,
        from: String,
        /// The metadata key of `from_context`.
        context: Option<String>,
    },
    Delete(Option<String>, Option<Regex>),
    Hash(Option<String>, Option<Regex>),
}

/// The wire form of the actions, or `None` if one of them needs the decoded path
/// (`extract`, `convert`).
pub(super) fn compile(actions: &Actions) -> Option<Vec<WireAction>> {
    let set = |mode, key: &String, source: &Source| {
        let (value, from, context) = match source {
            Source::Value(v) => (Some(v.encode_to_vec()), String::new(), None),
            Source::FromAttribute(k) => (None, k.clone(), None),
            Source::FromContext(k) => (None, String::new(), Some(k.clone())),
        };
        WireAction::Set {
            mode,
            key: key.clone(),
            value,
            from,
            context,
        }
    };
    actions
        .list()
        .iter()
        .map(|a| match a {
            Action::Insert(k, s) => Some(set(Mode::Insert, k, s)),
            Action::Update(k, s) => Some(set(Mode::Update, k, s)),
            Action::Upsert(k, s) => Some(set(Mode::Upsert, k, s)),
            Action::Delete(k, re) => Some(WireAction::Delete(k.clone(), re.clone())),
            Action::Hash(k, re) => Some(WireAction::Hash(k.clone(), re.clone())),
            Action::Extract(..) | Action::Convert(..) => None,
        })
        .collect()
}

/// A `KeyValue`'s key and value. A repeated key is replaced (prost's rule for strings);
/// a repeated value would be merged, which only prost does.
fn parse_kv(item: &[u8], field: (usize, usize), payload: (usize, usize)) -> Res<Kv> {
    let buf = &item[payload.0..payload.1];
    let base = payload.0;
    let mut kv = Kv {
        field,
        payload,
        key: (base, base),
        value: None,
    };
    // The usual encoding, key then value with one-byte lengths, read without the loop.
    if let [0x0a, kl, rest @ ..] = buf
        && *kl < 0x80
        && let Some(after) = rest.get(usize::from(*kl)..)
    {
        let key = (base + 2, base + 2 + usize::from(*kl));
        match after {
            [] => {
                kv.key = key;
                return Ok(kv);
            }
            [0x12, vl, value @ ..] if *vl < 0x80 && usize::from(*vl) == value.len() => {
                kv.key = key;
                kv.value = Some(((key.1, payload.1), (key.1 + 2, payload.1)));
                return Ok(kv);
            }
            _ => {}
        }
    }
    let mut f = Fields::new(buf);
    while let Some(fd) = f.next_field()? {
        match (fd.number, fd.value) {
            (1, FieldValue::Len(s, e)) => kv.key = (base + s, base + e),
            (2, FieldValue::Len(s, e)) => {
                if kv.value.is_some() {
                    return Err(Stop::Irregular);
                }
                kv.value = Some(((base + fd.start, base + fd.end), (base + s, base + e)));
            }
            (3, FieldValue::Varint(_)) => {}
            (1..=3, _) => return Err(Stop::Malformed),
            _ => {}
        }
    }
    Ok(kv)
}

/// The wire path's view of the processor's actions and matchers for one signal.
pub(super) struct Editor {
    pub(super) signal: Signal,
    actions: Vec<WireAction>,
    pub(super) scratch: Scratch,
}

impl Editor {
    pub(super) fn new(signal: Signal, actions: Vec<WireAction>) -> Editor {
        Editor {
            signal,
            actions,
            scratch: Scratch::default(),
        }
    }

    /// Sets the values of the `from_context` actions for the next request (whose client
    /// metadata is `metadata`). Allocates only when such actions exist.
    pub(super) fn bind_context(&mut self, metadata: Option<&ClientMetadata>) {
        for a in &mut self.actions {
            if let WireAction::Set {
                value,
                context: Some(key),
                ..
            } = a
            {
                *value = metadata
                    .and_then(|m| context_value(m, key))
                    .map(|v| v.encode_to_vec());
            }
        }
    }

    /// The attribute field of the item: span field 9, log record field 6.
    fn attr_field(&self) -> u32 {
        if self.signal == Signal::Traces { 9 } else { 6 }
    }

    fn bytes<'b>(&'b self, src: Src, item: &'b [u8]) -> &'b [u8] {
        let empty: &[u8] = &[];
        match src {
            Src::Item(s, e) => item.get(s..e).unwrap_or(empty),
            Src::Scratch(s, e) => self.scratch.buf.get(s..e).unwrap_or(empty),
            Src::Key(i) => match self.actions.get(i) {
                Some(WireAction::Set { key, .. }) => key.as_bytes(),
                _ => empty,
            },
            Src::Value(i) => match self.actions.get(i) {
                Some(WireAction::Set { value: Some(v), .. }) => v,
                _ => empty,
            },
            Src::Empty => empty,
        }
    }

    /// Reads the item's attributes and what the matchers read into the scratch space.
    fn parse(&mut self, item: &[u8]) -> Res<ItemInfo> {
        let attr = self.attr_field();
        let (text_field, number_field) = if self.signal == Signal::Traces {
            (5, 6)
        } else {
            (3, 2)
        };
        let mut info = ItemInfo::default();
        self.scratch.kvs.clear();
        let mut f = Fields::new(item);
        while let Some(fd) = f.next_field()? {
            match fd.value {
                FieldValue::Len(s, e) if fd.number == attr => {
                    let kv = parse_kv(item, (fd.start, fd.end), (s, e))?;
                    self.scratch.kvs.push(kv);
                }
                FieldValue::Len(s, e) if fd.number == text_field => info.text = (s, e),
                FieldValue::Varint(v) if fd.number == number_field => info.number = v as i32,
                _ if fd.number == attr => return Err(Stop::Malformed),
                _ => {}
            }
        }
        Ok(info)
    }

    /// Whether `m` matches the item's own properties (the scope-level part was checked).
    fn item_matches(&mut self, m: &Matcher, item: &[u8], info: ItemInfo) -> Res<bool> {
        let text = || utf8(item.get(info.text.0..info.text.1).unwrap_or(&[]));
        if self.signal == Signal::Traces {
            if let Some(n) = &m.span_names
                && !n.matches(text()?)
            {
                return Ok(false);
            }
            if let Some(k) = &m.span_kinds
                && !k.matches(kind_name(info.number))
            {
                return Ok(false);
            }
        } else {
            if let Some(t) = &m.log_severity_texts
                && !t.matches(text()?)
            {
                return Ok(false);
            }
            if !m.severity_ok(info.number) {
                return Ok(false);
            }
        }
        for am in &m.attributes {
            let found = self
                .scratch
                .kvs
                .iter()
                .find(|kv| item.get(kv.key.0..kv.key.1) == Some(am.key.as_bytes()));
            let Some(kv) = found else {
                return Ok(false);
            };
            let value = kv.value.and_then(|(_, (s, e))| item.get(s..e));
            if !value_match(&am.value, value, &mut self.scratch.text)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the actions apply to the item: `include` / `exclude` with their scope-level
    /// verdicts.
    fn selected(
        &mut self,
        item: &[u8],
        info: ItemInfo,
        include: Option<(&Matcher, bool)>,
        exclude: Option<(&Matcher, bool)>,
    ) -> Res<bool> {
        if let Some((m, outer)) = include
            && !(outer && self.item_matches(m, item, info)?)
        {
            return Ok(false);
        }
        if let Some((m, true)) = exclude
            && self.item_matches(m, item, info)?
        {
            return Ok(false);
        }
        Ok(true)
    }

    fn find(&self, item: &[u8], key: &[u8]) -> Option<usize> {
        self.scratch
            .list
            .iter()
            .position(|e| e.key_len == key.len() && self.bytes(e.key, item) == key)
    }

    fn key_selected(
        &self,
        item: &[u8],
        e: Entry,
        key: &Option<String>,
        re: &Option<Regex>,
    ) -> Res<bool> {
        let k = self.bytes(e.key, item);
        if key.as_deref().is_some_and(|key| key.as_bytes() == k) {
            return Ok(true);
        }
        match re {
            Some(re) => Ok(re.is_match(utf8(k)?)),
            None => Ok(false),
        }
    }

    /// The SHA-256 a `hash` action puts in place of a value (`None`: "").
    fn digest_of(&self, item: &[u8], value: Option<Src>) -> Res<Option<[u8; 32]>> {
        match value.map(|v| self.bytes(v, item)) {
            None => Ok(None),
            Some(b) => match scalar(b)? {
                Some(s) => digest(s),
                None => digest(decoded_scalar(&decode_any(b)?)),
            },
        }
    }
}

/// Writes a hash result as an encoded `AnyValue` string to the scratch buffer.
fn push_hash(buf: &mut Vec<u8>, d: Option<[u8; 32]>) -> Src {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let start = buf.len();
    buf.push(0x0a); // AnyValue.string_value
    match d {
        None => buf.push(0),
        Some(d) => {
            buf.push(64);
            for b in d {
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 15)]);
            }
        }
    }
    Src::Scratch(start, buf.len())
}

impl Editor {
    /// Runs the actions on the item's attributes; whether anything changed.
    fn apply(&mut self, item: &[u8]) -> Res<bool> {
        let s = &mut self.scratch;
        s.list.clear();
        s.buf.clear();
        s.list.extend(s.kvs.iter().enumerate().map(|(i, kv)| Entry {
            kv: Some(i),
            unchanged: true,
            key_len: kv.key.1 - kv.key.0,
            key: Src::Item(kv.key.0, kv.key.1),
            value: kv.value.map(|(_, (s, e))| Src::Item(s, e)),
        }));
        for ai in 0..self.actions.len() {
            match &self.actions[ai] {
                WireAction::Set {
                    mode,
                    key,
                    value,
                    from,
                    context,
                } => {
                    let v = match value {
                        Some(_) => Src::Value(ai),
                        // The request does not carry the metadata key: nothing to do.
                        None if context.is_some() => continue,
                        None => match self.find(item, from.as_bytes()) {
                            Some(j) => self.scratch.list[j].value.unwrap_or(Src::Empty),
                            None => continue,
                        },
                    };
                    match (self.find(item, key.as_bytes()), mode) {
                        (Some(j), Mode::Update | Mode::Upsert) => {
                            let e = &mut self.scratch.list[j];
                            e.value = Some(v);
                            e.unchanged = false;
                        }
                        (None, Mode::Insert | Mode::Upsert) => self.scratch.list.push(Entry {
                            kv: None,
                            unchanged: false,
                            key_len: key.len(),
                            key: Src::Key(ai),
                            value: Some(v),
                        }),
                        _ => {}
                    }
                }
                WireAction::Delete(key, re) => {
                    let mut kept = 0;
                    for j in 0..self.scratch.list.len() {
                        let e = self.scratch.list[j];
                        if !self.key_selected(item, e, key, re)? {
                            self.scratch.list[kept] = e;
                            kept += 1;
                        }
                    }
                    self.scratch.list.truncate(kept);
                }
                WireAction::Hash(key, re) => {
                    for j in 0..self.scratch.list.len() {
                        let e = self.scratch.list[j];
                        if self.key_selected(item, e, key, re)? {
                            let d = self.digest_of(item, e.value)?;
                            let h = push_hash(&mut self.scratch.buf, d);
                            let e = &mut self.scratch.list[j];
                            e.value = Some(h);
                            e.unchanged = false;
                        }
                    }
                }
            }
        }
        let s = &self.scratch;
        Ok(s.list.len() != s.kvs.len()
            || s.list
                .iter()
                .enumerate()
                .any(|(i, e)| !e.unchanged || e.kv != Some(i)))
    }

    /// Reads, matches and edits one item; `Ok(false)` when it stays as it is. On `Ok(true)`
    /// the edit waits in the scratch space for [`Editor::write`].
    pub(super) fn edit(
        &mut self,
        item: &[u8],
        include: Option<(&Matcher, bool)>,
        exclude: Option<(&Matcher, bool)>,
    ) -> Res<bool> {
        let info = self.parse(item)?;
        if !self.selected(item, info, include, exclude)? {
            return Ok(false);
        }
        self.apply(item)
    }

    /// Encoded length of an edited entry's payload (`KeyValue`), when rewritten.
    fn entry_payload_len(&self, e: &Entry, item: &[u8]) -> usize {
        let base = match e.kv.and_then(|i| self.scratch.kvs.get(i)) {
            Some(kv) => kv.rest_len(),
            None => {
                let k = self.bytes(e.key, item).len();
                1 + encoded_len_varint(k as u64) + k
            }
        };
        let v = e.value.map_or(0, |v| {
            let l = self.bytes(v, item).len();
            1 + encoded_len_varint(l as u64) + l
        });
        base + v
    }

    /// Writes the edited item as field `tag` (tag byte, length, message) to `out`.
    pub(super) fn write(&self, tag: u8, item: &[u8], out: &mut Vec<u8>) {
        let s = &self.scratch;
        let attr_tag = (self.attr_field() << 3 | 2) as u8;
        let old: usize = s.kvs.iter().map(Kv::field_len).sum();
        let new: usize = s
            .list
            .iter()
            .map(|e| match (e.unchanged, e.kv.and_then(|i| s.kvs.get(i))) {
                (true, Some(kv)) => kv.field_len(),
                _ => {
                    let l = self.entry_payload_len(e, item);
                    1 + encoded_len_varint(l as u64) + l
                }
            })
            .sum();
        out.push(tag);
        encode_varint((item.len() - old + new) as u64, out);
        let first = s.kvs.first().map_or(item.len(), |kv| kv.field.0);
        out.extend_from_slice(&item[..first]);
        // Unchanged entries that were adjacent are copied in one go.
        let mut run: Option<(usize, usize)> = None;
        for e in &s.list {
            if let (true, Some(kv)) = (e.unchanged, e.kv.and_then(|i| s.kvs.get(i))) {
                run = match run {
                    Some((a, b)) if b == kv.field.0 => Some((a, kv.field.1)),
                    Some((a, b)) => {
                        out.extend_from_slice(&item[a..b]);
                        Some(kv.field)
                    }
                    None => Some(kv.field),
                };
                continue;
            }
            if let Some((a, b)) = run.take() {
                out.extend_from_slice(&item[a..b]);
            }
            out.push(attr_tag);
            encode_varint(self.entry_payload_len(e, item) as u64, out);
            match e.kv.and_then(|i| s.kvs.get(i)) {
                Some(kv) => match kv.value {
                    Some(((vs, ve), _)) => {
                        out.extend_from_slice(&item[kv.payload.0..vs]);
                        out.extend_from_slice(&item[ve..kv.payload.1]);
                    }
                    None => out.extend_from_slice(&item[kv.payload.0..kv.payload.1]),
                },
                None => {
                    let k = self.bytes(e.key, item);
                    out.push(0x0a);
                    encode_varint(k.len() as u64, out);
                    out.extend_from_slice(k);
                }
            }
            if let Some(v) = e.value {
                let v = self.bytes(v, item);
                out.push(0x12);
                encode_varint(v.len() as u64, out);
                out.extend_from_slice(v);
            }
        }
        if let Some((a, b)) = run {
            out.extend_from_slice(&item[a..b]);
        }
        // The item's other fields, in their order.
        let mut at = first;
        for kv in &s.kvs {
            out.extend_from_slice(&item[at..kv.field.0]);
            at = kv.field.1;
        }
        out.extend_from_slice(&item[at..]);
    }
}
