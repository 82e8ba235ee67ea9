//! The scenarios, and one (scenario, engine) row: start a devnet, run the bank workload
//! and the finality watch, inject the fault, heal, and check the invariants.

use super::bank;
use super::checks::{self, BlockInfo, Watch};
use super::cluster::{Cluster, NODES};
use super::{Plan, Row};
use crate::workload::{Workload, WorkloadOutcome};
use anyhow::anyhow;
use chain::Address;
use config::EngineKind;
use devnet::{SignalWatch, say};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A fault, with what it does to the devnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Node 3 blocks every other node and they block it, for the fault time; then healed.
    Disconnect,
    /// Node 3 gets SIGSTOP for the fault time, then SIGCONT.
    Pause,
    /// Node 3 gets SIGKILL and is restarted on the same data dir.
    Restart,
    /// Nodes 0, 1 and 2, 3 block each other for the split time; then healed.
    Split,
    /// Node 3 is restarted with its clock a few seconds ahead (inside the 15 s future
    /// drift), and stays so to the end.
    ClockSkew,
    /// Node 1 (a producer) is killed at seeded random points, while it produces and while
    /// it switches branch after a partition heals, and restarted each time.
    Crash,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Disconnect,
        Scenario::Pause,
        Scenario::Restart,
        Scenario::Split,
        Scenario::ClockSkew,
        Scenario::Crash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Disconnect => "disconnect",
            Scenario::Pause => "pause",
            Scenario::Restart => "restart",
            Scenario::Split => "split",
            Scenario::ClockSkew => "clock-skew",
            Scenario::Crash => "crash",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Durations and counts of a run (`--quick` or full).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    /// Seconds between blocks on every engine.
    pub block_time: u64,
    /// Bank transfers a second.
    pub tx_rate: f64,
    /// Workload before the fault.
    #[serde(serialize_with = "as_secs", rename = "warmup_s")]
    pub warmup: Duration,
    /// Disconnect, pause and clock-skew time.
    #[serde(serialize_with = "as_secs", rename = "fault_s")]
    pub fault: Duration,
    /// Split time.
    #[serde(serialize_with = "as_secs", rename = "split_s")]
    pub split: Duration,
    /// Bound on converging after the heal.
    #[serde(serialize_with = "as_secs", rename = "converge_bound_s")]
    pub converge_bound: Duration,
    /// Longest wait for acknowledged transfers to land before the checks.
    #[serde(serialize_with = "as_secs", rename = "drain_s")]
    pub drain: Duration,
    /// Kills in the crash scenario.
    pub crash_cycles: usize,
}

/// Durations in the JSON report as seconds.
fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Timing {
    pub fn full() -> Timing {
        Timing {
            block_time: 2,
            tx_rate: 2.0,
            warmup: Duration::from_secs(6),
            fault: Duration::from_secs(10),
            split: Duration::from_secs(20),
            converge_bound: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            crash_cycles: 100,
        }
    }

    pub fn quick() -> Timing {
        Timing {
            block_time: 2,
            tx_rate: 2.0,
            warmup: Duration::from_secs(3),
            fault: Duration::from_secs(5),
            split: Duration::from_secs(8),
            converge_bound: Duration::from_secs(60),
            drain: Duration::from_secs(20),
            crash_cycles: 5,
        }
    }
}

/// The node the single-node faults hit, and the crash victim (both author blocks).
const TARGET: usize = 3;
const CRASH_VICTIM: usize = 1;
/// Clock skew of the clock-skew scenario: well inside the 15 s future drift.
const SKEW_SECS: i64 = 4;
/// Longest wait for the first blocks after start.
const FIRST_BLOCKS: Duration = Duration::from_secs(90);

/// What the crash cycles found.
#[derive(Debug, Default)]
struct CrashReport {
    kills: usize,
    state_checks: usize,
    blocks_seen: Vec<BlockInfo>,
    failures: Vec<String>,
}

