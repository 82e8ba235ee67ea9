//! The simulation loop's own tests: small runs of every engine with faults.

use super::*;
use crate::compare::metrics::chain_to;
use config::EngineKind;

fn setup(kind: EngineKind, nodes: usize, loss: f64, secs: u64, tx_rate: f64) -> Setup {
    let authors = super::super::author_keys(nodes);
    let traders = super::super::traders(nodes, true);
    Setup {
        spec: super::super::dev_spec(kind, &authors, &traders, None),
        link: LinkModel {
            latency_ms: 100.0,
            jitter_ms: 20.0,
            bandwidth: 1e6,
            loss,
        },
        peers: super::super::network::DEGREE,
        hash_shares: vec![1.0 / nodes as f64; nodes],
        selfish: None,
        seed: 5,
        tx_rate,
        traders: traders.into_iter().map(|(_, key)| key).collect(),
        duration_ms: secs * 1000,
        faults: Vec::new(),
        dust: None,
        probe: VoteProbe::default(),
        authors,
    }
}

#[test]
fn n6_poa_over_a_lossy_network_catches_up_by_asking_for_missing_parents() {
    // Four in ten gossip messages lost: nodes miss blocks, get their children first,
    // and must fetch the parents from the sender to follow the chain.
    let outcome = simulate(setup(EngineKind::Poa, 6, 0.4, 300, 1.0), &mut |_| {}).expect("runs");
    assert!(outcome.requests > 0, "nothing was ever missing");
    assert!(
        !outcome.problems.contains_key("block refused"),
        "{:?}",
        outcome.problems
    );
    let record = &outcome.record;
    let chain = chain_to(&record.blocks, record.final_head);
    assert!(chain.len() > 50, "{} blocks", chain.len());
    // Every block but the newest few reached every node.
    for block in &chain[..chain.len() - 3] {
        assert!(
            block.seen_by.iter().all(Option::is_some),
            "block {} never reached some node: {:?}",
            block.height,
            block.seen_by
        );
    }
    // Transfers went through despite the loss.
    let confirmed: usize = chain.iter().map(|b| b.txs.len()).sum();
    assert!(
        confirmed * 10 >= record.submitted.len() * 9,
        "{confirmed} of {}",
        record.submitted.len()
    );
}

#[test]
fn every_node_starts_at_genesis_and_records_each_head_it_takes() {
    let outcome = simulate(setup(EngineKind::Dpos, 3, 0.0, 60, 0.0), &mut |_| {}).expect("runs");
    let record = &outcome.record;
    let firsts: Vec<_> = record
        .observations
        .iter()
        .take(3)
        .map(|o| (o.node, o.at))
        .collect();
    assert_eq!(firsts, [(0, 0.0), (1, 0.0), (2, 0.0)]);
    for node in 0..3 {
        let heads: Vec<_> = record
            .observations
            .iter()
            .filter(|o| o.node == node)
            .collect();
        // Twelve 5 s slots in a minute, each a new head.
        assert!(
            (11..=13).contains(&(heads.len() - 1)),
            "node {node}: {}",
            heads.len()
        );
        assert!(
            heads
                .windows(2)
                .all(|w| w[0].at <= w[1].at && w[0].head != w[1].head)
        );
    }
    // Every block made is recorded (node 0 may not have the newest yet).
    assert_eq!(
        record.counters.blocks_produced,
        Some(record.blocks.len() as u64 - 1)
    );
}

fn faulty(kind: EngineKind, nodes: usize, secs: u64, faults: Vec<Fault>) -> Outcome {
    let mut setup = setup(kind, nodes, 0.0, secs, 0.5);
    setup.faults = faults;
    simulate(setup, &mut |_| {}).expect("runs")
}

/// Each node's last head.
fn last_heads(record: &RunRecord) -> Vec<BlockHash> {
    let mut heads = vec![record.final_head; record.authors.len()];
    for o in &record.observations {
        heads[o.node] = o.head;
    }
    heads
}

