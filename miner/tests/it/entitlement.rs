//! A block's producer is judged on its parent's state before the block is stored or
//! weighed, for every engine whose blocks are signed: a key outside the authority set, the
//! delegate schedule or the stakers cannot get side branches stored by signing them.

use crate::support::{GENESIS_TIME, engine_chain, produce};
use chain::block::HEADER_VERSION;
use chain::crypto::merkle_root;
use chain::dev::dev_key;
use chain::{
    Amount, Block, BlockError, BlockProducer, Chain, ChainView, Clock, ConsensusEngine,
    EngineError, EngineFields, Hash256, Header, ImportOutcome, ManualClock, SealedHeader,
    SecretKey, Timestamp,
};
use miner::dpos::{DposEngine, DposError, DposParams, DposProducer};
use miner::poa::{DIFF_IN_TURN, PoaEngine, PoaError, PoaParams, PoaProducer};
use miner::pos::{CoinAge, PosEngine, PosError, PosParams, PosProducer, StakeProof};
use miner::pow::CompactTarget;
use miner::seal::sign_header;
use std::sync::Arc;

/// Blocks the outsider signs.
const FORGED: usize = 500;
/// Blocks of the honest chain the outsider forks from.
const HONEST: usize = 6;

fn key(name: &str) -> SecretKey {
    dev_key(name).expect("dev account")
}

/// The timestamp and engine fields of a child of a parent, for its `n`th try on it.
type ChildFields = Box<dyn Fn(&Chain, &SealedHeader, u64) -> (Timestamp, EngineFields)>;

/// One signed engine: alice is its only producer; heidi holds no part in it.
struct Case {
    name: &'static str,
    engine: Arc<dyn ConsensusEngine>,
    producer: Box<dyn BlockProducer>,
    fields: ChildFields,
    /// Whether a refusal is the engine's "not entitled" error for heidi.
    not_entitled: fn(&EngineError) -> bool,
}

fn poa() -> Case {
    let params = PoaParams::devnet(vec![key("alice").address()]);
    let period = params.period;
    let engine = PoaEngine::new(params).expect("valid params");
    Case {
        name: "poa",
        producer: Box::new(PoaProducer::new(key("alice"), engine.clone())),
        engine: Arc::new(engine),
        fields: Box::new(move |_, parent, n| {
            let fields = EngineFields {
                bits: DIFF_IN_TURN,
                ..EngineFields::default()
            };
            (Timestamp(parent.timestamp.0 + period + n), fields)
        }),
        not_entitled: |e| {
            matches!(
                e.downcast_ref::<PoaError>(),
                Some(PoaError::Authority(
                    miner::poa::SnapshotError::UnauthorizedSigner { .. }
                ))
            )
        },
    }
}

fn dpos() -> Case {
    let params = DposParams::devnet(vec![key("alice").address()]);
    let slot = params.slot_secs;
    let engine = DposEngine::new(params).expect("valid params");
    Case {
        name: "dpos",
        producer: Box::new(DposProducer::new(key("alice"), engine.clone())),
        engine: Arc::new(engine),
        fields: Box::new(move |_, parent, n| {
            let next_slot = parent.timestamp.0 / slot + 1 + n;
            (Timestamp(next_slot * slot), EngineFields::default())
        }),
        not_entitled: |e| {
            matches!(
                e.downcast_ref::<DposError>(),
                Some(DposError::WrongProducer { .. })
            )
        },
    }
}

fn pos() -> Case {
    // A target so easy that any coin-day stakes, and ages long enough for 1,000 TOY to
    // hold coin-days: alice stakes whenever her coins are old enough.
    let params = PosParams {
        pos_limit: CompactTarget::from_consensus(0x207f_ffff),
        genesis_bits: CompactTarget::from_consensus(0x207f_ffff),
        stake_max_age: 100_000,
        ..PosParams::devnet()
    };
    let engine = PosEngine::new(params).expect("valid params");
    let bits_engine = engine.clone();
    Case {
        name: "pos",
        producer: Box::new(PosProducer::new(key("alice"), engine.clone())),
        engine: Arc::new(engine),
        fields: Box::new(move |chain, parent, n| {
            // heidi claims alice's stake as her own.
            let proof = StakeProof {
                age: CoinAge::single(
                    Amount::from_toy(1000).expect("fits"),
                    Timestamp(GENESIS_TIME),
                ),
                modifier: Default::default(),
            };
            let fields = EngineFields {
                bits: bits_engine
                    .next_bits(chain, parent)
                    .expect("bits")
                    .to_consensus(),
                data: proof.to_bytes(),
                ..EngineFields::default()
            };
            (Timestamp(parent.timestamp.0 + 1 + n), fields)
        }),
        not_entitled: |e| {
            matches!(
                e.downcast_ref::<PosError>(),
                Some(PosError::StakeTooYoung { .. } | PosError::ZeroWeight { .. })
            )
        },
    }
}

