//! Crash durability: a child process imports a chain with forks into RocksDB and is killed
//! (SIGKILL) at random points; every reopen must find a consistent head — its state root
//! matches the stored state, the height index is exactly its ancestry, and the head's
//! total weight never goes backwards.

use crate::{addr, transfer};
use chain::store::Column;
use chain::test_utils::{TestEngine, build_on_head, memory_chain, open_test_chain};
use chain::{Block, Canonical, Chain, ChainView, RocksStore, Transaction, Weight};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

const CHILD_DIR_ENV: &str = "TOYCHAIN_CRASH_CHILD_DIR";
const CHILD_BLOCKS_ENV: &str = "TOYCHAIN_CRASH_CHILD_BLOCKS";
/// Kills that must land while the child is importing.
const KILLS: usize = 100;
const READY: &str = "CRASH-CHILD-READY";
const DONE: &str = "CRASH-CHILD-DONE";
const SENDERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// Two transfers from rotating senders, with nonces from `chain`'s head state.
fn txs_for(chain: &Chain, round: usize) -> Vec<Transaction> {
    (0..2)
        .map(|i| {
            let from = SENDERS[(round + i) % SENDERS.len()];
            let to = SENDERS[(round + i + 1) % SENDERS.len()];
            let nonce = chain.account(&addr(from)).expect("read").nonce;
            transfer(from, to, nonce, 1_000 + round as u64, 1)
        })
        .collect()
}

/// A chain of blocks in import order; every tenth step adds a fork: a two-block branch A,
/// then a heavier three-block branch B from the same parent, so importing them in order
/// makes a depth-2 reorg.
fn generate(steps: usize) -> Vec<Block> {
    let engine = TestEngine::default();
    let mut main = memory_chain(engine.clone());
    let mut twin = memory_chain(engine);
    let mut out = Vec::new();
    for step in 0..steps {
        if step % 10 == 9 {
            let mut branch_a = Vec::new();
            for _ in 0..2 {
                let b = build_on_head(&main, 1, addr("eve"), txs_for(&main, step));
                main.import_block(b.clone()).expect("a");
                branch_a.push(b);
            }
            let mut branch_b = Vec::new();
            for _ in 0..3 {
                let b = build_on_head(&twin, 1, addr("ferdie"), txs_for(&twin, step + 1));
                twin.import_block(b.clone()).expect("b");
                branch_b.push(b);
            }
            for b in &branch_b {
                main.import_block(b.clone()).expect("b on main");
            }
            for b in &branch_a {
                twin.import_block(b.clone()).expect("a on twin");
            }
            assert_eq!(main.head_id(), twin.head_id());
            out.extend(branch_a);
            out.extend(branch_b);
        } else {
            let b = build_on_head(&main, 1, addr("grace"), txs_for(&main, step));
            main.import_block(b.clone()).expect("main");
            twin.import_block(b.clone()).expect("twin");
            out.push(b);
        }
    }
    out
}

#[test]
#[ignore = "entry point of the child process that crash_cycles_keep_the_store_consistent kills"]
fn crash_child() {
    let (Ok(dir), Ok(blocks)) = (
        std::env::var(CHILD_DIR_ENV),
        std::env::var(CHILD_BLOCKS_ENV),
    ) else {
        eprintln!("crash_child runs only as the child of the crash test");
        return;
    };
    let bytes = std::fs::read(blocks).expect("blocks file");
    let encoded: Vec<Vec<u8>> = borsh::from_slice(&bytes).expect("blocks file decodes");
    let store = Arc::new(RocksStore::open(&dir).expect("open store"));
    let mut chain = open_test_chain(store, TestEngine::default());
    // libtest prints "test name ... " without a newline first, so markers are matched
    // anywhere in a line.
    println!("{READY} {}", chain.head_id().height);
    for raw in encoded {
        let block = Block::decode(&raw).expect("block decodes");
        chain
            .import_block(block)
            .expect("generated blocks are valid");
    }
    println!("{DONE}");
}

/// Everything a reopened store must satisfy. Returns the head's total weight.
fn check_consistent(dir: &std::path::Path, known: &[Block]) -> Weight {
    let store = Arc::new(RocksStore::open(dir).expect("reopen after kill"));
    let chain = open_test_chain(store, TestEngine::default());
    chain
        .verify_state()
        .expect("state root matches the stored state");
    let head = chain.head();
    assert!(
        head.height().0 == 0 || known.iter().any(|b| b.hash() == head.hash()),
        "head {} is not a generated block",
        head.hash()
    );
    let mut current = head.clone();
    while current.height().0 > 0 {
        assert_eq!(
            chain.best_hash_at(current.height()).expect("read"),
            Some(current.hash())
        );
        current = chain
            .header(&current.parent)
            .expect("read")
            .expect("ancestor stored");
    }
    let mut above = 0;
    chain
        .store()
        .for_each(Column::Heights, &mut |k, _| {
            if u64::from_be_bytes(k.try_into().expect("8-byte key")) > head.height().0 {
                above += 1;
            }
            true
        })
        .expect("iterate");
    assert_eq!(above, 0, "stale height index entries above the head");
    chain.total_weight()
}

#[test]
fn crash_cycles_keep_the_store_consistent() {
    let blocks = generate(240);
    let work = tempfile::tempdir().expect("tempdir");
    let blocks_file = work.path().join("blocks.borsh");
    let encoded: Vec<Vec<u8>> = blocks.iter().map(Canonical::encode).collect();
    std::fs::write(&blocks_file, borsh::to_vec(&encoded).expect("encode")).expect("write");

    let seed = 0x7c4a_55ed;
    let mut rng = StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().expect("test binary path");
    let mut kills = 0;
    let mut completed_runs = 0;
    let mut generation = 0;
    let mut last_weight = Weight::ZERO;
    let mut cycles = 0;
    while kills < KILLS {
        cycles += 1;
        assert!(
            cycles < KILLS * 4,
            "too few kills landed mid-import ({kills} in {cycles} cycles)"
        );
        let db = work.path().join(format!("db{generation}"));
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &db)
            .env(CHILD_BLOCKS_ENV, &blocks_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait (with a deadline) until the child has opened the store and started importing.
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("child reports ready");
            if line.contains(READY) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        let finished = rx.try_iter().any(|l| l.contains(DONE));
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
        let _ = reader.join();
        if finished {
            completed_runs += 1;
        } else {
            kills += 1;
        }
        let weight = check_consistent(&db, &blocks);
        assert!(
            weight >= last_weight,
            "head weight went backwards after a crash"
        );
        last_weight = weight;
        if finished || weight == check_full_weight(&blocks) {
            // This store holds the whole chain: continue the cycles on a fresh one.
            generation += 1;
            last_weight = Weight::ZERO;
        }
    }
    println!(
        "crash test: {kills} kills mid-import in {cycles} cycles over {} stores (seed {seed:#x}, {} runs finished before the kill)",
        generation + 1,
        completed_runs
    );
}

/// The total weight of the generated chain's final head.
fn check_full_weight(blocks: &[Block]) -> Weight {
    thread_local! {
        static FULL: std::cell::OnceCell<Weight> = const { std::cell::OnceCell::new() };
    }
    FULL.with(|cell| {
        *cell.get_or_init(|| {
            let mut chain = memory_chain(TestEngine::default());
            for b in blocks {
                chain.import_block(b.clone()).expect("valid");
            }
            chain.total_weight()
        })
    })
}
