//! A map whose entries live a fixed time from insertion and whose size is bounded (the
//! oldest entry is evicted first). Used for the producer index and the remap table.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

pub(crate) struct TtlMap<K, V> {
    map: HashMap<K, (V, Instant)>,
    /// Insertion order; entries of replaced keys go stale and are skipped.
    order: VecDeque<(Instant, K)>,
    life: Duration,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> TtlMap<K, V> {
    pub fn new(life: Duration, capacity: usize) -> TtlMap<K, V> {
        TtlMap {
            map: HashMap::new(),
            order: VecDeque::new(),
            life,
            capacity: capacity.max(1),
        }
    }

    /// Inserts or replaces; returns an entry that was still alive but had to go to stay
    /// within capacity, with its insertion time.
    pub fn insert(&mut self, k: K, v: V, now: Instant) -> Option<(K, V, Instant)> {
        self.purge(now);
        let mut evicted = None;
        if !self.map.contains_key(&k) && self.map.len() >= self.capacity {
            while let Some((at, old)) = self.order.pop_front() {
                if self.map.get(&old).is_some_and(|e| e.1 == at) {
                    evicted = self.map.remove(&old).map(|(v, at)| (old, v, at));
                    break;
                }
            }
        }
        self.order.push_back((now, k.clone()));
        self.map.insert(k, (v, now));
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(at, k)| map.get(k).is_some_and(|e| e.1 == *at));
        }
        evicted
    }

    /// The live entry for `k` and when it was inserted.
    pub fn get(&self, k: &K, now: Instant) -> Option<(&V, Instant)> {
        self.map
            .get(k)
            .filter(|e| e.1 + self.life > now)
            .map(|e| (&e.0, e.1))
    }

    pub fn remove(&mut self, k: &K) {
        self.map.remove(k);
    }

    /// Forgets entries whose life is over.
    pub fn purge(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at + self.life > now {
                break;
            }
            if let Some((at, k)) = self.order.pop_front()
                && self.map.get(&k).is_some_and(|e| e.1 == at)
            {
                self.map.remove(&k);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_oldest_is_evicted() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = TtlMap::new(s * 10, 2);
        assert!(m.insert(1, "a", t0).is_none());
        assert!(m.insert(2, "b", t0 + s).is_none());
        assert!(
            m.insert(1, "a2", t0 + s * 2).is_none(),
            "replacing is no eviction"
        );
        assert_eq!(
            m.insert(3, "c", t0 + s * 3).map(|e| (e.0, e.1)),
            Some((2, "b"))
        );
        assert_eq!(m.get(&1, t0 + s * 11).map(|e| *e.0), Some("a2"));
        assert!(m.get(&1, t0 + s * 12).is_none());
        m.purge(t0 + s * 13);
        assert_eq!(m.len(), 0);
    }
}