/// A chain of `HONEST` blocks by alice; heidi is funded too (a balance is not a right to
/// sign, except for PoS, where heidi holds nothing).
fn honest_chain(case: &Case) -> (Chain, Arc<ManualClock>) {
    let mut funded = vec![key("alice").address()];
    if case.name != "pos" {
        funded.push(key("heidi").address());
    }
    let (mut chain, clock) = engine_chain(case.engine.clone(), &funded, GENESIS_TIME + 1_000);
    for _ in 0..HONEST {
        let turn = (0..10_000)
            .find_map(|_| {
                let head = chain.head();
                let turn = case
                    .producer
                    .next_turn(&chain, &head, clock.now_millis())
                    .expect("next turn");
                if turn.is_none() {
                    clock.advance_secs(60);
                }
                turn
            })
            .expect("alice gets a turn");
        clock.set_millis(clock.now_millis().max(turn.at_millis));
        let block = produce(&chain, case.producer.as_ref(), turn.timestamp, Vec::new());
        chain.import_block(block).expect("alice's block imports");
    }
    // Far enough ahead that no forged timestamp is in the future.
    clock.advance_secs(24 * 60 * 60);
    (chain, clock)
}

/// An empty block on `parent` signed by `signer`, never executed (zero state root).
fn signed_child(
    case: &Case,
    chain: &Chain,
    parent: &SealedHeader,
    n: u64,
    signer: &SecretKey,
) -> Block {
    let (timestamp, engine) = (case.fields)(chain, parent, n);
    let header = Header {
        version: HEADER_VERSION,
        parent: parent.hash(),
        height: parent.height().next().expect("height fits"),
        timestamp,
        tx_root: merkle_root(&[]),
        state_root: Hash256::ZERO,
        producer: signer.address(),
        engine,
    };
    Block {
        header: sign_header(header, signer),
        txs: Vec::new(),
    }
}

#[test]
fn an_outsiders_500_signed_side_blocks_are_refused_unstored_for_every_signed_engine() {
    for case in [poa(), dpos(), pos()] {
        let (mut chain, _clock) = honest_chain(&case);
        let head = chain.head_id();
        let honest: Vec<SealedHeader> = (0..=HONEST as u64)
            .map(|h| {
                let hash = chain
                    .best_hash_at(chain::Height(h))
                    .expect("read")
                    .expect("honest block");
                chain.header(&hash).expect("read").expect("stored")
            })
            .collect();
        let heidi = key("heidi");
        for i in 0..FORGED {
            // Forks from every honest block in turn, the head included (where a branch of
            // one block would already outweigh the best chain).
            let parent = &honest[i % honest.len()];
            let block = signed_child(&case, &chain, parent, (i / honest.len()) as u64, &heidi);
            let hash = block.hash();
            match chain.import_block(block) {
                Err(BlockError::Engine(e)) => {
                    assert!(
                        matches!(e, EngineError::Rejected { .. }) && e.is_bad_data(),
                        "{}: block {i} refused for the wrong reason: {e}",
                        case.name
                    );
                    assert!((case.not_entitled)(&e), "{}: block {i}: {e}", case.name);
                }
                other => panic!(
                    "{}: block {i} not refused by the engine: {other:?}",
                    case.name
                ),
            }
            assert_eq!(
                chain.meta(&hash).expect("read"),
                None,
                "{}: block {i} was stored",
                case.name
            );
        }
        assert_eq!(chain.head_id(), head, "{}: the head moved", case.name);
    }
}

#[test]
fn an_entitled_producers_side_branch_is_judged_on_its_parents_state_and_stored() {
    // PoA only: with alice its one producer, every DPoS block is irreversible at once (no
    // side branch below the head is allowed), and a PoS side block's stake proof would
    // need a kernel search on the side state, which the producer does only on the head.
    for case in [poa()] {
        let (mut chain, _clock) = honest_chain(&case);
        let head = chain.head_id();
        let fork = chain
            .best_hash_at(chain::Height(3))
            .expect("read")
            .expect("honest block");
        let mut parent = chain.header(&fork).expect("read").expect("stored");
        // Two blocks: the second is judged on the first's state, which is not stored and
        // is replayed from the fork point.
        for n in 0..2 {
            let block = signed_child(&case, &chain, &parent, 7, &key("alice"));
            let outcome = chain.import_block(block.clone());
            assert!(
                matches!(outcome, Ok(ImportOutcome::SideChain(_))),
                "{}: side block {n}: {outcome:?}",
                case.name
            );
            parent = SealedHeader::new(block.header);
        }
        assert_eq!(chain.head_id(), head, "{}", case.name);
    }
}
