//! Transaction relay: many transactions per gossip message, and pending transactions
//! announced again until a producer has them.
//!
//! Batching follows Ethereum's `Transactions` message (and Bitcoin's `inv`): transactions
//! this node admitted through its RPC wait in a [`Batcher`] and go out as one
//! [`TxBatch`] when it is full ([`MAX_TXS_PER_BATCH`] transactions or
//! [`MAX_TX_BATCH_BYTES`]) or [`FLUSH_INTERVAL`] after its first transaction, so a burst of
//! submissions costs one gossip message (one signature, one id, one frame) per batch
//! instead of one each. Receivers admit each transaction and judge the batch as a whole
//! ([`crate::network`]): one that can never be valid gets the batch rejected and its
//! sender penalised, as for a single transaction before.
//!
//! Announcements follow geth's: a transaction gossiped once reaches only the peers
//! connected then, so one that reached only a node that cannot produce (a PoA signer in
//! its cool-down, an `--on-demand` node, a node with no peers) would wait for nobody. The
//! relay therefore announces the pending transactions [`ANNOUNCE_DELAY`] after a peer
//! connects (once subscriptions are exchanged; connections close together coalesce) and
//! again every [`REANNOUNCE_INTERVAL`], best fee rate first and at most
//! [`ANNOUNCE_MAX_TXS`] / [`ANNOUNCE_MAX_BYTES`] per round. Peers that hold them already
//! ignore the batch without checking a signature (the pool looks the hash up first), and
//! an ignored batch is not forwarded.

use crate::actor::ChainHandle;
use chain::codec::{MAX_TX_BATCH_BYTES, MAX_TXS_PER_BATCH};
use chain::{Canonical, Transaction, TxBatch};
use net::{Client, NetError, Topic};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

/// How long the first transaction of a batch waits for others before the batch goes out.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Transactions waiting for the relay task at most; past it [`TxRelay::relay`] drops them
/// (they are still pending and go out with the next announcement).
pub const RELAY_QUEUE: usize = 16_384;
/// Delay from a peer connecting to the announcement, so its gossip subscriptions have
/// arrived and it is among the batch's recipients.
pub const ANNOUNCE_DELAY: Duration = Duration::from_secs(1);
/// How often the transactions still pending are announced again.
pub const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(15);
/// Most transactions in one announcement round.
pub const ANNOUNCE_MAX_TXS: usize = 4096;
/// Most encoded transaction bytes in one announcement round.
pub const ANNOUNCE_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Collects transactions into [`TxBatch`]es bounded in count and encoded size, numbering
/// each batch so announcing the same transactions again is a new gossip message.
#[derive(Debug)]
pub struct Batcher {
    txs: Vec<Transaction>,
    /// Encoded size of the batch being filled, overhead included.
    bytes: usize,
    max_txs: usize,
    max_bytes: usize,
    next_sequence: u64,
}

impl Batcher {
    /// Batches of at most `max_txs` transactions (at least one) and `max_bytes` encoded
    /// (a single larger transaction still goes out, alone); the first is numbered
    /// `first_sequence`.
    pub fn new(max_txs: usize, max_bytes: usize, first_sequence: u64) -> Batcher {
        Batcher {
            txs: Vec::new(),
            bytes: TxBatch::OVERHEAD_BYTES,
            max_txs: max_txs.max(1),
            max_bytes,
            next_sequence: first_sequence,
        }
    }

    /// Adds `tx`. When it does not fit beside what is waiting, the waiting batch is
    /// closed and returned, and `tx` starts the next one.
    pub fn push(&mut self, tx: Transaction) -> Option<TxBatch> {
        let len = tx.encoded_len();
        let closed = if !self.txs.is_empty() && self.bytes.saturating_add(len) > self.max_bytes {
            self.take()
        } else {
            None
        };
        self.bytes = self.bytes.saturating_add(len);
        self.txs.push(tx);
        closed
    }

