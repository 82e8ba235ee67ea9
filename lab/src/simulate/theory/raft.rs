//! Raft's leader election against closed forms, on the real servers
//! ([`miner::raft::RaftMachine`], with pre-vote) in the simulator: a full mesh, every
//! message taking exactly `d`, no load, election timeouts uniform on `[T, T + r)`.
//!
//! A trial elects a first leader, kills it right after its first heartbeat (so every
//! surviving follower restarts its election timer at the same instant `h`, when that
//! heartbeat arrives), and runs until another server leads. Each trial has its own server
//! keys, from which the machines draw their timeouts.
//!
//! - **First campaign.** The first of the `N−1` surviving timers fires at `h + T + min`,
//!   and the minimum of `N−1` uniforms on `[0, r)` has mean `r/N`: predicted `T + r/N`
//!   after `h` (then this server asks for pre-votes, and stands `2d` later).
//! - **Contested elections.** The first server asks for pre-votes at `t₁`, has them at
//!   `t₁ + 2d`, and its RequestVote reaches the others at `t₁ + 3d`, which moves them into
//!   its term. A server whose timer fires at `t₁ + x` is granted pre-votes (the others
//!   are still in the old term when its request arrives at `t₁ + x + d < t₁ + 3d` iff
//!   `x < 2d`) and stands at `t₁ + x + 2d`, before the first's RequestVote reaches it, iff
//!   `x < d`. So a second candidate enters the same term exactly when another timer
//!   fires within `d` of the first: the gap between the two smallest of `N−1` uniforms
//!   exceeds `d` with probability `(1 − d/r)^(N−1)`, and the share of contested elections
//!   is `1 − (1 − d/r)^(N−1)`. A contested election ends in a split vote when no candidate
//!   gathers a majority of the `N` servers in that term.
//! - **Time to leader** (the Raft paper's Figure 16): from the crash to the next leader,
//!   for `r` ∈ {5, 50, 150} ms with `T` = 150 ms and 5 servers; more randomness, fewer
//!   split votes and a shorter tail.
//!
//! A trial's start holds when `T > 3d` (the contested-election points keep `d` ≤ 200 ms
//! against `T` = 700 ms, the time-to-leader curves 5 ms against 150 ms): the timers set before the heartbeat (a vote granted at `−d`, a losing
//! candidate's at `−2d` or later, counting from the crash) cannot fire before it arrives
//! at `+d`, so the heartbeat is every survivor's last restart.

use super::Table;
use crate::simulate::dev_spec;
use crate::simulate::world::{self, Outcome, Setup, VoteEvent};
use chain::SecretKey;
use config::{EngineKind, EngineSpec};
use std::collections::BTreeSet;

/// The least election timeout of the time-to-leader curves, ms (the Raft paper's).
pub const T_MS: u64 = 150;
/// The least election timeout and the spread `r` of the contested-election points, ms:
/// wide, so that the millisecond grid of timers and delays is fine against `d` (two timers
/// exactly `d` apart count as contested here, an instant the closed form gives no weight),
/// and with `T > 3d` at every point.
const CONTEST_T_MS: u64 = 700;
const SPREAD_MS: u64 = 1_000;
/// (servers, d/r) of the contested-election points.
pub const CONTEST_POINTS: [(usize, f64); 6] =
    [(3, 0.2), (5, 0.1), (5, 0.15), (5, 0.2), (7, 0.1), (7, 0.2)];
/// The spreads of the time-to-leader distribution, ms (Figure 16's).
pub const CDF_SPREADS: [u64; 3] = [5, 50, 150];
/// Servers and one-way delay of the time-to-leader distribution.
const CDF_SERVERS: usize = 5;
const CDF_DELAY_MS: u64 = 5;
/// A trial without a new leader this long after the crash counts as none.
const TRIAL_LIMIT_MS: u64 = 20_000;
/// Measured may be off the prediction by this fraction.
pub const TOLERANCE: f64 = 0.10;

/// One trial's setup: `servers` with their own keys, timeouts on `[T, T + r)`.
fn setup(timing: Timing, servers: usize, seed: u64, trial: u64) -> Setup {
    let Timing {
        least_ms,
        spread_ms,
        delay_ms,
    } = timing;
    let authors: Vec<(String, SecretKey)> = (0..servers)
        .map(|i| {
            let key = SecretKey::from_seed(&format!("toychain/sweep/raft/{seed}/{trial}/{i}"));
            (format!("server{i}"), key)
        })
        .collect();
    // No blocks: the leader's block timer is an hour away; elections are what is measured.
    let mut spec = dev_spec(EngineKind::Raft, &authors, &[], Some(3_600));
    if let EngineSpec::Raft(params) = &mut spec.engine {
        params.election_timeout_min_ms = least_ms;
        params.election_timeout_max_ms = least_ms + spread_ms;
        params.heartbeat_ms = least_ms / 3;
    }
    let mut setup = super::voting_setup(
        spec,
        authors,
        delay_ms,
        2 * (least_ms + spread_ms) * 20 + TRIAL_LIMIT_MS,
        seed,
    );
    setup.probe.kill_first_leader = true;
    setup
}

