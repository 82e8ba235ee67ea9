//! PBFT against its message pattern, on the real replicas ([`miner::pbft::PbftMachine`])
//! in the simulator: a full mesh of validators, every message taking exactly `d` (no
//! jitter, no loss, an uplink that costs no time), no load.
//!
//! - **Commit latency.** From the primary's proposal (the node hands its machine the block
//!   it built; the PRE-PREPARE leaves in that step) to each replica's decision (its machine
//!   asks to commit the block): PRE-PREPARE, PREPARE and COMMIT are one delay each, and
//!   validation takes no virtual time, so `3d`.
//! - **Messages per committed block.** One delivery per peer: the PRE-PREPARE to `n−1`
//!   replicas, a PREPARE from each of the `n` (the primary included, as this machine has
//!   it) to `n−1`, a COMMIT from each of the `n` to `n−1`: `(n−1)(2n+1)`, which grows as
//!   `n²`; the log-log slope fitted over n = 4, 7, 10, 16, 31 must lie in [1.8, 2.2].
//! - **View change.** The primary is killed between two heights. The next height's view
//!   timer was armed at the last decision to fire `τ` (the view timeout) after the
//!   primary's build time `b`, the same instant at every live replica: each sends
//!   VIEW-CHANGE; the new primary holds 2f+1 of them (its own and those that take `d`)
//!   at `b + τ + d`, sends NEW-VIEW and, as nothing was prepared, a fresh PRE-PREPARE at
//!   once; then PREPARE and COMMIT as in the normal case. The decision comes at
//!   `b + τ + 4d`: measured from `b` to the first replica's decision, predicted `τ + 4d`.

use super::Table;
use crate::compare::faults::Fault;
use crate::simulate::world::{self, Outcome, Setup, Traced, VoteEvent};
use crate::simulate::{author_keys, dev_spec};
use anyhow::Context;
use config::{EngineKind, EngineSpec};
use std::collections::BTreeMap;

/// Seconds between heights: the primary proposes this long after its parent.
const BLOCK_TIME: u64 = 2;
/// Validators of the latency and view-change points.
const NODES: usize = 4;
/// One-way delays of the latency points, ms.
pub const LATENCY_DELAYS: [u64; 3] = [10, 50, 200];
/// Validator counts of the message-count fit.
pub const MESSAGE_NODES: [usize; 5] = [4, 7, 10, 16, 31];
/// One-way delay of the message-count points, ms.
const MESSAGE_DELAY: u64 = 50;
/// (one-way delay, view timeout) of the view-change points, ms.
pub const VIEW_CHANGE_POINTS: [(u64, u64); 4] =
    [(20, 1_000), (50, 1_000), (50, 3_000), (100, 2_000)];
/// Latency and view-change delay may be off their prediction by this fraction.
pub const TOLERANCE: f64 = 0.10;
/// Where the fitted exponent of messages per block against n must lie.
pub const EXPONENT_RANGE: (f64, f64) = (1.8, 2.2);
/// The primary is killed this long after genesis: between the decision of height 2 (at
/// 4 s + 3d) and its build time for height 3 (6 s).
const KILL_AT_S: u64 = 5;

/// `nodes` validators, each message taking exactly `delay_ms`, for `duration_ms`.
fn setup(nodes: usize, delay_ms: u64, view_timeout_ms: u64, duration_ms: u64, seed: u64) -> Setup {
    let authors = author_keys(nodes);
    let mut spec = dev_spec(EngineKind::Pbft, &authors, &[], Some(BLOCK_TIME));
    if let EngineSpec::Pbft(params) = &mut spec.engine {
        params.view_timeout_ms = view_timeout_ms;
        params.max_view_timeout_ms = params.max_view_timeout_ms.max(view_timeout_ms);
    }
    super::voting_setup(spec, authors, delay_ms, duration_ms, seed)
}

/// The run's millisecond of genesis.
fn start_of(setup: &Setup) -> u64 {
    setup.spec.genesis.timestamp.saturating_mul(1000)
}

/// Each height's proposal time, and each (height, node)'s decision time.
fn proposals_and_decisions(trace: &[Traced]) -> (BTreeMap<u64, u64>, Vec<(u64, u64)>) {
    let mut proposed = BTreeMap::new();
    let mut decided = Vec::new();
    for t in trace {
        match t.what {
            VoteEvent::Proposed { height } => {
                proposed.entry(height).or_insert(t.at);
            }
            VoteEvent::Decided { height } => decided.push((height, t.at)),
            _ => {}
        }
    }
    (proposed, decided)
}

