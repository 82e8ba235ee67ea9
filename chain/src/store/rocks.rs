//! The RocksDB store: one column family per [`Column`], batches as RocksDB write batches.
//!
//! Writes go through the write-ahead log without an fsync per block: a killed process loses
//! nothing (the WAL is in the OS page cache), and [`Store::flush`] (called on shutdown)
//! makes everything durable against power loss too.

use super::{Column, Store, StoreError, WriteBatch};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.into_string())
}

impl RocksStore {
    /// Opens (creating if missing) the database in the folder `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<RocksStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(2);
        let cfs = Column::ALL
            .iter()
            .map(|c| ColumnFamilyDescriptor::new(c.name(), Options::default()));
        let db = DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| {
            StoreError::Backend(format!(
                "cannot open {}: {}",
                path.display(),
                e.into_string()
            ))
        })?;
        Ok(RocksStore { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, column: Column) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(column.name())
            .expect("every column family is created when the database is opened")
    }
}

impl Store for RocksStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(column), key).map_err(backend)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut rb = rocksdb::WriteBatch::default();
        for (column, key, value) in &batch.ops {
            match value {
                Some(v) => rb.put_cf(self.cf(*column), key, v),
                None => rb.delete_cf(self.cf(*column), key),
            }
        }
        self.db.write(rb).map_err(backend)
    }

    fn for_each(
        &self,
        column: Column,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.cf(column), IteratorMode::Start) {
            let (k, v) = item.map_err(backend)?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(backend)?;
        for column in Column::ALL {
            self.db.flush_cf(self.cf(column)).map_err(backend)?;
        }
        Ok(())
    }
}
