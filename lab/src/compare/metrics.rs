//! The arithmetic of `toychain compare`, free of processes and sockets: summaries and
//! percentiles, the Gini coefficient, reorg depth over the recorded block tree, each
//! engine's finality rule, and the per-engine figures computed from a [`RunRecord`].
//!
//! Definitions (the report repeats them):
//! - **Percentiles** interpolate linearly between the closest ranks (numpy's default): the
//!   p-th percentile of sorted `x₀ … xₙ₋₁` is at rank `p/100 · (n − 1)`.
//! - **Standard deviation** is the population one, `√(Σ(x − mean)² / n)`: the figures
//!   describe the blocks measured, they do not estimate a larger population.
//! - **Gini** of counts `x₁ … xₙ` is `Σᵢ Σⱼ |xᵢ − xⱼ| / (2 n² mean)`: 0 when every producer
//!   made the same number of blocks, `(n − 1)/n` when one made them all.
//! - **Reorg depth** is the number of blocks a node's new head removed from its old best
//!   chain: old head height minus the height of the two heads' common ancestor.
//! - **Finality** ([`Finality`]): k blocks on top (PoW and PoS, k = [`CONFIRMATIONS`]); the
//!   node's reported last irreversible block at or above it (DPoS); `⌊N/2⌋+1` distinct
//!   signers of blocks at or above it (PoA, Clique's signer limit turned around: no
//!   minority of signers can build a heavier branch without them).

use super::faults::{FaultFigures, fault_figures, finalized_conflicts};
use super::record::{BlockTree, Observation, RunRecord, Secs, SeenBlock};
use chain::{Address, BlockHash, TxHash};
use miner::Finality;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

pub use miner::CONFIRMATIONS;

/// Most blocks walked back from one head: far more than a run makes, so only a broken
/// record (which the hashes rule out) could reach it.
const MAX_WALK: usize = 1_000_000;

/// Count, centre and spread of a set of measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub stdev: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no values; non-finite values are left out.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            count: sorted.len(),
            mean: mean(&sorted)?,
            stdev: stdev(&sorted)?,
            p50: percentile(&sorted, 50.0)?,
            p95: percentile(&sorted, 95.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
        })
    }
}

pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// The population standard deviation.
pub fn stdev(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / values.len() as f64;
    Some(var.sqrt())
}

/// The `p`-th percentile (0–100) of values sorted ascending, interpolated linearly.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (p.clamp(0.0, 100.0) / 100.0) * last as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let frac = rank - low as f64;
    Some(sorted[low] + (sorted[high] - sorted[low]) * frac)
}

/// The Gini coefficient of non-negative counts; 0 for none or all zero.
pub fn gini(counts: &[u64]) -> f64 {
    let n = counts.len() as f64;
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let diffs: u64 = counts
        .iter()
        .flat_map(|a| counts.iter().map(move |b| a.abs_diff(*b)))
        .sum();
    diffs as f64 / (2.0 * n * total as f64)
}

/// The best chain ending at `head`, genesis first; shorter (from the first missing block
/// up) only when the record lacks an ancestor.
pub fn chain_to(tree: &BlockTree, head: BlockHash) -> Vec<&SeenBlock> {
    let mut out = Vec::new();
    let mut cursor = tree.get(&head);
    while let Some(block) = cursor {
        out.push(block);
        if block.height.0 == 0 || out.len() >= MAX_WALK {
            break;
        }
        cursor = tree.get(&block.parent);
    }
    out.reverse();
    out
}

/// Blocks removed from the best chain when a node's head moved from `old` to `new`:
/// `None` when `new` extends `old` (or either is unknown to the record).
pub fn reorg_depth(tree: &BlockTree, old: BlockHash, new: BlockHash) -> Option<u64> {
    let (old_block, mut a, mut b) = (tree.get(&old)?, tree.get(&old)?, tree.get(&new)?);
    for _ in 0..MAX_WALK {
        if a.hash == b.hash {
            let depth = old_block.height.0 - a.height.0;
            return (depth > 0).then_some(depth);
        }
        if a.height >= b.height {
            if a.height.0 == 0 {
                return None;
            }
            a = tree.get(&a.parent)?;
        } else {
            b = tree.get(&b.parent)?;
        }
    }
    None
}

