//! The stake kernel and what feeds it: coin-day weight, the stake modifier and its entropy
//! log, the reward for consumed coin age, and the stake proof a header carries. Pure
//! functions of their inputs; the engine reads those inputs from the parent state.

use crate::pos::age::CoinAge;
use crate::pos::error::PosError;
use crate::pos::params::{PosParams, SECONDS_PER_YEAR};
use crate::pow::Target;
use borsh::{BorshDeserialize, BorshSerialize};
use chain::crypto::{sha256d, sha256d_parts};
use chain::{Address, Amount, BlockHash, COIN, Hash256, Timestamp, U256};
use std::fmt;

/// Seconds in a coin-day.
pub const SECONDS_PER_DAY: u64 = 24 * 60 * 60;
/// Most entropy bits (one per block) that feed one stake modifier.
pub const MODIFIER_BITS: usize = 64;

const MODIFIER_DOMAIN: &[u8] = b"toychain/pos/modifier/v1";

/// A kernel hash: `sha256d(modifier ‖ staker ‖ origin ‖ t)`, compared with the weighted
/// target as a little-endian 256-bit number (as proof-of-work compares block hashes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KernelHash(pub [u8; 32]);

impl KernelHash {
    /// The number compared with the weighted target.
    pub fn value(&self) -> U256 {
        U256::from_le_bytes(self.0)
    }
}

impl fmt::Display for KernelHash {
    /// The number as 64 hex digits, most significant first (as targets are shown), so a
    /// kernel and its weighted target can be compared by eye.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.value().to_be_bytes::<32>()))
    }
}

impl fmt::Debug for KernelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KernelHash({self})")
    }
}

/// The kernel hash of `staker`, whose coins have aged since `age_origin`, trying `time`
/// under `modifier`: `sha256d(modifier(32) ‖ staker(20) ‖ origin(u64 LE) ‖ t(u64 LE))`.
pub fn kernel_hash(
    modifier: &StakeModifier,
    staker: &Address,
    age_origin: Timestamp,
    time: Timestamp,
) -> KernelHash {
    let mut preimage = [0u8; 32 + 20 + 8 + 8];
    preimage[..32].copy_from_slice(&modifier.0.0);
    preimage[32..52].copy_from_slice(&staker.0);
    preimage[52..60].copy_from_slice(&age_origin.0.to_le_bytes());
    preimage[60..].copy_from_slice(&time.0.to_le_bytes());
    KernelHash(sha256d(&preimage))
}

/// Seconds of age that count towards the kernel weight: none below the minimum age, then
/// `min(age − stake_min_age, stake_max_age)` (Peercoin's `GetWeight`).
pub fn weight_secs(params: &PosParams, age_secs: u64) -> u64 {
    age_secs
        .checked_sub(params.stake_min_age)
        .map_or(0, |past| past.min(params.stake_max_age))
}

/// The kernel weight: `⌊balance × weight_secs / (COIN × 86,400)⌋` whole coin-days.
pub fn coin_days(params: &PosParams, balance: Amount, age_secs: u64) -> u128 {
    u128::from(balance.base_units()) * u128::from(weight_secs(params, age_secs))
        / (u128::from(COIN) * u128::from(SECONDS_PER_DAY))
}

/// The target scaled by the weight, saturating at 2^256 − 1 (when every kernel meets it).
pub fn weighted_target(target: Target, coin_days: u128) -> Target {
    Target::from_u256(
        target
            .to_u256()
            .checked_mul(U256::from(coin_days))
            .unwrap_or(U256::MAX),
    )
}

/// The reward for consuming `age_secs` of coin age on `balance`, the age capped at
/// `stake_max_age`: `⌊balance × min(age, max_age) × reward_rate_ppm / (10^6 × 31,536,000)⌋`
/// base units. The cap keeps an account idle since a long-past genesis (the dev specs fix
/// theirs in 2023) from minting years of interest with its first block.
pub fn stake_reward(
    params: &PosParams,
    staker: Address,
    balance: Amount,
    age_secs: u64,
) -> Result<Amount, PosError> {
    let overflow = || PosError::RewardOverflow {
        address: staker,
        balance,
        age_secs,
    };
    let units = u128::from(balance.base_units())
        .checked_mul(u128::from(age_secs.min(params.stake_max_age)))
        .and_then(|x| x.checked_mul(u128::from(params.reward_rate_ppm)))
        .ok_or_else(overflow)?
        / (1_000_000 * u128::from(SECONDS_PER_YEAR));
    u64::try_from(units)
        .map(Amount::from_base_units)
        .map_err(|_| overflow())
}

