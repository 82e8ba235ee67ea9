//! The in-memory store for tests and the simulator: the same trait, a hash map per column
//! (point reads are what a chain does most; `for_each` sorts the keys to walk them in
//! the order RocksDB would).

use super::{Column, Store, StoreError, WriteBatch};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

type Columns = BTreeMap<Column, HashMap<Vec<u8>, Vec<u8>>>;

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
