//! `toychain bench sync`: how fast a fresh node catches up over loopback, against how fast
//! the same blocks import with no network at all.
//!
//! 1. A proof-of-work chain of `--blocks` blocks with `--txs` transfers each is built into
//!    a RocksDB store (easy targets, block times in the past).
//! 2. The same blocks are imported into a second, empty store in this process: the import
//!    ceiling (stateless checks, signatures, execution, one write batch per block).
//! 3. Node A serves the built chain; node B starts empty with A as its bootnode, and the
//!    time from B serving RPC to B's head at the last block is the sync time.

use anyhow::{Context, anyhow};
use chain::dev::{DEV_ACCOUNTS, dev_key};
use chain::{
    Amount, Block, CancelFlag, Chain, ChainConfig, ChainView, Clock, ManualClock, RocksStore,
    Timestamp, Transaction, TxKind,
};
use config::{ChainSpec, EngineKind, EngineSpec};
use node::rpc_client::RpcClient;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long node B may take to sync before the bench gives up.
const SYNC_DEADLINE: Duration = Duration::from_secs(1_800);

pub fn run(blocks: u64, txs_per_block: usize) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("toychain-bench-sync-{}", std::process::id()));
    let result = measure(&root, blocks, txs_per_block);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn measure(root: &Path, blocks: u64, txs_per_block: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let spec = bench_spec(blocks)?;
    let spec_path = root.join("spec.toml");
    std::fs::write(&spec_path, spec.to_toml())?;

    println!("building {blocks} blocks of {txs_per_block} transfers…");
    let built = build_chain(&spec, &root.join("a"), blocks, txs_per_block)?;
    let txs = blocks * txs_per_block as u64;

    let started = Instant::now();
    let mut fresh = open_chain(&spec, &root.join("c"))?;
    for block in &built {
        fresh
            .import_block(block.clone())
            .map_err(|e| anyhow!("re-import refused a block: {e}"))?;
    }
    fresh.flush()?;
    let import_secs = started.elapsed().as_secs_f64();
    drop(fresh);

    let (rpc_base, p2p_base) = node::ports::free_port_bases(2)?;
    let mut a = NodeProcess::start(&spec_path, &root.join("a"), rpc_base, p2p_base, None)?;
    let a_rpc = RpcClient::new(
        &format!("http://127.0.0.1:{rpc_base}"),
        Duration::from_secs(5),
    );
    wait_height(&a_rpc, &mut a, blocks, Duration::from_secs(60))?;
    let boot = format!("/ip4/127.0.0.1/tcp/{p2p_base}");
    let mut b = NodeProcess::start(
        &spec_path,
        &root.join("b"),
        rpc_base + 1,
        p2p_base + 1,
        Some(&boot),
    )?;
    let b_rpc = RpcClient::new(
        &format!("http://127.0.0.1:{}", rpc_base + 1),
        Duration::from_secs(5),
    );
    wait_height(&b_rpc, &mut b, 0, Duration::from_secs(60))?;
    println!("node B syncing {blocks} blocks from node A…");
    let started = Instant::now();
    wait_height(&b_rpc, &mut b, blocks, SYNC_DEADLINE)?;
    let sync_secs = started.elapsed().as_secs_f64();
    let same = head(&a_rpc)? == head(&b_rpc)?;
    a.stop();
    b.stop();
    anyhow::ensure!(same, "node B ended on another head than node A");

    let rate = |secs: f64| (blocks as f64 / secs, txs as f64 / secs);
    let (ib, it) = rate(import_secs);
    let (sb, st) = rate(sync_secs);
    println!();
    println!("| {blocks} blocks × {txs_per_block} txs | seconds | blocks/s | txs/s |");
    println!("|---|---|---|---|");
    println!("| import into RocksDB, no network | {import_secs:.2} | {ib:.0} | {it:.0} |");
    println!("| sync over loopback (node B) | {sync_secs:.2} | {sb:.0} | {st:.0} |");
    println!();
    println!("sync reaches {:.0}% of the import rate", 100.0 * sb / ib);
    Ok(())
}

/// The dev PoW chain with targets a debug build mines at once, its genesis far enough in
/// the past that one block a second up to `blocks` is never "in the future".
fn bench_spec(blocks: u64) -> anyhow::Result<ChainSpec> {
    let mut spec = ChainSpec::dev(EngineKind::Pow);
    spec.chain_id = 4_242_424;
    let now = chain::SystemClock.now().0;
    spec.genesis.timestamp = now
        .checked_sub(blocks + 3_600)
        .ok_or_else(|| anyhow!("--blocks {blocks} reaches before 1970"))?;
    let mut p = miner::pow::PowParams::devnet();
    p.genesis_bits = miner::pow::CompactTarget::from_consensus(0x207f_ffff);
    p.pow_limit = p.genesis_bits;
    p.target_block_time = 1;
    spec.engine = EngineSpec::Pow(p);
    Ok(spec)
}

