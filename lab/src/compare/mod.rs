//! `toychain compare`: the same workload on each engine in turn, measured the same way.
//!
//! For each engine: a fresh devnet of N node processes on 127.0.0.1 (the devnet
//! launcher's [`Fleet`], on free ports, in `OUT/devnets/<engine>`), a seeded load
//! generator sending R transfers a second through the nodes' RPC ([`load`]), and a
//! collector polling every node every 200 ms ([`collect`]) that records every block any
//! node had on its best chain and when. After `--duration` seconds the devnet is stopped
//! (SIGTERM, SIGKILL after a grace) before the next engine starts; Ctrl-C stops the
//! current devnet and writes the report of the engines already done. The nodes are
//! started with `--parent-pid`, so they also stop if this process is killed outright.
//!
//! The figures ([`metrics`]) come from that record alone, so the same definitions apply
//! to every engine; [`report`] writes them as Markdown, CSV and JSON and [`charts`] as SVG.

// The record, the metrics and the writers serve `toychain simulate` too.
pub(crate) mod charts;
mod collect;
pub(crate) mod faults;
mod inject;
pub(crate) mod metrics;
pub(crate) mod record;
pub(crate) mod report;

use crate::args::CompareArgs;
use crate::workload::WorkloadOutcome;
use crate::workload::batched::{self, Presigned};
use anyhow::{Context, anyhow};
use chain::dev::DEV_ACCOUNTS;
use chain::{ChainId, SecretKey};
use collect::{Collector, cpu_seconds, node_counters};
use config::EngineKind;
use config::UsageError;
use devnet::{Fleet, Layout, RPC_TIMEOUT, SignalWatch, say, wait_until_serving};
use indicatif::{ProgressBar, ProgressStyle};
use metrics::EngineResult;
use node::rpc_client::RpcClient;
use record::{RunRecord, Submitted};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How often the collector polls every node.
const POLL: Duration = Duration::from_millis(200);
/// Longest measurement accepted: a day.
const MAX_DURATION: u64 = 86_400;
/// Most transfers a second the generator offers.
pub(crate) const MAX_TX_RATE: f64 = batched::MAX_RATE;
/// Longest block time accepted.
const MAX_BLOCK_TIME: u64 = 3_600;
/// Tries at finding N consecutive free ports.
pub(crate) fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// The validated command line.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub engines: Vec<EngineKind>,
    pub nodes: usize,
    pub duration_s: u64,
    pub tx_rate: f64,
    pub seed: u64,
    /// `None`: each engine's dev default.
    pub block_time_s: Option<u64>,
    pub faults: Vec<faults::Fault>,
    #[serde(skip)]
    pub out: PathBuf,
}

/// The engines a comma list names, in order, each once; `flag` names the option in the
/// usage errors (`toychain simulate` takes its list this way too).
pub(crate) fn parse_engines(flag: &str, names: &[String]) -> anyhow::Result<Vec<EngineKind>> {
    let mut engines = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            return Err(usage(format!(
                "{flag} {}: an empty engine name; list engines like pow,dpos,poa",
                names.join(",")
            )));
        }
        let kind: EngineKind = name
            .parse()
            .map_err(|e: config::SpecError| usage(format!("{flag}: {e}")))?;
        if engines.contains(&kind) {
            return Err(usage(format!("{flag} names {kind} twice")));
        }
        engines.push(kind);
    }
    Ok(engines)
}

/// Checks the flags `compare` and `simulate` share: the load (`per` says per what
/// second), the block time and the output folder.
pub(crate) fn check_common_flags(
    tx_rate: f64,
    per: &str,
    block_time: Option<u64>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    if !tx_rate.is_finite() || !(0.0..=MAX_TX_RATE).contains(&tx_rate) {
        return Err(usage(format!(
            "--tx-rate {tx_rate}: give transfers a {per} from 0 to {MAX_TX_RATE}"
        )));
    }
    if let Some(secs) = block_time
        && (secs == 0 || secs > MAX_BLOCK_TIME)
    {
        return Err(usage(format!(
            "--block-time {secs}: give 1 to {MAX_BLOCK_TIME} seconds between blocks"
        )));
    }
    if out.exists() && !out.is_dir() {
        return Err(usage(format!(
            "--out {}: exists and is not a folder; name a folder for the report",
            out.display()
        )));
    }
    Ok(())
}

