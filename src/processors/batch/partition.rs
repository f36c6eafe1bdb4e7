//! `metadata_keys`: the `batch` processor keeps one batcher per distinct combination of
//! the values of the listed client metadata keys (see [`crate::pipeline::context`]), as the
//! Collector's batch processor does, so a batch never mixes clients that differ in them
//! (e.g. tenants). Each batch goes on with a context holding just those keys' values, so a
//! `from_context` processor after `batch` can read them.
//!
//! A key the request does not carry counts as a value of its own (absent). At most
//! `metadata_cardinality_limit` combinations exist at once (0: no limit); a request that
//! would open one more is refused as invalid (the Collector's permanent error). A
//! combination's batcher stays until shutdown, as in the Collector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Batcher;
use crate::data::Batch;
use crate::pipeline::{ClientMetadata, Context};
use crate::processors::ProcessorError;

struct Shard {
    batcher: Batcher,
    /// The partition's metadata, given to every batch it emits.
    ctx: Context,
}

pub(super) struct Partitions {
    /// Lower-case.
    keys: Vec<String>,
    limit: usize,
    size: usize,
    max_size: usize,
    timeout: Duration,
    /// By the values of each key (empty: absent).
    shards: BTreeMap<Vec<Vec<String>>, Shard>,
}

impl Partitions {
    pub(super) fn new(
        keys: &[String],
        limit: usize,
        size: usize,
        max_size: usize,
        timeout: Duration,
    ) -> Partitions {
        Partitions {
            keys: keys.iter().map(|k| k.to_ascii_lowercase()).collect(),
            limit,
            size,
            max_size,
            timeout,
            shards: BTreeMap::new(),
        }
    }

    fn with_ctx(out: Vec<Batch>, ctx: &Context) -> Vec<(Batch, Context)> {
        out.into_iter().map(|b| (b, ctx.clone())).collect()
    }

    /// Adds a request's batch to its partition; returns the full batches.
    pub(super) fn add(
        &mut self,
        batch: Batch,
        ctx: &Context,
        now: Instant,
    ) -> Result<Vec<(Batch, Context)>, ProcessorError> {
        let md = ctx.metadata();
        let values: Vec<Vec<String>> = self
            .keys
            .iter()
            .map(|k| md.and_then(|m| m.get(k)).map(<[String]>::to_vec))
            .map(Option::unwrap_or_default)
            .collect();
        if !self.shards.contains_key(&values) {
            if self.limit != 0 && self.shards.len() >= self.limit {
                return Err(ProcessorError::Invalid(format!(
                    "too many batcher metadata-value combinations: the batch processor's \
                     metadata_cardinality_limit ({}) is reached",
                    self.limit
                )));
            }
            let pairs = self
                .keys
                .iter()
                .zip(&values)
                .flat_map(|(k, vs)| vs.iter().map(move |v| (k, v.clone())));
            let metadata = ClientMetadata::from_pairs(pairs);
            let shard = Shard {
                batcher: Batcher::new(self.size, self.max_size, self.timeout),
                ctx: Context::new(Some(Arc::new(metadata))),
            };
            self.shards.insert(values.clone(), shard);
        }
        let Some(shard) = self.shards.get_mut(&values) else {
            return Ok(Vec::new());
        };
        Ok(Self::with_ctx(shard.batcher.add(batch, now), &shard.ctx))
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.shards
            .values()
            .filter_map(|s| s.batcher.deadline())
            .min()
    }

    pub(super) fn on_deadline(&mut self, now: Instant) -> Vec<(Batch, Context)> {
        let mut out = Vec::new();
        for s in self.shards.values_mut() {
            out.extend(Self::with_ctx(s.batcher.on_deadline(now), &s.ctx));
        }
        out
    }

    pub(super) fn flush(&mut self) -> Vec<(Batch, Context)> {
        let mut out = Vec::new();
        for s in self.shards.values_mut() {
            out.extend(Self::with_ctx(s.batcher.flush(), &s.ctx));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::tests::logs;

    fn client(pairs: &[(&str, &str)]) -> Context {
        Context::new(Some(Arc::new(ClientMetadata::from_pairs(
            pairs.iter().copied(),
        ))))
    }

    fn tenant(ctx: &Context) -> Option<Vec<String>> {
        ctx.metadata()?.get("x-tenant").map(<[String]>::to_vec)
    }

    #[test]
    fn each_combination_batches_alone_and_carries_only_its_keys() {
        let t0 = Instant::now();
        let keys = ["X-Tenant".to_string()];
        let mut p = Partitions::new(&keys, 10, 3, 0, Duration::from_secs(1));
        let acme = client(&[("x-tenant", "acme"), ("authorization", "secret")]);
        let globex = client(&[("X-TENANT", "globex")]);
        assert!(p.add(logs(2), &acme, t0).unwrap().is_empty());
        assert!(p.add(logs(2), &globex, t0).unwrap().is_empty());
        // acme reaches 3 items: only acme's data goes, with only acme's key.
        let out = p.add(logs(1), &acme, t0).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.item_count(), 3);
        assert_eq!(tenant(&out[0].1), Some(vec!["acme".to_string()]));
        let md = out[0].1.metadata().unwrap();
        assert_eq!(
            md.keys().collect::<Vec<_>>(),
            ["x-tenant"],
            "other headers dropped"
        );
        // globex is released at its deadline, with its own context.
        assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(1)));
        let out = p.on_deadline(t0 + Duration::from_secs(1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.item_count(), 2);
        assert_eq!(tenant(&out[0].1), Some(vec!["globex".to_string()]));
    }

    #[test]
    fn absent_keys_and_several_values_are_partitions_of_their_own() {
        let t0 = Instant::now();
        let mut p = Partitions::new(&["x-tenant".into()], 0, 100, 0, Duration::from_secs(1));
        p.add(logs(1), &Context::EMPTY, t0).unwrap();
        p.add(logs(1), &client(&[("x-other", "1")]), t0).unwrap();
        p.add(
            logs(1),
            &client(&[("x-tenant", "a"), ("x-tenant", "b")]),
            t0,
        )
        .unwrap();
        p.add(logs(1), &client(&[("x-tenant", "a")]), t0).unwrap();
        let mut out: Vec<_> = p
            .flush()
            .into_iter()
            .map(|(b, c)| (tenant(&c), b.item_count()))
            .collect();
        out.sort();
        assert_eq!(
            out,
            [
                (None, 2),
                (Some(vec!["a".into()]), 1),
                (Some(vec!["a".into(), "b".into()]), 1)
            ]
        );
    }

    #[test]
    fn the_cardinality_limit_refuses_a_new_combination() {
        let t0 = Instant::now();
        let mut p = Partitions::new(&["x-tenant".into()], 2, 100, 0, Duration::from_secs(1));
        p.add(logs(1), &client(&[("x-tenant", "a")]), t0).unwrap();
        p.add(logs(1), &client(&[("x-tenant", "b")]), t0).unwrap();
        let e = p
            .add(logs(1), &client(&[("x-tenant", "c")]), t0)
            .unwrap_err();
        assert!(
            matches!(&e, ProcessorError::Invalid(m) if m.contains("metadata_cardinality_limit (2)")),
            "{e}"
        );
        // Known combinations still go in.
        p.add(logs(1), &client(&[("x-tenant", "a")]), t0).unwrap();
        let held: usize = p.flush().iter().map(|(b, _)| b.item_count()).sum();
        assert_eq!(held, 3);
    }
}
