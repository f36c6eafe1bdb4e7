//! The consistent-hash ring: every backend endpoint owns `POINTS_PER_ENDPOINT` points on a
//! 64-bit circle; a routing key belongs to the first point at or after its hash (wrapping).
//! Adding or removing an endpoint only moves the keys that fall between its own points and
//! their predecessors, about 1/n of all keys.
//!
//! The Collector's ring uses 100 CRC32 points per endpoint on 36,000 positions. weft uses
//! more points (1,000) on the full 64-bit circle with a well-mixed hash: with 100 points the
//! share of each endpoint varies by about ±10% (one standard deviation), with 1,000 by about
//! ±3%, so three gateways really get a third each. Lookups stay a binary search over a few
//! thousand entries. The hash (FNV-1a, then the MurmurHash3 64-bit finaliser) is written out
//! here so the placement is stable across weft versions and platforms: agents of different
//! versions route a trace to the same gateway.

/// Points each endpoint owns on the ring.
pub const POINTS_PER_ENDPOINT: usize = 1000;

/// A stable 64-bit hash of `bytes`.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h = Hasher::new();
    h.write(bytes);
    h.finish()
}

/// Incremental form of [`hash64`], for keys made of several parts.
#[derive(Clone, Copy)]
pub struct Hasher(u64);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Writes a separator that cannot be confused with content (keeps `["ab","c"]` and
    /// `["a","bc"]` apart).
    pub fn write_part(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    pub fn finish(self) -> u64 {
        fmix64(self.0)
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// An immutable ring over a sorted, de-duplicated list of endpoints.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    endpoints: Vec<String>,
    /// (position, index into `endpoints`), sorted by position.
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub fn new(endpoints: &[String]) -> Ring {
        let mut endpoints = endpoints.to_vec();
        endpoints.sort();
        endpoints.dedup();
        let mut points = Vec::with_capacity(endpoints.len() * POINTS_PER_ENDPOINT);
        for (i, ep) in endpoints.iter().enumerate() {
            for p in 0..POINTS_PER_ENDPOINT {
                let mut h = Hasher::new();
                h.write_part(ep.as_bytes());
                h.write(&(p as u64).to_le_bytes());
                points.push((h.finish(), i as u32));
            }
        }
        // Ties (practically impossible on 64 bits) are broken by endpoint order, which is
        // sorted, so every agent builds the same ring from the same endpoint set.
        points.sort_unstable();
        points.dedup_by_key(|p| p.0);
        Ring { endpoints, points }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Index (into [`Ring::endpoints`]) of the endpoint owning `key_hash`; `None` when the
    /// ring is empty.
    pub fn index_for(&self, key_hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|(pos, _)| *pos < key_hash);
        let (_, ep) = self.points[if i == self.points.len() { 0 } else { i }];
        Some(ep as usize)
    }

    /// Like [`Ring::index_for`], skipping endpoints for which `usable` is false: the owner
    /// is then the next usable endpoint clockwise — exactly the owner on a ring built
    /// without the skipped endpoints, so skipping and removing move the same keys. When no
    /// endpoint is usable, the plain owner.
    pub fn index_for_usable(&self, key_hash: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(pos, _)| *pos < key_hash);
        let n = self.points.len();
        (0..n)
            .map(|k| self.points[(start + k) % n].1 as usize)
            .find(|ep| usable(*ep))
            .or_else(|| self.index_for(key_hash))
    }

    /// The endpoint owning `key_hash`.
    pub fn endpoint_for(&self, key_hash: u64) -> Option<&str> {
        self.index_for(key_hash).map(|i| self.endpoints[i].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn eps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// 10,000 random 16-byte trace ids (fixed seed).
    fn keys() -> Vec<u64> {
        let mut rng = fastrand::Rng::with_seed(42);
        (0..10_000)
            .map(|_| {
                let id: Vec<u8> = (0..16).map(|_| rng.u8(..)).collect();
                hash64(&id)
            })
            .collect()
    }

    fn assign(ring: &Ring, keys: &[u64]) -> Vec<String> {
        keys.iter()
            .map(|k| ring.endpoint_for(*k).unwrap().to_string())
            .collect()
    }

    #[test]
    fn shares_are_even_within_20_percent() {
        for names in [
            eps(&["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"]),
            eps(&["127.0.0.1:40001", "127.0.0.1:40002", "127.0.0.1:40003"]),
            eps(&["gw-0", "gw-1", "gw-2"]),
        ] {
            let ring = Ring::new(&names);
            let mut counts: HashMap<String, usize> = HashMap::new();
            for e in assign(&ring, &keys()) {
                *counts.entry(e).or_default() += 1;
            }
            assert_eq!(counts.len(), 3);
            for (e, c) in &counts {
                assert!(
                    (2667..=4000).contains(c),
                    "{e} got {c} of 10000 keys: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let keys = keys();
        let all = eps(&["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"]);
        let before = assign(&Ring::new(&all), &keys);
        let after = assign(&Ring::new(&all[..2]), &keys);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b == "10.0.0.3:4317" {
                moved += 1;
                assert_ne!(a, b);
            } else {
                assert_eq!(a, b, "a key of a remaining endpoint moved");
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn adding_an_endpoint_moves_about_a_quarter_all_to_it() {
        let keys = keys();
        let three = eps(&["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"]);
        let mut four = three.clone();
        four.push("10.0.0.4:4317".into());
        let before = assign(&Ring::new(&three), &keys);
        let after = assign(&Ring::new(&four), &keys);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if a != b {
                moved += 1;
                assert_eq!(a, "10.0.0.4:4317", "a key moved between old endpoints");
            }
        }
        let share = moved as f64 / keys.len() as f64;
        assert!((0.2..=0.3).contains(&share), "moved {share}");
    }

    #[test]
    fn skipping_an_endpoint_equals_removing_it() {
        let keys = keys();
        let all = eps(&["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"]);
        let full = Ring::new(&all);
        let without = assign(&Ring::new(&all[..2]), &keys);
        let skip = |i: usize| full.endpoints()[i] != "10.0.0.3:4317";
        for (k, w) in keys.iter().zip(&without) {
            let i = full.index_for_usable(*k, &skip).unwrap();
            assert_eq!(&full.endpoints()[i], w);
        }
        // Nothing usable: the plain owner.
        assert_eq!(
            full.index_for_usable(keys[0], &|_| false),
            full.index_for(keys[0])
        );
    }

    #[test]
    fn order_and_duplicates_of_endpoints_do_not_matter() {
        let keys = keys();
        let a = Ring::new(&eps(&["b:1", "a:1", "c:1"]));
        let b = Ring::new(&eps(&["c:1", "a:1", "b:1", "a:1"]));
        assert_eq!(a.endpoints(), b.endpoints());
        assert_eq!(assign(&a, &keys), assign(&b, &keys));
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let r = Ring::new(&[]);
        assert!(r.is_empty());
        assert_eq!(r.endpoint_for(7), None);
        let one = Ring::new(&eps(&["only:4317"]));
        assert_eq!(one.endpoint_for(u64::MAX), Some("only:4317"));
        assert_eq!(one.endpoint_for(0), Some("only:4317"));
    }

    #[test]
    fn hash_is_stable() {
        // Pinned so a change of the placement (which would reshuffle every agent's traces
        // during a rolling upgrade) is a deliberate decision.
        assert_eq!(hash64(b"weft"), 0x52f6_22f2_71ff_00e5);
        assert_ne!(hash64(b"a"), hash64(b"b"));
        let mut h = Hasher::new();
        h.write_part(b"ab");
        h.write_part(b"c");
        let mut g = Hasher::new();
        g.write_part(b"a");
        g.write_part(b"bc");
        assert_ne!(h.finish(), g.finish());
    }
}
