//! The faults both `toychain compare` and `toychain simulate` inject, and what the report
//! says about them: liveness (blocks and finality before, during and after each fault) and
//! safety (two different blocks ever finalized at one height: must never happen).
//!
//! - `kill-producer@T`: at T seconds the node that made the newest block (node 0's head) is
//!   killed and stays down.
//! - `partition@T:DUR`: from T for DUR seconds the nodes are split into two halves (the
//!   first ⌈N/2⌉ nodes and the rest) that cannot reach each other; then it heals.
//! - `clock-skew:NODE:SECS`: node NODE's clock runs SECS seconds ahead (negative: behind)
//!   for the whole run.
//! - `delay:MS`: every message between nodes takes MS milliseconds longer, the whole run.

use super::record::{BlockTree, Observation, Secs, SeenBlock};
use super::usage;
use chain::{BlockHash, Height};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Longest skew accepted, seconds (a day).
const MAX_SKEW: i64 = 86_400;
/// Longest added delay accepted, ms.
const MAX_DELAY_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    KillProducer { at_s: u64 },
    Partition { at_s: u64, duration_s: u64 },
    ClockSkew { node: usize, secs: i64 },
    Delay { ms: u64 },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillProducer { at_s } => write!(f, "kill-producer@{at_s}"),
            Fault::Partition { at_s, duration_s } => write!(f, "partition@{at_s}:{duration_s}"),
            Fault::ClockSkew { node, secs } => write!(f, "clock-skew:{node}:{secs}"),
            Fault::Delay { ms } => write!(f, "delay:{ms}"),
        }
    }
}

impl Fault {
    /// Parses one `--fault` value; the error names it and says what is expected.
    pub fn parse(text: &str) -> Result<Fault, String> {
        let text = text.trim();
        let bad = |why: &str| {
            format!(
                "--fault {text}: {why}; give kill-producer@T, partition@T:DUR, \
                 clock-skew:NODE:SECS or delay:MS"
            )
        };
        let number = |s: &str, what: &str| -> Result<u64, String> {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad(&format!("{what} {s:?} is not a whole number")))
        };
        if let Some(at) = text.strip_prefix("kill-producer@") {
            return Ok(Fault::KillProducer {
                at_s: number(at, "the time")?,
            });
        }
        if let Some(rest) = text.strip_prefix("partition@") {
            let (at, duration) = rest
                .split_once(':')
                .ok_or_else(|| bad("a partition needs a start and a duration"))?;
            let duration_s = number(duration, "the duration")?;
            if duration_s == 0 {
                return Err(bad("a partition lasts at least 1 s"));
            }
            return Ok(Fault::Partition {
                at_s: number(at, "the time")?,
                duration_s,
            });
        }
        if let Some(rest) = text.strip_prefix("clock-skew:") {
            let (node, secs) = rest
                .split_once(':')
                .ok_or_else(|| bad("a clock skew needs a node and seconds"))?;
            let node = usize::try_from(number(node, "the node")?)
                .map_err(|_| bad("the node is out of range"))?;
            let secs: i64 = secs
                .trim()
                .parse()
                .map_err(|_| bad(&format!("the skew {secs:?} is not a whole number")))?;
            if secs == 0 || secs.abs() > MAX_SKEW {
                return Err(bad(&format!(
                    "the skew must be 1 to {MAX_SKEW} s either way"
                )));
            }
            return Ok(Fault::ClockSkew { node, secs });
        }
        if let Some(ms) = text.strip_prefix("delay:") {
            let ms = number(ms, "the delay")?;
            if ms == 0 || ms > MAX_DELAY_MS {
                return Err(bad(&format!("the delay must be 1 to {MAX_DELAY_MS} ms")));
            }
            return Ok(Fault::Delay { ms });
        }
        Err(bad("unknown fault"))
    }

    /// When it is in force, from the start of the measurement: `(from, until)`, `until`
    /// `None` for the rest of the run.
    pub fn window(&self) -> (Secs, Option<Secs>) {
        match *self {
            Fault::KillProducer { at_s } => (at_s as f64, None),
            Fault::Partition { at_s, duration_s } => {
                (at_s as f64, Some(at_s.saturating_add(duration_s) as f64))
            }
            Fault::ClockSkew { .. } | Fault::Delay { .. } => (0.0, None),
        }
    }
}

