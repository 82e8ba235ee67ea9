//! The chain: the one writer of the store. It imports blocks through the layered checks,
//! keeps every valid branch, follows the heaviest one (reorganising with undo records), and
//! builds block templates for producers.

use crate::amount::Amount;
use crate::block::{Block, EngineFields, HEADER_VERSION, Header, SealedHeader};
use crate::clock::Clock;
use crate::crypto::{Address, merkle_root};
use crate::engine::{ChainView, ConsensusEngine, EngineError};
use crate::fork_choice;
use crate::primitives::{BlockHash, BlockId, ChainId, Hash256, Height, Timestamp, TxHash, Weight};
use crate::reader::{ChainReader, META_HEAD, UndoRecord};
use crate::sigcache::SignatureCache;
use crate::state::{LtHash, StateChanges, StateKey, StateOverlay, StateRead, update_lthash};
use crate::store::{Column, Store, StoreError, WriteBatch, decode_value, encode_value};
use crate::tx::{Transaction, TxError};
use crate::validation::{
    self, BlockError, DEFAULT_MAX_FUTURE_DRIFT_SECS, EmptyState, check_block_shape,
    check_block_stateless, check_block_txs, check_header_against_parent, execute_block,
};
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;
use std::sync::Arc;
use tracing::{debug, info, warn};

const META_HEAD_LTHASH: &[u8] = b"head_lthash";
const META_GENESIS: &[u8] = b"genesis";
const META_FORMAT: &[u8] = b"format";
/// The newest block the chain has held final: it only ever rises.
const META_FINALIZED: &[u8] = b"finalized";
/// Version of the store's layout.
pub const STORE_FORMAT: u8 = 1;
/// Most blocks [`ChainView::state_at`] reverts and replays in one call to reach a block's
/// state. The state it reached last is kept, so a side branch imported block by block
/// replays one block each time however long it grows; a block further than this from both
/// the head and that state cannot be judged (it is refused as
/// [`EngineError::StateUnavailable`], which is not the sender's fault).
pub const MAX_STATE_DEPTH: u64 = 256;

/// The parameters the core itself needs.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    pub chain_id: ChainId,
    /// How far ahead of our clock a block's timestamp may be, in seconds.
    pub max_future_drift: u64,
    /// Signatures this node already verified. Give the mempool the same cache
    /// ([`crate::Mempool::with_signature_cache`]) so a transaction checked at admission is
    /// not checked again when its block is built or imported.
    pub signature_cache: Arc<SignatureCache>,
}

impl ChainConfig {
    /// The default drift and a cache of its own of the default size.
    pub fn new(chain_id: ChainId) -> ChainConfig {
        ChainConfig {
            chain_id,
            max_future_drift: DEFAULT_MAX_FUTURE_DRIFT_SECS,
            signature_cache: Arc::new(SignatureCache::default()),
        }
    }
}

/// What the genesis block is made of. Its hash commits to all of it, the engine's
/// parameters included, so chains that differ in engine never mix.
#[derive(Clone, Debug)]
pub struct Genesis {
    pub chain_id: ChainId,
    pub timestamp: Timestamp,
    pub alloc: Vec<(Address, Amount)>,
    /// The engine's kind and parameters in canonical bytes.
    pub engine_params: Vec<u8>,
    /// The genesis difficulty bits (PoW's starting target; 0 for others).
    pub bits: u32,
}

impl Genesis {
    /// The genesis block and its state.
    pub fn build(
        &self,
        engine: &dyn ConsensusEngine,
    ) -> Result<(Block, StateChanges, LtHash), BlockError> {
        let empty = EmptyState;
        let mut state = StateOverlay::new(&empty);
        for (address, amount) in &self.alloc {
            state
                .credit(address, *amount)
                .map_err(|_| BlockError::Genesis)?;
        }
        engine.init_genesis(&mut state)?;
        let changes = state.into_changes();
        let lthash = LtHash::of_entries(
            changes
                .iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
        );
        let data = borsh::to_vec(&(self.chain_id, &self.engine_params))
            .expect("borsh serialization into a Vec cannot fail");
        let header = Header {
            version: HEADER_VERSION,
            parent: BlockHash::ZERO,
            height: Height::GENESIS,
            timestamp: self.timestamp,
            tx_root: merkle_root(&[]),
            state_root: lthash.root(),
            producer: Address::default(),
            engine: EngineFields {
                bits: self.bits,
                nonce: 0,
                data,
                seal: Vec::new(),
            },
        };
        Ok((
            Block {
                header,
                txs: Vec::new(),
            },
            changes,
            lthash,
        ))
    }
}

/// What the store keeps about every block it holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct BlockMeta {
    pub height: Height,
    pub parent: BlockHash,
    /// Sum of the engine weights from genesis to this block.
    pub total_weight: Weight,
    /// Set when the block failed its state transition; it and its descendants are refused.
    pub invalid: bool,
}

/// A move of the head.
#[derive(Clone, Debug)]
pub struct HeadChange {
    pub old_head: BlockId,
    pub new_head: BlockId,
    /// The newest block both chains share.
    pub fork_point: BlockId,
    /// Blocks taken off the best chain, newest first (their txs may return to the mempool).
    pub reverted: Vec<Block>,
    /// Blocks put on the best chain, oldest first.
    pub applied: Vec<BlockId>,
}

