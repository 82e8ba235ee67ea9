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

/// Polls `check` until it gives a value; panics naming `what` after [`DEADLINE`]. A node
/// of a loaded machine may miss one RPC timeout; a condition is given the deadline, never a
/// fixed sleep.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < until,
            "{what}: not within {} s",
            DEADLINE.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The heights of `nodes`, which must all be running (each asked again while it does not
/// answer, until the deadline).
fn heights_of(net: &node::testnet::TestNet, nodes: &[usize]) -> Vec<u64> {
    eventually(&format!("the heights of nodes {nodes:?}"), || {
        let all = net.heights();
        nodes.iter().map(|&i| all[i]).collect()
    })
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
// assumes an idle machine; a CI machine running five in-process nodes on two cores beside
// other builds can starve a node's threads for a second or more, and then a healthy leader
// is voted out (or deposed by its own check-quorum) for nothing. The protocol is the same
// with longer timeouts: heartbeats every 200 ms, elections after 2–4 s of silence, so a
// node must miss ten heartbeats in a row before anyone stands.
fn raft_spec(servers: usize) -> config::EngineSpec {
    use miner::EngineParams as _;
    let mut p =
        <miner::raft::RaftParams as miner::EngineParams>::devnet(&config::dev_authorities(servers));
    p.set_block_time(1);
    p.heartbeat_ms = 200;
    p.election_timeout_min_ms = 2_000;
    p.election_timeout_max_ms = 4_000;
    config::EngineSpec::Raft(p)
}

/// One voting network (Raft, Multi-Paxos or ZAB) at a time: the test binary runs tests two
/// at a time on a 2-core machine, and five servers beside five more would starve each
/// other's timers.
static VOTING_ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What the shared helpers need to know of a crash-fault voting engine: Raft, Multi-Paxos
/// and ZAB run the same named cases on real nodes and differ only in these.
struct Voting {
    kind: config::EngineKind,
    /// The engine parameters the cases run with, for so many servers.
    spec: fn(usize) -> config::EngineSpec,
    /// The status field that numbers a leadership: `term`, `ballot` or `epoch`.
    round: &'static str,
    /// The status field of the last committed position: `commit_index`, `decided_height`
    /// or `committed_height`.
    committed: &'static str,
    /// The role a leader cut off from its majority steps down to; `None`: any but `leader`.
    stepped_down: Option<&'static str>,
    /// Whether a server cut off from its majority keeps raising its round (Multi-Paxos has
    /// no pre-vote), so the old leader's round is read before the cut, not as it steps down.
    round_rises_when_cut_off: bool,
}

const RAFT: Voting = Voting {
    kind: config::EngineKind::Raft,
    spec: raft_spec,
    round: "term",
    committed: "commit_index",
    stepped_down: None,
    round_rises_when_cut_off: false,
};

/// `servers` servers of `engine` making 1 s blocks, once every node is at height 3.
fn voting_net(dir: &std::path::Path, engine: &Voting, servers: usize) -> node::testnet::TestNet {
    started(dir, engine.kind, servers, Some((engine.spec)(servers)))
}

/// Node `i`'s voting status (`node_status.voting`), asked again while the node does not
/// answer within the RPC timeout, until the deadline.
fn voting(net: &node::testnet::TestNet, i: usize) -> serde_json::Value {
    let client = net
        .node(i)
        .unwrap_or_else(|| panic!("node {i} runs"))
        .client();
    eventually(&format!("node {i} answers node_status"), || {
        client
            .call("node_status", serde_json::json!([]))
            .ok()
            .map(|status| status["voting"].clone())
    })
}

/// A number the voting status gives as a string (`term`, `commit_index`, `last_index`).
fn field(status: &serde_json::Value, name: &str) -> u64 {
    status[name]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a {name} in {status}"))
}

fn role_of(status: &serde_json::Value) -> &str {
    status["role"]
        .as_str()
        .unwrap_or_else(|| panic!("a role in {status}"))
}

/// The block hash at `height` on node `i`, asked again while the node does not answer.
fn hash_on(net: &node::testnet::TestNet, i: usize, height: u64) -> Option<String> {
    eventually(&format!("node {i} answers chain_getBlock {height}"), || {
        net.hash_at(i, height).ok()
    })
}

/// The round of a voting status (its `engine.round` field) as a number every later round
/// exceeds: a term or an epoch as it is, a ballot `round.proposer` packed as Multi-Paxos
/// orders ballots (the round above the proposer's index).
fn round_of(engine: &Voting, status: &serde_json::Value) -> u64 {
    let value = status[engine.round]
        .as_str()
        .unwrap_or_else(|| panic!("a {} in {status}", engine.round));
    let number = |s: &str| {
        s.parse::<u64>()
            .unwrap_or_else(|_| panic!("a number in {} {value}", engine.round))
    };
    match value.split_once('.') {
        Some((round, proposer)) => (number(round) << 16) | number(proposer),
        None => number(value),
    }
}

/// The running node that leads, once one does.
fn leader_of(net: &node::testnet::TestNet, nodes: &[usize]) -> usize {
    eventually(&format!("a leader among {nodes:?}"), || {
        nodes
            .iter()
            .copied()
            .find(|&i| role_of(&voting(net, i)) == "leader")
    })
}

/// The same block at `height` on every node of `nodes`.
fn assert_one_chain_at(net: &node::testnet::TestNet, nodes: &[usize], height: u64) {
    let hashes: Vec<_> = nodes.iter().map(|&i| hash_on(net, i, height)).collect();
    assert!(
        hashes[0].is_some() && hashes.iter().all(|h| h == &hashes[0]),
        "one chain at #{height}: {hashes:?}"
    );
}

/// §5.2: when the leader crashes, a follower's election timer fires, it wins a majority
/// of the two left and commits on (also on real processes in toychain/tests/it/voting.rs).
#[test]
fn n3_leader_crash_reelects_and_keeps_committing() {
    let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = voting_net(dir.path(), &RAFT, 3);
    leader_crash_reelects_and_keeps_committing(&mut net, &RAFT);
}

/// §5.3: a follower that was down is brought up to date by the leader's AppendEntries
/// (and the node's certified sync for what the log has compacted away).
#[test]
fn n3_restart_follower_catches_up_from_log() {
    let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = voting_net(dir.path(), &RAFT, 3);
    restart_follower_catches_up_from_log(&mut net, &RAFT);
}

/// The leader of three crashes: a follower's timer fires, it wins a majority of the two
/// left with a later round, and the two commit on, on one chain.
fn leader_crash_reelects_and_keeps_committing(net: &mut node::testnet::TestNet, engine: &Voting) {
    let leader = leader_of(net, &[0, 1, 2]);
    let old_round = round_of(engine, &voting(net, leader));
    net.crash(leader).expect("the leader crashes");
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let top = *heights_of(net, &rest).iter().max().expect("heights");
    net.wait_nodes(&rest, top + 3, DEADLINE)
        .expect("two of three servers commit on");
    let new_leader = leader_of(net, &rest);
    assert!(
        round_of(engine, &voting(net, new_leader)) > old_round,
        "a new {}",
        engine.round
    );
    assert_one_chain_at(net, &rest, top + 3);
}

/// A follower of three crashes while the two others commit on; restarted on its data, it
/// catches up with them on one chain. Gives the leader and its round from before the crash.
fn restart_follower_catches_up_from_log(
    net: &mut node::testnet::TestNet,
    engine: &Voting,
) -> (usize, u64) {
    let leader = leader_of(net, &[0, 1, 2]);
    let round = round_of(engine, &voting(net, leader));
    let follower = (leader + 1) % 3;
    net.crash(follower).expect("a follower crashes");
    let rest: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    let top = *heights_of(net, &rest).iter().max().expect("heights");
    net.wait_nodes(&rest, top + 3, DEADLINE)
        .expect("two servers commit on");
    net.restart_after(follower, Duration::ZERO)
        .expect("the follower restarts on its data");
    net.wait_nodes(&[0, 1, 2], top + 4, DEADLINE)
        .expect("the follower catches up");
    assert_one_chain_at(net, &[0, 1, 2], top + 4);
    (leader, round)
}

/// The five servers, with the leader and one follower cut off from the other three.
struct Split {
    old_leader: usize,
    /// The old leader's round ([`round_of`]) as it stepped down, or before the cut where
    /// a cut-off server raises it alone.
    old_round: u64,
    minority: Vec<usize>,
    majority: Vec<usize>,
    /// The minority's heights once the old leader stepped down and what it had committed
    /// reached its follower.
    stalled: Vec<u64>,
    /// The old leader's last committed position (`engine.committed`) then.
    stalled_commit: u64,
    /// The majority's height after committing three blocks alone.
    majority_top: u64,
}

/// Cut the leader off with one follower. The old leader hears from no majority, so it
/// steps down within an election timeout (Raft §5.4, §8 and etcd's check-quorum; the same
/// check in Multi-Paxos; ZAB's sync limit, back to LOOKING); the majority elects a new
/// leader of a later round and goes on.
fn split_off_the_leader(net: &node::testnet::TestNet, engine: &Voting) -> Split {
    let old_leader = leader_of(net, &[0, 1, 2, 3, 4]);
    let minority = vec![old_leader, (old_leader + 1) % 5];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    let before_cut = engine
        .round_rises_when_cut_off
        .then(|| round_of(engine, &voting(net, old_leader)));
    net.partition(&minority).expect("split 2 | 3");
    let stepped_down = eventually("the cut-off leader steps down", || {
        let status = voting(net, old_leader);
        let down = match engine.stepped_down {
            Some(role) => role_of(&status) == role,
            None => role_of(&status) != "leader",
        };
        down.then(|| round_of(engine, &status))
    });
    net.wait_level(&minority, DEADLINE)
        .expect("what the old leader committed reaches its follower");
    let stalled = heights_of(net, &minority);
    let stalled_commit = field(&voting(net, old_leader), engine.committed);
    let top = *heights_of(net, &majority).iter().max().expect("heights");
    net.wait_nodes(&majority, top + 3, DEADLINE)
        .expect("the majority elects a leader and commits on alone");
    Split {
        old_leader,
        old_round: before_cut.unwrap_or(stepped_down),
        minority,
        majority,
        stalled,
        stalled_commit,
        majority_top: top + 3,
    }
}

/// The leader and one follower cut off from the three others ([`split_off_the_leader`]):
/// a block is committed only once a majority holds it, so the old leader commits nothing
/// more (its height and committed position stay) while the three others commit three
/// blocks under a leader of a later round, and every block the minority holds is on the
/// majority's chain (it committed nothing of its own after the cut).
fn minority_partition_old_leader_cannot_commit(net: &node::testnet::TestNet, engine: &Voting) {
    let split = split_off_the_leader(net, engine);
    assert_eq!(
        heights_of(net, &split.minority),
        split.stalled,
        "the minority (old leader node {}) imported blocks without a majority",
        split.old_leader
    );
    let old = voting(net, split.old_leader);
    assert_eq!(
        field(&old, engine.committed),
        split.stalled_commit,
        "the old leader's {} moved without a majority: {old}",
        engine.committed
    );
    assert_ne!(role_of(&old), "leader", "the old leader leads again: {old}");
    let new_leader = leader_of(net, &split.majority);
    assert!(
        round_of(engine, &voting(net, new_leader)) > split.old_round,
        "the majority moved to a {} after the cut-off leader's {}",
        engine.round,
        split.old_round
    );
    assert_one_chain_at(net, &split.majority, split.majority_top);
    let low = *split.stalled.iter().min().expect("heights");
    let watched = [split.minority[0], split.minority[1], split.majority[0]];
    for height in 1..=low {
        assert_one_chain_at(net, &watched, height);
    }
}

/// The blocks at `heights` on node `i`, by height.
fn blocks_on(
    net: &node::testnet::TestNet,
    i: usize,
    heights: std::ops::RangeInclusive<u64>,
) -> Vec<(u64, Option<String>)> {
    heights.map(|h| (h, hash_on(net, i, h))).collect()
}

/// Heals the split: all five commit two blocks more, on one chain, and every block of
/// `committed` (committed before the heal, by height) is still on each of them.
fn heal_loses_no_commit(
    net: &node::testnet::TestNet,
    split: &Split,
    committed: &[(u64, Option<String>)],
) {
    net.heal().expect("healed");
    let all = [0, 1, 2, 3, 4];
    net.wait_nodes(&all, split.majority_top + 2, DEADLINE)
        .expect("all five commit after the heal");
    for (height, hash) in committed {
        assert!(hash.is_some(), "#{height} was committed");
        for i in all {
            assert_eq!(
                &hash_on(net, i, *height),
                hash,
                "node {i} lost or changed committed block #{height}"
            );
        }
    }
    assert_one_chain_at(net, &all, split.majority_top + 2);
}

/// §5.4.1–§5.4.2: an entry is committed only once a majority holds it, so the old leader
/// cut off with one follower commits nothing more: its height and commit index stay while
/// the three others commit three blocks under a new leader of a later term, and every
/// block the minority holds is on the majority's chain (it committed nothing of its own
/// after the cut).
#[test]
fn n5_minority_partition_old_leader_cannot_commit() {
    let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let net = voting_net(dir.path(), &RAFT, 5);
    minority_partition_old_leader_cannot_commit(&net, &RAFT);
}

/// After the heal the old leader learns the newer term from the new leader's appends,
/// steps down for good and takes the majority's log (its uncommitted tail truncated,
/// §5.3); every block committed on either side before the heal is still there on all
/// five, and all five commit on on one chain.
#[test]
fn n5_partition_heals_without_lost_commits() {
    let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let net = voting_net(dir.path(), &RAFT, 5);
    let split = split_off_the_leader(&net, &RAFT);
    let low = *split.stalled.iter().min().expect("heights");
    let mut committed = blocks_on(&net, split.majority[0], 1..=split.majority_top);
    committed.extend(blocks_on(&net, split.old_leader, 1..=low));
    heal_loses_no_commit(&net, &split, &committed);
    let old = voting(&net, split.old_leader);
    assert!(
        round_of(&RAFT, &old) > split.old_round,
        "the old leader (node {}) learned no newer term than {}: {old}",
        split.old_leader,
        split.old_round
    );
}

/// Thesis §9.6, pre-vote with check-quorum as etcd has them: a follower cut off alone
/// times out and asks for pre-votes, which win no majority, so it does not raise its term;
/// when it rejoins, the servers that hear their leader ignore its pre-votes, and the
/// healthy leader keeps its place and its term on every server.
#[test]
fn n4_prevote_rejoining_node_does_not_disrupt() {
    let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let net = voting_net(dir.path(), &RAFT, 4);
    let all = [0, 1, 2, 3];
    let leader = leader_of(&net, &all);
    let term = round_of(&RAFT, &voting(&net, leader));
    let loner = (leader + 1) % 4;
    let rest: Vec<usize> = all.into_iter().filter(|&i| i != loner).collect();
    net.partition(&[loner]).expect("one follower cut off");
    eventually("the cut-off follower campaigns", || {
        (role_of(&voting(&net, loner)) == "pre-candidate").then_some(())
    });
    // Five blocks at one a second: longer than an election timeout (2–4 s) after its first,
    // so it campaigns again meanwhile.
    let top = *heights_of(&net, &rest).iter().max().expect("heights");
    net.wait_nodes(&rest, top + 5, DEADLINE)
        .expect("three of four servers commit on");
    let cut_off = voting(&net, loner);
    assert_eq!(
        round_of(&RAFT, &cut_off),
        term,
        "the cut-off follower raised its term: {cut_off}"
    );
    net.heal().expect("healed");
    let top = *heights_of(&net, &rest).iter().max().expect("heights");
    net.wait_nodes(&all, top + 2, DEADLINE)
        .expect("all four commit after the heal, the returning node too");
    assert_eq!(leader_of(&net, &all), leader, "the leader changed");
    for i in all {
        assert_eq!(
            round_of(&RAFT, &voting(&net, i)),
            term,
            "node {i}: the term changed"
        );
    }
    assert_one_chain_at(&net, &all, top + 2);
}

/// Counter `name` in node `i`'s `/metrics`.
fn metric(net: &node::testnet::TestNet, i: usize, name: &str) -> u64 {
    let client = net
        .node(i)
        .unwrap_or_else(|| panic!("node {i} runs"))
        .client();
    eventually(&format!("node {i} serves {name}"), || {
        client.metric(name).map(|v| v as u64)
    })
}

/// Figure 2 asks a server to write its log entries, term and vote before it answers; the
/// driver writes only when the machine's durable state changed (a new entry, a new term or
/// vote; never for a heartbeat or a commit) and once per batch of messages
/// (`toychain_voting_persist_total`). Three servers committing ten blocks write about one
/// state per block each; the states a batch superseded are the writes the one-at-a-time
/// driver made on top.
#[test]
fn n3_raft_writes_its_state_about_once_per_committed_block() {
    let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let net = voting_net(dir.path(), &RAFT, 3);
    let all = [0, 1, 2];
    let writes = |i| metric(&net, i, "toychain_voting_persist_total");
    let saved = |i| metric(&net, i, "toychain_voting_persist_superseded_total");
    let before: Vec<(u64, u64)> = all.iter().map(|&i| (writes(i), saved(i))).collect();
    let from = *heights_of(&net, &all).iter().min().expect("heights");
    net.wait_nodes(&all, from + 10, DEADLINE)
        .expect("ten more blocks");
    let to = *heights_of(&net, &all).iter().max().expect("heights");
    let blocks = to - from;
    for (&i, (w0, s0)) in all.iter().zip(before) {
        let (w, s) = (writes(i) - w0, saved(i) - s0);
        eprintln!(
            "node {i}: {w} writes for {blocks} committed blocks ({:.2} a block; {:.2} without batching)",
            w as f64 / blocks as f64,
            (w + s) as f64 / blocks as f64
        );
        assert!(w > 0, "node {i} wrote nothing while it took new entries");
        // One entry a block, plus a term and a vote should an election intervene.
        assert!(
            w <= blocks + 3,
            "node {i}: {w} writes for {blocks} blocks: a write without a change of state"
        );
    }
}

/// Multi-Paxos on real nodes, the Raft cases by the same names. The timings are Raft's
/// here (heartbeats every 200 ms, phase 1 after 2–4 s of silence) for the same reason:
/// five in-process nodes on two busy cores.
mod paxos {
    use super::*;

    fn paxos_spec(servers: usize) -> config::EngineSpec {
        use miner::EngineParams as _;
        let mut p = <miner::paxos::PaxosParams as miner::EngineParams>::devnet(
            &config::dev_authorities(servers),
        );
        p.set_block_time(1);
        p.heartbeat_ms = 200;
        p.election_timeout_min_ms = 2_000;
        p.election_timeout_max_ms = 4_000;
        config::EngineSpec::Paxos(p)
    }

    const PAXOS: Voting = Voting {
        kind: config::EngineKind::Paxos,
        spec: paxos_spec,
        round: "ballot",
        committed: "decided_height",
        stepped_down: None,
        round_rises_when_cut_off: true,
    };

    /// PMS §3: when the distinguished proposer crashes, another server's timer fires, it
    /// runs phase 1 with a higher ballot, wins a majority of the two left and decides on.
    #[test]
    fn n3_leader_crash_reelects_and_keeps_committing() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = voting_net(dir.path(), &PAXOS, 3);
        leader_crash_reelects_and_keeps_committing(&mut net, &PAXOS);
    }

    /// PMS §2.3: a restarted acceptor keeps its promise and accepted values (persisted),
    /// and the leader teaches it the blocks decided meanwhile (the node's certified sync
    /// brings what the leader's window no longer holds).
    #[test]
    fn n3_restart_follower_catches_up_from_log() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = voting_net(dir.path(), &PAXOS, 3);
        restart_follower_catches_up_from_log(&mut net, &PAXOS);
    }

    /// PMS §2.2: a block is chosen only once a majority accepted it in one ballot, so the
    /// old leader cut off with one follower decides nothing more, while the three others
    /// decide three blocks under a leader of a higher ballot.
    #[test]
    fn n5_minority_partition_old_leader_cannot_commit() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let net = voting_net(dir.path(), &PAXOS, 5);
        minority_partition_old_leader_cannot_commit(&net, &PAXOS);
    }

    /// After the heal the minority's higher ballots (it kept running phase 1 alone, with
    /// no pre-vote) meet the majority's leader, which prepares again above them; every
    /// block decided before the heal is still on all five, and all five decide on.
    #[test]
    fn n5_partition_heals_without_lost_commits() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let net = voting_net(dir.path(), &PAXOS, 5);
        let split = split_off_the_leader(&net, &PAXOS);
        let decided = blocks_on(&net, split.majority[0], 1..=split.majority_top);
        heal_loses_no_commit(&net, &split, &decided);
        let old = voting(&net, split.old_leader);
        assert!(
            round_of(&PAXOS, &old) > split.old_round,
            "the old leader (node {}) promised no ballot above {}: {old}",
            split.old_leader,
            split.old_round
        );
    }
}

