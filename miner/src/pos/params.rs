//! The proof-of-stake chain parameters, as they appear in a chain spec.

use crate::pos::error::PosError;
use crate::pow::{CompactTarget, Target};
use serde::{Deserialize, Serialize};

/// The parameters of the coin-age proof-of-stake engine. Part of the chain's identity.
///
/// Every time is in seconds. [`PosParams::devnet`] has minutes-scale values for a demo;
/// [`PosParams::peercoin_like`] has the mainnet-scale values Peercoin uses. In a spec any
/// field may be left out and then takes the devnet's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPosParams")]
pub struct PosParams {
    /// Seconds between blocks that the retarget aims for (Peercoin: 600).
    pub target_spacing: u64,
    /// The retarget's time constant: `interval = target_timespan / target_spacing` blocks
    /// (Peercoin: one week, 604,800).
    pub target_timespan: u64,
    /// Coin age below which an account cannot stake (Peercoin: 30 days, 2,592,000).
    pub stake_min_age: u64,
    /// Most seconds of age past the minimum that count towards the kernel weight (Peercoin:
    /// 90 days, 7,776,000): `weight secs = min(age − stake_min_age, stake_max_age)`.
    pub stake_max_age: u64,
    /// Block timestamps are multiples of this, so a staker has one kernel try per
    /// `granularity` seconds (Peercoin masks timestamps to 16 s).
    pub granularity: u64,
    /// The stake modifier changes at most once per this many seconds: it is fixed for each
    /// epoch `[k·I, (k+1)·I)` of kernel times (Peercoin: 6 hours, 21,600).
    pub modifier_interval: u64,
    /// How old a block must be, at the start of a modifier epoch, for its entropy bit to
    /// feed that epoch's modifier (Peercoin's selection interval for a 6-hour modifier
    /// interval is about 761,000 s, 8.8 days).
    pub modifier_selection: u64,
    /// Yearly stake reward in parts per million of the staked balance, paid for the coin
    /// age a block consumes (Peercoin: 1 %, 10,000).
    pub reward_rate_ppm: u64,
    /// The easiest target per coin-day any block may have, in compact bits.
    pub pos_limit: CompactTarget,
    /// The target of blocks 1 and 2 (the retarget needs two earlier blocks).
    pub genesis_bits: CompactTarget,
}

/// Like Bitcoin's regtest limit: the devnet retarget is never held back by it.
const DEVNET_POS_LIMIT: u32 = 0x207f_ffff;
/// The devnet's starting target per coin-day, from the expected weight: a 1,000,000 TOY
/// account gains `10^6 / 86,400 ≈ 11.6` coin-days a second past the minimum age, so its
/// chance per second is `c·x` with `c = target / 2^256 × 11.6` (`x` seconds past the
/// minimum age). Four such stakers each need to stake about every 20 s for 5-second blocks,
/// 10 s of minimum age and 10 s of waiting; a Rayleigh wait of mean `√(π / 2c)` = 10 s gives
/// `c ≈ 0.0157`, so `target ≈ 2^246.5`. `0x1f500000` (`c ≈ 0.0141`) is that, rounded
/// to a short mantissa; the retarget settles near it.
const DEVNET_GENESIS_BITS: u32 = 0x1f50_0000;

/// Seconds in a year for the reward rate (365 days).
pub const SECONDS_PER_YEAR: u64 = 365 * 24 * 60 * 60;

impl PosParams {
    /// The devnet: 5 s blocks from a 4-node devnet of 1,000,000 TOY accounts right away.
    ///
    /// A staker can stake at most once per minimum age, so with four stakers and 5 s blocks
    /// the minimum age must stay well under 20 s: it is 10 s, with up to 30 s more of age
    /// counted (full weight at 40 s). Genesis bits `0x1f500000` (see the constant), a
    /// 24-block retarget interval (120 s), 1 s granularity, a modifier that changes every
    /// 30 s from blocks at least 60 s older, 1 % a year.
    pub fn devnet() -> PosParams {
        PosParams {
            target_spacing: 5,
            target_timespan: 120,
            stake_min_age: 10,
            stake_max_age: 30,
            granularity: 1,
            modifier_interval: 30,
            modifier_selection: 60,
            reward_rate_ppm: 10_000,
            pos_limit: CompactTarget::from_consensus(DEVNET_POS_LIMIT),
            genesis_bits: CompactTarget::from_consensus(DEVNET_GENESIS_BITS),
        }
    }