/// One normal-case latency point.
#[derive(Debug, Clone)]
pub struct LatencyPoint {
    pub delay_ms: u64,
    /// Decisions measured (heights × replicas).
    pub decisions: usize,
    /// Mean from proposal to decision, ms.
    pub mean_ms: f64,
    pub max_ms: u64,
    /// `3d`.
    pub theory_ms: f64,
}

/// `heights` heights on [`NODES`] validators with one-way delay `delay_ms`.
pub fn latency_point(delay_ms: u64, heights: u64, seed: u64) -> anyhow::Result<LatencyPoint> {
    let duration = heights * BLOCK_TIME * 1000 + 3 * delay_ms + 1;
    let outcome = world::simulate(setup(NODES, delay_ms, 4_000, duration, seed), &mut |_| {})?;
    let (proposed, decided) = proposals_and_decisions(&outcome.votes.trace);
    let latencies: Vec<u64> = decided
        .iter()
        .filter_map(|(h, at)| proposed.get(h).map(|p| at - p))
        .collect();
    if latencies.is_empty() {
        anyhow::bail!("PBFT with d = {delay_ms} ms decided nothing in {duration} ms");
    }
    Ok(LatencyPoint {
        delay_ms,
        decisions: latencies.len(),
        mean_ms: latencies.iter().sum::<u64>() as f64 / latencies.len() as f64,
        max_ms: latencies.iter().copied().max().unwrap_or(0),
        theory_ms: 3.0 * delay_ms as f64,
    })
}

/// One message-count point.
#[derive(Debug, Clone)]
pub struct MessagePoint {
    pub nodes: usize,
    pub heights: u64,
    pub messages: u64,
    pub per_block: f64,
    /// `(n−1)(2n+1)`.
    pub exact: f64,
}

/// `heights` heights on `nodes` validators: consensus messages per decided height.
pub fn message_point(nodes: usize, heights: u64, seed: u64) -> anyhow::Result<MessagePoint> {
    let duration = heights * BLOCK_TIME * 1000 + 3 * MESSAGE_DELAY + 1;
    let outcome = world::simulate(
        setup(nodes, MESSAGE_DELAY, 4_000, duration, seed),
        &mut |_| {},
    )?;
    let decided = decided_heights(&outcome);
    if decided != heights {
        anyhow::bail!("PBFT on {nodes} validators decided {decided} of {heights} heights");
    }
    let n = nodes as f64;
    Ok(MessagePoint {
        nodes,
        heights,
        messages: outcome.votes.messages,
        per_block: outcome.votes.messages as f64 / heights as f64,
        exact: (n - 1.0) * (2.0 * n + 1.0),
    })
}

