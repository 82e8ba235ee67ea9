//! The in-memory store for unit tests: the same trait, a `BTreeMap` per column.

use super::{Column, Store, StoreError, WriteBatch};
use std::collections::BTreeMap;
use std::sync::RwLock;

type Columns = BTreeMap<Column, BTreeMap<Vec<u8>, Vec<u8>>>;

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
            for (k, v) in col {
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
