//! The generator that can out-run a devnet: `compare` offers up to [`MAX_RATE`] transfers a
//! second with it.
//!
//! One transfer a call from one thread (what [`super::Workload`] does for the reliability
//! suite) tops out near a thousand a second, below what the nodes admit. Here:
//! - **Many senders**: [`load_accounts`] derives one account per [`PER_SENDER_RATE`]
//!   transfers a second (a multiple of the node count, at least [`MIN_SENDERS`]), funded at
//!   genesis by the devnet's spec, so no sender's nonce run is long and none waits on another.
//! - **Pre-signed**: transfer `i` is sender `i mod S`'s transfer with nonce `⌊i / S⌋` (the
//!   accounts are fresh at genesis), its receiver and amount drawn from the seed and `i`, so
//!   the whole run is fixed by (seed, rate, node count). [`Presigned::sign`] signs the run's
//!   transfers with rayon before the clock starts (at most [`PRESIGN_BUDGET`]; later ones are
//!   signed as they fall due) and encodes them for `tx_submit`, so the generator spends no
//!   CPU the nodes need on signing or encoding.
//! - **Batched over RPC**: one thread per node; sender `s` always goes through node
//!   `s mod N` (its whole nonce run lands in one mempool), and each thread sends what fell
//!   due, at most every [`SEND_EVERY`], as one JSON-RPC batch of up to [`MAX_RUN`]
//!   `tx_submit` calls, which the node admits in one trip to its chain actor (as a gateway
//!   that gathers its clients' transfers for a moment would; sending each transfer the
//!   moment it falls due makes batches of a few, and a node's cost per call — HTTP, a
//!   thread hand-off, an actor trip, a journal write — was then about a tenth of its CPU
//!   per transfer at 4,000 a second).
//!
//! Every transfer a node acknowledged is recorded as [`Acked`] (with the time its batch was
//! sent); refusals are counted by kind. A sender whose transfer was refused or lost is
//! re-synchronised: its later transfers are signed as they fall due with the nonce the node
//! reports, as [`super::Workload`] does, so a fault costs that sender's pre-signed tail, not
//! the run.

use super::{Acked, MAX_AMOUNT, WorkloadOutcome, code_kind, error_kind, pending_nonce};
use chain::{Address, Amount, Canonical, ChainId, SecretKey, TxHash};
use node::rpc_client::RpcClient;
use rayon::prelude::*;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::debug;

/// Most transfers a second the generator offers.
pub const MAX_RATE: f64 = 50_000.0;
/// Transfers a second per load account: a sender has a few transfers pending at a time.
pub const PER_SENDER_RATE: f64 = 4.0;
/// Fewest load accounts.
pub const MIN_SENDERS: usize = 8;
/// Most load accounts (a genesis allocation each).
pub const MAX_SENDERS: usize = 16_384;
/// Most transfers signed before the run (about 200 bytes each).
pub const PRESIGN_BUDGET: usize = 1_000_000;
/// Most `tx_submit` calls in one batch (the node takes up to 1,000).
pub const MAX_RUN: usize = 500;
/// Shortest time between two batches from one sender thread.
pub const SEND_EVERY: Duration = Duration::from_millis(10);
/// Longest sleep between checks of the stop flag.
const NAP: Duration = Duration::from_millis(20);

/// How many load accounts carry `rate` transfers a second through `nodes` nodes: one per
/// [`PER_SENDER_RATE`], at least [`MIN_SENDERS`], rounded up to a multiple of `nodes` (so
/// transfer `i` goes through node `i mod nodes`).
pub fn sender_count(rate: f64, nodes: usize) -> usize {
    let nodes = nodes.max(1);
    let wanted = if rate.is_finite() && rate > 0.0 {
        (rate / PER_SENDER_RATE).ceil() as usize
    } else {
        0
    };
    let count = wanted.clamp(MIN_SENDERS, MAX_SENDERS);
    count.div_ceil(nodes) * nodes
}

/// The load accounts for `rate` through `nodes` nodes: keys derived from
/// `toychain/load/{k}`, which the devnet's genesis funds.
pub fn load_accounts(rate: f64, nodes: usize) -> Vec<SecretKey> {
    (0..sender_count(rate, nodes))
        .into_par_iter()
        .map(|k| SecretKey::from_seed(&format!("toychain/load/{k}")))
        .collect()
}

/// What transfer `i` is: who sends it with which nonce, to whom, how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    sender: usize,
    nonce: u64,
    receiver: usize,
    amount: u64,
}

