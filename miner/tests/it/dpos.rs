//! The DPoS engine inside a real chain: the slot schedule, refusals, missed slots, the last
//! irreversible block, and elections by stake-weighted votes.

use crate::support::{GENESIS_TIME, build, engine_chain, produce, seal};
use chain::dev::dev_key;
use chain::{
    Address, Amount, Block, BlockError, BlockProducer, Chain, ChainView, ConsensusEngine, Height,
    ImportOutcome, ManualClock, SecretKey, Timestamp, Transaction, TxError, TxKind,
};
use miner::dpos::{DposEngine, DposError, DposParams, DposProducer};
use std::collections::BTreeSet;
use std::sync::Arc;

const SLOT: u64 = 5;
const NAMES: [&str; 6] = ["alice", "bob", "carol", "dave", "eve", "ferdie"];

fn key(name: &str) -> SecretKey {
    dev_key(name).expect("dev account")
}

/// alice … dave are the genesis delegates (K = 4); everyone in NAMES holds 1,000 TOY.
fn setup() -> (Chain, DposEngine, Vec<DposProducer>) {
    let (chain, engine, producers, _clock) = setup_at(GENESIS_TIME + 1_000_000);
    (chain, engine, producers)
}

/// [`setup`] with the chain's clock at `now`, and the clock.
fn setup_at(now: u64) -> (Chain, DposEngine, Vec<DposProducer>, Arc<ManualClock>) {
    let params = DposParams {
        slot_secs: SLOT,
        producers: 4,
        max_votes: 2,
        genesis_delegates: NAMES[..4].iter().map(|n| key(n).address()).collect(),
        block_reward: Amount::from_toy(1).expect("fits"),
    };
    let engine = DposEngine::new(params).expect("valid params");
    let funded: Vec<Address> = NAMES.iter().map(|n| key(n).address()).collect();
    let (chain, clock) = engine_chain(Arc::new(engine.clone()), &funded, now);
    let producers = NAMES
        .iter()
        .map(|n| DposProducer::new(key(n), engine.clone()))
        .collect();
    (chain, engine, producers, clock)
}

/// The first slot after genesis.
fn first_slot() -> u64 {
    GENESIS_TIME / SLOT + 1
}

fn owner<'a>(
    chain: &Chain,
    engine: &DposEngine,
    producers: &'a [DposProducer],
    slot: u64,
) -> &'a DposProducer {
    let owner = engine
        .owner_of(chain.state(), slot)
        .expect("state")
        .expect("an owner");
    producers
        .iter()
        .find(|p| p.author() == owner)
        .expect("a producer for every delegate")
}

/// The owner of `slot` produces it with `txs`; returns what the builder skipped.
fn fill(
    chain: &mut Chain,
    engine: &DposEngine,
    producers: &[DposProducer],
    slot: u64,
    txs: Vec<Transaction>,
) -> Vec<(chain::TxHash, TxError)> {
    let producer = owner(chain, engine, producers, slot);
    let mut header = chain.template(producer.author(), Timestamp(slot * SLOT));
    producer
        .prepare(chain, &chain.head(), &mut header)
        .expect("prepare");
    let built = chain.build_block(header, txs, usize::MAX).expect("builds");
    let block = seal(producer, built.block);
    assert!(matches!(
        chain.import_block(block),
        Ok(ImportOutcome::NewHead(_))
    ));
    built.skipped
}

fn dpos_error(result: Result<ImportOutcome, BlockError>) -> DposError {
    match result {
        Err(BlockError::Engine(e)) => e
            .downcast_ref::<DposError>()
            .cloned()
            .unwrap_or_else(|| panic!("engine error is not a DposError: {e}")),
        other => panic!("expected a dpos refusal, got {other:?}"),
    }
}

