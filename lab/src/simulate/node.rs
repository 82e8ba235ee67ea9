//! One simulated node: its own [`Chain`] on a memory store and its own mempool (the
//! actor's [`Ledger`]), the engine and producer `miner` builds from the spec, the
//! clock every node shares, and what its network layer would keep: the blocks and
//! transactions it has seen (gossipsub's seen cache), blocks waiting for their parent,
//! and the parents it asked a peer for.
//!
//! Production follows the node's producer loop (`node::producer`) step by step: ask
//! `next_turn` on the head; at the turn build the template from the mempool, `prepare`
//! it, refuse to sign at or before a time already signed (the sign guard), `seal`,
//! import. A head change makes a pending turn stale, as the real loop's cancel flag does.
//! Proof of work differs in one step only: its template is made at once and its seal is
//! the simulator's solve event.

use anyhow::Context;
use chain::store::FastBuildHasher;
use chain::{
    Block, BlockError, BlockHash, BlockProducer, CancelFlag, Canonical, CertifiedBlock, Chain,
    ChainConfig, ChainId, ChainView, Clock, Header, ImportOutcome, ManualClock, MemoryStore,
    Mempool, SecretKey, SkewedClock, Timestamp, Transaction, Turn, TxHash,
};
use config::{ChainSpec, EngineSpec};
use node::actor::Ledger;
use node::producer::MAX_BLOCK_TXS;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Blocks a node holds while their parents are missing; more are dropped.
const MAX_ORPHANS: usize = 256;
/// A request for a missing parent unanswered this long is asked again.
const REQUEST_RETRY_MS: u64 = 5_000;

/// Why a node did not produce or take something; counted per kind for the summary.
pub type Problem = &'static str;

/// A block or transaction with its hash and encoded size, worked out once and shared by
/// every delivery of it (a block reaches each node from several peers).
#[derive(Debug)]
pub struct Wire<T: Hashed> {
    pub item: T,
    pub hash: T::Hash,
    pub bytes: usize,
}

/// What goes over the simulated wire: it has a hash that names it.
pub trait Hashed: Canonical {
    type Hash: Copy + std::fmt::Debug;
    fn hash_of(&self) -> Self::Hash;
}

impl Hashed for Block {
    type Hash = BlockHash;
    fn hash_of(&self) -> BlockHash {
        self.hash()
    }
}

impl Hashed for Transaction {
    type Hash = TxHash;
    fn hash_of(&self) -> TxHash {
        self.hash()
    }
}

impl<T: Hashed> Wire<T> {
    pub fn new(item: T) -> Arc<Wire<T>> {
        let bytes = item.encode().len();
        let hash = item.hash_of();
        Arc::new(Wire { item, hash, bytes })
    }
}

/// A block that arrived before its parent, who sent it, and the certificate it came with
/// (a voting engine's blocks travel with the votes that decided them).
#[derive(Debug)]
pub struct Orphan {
    pub block: Arc<Wire<Block>>,
    pub from: usize,
    pub certificate: Option<Arc<Vec<u8>>>,
}

/// What the producer wants after a head change.
#[derive(Debug)]
pub enum Plan {
    /// Sign (or stake) at `turn.at_millis`.
    Sign(Turn),
    /// Mine on this template; the transactions were picked now, as the real miner picks
    /// them when it starts a search.
    Mine {
        header: Box<Header>,
        candidates: Vec<Transaction>,
    },
    /// No turn from now on this head for a while; ask again.
    Later(Option<Problem>),
}

#[derive(Debug)]
pub struct SimNode {
    pub name: String,
    pub ledger: Ledger,
    producer: Arc<dyn BlockProducer>,
    /// Bumped at every head change: a turn planned in an older epoch is stale.
    pub epoch: u64,
    /// The newest timestamp this node signed (the sign guard, kept in memory: a simulated
    /// node never restarts).
    last_signed: Option<u64>,
    known_blocks: HashSet<BlockHash, FastBuildHasher>,
    known_txs: HashSet<TxHash, FastBuildHasher>,
    /// By missing parent.
    orphans: BTreeMap<BlockHash, Vec<Orphan>>,
    orphan_count: usize,
    /// Parents asked for, and when.
    requested: BTreeMap<BlockHash, u64>,
    /// How far this node's clock runs ahead of virtual time, ms (behind when negative).
    skew_ms: i64,
    pub produced: u64,
    pub reorgs: u64,
    pub deepest_reorg: u64,
}