/// The highest height node 0 decided.
fn decided_heights(outcome: &Outcome) -> u64 {
    outcome
        .votes
        .trace
        .iter()
        .filter_map(|t| match t.what {
            VoteEvent::Decided { height } if t.node == 0 => Some(height),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// The least-squares slope of `ln y` against `ln x`.
pub fn log_log_slope(points: &[(f64, f64)]) -> f64 {
    let logs: Vec<(f64, f64)> = points.iter().map(|(x, y)| (x.ln(), y.ln())).collect();
    let k = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / k;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / k;
    let sxy: f64 = logs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = logs.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    sxy / sxx
}

/// One view-change point.
#[derive(Debug, Clone)]
pub struct ViewChangePoint {
    pub delay_ms: u64,
    pub timeout_ms: u64,
    /// From the dead primary's build time to the first decision after it, ms.
    pub measured_ms: u64,
    /// `τ + 4d`.
    pub theory_ms: f64,
    /// The view the next height was decided in.
    pub view: Option<String>,
}

/// Kills the primary at [`KILL_AT_S`] and times the next decision.
pub fn view_change_point(
    delay_ms: u64,
    timeout_ms: u64,
    seed: u64,
) -> anyhow::Result<ViewChangePoint> {
    let duration = (KILL_AT_S + BLOCK_TIME) * 1000 + 2 * timeout_ms + 8 * delay_ms;
    let mut setup = setup(NODES, delay_ms, timeout_ms, duration, seed);
    setup.faults = vec![Fault::KillProducer { at_s: KILL_AT_S }];
    let start = start_of(&setup);
    let outcome = world::simulate(setup, &mut |_| {})?;
    let kill = start + KILL_AT_S * 1000;
    let (_, decided) = proposals_and_decisions(&outcome.votes.trace);
    let last_before = decided
        .iter()
        .filter(|(_, at)| *at < kill)
        .map(|(h, _)| *h)
        .max()
        .context("nothing decided before the primary was killed")?;
    // Heights are proposed on the block-time grid (each at its parent's timestamp plus
    // the block time, decided well within it).
    let build_at = start + (last_before + 1) * BLOCK_TIME * 1000;
    let next = decided
        .iter()
        .filter(|(h, at)| *h == last_before + 1 && *at > kill)
        .map(|(_, at)| *at)
        .min()
        .with_context(|| {
            format!(
                "height {} was never decided after the kill",
                last_before + 1
            )
        })?;
    let view = outcome
        .votes
        .trace
        .iter()
        .rev()
        .find_map(|t| match &t.what {
            VoteEvent::Status(fields) => fields
                .iter()
                .find(|(k, _)| *k == "view")
                .map(|(_, v)| v.clone()),
            _ => None,
        });
    Ok(ViewChangePoint {
        delay_ms,
        timeout_ms,
        measured_ms: next.saturating_sub(build_at),
        theory_ms: (timeout_ms + 4 * delay_ms) as f64,
        view,
    })
}

fn error(measured: f64, theory: f64) -> f64 {
    measured / theory - 1.0
}

/// One row of the sweep's table.
struct Check {
    check: &'static str,
    setting: String,
    measured: String,
    predicted: String,
    error: f64,
    within: bool,
}

/// The table's rows as they come, each told to `progress`.
struct Rows<'a> {
    rows: Vec<Vec<String>>,
    ok: bool,
    progress: &'a mut dyn FnMut(String),
}

impl Rows<'_> {
    fn add(&mut self, c: Check) {
        self.ok &= c.within;
        let line = vec![
            c.check.to_owned(),
            c.setting,
            c.measured,
            c.predicted,
            format!("{:+.1}%", c.error * 100.0),
            if c.within { "yes" } else { "NO" }.to_owned(),
        ];
        (self.progress)(line.join(" · "));
        self.rows.push(line);
    }
}

fn latency_rows(rows: &mut Rows<'_>, heights: u64, seed: u64) -> anyhow::Result<()> {
    for (i, d) in LATENCY_DELAYS.iter().enumerate() {
        let p = latency_point(*d, heights, seed.wrapping_add(i as u64))?;
        let err = error(p.mean_ms, p.theory_ms);
        rows.add(Check {
            check: "commit latency (proposal → decision)",
            setting: format!(
                "n = {NODES}, d = {} ms, {} decisions",
                p.delay_ms, p.decisions
            ),
            measured: format!("{:.1} ms (max {} ms)", p.mean_ms, p.max_ms),
            predicted: format!("3d = {:.0} ms", p.theory_ms),
            error: err,
            within: err.abs() <= TOLERANCE,
        });
    }
    Ok(())
}

/// The message-count points and the fitted exponent.
fn message_rows(
    rows: &mut Rows<'_>,
    heights: u64,
    seed: u64,
) -> anyhow::Result<(Vec<MessagePoint>, f64)> {
    let mut counts = Vec::new();
    for (i, n) in MESSAGE_NODES.iter().enumerate() {
        let p = message_point(*n, heights, seed.wrapping_add(10 + i as u64))?;
        let err = error(p.per_block, p.exact);
        rows.add(Check {
            check: "messages per committed block",
            setting: format!("n = {n}, {} blocks", p.heights),
            measured: format!("{:.1} ({} in all)", p.per_block, p.messages),
            predicted: format!("(n−1)(2n+1) = {:.0}", p.exact),
            error: err,
            within: err.abs() <= TOLERANCE,
        });
        counts.push(p);
    }
    let slope = log_log_slope(
        &counts
            .iter()
            .map(|p| (p.nodes as f64, p.per_block))
            .collect::<Vec<_>>(),
    );
    rows.add(Check {
        check: "log-log exponent of messages per block in n",
        setting: format!("n = {MESSAGE_NODES:?}"),
        measured: format!("{slope:.3}"),
        predicted: format!("2 (accepted {} to {})", EXPONENT_RANGE.0, EXPONENT_RANGE.1),
        error: slope / 2.0 - 1.0,
        within: (EXPONENT_RANGE.0..=EXPONENT_RANGE.1).contains(&slope),
    });
    Ok((counts, slope))
}

fn view_change_rows(rows: &mut Rows<'_>, seed: u64) -> anyhow::Result<()> {
    for (i, (d, tau)) in VIEW_CHANGE_POINTS.iter().enumerate() {
        let p = view_change_point(*d, *tau, seed.wrapping_add(20 + i as u64))?;
        let err = error(p.measured_ms as f64, p.theory_ms);
        rows.add(Check {
            check: "next decision after the primary dies (from its build time)",
            setting: format!(
                "n = {NODES}, d = {} ms, τ = {} ms, decided in view {}",
                p.delay_ms,
                p.timeout_ms,
                p.view.as_deref().unwrap_or("?")
            ),
            measured: format!("{} ms", p.measured_ms),
            predicted: format!("τ + 4d = {:.0} ms", p.theory_ms),
            error: err,
            within: err.abs() <= TOLERANCE,
        });
    }
    Ok(())
}

/// The whole sweep: `heights` heights a latency point (a tenth of them, at least two, per
/// message-count point, whose cost grows as n²).
pub(super) fn table(
    heights: u64,
    seed: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Table> {
    let mut rows = Rows {
        rows: Vec::new(),
        ok: true,
        progress,
    };
    latency_rows(&mut rows, heights, seed)?;
    let (counts, slope) = message_rows(&mut rows, (heights / 10).max(2), seed)?;
    view_change_rows(&mut rows, seed)?;
    let ok = rows.ok;
    Ok(Table {
        name: "pbft",
        header: "| check | setting | measured | predicted | error | within tolerance |",
        rows: rows.rows,
        points: counts
            .iter()
            .map(|p| (p.nodes as f64, p.per_block, p.exact))
            .collect(),
        x_label: "validators (n)",
        y_label: "consensus messages per committed block",
        curve: |n| (n - 1.0) * (2.0 * n + 1.0),
        x_range: (0.0, 32.0),
        verdict: format!(
            "latency and view change within {:.0}% of the prediction, message exponent {slope:.3} \
             in [{}, {}]: {}",
            TOLERANCE * 100.0,
            EXPONENT_RANGE.0,
            EXPONENT_RANGE.1,
            if ok { "yes" } else { "NO" }
        ),
        ok,
        unit: "heights a latency point (a tenth, at least 2, a message-count point)",
        appendix: String::new(),
        extra_svgs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_log_slope_of_a_power_law_is_its_exponent() {
        let square: Vec<(f64, f64)> = [4.0, 7.0, 31.0].iter().map(|n| (*n, 3.0 * n * n)).collect();
        assert!((log_log_slope(&square) - 2.0).abs() < 1e-12);
        let line: Vec<(f64, f64)> = [1.0, 10.0, 100.0].iter().map(|n| (*n, *n)).collect();
        assert!((log_log_slope(&line) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pbft_commits_three_one_way_delays_after_the_proposal() {
        let p = latency_point(50, 4, 1).expect("runs");
        assert_eq!(p.decisions, 4 * NODES, "{p:?}");
        assert!(error(p.mean_ms, p.theory_ms).abs() <= TOLERANCE, "{p:?}");
    }

    #[test]
    fn pbft_messages_per_block_grow_as_n_squared() {
        let points: Vec<MessagePoint> = [4, 7, 10]
            .iter()
            .map(|n| message_point(*n, 2, 3).expect("runs"))
            .collect();
        for p in &points {
            assert!(error(p.per_block, p.exact).abs() <= TOLERANCE, "{p:?}");
        }
        let slope = log_log_slope(
            &points
                .iter()
                .map(|p| (p.nodes as f64, p.per_block))
                .collect::<Vec<_>>(),
        );
        // Over 4 to 10 the −n term of (n−1)(2n+1) still shows: the slope is above 2.
        assert!((1.8..=2.4).contains(&slope), "{slope}");
    }

    #[test]
    fn pbft_recovers_from_a_dead_primary_after_the_timeout_and_four_delays() {
        let p = view_change_point(50, 1_000, 2).expect("runs");
        assert!(
            error(p.measured_ms as f64, p.theory_ms).abs() <= TOLERANCE,
            "{p:?}"
        );
        assert_eq!(p.view.as_deref(), Some("1"), "{p:?}");
    }
}
