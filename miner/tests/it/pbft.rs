//! PBFT (Castro & Liskov, OSDI 1999) through its voting machine: N replicas, each with a
//! real chain, driven in virtual time by a deterministic in-memory network that delivers
//! broadcasts after a fixed delay, fires timers, answers build and validate requests with
//! the replica's own chain, imports decisions with their certificates, and lets a replica
//! that fell behind copy certified blocks from a peer it can reach (block sync). Then the
//! engine's certificate checks and the machine's refusals, one case at a time.

use crate::support::{GENESIS_TIME, engine_chain};
use chain::dev::dev_key;
use chain::{
    Block, BlockHash, BlockProducer, CancelFlag, Chain, ChainView, ConsensusEngine, EngineError,
    Height, ManualClock, SealedHeader, SecretKey, TimerId, Timestamp, VoteInput, VoteOutput,
    VotingMachine,
};
use miner::pbft::message::{NewView, PbftMessage, Proposal, ViewChange, encode_view};
use miner::pbft::{PbftEngine, PbftError, PbftMachine, PbftParams, PbftProducer, VIEW_WINDOW};
use miner::quorum::{Certificate, Phase, QuorumError, SignedVote, VoteBody, VoterSet};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One-way message delay.
const DELAY_MS: u64 = 50;
/// How often a replica asks its peers for blocks it is missing.
const SYNC_EVERY_MS: u64 = 1_000;
const START_MS: u64 = (GENESIS_TIME + 1) * 1000;

fn params(validators: Vec<chain::Address>) -> PbftParams {
    PbftParams {
        validators,
        block_time: 1,
        view_timeout_ms: 2_000,
        max_view_timeout_ms: 16_000,
    }
}

/// The first `n` dev keys, sorted by address so that node `i` is validator `i` (the
/// primary of view `i`).
fn keys(n: usize) -> Vec<SecretKey> {
    let mut keys: Vec<SecretKey> = chain::dev::DEV_ACCOUNTS[..n]
        .iter()
        .map(|name| dev_key(name).expect("dev account"))
        .collect();
    keys.sort_by_key(SecretKey::address);
    keys
}

fn outsider() -> SecretKey {
    dev_key("heidi").expect("dev account")
}

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        id: TimerId,
        generation: u64,
    },
    Sync,
}

#[derive(Debug)]
struct Node {
    key: SecretKey,
    chain: Chain,
    clock: Arc<ManualClock>,
    machine: PbftMachine,
    persisted: Option<Vec<u8>>,
    up: bool,
    /// Heights this replica decided by its own votes (not by sync).
    decided: Vec<Height>,
    /// When (virtual ms) it decided each height by its own votes.
    decided_at: BTreeMap<Height, u64>,
    /// When it, as primary, got each height's block built and proposed it.
    proposed_at: BTreeMap<Height, u64>,
    /// Everything it broadcast.
    sent: Vec<Vec<u8>>,
    rejected: Vec<String>,
}

/// A primary that proposes one block to some replicas and another to `victims`, and
/// backs the second one with its own PREPARE and COMMIT.
#[derive(Debug)]
struct Equivocator {
    node: usize,
    victims: Vec<usize>,
    /// Its real block → the block the victims get.
    twins: BTreeMap<BlockHash, BlockHash>,
}

#[derive(Debug)]
struct Net {
    now: u64,
    seq: u64,
    engine: PbftEngine,
    params: PbftParams,
    nodes: Vec<Node>,
    events: BTreeMap<(u64, u64), Event>,
    timers: BTreeMap<(usize, TimerId), u64>,
    /// `links[a][b]`: messages from `a` reach `b`.
    links: Vec<Vec<bool>>,
    equivocator: Option<Equivocator>,
    /// With a seed: each message takes 10–400 ms and `drop_percent` of them are lost.
    jitter: Option<u64>,
    drop_percent: u64,
}

impl Net {
    fn new(n: usize) -> Net {
        let keys = keys(n);
        let validators: Vec<_> = keys.iter().map(SecretKey::address).collect();
        let params = params(validators.clone());
        let engine = PbftEngine::new(params.clone()).expect("valid params");
        let nodes = keys
            .into_iter()
            .map(|key| {
                let (chain, clock) =
                    engine_chain(Arc::new(engine.clone()), &validators, GENESIS_TIME + 1);
                let machine =
                    PbftMachine::new(params.clone(), Some(key.clone()), None).expect("machine");
                Node {
                    key,
                    chain,
                    clock,
                    machine,
                    persisted: None,
                    up: true,
                    decided: Vec::new(),
                    decided_at: BTreeMap::new(),
                    proposed_at: BTreeMap::new(),
                    sent: Vec::new(),
                    rejected: Vec::new(),
                }
            })
            .collect();
        let mut net = Net {
            now: START_MS,
            seq: 0,
            engine,
            params,
            nodes,
            events: BTreeMap::new(),
            timers: BTreeMap::new(),
            links: vec![vec![true; n]; n],
            equivocator: None,
            jitter: None,
            drop_percent: 0,
        };
        net.schedule(SYNC_EVERY_MS, Event::Sync);
        for i in 0..n {
            let head = net.head_input(i);
            net.feed(i, head);
        }
        net
    }