/// A trial's election timeouts `[least, least + spread)` and one-way delay, ms.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub least_ms: u64,
    pub spread_ms: u64,
    pub delay_ms: u64,
}

/// What one trial's election after the crash looked like.
#[derive(Debug, Clone, PartialEq)]
pub struct Election {
    /// From the heartbeat's arrival to the first server asking for pre-votes, ms.
    pub first_campaign_ms: u64,
    /// Servers that stood as candidates in the term after the dead leader's.
    pub candidates: usize,
    /// Some candidate of that term won it.
    pub won_first_term: bool,
    /// From the crash to the next leader, ms; `None` within [`TRIAL_LIMIT_MS`].
    pub to_leader_ms: Option<u64>,
}

fn field<'a>(fields: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads a trial's election from its trace.
fn election(outcome: &Outcome, delay_ms: u64) -> anyhow::Result<Election> {
    let trace = &outcome.votes.trace;
    let (killed_at, killed) = trace
        .iter()
        .find(|t| t.what == VoteEvent::Killed)
        .map(|t| (t.at, t.node))
        .ok_or_else(|| anyhow::anyhow!("no leader was ever elected"))?;
    let old_term: u64 = trace
        .iter()
        .rev()
        .filter(|t| t.node == killed && t.at <= killed_at)
        .find_map(|t| match &t.what {
            VoteEvent::Status(f) => field(f, "term").and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("the dead leader's term is not in the trace"))?;
    let heard = killed_at + delay_ms;
    let mut first_campaign = None;
    let mut candidates = BTreeSet::new();
    let mut won_first_term = false;
    let mut leader_at = None;
    for t in trace
        .iter()
        .filter(|t| t.at >= killed_at && t.node != killed)
    {
        let VoteEvent::Status(f) = &t.what else {
            continue;
        };
        let term: Option<u64> = field(f, "term").and_then(|v| v.parse().ok());
        match field(f, "role") {
            Some("pre-candidate") if first_campaign.is_none() => first_campaign = Some(t.at),
            Some("candidate") if term == Some(old_term + 1) => {
                candidates.insert(t.node);
            }
            Some("leader") if leader_at.is_none() => {
                leader_at = Some(t.at);
                won_first_term = term == Some(old_term + 1);
            }
            _ => {}
        }
    }
    let first =
        first_campaign.ok_or_else(|| anyhow::anyhow!("no server campaigned after the crash"))?;
    Ok(Election {
        first_campaign_ms: first.saturating_sub(heard),
        candidates: candidates.len(),
        won_first_term,
        to_leader_ms: leader_at.map(|at| at - killed_at),
    })
}

/// `trials` trials of `servers` with spread `r` and delay `d`.
pub fn elections(
    timing: Timing,
    servers: usize,
    trials: u64,
    seed: u64,
) -> anyhow::Result<Vec<Election>> {
    (0..trials)
        .map(|trial| {
            let outcome = world::simulate(setup(timing, servers, seed, trial), &mut |_| {})?;
            election(&outcome, timing.delay_ms)
        })
        .collect()
}

/// One contested-election point.
#[derive(Debug, Clone)]
pub struct ContestPoint {
    pub servers: usize,
    pub d_over_r: f64,
    pub trials: usize,
    pub contested: usize,
    pub split: usize,
    pub share: f64,
    /// `1 − (1 − d/r)^(N−1)`.
    pub share_theory: f64,
    pub first_campaign_ms: f64,
    /// `T + r/N`.
    pub first_theory_ms: f64,
}

impl ContestPoint {
    pub fn share_error(&self) -> f64 {
        self.share / self.share_theory - 1.0
    }

    pub fn first_error(&self) -> f64 {
        self.first_campaign_ms / self.first_theory_ms - 1.0
    }

    pub fn ok(&self) -> bool {
        self.share_error().abs() <= TOLERANCE && self.first_error().abs() <= TOLERANCE
    }
}

/// `trials` trials of `servers` with `d = d_over_r · r`, `r` = [`SPREAD_MS`].
pub fn contest_point(
    servers: usize,
    d_over_r: f64,
    trials: u64,
    seed: u64,
) -> anyhow::Result<ContestPoint> {
    let delay = (d_over_r * SPREAD_MS as f64).round() as u64;
    let timing = Timing {
        least_ms: CONTEST_T_MS,
        spread_ms: SPREAD_MS,
        delay_ms: delay,
    };
    let runs = elections(timing, servers, trials, seed)?;
    let contested = runs.iter().filter(|e| e.candidates >= 2).count();
    let split = runs
        .iter()
        .filter(|e| e.candidates >= 2 && !e.won_first_term)
        .count();
    let n = servers as f64;
    let x = delay as f64 / SPREAD_MS as f64;
    Ok(ContestPoint {
        servers,
        d_over_r: x,
        trials: runs.len(),
        contested,
        split,
        share: contested as f64 / runs.len().max(1) as f64,
        share_theory: 1.0 - (1.0 - x).powf(n - 1.0),
        first_campaign_ms: runs.iter().map(|e| e.first_campaign_ms as f64).sum::<f64>()
            / runs.len().max(1) as f64,
        first_theory_ms: CONTEST_T_MS as f64 + SPREAD_MS as f64 / n,
    })
}

/// The time-to-leader distribution of one spread.
#[derive(Debug, Clone)]
pub struct LeaderTimes {
    pub spread_ms: u64,
    /// Sorted; trials without a leader in time are left out and counted.
    pub times_ms: Vec<u64>,
    pub none: usize,
    pub split: usize,
}

impl LeaderTimes {
    /// The `q`-quantile (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let k = self.times_ms.len();
        if k == 0 {
            return None;
        }
        let rank = ((q * k as f64).ceil() as usize).clamp(1, k);
        Some(self.times_ms[rank - 1])
    }
}

