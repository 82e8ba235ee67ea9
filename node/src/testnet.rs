//! Nodes in this process, for multi-node tests: [`launch`] starts one node from its command
//! line on threads of its own and answers with a [`NodeHandle`]; [`TestBuilder`] starts a
//! whole network of them on one dev chain (malachite's `TestBuilder` is the model):
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use node::testnet::TestBuilder;
//! use std::time::Duration;
//! let dir = std::env::temp_dir().join("toychain-doc-testnet");
//! let mut net = TestBuilder::new(&dir, config::EngineKind::Poa)
//!     .add_node()
//!     .add_node()
//!     .add_node()
//!     .block_time(1)
//!     .start()?;
//! net.wait_until(5, Duration::from_secs(60))?;
//! net.crash(2)?;
//! net.wait_until(8, Duration::from_secs(60))?;
//! net.restart_after(2, Duration::from_secs(1))?;
//! net.partition(&[0])?;
//! net.heal()?;
//! # Ok(()) }
//! ```
//!
//! Every node listens on 127.0.0.1 only, on ports the system gives out, and keeps its data
//! under the builder's folder; dropping the [`TestNet`] stops them all. The process-level
//! tests of the binary (`toychain/tests/it/`) remain the way to test signals, exit codes and
//! a kill -9.

use crate::args::NodeArgs;
use crate::rpc_client::RpcClient;
use crate::run::{Ready, Shutdown, Stop, serve, settings};
use anyhow::{Context, anyhow};
use chain::VotingMachine;
use clap::Parser;
use config::{ChainSpec, EngineKind};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a node may take to serve RPC after [`launch`].
const START_DEADLINE: Duration = Duration::from_secs(60);
/// Time allowed for one RPC call.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(100);

/// `toychain node`'s flags, parsed as the binary parses them.
#[derive(Debug, Parser)]
struct NodeCommand {
    #[command(flatten)]
    args: NodeArgs,
}

/// One node running in this process.
#[derive(Debug)]
pub struct NodeHandle {
    rpc_addr: SocketAddr,
    peer_id: net::PeerId,
    p2p_addr: net::Multiaddr,
    stop: Option<tokio::sync::oneshot::Sender<Stop>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// What a test puts around a node's voting machine: the node drives the returned machine
/// in its place. A Byzantine replica in a test is an honest machine wrapped in one that
/// rewrites its outputs (as Polkadot's `malus` and CometBFT's `maverick` nodes are honest
/// nodes with one behaviour replaced); nothing outside [`TestBuilder::wrap_machine`] sets
/// it.
#[derive(Clone)]
pub struct MachineWrap(pub Arc<WrapFn>);

/// The function inside a [`MachineWrap`]: the honest machine in, the one to drive out.
pub type WrapFn = dyn Fn(Box<dyn VotingMachine>) -> Box<dyn VotingMachine> + Send + Sync;

impl std::fmt::Debug for MachineWrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MachineWrap")
    }
}

/// Starts a node from `toychain node`'s flags (without the command name) on a runtime of
/// its own, and returns once it serves RPC.
pub fn launch(flags: &[String]) -> anyhow::Result<NodeHandle> {
    launch_wrapped(flags, None)
}

