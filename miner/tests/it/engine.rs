//! The PoW engine inside a real chain: mined blocks import, and each broken rule is
//! refused with its typed reason.

use crate::support::{
    GENESIS_TIME, asert, bitcoin_every_4, build, easy_params, mine_on_head, pow_chain,
    pow_chain_with_genesis_bits, producer, seal,
};
use chain::{
    Amount, Block, BlockError, BlockProducer, ChainView, ConsensusEngine, ImportOutcome,
    SealedHeader, Timestamp, U256, Weight,
};
use miner::pow::{AsertParams, CompactTarget, PowEngine, PowError, PowParams, asert_next_bits};

/// The engine's typed reason behind a refused import.
fn pow_error(result: Result<ImportOutcome, BlockError>) -> PowError {
    match result {
        Err(BlockError::Engine(e)) => e
            .downcast_ref::<PowError>()
            .cloned()
            .unwrap_or_else(|| panic!("engine error is not a PowError: {e}")),
        other => panic!("expected a pow refusal, got {other:?}"),
    }
}

fn at(secs: u64) -> Timestamp {
    Timestamp(GENESIS_TIME + secs)
}

#[test]
fn mined_block_imports_weighs_its_work_and_pays_the_reward() {
    let params = easy_params(asert(), 0x207f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 2);
    let block = mine_on_head(&mut chain, &miner, at(5));
    assert_eq!(chain.head_id().hash, block.hash());
    let work = CompactTarget::from_consensus(0x207f_ffff)
        .to_target()
        .expect("valid")
        .to_work();
    assert_eq!(chain.total_weight(), work.to_weight());
    assert_eq!(
        chain.account(&miner.author()).expect("state").balance,
        Amount::from_toy(50).expect("fits")
    );
    // The engine's seal check agrees with the chain's header hash.
    assert!(
        CompactTarget::from_consensus(block.header.engine.bits)
            .to_target()
            .expect("valid")
            .is_met_by(&block.hash())
    );
}

#[test]
fn a_hash_above_the_target_is_refused_with_both_values() {
    let params = easy_params(asert(), 0x207f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 1);
    let mut block = build(&chain, &miner, at(5), |_| {});
    let target = CompactTarget::from_consensus(0x207f_ffff)
        .to_target()
        .expect("valid");
    // About every other nonce misses this easy target; take the first that does.
    block.header.engine.nonce = (0..)
        .find(|&n| {
            let mut h = block.header.clone();
            h.engine.nonce = n;
            !target.is_met_by(&h.hash())
        })
        .expect("some nonce misses");
    let hash = block.hash();
    assert_eq!(
        pow_error(chain.import_block(block)),
        PowError::HashAboveTarget { hash, target }
    );
}

#[test]
fn wrong_bits_are_refused_even_with_a_valid_seal() {
    let params = easy_params(asert(), 0x207f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 2);
    // Harder than required and properly mined: still not the bits the rule demands.
    let block = seal(
        &miner,
        build(&chain, &miner, at(5), |h| h.engine.bits = 0x1f7f_ffff),
    );
    assert_eq!(
        pow_error(chain.import_block(block)),
        PowError::WrongBits {
            expected: CompactTarget::from_consensus(0x207f_ffff),
            got: CompactTarget::from_consensus(0x1f7f_ffff),
        }
    );
    // Bits that encode no target, or one easier than the limit, are refused before hashing.
    let negative = build(&chain, &miner, at(5), |h| h.engine.bits = 0x0492_3456);
    assert_eq!(
        pow_error(chain.import_block(negative)),
        PowError::InvalidBits {
            bits: CompactTarget::from_consensus(0x0492_3456)
        }
    );
    let too_easy = build(&chain, &miner, at(5), |h| h.engine.bits = 0x2100_ffff);
    assert!(matches!(
        pow_error(chain.import_block(too_easy)),
        PowError::TargetAboveLimit { .. }
    ));
}