impl SimNode {
    pub fn open(
        name: String,
        key: &SecretKey,
        spec: &ChainSpec,
        clock: Arc<ManualClock>,
        skew_ms: i64,
    ) -> anyhow::Result<SimNode> {
        let engines = spec.engine.simulated(key)?;
        let producer = engines
            .producer
            .context("miner builds a producer for every author")?;
        let chain_id = ChainId(spec.chain_id);
        let clock: Arc<dyn Clock> = if skew_ms == 0 {
            clock
        } else {
            Arc::new(SkewedClock::new(clock, skew_ms))
        };
        let chain = Chain::open(
            Arc::new(MemoryStore::new()),
            engines.engine,
            clock,
            ChainConfig::new(chain_id),
            &spec.genesis(),
        )
        .with_context(|| format!("{name}: cannot open the chain"))?;
        // One signature cache per node, as a real node has: a transfer checked at admission
        // is not checked again when its block is imported.
        let mempool = Mempool::new(chain_id, spec.mempool_config())
            .with_signature_cache(chain.config().signature_cache.clone());
        Ok(SimNode {
            name,
            ledger: Ledger { chain, mempool },
            producer,
            epoch: 0,
            last_signed: None,
            known_blocks: HashSet::default(),
            known_txs: HashSet::default(),
            orphans: BTreeMap::new(),
            orphan_count: 0,
            requested: BTreeMap::new(),
            skew_ms,
            produced: 0,
            reorgs: 0,
            deepest_reorg: 0,
        })
    }

    pub fn chain(&self) -> &Chain {
        &self.ledger.chain
    }

    pub fn author(&self) -> chain::Address {
        self.producer.author()
    }

