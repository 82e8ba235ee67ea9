//! The simulator checked against closed forms, on proof of work at a fixed difficulty
//! (a Bitcoin-style retarget whose period never ends, so a chain's work is its length and
//! the block time is exactly the one the hash rate was set for):
//!
//! - **Stale rate.** With propagation delay `d` and block time `T`, the first block found
//!   at a height reaches everyone `d` later; whatever the others find on the same parent
//!   meanwhile goes stale. The chance that a height gets such a stale block is the chance
//!   of at least one find in `d`: `1 − e^(−d/T)` (Decker & Wattenhofer 2013). That is the
//!   measured stale rate: the share of main-chain heights at which a stale block was also
//!   made. (Stale blocks over all blocks is smaller, about `(d/T)/(1 + d/T)`, since each
//!   stale block also adds to the total; the table shows it too.) Measured on a full mesh
//!   of [`STALE_NODES`] equal miners, every message taking exactly `d`; a miner's own
//!   hash power never races its own block, so the closed form is off by about `1/N`.
//! - **Selfish mining.** One node with hash share α runs Eyal & Sirer's strategy
//!   ([`super::selfish`]) against one honest node holding the rest; the honest node has its
//!   own block first in every race, which is γ = 0. Its share of the honest node's final
//!   chain is compared with the paper's relative revenue.
//!
//! Both run the full simulator (real chain, fork choice and engine; simulated solves and
//! network), so they test it, not a model of it.

use super::network::LinkModel;
use super::selfish::relative_revenue;
use super::world::{self, Setup};
use super::{author_keys, dev_spec};
use crate::compare::metrics::chain_to;
use anyhow::Context;
use chain::BlockHash;
use config::{ChainSpec, EngineKind, EngineSpec};
use miner::pow::Retarget;
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

pub mod family;
pub mod pbft;
pub mod raft;

/// Miners of the stale-rate sweep, all peers of each other.
pub const STALE_NODES: usize = 30;
/// `d/T` values of the stale-rate sweep.
pub const STALE_RATIOS: [f64; 5] = [0.01, 0.02, 0.05, 0.1, 0.2];
/// The selfish pool's hash shares of the selfish-mining sweep.
pub const SELFISH_ALPHAS: [f64; 7] = [0.10, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45];
/// Block time of both sweeps (virtual, so its size costs nothing).
const BLOCK_TIME: u64 = 600;
/// One-way delay in the selfish sweep, ms: next to nothing against a 600 s block time.
const SELFISH_LATENCY_MS: f64 = 1.0;
/// The stale rate may be off the closed form by this fraction of it.
pub const STALE_TOLERANCE: f64 = 0.10;
/// The selfish pool's measured revenue may be this far from the closed form.
pub const SELFISH_TOLERANCE: f64 = 0.02;

/// The 1% critical values of the chi-square distribution for 1 to 10 degrees of freedom.
const CHI2_1PCT: [f64; 10] = [
    6.635, 9.210, 11.345, 13.277, 15.086, 16.812, 18.475, 20.090, 21.666, 23.209,
];

/// The chi-square value that `df` degrees of freedom exceed with 1% probability: the table
/// up to 10, then the Wilson–Hilferty approximation (within 0.1% there). `None` for 0.
pub fn chi2_critical_1pct(df: usize) -> Option<f64> {
    if df == 0 {
        return None;
    }
    if let Some(value) = CHI2_1PCT.get(df - 1) {
        return Some(*value);
    }
    // The normal distribution's 99th percentile.
    const Z: f64 = 2.326_348;
    let k = df as f64;
    let c = 2.0 / (9.0 * k);
    Some(k * (1.0 - c + Z * c.sqrt()).powi(3))
}

/// Pearson's chi-square of `observed` counts against the `shares` they should follow.
pub fn chi_square(observed: &[u64], shares: &[f64]) -> f64 {
    let total: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(shares)
        .filter(|(_, share)| **share > 0.0)
        .map(|(count, share)| {
            let expected = total as f64 * share;
            (*count as f64 - expected).powi(2) / expected
        })
        .sum()
}

