//! `toychain simulate`: N nodes in one process under a virtual clock and a simulated
//! network, running the real chain code and the real engines, so a day of chain time
//! takes seconds and the same seed gives the same run.
//!
//! **Real**: each node's [`chain::Chain`] (every validation layer, state, fork choice and
//! reorgs, on a memory store), its mempool (the node actor's [`node::actor::Ledger`]),
//! the engine and producer `miner` builds from the chain spec, and the
//! producer loop's steps (`next_turn`, template, `prepare`, sign guard, `seal`, import).
//! PoA, DPoS and PoS sign with their real producers at the times their schedules and
//! kernels give on the virtual clock. The voting engines (PBFT, Raft, Multi-Paxos, ZAB) run each node's own
//! [`chain::VotingMachine`], the very code a node runs, driven as the node's voting driver
//! drives it: messages over the simulated network, timers as events, blocks built from the
//! mempool, proposals validated by the chain, decisions imported with their certificates
//! ([`world`]'s `voting` module).
//!
//! **Simulated**:
//! - Time: a discrete-event loop ([`queue`]) in virtual milliseconds from the genesis
//!   time; one `ManualClock` shared by every node is set to an event's time before it is
//!   handled. Ties go in scheduling order; nothing reads the wall clock.
//! - Proof of work's nonce search: after each head change a miner's solve is an event
//!   `Exp(work(target) / hash rate)` away (each hash an independent try, so redrawing on
//!   a new head is exact), and `verify_header` is
//!   [`miner::pow::PowEngine::for_simulation`], which checks every rule but the hash.
//!   `--hash-rates` are shares; the network's total is the rate at which the genesis
//!   difficulty gives the target block time, so the retarget only has to follow luck.
//! - The network ([`network`]): a seeded peer graph of degree ≤ 8, each node's uplink
//!   sending one message at a time at `--bandwidth`, log-normal one-way delays around
//!   `--latency` with `--jitter`, in-order links, and gossip lost with `--loss`. Blocks and
//!   transactions are gossiped on first import; a block with an unknown parent waits
//!   while the parent is requested from the sender (the real node's sync, never lost).
//! - Load: `--tx-rate` transfers a virtual second, each sender through its own node with
//!   that node's pending nonce, between the accounts [`traders`] names.
//! - Authors: node i authors as dev account i, past the eighth as a derived key that the
//!   dev spec funds and lists as a signer or delegate ([`author_keys`], [`dev_spec`]). A
//!   producer without a turn is asked again only once its answer can have changed
//!   ([`node::retry_after`]), which lets a month of idle stake pass in milliseconds.
//!
//! Randomness comes from independent streams of `--seed` ([`random`]); sets whose order
//! could leak into the output are ordered maps or sorted. The record is `compare`'s
//! [`RunRecord`](crate::compare::record::RunRecord) with every head change of every
//! node, so [`crate::compare::metrics`], the report and the charts are the same code.
//! CPU per block is not measured (nothing runs in real time).

mod network;
mod node;
mod queue;
mod random;
mod selfish;
mod theory;
mod world;

use crate::args::SimulateArgs;
use crate::compare::faults::{self, Fault};
use crate::compare::{
    charts, check_common_flags, counting_bar, metrics, parse_engines, progress_bar, report,
    say_written, usage,
};
use crate::workload;
use anyhow::Context;
use chain::SecretKey;
use chain::dev::{DEV_ACCOUNTS, dev_key};
use config::{ChainSpec, EngineKind};
use devnet::say;
use network::LinkModel;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use world::Setup;

/// Peers a node keeps unless `--peers` says otherwise: about gossipsub's mesh.
pub const DEFAULT_PEERS: u64 = network::DEGREE as u64;
/// Most nodes a simulation runs.
const MAX_NODES: u64 = 1_000;
/// Longest virtual time accepted: a year.
const MAX_DURATION: u64 = 366 * 86_400;
/// Longest one-way delay accepted, ms.
const MAX_LATENCY: f64 = 60_000.0;
/// Accounts of the load's own when every dev account authors blocks.
const OWN_TRADERS: usize = 8;

