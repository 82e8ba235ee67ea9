//! An account's coin age in a few buckets, so coins age on their own as Peercoin's outputs
//! do: received coins start young without making the coins already held young.
//!
//! Each bucket is an amount and the time it started aging (its `origin`), oldest first.
//! - **Receiving** `r` at `t` adds the bucket `(r, t)`. When that makes more than
//!   [`MAX_AGE_BUCKETS`], the two youngest merge into one that keeps their coin-seconds:
//!   `origin = ⌈(a₁·o₁ + a₂·o₂) / (a₁ + a₂)⌉` (rounded towards young, so no age is made
//!   from nothing). The oldest buckets, which carry the stake weight, are never touched by
//!   what others send, so a stream of dust cannot keep a staker below the minimum age.
//! - **Spending** (the account's own transaction) or **staking** consumes the age: the
//!   whole balance becomes one bucket starting at the block's time.
//! - **Weight** sums the buckets: `coin_days = ⌊Σ aᵢ × min(t − oᵢ − min_age, max_age)⁺ /
//!   (COIN × 86,400)⌋`; the kernel hash binds the oldest origin.

use crate::pos::error::PosError;
use crate::pos::kernel::SECONDS_PER_DAY;
use crate::pos::params::{PosParams, SECONDS_PER_YEAR};
use borsh::{BorshDeserialize, BorshSerialize};
use chain::{Address, Amount, COIN, Timestamp};
use std::fmt;

/// Most buckets an account keeps; the engine state and a header's stake proof stay small.
pub const MAX_AGE_BUCKETS: usize = 4;

/// Coins that started aging together.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct AgeBucket {
    pub amount: Amount,
    /// When these coins started aging.
    pub origin: Timestamp,
}

/// An account's coins by age, oldest first, at most [`MAX_AGE_BUCKETS`] buckets, none
/// empty.
#[derive(Clone, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct CoinAge {
    pub buckets: Vec<AgeBucket>,
}

impl CoinAge {
    /// `amount` aging since `origin` (no bucket for zero).
    pub fn single(amount: Amount, origin: Timestamp) -> CoinAge {
        let mut age = CoinAge::default();
        age.received(amount, origin);
        age
    }

