//! The request context that travels with data through a pipeline: the client's request
//! metadata (HTTP headers / gRPC metadata), as the Collector's `client.Info.Metadata`.
//!
//! A receiver captures it only when its protocol sets `include_metadata: true`; otherwise
//! nothing is captured and nothing is allocated (the context is `None`). The captured
//! metadata is immutable and shared (`Arc`): the fan-out to several pipelines and every
//! processor of a chain see the same value without copying it.
//!
//! Keys are case-insensitive, as `client.Metadata.Get` is: they are stored lower-case and
//! looked up ignoring ASCII case. A key may carry several values (a header repeated, or a
//! gRPC metadata key sent twice); they are kept in the order received. Building it is
//! O(n log n) in the number of headers, so a request with many headers costs no more
//! than its size.
//!
//! Which processors see it is decided by the pipeline (see [`crate::pipeline`]): a processor
//! that holds data and merges requests of different clients drops the context of what it
//! emits (`batch` with `metadata_keys` gives each batch its partition's keys instead).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A client's request metadata, immutable once built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMetadata {
    /// Lower-case key → values in the order received.
    entries: BTreeMap<String, Vec<String>>,
}

impl ClientMetadata {
    /// Builds the metadata from `(key, value)` pairs; keys are folded to lower case and
    /// repeated keys collect their values in order.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> ClientMetadata
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            let k = lower(k.as_ref());
            match entries.get_mut(k.as_ref()) {
                Some(values) => values.push(v.into()),
                None => {
                    entries.insert(k.into_owned(), vec![v.into()]);
                }
            }
        }
        ClientMetadata { entries }
    }

    /// The values of `key` (case-insensitive), or `None` if the client did not send it.
    /// Allocates only for a key with upper-case letters.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.entries
            .get(lower(key).as_ref())
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }

    /// The keys, lower-case, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `key` in lower case, borrowed when it already is (header names always are).
fn lower(key: &str) -> Cow<'_, str> {
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(key.to_ascii_lowercase())
    } else {
        Cow::Borrowed(key)
    }
}

/// What a processor knows about the request its batch came from.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The client's metadata (`None`: not captured, or dropped by a processor that merges
    /// requests, or data released by a deadline or at shutdown).
    pub metadata: Option<Arc<ClientMetadata>>,
}

impl Context {
    /// The empty context (what data released by a processor's deadline or flush carries).
    pub const EMPTY: Context = Context { metadata: None };

    pub fn new(metadata: Option<Arc<ClientMetadata>>) -> Context {
        Context { metadata }
    }

    pub fn metadata(&self) -> Option<&ClientMetadata> {
        self.metadata.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_keeps_every_value_in_order() {
        let md = ClientMetadata::from_pairs([
            ("X-Tenant", "acme"),
            ("x-team", "a"),
            ("X-TEAM", "b"),
            ("content-type", "application/x-protobuf"),
        ]);
        assert_eq!(md.get("x-tenant"), Some(&["acme".to_string()][..]));
        assert_eq!(md.get("X-TENANT"), Some(&["acme".to_string()][..]));
        assert_eq!(
            md.get("X-Team"),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert_eq!(md.get("x-missing"), None);
        assert_eq!(
            md.keys().collect::<Vec<_>>(),
            ["content-type", "x-team", "x-tenant"]
        );
    }

    #[test]
    fn empty_metadata_and_context_find_nothing() {
        let md = ClientMetadata::default();
        assert!(md.is_empty());
        assert_eq!(md.get("x-tenant"), None);
        assert!(Context::EMPTY.metadata().is_none());
        let ctx = Context::new(Some(Arc::new(ClientMetadata::from_pairs([("a", "1")]))));
        assert_eq!(
            ctx.metadata().and_then(|m| m.get("A")),
            Some(&["1".to_string()][..])
        );
    }
}
