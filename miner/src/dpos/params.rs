//! The DPoS chain parameters, as they appear in a chain spec.

use crate::dpos::error::DposError;
use chain::{Address, Amount};
use serde::{Deserialize, Serialize};

/// Part of the chain's identity: the genesis hash commits to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DposParams {
    /// Seconds per slot: one block per slot at most.
    pub slot_secs: u64,
    /// Size of the active producer set (K), also the number of slots in a round.
    pub producers: u32,
    /// How many delegates one voter may vote for.
    #[serde(default = "default_max_votes")]
    pub max_votes: u32,
    /// Delegates registered at genesis; they produce until votes elect others.
    pub genesis_delegates: Vec<Address>,
    /// New coins (base units) credited to each block's producer, on top of the fees.
    #[serde(default)]
    pub block_reward: Amount,
}

fn default_max_votes() -> u32 {
    30
}

/// EOSIO's and Steem's active set size; an upper bound that keeps a round short.
pub const MAX_PRODUCERS: u32 = 101;

impl DposParams {
    /// A dev chain: 5 s slots, the genesis delegates as the whole active set, 1 TOY a block.
    pub fn devnet(genesis_delegates: Vec<Address>) -> DposParams {
        DposParams {
            slot_secs: 5,
            producers: u32::try_from(genesis_delegates.len())
                .unwrap_or(MAX_PRODUCERS)
                .min(MAX_PRODUCERS),
            max_votes: default_max_votes(),
            genesis_delegates,
            block_reward: Amount::from_base_units(chain::COIN),
        }
    }

    pub fn validate(&self) -> Result<(), DposError> {
        let invalid = |field, reason: String| DposError::InvalidParams { field, reason };
        if self.slot_secs == 0 {
            return Err(invalid("slot_secs", "must be at least 1 second".into()));
        }
        if self.genesis_delegates.is_empty() {
            return Err(invalid(
                "genesis_delegates",
                "at least one is needed to produce the first round".into(),
            ));
        }
        if self.producers == 0 || self.producers > MAX_PRODUCERS {
            return Err(invalid(
                "producers",
                format!("{} is not between 1 and {MAX_PRODUCERS}", self.producers),
            ));
        }
        if self.max_votes == 0 {
            return Err(invalid("max_votes", "must be at least 1".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.genesis_delegates {
            if !seen.insert(d) {
                return Err(invalid("genesis_delegates", format!("{d} is listed twice")));
            }
        }
        Ok(())
    }
}
