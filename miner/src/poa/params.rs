//! The proof-of-authority chain parameters, as they appear in a chain spec.

use crate::poa::error::PoaError;
use chain::Address;
use serde::{Deserialize, Serialize};

/// Part of the chain's identity: the genesis hash commits to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoaParams {
    /// Least seconds between a block and its parent (Clique's `period`).
    pub period: u64,
    /// Blocks between checkpoints that discard pending authority votes (Clique's `epoch`).
    #[serde(default = "default_epoch")]
    pub epoch: u64,
    /// The genesis authorities; their order does not matter (turns follow address order).
    pub authorities: Vec<Address>,
}

fn default_epoch() -> u64 {
    30_000
}

impl PoaParams {
    /// A dev chain signed by `authorities` every 5 s.
    pub fn devnet(authorities: Vec<Address>) -> PoaParams {
        PoaParams {
            period: 5,
            epoch: default_epoch(),
            authorities,
        }
    }

    pub fn validate(&self) -> Result<(), PoaError> {
        let invalid = |field, reason: String| PoaError::InvalidParams { field, reason };
        if self.period == 0 {
            return Err(invalid("period", "must be at least 1 second".into()));
        }
        if self.epoch == 0 {
            return Err(invalid("epoch", "must be at least 1 block".into()));
        }
        if self.authorities.is_empty() {
            return Err(invalid("authorities", "at least one is needed".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.authorities {
            if !seen.insert(a) {
                return Err(invalid("authorities", format!("{a} is listed twice")));
            }
        }
        Ok(())
    }
}