/// Parses every `--fault` and checks them against the run: times inside it, nodes that
/// exist, at most one kill and non-overlapping partitions.
pub fn parse_faults(
    values: &[String],
    nodes: usize,
    duration_s: u64,
) -> anyhow::Result<Vec<Fault>> {
    let mut faults = Vec::new();
    for value in values {
        let fault = Fault::parse(value).map_err(usage)?;
        let (from, until) = fault.window();
        if from >= duration_s as f64 && from > 0.0 {
            return Err(usage(format!(
                "--fault {fault}: starts at {from} s, after the {duration_s} s run ends"
            )));
        }
        if let Some(until) = until
            && until > duration_s as f64
        {
            return Err(usage(format!(
                "--fault {fault}: lasts until {until} s, past the {duration_s} s run; heal it \
                 inside the run so the report can show what follows"
            )));
        }
        match fault {
            Fault::ClockSkew { node, .. } if node >= nodes => {
                return Err(usage(format!(
                    "--fault {fault}: there is no node {node} (nodes are 0 to {})",
                    nodes.saturating_sub(1)
                )));
            }
            Fault::Partition { .. } | Fault::KillProducer { .. } if nodes < 2 => {
                return Err(usage(format!("--fault {fault}: needs at least 2 nodes")));
            }
            _ => {}
        }
        let clash = faults.iter().find(|other: &&Fault| match (other, &fault) {
            (Fault::KillProducer { .. }, Fault::KillProducer { .. }) => true,
            (Fault::Delay { .. }, Fault::Delay { .. }) => true,
            (Fault::ClockSkew { node: a, .. }, Fault::ClockSkew { node: b, .. }) => a == b,
            (Fault::Partition { .. }, Fault::Partition { .. }) => {
                let (a0, a1) = other.window();
                let (b0, b1) = fault.window();
                a0 < b1.unwrap_or(f64::MAX) && b0 < a1.unwrap_or(f64::MAX)
            }
            _ => false,
        });
        if let Some(other) = clash {
            return Err(usage(format!(
                "--fault {fault} clashes with --fault {other}"
            )));
        }
        faults.push(fault);
    }
    Ok(faults)
}

/// The two sides of a partition of `nodes`: true for the second half.
pub fn second_half(node: usize, nodes: usize) -> bool {
    node >= nodes.div_ceil(2)
}

/// What the chain did around one fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultFigures {
    pub fault: String,
    pub from_s: Secs,
    pub until_s: Option<Secs>,
    /// Final-chain blocks a minute before, during and after the fault (`None`: no such
    /// span, or it is empty).
    pub blocks_per_min_before: Option<f64>,
    pub blocks_per_min_during: Option<f64>,
    pub blocks_per_min_after: Option<f64>,
    /// The highest final-chain block final by the engine's rule at the fault's start, its
    /// end and the end of the run.
    pub finalized_at_start: Option<u64>,
    pub finalized_at_end: Option<u64>,
    pub finalized_at_finish: Option<u64>,
}

/// Blocks a minute in `[from, until)` among `times` (first sightings of final-chain
/// blocks).
fn rate(times: &[Secs], from: Secs, until: Secs) -> Option<f64> {
    let span = until - from;
    (span > 0.0).then(|| {
        let n = times.iter().filter(|t| **t >= from && **t < until).count();
        n as f64 * 60.0 / span
    })
}

