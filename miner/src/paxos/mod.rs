//! Multi-Paxos with a distinguished proposer (Lamport, "Paxos Made Simple", 2001, §2–3;
//! Chandra, Griesemer and Redstone, "Paxos Made Live", 2007; the leader, scout and
//! commander of van Renesse and Altinbuken, "Paxos Made Moderately Complex", 2015).
//!
//! Every server is proposer, acceptor and learner; the decided values are blocks, one per
//! slot, and the slot is the height.
//! - Ballots `(round, proposer index)` are totally ordered ([`wire::Ballot`]). A server
//!   that hears no leader for an election timeout drawn uniformly from `[min, max)` (a
//!   hash of its address, ballot and a counter, so servers draw apart and a simulation
//!   replays exactly) runs phase 1 once for every open slot: `Prepare(b)` with `b` above
//!   every ballot it has seen. An acceptor promises `b` when it is above its promise,
//!   answering with every value it accepted above the proposer's decided height and the
//!   ballot it was accepted in, and refuses a lower one with a `Nack` naming its promise.
//! - With promises from ⌊N/2⌋+1 servers the proposer leads: it first learns the blocks
//!   decided by the promisers that are ahead of it, then re-proposes, slot by slot, the
//!   value accepted in the highest ballot among the promises (log repair by phase 1, where
//!   Raft restricts the vote instead), and only then asks its node for new blocks.
//! - Phase 2 per block: `Accept(b, block)`, answered by `Accepted(b, height, hash)` signed
//!   as a [`crate::quorum::VoteBody`]; a block is chosen once ⌊N/2⌋+1 servers accepted it
//!   in one ballot, and those signatures are its certificate. The leader tells the learners
//!   with `Decided` and the certificate; a learner that sees a higher decided height asks
//!   with `Learn` and is sent up to [`COMMITTED_WINDOW`] decided blocks with their
//!   certificates; further behind, its node syncs certified blocks from its peers.
//! - Duels: a candidate refused by a higher ballot steps back to follower and waits for a
//!   fresh randomized timeout; a leader refused by a higher ballot prepares again at once
//!   above it; and an acceptor that heard from its leader within the minimum election
//!   timeout ignores other proposers' prepares (the master lease of Paxos Made Live). Two
//!   proposers whose timers fire together can still pre-empt each other for a round or
//!   two; the randomized timeouts are what separate them, as in Raft.
//! - A leader that has not heard from a majority within the minimum election timeout
//!   steps down (check-quorum), so a leader cut off in a minority stops leading.
//!
//! The server set is fixed by the chain parameters: membership changes are not supported
//! (`propose-authority` is refused as an unsupported transaction). Paxos tolerates crashes,
//! not lies: the leader is trusted to build valid blocks (every node still checks each
//! block fully when it imports it).
//!
//! [`PaxosMachine`] is the pure per-server state machine; [`PaxosEngine`] verifies blocks
//! and certificates on every node; [`PaxosProducer`] seals the blocks a leader asks for.

mod engine;
mod error;
mod machine;
mod params;
mod spec;
pub mod wire;

/// The producer: signs what the leader's machine asks for.
pub use crate::seal::VoteSealer as PaxosProducer;
pub use engine::{ENGINE_NAME, PaxosEngine};
pub use error::PaxosError;
pub use machine::{PaxosMachine, Role};
pub use params::PaxosParams;

use chain::TimerId;
use chain::codec::MAX_BLOCK_BYTES;

/// The follower's election timer (also the candidate's retry with a higher ballot).
pub const TIMER_ELECTION: TimerId = 1;
/// The leader's heartbeat (and resend of the Accept still open).
pub const TIMER_HEARTBEAT: TimerId = 2;
/// The leader's block clock: ask the node to build every `block_time`.
pub const TIMER_BUILD: TimerId = 3;
/// The leader's check-quorum: step down without a majority heard within the minimum
/// election timeout.
pub const TIMER_CHECK_QUORUM: TimerId = 4;

/// Most servers: ballots carry the proposer's index in 16 bits, and a certificate of this
/// many signatures fits `chain::voting::MAX_CERTIFICATE_BYTES`.
pub const MAX_SERVERS: usize = 64;
/// Most slots above its decided height an acceptor holds an accepted value for; Accepts
/// further ahead are ignored until the acceptor learns the slots before.
pub const MAX_OPEN_SLOTS: usize = 64;
/// Decided blocks (with certificates) a server keeps after its chain has them, to teach
/// lagging learners; one further behind syncs certified blocks from its peers.
pub const COMMITTED_WINDOW: usize = 64;
/// Largest Paxos message on the wire: a Promise, Accept or Learned carrying at least one
/// full block (`MAX_BLOCK_BYTES`) with a certificate, so the engine gossip topic must
/// accept messages this large. Larger messages are refused before anything else is read.
pub const MAX_MESSAGE_BYTES: usize = 2 * MAX_BLOCK_BYTES;
/// What one Promise or Learned packs (values and certificates), leaving room for the
/// envelope.
pub const MESSAGE_BUDGET_BYTES: usize = MAX_MESSAGE_BYTES - 64 * 1024;
