//! What a row checks, from the outside through RPC like any client: a finality watch that
//! runs during the fault, and the invariants read off the final chain afterwards.

use super::cluster::{Cluster, NODES};
use crate::workload::Acked;
use chain::{Address, Amount};
use config::EngineKind;
use miner::Reward;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the watch polls every node.
const WATCH_POLL: Duration = Duration::from_millis(500);
/// Attempts at reading a chain that does not move under the reader.
const SNAPSHOT_ATTEMPTS: usize = 8;

/// A finalized block a node reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    pub height: u64,
    pub hash: String,
}

/// What the watch saw of each node: every change of its finalized block, every block it
/// had under [`miner::CONFIRMATIONS`] blocks of its own, and the highest head of all nodes
/// over time.
#[derive(Debug, Default)]
pub struct Watch {
    pub finalized: Vec<Vec<Finalized>>,
    /// (height, hash) of blocks some node had with at least `CONFIRMATIONS` on top.
    pub confirmed: BTreeSet<(u64, String)>,
    pub max_height: u64,
}

impl Watch {
    pub fn new() -> Watch {
        Watch {
            finalized: vec![Vec::new(); NODES],
            confirmed: BTreeSet::new(),
            max_height: 0,
        }
    }

    /// One round over the nodes that are up.
    pub fn poll(&mut self, cluster: &Cluster) {
        for i in 0..NODES {
            let Some(info) = cluster.info(i) else {
                continue;
            };
            if let Some(h) = info.get("height").and_then(Value::as_u64) {
                self.max_height = self.max_height.max(h);
                self.note_confirmed(cluster, i, &info, h);
            }
            let height = info.get("finalized_height").and_then(Value::as_u64);
            let hash = info.get("finalized_hash").and_then(Value::as_str);
            if let (Some(height), Some(hash)) = (height, hash) {
                let seen = Finalized {
                    height,
                    hash: hash.to_owned(),
                };
                if self.finalized[i].last() != Some(&seen) {
                    self.finalized[i].push(seen);
                }
            }
        }
    }

    /// Records the block `CONFIRMATIONS` below node `i`'s head, if the head did not move
    /// while it was read (a reorg in between could leave it under fewer blocks).
    fn note_confirmed(&mut self, cluster: &Cluster, i: usize, info: &Value, height: u64) {
        let Some(at) = height.checked_sub(miner::CONFIRMATIONS) else {
            return;
        };
        let Some(hash) = cluster.hash_at(i, at) else {
            return;
        };
        let head = |info: &Value| {
            info.get("head_hash")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if head(info).is_some() && cluster.info(i).as_ref().and_then(head) == head(info) {
            self.confirmed.insert((at, hash));
        }
    }

    /// Polls until `stop` is set.
    pub fn run(&mut self, cluster: &Cluster, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll(cluster);
            let mut slept = Duration::ZERO;
            while slept < WATCH_POLL && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                slept += Duration::from_millis(50);
            }
        }
    }
}

/// One block of the final chain as the checks need it.
#[derive(Debug, Clone)]
pub struct BlockInfo {
    pub hash: String,
    pub producer: String,
    pub timestamp: u64,
    pub txs: Vec<String>,
}

impl BlockInfo {
    pub fn from_json(block: &Value) -> Option<BlockInfo> {
        Some(BlockInfo {
            hash: block.get("hash")?.as_str()?.to_owned(),
            producer: block.get("producer")?.as_str()?.to_owned(),
            timestamp: block.get("timestamp")?.as_u64()?,
            txs: block
                .get("txs")?
                .as_array()?
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        })
    }
}

/// A node's whole best chain (index = height), the rewards minted on it and the balances
/// of every account that ever held coins, all read at one head.
#[derive(Debug)]
pub struct Snapshot {
    pub blocks: Vec<BlockInfo>,
    pub minted: u128,
    pub balances: BTreeMap<String, u64>,
}

