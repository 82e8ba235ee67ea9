//! The boundary between the chain core and a consensus engine.
//!
//! Two roles, split as geth's `consensus.Engine` and Substrate's `PowAlgorithm`/`SlotWorker`
//! split them:
//! - [`ConsensusEngine`] runs on every node for every block: the engine's own header rules,
//!   what a block weighs in fork choice, its part of the state transition, and finality.
//! - [`BlockProducer`] runs only on authoring nodes: when it is my turn, filling the
//!   template's engine fields, and sealing (a nonce search or a signature), cancellably.
//!
//! The generic checks every engine shares live in [`crate::validation`]. Engines that decide
//! by voting (PBFT, Raft, …) verify blocks through the same trait and add a third role,
//! [`crate::voting::VotingMachine`]: a pure per-node state machine the node drives with
//! its peers' messages and timers (see [`crate::voting`]). Their blocks are imported only
//! with a certificate ([`ConsensusEngine::requires_certificate`]), so every stored block is
//! final and fork choice never leaves one.

use crate::block::{Header, SealedHeader};
use crate::crypto::{Address, SecretKey};
use crate::primitives::{BlockHash, BlockId, Height, Timestamp, Weight};
use crate::state::{StateOverlay, StateRead};
use crate::store::StoreError;
use crate::tx::Transaction;
use crate::voting::VotingMachine;
use std::error::Error as StdError;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Read access to the chain an engine needs: headers by hash (any branch), the best chain,
/// the state at the head, and the state after any recent block ([`ChainView::state_at`]).
pub trait ChainView {
    fn header(&self, hash: &BlockHash) -> Result<Option<SealedHeader>, StoreError>;

    /// The hash at `height` on the best chain.
    fn best_hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError>;

    fn head(&self) -> SealedHeader;

    fn genesis(&self) -> &SealedHeader;

    /// The state at the head.
    fn state(&self) -> &dyn StateRead;

