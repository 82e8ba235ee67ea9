//! Counters and gauges, rendered in Prometheus text format at `GET /metrics`.

use crate::actor::HeadInfo;
use chain::{BlockHash, SignatureCache};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Metrics {
    pub height: AtomicU64,
    pub finalized_height: AtomicU64,
    pub peers: AtomicU64,
    pub mempool_size: AtomicU64,
    pub blocks_imported: AtomicU64,
    pub blocks_rejected: AtomicU64,
    pub side_blocks: AtomicU64,
    pub reorgs: AtomicU64,
    pub reorg_depth_max: AtomicU64,
    pub blocks_produced: AtomicU64,
    pub txs_accepted: AtomicU64,
    pub rpc_requests: AtomicU64,
    pub rpc_errors: AtomicU64,
    /// Runs of `tx_submit` calls in RPC batches admitted in one trip to the chain actor.
    pub rpc_tx_batches: AtomicU64,
    pub gossip_rejected: AtomicU64,
    /// Gossiped transaction batches dropped unjudged because admission was behind.
    pub tx_gossip_dropped: AtomicU64,
    pub engine_messages: AtomicU64,
    /// Durable writes of the voting state (each a temp file, two fsyncs and a rename).
    pub voting_persists: AtomicU64,
    /// States the voting machine asked to persist that a newer one in the same batch
    /// replaced before the write: writes saved.
    pub voting_persists_superseded: AtomicU64,
    pub voting_persist_bytes: AtomicU64,
    /// Time spent in those writes, in microseconds.
    pub voting_persist_micros: AtomicU64,
    /// WebSocket clients disconnected for not reading what they subscribed to.
    pub ws_dropped: AtomicU64,
    /// The node's signature cache, whose hits and misses are rendered with the rest.
    signature_cache: OnceLock<Arc<SignatureCache>>,
    /// How long this node's voting machine took from each proposal to its decision.
    commit_times: Mutex<CommitTimes>,
}

/// Blocks a voting engine decided on this node: from when the node first held the
/// proposal (built it, or was asked to validate it) to when it imported the decided block.
#[derive(Debug, Default)]
struct CommitTimes {
    /// The latest decisions, oldest first, at most [`RECENT_COMMITS`].
    recent: VecDeque<(BlockHash, Duration)>,
    sum: Duration,
    count: u64,
}

/// How many decided blocks keep their commit latency for `chain_getBlock` and
/// `engine_explain` (an hour of 1 s blocks).
const RECENT_COMMITS: usize = 4096;

impl Metrics {
    pub fn set_head(&self, head: &HeadInfo) {
        self.height.store(head.id.height.0, Ordering::Relaxed);
        self.finalized_height
            .store(head.finalized.map_or(0, |f| f.height.0), Ordering::Relaxed);
    }

    /// Reports the hits, misses and size of `cache` (the one the node's chain and mempool
    /// share) from now on; a second call keeps the first cache.
    pub fn attach_signature_cache(&self, cache: Arc<SignatureCache>) {
        let _ = self.signature_cache.set(cache);
    }

    /// Records that the voting machine decided `block` `latency` after this node first
    /// held its proposal.
    pub fn record_commit(&self, block: BlockHash, latency: Duration) {
        if let Ok(mut times) = self.commit_times.lock() {
            if times.recent.len() == RECENT_COMMITS {
                times.recent.pop_front();
            }
            times.recent.push_back((block, latency));
            times.sum += latency;
            times.count += 1;
        }
    }

