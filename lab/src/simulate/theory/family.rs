//! The voting engines side by side on one simulated network: every engine whose blocks are
//! decided by votes (PBFT, Raft, Multi-Paxos, ZAB in this build), each with its devnet
//! parameters, on a full mesh of [`NODES`] nodes where every message takes exactly `d`
//! ([`DELAY_MS`]), 1 s blocks, no load. The same real machines the nodes run.
//!
//! - **Message delays to commit.** From the leader's proposal (the node hands its machine
//!   the block it built) to the leader's own decision, and to the moment the last node
//!   had the block on its chain (by its own decision or the certified block), in units of
//!   `d`, over the heights after the first two.
//! - **Messages per committed block.** Every consensus message delivered (one per peer),
//!   heartbeats and elections included, over the heights decided in the run.
//! - **Recovery after a leader crash.** The producer of the newest block is killed at
//!   [`KILL_AT_S`]; from the kill to the next decision at a surviving node.
//! - **Crashes tolerated.** The newest block's producer is killed every
//!   [`CRASH_EVERY_S`] s; the kills after which the survivors still decided a block before
//!   the next kill.
//! - **Lies tolerated.** Not simulated (the simulator's nodes are honest): the engine's
//!   fault model, `⌊(n−1)/3⌋` for PBFT's Byzantine quorums, none for the crash-fault
//!   engines, whose followers accept what an elected leader sends; PBFT's real-node test
//!   with an equivocating primary shows it.
//! - **Duelling leaders.** Every node starts at once with no leader, so their first
//!   election timers race, over [`DUEL_TRIALS`] seeds with their own keys: the elections
//!   (distinct terms, ballots, epochs or views entered) before the first decision, and the
//!   time to it. Then the same races with every election timeout equal (a spread of 1 ms,
//!   the least the parameters take), for the engines that draw their timeouts at random
//!   (Raft, Multi-Paxos): what the randomness buys. PBFT's first primary and ZAB's vote
//!   order draw nothing at random.

use super::Table;
use crate::compare::faults::Fault;
use crate::simulate::dev_spec;
use crate::simulate::world::{self, Outcome, Setup, Traced, VoteEvent};
use chain::SecretKey;
use config::{ChainSpec, EngineKind, EngineSpec};
use std::collections::{BTreeMap, BTreeSet};

/// Nodes of every run.
pub const NODES: usize = 5;
/// One-way delay of every message, ms.
pub const DELAY_MS: u64 = 20;
/// Seconds between blocks.
const BLOCK_TIME: u64 = 1;
/// When the leader is killed in the recovery run, virtual seconds after genesis.
pub const KILL_AT_S: u64 = 10;
/// Seconds between kills in the crash-tolerance run.
pub const CRASH_EVERY_S: u64 = 10;
/// Seeds of the duelling-leaders trials.
pub const DUEL_TRIALS: u64 = 10;
/// How long a duel trial may take to decide its first block, virtual ms.
const DUEL_LIMIT_MS: u64 = 60_000;
/// The status fields that name an engine's round: Raft's term, PBFT's view, Paxos's
/// ballot, ZAB's epoch.
const ROUND_FIELDS: [&str; 4] = ["term", "view", "ballot", "epoch"];

/// The engines this sweep compares: those that decide by votes.
pub fn engines() -> Vec<EngineKind> {
    EngineKind::ALL
        .iter()
        .copied()
        .filter(|k| k.votes())
        .collect()
}

fn setup(kind: EngineKind, duration_ms: u64, seed: u64, keys: &str) -> Setup {
    let authors: Vec<(String, SecretKey)> = (0..NODES)
        .map(|i| {
            let key = SecretKey::from_seed(&format!("toychain/sweep/family/{keys}/{i}"));
            (format!("node{i}"), key)
        })
        .collect();
    let spec = dev_spec(kind, &authors, &[], Some(BLOCK_TIME));
    super::voting_setup(spec, authors, DELAY_MS, duration_ms, seed)
}

/// Each height's proposal (time, proposer) and each (height → node → decision time); a
/// node that imports a certified block before its machine commits it has no decision.
type Decisions = BTreeMap<u64, BTreeMap<usize, u64>>;

fn read_trace(trace: &[Traced]) -> (BTreeMap<u64, (u64, usize)>, Decisions) {
    let mut proposed = BTreeMap::new();
    let mut decided: Decisions = BTreeMap::new();
    for t in trace {
        match t.what {
            VoteEvent::Proposed { height } => {
                proposed.entry(height).or_insert((t.at, t.node));
            }
            VoteEvent::Decided { height } => {
                decided
                    .entry(height)
                    .or_default()
                    .entry(t.node)
                    .or_insert(t.at);
            }
            _ => {}
        }
    }
    (proposed, decided)
}

