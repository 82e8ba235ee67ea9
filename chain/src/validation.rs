//! The checks every engine shares, as plain functions, in the order a block meets them:
//! stateless checks (sizes, tx root, signatures in parallel), header checks against the
//! parent (height, median time past, future drift), then — after the engine's own rules —
//! the state transition ([`execute_block`]).

use crate::amount::Amount;
use crate::block::{Block, HEADER_VERSION, Header, SealedHeader};
use crate::codec::{CodecError, MAX_BLOCK_BYTES, MAX_ENGINE_FIELD_BYTES, MAX_TXS_PER_BLOCK};
use crate::crypto::merkle_root;
use crate::engine::{ChainView, ConsensusEngine, EngineError};
use crate::primitives::{BlockHash, ChainId, Hash256, Height, Timestamp, TxHash};
use crate::sigcache::SignatureCache;
use crate::state::{CreditOverflow, StateOverlay, StateRead};
use crate::store::StoreError;
use crate::tx::{Transaction, TxError, TxKind};
use rayon::prelude::*;
use std::collections::HashSet;

/// Blocks whose timestamp is at most this far ahead of our clock are accepted (Bitcoin
/// allows two hours; a devnet with 5-second blocks wants far less).
pub const DEFAULT_MAX_FUTURE_DRIFT_SECS: u64 = 15;
/// Number of ancestors whose median timestamp a block must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Why a block was refused. Each variant carries the values that broke the rule.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("unsupported header version {got}, expected {expected}")]
    BadVersion { expected: u32, got: u32 },
    #[error("timestamp {timestamp} does not fit in 32 bits")]
    TimestampOutOfRange { timestamp: Timestamp },
    #[error("engine {field} is {len} bytes, more than the limit of {max}")]
    EngineFieldTooLarge {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("block is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("block has {count} transactions, more than the limit of {max}")]
    TooManyTxs { count: usize, max: usize },
    #[error("tx root mismatch: header has {header}, transactions give {computed}")]
    TxRootMismatch { header: Hash256, computed: Hash256 },
    #[error("transaction {hash} appears twice in the block")]
    DuplicateTx { hash: TxHash },
    #[error("transaction {index} ({hash}) is invalid: {source}")]
    InvalidTx {
        index: usize,
        hash: TxHash,
        source: TxError,
    },
    #[error("unknown parent {parent}")]
    UnknownParent { parent: BlockHash },
    #[error("block {hash} was already found invalid")]
    KnownInvalid { hash: BlockHash },
    #[error("block descends from invalid block {ancestor}")]
    InvalidAncestor { ancestor: BlockHash },
    #[error("bad height: parent is at {parent}, block claims {got}")]
    BadHeight { parent: Height, got: Height },
    #[error("timestamp {timestamp} is not after the median time past {median}")]
    TimestampNotAfterMedian {
        timestamp: Timestamp,
        median: Timestamp,
    },
    #[error("timestamp {timestamp} is more than {max_drift}s ahead of our clock ({now})")]
    TimestampInFuture {
        timestamp: Timestamp,
        now: Timestamp,
        max_drift: u64,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("state root mismatch: header has {header}, execution gives {computed}")]
    StateRootMismatch { header: Hash256, computed: Hash256 },
    #[error(
        "branch forks at height {fork_height}, below the finalized block at height {finalized}"
    )]
    BelowFinalized {
        fork_height: Height,
        finalized: Height,
    },
    #[error("the genesis block cannot be imported")]
    Genesis,
    #[error("the {engine} engine imports a block only with the certificate that decided it")]
    MissingCertificate { engine: &'static str },
    #[error("block's parent {parent} is not the head {head}: it conflicts with a decided block")]
    ConflictsWithDecided { parent: BlockHash, head: BlockHash },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BlockError {
    /// True when the block broke a consensus rule, so the peer that sent it is at fault.
    /// Unknown parents, future timestamps, reorgs below finality and our own store errors
    /// (wherever they surfaced: [`BlockError::is_transient`]) are not the sender's fault
    /// (they may be right and we behind or ahead, or our disk failing).
    pub fn is_bad_data(&self) -> bool {
        if self.is_transient() {
            return false;
        }
        match self {
            BlockError::UnknownParent { .. }
            | BlockError::TimestampInFuture { .. }
            | BlockError::BelowFinalized { .. }
            | BlockError::Genesis
            | BlockError::Store(_) => false,
            BlockError::Engine(e) => e.is_bad_data(),
            _ => true,
        }
    }

    /// True when our own store failed while judging the block (reading a header, the
    /// state under a transaction, an engine's record): the block is neither valid nor
    /// invalid yet and is not marked; the same block may be imported once the fault clears
    /// (reth's `is_transient`).
    pub fn is_transient(&self) -> bool {
        match self {
            BlockError::Store(_) => true,
            BlockError::Engine(e) => e.is_transient(),
            BlockError::InvalidTx { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// Checks that need nothing but the block: sizes, header fields, tx root, duplicate txs,
/// and every transaction's chain id and signature (verified in parallel on rayon; a
/// signature this node verified before, at mempool admission for one, is answered from
/// `signatures`). Returns the transaction hashes, computed once.
pub fn check_block_stateless(
    block: &Block,
    chain_id: ChainId,
    signatures: &SignatureCache,
) -> Result<Vec<TxHash>, BlockError> {
    let hashes = check_block_shape(block)?;
    check_block_txs(block, &hashes, chain_id, signatures)?;
    Ok(hashes)
}

/// The cheap half of [`check_block_stateless`]: header fields, size, the tx root and no
/// tx twice, hashing each tx once. Returns the tx hashes. Runs before the parent is looked
/// up, so a block that cannot be placed costs no signature check.
pub fn check_block_shape(block: &Block) -> Result<Vec<TxHash>, BlockError> {
    check_header_fields(&block.header)?;
    if block.txs.len() > MAX_TXS_PER_BLOCK {
        return Err(BlockError::TooManyTxs {
            count: block.txs.len(),
            max: MAX_TXS_PER_BLOCK,
        });
    }
    let len = borsh::object_length(block).unwrap_or(usize::MAX);
    if len > MAX_BLOCK_BYTES {
        return Err(BlockError::TooLarge {
            len,
            max: MAX_BLOCK_BYTES,
        });
    }
    let hashes: Vec<TxHash> = block.txs.par_iter().map(Transaction::hash).collect();
    let computed = merkle_root(&hashes);
    if computed != block.header.tx_root {
        return Err(BlockError::TxRootMismatch {
            header: block.header.tx_root,
            computed,
        });
    }
    let mut seen = HashSet::with_capacity(hashes.len());
    for hash in &hashes {
        if !seen.insert(*hash) {
            return Err(BlockError::DuplicateTx { hash: *hash });
        }
    }
    Ok(hashes)
}

/// The costly half of [`check_block_stateless`]: every transaction's own checks, its
/// signature included, in parallel; `hashes` are the block's tx hashes from
/// [`check_block_shape`].
pub fn check_block_txs(
    block: &Block,
    hashes: &[TxHash],
    chain_id: ChainId,
    signatures: &SignatureCache,
) -> Result<(), BlockError> {
    block
        .txs
        .par_iter()
        .zip(hashes.par_iter())
        .enumerate()
        .try_for_each(|(index, (tx, hash))| {
            tx.check_stateless_cached(chain_id, signatures)
                .map_err(|source| BlockError::InvalidTx {
                    index,
                    hash: *hash,
                    source,
                })
        })
}

/// Field-level header checks: version, timestamp range, engine field sizes.
pub fn check_header_fields(header: &Header) -> Result<(), BlockError> {
    if header.version != HEADER_VERSION {
        return Err(BlockError::BadVersion {
            expected: HEADER_VERSION,
            got: header.version,
        });
    }
    if header.timestamp.0 > u64::from(u32::MAX) {
        return Err(BlockError::TimestampOutOfRange {
            timestamp: header.timestamp,
        });
    }
    for (field, len) in [
        ("data", header.engine.data.len()),
        ("seal", header.engine.seal.len()),
    ] {
        if len > MAX_ENGINE_FIELD_BYTES {
            return Err(BlockError::EngineFieldTooLarge {
                field,
                len,
                max: MAX_ENGINE_FIELD_BYTES,
            });
        }
    }
    Ok(())
}

/// The median timestamp of `parent` and up to ten blocks before it (Bitcoin's MTP),
/// walking the headers. [`ChainView::median_time_past`] is the way to ask: a store-backed
/// view remembers the answer per block.
pub fn median_time_past<C: ChainView + ?Sized>(
    chain: &C,
    parent: &SealedHeader,
) -> Result<Timestamp, StoreError> {
    let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
    times.push(parent.timestamp);
    let mut current = parent.parent;
    while times.len() < MEDIAN_TIME_SPAN && parent.height().0 >= times.len() as u64 {
        match chain.time_and_parent(&current)? {
            Some((timestamp, parent)) => {
                times.push(timestamp);
                current = parent;
            }
            None => break,
        }
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// Generic header checks against the parent: height, median time past, future drift.
pub fn check_header_against_parent(
    header: &Header,
    parent: &SealedHeader,
    median: Timestamp,
    now: Timestamp,
    max_drift: u64,
) -> Result<(), BlockError> {
    if parent.height().next() != Some(header.height) {
        return Err(BlockError::BadHeight {
            parent: parent.height(),
            got: header.height,
        });
    }
    if header.timestamp <= median {
        return Err(BlockError::TimestampNotAfterMedian {
            timestamp: header.timestamp,
            median,
        });
    }
    if header.timestamp > now.saturating_add(max_drift) {
        return Err(BlockError::TimestampInFuture {
            timestamp: header.timestamp,
            now,
            max_drift,
        });
    }
    Ok(())
}

/// Applies one transaction: nonce must equal the account's, balance must cover amount plus
/// fee; the fee goes to `header.producer`; engine kinds go to the engine.
pub fn apply_tx(
    engine: &dyn ConsensusEngine,
    state: &mut StateOverlay<'_>,
    tx: &Transaction,
    header: &Header,
) -> Result<(), TxError> {
    let sender = tx.sender_address();
    let mut account = state.account(&sender).map_err(TxError::Store)?;
    if tx.nonce < account.nonce {
        return Err(TxError::NonceTooLow {
            expected: account.nonce,
            got: tx.nonce,
        });
    }
    if tx.nonce > account.nonce {
        return Err(TxError::NonceTooHigh {
            expected: account.nonce,
            got: tx.nonce,
        });
    }
    let cost = tx.total_cost().ok_or(TxError::AmountOverflow)?;
    account.balance = account
        .balance
        .checked_sub(cost)
        .ok_or(TxError::InsufficientBalance {
            address: sender,
            available: account.balance,
            needed: cost,
        })?;
    // The nonce cannot overflow: an account would need 2^64 transactions.
    account.nonce = account.nonce.saturating_add(1);
    state.set_account(&sender, account);
    match &tx.kind {
        TxKind::Transfer { to, amount } => credit(state, to, *amount)?,
        _ => engine
            .apply_tx(state, &sender, tx, header)
            .map_err(|e| match e {
                EngineError::UnsupportedTx { kind, engine } => {
                    TxError::UnsupportedKind { kind, engine }
                }
                EngineError::Store(e) => TxError::Store(e),
                other => TxError::EngineRefused {
                    kind: tx.kind.name(),
                    reason: other.to_string(),
                },
            })?,
    }
    credit(state, &header.producer, tx.fee)
}

fn credit(
    state: &mut StateOverlay<'_>,
    to: &crate::crypto::Address,
    amount: Amount,
) -> Result<(), TxError> {
    state.credit(to, amount).map_err(|e| match e {
        CreditOverflow::Overflow { address } => TxError::BalanceOverflow { address },
        CreditOverflow::Store(e) => TxError::Store(e),
    })
}

/// The state transition of a block on `state` (the parent's state): the engine's
/// `begin_block`, every transaction in order, then `end_block`.
pub fn execute_block(
    engine: &dyn ConsensusEngine,
    state: &mut StateOverlay<'_>,
    parent: &SealedHeader,
    block: &Block,
    tx_hashes: &[TxHash],
) -> Result<(), BlockError> {
    engine.begin_block(state, &block.header, parent)?;
    for (index, (tx, hash)) in block.txs.iter().zip(tx_hashes).enumerate() {
        apply_tx(engine, state, tx, &block.header).map_err(|source| BlockError::InvalidTx {
            index,
            hash: *hash,
            source,
        })?;
    }
    engine.end_block(state, &block.header, parent)?;
    Ok(())
}

/// Runs the engine's `begin_block` for `header` on its parent's state and keeps nothing:
/// the producer's entitlement (signer set, slot owner, stake kernel) judged before the
/// block is stored or weighed, as geth's Clique `verifySeal` judges a seal against the
/// parent's snapshot. Engines whose blocks are signed call it from `verify_header`; the
/// parent's state comes from [`ChainView::state_at`].
pub fn check_begin_block_on_parent(
    engine: &dyn ConsensusEngine,
    chain: &dyn ChainView,
    header: &Header,
    parent: &SealedHeader,
) -> Result<(), EngineError> {
    let parent_state = chain.state_at(&parent.hash())?;
    let mut scratch = StateOverlay::new(&parent_state);
    engine.begin_block(&mut scratch, header, parent)
}

/// A state view that reads nothing: for executing on an empty state (genesis).
#[derive(Debug, Default)]
pub struct EmptyState;

impl StateRead for EmptyState {
    fn get(&self, _key: &crate::state::StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
}
