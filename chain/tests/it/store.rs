//! The RocksDB store: reopening resumes at the stored head; a foreign genesis is refused.

use crate::{addr, transfer};
use chain::test_utils::{TestEngine, build_on_head, open_test_chain, test_clock};
use chain::{BlockError, ChainConfig, ChainId, RocksStore, StoreError};
use std::sync::Arc;

#[test]
fn reopening_resumes_at_the_stored_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (head, bob) = {
        let store = Arc::new(RocksStore::open(dir.path()).expect("open"));
        let mut chain = open_test_chain(store, TestEngine::default());
        for nonce in 0..20 {
            let tx = transfer("alice", "bob", nonce, 1_000, 10);
            let block = build_on_head(&chain, 1, addr("carol"), vec![tx]);
            chain.import_block(block).expect("imports");
        }
        chain.flush().expect("flush");
        (chain.head_id(), chain.account(&addr("bob")).expect("read"))
    };
    let store = Arc::new(RocksStore::open(dir.path()).expect("reopen"));
    let chain = open_test_chain(store, TestEngine::default());
    assert_eq!(chain.head_id(), head);
    assert_eq!(chain.head_id().height.0, 20);
    assert_eq!(chain.account(&addr("bob")).expect("read"), bob);
    assert_eq!(chain.account(&addr("alice")).expect("read").nonce, 20);
    chain.verify_state().expect("state matches head");
    // The next block builds on the stored head.
    let next = build_on_head(&chain, 1, addr("carol"), Vec::new());
    assert_eq!(next.header.parent, head.hash);
}

#[test]
fn a_store_of_another_chain_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Arc::new(RocksStore::open(dir.path()).expect("open"));
        open_test_chain(store, TestEngine::default());
    }
    let store = Arc::new(RocksStore::open(dir.path()).expect("reopen"));
    let mut genesis = chain::test_utils::test_genesis();
    genesis.chain_id = ChainId(99);
    let err = chain::Chain::open(
        store,
        Arc::new(TestEngine::default()),
        test_clock(),
        ChainConfig::new(ChainId(99)),
        &genesis,
    )
    .expect_err("other genesis");
    assert!(
        matches!(err, BlockError::Store(StoreError::WrongGenesis { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("another chain"), "{err}");
}
