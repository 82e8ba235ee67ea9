//! Peercoin's per-block retarget: an exponential moving average of the spacing, as a pure
//! integer function bit-exact with `GetNextTargetRequired` (peercoin `src/pow.cpp`, before
//! its V12/V14 proof-of-work changes).

use crate::pow::{CompactTarget, Target};
use chain::U256;
use ruint::Uint;

/// 384 bits: a 256-bit target times a 128-bit factor.
type U384 = Uint<384, 6>;

fn widen(value: U256) -> U384 {
    let [a, b, c, d] = value.into_limbs();
    U384::from_limbs([a, b, c, d, 0, 0])
}

/// `None` when `value` needs more than 256 bits.
fn narrow(value: U384) -> Option<U256> {
    let [a, b, c, d, e, f] = value.into_limbs();
    (e == 0 && f == 0).then(|| U256::from_limbs([a, b, c, d]))
}

/// The bits of the block after `prev` under Peercoin's rule:
///
/// `new = target(prev_bits) · ((N − 1)·S + 2·A) / ((N + 1)·S)`, `N = timespan / S`,
/// `A = prev_time − prev_prev_time`
///
/// multiplied first and then floor-divided in wide integers, capped at `limit` and
/// compact-encoded (which rounds down). `spacing` is passed in because Peercoin's
/// proof-of-work blocks use another one than its stake blocks; the engine passes its
/// target spacing. `N` is at least 1. Guards for inputs Peercoin never meets: a negative
/// `A` counts as 0 and a zero result becomes 1, the hardest valid target (Peercoin's
/// signed bignum would go negative); a zero `spacing` keeps `prev_bits`. Invalid
/// `prev_bits` are decoded the way Core's `SetCompact` does (value kept, flags ignored).
pub fn peercoin_next_bits(
    prev_bits: u32,
    prev_time: i64,
    prev_prev_time: i64,
    spacing: u64,
    timespan: u64,
    limit: Target,
) -> u32 {
    if spacing == 0 {
        return prev_bits;
    }
    let spacing = u128::from(spacing);
    let interval = (u128::from(timespan) / spacing).max(1);
    let actual = i128::from(prev_time) - i128::from(prev_prev_time);
    // Non-negative after the max, so the conversion cannot fail; 0 would be the fallback.
    let actual = u128::try_from(actual.max(0)).unwrap_or(0);
    // Each term is below 2^64 · 2^64; the sums cannot overflow u128.
    let numerator = (interval - 1) * spacing + 2 * actual;
    let denominator = (interval + 1) * spacing;
    let old = CompactTarget::from_consensus(prev_bits).decode().value;
    let scaled = widen(old) * U384::from(numerator) / U384::from(denominator);
    let limit = limit.to_u256();
    let new = narrow(scaled)
        .map_or(limit, |n| n.min(limit))
        .max(U256::from(1u8));
    Target::from_u256(new).to_compact().to_consensus()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peercoin_pow_limit() -> Target {
        Target::from_u256(U256::MAX >> 32)
    }

    /// Peercoin's spacing for a proof-of-work block before protocol V09:
    /// `min(7200, 600 · (1 + last.height − prev.height))`.
    fn pow_spacing_before_v09(last_height: u64, prev_height: u64) -> u64 {
        (600 * (1 + last_height - prev_height)).min(7200)
    }

    // From peercoin/peercoin src/test/pow_tests.cpp (also in
    // the repository's testdata/peercoin_retarget.json): proof-of-work targets, where `prev` and
    // `prevprev` are the last two PoW blocks at or before `pindexLast`.
    #[test]
    fn retarget_matches_peercoin_pow_tests() {
        // (name, prev bits, prev time, prevprev time, spacing, expected)
        let cases: &[(&str, u32, i64, i64, u64, u32)] = &[
            // get_next_work: blocks 3 and 4, spacing 600.
            (
                "get_next_work",
                0x1c00_ff4a,
                1_345_400_851,
                1_345_400_724,
                pow_spacing_before_v09(4, 4),
                0x1c00_fee3,
            ),
            // get_next_work_beforev9: 20 s apart, spacing 600.
            (
                "get_next_work_beforev9",
                0x1c00_ff4a,
                1_581_334_400,
                1_581_334_380,
                pow_spacing_before_v09(4, 4),
                0x1c00_fecc,
            ),
            // get_next_work_beforev9pos2: pindexLast is PoS block 6, so the last PoW block
            // is 4 and the spacing is 600 · (1 + 6 − 4) = 1800.
            (
                "get_next_work_beforev9pos2",
                0x1c00_ff4a,
                1_581_334_440,
                1_581_334_420,
                pow_spacing_before_v09(6, 4),
                0x1c00_fdca,
            ),
            // get_next_work_afterv9pos7200: block 7 after V09 (spacing 3600), its last PoW
            // ancestor block 4 is 10,020 s earlier, so the target grows.
            (
                "get_next_work_afterv9pos7200",
                0x1c00_fc48,
                1_598_344_460,
                1_598_334_440,
                3600,
                0x1c01_019b,
            ),
        ];
        for &(name, bits, prev, prev_prev, spacing, expected) in cases {
            let got = peercoin_next_bits(
                bits,
                prev,
                prev_prev,
                spacing,
                604_800,
                peercoin_pow_limit(),
            );
            assert_eq!(
                CompactTarget::from_consensus(got),
                CompactTarget::from_consensus(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn on_schedule_keeps_the_target_and_off_schedule_moves_it_by_the_average() {
        let bits = 0x1f50_0000;
        let limit = CompactTarget::from_consensus(0x207f_ffff)
            .to_target()
            .expect("valid");
        // Exactly on schedule: ((N−1)S + 2S) / ((N+1)S) = 1.
        assert_eq!(peercoin_next_bits(bits, 105, 100, 5, 120, limit), bits);
        // Instant block (A = 0): factor (N−1)/(N+1) = 23/25.
        let faster = peercoin_next_bits(bits, 100, 100, 5, 120, limit);
        let expected = U256::from(0x50_0000u64) << (8 * 28);
        let expected = expected * U256::from(23u8) / U256::from(25u8);
        assert_eq!(
            faster,
            Target::from_u256(expected).to_compact().to_consensus()
        );
        // A very slow block is capped at the limit, never above.
        assert_eq!(
            peercoin_next_bits(0x207f_0000, 10_000_000, 0, 5, 120, limit),
            limit.to_compact().to_consensus()
        );
        // Time running backwards counts as an instant block.
        assert_eq!(peercoin_next_bits(bits, 90, 100, 5, 120, limit), faster);
        // The hardest target stays valid.
        assert_eq!(
            peercoin_next_bits(0x0101_0000, 100, 100, 1, 1, limit),
            0x0101_0000
        );
        assert_eq!(peercoin_next_bits(bits, 0, 0, 0, 120, limit), bits);
    }
}
