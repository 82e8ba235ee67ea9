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
//! - [`raft`]: Raft's elected leader and replicated log, with pre-vote and check-quorum;
//!   blocks are committed by a majority's certificate.
//!
//! The signed engines share [`seal`] (a producer's signature over the seal hash) and keep
//! their own records in the chain state through [`engine_state`].

pub mod dpos;
pub mod engine_state;
pub mod poa;
pub mod pos;
pub mod pow;
pub mod raft;
pub mod seal;