impl HeadChange {
    pub fn is_reorg(&self) -> bool {
        !self.reverted.is_empty()
    }
}

/// The result of a successful import.
#[derive(Clone, Debug)]
pub enum ImportOutcome {
    /// The block was already stored.
    AlreadyKnown,
    /// Stored on a branch lighter than (or as heavy as) the best chain.
    SideChain(BlockId),
    /// The head moved.
    NewHead(HeadChange),
}

/// The block being imported, not yet stored, with what its checks worked out.
struct NewBlock {
    block: Block,
    meta: BlockMeta,
    tx_hashes: Vec<TxHash>,
    /// The votes that decided it (voting engines).
    certificate: Option<Vec<u8>>,
}

/// A template executed on the head: the block (unsealed) and the candidates left out.
#[derive(Debug)]
pub struct BuiltBlock {
    pub block: Block,
    pub skipped: Vec<(TxHash, TxError)>,
}

/// The state after a side block, kept as changes over the state of `anchor`, a block of
/// the best chain (the head when it was worked out).
#[derive(Debug)]
struct SideState {
    anchor: BlockId,
    block: BlockHash,
    changes: StateChanges,
}

pub struct Chain {
    /// The state [`ChainView::state_at`] worked out last: the next child on that branch
    /// replays only itself.
    side_state: std::sync::Mutex<Option<SideState>>,
    reader: ChainReader,
    engine: Arc<dyn ConsensusEngine>,
    clock: Arc<dyn Clock>,
    config: ChainConfig,
    head: SealedHeader,
    head_meta: BlockMeta,
    head_lthash: LtHash,
    /// The highest finalized block seen so far, persisted: what [`Chain::finalized`] never
    /// goes below.
    finalized: Option<BlockId>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("engine", &self.engine.name())
            .field("head", &self.head.id())
            .finish()
    }
}

fn height_key(height: Height) -> [u8; 8] {
    height.0.to_be_bytes()
}

impl Chain {
    /// Opens the chain in `store`, writing genesis into an empty store. A store holding
    /// another chain's genesis is refused.
    pub fn open(
        store: Arc<dyn Store>,
        engine: Arc<dyn ConsensusEngine>,
        clock: Arc<dyn Clock>,
        config: ChainConfig,
        genesis: &Genesis,
    ) -> Result<Chain, BlockError> {
        let (genesis_block, genesis_state, genesis_lthash) = genesis.build(engine.as_ref())?;
        let genesis_header = SealedHeader::new(genesis_block.header.clone());
        match store.get(Column::Meta, META_GENESIS)? {
            Some(found) if found.as_slice() != genesis_header.hash().0.as_slice() => {
                return Err(StoreError::WrongGenesis {
                    path: format!("{store:?}"),
                    found: hex::encode(&found),
                    expected: genesis_header.hash().to_hex(),
                }
                .into());
            }
            Some(_) => {}
            None => {
                Self::write_genesis(
                    store.as_ref(),
                    &genesis_block,
                    genesis_state,
                    &genesis_lthash,
                )?;
                info!(genesis = %genesis_header.hash(), engine = engine.name(), "initialised new chain");
            }
        }
        match store.get(Column::Meta, META_FORMAT)? {
            Some(v) if v == [STORE_FORMAT] => {}
            other => {
                return Err(StoreError::UnsupportedVersion {
                    what: "store layout",
                    version: other.and_then(|v| v.first().copied()).unwrap_or(0),
                }
                .into());
            }
        }
        let reader = ChainReader::new(store.clone(), genesis_header.clone());
        let head_hash = reader.head_hash()?;
        let head_lthash = store
            .get(Column::Meta, META_HEAD_LTHASH)?
            .and_then(|b| LtHash::from_bytes(&b))
            .ok_or(StoreError::Corrupt {
                what: "head state hash",
                reason: "missing or wrong length".into(),
            })?;
        let mut chain = Chain {
            side_state: std::sync::Mutex::new(None),
            reader,
            engine,
            clock,
            config,
            head: genesis_header,
            head_meta: BlockMeta {
                height: Height::GENESIS,
                parent: BlockHash::ZERO,
                total_weight: Weight::ZERO,
                invalid: false,
            },
            head_lthash,
            finalized: None,
        };
        chain.finalized = chain
            .reader
            .store
            .get(Column::Meta, META_FINALIZED)?
            .map(|b| decode_value::<BlockId>(&b, "finalized block"))
            .transpose()?;
        chain.head = chain.header_required(&head_hash)?;
        chain.head_meta = chain.meta_required(&head_hash)?;
        if chain.head_lthash.root() != chain.head.state_root {
            return Err(StoreError::Corrupt {
                what: "head state",
                reason: format!(
                    "state hash {} does not match head {} state root {}",
                    chain.head_lthash.root(),
                    head_hash,
                    chain.head.state_root
                ),
            }
            .into());
        }
        info!(head = %chain.head.id().hash, height = %chain.head.height(), "chain opened");
        Ok(chain)
    }