/// The validated command line; `metrics.json` carries it as its settings.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub engines: Vec<EngineKind>,
    /// The chain spec file, when one was given (else each engine's dev spec).
    pub chain: Option<PathBuf>,
    pub nodes: usize,
    pub duration_s: u64,
    #[serde(flatten)]
    pub link: LinkModel,
    /// Peers per node.
    pub peers: usize,
    /// PoW hash power shares, node 0 first (summing to 1).
    pub hash_shares: Vec<f64>,
    /// PoW: the node mining selfishly.
    pub selfish: Option<usize>,
    pub seed: u64,
    pub tx_rate: f64,
    /// `None`: the spec's (dev default or the file's).
    pub block_time_s: Option<u64>,
    /// The accounts the transfers go between.
    pub traders: Vec<String>,
    pub faults: Vec<Fault>,
    /// Node i's name.
    #[serde(skip)]
    authors: Vec<String>,
    #[serde(skip)]
    trader_keys: Vec<SecretKey>,
    #[serde(skip)]
    pub out: PathBuf,
    #[serde(skip)]
    specs: Vec<ChainSpec>,
}

/// Seconds in `text`: a whole or decimal number with an optional unit `s`, `m`, `h` or `d`
/// ("600", "10m", "1.5h", "3d").
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let secs = (value * scale).round();
    (secs.is_finite() && secs >= 1.0 && secs <= MAX_DURATION as f64).then_some(secs as u64)
}

/// Node i's name and key: dev account i for the first eight, then a key derived from
/// `toychain/sim/{i}`.
fn author_keys(nodes: usize) -> Vec<(String, SecretKey)> {
    (0..nodes)
        .map(|i| {
            match DEV_ACCOUNTS
                .get(i)
                .and_then(|name| dev_key(name).map(|k| (name, k)))
            {
                Some((name, key)) => ((*name).to_owned(), key),
                None => (
                    format!("node{i}"),
                    SecretKey::from_seed(&format!("toychain/sim/{i}")),
                ),
            }
        })
        .collect()
}

/// Who sends and receives the load. While two dev accounts author nothing, they do, as
/// in `compare`. With more nodes `compare` has only producers left to trade, and a
/// staker's own transfer restarts its coin age, starving proof of stake's first eight
/// stakers (received coins no longer do: see the dust tests in `world`); so
/// a simulation on a dev spec gives the load [`OWN_TRADERS`] accounts of its own
/// (`trader0` …, keys derived from `toychain/sim/trader/{k}`, funded at genesis). On a
/// `--chain` spec, which would not fund them, it keeps compare's choice.
fn traders(nodes: usize, dev_spec: bool) -> Vec<(String, SecretKey)> {
    let shared = workload::traders(nodes);
    if dev_spec && shared.len() == DEV_ACCOUNTS.len() {
        return (0..OWN_TRADERS)
            .map(|k| {
                (
                    format!("trader{k}"),
                    SecretKey::from_seed(&format!("toychain/sim/trader/{k}")),
                )
            })
            .collect();
    }
    shared
        .iter()
        .filter_map(|name| dev_key(name).map(|key| ((*name).to_owned(), key)))
        .collect()
}

/// The dev spec of `kind` for these authors: they are the PoA signers and DPoS delegates
/// (the first [`miner::dpos::MAX_PRODUCERS`] of them active), and the authors and traders
/// past the dev accounts get the dev balance too, so they can stake and pay.
fn dev_spec(
    kind: EngineKind,
    authors: &[(String, SecretKey)],
    traders: &[(String, SecretKey)],
    block_time: Option<u64>,
) -> ChainSpec {
    let addresses: Vec<chain::Address> = authors.iter().map(|(_, k)| k.address()).collect();
    let mut spec = ChainSpec::dev_with(kind, &addresses);
    spec.fund_dev_balance(authors.iter().chain(traders).map(|(_, key)| key.address()));
    if let Some(secs) = block_time {
        spec.engine.set_block_time(secs);
    }
    spec
}

