//! Multi-node tests on the in-process test network (`node::testnet`): the nodes are real
//! (store, network on 127.0.0.1, RPC, producer), only not separate processes.

use node::testnet::TestBuilder;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);
/// How long a halted PBFT network is watched for a commit it must not make: longer than the
/// dev spec's 4 s view timeout, so a view change is tried within it (and needs a quorum too).
const HALT_WINDOW: Duration = Duration::from_secs(6);

/// Three PoA signers: one crashes and the two others keep signing (Clique lets a signer
/// sign again after ⌊3/2⌋ + 1 = 2 blocks, so two alternate); restarted, it catches up on
/// its stored chain; cut off alone, it cannot outweigh the two, and after the heal all
/// three agree on one chain.
#[test]
fn n3_poa_crash_restart_partition_and_heal_end_on_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Poa)
        .add_node()
        .add_node()
        .add_node()
        .block_time(1)
        .start()
        .expect("three nodes start");
    net.wait_until(3, DEADLINE).expect("all three produce");

    net.crash(2).expect("node 2 crashes");
    let before = net.heights()[0].expect("node 0 runs");
    net.wait_until(before + 3, DEADLINE)
        .expect("two of three signers keep the chain going");

    net.restart_after(2, Duration::from_millis(500))
        .expect("node 2 restarts on its data");
    let now = net.heights()[0].expect("node 0 runs");
    net.wait_until(now + 1, DEADLINE)
        .expect("the restarted node catches up");

    net.partition(&[2]).expect("node 2 cut off");
    let cut = net.heights()[0].expect("node 0 runs");
    net.wait_nodes(&[0, 1], cut + 2, DEADLINE)
        .expect("the two-signer side goes on");
    net.heal().expect("healed");
    let healed = net.heights().into_iter().flatten().max().expect("heights");
    net.wait_until(healed + 2, DEADLINE)
        .expect("all three go on after the heal");
    let target = healed + 1;
    let hashes: Vec<_> = (0..3)
        .map(|i| net.hash_at(i, target).expect("block"))
        .collect();
    assert!(hashes[0].is_some(), "{hashes:?}");
    assert!(
        hashes.iter().all(|h| h == &hashes[0]),
        "one chain after the heal: {hashes:?}"
    );
}

/// The heights of `nodes`, which must all be running.
fn heights_of(net: &node::testnet::TestNet, nodes: &[usize]) -> Vec<u64> {
    let all = net.heights();
    nodes
        .iter()
        .map(|&i| all[i].unwrap_or_else(|| panic!("node {i} answers")))
        .collect()
}

/// PBFT with N = 4 tolerates f = 1: with two validators crashed no quorum of 2f + 1 = 3 can
/// form, so the two left commit nothing (and certainly nothing different from each other);
/// when one returns, three make a quorum again and the chain goes on from where it stopped
/// (Castro and Liskov §4: safety always, liveness with at most f faulty).
#[test]
fn pbft_n4f2_crash_two_halts_without_forks_then_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Pbft)
        .add_node()
        .add_node()
        .add_node()
        .add_node()
        .block_time(1)
        .start()
        .expect("four validators start");
    net.wait_until(3, DEADLINE).expect("four validators commit");

    net.crash(2).expect("crash 2");
    net.crash(3).expect("crash 3");
    // Whatever was decided before the crash reaches both, then no quorum, no commit: the
    // watch is a window by nature (a commit inside it fails the test, none cannot hide one).
    net.wait_level(&[0, 1], DEADLINE)
        .expect("what was decided reaches both");
    let stalled = heights_of(&net, &[0, 1]);
    std::thread::sleep(HALT_WINDOW);
    assert_eq!(
        heights_of(&net, &[0, 1]),
        stalled,
        "two of four validators must not commit"
    );
    let common = *stalled.iter().min().expect("two heights");
    assert_eq!(
        net.hash_at(0, common).expect("node 0"),
        net.hash_at(1, common).expect("node 1"),
        "no fork while halted"
    );

    net.restart_after(2, Duration::ZERO)
        .expect("node 2 returns");
    let top = *stalled.iter().max().expect("two heights");
    net.wait_nodes(&[0, 1, 2], top + 2, DEADLINE)
        .expect("three validators commit again");
    let hashes: Vec<_> = [0, 1, 2]
        .iter()
        .map(|&i| net.hash_at(i, top + 1).expect("block"))
        .collect();
    assert!(
        hashes[0].is_some() && hashes.iter().all(|h| h == &hashes[0]),
        "{hashes:?}"
    );
}

/// A 2 | 2 split of four PBFT validators leaves no side with a quorum of three: both halt,
/// neither commits a block the other does not have; after the heal the four go on on one
/// chain (§4.4: a view change needs 2f + 1 too, so neither half can move on alone).
#[test]
fn pbft_n4_partition_2_2_halts_and_heals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Pbft)
        .add_node()
        .add_node()
        .add_node()
        .add_node()
        .block_time(1)
        .start()
        .expect("four validators start");
    net.wait_until(3, DEADLINE).expect("four validators commit");

    net.partition(&[0, 1]).expect("split 2 | 2");
    net.wait_level(&[0, 1], DEADLINE).expect("one half settles");
    net.wait_level(&[2, 3], DEADLINE)
        .expect("the other half settles");
    let stalled = heights_of(&net, &[0, 1, 2, 3]);
    std::thread::sleep(HALT_WINDOW);
    assert_eq!(
        heights_of(&net, &[0, 1, 2, 3]),
        stalled,
        "no half of two validators commits"
    );
    let common = *stalled.iter().min().expect("heights");
    let hashes: Vec<_> = (0..4)
        .map(|i| net.hash_at(i, common).expect("block"))
        .collect();
    assert!(
        hashes.iter().all(|h| h == &hashes[0]),
        "no fork: {hashes:?}"
    );

    net.heal().expect("heal");
    let top = *stalled.iter().max().expect("heights");
    net.wait_until(top + 2, DEADLINE)
        .expect("the four commit again after the heal");
    let hashes: Vec<_> = (0..4)
        .map(|i| net.hash_at(i, top + 1).expect("block"))
        .collect();
    assert!(
        hashes[0].is_some() && hashes.iter().all(|h| h == &hashes[0]),
        "{hashes:?}"
    );
}