#[test]
fn a_partition_forks_proof_of_work_and_the_heal_joins_the_halves() {
    let outcome = faulty(
        EngineKind::Pow,
        4,
        600,
        vec![Fault::Partition {
            at_s: 120,
            duration_s: 180,
        }],
    );
    let record = &outcome.record;
    // Both halves mined during the cut: blocks of each half that the other never had
    // on its best chain at the time.
    let during = |half: bool| {
        record
            .blocks
            .values()
            .filter(|b| (125.0..300.0).contains(&b.first_seen))
            .filter(|b| {
                b.seen_by
                    .iter()
                    .enumerate()
                    .any(|(n, s)| second_half(n, 4) == half && s.is_some())
            })
            .count()
    };
    assert!(
        during(false) > 3 && during(true) > 3,
        "{} / {}",
        during(false),
        during(true)
    );
    // After the heal one half reorganised onto the other's chain, and by the end all
    // four nodes agree (the newest block aside).
    let deepest = outcome.record.counters.reorg_depth_max.unwrap_or(0);
    assert!(deepest >= 3, "deepest reorg {deepest}");
    let chain = chain_to(&record.blocks, record.final_head);
    let settled = &chain[chain.len() - 3];
    assert!(settled.seen_by.iter().all(Option::is_some), "{settled:?}");
    let metrics = crate::compare::metrics::compute(record, 0.5);
    assert_eq!(metrics.metrics.faults.len(), 1);
    assert!(
        metrics.metrics.faults[0]
            .blocks_per_min_after
            .is_some_and(|r| r > 6.0)
    );
}

#[test]
fn dpos_and_poa_stay_safe_through_a_partition_and_finish_on_one_head() {
    for kind in [EngineKind::Dpos, EngineKind::Poa] {
        let outcome = faulty(
            kind,
            4,
            600,
            vec![Fault::Partition {
                at_s: 60,
                duration_s: 120,
            }],
        );
        let record = &outcome.record;
        let result = crate::compare::metrics::compute(record, 0.5);
        assert_eq!(result.metrics.finalized_conflicts, 0, "{kind}");
        let figures = &result.metrics.faults[0];
        // Finality needs more than half of the producers: it stalls while cut in two,
        // and moves on after the heal.
        let start = figures.finalized_at_start.unwrap_or(0);
        let end = figures.finalized_at_end.unwrap_or(0);
        let finish = figures.finalized_at_finish.unwrap_or(0);
        assert!(
            end <= start + 4,
            "{kind}: finality ran on during the cut: {figures:?}"
        );
        assert!(
            finish > end + 20,
            "{kind}: finality did not resume: {figures:?}"
        );
        let heads = last_heads(record);
        let newest = chain_to(&record.blocks, record.final_head);
        // Every node's head is on the final chain or one block past it.
        for head in heads {
            let at = record.blocks[&head].height.0;
            assert!(
                newest.iter().any(|b| b.hash == head) || at > newest.len() as u64 - 3,
                "{kind}: a node ended on a side branch"
            );
        }
    }
}

#[test]
fn poa_halves_with_equal_branches_do_not_deadlock_after_the_heal() {
    // Two signers a side run out of turns after two blocks each (Clique lets a signer
    // sign once per three blocks of four signers). Split at 55, 62 or 72 s, the branches
    // weigh the same and each side's signers may only extend the other's; keeping the
    // first-seen branch stalled all four for good, the lower tip hash does not.
    for at_s in [55, 62, 72] {
        let mut setup = setup(EngineKind::Poa, 4, 0.0, 600, 0.0);
        setup.faults = vec![Fault::Partition {
            at_s,
            duration_s: 60,
        }];
        let outcome = simulate(setup, &mut |_| {}).expect("runs");
        let result = crate::compare::metrics::compute(&outcome.record, 0.0);
        let figures = &result.metrics.faults[0];
        assert!(
            figures.blocks_per_min_after.is_some_and(|r| r > 11.0),
            "split at {at_s}: {figures:?}"
        );
        assert_eq!(result.metrics.finalized_conflicts, 0);
    }
}

#[test]
fn a_killed_dpos_producer_costs_its_slots_only() {
    let outcome = faulty(
        EngineKind::Dpos,
        4,
        600,
        vec![Fault::KillProducer { at_s: 300 }],
    );
    let victim = outcome.killed.expect("someone was killed");
    let record = &outcome.record;
    let victim_address = record.authors[victim].1;
    let chain = chain_to(&record.blocks, record.final_head);
    let after: Vec<_> = chain.iter().filter(|b| b.first_seen > 301.0).collect();
    assert!(after.iter().all(|b| b.producer != victim_address));
    // Three of four slots are still filled: about 45 of the 60 slots in 300 s.
    assert!(
        (40..=47).contains(&after.len()),
        "{} blocks after the kill",
        after.len()
    );
}

