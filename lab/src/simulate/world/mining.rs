//! Proof of work in virtual time: solve times drawn from each node's hash rate.

use crate::simulate::queue::Millis;
use crate::simulate::random::{SimRng, Stream};
use config::ChainSpec;
use miner::pow::CompactTarget;

/// Solve times of proof of work: each node hashes at its own rate.
#[derive(Debug)]
pub(super) struct Mining {
    /// Hashes a second per node.
    pub(super) rates: Vec<f64>,
    pub(super) rng: SimRng,
}

impl Mining {
    /// The network's hash rate is set so that the genesis difficulty gives the target
    /// block time: `work(genesis target) / block time` hashes a second, split by share.
    pub(super) fn new(spec: &ChainSpec, shares: &[f64], seed: u64) -> Mining {
        let total = work_of(spec.engine.genesis_bits()).unwrap_or(1.0)
            / spec.engine.block_time().max(1) as f64;
        Mining {
            rates: shares.iter().map(|s| s * total).collect(),
            rng: SimRng::new(seed, Stream::Mining),
        }
    }

    /// Milliseconds until `node` solves a block with `bits`: exponential with mean
    /// `work / rate` (each hash is an independent try), or `None` for no hash power.
    pub(super) fn solve_delay(&mut self, node: usize, bits: u32) -> Option<Millis> {
        let rate = self.rates[node];
        let work = work_of(bits)?;
        if rate <= 0.0 {
            return None;
        }
        let secs = self.rng.exponential(work / rate);
        Some(((secs * 1000.0).ceil() as Millis).max(1))
    }
}

/// The expected hashes of a block with `bits`.
pub(super) fn work_of(bits: u32) -> Option<f64> {
    let target = CompactTarget::from_consensus(bits).to_target()?;
    Some(f64::from(target.to_work().to_u256()))
}