pub fn leader_times(spread_ms: u64, trials: u64, seed: u64) -> anyhow::Result<LeaderTimes> {
    let timing = Timing {
        least_ms: T_MS,
        spread_ms,
        delay_ms: CDF_DELAY_MS,
    };
    let runs = elections(timing, CDF_SERVERS, trials, seed)?;
    let mut times_ms: Vec<u64> = runs.iter().filter_map(|e| e.to_leader_ms).collect();
    times_ms.sort_unstable();
    Ok(LeaderTimes {
        spread_ms,
        none: runs.len() - times_ms.len(),
        split: runs
            .iter()
            .filter(|e| e.candidates >= 2 && !e.won_first_term)
            .count(),
        times_ms,
    })
}

/// The whole sweep: `trials` trials a contested-election point, half as many a
/// time-to-leader curve.
pub(super) fn table(
    trials: u64,
    seed: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Table> {
    let mut points = Vec::new();
    for (i, (servers, x)) in CONTEST_POINTS.iter().enumerate() {
        let p = contest_point(*servers, *x, trials, seed.wrapping_add(i as u64))?;
        progress(format!(
            "N = {}, d/r = {:.2}: {} of {} contested = {:.3} (theory {:.3}, {:+.1}%), {} split; \
             first campaign {:.1} ms after the heartbeat (T + r/N = {:.1}, {:+.1}%)",
            p.servers,
            p.d_over_r,
            p.contested,
            p.trials,
            p.share,
            p.share_theory,
            p.share_error() * 100.0,
            p.split,
            p.first_campaign_ms,
            p.first_theory_ms,
            p.first_error() * 100.0
        ));
        points.push(p);
    }
    let mut cdfs = Vec::new();
    for (i, r) in CDF_SPREADS.iter().enumerate() {
        let l = leader_times(*r, trials.div_ceil(2), seed.wrapping_add(100 + i as u64))?;
        progress(format!(
            "r = {r} ms: median {:?} ms, 95th {:?} ms, max {:?} ms to a leader; {} split, {} none",
            l.quantile(0.5),
            l.quantile(0.95),
            l.times_ms.last(),
            l.split,
            l.none
        ));
        cdfs.push(l);
    }
    let ok = points.iter().all(ContestPoint::ok);
    Ok(Table {
        name: "raft",
        header: "| servers N | d/r | trials | contested | share | 1 − (1 − d/r)^(N−1) | error | split votes | first campaign after the heartbeat, ms | T + r/N | error |",
        rows: points
            .iter()
            .map(|p| {
                vec![
                    p.servers.to_string(),
                    format!("{:.2}", p.d_over_r),
                    p.trials.to_string(),
                    p.contested.to_string(),
                    format!("{:.3}", p.share),
                    format!("{:.3}", p.share_theory),
                    format!("{:+.1}%", p.share_error() * 100.0),
                    p.split.to_string(),
                    format!("{:.1}", p.first_campaign_ms),
                    format!("{:.1}", p.first_theory_ms),
                    format!("{:+.1}%", p.first_error() * 100.0),
                ]
            })
            .collect(),
        // The chart shows N = 5's points against its curve.
        points: points
            .iter()
            .filter(|p| p.servers == 5)
            .map(|p| (p.d_over_r, p.share, p.share_theory))
            .collect(),
        x_label: "one-way delay / timeout spread (d/r), 5 servers",
        y_label: "share of contested elections",
        curve: |x| 1.0 - (1.0 - x).powi(4),
        x_range: (0.0, 0.25),
        verdict: format!(
            "T = {CONTEST_T_MS} ms, r = {SPREAD_MS} ms; {} point(s) within {:.0}% of both predictions: {}",
            points.len(),
            TOLERANCE * 100.0,
            if ok { "yes" } else { "NO" }
        ),
        ok,
        unit: "trials a point",
        appendix: cdf_markdown(&cdfs),
        extra_svgs: vec![("leader", cdf_chart(&cdfs)?)],
    })
}

/// The time-to-leader table.
fn cdf_markdown(cdfs: &[LeaderTimes]) -> String {
    let mut md = format!(
        "\n## Time to a new leader after the leader crashes\n\n{CDF_SERVERS} servers, T = {T_MS} ms, \
         d = {CDF_DELAY_MS} ms (the Raft paper's Figure 16); from the crash to the next leader. \
         The CDF is sweep-raft-leader.svg.\n\n| r, ms | trials | median, ms | 90th, ms | 99th, ms | max, ms | split votes | no leader in {} s |\n|---|---|---|---|---|---|---|---|\n",
        TRIAL_LIMIT_MS / 1000
    );
    for l in cdfs {
        let q = |q| {
            l.quantile(q)
                .map_or_else(|| "–".to_owned(), |v| v.to_string())
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            l.spread_ms,
            l.times_ms.len() + l.none,
            q(0.5),
            q(0.9),
            q(0.99),
            l.times_ms
                .last()
                .map_or_else(|| "–".to_owned(), u64::to_string),
            l.split,
            l.none
        ));
    }
    md
}

