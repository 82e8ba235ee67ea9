//! The command lines of the lab: `toychain compare`, `simulate`, `reliability` and `bench`.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure: `pow` (the miner's hash rate), `sync` (a fresh node catching up
    /// over loopback, against importing the same blocks with no network) or `throughput`
    /// (a devnet's confirmed transfers a second at rising loads, against the signature
    /// ceiling measured in the same run).
    #[arg(value_parser = ["pow", "sync", "throughput"])]
    pub what: String,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds to measure (pow).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Blocks in the chain to sync (sync).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub blocks: u64,
    /// Transfers per block (sync).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=5_000))]
    pub txs: u64,
    /// The engine of the devnet (throughput).
    #[arg(long, default_value = "poa")]
    pub engine: String,
    /// Nodes of the devnet (throughput).
    #[arg(long, default_value_t = 4)]
    pub nodes: u64,
    /// Transfers a second offered, one devnet run each (throughput).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,3000,4000,6000",
        value_name = "R,R,..."
    )]
    pub rates: Vec<f64>,
    /// Seconds each rate is measured (throughput).
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub duration: u64,
    /// Seconds between blocks (throughput).
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub block_time: u64,
    /// Where each run's report and throughput.md go (throughput).
    #[arg(long, default_value = "bench-throughput-out", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    long_about = "For each engine in turn: a fresh devnet of --nodes real node processes on \
                  127.0.0.1 (free ports), a seeded load of --tx-rate transfers a second between \
                  the dev accounts, and a collector polling every node's RPC; then the devnet \
                  is stopped and the next engine starts. Writes report.md, report.html, metrics.csv, \
                  metrics.json and SVG charts to --out."
)]
pub struct CompareArgs {
    /// Engines to compare, comma-separated [default: every engine this build has].
    #[arg(long, value_delimiter = ',', value_name = "KIND,KIND,...")]
    pub engines: Vec<String>,
    /// Node processes per devnet (1 to 8, one per dev account).
    #[arg(long, default_value_t = 4)]
    pub nodes: u64,
    /// Seconds each engine is measured (after its nodes serve RPC).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub duration: u64,
    /// Transfers a second sent through the nodes' RPC (0 for no load).
    #[arg(
        long,
        default_value_t = 2.0,
        value_name = "R",
        allow_hyphen_values = true
    )]
    pub tx_rate: f64,
    /// Inject a fault into every engine's run (repeatable): kill-producer@T (kill the
    /// newest block's producer T s in), partition@T:DUR (split the nodes in halves for DUR
    /// s), clock-skew:NODE:SECS (that node's clock runs SECS ahead, negative behind),
    /// delay:MS (every message takes MS longer).
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<String>,
    /// Where the report, the charts and each engine's devnet folder go.
    #[arg(long, default_value = "compare-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Target seconds between blocks for every engine (default: each engine's dev value).
    #[arg(long, value_name = "SECS")]
    pub block_time: Option<u64>,
    /// Seed of the load generator: the same seed sends the same transfers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