/// The dev PoW spec for `authors` at a fixed difficulty and [`BLOCK_TIME`].
fn fixed_difficulty(authors: &[(String, chain::SecretKey)]) -> ChainSpec {
    let mut spec = dev_spec(EngineKind::Pow, authors, &[], Some(BLOCK_TIME));
    let mut p = miner::pow::PowParams::devnet();
    p.target_block_time = BLOCK_TIME;
    // A period longer than any run: the genesis target holds throughout.
    let interval = u64::from(u32::MAX);
    p.retarget = Retarget::Bitcoin {
        interval,
        timespan: interval * BLOCK_TIME,
        max_timewarp: 0,
    };
    spec.engine = EngineSpec::Pow(p);
    spec
}

/// A voting run for the sweeps: `authors` on a full mesh where every message takes exactly
/// `delay_ms` (no jitter, no loss, an uplink that costs no time), no load, the machines'
/// trace recorded.
fn voting_setup(
    spec: ChainSpec,
    authors: Vec<(String, chain::SecretKey)>,
    delay_ms: u64,
    duration_ms: u64,
    seed: u64,
) -> Setup {
    let nodes = authors.len();
    Setup {
        spec,
        authors,
        link: LinkModel {
            latency_ms: delay_ms as f64,
            jitter_ms: 0.0,
            bandwidth: f64::INFINITY,
            loss: 0.0,
        },
        peers: nodes.saturating_sub(1),
        hash_shares: vec![1.0 / nodes.max(1) as f64; nodes],
        selfish: None,
        seed,
        tx_rate: 0.0,
        traders: Vec::new(),
        duration_ms,
        faults: Vec::new(),
        dust: None,
        probe: world::VoteProbe {
            trace: true,
            kill_first_leader: false,
        },
    }
}

fn pow_setup(nodes: usize, latency_ms: f64, shares: Vec<f64>, blocks: u64, seed: u64) -> Setup {
    let authors = author_keys(nodes);
    Setup {
        spec: fixed_difficulty(&authors),
        authors,
        link: LinkModel {
            latency_ms,
            jitter_ms: 0.0,
            bandwidth: 1e12,
            loss: 0.0,
        },
        peers: nodes.saturating_sub(1),
        hash_shares: shares,
        selfish: None,
        seed,
        tx_rate: 0.0,
        traders: Vec::new(),
        duration_ms: blocks * BLOCK_TIME * 1000,
        faults: Vec::new(),
        dust: None,
        probe: world::VoteProbe::default(),
    }
}

/// One point of the stale-rate sweep.
#[derive(Debug, Clone, Serialize)]
pub struct StalePoint {
    /// Propagation delay over block time.
    pub d_over_t: f64,
    pub produced: u64,
    /// Blocks on the final chain (heights 1 up to its head).
    pub main: u64,
    /// Main-chain heights at which some other block was made too.
    pub forked_heights: u64,
    /// `forked_heights / main`.
    pub stale_rate: f64,
    /// Stale blocks over all blocks made.
    pub stale_share: f64,
    /// `1 − e^(−d/T)`.
    pub theory: f64,
}

impl StalePoint {
    /// Measured over expected, minus one.
    pub fn error(&self) -> f64 {
        self.stale_rate / self.theory - 1.0
    }
}

