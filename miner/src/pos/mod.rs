//! Proof of stake by coin age, after Peercoin: an account may sign the block at time `t`
//! when its stake kernel, read as a little-endian 256-bit number, meets the target scaled
//! by its coin-days:
//!
//! `sha256d(modifier ‖ staker ‖ origin ‖ t) ≤ target(bits) × coin_days`,
//! `coin_days = ⌊Σ amountᵢ × min(t − originᵢ − min_age, max_age)⁺ / (COIN × 86,400)⌋`
//!
//! - **Coin age.** Each account's coins age in up to four buckets ([`CoinAge`]), so coins
//!   age on their own as Peercoin's outputs do: coins received start a young bucket and
//!   leave the held ones as old as they were (when the buckets overflow, the two youngest
//!   merge keeping their coin-seconds); the account's own spend and its stake consume the
//!   age of the whole balance, which restarts at the block's time. Accounts untouched
//!   since genesis have no record and count from the genesis timestamp (the genesis state
//!   is written before its header exists, so block 1 records that time). Per bucket,
//!   nothing counts before `stake_min_age` and at most `stake_max_age` seconds count;
//!   `coin_days` sums the buckets, and `origin` in the kernel is the oldest bucket's.
//! - **Kernel.** `t` is a multiple of `granularity`, one try per step and staker; the
//!   balance, origin and modifier come from the parent state, so every node recomputes
//!   the kernel in `begin_block`. The header's engine data repeats them (a [`StakeProof`]),
//!   checked there too, so a past block can be explained without its state.
//! - **Stake modifier.** Each block contributes one entropy bit, the low bit of its hash.
//!   Kernel times fall in epochs of `modifier_interval` seconds; the modifier of epoch
//!   `E` is `sha256d("toychain/pos/modifier/v1" ‖ E ‖ n ‖ bits)` over the bits of the
//!   last `n ≤ 64` blocks with timestamps before `E − modifier_selection`. The block being
//!   made, and any block of the last `modifier_selection` seconds, cannot steer the
//!   modifier its own kernel or the next one uses; a staker cannot foresee its kernels
//!   more than `modifier_interval + modifier_selection` seconds ahead.
//! - **Reward.** Staking consumes the coin age: the producer's coins restart at the
//!   block's time and it earns `⌊Σ amountᵢ × min(t − originᵢ, max_age) × reward_rate_ppm /
//!   (10^6 × 31,536,000)⌋` base units in `end_block`.
//! - **Difficulty.** Every block retargets as Peercoin does: `target' = target ×
//!   ((N − 1)·S + 2·A) / ((N + 1)·S)` with `S` the target spacing, `N = timespan / S` and
//!   `A` the parent's spacing from its own parent; blocks 1 and 2 carry the genesis bits.
//!   Fork choice adds each block's chain trust `2^256 / (target + 1)`.
//!
//! Blocks are signed by the staker with the shared [`crate::seal`]
//! (`header.producer` = staker) and must be strictly later than their parent.

mod age;
mod engine;
mod error;
mod kernel;
mod params;
mod producer;
mod retarget;
mod spec;

pub use age::{AgeBucket, CoinAge, MAX_AGE_BUCKETS};
pub use engine::{ENGINE_NAME, ModifierRecord, PosEngine};
pub use error::PosError;
pub use kernel::{
    EntropyEntry, EntropyLog, KernelCheck, KernelHash, MODIFIER_BITS, SECONDS_PER_DAY, StakeInputs,
    StakeModifier, StakeProof, coin_days, kernel_hash, modifier_epoch, stake_reward, weight_secs,
    weighted_target,
};
pub use params::{PosParams, SECONDS_PER_YEAR};
pub use producer::{DEFAULT_SEARCH_WINDOW, PosProducer};
pub use retarget::peercoin_next_bits;
