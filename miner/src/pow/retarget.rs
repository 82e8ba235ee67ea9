//! How the target follows the hash rate: Bitcoin's 2016-block retarget and Bitcoin Cash's
//! aserti3-2d, both as pure integer functions of a few header fields, bit-exact with their
//! reference implementations (Bitcoin Core `CalculateNextWorkRequired`, the BCH ASERT spec).

use crate::pow::target::{CompactTarget, Target};
use chain::U256;
use ruint::Uint;

/// 320 bits: room for a 256-bit target times a 64-bit factor, or shifted a few bits left.
type U320 = Uint<320, 5>;

fn widen(value: U256) -> U320 {
    let [a, b, c, d] = value.into_limbs();
    U320::from_limbs([a, b, c, d, 0])
}

/// `None` when `value` needs more than 256 bits.
fn narrow(value: U320) -> Option<U256> {
    let [a, b, c, d, e] = value.into_limbs();
    (e == 0).then(|| U256::from_limbs([a, b, c, d]))
}

/// Bitcoin's retarget rule: every `interval` blocks, scale the target by how long the
/// period took against how long it should have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitcoinRetarget {
    /// Blocks per period (Bitcoin: 2016).
    pub interval: u64,
    /// Seconds a period should take (Bitcoin: two weeks, 1,209,600).
    pub target_timespan: u64,
    /// The easiest target allowed (Bitcoin: `0x00000000ffff…ff`).
    pub pow_limit: Target,
    /// BIP94: the first block of a period may be at most this many seconds before its
    /// parent (Bitcoin: 600), which closes the timewarp attack.
    pub max_timewarp: u64,
}

impl BitcoinRetarget {
    /// Bitcoin mainnet's constants (`src/kernel/chainparams.cpp`).
    pub fn bitcoin_mainnet() -> BitcoinRetarget {
        BitcoinRetarget {
            interval: 2016,
            target_timespan: 14 * 24 * 60 * 60,
            pow_limit: Target::from_u256(U256::MAX >> 32),
            max_timewarp: 600,
        }
    }
}

/// The bits of the block after `last_bits`'s block when a period closes (Bitcoin Core's
/// `CalculateNextWorkRequired`).
///
/// `first_block_time` is the time of the period's first block, which is `interval − 1`
/// blocks before the last (Bitcoin's off-by-one: a period measures only 2015 intervals).
/// The measured timespan is clamped to `[timespan/4, 4·timespan]`, then
/// `new = old · actual / timespan`, capped at the pow limit. Core multiplies in 256 bits and
/// would wrap for targets above 2^233; this multiplies in 320 bits, which agrees everywhere
/// Core does not overflow (every Bitcoin mainnet case). Invalid `last_bits` are decoded
/// the way Core does (value kept, sign and overflow flags ignored).
pub fn bitcoin_next_bits(
    first_block_time: i64,
    last_block_time: i64,
    last_bits: u32,
    params: &BitcoinRetarget,
) -> u32 {
    let timespan = u128::from(params.target_timespan);
    if timespan == 0 {
        // No period length means no retargeting (validated away in `PowParams`).
        return last_bits;
    }
    let actual = i128::from(last_block_time) - i128::from(first_block_time);
    let min = timespan / 4;
    let max = timespan * 4;
    // Negative spans clamp to the minimum too, so the sign is gone after this.
    let actual = u128::try_from(actual).map_or(min, |a| a.clamp(min, max));
    let old = CompactTarget::from_consensus(last_bits).decode().value;
    let scaled = widen(old) * U320::from(actual) / U320::from(timespan);
    let limit = params.pow_limit.to_u256();
    let new = narrow(scaled).map_or(limit, |n| n.min(limit));
    Target::from_u256(new).to_compact().to_consensus()
}

/// Parameters of aserti3-2d.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsertParams {
    /// Ideal seconds between blocks (BCH: 600).
    pub target_block_time: u64,
    /// Seconds the chain must run behind (ahead of) schedule for the target to double
    /// (halve) (BCH: 172,800, two days).
    pub half_life: u64,
    /// The easiest target allowed (BCH: `bits_to_target(0x1d00ffff)`).
    pub pow_limit: Target,
}

impl AsertParams {
    /// Bitcoin Cash mainnet's constants (spec 2020-11-15-asert).
    pub fn bitcoin_cash() -> AsertParams {
        AsertParams {
            target_block_time: 600,
            half_life: 2 * 24 * 60 * 60,
            pow_limit: CompactTarget::from_consensus(0x1d00_ffff)
                .to_target()
                .expect("0x1d00ffff is a valid compact target"),
        }
    }
}

