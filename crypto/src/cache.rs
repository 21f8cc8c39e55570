//! Bounded caches: decompressed public keys and verified signatures.
//!
//! Both are two-generation sets: inserts go to the young generation; when it reaches half
//! the capacity, the old generation is dropped and the young one becomes old. Memory is
//! bounded by the capacity, lookups are O(1), and recently used entries survive one turn.
//! The maps hash with foldhash (seeded per process): SipHash was most of a lookup's cost,
//! and keys such as public keys are chosen by senders, so the hash stays keyed.

use crate::verify::{ParsedKey, VerifyError};
use crate::{Hash, PublicKey, Signature};
use parking_lot::RwLock;
use std::collections::HashMap;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct Generations<K, V> {
    young: Map<K, V>,
    old: Map<K, V>,
    half_capacity: usize,
}

impl<K: std::hash::Hash + Eq, V: Clone> Generations<K, V> {
    fn new(capacity: usize) -> Self {
        let half_capacity = (capacity / 2).max(1);
        Generations { young: Map::default(), old: Map::default(), half_capacity }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.young.get(key).or_else(|| self.old.get(key)).cloned()
    }

    fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.half_capacity {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// Decompressed, checked public keys, so the ~4 µs decompression is paid once per key and
/// not once per signature. Holds at most `capacity` keys.
pub struct KeyCache {
    inner: RwLock<Generations<PublicKey, Result<ParsedKey, VerifyError>>>,
}

impl KeyCache {
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache { inner: RwLock::new(Generations::new(capacity)) }
    }

    /// The parsed key, from the cache or parsed now (bad keys are cached as errors too).
    pub fn parse(&self, key: &PublicKey) -> Result<ParsedKey, VerifyError> {
        if let Some(hit) = self.inner.read().get(key) {
            return hit;
        }
        let parsed = ParsedKey::parse(key);
        self.inner.write().insert(*key, parsed);
        parsed
    }

    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Signatures that verified: `(key, message, signature)` triples by their digest. Only
/// successes are remembered, so a cache hit means "verified before"; a miss means nothing.
pub struct SigCache {
    inner: RwLock<Generations<Hash, ()>>,
}

impl SigCache {
    pub fn new(capacity: usize) -> SigCache {
        SigCache { inner: RwLock::new(Generations::new(capacity)) }
    }

    pub fn digest(key: &PublicKey, message: &[u8], sig: &Signature) -> Hash {
        Hash::digest_parts(&[b"tally/sigcache/v1", &key.0, &sig.0, message])
    }

    pub fn contains(&self, digest: &Hash) -> bool {
        self.inner.read().get(digest).is_some()
    }

    pub fn insert(&self, digest: Hash) {
        self.inner.write().insert(digest, ());
    }

    /// Inserts all `digests` under one lock (the rayon threads of a batch share the cache).
    pub fn insert_many(&self, digests: impl IntoIterator<Item = Hash>) {
        let mut inner = self.inner.write();
        for digest in digests {
            inner.insert(digest, ());
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_stay_bounded() {
        let cache = SigCache::new(10);
        for i in 0..1000u32 {
            cache.insert(Hash::digest(&i.to_le_bytes()));
            assert!(cache.len() <= 10);
        }
        assert!(cache.contains(&Hash::digest(&999u32.to_le_bytes())));
        assert!(!cache.contains(&Hash::digest(&0u32.to_le_bytes())));
    }

    #[test]
    fn key_cache_remembers_bad_keys() {
        let cache = KeyCache::new(4);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(cache.parse(&PublicKey(identity)).is_err());
        assert!(cache.parse(&PublicKey(identity)).is_err());
        assert_eq!(cache.len(), 1);
    }
}