/// One engine's row.
#[derive(Debug, Clone)]
pub struct Row {
    pub engine: EngineKind,
    pub heights: u64,
    /// Mean delays from proposal to the leader's decision, and to the last node's, in `d`.
    pub leader_delays: f64,
    pub all_delays: f64,
    pub messages_per_block: f64,
    /// From the kill to the next decision, ms; `None`: nothing decided before the run ended.
    pub recovery_ms: Option<u64>,
    pub crashes_tolerated: usize,
    pub lies_tolerated: usize,
    /// The start-up races with each engine's own timeouts.
    pub races: Races,
    /// The same races with every election timeout equal (`None`: nothing is drawn at
    /// random).
    pub equal_races: Option<Races>,
}

/// Steady state: delays to commit and messages per block over `heights` heights.
fn steady(kind: EngineKind, heights: u64, seed: u64) -> anyhow::Result<(u64, f64, f64, f64)> {
    let duration = (heights + 3) * BLOCK_TIME * 1000;
    let setup = setup(kind, duration, seed, "steady");
    let start = setup.spec.genesis.timestamp.saturating_mul(1000);
    let outcome = world::simulate(setup, &mut |_| {})?;
    let (proposed, decided) = read_trace(&outcome.votes.trace);
    // When every node had each height's block on its chain (a follower may import the
    // certified block before its own machine commits it), virtual ms.
    let mut everywhere: BTreeMap<u64, u64> = BTreeMap::new();
    for block in outcome.record.blocks.values() {
        let seen: Option<Vec<f64>> = block.seen_by.iter().copied().collect();
        if let Some(last) = seen.and_then(|s| s.into_iter().reduce(f64::max)) {
            everywhere.insert(block.height.0, start + (last * 1000.0).round() as u64);
        }
    }
    let mut leader = Vec::new();
    let mut all = Vec::new();
    for (height, (at, proposer)) in proposed.iter().filter(|(h, _)| **h > 2) {
        let own = decided.get(height).and_then(|nodes| nodes.get(proposer));
        if let (Some(own), Some(last)) = (own, everywhere.get(height)) {
            leader.push((own - at) as f64 / DELAY_MS as f64);
            all.push((last.max(own) - at) as f64 / DELAY_MS as f64);
        }
    }
    let decided_heights = decided.len() as u64;
    if leader.is_empty() {
        anyhow::bail!("{kind} decided no height past the second everywhere in {duration} ms");
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok((
        decided_heights,
        mean(&leader),
        mean(&all),
        outcome.votes.messages as f64 / decided_heights as f64,
    ))
}

/// The newest block's producer killed at [`KILL_AT_S`]: from then to the next decision.
fn recovery(kind: EngineKind, seed: u64) -> anyhow::Result<Option<u64>> {
    let duration = (KILL_AT_S + 30) * 1000;
    let mut setup = setup(kind, duration, seed, "recovery");
    setup.faults = vec![Fault::KillProducer { at_s: KILL_AT_S }];
    let start = setup.spec.genesis.timestamp.saturating_mul(1000);
    let outcome = world::simulate(setup, &mut |_| {})?;
    let kill = start + KILL_AT_S * 1000;
    Ok(first_decision_after(&outcome, kill).map(|at| at - kill))
}

fn first_decision_after(outcome: &Outcome, from: u64) -> Option<u64> {
    outcome
        .votes
        .trace
        .iter()
        .filter(|t| t.at > from && matches!(t.what, VoteEvent::Decided { .. }))
        .map(|t| t.at)
        .min()
}

/// Kills every [`CRASH_EVERY_S`]: how many the survivors decided after.
fn crashes(kind: EngineKind, seed: u64) -> anyhow::Result<usize> {
    let kills = NODES as u64 - 1;
    let duration = (kills + 1) * CRASH_EVERY_S * 1000;
    let mut setup = setup(kind, duration, seed, "crashes");
    setup.faults = (1..=kills)
        .map(|k| Fault::KillProducer {
            at_s: k * CRASH_EVERY_S,
        })
        .collect();
    let start = setup.spec.genesis.timestamp.saturating_mul(1000);
    let outcome = world::simulate(setup, &mut |_| {})?;
    let mut tolerated = 0;
    for k in 1..=kills {
        let kill = start + k * CRASH_EVERY_S * 1000;
        match first_decision_after(&outcome, kill) {
            Some(at) if at < kill + CRASH_EVERY_S * 1000 => tolerated += 1,
            _ => break,
        }
    }
    Ok(tolerated)
}

/// The engine's fault model: Byzantine replicas a quorum of `⌈(n+f+1)/2⌉` outvotes, or
/// none when any elected leader is believed.
fn lies(kind: EngineKind) -> usize {
    if kind.tolerates_lies() {
        (NODES - 1) / 3
    } else {
        0
    }
}

/// Makes every election timeout of `spec` the same (a spread of 1 ms); false for an engine
/// that draws none at random.
fn equal_timeouts(spec: &mut ChainSpec) -> bool {
    match &mut spec.engine {
        EngineSpec::Raft(p) => {
            p.election_timeout_max_ms = p.election_timeout_min_ms + 1;
            true
        }
        EngineSpec::Paxos(p) => {
            p.election_timeout_max_ms = p.election_timeout_min_ms + 1;
            true
        }
        _ => false,
    }
}

/// One start-up race: elections entered before the first decision, and when it came;
/// `None` when the race cannot be run with `equal` timeouts.
fn duel(
    kind: EngineKind,
    trial: u64,
    seed: u64,
    equal: bool,
) -> anyhow::Result<Option<(usize, Option<u64>)>> {
    let mut setup = setup(kind, DUEL_LIMIT_MS, seed, &format!("duel/{seed}/{trial}"));
    if equal && !equal_timeouts(&mut setup.spec) {
        return Ok(None);
    }
    let start = setup.spec.genesis.timestamp.saturating_mul(1000);
    let outcome = world::simulate(setup, &mut |_| {})?;
    let first = first_decision_after(&outcome, 0);
    let until = first.unwrap_or(u64::MAX);
    // Every round a node entered before the first decision, but for the one each node
    // reports first (term 0, view 0, …: where it starts, not an election).
    let mut rounds = BTreeSet::new();
    let mut starting = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for t in outcome.votes.trace.iter().filter(|t| t.at < until) {
        if let VoteEvent::Status(fields) = &t.what {
            let first_report = reported.insert(t.node);
            for (_, v) in fields.iter().filter(|(k, _)| ROUND_FIELDS.contains(k)) {
                if first_report {
                    starting.insert(v.clone());
                }
                rounds.insert(v.clone());
            }
        }
    }
    let elections = rounds.difference(&starting).count();
    Ok(Some((elections, first.map(|at| at.saturating_sub(start)))))
}

/// `trials` races: elections each, and the times of those that decided.
#[derive(Debug, Clone, Default)]
pub struct Races {
    pub elections: Vec<usize>,
    pub firsts_ms: Vec<u64>,
}

impl Races {
    fn run(kind: EngineKind, trials: u64, seed: u64, equal: bool) -> anyhow::Result<Option<Races>> {
        let mut races = Races::default();
        for trial in 0..trials {
            let Some((n, first)) = duel(kind, trial, seed, equal)? else {
                return Ok(None);
            };
            races.elections.push(n);
            races.firsts_ms.extend(first);
        }
        Ok(Some(races))
    }

    pub fn mean_elections(&self) -> f64 {
        self.elections.iter().sum::<usize>() as f64 / self.elections.len().max(1) as f64
    }

    /// Races with no decision within the limit.
    pub fn stuck(&self) -> u64 {
        (self.elections.len() - self.firsts_ms.len()) as u64
    }
}

/// One engine's row: `heights` steady heights and `trials` start-up races.
pub fn row(kind: EngineKind, heights: u64, trials: u64, seed: u64) -> anyhow::Result<Row> {
    let (decided, leader_delays, all_delays, messages_per_block) = steady(kind, heights, seed)?;
    let recovery_ms = recovery(kind, seed)?;
    let crashes_tolerated = crashes(kind, seed)?;
    let races = Races::run(kind, trials, seed, false)?
        .ok_or_else(|| anyhow::anyhow!("{kind}: a start-up race did not run"))?;
    let equal_races = Races::run(kind, trials, seed, true)?;
    Ok(Row {
        engine: kind,
        heights: decided,
        leader_delays,
        all_delays,
        messages_per_block,
        recovery_ms,
        crashes_tolerated,
        lies_tolerated: lies(kind),
        races,
        equal_races,
    })
}

/// The sweep: a row per voting engine with `heights` steady heights each.
pub(super) fn table(
    heights: u64,
    seed: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Table> {
    let mut rows = Vec::new();
    for (i, kind) in engines().into_iter().enumerate() {
        let r = row(kind, heights, DUEL_TRIALS, seed.wrapping_add(i as u64))?;
        progress(format!(
            "{kind}: {:.1}d to the leader's commit, {:.1}d to every node's, {:.0} messages a \
             block, recovery {:?} ms, {} crash(es) tolerated, start-up {:.1} elections, with \
             equal timeouts {}",
            r.leader_delays,
            r.all_delays,
            r.messages_per_block,
            r.recovery_ms,
            r.crashes_tolerated,
            r.races.mean_elections(),
            equal_cell(r.equal_races.as_ref())
        ));
        rows.push(r);
    }
    let ok = rows.iter().all(|r| {
        r.recovery_ms.is_some()
            && r.crashes_tolerated >= 1
            && r.crashes_tolerated <= (NODES - 1) / 2
            && r.races.stuck() == 0
    });
    Ok(Table {
        name: "family",
        header: "| engine | heights | delays to the leader's commit (d) | to every node's (d) | \
                 messages per block | recovery after a leader crash, ms | crashes tolerated \
                 of 5 | lies tolerated of 5 | elections before the first block (mean / max) \
                 | first block, ms (mean / max) | with equal election timeouts: elections \
                 (mean), races that decided |",
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.engine.to_string(),
                    r.heights.to_string(),
                    format!("{:.2}", r.leader_delays),
                    format!("{:.2}", r.all_delays),
                    format!("{:.1}", r.messages_per_block),
                    r.recovery_ms
                        .map_or_else(|| "none".to_owned(), |ms| ms.to_string()),
                    r.crashes_tolerated.to_string(),
                    r.lies_tolerated.to_string(),
                    format!(
                        "{:.1} / {}",
                        r.races.mean_elections(),
                        r.races.elections.iter().max().copied().unwrap_or(0)
                    ),
                    format!(
                        "{:.0} / {}",
                        r.races.firsts_ms.iter().sum::<u64>() as f64
                            / r.races.firsts_ms.len().max(1) as f64,
                        r.races.firsts_ms.iter().max().copied().unwrap_or(0)
                    ),
                    equal_cell(r.equal_races.as_ref()),
                ]
            })
            .collect(),
        points: rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i as f64, r.all_delays, r.leader_delays))
            .collect(),
        x_label: "engine (in the table's order)",
        y_label: "message delays d: to every node's commit (dots), the leader's (line)",
        curve: |_| 0.0,
        x_range: (-0.5, rows.len() as f64 - 0.5),
        verdict: format!(
            "{NODES} nodes, full mesh, d = {DELAY_MS} ms, {BLOCK_TIME} s blocks, each engine's \
             devnet timeouts; leader killed at {KILL_AT_S} s; kills every {CRASH_EVERY_S} s; \
             {DUEL_TRIALS} start-up races. Every engine recovered from a crash, tolerated 1 to \
             ⌊(n−1)/2⌋ crashes and decided in every race: {}",
            if ok { "yes" } else { "NO" }
        ),
        ok,
        unit: "heights",
        appendix: String::new(),
        extra_svgs: Vec::new(),
    })
}