    /// Writes genesis into an empty store: the block, its state, the height index and the
    /// head.
    fn write_genesis(
        store: &dyn Store,
        genesis_block: &Block,
        genesis_state: StateChanges,
        genesis_lthash: &LtHash,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let hash = genesis_block.hash();
        batch.put(Column::Meta, META_FORMAT, vec![STORE_FORMAT]);
        batch.put(Column::Meta, META_GENESIS, hash.0.to_vec());
        Self::put_block(&mut batch, genesis_block, hash);
        let meta = BlockMeta {
            height: Height::GENESIS,
            parent: BlockHash::ZERO,
            total_weight: Weight::ZERO,
            invalid: false,
        };
        batch.put(Column::BlockMeta, hash.0, encode_value(&meta));
        for (key, value) in genesis_state {
            if let Some(value) = value {
                batch.put(Column::State, key.0, value);
            }
        }
        batch.put(
            Column::Heights,
            height_key(Height::GENESIS),
            hash.0.to_vec(),
        );
        batch.put(Column::Meta, META_HEAD, hash.0.to_vec());
        batch.put(Column::Meta, META_HEAD_LTHASH, genesis_lthash.to_bytes());
        store.write(batch)
    }

    /// The bound on a block's time ahead of this node's clock: the chain's, or the
    /// engine's when that is tighter.
    fn future_drift(&self) -> u64 {
        let general = self.config.max_future_drift;
        self.engine
            .max_future_drift()
            .map_or(general, |engine| engine.min(general))
    }

    pub fn engine(&self) -> &Arc<dyn ConsensusEngine> {
        &self.engine
    }

    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn head_id(&self) -> BlockId {
        self.head.id()
    }

    pub fn head_meta(&self) -> BlockMeta {
        self.head_meta
    }

    pub fn total_weight(&self) -> Weight {
        self.head_meta.total_weight
    }

    /// The newest irreversible block: the engine's report on the head, or the highest
    /// one held before when that is higher. It never goes down (EOSIO's LIB only rises),
    /// across reorganisations and restarts alike, and no branch forking below it is taken.
    pub fn finalized(&self) -> Result<Option<BlockId>, EngineError> {
        let reported = self.engine.finalized(self)?;
        Ok(match (self.finalized, reported) {
            (Some(kept), Some(now)) if now.height <= kept.height => Some(kept),
            (Some(kept), None) => Some(kept),
            (_, now) => now,
        })
    }

    /// Persists a finalized block higher than the one held (after the head moved).
    fn raise_finalized(&mut self) {
        let finalized = match self.finalized() {
            Ok(finalized) => finalized,
            Err(e) => {
                warn!(error = %e, "cannot read the finalized block");
                return;
            }
        };
        if finalized.is_none() || finalized == self.finalized {
            return;
        }
        self.finalized = finalized;
        let mut batch = WriteBatch::default();
        if let Some(id) = &finalized {
            batch.put(Column::Meta, META_FINALIZED, encode_value(id));
        }
        // On a failed write it is held in memory until a later rise is written.
        if let Err(e) = self.reader.store.write(batch) {
            warn!(error = %e, "cannot record the finalized block");
        }
    }

    /// Recomputes the state hash from every stored entry and compares it with the head's
    /// state root: the check a reopened store must pass.
    pub fn verify_state(&self) -> Result<(), StoreError> {
        let mut acc = LtHash::default();
        self.reader.store.for_each(Column::State, &mut |k, v| {
            acc.add(&LtHash::expand(&StateKey(k.to_vec()), v));
            true
        })?;
        if acc.root() != self.head.state_root {
            return Err(StoreError::Corrupt {
                what: "state",
                reason: format!(
                    "stored entries hash to {}, head {} commits to {}",
                    acc.root(),
                    self.head.hash(),
                    self.head.state_root
                ),
            });
        }
        Ok(())
    }

    fn put_block(batch: &mut WriteBatch, block: &Block, hash: BlockHash) {
        batch.put(Column::Headers, hash.0, encode_value(&block.header));
        batch.put(Column::Bodies, hash.0, encode_value(&block.txs));
    }

    /// Imports a block: checks it layer by layer, stores it, and moves the head when its
    /// branch is now the heaviest. An engine that decides by votes takes blocks only
    /// through [`Chain::import_certified`].
    pub fn import_block(&mut self, block: Block) -> Result<ImportOutcome, BlockError> {
        if self.engine.requires_certificate() {
            return Err(BlockError::MissingCertificate {
                engine: self.engine.name(),
            });
        }
        self.import(block, None)
    }

    /// Imports a block decided by votes, with the certificate that decided it: the
    /// certificate is checked against the voters of the head (its parent) before anything
    /// costlier, and stored with the block in the same write. Such a block extends the head
    /// or is refused: a decided chain has no branches.
    pub fn import_certified(
        &mut self,
        block: Block,
        certificate: Vec<u8>,
    ) -> Result<ImportOutcome, BlockError> {
        let hash = block.hash();
        if let Some(meta) = self.meta(&hash)? {
            return if meta.invalid {
                Err(BlockError::KnownInvalid { hash })
            } else {
                Ok(ImportOutcome::AlreadyKnown)
            };
        }
        let parent = block.header.parent;
        if parent != self.head.hash() {
            return Err(if self.meta(&parent)?.is_some() {
                BlockError::ConflictsWithDecided {
                    parent,
                    head: self.head.hash(),
                }
            } else {
                BlockError::UnknownParent { parent }
            });
        }
        let sealed = SealedHeader::new_unchecked(block.header.clone(), hash);
        self.engine
            .verify_certificate(self, &sealed, &certificate)?;
        self.import(block, Some(certificate))
    }

