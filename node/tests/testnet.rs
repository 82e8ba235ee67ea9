//! Multi-node tests on the in-process test network (`node::testnet`): the nodes are real
//! (store, network on 127.0.0.1, RPC, producer), only not separate processes.

use chain::BlockProducer;
use miner::pbft::PbftProducer;
use miner::pbft::message::{PbftMessage, Proposal};
use miner::quorum::{SignedVote, VoteBody};
use node::testnet::TestBuilder;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);
/// How long a halted PBFT network is watched for a commit it must not make: longer than the
/// dev spec's 4 s view timeout, so a view change is tried within it (and needs a quorum too).
const HALT_WINDOW: Duration = Duration::from_secs(6);

/// `nodes` nodes of `kind` (with these engine parameters, if any) making 1 s blocks, once
/// every node is at height 3.
fn started(
    dir: &std::path::Path,
    kind: config::EngineKind,
    nodes: usize,
    engine: Option<config::EngineSpec>,
) -> node::testnet::TestNet {
    // `RUST_LOG=node::voting=debug,miner=debug` shows what the nodes do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut builder = TestBuilder::new(&dir.join("net"), kind).block_time(1);
    if let Some(engine) = engine {
        builder = builder.engine(engine);
    }
    for _ in 0..nodes {
        builder = builder.add_node();
    }
    let net = builder.start().expect("the nodes start");
    net.wait_until(3, DEADLINE)
        .expect("every node reaches height 3");
    net
}

/// Three PoA signers: one crashes and the two others keep signing (Clique lets a signer
/// sign again after ⌊3/2⌋ + 1 = 2 blocks, so two alternate); restarted, it catches up on
/// its stored chain; cut off alone, it cannot outweigh the two, and after the heal all
/// three agree on one chain.
#[test]
fn n3_poa_crash_restart_partition_and_heal_end_on_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = started(dir.path(), config::EngineKind::Poa, 3, None);

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

/// Watches `nodes` of a network that must have halted: a decision whose quorum was reached
/// before the fault may still be in flight (it carries votes cast before), so the heights
/// may move by one during a first window; over a second window nothing may move. Returns
/// the heights the nodes halted at.
fn assert_halted(net: &node::testnet::TestNet, nodes: &[usize], what: &str) -> Vec<u64> {
    let settled = heights_of(net, nodes);
    std::thread::sleep(HALT_WINDOW);
    let halted = heights_of(net, nodes);
    for (before, after) in settled.iter().zip(&halted) {
        assert!(
            *after <= before + 1,
            "{what}: {settled:?} -> {halted:?}, more than one decision in flight"
        );
    }
    std::thread::sleep(HALT_WINDOW);
    assert_eq!(heights_of(net, nodes), halted, "{what}");
    halted
}

/// PBFT with N = 4 tolerates f = 1: with two validators crashed no quorum of 2f + 1 = 3 can
/// form, so the two left commit nothing (and certainly nothing different from each other);
/// when one returns, three make a quorum again and the chain goes on from where it stopped
/// (Castro and Liskov §4: safety always, liveness with at most f faulty).
#[test]
fn pbft_n4f2_crash_two_halts_without_forks_then_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = started(dir.path(), config::EngineKind::Pbft, 4, None);

    net.crash(2).expect("crash 2");
    net.crash(3).expect("crash 3");
    // Whatever was decided before the crash reaches both, then no quorum, no commit: the
    // watch is a window by nature (a commit inside it fails the test, none cannot hide one).
    net.wait_level(&[0, 1], DEADLINE)
        .expect("what was decided reaches both");
    let stalled = assert_halted(&net, &[0, 1], "two of four validators must not commit");
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
    let net = started(dir.path(), config::EngineKind::Pbft, 4, None);

    net.partition(&[0, 1]).expect("split 2 | 2");
    net.wait_level(&[0, 1], DEADLINE).expect("one half settles");
    net.wait_level(&[2, 3], DEADLINE)
        .expect("the other half settles");
    let stalled = assert_halted(&net, &[0, 1, 2, 3], "no half of two validators commits");
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

/// A PBFT primary that equivocates: every PRE-PREPARE its honest machine sends goes out
/// with a twin beside it, the same block one second later, validly sealed and signed for
/// the same view and height (the twin first at odd heights, so either may arrive first).
#[derive(Debug)]
struct Equivocating {
    inner: Box<dyn chain::VotingMachine>,
    key: chain::SecretKey,
    /// (height, its proposal, the twin), one per proposal it made.
    twins: Arc<Mutex<Vec<(u64, chain::BlockHash, chain::BlockHash)>>>,
}

