//! The unacknowledged records of one segment: a bitmap indexed by `id - first id`, because ids
//! within a segment are consecutive (8 bytes per 64 records instead of a hash set entry each).

/// Unacknowledged ids of one segment, as bits indexed by `id - start`.
#[derive(Debug, Default)]
pub(super) struct PendingSet {
    words: Vec<u64>,
    pub(super) count: u64,
}

impl PendingSet {
    pub(super) fn insert(&mut self, index: u64) {
        let (word, bit) = ((index / 64) as usize, index % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & (1 << bit) == 0 {
            self.words[word] |= 1 << bit;
            self.count += 1;
        }
    }

    pub(super) fn contains(&self, index: u64) -> bool {
        let (word, bit) = ((index / 64) as usize, index % 64);
        self.words.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub(super) fn remove(&mut self, index: u64) {
        if self.contains(index) {
            self.words[(index / 64) as usize] &= !(1 << (index % 64));
            self.count -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PendingSet;

    #[test]
    fn insert_contains_remove_and_count() {
        let mut set = PendingSet::default();
        for i in [0, 1, 63, 64, 200] {
            set.insert(i);
        }
        set.insert(64);
        assert_eq!(set.count, 5);
        assert!(set.contains(63) && set.contains(200) && !set.contains(2) && !set.contains(10_000));
        set.remove(63);
        set.remove(63);
        set.remove(9_999);
        assert_eq!(set.count, 4);
        assert!(!set.contains(63));
    }
}