/// Simulates about `blocks` blocks on [`STALE_NODES`] miners with `d = ratio × T`.
pub fn stale_point(ratio: f64, blocks: u64, seed: u64) -> anyhow::Result<StalePoint> {
    let latency = ratio * BLOCK_TIME as f64 * 1000.0;
    let shares = vec![1.0 / STALE_NODES as f64; STALE_NODES];
    let outcome = world::simulate(
        pow_setup(STALE_NODES, latency, shares, blocks, seed),
        &mut |_| {},
    )?;
    let record = &outcome.record;
    let produced = record
        .counters
        .blocks_produced
        .context("the simulator counts blocks")?;
    let chain = chain_to(&record.blocks, record.final_head);
    let main = chain.len() as u64 - 1;
    let top = chain.last().map_or(0, |b| b.height.0);
    let on_chain: HashSet<BlockHash> = chain.iter().map(|b| b.hash).collect();
    let forked: BTreeSet<u64> = record
        .blocks
        .values()
        .filter(|b| !on_chain.contains(&b.hash) && b.height.0 <= top)
        .map(|b| b.height.0)
        .collect();
    let forked_heights = forked.len() as u64;
    Ok(StalePoint {
        d_over_t: ratio,
        produced,
        main,
        forked_heights,
        stale_rate: forked_heights as f64 / main.max(1) as f64,
        stale_share: produced.saturating_sub(main) as f64 / produced.max(1) as f64,
        theory: 1.0 - (-ratio).exp(),
    })
}

/// One point of the selfish-mining sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SelfishPoint {
    pub alpha: f64,
    /// Blocks on the honest node's final chain, and the selfish pool's among them.
    pub main: u64,
    pub selfish: u64,
    pub revenue: f64,
    /// Eyal & Sirer's relative revenue for γ = 0.
    pub theory: f64,
}

/// Simulates about `blocks` blocks with node 0 mining selfishly with share `alpha`.
pub fn selfish_point(alpha: f64, blocks: u64, seed: u64) -> anyhow::Result<SelfishPoint> {
    let mut setup = pow_setup(
        2,
        SELFISH_LATENCY_MS,
        vec![alpha, 1.0 - alpha],
        blocks,
        seed,
    );
    setup.selfish = Some(0);
    let selfish_address = setup.authors[0].1.address();
    let outcome = world::simulate(setup, &mut |_| {})?;
    let record = &outcome.record;
    let honest_head = record
        .observations
        .iter()
        .rev()
        .find(|o| o.node == 1)
        .map(|o| o.head)
        .context("the honest node has a head")?;
    let chain = chain_to(&record.blocks, honest_head);
    let main = chain.len() as u64 - 1;
    let selfish = chain
        .iter()
        .filter(|b| !b.preexisting && b.producer == selfish_address)
        .count() as u64;
    Ok(SelfishPoint {
        alpha,
        main,
        selfish,
        revenue: selfish as f64 / main.max(1) as f64,
        theory: relative_revenue(alpha, 0.0),
    })
}

/// Which sweep `--sweep` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    Stale,
    Selfish,
    Pbft,
    Raft,
    Family,
}

impl Sweep {
    /// The size of a point: least, most, default, and what it counts.
    pub fn size(self) -> (u64, u64, u64, &'static str) {
        match self {
            Sweep::Stale | Sweep::Selfish => (100, 10_000_000, 20_000, "blocks"),
            Sweep::Pbft => (2, 100_000, 100, "heights"),
            Sweep::Raft => (10, 1_000_000, 1_000, "trials"),
            Sweep::Family => (4, 10_000, 30, "heights"),
        }
    }
}

impl std::str::FromStr for Sweep {
    type Err = String;

    fn from_str(s: &str) -> Result<Sweep, String> {
        match s {
            "stale" => Ok(Sweep::Stale),
            "selfish" => Ok(Sweep::Selfish),
            "pbft" => Ok(Sweep::Pbft),
            "raft" => Ok(Sweep::Raft),
            "family" => Ok(Sweep::Family),
            other => Err(format!(
                "--sweep {other}: choose stale (stale rate against 1 − e^(−d/T)), selfish \
                 (Eyal–Sirer revenue), pbft (commit latency, messages per block, view change) \
                 raft (contested elections, first candidate, time to leader) or family (the \
                 voting engines side by side: delays and messages to commit, recovery, crashes \
                 tolerated, duelling leaders)"
            )),
        }
    }
}