/// ZAB on real nodes (Junqueira, Reed and Serafini, DSN 2011; ZooKeeper's election,
/// discovery, synchronization and broadcast). The same named cases as Raft's above, on the
/// shared helpers; only the status fields differ (`epoch`, `committed_height`).
mod zab {
    use super::*;

    /// As for Raft: a CI machine running five in-process nodes on two cores can starve a
    /// node for a second or more, so the protocol runs with longer limits than the devnet's:
    /// PINGs every 200 ms, a leader given up after 3 s of silence (fifteen missed PINGs),
    /// elections settled 200 ms after a quorum agrees (ZooKeeper's `finalizeWait`).
    fn zab_spec(servers: usize) -> config::EngineSpec {
        use miner::EngineParams as _;
        let mut p = <miner::zab::ZabParams as miner::EngineParams>::devnet(
            &config::dev_authorities(servers),
        );
        p.set_block_time(1);
        p.tick_ms = 200;
        p.sync_limit_ms = 3_000;
        p.election_wait_ms = 200;
        config::EngineSpec::Zab(p)
    }

    const ZAB: Voting = Voting {
        kind: config::EngineKind::Zab,
        spec: zab_spec,
        round: "epoch",
        committed: "committed_height",
        stepped_down: Some("looking"),
        round_rises_when_cut_off: false,
    };

