//! Fork choice: the heaviest chain wins, never merely the longest.
//!
//! Each block's weight comes from its engine (PoW: work `2^256 / (target + 1)`; PoA: 2 in
//! turn, 1 out of turn; PoS: chain trust of its target; DPoS: 1 per produced slot), and a
//! branch's weight is the sum from genesis. A candidate replaces the head only when it is
//! strictly heavier, so between equal branches the one seen first stays. No branch that
//! forks below the engine's finalized block is ever adopted (checked by the chain, which
//! knows where branches fork).

use crate::primitives::Weight;

/// Whether a branch of total weight `candidate` should replace the head's branch.
pub fn prefer(candidate: Weight, head: Weight) -> bool {
    candidate > head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_heavier_wins_and_ties_keep_the_first() {
        let cases = [
            // (candidate, head, switch?)
            (5, 4, true),
            (4, 4, false),
            (3, 4, false),
            (u64::MAX, u64::MAX - 1, true),
        ];
        for (candidate, head, expected) in cases {
            assert_eq!(
                prefer(Weight::from_u64(candidate), Weight::from_u64(head)),
                expected,
                "candidate {candidate} vs head {head}"
            );
        }
    }
}