    /// The commit latency of `block`, when this node decided it recently.
    pub fn commit_latency(&self, block: &BlockHash) -> Option<Duration> {
        let times = self.commit_times.lock().ok()?;
        times
            .recent
            .iter()
            .rev()
            .find(|(hash, _)| hash == block)
            .map(|(_, latency)| *latency)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 22] = [
            (
                "toychain_tx_gossip_dropped_total",
                "counter",
                "Gossiped transaction batches dropped unjudged because admission was behind.",
                &self.tx_gossip_dropped,
            ),
            (
                "toychain_rpc_tx_batches_total",
                "counter",
                "Runs of tx_submit calls in RPC batches, each admitted in one trip to the chain actor.",
                &self.rpc_tx_batches,
            ),
            (
                "toychain_ws_slow_clients_dropped_total",
                "counter",
                "WebSocket clients disconnected for not keeping up.",
                &self.ws_dropped,
            ),
            (
                "toychain_height",
                "gauge",
                "Height of the best chain's head.",
                &self.height,
            ),
            (
                "toychain_finalized_height",
                "gauge",
                "Height of the newest irreversible block (0 without finality).",
                &self.finalized_height,
            ),
            (
                "toychain_peers",
                "gauge",
                "Connected peers on the same chain.",
                &self.peers,
            ),
            (
                "toychain_mempool_size",
                "gauge",
                "Transactions waiting in the mempool.",
                &self.mempool_size,
            ),
            (
                "toychain_blocks_imported_total",
                "counter",
                "Blocks stored (best chain or side branch).",
                &self.blocks_imported,
            ),
            (
                "toychain_blocks_rejected_total",
                "counter",
                "Blocks refused for breaking a rule.",
                &self.blocks_rejected,
            ),
            (
                "toychain_side_blocks_total",
                "counter",
                "Blocks stored on a side branch.",
                &self.side_blocks,
            ),
            (
                "toychain_reorgs_total",
                "counter",
                "Head changes that reverted blocks.",
                &self.reorgs,
            ),
            (
                "toychain_reorg_depth_max",
                "gauge",
                "Deepest reorg seen (blocks reverted).",
                &self.reorg_depth_max,
            ),
            (
                "toychain_blocks_produced_total",
                "counter",
                "Blocks this node produced.",
                &self.blocks_produced,
            ),
            (
                "toychain_txs_accepted_total",
                "counter",
                "Transactions accepted into the mempool.",
                &self.txs_accepted,
            ),
            (
                "toychain_rpc_requests_total",
                "counter",
                "JSON-RPC requests served.",
                &self.rpc_requests,
            ),
            (
                "toychain_rpc_errors_total",
                "counter",
                "JSON-RPC requests answered with an error.",
                &self.rpc_errors,
            ),
            (
                "toychain_gossip_rejected_total",
                "counter",
                "Gossip messages rejected as invalid.",
                &self.gossip_rejected,
            ),
            (
                "toychain_engine_messages_total",
                "counter",
                "Engine messages (BFT votes, …) received by gossip.",
                &self.engine_messages,
            ),
            (
                "toychain_voting_persist_total",
                "counter",
                "Durable writes of the voting machine's state (a term, a vote, log entries).",
                &self.voting_persists,
            ),
            (
                "toychain_voting_persist_superseded_total",
                "counter",
                "States to persist replaced by a newer one in the same batch before the write (writes saved).",
                &self.voting_persists_superseded,
            ),
            (
                "toychain_voting_persist_bytes_total",
                "counter",
                "Bytes of voting state written durably.",
                &self.voting_persist_bytes,
            ),
            (
                "toychain_voting_persist_micros_total",
                "counter",
                "Microseconds spent writing the voting state durably.",
                &self.voting_persist_micros,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            write_metric(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
        // Without an attached cache (a node wired without one) the rows read zero.
        let cache = self
            .signature_cache
            .get()
            .map(|c| c.stats())
            .unwrap_or_default();
        let cache_rows: [(&str, &str, &str, u64); 4] = [
            (
                "toychain_signature_cache_hits_total",
                "counter",
                "Signature checks answered from the signature cache (verified earlier on this node).",
                cache.hits,
            ),
            (
                "toychain_signature_cache_misses_total",
                "counter",
                "Signature checks that ran ECDSA verification (hit rate = hits / (hits + misses)).",
                cache.misses,
            ),
            (
                "toychain_signature_cache_entries",
                "gauge",
                "Verified signatures held in the signature cache.",
                cache.entries as u64,
            ),
            (
                "toychain_public_keys_decoded_total",
                "counter",
                "Public keys decoded for the ECDSA checks that ran (the rest reused a recently decoded key).",
                cache.keys_decoded,
            ),
        ];
        for (name, kind, help, value) in cache_rows {
            write_metric(&mut out, name, kind, help, value);
        }
        let (sum, count) = self
            .commit_times
            .lock()
            .map(|t| (t.sum.as_secs_f64(), t.count))
            .unwrap_or_default();
        let name = "toychain_voting_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From holding a proposal to importing it decided, per block this node's voting machine decided."
        );
        let _ = writeln!(out, "# TYPE {name} summary");
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.reorgs.store(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("# TYPE toychain_reorgs_total counter\ntoychain_reorgs_total 3\n"));
        assert!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .all(|l| l.split(' ').count() == 2)
        );
    }

    #[test]
    fn renders_the_attached_signature_cache() {
        let m = Metrics::default();
        assert!(text_has(
            &m.render(),
            "toychain_signature_cache_misses_total 0"
        ));
        let cache = Arc::new(SignatureCache::new(8));
        let key = chain::SecretKey::from_seed("alice");
        let msg = chain::Hash256([3; 32]);
        let sig = key.sign(&msg);
        for _ in 0..3 {
            cache
                .verify(&key.public_key(), &msg, &sig)
                .expect("valid signature");
        }
        m.attach_signature_cache(cache);
        let text = m.render();
        assert!(
            text_has(&text, "toychain_signature_cache_hits_total 2"),
            "{text}"
        );
        assert!(
            text_has(&text, "toychain_signature_cache_misses_total 1"),
            "{text}"
        );
        assert!(
            text_has(&text, "toychain_signature_cache_entries 1"),
            "{text}"
        );
        assert!(
            text_has(&text, "toychain_public_keys_decoded_total 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE toychain_signature_cache_hits_total counter\n"));
    }

    #[test]
    fn commit_latencies_are_kept_per_block_and_summed() {
        let m = Metrics::default();
        let text = m.render();
        assert!(
            text_has(&text, "toychain_voting_commit_seconds_count 0"),
            "{text}"
        );
        let (a, b) = (BlockHash([1; 32]), BlockHash([2; 32]));
        m.record_commit(a, Duration::from_millis(250));
        m.record_commit(b, Duration::from_millis(500));
        assert_eq!(m.commit_latency(&a), Some(Duration::from_millis(250)));
        assert_eq!(m.commit_latency(&BlockHash([3; 32])), None);
        let text = m.render();
        assert!(
            text_has(&text, "toychain_voting_commit_seconds_sum 0.75"),
            "{text}"
        );
        assert!(
            text_has(&text, "toychain_voting_commit_seconds_count 2"),
            "{text}"
        );
        // Only the latest decisions are kept per block; the sums keep counting.
        for i in 0..RECENT_COMMITS as u64 {
            let mut hash = [9; 32];
            hash[..8].copy_from_slice(&i.to_le_bytes());
            m.record_commit(BlockHash(hash), Duration::ZERO);
        }
        assert_eq!(m.commit_latency(&a), None, "the oldest is forgotten");
        let text = m.render();
        let count = 2 + RECENT_COMMITS;
        assert!(
            text_has(
                &text,
                &format!("toychain_voting_commit_seconds_count {count}")
            ),
            "{text}"
        );
    }

    fn text_has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }
}