/// One row. `Ok(None)`: interrupted.
pub fn run_row(
    plan: &Plan,
    scenario: Scenario,
    kind: EngineKind,
    signals: &SignalWatch,
) -> anyhow::Result<Option<Row>> {
    let t = &plan.timing;
    let tag = format!("[{scenario}/{kind}]");
    let started = Instant::now();
    let dir = plan
        .out
        .join("devnets")
        .join(format!("{scenario}-{}", kind.name()));
    say(&format!(
        "{tag} starting {NODES} nodes in {}",
        dir.display()
    ));
    let Some(cluster) = Cluster::start(dir, kind, t.block_time, signals)? else {
        return Ok(None);
    };
    let outcome = drive(plan, scenario, &cluster, signals, &tag);
    let row = match outcome {
        Ok(Some(mut row)) => {
            row.duration_s = started.elapsed().as_secs_f64();
            Some(row)
        }
        Ok(None) => None,
        Err(e) => {
            let mut row = Row::new(scenario, kind);
            row.failures.push(format!("{e:#}"));
            row.duration_s = started.elapsed().as_secs_f64();
            Some(row)
        }
    };
    say(&format!("{tag} stopping the devnet"));
    cluster.stop(signals);
    Ok(row)
}

fn drive(
    plan: &Plan,
    scenario: Scenario,
    cluster: &Cluster,
    signals: &SignalWatch,
    tag: &str,
) -> anyhow::Result<Option<Row>> {
    let t = &plan.timing;
    let kind = cluster.kind;
    let mut row = Row::new(scenario, kind);
    if !wait_first_blocks(cluster, signals)? {
        return Ok(None);
    }
    say(&format!(
        "{tag} up, every node past block 2; bank workload on"
    ));
    let seed = plan.seed ^ (scenario as u64) << 8 ^ kind as u64;
    let stop_bank = AtomicBool::new(false);
    let stop_watch = AtomicBool::new(false);
    let mut crash = CrashReport::default();
    let bank_started = Instant::now();
    let (fault, bank, watch) = std::thread::scope(|s| {
        let bank = s.spawn(|| {
            Workload::new(
                &cluster.clients,
                bank::trader_keys(),
                cluster.chain_id,
                t.tx_rate,
                seed,
            )
            .skipping(&cluster.down)
            .run(bank_started, &stop_bank)
        });
        let watch = s.spawn(|| {
            let mut watch = Watch::new();
            watch.run(cluster, &stop_watch);
            watch
        });
        let fault = (|| -> anyhow::Result<Option<(u64, u64, Option<Duration>)>> {
            std::thread::sleep(t.warmup);
            let before = max_height(cluster);
            row.finalized_before = finalized(cluster);
            let fault_from = bank_started.elapsed().as_secs_f64();
            if !inject(scenario, cluster, t, seed, &mut crash, signals, tag)? {
                return Ok(None);
            }
            row.fault_window_s = Some((fault_from, bank_started.elapsed().as_secs_f64()));
            let healed_at = max_height(cluster);
            say(&format!(
                "{tag} healed at #{healed_at}; waiting for one head (bound {} s)",
                t.converge_bound.as_secs()
            ));
            let converged = cluster.wait_converged(healed_at, t.converge_bound);
            Ok(Some((before, healed_at, converged)))
        })();
        stop_bank.store(true, Ordering::Relaxed);
        let bank = bank.join().unwrap_or_else(|_| WorkloadOutcome::default());
        if fault.as_ref().is_ok_and(Option::is_some) {
            checks::wait_included(cluster, &bank.acked, t.drain);
        }
        stop_watch.store(true, Ordering::Relaxed);
        let watch = watch.join().unwrap_or_else(|_| Watch::new());
        (fault, bank, watch)
    });
    let Some((before, healed_at, converged)) = fault? else {
        return Ok(None);
    };
    row.fault_blocks = healed_at.saturating_sub(before);
    row.acked = bank.acked.len() as u64;
    row.refused = bank.refused.values().sum();
    match converged {
        Some(d) => row.converge_s = Some(d.as_secs_f64()),
        None => row.failures.push(format!(
            "convergence: the nodes did not agree on one head within {} s of the heal \
             (heads: {})",
            t.converge_bound.as_secs(),
            cluster.describe_heads()
        )),
    }
    if let Some(err) = cluster.check_alive() {
        row.failures.push(format!("{err:#}"));
    }
    say(&format!("{tag} checking the invariants on node 0's chain"));
    check_invariants(cluster, scenario, &watch, &bank, &crash, &mut row);
    row.finalized_after = finalized(cluster);
    if scenario == Scenario::Crash {
        row.kills = Some(crash.kills as u64);
        row.state_checks = Some(crash.state_checks as u64);
        row.failures.extend(crash.failures);
    }
    Ok(Some(row))
}