impl Plan {
    fn from_args(args: SimulateArgs) -> anyhow::Result<Plan> {
        if args.nodes == 0 || args.nodes > MAX_NODES {
            return Err(usage(format!(
                "--nodes {}: simulate 1 to {MAX_NODES} nodes",
                args.nodes
            )));
        }
        let nodes = usize::try_from(args.nodes).unwrap_or(usize::MAX);
        let duration_s = parse_duration(&args.duration).ok_or_else(|| {
            usage(format!(
                "--duration {}: give a virtual time like 600, 10m, 2h or 3d (1 s to 366 d)",
                args.duration
            ))
        })?;
        if !args.latency.is_finite() || !(0.0..=MAX_LATENCY).contains(&args.latency) {
            return Err(usage(format!(
                "--latency {}: give the mean one-way delay in ms, 0 to {MAX_LATENCY}",
                args.latency
            )));
        }
        let jitter = args.jitter.unwrap_or(args.latency / 5.0);
        if !jitter.is_finite() || !(0.0..=MAX_LATENCY).contains(&jitter) {
            return Err(usage(format!(
                "--jitter {jitter}: give the delay's standard deviation in ms, 0 to {MAX_LATENCY}"
            )));
        }
        if !args.bandwidth.is_finite() || args.bandwidth < 1.0 {
            return Err(usage(format!(
                "--bandwidth {}: give each node's upload rate in bytes a second, at least 1",
                args.bandwidth
            )));
        }
        if !args.loss.is_finite() || !(0.0..1.0).contains(&args.loss) {
            return Err(usage(format!(
                "--loss {}: give the probability that a gossip message is lost, from 0 up to (not \
                 including) 1",
                args.loss
            )));
        }
        check_common_flags(args.tx_rate, "virtual second", args.block_time, &args.out)?;
        let authors = author_keys(nodes);
        let traders = traders(nodes, args.chain.is_none());
        let specs = match &args.chain {
            Some(path) => vec![ChainSpec::load(path).map_err(|e| usage(format!("--chain: {e}")))?],
            None => engine_kinds(&args.engine)?
                .into_iter()
                .map(|kind| dev_spec(kind, &authors, &traders, args.block_time))
                .collect(),
        };
        let engines: Vec<EngineKind> = specs.iter().map(|s| s.engine.kind()).collect();
        let hash_shares = hash_shares(&args.hash_rates, nodes, &engines)?;
        if args.peers == 0 || args.peers > MAX_NODES {
            return Err(usage(format!(
                "--peers {}: give 1 to {} peers a node (N−1 is a full mesh)",
                args.peers,
                nodes.saturating_sub(1).max(1)
            )));
        }
        let peers = usize::try_from(args.peers)
            .unwrap_or(usize::MAX)
            .min(nodes.saturating_sub(1));
        let faults = faults::parse_faults(&args.faults, nodes, duration_s)?;
        let selfish = match args.selfish {
            None => None,
            Some(node) if engines.len() != 1 || !engines[0].mines() => {
                return Err(usage(format!(
                    "--selfish {node}: selfish mining withholds proof-of-work blocks; simulate                      --engine pow alone"
                )));
            }
            Some(node) if node >= args.nodes || nodes < 2 => {
                return Err(usage(format!(
                    "--selfish {node}: name a node from 0 to {} (and simulate at least 2)",
                    nodes - 1
                )));
            }
            Some(node) => usize::try_from(node).ok(),
        };
        Ok(Plan {
            engines,
            chain: args.chain,
            nodes,
            duration_s,
            link: LinkModel {
                latency_ms: args.latency,
                jitter_ms: jitter,
                bandwidth: args.bandwidth,
                loss: args.loss,
            },
            peers,
            hash_shares,
            selfish,
            seed: args.seed,
            tx_rate: args.tx_rate,
            block_time_s: args.block_time,
            traders: traders.iter().map(|(name, _)| name.clone()).collect(),
            trader_keys: traders.into_iter().map(|(_, key)| key).collect(),
            faults,
            authors: authors.iter().map(|(name, _)| name.clone()).collect(),
            out: args.out,
            specs,
        })
    }
}

/// The engines named by `--engine`: at least one.
fn engine_kinds(names: &[String]) -> anyhow::Result<Vec<EngineKind>> {
    let kinds = parse_engines("--engine", names)?;
    if kinds.is_empty() {
        return Err(usage(format!(
            "--engine: name an engine ({}) or a comma list of them",
            EngineKind::names()
        )));
    }
    Ok(kinds)
}