impl Equivocating {
    fn twin(&self, p: &Proposal) -> Option<Proposal> {
        let mut header = p.block.header.clone();
        header.timestamp = chain::Timestamp(header.timestamp.0 + 1);
        let header = PbftProducer::new(self.key.clone())
            .seal(header, &chain::CancelFlag::new())
            .ok()??;
        let block = chain::Block {
            header,
            txs: p.block.txs.clone(),
        };
        let body = VoteBody {
            block: block.hash(),
            ..p.vote.body
        };
        Some(Proposal {
            vote: SignedVote::sign("pbft", body, &self.key),
            block,
            justification: p.justification.clone(),
        })
    }
}

impl chain::VotingMachine for Equivocating {
    fn handle(
        &mut self,
        now_millis: u64,
        input: chain::VoteInput,
    ) -> Result<Vec<chain::VoteOutput>, chain::EngineError> {
        let mut out = Vec::new();
        for output in self.inner.handle(now_millis, input)? {
            let twin = match &output {
                chain::VoteOutput::Broadcast(bytes) => match PbftMessage::decode(bytes) {
                    Ok(PbftMessage::PrePrepare(p)) => self.twin(&p).map(|twin| (p, twin)),
                    _ => None,
                },
                _ => None,
            };
            let Some((original, twin)) = twin else {
                out.push(output);
                continue;
            };
            let height = original.block.header.height.0;
            if let Ok(mut twins) = self.twins.lock() {
                twins.push((height, original.block.hash(), twin.block.hash()));
            }
            let twin = chain::VoteOutput::Broadcast(PbftMessage::PrePrepare(twin).encode());
            if height % 2 == 1 {
                out.extend([twin, output]);
            } else {
                out.extend([output, twin]);
            }
        }
        Ok(out)
    }

    fn status(&self) -> Vec<(&'static str, String)> {
        self.inner.status()
    }
}

/// Castro and Liskov §4.2: a Byzantine primary (the primary of view 0) sends two
/// valid PRE-PREPAREs for each height it proposes. A replica accepts at most one proposal
/// per view and height and refuses the other as an equivocation (which costs the primary
/// its score), and any two quorums of 2f + 1 share an honest replica, so no two nodes ever
/// hold different blocks at a height; the honest three keep deciding (with the primary's
/// proposals, or after a view change once it is cut off).
#[test]
fn pbft_n4_byzantine_primary_equivocates_no_conflicting_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let twins = Arc::new(Mutex::new(Vec::new()));
    let recorded = twins.clone();
    // View v's primary is the validator at v mod N in address order.
    let keys: Vec<chain::SecretKey> = chain::dev::DEV_ACCOUNTS[..4]
        .iter()
        .map(|name| chain::dev::dev_key(name).expect("dev key"))
        .collect();
    let primary = (0..4)
        .min_by_key(|&i| keys[i].address())
        .expect("four validators");
    let key = keys[primary].clone();
    let mut builder = TestBuilder::new(&dir.path().join("net"), config::EngineKind::Pbft)
        .block_time(1)
        .wrap_machine(primary, move |inner| {
            Box::new(Equivocating {
                inner,
                key: key.clone(),
                twins: recorded.clone(),
            })
        });
    for _ in 0..4 {
        builder = builder.add_node();
    }
    let net = builder.start().expect("the nodes start");
    const TOP: u64 = 8;
    let honest: Vec<usize> = (0..4).filter(|&i| i != primary).collect();
    net.wait_nodes(&honest, TOP, DEADLINE)
        .expect("the honest three keep deciding");

    let twins = twins.lock().expect("twins").clone();
    assert!(!twins.is_empty(), "the primary never equivocated");
    for height in 1..=TOP {
        let hashes: Vec<String> = (0..4)
            .filter_map(|i| net.hash_at(i, height).ok().flatten())
            .collect();
        assert!(hashes.len() >= 3, "height {height}: {hashes:?}");
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "two blocks decided at height {height}: {hashes:?}"
        );
    }
    // Each equivocation was decided one way, or neither way, on every node alike.
    for (height, original, twin) in &twins {
        let (original, twin) = (original.to_hex(), twin.to_hex());
        let seen: Vec<String> = (0..4)
            .filter_map(|i| net.hash_at(i, *height).ok().flatten())
            .collect();
        assert!(
            !(seen.contains(&original) && seen.contains(&twin)),
            "both proposals for height {height} were decided: {seen:?}"
        );
    }
}

