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

use crate::UsageError;
use crate::cli::DevnetArgs;
use crate::rpc_client::RpcClient;
use anyhow::{Context, anyhow};
use chain::dev::{DEV_ACCOUNTS, dev_address};
use config::{ChainSpec, EngineKind};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often node 0 is asked for its head.
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
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(3);

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// Writes a line to stdout, ignoring a closed pipe: the launcher must still stop its
/// nodes when whoever reads its output has gone away.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

pub fn run(args: DevnetArgs) -> anyhow::Result<()> {
    let kind: EngineKind = args
        .engine
        .parse()
        .map_err(|e: config::SpecError| usage(format!("--engine: {e}")))?;
    let nodes = usize::from(args.nodes);
    if nodes == 0 || nodes > DEV_ACCOUNTS.len() {
        return Err(usage(format!(
            "--nodes {nodes}: a devnet has 1 to {} nodes, one per dev account",
            DEV_ACCOUNTS.len()
        )));
    }
    let layout = Layout::new(&args, kind, nodes)?;
    if args.fresh && layout.wipe()? {
        say(&format!("--fresh: deleted {}", layout.root.display()));
    }
    let (spec, resumed) = layout.spec(kind, args.block_time)?;
    layout.check_ports()?;

    let signals = SignalWatch::start()?;
    let mut fleet = Fleet::start(&layout, args.on_demand)?;
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

    let deadline = args
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

/// Where everything of one engine's devnet lives, and the ports.
#[derive(Debug)]
pub(crate) struct Layout {
    root: PathBuf,
    nodes: usize,
    rpc_port: u16,
    p2p_port: u16,
}

impl Layout {
    fn new(args: &DevnetArgs, kind: EngineKind, nodes: usize) -> anyhow::Result<Layout> {
        let last = u16::try_from(nodes - 1).unwrap_or(u16::MAX);
        for (flag, port) in [("--rpc-port", args.rpc_port), ("--p2p-port", args.p2p_port)] {
            if port == 0 || port.checked_add(last).is_none() {
                return Err(usage(format!(
                    "{flag} {port}: node i listens on {flag} + i, so it must be between 1 and {}",
                    u16::MAX - last
                )));
            }
        }
        let (low, high) = (
            args.rpc_port.min(args.p2p_port),
            args.rpc_port.max(args.p2p_port),
        );
        if high - low <= last {
            return Err(usage(format!(
                "--rpc-port {} and --p2p-port {} overlap for {nodes} nodes; keep them at least \
                 {nodes} apart",
                args.rpc_port, args.p2p_port
            )));
        }
        Ok(Layout::at(
            args.dir.join(kind.name()),
            nodes,
            args.rpc_port,
            args.p2p_port,
        ))
    }

    /// A devnet of `nodes` nodes in `root`, node i on ports `rpc_port + i` and
    /// `p2p_port + i`; the caller has checked that those ranges fit and do not overlap.
    pub(crate) fn at(root: PathBuf, nodes: usize, rpc_port: u16, p2p_port: u16) -> Layout {
        Layout {
            root,
            nodes,
            rpc_port,
            p2p_port,
        }
    }

    pub(crate) fn spec_path(&self) -> PathBuf {
        self.root.join("spec.toml")
    }

    pub(crate) fn data_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{i}"))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{i}.log"))
    }

    fn port(base: u16, i: usize) -> u16 {
        // `Layout::new` checked that base + nodes - 1 fits.
        base.saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
    }

    fn rpc_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", Self::port(self.rpc_port, i))
    }

    pub(crate) fn rpc_url(&self, i: usize) -> String {
        format!("http://{}", self.rpc_addr(i))
    }

    pub(crate) fn p2p_addr(&self, i: usize) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", Self::port(self.p2p_port, i))
    }

    /// `--fresh`: deletes the engine's folder, but only one that looks like a devnet's, so
    /// a mistyped `--dir` cannot erase unrelated files. True when there was one to delete.
    pub(crate) fn wipe(&self) -> anyhow::Result<bool> {
        if !self.root.exists() {
            return Ok(false);
        }
        let looks_like_devnet = self.spec_path().is_file()
            || std::fs::read_dir(&self.root)
                .map(|entries| {
                    entries.flatten().all(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.starts_with("node") || name == "spec.toml"
                    })
                })
                .unwrap_or(false);
        if !looks_like_devnet {
            return Err(usage(format!(
                "--fresh: {} does not look like a devnet folder (no spec.toml); delete it \
                 yourself or choose another --dir",
                self.root.display()
            )));
        }
        std::fs::remove_dir_all(&self.root)
            .with_context(|| format!("--fresh: cannot delete {}", self.root.display()))?;
        Ok(true)
    }

    /// The spec of this devnet: the stored one when resuming, else the engine's dev spec
    /// (with `--block-time`), written for the next run. True when resuming.
    pub(crate) fn spec(
        &self,
        kind: EngineKind,
        block_time: Option<u64>,
    ) -> anyhow::Result<(ChainSpec, bool)> {
        let path = self.spec_path();
        if path.is_file() {
            let spec = ChainSpec::load(&path)
                .map_err(|e| anyhow!("{e}; fix it, or start a new chain with --fresh"))?;
            if spec.engine.kind() != kind {
                return Err(usage(format!(
                    "{} is a {} chain, not {kind}; use another --dir or --fresh",
                    path.display(),
                    spec.engine.kind()
                )));
            }
            if let Some(secs) = block_time {
                let mut wanted = spec.clone();
                wanted.set_block_time(secs)?;
                if wanted != spec {
                    return Err(usage(format!(
                        "--block-time {secs}: the devnet in {} was made with another block time, \
                         which is part of the chain's identity; drop --block-time to resume it, \
                         or add --fresh to start a new chain",
                        self.root.display()
                    )));
                }
            }
            return Ok((spec, true));
        }
        // Node i signs as dev account i, so the first N accounts are the signers/delegates.
        let mut spec = ChainSpec::dev_with(kind, &config::dev_authorities(self.nodes));
        if let Some(secs) = block_time {
            spec.set_block_time(secs)?;
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        std::fs::write(&path, spec.to_toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok((spec, false))
    }

    /// Refuses to start when a port is taken: a node would die at once with less context.
    pub(crate) fn check_ports(&self) -> anyhow::Result<()> {
        for i in 0..self.nodes {
            for (what, flag, port) in [
                ("rpc", "--rpc-port", Self::port(self.rpc_port, i)),
                ("p2p", "--p2p-port", Self::port(self.p2p_port, i)),
            ] {
                if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                    return Err(anyhow!(
                        "port {port} ({what} of node {i}) is not free: {e}; is another devnet \
                         running? stop it, or choose other ports with {flag}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Counts SIGINT, SIGTERM and SIGHUP, received on a thread of its own.
#[derive(Debug, Clone)]
pub(crate) struct SignalWatch {
    count: Arc<AtomicUsize>,
}

impl SignalWatch {
    /// Installs the handlers before returning, so no signal is lost once nodes run.
    pub(crate) fn start() -> anyhow::Result<SignalWatch> {
        use tokio::signal::unix::{SignalKind, signal};
        let count = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the signal watcher")?;
        let mut streams = runtime
            .block_on(async {
                Ok::<_, std::io::Error>([
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ])
            })
            .context("cannot install signal handlers")?;
        let counter = count.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let [int, term, hup] = &mut streams;
                    loop {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                            _ = hup.recv() => {}
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                });
            })
            .context("cannot start the signal watcher thread")?;
        Ok(SignalWatch { count })
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct NodeProcess {
    index: usize,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
    /// The arguments it was started with, for a restart.
    args: Vec<String>,
}

/// The node processes. Dropping it stops them, so no early return leaves one behind.
#[derive(Debug)]
pub(crate) struct Fleet {
    nodes: Vec<NodeProcess>,
}

impl Fleet {
    pub(crate) fn start(layout: &Layout, on_demand: bool) -> anyhow::Result<Fleet> {
        Fleet::start_with(layout, on_demand, |_| Vec::new())
    }

    /// [`Fleet::start`] with `extra(i)` appended to node i's arguments (fault-injection
    /// flags, more bootnodes).
    pub(crate) fn start_with(
        layout: &Layout,
        on_demand: bool,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> anyhow::Result<Fleet> {
        let mut fleet = Fleet { nodes: Vec::new() };
        for (i, author) in DEV_ACCOUNTS.iter().enumerate().take(layout.nodes) {
            let mut args: Vec<String> = vec![
                "node".into(),
                "--chain".into(),
                layout.spec_path().to_string_lossy().into_owned(),
                "--data-dir".into(),
                layout.data_dir(i).to_string_lossy().into_owned(),
                "--rpc-addr".into(),
                layout.rpc_addr(i),
                "--p2p-listen".into(),
                layout.p2p_addr(i),
                "--author".into(),
                (*author).to_owned(),
                "--mining-threads".into(),
                "1".into(),
                "--parent-pid".into(),
                std::process::id().to_string(),
            ];
            // Every node dials all the nodes before it: a full mesh, so a consensus
            // message reaches each peer directly instead of through node 0's relay.
            for j in 0..i {
                args.extend(["--bootnode".into(), layout.p2p_addr(j)]);
            }
            if on_demand {
                args.push("--on-demand".into());
            }
            args.extend(extra(i));
            let child = spawn_node(i, &args, &layout.log_path(i), false)?;
            fleet.nodes.push(NodeProcess {
                index: i,
                child,
                log: layout.log_path(i),
                exit: None,
                args,
            });
        }
        Ok(fleet)
    }

    /// Sends `sig` to node i (SIGSTOP and SIGCONT pause and resume it).
    pub(crate) fn signal_node(&self, i: usize, sig: Signal) {
        if let Some(node) = self.nodes.get(i)
            && node.exit.is_none()
        {
            signal(&node.child, sig);
        }
    }

    /// SIGKILL to node i, waiting until it is gone: a crash, nothing flushed.
    pub(crate) fn kill_node(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i)
            && node.exit.is_none()
        {
            let _ = node.child.kill();
            node.exit = node.child.wait().ok();
        }
    }

    /// SIGTERM to node i and a wait for its clean exit (SIGKILL after the grace period).
    pub(crate) fn stop_node(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        if node.exit.is_some() {
            return;
        }
        signal(&node.child, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = node.child.try_wait() {
                node.exit = Some(status);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = node.child.kill();
        node.exit = node.child.wait().ok();
    }

    /// Starts stopped node i again on its data dir, with the arguments it first had plus
    /// `extra`; its log continues.
    pub(crate) fn restart_node(&mut self, i: usize, extra: &[String]) -> anyhow::Result<()> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| anyhow!("no node {i} in this devnet"))?;
        if node.exit.is_none() {
            return Err(anyhow!("node {i} still runs; stop it before restarting it"));
        }
        let mut args = node.args.clone();
        args.extend(extra.iter().cloned());
        node.child = spawn_node(i, &args, &node.log, true)?;
        node.exit = None;
        Ok(())
    }

    /// The process ids of the nodes, node 0 first.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.child.id()).collect()
    }

    /// The first node that exited on its own, as an error showing the end of its log.
    pub(crate) fn check_alive(&mut self) -> Option<anyhow::Error> {
        for node in &mut self.nodes {
            if node.exit.is_some() {
                continue;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                node.exit = Some(status);
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "node {} ({}) exited ({status}); last lines of {}:",
                    node.index,
                    DEV_ACCOUNTS[node.index],
                    node.log.display()
                );
                for line in log_tail(&node.log, LOG_TAIL_LINES) {
                    let _ = writeln!(err, "  | {line}");
                }
                return Some(anyhow!(
                    "node {} ({}) exited early ({status}); its log is {}",
                    node.index,
                    DEV_ACCOUNTS[node.index],
                    node.log.display()
                ));
            }
        }
        None
    }

    /// SIGTERM to every running node, then waits; SIGKILL after the grace period or at any
    /// further Ctrl-C (the impatient second press). Returns how each node ended.
    pub(crate) fn stop(&mut self, signals: &SignalWatch) -> Vec<(usize, String)> {
        let signals_before = signals.count();
        for node in &mut self.nodes {
            if node.exit.is_none() {
                signal(&node.child, Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            let mut running = 0;
            for node in &mut self.nodes {
                if node.exit.is_none() {
                    match node.child.try_wait() {
                        Ok(Some(status)) => node.exit = Some(status),
                        _ => running += 1,
                    }
                }
            }
            if running == 0 {
                break;
            }
            if Instant::now() >= deadline || signals.count() > signals_before {
                for node in &mut self.nodes {
                    if node.exit.is_none() {
                        let _ = node.child.kill();
                        node.exit = node.child.wait().ok();
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.nodes
            .iter()
            .map(|n| {
                let how = match n.exit {
                    Some(s) if s.success() => "stopped cleanly".to_owned(),
                    Some(s) => format!("ended with {s}"),
                    None => "state unknown".to_owned(),
                };
                (n.index, how)
            })
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.nodes.iter().any(|n| n.exit.is_none()) {
            let quiet = SignalWatch {
                count: Arc::new(AtomicUsize::new(0)),
            };
            self.stop(&quiet);
        }
    }
}

fn signal(child: &Child, sig: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // ESRCH: it is already gone, which is what we want.
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Starts `toychain ARGS` as node i with stdout and stderr to `log` (appended when
/// `append`, so a restarted node's log continues).
fn spawn_node(i: usize, args: &[String], log_path: &Path, append: bool) -> anyhow::Result<Child> {
    let mut exe = std::env::current_exe().context("cannot find the toychain executable")?;
    if !exe.exists() {
        // Rebuilt while we run (a long reliability or compare run): the running image is
        // still reachable through /proc, and nodes must match the launcher anyway.
        exe = PathBuf::from("/proc/self/exe");
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("cannot open {} twice", log_path.display()))?;
    // Same process group as the launcher: a Ctrl-C in the terminal reaches all.
    // The logs are files: no colour codes in them.
    Command::new(&exe)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .with_context(|| format!("cannot start node {i} ({})", exe.display()))
}

/// The last `n` lines of a log file (reading at most its last 16 KiB).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else {
        return vec!["(log not readable)".into()];
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// Node 0's head when every node serves RPC; `None` when a signal came first.
pub(crate) fn wait_until_serving(
    fleet: &mut Fleet,
    clients: &[RpcClient],
    signals: &SignalWatch,
) -> anyhow::Result<Option<Value>> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    let mut ready: Vec<Option<Value>> = vec![None; clients.len()];
    loop {
        if signals.count() > 0 {
            return Ok(None);
        }
        if let Some(err) = fleet.check_alive() {
            return Err(err);
        }
        for (i, client) in clients.iter().enumerate() {
            if ready[i].is_none() {
                ready[i] = client.call("chain_info", json!([])).ok();
            }
        }
        if ready.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() >= deadline {
            let waiting: Vec<String> = ready
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_none())
                .map(|(i, _)| format!("node {i} ({})", clients[i].url()))
                .collect();
            return Err(anyhow!(
                "{} did not answer RPC within {} s; see the node logs in the devnet folder",
                waiting.join(", "),
                STARTUP_DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
    let infos: Vec<Value> = ready.into_iter().flatten().collect();
    let genesis = |v: &Value| {
        v.get("genesis_hash")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if let Some(i) = infos.iter().position(|v| genesis(v) != genesis(&infos[0])) {
        return Err(anyhow!(
            "node {i} has genesis {} but node 0 has {}; delete the devnet folder or use --fresh",
            genesis(&infos[i]).unwrap_or_default(),
            genesis(&infos[0]).unwrap_or_default()
        ));
    }
    Ok(infos.into_iter().next())
}

fn print_banner(layout: &Layout, spec: &ChainSpec, kind: EngineKind, resumed: bool, head: &Value) {
    let height = head.get("height").and_then(Value::as_u64).unwrap_or(0);
    let genesis = head
        .get("genesis_hash")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let state = if resumed && height > 0 {
        format!("resumed at height {height}")
    } else {
        "new chain".to_owned()
    };
    say(&format!(
        "toychain devnet: {} node(s), engine {kind}, chain {:?} (id {}, genesis {}), {state}",
        layout.nodes,
        spec.name,
        spec.chain_id,
        genesis.get(..12).unwrap_or(genesis)
    ));
    say(&format!(
        "{:<5} {:<7} {:<24} {:<28} log",
        "node", "author", "rpc", "p2p"
    ));
    for (i, author) in DEV_ACCOUNTS.iter().enumerate().take(layout.nodes) {
        say(&format!(
            "{:<5} {:<7} {:<24} {:<28} {}",
            i,
            author,
            layout.rpc_url(i),
            layout.p2p_addr(i),
            layout.log_path(i).display()
        ));
    }
    say(&format!(
        "dev accounts {} start with 1000000 TOY each; try `toychain wallet --rpc {} balance alice`",
        DEV_ACCOUNTS.join(" "),
        layout.rpc_url(0)
    ));
    say("one line per new head of node 0; Ctrl-C stops every node");
}

/// A block of node 0's best chain as shown.
#[derive(Debug, Clone)]
struct Shown {
    hash: String,
    producer: String,
    timestamp: u64,
}

/// Follows node 0's head, prints a line per new block and keeps the tallies for the summary.
#[derive(Debug)]
struct HeadWatch {
    started: Instant,
    start_height: u64,
    head_hash: String,
    /// Node 0's best chain since the start, by height (replaced above a reorg's fork point).
    chain: BTreeMap<u64, Shown>,
    reorgs_seen: u64,
    names: HashMap<String, &'static str>,
}

impl HeadWatch {
    fn new(head: &Value) -> HeadWatch {
        let height = head.get("height").and_then(Value::as_u64).unwrap_or(0);
        let hash = head
            .get("head_hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut chain = BTreeMap::new();
        chain.insert(
            height,
            Shown {
                hash: hash.clone(),
                producer: String::new(),
                timestamp: head
                    .get("head_timestamp")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            },
        );
        HeadWatch {
            started: Instant::now(),
            start_height: height,
            head_hash: hash,
            chain,
            reorgs_seen: 0,
            names: DEV_ACCOUNTS
                .iter()
                .filter_map(|n| dev_address(n).map(|a| (a.to_string(), *n)))
                .collect(),
        }
    }

    fn name_of(&self, producer: &str) -> String {
        match self.names.get(producer) {
            Some(name) => (*name).to_owned(),
            None => producer.get(..12).unwrap_or(producer).to_owned(),
        }
    }

    fn poll(&mut self, node0: &RpcClient, all: &[RpcClient]) -> anyhow::Result<()> {
        let info = node0.call("chain_info", json!([]))?;
        let head = info
            .get("head_hash")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("chain_info without head_hash"))?;
        if head == self.head_hash {
            return Ok(());
        }
        // Walk back from the new head to a block already shown: the fork point.
        let mut new_blocks: Vec<Value> = Vec::new();
        let mut cursor = head.to_owned();
        let mut truncated = false;
        loop {
            let block = node0.call("chain_getBlock", json!([cursor]))?;
            let height = block.get("height").and_then(Value::as_u64).unwrap_or(0);
            let hash = block
                .get("hash")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if self.chain.get(&height).is_some_and(|s| s.hash == hash) || height == 0 {
                break;
            }
            cursor = block
                .get("parent_hash")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            new_blocks.push(block);
            if new_blocks.len() >= MAX_WALK_BACK {
                truncated = true;
                break;
            }
        }
        new_blocks.reverse();
        let Some(first) = new_blocks.first() else {
            self.head_hash = head.to_owned();
            return Ok(());
        };
        let first_height = first.get("height").and_then(Value::as_u64).unwrap_or(0);
        let fork_point = first_height.saturating_sub(1);
        let old_tip = self.chain.keys().next_back().copied().unwrap_or(0);
        if truncated {
            say(&format!(
                "… node 0 moved more than {MAX_WALK_BACK} blocks since the last poll; showing the newest"
            ));
            self.chain.clear();
        } else if fork_point < old_tip {
            self.reorgs_seen += 1;
            say(&format!(
                "reorg: {} block(s) above #{fork_point} replaced",
                old_tip - fork_point
            ));
        }
        self.chain.split_off(&(fork_point + 1));

        let status = node0.call("node_status", json!([])).unwrap_or(Value::Null);
        let peers = status.get("peers").and_then(Value::as_u64).unwrap_or(0);
        let reorgs = status.get("reorgs").and_then(Value::as_u64).unwrap_or(0);
        let forks = status
            .get("side_blocks")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let lagging = lagging_nodes(all, &info);
        for block in &new_blocks {
            let height = block.get("height").and_then(Value::as_u64).unwrap_or(0);
            let hash = block
                .get("hash")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let producer = block
                .get("producer")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let timestamp = block.get("timestamp").and_then(Value::as_u64).unwrap_or(0);
            let interval = match self.chain.get(&height.saturating_sub(1)) {
                // Genesis carries the spec's fixed time: an interval from it means nothing.
                Some(parent) if height > 1 && parent.timestamp > 0 => {
                    format!("+{}s", timestamp.saturating_sub(parent.timestamp))
                }
                _ => "  -".to_owned(),
            };
            let txs = block
                .get("txs")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let engine = engine_detail(block.get("engine"));
            say(&format!(
                "#{height:<6} {} by {:<7} {interval:>5} txs {txs:<3} peers {peers} forks {forks} reorgs {reorgs}{lagging}{engine}",
                hash.get(..8).unwrap_or(hash),
                self.name_of(producer),
            ));
            self.chain.insert(
                height,
                Shown {
                    hash: hash.to_owned(),
                    producer: producer.to_owned(),
                    timestamp,
                },
            );
        }
        self.head_hash = head.to_owned();
        Ok(())
    }

    fn print_summary(&self, per_node: &[String], exits: &[(usize, String)]) {
        let elapsed = self.started.elapsed().as_secs();
        let blocks: Vec<&Shown> = self
            .chain
            .range(self.start_height + 1..)
            .map(|(_, s)| s)
            .collect();
        let tip = self
            .chain
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.start_height);
        // From block 1 at the earliest: genesis carries the spec's fixed time.
        let timed = self.chain.range(1..);
        let mean = match (timed.clone().next(), timed.last()) {
            (Some((h0, first)), Some((h1, last))) if h1 > h0 && first.timestamp > 0 => format!(
                "{:.1} s",
                last.timestamp.saturating_sub(first.timestamp) as f64 / (h1 - h0) as f64
            ),
            _ => "n/a".to_owned(),
        };
        say(&format!(
            "summary: ran {}m{:02}s · {} new block(s) on node 0's chain (#{} → #{tip}) · mean \
             interval {mean} · reorgs seen {}",
            elapsed / 60,
            elapsed % 60,
            blocks.len(),
            self.start_height,
            self.reorgs_seen
        ));
        if !blocks.is_empty() {
            let mut share: BTreeMap<String, usize> = BTreeMap::new();
            for block in &blocks {
                *share.entry(self.name_of(&block.producer)).or_default() += 1;
            }
            let mut share: Vec<(String, usize)> = share.into_iter().collect();
            share.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let parts: Vec<String> = share
                .iter()
                .map(|(name, n)| {
                    format!(
                        "{name} {n} ({:.0}%)",
                        *n as f64 * 100.0 / blocks.len() as f64
                    )
                })
                .collect();
            say(&format!("producers: {}", parts.join(" · ")));
        }
        for line in per_node {
            say(line);
        }
        for (i, how) in exits {
            say(&format!("node {i} ({}): {how}", DEV_ACCOUNTS[*i]));
        }
    }
}

/// ` · lagging: node2 #40` when other nodes are behind node 0 (cheap: one call each).
fn lagging_nodes(all: &[RpcClient], node0_info: &Value) -> String {
    let height = node0_info
        .get("height")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let behind: Vec<String> = all
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, c)| {
            let h = c
                .call("chain_info", json!([]))
                .ok()?
                .get("height")?
                .as_u64()?;
            (h + 1 < height).then(|| format!("node{i} #{h}"))
        })
        .collect();
    if behind.is_empty() {
        String::new()
    } else {
        format!(" · behind: {}", behind.join(", "))
    }
}

/// The engine's header fields of a block, `key=value` joined, for the status line.
fn engine_detail(fields: Option<&Value>) -> String {
    let Some(Value::Object(map)) = fields else {
        return String::new();
    };
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" · {}", parts.join(" "))
    }
}

/// Each node's counters for the summary, refreshed while the devnet runs: a Ctrl-C in the
/// terminal reaches the nodes as fast as the launcher, so at the end they may not answer.
#[derive(Debug)]
struct NodeStats {
    lines: Vec<Option<String>>,
    refreshed: Instant,
}

impl NodeStats {
    /// How often the counters are asked for.
    const EVERY: Duration = Duration::from_secs(2);

    fn new(nodes: usize) -> NodeStats {
        NodeStats {
            lines: vec![None; nodes],
            refreshed: Instant::now(),
        }
    }

    fn refresh_if_due(&mut self, clients: &[RpcClient]) {
        if self.refreshed.elapsed() >= Self::EVERY {
            self.refresh(clients);
        }
    }

    fn refresh(&mut self, clients: &[RpcClient]) {
        self.refreshed = Instant::now();
        for (i, client) in clients.iter().enumerate() {
            let Ok(info) = client.call("chain_info", json!([])) else {
                continue;
            };
            let status = client.call("node_status", json!([])).unwrap_or(Value::Null);
            let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.lines[i] = Some(format!(
                "node {i} ({}): height {} · produced {} · reorgs {} · side blocks {} · peers {}",
                DEV_ACCOUNTS[i],
                n(&info, "height"),
                n(&status, "blocks_produced"),
                n(&status, "reorgs"),
                n(&status, "side_blocks"),
                n(&status, "peers"),
            ));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, line)| match line {
                Some(line) => line.clone(),
                None => format!("node {i} ({}): never answered", DEV_ACCOUNTS[i]),
            })
            .collect()
    }
}