/// Reads node `i`'s chain, rewards and balances; retried while the head moves under it.
pub fn snapshot(cluster: &Cluster, i: usize) -> Result<Snapshot, String> {
    let mut last_error = String::new();
    for _ in 0..SNAPSHOT_ATTEMPTS {
        match try_snapshot(cluster, i) {
            Ok(Some(s)) => return Ok(s),
            Ok(None) => last_error = format!("node {i}'s head kept moving while it was read"),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

fn try_snapshot(cluster: &Cluster, i: usize) -> Result<Option<Snapshot>, String> {
    let client = &cluster.clients[i];
    let call = |method: &str, params: Value| {
        client
            .call(method, params)
            .map_err(|e| format!("node {i} {method}: {e}"))
    };
    let info = call("chain_info", json!([]))?;
    let head = info["head_hash"].as_str().unwrap_or_default().to_owned();
    let height = info["height"]
        .as_u64()
        .ok_or("chain_info without a height")?;
    let mut blocks: Vec<BlockInfo> = Vec::new();
    for h in 0..=height {
        let block = call("chain_getBlock", json!([h]))?;
        if h > 0 && block["parent_hash"].as_str() != blocks.last().map(|b| b.hash.as_str()) {
            return Ok(None);
        }
        blocks.push(BlockInfo::from_json(&block).ok_or_else(|| format!("block {h}: {block}"))?);
    }
    if blocks.last().map(|b| b.hash.as_str()) != Some(head.as_str()) {
        return Ok(None);
    }
    let minted = minted(cluster, i, &blocks)?;
    let mut holders: BTreeSet<String> = cluster
        .alloc_addresses()
        .iter()
        .map(|(a, _)| a.to_string())
        .collect();
    holders.extend(blocks.iter().skip(1).map(|b| b.producer.clone()));
    let mut balances = BTreeMap::new();
    for address in holders {
        let account = call("state_getAccount", json!([address]))?;
        let balance = account["balance"]
            .as_u64()
            .ok_or_else(|| format!("no balance in {account}"))?;
        balances.insert(address, balance);
    }
    let after = call("chain_info", json!([]))?;
    if after["head_hash"].as_str() != Some(head.as_str()) {
        return Ok(None);
    }
    Ok(Some(Snapshot {
        blocks,
        minted,
        balances,
    }))
}

/// Base units minted by the blocks above genesis: what the engine says a block mints
/// ([`miner::Reward`]): a fixed amount per block (PoW's subsidy, DPoS's pay, PoA's zero),
/// or an amount per block that `engine_explain` reports (PoS pays for the coin age it
/// consumed, computed from the stake proof the block was checked against).
fn minted(cluster: &Cluster, i: usize, blocks: &[BlockInfo]) -> Result<u128, String> {
    let above_genesis = blocks.len().saturating_sub(1) as u128;
    match cluster.spec.engine.reward() {
        Reward::Fixed(amount) => Ok(u128::from(amount.base_units()) * above_genesis),
        Reward::Explained => {
            let mut total = 0u128;
            for block in blocks.iter().skip(1) {
                let explained = cluster.clients[i]
                    .call("engine_explain", json!([block.hash]))
                    .map_err(|e| format!("node {i} engine_explain {}: {e}", block.hash))?;
                let reward = explained["reward"]
                    .as_str()
                    .and_then(|r| r.trim_end_matches(" TOY").parse::<Amount>().ok())
                    .ok_or_else(|| format!("no reward in engine_explain: {explained}"))?;
                total += u128::from(reward.base_units());
            }
            Ok(total)
        }
    }
}

/// Genesis supply, base units.
pub fn genesis_supply(cluster: &Cluster) -> u128 {
    cluster
        .alloc_addresses()
        .iter()
        .map(|(_, amount)| u128::from(amount.base_units()))
        .sum()
}

/// (c) the balances add up to genesis plus what was minted, exactly.
pub fn check_supply(cluster: &Cluster, snap: &Snapshot) -> Result<(), String> {
    let held: u128 = snap.balances.values().map(|b| u128::from(*b)).sum();
    let expected = genesis_supply(cluster) + snap.minted;
    if held == expected {
        Ok(())
    } else {
        Err(format!(
            "supply: accounts hold {held} base units, genesis {} + minted {} = {expected}",
            genesis_supply(cluster),
            snap.minted
        ))
    }
}

/// (b) every finalized block any node reported is on the final chain at its height: no
/// finalized block was reverted. Returns how often a node's finalized height went down
/// without a block being reverted (DPoS keeps its last irreversible block per branch, so
/// a node that switches to a branch whose producers confirmed less reports a lower one).
pub fn check_finality(watch: &Watch, snap: &Snapshot) -> Result<u64, String> {
    let mut went_down = 0;
    for (i, seen) in watch.finalized.iter().enumerate() {
        went_down += seen
            .windows(2)
            .filter(|pair| pair[1].height < pair[0].height)
            .count() as u64;
        for f in seen {
            match snap.blocks.get(f.height as usize) {
                Some(b) if b.hash == f.hash => {}
                Some(b) => {
                    return Err(format!(
                        "finality: node {i} finalized {} at #{}, the final chain has {} there",
                        f.hash, f.height, b.hash
                    ));
                }
                None => {
                    return Err(format!(
                        "finality: node {i} finalized #{} but the final chain ends at #{}",
                        f.height,
                        snap.blocks.len().saturating_sub(1)
                    ));
                }
            }
        }
    }
    Ok(went_down)
}

/// Blocks the watch saw under `CONFIRMATIONS` blocks on some node that are not on the
/// final chain: what a user waiting for that many confirmations saw reverted.
pub fn reverted_confirmed(watch: &Watch, snap: &Snapshot) -> u64 {
    watch
        .confirmed
        .iter()
        .filter(|(height, hash)| {
            snap.blocks
                .get(*height as usize)
                .is_none_or(|b| b.hash != *hash)
        })
        .count() as u64
}

/// How the acknowledged transfers ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct TxCount {
    pub included: u64,
    pub pending: u64,
}

/// (d) every acknowledged transfer is on the final chain exactly once, or still pending
/// in some node's mempool.
pub fn check_txs(
    cluster: &Cluster,
    snap: &Snapshot,
    acked: &[Acked],
) -> Result<TxCount, (TxCount, String)> {
    let mut on_chain: HashMap<&str, u64> = HashMap::new();
    for block in &snap.blocks {
        for tx in &block.txs {
            *on_chain.entry(tx.as_str()).or_default() += 1;
        }
    }
    let mut count = TxCount::default();
    let mut problems = Vec::new();
    for tx in acked {
        let hash = tx.hash.to_hex();
        match on_chain.get(hash.as_str()).copied().unwrap_or(0) {
            1 => count.included += 1,
            0 => match where_is(cluster, &hash, snap.blocks.len() as u64) {
                Some(Place::Pending) => count.pending += 1,
                Some(Place::IncludedLater) => count.included += 1,
                None => problems.push(format!(
                    "{} (trader {} nonce {}, acked by node {} at {:.1} s) is lost",
                    tx.hash, tx.sender, tx.nonce, tx.node, tx.at
                )),
            },
            n => problems.push(format!("{} is on the final chain {n} times", tx.hash)),
        }
    }
    if problems.is_empty() {
        Ok(count)
    } else {
        let shown: Vec<&String> = problems.iter().take(5).collect();
        Err((
            count,
            format!(
                "txs: {} of {} acknowledged transfers: {}{}",
                problems.len(),
                acked.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                if problems.len() > 5 { "; …" } else { "" }
            ),
        ))
    }
}

enum Place {
    Pending,
    /// Included in a block above the snapshot's head (the chain moved on).
    IncludedLater,
}

fn where_is(cluster: &Cluster, hash: &str, snapshot_len: u64) -> Option<Place> {
    let mut pending = false;
    for i in 0..NODES {
        if cluster.is_down(i) {
            continue;
        }
        let Ok(answer) = cluster.clients[i].call("tx_get", json!([hash])) else {
            continue;
        };
        match answer["status"].as_str() {
            Some("pending") => pending = true,
            Some("included")
                if i == 0 && answer["height"].as_u64().is_some_and(|h| h >= snapshot_len) =>
            {
                return Some(Place::IncludedLater);
            }
            _ => {}
        }
    }
    pending.then_some(Place::Pending)
}

/// Waits up to `bound` for every acknowledged transfer to be included on node 0.
pub fn wait_included(cluster: &Cluster, acked: &[Acked], bound: Duration) {
    let deadline = std::time::Instant::now() + bound;
    let mut waiting: Vec<&Acked> = acked.iter().collect();
    while !waiting.is_empty() && std::time::Instant::now() < deadline {
        waiting.retain(|tx| {
            cluster.clients[0]
                .call("tx_get", json!([tx.hash]))
                .ok()
                .and_then(|a| a["status"].as_str().map(|s| s != "included"))
                .unwrap_or(true)
        });
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Blocks by the same producer for the same slot (timestamp) with different hashes: what
/// the double-sign guard must prevent. Empty for proof of work, which signs nothing.
pub fn double_signs(kind: EngineKind, seen: &[BlockInfo]) -> Vec<String> {
    if !kind.signs_blocks() {
        return Vec::new();
    }
    let mut by_slot: BTreeMap<(&str, u64), BTreeSet<&str>> = BTreeMap::new();
    for block in seen {
        by_slot
            .entry((block.producer.as_str(), block.timestamp))
            .or_default()
            .insert(block.hash.as_str());
    }
    by_slot
        .into_iter()
        .filter(|(_, hashes)| hashes.len() > 1)
        .map(|((producer, ts), hashes)| {
            format!(
                "{producer} signed {} blocks for time {ts}: {}",
                hashes.len(),
                hashes.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

/// Every block of node `i`'s best chain from `from` up (for the double-sign check).
pub fn blocks_from(cluster: &Cluster, i: usize, from: u64) -> Vec<BlockInfo> {
    let Some(height) = cluster.height(i) else {
        return Vec::new();
    };
    (from..=height)
        .filter_map(|h| {
            cluster.clients[i]
                .call("chain_getBlock", json!([h]))
                .ok()
                .and_then(|b| BlockInfo::from_json(&b))
        })
        .collect()
}

/// Balances of `addresses` on node `i` with the head they were read at, when the head did
/// not move during the reads.
pub fn balances_at_head(
    cluster: &Cluster,
    i: usize,
    addresses: &[Address],
) -> Option<(String, Vec<u64>)> {
    let client = &cluster.clients[i];
    let head = client.call("chain_info", json!([])).ok()?["head_hash"]
        .as_str()?
        .to_owned();
    let mut out = Vec::new();
    for a in addresses {
        out.push(
            client
                .call("state_getAccount", json!([a.to_string()]))
                .ok()?["balance"]
                .as_u64()?,
        );
    }
    let after = client.call("chain_info", json!([])).ok()?["head_hash"]
        .as_str()?
        .to_owned();
    (after == head).then_some((head, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(producer: &str, ts: u64, hash: &str) -> BlockInfo {
        BlockInfo {
            hash: hash.into(),
            producer: producer.into(),
            timestamp: ts,
            txs: Vec::new(),
        }
    }

    #[test]
    fn two_blocks_for_one_slot_by_one_producer_are_a_double_sign() {
        let seen = [
            block("alice", 10, "a1"),
            block("alice", 10, "a1"),
            block("bob", 10, "b1"),
            block("alice", 12, "a2"),
            block("bob", 14, "b2"),
            block("bob", 14, "b3"),
        ];
        let found = double_signs(EngineKind::Poa, &seen);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("bob") && found[0].contains("b2") && found[0].contains("b3"));
        assert!(
            double_signs(EngineKind::Pow, &seen).is_empty(),
            "pow signs nothing"
        );
    }

    #[test]
    fn finality_fails_on_a_reverted_block_and_counts_a_lower_one() {
        let snap = Snapshot {
            blocks: vec![
                block("g", 0, "h0"),
                block("a", 1, "h1"),
                block("b", 2, "h2"),
            ],
            minted: 0,
            balances: BTreeMap::new(),
        };
        let f = |height, hash: &str| Finalized {
            height,
            hash: hash.into(),
        };
        let mut watch = Watch::new();
        watch.finalized[0] = vec![f(1, "h1"), f(2, "h2")];
        assert_eq!(check_finality(&watch, &snap), Ok(0));
        watch.finalized[1] = vec![f(1, "x1")];
        assert!(check_finality(&watch, &snap).is_err_and(|e| e.contains("x1")));
        watch.finalized[1] = vec![f(2, "h2"), f(1, "h1")];
        assert_eq!(
            check_finality(&watch, &snap),
            Ok(1),
            "lower, nothing reverted"
        );
        watch.finalized[1] = vec![f(3, "h3")];
        assert!(check_finality(&watch, &snap).is_err_and(|e| e.contains("ends at #2")));
    }
}