/// Each node's share of the hash power: `--hash-rates` normalised, or equal shares.
fn hash_shares(rates: &[f64], nodes: usize, engines: &[EngineKind]) -> anyhow::Result<Vec<f64>> {
    if rates.is_empty() {
        return Ok(vec![1.0 / nodes as f64; nodes]);
    }
    let list = rates
        .iter()
        .map(f64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if !engines.iter().any(|k| k.mines()) {
        return Err(usage(format!(
            "--hash-rates {list}: only proof of work has hash power; add pow to --engine"
        )));
    }
    if rates.len() != nodes {
        return Err(usage(format!(
            "--hash-rates {list}: give one rate per node ({nodes}), node 0 first"
        )));
    }
    let total: f64 = rates.iter().sum();
    if rates.iter().any(|r| !r.is_finite() || *r < 0.0) || !(total > 0.0 && total.is_finite()) {
        return Err(usage(format!(
            "--hash-rates {list}: rates are non-negative numbers, at least one above 0"
        )));
    }
    Ok(rates.iter().map(|r| r / total).collect())
}

impl SimulateArgs {
    /// Runs `toychain simulate`.
    pub fn execute(self) -> anyhow::Result<()> {
        if let Some(name) = &self.sweep {
            return sweep(name, &self);
        }
        let plan = Plan::from_args(self)?;
        std::fs::create_dir_all(&plan.out)
            .with_context(|| format!("cannot create --out {}", plan.out.display()))?;
        let bar = progress_bar(plan.specs.len() as u64 * plan.duration_s, "simulated");
        let mut results = Vec::new();
        for (i, spec) in plan.specs.iter().enumerate() {
            let kind = spec.engine.kind();
            let done = i as u64 * plan.duration_s;
            bar.set_message(format!("{kind}: {} node(s)", plan.nodes));
            let started = Instant::now();
            let outcome = quietly(|| {
                world::simulate(setup(&plan, spec), &mut |secs| {
                    bar.set_position(done + secs)
                })
            })
            .with_context(|| format!("{kind} simulation"))?;
            let wall = started.elapsed();
            let result = metrics::compute(&outcome.record, plan.tx_rate);
            bar.suspend(|| {
            say(&report::one_line(&result.metrics));
            say(&format!(
                "{kind}: {} of virtual time on {} node(s) in {:.1} s of wall time ({} events, {} \
                 missing parents fetched)",
                describe_secs(plan.duration_s),
                plan.nodes,
                wall.as_secs_f64(),
                outcome.events,
                outcome.requests
            ));
            if let Some(node) = outcome.killed {
                say(&format!(
                    "{kind}: kill-producer took down node {node} ({})",
                    plan.authors[node]
                ));
            }
            say(&format!(
                "{kind}: {}",
                share_check(&plan, kind, &result.metrics)
            ));
            for (problem, count) in &outcome.problems {
                say(&format!("{kind}: {count} × {problem}"));
            }
        });
            results.push(result);
        }
        bar.finish_and_clear();
        let about = report::About {
            title: format!(
                "toychain simulate: {}",
                plan.engines
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            intro: intro(&plan),
            settings: &plan,
            machine: false,
            poll_interval_ms: None,
        };
        let mut written = report::write_report(&about, &plan.out, &results)?;
        written.extend(charts::write(&plan.out, &results)?);
        written.push(crate::report_html::write(&plan.out, &written)?);
        say_written(&plan.out, &written);
        Ok(())
    }
}

/// `--sweep`: the simulator against a closed form; exits non-zero when a point is off.
fn sweep(name: &str, args: &SimulateArgs) -> anyhow::Result<()> {
    let sweep: theory::Sweep = name.parse().map_err(usage)?;
    let (least, most, default, unit) = sweep.size();
    let size = args.sweep_blocks.unwrap_or(default);
    if !(least..=most).contains(&size) {
        return Err(usage(format!(
            "--sweep-blocks {size}: give {least} to {most} {unit} a point for --sweep {name}"
        )));
    }
    check_common_flags(0.0, "virtual second", None, &args.out)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))?;
    let points = match sweep {
        theory::Sweep::Stale => theory::STALE_RATIOS.len(),
        theory::Sweep::Selfish => theory::SELFISH_ALPHAS.len(),
        theory::Sweep::Pbft => {
            theory::pbft::LATENCY_DELAYS.len()
                + theory::pbft::MESSAGE_NODES.len()
                + 1
                + theory::pbft::VIEW_CHANGE_POINTS.len()
        }
        theory::Sweep::Raft => theory::raft::CONTEST_POINTS.len() + theory::raft::CDF_SPREADS.len(),
        theory::Sweep::Family => theory::family::engines().len(),
    };
    let bar = counting_bar(points as u64, "points");
    bar.set_message(format!("--sweep {name}: {size} {unit} a point"));
    let started = Instant::now();
    let (written, ok) = quietly(|| {
        theory::run_sweep(sweep, size, args.seed, &args.out, &mut |line| {
            bar.suspend(|| say(&line));
            bar.inc(1);
        })
    })?;
    bar.finish_and_clear();
    say(&format!(
        "--sweep {name}: {points} points in {:.1} s; wrote {}",
        started.elapsed().as_secs_f64(),
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "--sweep {name}: some point is outside its tolerance (see the table)"
        ))
    }
}