/// SplitMix64: a well-mixed 64-bit value of (seed, i), so the receiver and the amount of
/// transfer `i` do not depend on the order transfers are drawn in.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn slot(seed: u64, senders: usize, i: u64) -> Slot {
    let s = senders as u64;
    let r = mix(seed, i);
    let sender = (i % s) as usize;
    // Another account: an offset of 1 to S−1.
    let receiver = (sender + 1 + (r % (s - 1)) as usize) % senders;
    Slot {
        sender,
        nonce: i / s,
        receiver,
        amount: 1 + (r >> 32) % MAX_AMOUNT,
    }
}

/// A signed transfer ready to send: encoded and hex-encoded once, when signed (in
/// parallel, before the run), so the sender threads only copy it into a batch.
#[derive(Debug, Clone)]
struct Ready {
    /// The canonical encoding in hex: `tx_submit`'s parameter.
    hex: String,
    hash: TxHash,
    sender: usize,
    nonce: u64,
}

/// The load: its accounts, its schedule, and the transfers signed ahead of the run.
#[derive(Debug)]
pub struct Presigned {
    keys: Vec<SecretKey>,
    addresses: Vec<Address>,
    chain_id: ChainId,
    rate: f64,
    nodes: usize,
    seed: u64,
    /// Per node: its first transfers, signed (node `j` sends transfers `j, j+N, j+2N, …`).
    signed: Vec<Vec<Ready>>,
}

impl Presigned {
    /// Signs the first `min(total, PRESIGN_BUDGET)` transfers of `rate` a second through
    /// `nodes` nodes among `keys` ([`load_accounts`]), in parallel; `progress` is told how
    /// many are signed now and then.
    pub fn sign(
        keys: Vec<SecretKey>,
        chain_id: ChainId,
        rate: f64,
        nodes: usize,
        seed: u64,
        total: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Presigned {
        let nodes = nodes.max(1);
        let addresses: Vec<Address> = keys.iter().map(SecretKey::address).collect();
        let mut load = Presigned {
            keys,
            addresses,
            chain_id,
            rate,
            nodes,
            seed,
            signed: vec![Vec::new(); nodes],
        };
        if load.keys.len() < 2 {
            return load;
        }
        let count = total.min(PRESIGN_BUDGET as u64);
        let done = std::sync::atomic::AtomicU64::new(0);
        let signed: Vec<Option<Ready>> = (0..count)
            .into_par_iter()
            .map(|i| {
                let ready = load.build(i, None);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(10_000) {
                    progress(n);
                }
                ready
            })
            .collect();
        for (i, ready) in signed.into_iter().enumerate() {
            if let Some(ready) = ready {
                load.signed[i % nodes].push(ready);
            }
        }
        load
    }

    /// The load accounts' addresses (for the genesis allocation).
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// Transfer `i`, signed with its scheduled nonce or with `nonce`.
    fn build(&self, i: u64, nonce: Option<u64>) -> Option<Ready> {
        let slot = slot(self.seed, self.keys.len(), i);
        let nonce = nonce.unwrap_or(slot.nonce);
        match wallet::build_transfer(
            &self.keys[slot.sender],
            self.chain_id,
            nonce,
            self.addresses[slot.receiver],
            Amount(slot.amount),
            wallet::DEFAULT_FEE,
        ) {
            Ok(tx) => Some(Ready {
                hex: hex::encode(tx.encode()),
                hash: tx.hash(),
                sender: slot.sender,
                nonce,
            }),
            Err(e) => {
                debug!(error = %e, i, "load: transfer not built");
                None
            }
        }
    }

    /// Sends until `stop` is set: node `j`'s thread sends its `k`-th transfer `k·N / rate`
    /// seconds after `started`, what is due in one batch (a late batch goes at once, so a
    /// slow answer does not lower the rate).
    pub fn run(
        &self,
        clients: &[RpcClient],
        started: Instant,
        stop: &AtomicBool,
    ) -> WorkloadOutcome {
        let mut outcome = WorkloadOutcome::default();
        if self.rate <= 0.0 || self.keys.len() < 2 || clients.is_empty() {
            return outcome;
        }
        let load = self;
        let parts: Vec<WorkloadOutcome> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..self.nodes.min(clients.len()))
                .map(|node| {
                    let client = &clients[node];
                    s.spawn(move || NodeSender::new(load, node, client).run(started, stop))
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_default())
                .collect()
        });
        for part in parts {
            outcome.acked.extend(part.acked);
            for (kind, n) in part.refused {
                *outcome.refused.entry(kind).or_default() += n;
            }
        }
        outcome.acked.sort_by(|a, b| a.at.total_cmp(&b.at));
        outcome
    }
}