#[test]
fn each_round_every_active_delegate_owns_one_slot_and_the_order_is_shuffled() {
    let (mut chain, engine, producers) = setup();
    let k = 4;
    let start = first_slot().div_ceil(k) * k; // a round boundary
    let mut orders = Vec::new();
    for round in 0..4 {
        let mut order = Vec::new();
        for i in 0..k {
            let slot = start + round * k + i;
            order.push(owner(&chain, &engine, &producers, slot).author());
            fill(&mut chain, &engine, &producers, slot, Vec::new());
        }
        let distinct: BTreeSet<_> = order.iter().collect();
        assert_eq!(distinct.len(), 4, "round {round}: {order:?}");
        orders.push(order);
    }
    assert!(
        orders.windows(2).any(|w| w[0] != w[1]),
        "the schedule is reshuffled between rounds"
    );
    let alice = key("alice").address();
    assert_eq!(
        chain.state().account(&alice).expect("account").balance,
        Amount::from_toy(1_004).expect("fits"),
        "1 TOY per produced block"
    );
}

#[test]
fn blocks_outside_their_producers_slot_or_off_the_slot_grid_are_refused() {
    let (mut chain, engine, producers) = setup();
    let slot = first_slot();
    let rightful = owner(&chain, &engine, &producers, slot);
    let intruder = producers
        .iter()
        .find(|p| p.author() != rightful.author())
        .expect("another delegate");
    // Built for the rightful owner, then claimed and signed by the intruder.
    let block = build(&chain, rightful, Timestamp(slot * SLOT), |_| {});
    let mut header = block.header;
    header.producer = intruder.author();
    let stolen = seal(
        intruder,
        Block {
            header,
            txs: block.txs,
        },
    );
    assert_eq!(
        dpos_error(chain.import_block(stolen)),
        DposError::WrongProducer {
            height: Height(1),
            slot,
            expected: rightful.author(),
            got: intruder.author()
        }
    );
    let off_grid = produce(&chain, rightful, Timestamp(slot * SLOT + 1), Vec::new());
    assert!(matches!(
        dpos_error(chain.import_block(off_grid)),
        DposError::NotSlotAligned { .. }
    ));
    // Three blocks, so the median time past (the middle one) is below the head's time and
    // only the slot rule stops a second block in the head's slot.
    for s in slot..slot + 3 {
        fill(&mut chain, &engine, &producers, s, Vec::new());
    }
    let again = owner(&chain, &engine, &producers, slot + 2);
    let same_slot = produce(&chain, again, Timestamp((slot + 2) * SLOT), Vec::new());
    assert!(matches!(
        dpos_error(chain.import_block(same_slot)),
        DposError::SlotNotAfterParent { .. }
    ));
}

#[test]
fn skipped_slots_count_as_missed_for_their_owner() {
    let (mut chain, engine, producers) = setup();
    let slot = first_slot();
    fill(&mut chain, &engine, &producers, slot, Vec::new());
    let skipped = owner(&chain, &engine, &producers, slot + 1).author();
    fill(&mut chain, &engine, &producers, slot + 2, Vec::new());
    let book = engine.book(chain.state()).expect("book");
    assert_eq!(book.delegates[&skipped].missed, 1);
    let total_missed: u64 = book.delegates.values().map(|d| d.missed).sum();
    assert_eq!(total_missed, 1);
    // Ten whole rounds later: every delegate missed ten more slots of its own.
    let later = slot + 3 + 40 + (4 - (slot + 3) % 4) % 4;
    let before: Vec<u64> = NAMES[..4]
        .iter()
        .map(|n| book.delegates[&key(n).address()].missed)
        .collect();
    fill(&mut chain, &engine, &producers, later, Vec::new());
    let book = engine.book(chain.state()).expect("book");
    let gap = later - (slot + 2) - 1;
    let added: u64 = NAMES[..4]
        .iter()
        .zip(&before)
        .map(|(n, b)| book.delegates[&key(n).address()].missed - b)
        .sum();
    assert_eq!(added, gap, "every slot in the gap is someone's miss");
}

