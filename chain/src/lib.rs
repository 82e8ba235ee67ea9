//! toychain's chain core: the types, canonical encoding, crypto, state, validation, fork
//! choice, storage, mempool and the engine traits that every consensus engine plugs into.
//!
//! This crate imports no other crate of the project; engines reach it only through
//! [`engine::ConsensusEngine`] and [`engine::BlockProducer`].

pub mod amount;
pub mod block;
pub mod chain;
pub mod clock;
pub mod codec;
pub mod crypto;
pub mod dev;
pub mod engine;
pub mod fork_choice;
pub mod mempool;
pub mod primitives;
pub mod reader;
pub mod sigcache;
pub mod state;
pub mod store;
pub mod tx;
pub mod validation;
pub mod voting;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use amount::{Amount, COIN};
pub use block::{Block, EngineFields, Header, SealedHeader};
pub use chain::{BlockMeta, Chain, ChainConfig, Genesis, HeadChange, ImportOutcome};
pub use clock::{Clock, ManualClock, SkewedClock, SystemClock};
pub use codec::{Canonical, CodecError};
pub use crypto::{Address, PublicKey, SecretKey, Signature};
pub use engine::{BlockProducer, CancelFlag, ChainView, ConsensusEngine, EngineError, Turn};
pub use mempool::{FeeRate, Mempool, MempoolConfig, MempoolError};
pub use primitives::{
    BlockHash, BlockId, ChainId, Hash256, Height, Timestamp, TxHash, U256, Weight,
};
pub use reader::ChainReader;
pub use sigcache::{SignatureCache, SignatureCacheStats};
pub use state::{Account, StateKey, StateOverlay, StateRead};
#[cfg(feature = "rocksdb")]
pub use store::RocksStore;
pub use store::{MemoryStore, Store, StoreError};
pub use tx::{Transaction, TxBatch, TxError, TxKind};
pub use validation::BlockError;
pub use voting::{CertifiedBlock, ProposalClock, TimerId, VoteInput, VoteOutput, VotingMachine};