/// Whether the final chain's blocks follow the shares the engine should give: hash power
/// for PoW, equal turns or equal stakes for the others (every node gets the same balance or
/// votes on a dev spec). Pearson's chi-square at the 1% level.
fn share_check(plan: &Plan, kind: EngineKind, metrics: &metrics::EngineMetrics) -> String {
    if kind.votes() {
        return "block shares: not tested, since a voting engine's leader (the PBFT primary, \
                the Raft leader) proposes every block until it fails"
            .to_owned();
    }
    if !plan.faults.is_empty() || plan.selfish.is_some() {
        return "block shares: not tested against the engine's rule, since faults or a selfish \
                miner change who produces"
            .to_owned();
    }
    let expected: Vec<f64> = if kind.mines() {
        plan.hash_shares.clone()
    } else {
        vec![1.0 / plan.nodes as f64; plan.nodes]
    };
    let counts: Vec<u64> = plan
        .authors
        .iter()
        .map(|name| {
            metrics
                .producers
                .iter()
                .find(|p| &p.name == name)
                .map_or(0, |p| p.blocks)
        })
        .collect();
    let classes = expected.iter().filter(|s| **s > 0.0).count();
    let basis = kind.share_basis();
    match theory::chi2_critical_1pct(classes.saturating_sub(1)) {
        Some(critical) if counts.iter().sum::<u64>() >= 5 * classes as u64 => {
            let chi2 = theory::chi_square(&counts, &expected);
            format!(
                "block shares against {basis}: chi-square {chi2:.2} with {} degrees of freedom \
                 ({} at the 1% level, critical value {critical:.2})",
                classes - 1,
                if chi2 < critical {
                    "consistent"
                } else {
                    "NOT consistent"
                }
            )
        }
        _ => format!(
            "block shares against {basis}: too few blocks or producers for a chi-square test"
        ),
    }
}

/// One engine's setup from the plan.
fn setup(plan: &Plan, spec: &ChainSpec) -> Setup {
    Setup {
        spec: spec.clone(),
        authors: author_keys(plan.nodes),
        link: plan.link,
        peers: plan.peers,
        hash_shares: plan.hash_shares.clone(),
        selfish: plan.selfish,
        seed: plan.seed,
        tx_rate: plan.tx_rate,
        traders: plan.trader_keys.clone(),
        duration_ms: plan.duration_s.saturating_mul(1000),
        faults: plan.faults.clone(),
        dust: None,
        probe: world::VoteProbe::default(),
    }
}

/// Runs `f` without the nodes' logs (hundreds of nodes each logging their chain opening
/// and every reorg would bury the output), unless `RUST_LOG` asks for them.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    if std::env::var_os("RUST_LOG").is_some() {
        f()
    } else {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
    }
}

fn describe_secs(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The paragraph under the report's title.
fn intro(plan: &Plan) -> String {
    let spec = match &plan.chain {
        Some(path) => format!("the chain spec {}", path.display()),
        None => match plan.block_time_s {
            Some(s) => format!("each engine's dev spec with a {s} s block time"),
            None => "each engine's dev spec".to_owned(),
        },
    };
    let equal = plan
        .hash_shares
        .windows(2)
        .all(|w| (w[0] - w[1]).abs() < 1e-12);
    let hash = if equal {
        "equal PoW hash power".to_owned()
    } else {
        format!(
            "PoW hash power shares {}",
            plan.hash_shares
                .iter()
                .map(|s| format!("{:.3}", s))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "A simulation: {} node(s) running the real chain and engine code under a virtual clock, \
         {} of virtual time per engine from genesis, on {spec}; {hash}. Network: peer graph \
         of degree ≤ {}{}, one-way delay log-normal with mean {} ms and standard deviation {} ms, \
         {} bytes/s upload per node, {:.1}% of gossip lost; {} transfers/s between {} (seed {}). \
         Times are virtual seconds. The simulator records every node's head the instant it \
         changes, so the figures carry no polling delay (where the tables say \"collector\", \
         read the simulator); CPU is not measured, since nothing runs in real time.\n",
        plan.nodes,
        describe_secs(plan.duration_s),
        plan.peers,
        match plan.selfish {
            Some(node) => format!(", node {node} mining selfishly (Eyal & Sirer)"),
            None => String::new(),
        },
        plan.link.latency_ms,
        plan.link.jitter_ms,
        plan.link.bandwidth,
        plan.link.loss * 100.0,
        plan.tx_rate,
        plan.traders.join(", "),
        plan.seed
    )
}

#[cfg(test)]
mod tests;