/// Waits until every node is past block 2; `false` when interrupted meanwhile.
fn wait_first_blocks(cluster: &Cluster, signals: &SignalWatch) -> anyhow::Result<bool> {
    let deadline = Instant::now() + FIRST_BLOCKS;
    while (0..NODES).any(|i| cluster.height(i).unwrap_or(0) < 2) {
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "the devnet made no 2 blocks on every node within {} s",
                FIRST_BLOCKS.as_secs()
            ));
        }
        if signals.count() > 0 {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(true)
}

/// Checks supply, finality, the workload's transfers and (after crashes) double signs on
/// node 0's chain, which every node agreed with at the convergence check; what fails goes
/// into `row.failures`.
fn check_invariants(
    cluster: &Cluster,
    scenario: Scenario,
    watch: &Watch,
    bank: &WorkloadOutcome,
    crash: &CrashReport,
    row: &mut Row,
) {
    // The final chain: node 0's, which every node agreed with at the convergence check.
    match checks::snapshot(cluster, 0) {
        Err(e) => row.failures.push(format!("snapshot: {e}")),
        Ok(snap) => {
            row.final_height = snap.blocks.len().saturating_sub(1) as u64;
            if let Err(e) = checks::check_supply(cluster, &snap) {
                row.failures.push(e);
            }
            row.reverted_confirmed = checks::reverted_confirmed(watch, &snap);
            match checks::check_finality(watch, &snap) {
                Ok(went_down) => row.finalized_went_down = went_down,
                Err(e) => row.failures.push(e),
            }
            match checks::check_txs(cluster, &snap, &bank.acked) {
                Ok(count) => (row.included, row.pending) = (count.included, count.pending),
                Err((count, e)) => {
                    (row.included, row.pending) = (count.included, count.pending);
                    row.failures.push(e);
                }
            }
            if scenario == Scenario::Crash {
                let mut seen = crash.blocks_seen.clone();
                seen.extend(snap.blocks.iter().cloned());
                for i in 1..NODES {
                    seen.extend(checks::blocks_from(cluster, i, 1));
                }
                let doubles = checks::double_signs(cluster.kind, &seen);
                row.double_signs = Some(doubles.len() as u64);
                for d in doubles.into_iter().take(3) {
                    row.failures.push(format!("double sign: {d}"));
                }
            }
        }
    }
}

/// Node 0's finalized height.
fn finalized(cluster: &Cluster) -> Option<u64> {
    cluster.info(0)?.get("finalized_height")?.as_u64()
}

fn max_height(cluster: &Cluster) -> u64 {
    (0..NODES)
        .filter_map(|i| cluster.height(i))
        .max()
        .unwrap_or(0)
}

/// Runs the fault and heals it. False when a signal stopped it.
fn inject(
    scenario: Scenario,
    cluster: &Cluster,
    t: &Timing,
    seed: u64,
    crash: &mut CrashReport,
    signals: &SignalWatch,
    tag: &str,
) -> anyhow::Result<bool> {
    match scenario {
        Scenario::Disconnect => {
            say(&format!(
                "{tag} node {TARGET} cut off from the others for {} s",
                t.fault.as_secs()
            ));
            cluster.isolate(TARGET)?;
            std::thread::sleep(t.fault);
            cluster.heal()?;
        }
        Scenario::Pause => {
            say(&format!(
                "{tag} node {TARGET} paused (SIGSTOP) for {} s",
                t.fault.as_secs()
            ));
            cluster.pause(TARGET);
            std::thread::sleep(t.fault);
            cluster.resume(TARGET);
        }
        Scenario::Restart => {
            say(&format!(
                "{tag} node {TARGET} killed (SIGKILL) and restarted"
            ));
            cluster.kill(TARGET);
            std::thread::sleep(Duration::from_secs(1));
            cluster.restart(TARGET, &[])?;
        }
        Scenario::Split => {
            say(&format!(
                "{tag} split 0,1 | 2,3 for {} s",
                t.split.as_secs()
            ));
            cluster.partition(&[vec![0, 1], vec![2, 3]])?;
            std::thread::sleep(t.split);
            cluster.heal()?;
        }
        Scenario::ClockSkew => {
            say(&format!(
                "{tag} node {TARGET} restarted with --clock-skew {SKEW_SECS}, running {} s",
                t.fault.as_secs()
            ));
            cluster.stop_node(TARGET);
            cluster.restart(TARGET, &["--clock-skew".into(), SKEW_SECS.to_string()])?;
            std::thread::sleep(t.fault);
        }
        Scenario::Crash => return crash_cycles(cluster, t, seed, crash, signals, tag),
    }
    Ok(true)
}