impl Plan {
    fn from_args(args: CompareArgs) -> anyhow::Result<Plan> {
        let mut engines = parse_engines("--engines", &args.engines)?;
        if engines.is_empty() {
            engines = EngineKind::ALL.to_vec();
        }
        let max_nodes = DEV_ACCOUNTS.len() as u64;
        if args.nodes == 0 || args.nodes > max_nodes {
            return Err(usage(format!(
                "--nodes {}: a devnet has 1 to {max_nodes} nodes, one per dev account",
                args.nodes
            )));
        }
        if args.duration == 0 || args.duration > MAX_DURATION {
            return Err(usage(format!(
                "--duration {}: measure each engine for 1 to {MAX_DURATION} seconds",
                args.duration
            )));
        }
        check_common_flags(args.tx_rate, "second", args.block_time, &args.out)?;
        let nodes = usize::try_from(args.nodes).unwrap_or(usize::MAX);
        let faults = faults::parse_faults(&args.faults, nodes, args.duration)?;
        Ok(Plan {
            engines,
            nodes,
            duration_s: args.duration,
            tx_rate: args.tx_rate,
            seed: args.seed,
            block_time_s: args.block_time,
            faults,
            out: args.out,
        })
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_s)
    }
}

/// How one engine's turn ended.
enum Turn {
    Done(Box<EngineResult>),
    Interrupted,
}

impl CompareArgs {
    /// Runs `toychain compare`.
    pub fn execute(self) -> anyhow::Result<()> {
        let plan = Plan::from_args(self)?;
        std::fs::create_dir_all(&plan.out)
            .with_context(|| format!("cannot create --out {}", plan.out.display()))?;
        let signals = SignalWatch::start()?;
        let bar = progress_bar(plan.engines.len() as u64 * plan.duration_s, "measured");
        let mut results: Vec<EngineResult> = Vec::new();
        let mut stopped: Option<anyhow::Error> = None;
        for (i, kind) in plan.engines.iter().enumerate() {
            let done_secs = i as u64 * plan.duration_s;
            let progress = Progress {
                kind: *kind,
                signals: &signals,
                bar: &bar,
                done_secs,
            };
            match run_engine(&plan, &progress) {
                Ok(Turn::Done(result)) => {
                    bar.suspend(|| say(&report::one_line(&result.metrics)));
                    results.push(*result);
                }
                Ok(Turn::Interrupted) => {
                    stopped = Some(anyhow!("interrupted during {kind}"));
                    break;
                }
                Err(e) => {
                    stopped = Some(e.context(format!("{kind} devnet")));
                    break;
                }
            }
        }
        bar.finish_and_clear();
        if results.is_empty() {
            return Err(stopped
                .unwrap_or_else(|| anyhow!("no engine was measured"))
                .context("nothing to report"));
        }
        let mut written = report::write(&plan, &results)?;
        written.extend(charts::write(&plan.out, &results)?);
        written.push(crate::report_html::write(&plan.out, &written)?);
        say_written(&plan.out, &written);
        match stopped {
            None => Ok(()),
            Some(e) => {
                let done: Vec<&str> = results.iter().map(|r| r.metrics.engine.as_str()).collect();
                Err(e.context(format!(
                    "the report covers only {} (in {})",
                    done.join(", "),
                    plan.out.display()
                )))
            }
        }
    }
}

/// A bar over `secs` seconds that are `done` ("measured", "simulated").
pub(crate) fn progress_bar(secs: u64, done: &str) -> ProgressBar {
    counting_bar(secs, &format!("s {done}"))
}

/// Names the files written into `out` on one line.
pub(crate) fn say_written(out: &std::path::Path, written: &[PathBuf]) {
    let names: Vec<String> = written
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    say(&format!("wrote {} in {}", names.join(", "), out.display()));
}