#[test]
fn a_clock_far_ahead_gets_its_blocks_turned_away_and_a_small_skew_does_not() {
    // PoA with 5 s periods; the chain accepts timestamps up to 15 s ahead of its clock.
    let run = |secs| {
        let outcome = faulty(
            EngineKind::Poa,
            3,
            300,
            vec![Fault::ClockSkew { node: 2, secs }],
        );
        let record = &outcome.record;
        let skewed = record.authors[2].1;
        let chain = chain_to(&record.blocks, record.final_head);
        let made = chain.iter().filter(|b| b.producer == skewed).count();
        // A block from the future is not bad data (it may just be early), so it counts
        // as not imported rather than refused.
        let turned_away = ["block refused", "block not imported"]
            .iter()
            .filter_map(|p| outcome.problems.get(p))
            .sum::<u64>();
        (made, turned_away, chain.len())
    };
    let (made, turned_away, length) = run(3);
    assert!(
        made > 10 && turned_away == 0,
        "3 s ahead: {made} blocks, {turned_away} turned away"
    );
    assert!(length > 50);
    let (made, turned_away, length) = run(120);
    assert_eq!(made, 0, "a node 2 min ahead made final-chain blocks");
    assert!(turned_away > 0);
    assert!(length > 40, "the two good signers carry on: {length}");
}

#[test]
fn an_added_delay_slows_every_message() {
    let propagation = |faults| {
        let outcome = faulty(EngineKind::Poa, 4, 300, faults);
        let result = crate::compare::metrics::compute(&outcome.record, 0.5);
        result.metrics.propagation_s.expect("blocks propagated").p50
    };
    let plain = propagation(Vec::new());
    let slowed = propagation(vec![Fault::Delay { ms: 700 }]);
    assert!(slowed >= plain + 0.6, "{plain} s → {slowed} s");
}

/// A proof-of-stake run of `days` virtual days on `nodes` stakers holding 1, 2, 3, 4, 1, 2,
/// … million TOY, with `params`, while an attacker (funded with 1,000 TOY) sends 1 base
/// unit to every staker at every new head, paying the dev spec's minimum relay fee.
fn dusted_pos(params: miner::pos::PosParams, nodes: usize, days: u64) -> Outcome {
    let mut setup = setup(EngineKind::Pos, nodes, 0.0, days * 86_400, 0.0);
    setup.spec.engine = config::EngineSpec::Pos(params);
    let million = |units: u64| chain::Amount::from_toy(units * 1_000_000).expect("fits");
    for (i, (_, key)) in setup.authors.iter().enumerate() {
        let address = key.address();
        if let Some(alloc) = setup
            .spec
            .genesis
            .alloc
            .iter_mut()
            .find(|a| a.address == address)
        {
            alloc.balance = million(stake_units(i));
        }
    }
    let attacker = SecretKey::from_seed("toychain/sim/dust");
    setup.spec.genesis.alloc.push(config::Alloc {
        address: attacker.address(),
        balance: chain::Amount::from_toy(1_000).expect("fits"),
    });
    setup.dust = Some(attacker);
    setup.spec.validate().expect("a valid spec");
    simulate(setup, &mut |_| {}).expect("runs")
}

/// Staker i's stake in millions of TOY: 1, 2, 3, 4, 1, 2, …
fn stake_units(i: usize) -> u64 {
    i as u64 % 4 + 1
}

/// The final chain's blocks (genesis aside) and how many each author made.
fn blocks_by_author(outcome: &Outcome) -> (Vec<&crate::compare::record::SeenBlock>, Vec<u64>) {
    let record = &outcome.record;
    let chain: Vec<_> = chain_to(&record.blocks, record.final_head)
        .into_iter()
        .filter(|b| !b.preexisting)
        .collect();
    let counts = record
        .authors
        .iter()
        .map(|(_, address)| chain.iter().filter(|b| b.producer == *address).count() as u64)
        .collect();
    (chain, counts)
}

#[test]
fn n8_peercoin_stakers_dusted_in_every_block_for_40_days_all_stake_after_day_30() {
    // Peercoin's parameters as they are: no coin stakes before 30 days, and a stake
    // consumes the staker's whole age, so each account can make at most one block per 30
    // days and 40 days from genesis allow exactly one block per staker, all after day 30.
    // The attacker's dust waits in the mempool from genesis, so it is in block 1 and in
    // every block after. Where received coins restarted an account's age, block 1 at day
    // 30 made every other staker young again and the next block could come only at day 60:
    // one block in 40 days, by one staker.
    const NODES: usize = 8;
    let outcome = dusted_pos(miner::pos::PosParams::peercoin_like(), NODES, 40);
    let (chain, counts) = blocks_by_author(&outcome);
    assert_eq!(counts, vec![1; NODES], "one block per staker: {counts:?}");
    for block in &chain {
        assert!(
            block.first_seen >= 30.0 * 86_400.0,
            "block {} at {} s, before any coin is 30 days old",
            block.height,
            block.first_seen
        );
        assert!(
            block.txs.len() >= NODES,
            "block {} carries {} transactions, not the dust to every staker",
            block.height,
            block.txs.len()
        );
    }
    assert!(
        !outcome.problems.keys().any(|p| p.starts_with("dust")),
        "{:?}",
        outcome.problems
    );
}