    /// True when the waiting batch holds as many transactions or bytes as a batch may.
    pub fn is_full(&self) -> bool {
        self.txs.len() >= self.max_txs || self.bytes >= self.max_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The waiting batch, if any transaction waits.
    pub fn take(&mut self) -> Option<TxBatch> {
        if self.txs.is_empty() {
            return None;
        }
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.bytes = TxBatch::OVERHEAD_BYTES;
        Some(TxBatch {
            sequence,
            txs: std::mem::take(&mut self.txs),
        })
    }
}

/// A cloneable handle on the relay task.
#[derive(Clone, Debug)]
pub struct TxRelay {
    txs: mpsc::Sender<Transaction>,
    announce: Arc<Notify>,
}

impl TxRelay {
    /// Queues a transaction this node admitted for the next batch. False when the queue is
    /// full or the task has stopped: the transaction stays pending here and goes out with
    /// the next announcement.
    pub fn relay(&self, tx: Transaction) -> bool {
        self.txs.try_send(tx).is_ok()
    }

    /// Asks for the pending transactions to be announced [`ANNOUNCE_DELAY`] from now (a
    /// peer connected); requests within that delay make one announcement.
    pub fn announce_pending(&self) {
        self.announce.notify_one();
    }
}

/// Starts the relay task, which runs until `shutdown` flips or every [`TxRelay`] is gone.
pub fn spawn(
    chain: ChainHandle,
    client: Client,
    shutdown: watch::Receiver<bool>,
) -> (TxRelay, tokio::task::JoinHandle<()>) {
    let (txs, queue) = mpsc::channel(RELAY_QUEUE);
    let announce = Arc::new(Notify::new());
    let relay = TxRelay {
        txs,
        announce: announce.clone(),
    };
    let task = RelayTask {
        chain,
        client,
        batcher: Batcher::new(MAX_TXS_PER_BATCH, MAX_TX_BATCH_BYTES, first_sequence()),
    };
    (relay, tokio::spawn(task.run(queue, announce, shutdown)))
}

/// A sequence start that differs between runs, so batches of a restarted node are not
/// taken for the ones it sent before (same content, same id) by peers that saw those.
fn first_sequence() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct RelayTask {
    chain: ChainHandle,
    client: Client,
    batcher: Batcher,
}

impl RelayTask {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<Transaction>,
        announce: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut flush_at: Option<Instant> = None;
        let mut announce_at: Option<Instant> = None;
        let mut reannounce =
            tokio::time::interval_at(Instant::now() + REANNOUNCE_INTERVAL, REANNOUNCE_INTERVAL);
        reannounce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                tx = queue.recv() => {
                    let Some(tx) = tx else { break };
                    if let Some(full) = self.batcher.push(tx) {
                        self.publish(full).await;
                    }
                    if self.batcher.is_full() {
                        self.flush().await;
                        flush_at = None;
                    } else {
                        flush_at.get_or_insert_with(|| Instant::now() + FLUSH_INTERVAL);
                    }
                }
                _ = sleep_until(flush_at), if flush_at.is_some() => {
                    flush_at = None;
                    self.flush().await;
                }
                _ = announce.notified() => {
                    announce_at.get_or_insert_with(|| Instant::now() + ANNOUNCE_DELAY);
                }
                _ = sleep_until(announce_at), if announce_at.is_some() => {
                    announce_at = None;
                    self.announce().await;
                }
                _ = reannounce.tick() => self.announce().await,
            }
        }
    }

    async fn flush(&mut self) {
        if let Some(batch) = self.batcher.take() {
            self.publish(batch).await;
        }
    }

    /// Publishes the pending transactions (bounded) in batches, after what waits.
    async fn announce(&mut self) {
        self.flush().await;
        let Ok(pending) = self
            .chain
            .pending_txs(ANNOUNCE_MAX_TXS, ANNOUNCE_MAX_BYTES)
            .await
        else {
            return;
        };
        if pending.is_empty() {
            return;
        }
        debug!(txs = pending.len(), "announcing pending transactions");
        for tx in pending {
            if let Some(full) = self.batcher.push(tx) {
                self.publish(full).await;
            }
            if self.batcher.is_full() {
                self.flush().await;
            }
        }
        self.flush().await;
    }

    async fn publish(&self, batch: TxBatch) {
        let txs = batch.txs.len();
        match self.client.publish(Topic::Tx, batch.encode()).await {
            Ok(_) => debug!(txs, "transaction batch gossiped"),
            // Best effort: with no peers the transactions wait in the pool for the next
            // announcement.
            Err(NetError::NoPeers { .. }) => debug!(txs, "no peers for a transaction batch"),
            Err(e) => debug!(txs, error = %e, "transaction batch not gossiped"),
        }
    }
}