#[test]
fn asert_bits_follow_the_schedule_and_the_chain_agrees() {
    // Genesis below the limit so the target can move both ways.
    let params = easy_params(asert(), 0x1f7f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 2);
    let asert_params = AsertParams {
        target_block_time: 5,
        half_life: 100,
        pow_limit: params.pow_limit.to_target().expect("valid"),
    };
    // Fast blocks (1 s apart) make it harder, then a long gap makes it easier.
    let mut times: Vec<u64> = (1..=30).collect();
    times.push(400);
    times.push(401);
    let mut previous = params.genesis_bits;
    for (i, &t) in times.iter().enumerate() {
        let parent = chain.head();
        let block = mine_on_head(&mut chain, &miner, at(t));
        let bits = CompactTarget::from_consensus(block.header.engine.bits);
        // The anchor is block 1 (its parent time taken as one interval before it); block 1
        // itself keeps the genesis bits.
        let expected = if parent.height().0 == 0 {
            params.genesis_bits.to_consensus()
        } else {
            asert_next_bits(
                1,
                (GENESIS_TIME + times[0] - 5) as i64,
                params.genesis_bits.to_consensus(),
                parent.height().0,
                parent.timestamp.0 as i64,
                &asert_params,
            )
        };
        assert_eq!(bits.to_consensus(), expected, "block {}", i + 1);
        if i == 0 {
            assert_eq!(
                bits, params.genesis_bits,
                "the first block keeps the anchor bits"
            );
        }
        previous = bits;
    }
    let target = |bits: CompactTarget| bits.to_target().expect("valid").to_u256();
    // 30 blocks at 1 s instead of 5 s: 120 s ahead of schedule, more than a half-life.
    let fast = chain
        .block_at(chain::Height(30))
        .expect("store")
        .expect("block 30");
    assert!(
        target(CompactTarget::from_consensus(fast.header.engine.bits))
            < target(params.genesis_bits) / U256::from(2u8)
    );
    // After a 370 s gap the chain is behind schedule: easier than genesis.
    assert!(target(previous) > target(params.genesis_bits));
}

#[test]
fn timewarp_at_a_period_start_is_refused_in_bitcoin_mode() {
    let params = easy_params(bitcoin_every_4(), 0x207f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 2);
    mine_on_head(&mut chain, &miner, at(1));
    mine_on_head(&mut chain, &miner, at(2));
    // The last block of the period is far ahead of the median time past.
    let parent = mine_on_head(&mut chain, &miner, at(2000));
    // Block 4 opens a period: after the median (at(2)) but more than 600 s before its parent.
    let warped = seal(
        &miner,
        build(&chain, &miner, at(5), |h| h.timestamp = at(100)),
    );
    assert_eq!(
        pow_error(chain.import_block(warped)),
        PowError::TimewarpViolation {
            height: chain::Height(4),
            timestamp: at(100),
            parent_timestamp: parent.header.timestamp,
            max_timewarp: 600,
        }
    );
    // Exactly 600 s before the parent is allowed.
    let edge = seal(
        &miner,
        build(&chain, &miner, at(5), |h| h.timestamp = at(1400)),
    );
    assert!(matches!(
        chain.import_block(edge),
        Ok(ImportOutcome::NewHead(_))
    ));
    // Inside a period, going back in time is only limited by the median time past.
    let inside = seal(
        &miner,
        build(&chain, &miner, at(5), |h| h.timestamp = at(3)),
    );
    assert!(matches!(
        chain.import_block(inside),
        Ok(ImportOutcome::NewHead(_))
    ));
}

#[test]
fn the_producer_never_builds_a_timewarp_block() {
    let params = easy_params(bitcoin_every_4(), 0x207f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 1);
    mine_on_head(&mut chain, &miner, at(1));
    mine_on_head(&mut chain, &miner, at(2));
    mine_on_head(&mut chain, &miner, at(2000));
    // Asked for at(100), prepare raises the timestamp to the earliest the rule allows.
    let block = mine_on_head(&mut chain, &miner, at(100));
    assert_eq!(block.header.timestamp, at(1400));
}

/// Replays `path` on a fresh chain with the same genesis and mines one block on it at
/// `timestamp`: a block on a branch the main chain may not follow.
fn mine_on_path(params: &PowParams, path: &[Block], timestamp: Timestamp) -> Block {
    let mut scratch = pow_chain(params);
    for block in path {
        scratch.import_block(block.clone()).expect("path replays");
    }
    mine_on_head(&mut scratch, &producer(params, 1), timestamp)
}

