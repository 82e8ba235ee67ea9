//! The pool: validation against the head, fee and nonce order, bounds and eviction,
//! replacement, and re-validation on a new head.

use crate::{addr, transfer};
use chain::dev::dev_key;
use chain::test_utils::{TEST_CHAIN_ID, TestEngine, build_on_head, build_on_path, memory_chain};
use chain::{
    Amount, Canonical, ChainView, FeeRate, ImportOutcome, Mempool, MempoolConfig, MempoolError,
    Transaction, TxError, TxKind,
};

fn new_pool(max_txs: usize, max_bytes: usize) -> Mempool {
    pool_with_minimum(max_txs, max_bytes, Amount::ZERO)
}

fn pool_with_minimum(max_txs: usize, max_bytes: usize, min_relay_fee: Amount) -> Mempool {
    Mempool::new(
        TEST_CHAIN_ID,
        MempoolConfig {
            max_txs,
            max_bytes,
            min_relay_fee,
        },
    )
}

/// A vote for `n` delegates: a transaction much larger than a transfer.
fn big_vote(from: &str, nonce: u64, n: u8, fee: u64) -> Transaction {
    Transaction::signed(
        &dev_key(from).expect("dev account"),
        TEST_CHAIN_ID,
        nonce,
        Amount(fee),
        TxKind::Vote {
            delegates: (0..n).map(|i| chain::Address([i; 20])).collect(),
        },
    )
}

#[test]
fn a_fee_below_the_minimum_relay_fee_is_refused_naming_fee_and_minimum() {
    let chain = memory_chain(TestEngine::default());
    let minimum = Amount(1_000);
    let mut pool = pool_with_minimum(100, 1 << 20, minimum);
    for fee in [0, 999] {
        let tx = transfer("alice", "bob", 0, 1, fee);
        let err = pool
            .insert(tx.clone(), chain.state())
            .expect_err("below the minimum");
        assert_eq!(
            err,
            MempoolError::FeeBelowMinimum {
                hash: tx.hash(),
                fee: Amount(fee),
                minimum,
            }
        );
        let text = err.to_string();
        assert!(
            text.contains(&Amount(fee).to_string()) && text.contains(&minimum.to_string()),
            "{text}"
        );
        assert!(!err.is_bad_data(), "our policy is not the sender's fault");
    }
    assert!(pool.is_empty());
    // The minimum itself is enough; a bad signature under the minimum is refused for its
    // fee before its signature costs anything.
    pool.insert(transfer("alice", "bob", 0, 1, 1_000), chain.state())
        .expect("pays the minimum");
    let mut forged = transfer("bob", "carol", 0, 1, 5);
    forged.fee = Amount(6);
    assert!(matches!(
        pool.insert(forged, chain.state()),
        Err(MempoolError::FeeBelowMinimum { .. })
    ));
}

#[test]
fn a_reorg_puts_back_mined_transactions_below_the_minimum() {
    let engine = TestEngine::default();
    let mut chain = memory_chain(engine.clone());
    let mut pool = pool_with_minimum(100, 1 << 20, Amount(1_000));
    let cheap = transfer("alice", "bob", 0, 1, 0);
    let mined = build_on_head(&chain, 1, addr("carol"), vec![cheap.clone()]);
    chain.import_block(mined).expect("imports");
    // A heavier branch from genesis without the tx takes its block off the best chain.
    let heavier = build_on_path(&engine, &[], 5, addr("dave"), Vec::new());
    let ImportOutcome::NewHead(change) = chain.import_block(heavier).expect("imports") else {
        panic!("the heavier branch becomes the head");
    };
    assert!(change.is_reorg());
    pool.on_head_change(&change, chain.state())
        .expect("revalidate");
    assert!(
        pool.contains(&cheap.hash()),
        "a mined tx comes back whatever it paid"
    );
}

#[test]
fn selects_by_fee_keeping_each_senders_nonce_order() {
    let chain = memory_chain(TestEngine::default());
    let mut pool = new_pool(100, 1 << 20);
    let a0 = transfer("alice", "bob", 0, 1, 5);
    let a1 = transfer("alice", "bob", 1, 1, 50);
    let b0 = transfer("bob", "carol", 0, 1, 20);
    let c0 = transfer("carol", "dave", 0, 1, 1);
    for tx in [&a0, &a1, &b0, &c0] {
        pool.insert(tx.clone(), chain.state()).expect("valid");
    }
    let order: Vec<_> = pool.select(10).iter().map(|t| t.hash()).collect();
    // bob's 20 first; alice's 50 must wait for her nonce 0 (fee 5), which beats carol's 1.
    assert_eq!(order, vec![b0.hash(), a0.hash(), a1.hash(), c0.hash()]);
    assert_eq!(pool.select(2).len(), 2);
}