#[command(
    long_about = "A deterministic discrete-event simulation: --nodes nodes in this process, each \
                  with the real chain (validation, state, fork choice) and the real engine, under \
                  a virtual clock and a simulated network (log-normal delays around --latency, \
                  per-node upload --bandwidth, gossip --loss). Proof of work's nonce search is \
                  replaced by solve times drawn from each node's hash power. The same --seed \
                  gives the same output; days of chain time take seconds. Writes report.md, report.html, \
                  metrics.csv, metrics.json and SVG charts to --out, as compare does."
)]
pub struct SimulateArgs {
    /// The engine, or a comma list to simulate each in turn (pow, pos, dpos, poa).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "KIND[,KIND...]",
        required_unless_present_any = ["chain", "sweep"]
    )]
    pub engine: Vec<String>,
    /// Simulate this chain spec instead of an engine's dev spec (node i authors as dev
    /// account i, or past the eighth as the key derived from "toychain/sim/i").
    #[arg(long, value_name = "SPEC.toml", conflicts_with_all = ["engine", "block_time"])]
    pub chain: Option<PathBuf>,
    /// Simulated nodes, each authoring blocks (1 to 1000).
    #[arg(long, default_value_t = 4)]
    pub nodes: u64,
    /// Virtual time per engine: seconds, or with a unit: 90s, 10m, 2h, 3d.
    #[arg(long, default_value = "1h", value_name = "SIM-TIME")]
    pub duration: String,
    /// Mean one-way network delay, ms.
    #[arg(
        long,
        default_value_t = 100.0,
        value_name = "MS",
        allow_hyphen_values = true
    )]
    pub latency: f64,
    /// Standard deviation of the delay, ms [default: a fifth of --latency].
    #[arg(long, value_name = "MS", allow_hyphen_values = true)]
    pub jitter: Option<f64>,
    /// Each node's upload rate, bytes a second.
    #[arg(
        long,
        default_value_t = 1_000_000.0,
        value_name = "BYTES",
        allow_hyphen_values = true
    )]
    pub bandwidth: f64,
    /// Probability that a gossiped block or transaction is lost on a link.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "P",
        allow_hyphen_values = true
    )]
    pub loss: f64,
    /// PoW hash power per node, node 0 first, as relative shares [default: equal].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "R,R,...",
        allow_hyphen_values = true
    )]
    pub hash_rates: Vec<f64>,
    /// Seed of every random draw: the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Transfers a virtual second, between accounts that do not produce where possible (0
    /// for none).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "R",
        allow_hyphen_values = true
    )]
    pub tx_rate: f64,
    /// Target seconds between blocks for every engine (default: each engine's dev value).
    #[arg(long, value_name = "SECS")]
    pub block_time: Option<u64>,
    /// Peers each node keeps (N−1 for a full mesh).
    #[arg(long, default_value_t = crate::simulate::DEFAULT_PEERS, value_name = "K")]
    pub peers: u64,
    /// PoW: this node (0 = the first) mines selfishly, withholding its blocks as Eyal &
    /// Sirer describe.
    #[arg(long, value_name = "NODE")]
    pub selfish: Option<u64>,
    /// Instead of one run, check the simulator against theory: `stale` (stale rate against
    /// 1 − e^(−d/T) over a sweep of d/T), `selfish` (a selfish miner's revenue against
    /// Eyal & Sirer's for α from 0.10 to 0.45), `pbft` (commit latency 3d, messages per
    /// block ~ n², the delay of a view change), `raft` (contested elections
    /// 1 − (1 − d/r)^(N−1), first campaign T + r/N, time to a new leader) or `family` (every
    /// voting engine on one network: message delays and messages to commit, recovery after
    /// a leader crash, crashes tolerated, duelling leaders at start-up). Writes
    /// sweep-<name>.md/.csv/.svg.
    #[arg(
        long,
        value_name = "stale|selfish|pbft|raft|family",
        conflicts_with_all = ["engine", "chain", "selfish"]
    )]
    pub sweep: Option<String>,
    /// The size of each point of a --sweep: blocks for stale and selfish (default 20000),
    /// heights for pbft (default 100), trials for raft (default 1000; half as many for each time-to-leader curve),
    /// steady heights for family (default 30).
    #[arg(long, value_name = "N", requires = "sweep")]
    pub sweep_blocks: Option<u64>,
    /// Inject a fault into every engine's simulation (repeatable): kill-producer@T (kill the
    /// newest block's producer T s in), partition@T:DUR (split the nodes in halves for DUR
    /// s), clock-skew:NODE:SECS (that node's clock runs SECS ahead, negative behind),
    /// delay:MS (every message takes MS longer).
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<String>,
    /// Where the report and the charts go.
    #[arg(long, default_value = "simulate-out", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    long_about = "For each scenario and engine: a fresh devnet of 4 node processes on 127.0.0.1 \
                  (free ports, --rpc-admin, in OUT/devnets/), a bank workload of transfers \
                  among 8 accounts recording every acknowledged hash, and a fault: disconnect \
                  (node 3 cut off, then healed), pause (SIGSTOP/SIGCONT), restart (SIGKILL and \
                  start again), split (2|2 partition), clock-skew (node 3 restarted a few \
                  seconds ahead), crash (a producer killed at random points while it produces \
                  and while it reorgs). After the heal: one head within a bound, no finalized \
                  block reverted, supply = genesis + rewards exactly, every acknowledged tx \
                  included once or pending. Writes reliability.md and reliability.json to --out; \
                  exits 1 if any row fails."
)]
pub struct ReliabilityArgs {
    /// Engines, comma-separated [default: every engine this build has].
    #[arg(long, value_delimiter = ',', value_name = "KIND,KIND,...")]
    pub engines: Vec<String>,
    /// Scenarios, comma-separated: disconnect, pause, restart, split, clock-skew, crash
    /// [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAME,NAME,...")]
    pub scenarios: Vec<String>,
    /// The short suite for CI: 5 s faults (split 8 s) and 5 crash kills instead of 10 s
    /// (20 s) and 100.
    #[arg(long)]
    pub quick: bool,
    /// Kills in the crash scenario (overrides 5 with --quick, 100 without).
    #[arg(long, value_name = "N")]
    pub crash_cycles: Option<usize>,
    /// Seed of the workload and of the crash points.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the report and each row's devnet folder go.
    #[arg(long, default_value = "reliability-out", value_name = "DIR")]
    pub out: PathBuf,
}