    /// Checks that `block` is a valid child of the head (every layer [`Chain::import_block`]
    /// runs, the state root included) without storing anything: a voting engine's replicas
    /// check a proposal before they vote for it.
    pub fn validate_proposal(&self, block: &Block) -> Result<(), BlockError> {
        let tx_hashes =
            check_block_stateless(block, self.config.chain_id, &self.config.signature_cache)?;
        let parent = self.head.clone();
        if block.header.parent != parent.hash() {
            return Err(BlockError::UnknownParent {
                parent: block.header.parent,
            });
        }
        let median = ChainView::median_time_past(self, &parent)?;
        check_header_against_parent(
            &block.header,
            &parent,
            median,
            self.clock.now(),
            self.future_drift(),
        )?;
        let sealed = SealedHeader::new(block.header.clone());
        self.engine.verify_header(self, &sealed, &parent)?;
        let mut state = StateOverlay::new(&self.reader.state);
        execute_block(self.engine.as_ref(), &mut state, &parent, block, &tx_hashes)?;
        let computed = self.state_root_after(state)?;
        if computed != block.header.state_root {
            return Err(BlockError::StateRootMismatch {
                header: block.header.state_root,
                computed,
            });
        }
        Ok(())
    }

    /// The state root of the head's state with `state`'s changes on top.
    fn state_root_after(&self, state: StateOverlay<'_>) -> Result<Hash256, StoreError> {
        let undo = state.undo()?;
        let changes = state.into_changes();
        let mut lthash = self.head_lthash.clone();
        update_lthash(&mut lthash, &undo, &changes);
        Ok(lthash.root())
    }

    fn import(
        &mut self,
        block: Block,
        certificate: Option<Vec<u8>>,
    ) -> Result<ImportOutcome, BlockError> {
        let hash = block.hash();
        if block.header.height == Height::GENESIS {
            return if hash == self.reader.genesis.hash() {
                Ok(ImportOutcome::AlreadyKnown)
            } else {
                Err(BlockError::Genesis)
            };
        }
        if let Some(meta) = self.meta(&hash)? {
            return if meta.invalid {
                Err(BlockError::KnownInvalid { hash })
            } else {
                Ok(ImportOutcome::AlreadyKnown)
            };
        }
        // Cheapest first: the shape, the parent, the header and the engine's rules for it
        // come before any signature is checked, so a block that cannot be placed or whose
        // producer is not entitled costs no per-transaction work.
        let tx_hashes = check_block_shape(&block)?;
        let parent_hash = block.header.parent;
        let parent_meta = self.meta(&parent_hash)?.ok_or(BlockError::UnknownParent {
            parent: parent_hash,
        })?;
        if parent_meta.invalid {
            return Err(BlockError::InvalidAncestor {
                ancestor: parent_hash,
            });
        }
        let parent = self.header_required(&parent_hash)?;
        let median = ChainView::median_time_past(self, &parent)?;
        check_header_against_parent(
            &block.header,
            &parent,
            median,
            self.clock.now(),
            self.future_drift(),
        )?;
        let sealed = SealedHeader::new_unchecked(block.header.clone(), hash);
        self.engine.verify_header(self, &sealed, &parent)?;
        check_block_txs(
            &block,
            &tx_hashes,
            self.config.chain_id,
            &self.config.signature_cache,
        )?;
        let meta = BlockMeta {
            height: block.header.height,
            parent: parent_hash,
            total_weight: parent_meta
                .total_weight
                .saturating_add(self.engine.block_weight(&sealed)),
            invalid: false,
        };
        let id = sealed.id();

        let (fork_point, path) = self.fork_point(&parent)?;
        if parent_hash != self.head.hash()
            && let Some(finalized) = self.finalized()?
            && fork_point.height < finalized.height
        {
            return Err(BlockError::BelowFinalized {
                fork_height: fork_point.height,
                finalized: finalized.height,
            });
        }
        if !fork_choice::prefer(
            meta.total_weight,
            &hash,
            self.head_meta.total_weight,
            &self.head.hash(),
            self.engine.tie_break(),
        ) {
            let mut batch = WriteBatch::default();
            Self::put_block(&mut batch, &block, hash);
            batch.put(Column::BlockMeta, hash.0, encode_value(&meta));
            self.reader.store.write(batch)?;
            debug!(%hash, height = %id.height, "stored side-chain block");
            return Ok(ImportOutcome::SideChain(id));
        }
        let mut path = path;
        path.push(hash);
        let new_block = NewBlock {
            block,
            meta,
            tx_hashes,
            certificate,
        };
        let change = self.switch_to(fork_point, &path, Some(new_block))?;
        self.raise_finalized();
        Ok(ImportOutcome::NewHead(change))
    }