    /// The coins of all buckets.
    pub fn balance(&self) -> Amount {
        Amount(
            self.buckets
                .iter()
                .fold(0u64, |acc, b| acc.saturating_add(b.amount.0)),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The origin of the oldest coins (what the kernel hash binds), `None` without coins.
    pub fn oldest_origin(&self) -> Option<Timestamp> {
        self.buckets.first().map(|b| b.origin)
    }

    /// Adds `amount` received at `at` as the youngest bucket, merging the two youngest
    /// while there are too many. `at` is a block time, never before an existing origin.
    pub fn received(&mut self, amount: Amount, at: Timestamp) {
        if amount == Amount::ZERO {
            return;
        }
        match self.buckets.last_mut() {
            Some(last) if last.origin >= at => {
                last.amount = Amount(last.amount.0.saturating_add(amount.0));
            }
            _ => self.buckets.push(AgeBucket { amount, origin: at }),
        }
        while self.buckets.len() > MAX_AGE_BUCKETS {
            let young = self
                .buckets
                .pop()
                .expect("more than MAX_AGE_BUCKETS buckets");
            let older = self
                .buckets
                .pop()
                .expect("more than MAX_AGE_BUCKETS buckets");
            self.buckets.push(merge(older, young));
        }
    }

    /// Whole coin-days at `time`: `⌊Σ amount × weight_secs(time − origin) / (COIN ×
    /// 86,400)⌋`, each bucket counting only past the minimum age and up to the maximum.
    pub fn coin_days(&self, params: &PosParams, time: Timestamp) -> u128 {
        let coin_secs: u128 = self
            .buckets
            .iter()
            .map(|b| {
                let age = time.0.saturating_sub(b.origin.0);
                u128::from(b.amount.0) * u128::from(crate::pos::kernel::weight_secs(params, age))
            })
            .sum();
        coin_secs / (u128::from(COIN) * u128::from(SECONDS_PER_DAY))
    }

    /// The reward for consuming all this age at `time`, each bucket's age capped at
    /// `stake_max_age`: `⌊Σ amount × min(age, max_age) × reward_rate_ppm / (10^6 ×
    /// 31,536,000)⌋` base units.
    pub fn reward(
        &self,
        params: &PosParams,
        staker: Address,
        time: Timestamp,
    ) -> Result<Amount, PosError> {
        let oldest = self
            .oldest_origin()
            .map_or(0, |o| time.0.saturating_sub(o.0));
        let overflow = || PosError::RewardOverflow {
            address: staker,
            balance: self.balance(),
            age_secs: oldest,
        };
        let mut total: u128 = 0;
        for b in &self.buckets {
            let age = time.0.saturating_sub(b.origin.0).min(params.stake_max_age);
            let part = u128::from(b.amount.0)
                .checked_mul(u128::from(age))
                .and_then(|x| x.checked_mul(u128::from(params.reward_rate_ppm)))
                .ok_or_else(overflow)?;
            total = total.checked_add(part).ok_or_else(overflow)?;
        }
        let units = total / (1_000_000 * u128::from(SECONDS_PER_YEAR));
        u64::try_from(units)
            .map(Amount::from_base_units)
            .map_err(|_| overflow())
    }

    /// Checks the shape a stored record or a stake proof must have: at most
    /// [`MAX_AGE_BUCKETS`] non-empty buckets with strictly increasing origins.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.buckets.len() > MAX_AGE_BUCKETS {
            return Err(format!(
                "{} age buckets, more than the limit of {MAX_AGE_BUCKETS}",
                self.buckets.len()
            ));
        }
        if let Some(b) = self.buckets.iter().find(|b| b.amount == Amount::ZERO) {
            return Err(format!("an empty age bucket at {}", b.origin));
        }
        if let Some(w) = self.buckets.windows(2).find(|w| w[0].origin >= w[1].origin) {
            return Err(format!(
                "age buckets out of order: {} then {}",
                w[0].origin, w[1].origin
            ));
        }
        Ok(())
    }
}

impl fmt::Display for CoinAge {
    /// `amount@origin` per bucket, oldest first (`none` without coins).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.buckets.is_empty() {
            return f.write_str("none");
        }
        for (i, b) in self.buckets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}@{}", b.amount, b.origin)?;
        }
        Ok(())
    }
}

