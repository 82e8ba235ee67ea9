//! The proof-of-authority engine inside a real chain: turns, weights, the recent-signer
//! window, outsiders, the period, forged seals, and authority votes by transaction.

use crate::support::{GENESIS_TIME, build, engine_chain, produce, seal};
use chain::dev::dev_key;
use chain::{
    Amount, Block, BlockError, BlockProducer, Chain, ChainView, ImportOutcome, SecretKey,
    Timestamp, Transaction, TxError, TxKind, Weight,
};
use miner::poa::{PoaEngine, PoaError, PoaParams, PoaProducer, SnapshotError};
use miner::seal::SealError;
use std::sync::Arc;

const PERIOD: u64 = 5;

fn key(name: &str) -> SecretKey {
    dev_key(name).expect("dev account")
}

/// alice, bob and carol sign; dave and eve are funded outsiders.
fn setup() -> (Chain, PoaEngine, Vec<PoaProducer>) {
    let signers: Vec<SecretKey> = ["alice", "bob", "carol"].into_iter().map(key).collect();
    let params = PoaParams {
        period: PERIOD,
        epoch: 30_000,
        authorities: signers.iter().map(SecretKey::address).collect(),
    };
    let engine = PoaEngine::new(params).expect("valid params");
    let funded: Vec<_> = ["alice", "bob", "carol", "dave", "eve"]
        .into_iter()
        .map(|n| key(n).address())
        .collect();
    let (chain, _clock) = engine_chain(Arc::new(engine.clone()), &funded, GENESIS_TIME + 1_000_000);
    let producers = signers
        .into_iter()
        .map(|k| PoaProducer::new(k, engine.clone()))
        .collect();
    (chain, engine, producers)
}

/// The producer whose turn the next block is.
fn in_turn<'a>(chain: &Chain, engine: &PoaEngine, producers: &'a [PoaProducer]) -> &'a PoaProducer {
    let snapshot = engine.snapshot(chain.state()).expect("snapshot");
    let signer = snapshot
        .in_turn_signer(chain.head().height().0 + 1)
        .expect("signers");
    producers
        .iter()
        .find(|p| p.author() == signer)
        .expect("a producer for every signer")
}

fn signer_key(producer: &PoaProducer) -> SecretKey {
    ["alice", "bob", "carol"]
        .into_iter()
        .map(key)
        .find(|k| k.address() == producer.author())
        .expect("a dev signer")
}

fn next_time(chain: &Chain) -> Timestamp {
    Timestamp(chain.head().timestamp.0 + PERIOD)
}

/// A block the builder would refuse to make: built for the in-turn signer, then claimed and
/// signed by `signer` (out of turn).
fn signed_by(
    chain: &Chain,
    engine: &PoaEngine,
    producers: &[PoaProducer],
    signer: &SecretKey,
) -> Block {
    let template = build(
        chain,
        in_turn(chain, engine, producers),
        next_time(chain),
        |_| {},
    );
    let mut header = template.header;
    header.producer = signer.address();
    header.engine.bits = 1;
    Block {
        header: miner::seal::sign_header(header, signer),
        txs: template.txs,
    }
}

fn poa_error(result: Result<ImportOutcome, BlockError>) -> PoaError {
    match result {
        Err(BlockError::Engine(e)) => e
            .downcast_ref::<PoaError>()
            .cloned()
            .unwrap_or_else(|| panic!("engine error is not a PoaError: {e}")),
        other => panic!("expected a poa refusal, got {other:?}"),
    }
}

#[test]
fn signers_take_turns_in_address_order_and_in_turn_blocks_weigh_two() {
    let (mut chain, engine, producers) = setup();
    let mut sorted: Vec<_> = producers.iter().map(BlockProducer::author).collect();
    sorted.sort();
    for height in 1..=6u64 {
        let producer = in_turn(&chain, &engine, &producers);
        assert_eq!(producer.author(), sorted[(height % 3) as usize]);
        let block = produce(&chain, producer, next_time(&chain), Vec::new());
        assert_eq!(block.header.engine.bits, 2);
        assert!(matches!(
            chain.import_block(block),
            Ok(ImportOutcome::NewHead(_))
        ));
    }
    assert_eq!(chain.total_weight(), Weight::from_u64(12));
}