    /// The newest block of the best chain that `tip` descends from, and the hashes from
    /// just above it up to `tip`, oldest first.
    fn fork_point(&self, tip: &SealedHeader) -> Result<(BlockId, Vec<BlockHash>), StoreError> {
        let mut path = Vec::new();
        let mut current = tip.clone();
        loop {
            if self.best_hash_at(current.height())? == Some(current.hash()) {
                path.reverse();
                return Ok((current.id(), path));
            }
            path.push(current.hash());
            current = self.header_required(&current.parent)?;
        }
    }

    /// Reverts the best chain down to `fork_point` and connects `path` on top, all in one
    /// write batch. `new_block` is the block being imported (the last of `path`), not yet
    /// stored. On a failed state transition the failing block and those after it are
    /// marked invalid and the head stays where it was.
    fn switch_to(
        &mut self,
        fork_point: BlockId,
        path: &[BlockHash],
        new_block: Option<NewBlock>,
    ) -> Result<HeadChange, BlockError> {
        let old_head = self.head.id();
        let mut overlay = StateOverlay::new(&self.reader.state);
        let mut lthash = self.head_lthash.clone();
        let mut batch = WriteBatch::default();
        let reverted = self.revert_to(fork_point, &mut overlay, &mut lthash, &mut batch)?;
        let branch = self.apply_branch(
            fork_point,
            path,
            &new_block,
            &mut overlay,
            &mut lthash,
            &mut batch,
        )?;
        let changes = overlay.into_changes();
        self.commit_switch(
            changes, batch, lthash, old_head, fork_point, reverted, branch,
        )
    }