#[test]
fn refuses_duplicates_gaps_old_nonces_and_overspending() {
    let mut chain = memory_chain(TestEngine::default());
    let mut pool = new_pool(100, 1 << 20);
    let tx = transfer("alice", "bob", 0, 1, 5);
    pool.insert(tx.clone(), chain.state()).expect("valid");
    assert_eq!(
        pool.insert(tx.clone(), chain.state()),
        Err(MempoolError::AlreadyKnown { hash: tx.hash() })
    );
    assert_eq!(
        pool.insert(transfer("alice", "bob", 2, 1, 5), chain.state()),
        Err(MempoolError::Invalid(TxError::NonceTooHigh {
            expected: 1,
            got: 2
        }))
    );
    // Two txs that each fit the balance but not together.
    let balance = chain.account(&addr("bob")).expect("read").balance.0;
    pool.insert(transfer("bob", "carol", 0, balance / 2, 1), chain.state())
        .expect("half the balance fits");
    let err = pool
        .insert(transfer("bob", "carol", 1, balance / 2, 1), chain.state())
        .expect_err("the second half plus fees does not");
    assert!(
        matches!(
            err,
            MempoolError::Invalid(TxError::InsufficientBalance { .. })
        ),
        "{err}"
    );
    assert!(!err.is_bad_data(), "overspending is not malformed data");

    // Once alice's nonce 0 is in a block, resubmitting it is "nonce too low".
    let block = build_on_head(&chain, 1, addr("carol"), vec![tx.clone()]);
    let ImportOutcome::NewHead(change) = chain.import_block(block).expect("imports") else {
        panic!("new head expected");
    };
    pool.on_head_change(&change, chain.state())
        .expect("revalidate");
    assert!(!pool.contains(&tx.hash()), "included tx leaves the pool");
    let mut fresh = new_pool(100, 1 << 20);
    assert_eq!(
        fresh.insert(tx, chain.state()),
        Err(MempoolError::Invalid(TxError::NonceTooLow {
            expected: 1,
            got: 0
        }))
    );
}

/// The sender's pooled cost is kept as transactions come and go (not summed per admission):
/// a replacement counts only the new one, a transaction mined and dropped from the pool
/// stops counting, and the balance check is exact to the base unit.
#[test]
fn the_balance_check_follows_replacements_and_mined_transactions() {
    let mut chain = memory_chain(TestEngine::default());
    let mut pool = new_pool(100, 1 << 20);
    let balance = chain.account(&addr("bob")).expect("read").balance.0;
    pool.insert(transfer("bob", "carol", 0, balance / 2, 1), chain.state())
        .expect("half fits");
    let cheaper = transfer("bob", "carol", 0, balance / 4, 2);
    pool.insert(cheaper.clone(), chain.state())
        .expect("a replacement with a higher fee");
    // Counting the replaced transaction too would refuse this one.
    let second = transfer("bob", "dave", 1, balance / 2, 1);
    pool.insert(second.clone(), chain.state())
        .expect("the replacement and this fit together");

    let block = build_on_head(&chain, 1, addr("carol"), vec![cheaper.clone()]);
    let ImportOutcome::NewHead(change) = chain.import_block(block).expect("imports") else {
        panic!("new head expected");
    };
    pool.on_head_change(&change, chain.state())
        .expect("revalidate");
    assert!(!pool.contains(&cheaper.hash()) && pool.contains(&second.hash()));
    let left = chain.account(&addr("bob")).expect("read").balance.0;
    let room = left - (balance / 2 + 1);
    let err = pool
        .insert(transfer("bob", "eve", 2, room, 1), chain.state())
        .expect_err("one base unit too many");
    assert!(
        matches!(err, MempoolError::Invalid(TxError::InsufficientBalance { needed, .. }) if needed.0 == left + 1),
        "{err}"
    );
    pool.insert(transfer("bob", "eve", 2, room - 1, 1), chain.state())
        .expect("exactly the balance");
}

#[test]
fn a_bad_signature_is_bad_data() {
    let chain = memory_chain(TestEngine::default());
    let mut pool = new_pool(100, 1 << 20);
    let mut tx = transfer("alice", "bob", 0, 1, 5);
    tx.signature.0[5] ^= 1;
    let err = pool.insert(tx, chain.state()).expect_err("forged");
    assert!(err.is_bad_data(), "{err}");
    assert!(pool.is_empty());
}

#[test]
fn same_sender_and_nonce_replaces_only_with_a_higher_fee() {
    let chain = memory_chain(TestEngine::default());
    let mut pool = new_pool(100, 1 << 20);
    let first = transfer("alice", "bob", 0, 1, 10);
    pool.insert(first.clone(), chain.state()).expect("valid");
    let same_fee = transfer("alice", "carol", 0, 1, 10);
    assert_eq!(
        pool.insert(same_fee, chain.state()),
        Err(MempoolError::ReplacementUnderpriced {
            nonce: 0,
            existing: chain::Amount(10),
            offered: chain::Amount(10)
        })
    );
    let better = transfer("alice", "carol", 0, 1, 11);
    pool.insert(better.clone(), chain.state())
        .expect("higher fee replaces");
    assert!(!pool.contains(&first.hash()));
    assert!(pool.contains(&better.hash()));
    assert_eq!(pool.len(), 1);
}

