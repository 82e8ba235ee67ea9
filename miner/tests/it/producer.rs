//! The producer: its turn, the fields it prepares, and a seal that stops when cancelled.

use crate::support::{GENESIS_TIME, asert, build, easy_params, mine_on_head, pow_chain, producer};
use chain::{BlockProducer, CancelFlag, ChainView, Timestamp};
use miner::pow::{EXTRA_NONCE_BYTES, PowEngine, PowProducer};
use std::time::{Duration, Instant};

#[test]
fn next_turn_is_now_with_a_timestamp_after_the_median_time_past() {
    let params = easy_params(asert(), 0x207f_ffff);
    let mut chain = pow_chain(&params);
    let miner = producer(&params, 1);
    for t in [10, 20, 30] {
        mine_on_head(&mut chain, &miner, Timestamp(GENESIS_TIME + t));
    }
    let head = chain.head();
    let now_millis = (GENESIS_TIME + 100) * 1000 + 250;
    let turn = miner
        .next_turn(&chain, &head, now_millis)
        .expect("reads chain")
        .expect("pow may always try");
    assert_eq!(turn.at_millis, now_millis);
    assert_eq!(turn.timestamp, Timestamp(GENESIS_TIME + 100));
    // A clock behind the chain still yields a timestamp past the median (10 and 20 → 20).
    let early = miner
        .next_turn(&chain, &head, GENESIS_TIME * 1000)
        .expect("reads chain")
        .expect("pow may always try");
    assert_eq!(early.timestamp, Timestamp(GENESIS_TIME + 21));
}

#[test]
fn prepare_sets_the_expected_bits_and_a_zero_extra_nonce() {
    let params = easy_params(asert(), 0x1f7f_ffff);
    let chain = pow_chain(&params);
    let miner = producer(&params, 1);
    let block = build(&chain, &miner, Timestamp(GENESIS_TIME + 5), |_| {});
    let expected = miner
        .engine()
        .next_bits(&chain, &chain.head())
        .expect("reads chain");
    assert_eq!(block.header.engine.bits, expected.to_consensus());
    assert_eq!(block.header.engine.data, vec![0u8; EXTRA_NONCE_BYTES]);
}

#[test]
fn seal_returns_none_when_cancelled_mid_search() {
    // The hardest target: no nonce will be found, the search runs until cancelled.
    let params = easy_params(asert(), 0x0101_0000);
    let chain = pow_chain(&params);
    let miner = producer(&params, 2);
    let block = build(&chain, &miner, Timestamp(GENESIS_TIME + 5), |_| {});
    let cancel = CancelFlag::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let at = Instant::now();
            cancel.cancel();
            at
        })
    };
    let sealed = miner.seal(block.header, &cancel).expect("seal runs");
    let returned = Instant::now();
    assert!(sealed.is_none(), "a cancelled search yields no block");
    let cancelled_at = canceller.join().expect("canceller thread");
    // Informational only: tests never assert on wall-clock speed.
    println!(
        "seal returned {:?} after the cancel",
        returned.saturating_duration_since(cancelled_at)
    );
}

#[test]
fn seal_refuses_bits_the_engine_would_refuse() {
    let params = easy_params(asert(), 0x207f_ffff);
    let chain = pow_chain(&params);
    let miner = producer(&params, 1);
    let block = build(&chain, &miner, Timestamp(GENESIS_TIME + 5), |h| {
        h.engine.bits = 0x2100_ffff;
    });
    let err = miner
        .seal(block.header, &CancelFlag::new())
        .expect_err("bits above the limit");
    assert!(
        err.to_string()
            .contains("easier than the proof-of-work limit"),
        "{err}"
    );
}

#[test]
fn thread_count_is_configurable_and_defaults_to_every_core() {
    let params = easy_params(asert(), 0x207f_ffff);
    let author = chain::dev::dev_address("bob").expect("dev account");
    let engine = PowEngine::new(params).expect("valid");
    let two = PowProducer::with_threads(author, engine.clone(), 2).expect("pool");
    assert_eq!(two.threads(), 2);
    assert_eq!(two.author(), author);
    let all = PowProducer::new(author, engine).expect("pool");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // rayon honours RAYON_NUM_THREADS over the core count when it is set.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        assert_eq!(all.threads(), cores);
    }
    assert_eq!(all.with_lanes(3).lanes(), miner::pow::DEFAULT_LANES);
}
