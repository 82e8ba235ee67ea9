//! The collector: polls every node's `chain_info`, fetches each block it has not seen with
//! `chain_getBlock` (walking parents back to what it knows), and records when each node
//! first had each block on its best chain. Also the nodes' own counters and their CPU time.

use super::record::{BlockTree, NodeCounters, Observation, Secs, SeenBlock};
use anyhow::{Context, anyhow};
use chain::{Address, BlockHash, Height, TxHash};
use node::rpc_client::RpcClient;
use serde_json::{Value, json};
use std::time::Instant;
use tracing::debug;

/// Most blocks fetched back from one head in one poll: a run makes far fewer.
const MAX_FETCH: usize = 100_000;

#[derive(Debug)]
pub struct Collector<'a> {
    clients: &'a [RpcClient],
    started: Instant,
    blocks: BlockTree,
    observations: Vec<Observation>,
    /// Each node's last observation.
    last: Vec<Option<Observation>>,
    rounds: u64,
    poll_errors: u64,
}

/// What the collector hands over at the end.
#[derive(Debug)]
pub struct Collected {
    pub blocks: BlockTree,
    pub observations: Vec<Observation>,
    pub window: Secs,
    pub final_head: Option<BlockHash>,
    pub poll_errors: u64,
}

impl<'a> Collector<'a> {
    pub fn new(clients: &'a [RpcClient], started: Instant) -> Collector<'a> {
        Collector {
            clients,
            started,
            blocks: BlockTree::new(),
            observations: Vec::new(),
            last: vec![None; clients.len()],
            rounds: 0,
            poll_errors: 0,
        }
    }

    fn now(&self) -> Secs {
        self.started.elapsed().as_secs_f64()
    }

    /// One round over every node; a node that fails to answer is counted and skipped.
    pub fn poll(&mut self) {
        for node in 0..self.clients.len() {
            if let Err(e) = self.poll_node(node) {
                self.poll_errors += 1;
                debug!(node, error = %e, "compare: poll failed");
            }
        }
        self.rounds += 1;
    }

    /// The height of node 0's head as last seen.
    pub fn head_height(&self) -> Option<u64> {
        let head = self.last.first().copied().flatten()?.head;
        self.blocks.get(&head).map(|b| b.height.0)
    }

    /// Who made the head `node` reported last.
    pub fn head_producer(&self, node: usize) -> Option<chain::Address> {
        let head = self.last.get(node).copied().flatten()?.head;
        self.blocks.get(&head).map(|b| b.producer)
    }

    fn poll_node(&mut self, node: usize) -> anyhow::Result<()> {
        let client = &self.clients[node];
        let info = client.call("chain_info", json!([]))?;
        let at = self.now();
        let head = hash_field(&info, "head_hash")?;
        let finalized = info
            .get("finalized_height")
            .and_then(Value::as_u64)
            .map(Height);
        if self.last[node].is_some_and(|l| l.head == head && l.finalized == finalized) {
            return Ok(());
        }
        // Every block from the head down to one this node already had is new to it now.
        let mut cursor = head;
        for _ in 0..MAX_FETCH {
            if !self.blocks.contains_key(&cursor) {
                let block = fetch_block(client, cursor, self.clients.len(), at, self.rounds)?;
                self.blocks.insert(cursor, block);
            }
            let block = self
                .blocks
                .get_mut(&cursor)
                .context("a block just inserted is in the tree")?;
            if block.seen_by[node].is_some() {
                break;
            }
            block.seen_by[node] = Some(at);
            if block.height.0 == 0 {
                break;
            }
            cursor = block.parent;
        }
        let observation = Observation {
            at,
            node,
            head,
            finalized,
        };
        self.observations.push(observation);
        self.last[node] = Some(observation);
        Ok(())
    }

    /// The record; the final chain is `final_node`'s best chain as last seen (node 0's,
    /// unless a fault took it down).
    pub fn finish(self, final_node: usize) -> Collected {
        let window = self.now();
        Collected {
            final_head: self.last.get(final_node).copied().flatten().map(|o| o.head),
            blocks: self.blocks,
            observations: self.observations,
            window,
            poll_errors: self.poll_errors,
        }
    }
}

fn hash_field(value: &Value, key: &str) -> anyhow::Result<BlockHash> {
    let text = value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("answer without {key}: {value}"))?;
    Ok(BlockHash::from_hex(text)?)
}