fn open_chain(spec: &ChainSpec, dir: &Path) -> anyhow::Result<Chain> {
    std::fs::create_dir_all(dir)?;
    let store = Arc::new(RocksStore::open(dir.join("db"))?);
    let clock: Arc<dyn Clock> =
        Arc::new(ManualClock::new(Timestamp(chain::SystemClock.now().0 + 60)));
    Ok(Chain::open(
        store,
        spec.engine.engines(None, 1)?.engine,
        clock,
        ChainConfig::new(chain::ChainId(spec.chain_id)),
        &spec.genesis(),
    )?)
}

/// Builds the chain into `dir` and returns its blocks.
fn build_chain(
    spec: &ChainSpec,
    dir: &Path,
    blocks: u64,
    txs_per_block: usize,
) -> anyhow::Result<Vec<Block>> {
    let mut chain = open_chain(spec, dir)?;
    let keys: Vec<_> = DEV_ACCOUNTS.iter().filter_map(|n| dev_key(n)).collect();
    let miner = spec
        .engine
        .engines(keys.first(), 1)?
        .producer
        .ok_or_else(|| anyhow!("no producer for the bench's miner"))?;
    let mut nonces = vec![0u64; keys.len()];
    let mut out = Vec::with_capacity(usize::try_from(blocks).unwrap_or(0));
    for i in 1..=blocks {
        let txs: Vec<Transaction> = (0..txs_per_block)
            .map(|j| {
                let s = j % keys.len();
                let tx = Transaction::signed(
                    &keys[s],
                    chain::ChainId(spec.chain_id),
                    nonces[s],
                    Amount::from_base_units(1_000),
                    TxKind::Transfer {
                        to: keys[(s + 1) % keys.len()].address(),
                        amount: Amount::from_base_units(10_000),
                    },
                );
                nonces[s] += 1;
                tx
            })
            .collect();
        let mut header = chain.template(miner.author(), Timestamp(spec.genesis.timestamp + i));
        miner.prepare(&chain, &chain.head(), &mut header)?;
        let built = chain.build_block(header, txs, usize::MAX)?;
        anyhow::ensure!(built.skipped.is_empty(), "a generated transfer was skipped");
        let header = miner
            .seal(built.block.header, &CancelFlag::new())?
            .ok_or_else(|| anyhow!("the seal search was cancelled"))?;
        let block = Block {
            header,
            txs: built.block.txs,
        };
        chain.import_block(block.clone())?;
        out.push(block);
        if i % 500 == 0 {
            println!("  built {i}/{blocks}");
        }
    }
    chain.flush()?;
    Ok(out)
}

/// A `toychain node` child process (no author), stopped on drop.
struct NodeProcess {
    child: Child,
    log: PathBuf,
}

impl NodeProcess {
    fn start(
        spec: &Path,
        dir: &Path,
        rpc: u16,
        p2p: u16,
        bootnode: Option<&str>,
    ) -> anyhow::Result<NodeProcess> {
        std::fs::create_dir_all(dir)?;
        let log = dir.with_extension("log");
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("node")
            .arg("--chain")
            .arg(spec)
            .arg("--data-dir")
            .arg(dir)
            .args(["--rpc-addr", &format!("127.0.0.1:{rpc}")])
            .args(["--p2p-listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
            .args(["--parent-pid", &std::process::id().to_string()]);
        if let Some(boot) = bootnode {
            command.args(["--bootnode", boot]);
        }
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("cannot start a node")?;
        Ok(NodeProcess { child, log })
    }

    fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn head(rpc: &RpcClient) -> anyhow::Result<String> {
    Ok(rpc.call_explained("chain_info", json!([]))?["head_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Waits until the node answers with a height of at least `height`.
fn wait_height(
    rpc: &RpcClient,
    node: &mut NodeProcess,
    height: u64,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(info) = rpc.call("chain_info", json!([]))
            && info["height"].as_u64().is_some_and(|h| h >= height)
        {
            return Ok(());
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            return Err(anyhow!(
                "a node exited ({status}); see {}",
                node.log.display()
            ));
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "no height {height} at {} within {} s",
                rpc.url(),
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