/// One bucket with the coins and coin-seconds of both; the origin rounds up (younger).
fn merge(older: AgeBucket, young: AgeBucket) -> AgeBucket {
    let (a1, a2) = (u128::from(older.amount.0), u128::from(young.amount.0));
    let total = a1 + a2;
    let weighted = a1 * u128::from(older.origin.0) + a2 * u128::from(young.origin.0);
    let origin = weighted.div_ceil(total.max(1));
    AgeBucket {
        amount: Amount(older.amount.0.saturating_add(young.amount.0)),
        // The weighted mean lies between the two origins, so it fits in a u64.
        origin: Timestamp(u64::try_from(origin).unwrap_or(young.origin.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = SECONDS_PER_DAY;

    fn toy(n: u64) -> Amount {
        Amount::from_toy(n).expect("fits")
    }

    fn bucket(amount: Amount, origin: u64) -> AgeBucket {
        AgeBucket {
            amount,
            origin: Timestamp(origin),
        }
    }

    #[test]
    fn dust_received_every_block_never_moves_the_oldest_coins() {
        let mut age = CoinAge::single(toy(1000), Timestamp(0));
        for block in 1..=10_000u64 {
            age.received(Amount(1), Timestamp(block * 600));
            assert!(age.buckets.len() <= MAX_AGE_BUCKETS);
            assert_eq!(age.check_shape(), Ok(()));
        }
        assert_eq!(age.buckets[0], bucket(toy(1000), 0));
        assert_eq!(age.balance(), Amount(toy(1000).0 + 10_000));
        // 31 days on, the held coins weigh a full day past Peercoin's minimum age.
        let p = PosParams::peercoin_like();
        assert_eq!(age.coin_days(&p, Timestamp(31 * DAY)), 1000);
    }

    #[test]
    fn merging_keeps_coin_seconds_and_rounds_towards_young() {
        let cases = [
            // (older, young, merged)
            (
                bucket(Amount(1), 100),
                bucket(Amount(1), 200),
                bucket(Amount(2), 150),
            ),
            (
                bucket(Amount(1), 100),
                bucket(Amount(2), 201),
                bucket(Amount(3), 168),
            ),
            (
                bucket(Amount(3), 0),
                bucket(Amount(1), 1),
                bucket(Amount(4), 1),
            ),
            (
                bucket(Amount(u64::MAX / 2), 7),
                bucket(Amount(u64::MAX / 2), 9),
                bucket(Amount(u64::MAX / 2 * 2), 8),
            ),
        ];
        for (older, young, merged) in cases {
            assert_eq!(merge(older, young), merged, "{older:?} + {young:?}");
        }
        let mut age = CoinAge::default();
        for (i, t) in [10u64, 20, 30, 40, 50].into_iter().enumerate() {
            age.received(Amount(i as u64 + 1), Timestamp(t));
        }
        // 4 @ 40 and 5 @ 50 merged: (160 + 250) / 9 = 45.6 → 46.
        assert_eq!(
            age.buckets,
            vec![
                bucket(Amount(1), 10),
                bucket(Amount(2), 20),
                bucket(Amount(3), 30),
                bucket(Amount(9), 46),
            ]
        );
        // Two receipts at one time are one bucket; nothing is added for zero.
        age.received(Amount(1), Timestamp(46));
        age.received(Amount::ZERO, Timestamp(99));
        assert_eq!(age.buckets.last(), Some(&bucket(Amount(10), 46)));
    }

    #[test]
    fn weight_and_reward_sum_the_buckets() {
        let p = PosParams::peercoin_like();
        let age = CoinAge {
            buckets: vec![bucket(toy(1000), 0), bucket(toy(500), 20 * DAY)],
        };
        // At day 40 only the first bucket is past the 30-day minimum (10 days).
        assert_eq!(age.coin_days(&p, Timestamp(40 * DAY)), 10_000);
        // At day 60: 30 days × 1,000 + 10 days × 500.
        assert_eq!(age.coin_days(&p, Timestamp(60 * DAY)), 35_000);
        // Reward: (1000 × 60 + 500 × 40) TOY-days × 1 % / 365 = 2.19178082… TOY.
        assert_eq!(
            age.reward(&p, Address::default(), Timestamp(60 * DAY)),
            Ok(Amount(219_178_082))
        );
        let greedy = PosParams {
            reward_rate_ppm: u64::MAX,
            ..p
        };
        assert!(matches!(
            CoinAge::single(Amount::MAX, Timestamp(0)).reward(
                &greedy,
                Address::default(),
                Timestamp(u64::from(u32::MAX))
            ),
            Err(PosError::RewardOverflow { .. })
        ));
    }

    #[test]
    fn badly_shaped_ages_are_named() {
        let too_many = CoinAge {
            buckets: (0..5).map(|i| bucket(Amount(1), i)).collect(),
        };
        assert!(
            too_many
                .check_shape()
                .is_err_and(|e| e.contains("5 age buckets"))
        );
        let unordered = CoinAge {
            buckets: vec![bucket(Amount(1), 5), bucket(Amount(1), 5)],
        };
        assert!(
            unordered
                .check_shape()
                .is_err_and(|e| e.contains("out of order"))
        );
        let empty = CoinAge {
            buckets: vec![bucket(Amount::ZERO, 5)],
        };
        assert!(empty.check_shape().is_err_and(|e| e.contains("empty")));
    }
}