    /// Takes the best chain from the head down to `fork_point` off, newest first: the
    /// state goes back in `overlay` and `lthash`, the indexes of the reverted blocks go in
    /// `batch`. Returns the reverted blocks.
    fn revert_to(
        &self,
        fork_point: BlockId,
        overlay: &mut StateOverlay<'_>,
        lthash: &mut LtHash,
        batch: &mut WriteBatch,
    ) -> Result<Vec<Block>, BlockError> {
        let old_head = self.head.id();
        let mut reverted = Vec::new();
        let mut height = old_head.height;
        while height > fork_point.height {
            let hash = self
                .best_hash_at(height)?
                .ok_or_else(|| StoreError::Corrupt {
                    what: "height index",
                    reason: format!("no block at height {height}"),
                })?;
            let undo = self.undo_record(&hash)?;
            if undo.parent_lthash.is_empty() {
                // The parent's state hash is this one minus what the block wrote plus what
                // it overwrote (records before this change carry it whole instead).
                let current = undo
                    .entries
                    .iter()
                    .map(|(key, _)| Ok((key.clone(), overlay.get(key)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let previous: std::collections::BTreeMap<StateKey, Option<Vec<u8>>> =
                    undo.entries.iter().cloned().collect();
                update_lthash(lthash, &current, &previous);
            } else {
                *lthash = LtHash::from_bytes(&undo.parent_lthash).ok_or(StoreError::Corrupt {
                    what: "undo record",
                    reason: "state hash of wrong length".into(),
                })?;
            }
            for (key, old) in undo.entries {
                match old {
                    Some(v) => overlay.put(key, v),
                    None => overlay.delete(key),
                }
            }
            let block = self.block(&hash)?.ok_or_else(|| StoreError::Corrupt {
                what: "block",
                reason: format!("missing reverted block {hash}"),
            })?;
            for tx in &block.txs {
                batch.delete(Column::TxIndex, tx.hash().0);
            }
            batch.delete(Column::Undo, hash.0);
            batch.delete(Column::Heights, height_key(height));
            reverted.push(block);
            height = Height(height.0 - 1);
        }
        Ok(reverted)
    }

    /// Puts the branch `path` on top of `fork_point`, oldest first, executing each block on
    /// `overlay` and checking its state root against `lthash`; a block that fails is marked
    /// invalid with its descendants on the path. Returns the new head, the applied blocks and
    /// the new head's meta.
    fn apply_branch(
        &self,
        fork_point: BlockId,
        path: &[BlockHash],
        new_block: &Option<NewBlock>,
        overlay: &mut StateOverlay<'_>,
        lthash: &mut LtHash,
        batch: &mut WriteBatch,
    ) -> Result<(SealedHeader, Vec<BlockId>, BlockMeta), BlockError> {
        let mut parent = self.header_required(&fork_point.hash)?;
        let mut applied = Vec::with_capacity(path.len());
        let mut new_head_meta = None;
        for (i, hash) in path.iter().enumerate() {
            // The imported block's tx hashes were computed by its stateless checks; stored
            // branch blocks hash theirs here.
            let (block, meta, tx_hashes) = match new_block {
                Some(new) if i + 1 == path.len() => {
                    (new.block.clone(), new.meta, new.tx_hashes.clone())
                }
                _ => {
                    let block = self.block(hash)?.ok_or_else(|| StoreError::Corrupt {
                        what: "block",
                        reason: format!("missing branch block {hash}"),
                    })?;
                    let hashes = block.txs.iter().map(Transaction::hash).collect();
                    (block, self.meta_required(hash)?, hashes)
                }
            };
            let result = (|| {
                let mut child = StateOverlay::new(overlay);
                execute_block(
                    self.engine.as_ref(),
                    &mut child,
                    &parent,
                    &block,
                    &tx_hashes,
                )?;
                let undo = child.undo()?;
                Ok::<_, BlockError>((child.into_changes(), undo))
            })();
            let (changes, undo) = match result {
                Ok(v) => v,
                Err(e) => return Err(self.mark_invalid(path, i, new_block, e)),
            };
            update_lthash(lthash, &undo, &changes);
            let computed = lthash.root();
            if computed != block.header.state_root {
                let e = BlockError::StateRootMismatch {
                    header: block.header.state_root,
                    computed,
                };
                return Err(self.mark_invalid(path, i, new_block, e));
            }
            overlay.apply(changes);
            if i + 1 == path.len()
                && let Some(new) = &new_block
            {
                Self::put_block(batch, &new.block, *hash);
                batch.put(Column::BlockMeta, hash.0, encode_value(&new.meta));
                if let Some(certificate) = &new.certificate {
                    batch.put(Column::Certificates, hash.0, certificate.clone());
                }
            }
            // The parent's state hash is left out: reverting works it out from the
            // entries (4 KiB less per block).
            let record = UndoRecord {
                parent_lthash: Vec::new(),
                entries: undo,
            };
            batch.put(Column::Undo, hash.0, encode_value(&record));
            batch.put(
                Column::Heights,
                height_key(block.header.height),
                hash.0.to_vec(),
            );
            for (index, tx_hash) in tx_hashes.iter().enumerate() {
                batch.put(
                    Column::TxIndex,
                    tx_hash.0,
                    encode_value(&(*hash, index as u32)),
                );
            }
            let sealed = SealedHeader::new_unchecked(block.header, *hash);
            applied.push(sealed.id());
            new_head_meta = Some(meta);
            parent = sealed;
        }
        let new_head_meta = new_head_meta.ok_or_else(|| StoreError::Corrupt {
            what: "branch",
            reason: "empty path".into(),
        })?;
        Ok((parent, applied, new_head_meta))
    }

    /// Writes the switch in one batch (the state `changes`, the head and its state hash) and
    /// makes `parent` the head.
    #[allow(clippy::too_many_arguments)]
    fn commit_switch(
        &mut self,
        changes: std::collections::BTreeMap<StateKey, Option<Vec<u8>>>,
        mut batch: WriteBatch,
        lthash: LtHash,
        old_head: BlockId,
        fork_point: BlockId,
        reverted: Vec<Block>,
        (parent, applied, new_head_meta): (SealedHeader, Vec<BlockId>, BlockMeta),
    ) -> Result<HeadChange, BlockError> {
        for (key, value) in &changes {
            match value {
                Some(v) => batch.put(Column::State, key.0.clone(), v.clone()),
                None => batch.delete(Column::State, key.0.clone()),
            }
        }
        batch.put(Column::Meta, META_HEAD, parent.hash().0.to_vec());
        batch.put(Column::Meta, META_HEAD_LTHASH, lthash.to_bytes());
        self.reader.store.write(batch)?;
        self.reader.state.written(changes);

        let change = HeadChange {
            old_head,
            new_head: parent.id(),
            fork_point,
            reverted,
            applied,
        };
        if change.is_reorg() {
            warn!(
                from = %old_head.hash.short(),
                to = %parent.hash().short(),
                depth = change.reverted.len(),
                fork = %fork_point.height,
                "reorganised"
            );
        }
        self.head = parent;
        self.head_meta = new_head_meta;
        self.head_lthash = lthash;
        Ok(change)
    }

    /// The undo record of a block on the best chain.
    fn undo_record(&self, hash: &BlockHash) -> Result<UndoRecord, StoreError> {
        self.store
            .get(Column::Undo, &hash.0)?
            .map(|b| decode_value(&b, "undo record"))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt {
                what: "undo record",
                reason: format!("missing for {hash}"),
            })
    }

    /// The state after `hash`: the head's state with the best chain reverted (by undo
    /// records) down to where `hash`'s branch leaves it, or to the anchor of the side state
    /// kept from the last call when the branch reaches that, and the branch's blocks up to
    /// `hash` executed on top; at most [`MAX_STATE_DEPTH`] blocks in all.
    fn state_after(&self, hash: &BlockHash) -> Result<StateOverlay<'_>, EngineError> {
        let unavailable = |reason: String| EngineError::StateUnavailable {
            block: *hash,
            reason,
        };
        let mut kept = self
            .side_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|s| {
                self.best_hash_at(s.anchor.height)
                    .is_ok_and(|h| h == Some(s.anchor.hash))
            });
        let mut current = self
            .header(hash)?
            .ok_or_else(|| unavailable("the block is not stored".to_owned()))?;
        // The branch from `hash` down to the best chain or the kept state, newest first.
        let mut branch = Vec::new();
        let from_kept = loop {
            if kept.as_ref().is_some_and(|s| s.block == current.hash()) {
                break true;
            }
            if self.best_hash_at(current.height())? == Some(current.hash()) {
                break false;
            }
            if branch.len() as u64 >= MAX_STATE_DEPTH {
                return Err(unavailable(format!(
                    "its branch leaves the best chain more than {MAX_STATE_DEPTH} blocks below it"
                )));
            }
            if self.meta(&current.hash())?.is_some_and(|m| m.invalid) {
                return Err(unavailable(format!(
                    "it descends from invalid block {}",
                    current.hash()
                )));
            }
            let parent = self.header_required(&current.parent)?;
            branch.push(current);
            current = parent;
        };
        // Revert the best chain down to the fork point, or to the kept state's anchor.
        let base = match &kept {
            Some(s) if from_kept => s.anchor.height,
            _ => current.height(),
        };
        let reverted = self.head.height().0.saturating_sub(base.0);
        if reverted + branch.len() as u64 > MAX_STATE_DEPTH {
            return Err(unavailable(format!(
                "reaching it reverts {reverted} and replays {} blocks, more than {MAX_STATE_DEPTH}",
                branch.len()
            )));
        }
        let mut overlay = StateOverlay::new(&self.reader.state);
        self.revert_best_to(&mut overlay, base)?;
        if from_kept && let Some(s) = kept.take() {
            overlay.apply(s.changes);
        }
        self.replay_branch(&mut overlay, current, branch, &unavailable)?;
        let changes = overlay.into_changes();
        *self.side_state.lock().unwrap_or_else(|p| p.into_inner()) = Some(SideState {
            anchor: self.head.id(),
            block: *hash,
            changes: changes.clone(),
        });
        let mut out = StateOverlay::new(&self.reader.state);
        out.apply(changes);
        Ok(out)
    }