/// The 32-byte value that makes kernel hashes unpredictable before their time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, BorshSerialize, BorshDeserialize)]
pub struct StakeModifier(pub Hash256);

impl fmt::Display for StakeModifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One block's contribution to later stake modifiers: its time and the low bit of its hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct EntropyEntry {
    pub time: Timestamp,
    pub bit: bool,
}

impl EntropyEntry {
    /// The entry of a block: the low bit of its hash read as a little-endian number.
    pub fn of_block(time: Timestamp, hash: &BlockHash) -> EntropyEntry {
        EntropyEntry {
            time,
            bit: hash.0[0] & 1 == 1,
        }
    }
}

/// The entropy bits of the recent blocks of a branch, oldest first, kept in the engine
/// state (so a reorg rolls it back with the rest). Only the entries a future modifier can
/// select are kept.
#[derive(Clone, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct EntropyLog {
    pub entries: Vec<EntropyEntry>,
}

/// The start of the modifier epoch that `time` falls in.
pub fn modifier_epoch(params: &PosParams, time: Timestamp) -> Timestamp {
    Timestamp(time.0 - time.0 % params.modifier_interval.max(1))
}

impl EntropyLog {
    /// The entries whose bits feed the modifier of `time`: the last [`MODIFIER_BITS`] with
    /// a timestamp before `epoch(time) − modifier_selection`.
    fn selected(&self, params: &PosParams, time: Timestamp) -> &[EntropyEntry] {
        let cutoff = modifier_epoch(params, time)
            .0
            .saturating_sub(params.modifier_selection);
        // Timestamps strictly increase along a branch, so the log is sorted by time.
        let end = self.entries.partition_point(|e| e.time.0 < cutoff);
        &self.entries[end.saturating_sub(MODIFIER_BITS)..end]
    }

    /// The stake modifier for kernels at `time`:
    /// `sha256d("toychain/pos/modifier/v1" ‖ epoch(u64 LE) ‖ n(u8) ‖ bits(u64 LE))`, the
    /// selected blocks' bits packed oldest first from bit 0.
    pub fn modifier(&self, params: &PosParams, time: Timestamp) -> StakeModifier {
        let selected = self.selected(params, time);
        let bits = selected
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, e)| acc | (u64::from(e.bit) << i));
        // At most MODIFIER_BITS (64) entries are selected, so the count fits in a byte.
        let count = [u8::try_from(selected.len()).unwrap_or(u8::MAX)];
        StakeModifier(Hash256(sha256d_parts(&[
            MODIFIER_DOMAIN,
            &modifier_epoch(params, time).0.to_le_bytes(),
            &count,
            &bits.to_le_bytes(),
        ])))
    }

    /// Appends the entry of the newest block.
    pub fn push(&mut self, entry: EntropyEntry) {
        self.entries.push(entry);
    }

    /// Drops the entries no modifier at or after `time` can select: those older than the
    /// newest [`MODIFIER_BITS`] before `time`'s cutoff (later cutoffs are never earlier).
    pub fn prune(&mut self, params: &PosParams, time: Timestamp) {
        let cutoff = modifier_epoch(params, time)
            .0
            .saturating_sub(params.modifier_selection);
        let end = self.entries.partition_point(|e| e.time.0 < cutoff);
        self.entries.drain(..end.saturating_sub(MODIFIER_BITS));
    }
}

/// What a header claims about its stake, in `engine.data`: checked against the parent
/// state in `begin_block`, so `explain` can show a past block's kernel without its state.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct StakeProof {
    /// The staker's coins by age in the parent state, oldest first.
    pub age: CoinAge,
    /// The modifier of the block's time.
    pub modifier: StakeModifier,
}

impl StakeProof {
    pub fn to_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    /// Reads the proof from a header's engine data (exactly its bytes, nothing after, at
    /// most [`crate::pos::MAX_AGE_BUCKETS`] non-empty age buckets in time order).
    pub fn from_bytes(bytes: &[u8]) -> Result<StakeProof, PosError> {
        let proof: StakeProof = borsh::from_slice(bytes).map_err(|e| PosError::BadStakeProof {
            reason: format!("{} bytes: {e}", bytes.len()),
        })?;
        proof
            .age
            .check_shape()
            .map_err(|reason| PosError::BadStakeProof { reason })?;
        Ok(proof)
    }

