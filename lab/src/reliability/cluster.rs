//! A 4-node devnet of real node processes for one (scenario, engine) row, with the fault
//! actions the scenarios need: cut nodes off (`admin_blockPeers`), pause (SIGSTOP), kill
//! and restart on the same data dir, restart with other flags.

use super::bank::{BANK_ACCOUNTS, BANK_FUNDING_TOY, bank_key};
use anyhow::{Context, anyhow};
use chain::{Address, Amount, COIN, ChainId};
use config::{ChainSpec, EngineKind};
use devnet::{Fleet, Layout, RPC_TIMEOUT, SignalWatch, wait_until_serving};
use nix::sys::signal::Signal;
use node::ports::free_port_bases;
use node::rpc_client::RpcClient;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Nodes per devnet.
pub const NODES: usize = 4;
/// How long nodes get to serve RPC again after a restart, or to find their peers.
const UP_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Cluster {
    pub kind: EngineKind,
    pub spec: ChainSpec,
    pub chain_id: ChainId,
    pub clients: Vec<RpcClient>,
    /// Nodes not to be asked right now (paused, killed): RPC calls to them would hang.
    pub down: Vec<AtomicBool>,
    pub peer_ids: Vec<String>,
    /// Behind a lock so the workload and the watch can share the cluster with the
    /// thread that kills and restarts nodes.
    fleet: Mutex<Fleet>,
}

/// The devnet's chain spec: the engine's dev spec for 4 authors with `block_time`, plus
/// the bank accounts funded at genesis.
pub fn spec_for(kind: EngineKind, block_time: u64) -> ChainSpec {
    let mut spec = ChainSpec::dev_with(kind, &config::dev_authorities(NODES));
    spec.engine.set_block_time(block_time);
    for k in 0..BANK_ACCOUNTS {
        spec.genesis.alloc.push(config::Alloc {
            address: bank_key(k).address(),
            balance: Amount::from_base_units(BANK_FUNDING_TOY * COIN),
        });
    }
    spec
}

impl Cluster {
    /// Starts the devnet in `dir` (wiped first) and waits until every node serves RPC and
    /// has every other node as a peer. `Ok(None)`: interrupted by a signal.
    pub fn start(
        dir: PathBuf,
        kind: EngineKind,
        block_time: u64,
        signals: &SignalWatch,
    ) -> anyhow::Result<Option<Cluster>> {
        let (rpc_port, p2p_port) = free_port_bases(NODES)?;
        let layout = Layout::at(dir, NODES, rpc_port, p2p_port);
        layout.wipe()?;
        std::fs::create_dir_all(layout.spec_path().parent().unwrap_or(&PathBuf::from(".")))
            .context("cannot create the devnet folder")?;
        let spec = spec_for(kind, block_time);
        std::fs::write(layout.spec_path(), spec.to_toml())
            .with_context(|| format!("cannot write {}", layout.spec_path().display()))?;
        let (stored, resumed) = layout.spec(kind, None)?;
        if !resumed || stored != spec {
            return Err(anyhow!("the devnet did not take the reliability spec"));
        }
        layout.check_ports()?;
        // Every node has every earlier one as a bootnode (node 0 comes with the launcher):
        // a full mesh, so cutting one node off leaves the other three connected.
        let bootnodes: Vec<String> = (0..NODES).map(|i| layout.p2p_addr(i)).collect();
        let mut fleet = Fleet::start_with(&layout, false, |i| {
            let mut extra = vec!["--rpc-admin".to_owned()];
            for addr in bootnodes.iter().take(i).skip(1) {
                extra.extend(["--bootnode".to_owned(), addr.clone()]);
            }
            extra
        })?;
        let clients: Vec<RpcClient> = (0..NODES)
            .map(|i| RpcClient::new(&layout.rpc_url(i), RPC_TIMEOUT))
            .collect();
        let Some(info) = wait_until_serving(&mut fleet, &clients, signals)? else {
            return Ok(None);
        };
        let chain_id = info
            .get("chain_id")
            .and_then(Value::as_u64)
            .map(ChainId)
            .ok_or_else(|| anyhow!("node 0 answered chain_info without a chain_id: {info}"))?;
        let mut peer_ids = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            let status = client
                .call("node_status", json!([]))
                .with_context(|| format!("node {i} node_status"))?;
            peer_ids.push(
                status
                    .get("peer_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("node {i} has no peer_id: {status}"))?
                    .to_owned(),
            );
        }
        let cluster = Cluster {
            kind,
            spec,
            chain_id,
            clients,
            down: (0..NODES).map(|_| AtomicBool::new(false)).collect(),
            peer_ids,
            fleet: Mutex::new(fleet),
        };
        cluster.wait_for_mesh()?;
        Ok(Some(cluster))
    }

    pub fn is_down(&self, i: usize) -> bool {
        self.down[i].load(Ordering::Relaxed)
    }