#[test]
fn a_block_is_irreversible_once_more_than_two_thirds_of_producers_built_on_it() {
    let (mut chain, engine, producers) = setup();
    let slot = first_slot();
    fill(&mut chain, &engine, &producers, slot, Vec::new());
    fill(&mut chain, &engine, &producers, slot + 1, Vec::new());
    assert_eq!(
        chain.finalized().expect("finalized").map(|id| id.height),
        Some(Height(0))
    );
    let mut s = slot + 2;
    while chain.head().height() < Height(12) {
        fill(&mut chain, &engine, &producers, s, Vec::new());
        s += 1;
    }
    // Independently from the headers: each producer's newest height; the 3rd newest of
    // the 4 is confirmed by 3 > 2/3·4 producers.
    let mut newest = std::collections::BTreeMap::new();
    for h in 1..=12 {
        let hash = chain
            .best_hash_at(Height(h))
            .expect("index")
            .expect("block");
        let header = chain.header(&hash).expect("read").expect("stored");
        newest.insert(header.producer, h);
    }
    let mut heights: Vec<u64> = newest.values().copied().collect();
    heights.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(heights.len(), 4);
    let finalized = chain.finalized().expect("finalized").expect("a block");
    assert_eq!(finalized.height, Height(heights[2]));
    assert!(
        finalized.height >= Height(9),
        "three of four slots back at most"
    );
    assert_eq!(
        Some(finalized.hash),
        chain.best_hash_at(finalized.height).expect("index")
    );
}

/// What the dashboard's DPoS panel reads: the round's shape, its schedule (whose entry for
/// the head's slot is the head's producer) and the last irreversible height.
#[test]
fn explain_shows_the_rounds_slots_the_schedule_and_the_irreversible_height() {
    let (mut chain, engine, producers) = setup();
    let slot = first_slot();
    fill(&mut chain, &engine, &producers, slot, Vec::new());
    fill(&mut chain, &engine, &producers, slot + 2, Vec::new());
    let head = chain.head();
    let fields: std::collections::BTreeMap<&str, String> = engine
        .explain(&chain, &head)
        .expect("explains")
        .into_iter()
        .collect();
    let explained = slot + 2;
    assert_eq!(fields["slots_per_round"], "4");
    assert_eq!(fields["slot_secs"], SLOT.to_string());
    assert_eq!(fields["slot"], explained.to_string());
    assert_eq!(fields["round"], (explained / 4).to_string());
    assert_eq!(fields["slot_in_round"], (explained % 4).to_string());
    let schedule: Vec<&str> = fields["schedule"].split(',').collect();
    assert_eq!(schedule.len(), 4, "{schedule:?}");
    let index = usize::try_from(explained % 4).expect("small");
    assert_eq!(schedule[index], head.producer.to_string());
    let finalized = chain.finalized().expect("finalized").expect("a block");
    assert_eq!(fields["last_irreversible"], finalized.height.0.to_string());
}

fn tx(from: &str, nonce: u64, kind: TxKind) -> Transaction {
    Transaction::signed(
        &key(from),
        chain::test_utils::TEST_CHAIN_ID,
        nonce,
        Amount::from_base_units(1_000),
        kind,
    )
}

