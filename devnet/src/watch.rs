//! What the launcher prints: the banner, one line per new head of node 0 (forks, reorgs,
//! lagging nodes, the engine's fields) and the closing summary per node.

use crate::fleet::Layout;
use crate::{MAX_WALK_BACK, say};
pub(crate) fn print_banner(
    layout: &Layout,
    spec: &ChainSpec,
    kind: EngineKind,
    resumed: bool,
    head: &Value,
) {
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
    say(&format!("dashboard: {}", layout.dashboard_url()));
    say("one line per new head of node 0; Ctrl-C stops every node");
}
use anyhow::anyhow;
use chain::dev::{DEV_ACCOUNTS, dev_address};
use config::{ChainSpec, EngineKind};
use node::rpc_client::RpcClient;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A block of node 0's best chain as shown.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    hash: String,
    producer: String,
    timestamp: u64,
}

/// Follows node 0's head, prints a line per new block and keeps the tallies for the summary.
#[derive(Debug)]
pub(crate) struct HeadWatch {
    started: Instant,
    start_height: u64,
    head_hash: String,
    /// Node 0's best chain since the start, by height (replaced above a reorg's fork point).
    chain: BTreeMap<u64, Shown>,
    reorgs_seen: u64,
    names: HashMap<String, &'static str>,
}

impl HeadWatch {
    pub(crate) fn new(head: &Value) -> HeadWatch {
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

    pub(crate) fn name_of(&self, producer: &str) -> String {
        match self.names.get(producer) {
            Some(name) => (*name).to_owned(),
            None => producer.get(..12).unwrap_or(producer).to_owned(),
        }
    }

    pub(crate) fn poll(&mut self, node0: &RpcClient, all: &[RpcClient]) -> anyhow::Result<()> {
        let info = node0.call("chain_info", json!([]))?;
        let head = info
            .get("head_hash")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("chain_info without head_hash"))?;
        if head == self.head_hash {
            return Ok(());
        }
        let (new_blocks, truncated) = self.walk_back(node0, head)?;
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

    /// The blocks from the one after the last shown block on `head`'s branch (the fork
    /// point) up to `head`, oldest first, at most [`MAX_WALK_BACK`]; `true` when cut there.
    fn walk_back(&self, node0: &RpcClient, head: &str) -> anyhow::Result<(Vec<Value>, bool)> {
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
        Ok((new_blocks, truncated))
    }

    pub(crate) fn print_summary(&self, per_node: &[String], exits: &[(usize, String)]) {
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
pub(crate) fn lagging_nodes(all: &[RpcClient], node0_info: &Value) -> String {
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
pub(crate) fn engine_detail(fields: Option<&Value>) -> String {
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
pub(crate) struct NodeStats {
    lines: Vec<Option<String>>,
    refreshed: Instant,
}

impl NodeStats {
    /// How often the counters are asked for.
    const EVERY: Duration = Duration::from_secs(2);

    pub(crate) fn new(nodes: usize) -> NodeStats {
        NodeStats {
            lines: vec![None; nodes],
            refreshed: Instant::now(),
        }
    }

    pub(crate) fn refresh_if_due(&mut self, clients: &[RpcClient]) {
        if self.refreshed.elapsed() >= Self::EVERY {
            self.refresh(clients);
        }
    }

    pub(crate) fn refresh(&mut self, clients: &[RpcClient]) {
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

    pub(crate) fn lines(&self) -> Vec<String> {
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
