//! ZAB, ZooKeeper's atomic broadcast (Junqueira, Reed and Serafini, "Zab: High-performance
//! broadcast for primary-backup systems", DSN 2011; Medeiros, "ZooKeeper's atomic broadcast
//! protocol: Theory and practice", 2012), as ZooKeeper runs it.
//!
//! Crash-fault-tolerant primary-backup: blocks are the transactions of the broadcast, one
//! zxid each, `zxid = (epoch, counter)` ordered lexicographically.
//! - **Fast Leader Election**: a LOOKING server sends its vote (proposed leader, that
//!   leader's last zxid and current epoch, election round) to all, adopts any better vote
//!   (by `(epoch, last zxid, id)`), and settles once ⌊N/2⌋+1 servers hold the same vote.
//!   The order is total and deterministic, so two servers that start together converge on
//!   one leader without randomized timeouts (Paxos's duelling proposers cannot happen).
//! - **Discovery**: followers send FOLLOWERINFO(acceptedEpoch); the leader proposes
//!   NEWEPOCH(e′) above every acceptedEpoch of a quorum; a follower persists e′ as its
//!   acceptedEpoch, answers ACKEPOCH(currentEpoch, lastZxid) and never accepts a lower epoch
//!   again. A leader that learns a follower is ahead of it steps down.
//! - **Synchronization**: the leader sends each follower the proposals it lacks (DIFF),
//!   truncating the follower's uncommitted proposals that are not in its history (TRUNC),
//!   with NEWLEADER(e′); the follower persists e′ as its currentEpoch and ACKs every
//!   proposal it now holds; with a quorum of acks the leader commits its whole initial
//!   history (UPTODATE) and only then proposes anything new.
//! - **Broadcast**: every `block_time` the leader builds a block, sends PROPOSAL(zxid,
//!   block); followers persist it and ACK; ⌊N/2⌋+1 acks commit it, in zxid order, with a
//!   COMMIT to all. PINGs every tick, answered with the follower's last zxid, commit point
//!   and acks, so a lost PROPOSAL, ACK or COMMIT is made good (a follower that stays
//!   behind gets a NEWLEADER with what it lacks). A follower that hears no leader for
//!   `sync_limit_ms` goes back to LOOKING, and a leader that hears from no majority within
//!   it steps down.
//! - A committed block is imported with its certificate: ⌊N/2⌋+1 servers' signed ACKs of
//!   its hash at its height in one epoch no earlier than its zxid's
//!   ([`crate::quorum::Certificate`], phase `commit`, view = epoch).
//!
//! The servers are fixed by the chain spec: membership changes are not implemented, and
//! `propose-authority` transactions are refused as unsupported. ZAB tolerates crashes, not
//! lies: the leader is trusted to build valid blocks (every node still checks each block
//! fully when it imports it).
//!
//! [`ZabMachine`] is the pure per-server state machine; [`ZabEngine`] verifies blocks and
//! certificates on every node; [`ZabProducer`] seals the blocks a leader asks for.

mod engine;
mod error;
mod machine;
mod params;
mod spec;
pub mod wire;

/// ZAB's producer: signs what the leader's machine asks for.
pub use crate::seal::VoteSealer as ZabProducer;
pub use engine::{ENGINE_NAME, ZabEngine};
pub use error::ZabError;
pub use machine::{Phase, Role, ZabMachine};
pub use params::ZabParams;

use chain::TimerId;
use chain::codec::MAX_BLOCK_BYTES;
use chain::voting::MAX_CERTIFICATE_BYTES;

/// A LOOKING server's notification resend (Fast Leader Election's `notTimeout`, doubling).
pub const TIMER_ELECTION: TimerId = 1;
/// Fast Leader Election's `finalizeWait`: a quorum agrees; wait this long for a better vote.
pub const TIMER_FINALIZE: TimerId = 2;
/// The leader's tick: a PING to every follower.
pub const TIMER_PING: TimerId = 3;
/// The leader's block clock: ask the node to build every `block_time`.
pub const TIMER_BUILD: TimerId = 4;
/// The leader's quorum check: step down without a majority heard within `sync_limit_ms`.
pub const TIMER_QUORUM: TimerId = 5;
/// A follower's leader timeout: back to LOOKING after `sync_limit_ms` of silence.
pub const TIMER_LEADER: TimerId = 6;

/// Most servers; a certificate of this many acks fits `MAX_CERTIFICATE_BYTES`.
pub const MAX_SERVERS: usize = 64;
/// Most proposals a server holds beyond its commit point. A leader proposes one block at a
/// time (the node builds on its committed head), so a server holds more only when it
/// missed COMMITs; it then refuses further proposals until a PING shows the lag and the
/// leader resends what it lacks.
pub const MAX_UNCOMMITTED_PROPOSALS: usize = 2;
/// Committed proposals a server keeps after its chain has them, to bring lagging followers
/// up in synchronization; a follower further behind syncs certified blocks from its peers.
pub const COMMITTED_WINDOW: usize = 64;
/// Most proposals (and certificates) in one NEWLEADER.
pub const MAX_PROPOSALS_PER_SYNC: usize = COMMITTED_WINDOW + MAX_UNCOMMITTED_PROPOSALS;
/// Most acks in one ACK of NEWLEADER: one per uncommitted proposal it can carry.
pub const MAX_ACKS_PER_MESSAGE: usize = MAX_PROPOSALS_PER_SYNC;
/// Largest ZAB message on the wire: a NEWLEADER carrying every uncommitted proposal at full
/// block size, at least one committed one, and certificates, so the engine gossip topic must
/// accept messages this large. Larger messages are refused before anything else is read.
pub const MAX_MESSAGE_BYTES: usize =
    (MAX_UNCOMMITTED_PROPOSALS + 1) * MAX_BLOCK_BYTES + 8 * MAX_CERTIFICATE_BYTES;
/// What a leader packs into one NEWLEADER, leaving room for the envelope.
pub const SYNC_BUDGET_BYTES: usize = MAX_MESSAGE_BYTES - 64 * 1024;