// Raft on real nodes (Ongaro and Ousterhout, 2014). The paper's 150–300 ms election range
// assumes an idle machine; a CI machine running several in-process nodes on two cores can
// starve a follower that long, and then a healthy leader is voted out for nothing. The
// protocol is the same with longer timeouts.
fn raft_spec(servers: usize) -> config::EngineSpec {
    use miner::EngineParams as _;
    let mut p =
        <miner::raft::RaftParams as miner::EngineParams>::devnet(&config::dev_authorities(servers));
    p.set_block_time(1);
    p.heartbeat_ms = 200;
    p.election_timeout_min_ms = 1_000;
    p.election_timeout_max_ms = 2_000;
    config::EngineSpec::Raft(p)
}

/// One Raft network at a time: the test binary runs tests two at a time on a 2-core
/// machine, and five servers beside five more would starve each other's timers.
static RAFT_ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn raft_net(dir: &std::path::Path, servers: usize) -> node::testnet::TestNet {
    started(
        dir,
        config::EngineKind::Raft,
        servers,
        Some(raft_spec(servers)),
    )
}

/// Node `i`'s voting status (`node_status.voting`).
fn voting(net: &node::testnet::TestNet, i: usize) -> serde_json::Value {
    net.node(i)
        .unwrap_or_else(|| panic!("node {i} runs"))
        .client()
        .call("node_status", serde_json::json!([]))
        .expect("node_status")["voting"]
        .clone()
}

fn term_of(status: &serde_json::Value) -> u64 {
    status["term"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a term in {status}"))
}

/// The running node that leads, once one does.
fn leader_of(net: &node::testnet::TestNet, nodes: &[usize]) -> usize {
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(&i) = nodes
            .iter()
            .find(|&&i| voting(net, i)["role"] == serde_json::json!("leader"))
        {
            return i;
        }
        assert!(
            std::time::Instant::now() < until,
            "no leader among {nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same block at `height` on every node of `nodes`.
fn assert_one_chain_at(net: &node::testnet::TestNet, nodes: &[usize], height: u64) {
    let hashes: Vec<_> = nodes
        .iter()
        .map(|&i| net.hash_at(i, height).expect("block"))
        .collect();
    assert!(
        hashes[0].is_some() && hashes.iter().all(|h| h == &hashes[0]),
        "one chain at #{height}: {hashes:?}"
    );
}

/// §5.2: when the leader crashes, a follower's election timer fires, it wins a majority
/// of the two left and commits on (also on real processes in toychain/tests/it/voting.rs).
#[test]
fn n3_leader_crash_reelects_and_keeps_committing() {
    let _alone = RAFT_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = raft_net(dir.path(), 3);
    let leader = leader_of(&net, &[0, 1, 2]);
    let old_term = term_of(&voting(&net, leader));
    net.crash(leader).expect("the leader crashes");
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let top = *heights_of(&net, &rest).iter().max().expect("heights");
    net.wait_nodes(&rest, top + 3, DEADLINE)
        .expect("two of three servers commit on");
    let new_leader = leader_of(&net, &rest);
    assert!(term_of(&voting(&net, new_leader)) > old_term, "a new term");
    assert_one_chain_at(&net, &rest, top + 3);
}

/// §5.3: a follower that was down is brought up to date by the leader's AppendEntries
/// (and the node's certified sync for what the log has compacted away).
#[test]
fn n3_restart_follower_catches_up_from_log() {
    let _alone = RAFT_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = raft_net(dir.path(), 3);
    let leader = leader_of(&net, &[0, 1, 2]);
    let follower = (leader + 1) % 3;
    net.crash(follower).expect("a follower crashes");
    let rest: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    let top = *heights_of(&net, &rest).iter().max().expect("heights");
    net.wait_nodes(&rest, top + 3, DEADLINE)
        .expect("two servers commit on");
    net.restart_after(follower, Duration::ZERO)
        .expect("the follower restarts on its data");
    net.wait_nodes(&[0, 1, 2], top + 4, DEADLINE)
        .expect("the follower catches up");
    assert_one_chain_at(&net, &[0, 1, 2], top + 4);
}