#[test]
fn an_in_turn_block_beats_an_out_of_turn_block_at_the_same_height() {
    let (mut chain, engine, producers) = setup();
    let first = in_turn(&chain, &engine, &producers);
    let block = produce(&chain, first, next_time(&chain), Vec::new());
    chain.import_block(block).expect("block 1");

    let in_turn_author = in_turn(&chain, &engine, &producers).author();
    let out_of_turn = producers
        .iter()
        .find(|p| p.author() != in_turn_author && p.author() != first.author())
        .expect("a third signer");
    let late = produce(&chain, out_of_turn, next_time(&chain), Vec::new());
    assert_eq!(late.header.engine.bits, 1);
    let on_time = produce(
        &chain,
        in_turn(&chain, &engine, &producers),
        next_time(&chain),
        Vec::new(),
    );
    assert!(matches!(
        chain.import_block(late.clone()),
        Ok(ImportOutcome::NewHead(_))
    ));
    assert!(matches!(
        chain.import_block(on_time.clone()),
        Ok(ImportOutcome::NewHead(_))
    ));
    assert_eq!(chain.head().hash(), on_time.hash());
}

#[test]
fn a_signer_may_not_sign_two_of_any_two_consecutive_blocks_of_three_signers() {
    let (mut chain, engine, producers) = setup();
    let producer = in_turn(&chain, &engine, &producers);
    let block = produce(&chain, producer, next_time(&chain), Vec::new());
    chain.import_block(block).expect("block 1");
    assert_eq!(
        producer
            .next_turn(&chain, &chain.head(), 0)
            .expect("next turn"),
        None,
        "the producer knows it signed too recently"
    );
    let again = signed_by(&chain, &engine, &producers, &signer_key(producer));
    assert_eq!(
        poa_error(chain.import_block(again)),
        PoaError::Authority(SnapshotError::RecentlySigned {
            signer: producer.author(),
            last: 1,
            limit: 2
        })
    );
}

#[test]
fn outsiders_wrong_difficulty_early_blocks_and_forged_seals_are_refused() {
    let (mut chain, engine, producers) = setup();
    let block = signed_by(&chain, &engine, &producers, &key("dave"));
    assert_eq!(
        poa_error(chain.import_block(block)),
        PoaError::Authority(SnapshotError::UnauthorizedSigner {
            signer: key("dave").address()
        })
    );

    let producer = in_turn(&chain, &engine, &producers);
    let mut modest = build(&chain, producer, next_time(&chain), |_| {});
    modest.header.engine.bits = 1;
    let modest = seal(producer, modest);
    assert_eq!(
        poa_error(chain.import_block(modest)),
        PoaError::WrongDifficulty {
            height: chain::Height(1),
            signer: producer.author(),
            expected: 2,
            got: 1
        }
    );

    let early_time = Timestamp(chain.head().timestamp.0 + PERIOD - 1);
    let early = produce(&chain, producer, early_time, Vec::new());
    assert!(matches!(
        poa_error(chain.import_block(early)),
        PoaError::TooEarly { period: PERIOD, .. }
    ));

    // Signed by dave but naming the in-turn signer as producer.
    let block = build(&chain, producer, next_time(&chain), |_| {});
    let forged = Block {
        header: miner::seal::sign_header(block.header, &key("dave")),
        txs: block.txs,
    };
    assert_eq!(
        poa_error(chain.import_block(forged)),
        PoaError::Seal(SealError::NotProducer {
            signer: key("dave").address(),
            producer: producer.author()
        })
    );
    assert_eq!(chain.head().height(), chain::Height::GENESIS);
}

fn propose(from: &str, nonce: u64, who: &str, add: bool) -> Transaction {
    Transaction::signed(
        &key(from),
        chain::test_utils::TEST_CHAIN_ID,
        nonce,
        Amount::from_base_units(1_000),
        TxKind::ProposeAuthority {
            address: key(who).address(),
            add,
        },
    )
}

/// Produces the next block in turn with `txs`; returns the builder's skipped txs.
fn step(
    chain: &mut Chain,
    engine: &PoaEngine,
    producers: &[PoaProducer],
    txs: Vec<Transaction>,
) -> Vec<(chain::TxHash, TxError)> {
    let producer = in_turn(chain, engine, producers);
    let mut header = chain.template(producer.author(), next_time(chain));
    producer
        .prepare(chain, &chain.head(), &mut header)
        .expect("prepare");
    let built = chain.build_block(header, txs, usize::MAX).expect("builds");
    let block = seal(producer, built.block);
    chain.import_block(block).expect("imports");
    built.skipped
}