    /// The state after block `hash`, for checks that need the parent's state before a
    /// block is stored (who may sign it, whose slot it is, the stake behind it), as geth's
    /// Clique checks a seal against its snapshot. A store-backed chain reaches any valid
    /// stored block within a bounded number of reverted and replayed blocks of its head;
    /// this default only the head. Anything else is [`EngineError::StateUnavailable`].
    fn state_at(&self, hash: &BlockHash) -> Result<StateOverlay<'_>, EngineError> {
        if *hash == self.head().hash() {
            return Ok(StateOverlay::new(self.state()));
        }
        Err(EngineError::StateUnavailable {
            block: *hash,
            reason: "this view holds only the head's state".to_owned(),
        })
    }

    /// A block's timestamp and parent: what walking back through time needs, without the
    /// rest of the header.
    fn time_and_parent(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<(Timestamp, BlockHash)>, StoreError> {
        Ok(self.header(hash)?.map(|h| (h.timestamp, h.parent)))
    }

    /// The median timestamp of `parent` and up to ten blocks before it (Bitcoin's median
    /// time past), which a child's timestamp must exceed. A store-backed view remembers it
    /// per block; this default walks the headers each time.
    fn median_time_past(&self, parent: &SealedHeader) -> Result<Timestamp, StoreError> {
        crate::validation::median_time_past(self, parent)
    }

    /// The certificate stored with a block decided by votes (voting engines), if any.
    fn certificate(&self, _hash: &BlockHash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// The ancestor of `from` at `height` (walking parents; works on side branches).
    fn ancestor_at(
        &self,
        from: &SealedHeader,
        height: Height,
    ) -> Result<Option<SealedHeader>, StoreError> {
        if height > from.height() {
            return Ok(None);
        }
        let mut current = from.clone();
        while current.height() > height {
            match self.header(&current.parent)? {
                Some(parent) => current = parent,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }
}

/// Verification, weight, state hooks and finality: the part of an engine every node runs.
pub trait ConsensusEngine: Send + Sync + Debug {
    /// Short name: `pow`, `pos`, `dpos`, `poa`, … (also the engine's state namespace).
    fn name(&self) -> &'static str;

    /// Writes the engine's genesis state (authority set, genesis delegates, …).
    fn init_genesis(&self, _state: &mut StateOverlay<'_>) -> Result<(), EngineError> {
        Ok(())
    }

    /// The engine's rules for a header, given its parent and the headers before it: seal,
    /// difficulty, signature. Runs before a block is stored, without state.
    fn verify_header(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError>;

    /// What this block adds to fork choice (from the header alone).
    fn block_weight(&self, header: &SealedHeader) -> Weight;

    /// How far ahead of this node's clock a block's time may be, in seconds, when the
    /// engine allows less than the chain's general bound (`ChainConfig::max_future_drift`):
    /// an engine with time slots refuses a block before its slot has begun, as EOSIO does,
    /// so a producer cannot sign slots early. `None` keeps the chain's bound.
    fn max_future_drift(&self) -> Option<u64> {
        None
    }

    /// Which of two equally heavy branches a node keeps; the one it saw first unless the
    /// engine needs every node to agree ([`crate::fork_choice::TieBreak`]).
    fn tie_break(&self) -> crate::fork_choice::TieBreak {
        crate::fork_choice::TieBreak::FirstSeen
    }

    /// Before the block's transactions, on the parent's state: checks that need state (is
    /// the producer entitled to this block?) and engine state updates.
    fn begin_block(
        &self,
        _state: &mut StateOverlay<'_>,
        _header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Applies an engine-specific transaction kind (votes, delegate registration, authority
    /// proposals) after the core has charged its fee and bumped its nonce. The default
    /// refuses every kind but transfers, which the core handles itself.
    fn apply_tx(
        &self,
        _state: &mut StateOverlay<'_>,
        _sender: &Address,
        tx: &Transaction,
        _header: &Header,
    ) -> Result<(), EngineError> {
        Err(EngineError::UnsupportedTx {
            kind: tx.kind.name(),
            engine: self.name(),
        })
    }

    /// After the block's transactions: rewards and the engine's bookkeeping.
    fn end_block(
        &self,
        _state: &mut StateOverlay<'_>,
        _header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// The newest block of the best chain that can never be reverted, or `None` when
    /// finality is only probabilistic. The default: the head for an engine that requires
    /// certificates (every stored block was decided), none otherwise.
    fn finalized(&self, chain: &dyn ChainView) -> Result<Option<BlockId>, EngineError> {
        Ok(self.requires_certificate().then(|| chain.head().id()))
    }

    /// Why `header`'s producer was entitled to it, as named values for people (PoW: hash
    /// against target; PoA: in-turn index; …). The default names only the engine.
    fn explain(
        &self,
        _chain: &dyn ChainView,
        _header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        Ok(vec![("engine", self.name().to_owned())])
    }

    /// The engine's view of an account in `state`, as named values for people and RPC
    /// (DPoS: delegate record and votes; PoA: whether it is an authority; PoS: coin age).
    fn account_fields(
        &self,
        _state: &dyn StateRead,
        _address: &Address,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        Ok(Vec::new())
    }

    /// Engine-specific header fields for block listings (PoW: bits, nonce; PoA: in-turn).
    /// None by default.
    fn header_fields(&self, _header: &Header) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// True for engines whose blocks are final by a certificate of votes: the chain imports
    /// their blocks only through [`crate::Chain::import_certified`], never on weight alone.
    fn requires_certificate(&self) -> bool {
        false
    }

    /// Checks that `certificate` proves `header` was decided by the voters of its parent's
    /// state; `chain`'s head is that parent. Engines without certificates refuse them.
    fn verify_certificate(
        &self,
        _chain: &dyn ChainView,
        _header: &SealedHeader,
        _certificate: &[u8],
    ) -> Result<(), EngineError> {
        Err(EngineError::NoMessages {
            engine: self.name(),
        })
    }

    /// The accounts that vote on the child of the block whose state is `state` (voting
    /// engines; empty for the others).
    fn voters(&self, _state: &dyn StateRead) -> Result<Vec<Address>, EngineError> {
        Ok(Vec::new())
    }

    /// A voting engine's state machine for one node: `key` is the node's validator key
    /// (`None` follows without voting) and `persisted` the bytes it last asked to persist
    /// (`None` on a first start). `None` for engines that decide alone.
    fn voting_machine(
        &self,
        _key: Option<&SecretKey>,
        _persisted: Option<&[u8]>,
    ) -> Result<Option<Box<dyn VotingMachine>>, EngineError> {
        Ok(None)
    }

    /// A consensus message from a peer (BFT votes, Raft appends). Returns the messages to
    /// broadcast in answer. Engines without messages refuse them.
    fn handle_message(
        &self,
        _chain: &dyn ChainView,
        _payload: &[u8],
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        Err(EngineError::NoMessages {
            engine: self.name(),
        })
    }
}

/// When a producer may author its next block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Turn {
    /// Wall-clock milliseconds at which to start (a slot start plus any wiggle).
    pub at_millis: u64,
    /// The timestamp the block will carry.
    pub timestamp: Timestamp,
}

/// Production: only on nodes that author blocks.
pub trait BlockProducer: Send + Sync + Debug {
    /// The address blocks are produced for (fees and rewards go there).
    fn author(&self) -> Address;

    /// The next time this producer may author a child of `parent`, at or after `now_millis`;
    /// `None` when it cannot (not an authority, no stake, not scheduled soon).
    fn next_turn(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        now_millis: u64,
    ) -> Result<Option<Turn>, EngineError>;

    /// Fills the engine fields of a template before its transactions are executed.
    fn prepare(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        header: &mut Header,
    ) -> Result<(), EngineError>;

    /// True when the seal is the producer's signature (PoA, DPoS, PoS): two different
    /// signed blocks for one slot are equivocation, so an authoring node records what it is
    /// about to sign durably first and never signs at or before that time again, even
    /// across a crash and restart. A proof of work proves nothing about its author and may
    /// repeat a timestamp freely.
    fn signs_blocks(&self) -> bool {
        false
    }

    /// Seals a complete header (nonce search or signature). Returns `None` when `cancel`
    /// was raised first.
    fn seal(&self, header: Header, cancel: &CancelFlag) -> Result<Option<Header>, EngineError>;
}

/// Raised when a new head makes the block being sealed pointless; a seal search polls it.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> CancelFlag {
        CancelFlag::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// An engine's refusal, or a failure to read what it needed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine's own rule was broken; `source` is the engine's typed error.
    #[error("{engine} rule broken: {source}")]
    Rejected {
        engine: &'static str,
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
    #[error("{kind} transactions are not used by the {engine} engine")]
    UnsupportedTx {
        kind: &'static str,
        engine: &'static str,
    },
    #[error("the {engine} engine exchanges no messages")]
    NoMessages { engine: &'static str },
    /// A message that breaks no rule but is of no use now (a duplicate, a stale round, a
    /// height too far ahead); dropped without blaming the sender.
    #[error("{engine} message ignored: {reason}")]
    Ignored {
        engine: &'static str,
        reason: String,
    },
    /// The state an engine needed to judge a block cannot be had here (the block's parent
    /// is too far from our head, or this view keeps no past states): our limit, not the
    /// sender's fault.
    #[error("the state after block {block} is unavailable: {reason}")]
    StateUnavailable { block: BlockHash, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// Not useful now, nobody's fault (a duplicate, a stale or far-future round, a
    /// message meant for another node).
    pub fn ignored(engine: &'static str, reason: impl Into<String>) -> EngineError {
        EngineError::Ignored {
            engine,
            reason: reason.into(),
        }
    }

    pub fn rejected(
        engine: &'static str,
        source: impl StdError + Send + Sync + 'static,
    ) -> EngineError {
        EngineError::Rejected {
            engine,
            source: Box::new(source),
        }
    }

    /// The engine's typed error, when it is one of `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        match self {
            EngineError::Rejected { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// True when our own store failed: the data may be fine, and asking again once the
    /// fault clears may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, EngineError::Store(_))
    }

    /// True when the data broke a rule (as opposed to our store failing or our view
    /// lacking the state to judge it).
    pub fn is_bad_data(&self) -> bool {
        !matches!(
            self,
            EngineError::Store(_)
                | EngineError::Ignored { .. }
                | EngineError::StateUnavailable { .. }
        )
    }
}