    /// Mainnet-scale values after Peercoin: 10-minute blocks retargeted over a week, 30 days
    /// of minimum age and 90 more counted, 16 s granularity, a 6-hour modifier from blocks
    /// at least 8.8 days old, 1 % a year. The limit and genesis target (`0x1e00ffff`,
    /// about 2^232 per coin-day) are a starting point to tune to the expected stake.
    pub fn peercoin_like() -> PosParams {
        const DAY: u64 = 24 * 60 * 60;
        PosParams {
            target_spacing: 600,
            target_timespan: 7 * DAY,
            stake_min_age: 30 * DAY,
            stake_max_age: 90 * DAY,
            granularity: 16,
            modifier_interval: 6 * 60 * 60,
            modifier_selection: 761_000,
            reward_rate_ppm: 10_000,
            pos_limit: CompactTarget::from_consensus(0x1e00_ffff),
            genesis_bits: CompactTarget::from_consensus(0x1e00_ffff),
        }
    }

    /// Checks that the parameters describe a chain that can run: positive times, a
    /// timespan of at least one spacing, valid targets, genesis no easier than the limit.
    pub fn validate(&self) -> Result<(), PosError> {
        let invalid = |field, reason: &str| PosError::InvalidParams {
            field,
            reason: reason.to_owned(),
        };
        for (field, value) in [
            ("target_spacing", self.target_spacing),
            ("stake_max_age", self.stake_max_age),
            ("granularity", self.granularity),
            ("modifier_interval", self.modifier_interval),
            ("modifier_selection", self.modifier_selection),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1 second"));
            }
        }
        if self.target_timespan < self.target_spacing {
            return Err(PosError::InvalidParams {
                field: "target_timespan",
                reason: format!(
                    "{} s is shorter than one target spacing ({} s)",
                    self.target_timespan, self.target_spacing
                ),
            });
        }
        // Timestamps fit in 32 bits; a larger age could never be reached.
        for (field, value) in [
            ("stake_min_age", self.stake_min_age),
            ("stake_max_age", self.stake_max_age),
        ] {
            if value > u64::from(u32::MAX) {
                return Err(invalid(field, "is longer than any 32-bit timestamp allows"));
            }
        }
        let limit = self.pos_limit_target()?;
        let genesis = self
            .genesis_bits
            .to_target()
            .ok_or_else(|| PosError::InvalidParams {
                field: "genesis_bits",
                reason: format!("{} is not a valid compact target", self.genesis_bits),
            })?;
        if genesis > limit {
            return Err(PosError::InvalidParams {
                field: "genesis_bits",
                reason: format!(
                    "{} is easier than the pos limit {}",
                    self.genesis_bits, self.pos_limit
                ),
            });
        }
        Ok(())
    }

    /// The pos limit as a target.
    pub fn pos_limit_target(&self) -> Result<Target, PosError> {
        self.pos_limit
            .to_target()
            .ok_or_else(|| PosError::InvalidParams {
                field: "pos_limit",
                reason: format!("{} is not a valid compact target", self.pos_limit),
            })
    }

    /// Blocks in the retarget's moving average: `target_timespan / target_spacing`, at
    /// least 1.
    pub fn retarget_interval(&self) -> u64 {
        (self.target_timespan / self.target_spacing.max(1)).max(1)
    }
}

