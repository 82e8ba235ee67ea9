//! One signature check per node: what the mempool verified, block building and import
//! answer from the shared cache; a forged signature on a cached body is still refused.

use crate::{addr, transfer};
use chain::crypto::{CryptoError, merkle_root};
use chain::dev::dev_key;
use chain::test_utils::{TEST_CHAIN_ID, TestEngine, build_on_head, memory_chain};
use chain::{
    BlockError, Chain, ChainView, ImportOutcome, Mempool, MempoolConfig, MempoolError, Transaction,
    TxError,
};

/// A chain and a pool sharing the chain's signature cache, as a node wires them.
fn node() -> (Chain, Mempool) {
    let chain = memory_chain(TestEngine::default());
    let pool = Mempool::new(TEST_CHAIN_ID, MempoolConfig::default())
        .with_signature_cache(chain.config().signature_cache.clone());
    (chain, pool)
}

fn misses(chain: &Chain) -> u64 {
    chain.config().signature_cache.stats().misses
}

#[test]
fn a_transaction_admitted_to_the_pool_is_not_verified_again_at_import() {
    let (mut node, mut pool) = node();
    let producer = memory_chain(TestEngine::default());
    let admitted = transfer("alice", "bob", 0, 5, 10);
    let unseen = transfer("carol", "bob", 0, 5, 10);
    pool.insert(admitted.clone(), node.state())
        .expect("valid transfer");
    assert_eq!(misses(&node), 1, "admission verifies once");

    let block = build_on_head(&producer, 1, addr("dave"), vec![admitted, unseen]);
    let outcome = node.import_block(block).expect("valid block");
    assert!(matches!(outcome, ImportOutcome::NewHead(_)));
    let stats = node.config().signature_cache.stats();
    // The pooled tx came from the cache; only the one this node never saw was verified.
    assert_eq!((stats.misses, stats.hits), (2, 1), "{stats:?}");

    // A block built here from the pool verifies nothing again either.
    let next = transfer("alice", "bob", 1, 5, 10);
    pool.insert(next.clone(), node.state()).expect("next nonce");
    let own = build_on_head(&node, 1, addr("dave"), vec![next]);
    node.import_block(own).expect("own block");
    let stats = node.config().signature_cache.stats();
    assert_eq!((stats.misses, stats.hits), (3, 3), "{stats:?}");
}

#[test]
fn a_forged_signature_on_a_cached_body_is_refused_at_admission_and_import() {
    let (mut node, mut pool) = node();
    let producer = memory_chain(TestEngine::default());
    let valid = transfer("alice", "bob", 0, 5, 10);
    pool.insert(valid.clone(), node.state())
        .expect("valid transfer");

    // The same body under another signature: alice's key over another message, and eve's
    // signature over this very body.
    let mut foreign = valid.clone();
    foreign.signature = dev_key("alice")
        .expect("dev account")
        .sign(&chain::Hash256([7; 32]));
    let mut eves = valid.clone();
    eves.signature = dev_key("eve")
        .expect("dev account")
        .sign(&valid.unsigned().signing_hash());
    let template = build_on_head(&producer, 1, addr("dave"), vec![valid.clone()]);
    for forged in [foreign, eves] {
        assert_eq!(
            pool.insert(forged.clone(), node.state()),
            Err(MempoolError::Invalid(TxError::Signature(
                CryptoError::BadSignature
            )))
        );
        // Same body, so the same state root: only the signature check can refuse it.
        let mut block = template.clone();
        block.header.tx_root = merkle_root(&[forged.hash()]);
        block.txs = vec![forged];
        let err = node.import_block(block).expect_err("forged signature");
        assert!(
            matches!(
                err,
                BlockError::InvalidTx {
                    index: 0,
                    source: TxError::Signature(CryptoError::BadSignature),
                    ..
                }
            ),
            "{err}"
        );
    }
    // The valid one is still cached and its block imports without another verification.
    let before = misses(&node);
    node.import_block(template).expect("valid block");
    assert_eq!(misses(&node), before);
    assert_eq!(node.config().signature_cache.len(), 1);
}

#[test]
fn a_tampered_body_under_a_cached_signature_is_refused() {
    let (mut node, mut pool) = node();
    let producer = memory_chain(TestEngine::default());
    let valid = transfer("alice", "bob", 0, 5, 10);
    pool.insert(valid.clone(), node.state())
        .expect("valid transfer");
    // Alice's cached signature on a body paying twice as much.
    let honest: Transaction = transfer("alice", "bob", 0, 10, 10);
    let mut block = build_on_head(&producer, 1, addr("dave"), vec![honest.clone()]);
    let mut tampered = honest;
    tampered.signature = valid.signature;
    block.txs = vec![tampered.clone()];
    block.header.tx_root = merkle_root(&[tampered.hash()]);
    let err = node.import_block(block).expect_err("tampered body");
    assert!(
        matches!(
            err,
            BlockError::InvalidTx {
                source: TxError::Signature(CryptoError::BadSignature),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_batch_of_transactions_gets_the_verdicts_of_one_by_one_and_caches_only_the_valid() {
    let (node, _) = node();
    let cache = &node.config().signature_cache;
    let valid = transfer("alice", "bob", 0, 5, 10);
    let mut forged = transfer("carol", "bob", 0, 5, 10);
    forged.signature = dev_key("eve")
        .expect("dev account")
        .sign(&forged.unsigned().signing_hash());
    let mut elsewhere = transfer("dave", "bob", 0, 5, 10);
    elsewhere.chain_id = chain::ChainId(TEST_CHAIN_ID.0 + 1);
    let txs = [valid.clone(), forged.clone(), elsewhere.clone()];

    let together = Transaction::check_stateless_batch_cached(&txs, TEST_CHAIN_ID, cache);
    assert_eq!(
        together[..2],
        [Ok(()), Err(TxError::Signature(CryptoError::BadSignature))]
    );
    assert!(matches!(together[2], Err(TxError::WrongChainId { .. })));
    // Only the valid one was remembered; the wrong chain's was never verified.
    assert_eq!((cache.len(), misses(&node)), (1, 2));

    let fresh = memory_chain(TestEngine::default());
    let alone: Vec<_> = txs
        .iter()
        .map(|tx| tx.check_stateless_cached(TEST_CHAIN_ID, &fresh.config().signature_cache))
        .collect();
    assert_eq!(together, alone);
}
