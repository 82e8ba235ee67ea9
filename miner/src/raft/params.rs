//! The Raft chain parameters, as they appear in a chain spec.

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
        crate::quorum::check_voter_list(&self.servers, MAX_SERVERS)
            .map_err(|reason| invalid("servers", reason))?;
        if self.block_time == 0 {
            return Err(invalid("block_time", "must be at least 1 second".into()));
        }
        if self.heartbeat_ms == 0 {
            return Err(invalid("heartbeat_ms", "must be at least 1 ms".into()));
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(invalid(
                "election_timeout_min_ms",
                format!(
                    "{} ms must exceed heartbeat_ms ({} ms), or followers stand between heartbeats",
                    self.election_timeout_min_ms, self.heartbeat_ms
                ),
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(invalid(
                "election_timeout_max_ms",
                format!(
                    "{} ms must exceed election_timeout_min_ms ({} ms): the range [min, max) is what splits votes apart",
                    self.election_timeout_max_ms, self.election_timeout_min_ms
                ),
            ));
        }
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

/// ⌊n/2⌋+1: any two sets this large out of `n` share a member.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}
