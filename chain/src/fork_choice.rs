//! Fork choice: the heaviest chain wins, never merely the longest.
//!
//! Each block's weight comes from its engine (PoW: work `2^256 / (target + 1)`; PoA: 2 in
//! turn, 1 out of turn; PoS: chain trust of its target; DPoS: 1 per produced slot), and a
//! branch's weight is the sum from genesis. A candidate replaces the head when it is
//! strictly heavier; between equal branches the engine's [`TieBreak`] decides. No branch
//! that forks below the engine's finalized block is ever adopted (checked by the chain,
//! which knows where branches fork).
//!
//! A side block is stored unexecuted only while its branch is not preferred to the head,
//! and the head only ever moves to a preferred branch, so every stored valid branch is at
//! most as heavy as the head. When the preferred branch fails during the switch (a block of
//! it breaks its state transition), its failing block and those above it are marked invalid
//! and the head stays: by that invariant no other valid branch, the failed branch's valid
//! prefix included, is preferred to it. The cases are in the chain's `fork_choice_table`
//! test.

use crate::primitives::{BlockHash, Weight};

/// Which of two equally heavy branches a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreak {
    /// The one it saw first (Bitcoin's rule, and what selfish-mining analyses call γ = 0
    /// for the honest miners that saw the honest block first).
    FirstSeen,
    /// The one whose tip has the lower hash, so every node picks the same. Clique needs
    /// it: after a split each side's signers have used their turns on their own branch and
    /// may only extend the other side's, so if every node kept the branch it saw first,
    /// equal branches would never be extended again (go-ethereum flips a coin per node
    /// instead, which converges only eventually).
    LowerHash,
}

/// Whether the branch ending in `candidate` (total weight `weight`) should replace the
/// head's branch (`head`, `head_weight`).
pub fn prefer(
    weight: Weight,
    candidate: &BlockHash,
    head_weight: Weight,
    head: &BlockHash,
    tie: TieBreak,
) -> bool {
    weight > head_weight
        || (weight == head_weight && tie == TieBreak::LowerHash && candidate.0 < head.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_heavier_wins_and_ties_go_by_the_engines_rule() {
        let low = BlockHash([1; 32]);
        let high = BlockHash([2; 32]);
        let cases = [
            // (candidate weight, hash, head weight, hash, rule, switch?)
            (5, low, 4, high, TieBreak::FirstSeen, true),
            (5, high, 4, low, TieBreak::LowerHash, true),
            (4, low, 4, high, TieBreak::FirstSeen, false),
            (4, low, 4, high, TieBreak::LowerHash, true),
            (4, high, 4, low, TieBreak::LowerHash, false),
            (4, low, 4, low, TieBreak::LowerHash, false),
            (3, low, 4, high, TieBreak::LowerHash, false),
            (u64::MAX, high, u64::MAX - 1, low, TieBreak::FirstSeen, true),
        ];
        for (weight, candidate, head_weight, head, tie, expected) in cases {
            assert_eq!(
                prefer(
                    Weight::from_u64(weight),
                    &candidate,
                    Weight::from_u64(head_weight),
                    &head,
                    tie
                ),
                expected,
                "{weight} {candidate:?} vs {head_weight} {head:?}, {tie:?}"
            );
        }
    }
}