/// One node's share of the load.
struct NodeSender<'a> {
    load: &'a Presigned,
    node: usize,
    client: &'a RpcClient,
    /// Transfers of this node sent so far (the next is transfer `node + sent·N`).
    sent: u64,
    /// Senders to re-synchronise: `None` until the node told their nonce, then the next.
    resync: HashMap<usize, Option<u64>>,
    outcome: WorkloadOutcome,
}

impl<'a> NodeSender<'a> {
    fn new(load: &'a Presigned, node: usize, client: &'a RpcClient) -> Self {
        NodeSender {
            load,
            node,
            client,
            sent: 0,
            resync: HashMap::new(),
            outcome: WorkloadOutcome::default(),
        }
    }

    fn run(mut self, started: Instant, stop: &AtomicBool) -> WorkloadOutcome {
        let rate = self.load.rate / self.load.nodes as f64;
        let every = SEND_EVERY.as_secs_f64();
        let mut last_sent = f64::NEG_INFINITY;
        while !stop.load(Ordering::Relaxed) {
            let elapsed = started.elapsed().as_secs_f64();
            let due = (elapsed * rate).floor() as u64 + 1;
            if due <= self.sent || elapsed - last_sent < every {
                let next = (self.sent as f64 / rate).max(last_sent + every);
                let wait = Duration::from_secs_f64((next - elapsed).max(0.0));
                std::thread::sleep(wait.min(NAP));
                continue;
            }
            last_sent = elapsed;
            let run = (due - self.sent).min(MAX_RUN as u64);
            self.send_run(run, started);
        }
        self.outcome
    }

    fn count(&mut self, kind: &'static str) {
        *self.outcome.refused.entry(kind).or_default() += 1;
    }