/// The figures of each fault. `chain` is the final chain, `final_at` when each of its
/// blocks became final by the engine's finality rule
/// ([`super::metrics::finality_times`]), `window` the measurement's length.
pub fn fault_figures(
    faults: &[Fault],
    chain: &[&SeenBlock],
    final_at: &HashMap<BlockHash, Secs>,
    window: Secs,
) -> Vec<FaultFigures> {
    let times: Vec<Secs> = chain
        .iter()
        .filter(|b| !b.preexisting)
        .map(|b| b.first_seen)
        .collect();
    // The highest final-chain block that was final by `at`.
    let final_by = |at: Secs| {
        chain
            .iter()
            .filter(|b| final_at.get(&b.hash).is_some_and(|t| *t <= at))
            .map(|b| b.height.0)
            .max()
    };
    faults
        .iter()
        .map(|fault| {
            let (from, until) = fault.window();
            let end = until.unwrap_or(window).min(window);
            FaultFigures {
                fault: fault.to_string(),
                from_s: from,
                until_s: until,
                blocks_per_min_before: rate(&times, 0.0, from),
                blocks_per_min_during: rate(&times, from, end),
                blocks_per_min_after: until.and_then(|u| rate(&times, u, window)),
                finalized_at_start: final_by(from),
                finalized_at_end: until.and_then(final_by),
                finalized_at_finish: final_by(window),
            }
        })
        .collect()
}

/// Heights at which two different blocks were reported finalized, by any nodes at any
/// times: a safety failure. A node's finalized block is the block at its reported
/// finalized height on the best chain it reported with it.
pub fn finalized_conflicts(tree: &BlockTree, observations: &[Observation]) -> u64 {
    let mut finalized: BTreeMap<Height, BlockHash> = BTreeMap::new();
    let mut conflicts: BTreeMap<Height, ()> = BTreeMap::new();
    // Resolved (head, height) pairs: many observations share them.
    let mut resolved: HashMap<(BlockHash, Height), Option<BlockHash>> = HashMap::new();
    for o in observations {
        let Some(height) = o.finalized else { continue };
        let hash = *resolved
            .entry((o.head, height))
            .or_insert_with(|| ancestor_at(tree, o.head, height));
        let Some(hash) = hash else { continue };
        match finalized.get(&height) {
            Some(seen) if *seen != hash => {
                conflicts.insert(height, ());
            }
            Some(_) => {}
            None => {
                finalized.insert(height, hash);
            }
        }
    }
    conflicts.len() as u64
}

