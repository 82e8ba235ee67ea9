//! ASERT under a hash rate that jumps ×10 up and back down, simulated without a clock:
//! solve times are drawn from the exponential distribution a real miner follows (mean =
//! work / hash rate) with a seeded generator, and each block's bits come from
//! `asert_next_bits` exactly as the engine computes them.

use miner::pow::{AsertParams, CompactTarget, PowParams, Retarget, asert_next_bits};

/// splitmix64: a tiny deterministic generator, enough for solve times.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

fn work_of(bits: u32) -> f64 {
    let work = CompactTarget::from_consensus(bits)
        .to_target()
        .expect("asert yields valid bits")
        .to_work()
        .to_u256();
    work.as_limbs().iter().rev().fold(0.0, |acc, &limb| {
        acc * 18_446_744_073_709_551_616.0 + limb as f64
    })
}

/// One mined block of the simulation: when it was found and how long it took.
struct Mined {
    time: f64,
    interval: f64,
}

/// Mines until `end` (seconds after genesis) with `rate(t)` hashes per second.
fn simulate(params: &PowParams, seed: u64, end: f64, rate: impl Fn(f64) -> f64) -> Vec<Mined> {
    let Retarget::Asert { half_life } = params.retarget else {
        panic!("asert params expected");
    };
    let asert = AsertParams {
        target_block_time: params.target_block_time,
        half_life,
        pow_limit: params.pow_limit.to_target().expect("valid limit"),
    };
    let genesis_time: i64 = 1_700_000_000;
    let genesis_bits = params.genesis_bits.to_consensus();
    let mut rng = SplitMix(seed);
    let (mut t, mut height, mut bits) = (0.0f64, 0u64, genesis_bits);
    // As in the engine: block 1 carries the genesis bits and anchors the schedule, its
    // parent time taken as one target interval before it.
    let mut anchor_parent_time = None;
    let mut blocks = Vec::new();
    while t < end {
        let interval = -rng.unit().ln() * work_of(bits) / rate(t);
        t += interval;
        height += 1;
        blocks.push(Mined { time: t, interval });
        // Header times are whole seconds.
        let timestamp = genesis_time + t.floor() as i64;
        let anchor = *anchor_parent_time.get_or_insert(timestamp - params.target_block_time as i64);
        bits = asert_next_bits(1, anchor, genesis_bits, height, timestamp, &asert);
    }
    blocks
}

fn mean_interval(blocks: &[Mined], from: f64, to: f64) -> (f64, usize) {
    let window: Vec<f64> = blocks
        .iter()
        .filter(|b| b.time > from && b.time <= to)
        .map(|b| b.interval)
        .collect();
    (
        window.iter().sum::<f64>() / window.len().max(1) as f64,
        window.len(),
    )
}

/// Mean interval of the first `count` blocks mined wholly after `change` (the block that
/// straddles the change was drawn at the old rate and is skipped).
fn first_intervals_after(blocks: &[Mined], change: f64, count: usize) -> f64 {
    let window: Vec<f64> = blocks
        .iter()
        .filter(|b| b.time - b.interval >= change)
        .take(count)
        .map(|b| b.interval)
        .collect();
    window.iter().sum::<f64>() / window.len().max(1) as f64
}

/// A tenfold step needs log2(10) ≈ 3.3 half-lives of schedule drift to absorb: about 3.3
/// half-lives of time after a rise (blocks come fast) but 3.3 half-lives' worth of blocks
/// after a fall (blocks come slowly). So "settled within 3 half-lives" is checked as the
/// mean interval of every block from 3 half-lives after the step to the end of a 30-half-
/// life phase, which a retarget that drifts, overshoots or oscillates would miss.
#[test]
fn asert_settles_within_three_half_lives_after_a_tenfold_hash_rate_jump_up_and_down() {
    let params = PowParams::devnet();
    let Retarget::Asert { half_life } = params.retarget else {
        panic!("the devnet retargets with asert");
    };
    let hl = half_life as f64;
    let target = params.target_block_time as f64;
    // The hash rate that finds genesis-difficulty blocks on schedule.
    let base = work_of(params.genesis_bits.to_consensus()) / target;
    // Settled at `base`, then ×10 from `up`, then back to `base` from `down`.
    let phase = 30.0 * hl;
    let (up, down) = (10.0 * hl, 10.0 * hl + phase);
    let end = down + phase;
    let rate = |t: f64| {
        if (up..down).contains(&t) {
            10.0 * base
        } else {
            base
        }
    };
    for seed in [1, 2, 3] {
        let blocks = simulate(&params, seed, end, rate);
        let (before, _) = mean_interval(&blocks, 2.0 * hl, up);
        let jumped = first_intervals_after(&blocks, up, 10);
        let (after_up, n_up) = mean_interval(&blocks, up + 3.0 * hl, down);
        let dropped = first_intervals_after(&blocks, down, 10);
        let (after_down, n_down) = mean_interval(&blocks, down + 3.0 * hl, end);
        println!(
            "seed {seed}: mean interval before {before:.2}s; first 10 after ×10 {jumped:.2}s, \
             from 3 half-lives on {after_up:.2}s ({n_up} blocks); first 10 after ÷10 \
             {dropped:.2}s, from 3 half-lives on {after_down:.2}s ({n_down} blocks)"
        );
        let within_10_percent = |mean: f64| (mean - target).abs() <= 0.1 * target;
        assert!(
            within_10_percent(before),
            "seed {seed}: settled before the jump: {before}"
        );
        // The steps are real: blocks come far faster, then far slower, at first.
        assert!(
            jumped < target / 3.0,
            "seed {seed}: right after ×10: {jumped}"
        );
        assert!(
            dropped > 3.0 * target,
            "seed {seed}: right after ÷10: {dropped}"
        );
        assert!(
            within_10_percent(after_up),
            "seed {seed}: after ×10: {after_up}"
        );
        assert!(
            within_10_percent(after_down),
            "seed {seed}: after ÷10: {after_down}"
        );
    }
}