    /// When the staker's oldest coins started aging (what the kernel hash binds).
    pub fn age_origin(&self) -> Option<Timestamp> {
        self.age.oldest_origin()
    }

    /// The staker's balance in the parent state.
    pub fn balance(&self) -> Amount {
        self.age.balance()
    }
}

/// What a staker brings to a child of some parent, read once from the parent's state: its
/// coins by age, the entropy log (with the parent's own entry) and the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StakeInputs {
    pub staker: Address,
    pub age: CoinAge,
    /// The target per coin-day of the child.
    pub target: Target,
    pub entropy: EntropyLog,
}

impl StakeInputs {
    /// The staker's balance (all buckets).
    pub fn balance(&self) -> Amount {
        self.age.balance()
    }

    /// The kernel of these inputs at `time`, with everything needed to judge or show it.
    /// Without coins the origin and age read as `time` and 0.
    pub fn evaluate(&self, params: &PosParams, time: Timestamp) -> KernelCheck {
        let age_origin = self.age.oldest_origin().unwrap_or(time);
        let age_secs = time.0.saturating_sub(age_origin.0);
        let coin_days = self.age.coin_days(params, time);
        let modifier = self.entropy.modifier(params, time);
        KernelCheck {
            staker: self.staker,
            time,
            age_origin,
            age_secs,
            min_age: params.stake_min_age,
            balance: self.age.balance(),
            age: self.age.clone(),
            coin_days,
            modifier,
            kernel: kernel_hash(&modifier, &self.staker, age_origin, time),
            target: self.target,
            weighted_target: weighted_target(self.target, coin_days),
        }
    }
}

/// One kernel try, with its inputs and the inequality's two sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCheck {
    pub staker: Address,
    pub time: Timestamp,
    /// When the oldest coins started aging.
    pub age_origin: Timestamp,
    /// The age of the oldest coins.
    pub age_secs: u64,
    pub min_age: u64,
    pub balance: Amount,
    /// The coins by age the weight was summed over.
    pub age: CoinAge,
    pub coin_days: u128,
    pub modifier: StakeModifier,
    pub kernel: KernelHash,
    /// The target per coin-day.
    pub target: Target,
    /// `target × coin_days`, saturated.
    pub weighted_target: Target,
}

impl KernelCheck {
    /// Whether the staker may sign a block at this time, and if not, why.
    pub fn verdict(&self) -> Result<(), PosError> {
        if self.age_secs < self.min_age {
            return Err(PosError::StakeTooYoung {
                staker: self.staker,
                time: self.time,
                age_secs: self.age_secs,
                min_age: self.min_age,
            });
        }
        if self.coin_days == 0 {
            return Err(PosError::ZeroWeight {
                staker: self.staker,
                time: self.time,
                balance: self.balance,
                age_secs: self.age_secs,
            });
        }
        if self.kernel.value() > self.weighted_target.to_u256() {
            return Err(PosError::KernelAboveTarget {
                staker: self.staker,
                time: self.time,
                kernel: self.kernel,
                weighted_target: self.weighted_target,
                coin_days: self.coin_days,
            });
        }
        Ok(())
    }

    pub fn meets(&self) -> bool {
        self.verdict().is_ok()
    }