    /// Undoes the best chain's blocks above `base` in `overlay`, newest first.
    fn revert_best_to(
        &self,
        overlay: &mut StateOverlay<'_>,
        base: Height,
    ) -> Result<(), EngineError> {
        let mut height = self.head.height();
        while height > base {
            let best = self
                .best_hash_at(height)?
                .ok_or_else(|| StoreError::Corrupt {
                    what: "height index",
                    reason: format!("no block at height {height}"),
                })?;
            for (key, old) in self.undo_record(&best)?.entries {
                match old {
                    Some(v) => overlay.put(key, v),
                    None => overlay.delete(key),
                }
            }
            height = Height(height.0 - 1);
        }
        Ok(())
    }

    /// Executes `branch` (newest first, its oldest block a child of `parent`) on
    /// `overlay`; a block that does not execute makes the state `unavailable`.
    fn replay_branch(
        &self,
        overlay: &mut StateOverlay<'_>,
        parent: SealedHeader,
        branch: Vec<SealedHeader>,
        unavailable: &dyn Fn(String) -> EngineError,
    ) -> Result<(), EngineError> {
        let mut parent = parent;
        for header in branch.into_iter().rev() {
            let block = self
                .block(&header.hash())?
                .ok_or_else(|| StoreError::Corrupt {
                    what: "block",
                    reason: format!("missing branch block {}", header.hash()),
                })?;
            let tx_hashes: Vec<TxHash> = block.txs.iter().map(Transaction::hash).collect();
            let mut child = StateOverlay::new(overlay);
            execute_block(
                self.engine.as_ref(),
                &mut child,
                &parent,
                &block,
                &tx_hashes,
            )
            .map_err(|e| {
                unavailable(format!(
                    "its ancestor {} does not execute: {e}",
                    header.hash()
                ))
            })?;
            let changes = child.into_changes();
            overlay.apply(changes);
            parent = header;
        }
        Ok(())
    }

    /// Records that `path[failed]` broke its state transition: it and every later block of
    /// the path are marked invalid. Returns the error to report for the imported block.
    fn mark_invalid(
        &self,
        path: &[BlockHash],
        failed: usize,
        new_block: &Option<NewBlock>,
        error: BlockError,
    ) -> BlockError {
        if !error.is_bad_data() {
            return error;
        }
        let mut batch = WriteBatch::default();
        for (i, hash) in path.iter().enumerate().skip(failed) {
            let meta = match new_block {
                Some(new) if i + 1 == path.len() => {
                    Self::put_block(&mut batch, &new.block, *hash);
                    Some(new.meta)
                }
                _ => self.meta(hash).ok().flatten(),
            };
            if let Some(mut meta) = meta {
                meta.invalid = true;
                batch.put(Column::BlockMeta, hash.0, encode_value(&meta));
            }
        }
        if let Err(e) = self.reader.store.write(batch) {
            warn!(error = %e, "could not record invalid blocks");
        }
        let bad = path[failed];
        warn!(block = %bad, error = %error, "block failed its state transition");
        if failed + 1 == path.len() {
            error
        } else {
            BlockError::InvalidAncestor { ancestor: bad }
        }
    }

