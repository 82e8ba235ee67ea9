//! The validator set in the chain state, changed by the validators' own votes.
//!
//! A validator votes to add or remove an address with a `propose-authority` transaction.
//! When the votes for one change reach the BFT quorum of the current set,
//! `⌈(N+f+1)/2⌉` (2f+1), the change is made in that block's state, so it takes effect at
//! the next height: the set that votes on block `h+1` is the one in block `h`'s state.
//! Only a change is counted (adding a non-validator, removing a validator), so the votes
//! on a target all point one way; a removed validator's pending votes are dropped. A tally that reaches the quorum only because
//! the set shrank executes when its target is voted on again (as Clique does).

use crate::pbft::error::PbftError;
use crate::quorum::VoterSet;
use borsh::{BorshDeserialize, BorshSerialize};
use chain::Address;
use std::collections::{BTreeMap, BTreeSet};

/// Most validators: a commit certificate holds at most 255 signatures.
pub const MAX_VALIDATORS: usize = 255;

/// The validator set and the changes being voted on.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Membership {
    /// Sorted, each once.
    pub validators: Vec<Address>,
    /// (target, add?) → the validators voting for that change; `add` is always the one
    /// direction that changes the set, since pointless votes are refused.
    pub pending: BTreeMap<(Address, bool), BTreeSet<Address>>,
}

/// What a vote did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipOutcome {
    /// Counted; the change still lacks votes.
    Counted {
        votes: usize,
        needed: usize,
    },
    Added,
    Removed,
}

impl Membership {
    /// The genesis set.
    pub fn new(validators: impl IntoIterator<Item = Address>) -> Membership {
        Membership {
            validators: VoterSet::new(validators).as_slice().to_vec(),
            pending: BTreeMap::new(),
        }
    }

    /// The validators as a [`VoterSet`] with its quorums.
    pub fn voter_set(&self) -> VoterSet {
        VoterSet::new(self.validators.iter().copied())
    }

    /// `voter`'s vote to add (`add`) or remove `target`.
    pub fn vote(
        &mut self,
        voter: Address,
        target: Address,
        add: bool,
    ) -> Result<MembershipOutcome, PbftError> {
        let set = self.voter_set();
        if !set.contains(&voter) {
            return Err(PbftError::NotAValidator { sender: voter });
        }
        if set.contains(&target) == add {
            return Err(PbftError::PointlessVote { target, add });
        }
        if !add && set.len() == 1 {
            return Err(PbftError::WouldEmptySet { target });
        }
        if add && set.len() >= MAX_VALIDATORS {
            return Err(PbftError::TooManyValidators {
                max: MAX_VALIDATORS,
            });
        }
        let votes = self.pending.entry((target, add)).or_default();
        votes.insert(voter);
        let count = votes.len();
        let needed = set.bft_quorum();
        if count < needed {
            return Ok(MembershipOutcome::Counted {
                votes: count,
                needed,
            });
        }
        self.pending.remove(&(target, true));
        self.pending.remove(&(target, false));
        if add {
            self.validators.push(target);
            self.validators.sort();
            Ok(MembershipOutcome::Added)
        } else {
            self.validators.retain(|v| *v != target);
            for votes in self.pending.values_mut() {
                votes.remove(&target);
            }
            self.pending.retain(|_, votes| !votes.is_empty());
            Ok(MembershipOutcome::Removed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u8) -> Address {
        Address([i; 20])
    }

    #[test]
    fn a_change_needs_the_bft_quorum_of_the_current_set() {
        let mut m = Membership::new([a(1), a(2), a(3), a(4)]);
        assert_eq!(
            m.vote(a(1), a(9), true),
            Ok(MembershipOutcome::Counted {
                votes: 1,
                needed: 3
            })
        );
        // A repeated vote counts once.
        assert_eq!(
            m.vote(a(1), a(9), true),
            Ok(MembershipOutcome::Counted {
                votes: 1,
                needed: 3
            })
        );
        m.vote(a(2), a(9), true).expect("counted");
        assert_eq!(m.vote(a(3), a(9), true), Ok(MembershipOutcome::Added));
        assert_eq!(m.validators.len(), 5);
        assert!(m.pending.is_empty());
        // Five validators: f = 1, quorum ⌈(5+2)/2⌉ = 4.
        for v in [1, 2, 3] {
            m.vote(a(v), a(4), false).expect("counted");
        }
        assert_eq!(m.vote(a(9), a(4), false), Ok(MembershipOutcome::Removed));
        assert_eq!(m.validators, vec![a(1), a(2), a(3), a(9)]);
    }

    #[test]
    fn strangers_pointless_votes_and_emptying_the_set_are_refused() {
        let mut m = Membership::new([a(1)]);
        assert_eq!(
            m.vote(a(7), a(8), true),
            Err(PbftError::NotAValidator { sender: a(7) })
        );
        assert_eq!(
            m.vote(a(1), a(1), true),
            Err(PbftError::PointlessVote {
                target: a(1),
                add: true
            })
        );
        assert_eq!(
            m.vote(a(1), a(1), false),
            Err(PbftError::WouldEmptySet { target: a(1) })
        );
    }

    #[test]
    fn a_removed_validators_votes_go_and_the_quorum_follows_the_smaller_set() {
        let mut m = Membership::new([a(1), a(2), a(3), a(4)]);
        m.vote(a(3), a(9), true).expect("counted");
        m.vote(a(4), a(9), true).expect("counted");
        m.vote(a(1), a(3), false).expect("counted");
        m.vote(a(2), a(3), false).expect("counted");
        assert_eq!(m.vote(a(4), a(3), false), Ok(MembershipOutcome::Removed));
        // a(3)'s vote to add a(9) went with it; a(4)'s stands.
        assert_eq!(
            m.pending
                .get(&(a(9), true))
                .map(|v| v.iter().copied().collect::<Vec<_>>()),
            Some(vec![a(4)])
        );
        // Three validators: f = 0, quorum 2; one more vote adds a(9).
        assert_eq!(m.vote(a(1), a(9), true), Ok(MembershipOutcome::Added));
        assert_eq!(m.validators, vec![a(1), a(2), a(4), a(9)]);
    }
}
