//! What one engine's run leaves behind: every block any node had on its best chain, each
//! node's heads over time, the transactions sent, and the counters read at the end. The
//! collector and the load generator fill it in; [`super::metrics`] only reads it.
//!
//! Times are seconds since the collector started ([`Secs`]), taken from one monotonic
//! clock in this process, so they compare across nodes without any clock skew.

use super::faults::Fault;
use chain::{Address, BlockHash, Height, TxHash};
use config::EngineKind;
use std::collections::{BTreeMap, HashMap};

/// Seconds since the collector's start.
pub type Secs = f64;

/// A block as the collector recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenBlock {
    pub hash: BlockHash,
    pub height: Height,
    pub parent: BlockHash,
    pub producer: Address,
    pub txs: Vec<TxHash>,
    /// When some node first had it on its best chain.
    pub first_seen: Secs,
    /// When each node first had it on its best chain (`None`: never, as far as polled).
    pub seen_by: Vec<Option<Secs>>,
    /// Already there at the collector's first poll, so `first_seen` is not when it was made.
    pub preexisting: bool,
    /// For a block decided by votes, which no node shows before it is decided: how long
    /// the node that first showed it took from holding the proposal to the decision
    /// (`commit_latency_ms` of `chain_getBlock`). The block's life starts that long before
    /// `first_seen`.
    pub decided_in: Option<Secs>,
}

/// Every recorded block by hash: a tree rooted at genesis, forks included.
pub type BlockTree = HashMap<BlockHash, SeenBlock>;

/// A node's head (and the finalized height it reported) from the moment it was polled;
/// recorded only when either changed since that node's previous observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub at: Secs,
    pub node: usize,
    pub head: BlockHash,
    pub finalized: Option<Height>,
}

/// A transfer the load generator got accepted by a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Submitted {
    pub hash: TxHash,
    /// Just before the `tx_submit` call was sent.
    pub at: Secs,
}

/// What the nodes themselves counted (from `node_status`), summed over the nodes; `None`
/// when a node did not answer at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeCounters {
    pub blocks_produced: Option<u64>,
    pub reorgs: Option<u64>,
    pub reorg_depth_max: Option<u64>,
    /// Signatures the nodes actually verified (their signature caches' misses), summed.
    pub signature_checks: Option<u64>,
}

/// One engine's whole run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub engine: EngineKind,
    /// Seconds between blocks the engine's spec aims for.
    pub block_time: u64,
    /// Node i's author, node 0 first, with its name (a dev account's, or a simulated
    /// node's beyond them).
    pub authors: Vec<(String, Address)>,
    /// Seconds from the collector's start to its last poll.
    pub window: Secs,
    pub blocks: BlockTree,
    /// In the order they were made (so in time order).
    pub observations: Vec<Observation>,
    /// Node 0's head at the end (the first live node's when a fault took node 0 down):
    /// its best chain is "the final chain".
    pub final_head: BlockHash,
    pub submitted: Vec<Submitted>,
    /// Refusals and failures of the load generator's calls, by kind.
    pub submit_errors: BTreeMap<&'static str, u64>,
    /// RPC polls of the collector that failed (a busy node misses a poll now and then).
    pub poll_errors: u64,
    /// utime + stime of every node process over the window.
    pub cpu_seconds: Option<f64>,
    pub counters: NodeCounters,
    /// The faults injected during the run.
    pub faults: Vec<Fault>,
}