/// A finished sweep: its rows as Markdown table lines and CSV, and the chart's points.
struct Table {
    name: &'static str,
    header: &'static str,
    rows: Vec<Vec<String>>,
    /// (x, simulated, theory) per point.
    points: Vec<(f64, f64, f64)>,
    x_label: &'static str,
    y_label: &'static str,
    curve: fn(f64) -> f64,
    x_range: (f64, f64),
    verdict: String,
    /// Every point within its tolerance.
    ok: bool,
    /// What the sweep's size counts ("blocks a point").
    unit: &'static str,
    /// Markdown after the table: further tables of the same sweep.
    appendix: String,
    /// Further charts, written as `sweep-<name>-<suffix>.svg`.
    extra_svgs: Vec<(&'static str, String)>,
}

/// Runs a sweep with `blocks` blocks a point, each point on its own seed derived from
/// `seed`, and writes `sweep-<name>.md`, `.csv` and `.svg` into `out`. `progress` hears
/// each point as it finishes. Returns the files and whether every point is within its
/// tolerance.
pub fn run_sweep(
    sweep: Sweep,
    blocks: u64,
    seed: u64,
    out: &Path,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<(Vec<PathBuf>, bool)> {
    let table = match sweep {
        Sweep::Pbft => pbft::table(blocks, seed, progress)?,
        Sweep::Raft => raft::table(blocks, seed, progress)?,
        Sweep::Family => family::table(blocks, seed, progress)?,
        Sweep::Stale => stale_table(blocks, seed, progress)?,
        Sweep::Selfish => selfish_table(blocks, seed, progress)?,
    };
    Ok((write_table(&table, blocks, seed, out)?, table.ok))
}

/// The stale-rate sweep's table.
fn stale_table(blocks: u64, seed: u64, progress: &mut dyn FnMut(String)) -> anyhow::Result<Table> {
    let mut points = Vec::new();
    for (i, ratio) in STALE_RATIOS.iter().enumerate() {
        let point = stale_point(*ratio, blocks, seed.wrapping_add(i as u64))?;
        progress(format!(
            "d/T = {:.2}: a stale block at {} of {} heights = {:.4} (1 − e^(−d/T) = \
             {:.4}, {:+.1}%); {} of {} blocks stale",
            point.d_over_t,
            point.forked_heights,
            point.main,
            point.stale_rate,
            point.theory,
            point.error() * 100.0,
            point.produced - point.main,
            point.produced,
        ));
        points.push(point);
    }
    let ok = points.iter().all(|p| p.error().abs() <= STALE_TOLERANCE);
    Ok(Table {
        name: "stale",
        header: "| d/T | main-chain heights | with a stale block | stale rate | 1 − e^(−d/T) | error | blocks made | stale share of blocks |",
        rows: points
            .iter()
            .map(|p| {
                vec![
                    format!("{:.2}", p.d_over_t),
                    p.main.to_string(),
                    p.forked_heights.to_string(),
                    format!("{:.4}", p.stale_rate),
                    format!("{:.4}", p.theory),
                    format!("{:+.1}%", p.error() * 100.0),
                    p.produced.to_string(),
                    format!("{:.4}", p.stale_share),
                ]
            })
            .collect(),
        points: points
            .iter()
            .map(|p| (p.d_over_t, p.stale_rate, p.theory))
            .collect(),
        x_label: "propagation delay / block time (d/T)",
        y_label: "stale rate",
        curve: |x| 1.0 - (-x).exp(),
        x_range: (0.0, 0.21),
        verdict: format!(
            "{} point(s) within {:.0}% of 1 − e^(−d/T): {}",
            points.len(),
            STALE_TOLERANCE * 100.0,
            if ok { "yes" } else { "NO" }
        ),
        ok,
        unit: "blocks a point",
        appendix: String::new(),
        extra_svgs: Vec::new(),
    })
}

/// The selfish-mining sweep's table.
fn selfish_table(
    blocks: u64,
    seed: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Table> {
    let mut points = Vec::new();
    for (i, alpha) in SELFISH_ALPHAS.iter().enumerate() {
        let point = selfish_point(*alpha, blocks, seed.wrapping_add(i as u64))?;
        progress(format!(
            "α = {:.2}: {} of {} main-chain blocks = {:.4} (Eyal–Sirer {:.4}, {:+.4})",
            point.alpha,
            point.selfish,
            point.main,
            point.revenue,
            point.theory,
            point.revenue - point.theory
        ));
        points.push(point);
    }
    let ok = points
        .iter()
        .all(|p| (p.revenue - p.theory).abs() <= SELFISH_TOLERANCE);
    Ok(Table {
        name: "selfish",
        header: "| α | main-chain blocks | selfish pool's | relative revenue | Eyal–Sirer (γ = 0) | difference |",
        rows: points
            .iter()
            .map(|p| {
                vec![
                    format!("{:.2}", p.alpha),
                    p.main.to_string(),
                    p.selfish.to_string(),
                    format!("{:.4}", p.revenue),
                    format!("{:.4}", p.theory),
                    format!("{:+.4}", p.revenue - p.theory),
                ]
            })
            .collect(),
        points: points
            .iter()
            .map(|p| (p.alpha, p.revenue, p.theory))
            .collect(),
        x_label: "selfish pool's hash share (α)",
        y_label: "its share of the main chain",
        curve: |a| relative_revenue(a, 0.0),
        x_range: (0.0, 0.5),
        verdict: format!(
            "{} point(s) within {} of Eyal–Sirer: {}",
            points.len(),
            SELFISH_TOLERANCE,
            if ok { "yes" } else { "NO" }
        ),
        ok,
        unit: "blocks a point",
        appendix: String::new(),
        extra_svgs: Vec::new(),
    })
}

fn write_table(table: &Table, blocks: u64, seed: u64, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let base = out.join(format!("sweep-{}", table.name));
    let separator = table
        .header
        .matches('|')
        .skip(1)
        .map(|_| "---|")
        .collect::<String>();
    let mut md = format!(
        "# toychain simulate --sweep {}\n\n{} {}, seed {seed}. {}.\n\n{}\n|{}\n",
        table.name, blocks, table.unit, table.verdict, table.header, separator
    );
    let mut csv = table
        .header
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",");
    csv.push('\n');
    for row in &table.rows {
        md.push_str(&format!("| {} |\n", row.join(" | ")));
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    md.push_str(&table.appendix);
    let mut files = vec![
        (base.with_extension("md"), md),
        (base.with_extension("csv"), csv),
        (base.with_extension("svg"), chart(table)?),
    ];
    for (suffix, svg) in &table.extra_svgs {
        let path = out.join(format!("sweep-{}-{suffix}.svg", table.name));
        files.push((path, svg.clone()));
    }
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The closed form as a line and the simulated points as dots.
fn chart(table: &Table) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let failed = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw the sweep chart: {e}");
    let (x0, x1) = table.x_range;
    let y_max = table
        .points
        .iter()
        .flat_map(|(_, a, b)| [*a, *b])
        .fold((table.curve)(x1), f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{} — simulated (dots) and closed form (line)",
                    table.y_label
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..y_max)
            .map_err(|e| failed(&e))?;
        chart
            .configure_mesh()
            .x_desc(table.x_label)
            .y_desc(table.y_label)
            .draw()
            .map_err(|e| failed(&e))?;
        let steps = 200;
        chart
            .draw_series(LineSeries::new(
                (0..=steps).map(|i| {
                    let x = x0 + (x1 - x0) * f64::from(i) / f64::from(steps);
                    (x, (table.curve)(x))
                }),
                &RGBColor(31, 119, 180),
            ))
            .map_err(|e| failed(&e))?;
        chart
            .draw_series(
                table
                    .points
                    .iter()
                    .map(|(x, y, _)| Circle::new((*x, *y), 4, RGBColor(214, 39, 40).filled())),
            )
            .map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_is_zero_on_the_expected_counts_and_large_off_them() {
        assert_eq!(chi_square(&[10, 20, 30, 40], &[0.1, 0.2, 0.3, 0.4]), 0.0);
        // 60/40 against 50/50 over 100: (10² + 10²) / 50 = 4.
        assert!((chi_square(&[60, 40], &[0.5, 0.5]) - 4.0).abs() < 1e-12);
        assert!(chi_square(&[80, 20], &[0.5, 0.5]) > CHI2_1PCT[0]);
    }

    #[test]
    fn critical_values_match_the_tables() {
        // Published 1% values for 1, 10, 20, 50 and 100 degrees of freedom.
        for (df, value) in [
            (1, 6.635),
            (10, 23.209),
            (20, 37.566),
            (50, 76.154),
            (100, 135.807),
        ] {
            let got = chi2_critical_1pct(df).expect("df ≥ 1");
            assert!((got / value - 1.0).abs() < 0.002, "{df}: {got} vs {value}");
        }
        assert_eq!(chi2_critical_1pct(0), None);
    }

    #[test]
    fn the_stale_rate_follows_one_minus_e_to_the_minus_d_over_t() {
        // CI-sized: two points of the sweep, 6,000 blocks each (the README has the full
        // sweep). The bias is about −1/N (a miner's own hash power never races its block).
        for (ratio, seed) in [(0.1, 11), (0.2, 12)] {
            let point = stale_point(ratio, 6_000, seed).expect("runs");
            println!("{point:?}");
            assert!(
                point.error().abs() <= STALE_TOLERANCE,
                "d/T = {ratio}: stale rate {:.4} against {:.4}",
                point.stale_rate,
                point.theory
            );
            // Counting stale blocks over all blocks gives less: (d/T)/(1 + d/T) to first
            // order.
            assert!(point.stale_share < point.stale_rate, "{point:?}");
            assert!((point.stale_share / (ratio / (1.0 + ratio)) - 1.0).abs() < 0.15);
        }
    }

    #[test]
    fn a_selfish_miner_earns_what_eyal_and_sirer_predict() {
        // Every α of the issue, 40,000 blocks each (about 6 s apiece in a debug build).
        for (i, alpha) in SELFISH_ALPHAS.iter().enumerate() {
            let point = selfish_point(*alpha, 40_000, 100 + i as u64).expect("runs");
            println!("{point:?}");
            assert!(
                (point.revenue - point.theory).abs() <= SELFISH_TOLERANCE,
                "α = {alpha}: revenue {:.4} against {:.4}",
                point.revenue,
                point.theory
            );
            // Below a third of the hash power withholding loses (γ = 0), above it wins.
            if *alpha < 0.3 {
                assert!(point.revenue < *alpha, "{point:?}");
            }
            if *alpha > 0.35 {
                assert!(point.revenue > *alpha, "{point:?}");
            }
        }
    }

    #[test]
    fn an_honest_pair_splits_blocks_by_hash_power() {
        // The same two nodes without the strategy: shares follow hash power (chi-square).
        let mut setup = pow_setup(2, SELFISH_LATENCY_MS, vec![0.3, 0.7], 5_000, 9);
        setup.selfish = None;
        let address = setup.authors[0].1.address();
        let outcome = world::simulate(setup, &mut |_| {}).expect("runs");
        let chain = chain_to(&outcome.record.blocks, outcome.record.final_head);
        let first = chain
            .iter()
            .filter(|b| !b.preexisting && b.producer == address)
            .count() as u64;
        let total = chain.len() as u64 - 1;
        let chi2 = chi_square(&[first, total - first], &[0.3, 0.7]);
        assert!(
            chi2 < CHI2_1PCT[0],
            "{first} of {total}: chi-square {chi2:.2}"
        );
    }

    #[test]
    fn sweep_names_parse_and_others_are_named_in_the_error() {
        assert_eq!("stale".parse::<Sweep>(), Ok(Sweep::Stale));
        assert_eq!("selfish".parse::<Sweep>(), Ok(Sweep::Selfish));
        assert_eq!("pbft".parse::<Sweep>(), Ok(Sweep::Pbft));
        assert_eq!("raft".parse::<Sweep>(), Ok(Sweep::Raft));
        let err = "greedy".parse::<Sweep>().expect_err("unknown");
        assert!(err.contains("--sweep greedy"), "{err}");
    }
}