    /// What this node's clock reads at virtual time `now`.
    pub fn local_time(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.skew_ms)
    }

    /// The virtual time at which this node's clock reads `local`.
    pub fn virtual_time(&self, local: u64) -> u64 {
        local.saturating_add_signed(-self.skew_ms)
    }

    /// What to do on the current head at `now` (milliseconds); `mining` for proof of work.
    pub fn plan(&self, now: u64, mining: bool) -> Plan {
        let chain = self.chain();
        let head = chain.head();
        let turn = match self.producer.next_turn(chain, &head, self.local_time(now)) {
            Ok(Some(turn)) => turn,
            Ok(None) => return Plan::Later(None),
            Err(e) => {
                tracing::debug!(node = %self.name, error = %e, "cannot tell when to produce next");
                return Plan::Later(Some("cannot tell when to produce next"));
            }
        };
        if !mining {
            return Plan::Sign(turn);
        }
        let mut header = chain.template(self.producer.author(), turn.timestamp);
        if let Err(e) = self.producer.prepare(chain, &head, &mut header) {
            tracing::debug!(node = %self.name, error = %e, "cannot prepare a block");
            return Plan::Later(Some("cannot prepare a block"));
        }
        Plan::Mine {
            header: Box::new(header),
            candidates: self.ledger.mempool.select(MAX_BLOCK_TXS),
        }
    }

    /// The block of a signing turn on the head: template, prepare, sign guard, seal.
    pub fn sign(&mut self, turn: Turn) -> Result<Block, Problem> {
        let chain = self.chain();
        let head = chain.head();
        let mut header = chain.template(self.producer.author(), turn.timestamp);
        self.producer
            .prepare(chain, &head, &mut header)
            .map_err(|e| self.problem("cannot prepare a block", &e))?;
        let mut block = self
            .ledger
            .build(header, MAX_BLOCK_TXS)
            .map_err(|e| self.problem("template refused", &e))?;
        if self.producer.signs_blocks() {
            let timestamp = block.header.timestamp.0;
            if self.last_signed.is_some_and(|last| timestamp <= last) {
                return Err("not signing: a block at or after this time was signed before");
            }
            self.last_signed = Some(timestamp);
        }
        match self.producer.seal(block.header.clone(), &CancelFlag::new()) {
            Ok(Some(header)) => block.header = header,
            Ok(None) => return Err("seal cancelled"),
            Err(e) => return Err(self.problem("sealing failed", &e)),
        }
        Ok(block)
    }

    /// The block of a solved proof-of-work template: its seal is the simulator's oracle.
    pub fn solved(&self, header: Header, candidates: Vec<Transaction>) -> Result<Block, Problem> {
        self.chain()
            .build_block(header, candidates, MAX_BLOCK_TXS)
            .map(|built| built.block)
            .map_err(|e| self.problem("template refused", &e))
    }

    fn problem(&self, kind: Problem, error: &dyn std::fmt::Display) -> Problem {
        tracing::debug!(node = %self.name, %error, "{kind}");
        kind
    }

    /// Imports a block (the mempool follows a new head); counts reorgs as the node's
    /// metrics do.
    pub fn import(&mut self, block: Block) -> Result<ImportOutcome, BlockError> {
        let outcome = self.ledger.import(block)?;
        if let ImportOutcome::NewHead(change) = &outcome {
            self.epoch += 1;
            if change.is_reorg() {
                self.reorgs += 1;
                self.deepest_reorg = self.deepest_reorg.max(change.reverted.len() as u64);
            }
        }
        Ok(outcome)
    }

    /// Imports a block decided by votes with its certificate, as the voting driver does
    /// (a block engine's block comes without one and is imported on its own).
    pub fn import_with(
        &mut self,
        block: Block,
        certificate: Option<&Arc<Vec<u8>>>,
    ) -> Result<ImportOutcome, BlockError> {
        let Some(certificate) = certificate else {
            return self.import(block);
        };
        let outcome = self.ledger.import_certified(CertifiedBlock {
            block,
            certificate: certificate.to_vec(),
        })?;
        if matches!(outcome, ImportOutcome::NewHead(_)) {
            self.epoch += 1;
        }
        Ok(outcome)
    }

    /// The block a voting machine asked for ([`chain::VoteOutput::Build`]), made as the
    /// node's voting driver makes it: on the head `parent` with the machine's timestamp and
    /// engine data, filled from the mempool, sealed by this node's key.
    pub fn build_proposal(
        &self,
        parent: BlockHash,
        timestamp: Timestamp,
        data: Vec<u8>,
    ) -> Result<Block, Problem> {
        let chain = self.chain();
        let head = chain.head();
        if head.hash() != parent {
            return Err("build request for an old head dropped");
        }
        let mut header = Header::template(&head, self.producer.author(), timestamp);
        self.producer
            .prepare(chain, &head, &mut header)
            .map_err(|e| self.problem("cannot prepare a block", &e))?;
        header.engine.data = data;
        let mut block = self
            .ledger
            .build(header, MAX_BLOCK_TXS)
            .map_err(|e| self.problem("template refused", &e))?;
        match self.producer.seal(block.header.clone(), &CancelFlag::new()) {
            Ok(Some(header)) => block.header = header,
            Ok(None) => return Err("seal cancelled"),
            Err(e) => return Err(self.problem("sealing failed", &e)),
        }
        Ok(block)
    }

    /// Marks a block as seen; false when it was seen before (a gossip duplicate).
    pub fn first_sight_of_block(&mut self, hash: BlockHash) -> bool {
        self.known_blocks.insert(hash)
    }

    /// Marks a transaction as seen; false when it was seen before.
    pub fn first_sight_of_tx(&mut self, hash: TxHash) -> bool {
        self.known_txs.insert(hash)
    }

    /// Keeps a block whose parent is missing; false when the buffer is full.
    pub fn keep_orphan(&mut self, orphan: Orphan) -> bool {
        if self.orphan_count >= MAX_ORPHANS {
            return false;
        }
        self.orphans
            .entry(orphan.block.item.header.parent)
            .or_default()
            .push(orphan);
        self.orphan_count += 1;
        true
    }

    /// The blocks that were waiting for `parent`.
    pub fn release_orphans(&mut self, parent: &BlockHash) -> Vec<Orphan> {
        let released = self.orphans.remove(parent).unwrap_or_default();
        self.orphan_count -= released.len();
        released
    }

    /// Records a request for `hash`; false when one is already out.
    /// Records a request for `hash` at `now`; false when one is already out and younger
    /// than [`REQUEST_RETRY_MS`] (an older one is taken as lost: its peer went away).
    pub fn request(&mut self, hash: BlockHash, now: u64) -> bool {
        match self.requested.get(&hash) {
            Some(asked) if now.saturating_sub(*asked) < REQUEST_RETRY_MS => false,
            _ => {
                self.requested.insert(hash, now);
                true
            }
        }
    }

    pub fn answered(&mut self, hash: &BlockHash) {
        self.requested.remove(hash);
    }
}

/// How long a node without a turn waits before asking again, in ms: as long as the
/// producer's answer stays valid on an unchanged head (each engine says how long, see
/// [`miner::EngineSpec::idle_retry_secs`]), so asking sooner (as the real loop's one-second
/// wait does) would find nothing new and only cost time.
pub fn retry_after(spec: &EngineSpec) -> u64 {
    spec.idle_retry_secs().max(1).saturating_mul(1000)
}