/// The equal-timeouts cell: mean elections and races decided, or why there is none.
fn equal_cell(races: Option<&Races>) -> String {
    match races {
        Some(r) => format!(
            "{:.1}, {} of {}",
            r.mean_elections(),
            r.firsts_ms.len(),
            r.elections.len()
        ),
        None => "– (nothing drawn at random)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_voting_engine_gets_a_row_with_figures_that_differ_by_design() {
        let raft = row(EngineKind::Raft, 6, 3, 1).expect("raft runs");
        let pbft = row(EngineKind::Pbft, 6, 3, 1).expect("pbft runs");
        // PBFT: PRE-PREPARE, PREPARE, COMMIT; its quorum of 4 of 5 survives one crash.
        assert!((2.9..3.6).contains(&pbft.leader_delays), "{pbft:?}");
        assert_eq!(pbft.crashes_tolerated, 1, "{pbft:?}");
        assert_eq!(pbft.lies_tolerated, 1);
        // Raft: append and ack; a majority of 3 of 5 survives two crashes, no lie.
        assert!((1.9..2.6).contains(&raft.leader_delays), "{raft:?}");
        assert_eq!(raft.crashes_tolerated, 2, "{raft:?}");
        assert_eq!(raft.lies_tolerated, 0);
        assert!(
            raft.races.mean_elections() >= 1.0,
            "Raft elects before its first block"
        );
        assert_eq!(
            pbft.races.mean_elections(),
            0.0,
            "view 0 has a primary without an election"
        );
        assert!(
            pbft.equal_races.is_none(),
            "PBFT draws no timeout at random"
        );
        let equal = raft
            .equal_races
            .as_ref()
            .expect("Raft's timeouts can be made equal");
        assert!(
            equal.mean_elections() > raft.races.mean_elections(),
            "without random timeouts Raft's candidates split the vote: {equal:?}"
        );
        for r in [&raft, &pbft] {
            assert!(r.recovery_ms.is_some() && r.races.stuck() == 0, "{r:?}");
            assert!(r.messages_per_block > 0.0);
        }
    }
}
