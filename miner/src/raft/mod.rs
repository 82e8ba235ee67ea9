//! Raft (Ongaro and Ousterhout, "In Search of an Understandable Consensus Algorithm",
//! 2014), with pre-vote and check-quorum as etcd runs them (Ongaro's thesis §9.6).
//!
//! Crash-fault-tolerant ordering by an elected leader: blocks are the entries of a
//! replicated log.
//! - Each server is a follower, a candidate or the leader of a term. A follower that hears
//!   no leader for an election timeout drawn uniformly from `[min, max)` first asks for
//!   pre-votes, then stands; a candidate with votes from ⌊N/2⌋+1 servers leads the term.
//!   A server votes once per term, and only for a log at least as up to date as its own.
//! - The leader appends a block every `block_time`, replicates it with AppendEntries
//!   (consistency check on the previous entry, truncation of conflicts, nextIndex backoff)
//!   and commits an entry of its own term once ⌊N/2⌋+1 servers hold it, with everything
//!   before it. A new leader appends a no-op so earlier terms' entries commit with it.
//! - Membership changes one server at a time (thesis §4.1) by `propose-authority`
//!   transactions from servers, one per block, each taking effect as its block commits,
//!   and only when the servers the leader hears from are a majority of the new
//!   configuration; a removed server stops voting and leading.
//! - A committed block is imported with its certificate: ⌊N/2⌋+1 servers' signed acks of
//!   its hash at its height in one term (see [`wire::Certificate`]), so a chain of Raft
//!   blocks has no branches and its head is final.
//!
//! Raft tolerates crashes, not lies: the leader is trusted to build valid blocks (every
//! node still checks each block fully when it imports it).
//!
//! [`RaftMachine`] is the pure per-server state machine; [`RaftEngine`] verifies blocks
//! and certificates on every node; [`RaftProducer`] seals the blocks a leader asks for.

mod engine;
mod error;
mod machine;
mod params;
mod spec;
pub mod wire;

/// Raft's producer: signs what the leader's machine asks for.
pub use crate::seal::VoteSealer as RaftProducer;
pub use engine::{ENGINE_NAME, Membership, RaftEngine};
pub use error::RaftError;
pub use machine::{RaftMachine, Role};
pub use params::{RaftParams, majority};

use chain::TimerId;
use chain::codec::MAX_BLOCK_BYTES;

/// The follower's election timer (also the pre-candidate's and candidate's retry).
pub const TIMER_ELECTION: TimerId = 1;
/// The leader's heartbeat: AppendEntries to every follower.
pub const TIMER_HEARTBEAT: TimerId = 2;
/// The leader's block clock: ask the node to build every `block_time`.
pub const TIMER_BUILD: TimerId = 3;
/// The leader's check-quorum: step down without a majority heard within the minimum
/// election timeout.
pub const TIMER_CHECK_QUORUM: TimerId = 4;

/// Most servers; a certificate of this many acks fits `chain::voting::MAX_CERTIFICATE_BYTES`.
pub const MAX_SERVERS: usize = 64;
/// Most uncommitted entries a server holds; further entries are not appended until some
/// commit (a follower answers with what it holds, and the leader resends).
pub const MAX_UNCOMMITTED_ENTRIES: usize = 64;
/// Committed entries a server keeps after its chain has them, to repair lagging followers
/// from the log; a follower further behind syncs certified blocks from its peers.
pub const COMMITTED_WINDOW: usize = 64;
/// Most entries in one AppendEntries.
pub const MAX_ENTRIES_PER_APPEND: usize = 32;
/// Most certificates in one AppendEntries: the repair window and the entries sent.
pub const MAX_CERTIFICATES_PER_APPEND: usize = COMMITTED_WINDOW + MAX_ENTRIES_PER_APPEND;
/// Most acks in one AppendResponse: one per uncommitted block.
pub const MAX_ACKS_PER_RESPONSE: usize = MAX_UNCOMMITTED_ENTRIES;
/// Largest Raft message on the wire: an AppendEntries carrying at least one full block
/// (`MAX_BLOCK_BYTES`) with certificates, so the engine gossip topic must accept messages
/// this large. Larger messages are refused as malformed before anything else is read.
pub const MAX_MESSAGE_BYTES: usize = 2 * MAX_BLOCK_BYTES;
/// What a leader packs into one AppendEntries (entries and certificates), leaving room for
/// the envelope.
pub const APPEND_BUDGET_BYTES: usize = MAX_MESSAGE_BYTES - 64 * 1024;