    /// The proof a header carries for this kernel.
    pub fn proof(&self) -> StakeProof {
        StakeProof {
            age: self.age.clone(),
            modifier: self.modifier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: u64) -> Amount {
        Amount::from_toy(n).expect("fits")
    }

    #[test]
    fn coin_days_count_only_past_the_minimum_age_and_up_to_the_maximum() {
        let p = PosParams::peercoin_like();
        let day = SECONDS_PER_DAY;
        assert_eq!(coin_days(&p, toy(1000), 29 * day), 0);
        assert_eq!(coin_days(&p, toy(1000), 30 * day), 0);
        assert_eq!(coin_days(&p, toy(1000), 31 * day), 1000);
        assert_eq!(coin_days(&p, toy(1000), 30 * day + day / 2), 500);
        assert_eq!(coin_days(&p, toy(1000), 120 * day), 90_000);
        assert_eq!(coin_days(&p, toy(1000), 400 * day), 90_000);
        // Whole coin-days, floored: 1 TOY for one second is 1/86,400 of a coin-day.
        assert_eq!(coin_days(&p, toy(1), 30 * day + 1), 0);
        assert_eq!(coin_days(&p, Amount::MAX, 120 * day), {
            u128::from(u64::MAX) * u128::from(90 * day) / (u128::from(COIN) * 86_400)
        });
    }

    #[test]
    fn the_reward_is_exact_to_the_base_unit_and_floored() {
        let p = PosParams::peercoin_like();
        // 1,000 TOY for 90 days (the maximum age) at 1 %: 1000 × 90 / 365 × 0.01 TOY =
        // 2.46575342… → 246,575,342 base units; a whole year counts only those 90 days.
        assert_eq!(
            stake_reward(&p, Address::default(), toy(1000), SECONDS_PER_YEAR),
            Ok(Amount(246_575_342))
        );
        assert_eq!(
            stake_reward(&p, Address::default(), toy(1000), p.stake_max_age),
            Ok(Amount(246_575_342))
        );
        let yearly = PosParams {
            stake_max_age: SECONDS_PER_YEAR,
            ..p.clone()
        };
        // With a year of maximum age: exactly 10 TOY.
        assert_eq!(
            stake_reward(&yearly, Address::default(), toy(1000), SECONDS_PER_YEAR),
            Ok(toy(10))
        );
        // 123,456,789 base units for 1,000,003 s: 123456789 × 1000003 × 10000 /
        // (10^6 × 31,536,000) = 39,148.008… → 39,148.
        assert_eq!(
            stake_reward(&p, Address::default(), Amount(123_456_789), 1_000_003),
            Ok(Amount(39_148))
        );
        assert_eq!(
            stake_reward(&p, Address::default(), Amount(1), 1),
            Ok(Amount(0))
        );
        let mut greedy = p.clone();
        greedy.reward_rate_ppm = u64::MAX;
        assert!(matches!(
            stake_reward(&greedy, Address::default(), Amount::MAX, u64::MAX),
            Err(PosError::RewardOverflow { .. })
        ));
    }

    #[test]
    fn the_weighted_target_scales_and_saturates() {
        let t = Target::from_u256(U256::from(1000u64));
        assert_eq!(weighted_target(t, 7).to_u256(), U256::from(7000u64));
        assert_eq!(weighted_target(t, 0), Target::ZERO);
        let big = Target::from_u256(U256::MAX >> 1);
        assert_eq!(weighted_target(big, 3), Target::MAX);
    }

    #[test]
    fn the_kernel_hash_binds_every_input() {
        let m = StakeModifier(Hash256([9; 32]));
        let a = Address([1; 20]);
        let base = kernel_hash(&m, &a, Timestamp(100), Timestamp(200));
        assert_eq!(base, kernel_hash(&m, &a, Timestamp(100), Timestamp(200)));
        assert_ne!(
            base,
            kernel_hash(
                &StakeModifier(Hash256([8; 32])),
                &a,
                Timestamp(100),
                Timestamp(200)
            )
        );
        assert_ne!(
            base,
            kernel_hash(&m, &Address([2; 20]), Timestamp(100), Timestamp(200))
        );
        assert_ne!(base, kernel_hash(&m, &a, Timestamp(101), Timestamp(200)));
        assert_ne!(base, kernel_hash(&m, &a, Timestamp(100), Timestamp(201)));
    }

    fn log_of(times: &[(u64, bool)]) -> EntropyLog {
        EntropyLog {
            entries: times
                .iter()
                .map(|&(t, bit)| EntropyEntry {
                    time: Timestamp(t),
                    bit,
                })
                .collect(),
        }
    }

    #[test]
    fn the_modifier_selects_only_blocks_older_than_the_selection_interval() {
        let p = PosParams::devnet(); // 30 s epochs, 60 s selection
        let log = log_of(&[(1000, true), (1005, false), (1010, true), (1041, true)]);
        // Kernels at 1080..1109 are in the epoch starting 1080, cutoff 1020: the first
        // three blocks feed the modifier, the one at 1041 does not.
        let m = log.modifier(&p, Timestamp(1100));
        assert_eq!(m, log.modifier(&p, Timestamp(1080)));
        assert_eq!(m, log.modifier(&p, Timestamp(1109)));
        let mut flipped_recent = log.clone();
        flipped_recent.entries[3].bit = false;
        assert_eq!(flipped_recent.modifier(&p, Timestamp(1100)), m);
        let mut flipped_old = log.clone();
        flipped_old.entries[2].bit = false;
        assert_ne!(flipped_old.modifier(&p, Timestamp(1100)), m);
        // The next epoch is another modifier, even with the same selected bits.
        assert_ne!(log.modifier(&p, Timestamp(1110)), m);
        assert_ne!(log.modifier(&p, Timestamp(1079)), m);
    }

    #[test]
    fn pruning_keeps_every_entry_a_later_modifier_can_select() {
        let p = PosParams::devnet();
        let entries: Vec<(u64, bool)> = (0..200).map(|i| (1000 + 5 * i, i % 3 == 0)).collect();
        let full = log_of(&entries);
        let now = Timestamp(1000 + 5 * 199 + 1);
        let mut pruned = full.clone();
        pruned.prune(&p, now);
        assert!(pruned.entries.len() < full.entries.len());
        assert!(pruned.entries.len() <= MODIFIER_BITS + 20);
        for later in now.0..now.0 + 500 {
            assert_eq!(
                pruned.modifier(&p, Timestamp(later)),
                full.modifier(&p, Timestamp(later)),
                "modifier at {later}"
            );
        }
    }

    #[test]
    fn a_check_says_why_it_fails() {
        let p = PosParams::devnet();
        let inputs = StakeInputs {
            staker: Address([3; 20]),
            age: CoinAge::single(toy(1_000_000), Timestamp(1000)),
            target: Target::MAX,
            entropy: EntropyLog::default(),
        };
        assert!(matches!(
            inputs.evaluate(&p, Timestamp(1009)).verdict(),
            Err(PosError::StakeTooYoung {
                age_secs: 9,
                min_age: 10,
                ..
            })
        ));
        // At exactly the minimum age no second counts yet.
        assert!(matches!(
            inputs.evaluate(&p, Timestamp(1010)).verdict(),
            Err(PosError::ZeroWeight { .. })
        ));
        assert_eq!(inputs.evaluate(&p, Timestamp(1011)).verdict(), Ok(()));
        let hard = StakeInputs {
            target: Target::ZERO,
            ..inputs.clone()
        };
        assert!(matches!(
            hard.evaluate(&p, Timestamp(1011)).verdict(),
            Err(PosError::KernelAboveTarget { coin_days: 11, .. })
        ));
    }

    #[test]
    fn the_stake_proof_round_trips_and_refuses_trailing_bytes_and_bad_ages() {
        let mut age = CoinAge::single(Amount(7), Timestamp(5));
        age.received(Amount(3), Timestamp(9));
        let proof = StakeProof {
            age,
            modifier: StakeModifier(Hash256([1; 32])),
        };
        let bytes = proof.to_bytes();
        assert_eq!(StakeProof::from_bytes(&bytes), Ok(proof.clone()));
        assert_eq!(proof.age_origin(), Some(Timestamp(5)));
        assert_eq!(proof.balance(), Amount(10));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(StakeProof::from_bytes(&longer).is_err());
        assert!(StakeProof::from_bytes(&bytes[..10]).is_err());
        let unordered = StakeProof {
            age: CoinAge {
                buckets: proof.age.buckets.iter().rev().copied().collect(),
            },
            ..proof
        };
        assert!(matches!(
            StakeProof::from_bytes(&unordered.to_bytes()),
            Err(PosError::BadStakeProof { reason }) if reason.contains("out of order")
        ));
    }

    #[test]
    fn dust_in_a_young_bucket_leaves_the_kernel_and_the_age_check_alone() {
        let p = PosParams::devnet();
        let held = StakeInputs {
            staker: Address([3; 20]),
            age: CoinAge::single(toy(1_000_000), Timestamp(1000)),
            target: Target::MAX,
            entropy: EntropyLog::default(),
        };
        let mut dusted = held.clone();
        dusted.age.received(Amount(1), Timestamp(1015));
        let (a, b) = (
            held.evaluate(&p, Timestamp(1020)),
            dusted.evaluate(&p, Timestamp(1020)),
        );
        assert_eq!(
            (a.kernel, a.age_secs, a.coin_days),
            (b.kernel, b.age_secs, b.coin_days)
        );
        assert_eq!(b.verdict(), Ok(()));
        assert_eq!(b.balance, Amount(toy(1_000_000).0 + 1));
    }
}