    /// Executes `candidates` on the head state for a new block with `header`'s producer,
    /// timestamp and engine fields (the header's parent must be the head). Invalid
    /// candidates are skipped; the returned block has its tx and state roots set and is
    /// ready to seal.
    pub fn build_block(
        &self,
        mut header: Header,
        candidates: impl IntoIterator<Item = Transaction>,
        max_txs: usize,
    ) -> Result<BuiltBlock, BlockError> {
        if header.parent != self.head.hash() {
            return Err(BlockError::UnknownParent {
                parent: header.parent,
            });
        }
        header.height = self.head.height().next().ok_or(BlockError::BadHeight {
            parent: self.head.height(),
            got: header.height,
        })?;
        let mut state = StateOverlay::new(&self.reader.state);
        self.engine.begin_block(&mut state, &header, &self.head)?;
        let mut txs = Vec::new();
        let mut skipped = Vec::new();
        let mut bytes = 0usize;
        for tx in candidates {
            if txs.len() >= max_txs.min(crate::codec::MAX_TXS_PER_BLOCK) {
                break;
            }
            let len = borsh::object_length(&tx).unwrap_or(usize::MAX);
            if bytes + len + crate::codec::MAX_HEADER_BYTES > crate::codec::MAX_BLOCK_BYTES {
                break;
            }
            if let Err(e) =
                tx.check_stateless_cached(self.config.chain_id, &self.config.signature_cache)
            {
                skipped.push((tx.hash(), e));
                continue;
            }
            let result = {
                let mut child = StateOverlay::new(&state);
                validation::apply_tx(self.engine.as_ref(), &mut child, &tx, &header)
                    .map(|()| child.into_changes())
            };
            match result {
                Ok(changes) => {
                    state.apply(changes);
                    bytes += len;
                    txs.push(tx);
                }
                Err(e) => skipped.push((tx.hash(), e)),
            }
        }
        self.engine.end_block(&mut state, &header, &self.head)?;
        let tx_hashes: Vec<TxHash> = txs.iter().map(Transaction::hash).collect();
        header.tx_root = merkle_root(&tx_hashes);
        header.state_root = self.state_root_after(state)?;
        Ok(BuiltBlock {
            block: Block { header, txs },
            skipped,
        })
    }

    /// Whether the engine takes this transaction on the head state, without keeping
    /// anything: a kind the engine does not use is always refused (no block could ever
    /// include it), and so is any engine refusal (a vote for an unknown delegate, a
    /// proposal by a non-authority) when the tx is the sender's next one, since then it
    /// would run on exactly this state if included now. A later-nonce tx is only checked
    /// for its kind: the sender's earlier pending txs may change what it sees.
    pub fn check_tx_kind(&self, tx: &Transaction) -> Result<(), TxError> {
        if matches!(tx.kind, crate::tx::TxKind::Transfer { .. }) {
            return Ok(());
        }
        let sender = tx.sender_address();
        let header = self.template(Address::default(), self.head.timestamp);
        let mut scratch = StateOverlay::new(&self.reader.state);
        match self.engine.apply_tx(&mut scratch, &sender, tx, &header) {
            Ok(()) => Ok(()),
            Err(EngineError::UnsupportedTx { kind, engine }) => {
                Err(TxError::UnsupportedKind { kind, engine })
            }
            // Our store failing says nothing about the tx; the block builder will try it.
            Err(EngineError::Store(_)) => Ok(()),
            Err(refused) => {
                let next_nonce = self.reader.state.account(&sender).map(|a| a.nonce);
                if next_nonce.is_ok_and(|n| n == tx.nonce) {
                    Err(TxError::EngineRefused {
                        kind: tx.kind.name(),
                        reason: refused.to_string(),
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// A header template on the head: parent, height and version set, roots empty.
    pub fn template(&self, producer: Address, timestamp: Timestamp) -> Header {
        Header::template(&self.head, producer, timestamp)
    }

    /// Flushes the store (on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.reader.store.flush()
    }
}

impl ChainView for Chain {
    fn header(&self, hash: &BlockHash) -> Result<Option<SealedHeader>, StoreError> {
        self.reader.header(hash)
    }

    fn best_hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        if height > self.head.height() {
            return Ok(None);
        }
        self.reader.best_hash_at(height)
    }

    fn head(&self) -> SealedHeader {
        self.head.clone()
    }

    fn genesis(&self) -> &SealedHeader {
        &self.reader.genesis
    }

    fn state(&self) -> &dyn StateRead {
        &self.reader.state
    }

    /// The head's state, or a recent block's worked out from undo records and replayed
    /// blocks (at most [`MAX_STATE_DEPTH`] of them).
    fn state_at(&self, hash: &BlockHash) -> Result<StateOverlay<'_>, EngineError> {
        if *hash == self.head.hash() {
            return Ok(StateOverlay::new(&self.reader.state));
        }
        self.state_after(hash)
    }

    fn certificate(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader.certificate(hash)
    }

    fn median_time_past(&self, parent: &SealedHeader) -> Result<Timestamp, StoreError> {
        self.reader.median_time_past(parent)
    }

    fn time_and_parent(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<(Timestamp, BlockHash)>, StoreError> {
        self.reader.time_and_parent(hash)
    }
}

impl std::ops::Deref for Chain {
    type Target = ChainReader;

    /// Every read of the store is the reader's; the chain adds the write path.
    fn deref(&self) -> &ChainReader {
        &self.reader
    }
}
