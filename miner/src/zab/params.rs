//! The ZAB chain parameters, as they appear in a chain spec.

use crate::quorum::VoterSet;
use crate::zab::MAX_SERVERS;
use crate::zab::error::ZabError;
use chain::Address;
use serde::{Deserialize, Serialize};

/// Part of the chain's identity: the genesis hash commits to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZabParams {
    /// The servers that vote and may lead; their order does not matter.
    pub servers: Vec<Address>,
    /// Seconds between the blocks a leader asks its node to build.
    pub block_time: u64,
    /// ZooKeeper's `tickTime`: milliseconds between a leader's PINGs.
    pub tick_ms: u64,
    /// ZooKeeper's `syncLimit` (in milliseconds): a follower that hears nothing from its
    /// leader for this long goes back to LOOKING, and a leader that hears from no majority
    /// for this long steps down. A new leader has twice this long (`initLimit`) to finish
    /// discovery and synchronization.
    pub sync_limit_ms: u64,
    /// Fast Leader Election's `finalizeWait`, and its first notification resend interval.
    pub election_wait_ms: u64,
}

impl ZabParams {
    /// A dev chain run by `servers`: a block a second, PINGs every 50 ms, a leader
    /// abandoned after 250 ms of silence, elections that settle 50 ms after a quorum agrees.
    pub fn devnet(servers: Vec<Address>) -> ZabParams {
        ZabParams {
            servers,
            block_time: 1,
            tick_ms: 50,
            sync_limit_ms: 250,
            election_wait_ms: 50,
        }
    }

    pub fn validate(&self) -> Result<(), ZabError> {
        let invalid = |field, reason: String| ZabError::InvalidParams { field, reason };
        crate::quorum::check_voter_list(&self.servers, MAX_SERVERS)
            .map_err(|reason| invalid("servers", reason))?;
        if self.block_time == 0 {
            return Err(invalid("block_time", "must be at least 1 second".into()));
        }
        if self.tick_ms == 0 {
            return Err(invalid("tick_ms", "must be at least 1 ms".into()));
        }
        if self.election_wait_ms == 0 {
            return Err(invalid("election_wait_ms", "must be at least 1 ms".into()));
        }
        if self.sync_limit_ms <= self.tick_ms.saturating_mul(2) {
            return Err(invalid(
                "sync_limit_ms",
                format!(
                    "{} ms must exceed two ticks ({} ms), or followers give up between PINGs",
                    self.sync_limit_ms,
                    self.tick_ms.saturating_mul(2)
                ),
            ));
        }
        Ok(())
    }

    /// The servers, sorted.
    pub fn voter_set(&self) -> VoterSet {
        VoterSet::new(self.servers.iter().copied())
    }
}
