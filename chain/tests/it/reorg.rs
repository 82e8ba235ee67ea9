//! Reorganisations: state, indexes and the mempool follow the heaviest branch exactly.

use crate::{addr, transfer};
use chain::dev::dev_key;
use chain::store::Column;
use chain::test_utils::TEST_CHAIN_ID;
use chain::test_utils::{TestEngine, build_on_head, build_on_path, memory_chain};
use chain::{Amount, ChainView, ImportOutcome, Mempool, MempoolConfig, StateKey, TxKind};

fn stored_heights(chain: &chain::Chain) -> Vec<u64> {
    let mut heights = Vec::new();
    chain
        .store()
        .for_each(Column::Heights, &mut |k, _| {
            heights.push(u64::from_be_bytes(k.try_into().expect("8-byte key")));
            true
        })
        .expect("iterate");
    heights
}

#[test]
fn reorg_to_heavier_branch_restores_state_indexes_and_mempool() {
    let engine = TestEngine::default();
    let mut chain = memory_chain(engine.clone());
    let mut pool = Mempool::new(TEST_CHAIN_ID, MempoolConfig::default());
    let alice_before = chain.account(&addr("alice")).expect("read");
    let bob_before = chain.account(&addr("bob")).expect("read");

    // Branch A: two blocks, the first carries alice -> bob.
    let pay = transfer("alice", "bob", 0, 1_000, 10);
    let a1 = build_on_head(&chain, 1, addr("carol"), vec![pay.clone()]);
    chain.import_block(a1.clone()).expect("a1");
    let a2 = build_on_head(&chain, 1, addr("carol"), Vec::new());
    chain.import_block(a2.clone()).expect("a2");
    assert_eq!(
        chain.account(&addr("bob")).expect("read").balance.0,
        bob_before.balance.0 + 1_000
    );
    assert_eq!(
        chain.tx_location(&pay.hash()).expect("read"),
        Some((a1.hash(), 0))
    );
    assert_eq!(stored_heights(&chain), vec![0, 1, 2]);

    // Branch B from genesis: one heavier block without the payment.
    let b1 = build_on_path(&engine, &[], 5, addr("dave"), Vec::new());
    let outcome = chain.import_block(b1.clone()).expect("b1");
    let ImportOutcome::NewHead(change) = outcome else {
        panic!("b1 must become the head, got {outcome:?}");
    };
    assert!(change.is_reorg());
    assert_eq!(change.reverted.len(), 2);
    assert_eq!(
        change.reverted[0].hash(),
        a2.hash(),
        "newest reverted first"
    );
    assert_eq!(change.fork_point.height.0, 0);
    assert_eq!(change.applied.len(), 1);

    // State is exactly genesis + b1's reward; the payment is undone.
    assert_eq!(chain.account(&addr("alice")).expect("read"), alice_before);
    assert_eq!(chain.account(&addr("bob")).expect("read"), bob_before);
    assert_eq!(
        chain.account(&addr("carol")).expect("read").balance,
        alice_before.balance
    );
    assert_eq!(
        chain.account(&addr("dave")).expect("read").balance.0,
        alice_before.balance.0 + 50
    );
    // No stale index entries: height 2 is gone, the tx is no longer located.
    assert_eq!(stored_heights(&chain), vec![0, 1]);
    assert_eq!(chain.tx_location(&pay.hash()).expect("read"), None);
    chain.verify_state().expect("state matches head");

    // The reverted payment goes back to the mempool, still valid on the new head.
    pool.on_head_change(&change, chain.state())
        .expect("revalidate");
    assert!(pool.contains(&pay.hash()));

    // Back to A: two more blocks make A heavier again (1+1+2+2 = 6 > 5).
    let a3 = build_on_path(
        &engine,
        &[a1.clone(), a2.clone()],
        2,
        addr("carol"),
        Vec::new(),
    );
    let a4 = build_on_path(
        &engine,
        &[a1.clone(), a2.clone(), a3.clone()],
        2,
        addr("carol"),
        Vec::new(),
    );
    assert!(matches!(
        chain.import_block(a3.clone()).expect("a3"),
        ImportOutcome::SideChain(_)
    ));
    let ImportOutcome::NewHead(back) = chain.import_block(a4.clone()).expect("a4") else {
        panic!("a4 must become the head");
    };
    assert_eq!(back.reverted.len(), 1);
    assert_eq!(back.applied.len(), 4);
    assert_eq!(chain.head_id().hash, a4.hash());
    assert_eq!(
        chain.tx_location(&pay.hash()).expect("read"),
        Some((a1.hash(), 0))
    );
    assert_eq!(stored_heights(&chain), vec![0, 1, 2, 3, 4]);
    chain.verify_state().expect("state matches head");
    // The payment is included again, so the pool drops it.
    pool.on_head_change(&back, chain.state())
        .expect("revalidate");
    assert!(!pool.contains(&pay.hash()));
}

