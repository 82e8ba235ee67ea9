//! Block import throughput into RocksDB, next to the raw signature-verification rate measured
//! in the same run (the ceiling: import cannot beat verifying every signature once).
//!
//! `cargo bench -p chain --bench import [-- BLOCKS TXS_PER_BLOCK]` prints a markdown table
//! for 1 and 2 verification threads.

use chain::dev::{DEV_ACCOUNTS, dev_key};
use chain::test_utils::{TEST_CHAIN_ID, TestEngine, memory_chain, open_test_chain};
use chain::{Amount, Block, ChainView, RocksStore, Transaction, TxKind};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

fn generate(blocks: usize, txs_per_block: usize) -> Vec<Block> {
    let chain_keys: Vec<_> = DEV_ACCOUNTS
        .iter()
        .map(|n| dev_key(n).expect("dev"))
        .collect();
    let mut chain = memory_chain(TestEngine::default());
    let mut nonces = vec![0u64; chain_keys.len()];
    let mut out = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let txs: Vec<Transaction> = (0..txs_per_block)
            .map(|i| {
                let s = i % chain_keys.len();
                let to = chain_keys[(s + 1) % chain_keys.len()].address();
                let tx = Transaction::signed(
                    &chain_keys[s],
                    TEST_CHAIN_ID,
                    nonces[s],
                    Amount(1),
                    TxKind::Transfer {
                        to,
                        amount: Amount(1_000),
                    },
                );
                nonces[s] += 1;
                tx
            })
            .collect();
        let head = chain.head();
        let header = chain.template(chain_keys[0].address(), head.timestamp.saturating_add(1));
        let built = chain.build_block(header, txs, usize::MAX).expect("builds");
        assert!(built.skipped.is_empty(), "generated txs are valid");
        chain.import_block(built.block.clone()).expect("imports");
        out.push(built.block);
    }
    out
}

struct Row {
    threads: usize,
    verify_per_s: f64,
    import_txs_per_s: f64,
    import_blocks_per_s: f64,
}

fn measure(threads: usize, blocks: &[Block]) -> Row {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let txs: Vec<&Transaction> = blocks.iter().flat_map(|b| b.txs.iter()).collect();
    let verify_secs = pool.install(|| {
        let start = Instant::now();
        txs.par_iter().for_each(|tx| {
            tx.check_stateless(TEST_CHAIN_ID).expect("valid signature");
        });
        start.elapsed().as_secs_f64()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RocksStore::open(dir.path()).expect("open"));
    let mut chain = open_test_chain(store, TestEngine::default());
    let import_secs = pool.install(|| {
        let start = Instant::now();
        for block in blocks {
            chain.import_block(block.clone()).expect("imports");
        }
        chain.flush().expect("flush");
        start.elapsed().as_secs_f64()
    });
    assert_eq!(chain.head_id().height.0, blocks.len() as u64);
    Row {
        threads,
        verify_per_s: txs.len() as f64 / verify_secs,
        import_txs_per_s: txs.len() as f64 / import_secs,
        import_blocks_per_s: blocks.len() as f64 / import_secs,
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let blocks = args.first().copied().unwrap_or(40);
    let per_block = args.get(1).copied().unwrap_or(1_000);
    eprintln!("generating {blocks} blocks of {per_block} signed transfers…");
    let chain = generate(blocks, per_block);
    println!(
        "| threads | k256 verify (tx/s, ceiling) | import (tx/s) | import (blocks/s) | import / ceiling |"
    );
    println!("|---|---|---|---|---|");
    for threads in [1, 2] {
        let row = measure(threads, &chain);
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.0}% |",
            row.threads,
            row.verify_per_s,
            row.import_txs_per_s,
            row.import_blocks_per_s,
            100.0 * row.import_txs_per_s / row.verify_per_s
        );
    }
}