/// A block by hash from one node; first seen now (by no node yet: the caller marks them).
fn fetch_block(
    client: &RpcClient,
    hash: BlockHash,
    nodes: usize,
    at: Secs,
    round: u64,
) -> anyhow::Result<SeenBlock> {
    let value = client.call("chain_getBlock", json!([hash.to_hex()]))?;
    let got = hash_field(&value, "hash")?;
    if got != hash {
        return Err(anyhow!("asked for block {hash}, got {got}"));
    }
    let height = value
        .get("height")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("block {hash} without a height"))?;
    let producer = value
        .get("producer")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("block {hash} without a producer"))?;
    let txs = value
        .get("txs")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("block {hash} without txs"))?
        .iter()
        .map(|t| {
            t.as_str()
                .ok_or_else(|| anyhow!("block {hash}: tx hash {t} is not a string"))
                .and_then(|s| Ok(TxHash::from_hex(s)?))
        })
        .collect::<anyhow::Result<Vec<TxHash>>>()?;
    Ok(SeenBlock {
        hash,
        height: Height(height),
        parent: hash_field(&value, "parent_hash")?,
        producer: Address::parse(producer)?,
        txs,
        first_seen: at,
        seen_by: vec![None; nodes],
        preexisting: round == 0,
        decided_in: value
            .get("commit_latency_ms")
            .and_then(Value::as_f64)
            .map(|ms| ms / 1e3),
    })
}

/// The nodes' own counts, summed; a field is `None` unless every node answered.
pub fn node_counters(clients: &[RpcClient]) -> NodeCounters {
    let statuses: Option<Vec<Value>> = clients
        .iter()
        .map(|c| c.call("node_status", json!([])).ok())
        .collect();
    let Some(statuses) = statuses else {
        return NodeCounters::default();
    };
    let field = |key: &str| -> Option<Vec<u64>> {
        statuses
            .iter()
            .map(|s| s.get(key).and_then(Value::as_u64))
            .collect()
    };
    NodeCounters {
        blocks_produced: field("blocks_produced").map(|v| v.iter().sum()),
        reorgs: field("reorgs").map(|v| v.iter().sum()),
        reorg_depth_max: field("reorg_depth_max").and_then(|v| v.into_iter().max()),
        signature_checks: clients
            .iter()
            .map(|c| c.metric("toychain_signature_cache_misses_total"))
            .sum::<Option<f64>>()
            .map(|checks| checks as u64),
    }
}

/// CPU seconds (user + system) the processes have used so far; `None` when one of them
/// cannot be read.
pub fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    let ticks_per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    if ticks_per_sec <= 0 {
        return None;
    }
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ticks += cpu_ticks(&stat)?;
    }
    Some(ticks as f64 / ticks_per_sec as f64)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name in
/// field 2 is parenthesised and may hold spaces, so fields are counted after its `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_reads_utime_and_stime_after_the_command_name() {
        let stat = "4242 (toy chain (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    150 25 0 0 20 0 9 0 12345 123456789 2345 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(175));
        assert_eq!(cpu_ticks("4242 (short) S 1"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn a_busy_process_shows_cpu_time() {
        // Spin until the kernel has charged at least one clock tick (10 ms at 100 Hz).
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        let secs = loop {
            for i in 0..1_000_000u64 {
                x = x.wrapping_add(std::hint::black_box(i));
            }
            let secs = cpu_seconds(&[std::process::id()]).expect("own /proc stat");
            if secs > 0.0 || Instant::now() >= deadline {
                break secs;
            }
        };
        assert!(
            secs > 0.0,
            "no CPU time charged after 5 s of spinning ({x})"
        );
    }
}