#[test]
fn votes_weighted_by_balance_elect_a_new_delegate_at_the_next_round() {
    let (mut chain, engine, producers) = setup();
    let eve = key("eve").address();
    let mut slot = first_slot();
    let skipped = fill(
        &mut chain,
        &engine,
        &producers,
        slot,
        vec![
            tx("eve", 0, TxKind::RegisterDelegate),
            tx(
                "ferdie",
                0,
                TxKind::Vote {
                    delegates: vec![key("heidi").address()],
                },
            ),
        ],
    );
    assert_eq!(skipped.len(), 1, "heidi is not a delegate: {skipped:?}");
    slot += 1;
    let skipped = fill(
        &mut chain,
        &engine,
        &producers,
        slot,
        vec![
            tx("eve", 1, TxKind::RegisterDelegate),
            tx(
                "ferdie",
                0,
                TxKind::Vote {
                    delegates: vec![eve],
                },
            ),
            tx(
                "ferdie",
                1,
                TxKind::Vote {
                    delegates: vec![key("alice").address(), key("bob").address()],
                },
            ),
        ],
    );
    assert_eq!(
        skipped.len(),
        2,
        "registered twice; a third vote over max 2: {skipped:?}"
    );
    let book = engine.book(chain.state()).expect("book");
    assert_eq!(book.votes[&key("ferdie").address()], vec![eve]);
    // Until the round ends eve does not produce; from the next round she does.
    let boundary = (slot / 4 + 1) * 4;
    for s in slot + 1..boundary {
        assert_ne!(owner(&chain, &engine, &producers, s).author(), eve);
        fill(&mut chain, &engine, &producers, s, Vec::new());
    }
    let next_round: Vec<Address> = (boundary..boundary + 4)
        .map(|s| owner(&chain, &engine, &producers, s).author())
        .collect();
    assert!(next_round.contains(&eve), "{next_round:?}");
    // dave, the genesis delegate last in address order among the unvoted, made room.
    let mut genesis: Vec<Address> = NAMES[..4].iter().map(|n| key(n).address()).collect();
    genesis.sort();
    assert!(!next_round.contains(&genesis[3]));
    for s in boundary..boundary + 4 {
        fill(&mut chain, &engine, &producers, s, Vec::new());
    }
    assert_eq!(
        engine.book(chain.state()).expect("book").delegates[&eve].produced,
        1
    );
}

#[test]
fn the_producer_waits_for_its_own_slot() {
    let (chain, engine, producers) = setup();
    let slot = first_slot();
    let head = chain.head();
    for producer in &producers[..4] {
        let turn = producer
            .next_turn(&chain, &head, 0)
            .expect("turn")
            .expect("every genesis delegate has a slot within two rounds");
        let its_slot = turn.timestamp.0 / SLOT;
        assert!(its_slot >= slot);
        assert_eq!(
            owner(&chain, &engine, &producers, its_slot).author(),
            producer.author()
        );
    }
    assert_eq!(
        producers[4].next_turn(&chain, &head, 0).expect("turn"),
        None,
        "eve is not elected"
    );
}

#[test]
fn a_longer_branch_that_forks_below_the_irreversible_block_is_refused() {
    let (mut chain, engine, producers) = setup();
    let (mut rival, _, _) = setup();
    assert_eq!(chain.genesis().hash(), rival.genesis().hash());
    let slot = first_slot();
    for s in slot..slot + 8 {
        fill(&mut chain, &engine, &producers, s, Vec::new());
    }
    let finalized = chain.finalized().expect("finalized").expect("a block");
    assert!(finalized.height >= Height(5), "{finalized:?}");
    // The rival branch forks at genesis, skips the first slots and is two blocks longer.
    let mut branch = Vec::new();
    for s in slot + 8..slot + 18 {
        fill(&mut rival, &engine, &producers, s, Vec::new());
        let hash = rival.head().hash();
        branch.push(rival.block(&hash).expect("read").expect("stored"));
    }
    let head = chain.head().hash();
    let mut refused = None;
    for block in branch {
        match chain.import_block(block) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(BlockError::BelowFinalized { .. })),
        "{refused:?}"
    );
    assert_eq!(chain.head().hash(), head, "the irreversible chain stays");
}

