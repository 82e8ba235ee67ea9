//! Multi-node tests on the in-process test network (`node::testnet`): the nodes are real
//! (store, network on 127.0.0.1, RPC, producer), only not separate processes.

use node::testnet::TestBuilder;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);

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