/// [`launch`], with the node's voting machine inside `wrap`.
fn launch_wrapped(flags: &[String], wrap: Option<MachineWrap>) -> anyhow::Result<NodeHandle> {
    let args =
        NodeCommand::try_parse_from(std::iter::once("node".to_owned()).chain(flags.to_vec()))
            .map_err(|e| anyhow!("bad node flags {flags:?}: {e}"))?
            .args;
    let mut settings = settings(&args)?;
    settings.voting_wrap = wrap;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("testnet-node".into())
        .spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .thread_name("testnet-rt")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(
                settings,
                args,
                Shutdown::Handle(stop_rx),
                Some(ready_tx),
            ))
        })
        .context("cannot start a node thread")?;
    match ready_rx.recv_timeout(START_DEADLINE) {
        Ok(ready) => Ok(NodeHandle {
            rpc_addr: ready.rpc_addr,
            peer_id: ready.peer_id,
            p2p_addr: ready.p2p_addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Err(_) => {
            // The node failed before serving (its error is the thread's result), or hangs.
            let _ = stop_tx.send(Stop::Crash);
            match thread.join() {
                Ok(Err(e)) => Err(e.context("the node did not start")),
                _ => Err(anyhow!(
                    "the node did not serve RPC within {} s",
                    START_DEADLINE.as_secs()
                )),
            }
        }
    }
}

impl NodeHandle {
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    pub fn peer_id(&self) -> net::PeerId {
        self.peer_id
    }

    /// The address the node's network listens on (with the port the system gave, when it
    /// was started on port 0).
    pub fn p2p_addr(&self) -> &net::Multiaddr {
        &self.p2p_addr
    }

    pub fn client(&self) -> RpcClient {
        RpcClient::new(&self.rpc_url(), RPC_TIMEOUT)
    }

    /// Stops the node (see [`Stop`]) and waits for its threads; the node's own error, if it
    /// failed while running, comes back here.
    pub fn stop(mut self, how: Stop) -> anyhow::Result<()> {
        self.halt(how)
    }

    fn halt(&mut self, how: Stop) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow!("the node thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        let _ = self.halt(Stop::Graceful);
    }
}

/// A network of in-process nodes on one dev chain; see the module documentation.
#[derive(Debug)]
pub struct TestBuilder {
    root: PathBuf,
    kind: EngineKind,
    nodes: usize,
    block_time: Option<u64>,
    engine: Option<miner::EngineSpec>,
    wraps: Vec<(usize, MachineWrap)>,
}

impl TestBuilder {
    /// A network of `kind` whose nodes keep their data under `root` (wiped first).
    pub fn new(root: &Path, kind: EngineKind) -> TestBuilder {
        TestBuilder {
            root: root.to_owned(),
            kind,
            nodes: 0,
            block_time: None,
            engine: None,
            wraps: Vec::new(),
        }
    }

    /// One more node, producing as the next dev account (alice, bob, …).
    pub fn add_node(mut self) -> TestBuilder {
        self.nodes += 1;
        self
    }

    /// Overrides the engine's seconds between blocks.
    pub fn block_time(mut self, secs: u64) -> TestBuilder {
        self.block_time = Some(secs);
        self
    }

    /// Runs the engine with these parameters instead of the dev ones (its producers must
    /// be the nodes' dev accounts, alice, bob, …).
    pub fn engine(mut self, engine: miner::EngineSpec) -> TestBuilder {
        self.engine = Some(engine);
        self
    }

    /// Runs node `i`'s voting machine inside `wrap` (at every start of that node).
    pub fn wrap_machine(
        mut self,
        i: usize,
        wrap: impl Fn(Box<dyn VotingMachine>) -> Box<dyn VotingMachine> + Send + Sync + 'static,
    ) -> TestBuilder {
        self.wraps.push((i, MachineWrap(Arc::new(wrap))));
        self
    }

    /// Writes the chain spec and starts every node, each dialling the nodes before it.
    pub fn start(self) -> anyhow::Result<TestNet> {
        let accounts = chain::dev::DEV_ACCOUNTS;
        if self.nodes == 0 || self.nodes > accounts.len() {
            return Err(anyhow!(
                "a test network has 1 to {} nodes, not {}",
                accounts.len(),
                self.nodes
            ));
        }
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root)
                .with_context(|| format!("cannot wipe {}", self.root.display()))?;
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let authors: Vec<chain::Address> = (0..self.nodes)
            .map(|i| chain::dev::dev_address(accounts[i]))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow!("a dev account name does not make a key"))?;
        let mut spec = ChainSpec::dev_with(self.kind, &authors);
        if let Some(engine) = self.engine {
            spec.engine = engine;
        }
        if let Some(secs) = self.block_time {
            spec.set_block_time(secs)?;
        }
        // A genesis just behind the clock, so the first blocks are not all at once.
        spec.genesis.timestamp = chain::Clock::now(&chain::SystemClock).0.saturating_sub(1);
        let spec_path = self.root.join("spec.toml");
        std::fs::write(&spec_path, spec.to_toml())
            .with_context(|| format!("cannot write {}", spec_path.display()))?;
        let mut net = TestNet {
            root: self.root,
            spec_path,
            slots: Vec::new(),
        };
        for (i, author) in accounts.iter().take(self.nodes).enumerate() {
            let wrap = self
                .wraps
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, w)| w.clone());
            net.slots.push(Slot {
                author,
                node: None,
                wrap,
            });
            net.start_node(i)?;
        }
        Ok(net)
    }
}

#[derive(Debug)]
struct Slot {
    author: &'static str,
    node: Option<NodeHandle>,
    wrap: Option<MachineWrap>,
}

/// Running nodes started by a [`TestBuilder`]; dropping it stops them.
#[derive(Debug)]
pub struct TestNet {
    root: PathBuf,
    spec_path: PathBuf,
    slots: Vec<Slot>,
}

impl TestNet {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Node `i`, if it runs.
    pub fn node(&self, i: usize) -> Option<&NodeHandle> {
        self.slots.get(i).and_then(|s| s.node.as_ref())
    }

    fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let mut flags: Vec<String> = [
            "--chain",
            &self.spec_path.display().to_string(),
            "--data-dir",
            &self.root.join(format!("node{i}")).display().to_string(),
            "--rpc-addr",
            "127.0.0.1:0",
            // Port 0: a port picked beforehand could be taken by any connection opened
            // meanwhile (CI once lost a node to that); the node reports the one it got.
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--author",
            self.slots[i].author,
            "--rpc-admin",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for (j, slot) in self.slots.iter().enumerate() {
            if let Some(node) = slot.node.as_ref().filter(|_| j != i) {
                flags.push("--bootnode".into());
                flags.push(node.p2p_addr().to_string());
            }
        }
        let node = launch_wrapped(&flags, self.slots[i].wrap.clone())
            .with_context(|| format!("node {i}"))?;
        self.slots[i].node = Some(node);
        Ok(())
    }

