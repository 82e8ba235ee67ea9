//! toychain's consensus engines: for each, the verifying half every node runs
//! ([`chain::ConsensusEngine`]) and the authoring half that makes blocks
//! ([`chain::BlockProducer`]).
//!
//! - [`pow`]: Bitcoin's proof of work (sha256d under a target) with ASERT or Bitcoin
//!   retargeting.

pub mod pow;