    fn schedule(&mut self, after: u64, event: Event) {
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), event);
    }

    fn head_input(&self, i: usize) -> VoteInput {
        let chain = &self.nodes[i].chain;
        VoteInput::Head {
            head: chain.head(),
            voters: self.engine.voters(chain.state()).expect("voters"),
        }
    }

    fn feed(&mut self, i: usize, input: VoteInput) {
        if !self.nodes[i].up {
            return;
        }
        self.nodes[i].clock.set_millis(self.now);
        match self.nodes[i].machine.handle(self.now, input) {
            Ok(outputs) => self.apply(i, outputs),
            Err(e @ EngineError::Rejected { .. }) => self.nodes[i].rejected.push(e.to_string()),
            Err(EngineError::Ignored { .. }) => {}
            Err(e) => panic!("node {i}: {e}"),
        }
    }

    fn apply(&mut self, i: usize, outputs: Vec<VoteOutput>) {
        for output in outputs {
            match output {
                VoteOutput::Broadcast(bytes) => {
                    self.nodes[i].sent.push(bytes.clone());
                    for to in 0..self.nodes.len() {
                        if to != i && self.links[i][to] {
                            let bytes = self.tamper(i, to, &bytes);
                            let (delay, lost) = self.delay();
                            if !lost {
                                self.schedule(delay, Event::Deliver { to, bytes });
                            }
                        }
                    }
                }
                VoteOutput::SetTimer { id, after_millis } => {
                    let generation = self.timers.get(&(i, id)).map_or(0, |g| g + 1);
                    self.timers.insert((i, id), generation);
                    self.schedule(
                        after_millis,
                        Event::Timer {
                            node: i,
                            id,
                            generation,
                        },
                    );
                }
                VoteOutput::CancelTimer(id) => {
                    if let Some(g) = self.timers.get_mut(&(i, id)) {
                        *g += 1;
                    }
                }
                VoteOutput::Build {
                    parent,
                    timestamp,
                    data,
                } => {
                    if let Some(block) = self.build(i, parent, timestamp, data) {
                        let now = self.now;
                        self.nodes[i].proposed_at.insert(block.header.height, now);
                        self.feed(i, VoteInput::Built(Box::new(block)));
                    }
                }
                VoteOutput::Validate(block) => {
                    let valid = self.nodes[i].chain.validate_proposal(&block).is_ok();
                    let hash = block.hash();
                    self.feed(i, VoteInput::Validated { hash, valid });
                }
                VoteOutput::Commit { block, certificate } => {
                    let height = block.header.height;
                    self.nodes[i]
                        .chain
                        .import_certified(*block, certificate)
                        .unwrap_or_else(|e| panic!("node {i} cannot import its decision: {e}"));
                    self.nodes[i].decided.push(height);
                    let now = self.now;
                    self.nodes[i].decided_at.insert(height, now);
                    let head = self.head_input(i);
                    self.feed(i, head);
                }
                VoteOutput::Persist(bytes) => self.nodes[i].persisted = Some(bytes),
            }
        }
    }

    /// The next message's delay and whether it is lost (xorshift64 over the seed).
    fn delay(&mut self) -> (u64, bool) {
        let Some(state) = &mut self.jitter else {
            return (DELAY_MS, false);
        };
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let r = *state;
        (10 + r % 391, (r >> 32) % 100 < self.drop_percent)
    }

    /// A block on node `i`'s head, as the node's producer loop would make it.
    fn build(
        &self,
        i: usize,
        parent: BlockHash,
        timestamp: Timestamp,
        data: Vec<u8>,
    ) -> Option<Block> {
        let node = &self.nodes[i];
        let head = node.chain.head();
        if head.hash() != parent {
            return None;
        }
        let producer = PbftProducer::new(node.key.clone());
        let mut header = node.chain.template(producer.author(), timestamp);
        producer
            .prepare(&node.chain, &head, &mut header)
            .expect("prepare");
        header.engine.data = data;
        let built = node
            .chain
            .build_block(header, Vec::new(), usize::MAX)
            .expect("template builds");
        let header = producer
            .seal(built.block.header, &CancelFlag::new())
            .expect("seal")
            .expect("not cancelled");
        Some(Block {
            header,
            txs: built.block.txs,
        })
    }

    /// The equivocating primary's messages to its victims: a twin block with the same
    /// view, and its votes moved to the twin.
    fn tamper(&mut self, from: usize, to: usize, bytes: &[u8]) -> Vec<u8> {
        let Some(eq) = &self.equivocator else {
            return bytes.to_vec();
        };
        if eq.node != from || !eq.victims.contains(&to) {
            return bytes.to_vec();
        }
        let key = self.nodes[from].key.clone();
        let message = PbftMessage::decode(bytes).expect("own message decodes");
        let resign = |vote: SignedVote, twin: BlockHash| {
            SignedVote::sign(
                "pbft",
                VoteBody {
                    block: twin,
                    ..vote.body
                },
                &key,
            )
        };
        let twisted = match message {
            PbftMessage::PrePrepare(p) => {
                let twin = match self.twin_of(from, &p.block) {
                    Some(twin) => twin,
                    None => return bytes.to_vec(),
                };
                let twin_hash = twin.hash();
                if let Some(eq) = &mut self.equivocator {
                    eq.twins.insert(p.block.hash(), twin_hash);
                }
                PbftMessage::PrePrepare(Proposal {
                    vote: resign(p.vote, twin_hash),
                    block: twin,
                    justification: p.justification,
                })
            }
            PbftMessage::Prepare(v) => match eq.twins.get(&v.body.block) {
                Some(twin) => PbftMessage::Prepare(resign(v, *twin)),
                None => PbftMessage::Prepare(v),
            },
            PbftMessage::Commit(v) => match eq.twins.get(&v.body.block) {
                Some(twin) => PbftMessage::Commit(resign(v, *twin)),
                None => PbftMessage::Commit(v),
            },
            other => other,
        };
        twisted.encode()
    }

    /// Another valid block for the same height and view: one second later.
    fn twin_of(&self, i: usize, block: &Block) -> Option<Block> {
        self.build(
            i,
            block.header.parent,
            Timestamp(block.header.timestamp.0 + 1),
            block.header.engine.data.clone(),
        )
    }

    fn step(&mut self) -> bool {
        let Some(((at, _), event)) = self.events.pop_first() else {
            return false;
        };
        self.now = at;
        match event {
            Event::Deliver { to, bytes } => self.feed(to, VoteInput::Message(bytes)),
            Event::Timer {
                node,
                id,
                generation,
            } => {
                if self.timers.get(&(node, id)) == Some(&generation) {
                    self.feed(node, VoteInput::Timeout(id));
                }
            }
            Event::Sync => {
                self.sync();
                self.schedule(SYNC_EVERY_MS, Event::Sync);
            }
        }
        true
    }

    fn run_for(&mut self, millis: u64) {
        let end = self.now + millis;
        while self
            .events
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= end)
        {
            self.step();
        }
        self.now = end;
    }

    /// Block sync: a live replica copies the next certified block from a live peer it can
    /// reach, checking the certificate on import.
    fn sync(&mut self) {
        for i in 0..self.nodes.len() {
            loop {
                if !self.nodes[i].up {
                    break;
                }
                let next = Height(self.height(i).0 + 1);
                let source = (0..self.nodes.len()).find(|&j| {
                    self.nodes[j].up
                        && self.links[j][i]
                        && self.links[i][j]
                        && self.height(j) >= next
                });
                let Some(j) = source else { break };
                let block = self.nodes[j]
                    .chain
                    .block_at(next)
                    .expect("store")
                    .expect("block below the head");
                let certificate = self.nodes[j]
                    .chain
                    .certificate(&block.hash())
                    .expect("store")
                    .expect("every decided block has its certificate");
                self.nodes[i]
                    .chain
                    .import_certified(block, certificate)
                    .unwrap_or_else(|e| panic!("node {i} cannot sync height {next} from {j}: {e}"));
                let head = self.head_input(i);
                self.feed(i, head);
            }
        }
    }

    fn height(&self, i: usize) -> Height {
        self.nodes[i].chain.head().height()
    }

    fn heights(&self) -> Vec<u64> {
        (0..self.nodes.len()).map(|i| self.height(i).0).collect()
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Restarts node `i` from what it persisted, on the chain it had.
    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.machine = PbftMachine::new(
            self.params.clone(),
            Some(node.key.clone()),
            node.persisted.as_deref(),
        )
        .expect("persisted state reads back");
        node.up = true;
        let head = self.head_input(i);
        self.feed(i, head);
    }

    fn partition(&mut self, groups: &[&[usize]]) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                self.links[a][b] = groups.iter().any(|g| g.contains(&a) && g.contains(&b));
            }
        }
    }

    fn heal(&mut self) {
        let n = self.nodes.len();
        self.links = vec![vec![true; n]; n];
    }

    /// Safety: at every height, every replica that has a block has the same one, and
    /// every stored block's certificate proves it.
    fn assert_no_fork(&self) {
        let top = (0..self.nodes.len())
            .map(|i| self.height(i).0)
            .max()
            .unwrap_or(0);
        for h in 1..=top {
            let mut seen: Option<BlockHash> = None;
            for (i, node) in self.nodes.iter().enumerate() {
                if let Some(block) = node.chain.block_at(Height(h)).expect("store") {
                    let hash = block.hash();
                    assert!(
                        seen.is_none_or(|s| s == hash),
                        "fork at height {h}: node {i} has {hash}, another has {seen:?}"
                    );
                    seen = Some(hash);
                    let cert = node.chain.certificate(&hash).expect("store").expect("cert");
                    let cert = Certificate::decode(&cert).expect("certificate decodes");
                    assert!(
                        cert.signatures.len() >= 3,
                        "height {h}: a short certificate"
                    );
                }
            }
        }
    }

    /// Node `i`'s view, from its status.
    fn view(&self, i: usize) -> u64 {
        self.nodes[i].machine.view()
    }
}

// ---- multi-node scenarios ----------------------------------------------------------------

/// §4.2 normal case: PRE-PREPARE, PREPARE, COMMIT decide a block per height; every replica
/// decides every height by its own votes, in view 0, with no refusal.
#[test]
fn n4_happy_path_commits_every_height() {
    let mut net = Net::new(4);
    net.run_for(10_500);
    assert!(net.heights().iter().all(|h| *h >= 8), "{:?}", net.heights());
    net.assert_no_fork();
    for (i, node) in net.nodes.iter().enumerate() {
        assert_eq!(net.view(i), 0, "node {i} left view 0");
        assert!(node.rejected.is_empty(), "node {i}: {:?}", node.rejected);
        let all: Vec<Height> = (1..=node.chain.head().height().0).map(Height).collect();
        assert_eq!(node.decided, all, "node {i} decided every height itself");
        assert_eq!(
            node.chain.finalized().expect("finalized"),
            Some(node.chain.head().id()),
            "every block is final"
        );
    }
    // The primary of view 0 keeps proposing (the view is kept across heights).
    let primary = net.nodes[0].key.address();
    for h in 1..=8 {
        let block = net.nodes[1]
            .chain
            .block_at(Height(h))
            .expect("store")
            .expect("block");
        assert_eq!(block.header.producer, primary, "height {h}");
    }
}

/// §4.2's costs, which the lab checks against theory: every replica decides three
/// one-way delays after the primary proposes (PRE-PREPARE, PREPARE, COMMIT), and a block
/// costs 2N+1 broadcasts (one PRE-PREPARE, N PREPAREs, N COMMITs), (2N+1)(N−1) deliveries:
/// quadratic in N.
#[test]
fn normal_case_takes_three_delays_and_2n_plus_1_broadcasts_per_block() {
    for n in [4usize, 7] {
        let mut net = Net::new(n);
        net.run_for(5_500);
        let top = net.height(0).0;
        assert!(top >= 4, "n {n}: {:?}", net.heights());
        for h in 1..=top {
            let h = Height(h);
            let proposed = net.nodes[0].proposed_at.get(&h).copied().expect("proposed");
            for (i, node) in net.nodes.iter().enumerate() {
                assert_eq!(
                    node.decided_at.get(&h).map(|t| t - proposed),
                    Some(3 * DELAY_MS),
                    "n {n} node {i} height {h}"
                );
            }
        }
        // Broadcasts for the decided heights: exactly 2N+1 each.
        let sent = net
            .nodes
            .iter()
            .flat_map(|node| node.sent.iter())
            .filter(|bytes| {
                let message = PbftMessage::decode(bytes).expect("decodes");
                message.vote().is_some_and(|v| v.body.height.0 <= top)
            })
            .count();
        assert_eq!(sent, (2 * n + 1) * top as usize, "n {n}, {top} blocks");
    }
}