    /// The next `run` transfers of this node as one batch.
    fn send_run(&mut self, run: u64, started: Instant) {
        let mut batch: Vec<Cow<'a, Ready>> = Vec::with_capacity(run as usize);
        for _ in 0..run {
            let k = self.sent;
            self.sent += 1;
            if let Some(ready) = self.next_transfer(k) {
                batch.push(ready);
            }
        }
        if batch.is_empty() {
            return;
        }
        let calls: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(id, r)| {
                json!({"jsonrpc": "2.0", "id": id, "method": "tx_submit",
                       "params": [r.hex]})
            })
            .collect();
        let at = started.elapsed().as_secs_f64();
        let answers = match self.client.batch(Value::Array(calls)) {
            Ok(Value::Array(answers)) => answers,
            Ok(other) => {
                debug!(node = self.node, %other, "load: batch answered oddly");
                Vec::new()
            }
            Err(e) => {
                debug!(error = %e, node = self.node, "load: batch refused");
                let kind = error_kind(&e);
                for r in &batch {
                    self.resync.insert(r.sender, None);
                    self.count(kind);
                }
                return;
            }
        };
        let mut answered: Vec<Option<&Value>> = vec![None; batch.len()];
        for answer in &answers {
            if let Some(id) = answer.get("id").and_then(Value::as_u64)
                && let Some(place) = answered.get_mut(id as usize)
            {
                *place = Some(answer);
            }
        }
        for (r, answer) in batch.iter().zip(answered) {
            let error = match answer {
                None => Some("bad answer"),
                Some(a) if a.get("result").is_some() => None,
                Some(a) => Some(code_kind(
                    a.pointer("/error/code")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                )),
            };
            match error {
                None => {
                    if let Some(next) = self.resync.get_mut(&r.sender) {
                        *next = Some(r.nonce + 1);
                    }
                    self.outcome.acked.push(Acked {
                        hash: r.hash,
                        node: self.node,
                        at,
                        sender: r.sender,
                        nonce: r.nonce,
                    });
                }
                Some(kind) => {
                    self.resync.insert(r.sender, None);
                    self.count(kind);
                }
            }
        }
    }

    /// This node's `k`-th transfer: pre-signed, or signed now (past the budget, or for a
    /// sender being re-synchronised, with the nonce its node reports).
    fn next_transfer(&mut self, k: u64) -> Option<Cow<'a, Ready>> {
        let load = self.load;
        let i = self.node as u64 + k * load.nodes as u64;
        let sender = slot(load.seed, load.keys.len(), i).sender;
        let Some(resync) = self.resync.get(&sender).copied() else {
            return match load.signed[self.node].get(k as usize) {
                Some(ready) => Some(Cow::Borrowed(ready)),
                None => load.build(i, None).map(Cow::Owned),
            };
        };
        let nonce = match resync {
            Some(n) => n,
            None => match pending_nonce(self.client, &load.addresses[sender]) {
                Some(n) => n,
                None => {
                    self.count("nonce lookup failed");
                    return None;
                }
            },
        };
        // Until it is acknowledged the nonce stays unknown; an ack sets the next one.
        self.resync.insert(sender, Some(nonce + 1));
        let ready = load.build(i, Some(nonce));
        if ready.is_none() {
            self.resync.insert(sender, None);
        }
        ready.map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::tests::unused_url;
    use chain::Transaction;

    #[test]
    fn senders_scale_with_the_rate_in_multiples_of_the_nodes() {
        assert_eq!(sender_count(2.0, 4), MIN_SENDERS);
        assert_eq!(sender_count(0.0, 3), 9, "8 rounded up to a multiple of 3");
        assert_eq!(sender_count(20_000.0, 4), 5_000);
        assert_eq!(sender_count(MAX_RATE, 4), 12_500);
        assert_eq!(sender_count(f64::NAN, 1), MIN_SENDERS);
        assert!(sender_count(1e12, 7) <= MAX_SENDERS + 7);
    }

    #[test]
    fn the_schedule_gives_each_sender_consecutive_nonces_and_never_pays_itself() {
        let senders = 12;
        let mut next = vec![0u64; senders];
        for i in 0..10_000u64 {
            let s = slot(7, senders, i);
            assert_eq!(s.nonce, next[s.sender], "transfer {i}");
            next[s.sender] += 1;
            assert_ne!(s.receiver, s.sender, "transfer {i}");
            assert!(s.receiver < senders && (1..=MAX_AMOUNT).contains(&s.amount));
        }
        assert_eq!(
            slot(7, senders, 99),
            slot(7, senders, 99),
            "fixed by the seed"
        );
        assert_ne!(
            (0..50)
                .map(|i| slot(7, senders, i).receiver)
                .collect::<Vec<_>>(),
            (0..50)
                .map(|i| slot(8, senders, i).receiver)
                .collect::<Vec<_>>(),
            "another seed, another schedule"
        );
    }

    #[test]
    fn presigning_splits_the_run_by_node_with_valid_signatures() {
        let keys: Vec<SecretKey> = (0..8)
            .map(|k| SecretKey::from_seed(&format!("toychain/load/{k}")))
            .collect();
        let load = Presigned::sign(keys, ChainId(1337), 100.0, 4, 3, 40, &|_| {});
        assert_eq!(
            load.signed.iter().map(Vec::len).collect::<Vec<_>>(),
            [10, 10, 10, 10]
        );
        for (node, txs) in load.signed.iter().enumerate() {
            for (k, ready) in txs.iter().enumerate() {
                let i = node as u64 + 4 * k as u64;
                assert_eq!(ready.sender as u64, i % 8);
                assert_eq!(ready.sender % 4, node, "a sender keeps to one node");
                assert_eq!(ready.nonce, i / 8);
                let tx = Transaction::decode(&hex::decode(&ready.hex).expect("hex"))
                    .expect("a transaction");
                assert_eq!(tx.hash(), ready.hash);
                assert_eq!(tx.nonce, ready.nonce);
                assert_eq!(tx.chain_id, ChainId(1337));
                tx.check_stateless(ChainId(1337))
                    .expect("a valid signature");
                assert_eq!(
                    tx.sender_address(),
                    load.addresses()[ready.sender],
                    "signed by its sender"
                );
            }
        }
    }

    #[test]
    fn an_unreachable_node_is_counted_and_its_senders_resynchronised() {
        let keys = load_accounts(10.0, 1);
        let load = Presigned::sign(keys, ChainId(1337), 10.0, 1, 3, 20, &|_| {});
        let client = RpcClient::new(&unused_url(), Duration::from_millis(200));
        let mut sender = NodeSender::new(&load, 0, &client);
        let senders = load.keys.len();
        sender.send_run(senders as u64, Instant::now());
        assert_eq!(
            sender.outcome.refused.get("unreachable"),
            Some(&(senders as u64))
        );
        assert!(sender.outcome.acked.is_empty());
        assert_eq!(
            sender.resync.len(),
            senders,
            "each refused sender re-reads its nonce"
        );
        // Sender 0 again: its pre-signed transfer is not used, its nonce is asked for.
        sender.send_run(1, Instant::now());
        assert_eq!(
            sender.outcome.refused.get("nonce lookup failed"),
            Some(&1),
            "{:?}",
            sender.outcome.refused
        );
    }
}
