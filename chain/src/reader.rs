//! Read access to a chain's store: blocks, indexes, state at the head. Cheap to clone and
//! safe to use from any thread while the chain's one writer imports (every import is one
//! atomic batch, so each read sees a whole block or none of it).

use crate::block::{Block, Header, SealedHeader};
use crate::chain::BlockMeta;
use crate::crypto::Address;
use crate::engine::ChainView;
use crate::primitives::{BlockHash, Height, TxHash};
use crate::state::{Account, StateKey, StateRead};
use crate::store::{Column, Store, StoreError, decode_value};
use crate::tx::Transaction;
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;
use std::sync::Arc;

pub(crate) const META_HEAD: &[u8] = b"head";

/// How to revert a connected block: the old value of every key it changed, and the state
/// hash before it. Public so the store's decoders can be fuzzed over every record type;
/// only the chain builds one.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct UndoRecord {
    pub(crate) parent_lthash: Vec<u8>,
    pub(crate) entries: Vec<(StateKey, Option<Vec<u8>>)>,
}

/// The state at the head, read from the store.
#[derive(Debug, Clone)]
pub struct StoreState(pub(crate) Arc<dyn Store>);

impl StateRead for StoreState {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(Column::State, key.as_bytes())
    }
}

#[derive(Clone)]
pub struct ChainReader {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) state: StoreState,
    pub(crate) genesis: SealedHeader,
}

impl fmt::Debug for ChainReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainReader")
            .field("genesis", &self.genesis.hash())
            .finish()
    }
}

impl ChainReader {
    pub(crate) fn new(store: Arc<dyn Store>, genesis: SealedHeader) -> ChainReader {
        ChainReader {
            state: StoreState(store.clone()),
            store,
            genesis,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The stored head pointer.
    pub fn head_hash(&self) -> Result<BlockHash, StoreError> {
        self.store
            .get(Column::Meta, META_HEAD)?
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(BlockHash)
            .ok_or(StoreError::Corrupt {
                what: "head pointer",
                reason: "missing or not 32 bytes".into(),
            })
    }

    pub fn account(&self, address: &Address) -> Result<Account, StoreError> {
        self.state.account(address)
    }

    pub fn meta(&self, hash: &BlockHash) -> Result<Option<BlockMeta>, StoreError> {
        self.store
            .get(Column::BlockMeta, &hash.0)?
            .map(|b| decode_value(&b, "block meta"))
            .transpose()
    }

    pub(crate) fn meta_required(&self, hash: &BlockHash) -> Result<BlockMeta, StoreError> {
        self.meta(hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "block meta",
            reason: format!("missing for {hash}"),
        })
    }

    pub(crate) fn header_required(&self, hash: &BlockHash) -> Result<SealedHeader, StoreError> {
        self.header(hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "header",
            reason: format!("missing for {hash}"),
        })
    }

    pub fn body(&self, hash: &BlockHash) -> Result<Option<Vec<Transaction>>, StoreError> {
        self.store
            .get(Column::Bodies, &hash.0)?
            .map(|b| decode_value(&b, "block body"))
            .transpose()
    }

    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        let Some(header) = self.header(hash)? else {
            return Ok(None);
        };
        let txs = self.body(hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "block body",
            reason: format!("missing for {hash}"),
        })?;
        Ok(Some(Block {
            header: header.into_header(),
            txs,
        }))
    }

    pub fn block_at(&self, height: Height) -> Result<Option<Block>, StoreError> {
        match self.best_hash_at(height)? {
            Some(hash) => self.block(&hash),
            None => Ok(None),
        }
    }

    /// Where a transaction sits on the best chain: block hash and index.
    pub fn tx_location(&self, hash: &TxHash) -> Result<Option<(BlockHash, u32)>, StoreError> {
        self.store
            .get(Column::TxIndex, &hash.0)?
            .map(|b| decode_value(&b, "tx index entry"))
            .transpose()
    }
}

impl ChainView for ChainReader {
    fn header(&self, hash: &BlockHash) -> Result<Option<SealedHeader>, StoreError> {
        self.store
            .get(Column::Headers, &hash.0)?
            .map(|b| {
                decode_value::<Header>(&b, "header").map(|h| SealedHeader::new_unchecked(h, *hash))
            })
            .transpose()
    }

    fn best_hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        Ok(self
            .store
            .get(Column::Heights, &height.0.to_be_bytes())?
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(BlockHash))
    }

    /// The stored head; the genesis if the store cannot be read (logged).
    fn head(&self) -> SealedHeader {
        match self.head_hash().and_then(|h| self.header_required(&h)) {
            Ok(head) => head,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the head");
                self.genesis.clone()
            }
        }
    }

    fn genesis(&self) -> &SealedHeader {
        &self.genesis
    }

    fn state(&self) -> &dyn StateRead {
        &self.state
    }
}