#[test]
fn a_side_branch_retargets_from_its_own_ancestors() {
    // Genesis below the limit so the retarget can go both ways.
    let params = easy_params(bitcoin_every_4(), 0x1f7f_ffff);
    let mut chain = pow_chain(&params);
    // Main branch: a fast period (timespan 20 s expected, 2 s taken) gets harder.
    let mut main = Vec::new();
    for t in [1, 2, 3] {
        main.push(mine_on_path(&params, &main, at(t)));
    }
    // Side branch: a slow period gets easier.
    let mut side = Vec::new();
    for t in [10, 40, 70] {
        side.push(mine_on_path(&params, &side, at(t)));
    }
    for block in main.iter().chain(&side) {
        chain.import_block(block.clone()).expect("imports");
    }
    assert_eq!(
        chain.head_id().hash,
        main[2].hash(),
        "first seen wins the tie"
    );
    let main_4 = mine_on_path(&params, &main, at(4));
    let side_4 = mine_on_path(&params, &side, at(80));
    let (main_bits, side_bits) = (main_4.header.engine.bits, side_4.header.engine.bits);
    assert_ne!(main_bits, side_bits);
    let target = |bits: u32| {
        CompactTarget::from_consensus(bits)
            .to_target()
            .expect("valid")
    };
    assert!(target(main_bits) < target(0x1f7f_ffff) && target(side_bits) > target(0x1f7f_ffff));
    // The side branch's retarget is checked against the side branch, not the best chain.
    chain
        .import_block(main_4.clone())
        .expect("main block 4 imports");
    assert!(matches!(
        chain.import_block(side_4),
        Ok(ImportOutcome::SideChain(_))
    ));
    assert_eq!(chain.head_id().hash, main_4.hash());
}

#[test]
fn block_weight_is_two_to_the_256_over_target_plus_one() {
    let engine = PowEngine::new(easy_params(asert(), 0x207f_ffff)).expect("valid");
    let mut header = chain::Header {
        version: chain::block::HEADER_VERSION,
        parent: chain::BlockHash::ZERO,
        height: chain::Height(1),
        timestamp: at(1),
        tx_root: chain::Hash256::ZERO,
        state_root: chain::Hash256::ZERO,
        producer: chain::Address::default(),
        engine: chain::EngineFields::default(),
    };
    // Bitcoin's genesis bits weigh 0x100010001 (its chainwork).
    header.engine.bits = 0x1d00_ffff;
    assert_eq!(
        engine.block_weight(&SealedHeader::new(header.clone())),
        Weight(U256::from(0x1_0001_0001u64))
    );
    header.engine.bits = 0x0492_3456;
    assert_eq!(
        engine.block_weight(&SealedHeader::new(header)),
        Weight::ZERO
    );
}

#[test]
fn pow_error_says_what_happened_with_the_values() {
    let err = PowError::WrongBits {
        expected: CompactTarget::from_consensus(0x207f_ffff),
        got: CompactTarget::from_consensus(0x1f7f_ffff),
    };
    assert_eq!(
        err.to_string(),
        "wrong difficulty bits: expected 0x207fffff, got 0x1f7fffff"
    );
    assert!(err.is_bad_data());
    let wrapped = chain::EngineError::rejected("pow", err.clone());
    assert!(
        wrapped
            .to_string()
            .starts_with("pow rule broken: wrong difficulty bits")
    );
    assert_eq!(wrapped.downcast_ref::<PowError>(), Some(&err));
}

#[test]
fn a_genesis_built_with_other_bits_than_the_params_is_named() {
    let params = easy_params(asert(), 0x207f_ffff);
    let chain = pow_chain_with_genesis_bits(&params, 0);
    let miner = producer(&params, 1);
    let mut header = chain.template(miner.author(), at(5));
    let err = miner
        .prepare(&chain, &chain.head(), &mut header)
        .expect_err("genesis bits differ");
    assert_eq!(
        err.downcast_ref::<PowError>(),
        Some(&PowError::GenesisBitsMismatch {
            genesis: CompactTarget::from_consensus(0),
            params: CompactTarget::from_consensus(0x207f_ffff),
        })
    );
}