/// A bar counting to `len` of `what` ("points", "s simulated").
pub(crate) fn counting_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what} · {{msg}}"
    ))
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A devnet of one engine, serving RPC.
struct Devnet {
    layout: Layout,
    block_time: u64,
    fleet: Fleet,
    /// The load, signed before the nodes started.
    load: Presigned,
}

/// What one engine's turn reports on its progress with.
struct Progress<'a> {
    kind: EngineKind,
    signals: &'a SignalWatch,
    bar: &'a ProgressBar,
    /// Seconds of the whole comparison done before this turn.
    done_secs: u64,
}

/// One run of `kind` as `compare` measures it (a devnet of `plan.nodes` nodes under
/// `plan.tx_rate` transfers a second for `plan.duration_s`): its figures, or `None` when
/// interrupted. `toychain bench throughput` runs its sweep with it.
pub(crate) fn measure_engine(
    plan: &Plan,
    kind: EngineKind,
    signals: &SignalWatch,
    bar: &ProgressBar,
) -> anyhow::Result<Option<EngineResult>> {
    let progress = Progress {
        kind,
        signals,
        bar,
        done_secs: 0,
    };
    Ok(match run_engine(plan, &progress)? {
        Turn::Done(result) => Some(*result),
        Turn::Interrupted => None,
    })
}

/// One engine's devnet, load and measurement; the devnet is stopped before returning.
fn run_engine(plan: &Plan, progress: &Progress<'_>) -> anyhow::Result<Turn> {
    let Progress {
        kind,
        signals,
        bar,
        done_secs,
    } = *progress;
    bar.set_position(done_secs);
    let Some((mut net, clients)) = start_devnet(plan, progress)? else {
        return Ok(Turn::Interrupted);
    };
    let pids = net.fleet.pids();
    let cpu_before = cpu_seconds(&pids);
    let started = Instant::now();
    let mut collector = Collector::new(&clients, started);
    let mut injector =
        inject::Injector::new(&plan.faults, &clients, config::dev_authorities(plan.nodes));
    // The first round marks what the nodes made before measuring began.
    collector.poll();
    bar.set_message(format!("{kind}: measuring"));
    let load = match measure(
        plan,
        progress,
        &mut net,
        &clients,
        &mut collector,
        &mut injector,
        started,
    ) {
        Ok(Some(load)) => load,
        Ok(None) => {
            bar.set_message(format!("{kind}: stopping"));
            net.fleet.stop(signals);
            return Ok(Turn::Interrupted);
        }
        Err(e) => {
            net.fleet.stop(signals);
            return Err(e);
        }
    };
    collector.poll();
    let cpu_after = cpu_seconds(&pids);
    let counters = node_counters(&clients);
    bar.set_message(format!("{kind}: stopping {} node(s)", plan.nodes));
    let exits = net.fleet.stop(signals);
    debug!(?exits, "compare: {kind} devnet stopped");
    for i in 0..plan.nodes {
        // The chain is not needed again; the spec and the node logs stay for a look.
        if let Err(e) = std::fs::remove_dir_all(net.layout.data_dir(i)) {
            debug!(error = %e, "compare: data dir of node {i} not removed");
        }
    }

    let final_node = injector.first_live();
    let collected = collector.finish(final_node);
    let final_head = collected.final_head.ok_or_else(|| {
        anyhow!(
            "node {final_node} never answered chain_info while measuring; see its log in the \
             devnet folder"
        )
    })?;
    let record = RunRecord {
        engine: kind,
        block_time: net.block_time,
        authors: DEV_ACCOUNTS
            .iter()
            .map(|name| (*name).to_owned())
            .zip(config::dev_authorities(plan.nodes))
            .collect(),
        window: collected.window,
        blocks: collected.blocks,
        observations: collected.observations,
        final_head,
        submitted: load
            .acked
            .iter()
            .map(|a| Submitted {
                hash: a.hash,
                at: a.at,
            })
            .collect(),
        submit_errors: load.refused,
        poll_errors: collected.poll_errors,
        cpu_seconds: match (cpu_before, cpu_after) {
            (Some(before), Some(after)) => Some((after - before).max(0.0)),
            _ => None,
        },
        counters,
        faults: plan.faults.clone(),
    };
    Ok(Turn::Done(Box::new(metrics::compute(
        &record,
        plan.tx_rate,
    ))))
}