#[test]
fn a_full_pool_evicts_the_lowest_fee_or_refuses() {
    let chain = memory_chain(TestEngine::default());
    let mut pool = new_pool(3, 1 << 20);
    let low = transfer("alice", "bob", 0, 1, 1);
    let low_child = transfer("alice", "bob", 1, 1, 100);
    let mid = transfer("bob", "carol", 0, 1, 5);
    for tx in [&low, &low_child, &mid] {
        pool.insert(tx.clone(), chain.state()).expect("fits");
    }
    // Not better than the lowest fee: refused, nothing evicted.
    let cheap = transfer("carol", "dave", 0, 1, 1);
    assert!(matches!(
        pool.insert(cheap, chain.state()),
        Err(MempoolError::Full { .. })
    ));
    assert_eq!(pool.len(), 3);
    // Better: the lowest goes, and with it alice's later nonce (it could never be mined).
    let rich = transfer("carol", "dave", 0, 1, 7);
    pool.insert(rich.clone(), chain.state()).expect("evicts");
    assert!(!pool.contains(&low.hash()));
    assert!(!pool.contains(&low_child.hash()));
    assert!(pool.contains(&mid.hash()) && pool.contains(&rich.hash()));
    assert!(pool.len() <= 3);
}

#[test]
fn a_full_pool_evicts_the_lowest_fee_rate_not_the_lowest_fee() {
    let chain = memory_chain(TestEngine::default());
    let mut pool = new_pool(2, 1 << 20);
    let small = transfer("alice", "bob", 0, 1, 100);
    let large = big_vote("bob", 0, 100, 150);
    let (small_len, large_len) = (small.encode().len(), large.encode().len());
    assert!(large_len > 10 * small_len, "{large_len} vs {small_len}");
    pool.insert(small.clone(), chain.state()).expect("fits");
    pool.insert(large.clone(), chain.state()).expect("fits");
    // 120 is less than the large tx's 150 but a far higher rate: the large one goes.
    let cheaper_but_denser = transfer("carol", "dave", 0, 1, 120);
    pool.insert(cheaper_but_denser.clone(), chain.state())
        .expect("evicts the lowest rate");
    assert!(!pool.contains(&large.hash()));
    assert!(pool.contains(&small.hash()) && pool.contains(&cheaper_but_denser.hash()));
    // A tx whose rate does not beat the lowest pooled rate is refused, with both rates.
    let err = pool
        .insert(transfer("dave", "eve", 0, 1, 100), chain.state())
        .expect_err("no better than the lowest");
    assert_eq!(
        err,
        MempoolError::Full {
            offered: FeeRate::new(Amount(100), small_len),
            lowest: FeeRate::new(Amount(100), small_len),
        }
    );
    assert_eq!(pool.len(), 2);
    // Blocks take the denser first too.
    let order: Vec<u64> = pool.select(10).iter().map(|t| t.fee.0).collect();
    assert_eq!(order, vec![120, 100]);
}

#[test]
fn the_byte_bound_holds() {
    let chain = memory_chain(TestEngine::default());
    let one = chain::Canonical::encode(&transfer("alice", "bob", 0, 1, 1)).len();
    let mut pool = new_pool(1_000, one * 2);
    for (i, name) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        let _ = pool.insert(transfer(name, "heidi", 0, 1, 1 + i as u64), chain.state());
        assert!(pool.bytes() <= one * 2);
    }
    assert_eq!(pool.len(), 2, "the two highest fees stay");
    let fees: Vec<u64> = pool.select(10).iter().map(|t| t.fee.0).collect();
    assert_eq!(fees, vec![4, 3]);
}

#[test]
fn kinds_the_engine_does_not_use_are_refused_before_the_pool() {
    let chain = memory_chain(TestEngine::default());
    let key = chain::dev::dev_key("alice").expect("dev");
    let vote = chain::Transaction::signed(
        &key,
        TEST_CHAIN_ID,
        0,
        chain::Amount(10),
        chain::TxKind::Vote {
            delegates: vec![addr("bob")],
        },
    );
    let err = chain
        .check_tx_kind(&vote)
        .expect_err("the test engine has no votes");
    assert!(
        matches!(err, TxError::UnsupportedKind { kind: "vote", .. }),
        "{err}"
    );
    assert!(err.is_bad_data());
    let register = chain::Transaction::signed(
        &key,
        TEST_CHAIN_ID,
        0,
        chain::Amount(10),
        chain::TxKind::RegisterDelegate,
    );
    assert_eq!(chain.check_tx_kind(&register), Ok(()));
    assert_eq!(
        chain.check_tx_kind(&transfer("alice", "bob", 0, 1, 1)),
        Ok(())
    );
}