    /// The best-chain heights of the running nodes (`None` for a stopped one).
    pub fn heights(&self) -> Vec<Option<u64>> {
        self.slots
            .iter()
            .map(|s| {
                let info = s
                    .node
                    .as_ref()?
                    .client()
                    .call("chain_info", json!([]))
                    .ok()?;
                info["height"].as_u64()
            })
            .collect()
    }

    /// Waits until every running node's head is at `height` or above.
    pub fn wait_until(&self, height: u64, deadline: Duration) -> anyhow::Result<()> {
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].node.is_some())
            .collect();
        self.wait_nodes(&running, height, deadline)
    }

    /// Waits until the heads of `nodes` are at `height` or above.
    pub fn wait_nodes(
        &self,
        nodes: &[usize],
        height: u64,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        loop {
            let heights = self.heights();
            let there = nodes
                .iter()
                .filter(|&&i| {
                    heights
                        .get(i)
                        .copied()
                        .flatten()
                        .is_some_and(|h| h >= height)
                })
                .count();
            if !nodes.is_empty() && there == nodes.len() {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(anyhow!(
                    "height {height} not reached within {} s: heights {heights:?}",
                    deadline.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `nodes` have the same head height (what one of them decided has reached
    /// the others) and returns it.
    pub fn wait_level(&self, nodes: &[usize], deadline: Duration) -> anyhow::Result<u64> {
        let until = Instant::now() + deadline;
        loop {
            let heights = self.heights();
            let of: Vec<Option<u64>> = nodes
                .iter()
                .map(|&i| heights.get(i).copied().flatten())
                .collect();
            if let Some(Some(first)) = of.first()
                && of.iter().all(|h| *h == Some(*first))
            {
                return Ok(*first);
            }
            if Instant::now() >= until {
                return Err(anyhow!(
                    "nodes {nodes:?} did not reach one height within {} s: {of:?}",
                    deadline.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The hash of the block at `height` on node `i`'s best chain.
    pub fn hash_at(&self, i: usize, height: u64) -> anyhow::Result<Option<String>> {
        let node = self
            .node(i)
            .ok_or_else(|| anyhow!("node {i} is not running"))?;
        let block: Value = node
            .client()
            .call("chain_getBlock", json!([height]))
            .map_err(|e| anyhow!("node {i} chain_getBlock {height}: {e}"))?;
        Ok(block["hash"].as_str().map(str::to_owned))
    }

    /// Stops node `i` with no shutdown sequence ([`Stop::Crash`]).
    pub fn crash(&mut self, i: usize) -> anyhow::Result<()> {
        self.halt(i, Stop::Crash)
    }

    /// Stops node `i` in order ([`Stop::Graceful`]).
    pub fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        self.halt(i, Stop::Graceful)
    }

    fn halt(&mut self, i: usize, how: Stop) -> anyhow::Result<()> {
        let slot = self
            .slots
            .get_mut(i)
            .ok_or_else(|| anyhow!("there is no node {i}"))?;
        match slot.node.take() {
            Some(node) => node.stop(how),
            None => Err(anyhow!("node {i} is not running")),
        }
    }

    /// Starts stopped node `i` again on its data after `delay`.
    pub fn restart_after(&mut self, i: usize, delay: Duration) -> anyhow::Result<()> {
        if self.node(i).is_some() {
            return Err(anyhow!("node {i} is running"));
        }
        std::thread::sleep(delay);
        self.start_node(i)
    }

    /// Cuts the nodes in `side` off from the rest (each side blocks the other's peer ids).
    pub fn partition(&self, side: &[usize]) -> anyhow::Result<()> {
        let ids = |inside: bool| -> Vec<String> {
            self.slots
                .iter()
                .enumerate()
                .filter(|(j, _)| side.contains(j) == inside)
                .filter_map(|(_, s)| s.node.as_ref().map(|n| n.peer_id().to_string()))
                .collect()
        };
        let (ours, theirs) = (ids(true), ids(false));
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(node) = &slot.node {
                let block = if side.contains(&i) { &theirs } else { &ours };
                self.block(i, node, block)?;
            }
        }
        Ok(())
    }

    /// Lets every node reach every other again.
    pub fn heal(&self) -> anyhow::Result<()> {
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(node) = &slot.node {
                self.block(i, node, &[])?;
            }
        }
        Ok(())
    }

    fn block(&self, i: usize, node: &NodeHandle, peers: &[String]) -> anyhow::Result<()> {
        node.client()
            .call("admin_blockPeers", json!([peers]))
            .map(|_| ())
            .map_err(|e| anyhow!("node {i} admin_blockPeers: {e}"))
    }
}