/// Writes the devnet's spec, starts its nodes and waits until they serve RPC; `None` when
/// interrupted meanwhile.
fn start_devnet(
    plan: &Plan,
    progress: &Progress<'_>,
) -> anyhow::Result<Option<(Devnet, Vec<RpcClient>)>> {
    let Progress { kind, signals, .. } = *progress;
    let nodes = plan.nodes;
    let (rpc_port, p2p_port) = node::ports::free_port_bases(nodes)?;
    let layout = Layout::at(
        plan.out.join("devnets").join(kind.name()),
        nodes,
        rpc_port,
        p2p_port,
    );
    layout.wipe()?;
    let (mut spec, _) = layout.spec(kind, plan.block_time_s)?;
    layout.check_ports()?;
    // The load accounts are funded at genesis and the load signed before any node runs,
    // so signing costs the nodes nothing.
    let keys = batched::load_accounts(plan.tx_rate, nodes);
    spec.fund_dev_balance(keys.iter().map(SecretKey::address));
    layout.write_spec(&spec)?;
    let total = (plan.tx_rate * (plan.duration_s + 1) as f64).ceil() as u64;
    let bar = progress.bar;
    bar.set_message(format!("{kind}: signing {total} transfers"));
    let load = Presigned::sign(
        keys,
        ChainId(spec.chain_id),
        plan.tx_rate,
        nodes,
        plan.seed,
        total,
        &|n| bar.set_message(format!("{kind}: signed {n} of {total} transfers")),
    );
    bar.set_message(format!("{kind}: starting {nodes} node(s)"));
    let mut fleet = Fleet::start_with(&layout, false, |i| inject::node_args(&plan.faults, i))?;
    let clients: Vec<RpcClient> = (0..nodes)
        .map(|i| RpcClient::new(&layout.rpc_url(i), RPC_TIMEOUT))
        .collect();
    let Some(info) = wait_until_serving(&mut fleet, &clients, signals)? else {
        fleet.stop(signals);
        return Ok(None);
    };
    let chain_id = info.get("chain_id").and_then(Value::as_u64).map(ChainId);
    if chain_id != Some(ChainId(spec.chain_id)) {
        fleet.stop(signals);
        return Err(anyhow!(
            "node 0 answered chain_info with chain_id {chain_id:?}, the spec has {}: {info}",
            spec.chain_id
        ));
    }
    bar.set_message(format!("{kind}: waiting for the nodes to connect"));
    if !wait_until_peered(&clients, signals) {
        fleet.stop(signals);
        return Ok(None);
    }
    let net = Devnet {
        layout,
        block_time: spec.engine.block_time(),
        fleet,
        load,
    };
    Ok(Some((net, clients)))
}

/// Longest wait for the nodes to connect before measuring anyway.
const PEERING_DEADLINE: Duration = Duration::from_secs(15);

