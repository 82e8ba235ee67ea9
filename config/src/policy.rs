//! Relay policy: what a node's mempool takes, as opposed to what consensus accepts. It
//! lives in the chain spec (`[policy]`) so every node of a chain relays alike, but it is no
//! part of the chain's identity: the genesis hash does not commit to it, and a block may
//! still carry transactions a pool would refuse.

use crate::toy_string;
use chain::{Amount, MempoolConfig};
use serde::{Deserialize, Serialize};

/// The dev chains' minimum relay fee: 0.00001 TOY (1,000 base units), a tenth of the
/// wallet's default fee, so a flood of free transactions costs its sender something while
/// every ordinary transfer passes.
pub const DEV_MIN_RELAY_FEE: Amount = Amount::from_base_units(1_000);

/// `[policy]`: relay rules; any key left out takes the dev value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The least fee a transaction must pay to enter a node's pool and be relayed, in
    /// decimal TOY (`min_relay_fee = "0.00001"`), as Bitcoin Core's `-minrelaytxfee`.
    #[serde(with = "toy_string", default = "dev_min_relay_fee")]
    pub min_relay_fee: Amount,
}

fn dev_min_relay_fee() -> Amount {
    DEV_MIN_RELAY_FEE
}

impl Default for PolicySpec {
    fn default() -> PolicySpec {
        PolicySpec {
            min_relay_fee: DEV_MIN_RELAY_FEE,
        }
    }
}

impl PolicySpec {
    /// The mempool settings this policy asks for, with the pool's default bounds.
    pub fn mempool_config(&self) -> MempoolConfig {
        MempoolConfig {
            min_relay_fee: self.min_relay_fee,
            ..MempoolConfig::default()
        }
    }
}