#[test]
fn engine_state_is_reverted_with_the_block() {
    let engine = TestEngine::default();
    let mut chain = memory_chain(engine.clone());
    let key = dev_key("eve").expect("dev");
    let register =
        chain::Transaction::signed(&key, TEST_CHAIN_ID, 0, Amount(1), TxKind::RegisterDelegate);
    let a1 = build_on_head(&chain, 1, addr("alice"), vec![register]);
    chain.import_block(a1).expect("a1");
    let marker = StateKey::engine("test", &addr("eve").0);
    assert_eq!(chain.state().get(&marker).expect("read"), Some(vec![1]));
    let b1 = build_on_path(&engine, &[], 3, addr("bob"), Vec::new());
    chain.import_block(b1).expect("b1");
    assert_eq!(chain.state().get(&marker).expect("read"), None);
    chain.verify_state().expect("state matches head");
}

#[test]
fn a_heavier_branch_with_a_bad_state_transition_leaves_the_head_alone() {
    let engine = TestEngine::default();
    let mut chain = memory_chain(engine.clone());
    let a1 = build_on_head(&chain, 1, addr("alice"), Vec::new());
    chain.import_block(a1.clone()).expect("a1");
    // b1 is valid; b2 claims a wrong state root; b3 builds on b2.
    let b1 = build_on_path(&engine, &[], 1, addr("bob"), Vec::new());
    let mut b2 = build_on_path(
        &engine,
        std::slice::from_ref(&b1),
        1,
        addr("bob"),
        Vec::new(),
    );
    b2.header.state_root.0[0] ^= 1;
    assert!(matches!(
        chain.import_block(b1.clone()).expect("b1"),
        ImportOutcome::SideChain(_)
    ));
    let err = chain
        .import_block(b2.clone())
        .expect_err("b2 has a bad state root");
    assert!(
        matches!(err, chain::BlockError::StateRootMismatch { .. }),
        "{err}"
    );
    assert!(err.is_bad_data());
    assert_eq!(chain.head_id().hash, a1.hash());
    chain
        .verify_state()
        .expect("state still matches the old head");
    // The bad block is remembered: importing it again is refused at once.
    let again = chain.import_block(b2).expect_err("known invalid");
    assert!(
        matches!(again, chain::BlockError::KnownInvalid { .. }),
        "{again}"
    );
}

/// The bytes of an undo record as builds before this one wrote it: the parent's state hash
/// in front of the entries (`parent_lthash`), where newer records leave it empty.
fn with_parent_lthash(record: &[u8], parent_lthash: &[u8]) -> Vec<u8> {
    // Version byte, then borsh: u32 length + bytes of `parent_lthash`, then the entries.
    assert_eq!(
        &record[1..5],
        &[0, 0, 0, 0],
        "a new record has an empty state hash"
    );
    let mut out = vec![record[0]];
    out.extend_from_slice(
        &u32::try_from(parent_lthash.len())
            .expect("4 KiB")
            .to_le_bytes(),
    );
    out.extend_from_slice(parent_lthash);
    out.extend_from_slice(&record[5..]);
    out
}

#[test]
fn undo_records_with_or_without_the_parents_state_hash_revert_the_same() {
    let engine = TestEngine::default();
    let mut chain = memory_chain(engine.clone());
    let head_lthash = |chain: &chain::Chain| {
        chain
            .store()
            .get(Column::Meta, b"head_lthash")
            .expect("read")
            .expect("the head's state hash is stored")
    };
    let genesis_lthash = head_lthash(&chain);
    let a1 = build_on_head(
        &chain,
        1,
        addr("carol"),
        vec![transfer("alice", "bob", 0, 1_000, 10)],
    );
    chain.import_block(a1.clone()).expect("a1");
    let a1_lthash = head_lthash(&chain);
    let a2 = build_on_head(&chain, 1, addr("carol"), Vec::new());
    chain.import_block(a2.clone()).expect("a2");
    // a1's record as an older build wrote it; a2's as this one does.
    let record = chain
        .store()
        .get(Column::Undo, &a1.hash().0)
        .expect("read")
        .expect("a1 has an undo record");
    let mut batch = chain::store::WriteBatch::default();
    batch.put(
        Column::Undo,
        a1.hash().0,
        with_parent_lthash(&record, &genesis_lthash),
    );
    chain.store().write(batch).expect("write");
    assert_ne!(genesis_lthash, a1_lthash);

    let b1 = build_on_path(&engine, &[], 5, addr("dave"), Vec::new());
    let ImportOutcome::NewHead(change) = chain.import_block(b1).expect("b1") else {
        panic!("b1 is heavier");
    };
    assert_eq!(change.reverted.len(), 2);
    chain
        .verify_state()
        .expect("the state and its hash agree after the revert");
}