/// When each block first counted as final on some node's best chain under `rule`.
///
/// Every rule is monotone down a chain (a block's ancestors have more blocks on top, lie
/// below the same finalized height, and see a superset of signers), so an ancestor of a
/// block final in an observation is final in it too. Hence the walk down from a head
/// stops at the first final block already recorded at or before this observation: all
/// below it were recorded no later. The result is the same as walking to genesis every
/// time, at a cost per observation of the blocks not yet final instead of the chain's
/// length (a simulated day of 5-second blocks has tens of thousands of each).
pub fn finality_times(
    tree: &BlockTree,
    observations: &[Observation],
    rule: Finality,
) -> HashMap<BlockHash, Secs> {
    let mut out: HashMap<BlockHash, Secs> = HashMap::new();
    for obs in observations {
        let Some(head) = tree.get(&obs.head) else {
            continue;
        };
        let mut signers: HashSet<Address> = HashSet::new();
        let mut cursor = Some(head);
        let mut steps = 0;
        while let Some(block) = cursor {
            signers.insert(block.producer);
            if block.height.0 > 0
                && rule.is_final(block.height, head.height, signers.len(), obs.finalized)
            {
                let at = out.entry(block.hash).or_insert(f64::INFINITY);
                if *at <= obs.at {
                    break;
                }
                *at = obs.at;
            }
            steps += 1;
            if block.height.0 == 0 || steps >= MAX_WALK {
                break;
            }
            cursor = tree.get(&block.parent);
        }
    }
    out
}

/// Reorgs the observations show, summed over nodes: (count, deepest).
pub fn reorgs(tree: &BlockTree, observations: &[Observation]) -> (u64, u64) {
    let mut last: HashMap<usize, BlockHash> = HashMap::new();
    let (mut count, mut deepest) = (0, 0);
    for obs in observations {
        if let Some(previous) = last.insert(obs.node, obs.head)
            && let Some(depth) = reorg_depth(tree, previous, obs.head)
        {
            count += 1;
            deepest = deepest.max(depth);
        }
    }
    (count, deepest)
}

/// Distinct blocks that some node had on its best chain under at least `k` blocks of its
/// own and later reverted: what a user who waits for `k` confirmations would have seen
/// undone. Counted for every engine, whatever finality it claims; must be 0 where `k` is
/// deep enough for the network.
pub fn reverted_after(tree: &BlockTree, observations: &[Observation], k: u64) -> u64 {
    let mut last: HashMap<usize, BlockHash> = HashMap::new();
    let mut reverted: HashSet<BlockHash> = HashSet::new();
    for obs in observations {
        let Some(previous) = last.insert(obs.node, obs.head) else {
            continue;
        };
        let Some(depth) = reorg_depth(tree, previous, obs.head) else {
            continue;
        };
        // The old head had 0 blocks on top, its parent 1, …: those at k or deeper count.
        let mut block = tree.get(&previous);
        for on_top in 0..depth {
            let Some(b) = block else { break };
            if on_top >= k {
                reverted.insert(b.hash);
            }
            block = tree.get(&b.parent);
        }
    }
    reverted.len() as u64
}

/// One producer's blocks on the final chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProducerShare {
    pub name: String,
    pub address: String,
    pub blocks: u64,
    pub share: f64,
}

