//! The Raft chain parameters, as they appear in a chain spec.

use crate::quorum::check_leader_params;
pub use crate::quorum::majority;
use crate::raft::MAX_SERVERS;
use crate::raft::error::RaftError;
use chain::Address;
use serde::{Deserialize, Serialize};

/// Part of the chain's identity: the genesis hash commits to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftParams {
    /// The servers that vote and may lead; their order does not matter.
    pub servers: Vec<Address>,
    /// Seconds between the blocks a leader asks its node to build.
    pub block_time: u64,
    /// Least milliseconds a follower waits without hearing from a leader before it stands.
    pub election_timeout_min_ms: u64,
    /// Election timeouts are drawn uniformly from `[min, max)`.
    pub election_timeout_max_ms: u64,
    /// Milliseconds between a leader's heartbeats (AppendEntries, empty or not).
    pub heartbeat_ms: u64,
}

impl RaftParams {
    /// A dev chain run by `servers`: a block a second, elections after 150–300 ms of
    /// silence (the Raft paper's §9.3 range), heartbeats every 50 ms.
    pub fn devnet(servers: Vec<Address>) -> RaftParams {
        RaftParams {
            servers,
            block_time: 1,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            heartbeat_ms: 50,
        }
    }

    pub fn validate(&self) -> Result<(), RaftError> {
        let invalid = |field, reason: String| RaftError::InvalidParams { field, reason };
        check_leader_params(
            &self.servers,
            MAX_SERVERS,
            self.block_time,
            self.heartbeat_ms,
            self.election_timeout_min_ms,
            self.election_timeout_max_ms,
        )
        .map_err(|(field, reason)| invalid(field, reason))?;
        Ok(())
    }

    /// The servers in address order.
    pub fn sorted_servers(&self) -> Vec<Address> {
        let mut servers = self.servers.clone();
        servers.sort();
        servers
    }

    /// Votes (or acks) that make a majority of the servers: ⌊N/2⌋+1.
    pub fn majority(&self) -> usize {
        majority(self.servers.len())
    }
}