/// Waits until every node has a peer in every other one (`net_peers`), so that neither the
/// load nor the measured window starts while nodes still produce alone (the forks of a
/// devnet's first seconds would count as the load's). After [`PEERING_DEADLINE`] the
/// measurement starts anyway (a node that never connects shows in the report). `false`
/// when a signal came first.
fn wait_until_peered(clients: &[RpcClient], signals: &SignalWatch) -> bool {
    let want = clients.len().saturating_sub(1);
    let deadline = Instant::now() + PEERING_DEADLINE;
    loop {
        if signals.count() > 0 {
            return false;
        }
        let peered = clients.iter().all(|c| {
            c.call("net_peers", json!([]))
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .is_some_and(|n| n >= want)
        });
        if peered {
            return true;
        }
        if Instant::now() >= deadline {
            warn!(
                "compare: not every node had {want} peers after {} s; measuring anyway",
                PEERING_DEADLINE.as_secs()
            );
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the workload and the faults for the plan's duration, polling the nodes; `None`
/// when interrupted.
fn measure(
    plan: &Plan,
    progress: &Progress<'_>,
    net: &mut Devnet,
    clients: &[RpcClient],
    collector: &mut Collector<'_>,
    injector: &mut inject::Injector,
    started: Instant,
) -> anyhow::Result<Option<WorkloadOutcome>> {
    let Progress {
        kind,
        signals,
        bar,
        done_secs,
    } = *progress;
    let Devnet { fleet, load, .. } = net;
    let stop = AtomicBool::new(false);
    let (outcome, load) = std::thread::scope(|s| {
        let load = s.spawn(|| load.run(clients, started, &stop));
        let mut next_poll = started + POLL;
        let outcome = loop {
            if signals.count() > 0 {
                break Ok(false);
            }
            if let Some(err) = fleet.check_alive() {
                break Err(err);
            }
            let elapsed = started.elapsed();
            if elapsed >= plan.duration() {
                break Ok(true);
            }
            let now = Instant::now();
            if now < next_poll {
                std::thread::sleep(next_poll - now);
            }
            next_poll = (next_poll + POLL).max(Instant::now());
            collector.poll();
            for line in injector.step(elapsed, fleet, clients, collector) {
                bar.suspend(|| say(&format!("{kind}: {line}")));
            }
            bar.set_position(done_secs + elapsed.as_secs().min(plan.duration_s));
            if let Some(height) = collector.head_height() {
                bar.set_message(format!("{kind}: measuring, node 0 at #{height}"));
            }
        };
        stop.store(true, Ordering::Relaxed);
        let load = load
            .join()
            .map_err(|_| anyhow!("the load generator stopped unexpectedly"));
        (outcome, load)
    });
    match outcome? {
        true => Ok(Some(load?)),
        false => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(engines: &[&str]) -> CompareArgs {
        CompareArgs {
            engines: engines.iter().map(|s| (*s).to_owned()).collect(),
            nodes: 4,
            duration: 60,
            tx_rate: 2.0,
            out: PathBuf::from("compare-out"),
            block_time: None,
            seed: 1,
            faults: Vec::new(),
        }
    }

    #[test]
    fn defaults_compare_every_engine_this_build_has() {
        let plan = Plan::from_args(args(&[])).expect("defaults are valid");
        assert_eq!(plan.engines, EngineKind::ALL.to_vec());
        assert_eq!((plan.nodes, plan.duration_s), (4, 60));
    }

    #[test]
    fn bad_arguments_are_usage_errors_naming_the_value() {
        let cases: Vec<(CompareArgs, &str)> = vec![
            (args(&["pow", "proof-of-vibes"]), "proof-of-vibes"),
            (args(&["pow", "pow"]), "twice"),
            (args(&["pow", ""]), "empty"),
            (
                CompareArgs {
                    nodes: 0,
                    ..args(&[])
                },
                "--nodes 0",
            ),
            (
                CompareArgs {
                    nodes: 9,
                    ..args(&[])
                },
                "--nodes 9",
            ),
            (
                CompareArgs {
                    duration: 0,
                    ..args(&[])
                },
                "--duration 0",
            ),
            (
                CompareArgs {
                    tx_rate: -1.0,
                    ..args(&[])
                },
                "--tx-rate -1",
            ),
            (
                CompareArgs {
                    tx_rate: f64::NAN,
                    ..args(&[])
                },
                "--tx-rate NaN",
            ),
            (
                CompareArgs {
                    block_time: Some(0),
                    ..args(&[])
                },
                "--block-time 0",
            ),
        ];
        crate::assert_usage_errors(cases, Plan::from_args);
        let unknown = Plan::from_args(args(&["hotstuff"])).expect_err("unknown");
        for known in EngineKind::ALL {
            assert!(unknown.to_string().contains(known.name()), "{unknown}");
        }
    }
}
