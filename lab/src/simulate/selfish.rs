//! Selfish mining (Eyal & Sirer, "Majority is not Enough", 2014, Algorithm 1): a miner
//! that keeps the blocks it finds to itself and publishes them only to win races.
//!
//! The state is two lengths: the private chain (the selfish node's own best chain, which
//! its fork choice keeps on the withheld branch while that is longer) and the public chain
//! (the longest chain anyone has published), plus `branch_len`, the length of the private
//! branch since it last agreed with the public chain. With `Δ` = private − public before
//! an event:
//!
//! - **It finds a block**: the block is withheld; if `Δ` was 0 and the branch is now two
//!   blocks long, it was racing one published block against the others' one and has just
//!   won: it publishes the whole branch.
//! - **The others find a block**: with `Δ` = 0 it gives up its branch (its fork choice
//!   moves to the longer public chain); with `Δ` = 1 it publishes its one block and races;
//!   with `Δ` = 2 it publishes everything (a lead of one wins); with a bigger lead it
//!   publishes the blocks up to the public height, keeping the others busy on a chain that
//!   will lose.
//!
//! It always mines on its own best chain, which is what the simulated node does anyway.
//! Whether the others mine on its block during a race is the paper's γ; the simulator
//! gets γ = 0 when the honest hash power sits on one node, which has its own block first.

use std::collections::VecDeque;

/// One selfish miner's bookkeeping; `B` is the block type (a height and anything else).
#[derive(Debug)]
pub struct SelfishMiner<B> {
    /// Found and not yet published, oldest first, with their heights.
    withheld: VecDeque<(u64, B)>,
    private_height: u64,
    public_height: u64,
    branch_len: u64,
}

impl<B> SelfishMiner<B> {
    /// A miner whose chain and the public chain both end at `height`.
    pub fn new(height: u64) -> SelfishMiner<B> {
        SelfishMiner {
            withheld: VecDeque::new(),
            private_height: height,
            public_height: height,
            branch_len: 0,
        }
    }

    /// Its own block at `height` (one above its private chain); returns what to publish.
    pub fn found(&mut self, height: u64, block: B) -> Vec<B> {
        let lead = self.lead();
        self.private_height = height;
        self.branch_len += 1;
        self.withheld.push_back((height, block));
        if lead == 0 && self.branch_len == 2 {
            self.branch_len = 0;
            return self.publish_up_to(u64::MAX);
        }
        Vec::new()
    }

    /// The others published a block at `height`; returns what to publish in answer.
    pub fn others_found(&mut self, height: u64) -> Vec<B> {
        if height <= self.public_height {
            return Vec::new();
        }
        let lead = self.lead();
        self.public_height = height;
        match lead {
            0 => {
                // Their chain is longer now: adopt it.
                self.withheld.clear();
                self.private_height = height;
                self.branch_len = 0;
                Vec::new()
            }
            1 => self.publish_up_to(height),
            2 => {
                self.branch_len = 0;
                self.publish_up_to(u64::MAX)
            }
            _ => self.publish_up_to(height),
        }
    }

    /// Private minus public length, never below zero (the private chain follows a longer
    /// public one at once).
    fn lead(&self) -> u64 {
        self.private_height.saturating_sub(self.public_height)
    }

    fn publish_up_to(&mut self, height: u64) -> Vec<B> {
        let mut out = Vec::new();
        while let Some((h, _)) = self.withheld.front()
            && *h <= height
        {
            let Some((h, block)) = self.withheld.pop_front() else {
                break;
            };
            self.public_height = self.public_height.max(h);
            out.push(block);
        }
        out
    }

    /// Blocks held back right now.
    #[cfg(test)]
    pub fn withheld(&self) -> usize {
        self.withheld.len()
    }
}

/// Eyal and Sirer's closed form for the selfish pool's share of the main chain's blocks,
/// for hash power share `alpha` and the share `gamma` of honest miners that mine on the
/// pool's block during a race (their equation 8).
pub fn relative_revenue(alpha: f64, gamma: f64) -> f64 {
    let a = alpha;
    let numerator = a * (1.0 - a).powi(2) * (4.0 * a + gamma * (1.0 - 2.0 * a)) - a.powi(3);
    let denominator = 1.0 - a * (1.0 + (2.0 - a) * a);
    numerator / denominator
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_form_crosses_honest_revenue_at_a_third_for_gamma_zero() {
        // Eyal & Sirer: with γ = 0 selfish mining pays from α = 1/3 on; with γ = 1/2 from 1/4.
        assert!((relative_revenue(1.0 / 3.0, 0.0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((relative_revenue(0.25, 0.5) - 0.25).abs() < 1e-12);
        assert!(relative_revenue(0.2, 0.0) < 0.2);
        assert!(relative_revenue(0.4, 0.0) > 0.4);
        // α = 0.45, worked by hand: 0.153900 / 0.236125.
        assert!((relative_revenue(0.45, 0.0) - 0.153_9 / 0.236_125).abs() < 1e-9);
    }

    #[test]
    fn it_withholds_races_and_wins_as_algorithm_one_says() {
        // State 0 → 1: withhold.
        let mut m = SelfishMiner::new(10);
        assert!(m.found(11, 11).is_empty());
        assert_eq!(m.withheld(), 1);
        // The others find 11: lead 1 → publish it and race (state 0').
        assert_eq!(m.others_found(11), [11]);
        // It finds 12 on its racing block: wins, publishes the branch.
        assert_eq!(m.found(12, 12), [12]);
        assert_eq!(m.withheld(), 0);

        // Lead of two, the others find one: publish all (a lead of one wins).
        let mut m = SelfishMiner::new(0);
        assert!(m.found(1, 1).is_empty());
        assert!(m.found(2, 2).is_empty());
        assert_eq!(m.others_found(1), [1, 2]);

        // Lead of four: each of their blocks is matched by one of ours until the lead is
        // two, then the rest goes out.
        let mut m = SelfishMiner::new(0);
        for h in 1..=4 {
            assert!(m.found(h, h).is_empty());
        }
        assert_eq!(m.others_found(1), [1]);
        assert_eq!(m.others_found(2), [2]);
        assert_eq!(m.others_found(3), [3, 4]);
        assert_eq!(m.withheld(), 0);

        // Racing, and the others win the race: adopt their chain, forget ours.
        let mut m = SelfishMiner::new(0);
        assert!(m.found(1, 1).is_empty());
        assert_eq!(m.others_found(1), [1]);
        assert!(m.others_found(2).is_empty());
        assert_eq!(m.withheld(), 0);
        // Back in state 0: the next own block is withheld again, not published.
        assert!(m.found(3, 3).is_empty());

        // A block of theirs at a height already public changes nothing.
        let mut m = SelfishMiner::new(5);
        assert!(m.found(6, 6).is_empty());
        assert!(m.others_found(5).is_empty());
        assert_eq!(m.withheld(), 1);
    }
}
