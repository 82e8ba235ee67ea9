//! The in-memory store for tests and the simulator: the same trait, a hash map per column
//! (point reads are what a chain does most; `for_each` sorts the keys to walk them in
//! the order RocksDB would). Its maps hash with [`FastHasher`]: no key here comes from
//! someone who could aim many at one bucket.

use super::{Column, Store, StoreError, WriteBatch};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

type Columns = BTreeMap<Column, HashMap<Vec<u8>, Vec<u8>, FastBuildHasher>>;

/// The Fx hash (rustc's): each 8-byte word rotated in and multiplied, then mixed once at
/// the end; several times faster than SipHash on short keys and not meant to resist chosen
/// keys — for maps whose keys no
/// adversary picks (this store, the simulator's bookkeeping). The `rustc-hash` crate has
/// it, but adding a dependency needs the registry, which cargo cannot reach reliably here.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

/// Builds [`FastHasher`]s for `HashMap` and `HashSet`.
pub type FastBuildHasher = BuildHasherDefault<FastHasher>;

impl FastHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FastHasher {
    /// Murmur3's finaliser on top: the multiply moves a word's bits only upwards, and hash
    /// tables index by the low bits, so keys differing in their last byte (big-endian
    /// heights) would share a bucket without it.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    columns: RwLock<Columns>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Columns> {
        // A panic while holding the lock cannot leave a half-applied batch (writes build
        // the new maps first), so a poisoned lock still guards consistent data.
        self.columns.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().get(&column).and_then(|c| c.get(key)).cloned())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut columns = self.columns.write().unwrap_or_else(|p| p.into_inner());
        for (column, key, value) in batch.ops {
            let col = columns.entry(column).or_default();
            match value {
                Some(v) => {
                    col.insert(key, v);
                }
                None => {
                    col.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn for_each(
        &self,
        column: Column,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if let Some(col) = self.read().get(&column) {
            let mut entries: Vec<(&Vec<u8>, &Vec<u8>)> = col.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                if !f(k, v) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_hasher_tells_keys_apart_that_share_a_prefix() {
        use std::hash::BuildHasher;
        let hash = |key: &[u8]| FastBuildHasher::default().hash_one(key);
        // State keys share their first bytes; heights differ only in their last.
        let keys: Vec<Vec<u8>> = (0u8..=255)
            .map(|i| [b"account/".as_slice(), &[i; 20]].concat())
            .chain((0u64..256).map(|h| h.to_be_bytes().to_vec()))
            .collect();
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| hash(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        // A table indexes by the low bits: those must differ too (heights that differ
        // only in their last byte once all landed in one bucket).
        let low: std::collections::HashSet<u64> = keys.iter().map(|k| hash(k) & 0xfff).collect();
        assert!(
            low.len() > keys.len() * 3 / 4,
            "{} of {}",
            low.len(),
            keys.len()
        );
        assert_eq!(hash(b"same"), hash(b"same"));
    }

    #[test]
    fn for_each_walks_keys_in_byte_order_and_stops_when_told() {
        let store = MemoryStore::new();
        let mut batch = WriteBatch::default();
        for key in [[3u8, 0], [1, 9], [2, 5], [1, 0]] {
            batch.put(Column::State, key.to_vec(), vec![key[0]]);
        }
        store.write(batch).expect("write");
        let mut seen = Vec::new();
        store
            .for_each(Column::State, &mut |k, _| {
                seen.push(k.to_vec());
                true
            })
            .expect("walk");
        assert_eq!(seen, [vec![1, 0], vec![1, 9], vec![2, 5], vec![3, 0]]);
        let mut first = Vec::new();
        store
            .for_each(Column::State, &mut |k, _| {
                first.push(k.to_vec());
                false
            })
            .expect("walk");
        assert_eq!(first, [vec![1, 0]]);
        assert_eq!(
            store.get(Column::State, &[2, 5]).expect("get"),
            Some(vec![2])
        );
        assert_eq!(store.get(Column::Headers, &[2, 5]).expect("get"), None);
    }
}
