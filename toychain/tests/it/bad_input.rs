//! One table of bad transactions and blocks, sent through every entry point a node has:
//! JSON-RPC `tx_submit`, gossip of the transaction, and the transaction inside a gossiped
//! block; then bad blocks by gossip. Each is refused with its reason, the tip and the
//! mempool stay as they were, and the gossiping peer is penalised (the node's
//! `gossip_rejected` counter) only for data that breaks a consensus rule, not for data
//! that is merely stale or early.
//!
//! Gossip is ordered per connection and the node handles its events one by one, so after
//! each bad message a probe (a valid transfer) is gossiped and awaited in the mempool: when
//! the probe is there, the bad message was judged.

use crate::support::{LoneNode, connect_fake_peer, easy_chain_spec, metrics_counter, rpc, runtime};
use chain::crypto::merkle_root;
use chain::dev::dev_key;
use chain::{
    Amount, Block, BlockProducer, CancelFlag, Canonical, Chain, ChainConfig, ChainView, Hash256,
    ManualClock, MemoryStore, RocksStore, SecretKey, Signature, Timestamp, Transaction, TxBatch,
    TxKind,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAIN_ID: u64 = 6100;

fn key(name: &str) -> SecretKey {
    dev_key(name).expect("dev account")
}

fn transfer(from: &str, nonce: u64, to: &str, amount: Amount, chain_id: u64) -> Transaction {
    Transaction::signed(
        &key(from),
        chain::ChainId(chain_id),
        nonce,
        Amount::from_base_units(10_000),
        TxKind::Transfer {
            to: key(to).address(),
            amount,
        },
    )
}

fn toy(n: u64) -> Amount {
    Amount::from_toy(n).expect("fits")
}

/// The node's chain, mirrored in memory to build blocks on its tip.
struct Builder {
    chain: Chain,
    miner: Arc<dyn BlockProducer>,
}

impl Builder {
    fn new(spec: &config::ChainSpec) -> Builder {
        let engines = spec.engine.engines(Some(&key("bob")), 1).expect("engines");
        let chain = Chain::open(
            Arc::new(MemoryStore::new()),
            engines.engine,
            Arc::new(ManualClock::new(Timestamp(
                spec.genesis.timestamp + 1_000_000,
            ))),
            ChainConfig::new(chain::ChainId(spec.chain_id)),
            &spec.genesis(),
        )
        .expect("chain");
        let miner = engines.producer.expect("the miner");
        Builder { chain, miner }
    }

    /// A mined block on the tip at `time` seconds after genesis holding `txs` as given
    /// (not filtered: bad ones stay), with the roots `edit` leaves.
    fn block(&self, time: u64, txs: Vec<Transaction>, edit: impl FnOnce(&mut Block)) -> Block {
        let mut header = self.chain.template(
            self.miner.author(),
            Timestamp(self.chain.genesis().timestamp.0 + time),
        );
        self.miner
            .prepare(&self.chain, &self.chain.head(), &mut header)
            .expect("prepare");
        let built = self
            .chain
            .build_block(header, txs.clone(), usize::MAX)
            .expect("template");
        let mut block = built.block;
        if block.txs != txs {
            // The builder dropped bad ones: put them back, with their tx root.
            block.txs = txs;
            let hashes: Vec<_> = block.txs.iter().map(Transaction::hash).collect();
            block.header.tx_root = merkle_root(&hashes);
        }
        edit(&mut block);
        self.seal(block)
    }

    fn seal(&self, block: Block) -> Block {
        let header = self
            .miner
            .seal(block.header, &CancelFlag::new())
            .expect("seal")
            .expect("not cancelled");
        Block {
            header,
            txs: block.txs,
        }
    }
}

/// What one case expects from the node.
#[derive(Clone, Copy, Debug)]
enum Gossip {
    /// Consensus-invalid: rejected, the sender penalised.
    Reject,
    /// Stale or early, or not judged here: dropped without penalty.
    Ignore,
}

struct Node {
    node: LoneNode,
    probes_sent: u64,
}

impl Node {
    fn head(&self) -> Value {
        rpc(&self.node.rpc, "chain_info", json!([])).expect("info")["head_hash"].clone()
    }

    fn mempool(&self) -> u64 {
        rpc(&self.node.rpc, "node_status", json!([])).expect("status")["mempool_size"]
            .as_u64()
            .expect("mempool size")
    }

    fn rejected(&self) -> u64 {
        metrics_counter(&self.node.rpc, "toychain_gossip_rejected_total")
    }

    /// Publishes `bytes` on `topic` from a fresh peer (transaction bytes as a batch of one),
    /// then a probe, and waits until the node has the probe. Returns the change of the
    /// node's rejection counter.
    fn gossip(&mut self, topic: net::Topic, bytes: Vec<u8>) -> u64 {
        let bytes = if topic == net::Topic::Tx {
            batch_of_one(&bytes)
        } else {
            bytes
        };
        let before = self.rejected();
        let probe = transfer("ferdie", self.probes_sent, "grace", toy(1), CHAIN_ID);
        let probe = TxBatch {
            sequence: 0,
            txs: vec![probe],
        };
        self.probes_sent += 1;
        let want = self.probes_sent;
        let url = self.node.rpc.clone();
        // The peer must stay up until the node has both messages, so the wait for the
        // probe runs inside the runtime that drives the peer.
        runtime().block_on(async {
            let client = connect_fake_peer(&url).await;
            for (topic, bytes) in [(topic, bytes), (net::Topic::Tx, probe.encode())] {
                let until = Instant::now() + Duration::from_secs(30);
                while let Err(e) = client.publish(topic, bytes.clone()).await {
                    assert!(
                        Instant::now() < until,
                        "could not publish on {topic:?}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let until = Instant::now() + Duration::from_secs(30);
            while self.mempool() < want {
                assert!(
                    Instant::now() < until,
                    "the probe never reached the mempool"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        self.rejected() - before
    }
}

/// The transaction topic's wire form (a [`TxBatch`]) around one transaction's bytes, taken
/// as they are: malformed ones make a malformed batch.
fn batch_of_one(tx: &[u8]) -> Vec<u8> {
    [0u64.to_le_bytes().as_slice(), &1u32.to_le_bytes(), tx].concat()
}

fn expect_gossip(case: &str, delta: u64, want: Gossip) {
    match want {
        Gossip::Reject => assert_eq!(delta, 1, "{case}: the sender is penalised"),
        Gossip::Ignore => assert_eq!(delta, 0, "{case}: no penalty"),
    }
}

#[test]
fn bad_transactions_and_blocks_through_every_entry_point() {
    let spec = easy_chain_spec(CHAIN_ID);
    let spec_text = spec.to_toml();
    // Three blocks; carol's nonce-0 transfer is in block 1.
    let mut builder = Builder::new(&spec);
    let mut prebuilt = Vec::new();
    for (i, txs) in [
        vec![transfer("carol", 0, "dave", toy(1), CHAIN_ID)],
        vec![],
        vec![],
    ]
    .into_iter()
    .enumerate()
    {
        let block = builder.block(i as u64 + 1, txs, |_| {});
        builder
            .chain
            .import_block(block.clone())
            .expect("prebuilt block");
        prebuilt.push(block);
    }
    let mut node = Node {
        node: LoneNode::start_prepared(&spec_text, |data| {
            let mut chain = Chain::open(
                Arc::new(RocksStore::open(data.join("db")).expect("store")),
                spec.engine.engines(None, 1).expect("engine").engine,
                Arc::new(ManualClock::new(Timestamp(
                    spec.genesis.timestamp + 1_000_000,
                ))),
                ChainConfig::new(chain::ChainId(spec.chain_id)),
                &spec.genesis(),
            )
            .expect("chain");
            for block in &prebuilt {
                chain.import_block(block.clone()).expect("import");
            }
            chain.flush().expect("flush");
        }),
        probes_sent: 0,
    };
    let tip = node.head();
    assert_eq!(tip, json!(builder.chain.head().hash().to_hex()));

    // --- transactions: RPC, gossip, inside a block ---
    let good = transfer("dave", 0, "eve", toy(1), CHAIN_ID);
    let mut high_s = good.clone();
    high_s.signature = good.signature.malleated().expect("malleable");
    let mut bad_sig = good.clone();
    bad_sig.signature = Signature([7u8; 64]);
    let oversize = Transaction::signed(
        &key("dave"),
        chain::ChainId(CHAIN_ID),
        0,
        Amount::from_base_units(10_000),
        TxKind::Vote {
            delegates: vec![key("eve").address(); 300],
        },
    );
    let overflow = Transaction::signed(
        &key("dave"),
        chain::ChainId(CHAIN_ID),
        0,
        Amount::from_base_units(u64::MAX - 5),
        TxKind::Transfer {
            to: key("eve").address(),
            amount: Amount::from_base_units(10),
        },
    );
    // (case, bytes, RPC code, words in the RPC message, gossip verdict, a block with it).
    // An oversize tx is not gossiped: the net layer's size limit stops it on both sides
    // (a sender's client refuses it, a receiver's gossipsub drops it before the node).
    type TxCase = (
        &'static str,
        Vec<u8>,
        i64,
        &'static str,
        Option<Gossip>,
        Option<Transaction>,
    );
    let cheap = Transaction::signed(
        &key("dave"),
        chain::ChainId(CHAIN_ID),
        0,
        Amount::from_base_units(999),
        TxKind::Transfer {
            to: key("eve").address(),
            amount: toy(1),
        },
    );
    let tx_cases: Vec<TxCase> = vec![
        (
            "malformed bytes",
            vec![1, 2, 3],
            -32010,
            "",
            Some(Gossip::Reject),
            None,
        ),
        ("oversize", oversize.encode(), -32010, "bytes", None, None),
        (
            "wrong chain id",
            transfer("dave", 0, "eve", toy(1), CHAIN_ID + 1).encode(),
            -32010,
            "chain id",
            Some(Gossip::Reject),
            Some(transfer("dave", 0, "eve", toy(1), CHAIN_ID + 1)),
        ),
        (
            "high-S signature",
            high_s.encode(),
            -32010,
            "low-S",
            Some(Gossip::Reject),
            Some(high_s),
        ),
        (
            "bad signature",
            bad_sig.encode(),
            -32010,
            "signature",
            Some(Gossip::Reject),
            Some(bad_sig),
        ),
        (
            "nonce too low",
            transfer("carol", 0, "eve", toy(1), CHAIN_ID).encode(),
            -32011,
            "nonce too low",
            Some(Gossip::Ignore),
            Some(transfer("carol", 0, "eve", toy(1), CHAIN_ID)),
        ),
        (
            "nonce too high",
            transfer("dave", 5, "eve", toy(1), CHAIN_ID).encode(),
            -32011,
            "nonce too high",
            Some(Gossip::Ignore),
            Some(transfer("dave", 5, "eve", toy(1), CHAIN_ID)),
        ),
        (
            "insufficient balance",
            transfer("eve", 0, "dave", toy(2_000_000), CHAIN_ID).encode(),
            -32012,
            "insufficient balance",
            Some(Gossip::Ignore),
            Some(transfer("eve", 0, "dave", toy(2_000_000), CHAIN_ID)),
        ),
        (
            // Policy, not consensus: refused by the pool, harmless inside a block.
            "fee below the minimum relay fee",
            cheap.encode(),
            -32013,
            "below the minimum relay fee of 0.00001",
            Some(Gossip::Ignore),
            None,
        ),
        (
            "amount overflow",
            overflow.encode(),
            -32010,
            "overflow",
            Some(Gossip::Reject),
            Some(overflow),
        ),
    ];
    for (case, bytes, code, words, gossip, in_block) in tx_cases {
        let err = rpc(&node.node.rpc, "tx_submit", json!([hex::encode(&bytes)])).expect_err(case);
        assert!(
            err.contains(&code.to_string()),
            "{case}: rpc code {code} in {err}"
        );
        assert!(err.contains(words), "{case}: {words:?} in {err}");
        if let Some(gossip) = gossip {
            let delta = node.gossip(net::Topic::Tx, bytes);
            expect_gossip(case, delta, gossip);
        }
        if let Some(tx) = in_block {
            let block = builder.block(10, vec![tx], |_| {});
            let delta = node.gossip(net::Topic::Block, block.encode());
            expect_gossip(&format!("{case} inside a block"), delta, Gossip::Reject);
        }
        assert_eq!(node.head(), tip, "{case}: the tip stays");
        assert_eq!(
            node.mempool(),
            node.probes_sent,
            "{case}: only the probes wait"
        );
    }

    // --- blocks by gossip ---
    let valid_tx = transfer("dave", 0, "eve", toy(1), CHAIN_ID);
    let block_cases: Vec<(&str, Block, Gossip)> = vec![
        (
            "a tx included twice",
            builder.block(10, vec![valid_tx.clone(), valid_tx.clone()], |_| {}),
            Gossip::Reject,
        ),
        (
            "wrong tx root",
            builder.block(10, vec![valid_tx.clone()], |b| {
                b.header.tx_root = Hash256([9; 32])
            }),
            Gossip::Reject,
        ),
        (
            "wrong state root",
            builder.block(10, vec![], |b| b.header.state_root = Hash256([9; 32])),
            Gossip::Reject,
        ),
        (
            "timestamp not after the median time past",
            // The miner's `prepare` would lift the time above the median; set it after.
            builder.block(10, vec![], |b| {
                b.header.timestamp = Timestamp(b.header.timestamp.0 - 9);
            }),
            Gossip::Reject,
        ),
        (
            "timestamp too far in the future",
            builder.block(10, vec![], |b| {
                b.header.timestamp = Timestamp(now() + 3_600);
            }),
            Gossip::Ignore,
        ),
        (
            "unknown parent",
            builder.block(10, vec![], |b| b.header.parent = chain::BlockHash([5; 32])),
            Gossip::Ignore,
        ),
        ("hash above the target", unmined(&builder), Gossip::Reject),
        (
            "malformed block bytes",
            Block {
                header: builder.block(10, vec![], |_| {}).header,
                txs: vec![],
            },
            Gossip::Reject,
        ),
    ];
    for (case, block, gossip) in block_cases {
        let mut bytes = block.encode();
        if case == "malformed block bytes" {
            bytes.extend_from_slice(&[0xde, 0xad]);
        }
        let delta = node.gossip(net::Topic::Block, bytes);
        expect_gossip(case, delta, gossip);
        assert_eq!(node.head(), tip, "{case}: the tip stays");
        assert_eq!(
            node.mempool(),
            node.probes_sent,
            "{case}: only the probes wait"
        );
    }

    // A block whose body was swapped is refused; the true block with the same header is
    // then accepted (the refusal is not pinned on the header's hash).
    let honest = builder.block(10, vec![valid_tx.clone()], |_| {});
    let swapped = Block {
        header: honest.header.clone(),
        txs: vec![transfer("dave", 0, "eve", toy(2), CHAIN_ID)],
    };
    let delta = node.gossip(net::Topic::Block, swapped.encode());
    expect_gossip("swapped body", delta, Gossip::Reject);
    assert_eq!(node.head(), tip);
    node.gossip(net::Topic::Block, honest.encode());
    let until = Instant::now() + Duration::from_secs(30);
    while node.head() != json!(honest.hash().to_hex()) {
        assert!(Instant::now() < until, "the honest block was not accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A block with the right bits whose hash does not meet them (about every second nonce at
/// the easy test target).
fn unmined(builder: &Builder) -> Block {
    let mut block = builder.block(10, vec![], |_| {});
    let target = miner::pow::CompactTarget::from_consensus(block.header.engine.bits)
        .to_target()
        .expect("valid bits");
    let mut header = block.header.clone();
    block.header.engine.nonce = (0..u32::MAX)
        .find(|n| {
            header.engine.nonce = *n;
            !target.is_met_by(&header.hash())
        })
        .expect("some nonce misses the target");
    block
}
