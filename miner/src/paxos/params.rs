//! The Multi-Paxos chain parameters, as they appear in a chain spec.

use crate::paxos::MAX_SERVERS;
use crate::paxos::error::PaxosError;
use crate::quorum::{VoterSet, check_leader_params};
use chain::Address;
use serde::{Deserialize, Serialize};

/// Part of the chain's identity: the genesis hash commits to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaxosParams {
    /// The servers (proposers, acceptors and learners); their order does not matter, and
    /// a ballot names its proposer by its index in address order.
    pub servers: Vec<Address>,
    /// Seconds between the blocks a leader asks its node to build.
    pub block_time: u64,
    /// Least milliseconds a server waits without hearing from a leader before it runs
    /// phase 1; also the acceptors' lease on their leader.
    pub election_timeout_min_ms: u64,
    /// Election timeouts are drawn uniformly from `[min, max)`.
    pub election_timeout_max_ms: u64,
    /// Milliseconds between a leader's heartbeats.
    pub heartbeat_ms: u64,
}

impl PaxosParams {
    /// A dev chain run by `servers`: a block a second, phase 1 after 150–300 ms of silence
    /// (the range Raft's paper measured, so the two compare on the same clock), heartbeats
    /// every 50 ms.
    pub fn devnet(servers: Vec<Address>) -> PaxosParams {
        PaxosParams {
            servers,
            block_time: 1,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            heartbeat_ms: 50,
        }
    }

    pub fn validate(&self) -> Result<(), PaxosError> {
        check_leader_params(
            &self.servers,
            MAX_SERVERS,
            self.block_time,
            self.heartbeat_ms,
            self.election_timeout_min_ms,
            self.election_timeout_max_ms,
        )
        .map_err(|(field, reason)| PaxosError::InvalidParams { field, reason })
    }

    /// The servers, in address order.
    pub fn voter_set(&self) -> VoterSet {
        VoterSet::new(self.servers.iter().copied())
    }
}