    /// Every node has all others as peers.
    pub fn wait_for_mesh(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + UP_DEADLINE;
        loop {
            let counts: Vec<u64> = (0..NODES).map(|i| self.peers(i).unwrap_or(0)).collect();
            if counts.iter().all(|c| *c as usize >= NODES - 1) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "the nodes did not all connect within {} s (peers per node: {counts:?})",
                    UP_DEADLINE.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn peers(&self, i: usize) -> Option<u64> {
        self.clients[i]
            .call("node_status", json!([]))
            .ok()?
            .get("peers")?
            .as_u64()
    }

    pub fn info(&self, i: usize) -> Option<Value> {
        if self.is_down(i) {
            return None;
        }
        self.clients[i].call("chain_info", json!([])).ok()
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        self.info(i)?.get("height")?.as_u64()
    }

    /// The hash of node i's block at `height`.
    pub fn hash_at(&self, i: usize, height: u64) -> Option<String> {
        let block = self.clients[i]
            .call("chain_getBlock", json!([height]))
            .ok()?;
        block.get("hash")?.as_str().map(str::to_owned)
    }

    /// Splits the nodes into `groups`: each node blocks every node outside its group.
    pub fn partition(&self, groups: &[Vec<usize>]) -> anyhow::Result<()> {
        for group in groups {
            for &i in group {
                let others: Vec<&String> = (0..NODES)
                    .filter(|j| !group.contains(j))
                    .map(|j| &self.peer_ids[j])
                    .collect();
                self.block(i, json!([others]))?;
            }
        }
        Ok(())
    }

    /// Node `i` alone on one side, the rest on the other.
    pub fn isolate(&self, i: usize) -> anyhow::Result<()> {
        let rest: Vec<usize> = (0..NODES).filter(|j| *j != i).collect();
        self.partition(&[vec![i], rest])
    }

    /// Empties every node's block list.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 0..NODES {
            if !self.is_down(i) {
                self.block(i, json!([[]]))?;
            }
        }
        Ok(())
    }

    fn block(&self, i: usize, params: Value) -> anyhow::Result<()> {
        self.clients[i]
            .call("admin_blockPeers", params)
            .map(|_| ())
            .with_context(|| format!("admin_blockPeers on node {i}"))
    }

    fn fleet(&self) -> std::sync::MutexGuard<'_, Fleet> {
        // A panic elsewhere cannot leave the fleet half-changed: take it as it is.
        self.fleet
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn pause(&self, i: usize) {
        self.down[i].store(true, Ordering::Relaxed);
        self.fleet().signal_node(i, Signal::SIGSTOP);
    }

    pub fn resume(&self, i: usize) {
        self.fleet().signal_node(i, Signal::SIGCONT);
        self.down[i].store(false, Ordering::Relaxed);
    }

    /// SIGKILL: a crash.
    pub fn kill(&self, i: usize) {
        self.down[i].store(true, Ordering::Relaxed);
        self.fleet().kill_node(i);
    }

    /// SIGTERM and a clean exit.
    pub fn stop_node(&self, i: usize) {
        self.down[i].store(true, Ordering::Relaxed);
        self.fleet().stop_node(i);
    }

    /// Starts node i again on its data dir with `extra` flags and waits for its RPC.
    pub fn restart(&self, i: usize, extra: &[String]) -> anyhow::Result<()> {
        self.fleet().restart_node(i, extra)?;
        let deadline = Instant::now() + UP_DEADLINE;
        loop {
            if self.clients[i].call("chain_info", json!([])).is_ok() {
                self.down[i].store(false, Ordering::Relaxed);
                return Ok(());
            }
            if let Some(err) = self.fleet().check_alive() {
                return Err(err.context(format!("node {i} after its restart")));
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "node {i} did not serve RPC within {} s of its restart",
                    UP_DEADLINE.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// A node that exited on its own, as an error.
    pub fn check_alive(&self) -> Option<anyhow::Error> {
        self.fleet().check_alive()
    }

    /// Every address that ever held coins on this chain besides producers: the allocs.
    pub fn alloc_addresses(&self) -> Vec<(Address, Amount)> {
        self.spec
            .genesis
            .alloc
            .iter()
            .map(|a| (a.address, a.balance))
            .collect()
    }

    /// Waits until the nodes agree on one chain: the lowest head is at least
    /// `at_least` and every node has the same block at its height. The time it took, or
    /// `None` past `bound`.
    pub fn wait_converged(&self, at_least: u64, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            if self.converged(at_least) {
                return Some(started.elapsed());
            }
            if started.elapsed() >= bound {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    fn converged(&self, at_least: u64) -> bool {
        let mut heights = Vec::new();
        for i in 0..NODES {
            match self.height(i) {
                Some(h) => heights.push(h),
                None => return false,
            }
        }
        let Some(&low) = heights.iter().min() else {
            return false;
        };
        if low < at_least {
            return false;
        }
        let first = self.hash_at(0, low);
        first.is_some() && (1..NODES).all(|i| self.hash_at(i, low) == first)
    }

    /// Each node's head as `#height hash-prefix by producer-prefix`, for failure messages.
    pub fn describe_heads(&self) -> String {
        (0..NODES)
            .map(|i| {
                let head = self.info(i).and_then(|info| {
                    let hash = info.get("head_hash")?.as_str()?.to_owned();
                    let block = self.clients[i].call("chain_getBlock", json!([hash])).ok()?;
                    Some(format!(
                        "#{} {} by {}",
                        block.get("height")?.as_u64()?,
                        hash.get(..8)?,
                        block.get("producer")?.as_str()?.get(..12)?
                    ))
                });
                format!("node {i} {}", head.unwrap_or_else(|| "unreachable".into()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Stops every node (SIGTERM, SIGKILL after a grace); the data stays for a look.
    pub fn stop(self, signals: &SignalWatch) {
        let mut fleet = self.fleet();
        for i in 0..NODES {
            if self.is_down(i) {
                // A paused node cannot act on SIGTERM.
                fleet.signal_node(i, Signal::SIGCONT);
            }
        }
        fleet.stop(signals);
    }
}