/// The block at `height` on the chain ending at `head`, if the tree holds that far.
fn ancestor_at(tree: &BlockTree, head: BlockHash, height: Height) -> Option<BlockHash> {
    let mut block = tree.get(&head)?;
    while block.height > height {
        block = tree.get(&block.parent)?;
    }
    (block.height == height).then_some(block.hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::Address;
    use config::UsageError;

    #[test]
    fn faults_parse_and_print_back() {
        for text in [
            "kill-producer@30",
            "partition@20:15",
            "clock-skew:2:-30",
            "clock-skew:0:5",
            "delay:250",
        ] {
            let fault = Fault::parse(text).expect(text);
            assert_eq!(fault.to_string(), text);
        }
        assert_eq!(
            Fault::parse("partition@20:15"),
            Ok(Fault::Partition {
                at_s: 20,
                duration_s: 15
            })
        );
    }

    #[test]
    fn bad_faults_name_the_value_and_the_problem() {
        for (text, needle) in [
            ("kill-producer@soon", "\"soon\""),
            ("partition@20", "start and a duration"),
            ("partition@20:0", "at least 1 s"),
            ("clock-skew:1", "node and seconds"),
            ("clock-skew:1:0", "1 to 86400"),
            ("clock-skew:1:999999", "1 to 86400"),
            ("delay:0", "1 to 60000"),
            ("meteor@5", "unknown fault"),
        ] {
            let err = Fault::parse(text).expect_err(text);
            assert!(err.contains(&format!("--fault {text}")), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        for (values, needle) in [
            (list(&["partition@50:20"]), "past the 60 s run"),
            (list(&["kill-producer@70"]), "after the 60 s run"),
            (list(&["clock-skew:4:5"]), "no node 4"),
            (list(&["partition@10:20", "partition@20:5"]), "clashes"),
            (list(&["kill-producer@10", "kill-producer@20"]), "clashes"),
        ] {
            let err = parse_faults(&values, 4, 60).expect_err(needle);
            assert!(err.downcast_ref::<UsageError>().is_some());
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        let ok = parse_faults(
            &list(&["partition@10:10", "partition@20:5", "delay:5"]),
            4,
            60,
        );
        assert_eq!(ok.expect("back to back is fine").len(), 3);
    }

    #[test]
    fn halves_put_the_odd_node_first() {
        let sides: Vec<bool> = (0..5).map(|n| second_half(n, 5)).collect();
        assert_eq!(sides, [false, false, false, true, true]);
    }

    fn block(n: u8, parent: u8, height: u64) -> SeenBlock {
        SeenBlock {
            hash: BlockHash::from_bytes([n; 32]),
            height: Height(height),
            parent: BlockHash::from_bytes([parent; 32]),
            producer: Address([0; 20]),
            txs: Vec::new(),
            first_seen: height as f64,
            seen_by: vec![Some(height as f64)],
            preexisting: false,
            decided_in: None,
        }
    }

    #[test]
    fn two_finalized_blocks_at_one_height_are_a_conflict() {
        // 0 ← 1 ← 2 and 1 ← 3: heights 2 has two blocks.
        let tree: BlockTree = [
            block(0, 0, 0),
            block(1, 0, 1),
            block(2, 1, 2),
            block(3, 1, 2),
        ]
        .into_iter()
        .map(|b| (b.hash, b))
        .collect();
        let obs = |node, head: u8, finalized: u64| Observation {
            at: 1.0,
            node,
            head: BlockHash::from_bytes([head; 32]),
            finalized: Some(Height(finalized)),
        };
        // Both heads agree on height 1: safe.
        assert_eq!(finalized_conflicts(&tree, &[obs(0, 2, 1), obs(1, 3, 1)]), 0);
        // Each finalized its own height-2 block: a conflict.
        assert_eq!(finalized_conflicts(&tree, &[obs(0, 2, 2), obs(1, 3, 2)]), 1);
    }

    #[test]
    fn liveness_counts_blocks_and_finality_around_the_fault() {
        let faults = [Fault::Partition {
            at_s: 60,
            duration_s: 60,
        }];
        // A block every 5 s before and after, none during; each final 10 s after it came.
        let blocks: Vec<SeenBlock> = (0..12)
            .map(|i| f64::from(i) * 5.0)
            .chain((0..12).map(|i| 120.0 + f64::from(i) * 5.0))
            .enumerate()
            .map(|(i, at)| {
                let mut b = block(i as u8 + 1, i as u8, i as u64 + 1);
                b.first_seen = at;
                b
            })
            .collect();
        let chain: Vec<&SeenBlock> = blocks.iter().collect();
        let final_at: HashMap<BlockHash, Secs> = blocks
            .iter()
            .map(|b| (b.hash, b.first_seen + 10.0))
            .collect();
        let figures = fault_figures(&faults, &chain, &final_at, 180.0);
        let f = &figures[0];
        assert_eq!(f.blocks_per_min_before, Some(12.0));
        assert_eq!(f.blocks_per_min_during, Some(0.0));
        assert_eq!(f.blocks_per_min_after, Some(12.0));
        // By 60 s the blocks seen up to 50 s are final (heights 1–11); nothing more until
        // the block seen at 120 s is final at 130 s; the last (175 s) is not final by 180 s.
        assert_eq!(f.finalized_at_start, Some(11));
        assert_eq!(f.finalized_at_end, Some(12));
        assert_eq!(f.finalized_at_finish, Some(23));
    }
}
