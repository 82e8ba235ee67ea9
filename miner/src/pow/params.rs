//! The proof-of-work chain parameters, as they appear in a chain spec.

use crate::pow::error::PowError;
use crate::pow::retarget::{AsertParams, BitcoinRetarget};
use crate::pow::target::{CompactTarget, Target};
use chain::Amount;
use serde::{Deserialize, Serialize};

/// How the target follows the hash rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Retarget {
    /// Bitcoin Cash's aserti3-2d: every block's target is scheduled from the anchor, block
    /// 1 (which carries the genesis bits); the target doubles for every `half_life`
    /// seconds the chain runs behind its ideal schedule and halves for every `half_life`
    /// it runs ahead.
    Asert {
        /// Seconds of schedule drift that double or halve the target.
        half_life: u64,
    },
    /// Bitcoin's windowed retarget: every `interval` blocks the target is scaled by the
    /// period's duration over `timespan` (clamped to a factor of 4 either way), with
    /// BIP94's timewarp rule on the first block of each period.
    Bitcoin {
        /// Blocks per retarget period.
        interval: u64,
        /// Seconds a period should take (normally `interval × target_block_time`).
        timespan: u64,
        /// How many seconds the first block of a period may be before its parent.
        #[serde(default = "default_max_timewarp")]
        max_timewarp: u64,
    },
}

fn default_max_timewarp() -> u64 {
    600
}

/// The parameters of the proof-of-work engine. Part of the chain's identity.
///
/// In a spec, `retarget` may be written as just `"asert"` or `"bitcoin"`; the other
/// values then follow from `target_block_time` (half-life of 20 blocks; 2016-block
/// periods). Missing limits take the devnet's values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPowParams")]
pub struct PowParams {
    /// Seconds between blocks that retargeting aims for.
    pub target_block_time: u64,
    /// How the target follows the hash rate.
    pub retarget: Retarget,
    /// The easiest target any block may have, in compact bits.
    pub pow_limit: CompactTarget,
    /// The genesis block's bits: the starting difficulty, also carried by block 1 (ASERT's
    /// anchor). The chain's `Genesis::bits` must be set to this.
    pub genesis_bits: CompactTarget,
    /// New coins (base units) credited to each block's producer, on top of the fees.
    pub block_reward: Amount,
}

/// Blocks in an ASERT half-life when a spec only says `retarget = "asert"`.
const DEFAULT_HALF_LIFE_BLOCKS: u64 = 20;
/// Blocks per period when a spec only says `retarget = "bitcoin"`.
const DEFAULT_INTERVAL: u64 = 2016;
/// Like Bitcoin's regtest: about one hash in two meets it, so a slow debug build still
/// makes blocks; ASERT raises the difficulty from the genesis bits as needed.
const DEVNET_POW_LIMIT: u32 = 0x207f_ffff;
/// 2^232: about 2^24 (16.8 M) hashes a block, under a second for a release build on one
/// core, so the devnet settles at 5 s blocks within a minute or two instead of racing
/// through hundreds of instant blocks.
const DEVNET_GENESIS_BITS: u32 = 0x1e00_ffff;
/// 50 TOY, Bitcoin's first subsidy.
const DEFAULT_BLOCK_REWARD: Amount = Amount::from_base_units(50 * chain::COIN);

impl PowParams {
    /// The devnet: 5 s blocks, ASERT with a 100 s (20-block) half-life, a regtest-easy
    /// limit, genesis at 2^232, 50 TOY a block.
    pub fn devnet() -> PowParams {
        PowParams {
            target_block_time: 5,
            retarget: Retarget::Asert {
                half_life: DEFAULT_HALF_LIFE_BLOCKS * 5,
            },
            pow_limit: CompactTarget::from_consensus(DEVNET_POW_LIMIT),
            genesis_bits: CompactTarget::from_consensus(DEVNET_GENESIS_BITS),
            block_reward: DEFAULT_BLOCK_REWARD,
        }
    }

    /// Checks that the parameters describe a chain that can run: positive times, valid
    /// targets, genesis no easier than the limit.
    pub fn validate(&self) -> Result<(), PowError> {
        let invalid = |field, reason: &str| PowError::InvalidParams {
            field,
            reason: reason.to_owned(),
        };
        if self.target_block_time == 0 {
            return Err(invalid("target_block_time", "must be at least 1 second"));
        }
        match self.retarget {
            Retarget::Asert { half_life: 0 } => {
                return Err(invalid("half_life", "must be at least 1 second"));
            }
            Retarget::Bitcoin { interval: 0, .. } => {
                return Err(invalid("interval", "must be at least 1 block"));
            }
            Retarget::Bitcoin { timespan: 0, .. } => {
                return Err(invalid("timespan", "must be at least 1 second"));
            }
            _ => {}
        }
        let limit = self.pow_limit_target()?;
        let genesis = self
            .genesis_bits
            .to_target()
            .ok_or_else(|| PowError::InvalidParams {
                field: "genesis_bits",
                reason: format!("{} is not a valid compact target", self.genesis_bits),
            })?;
        if genesis > limit {
            return Err(PowError::InvalidParams {
                field: "genesis_bits",
                reason: format!(
                    "{} is easier than the pow limit {}",
                    self.genesis_bits, self.pow_limit
                ),
            });
        }
        Ok(())
    }

