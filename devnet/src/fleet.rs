//! The node processes of one devnet: where their files live, starting, signalling,
//! restarting and stopping them, and waiting until they serve RPC.

use crate::{DevnetArgs, LOG_TAIL_LINES, POLL, STARTUP_DEADLINE, STOP_GRACE, usage};
/// Where everything of one engine's devnet lives, and the ports.
#[derive(Debug)]
pub struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) nodes: usize,
    pub(crate) rpc_port: u16,
    p2p_port: u16,
}
use anyhow::{Context, anyhow};
use chain::dev::DEV_ACCOUNTS;
use config::{ChainSpec, EngineKind};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use node::rpc_client::RpcClient;
use serde_json::{Value, json};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

impl Layout {
    pub(crate) fn new(args: &DevnetArgs, kind: EngineKind, nodes: usize) -> anyhow::Result<Layout> {
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
    pub fn at(root: PathBuf, nodes: usize, rpc_port: u16, p2p_port: u16) -> Layout {
        Layout {
            root,
            nodes,
            rpc_port,
            p2p_port,
        }
    }

    pub fn spec_path(&self) -> PathBuf {
        self.root.join("spec.toml")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{i}"))
    }

    pub(crate) fn log_path(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{i}.log"))
    }

    pub(crate) fn port(base: u16, i: usize) -> u16 {
        // `Layout::new` checked that base + nodes - 1 fits.
        base.saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
    }

    pub(crate) fn rpc_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", Self::port(self.rpc_port, i))
    }

    pub fn rpc_url(&self, i: usize) -> String {
        format!("http://{}", self.rpc_addr(i))
    }

    /// The dashboard served by node 0, showing every node of the devnet (their RPC
    /// addresses in the query string, which the page reads).
    pub fn dashboard_url(&self) -> String {
        let nodes: Vec<String> = (0..self.nodes).map(|i| self.rpc_addr(i)).collect();
        format!("{}/?nodes={}", self.rpc_url(0), nodes.join(","))
    }

    pub fn p2p_addr(&self, i: usize) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", Self::port(self.p2p_port, i))
    }

    /// `--fresh`: deletes the engine's folder, but only one that looks like a devnet's, so
    /// a mistyped `--dir` cannot erase unrelated files. True when there was one to delete.
    pub fn wipe(&self) -> anyhow::Result<bool> {
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
    pub fn spec(
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
        self.write_spec(&spec)?;
        Ok((spec, false))
    }

    /// Writes `spec` as this devnet's spec (its nodes start from it).
    pub fn write_spec(&self, spec: &ChainSpec) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let path = self.spec_path();
        std::fs::write(&path, spec.to_toml())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Refuses to start when a port is taken: a node would die at once with less context.
    pub fn check_ports(&self) -> anyhow::Result<()> {
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
pub struct SignalWatch {
    count: Arc<AtomicUsize>,
}

impl SignalWatch {
    /// Installs the handlers before returning, so no signal is lost once nodes run.
    pub fn start() -> anyhow::Result<SignalWatch> {
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

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub(crate) struct NodeProcess {
    index: usize,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
    /// The arguments it was started with, for a restart.
    args: Vec<String>,
}

/// The node processes. Dropping it stops them, so no early return leaves one behind.
#[derive(Debug)]
pub struct Fleet {
    nodes: Vec<NodeProcess>,
}

impl Fleet {
    pub fn start(layout: &Layout, on_demand: bool) -> anyhow::Result<Fleet> {
        Fleet::start_with(layout, on_demand, |_| Vec::new())
    }

    /// [`Fleet::start`] with `extra(i)` appended to node i's arguments (fault-injection
    /// flags, more bootnodes).
    pub fn start_with(
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
    pub fn signal_node(&self, i: usize, sig: Signal) {
        if let Some(node) = self.nodes.get(i)
            && node.exit.is_none()
        {
            signal(&node.child, sig);
        }
    }

    /// SIGKILL to node i, waiting until it is gone: a crash, nothing flushed.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i)
            && node.exit.is_none()
        {
            let _ = node.child.kill();
            node.exit = node.child.wait().ok();
        }
    }

    /// SIGTERM to node i and a wait for its clean exit (SIGKILL after the grace period).
    pub fn stop_node(&mut self, i: usize) {
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
    pub fn restart_node(&mut self, i: usize, extra: &[String]) -> anyhow::Result<()> {
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
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.child.id()).collect()
    }

    /// The first node that exited on its own, as an error showing the end of its log.
    pub fn check_alive(&mut self) -> Option<anyhow::Error> {
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
    pub fn stop(&mut self, signals: &SignalWatch) -> Vec<(usize, String)> {
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

pub(crate) fn signal(child: &Child, sig: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // ESRCH: it is already gone, which is what we want.
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Starts `toychain ARGS` as node i with stdout and stderr to `log` (appended when
/// `append`, so a restarted node's log continues).
pub(crate) fn spawn_node(
    i: usize,
    args: &[String],
    log_path: &Path,
    append: bool,
) -> anyhow::Result<Child> {
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
pub(crate) fn log_tail(path: &Path, n: usize) -> Vec<String> {
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
pub fn wait_until_serving(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_url_lists_every_node_rpc_address() {
        let layout = Layout::at(PathBuf::from("devnet"), 3, 8545, 30333);
        assert_eq!(
            layout.dashboard_url(),
            "http://127.0.0.1:8545/?nodes=127.0.0.1:8545,127.0.0.1:8546,127.0.0.1:8547"
        );
    }
}
