//! A deterministic engine and builders that drive the core's own tests (and other crates'
//! tests through the `test-utils` feature). Not an engine anyone runs.
//!
//! [`TestEngine`] rules: a block weighs its `bits` (0 counts as 1), a header with nonce
//! `u32::MAX` has an "invalid seal", the producer earns [`TestEngine::reward`] per block,
//! `RegisterDelegate` marks the sender in the engine's namespace, and with a finality depth
//! `k` the block `k` below the head is final. With `certified`, blocks are imported only
//! with a certificate, and the one valid certificate of a block is its own hash.

use crate::amount::Amount;
use crate::block::{Block, SealedHeader};
use crate::chain::{Chain, ChainConfig, Genesis};
use crate::clock::{Clock, ManualClock};
use crate::crypto::Address;
use crate::dev::{DEV_ACCOUNTS, dev_address};
use crate::engine::{ChainView, ConsensusEngine, EngineError};
use crate::primitives::{BlockId, ChainId, Height, Timestamp, Weight};
use crate::state::{StateKey, StateOverlay};
use crate::store::{MemoryStore, Store};
use crate::tx::{Transaction, TxKind};
use std::sync::Arc;

/// Genesis time of test chains.
pub const TEST_GENESIS_TIME: u64 = 1_700_000_000;
/// Chain id of test chains.
pub const TEST_CHAIN_ID: ChainId = ChainId(1337);

#[derive(Debug, Clone)]
pub struct TestEngine {
    pub reward: Amount,
    pub finality_depth: Option<u64>,
    /// Blocks need a certificate: their own hash.
    pub certified: bool,
}

impl Default for TestEngine {
    fn default() -> Self {
        TestEngine {
            reward: Amount(50),
            finality_depth: None,
            certified: false,
        }
    }
}

/// The test engine's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid test seal: nonce {nonce}")]
pub struct BadTestSeal {
    pub nonce: u32,
}

impl ConsensusEngine for TestEngine {
    fn name(&self) -> &'static str {
        "test"
    }

    fn verify_header(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        if header.engine.nonce == u32::MAX {
            return Err(EngineError::rejected(
                "test",
                BadTestSeal {
                    nonce: header.engine.nonce,
                },
            ));
        }
        Ok(())
    }

    fn block_weight(&self, header: &SealedHeader) -> Weight {
        Weight::from_u64(u64::from(header.engine.bits.max(1)))
    }

    fn apply_tx(
        &self,
        state: &mut StateOverlay<'_>,
        sender: &Address,
        tx: &Transaction,
        _header: &crate::block::Header,
    ) -> Result<(), EngineError> {
        match tx.kind {
            TxKind::RegisterDelegate => {
                state.put(StateKey::engine("test", &sender.0), vec![1]);
                Ok(())
            }
            _ => Err(EngineError::UnsupportedTx {
                kind: tx.kind.name(),
                engine: "test",
            }),
        }
    }

    fn end_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &crate::block::Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        state
            .credit(&header.producer, self.reward)
            .map_err(|e| match e {
                crate::state::CreditOverflow::Store(e) => EngineError::Store(e),
                overflow => EngineError::rejected("test", overflow),
            })
    }

    fn requires_certificate(&self) -> bool {
        self.certified
    }

    fn verify_certificate(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        certificate: &[u8],
    ) -> Result<(), EngineError> {
        if certificate == header.hash().0.as_slice() {
            Ok(())
        } else {
            Err(EngineError::rejected(
                "test",
                BadTestSeal {
                    nonce: header.engine.nonce,
                },
            ))
        }
    }

    fn finalized(&self, chain: &dyn ChainView) -> Result<Option<BlockId>, EngineError> {
        let Some(depth) = self.finality_depth else {
            return Ok(None);
        };
        let head = chain.head();
        let Some(height) = head.height().0.checked_sub(depth) else {
            return Ok(None);
        };
        let hash = chain
            .best_hash_at(Height(height))?
            .expect("a height below the head is on the best chain");
        Ok(Some(BlockId {
            height: Height(height),
            hash,
        }))
    }
}

/// Each dev account with 1,000,000 TOY.
pub fn test_genesis() -> Genesis {
    Genesis {
        chain_id: TEST_CHAIN_ID,
        timestamp: Timestamp(TEST_GENESIS_TIME),
        alloc: DEV_ACCOUNTS
            .iter()
            .map(|n| {
                (
                    dev_address(n).expect("dev account"),
                    Amount::from_toy(1_000_000).expect("fits"),
                )
            })
            .collect(),
        engine_params: b"test".to_vec(),
        bits: 0,
    }
}

/// A clock far enough after genesis that test blocks are never "in the future".
pub fn test_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp(TEST_GENESIS_TIME + 1_000_000)))
}

/// A chain over `store` with the test engine.
pub fn open_test_chain(store: Arc<dyn Store>, engine: TestEngine) -> Chain {
    let clock: Arc<dyn Clock> = test_clock();
    Chain::open(
        store,
        Arc::new(engine),
        clock,
        ChainConfig::new(TEST_CHAIN_ID),
        &test_genesis(),
    )
    .expect("test chain opens")
}

/// A memory-backed test chain.
pub fn memory_chain(engine: TestEngine) -> Chain {
    open_test_chain(Arc::new(MemoryStore::new()), engine)
}

/// Builds a valid block on top of `chain`'s head: `weight` in `bits`, the given producer and
/// txs (all must be valid), timestamp one second after the parent.
pub fn build_on_head(
    chain: &Chain,
    weight: u32,
    producer: Address,
    txs: Vec<Transaction>,
) -> Block {
    let head = chain.head();
    let mut header = chain.template(producer, head.timestamp.saturating_add(1));
    header.engine.bits = weight;
    let count = txs.len();
    let built = chain
        .build_block(header, txs, usize::MAX)
        .expect("template builds");
    assert!(
        built.skipped.is_empty(),
        "test block skipped txs: {:?}",
        built.skipped
    );
    assert_eq!(built.block.txs.len(), count);
    built.block
}

/// Builds a valid block whose parent is the last of `path` (blocks from height 1 up), by
/// replaying `path` on a fresh memory chain. For constructing forks.
pub fn build_on_path(
    engine: &TestEngine,
    path: &[Block],
    weight: u32,
    producer: Address,
    txs: Vec<Transaction>,
) -> Block {
    let mut scratch = memory_chain(engine.clone());
    for block in path {
        scratch
            .import_block(block.clone())
            .expect("path replays on a fresh chain");
    }
    assert_eq!(
        scratch.head_id().hash,
        path.last().map_or(scratch.genesis().hash(), Block::hash),
        "path must be a chain the scratch chain follows"
    );
    build_on_head(&scratch, weight, producer, txs)
}
