//! The boundary for engines that decide by voting (PBFT, Raft, Multi-Paxos, ZAB).
//!
//! A block engine (PoW, PoS, DPoS, PoA) decides alone: a producer makes a block and the
//! heaviest branch wins. A voting engine decides by exchanging messages first, so each node
//! runs a [`VotingMachine`]: a pure, synchronous state machine in the shape of malachite's
//! `core-driver`. Inputs go in ([`VoteInput`]: the node's head, a peer's message, a timer
//! firing, the answers to its own requests), outputs come out ([`VoteOutput`]: messages
//! to broadcast, timers to set, a block to build or to check, a decision with its
//! certificate, state to persist). The machine reads no clock (the time comes with each
//! input), owns no thread and does no I/O, so the node (tokio timers, the engine gossip
//! topic, the chain actor) and the simulator (virtual time) drive the very same code, and
//! the conformance tables drive it step by step.
//!
//! Finality is a certificate: a decided block is imported with the votes that decided it
//! ([`crate::Chain::import_certified`], checked by
//! [`crate::ConsensusEngine::verify_certificate`] against the voters of its parent's state)
//! and stored beside it, so a node that syncs later checks every block's certificate itself.
//! An engine that requires certificates never imports a block without one, so its chain
//! has no branches: every stored block is final.

use crate::block::{Block, SealedHeader};
use crate::codec::{Canonical, MAX_BLOCK_BYTES};
use crate::crypto::Address;
use crate::engine::EngineError;
use crate::primitives::{BlockHash, Timestamp};
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt::Debug;

/// A timer's name, chosen by the machine. Setting a timer that is already pending moves it.
pub type TimerId = u64;

/// What the node tells a voting machine.
// A head (a header and the voter list) is the common input and is moved, not copied, so
// boxing it would only add an allocation per head change.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteInput {
    /// The node's best chain now ends at `head`, and `voters` (from the head's state) vote
    /// on the next height. Given once at start and after every head change: a decision
    /// imported here, or blocks synced from a peer.
    Head {
        head: SealedHeader,
        voters: Vec<Address>,
    },
    /// A consensus message from a peer, as it came off the wire. The machine decodes it and
    /// checks its signature.
    Message(Vec<u8>),
    /// The timer set by [`VoteOutput::SetTimer`] with this id fired (it was not cancelled or
    /// set again since).
    Timeout(TimerId),
    /// The block asked for by [`VoteOutput::Build`], built on the head and sealed by this
    /// node's key.
    Built(Box<Block>),
    /// The verdict on a block the machine asked the node to check with
    /// [`VoteOutput::Validate`].
    Validated { hash: BlockHash, valid: bool },
}

/// What a voting machine asks of the node, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteOutput {
    /// Send these bytes to every peer on the engine topic. A message meant for one node
    /// names its recipient inside; the others ignore it.
    Broadcast(Vec<u8>),
    /// Give [`VoteInput::Timeout`] with `id` after `after_millis`, replacing any pending
    /// timer with the same id.
    SetTimer { id: TimerId, after_millis: u64 },
    /// Forget a pending timer.
    CancelTimer(TimerId),
    /// Build a block on the head `parent` with this timestamp and these engine data bytes,
    /// fill it from the mempool, seal it with this node's key, and answer with
    /// [`VoteInput::Built`]. A node whose head moved past `parent` drops the request.
    Build {
        parent: BlockHash,
        timestamp: Timestamp,
        data: Vec<u8>,
    },
    /// Check that `block` is a valid child of the node's head (header, producer, every
    /// transaction, the state root) without storing it, and answer with
    /// [`VoteInput::Validated`].
    Validate(Box<Block>),
    /// `block` is decided: import it with `certificate` (the votes that decided it); the
    /// node then gives the new [`VoteInput::Head`].
    Commit {
        block: Box<Block>,
        certificate: Vec<u8>,
    },
    /// Write these bytes durably before acting on any later output; they come back through
    /// [`crate::ConsensusEngine::voting_machine`] after a restart (a term and a vote, the
    /// messages sent in a view), so a restarted node never contradicts itself.
    Persist(Vec<u8>),
}

/// One node's part in a voting engine. See the module documentation.
pub trait VotingMachine: Send + Debug {
    /// Takes one input at `now_millis` (the node's clock, or the simulator's) and returns
    /// what the node must do, in order. A message that breaks the engine's rules (a forged
    /// signature, a vote from a non-voter, a malformed encoding) is an
    /// [`EngineError::Rejected`], which costs the sender its score; one that is merely not
    /// useful now (a duplicate, a stale or far-future round) is an [`EngineError::Ignored`].
    fn handle(&mut self, now_millis: u64, input: VoteInput)
    -> Result<Vec<VoteOutput>, EngineError>;

    /// Where the machine stands, as named values for people: height, view or term, who
    /// leads, this node's role, votes gathered.
    fn status(&self) -> Vec<(&'static str, String)>;
}

/// A decided block with its certificate: what the block gossip topic and range sync carry
/// for an engine that requires certificates.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct CertifiedBlock {
    pub block: Block,
    pub certificate: Vec<u8>,
}

/// Largest certificate: 255 signatures with their keys, and room for the vote they sign.
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

impl Canonical for CertifiedBlock {
    const NAME: &'static str = "certified block";
    const MAX_BYTES: usize = MAX_BLOCK_BYTES + MAX_CERTIFICATE_BYTES;
}

/// When a driver of a [`VotingMachine`] first held each open proposal (built it, or was
/// asked to validate it), so that a decision can be timed from its proposal: the node's
/// driver keeps one with wall-clock instants, the simulator with virtual milliseconds.
/// Bounded: past [`ProposalClock::MAX_OPEN`] open proposals (ones never decided here) it
/// starts over.
#[derive(Debug)]
pub struct ProposalClock<T> {
    open: std::collections::HashMap<BlockHash, T>,
}

impl<T> Default for ProposalClock<T> {
    fn default() -> Self {
        ProposalClock {
            open: std::collections::HashMap::new(),
        }
    }
}

impl<T: Copy> ProposalClock<T> {
    /// Most open proposals remembered.
    pub const MAX_OPEN: usize = 256;

    /// Notes that the proposal `hash` is held at `at`, unless it was held before.
    pub fn held(&mut self, hash: BlockHash, at: T) {
        if self.open.len() >= Self::MAX_OPEN && !self.open.contains_key(&hash) {
            self.open.clear();
        }
        self.open.entry(hash).or_insert(at);
    }

    /// When `hash` was first held, forgetting it: it was decided.
    pub fn decided(&mut self, hash: &BlockHash) -> Option<T> {
        self.open.remove(hash)
    }
}

#[cfg(test)]
mod proposal_clock_tests {
    use super::*;

    #[test]
    fn keeps_the_first_time_and_forgets_on_decision_and_when_full() {
        let mut clock = ProposalClock::default();
        let a = BlockHash([1; 32]);
        clock.held(a, 10u64);
        clock.held(a, 20);
        assert_eq!(clock.decided(&a), Some(10), "the first time counts");
        assert_eq!(clock.decided(&a), None, "forgotten once decided");
        for i in 0..ProposalClock::<u64>::MAX_OPEN as u8 {
            clock.held(BlockHash([i; 32]), u64::from(i));
        }
        clock.held(BlockHash([255; 32]), 1);
        assert_eq!(
            clock.decided(&BlockHash([0; 32])),
            None,
            "started over when full"
        );
        assert_eq!(clock.decided(&BlockHash([255; 32])), Some(1));
    }
}