    /// A crashed leader's followers hear no PING for the sync limit, go back to LOOKING,
    /// elect the one with the latest (epoch, zxid, id), agree a new epoch and commit on.
    #[test]
    fn n3_leader_crash_reelects_and_keeps_committing() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = voting_net(dir.path(), &ZAB, 3);
        leader_crash_reelects_and_keeps_committing(&mut net, &ZAB);
    }

    /// A follower that was down rejoins the established leader (the votes of FOLLOWING and
    /// LEADING servers) and is brought up in synchronization (and by the node's certified
    /// sync for what the leader's window no longer holds).
    #[test]
    fn n3_restart_follower_catches_up_from_log() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = voting_net(dir.path(), &ZAB, 3);
        let (leader, epoch) = restart_follower_catches_up_from_log(&mut net, &ZAB);
        assert_eq!(leader_of(&net, &[0, 1, 2]), leader, "the leader stays");
        assert_eq!(
            round_of(&ZAB, &voting(&net, leader)),
            epoch,
            "the epoch stays"
        );
    }

    /// A proposal commits only with a quorum's ACKs, so the cut-off leader commits nothing
    /// more, while the majority commits under a leader of a later epoch.
    #[test]
    fn n5_minority_partition_old_leader_cannot_commit() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let net = voting_net(dir.path(), &ZAB, 5);
        minority_partition_old_leader_cannot_commit(&net, &ZAB);
    }

    /// After the heal the LOOKING minority finds the established leader from the answers
    /// of FOLLOWING and LEADING servers, joins its epoch and is synchronized (its
    /// uncommitted proposals truncated); nothing committed on either side is lost.
    #[test]
    fn n5_partition_heals_without_lost_commits() {
        let _alone = VOTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let net = voting_net(dir.path(), &ZAB, 5);
        let split = split_off_the_leader(&net, &ZAB);
        let low = *split.stalled.iter().min().expect("heights");
        let mut committed = blocks_on(&net, split.majority[0], 1..=split.majority_top);
        committed.extend(blocks_on(&net, split.old_leader, 1..=low));
        heal_loses_no_commit(&net, &split, &committed);
        let old = eventually("the old leader joins the new epoch", || {
            let status = voting(&net, split.old_leader);
            (round_of(&ZAB, &status) > split.old_round).then_some(status)
        });
        assert_eq!(role_of(&old), "follower", "{old}");
    }
}