/// What a spec may write: any field left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPosParams {
    #[serde(default)]
    target_spacing: Option<u64>,
    #[serde(default)]
    target_timespan: Option<u64>,
    #[serde(default)]
    stake_min_age: Option<u64>,
    #[serde(default)]
    stake_max_age: Option<u64>,
    #[serde(default)]
    granularity: Option<u64>,
    #[serde(default)]
    modifier_interval: Option<u64>,
    #[serde(default)]
    modifier_selection: Option<u64>,
    #[serde(default)]
    reward_rate_ppm: Option<u64>,
    #[serde(default)]
    pos_limit: Option<CompactTarget>,
    #[serde(default)]
    genesis_bits: Option<CompactTarget>,
}

impl TryFrom<RawPosParams> for PosParams {
    type Error = PosError;

    fn try_from(raw: RawPosParams) -> Result<PosParams, PosError> {
        let dev = PosParams::devnet();
        let params = PosParams {
            target_spacing: raw.target_spacing.unwrap_or(dev.target_spacing),
            target_timespan: raw.target_timespan.unwrap_or(dev.target_timespan),
            stake_min_age: raw.stake_min_age.unwrap_or(dev.stake_min_age),
            stake_max_age: raw.stake_max_age.unwrap_or(dev.stake_max_age),
            granularity: raw.granularity.unwrap_or(dev.granularity),
            modifier_interval: raw.modifier_interval.unwrap_or(dev.modifier_interval),
            modifier_selection: raw.modifier_selection.unwrap_or(dev.modifier_selection),
            reward_rate_ppm: raw.reward_rate_ppm.unwrap_or(dev.reward_rate_ppm),
            pos_limit: raw.pos_limit.unwrap_or(dev.pos_limit),
            genesis_bits: raw.genesis_bits.unwrap_or(dev.genesis_bits),
        };
        params.validate()?;
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_and_peercoin_like_are_valid_and_round_trip_through_json() {
        for params in [PosParams::devnet(), PosParams::peercoin_like()] {
            params.validate().expect("valid params");
            let json = serde_json::to_string(&params).expect("serializes");
            let back: PosParams = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, params);
        }
        let json = serde_json::to_string(&PosParams::devnet()).expect("serializes");
        assert!(json.contains(r#""genesis_bits":"0x1f500000""#), "{json}");
        assert_eq!(PosParams::devnet().retarget_interval(), 24);
        assert_eq!(PosParams::peercoin_like().retarget_interval(), 1008);
    }

    #[test]
    fn left_out_fields_take_the_devnet_values() {
        let empty: PosParams = serde_json::from_str("{}").expect("all defaults");
        assert_eq!(empty, PosParams::devnet());
        let some: PosParams =
            serde_json::from_str(r#"{"stake_min_age":60,"genesis_bits":"0x1f00ffff"}"#)
                .expect("partial");
        assert_eq!(some.stake_min_age, 60);
        assert_eq!(
            some.genesis_bits,
            CompactTarget::from_consensus(0x1f00_ffff)
        );
        assert_eq!(some.target_spacing, 5);
    }

    #[test]
    fn bad_params_are_refused_with_the_field_named() {
        for (json, field) in [
            (r#"{"target_spacing":0}"#, "target_spacing"),
            (
                r#"{"target_spacing":10,"target_timespan":5}"#,
                "target_timespan",
            ),
            (r#"{"stake_max_age":0}"#, "stake_max_age"),
            (r#"{"stake_min_age":5000000000}"#, "stake_min_age"),
            (r#"{"granularity":0}"#, "granularity"),
            (r#"{"modifier_interval":0}"#, "modifier_interval"),
            (r#"{"modifier_selection":0}"#, "modifier_selection"),
            (r#"{"pos_limit":"0x04923456"}"#, "pos_limit"),
            (r#"{"genesis_bits":"0x00000000"}"#, "genesis_bits"),
            (
                r#"{"pos_limit":"0x1d00ffff","genesis_bits":"0x1e00ffff"}"#,
                "genesis_bits",
            ),
        ] {
            let err = serde_json::from_str::<PosParams>(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
        assert!(serde_json::from_str::<PosParams>(r#"{"typo":1}"#).is_err());
    }
}