#[test]
fn state_at_reaches_ancestors_and_side_branches_within_the_depth_limit() {
    use chain::chain::MAX_STATE_DEPTH;
    use chain::{EngineError, StateRead};
    let engine = TestEngine::default();
    let mut chain = memory_chain(engine.clone());
    let balance =
        |state: &dyn StateRead, name: &str| state.account(&addr(name)).expect("read").balance.0;
    let (bob0, dave0) = (
        balance(chain.state(), "bob"),
        balance(chain.state(), "dave"),
    );
    let mut path = Vec::new();
    for nonce in 0..5 {
        let tx = transfer("alice", "bob", nonce, 1_000, 10);
        let block = build_on_head(&chain, 1, addr("carol"), vec![tx]);
        chain.import_block(block.clone()).expect("imports");
        path.push(block);
    }
    // Best-chain ancestors, by undo records.
    for (k, block) in path.iter().enumerate() {
        let state = chain.state_at(&block.hash()).expect("reachable");
        assert_eq!(
            balance(&state, "bob"),
            bob0 + 1_000 * (k as u64 + 1),
            "after block {k}"
        );
    }
    // A side branch's block, by replaying it on its fork point's state.
    let side_tx = transfer("alice", "dave", 2, 7, 10);
    let side = build_on_path(&engine, &path[..2], 1, addr("carol"), vec![side_tx]);
    assert!(matches!(
        chain.import_block(side.clone()),
        Ok(ImportOutcome::SideChain(_))
    ));
    let state = chain.state_at(&side.hash()).expect("reachable");
    assert_eq!(balance(&state, "dave"), dave0 + 7);
    assert_eq!(balance(&state, "bob"), bob0 + 2_000);
    assert_eq!(
        balance(chain.state(), "dave"),
        dave0,
        "the head's state is untouched"
    );
    // Past the limit, the state is unavailable (not the block's fault).
    for _ in 0..=MAX_STATE_DEPTH {
        let block = build_on_head(&chain, 1, addr("carol"), Vec::new());
        chain.import_block(block).expect("imports");
    }
    for hash in [path[0].hash(), side.hash()] {
        match chain.state_at(&hash) {
            Err(e @ EngineError::StateUnavailable { .. }) => assert!(!e.is_bad_data(), "{e}"),
            other => panic!(
                "expected the state to be unavailable, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    assert!(chain.state_at(&chain.head_id().hash).is_ok());
}

#[test]
fn a_side_branch_longer_than_the_depth_limit_is_judged_block_by_block() {
    use chain::StateRead;
    use chain::chain::MAX_STATE_DEPTH;
    let engine = TestEngine::default();
    let mut chain = memory_chain(engine.clone());
    let mut follower = memory_chain(engine);
    let dave0 = chain.account(&addr("dave")).expect("read").balance.0;
    for _ in 0..2 {
        let block = build_on_head(&chain, 1, addr("carol"), Vec::new());
        chain.import_block(block.clone()).expect("imports");
        follower.import_block(block).expect("imports");
    }
    // The best chain moves on with heavy blocks, so the side branch stays a side branch.
    for _ in 0..3 {
        let block = build_on_head(&chain, 1_000, addr("carol"), Vec::new());
        chain.import_block(block).expect("imports");
    }
    let head = chain.head_id();
    let mut last = None;
    for i in 0..MAX_STATE_DEPTH + 50 {
        let txs = if i == 0 {
            vec![transfer("alice", "dave", 0, 7, 10)]
        } else {
            Vec::new()
        };
        let block = build_on_head(&follower, 1, addr("dave"), txs);
        follower.import_block(block.clone()).expect("imports");
        // What a signed engine asks before it judges the block: its parent's state.
        let state = chain.state_at(&block.header.parent);
        assert!(state.is_ok(), "side block {i}: {:?}", state.err());
        assert!(matches!(
            chain.import_block(block.clone()),
            Ok(ImportOutcome::SideChain(_))
        ));
        last = Some(block.hash());
    }
    let last = last.expect("blocks were made");
    let state = chain.state_at(&last).expect("reachable");
    let dave = state.account(&addr("dave")).expect("read").balance.0;
    // dave got 7 from alice and the fees and rewards of every side block he made.
    assert_eq!(
        dave,
        follower.account(&addr("dave")).expect("read").balance.0
    );
    assert!(dave > dave0 + 7);
    assert_eq!(chain.head_id(), head);
}
