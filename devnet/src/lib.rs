//! `toychain devnet`: N node processes of one dev chain on 127.0.0.1, node i authoring as
//! dev account i, and a live line per new head of node 0.
//!
//! Each engine gets its own folder, `DIR/<engine>/`, holding the chain spec written on the
//! first run (`spec.toml`), one data dir per node (`node<i>/`) and one log per node
//! (`node<i>.log`); so switching `--engine` gives a separate chain and switching back
//! resumes the old one. The nodes are child processes of this one and never outlive it:
//! Ctrl-C or SIGTERM stops them with SIGTERM (SIGKILL after a grace period), and if this
//! launcher is killed outright each node notices that its parent changed (`--parent-pid`)
//! and shuts itself down.
//!
//! The launcher only watches through the nodes' public JSON-RPC, like any other client.

use chain::dev::DEV_ACCOUNTS;
use clap::Args;
use config::EngineKind;
use config::UsageError;
use node::rpc_client::RpcClient;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often node 0 is asked for its head.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// The consensus engine.
    #[arg(long, default_value = "pow")]
    pub engine: String,
    /// Number of node processes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub nodes: u16,
    /// Where the devnet keeps its data (one folder per engine).
    #[arg(long, default_value = ".toychain/devnet")]
    pub dir: PathBuf,
    /// Start a new chain instead of continuing the stored one.
    #[arg(long)]
    pub fresh: bool,
    /// Target seconds between blocks (overrides the engine's dev default).
    #[arg(long)]
    pub block_time: Option<u64>,
    /// Produce only while transactions are waiting: no empty blocks while idle.
    #[arg(long)]
    pub on_demand: bool,
    /// RPC port of node 0; node i listens on this + i.
    #[arg(long, default_value_t = 8545)]
    pub rpc_port: u16,
    /// P2P port of node 0; node i listens on this + i.
    #[arg(long, default_value_t = 30333)]
    pub p2p_port: u16,
    /// Stop by itself after this many seconds (for scripts and tests).
    #[arg(long)]
    pub duration: Option<u64>,
}

mod fleet;
mod watch;

pub use fleet::{Fleet, Layout, SignalWatch, wait_until_serving};
use watch::{HeadWatch, NodeStats, print_banner};

const POLL: Duration = Duration::from_millis(250);
/// How long the nodes may take to open their stores and serve RPC.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long the nodes may take to flush and exit after SIGTERM before they get SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Blocks walked back from a new head to find where it joins what was already shown.
const MAX_WALK_BACK: usize = 64;
/// Lines of a node's log shown when it dies.
const LOG_TAIL_LINES: usize = 20;
/// One RPC call of the launcher.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(3);

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// Writes a line to stdout, ignoring a closed pipe: the launcher must still stop its
/// nodes when whoever reads its output has gone away.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

impl DevnetArgs {
    /// Runs `toychain devnet` until Ctrl-C.
    pub fn execute(self) -> anyhow::Result<()> {
        let kind: EngineKind = self
            .engine
            .parse()
            .map_err(|e: config::SpecError| usage(format!("--engine: {e}")))?;
        let nodes = usize::from(self.nodes);
        if nodes == 0 || nodes > DEV_ACCOUNTS.len() {
            return Err(usage(format!(
                "--nodes {nodes}: a devnet has 1 to {} nodes, one per dev account",
                DEV_ACCOUNTS.len()
            )));
        }
        let layout = Layout::new(&self, kind, nodes)?;
        if self.fresh && layout.wipe()? {
            say(&format!("--fresh: deleted {}", layout.root.display()));
        }
        let (spec, resumed) = layout.spec(kind, self.block_time)?;
        layout.check_ports()?;

        let signals = SignalWatch::start()?;
        let mut fleet = Fleet::start(&layout, self.on_demand)?;
        let clients: Vec<RpcClient> = (0..nodes)
            .map(|i| RpcClient::new(&layout.rpc_url(i), RPC_TIMEOUT))
            .collect();
        let head = wait_until_serving(&mut fleet, &clients, &signals)?;
        let Some(head) = head else {
            say("stopping before the nodes were up");
            fleet.stop(&signals);
            return Ok(());
        };
        print_banner(&layout, &spec, kind, resumed, &head);

        let deadline = self
            .duration
            .map(|s| Instant::now() + Duration::from_secs(s));
        let mut watch = HeadWatch::new(&head);
        let mut stats = NodeStats::new(nodes);
        let outcome = loop {
            if signals.count() > 0 {
                break Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Ok(());
            }
            if let Some(err) = fleet.check_alive() {
                break Err(err);
            }
            // A node that is busy (importing, shutting down) may miss a poll; the next catches up.
            let _ = watch.poll(&clients[0], &clients);
            stats.refresh_if_due(&clients);
            std::thread::sleep(POLL);
        };
        stats.refresh(&clients);
        let per_node = stats.lines();
        say(&format!("stopping {nodes} node(s)…"));
        let exits = fleet.stop(&signals);
        watch.print_summary(&per_node, &exits);
        if outcome.is_ok() {
            say(&format!(
                "data kept in {}; run the same command again to resume, or add --fresh to start over",
                layout.root.display()
            ));
        }
        outcome
    }
}