#[test]
fn an_equivocation_is_recorded_once_and_bars_the_producer_from_later_rounds() {
    let (mut chain, engine, producers) = setup();
    let k = 4;
    let slot = first_slot().div_ceil(k) * k + 1; // the second slot of a round
    fill(&mut chain, &engine, &producers, slot - 1, Vec::new());
    let offender = owner(&chain, &engine, &producers, slot);
    let one = produce(&chain, offender, Timestamp(slot * SLOT), Vec::new());
    let two = produce(
        &chain,
        offender,
        Timestamp(slot * SLOT),
        vec![tx("ferdie", 0, TxKind::RegisterDelegate)],
    );
    assert_ne!(one.hash(), two.hash());
    assert!(matches!(
        chain.import_block(one),
        Ok(ImportOutcome::NewHead(_))
    ));
    assert!(matches!(
        chain.import_block(two),
        Ok(ImportOutcome::SideChain(_))
    ));
    assert_eq!(
        engine.evidence().pending().len(),
        1,
        "the second block is evidence"
    );

    // The next producer carries the evidence; the chain records it.
    fill(&mut chain, &engine, &producers, slot + 1, Vec::new());
    let head = chain.head();
    assert!(!head.engine.data.is_empty(), "evidence in the engine data");
    let book = engine.book(chain.state()).expect("book");
    assert_eq!(book.delegates[&offender.author()].equivocations, vec![slot]);
    let again = engine.evidence_data(chain.state()).expect("state");
    assert!(again.is_empty(), "recorded evidence is not offered again");

    // Carrying the same evidence again is refused.
    let next = owner(&chain, &engine, &producers, slot + 2);
    let mut block = build(&chain, next, Timestamp((slot + 2) * SLOT), |_| {});
    block.header.engine.data = head.engine.data.clone();
    let block = seal(next, block);
    assert_eq!(
        dpos_error(chain.import_block(block)),
        DposError::EvidenceAlreadyRecorded {
            offender: offender.author(),
            slot
        }
    );

    // From the next round on, the offender owns no slot.
    for s in slot + 2..slot - 1 + k {
        fill(&mut chain, &engine, &producers, s, Vec::new());
    }
    let next_round: Vec<Address> = (slot - 1 + k..slot - 1 + 2 * k)
        .map(|s| owner(&chain, &engine, &producers, s).author())
        .collect();
    assert!(!next_round.contains(&offender.author()), "{next_round:?}");
    assert_eq!(next_round.iter().collect::<BTreeSet<_>>().len(), 3);
}

/// The owner of each slot for a fixed schedule of three in rounds of four slots: the
/// fourth slot wraps to the first producer (`(s mod K) mod n`).
#[test]
fn slot_owner_table() {
    let [a, b, c] = [Address([1; 20]), Address([2; 20]), Address([3; 20])];
    let schedule = [b, c, a];
    let table = [
        (0, b),
        (1, c),
        (2, a),
        (3, b),
        (4, b),
        (5, c),
        (6, a),
        (7, b),
        (401, c),
    ];
    for (slot, want) in table {
        assert_eq!(
            miner::dpos::slot_owner(&schedule, 4, slot),
            Some(want),
            "slot {slot}"
        );
    }
    assert_eq!(miner::dpos::slot_owner(&[], 4, 0), None);
}

/// EOSIO refuses a block before its slot: under the chain's general 15 s future bound a
/// delegate could sign 3 slots of 5 s early. The slot owner's block for a slot two slots
/// ahead of the clock is refused as in the future, and accepted once the clock reaches
/// its slot (less one second of clock disagreement).
#[test]
fn a_block_before_its_slot_is_refused_and_accepted_once_the_slot_begins() {
    let (mut chain, engine, producers, clock) = setup_at(GENESIS_TIME);
    let slot = first_slot() + 2;
    let producer = owner(&chain, &engine, &producers, slot);
    let mut header = chain.template(producer.author(), Timestamp(slot * SLOT));
    producer
        .prepare(&chain, &chain.head(), &mut header)
        .expect("prepare");
    let built = chain
        .build_block(header, Vec::new(), usize::MAX)
        .expect("builds");
    let block = seal(producer, built.block);
    let start = slot * SLOT;
    let cases = [
        (start - 2 * SLOT, false, "two slots early"),
        (start - 2, false, "2 s early"),
        (start - 1, true, "1 s early: clock disagreement"),
    ];
    for (now, accepted, what) in cases {
        clock.set_millis(now * 1000);
        let outcome = chain.import_block(block.clone());
        if accepted {
            assert!(
                matches!(outcome, Ok(ImportOutcome::NewHead(_))),
                "{what}: {outcome:?}"
            );
        } else {
            assert!(
                matches!(
                    outcome,
                    Err(BlockError::TimestampInFuture { max_drift: 1, .. })
                ),
                "{what}: {outcome:?}"
            );
        }
    }
}