/// §4.2 with f = 1 crashed backup: 2f+1 = 3 replicas still decide; §4.4 with the primary
/// crashed: the view timer expires, the backups move to view 1 and its primary proposes.
#[test]
fn n4f1_crash_one_keeps_committing() {
    // A crashed backup.
    let mut net = Net::new(4);
    net.crash(3);
    net.run_for(8_500);
    assert!(net.height(0).0 >= 6, "{:?}", net.heights());
    assert_eq!(net.height(3), Height(0));
    assert_eq!(net.view(0), 0, "no view change without a failed primary");
    net.assert_no_fork();

    // A crashed primary (node 0 leads view 0).
    let mut net = Net::new(4);
    net.run_for(3_200);
    let before = net.height(1);
    assert!(before.0 >= 2, "{:?}", net.heights());
    net.crash(0);
    net.run_for(15_000);
    for i in 1..4 {
        assert!(
            net.height(i).0 >= before.0 + 4,
            "node {i} stopped after the primary crashed: {:?}",
            net.heights()
        );
        assert_eq!(net.view(i), 1, "node {i} moved to exactly view 1");
    }
    // Blocks after the crash come from view 1's primary.
    let last = net.nodes[1].chain.head();
    assert_eq!(last.producer, net.nodes[1].key.address());
    net.assert_no_fork();
}

/// A replica that was down from the start catches up by block sync, checking every
/// block's commit certificate against the validators of its parent's state (it saw none
/// of the votes), then votes again itself.
#[test]
fn late_joiner_syncs_checks_every_certificate_then_votes() {
    let mut net = Net::new(4);
    net.crash(3);
    net.run_for(6_500);
    let behind = net.height(0);
    assert!(behind.0 >= 4, "{:?}", net.heights());
    assert_eq!(net.height(3), Height(0));
    net.restart(3);
    net.run_for(6_000);
    let heights = net.heights();
    assert!(
        heights[3] + 1 >= heights[0],
        "node 3 still behind: {heights:?}"
    );
    let node = &net.nodes[3];
    for h in 1..=behind.0 {
        let block = node
            .chain
            .block_at(Height(h))
            .expect("store")
            .expect("synced");
        let cert = node.chain.certificate(&block.hash()).expect("store");
        assert!(cert.is_some(), "height {h} stored without its certificate");
    }
    assert!(
        node.decided.iter().any(|h| *h > behind),
        "node 3 never voted after catching up: {:?}",
        node.decided
    );
    net.assert_no_fork();
}

/// §4.4: with f+1 = 2 of 4 crashed no quorum of 2f+1 forms, so nothing is decided (and
/// nothing conflicting); when one returns (from its persisted state), the 3 decide again.
#[test]
fn n4f2_crash_two_halts_without_forks_then_resumes() {
    let mut net = Net::new(4);
    net.run_for(3_200);
    net.crash(0);
    net.crash(1);
    net.run_for(1_000);
    let stalled = net.heights();
    net.run_for(30_000);
    assert_eq!(net.heights(), stalled, "decided without a quorum");
    net.assert_no_fork();
    // §4.5.2: the two ask for view 1 but, without 2f+1 asking, go no further; they
    // keep asking.
    assert_eq!((net.view(2), net.view(3)), (1, 1));
    let requests = |node: &Node| {
        node.sent
            .iter()
            .filter(|b| matches!(PbftMessage::decode(b), Ok(PbftMessage::ViewChange(_))))
            .count()
    };
    assert!(requests(&net.nodes[2]) >= 3, "{}", requests(&net.nodes[2]));

    net.restart(1);
    net.run_for(60_000);
    let top = stalled.iter().max().copied().unwrap_or(0);
    for i in 1..4 {
        assert!(
            net.height(i).0 >= top + 3,
            "node {i} did not resume: {:?} from {stalled:?}",
            net.heights()
        );
    }
    net.assert_no_fork();
}

/// §4.4 under a 2|2 partition neither side has 2f+1 = 3, so both halt without deciding;
/// after the partition heals they agree on a view and decide again.
#[test]
fn n4_partition_2_2_halts_and_heals() {
    let mut net = Net::new(4);
    net.run_for(3_200);
    net.partition(&[&[0, 1], &[2, 3]]);
    net.run_for(1_000);
    let split = net.heights();
    net.run_for(30_000);
    assert_eq!(net.heights(), split, "a half decided alone");
    net.assert_no_fork();

    net.heal();
    net.run_for(60_000);
    let top = split.iter().max().copied().unwrap_or(0);
    for i in 0..4 {
        assert!(
            net.height(i).0 >= top + 3,
            "node {i} did not resume: {:?} from {split:?}",
            net.heights()
        );
    }
    net.assert_no_fork();
}

/// §4.2's safety argument: a Byzantine primary sends one block to some replicas and a
/// twin to the others, voting for both; quorum intersection leaves no two honest replicas
/// deciding different blocks, and the honest ones keep a single chain.
#[test]
fn n4_byzantine_primary_equivocates_no_conflicting_commit() {
    for victims in [vec![2, 3], vec![3], vec![1, 2, 3]] {
        let mut net = Net::new(4);
        net.equivocator = Some(Equivocator {
            node: 0,
            victims: victims.clone(),
            twins: BTreeMap::new(),
        });
        net.run_for(20_000);
        net.assert_no_fork();
        let twins: Vec<BlockHash> = net
            .equivocator
            .as_ref()
            .map(|e| e.twins.values().copied().collect())
            .unwrap_or_default();
        assert!(
            !twins.is_empty(),
            "victims {victims:?}: the primary never equivocated"
        );
        for i in 1..4 {
            assert!(
                net.height(i).0 >= 3,
                "victims {victims:?}: node {i} stuck: {:?}",
                net.heights()
            );
        }
        if victims == [2, 3] {
            // Neither block reached 2f+1 COMMITs in view 0 (the twin had 2 honest PREPAREs
            // and the forged one, the original 1 honest one); the view changed and view
            // 1's primary re-proposed the block prepared in view 0: the twin.
            let first = net.nodes[1].chain.block_at(Height(1)).expect("store");
            assert_eq!(first.map(|b| b.hash()), twins.first().copied());
            assert!((1..4).all(|i| net.view(i) >= 1), "no view change");
        }
    }
}

