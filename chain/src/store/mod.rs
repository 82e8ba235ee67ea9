//! Storage behind one small trait: named columns of byte keys and values, and atomic
//! write batches. The chain's typed records are encoded here, once, for every backend.
//!
//! Every block import is one [`WriteBatch`] that carries the block, its undo record, the
//! indexes, the state changes and the new head together, so a crash at any instant leaves
//! the previous or the next consistent state, and reopening never replays the chain.

mod memory;
#[cfg(feature = "rocksdb")]
mod rocks;

pub use memory::{FastBuildHasher, FastHasher, MemoryStore};
#[cfg(feature = "rocksdb")]
pub use rocks::RocksStore;

use std::fmt;

/// The columns (RocksDB column families) of the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Column {
    /// block hash → header
    Headers,
    /// block hash → transactions
    Bodies,
    /// block hash → [`crate::chain::BlockMeta`]
    BlockMeta,
    /// block hash → undo record of a connected block
    Undo,
    /// state key → value (the state at the head)
    State,
    /// height (big-endian) → block hash on the best chain
    Heights,
    /// tx hash → (block hash, index) on the best chain
    TxIndex,
    /// singletons: head pointer, format version, genesis hash
    Meta,
    /// block hash → the certificate that decided it (voting engines)
    Certificates,
}

impl Column {
    pub const ALL: [Column; 9] = [
        Column::Headers,
        Column::Bodies,
        Column::BlockMeta,
        Column::Undo,
        Column::State,
        Column::Heights,
        Column::TxIndex,
        Column::Meta,
        Column::Certificates,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::Headers => "headers",
            Column::Bodies => "bodies",
            Column::BlockMeta => "block_meta",
            Column::Undo => "undo",
            Column::State => "state",
            Column::Heights => "heights",
            Column::TxIndex => "tx_index",
            Column::Meta => "meta",
            Column::Certificates => "certificates",
        }
    }
}

/// An ordered list of puts and deletes applied atomically.
#[derive(Default, Clone)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Column, Vec<u8>, Option<Vec<u8>>)>,
}

impl fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBatch")
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl WriteBatch {
    pub fn put(&mut self, column: Column, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((column, key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, column: Column, key: impl Into<Vec<u8>>) {
        self.ops.push((column, key.into(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key-value store with columns and atomic batches.
pub trait Store: Send + Sync + fmt::Debug {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies every operation of `batch`, or none of them.
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Calls `f` on every entry of `column` in key order until it returns `false`.
    fn for_each(
        &self,
        column: Column,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// Makes everything written so far durable (memtables and WAL to disk).
    fn flush(&self) -> Result<(), StoreError>;
}

/// Version byte in front of every stored record, so a future format can be told apart.
pub const VALUE_VERSION: u8 = 1;

/// Encodes a record with its version byte.
pub fn encode_value<T: borsh::BorshSerialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    borsh::to_writer(&mut out, value).expect("borsh serialization into a Vec cannot fail");
    out
}

/// Decodes a versioned record strictly.
pub fn decode_value<T: borsh::BorshDeserialize + borsh::BorshSerialize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VALUE_VERSION, rest)) => crate::codec::decode_limited(rest, usize::MAX, what)
            .map_err(|e| StoreError::Corrupt {
                what,
                reason: e.to_string(),
            }),
        Some((version, _)) => Err(StoreError::UnsupportedVersion {
            what,
            version: *version,
        }),
        None => Err(StoreError::Corrupt {
            what,
            reason: "empty value".into(),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Backend(String),
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("stored {what} has format version {version}, this build reads version 1")]
    UnsupportedVersion { what: &'static str, version: u8 },
    #[error("database at {path} belongs to another chain: genesis {found}, expected {expected}")]
    WrongGenesis {
        path: String,
        found: String,
        expected: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_values_round_trip_and_refuse_other_versions() {
        let bytes = encode_value(&(7u64, vec![1u8, 2]));
        assert_eq!(bytes[0], VALUE_VERSION);
        let back: (u64, Vec<u8>) = decode_value(&bytes, "pair").expect("decodes");
        assert_eq!(back, (7, vec![1, 2]));
        let mut future = bytes.clone();
        future[0] = 2;
        assert_eq!(
            decode_value::<(u64, Vec<u8>)>(&future, "pair"),
            Err(StoreError::UnsupportedVersion {
                what: "pair",
                version: 2
            })
        );
        let mut trailing = bytes;
        trailing.push(0);
        assert!(matches!(
            decode_value::<(u64, Vec<u8>)>(&trailing, "pair"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