#[test]
fn n4_stakers_dusted_in_every_block_for_40_days_keep_block_shares_on_their_stake() {
    // Peercoin's 16 s granularity, 6-hour modifier from blocks 8.8 days old and weekly
    // retarget, with two changes so that a debug build runs 40 days in seconds and the
    // shares can be measured: a 2,400 s spacing (1,440 blocks in 40 days, not 5,760), and
    // ages short against it (16 s minimum, 16 s more counted), so a staker is back at
    // full weight long before its next block and the block shares should follow the
    // stakes, 1:2:3:4. Peercoin's own 30-day minimum age cannot give shares here, since an
    // account stakes at most once per minimum age (the test above).
    // 10,000,000 TOY × 16 s ≈ 1,852 coin-days at full weight; a hit every 2,400 s (150
    // tries of 16 s) wants a target of 2^256 / (150 × 1,852) ≈ 2^238, 0x1e3fffff.
    let bits = miner::pow::CompactTarget::from_consensus(0x1e3f_ffff);
    let params = miner::pos::PosParams {
        target_spacing: 2_400,
        stake_min_age: 16,
        stake_max_age: 16,
        pos_limit: bits,
        genesis_bits: bits,
        ..miner::pos::PosParams::peercoin_like()
    };
    let outcome = dusted_pos(params, 4, 40);
    let (chain, counts) = blocks_by_author(&outcome);
    let blocks = chain.len() as f64;
    // The chain keeps producing: 40 days of 2,400 s are 1,440 blocks, and the retarget
    // holds the mean spacing there. The count's own noise is about √1,440 ≈ 38 blocks
    // (2.6 %); ±10 % leaves room for a first week on a guessed genesis target.
    assert!(
        (1_296.0..=1_584.0).contains(&blocks),
        "{blocks} blocks in 40 days, not about 1,440"
    );
    // No stall: with exponential gaps of mean 2,400 s the longest of 1,440 is about
    // 2,400 × ln 1,440 ≈ 4.8 h; 12 h has odds of about 1,440 × e^-18 ≈ 2·10^-5.
    let longest = chain
        .windows(2)
        .map(|w| w[1].first_seen - w[0].first_seen)
        .fold(chain.first().map_or(f64::MAX, |b| b.first_seen), f64::max);
    assert!(longest < 12.0 * 3_600.0, "a gap of {longest} s");
    // The attack ran: the dust to all four stakers is in the blocks.
    let dust_confirmed: usize = chain.iter().map(|b| b.txs.len()).sum();
    let thinnest = chain.iter().map(|b| b.txs.len()).min().unwrap_or(0);
    println!(
        "{blocks} blocks, by staker {counts:?}, {dust_confirmed} dust transfers confirmed, \
         thinnest block {thinnest}, longest gap {longest} s"
    );
    assert!(
        thinnest >= 4,
        "a block without the dust to every staker ({thinnest} transactions)"
    );
    assert!(
        !outcome.problems.keys().any(|p| p.starts_with("dust")),
        "{:?}",
        outcome.problems
    );
    // The shares follow the stakes: Pearson's chi-square at the 1 % level (3 degrees of
    // freedom), and each staker within 3.3 standard deviations of its binomial count
    // (a 0.1 % band each).
    let shares = [0.1, 0.2, 0.3, 0.4];
    let chi2 = super::super::theory::chi_square(&counts, &shares);
    let critical = super::super::theory::chi2_critical_1pct(3).expect("3 degrees of freedom");
    assert!(
        chi2 < critical,
        "{counts:?}: chi-square {chi2:.2} ≥ {critical:.2}"
    );
    println!("chi2 {chi2:.2} critical {critical:.2}");
    for (count, share) in counts.iter().zip(shares) {
        let mean = blocks * share;
        let band = 3.3 * (blocks * share * (1.0 - share)).sqrt();
        assert!(
            (*count as f64 - mean).abs() < band,
            "{counts:?}: {count} blocks for a {share} share, outside {mean:.0} ± {band:.0}"
        );
    }
}