    /// The pow limit as a target.
    pub fn pow_limit_target(&self) -> Result<Target, PowError> {
        self.pow_limit
            .to_target()
            .ok_or_else(|| PowError::InvalidParams {
                field: "pow_limit",
                reason: format!("{} is not a valid compact target", self.pow_limit),
            })
    }

    /// The ASERT parameters, when this chain retargets with ASERT.
    pub fn asert(&self) -> Result<Option<AsertParams>, PowError> {
        Ok(match self.retarget {
            Retarget::Asert { half_life } => Some(AsertParams {
                target_block_time: self.target_block_time,
                half_life,
                pow_limit: self.pow_limit_target()?,
            }),
            Retarget::Bitcoin { .. } => None,
        })
    }

    /// The Bitcoin retarget parameters, when this chain retargets Bitcoin's way.
    pub fn bitcoin(&self) -> Result<Option<BitcoinRetarget>, PowError> {
        Ok(match self.retarget {
            Retarget::Bitcoin {
                interval,
                timespan,
                max_timewarp,
            } => Some(BitcoinRetarget {
                interval,
                target_timespan: timespan,
                pow_limit: self.pow_limit_target()?,
                max_timewarp,
            }),
            Retarget::Asert { .. } => None,
        })
    }
}

/// What a spec may write: `retarget` as a bare name, limits left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPowParams {
    target_block_time: u64,
    #[serde(default)]
    retarget: Option<RawRetarget>,
    #[serde(default)]
    pow_limit: Option<CompactTarget>,
    #[serde(default)]
    genesis_bits: Option<CompactTarget>,
    #[serde(default)]
    block_reward: Option<Amount>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRetarget {
    Name(RetargetName),
    Full(Retarget),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RetargetName {
    Asert,
    Bitcoin,
}

impl TryFrom<RawPowParams> for PowParams {
    type Error = PowError;

    fn try_from(raw: RawPowParams) -> Result<PowParams, PowError> {
        let t = raw.target_block_time;
        let retarget = match raw.retarget {
            None | Some(RawRetarget::Name(RetargetName::Asert)) => Retarget::Asert {
                half_life: t.saturating_mul(DEFAULT_HALF_LIFE_BLOCKS),
            },
            Some(RawRetarget::Name(RetargetName::Bitcoin)) => Retarget::Bitcoin {
                interval: DEFAULT_INTERVAL,
                timespan: t.saturating_mul(DEFAULT_INTERVAL),
                max_timewarp: default_max_timewarp(),
            },
            Some(RawRetarget::Full(full)) => full,
        };
        let devnet = PowParams::devnet();
        let params = PowParams {
            target_block_time: t,
            retarget,
            pow_limit: raw.pow_limit.unwrap_or(devnet.pow_limit),
            genesis_bits: raw.genesis_bits.unwrap_or(devnet.genesis_bits),
            block_reward: raw.block_reward.unwrap_or(devnet.block_reward),
        };
        params.validate()?;
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_is_valid_and_round_trips_through_json() {
        let devnet = PowParams::devnet();
        devnet.validate().expect("devnet params are valid");
        let json = serde_json::to_string(&devnet).expect("serializes");
        let back: PowParams = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, devnet);
        assert!(json.contains(r#""pow_limit":"0x207fffff""#), "{json}");
    }

    #[test]
    fn a_bare_retarget_name_takes_defaults_from_the_block_time() {
        let asert: PowParams =
            serde_json::from_str(r#"{"target_block_time":5,"retarget":"asert"}"#).expect("asert");
        assert_eq!(asert, PowParams::devnet());
        let bitcoin: PowParams =
            serde_json::from_str(r#"{"target_block_time":10,"retarget":"bitcoin"}"#)
                .expect("bitcoin");
        assert_eq!(
            bitcoin.retarget,
            Retarget::Bitcoin {
                interval: 2016,
                timespan: 20_160,
                max_timewarp: 600
            }
        );
        let full: PowParams = serde_json::from_str(
            r#"{"target_block_time":5,"retarget":{"asert":{"half_life":60}},"pow_limit":"0x1f00ffff","genesis_bits":"0x1f00ffff","block_reward":7}"#,
        )
        .expect("full form");
        assert_eq!(full.retarget, Retarget::Asert { half_life: 60 });
        assert_eq!(full.block_reward, Amount(7));
    }

    #[test]
    fn bad_params_are_refused_with_the_field_named() {
        for (json, field) in [
            (r#"{"target_block_time":0}"#, "target_block_time"),
            (
                r#"{"target_block_time":5,"retarget":{"asert":{"half_life":0}}}"#,
                "half_life",
            ),
            (
                r#"{"target_block_time":5,"retarget":{"bitcoin":{"interval":0,"timespan":10}}}"#,
                "interval",
            ),
            (
                r#"{"target_block_time":5,"pow_limit":"0x04923456"}"#,
                "pow_limit",
            ),
            (
                r#"{"target_block_time":5,"pow_limit":"0x1d00ffff","genesis_bits":"0x1e00ffff"}"#,
                "genesis_bits",
            ),
        ] {
            let err = serde_json::from_str::<PowParams>(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
        assert!(serde_json::from_str::<PowParams>(r#"{"target_block_time":5,"typo":1}"#).is_err());
    }
}
