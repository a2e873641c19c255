//! A map with a fixed capacity that forgets its least recently used entry when full: for
//! the caches keyed by host names, which a hostile or busy network could otherwise grow
//! without end. A miss on a full map scans it once (O(capacity)); the callers pay far more
//! for what they cache (a signature, a chain verdict).

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub struct LruMap<K, V> {
    /// key → (value, when last used).
    map: HashMap<K, (V, u64)>,
    /// The use counter: bigger is more recent.
    tick: u64,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> LruMap<K, V> {
    pub fn new(capacity: usize) -> LruMap<K, V> {
        LruMap {
            map: HashMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    /// The value for `key`, marked as just used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(value, used)| {
            *used = tick;
            value.clone()
        })
    }

    /// Stores `value` for `key`, forgetting the least recently used entry if full.
    pub fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key, (value, self.tick));
    }

    /// Forgets `key`; true when it was there.
    pub fn remove(&mut self, key: &K) -> bool {
        self.map.remove(key).is_some()
    }

    /// The keys, in no particular order (not marked as used).
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K, V> Default for LruMap<K, V> {
    /// A map of 1,000 entries.
    fn default() -> Self {
        LruMap {
            map: HashMap::new(),
            tick: 0,
            capacity: 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = LruMap::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(1)); // a is now newer than b
        lru.insert("c", 3);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.get(&"c"), Some(3));
        lru.insert("c", 4); // replacing evicts nothing
        assert_eq!((lru.len(), lru.get(&"a")), (2, Some(1)));
    }

    #[test]
    fn forty_thousand_names_keep_the_capacity() {
        let mut lru = LruMap::new(1000);
        for i in 0..40_000 {
            lru.insert(format!("h{i}.invalid"), i);
        }
        assert_eq!(lru.len(), 1000);
        assert_eq!(lru.get(&"h39999.invalid".to_string()), Some(39_999));
    }
}