/// Sleeps until `at`; never resolves for `None` (the caller guards the branch).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::{Amount, ChainId, SecretKey, TxKind};

    fn tx(nonce: u64, delegates: usize) -> Transaction {
        let key = SecretKey::from_seed("alice");
        let kind = if delegates == 0 {
            TxKind::Transfer {
                to: key.address(),
                amount: Amount(1),
            }
        } else {
            TxKind::Vote {
                delegates: vec![key.address(); delegates],
            }
        };
        Transaction::signed(&key, ChainId(1), nonce, Amount(1), kind)
    }

    #[test]
    fn a_batch_closes_at_its_count_and_numbers_follow() {
        let mut batcher = Batcher::new(3, MAX_TX_BATCH_BYTES, 7);
        assert!(batcher.take().is_none());
        for nonce in 0..3 {
            assert!(batcher.push(tx(nonce, 0)).is_none());
        }
        assert!(batcher.is_full());
        let first = batcher.take().expect("three wait");
        assert_eq!((first.sequence, first.txs.len()), (7, 3));
        assert!(batcher.is_empty() && !batcher.is_full());
        batcher.push(tx(3, 0));
        let second = batcher.take().expect("one waits");
        assert_eq!((second.sequence, second.txs.len()), (8, 1));
    }

    #[test]
    fn a_batch_never_encodes_past_its_byte_limit() {
        let big = tx(0, 100);
        let len = big.encoded_len();
        // Room for two such transactions and a bit, not three.
        let max = TxBatch::OVERHEAD_BYTES + 2 * len + len / 2;
        let mut batcher = Batcher::new(100, max, 0);
        let mut batches = Vec::new();
        for nonce in 0..5 {
            batches.extend(batcher.push(tx(nonce, 100)));
        }
        batches.extend(batcher.take());
        let sizes: Vec<usize> = batches.iter().map(|b| b.txs.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        for batch in &batches {
            let bytes = batch.encode();
            assert!(bytes.len() <= max, "{} > {max}", bytes.len());
            assert_eq!(TxBatch::decode(&bytes).as_ref(), Ok(batch));
        }
        let nonces: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.nonce))
            .collect();
        assert_eq!(nonces, vec![0, 1, 2, 3, 4], "order is kept");
    }

    #[test]
    fn the_default_limits_fit_the_wire_limits() {
        let mut batcher = Batcher::new(MAX_TXS_PER_BATCH, MAX_TX_BATCH_BYTES, 0);
        let mut batches = Vec::new();
        for nonce in 0..3000 {
            batches.extend(batcher.push(tx(nonce, 0)));
            if batcher.is_full() {
                batches.extend(batcher.take());
            }
        }
        batches.extend(batcher.take());
        assert_eq!(batches.iter().map(|b| b.txs.len()).sum::<usize>(), 3000);
        for batch in batches {
            assert!(batch.txs.len() <= MAX_TXS_PER_BATCH);
            assert!(TxBatch::decode(&batch.encode()).is_ok());
        }
    }
}