#[test]
fn two_of_three_authorities_vote_a_fourth_in_and_an_outsider_cannot_vote() {
    let (mut chain, engine, producers) = setup();
    let dave = key("dave").address();
    let skipped = step(
        &mut chain,
        &engine,
        &producers,
        vec![
            propose("alice", 0, "dave", true),
            propose("eve", 0, "eve", true),
        ],
    );
    assert_eq!(skipped.len(), 1, "eve is no authority: {skipped:?}");
    assert!(matches!(skipped[0].1, TxError::EngineRefused { .. }));
    assert!(
        !engine
            .snapshot(chain.state())
            .expect("snapshot")
            .signers
            .contains(&dave),
        "one vote of three is not a majority"
    );
    // alice voting again counts once.
    step(
        &mut chain,
        &engine,
        &producers,
        vec![propose("alice", 1, "dave", true)],
    );
    assert!(
        !engine
            .snapshot(chain.state())
            .expect("snapshot")
            .signers
            .contains(&dave)
    );
    step(
        &mut chain,
        &engine,
        &producers,
        vec![propose("bob", 0, "dave", true)],
    );
    let snapshot = engine.snapshot(chain.state()).expect("snapshot");
    assert!(snapshot.signers.contains(&dave));
    assert!(snapshot.votes.is_empty() && snapshot.tally.is_empty());
    assert_eq!(snapshot.signer_limit(), 3);
}

#[test]
fn equal_branches_go_to_the_lower_tip_hash_whichever_came_first() {
    // After a split each side's signers may only extend the other side's branch; if every
    // node kept the equal branch it saw first, neither would ever be extended.
    let (chain, engine, producers) = setup();
    let in_turn_author = in_turn(&chain, &engine, &producers).author();
    let others: Vec<&PoaProducer> = producers
        .iter()
        .filter(|p| p.author() != in_turn_author)
        .collect();
    let a = produce(&chain, others[0], next_time(&chain), Vec::new());
    let b = produce(&chain, others[1], next_time(&chain), Vec::new());
    assert_eq!((a.header.engine.bits, b.header.engine.bits), (1, 1));
    let lower = a.hash().min(b.hash());
    for order in [[&a, &b], [&b, &a]] {
        let (mut chain, _, _) = setup();
        for block in order {
            chain.import_block(block.clone()).expect("a valid block");
        }
        assert_eq!(chain.head().hash(), lower, "whichever came first");
    }
}

/// When a signer's turn comes on a parent: the in-turn signer at the slot's start
/// (`parent + period`, or at once in the second it is asked when that has passed); an
/// out-of-turn one a wiggle later (Clique's random delay, here derived from signer and
/// height), counted from the slot's start or, when the parent came late, from when it is
/// asked: a late parent must not use up the in-turn signer's head start (under load, the
/// out-of-turn blocks that raced late in-turn ones orphaned a third of all blocks).
#[test]
fn out_of_turn_signers_wait_a_wiggle_after_the_slot_or_after_a_late_parent() {
    let (chain, engine, producers) = setup();
    let head = chain.head();
    let slot = head.timestamp.0 + PERIOD;
    let slot_ms = slot * 1000;
    let in_turn_author = in_turn(&chain, &engine, &producers).author();
    for producer in &producers {
        let in_turn = producer.author() == in_turn_author;
        let wiggle = PoaProducer::wiggle_millis(&producer.author(), 1, producers.len());
        assert!(wiggle < 2 * 500, "⌊3/2⌋ + 1 = 2 steps of 500 ms: {wiggle}");
        // (case, asked at, turn at, block timestamp)
        let cases = [
            (
                "asked before the slot",
                slot_ms - 3_000,
                if in_turn { slot_ms } else { slot_ms + wiggle },
                slot,
            ),
            (
                "asked 2.4 s after the slot",
                slot_ms + 2_400,
                if in_turn {
                    slot_ms + 2_000
                } else {
                    slot_ms + 2_400 + wiggle
                },
                slot + 2,
            ),
        ];
        for (case, now, at, timestamp) in cases {
            let turn = producer
                .next_turn(&chain, &head, now)
                .expect("next turn")
                .expect("every signer may sign block 1");
            assert_eq!(
                (turn.at_millis, turn.timestamp),
                (at, Timestamp(timestamp)),
                "{case}, in turn: {in_turn}"
            );
        }
    }
}
