//! toychain's consensus engines: for each, the verifying half every node runs
//! ([`chain::ConsensusEngine`]) and the authoring half that makes blocks
//! ([`chain::BlockProducer`]).
//!
//! - [`pow`]: Bitcoin's proof of work (sha256d under a target) with ASERT or Bitcoin
//!   retargeting.
//! - [`poa`]: proof of authority with Clique's (EIP-225) rules: in-turn signers, a
//!   recent-signer window, and authority votes.
//! - [`dpos`]: delegated proof of stake: voted delegates, a shuffled schedule of slots per
//!   round, and a last irreversible block.
//! - [`pos`]: Peercoin's coin-age proof of stake.
//! - [`pbft`]: Castro and Liskov's practical Byzantine fault tolerance, one instance per
//!   height, blocks final by a certificate of 2f+1 COMMITs ([`quorum`] counts them).
//! - [`raft`]: Raft's elected leader and replicated log, with pre-vote and check-quorum;
//!   blocks are committed by a majority's certificate.
//! - [`paxos`]: Multi-Paxos with a distinguished proposer: phase 1 once for all open
//!   slots, phase 2 per block, blocks chosen by a majority's signed Accepted messages.
//! - [`zab`]: ZooKeeper's atomic broadcast: Fast Leader Election by (epoch, last zxid, id),
//!   discovery, synchronization and broadcast; blocks are committed by a quorum's acks.
//!
//! [`spec`] is the engine choice: the tagged enum a chain spec names, the factory that
//! builds an engine and its producer from it, and the facts the node and the lab need.
//!
//! The leader-based voting engines sign their messages in one [`envelope`]. The signed
//! engines share [`seal`] (a producer's signature over the seal hash) and keep
//! their own records in the chain state through [`engine_state`].

pub mod dpos;
pub mod engine_state;
pub mod envelope;
pub mod paxos;
pub mod pbft;
pub mod poa;
pub mod pos;
pub mod pow;
pub mod quorum;
pub mod raft;
pub mod seal;
pub mod spec;
pub mod zab;

pub use spec::{
    CONFIRMATIONS, EngineKind, EngineParams, EngineSpec, Engines, Finality, Mode, Reward, SpecError,
};