/// The figures of one engine; the JSON and CSV rows are this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineMetrics {
    pub engine: String,
    pub nodes: usize,
    pub block_time_s: u64,
    /// Seconds measured (the collector's first to last poll).
    pub measured_s: f64,
    /// Between consecutive final-chain blocks, by when they were first seen.
    pub block_interval_s: Option<Summary>,
    /// Distinct blocks produced: the larger of those any node had on its best chain and
    /// the nodes' own counts (both can only miss blocks, never invent them).
    pub blocks_produced: u64,
    pub blocks_seen: u64,
    /// Blocks on node 0's best chain at the end (genesis not counted).
    pub blocks_final: u64,
    /// `(produced − final) / produced`.
    pub orphan_rate: Option<f64>,
    pub reorgs: u64,
    pub reorg_max_depth: u64,
    pub reorgs_node_reported: Option<u64>,
    pub reorg_max_depth_node_reported: Option<u64>,
    pub finality_rule: String,
    /// From a block's first sighting to the first moment it counted as final; for a block
    /// decided by votes, from its proposal (first sighting minus [`SeenBlock::decided_in`]).
    pub finality_s: Option<Summary>,
    /// For an engine that decides by votes: from holding a proposal to its decision, as
    /// the nodes measured it, over the blocks measured.
    pub commit_latency_s: Option<Summary>,
    /// Final-chain blocks made while measuring that were not final by the end.
    pub blocks_not_final: u64,
    pub tx_offered_per_s: f64,
    pub tx_submitted: u64,
    pub tx_submit_errors: u64,
    pub tx_included: u64,
    /// From submission to the first block containing it that some node had on its chain.
    pub tx_latency_s: Option<Summary>,
    /// Transactions in the final chain's blocks.
    pub tx_confirmed: u64,
    pub confirmed_tps: f64,
    /// CPU seconds of all node processes while measuring.
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds` over the final-chain blocks made while measuring.
    pub cpu_seconds_per_block: Option<f64>,
    /// From a block's first sighting to the moment the last node had it.
    pub propagation_s: Option<Summary>,
    pub producers: Vec<ProducerShare>,
    pub gini: f64,
    pub poll_errors: u64,
    /// Liveness around each injected fault.
    pub faults: Vec<FaultFigures>,
    /// Heights at which two nodes (or one node at two times) had different finalized
    /// blocks: safety lost. Must be 0.
    pub finalized_conflicts: u64,
    /// Whether the engine finalizes blocks itself (a reported finalized height), rather
    /// than giving only confirmations.
    pub engine_finality: bool,
    /// The confirmations a user waits for: [`miner::CONFIRMATIONS`] for every engine.
    pub confirmations_k: u64,
    /// Blocks reverted after `confirmations_k` blocks were on top of them on some node
    /// ([`reverted_after`]).
    pub reverted_after_k: u64,
    /// Signatures the nodes verified over the run (their caches' misses, all nodes): with
    /// one check per node per transfer, about `nodes × tx_submitted`.
    pub signature_checks: Option<u64>,
}

/// One engine's figures plus the raw series the charts draw.
#[derive(Debug, Clone)]
pub struct EngineResult {
    pub metrics: EngineMetrics,
    pub intervals: Vec<f64>,
    pub finality: Vec<f64>,
}

/// All figures of one run.
pub fn compute(run: &RunRecord, tx_rate: f64) -> EngineResult {
    let nodes = run.authors.len();
    let chain: Vec<&SeenBlock> = chain_to(&run.blocks, run.final_head)
        .into_iter()
        .filter(|b| b.height.0 > 0)
        .collect();
    let made_in_window = chain.iter().filter(|b| !b.preexisting).count() as u64;

    let intervals: Vec<f64> = chain
        .windows(2)
        .filter(|w| !w[0].preexisting && !w[1].preexisting)
        .map(|w| (w[1].first_seen - w[0].first_seen).max(0.0))
        .collect();

    let rule = run.engine.finality(nodes);
    let final_at = finality_times(&run.blocks, &run.observations, rule);
    let mut finality = Vec::new();
    let mut not_final = 0;
    for block in chain.iter().filter(|b| !b.preexisting) {
        match final_at.get(&block.hash) {
            // A voting engine's block is shown only once decided: its life began at the
            // proposal, `decided_in` earlier.
            Some(at) => {
                finality.push((at - block.first_seen).max(0.0) + block.decided_in.unwrap_or(0.0));
            }
            None => not_final += 1,
        }
    }
    let commit_latency: Vec<f64> = chain
        .iter()
        .filter(|b| !b.preexisting)
        .filter_map(|b| b.decided_in)
        .collect();

    let blocks_seen = run.blocks.values().filter(|b| b.height.0 > 0).count() as u64;
    let blocks_produced = blocks_seen.max(run.counters.blocks_produced.unwrap_or(0));
    let blocks_final = chain.len() as u64;
    let orphan_rate = (blocks_produced > 0)
        .then(|| blocks_produced.saturating_sub(blocks_final) as f64 / blocks_produced as f64);
    let (reorgs, reorg_max_depth) = reorgs(&run.blocks, &run.observations);

    let tx_latency = tx_latency(run);
    let tx_confirmed: u64 = chain.iter().map(|b| b.txs.len() as u64).sum();
    let propagation = propagation(&chain);
    let (producers, gini) = producer_shares(run, &chain);

    let cpu_seconds_per_block = match (run.cpu_seconds, made_in_window) {
        (Some(cpu), n) if n > 0 => Some(cpu / n as f64),
        _ => None,
    };
    let metrics = EngineMetrics {
        engine: run.engine.name().to_owned(),
        nodes,
        block_time_s: run.block_time,
        measured_s: run.window,
        block_interval_s: Summary::of(&intervals),
        blocks_produced,
        blocks_seen,
        blocks_final,
        orphan_rate,
        reorgs,
        reorg_max_depth,
        reorgs_node_reported: run.counters.reorgs,
        reorg_max_depth_node_reported: run.counters.reorg_depth_max,
        finality_rule: rule.describe(),
        finality_s: Summary::of(&finality),
        commit_latency_s: Summary::of(&commit_latency),
        blocks_not_final: not_final,
        tx_offered_per_s: tx_rate,
        tx_submitted: run.submitted.len() as u64,
        tx_submit_errors: run.submit_errors.values().sum(),
        tx_included: tx_latency.len() as u64,
        tx_latency_s: Summary::of(&tx_latency),
        tx_confirmed,
        confirmed_tps: if run.window > 0.0 {
            tx_confirmed as f64 / run.window
        } else {
            0.0
        },
        cpu_seconds: run.cpu_seconds,
        cpu_seconds_per_block,
        propagation_s: Summary::of(&propagation),
        producers,
        gini,
        poll_errors: run.poll_errors,
        faults: fault_figures(&run.faults, &chain, &final_at, run.window),
        finalized_conflicts: finalized_conflicts(&run.blocks, &run.observations),
        engine_finality: matches!(rule, Finality::Reported),
        confirmations_k: miner::CONFIRMATIONS,
        reverted_after_k: reverted_after(&run.blocks, &run.observations, miner::CONFIRMATIONS),
        signature_checks: run.counters.signature_checks,
    };
    EngineResult {
        metrics,
        intervals,
        finality,
    }
}

/// Seconds from each submitted transaction to the first sighting of a block holding it,
/// for those included in any block seen.
fn tx_latency(run: &RunRecord) -> Vec<f64> {
    let mut included_at: HashMap<TxHash, Secs> = HashMap::new();
    for block in run.blocks.values() {
        for tx in &block.txs {
            let at = included_at.entry(*tx).or_insert(block.first_seen);
            *at = at.min(block.first_seen);
        }
    }
    run.submitted
        .iter()
        .filter_map(|s| included_at.get(&s.hash).map(|at| (at - s.at).max(0.0)))
        .collect()
}

/// Seconds from the first to the last node's sighting of each block made in the window
/// that every node saw.
fn propagation(chain: &[&SeenBlock]) -> Vec<f64> {
    chain
        .iter()
        .filter(|b| !b.preexisting)
        .filter_map(|b| {
            let all: Option<Vec<Secs>> = b.seen_by.iter().copied().collect();
            let last = all?.into_iter().fold(f64::MIN, f64::max);
            Some((last - b.first_seen).max(0.0))
        })
        .collect()
}

/// Each producer's blocks on the final chain, in node order (alice, bob, …, then any
/// stranger), and the Gini coefficient of the counts.
fn producer_shares(run: &RunRecord, chain: &[&SeenBlock]) -> (Vec<ProducerShare>, f64) {
    let blocks_final = chain.len() as u64;
    let mut counts: BTreeMap<Address, u64> = run.authors.iter().map(|(_, a)| (*a, 0)).collect();
    for block in chain {
        *counts.entry(block.producer).or_default() += 1;
    }
    let name_of = |address: &Address| {
        run.authors
            .iter()
            .find(|(_, a)| a == address)
            .map_or_else(|| address.to_string(), |(n, _)| n.clone())
    };
    let mut producers: Vec<ProducerShare> = counts
        .iter()
        .map(|(address, blocks)| ProducerShare {
            name: name_of(address),
            address: address.to_string(),
            blocks: *blocks,
            share: if blocks_final == 0 {
                0.0
            } else {
                *blocks as f64 / blocks_final as f64
            },
        })
        .collect();
    producers.sort_by_key(|p| {
        run.authors
            .iter()
            .position(|(n, _)| *n == p.name)
            .unwrap_or(usize::MAX)
    });
    let gini = gini(&counts.values().copied().collect::<Vec<_>>());
    (producers, gini)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::record::{NodeCounters, Submitted};
    use chain::Height;
    use chain::dev::dev_address;
    use config::EngineKind;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn summaries_match_known_figures() {
        // The textbook set with mean 5 and population standard deviation 2.
        let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).expect("values");
        assert_eq!(s.count, 8);
        assert!(close(s.mean, 5.0) && close(s.stdev, 2.0), "{s:?}");
        assert!(close(s.p50, 4.5) && close(s.max, 9.0), "{s:?}");
        // numpy.percentile([1, 2, 3, 4], [50, 95, 99]) = 2.5, 3.85, 3.97
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).expect("values");
        assert!(
            close(s.p50, 2.5) && close(s.p95, 3.85) && close(s.p99, 3.97),
            "{s:?}"
        );
        let one = Summary::of(&[7.0]).expect("one value");
        assert!(close(one.p50, 7.0) && close(one.p99, 7.0) && close(one.stdev, 0.0));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
    }

    #[test]
    fn percentile_ends_are_min_and_max() {
        let sorted = [1.0, 10.0, 100.0];
        assert_eq!(percentile(&sorted, 0.0), Some(1.0));
        assert_eq!(percentile(&sorted, 100.0), Some(100.0));
        assert_eq!(percentile(&sorted, 75.0), Some(55.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn gini_of_known_distributions() {
        let cases: [(&[u64], f64); 6] = [
            (&[5, 5, 5, 5], 0.0),
            (&[0, 0, 0, 4], 0.75),
            (&[0, 10], 0.5),
            (&[1, 2, 3, 4], 0.25),
            (&[0, 0, 0], 0.0),
            (&[], 0.0),
        ];
        for (counts, expected) in cases {
            assert!(
                close(gini(counts), expected),
                "{counts:?}: {}",
                gini(counts)
            );
        }
    }

    fn hash(n: u8) -> BlockHash {
        BlockHash([n; 32])
    }

    fn producer(i: usize) -> Address {
        let names = ["alice", "bob", "carol", "dave"];
        dev_address(names[i]).expect("dev account")
    }

    /// A tree from (id, parent id, height, producer index, first seen) rows; id 0 is genesis.
    fn tree(rows: &[(u8, u8, u64, usize, f64)]) -> BlockTree {
        rows.iter()
            .map(|&(id, parent, height, who, seen)| {
                (
                    hash(id),
                    SeenBlock {
                        hash: hash(id),
                        height: Height(height),
                        parent: hash(parent),
                        producer: producer(who),
                        txs: Vec::new(),
                        first_seen: seen,
                        seen_by: vec![Some(seen)],
                        preexisting: false,
                        decided_in: None,
                    },
                )
            })
            .collect()
    }

    /// genesis 0 ← 1 ← 2 ← 3 ← 4 (main) and 1 ← 12 ← 13 (a fork of two blocks).
    fn forked() -> BlockTree {
        tree(&[
            (0, 0, 0, 0, 0.0),
            (1, 0, 1, 0, 1.0),
            (2, 1, 2, 1, 2.0),
            (3, 2, 3, 2, 3.0),
            (4, 3, 4, 3, 4.0),
            (12, 1, 2, 2, 2.5),
            (13, 12, 3, 3, 3.5),
        ])
    }

    #[test]
    fn blocks_reverted_under_k_of_their_own_are_counted_once() {
        let t = forked();
        let obs = |node, head| Observation {
            at: 0.0,
            node,
            head: hash(head),
            finalized: None,
        };
        // Node 0 goes 4 → 13 (reverting 4, 3 and 2, with 0, 1 and 2 blocks on top); node 1
        // does the same; node 2 goes 13 → 4 (reverting 13 and 12).
        let observations = [
            obs(0, 4),
            obs(1, 4),
            obs(2, 13),
            obs(0, 13),
            obs(1, 13),
            obs(2, 4),
        ];
        let cases = [
            (0, 5, "every reverted block: 4, 3, 2 and 13, 12"),
            (1, 3, "those under one block or more: 3, 2 and 12"),
            (2, 1, "only block 2 was under two"),
            (3, 0, "none was under three"),
        ];
        for (k, expected, what) in cases {
            assert_eq!(reverted_after(&t, &observations, k), expected, "{what}");
        }
        assert_eq!(
            reverted_after(&t, &observations[..3], 0),
            0,
            "no head moved back"
        );
    }

    #[test]
    fn reorg_depth_counts_the_blocks_removed() {
        let t = forked();
        let cases = [
            (3, 4, None, "extending is no reorg"),
            (4, 4, None, "the same head"),
            (1, 4, None, "a jump ahead on the same branch"),
            (13, 4, Some(2), "two fork blocks replaced"),
            (4, 13, Some(3), "three main blocks replaced"),
            (4, 12, Some(3), "to a shorter branch"),
            (2, 12, Some(1), "sibling at the same height"),
            (4, 99, None, "unknown new head"),
        ];
        for (old, new, expected, what) in cases {
            assert_eq!(reorg_depth(&t, hash(old), hash(new)), expected, "{what}");
        }
    }

    #[test]
    fn reorgs_are_counted_per_node_from_observations() {
        let t = forked();
        let obs = |at, node, head| Observation {
            at,
            node,
            head: hash(head),
            finalized: None,
        };
        let observations = [
            obs(1.0, 0, 1),
            obs(1.0, 1, 1),
            obs(2.5, 0, 12),
            obs(3.0, 1, 3),
            obs(3.5, 0, 13),
            obs(4.0, 0, 4),
            obs(4.0, 1, 4),
        ];
        assert_eq!(reorgs(&t, &observations), (1, 2));
    }

    #[test]
    fn finality_rules_as_a_table() {
        let h = Height;
        let cases = [
            (Finality::Confirmations(6), 10, 16, 1, None, true),
            (Finality::Confirmations(6), 10, 15, 4, None, false),
            (Finality::Reported, 10, 20, 4, Some(10), true),
            (Finality::Reported, 10, 20, 4, Some(9), false),
            (Finality::Reported, 10, 20, 4, None, false),
            (Finality::Signers(3), 10, 11, 3, None, true),
            (Finality::Signers(3), 10, 30, 2, None, false),
        ];
        for (rule, height, head, signers, finalized, expected) in cases {
            assert_eq!(
                rule.is_final(h(height), h(head), signers, finalized.map(h)),
                expected,
                "{rule:?} height {height} head {head} signers {signers} finalized {finalized:?}"
            );
        }
        assert_eq!(EngineKind::Poa.finality(4), Finality::Signers(3));
        assert_eq!(EngineKind::Poa.finality(5), Finality::Signers(3));
        assert_eq!(
            EngineKind::Pow.finality(4),
            Finality::Confirmations(CONFIRMATIONS)
        );
    }

    /// A straight chain 0 ← 1 ← … ← n, block i by `who[i]`, first seen at i seconds.
    fn straight(who: &[usize]) -> BlockTree {
        let rows: Vec<(u8, u8, u64, usize, f64)> = who
            .iter()
            .enumerate()
            .map(|(i, w)| (i as u8, i.saturating_sub(1) as u8, i as u64, *w, i as f64))
            .collect();
        tree(&rows)
    }

    fn head_at(at: f64, head: u8, finalized: Option<u64>) -> Observation {
        Observation {
            at,
            node: 0,
            head: hash(head),
            finalized: finalized.map(Height),
        }
    }

    #[test]
    fn finality_times_follow_each_rule() {
        // alice, bob, carol, alice, bob, carol, …: three signers, two needed.
        let t = straight(&[0, 0, 1, 2, 0, 1, 2, 0, 1]);
        let seen: Vec<Observation> = (1..=8).map(|h| head_at(h as f64, h, None)).collect();

        let poa = finality_times(&t, &seen, Finality::Signers(2));
        // Block 1 (alice) is final once bob's block 2 is on top, seen at 2 s.
        assert_eq!(poa.get(&hash(1)), Some(&2.0));
        assert_eq!(poa.get(&hash(7)), Some(&8.0));
        assert_eq!(
            poa.get(&hash(8)),
            None,
            "nobody signed on top of the head yet"
        );

        let pow = finality_times(&t, &seen, Finality::Confirmations(3));
        assert_eq!(pow.get(&hash(1)), Some(&4.0));
        assert_eq!(pow.get(&hash(5)), Some(&8.0));
        assert_eq!(pow.get(&hash(6)), None);

        let lib = [head_at(5.0, 5, Some(2)), head_at(6.0, 6, Some(4))];
        let dpos = finality_times(&t, &lib, Finality::Reported);
        assert_eq!(dpos.get(&hash(2)), Some(&5.0));
        assert_eq!(dpos.get(&hash(3)), Some(&6.0));
        assert_eq!(dpos.get(&hash(5)), None);
        assert_eq!(dpos.get(&hash(0)), None, "genesis is not measured");
    }

    #[test]
    fn a_fork_block_is_not_final_just_because_a_node_saw_depth_elsewhere() {
        let t = forked();
        let observations = [head_at(2.5, 12, None), head_at(4.0, 4, None)];
        let times = finality_times(&t, &observations, Finality::Confirmations(2));
        assert_eq!(times.get(&hash(2)), Some(&4.0));
        assert_eq!(times.get(&hash(12)), None);
    }

    #[test]
    fn finality_times_do_not_depend_on_the_order_of_observations() {
        // Forwards the walks stop early; backwards every walk lowers times all the way
        // down. Both must give each block its earliest final observation.
        let who: Vec<usize> = (0..40).map(|i| i % 3).collect();
        let t = straight(&who);
        let seen: Vec<Observation> = (1..40u8)
            .map(|h| head_at(f64::from(h), h, Some(u64::from(h).saturating_sub(2))))
            .collect();
        let backwards: Vec<Observation> = seen.iter().rev().copied().collect();
        for rule in [
            Finality::Confirmations(3),
            Finality::Reported,
            Finality::Signers(2),
        ] {
            let forwards = finality_times(&t, &seen, rule);
            assert_eq!(forwards, finality_times(&t, &backwards, rule), "{rule:?}");
        }
        let pow = finality_times(&t, &seen, Finality::Confirmations(3));
        for h in 1..=36u8 {
            assert_eq!(pow.get(&hash(h)), Some(&(f64::from(h) + 3.0)), "block {h}");
        }
        assert_eq!(pow.get(&hash(37)), None);
    }

    #[test]
    fn compute_on_a_small_run_gives_the_expected_figures() {
        // alice, bob, alice, bob on the final chain; bob's fork block 12 lost to block 2.
        let mut t = tree(&[
            (0, 0, 0, 0, 0.0),
            (1, 0, 1, 0, 1.0),
            (2, 1, 2, 1, 3.0),
            (3, 2, 3, 0, 4.0),
            (4, 3, 4, 1, 7.0),
            (12, 1, 2, 1, 2.0),
        ]);
        let tx = TxHash([7; 32]);
        if let Some(b) = t.get_mut(&hash(3)) {
            b.txs.push(tx);
        }
        let observations: Vec<Observation> = [(1.0, 1), (2.0, 12), (3.0, 2), (4.0, 3), (7.0, 4)]
            .into_iter()
            .map(|(at, h)| head_at(at, h, None))
            .collect();
        let run = RunRecord {
            engine: EngineKind::Poa,
            block_time: 1,
            authors: vec![("alice".into(), producer(0)), ("bob".into(), producer(1))],
            window: 10.0,
            blocks: t,
            observations,
            final_head: hash(4),
            submitted: vec![Submitted { hash: tx, at: 3.5 }],
            submit_errors: BTreeMap::from([("nonce", 1)]),
            poll_errors: 0,
            cpu_seconds: Some(8.0),
            counters: NodeCounters {
                blocks_produced: Some(5),
                reorgs: Some(1),
                reorg_depth_max: Some(1),
                signature_checks: Some(3),
            },
            faults: Vec::new(),
        };
        let r = compute(&run, 0.1);
        let m = &r.metrics;
        assert_eq!(r.intervals, vec![2.0, 1.0, 3.0]);
        assert_eq!(
            (m.blocks_seen, m.blocks_produced, m.blocks_final),
            (5, 5, 4)
        );
        assert!(close(m.orphan_rate.expect("produced"), 0.2));
        assert_eq!((m.reorgs, m.reorg_max_depth), (1, 1));
        // Two signers of two: block 1 (alice, seen at 1 s) is final once bob signs on top,
        // which the losing fork block 12 already did at 2 s; block 2 once block 3 is seen.
        assert_eq!(r.finality, vec![1.0, 1.0, 3.0]);
        assert_eq!(m.blocks_not_final, 1);
        assert_eq!((m.tx_submitted, m.tx_included, m.tx_confirmed), (1, 1, 1));
        assert!(close(m.tx_latency_s.expect("one").p50, 0.5));
        assert!(close(m.confirmed_tps, 0.1));
        assert_eq!(m.tx_submit_errors, 1);
        assert_eq!(m.cpu_seconds_per_block, Some(2.0));
        assert_eq!(
            m.producers
                .iter()
                .map(|p| (p.name.as_str(), p.blocks))
                .collect::<Vec<_>>(),
            vec![("alice", 2), ("bob", 2)]
        );
        assert!(close(m.gini, 0.0));
    }
}