/// The CDF of the time to a new leader, one line per spread.
fn cdf_chart(cdfs: &[LeaderTimes]) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let failed = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw the leader chart: {e}");
    let x_max = cdfs
        .iter()
        .filter_map(|l| l.quantile(0.99))
        .max()
        .unwrap_or(1_000)
        .max(T_MS * 2) as f64
        * 1.1;
    let colours = [
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(31, 119, 180),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("time to a new leader, {CDF_SERVERS} servers, timeouts [150, 150 + r) ms"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..1.0)
            .map_err(|e| failed(&e))?;
        chart
            .configure_mesh()
            .x_desc("ms from the leader's crash")
            .y_desc("cumulative share of trials")
            .draw()
            .map_err(|e| failed(&e))?;
        for (l, colour) in cdfs.iter().zip(colours) {
            let total = (l.times_ms.len() + l.none).max(1) as f64;
            let steps = l.times_ms.iter().enumerate().flat_map(|(i, t)| {
                let t = *t as f64;
                [(t, i as f64 / total), (t, (i + 1) as f64 / total)]
            });
            chart
                .draw_series(LineSeries::new(steps, colour.stroke_width(2)))
                .map_err(|e| failed(&e))?
                .label(format!("r = {} ms", l.spread_ms))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_contested_elections_and_the_first_campaign_match_the_closed_forms() {
        // CI-sized: one point, 200 trials. With 5 servers and d/r = 0.2 the predicted share
        // is 1 − 0.8⁴ = 0.59 (its standard error over 200 trials is about 6% of it).
        let p = contest_point(5, 0.2, 200, 7).expect("runs");
        println!("{p:?}");
        assert!(p.share_error().abs() <= TOLERANCE, "{p:?}");
        assert!(p.first_error().abs() <= TOLERANCE, "{p:?}");
        assert!(p.split <= p.contested, "{p:?}");
    }

    #[test]
    fn more_timeout_randomness_gives_fewer_split_votes_and_a_shorter_tail() {
        let tight = leader_times(5, 60, 1).expect("runs");
        let loose = leader_times(150, 60, 1).expect("runs");
        println!("{tight:?}\n{loose:?}");
        assert!(
            tight.split > loose.split,
            "{} vs {}",
            tight.split,
            loose.split
        );
        assert!(tight.quantile(0.9) > loose.quantile(0.9));
        assert_eq!(loose.none, 0);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let l = LeaderTimes {
            spread_ms: 5,
            times_ms: vec![10, 20, 30, 40],
            none: 0,
            split: 0,
        };
        assert_eq!(l.quantile(0.5), Some(20));
        assert_eq!(l.quantile(0.9), Some(40));
        assert_eq!(l.quantile(0.0), Some(10));
    }
}