/// Kills the victim at random points, restarting it each time and checking it.
fn crash_cycles(
    cluster: &Cluster,
    t: &Timing,
    seed: u64,
    report: &mut CrashReport,
    signals: &SignalWatch,
    tag: &str,
) -> anyhow::Result<bool> {
    let mut rng = StdRng::seed_from_u64(seed);
    let v = CRASH_VICTIM;
    for cycle in 0..t.crash_cycles {
        if signals.count() > 0 {
            return Ok(false);
        }
        // Every third kill lands while the victim switches branch: it is cut off long
        // enough to build on its own, healed, and killed as it syncs the heavier branch.
        let while_reorging = cycle % 3 == 2;
        if while_reorging {
            cluster.isolate(v)?;
            std::thread::sleep(Duration::from_millis(rng.random_range(2_000..4_000)));
            cluster.heal()?;
            std::thread::sleep(Duration::from_millis(rng.random_range(0..1_500)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..2_500)));
        }
        let before = cluster.info(v);
        let final_before = before.as_ref().and_then(|i| {
            Some((
                i.get("finalized_height")?.as_u64()?,
                i.get("finalized_hash")?.as_str()?.to_owned(),
            ))
        });
        let height = before
            .as_ref()
            .and_then(|i| i.get("height")?.as_u64())
            .unwrap_or(0);
        report
            .blocks_seen
            .extend(checks::blocks_from(cluster, v, height.saturating_sub(8)));
        cluster.kill(v);
        report.kills += 1;
        cluster.restart(v, &[])?;
        say(&format!(
            "{tag} kill {}/{} ({}) at #{height}; restarted",
            cycle + 1,
            t.crash_cycles,
            if while_reorging {
                "while reorging"
            } else {
                "while producing"
            }
        ));
        check_after_restart(cluster, v, final_before, report, cycle + 1);
    }
    Ok(true)
}

/// After a restart: finality did not go back, and the node's state at its head equals a
/// reference node's at the same block.
fn check_after_restart(
    cluster: &Cluster,
    v: usize,
    final_before: Option<(u64, String)>,
    report: &mut CrashReport,
    kill: usize,
) {
    if let Some((height, hash)) = final_before {
        let after = cluster
            .info(v)
            .and_then(|i| i.get("finalized_height")?.as_u64());
        if after.is_none_or(|a| a < height) {
            report.failures.push(format!(
                "kill {kill}: finalized height {height} before the kill, {after:?} after"
            ));
        }
        if cluster.hash_at(v, height).as_deref() != Some(hash.as_str()) {
            report.failures.push(format!(
                "kill {kill}: finalized block {hash} at #{height} is gone after the restart"
            ));
        }
    }
    let reference = 0;
    let addresses: Vec<Address> = cluster
        .alloc_addresses()
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut root_checked = false;
    while Instant::now() < deadline {
        let Some(head) = cluster
            .info(v)
            .and_then(|i| i.get("head_hash")?.as_str().map(str::to_owned))
        else {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        };
        let roots = [v, reference].map(|i| {
            cluster.clients[i]
                .call("chain_getBlock", json!([head]))
                .ok()
                .and_then(|b| {
                    b.get("state_root")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
        });
        if let [Some(mine), Some(theirs)] = &roots {
            if !root_checked {
                if mine != theirs {
                    report.failures.push(format!(
                        "kill {kill}: state root at {head} is {mine} on node {v}, {theirs} on node {reference}"
                    ));
                }
                root_checked = true;
            }
            // The state itself: every account's balance, read at the same head on both.
            if let (Some((h1, b1)), Some((h2, b2))) = (
                checks::balances_at_head(cluster, v, &addresses),
                checks::balances_at_head(cluster, reference, &addresses),
            ) && h1 == h2
            {
                if b1 != b2 {
                    report.failures.push(format!(
                        "kill {kill}: balances at {h1} differ between node {v} and node {reference}"
                    ));
                }
                report.state_checks += 1;
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if !root_checked {
        report.failures.push(format!(
            "kill {kill}: node {v}'s head never appeared on node {reference} within 30 s"
        ));
    }
}
