//! Local faults and finality: a store error is never blamed on the block or its sender,
//! and the finalized block never moves back.

use crate::{addr, transfer};
use chain::store::{Column, WriteBatch};
use chain::test_utils::{TestEngine, build_on_head, build_on_path, open_test_chain};
use chain::{BlockError, ChainView, ImportOutcome, MemoryStore, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A memory store whose reads of the account state fail while `failing` is set, as a disk
/// that is full or gives I/O errors would.
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryStore,
    failing: AtomicBool,
}

impl Store for FlakyStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if column == Column::State && self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected I/O error".to_owned()));
        }
        self.inner.get(column, key)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.inner.write(batch)
    }

    fn for_each(
        &self,
        column: Column,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.for_each(column, f)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

#[test]
fn a_store_fault_during_the_state_transition_leaves_the_block_unmarked_and_importable() {
    let store = Arc::new(FlakyStore::default());
    let mut chain = open_test_chain(store.clone(), TestEngine::default());
    // Built elsewhere: building here would leave the accounts in this chain's state cache,
    // and the import would not read the failing disk at all.
    let builder = open_test_chain(Arc::new(MemoryStore::default()), TestEngine::default());
    let tx = transfer("alice", "bob", 0, 1_000, 10);
    let block = build_on_head(&builder, 1, addr("carol"), vec![tx]);
    let head = chain.head_id();

    store.failing.store(true, Ordering::SeqCst);
    let err = chain
        .import_block(block.clone())
        .expect_err("the state cannot be read");
    assert!(err.is_transient(), "{err}");
    assert!(
        !err.is_bad_data(),
        "our disk is not the sender's fault: {err}"
    );
    assert!(
        matches!(&err, BlockError::InvalidTx { source, .. } if source.is_transient()),
        "{err:?}"
    );
    assert_eq!(chain.head_id(), head);
    store.failing.store(false, Ordering::SeqCst);
    assert!(
        chain
            .meta(&block.hash())
            .expect("read")
            .is_none_or(|m| !m.invalid),
        "the block is not marked invalid"
    );

    // Once the fault clears the same block is taken.
    assert!(matches!(
        chain.import_block(block.clone()),
        Ok(ImportOutcome::NewHead(_))
    ));
    assert_eq!(chain.head_id().hash, block.hash());
}

#[test]
fn the_head_state_is_answered_from_memory_and_follows_every_write() {
    let store = Arc::new(FlakyStore::default());
    let mut chain = open_test_chain(store.clone(), TestEngine::default());
    let [alice_before, bob_before] =
        ["alice", "bob"].map(|who| chain.state().account(&addr(who)).expect("read"));
    // Imported here: the block's writes reach the cache as well as the disk.
    let tx = transfer("alice", "bob", 0, 1_000, 10);
    let block = build_on_head(&chain, 1, addr("carol"), vec![tx]);
    chain.import_block(block).expect("import");
    let read = |chain: &chain::Chain| {
        ["alice", "bob"].map(|who| chain.state().account(&addr(who)).expect("cached"))
    };
    store.failing.store(true, Ordering::SeqCst);
    let [alice, bob] = read(&chain);
    assert_eq!(alice.nonce, alice_before.nonce + 1);
    assert_eq!(alice.balance.0, alice_before.balance.0 - 1_010);
    assert_eq!(bob.balance.0, bob_before.balance.0 + 1_000);
    // What the disk holds agrees: a fresh chain over the same store has no cache.
    store.failing.store(false, Ordering::SeqCst);
    let reopened = open_test_chain(store.clone(), TestEngine::default());
    assert_eq!(read(&reopened), [alice, bob]);
    // An account never read or written is not in memory, so the failing disk shows.
    store.failing.store(true, Ordering::SeqCst);
    assert!(chain.state().account(&addr("dave")).is_err());
}

#[test]
fn the_finalized_block_never_goes_down_across_a_reorg_or_a_restart() {
    let engine = TestEngine {
        finality_depth: Some(2),
        ..TestEngine::default()
    };
    let store = Arc::new(MemoryStore::new());
    let mut chain = open_test_chain(store.clone(), engine.clone());
    let mut path = Vec::new();
    for _ in 0..6 {
        let block = build_on_head(&chain, 1, addr("carol"), Vec::new());
        chain.import_block(block.clone()).expect("imports");
        path.push(block);
    }
    let finalized = chain.finalized().expect("finality").expect("some");
    assert_eq!(finalized.height.0, 4);

    // A heavier but shorter branch from the finalized block: the head goes to height 5,
    // where the engine alone would say height 3 is final.
    let heavier = build_on_path(&engine, &path[..4], 10, addr("dave"), Vec::new());
    assert!(matches!(
        chain.import_block(heavier),
        Ok(ImportOutcome::NewHead(_))
    ));
    assert_eq!(chain.head_id().height.0, 5);
    assert_eq!(chain.finalized().expect("finality"), Some(finalized));

    // So a branch forking below it is refused, however heavy.
    let below = build_on_path(&engine, &path[..3], 100, addr("dave"), Vec::new());
    assert!(
        matches!(
            chain.import_block(below),
            Err(BlockError::BelowFinalized { fork_height, finalized: f })
                if fork_height.0 == 3 && f == finalized.height
        ),
        "a fork below the finalized block is refused"
    );
    drop(chain);
    let reopened = open_test_chain(store, engine);
    assert_eq!(reopened.finalized().expect("finality"), Some(finalized));
}