/// Safety under asynchrony (§4's claim: safety needs no timing assumption) and liveness
/// once messages arrive: over seeds, with N = 4 and 7, delays of 10–400 ms, 5% of
/// messages lost and f replicas crashed at a seeded time, no two replicas ever hold
/// different blocks at a height, and the live ones keep deciding.
#[test]
fn random_delays_losses_and_f_crashes_never_fork() {
    for n in [4usize, 7] {
        for seed in 1..=4u64 {
            let mut net = Net::new(n);
            net.jitter = Some(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            net.drop_percent = 5;
            let f = (n - 1) / 3;
            net.run_for(2_000 + seed * 700);
            for k in 0..f {
                net.crash((seed as usize + k) % n);
            }
            let crashed_at = net.heights();
            net.run_for(40_000);
            net.assert_no_fork();
            let top = crashed_at.iter().max().copied().unwrap_or(0);
            let live_min = (0..n)
                .filter(|i| net.nodes[*i].up)
                .map(|i| net.height(i).0)
                .min()
                .unwrap_or(0);
            assert!(
                live_min >= top + 3,
                "n {n} seed {seed}: stalled at {:?} from {crashed_at:?}",
                net.heights()
            );
        }
    }
}

/// Crash-recovery (§4.5 keeps the log on stable storage): a replica restarted from its
/// persisted bytes, shown a second proposal for the view it already voted in, signs no
/// second PREPARE.
#[test]
fn restart_from_persisted_bytes_does_not_double_vote() {
    let mut net = Net::new(4);
    // Only node 1 hears the primary: it prepares, but no quorum forms.
    net.partition(&[&[0, 1], &[2], &[3]]);
    net.run_for(1_300);
    let mut first_prepare = prepares_of(&net.nodes[1].sent);
    first_prepare.dedup();
    assert_eq!(
        first_prepare.len(),
        1,
        "node 1 prepared once (maybe sent twice)"
    );
    let persisted = net.nodes[1]
        .persisted
        .clone()
        .expect("persisted before sending");

    let key1 = net.nodes[1].key.clone();
    let mut restarted =
        PbftMachine::new(net.params.clone(), Some(key1), Some(&persisted)).expect("restores");
    let head = net.nodes[1].chain.head();
    let voters = net
        .engine
        .voters(net.nodes[1].chain.state())
        .expect("voters");
    let outputs = restarted
        .handle(net.now, VoteInput::Head { head, voters })
        .expect("head");
    // The persisted PREPARE may not have reached the wire before a crash: it goes out
    // again, byte for byte (deterministic signatures), and nothing else does.
    assert_eq!(
        prepares_of(&broadcasts(&outputs)),
        first_prepare,
        "a restart re-sends its own vote, unchanged"
    );
    // The primary's twin proposal for view 0 is valid, yet node 1 does not prepare it.
    let original = net.nodes[1]
        .sent
        .iter()
        .chain(net.nodes[0].sent.iter())
        .find_map(|b| match PbftMessage::decode(b) {
            Ok(PbftMessage::PrePrepare(p)) => Some(p),
            _ => None,
        })
        .expect("the primary proposed");
    let twin = net.twin_of(0, &original.block).expect("twin");
    let twin_hash = twin.hash();
    let proposal = PbftMessage::PrePrepare(Proposal {
        vote: SignedVote::sign(
            "pbft",
            VoteBody {
                block: twin_hash,
                ..original.vote.body
            },
            &net.nodes[0].key,
        ),
        block: twin,
        justification: None,
    });
    let mut outputs = restarted
        .handle(net.now, VoteInput::Message(proposal.encode()))
        .expect("a first proposal for view 0 in this incarnation");
    outputs.extend(
        restarted
            .handle(
                net.now,
                VoteInput::Validated {
                    hash: twin_hash,
                    valid: true,
                },
            )
            .expect("validated"),
    );
    assert!(
        prepares_of(&broadcasts(&outputs)).is_empty(),
        "double vote after restart: {outputs:?}"
    );
    // A machine without the persisted bytes would have voted: the bytes are what stop it.
    let key1 = net.nodes[1].key.clone();
    let mut amnesiac = PbftMachine::new(net.params.clone(), Some(key1), None).expect("fresh");
    let head = net.nodes[1].chain.head();
    let voters = net
        .engine
        .voters(net.nodes[1].chain.state())
        .expect("voters");
    amnesiac
        .handle(net.now, VoteInput::Head { head, voters })
        .expect("head");
    amnesiac
        .handle(net.now, VoteInput::Message(proposal.encode()))
        .expect("proposal");
    let outputs = amnesiac
        .handle(
            net.now,
            VoteInput::Validated {
                hash: twin_hash,
                valid: true,
            },
        )
        .expect("validated");
    assert_eq!(prepares_of(&broadcasts(&outputs)).len(), 1);
    assert!(
        matches!(outputs.first(), Some(VoteOutput::Persist(_))),
        "persist comes before the broadcast: {outputs:?}"
    );
}

fn broadcasts(outputs: &[VoteOutput]) -> Vec<Vec<u8>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            VoteOutput::Broadcast(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn prepares_of(sent: &[Vec<u8>]) -> Vec<SignedVote> {
    sent.iter()
        .filter_map(|b| match PbftMessage::decode(b) {
            Ok(PbftMessage::Prepare(v)) => Some(v),
            _ => None,
        })
        .collect()
}

// ---- certificates ------------------------------------------------------------------------

/// A decided block, its certificate and a chain at its parent (genesis).
fn decided_block() -> (Net, Block, Certificate, Chain) {
    let mut net = Net::new(4);
    net.run_for(1_500);
    let block = net.nodes[0]
        .chain
        .block_at(Height(1))
        .expect("store")
        .expect("height 1 decided");
    let cert = net.nodes[0]
        .chain
        .certificate(&block.hash())
        .expect("store")
        .expect("certificate");
    let cert = Certificate::decode(&cert).expect("decodes");
    let validators: Vec<_> = net.nodes.iter().map(|n| n.key.address()).collect();
    let (fresh, _clock) = engine_chain(Arc::new(net.engine.clone()), &validators, GENESIS_TIME + 1);
    (net, block, cert, fresh)
}

fn quorum_error(e: EngineError) -> QuorumError {
    match e.downcast_ref::<PbftError>() {
        Some(PbftError::Quorum(q)) => q.clone(),
        other => panic!("expected a quorum error, got {other:?} from {e}"),
    }
}

/// The commit certificate (§4.2's committed predicate, 2f+1 COMMITs) checked by a node
/// that saw none of the votes: the real one passes; each way of breaking it is refused
/// with its own error.
#[test]
fn certificate_checks_refuse_each_forgery() {
    let (net, block, cert, mut fresh) = decided_block();
    let engine = &net.engine;
    let header = SealedHeader::new(block.header.clone());
    let check =
        |c: &Certificate, h: &SealedHeader| engine.verify_certificate(&fresh, h, &c.encode());
    check(&cert, &header).expect("the real certificate");
    assert!(cert.signatures.len() >= 3);

    // A forged signature.
    let mut forged = cert.clone();
    forged.signatures[0].signature.0[10] ^= 1;
    assert!(matches!(
        quorum_error(check(&forged, &header).unwrap_err()),
        QuorumError::BadSignature { .. }
    ));

    // Too few: 2 of 4, 3 needed.
    let mut few = cert.clone();
    few.signatures.truncate(2);
    assert_eq!(
        quorum_error(check(&few, &header).unwrap_err()),
        QuorumError::TooFewSigners {
            got: 2,
            needed: 3,
            voters: 4
        }
    );

    // A duplicate signer padding a short certificate.
    let mut dup = few.clone();
    dup.signatures.push(dup.signatures[0]);
    assert_eq!(
        quorum_error(check(&dup, &header).unwrap_err()),
        QuorumError::DuplicateSigner {
            signer: dup.signatures[0].signer()
        }
    );

    // A non-validator's valid signature.
    let mut stranger = few.clone();
    let eve = outsider();
    stranger
        .signatures
        .push(miner::quorum::VoteSignature::sign("pbft", &cert.body, &eve));
    assert_eq!(
        quorum_error(check(&stranger, &header).unwrap_err()),
        QuorumError::NotAVoter {
            signer: eve.address()
        }
    );

    // The right votes for another block (same height and parent).
    let other = net.twin_of(0, &block).map(|b| SealedHeader::new(b.header));
    let other = other.unwrap_or_else(|| {
        let mut h = block.header.clone();
        h.timestamp = Timestamp(h.timestamp.0 + 1);
        SealedHeader::new(h)
    });
    assert!(matches!(
        quorum_error(check(&cert, &other).unwrap_err()),
        QuorumError::WrongVote { .. }
    ));

    // PREPAREs are not COMMITs.
    let prepares = Certificate {
        body: VoteBody {
            phase: Phase::Prepare,
            ..cert.body
        },
        signatures: cert.signatures.clone(),
    };
    assert!(matches!(
        quorum_error(check(&prepares, &header).unwrap_err()),
        QuorumError::WrongVote { .. }
    ));

    // Malformed bytes.
    let err = engine
        .verify_certificate(&fresh, &header, &[1, 2, 3])
        .unwrap_err();
    assert!(matches!(quorum_error(err), QuorumError::Codec(_)));

    // The chain imports the block only with the real certificate.
    assert!(fresh.import_certified(block.clone(), few.encode()).is_err());
    fresh
        .import_certified(block, cert.encode())
        .expect("imports with its certificate");
}

// ---- message refusals --------------------------------------------------------------------

/// A machine at genesis among 4 validators, and what it needs to make messages.
struct Bench {
    net: Net,
    machine: PbftMachine,
    head: SealedHeader,
}

impl Bench {
    /// Node 1's fresh machine on genesis.
    fn new() -> Bench {
        let net = Net::new(4);
        let head = net.nodes[1].chain.head();
        let mut machine =
            PbftMachine::new(net.params.clone(), Some(net.nodes[1].key.clone()), None)
                .expect("machine");
        let voters = net
            .engine
            .voters(net.nodes[1].chain.state())
            .expect("voters");
        machine
            .handle(
                START_MS,
                VoteInput::Head {
                    head: head.clone(),
                    voters,
                },
            )
            .expect("head");
        Bench { net, machine, head }
    }

    fn body(&self, view: u64, block: BlockHash, phase: Phase) -> VoteBody {
        VoteBody {
            height: Height(self.head.height().0 + 1),
            view,
            parent: self.head.hash(),
            block,
            phase,
        }
    }

    fn key(&self, i: usize) -> SecretKey {
        self.net.nodes[i].key.clone()
    }

    fn vote(&self, i: usize, body: VoteBody) -> SignedVote {
        SignedVote::sign("pbft", body, &self.key(i))
    }

    fn send(&mut self, message: &PbftMessage) -> Result<Vec<VoteOutput>, EngineError> {
        self.machine
            .handle(START_MS, VoteInput::Message(message.encode()))
    }

    /// A block signed by node `i`, naming `view` (valid only if `i` is its primary):
    /// built for the view's primary, then claimed and sealed by `i` (no transactions or
    /// rewards, so the state root does not depend on the producer).
    fn block(&self, i: usize, view: u64, second: u64) -> Block {
        let voters = VoterSet::new(self.net.nodes.iter().map(|n| n.key.address()));
        let primary = voters.at_round(view).expect("validators");
        let mut header = self.net.nodes[i]
            .chain
            .template(primary, Timestamp(GENESIS_TIME + second));
        header.engine.data = encode_view(view);
        let mut built = self.net.nodes[i]
            .chain
            .build_block(header, Vec::new(), usize::MAX)
            .expect("builds");
        built.block.header.producer = self.key(i).address();
        let header = PbftProducer::new(self.key(i))
            .seal(built.block.header, &CancelFlag::new())
            .expect("seal")
            .expect("sealed");
        Block {
            header,
            txs: built.block.txs,
        }
    }

    fn proposal(&self, i: usize, view: u64, block: Block) -> PbftMessage {
        PbftMessage::PrePrepare(Proposal {
            vote: self.vote(i, self.body(view, block.hash(), Phase::Propose)),
            block,
            justification: None,
        })
    }
}

fn rejected(result: Result<Vec<VoteOutput>, EngineError>) -> PbftError {
    match result {
        Err(e @ EngineError::Rejected { .. }) => e
            .downcast_ref::<PbftError>()
            .cloned()
            .unwrap_or_else(|| panic!("not a pbft error: {e}")),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn is_ignored(result: &Result<Vec<VoteOutput>, EngineError>) -> bool {
    matches!(result, Err(EngineError::Ignored { .. }))
}

/// The refusals (Rejected costs the sender its score, Ignored does not), as a table:
/// forged, stranger, malformed, non-primary and equivocating messages are rejected;
/// duplicates, stale and far-future ones are ignored.
#[test]
fn message_refusals_name_the_reason() {
    let mut b = Bench::new();
    let block = b.block(0, 0, 1);
    let hash = block.hash();

    // A forged signature: bob's prepare with one bit flipped.
    let mut forged = b.vote(2, b.body(0, hash, Phase::Prepare));
    forged.signature.signature.0[5] ^= 1;
    assert!(matches!(
        rejected(b.send(&PbftMessage::Prepare(forged))),
        PbftError::Quorum(QuorumError::BadSignature { .. })
    ));

    // A stranger's valid signature.
    let stranger = SignedVote::sign("pbft", b.body(0, hash, Phase::Prepare), &outsider());
    assert_eq!(
        rejected(b.send(&PbftMessage::Prepare(stranger))),
        PbftError::Quorum(QuorumError::NotAVoter {
            signer: outsider().address()
        })
    );

    // Malformed bytes.
    assert!(matches!(
        rejected(
            b.machine
                .handle(START_MS, VoteInput::Message(vec![9, 9, 9]))
        ),
        PbftError::Codec(_)
    ));

    // A pre-prepare from a backup (node 2 is not view 0's primary).
    let by_backup = b.block(2, 0, 1);
    assert!(matches!(
        rejected(b.send(&b.proposal(2, 0, by_backup))),
        PbftError::NotPrimary { view: 0, .. }
    ));

    // A prepare claiming the commit phase's message kind.
    let wrong_phase = b.vote(2, b.body(0, hash, Phase::Commit));
    assert!(matches!(
        rejected(b.send(&PbftMessage::Prepare(wrong_phase))),
        PbftError::Mismatch { what: "phase", .. }
    ));

    // The primary's proposal is taken and validated; a duplicate is ignored; a twin is an
    // equivocation.
    let outputs = b.send(&b.proposal(0, 0, block.clone())).expect("proposal");
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, VoteOutput::Validate(v) if v.hash() == hash))
    );
    assert!(is_ignored(&b.send(&b.proposal(0, 0, block.clone()))));
    let twin = b.block(0, 0, 2);
    assert!(matches!(
        rejected(b.send(&b.proposal(0, 0, twin))),
        PbftError::Equivocation {
            phase: Phase::Propose,
            ..
        }
    ));

    // A prepare once, then again (ignored), then for another block (rejected).
    let prepare = PbftMessage::Prepare(b.vote(2, b.body(0, hash, Phase::Prepare)));
    b.send(&prepare).expect("first prepare");
    assert!(is_ignored(&b.send(&prepare)));
    let other = PbftMessage::Prepare(b.vote(2, b.body(0, BlockHash([7; 32]), Phase::Prepare)));
    assert!(matches!(
        rejected(b.send(&other)),
        PbftError::Equivocation {
            phase: Phase::Prepare,
            ..
        }
    ));

    // Far-future views and heights are ignored, not kept.
    let far_view = b.vote(3, b.body(VIEW_WINDOW + 1, hash, Phase::Prepare));
    assert!(is_ignored(&b.send(&PbftMessage::Prepare(far_view))));
    let far_height = b.vote(
        3,
        VoteBody {
            height: Height(3),
            ..b.body(0, hash, Phase::Prepare)
        },
    );
    assert!(is_ignored(&b.send(&PbftMessage::Prepare(far_height))));
    // A stale height (the parent's).
    let stale = b.vote(
        3,
        VoteBody {
            height: Height(0),
            ..b.body(0, hash, Phase::Prepare)
        },
    );
    assert!(is_ignored(&b.send(&PbftMessage::Prepare(stale))));
    // A vote on another chain's parent is refused.
    let other_chain = b.vote(
        3,
        VoteBody {
            parent: BlockHash([5; 32]),
            ..b.body(0, hash, Phase::Prepare)
        },
    );
    assert!(matches!(
        rejected(b.send(&PbftMessage::Prepare(other_chain))),
        PbftError::Mismatch { what: "parent", .. }
    ));
}

/// Messages for the next height are kept (a few per sender) and applied once the head
/// moves; more than the cap are ignored, so a sender cannot fill memory.
#[test]
fn next_height_messages_are_buffered_and_bounded() {
    let mut b = Bench::new();
    let mut kept = 0;
    let mut dropped = 0;
    for i in 0..40u8 {
        let vote = b.vote(
            3,
            VoteBody {
                height: Height(2),
                ..b.body(0, BlockHash([i; 32]), Phase::Commit)
            },
        );
        match b.send(&PbftMessage::Commit(vote)) {
            Ok(_) => kept += 1,
            Err(EngineError::Ignored { .. }) => dropped += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((kept, dropped), (16, 24));

    // A sender that is not a validator now may be one at the next height (a vote may add
    // it): its next-height messages are kept, not blamed, but only a few in all.
    let mut kept = 0;
    for i in 0..40u8 {
        let vote = SignedVote::sign(
            "pbft",
            VoteBody {
                height: Height(2),
                ..b.body(0, BlockHash([i; 32]), Phase::Prepare)
            },
            &outsider(),
        );
        match b.send(&PbftMessage::Prepare(vote)) {
            Ok(_) => kept += 1,
            Err(EngineError::Ignored { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(kept, 16);
}

// ---- view change tables (§4.4) ----------------------------------------------------------

/// A prepared certificate for `block` in `view` from nodes `signers`.
fn prepared_cert(b: &Bench, view: u64, block: BlockHash, signers: &[usize]) -> Certificate {
    let body = b.body(view, block, Phase::Prepare);
    Certificate::new(
        body,
        signers.iter().map(|i| b.vote(*i, body).signature).collect(),
    )
}

fn view_change(b: &Bench, from: usize, view: u64, prepared: Option<(&Block, u64)>) -> ViewChange {
    match prepared {
        None => ViewChange {
            vote: b.vote(from, b.body(view, BlockHash::ZERO, Phase::ViewChange)),
            prepared: None,
            block: None,
        },
        Some((block, pv)) => ViewChange {
            vote: b.vote(from, b.body(view, block.hash(), Phase::ViewChange)),
            prepared: Some(prepared_cert(b, pv, block.hash(), &[0, 2, 3])),
            block: Some(block.clone()),
        },
    }
}

/// §4.4's NEW-VIEW rules, with the cases of Besu's QBFT `ProposalValidatorTest` that
/// apply to PBFT: a NEW-VIEW with 2f+1 view changes and no prepared block opens the view
/// (`validationPassesAtNonRoundZeroIfSufficientEmptyRoundChangesMatchTargetRound`); one
/// carrying a prepared block must re-propose it, the highest-view prepared block winning;
/// fewer than 2f+1 (`validationFailsAtNonRoundZeroIfInsufficientRoundChangesExist`) or a
/// proposal by another than the view's primary are refused.
#[test]
fn new_view_must_carry_a_quorum_and_repropose_the_prepared_block() {
    // View 1's primary is node 1 (the bench replica); view 2's is node 2.
    let view = 2;
    struct Case {
        name: &'static str,
        senders: Vec<usize>,
        /// (sender index in `senders`, prepared view) of the view changes with a prepared
        /// block, which is block `x` (prepared in view 0) or `y` (view 1).
        prepared: Vec<(usize, char)>,
        /// Which block the NEW-VIEW proposes: 'x', 'y', 'z' (fresh) or ' ' (none).
        proposes: char,
        proposer: usize,
        ok: bool,
    }
    let cases = vec![
        Case {
            name: "no prepared block, no proposal",
            senders: vec![0, 2, 3],
            prepared: vec![],
            proposes: ' ',
            proposer: 2,
            ok: true,
        },
        Case {
            name: "no prepared block, a fresh proposal",
            senders: vec![0, 2, 3],
            prepared: vec![],
            proposes: 'z',
            proposer: 2,
            ok: true,
        },
        Case {
            name: "re-proposes the prepared block",
            senders: vec![0, 2, 3],
            prepared: vec![(1, 'x')],
            proposes: 'x',
            proposer: 2,
            ok: true,
        },
        Case {
            name: "drops the prepared block",
            senders: vec![0, 2, 3],
            prepared: vec![(1, 'x')],
            proposes: 'z',
            proposer: 2,
            ok: false,
        },
        Case {
            name: "proposes nothing over a prepared block",
            senders: vec![0, 2, 3],
            prepared: vec![(0, 'x')],
            proposes: ' ',
            proposer: 2,
            ok: false,
        },
        Case {
            name: "the highest prepared view wins",
            senders: vec![0, 2, 3],
            prepared: vec![(0, 'x'), (2, 'y')],
            proposes: 'y',
            proposer: 2,
            ok: true,
        },
        Case {
            name: "a lower prepared view loses",
            senders: vec![0, 2, 3],
            prepared: vec![(0, 'x'), (2, 'y')],
            proposes: 'x',
            proposer: 2,
            ok: false,
        },
        Case {
            name: "two view changes are not 2f+1",
            senders: vec![0, 2],
            prepared: vec![],
            proposes: ' ',
            proposer: 2,
            ok: false,
        },
        Case {
            name: "a proposal by another than the primary",
            senders: vec![0, 2, 3],
            prepared: vec![],
            proposes: 'z',
            proposer: 3,
            ok: false,
        },
    ];
    for case in cases {
        let mut b = Bench::new();
        let x = b.block(0, 0, 1);
        let y = b.block(1, 1, 2);
        let z = b.block(2, view, 3);
        let vcs: Vec<ViewChange> = case
            .senders
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let prepared = case
                    .prepared
                    .iter()
                    .find(|(i, _)| *i == k)
                    .map(|(_, which)| if *which == 'x' { (&x, 0) } else { (&y, 1) });
                ViewChange {
                    block: None,
                    ..view_change(&b, *s, view, prepared)
                }
            })
            .collect();
        let proposal = match case.proposes {
            'x' => Some(x.clone()),
            'y' => Some(y.clone()),
            'z' => Some(z.clone()),
            _ => None,
        }
        .map(|block| Proposal {
            vote: b.vote(case.proposer, b.body(view, block.hash(), Phase::Propose)),
            block,
            justification: None,
        });
        let result = b.send(&PbftMessage::NewView(NewView {
            view_changes: vcs,
            proposal,
        }));
        assert_eq!(result.is_ok(), case.ok, "{}: {result:?}", case.name);
        if case.ok {
            assert_eq!(b.machine.view(), view, "{}", case.name);
        } else {
            assert!(
                matches!(result, Err(EngineError::Rejected { .. })),
                "{}: {result:?}",
                case.name
            );
        }
    }
}

/// Each view change a NEW-VIEW carries is checked, as in Besu's QBFT
/// `ProposalValidatorTest`: one from a non-validator
/// (`validationFailsIfPiggybackedRoundChangePayloadIsFromNonValidation`), the same author
/// twice (`…HasDuplicatedAuthors`), one for another view (`…TargetADifferentRoundToProposal`)
/// or another height (`…TargetADifferentHeightToProposal`): each refused.
#[test]
fn new_view_refuses_view_changes_that_do_not_count() {
    let view = 2;
    type MakeThird = fn(&Bench) -> ViewChange;
    let cases: [(&str, MakeThird); 4] = [
        ("from a non-validator", |b| ViewChange {
            vote: SignedVote::sign(
                "pbft",
                b.body(2, BlockHash::ZERO, Phase::ViewChange),
                &outsider(),
            ),
            prepared: None,
            block: None,
        }),
        ("a duplicate author", |b| view_change(b, 0, 2, None)),
        ("for another view", |b| view_change(b, 3, 3, None)),
        ("for another height", |b| ViewChange {
            vote: b.vote(
                3,
                VoteBody {
                    height: Height(2),
                    ..b.body(2, BlockHash::ZERO, Phase::ViewChange)
                },
            ),
            prepared: None,
            block: None,
        }),
    ];
    for (name, third) in cases {
        let mut b = Bench::new();
        let view_changes = vec![
            view_change(&b, 0, view, None),
            view_change(&b, 2, view, None),
            third(&b),
        ];
        let result = b.send(&PbftMessage::NewView(NewView {
            view_changes,
            proposal: None,
        }));
        assert!(
            matches!(result, Err(EngineError::Rejected { .. })),
            "{name}: {result:?}"
        );
        assert_eq!(b.machine.view(), 0, "{name}");
    }
}

/// §4.4: a view change naming a prepared block must prove it with 2f+1 PREPAREs from an
/// earlier view (QBFT's "round change with an invalid prepared certificate" case).
#[test]
fn view_change_with_a_bad_prepared_certificate_is_refused() {
    let mut b = Bench::new();
    let x = b.block(0, 0, 1);
    // Two prepares only.
    let short = ViewChange {
        vote: b.vote(2, b.body(1, x.hash(), Phase::ViewChange)),
        prepared: Some(prepared_cert(&b, 0, x.hash(), &[0, 2])),
        block: Some(x.clone()),
    };
    assert!(matches!(
        rejected(b.send(&PbftMessage::ViewChange(short))),
        PbftError::BadPrepared { .. }
    ));
    // Prepared in the very view asked for.
    let same_view = ViewChange {
        vote: b.vote(2, b.body(1, x.hash(), Phase::ViewChange)),
        prepared: Some(prepared_cert(&b, 1, x.hash(), &[0, 2, 3])),
        block: Some(x.clone()),
    };
    assert!(matches!(
        rejected(b.send(&PbftMessage::ViewChange(same_view))),
        PbftError::BadPrepared { .. }
    ));
    // A valid one is kept; a stale view is ignored.
    b.send(&PbftMessage::ViewChange(view_change(
        &b,
        2,
        1,
        Some((&x, 0)),
    )))
    .expect("valid view change");
    let stale = view_change(&b, 3, 0, None);
    assert!(is_ignored(&b.send(&PbftMessage::ViewChange(stale))));
}

/// §4.5.2: f+1 view changes for a later view make a replica join it before its own timer
/// expires (one replica alone cannot drag the others along).
#[test]
fn f_plus_one_view_changes_pull_a_replica_along() {
    let mut b = Bench::new();
    b.send(&PbftMessage::ViewChange(view_change(&b, 2, 1, None)))
        .expect("first");
    assert_eq!(b.machine.view(), 0, "one view change is not enough");
    let outputs = b
        .send(&PbftMessage::ViewChange(view_change(&b, 3, 1, None)))
        .expect("second");
    assert_eq!(b.machine.view(), 1);
    // Node 1 is view 1's primary: its own view change makes 2f+1, so it opens the view.
    let sent: Vec<PbftMessage> = broadcasts(&outputs)
        .iter()
        .map(|bytes| PbftMessage::decode(bytes).expect("decodes"))
        .collect();
    assert!(
        matches!(sent.first(), Some(PbftMessage::ViewChange(_))),
        "{sent:?}"
    );
    assert!(
        matches!(sent.get(1), Some(PbftMessage::NewView(_))),
        "{sent:?}"
    );
}

/// Each validator set's quorums, and the engine's header rules: only the view's primary
/// may produce a block.
#[test]
fn only_the_views_primary_produces_a_valid_block() {
    let b = Bench::new();
    let chain = &b.net.nodes[1].chain;
    let good = b.block(0, 0, 1);
    chain.validate_proposal(&good).expect("view 0's primary");
    let by_backup = b.block(2, 0, 1);
    let err = chain
        .validate_proposal(&by_backup)
        .expect_err("not the primary");
    assert!(err.to_string().contains("not the primary"), "{err}");
    let view_two = b.block(2, 2, 1);
    chain
        .validate_proposal(&view_two)
        .expect("view 2's primary");
    let set = VoterSet::new(b.net.nodes.iter().map(|n| n.key.address()));
    assert_eq!((set.max_faulty(), set.bft_quorum()), (1, 3));
}

// ---- validator votes ---------------------------------------------------------------------

/// Block `height`'s commit certificate signed by `signers`.
fn certify(block: &Block, view: u64, signers: &[&SecretKey]) -> Vec<u8> {
    let body = VoteBody {
        height: block.header.height,
        view,
        parent: block.header.parent,
        block: block.hash(),
        phase: Phase::Commit,
    };
    Certificate::new(
        body,
        signers
            .iter()
            .map(|k| miner::quorum::VoteSignature::sign("pbft", &body, k))
            .collect(),
    )
    .encode()
}

/// The next block by view 0's primary with `txs`, all of which must apply.
fn propose_block(chain: &Chain, primary: &SecretKey, txs: Vec<chain::Transaction>) -> Block {
    let head = chain.head();
    let mut header = chain.template(primary.address(), Timestamp(head.timestamp.0 + 1));
    header.engine.data = encode_view(0);
    let count = txs.len();
    let built = chain
        .build_block(header, txs, usize::MAX)
        .expect("template builds");
    assert!(built.skipped.is_empty(), "skipped {:?}", built.skipped);
    assert_eq!(built.block.txs.len(), count);
    let header = PbftProducer::new(primary.clone())
        .seal(built.block.header, &CancelFlag::new())
        .expect("seal")
        .expect("sealed");
    Block {
        header,
        txs: built.block.txs,
    }
}

fn propose(from: &SecretKey, nonce: u64, target: chain::Address, add: bool) -> chain::Transaction {
    chain::Transaction::signed(
        from,
        chain::test_utils::TEST_CHAIN_ID,
        nonce,
        chain::Amount::from_base_units(1_000),
        chain::TxKind::ProposeAuthority {
            address: target,
            add,
        },
    )
}

/// On-chain membership: 2f+1 = 3 of 4 validators vote a fifth in; the change is in the
/// deciding block's state, so the next height is voted on by 5 and needs
/// ⌈(5+1+1)/2⌉ = 4 COMMITs. A non-validator's vote is refused.
#[test]
fn validator_votes_take_effect_at_the_next_height() {
    let keys = keys(4);
    let eve = outsider();
    let validators: Vec<_> = keys.iter().map(SecretKey::address).collect();
    let engine = PbftEngine::new(params(validators.clone())).expect("params");
    let mut funded = validators.clone();
    funded.push(eve.address());
    let (mut chain, _clock) = engine_chain(Arc::new(engine.clone()), &funded, GENESIS_TIME + 100);

    // A stranger cannot vote.
    assert!(
        chain
            .check_tx_kind(&propose(&eve, 0, eve.address(), true))
            .is_err()
    );

    let votes: Vec<_> = keys[..3]
        .iter()
        .map(|k| propose(k, 0, eve.address(), true))
        .collect();
    let block = propose_block(&chain, &keys[0], votes);
    assert_eq!(engine.voters(chain.state()).expect("voters").len(), 4);
    chain
        .import_certified(
            block.clone(),
            certify(&block, 0, &[&keys[0], &keys[1], &keys[2]]),
        )
        .expect("3 of 4 commit height 1");
    let voters = engine.voters(chain.state()).expect("voters");
    assert_eq!(voters.len(), 5);
    assert!(voters.contains(&eve.address()));

    // Height 2: 3 COMMITs no longer suffice.
    let next = propose_block(&chain, &keys[0], Vec::new());
    let err = chain
        .import_certified(
            next.clone(),
            certify(&next, 0, &[&keys[0], &keys[1], &keys[2]]),
        )
        .expect_err("3 of 5");
    assert!(
        err.to_string()
            .contains("3 distinct signers of 5 validators, 4 needed"),
        "{err}"
    );
    chain
        .import_certified(
            next.clone(),
            certify(&next, 0, &[&keys[0], &keys[1], &keys[2], &eve]),
        )
        .expect("4 of 5, the new validator among them");
}

// ---- the normal case, step by step ------------------------------------------------------

fn timer_name(id: TimerId) -> &'static str {
    match id {
        miner::pbft::TIMER_VIEW => "view",
        miner::pbft::TIMER_BUILD => "build",
        miner::pbft::TIMER_RESEND => "resend",
        _ => "unknown",
    }
}

/// Outputs as short words: what a step table compares.
fn words(outputs: &[VoteOutput]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| match o {
            VoteOutput::Broadcast(bytes) => match PbftMessage::decode(bytes) {
                Ok(PbftMessage::PrePrepare(_)) => "send pre-prepare".into(),
                Ok(PbftMessage::Prepare(_)) => "send prepare".into(),
                Ok(PbftMessage::Commit(_)) => "send commit".into(),
                Ok(PbftMessage::ViewChange(_)) => "send view-change".into(),
                Ok(PbftMessage::NewView(_)) => "send new-view".into(),
                Err(e) => format!("send garbage: {e}"),
            },
            VoteOutput::SetTimer { id, after_millis } => {
                format!("timer {} {after_millis}", timer_name(*id))
            }
            VoteOutput::CancelTimer(id) => format!("cancel {}", timer_name(*id)),
            VoteOutput::Build { .. } => "build".into(),
            VoteOutput::Validate(_) => "validate".into(),
            VoteOutput::Commit { .. } => "decide".into(),
            VoteOutput::Persist(_) => "persist".into(),
        })
        .collect()
}

/// §4.2 normal case at the primary (node 0) and at a backup (node 1), one input at a time,
/// with the exact outputs expected (malachite's driver tests in shape). The parent is at
/// genesis + 0 s and the clock at genesis + 1 s, so the block time has passed.
#[test]
fn normal_case_steps_at_the_primary_and_a_backup() {
    let net = Net::new(4);
    let head = net.nodes[0].chain.head();
    let voters = net
        .engine
        .voters(net.nodes[0].chain.state())
        .expect("voters");
    let key = |i: usize| net.nodes[i].key.clone();
    let body = |view, block, phase| VoteBody {
        height: Height(1),
        view,
        parent: head.hash(),
        block,
        phase,
    };
    let t = START_MS;

    // The primary.
    let mut primary = PbftMachine::new(net.params.clone(), Some(key(0)), None).expect("machine");
    let step = |m: &mut PbftMachine, input| words(&m.handle(t, input).expect("step"));
    assert_eq!(
        step(
            &mut primary,
            VoteInput::Head {
                head: head.clone(),
                voters: voters.clone()
            }
        ),
        ["timer view 2000", "timer resend 1000", "timer build 0"],
        "the block time has passed: build at once; the view timer is the timeout"
    );
    assert_eq!(
        step(&mut primary, VoteInput::Timeout(miner::pbft::TIMER_BUILD)),
        ["build"]
    );
    let block = net
        .build(0, head.hash(), Timestamp(GENESIS_TIME + 1), encode_view(0))
        .expect("builds");
    let hash = block.hash();
    assert_eq!(
        step(&mut primary, VoteInput::Built(Box::new(block.clone()))),
        ["persist", "send pre-prepare", "persist", "send prepare"],
        "the primary proposes and prepares its own block, each persisted first"
    );
    let prepare = |i| {
        PbftMessage::Prepare(SignedVote::sign(
            "pbft",
            body(0, hash, Phase::Prepare),
            &key(i),
        ))
        .encode()
    };
    let commit = |i| {
        PbftMessage::Commit(SignedVote::sign(
            "pbft",
            body(0, hash, Phase::Commit),
            &key(i),
        ))
        .encode()
    };
    assert!(
        step(&mut primary, VoteInput::Message(prepare(1))).is_empty(),
        "2 of 3 prepares"
    );
    assert_eq!(
        step(&mut primary, VoteInput::Message(prepare(2))),
        ["persist", "send commit"],
        "prepared with 2f+1 = 3"
    );
    assert!(
        step(&mut primary, VoteInput::Message(commit(1))).is_empty(),
        "2 of 3 commits"
    );
    assert_eq!(
        step(&mut primary, VoteInput::Message(commit(3))),
        ["cancel view", "cancel build", "cancel resend", "decide"],
        "committed with 2f+1 = 3"
    );
    let status: BTreeMap<_, _> = primary.status().into_iter().collect();
    assert_eq!(status.get("phase").map(String::as_str), Some("committed"));
    assert_eq!(status.get("role").map(String::as_str), Some("primary"));

    // A backup: it validates before it prepares, and may hear the votes first.
    let mut backup = PbftMachine::new(net.params.clone(), Some(key(1)), None).expect("machine");
    assert_eq!(
        step(
            &mut backup,
            VoteInput::Head {
                head: head.clone(),
                voters
            }
        ),
        ["timer view 2000", "timer resend 1000"]
    );
    assert!(step(&mut backup, VoteInput::Message(commit(0))).is_empty());
    assert!(step(&mut backup, VoteInput::Message(commit(2))).is_empty());
    let proposal = PbftMessage::PrePrepare(Proposal {
        vote: SignedVote::sign("pbft", body(0, hash, Phase::Propose), &key(0)),
        block,
        justification: None,
    });
    assert_eq!(
        step(&mut backup, VoteInput::Message(proposal.encode())),
        ["validate"]
    );
    assert_eq!(
        step(&mut backup, VoteInput::Validated { hash, valid: true }),
        ["persist", "send prepare"]
    );
    assert!(step(&mut backup, VoteInput::Message(prepare(0))).is_empty());
    assert_eq!(
        step(&mut backup, VoteInput::Message(prepare(2))),
        [
            "persist",
            "send commit",
            "cancel view",
            "cancel build",
            "cancel resend",
            "decide"
        ],
        "prepared, and its own COMMIT completes the 2f+1 it had heard"
    );
}

/// §4.4: a view timer that fires without a decision sends VIEW-CHANGE to the next view
/// and doubles the next timeout; §4.5.2: a replica moves past the view it asked for only
/// after 2f+1 asked for it; an invalid proposal gets no PREPARE.
#[test]
fn view_timer_asks_for_the_next_view_and_backs_off() {
    let mut b = Bench::new();
    let block = b.block(0, 0, 1);
    let hash = block.hash();
    b.send(&b.proposal(0, 0, block)).expect("proposal");
    let outputs = b
        .machine
        .handle(START_MS, VoteInput::Validated { hash, valid: false })
        .expect("validated");
    assert!(
        words(&outputs).is_empty(),
        "no prepare for an invalid block"
    );
    let outputs = b
        .machine
        .handle(
            START_MS + 2_000,
            VoteInput::Timeout(miner::pbft::TIMER_VIEW),
        )
        .expect("timeout");
    assert_eq!(
        words(&outputs),
        [
            "cancel build",
            "timer view 4000",
            "timer resend 2000",
            "persist",
            "send view-change"
        ]
    );
    assert_eq!(b.machine.view(), 1);
    let first_request = broadcasts(&outputs);

    // §4.5.2: alone in asking, it does not run ahead to view 2; it asks again, the same
    // bytes, and waits as long again.
    let outputs = b
        .machine
        .handle(
            START_MS + 6_000,
            VoteInput::Timeout(miner::pbft::TIMER_VIEW),
        )
        .expect("timeout");
    assert_eq!(
        words(&outputs),
        ["send view-change", "timer view 4000", "timer resend 2000"]
    );
    assert_eq!(broadcasts(&outputs), first_request);
    assert_eq!(b.machine.view(), 1);

    // Two more ask for view 1, whose primary this replica is: NEW-VIEW, then a block.
    b.send(&PbftMessage::ViewChange(view_change(&b, 2, 1, None)))
        .expect("second");
    let outputs = b
        .send(&PbftMessage::ViewChange(view_change(&b, 3, 1, None)))
        .expect("third");
    assert_eq!(
        words(&outputs),
        [
            "persist",
            "send new-view",
            "timer view 4000",
            "timer resend 2000",
            "timer build 0"
        ]
    );
    // View 1 fails too: view 2, with the timeout doubled again.
    let outputs = b
        .machine
        .handle(
            START_MS + 10_000,
            VoteInput::Timeout(miner::pbft::TIMER_VIEW),
        )
        .expect("timeout");
    assert_eq!(
        words(&outputs),
        [
            "cancel build",
            "timer view 8000",
            "timer resend 4000",
            "persist",
            "send view-change"
        ]
    );
    assert_eq!(b.machine.view(), 2);
}

// ---- lock and polka (CometBFT's LockSuite, where it applies to PBFT) --------------------

/// Node 1 (the bench replica) takes view 0's proposal `x` from node 0, finds it valid and
/// prepares it, then gets the PREPAREs of `others`; returns `x` and every output, in order.
fn prepare_at_bench(b: &mut Bench, others: &[usize]) -> (Block, Vec<VoteOutput>) {
    let x = b.block(0, 0, 1);
    let hash = x.hash();
    let mut outputs = b.send(&b.proposal(0, 0, x.clone())).expect("proposal");
    outputs.extend(
        b.machine
            .handle(START_MS, VoteInput::Validated { hash, valid: true })
            .expect("validated"),
    );
    for &i in others {
        let prepare = PbftMessage::Prepare(b.vote(i, b.body(0, hash, Phase::Prepare)));
        outputs.extend(b.send(&prepare).expect("prepare"));
    }
    (x, outputs)
}

/// The replica's own broadcasts among `outputs`, decoded.
fn sent_messages(outputs: &[VoteOutput]) -> Vec<PbftMessage> {
    broadcasts(outputs)
        .iter()
        .map(|bytes| PbftMessage::decode(bytes).expect("own message decodes"))
        .collect()
}

/// The replica's view timer fires: its VIEW-CHANGE to the next view.
fn time_out(b: &mut Bench) -> Vec<VoteOutput> {
    b.machine
        .handle(
            START_MS + 2_000,
            VoteInput::Timeout(miner::pbft::TIMER_VIEW),
        )
        .expect("timeout")
}

/// CometBFT's lock and polka cases (`consensus/state_test.go`, LockSuite), read for PBFT:
/// a polka is 2f+1 PREPAREs for one block in one view (PBFT's "prepared"), and a replica
/// is locked on the block it prepared. The lock is carried by its VIEW-CHANGE, and a
/// NEW-VIEW moves it only to a block prepared in a higher view (the NEW-VIEW table above
/// has the refusals: `a lower prepared view loses` is `TestStateLock_POLSafety1`).
#[test]
fn lock_and_polka_cases_from_cometbft() {
    type Check = fn(&mut Bench);
    let cases: [(&str, &str, Check); 6] = [
        (
            "no COMMIT before a polka: two PREPAREs of three are not enough",
            "TestStateFullRound2; Castro-Liskov §4.2 prepared(m,v,n,i)",
            |b| {
                let (_, outputs) = prepare_at_bench(b, &[0]);
                assert!(
                    !words(&outputs).contains(&"send commit".to_owned()),
                    "{:?}",
                    words(&outputs)
                );
                // The same block again: `block` is deterministic.
                let x = b.block(0, 0, 1);
                let third = PbftMessage::Prepare(b.vote(2, b.body(0, x.hash(), Phase::Prepare)));
                let outputs = b.send(&third).expect("third prepare");
                assert!(
                    words(&outputs).contains(&"send commit".to_owned()),
                    "the polka makes the commit: {:?}",
                    words(&outputs)
                );
            },
        ),
        (
            "a polka without the proposal is no lock: no COMMIT for a block never seen",
            "TestStateLock_MissingProposalWhenPOLSeenDoesNotUpdateLock",
            |b| {
                let x = b.block(0, 0, 1);
                let mut said = Vec::new();
                for i in [0, 2, 3] {
                    let prepare =
                        PbftMessage::Prepare(b.vote(i, b.body(0, x.hash(), Phase::Prepare)));
                    if let Ok(outputs) = b.send(&prepare) {
                        said.extend(words(&outputs));
                    }
                }
                assert!(!said.contains(&"send commit".to_owned()), "{said:?}");
                assert!(!said.contains(&"send prepare".to_owned()), "{said:?}");
            },
        ),
        (
            "the lock outlives the view: the VIEW-CHANGE carries the prepared block and its certificate",
            "TestStateLock_NoPOL",
            |b| {
                let (x, _) = prepare_at_bench(b, &[0, 2]);
                let sent = sent_messages(&time_out(b));
                let vc = sent
                    .iter()
                    .find_map(|m| match m {
                        PbftMessage::ViewChange(vc) => Some(vc.clone()),
                        _ => None,
                    })
                    .expect("a view change");
                assert_eq!(vc.vote.body.view, 1);
                assert_eq!(vc.prepared_hash(), Some(x.hash()));
                assert_eq!(vc.prepared_view(), Some(0));
                assert_eq!(
                    vc.prepared.as_ref().map(|c| c.signatures.len()),
                    Some(3),
                    "2f+1 PREPAREs prove it"
                );
                assert_eq!(vc.block.as_ref().map(Block::hash), Some(x.hash()));
            },
        ),
        (
            "the new primary proposes the block it is locked on, not a fresh one",
            "TestProposeValidBlock",
            |b| {
                // Node 1 is view 1's primary: its own view change and two others make 2f+1.
                let (x, _) = prepare_at_bench(b, &[0, 2]);
                time_out(b);
                let mut sent = Vec::new();
                for i in [2, 3] {
                    let vc = view_change(b, i, 1, None);
                    sent.extend(sent_messages(
                        &b.send(&PbftMessage::ViewChange(vc)).expect("vc"),
                    ));
                }
                let proposal = sent
                    .iter()
                    .find_map(|m| match m {
                        PbftMessage::NewView(nv) => Some(nv.proposal.clone()),
                        _ => None,
                    })
                    .expect("a new view");
                assert_eq!(
                    proposal.map(|p| p.block.hash()),
                    Some(x.hash()),
                    "re-proposes x"
                );
            },
        ),
        (
            "a polka in a higher view moves the lock: the replica prepares the re-proposed block",
            "TestStateLock_POLUpdateLock, TestStateLock_POLRelock",
            |b| {
                let (x, _) = prepare_at_bench(b, &[0, 2]);
                // View 2 (primary node 2) re-proposes y, prepared by others in view 1.
                let y = b.block(1, 1, 2);
                assert_ne!(x.hash(), y.hash());
                let vcs = vec![
                    ViewChange {
                        block: None,
                        ..view_change(b, 0, 2, Some((&y, 1)))
                    },
                    ViewChange {
                        block: None,
                        ..view_change(b, 2, 2, None)
                    },
                    ViewChange {
                        block: None,
                        ..view_change(b, 3, 2, None)
                    },
                ];
                let proposal = Proposal {
                    vote: b.vote(2, b.body(2, y.hash(), Phase::Propose)),
                    block: y.clone(),
                    justification: None,
                };
                let outputs = b
                    .send(&PbftMessage::NewView(NewView {
                        view_changes: vcs,
                        proposal: Some(proposal),
                    }))
                    .expect("new view");
                assert!(
                    outputs
                        .iter()
                        .any(|o| matches!(o, VoteOutput::Validate(v) if v.hash() == y.hash())),
                    "{:?}",
                    words(&outputs)
                );
                let outputs = b
                    .machine
                    .handle(
                        START_MS,
                        VoteInput::Validated {
                            hash: y.hash(),
                            valid: true,
                        },
                    )
                    .expect("validated");
                let prepared: Vec<BlockHash> = sent_messages(&outputs)
                    .iter()
                    .filter_map(|m| match m {
                        PbftMessage::Prepare(v) if v.body.view == 2 => Some(v.body.block),
                        _ => None,
                    })
                    .collect();
                assert_eq!(prepared, [y.hash()]);
            },
        ),
        (
            "a polka from an earlier view does not move the lock: the NEW-VIEW must carry the highest",
            "TestStateLock_POLSafety1, TestStateLock_POLSafety2",
            |b| {
                // The replica's own lock (x, view 0) is outranked by y (view 1) in the same
                // set, so re-proposing x is refused and the replica stays in its view.
                let (x, _) = prepare_at_bench(b, &[0, 2]);
                let y = b.block(1, 1, 2);
                let vcs = vec![
                    ViewChange {
                        block: None,
                        ..view_change(b, 0, 2, Some((&x, 0)))
                    },
                    ViewChange {
                        block: None,
                        ..view_change(b, 2, 2, Some((&y, 1)))
                    },
                    ViewChange {
                        block: None,
                        ..view_change(b, 3, 2, None)
                    },
                ];
                let proposal = Proposal {
                    vote: b.vote(2, b.body(2, x.hash(), Phase::Propose)),
                    block: x.clone(),
                    justification: None,
                };
                let result = b.send(&PbftMessage::NewView(NewView {
                    view_changes: vcs,
                    proposal: Some(proposal),
                }));
                assert!(
                    matches!(result, Err(EngineError::Rejected { .. })),
                    "{result:?}"
                );
                assert_eq!(b.machine.view(), 0);
            },
        ),
    ];
    for (name, source, check) in cases {
        let mut b = Bench::new();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut b)));
        if let Err(panic) = outcome {
            eprintln!("case failed: {name} ({source})");
            std::panic::resume_unwind(panic);
        }
    }
}
