//! Every rejection names its reason, leaves the head where it was, and says whether the
//! sender is at fault.

use crate::{addr, transfer};
use chain::crypto::{CryptoError, merkle_root};
use chain::dev::dev_key;
use chain::test_utils::{BadTestSeal, TEST_CHAIN_ID, TestEngine, build_on_head, memory_chain};
use chain::validation::DEFAULT_MAX_FUTURE_DRIFT_SECS;
use chain::{
    Amount, Block, BlockError, BlockHash, Chain, ChainId, ChainView, Height, Timestamp,
    Transaction, TxError, TxKind,
};

fn with_txs(mut block: Block, txs: Vec<Transaction>) -> Block {
    let hashes: Vec<_> = txs.iter().map(Transaction::hash).collect();
    block.header.tx_root = merkle_root(&hashes);
    block.txs = txs;
    block
}

/// Imports `block`, expects a refusal, and checks the head did not move.
fn refuse(chain: &mut Chain, block: Block) -> BlockError {
    let head = chain.head_id();
    let err = chain
        .import_block(block)
        .expect_err("block must be refused");
    assert_eq!(chain.head_id(), head, "head moved after refusing: {err}");
    err
}

#[test]
fn bad_blocks_are_refused_with_their_reason() {
    let mut chain = memory_chain(TestEngine::default());
    let pay = transfer("alice", "bob", 0, 1_000, 10);
    let good = build_on_head(&chain, 1, addr("carol"), vec![pay.clone()]);

    type Check = fn(&BlockError) -> bool;
    let mut cases: Vec<(&str, Block, Check, bool)> = Vec::new();

    let mut b = good.clone();
    b.txs.clear();
    cases.push((
        "tx removed: tx root mismatch",
        b,
        |e| matches!(e, BlockError::TxRootMismatch { .. }),
        true,
    ));

    cases.push((
        "tx included twice",
        with_txs(good.clone(), vec![pay.clone(), pay.clone()]),
        |e| matches!(e, BlockError::DuplicateTx { .. }),
        true,
    ));

    let mut forged = pay.clone();
    forged.signature.0[10] ^= 1;
    cases.push((
        "bad signature",
        with_txs(good.clone(), vec![forged]),
        |e| {
            matches!(
                e,
                BlockError::InvalidTx {
                    source: TxError::Signature(_),
                    ..
                }
            )
        },
        true,
    ));

    let mut high_s = pay.clone();
    high_s.signature = high_s.signature.malleated().expect("twin");
    cases.push((
        "high-S signature",
        with_txs(good.clone(), vec![high_s]),
        |e| {
            matches!(
                e,
                BlockError::InvalidTx {
                    source: TxError::Signature(CryptoError::HighS),
                    ..
                }
            )
        },
        true,
    ));

    let key = dev_key("alice").expect("dev");
    let other_chain = Transaction::signed(
        &key,
        ChainId(TEST_CHAIN_ID.0 + 1),
        0,
        Amount(10),
        TxKind::Transfer {
            to: addr("bob"),
            amount: Amount(1),
        },
    );
    cases.push((
        "wrong chain id",
        with_txs(good.clone(), vec![other_chain]),
        |e| {
            matches!(
                e,
                BlockError::InvalidTx {
                    source: TxError::WrongChainId { .. },
                    ..
                }
            )
        },
        true,
    ));

    cases.push((
        "nonce too high",
        with_txs(good.clone(), vec![transfer("alice", "bob", 5, 1_000, 10)]),
        |e| {
            matches!(
                e,
                BlockError::InvalidTx {
                    source: TxError::NonceTooHigh {
                        expected: 0,
                        got: 5
                    },
                    ..
                }
            )
        },
        true,
    ));

    cases.push((
        "insufficient balance",
        with_txs(
            good.clone(),
            vec![transfer("alice", "bob", 0, u64::MAX / 2, 10)],
        ),
        |e| {
            matches!(
                e,
                BlockError::InvalidTx {
                    source: TxError::InsufficientBalance { .. },
                    ..
                }
            )
        },
        true,
    ));

    let overflow = Transaction::signed(
        &key,
        TEST_CHAIN_ID,
        0,
        Amount(2),
        TxKind::Transfer {
            to: addr("bob"),
            amount: Amount::MAX,
        },
    );
    cases.push((
        "amount plus fee overflows",
        with_txs(good.clone(), vec![overflow]),
        |e| {
            matches!(
                e,
                BlockError::InvalidTx {
                    source: TxError::AmountOverflow,
                    ..
                }
            )
        },
        true,
    ));

    let mut b = good.clone();
    b.header.state_root.0[3] ^= 1;
    cases.push((
        "wrong state root",
        b,
        |e| matches!(e, BlockError::StateRootMismatch { .. }),
        true,
    ));

    let mut b = good.clone();
    b.header.timestamp = chain.genesis().timestamp;
    cases.push((
        "timestamp not after median time past",
        b,
        |e| matches!(e, BlockError::TimestampNotAfterMedian { .. }),
        true,
    ));

    let mut b = good.clone();
    b.header.timestamp = Timestamp(chain.clock().now().0 + DEFAULT_MAX_FUTURE_DRIFT_SECS + 1);
    cases.push((
        "timestamp too far ahead",
        b,
        |e| matches!(e, BlockError::TimestampInFuture { .. }),
        false,
    ));

    let mut b = good.clone();
    b.header.parent = BlockHash([0xab; 32]);
    cases.push((
        "unknown parent",
        b,
        |e| matches!(e, BlockError::UnknownParent { .. }),
        false,
    ));

    let mut b = good.clone();
    b.header.height = Height(7);
    cases.push((
        "wrong height",
        b,
        |e| matches!(e, BlockError::BadHeight { got: Height(7), .. }),
        true,
    ));

    let mut b = good.clone();
    b.header.version = 9;
    cases.push((
        "unknown header version",
        b,
        |e| matches!(e, BlockError::BadVersion { got: 9, .. }),
        true,
    ));

    let mut b = good.clone();
    b.header.engine.nonce = u32::MAX;
    cases.push((
        "engine-invalid seal",
        b,
        |e| matches!(e, BlockError::Engine(inner) if inner.downcast_ref::<BadTestSeal>().is_some()),
        true,
    ));

    let mut b = good.clone();
    b.txs = vec![pay.clone(); chain::codec::MAX_TXS_PER_BLOCK + 1];
    cases.push((
        "too many transactions",
        b,
        |e| matches!(e, BlockError::TooManyTxs { .. }),
        true,
    ));

    let mut b = good.clone();
    b.header.engine.data = vec![0; chain::codec::MAX_ENGINE_FIELD_BYTES + 1];
    cases.push((
        "oversized engine data",
        b,
        |e| matches!(e, BlockError::EngineFieldTooLarge { .. }),
        true,
    ));

    for (name, block, check, bad_data) in cases {
        let err = refuse(&mut chain, block);
        assert!(check(&err), "{name}: unexpected error {err}");
        assert_eq!(
            err.is_bad_data(),
            bad_data,
            "{name}: fault classification of {err}"
        );
        assert!(!err.to_string().is_empty());
    }

    // After all the mutants, the valid block with the same header is still accepted.
    chain
        .import_block(good.clone())
        .expect("the valid block imports");
    assert_eq!(chain.head_id().hash, good.hash());
    chain.verify_state().expect("state matches head");
}

#[test]
fn error_messages_carry_the_values() {
    let err = BlockError::InvalidTx {
        index: 2,
        hash: chain::TxHash([1; 32]),
        source: TxError::NonceTooLow {
            expected: 3,
            got: 2,
        },
    };
    let text = err.to_string();
    assert!(text.contains("nonce too low: expected 3, got 2"), "{text}");
    assert!(text.contains("transaction 2"), "{text}");
}

#[test]
fn a_foreign_genesis_block_is_refused() {
    let mut chain = memory_chain(TestEngine::default());
    let mut fake = chain.block_at(Height(0)).expect("read").expect("genesis");
    assert!(matches!(
        chain.import_block(fake.clone()),
        Ok(chain::ImportOutcome::AlreadyKnown)
    ));
    fake.header.timestamp = Timestamp(1);
    assert!(matches!(chain.import_block(fake), Err(BlockError::Genesis)));
}