/// The hardest target, 1, in compact form.
const MIN_TARGET_BITS: u32 = 0x0101_0000;

/// The bits of block `eval_height + 1` under aserti3-2d:
///
/// `target = anchor_target · 2^((eval_time − anchor_parent_time − T·(eval_height −
/// anchor_height + 1)) / half_life)`
///
/// in the spec's 16.16 fixed point with its cubic approximation of `2^x` on `[0, 1)`. Heights
/// and times are widened to i128, so heights past 2^63 and negative time deltas are exact.
/// A zero half-life is read as one second rather than dividing by zero.
pub fn asert_next_bits(
    anchor_height: u64,
    anchor_parent_time: i64,
    anchor_bits: u32,
    eval_height: u64,
    eval_time: i64,
    params: &AsertParams,
) -> u32 {
    let max_bits = params.pow_limit.to_compact().to_consensus();
    let anchor_target = CompactTarget::from_consensus(anchor_bits).decode().value;
    let half_life = i128::from(params.half_life.max(1));
    let time_delta = i128::from(eval_time) - i128::from(anchor_parent_time);
    let height_delta = i128::from(eval_height) - i128::from(anchor_height);
    // Only absurd parameters (a block time near 2^64 s) overflow i128; the sign of the
    // schedule error then decides which end of the range the target is pinned to.
    let saturated = |behind_schedule: bool| {
        if behind_schedule {
            max_bits
        } else {
            MIN_TARGET_BITS
        }
    };
    let Some(ideal) = i128::from(params.target_block_time).checked_mul(height_delta + 1) else {
        return saturated(height_delta < 0);
    };
    let Some(drift) = time_delta.checked_sub(ideal) else {
        return saturated(ideal < 0);
    };
    let Some(scaled) = drift.checked_mul(65_536) else {
        return saturated(drift > 0);
    };
    // i128 `/` truncates toward zero, as the spec requires; `>>` is arithmetic (floor).
    let exponent = scaled / half_life;
    let shifts = exponent >> 16;
    let frac = (exponent & 0xffff) as u128;
    let factor = ((195_766_423_245_049 * frac
        + 971_821_376 * frac * frac
        + 5_127 * frac * frac * frac
        + (1 << 47))
        >> 48)
        + 65_536;
    let mut next = widen(anchor_target) * U320::from(factor);
    if shifts < 0 {
        next = usize::try_from(-shifts).map_or(U320::ZERO, |s| next.wrapping_shr(s));
    } else {
        let shifted = usize::try_from(shifts)
            .ok()
            .map(|s| next.overflowing_shl(s))
            .filter(|(_, overflow)| !overflow);
        match shifted {
            Some((value, _)) => next = value,
            None => return max_bits,
        }
    }
    next >>= 16;
    if next.is_zero() {
        return MIN_TARGET_BITS;
    }
    match narrow(next) {
        Some(target) if target <= params.pow_limit.to_u256() => {
            Target::from_u256(target).to_compact().to_consensus()
        }
        _ => max_bits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitcoin_retarget_clamps_negative_and_huge_spans() {
        let params = BitcoinRetarget::bitcoin_mainnet();
        let quarter = bitcoin_next_bits(0, 1, 0x1c05_a3f4, &params);
        assert_eq!(bitcoin_next_bits(1_000, 0, 0x1c05_a3f4, &params), quarter);
        assert_eq!(
            bitcoin_next_bits(i64::MIN, i64::MAX, 0x1d00_ffff, &params),
            0x1d00_ffff
        );
    }

    #[test]
    fn asert_on_schedule_keeps_the_anchor_target() {
        let params = AsertParams::bitcoin_cash();
        for n in 0..50u64 {
            let t = 600 * (n as i64 + 1);
            assert_eq!(
                asert_next_bits(0, 0, 0x1b0a_bcde, n, t, &params),
                0x1b0a_bcde
            );
        }
    }

    #[test]
    fn asert_one_half_life_late_doubles_the_target() {
        let params = AsertParams::bitcoin_cash();
        let anchor = CompactTarget::from_consensus(0x1b0a_bcde)
            .to_target()
            .expect("valid");
        let bits = asert_next_bits(0, 0, 0x1b0a_bcde, 0, 600 + 172_800, &params);
        let doubled = Target::from_u256(anchor.to_u256() * U256::from(2u8)).to_compact();
        assert_eq!(bits, doubled.to_consensus());
        let bits = asert_next_bits(0, 0, 0x1b0a_bcde, 0, 600 - 172_800, &params);
        let halved = Target::from_u256(anchor.to_u256() / U256::from(2u8)).to_compact();
        assert_eq!(bits, halved.to_consensus());
    }
}
