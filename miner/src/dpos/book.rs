//! The DPoS records kept in the chain state: the delegate book (registrations, votes,
//! production counts) and the current round (its schedule and the last irreversible block).
//! Election and the shuffle are pure functions of them and a balance lookup.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::crypto::sha256d_parts;
use chain::{Address, Amount};
use std::collections::BTreeMap;

/// One delegate's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Delegate {
    /// Registered in the chain spec rather than by a transaction.
    pub genesis: bool,
    /// Blocks produced.
    pub produced: u64,
    /// Slots scheduled to it that passed without its block.
    pub missed: u64,
    /// Height of its newest block on this chain (0 = none yet).
    pub last_produced: u64,
    /// Slots in which it signed two different blocks (recorded evidence). A delegate with
    /// any is never elected again.
    pub equivocations: Vec<u64>,
}

/// Delegates and votes.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct DelegateBook {
    pub delegates: BTreeMap<Address, Delegate>,
    /// Voter → the delegates it votes for.
    pub votes: BTreeMap<Address, Vec<Address>>,
}

/// The round in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RoundState {
    /// Round number: `slot / producers`.
    pub round: u64,
    /// Slot owners, shuffled; slot `s` of the round belongs to
    /// `schedule[(s mod producers) mod schedule.len()]`.
    pub schedule: Vec<Address>,
    /// Height of the last irreversible block.
    pub irreversible: u64,
}

impl DelegateBook {
    /// Each delegate's approval: the sum of its voters' balances, read through `balance`.
    pub fn tally(
        &self,
        mut balance: impl FnMut(&Address) -> Result<Amount, chain::StoreError>,
    ) -> Result<BTreeMap<Address, u128>, chain::StoreError> {
        let mut approval: BTreeMap<Address, u128> = BTreeMap::new();
        for (voter, delegates) in &self.votes {
            let weight = u128::from(balance(voter)?.base_units());
            for d in delegates {
                *approval.entry(*d).or_default() += weight;
            }
        }
        Ok(approval)
    }

    /// The active set: the top `k` delegates by approval, leaving out those with recorded
    /// equivocations; among equals genesis delegates first, then by address. Sorted by
    /// address (the shuffle orders it).
    pub fn elect(
        &self,
        k: usize,
        balance: impl FnMut(&Address) -> Result<Amount, chain::StoreError>,
    ) -> Result<Vec<Address>, chain::StoreError> {
        let approval = self.tally(balance)?;
        let mut ranked: Vec<(&Address, &Delegate)> = self
            .delegates
            .iter()
            .filter(|(_, d)| d.equivocations.is_empty())
            .collect();
        ranked.sort_by(|(a, da), (b, db)| {
            let va = approval.get(*a).copied().unwrap_or(0);
            let vb = approval.get(*b).copied().unwrap_or(0);
            vb.cmp(&va).then(db.genesis.cmp(&da.genesis)).then(a.cmp(b))
        });
        let mut elected: Vec<Address> = ranked.into_iter().take(k).map(|(a, _)| *a).collect();
        elected.sort();
        Ok(elected)
    }
}

/// The schedule of `round`: `elected` in an order drawn from `sha256d(tag ‖ round ‖
/// elected)` (a Fisher–Yates shuffle, one hash per swap). No block's content enters the
/// seed, so a producer cannot grind it; votes change it only by changing who is elected.
pub fn shuffle(elected: &[Address], round: u64) -> Vec<Address> {
    let mut order = elected.to_vec();
    order.sort();
    let seed = shuffle_seed(&order, round);
    for i in (1..order.len()).rev() {
        let draw = sha256d_parts(&[&seed, &(i as u64).to_le_bytes()]);
        let mut word = [0u8; 8];
        word.copy_from_slice(&draw[..8]);
        let j = usize::try_from(u64::from_le_bytes(word) % (i as u64 + 1)).unwrap_or(0);
        order.swap(i, j);
    }
    order
}

/// The seed of [`shuffle`]: `sha256d("toychain/dpos/shuffle" ‖ round ‖ the set, sorted)`.
pub fn shuffle_seed(elected: &[Address], round: u64) -> [u8; 32] {
    let mut sorted = elected.to_vec();
    sorted.sort();
    let flat: Vec<u8> = sorted.iter().flat_map(|a| a.0).collect();
    sha256d_parts(&[b"toychain/dpos/shuffle", &round.to_le_bytes(), &flat])
}

/// The owner of `slot` under `schedule` with rounds of `producers` slots.
pub fn slot_owner(schedule: &[Address], producers: u32, slot: u64) -> Option<Address> {
    if schedule.is_empty() {
        return None;
    }
    let index = (slot % u64::from(producers)) % schedule.len() as u64;
    schedule.get(usize::try_from(index).ok()?).copied()
}

/// The last irreversible height when the active producers last produced at `heights`:
/// the ⌊2n/3⌋+1-th highest (more than 2/3 of them have confirmed it).
pub fn irreversible_height(mut heights: Vec<u64>) -> u64 {
    if heights.is_empty() {
        return 0;
    }
    heights.sort_unstable_by(|a, b| b.cmp(a));
    let needed = heights.len() * 2 / 3 + 1;
    heights[needed - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(b: u8) -> Address {
        Address([b; 20])
    }

    #[test]
    fn more_than_two_thirds_must_have_built_on_a_block() {
        assert_eq!(irreversible_height(vec![10, 9, 8, 7]), 8, "3 of 4");
        assert_eq!(irreversible_height(vec![10, 9, 8]), 8, "3 of 3");
        assert_eq!(irreversible_height(vec![10, 0, 0]), 0);
        assert_eq!(
            irreversible_height(vec![21, 20, 19, 18, 17, 16]),
            17,
            "5 of 6"
        );
        assert_eq!(irreversible_height(vec![5]), 5);
    }

    #[test]
    fn shuffle_is_a_deterministic_permutation_that_changes_with_the_round() {
        let set: Vec<Address> = (1..=7).map(addr).collect();
        let a = shuffle(&set, 41);
        assert_eq!(a, shuffle(&set, 41));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, set);
        let differs = (42..52).filter(|r| shuffle(&set, *r) != a).count();
        assert!(differs >= 9, "the order moves between rounds");
    }

    #[test]
    fn election_ranks_by_stake_weighted_votes_with_genesis_delegates_first_among_equals() {
        let mut book = DelegateBook::default();
        for (a, genesis) in [(1, true), (2, true), (3, false), (4, false)] {
            book.delegates.insert(
                addr(a),
                Delegate {
                    genesis,
                    ..Delegate::default()
                },
            );
        }
        let balance = |a: &Address| Ok(Amount::from_base_units(u64::from(a.0[0]) * 100));
        assert_eq!(book.elect(2, balance).unwrap(), vec![addr(1), addr(2)]);
        // voter 9 (balance 900) backs 3 and 4; voter 5 (500) backs 4.
        book.votes.insert(addr(9), vec![addr(3), addr(4)]);
        book.votes.insert(addr(5), vec![addr(4)]);
        let tally = book.tally(balance).unwrap();
        assert_eq!(tally[&addr(4)], 1400);
        assert_eq!(tally[&addr(3)], 900);
        assert_eq!(book.elect(2, balance).unwrap(), vec![addr(3), addr(4)]);
        assert_eq!(
            book.elect(3, balance).unwrap(),
            vec![addr(1), addr(3), addr(4)]
        );
        assert_eq!(
            book.elect(9, balance).unwrap().len(),
            4,
            "at most the registered"
        );
    }
}