#[test]
fn explain_names_the_hash_the_target_and_the_expected_bits() {
    let params = easy_params(asert(), 0x207f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 1);
    let block = mine_on_head(&mut chain, &miner, at(5));
    let engine = PowEngine::new(params).expect("valid");
    let sealed = SealedHeader::new(block.header.clone());
    let explained = engine.explain(&chain, &sealed).expect("explains");
    let get = |key: &str| {
        explained
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {explained:?}"))
    };
    assert_eq!(get("engine"), "pow");
    assert_eq!(get("hash"), block.hash().to_string());
    assert_eq!(get("bits"), "0x207fffff");
    assert_eq!(get("expected_bits"), "0x207fffff");
    assert_eq!(get("hash_meets_target"), "true");
    assert!(get("retarget").starts_with("asert"));
    let fields = engine.header_fields(&block.header);
    assert!(
        fields.contains(&("extra_nonce", "0".to_owned())),
        "{fields:?}"
    );
}

#[test]
fn each_branch_is_scheduled_from_its_own_block_1() {
    let params = easy_params(asert(), 0x1f7f_ffff);
    let mut chain = pow_chain(&params);
    // Two competing first blocks, 60 s apart, each followed by a block 5 s later: on its
    // own branch each is on schedule, so both keep the genesis bits.
    let early = mine_on_path(&params, &[], at(1));
    let late = mine_on_path(&params, &[], at(61));
    let early_2 = mine_on_path(&params, std::slice::from_ref(&early), at(6));
    let late_2 = mine_on_path(&params, std::slice::from_ref(&late), at(66));
    assert_eq!(late_2.header.engine.bits, 0x1f7f_ffff);
    for block in [&early, &early_2, &late] {
        chain.import_block(block.clone()).expect("imports");
    }
    // Measured from the early block 1, `late`'s child would be 55 s behind schedule; it
    // is valid because its own branch's block 1 is the anchor.
    assert!(matches!(
        chain.import_block(late_2.clone()),
        Ok(ImportOutcome::SideChain(_))
    ));
    let late_3 = mine_on_path(&params, &[late, late_2], at(71));
    assert_eq!(late_3.header.engine.bits, 0x1f7f_ffff);
    // Now the late branch is heavier and becomes the best chain.
    assert!(matches!(
        chain.import_block(late_3.clone()),
        Ok(ImportOutcome::NewHead(_))
    ));
    assert_eq!(chain.head_id().hash, late_3.hash());
}

/// The simulation engine trusts the simulator for the hash but checks everything else: an
/// unmined block at a hard target imports (the real engine refuses it), wrong bits do not.
#[test]
fn the_simulation_engine_skips_only_the_hash_check() {
    let params = easy_params(asert(), 0x1d00_ffff);
    let real = PowEngine::new(params.clone()).expect("valid");
    let sim = PowEngine::for_simulation(params.clone()).expect("valid");
    let chain = pow_chain(&params);
    let miner = producer(&params, 1);
    // Not sealed: at Bitcoin's genesis difficulty the nonce 0 meets the target with
    // probability 2^-32.
    let unmined = build(&chain, &miner, at(5), |_| {});
    let sealed = unmined.header.clone().seal();
    let genesis = chain.genesis().clone();
    assert!(matches!(
        real.verify_header(&chain, &sealed, &genesis)
            .expect_err("the real engine checks the hash")
            .downcast_ref::<PowError>(),
        Some(PowError::HashAboveTarget { .. })
    ));
    sim.verify_header(&chain, &sealed, &genesis)
        .expect("the simulation engine trusts the oracle");
    let mut wrong = unmined.header.clone();
    wrong.engine.bits = 0x1c00_ffff;
    assert!(matches!(
        sim.verify_header(&chain, &wrong.seal(), &genesis)
            .expect_err("bits are still checked")
            .downcast_ref::<PowError>(),
        Some(PowError::WrongBits { .. })
    ));
}
