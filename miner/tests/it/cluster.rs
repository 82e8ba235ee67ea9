//! A deterministic in-memory cluster for the crash-fault voting engines (Raft,
//! Multi-Paxos, ZAB): each server a real chain and its machine, virtual time, links that
//! drop, lose or delay messages, crashes and restarts from the persisted bytes. The named
//! multi-server cases of each engine (n3 leader crash, n5 partitions, restarts, randomized
//! safety runs) drive it; what differs between the engines is said once, in
//! [`CrashFaultEngine`].

use crate::support::{GENESIS_TIME, engine_chain};
use chain::{
    Address, Block, BlockHash, BlockProducer, Chain, ChainView, ConsensusEngine, EngineError,
    Height, SecretKey, Timestamp, VoteInput, VoteOutput, VotingMachine,
};
use miner::paxos::PaxosEngine;
use miner::paxos::wire::Ballot;
use miner::raft::RaftEngine;
use miner::seal::VoteSealer;
use miner::zab::ZabEngine;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

/// One-way delay of every link.
pub const LATENCY_MS: u64 = 5;
/// Virtual time at start, a little after the chains' genesis.
pub const START_MS: u64 = (GENESIS_TIME + 10) * 1000;

/// What the harness must know of an engine beyond [`ConsensusEngine`].
pub trait CrashFaultEngine: ConsensusEngine + 'static {
    /// The status field that numbers a leadership: Raft's `term`, Multi-Paxos's `ballot`,
    /// ZAB's `epoch`.
    const ROUND_FIELD: &'static str;
    /// Whether an elected leader already holds every decided block (Raft's Leader
    /// Completeness, ZAB's initial history); a Paxos leader may be the one behind, and
    /// learns what its promisers decided.
    const LEADER_HOLDS_EVERY_DECISION: bool;

    /// The value of [`Self::ROUND_FIELD`] as a number that grows with every new leadership.
    fn round(value: &str) -> Option<u64> {
        value.parse().ok()
    }
}

impl CrashFaultEngine for RaftEngine {
    const ROUND_FIELD: &'static str = "term";
    const LEADER_HOLDS_EVERY_DECISION: bool = true;
}

impl CrashFaultEngine for PaxosEngine {
    const ROUND_FIELD: &'static str = "ballot";
    const LEADER_HOLDS_EVERY_DECISION: bool = false;

    /// A ballot reads `round.proposer`; as its packed number later ballots compare higher.
    fn round(value: &str) -> Option<u64> {
        let (round, proposer) = value.split_once('.')?;
        Some(Ballot::new(round.parse().ok()?, proposer.parse().ok()?).0)
    }
}

impl CrashFaultEngine for ZabEngine {
    const ROUND_FIELD: &'static str = "epoch";
    const LEADER_HOLDS_EVERY_DECISION: bool = true;
}

#[derive(Debug)]
pub enum Event {
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        id: chain::TimerId,
        generation: u64,
    },
}

pub struct Node {
    pub key: SecretKey,
    pub producer: VoteSealer,
    pub chain: Chain,
    /// `None` while crashed.
    pub machine: Option<Box<dyn VotingMachine>>,
    pub persisted: Option<Vec<u8>>,
    /// The generation of each pending timer: a fired timer counts only if not moved since.
    pub timers: BTreeMap<chain::TimerId, u64>,
}

pub struct Cluster<E> {
    pub engine: Arc<E>,
    pub nodes: Vec<Node>,
    pub now: u64,
    pub seq: u64,
    pub queue: BinaryHeap<Reverse<(u64, u64)>>,
    pub events: BTreeMap<u64, Event>,
    pub blocked: BTreeSet<(usize, usize)>,
    /// Every block committed by any server, by height: a second hash at one height would
    /// be a safety violation, and the harness fails on it at once.
    pub decided: BTreeMap<Height, BlockHash>,
    /// Messages sent so far (each broadcast once, however many receive it).
    pub sent: u64,
    /// Transactions offered to every block a leader builds (the mempool's part).
    pub pending: Vec<chain::Transaction>,
    /// A lossy, reordering network: each message is lost with this chance (per cent) and
    /// delayed by up to this many extra ms, both drawn from `rng`.
    pub loss_percent: u64,
    pub jitter_ms: u64,
    pub rng: Rng,
    /// Every broadcast, with its sender, while `record` is set (to count messages by kind).
    pub record: bool,
    pub recorded: Vec<(usize, Vec<u8>)>,
}

impl<E: CrashFaultEngine> Cluster<E> {
    /// Block `h` as the sole leader's chain holds it, with its certificate's bytes.
    pub fn decided_at(&self, h: u64) -> (chain::Block, Vec<u8>) {
        let (leader, _) = self.sole_leader();
        let source = &self.nodes[leader].chain;
        let hash = source
            .best_hash_at(Height(h))
            .expect("store")
            .expect("decided");
        let block = source.block(&hash).expect("store").expect("stored");
        let certificate = source.certificate(&hash).expect("store").expect("stored");
        (block, certificate)
    }

    /// A new node's chain of the same genesis (the servers funded), at block 1's parent.
    pub fn fresh_chain(&self) -> chain::Chain {
        let funded: Vec<Address> = self.nodes.iter().map(|n| n.key.address()).collect();
        let shared: Arc<dyn ConsensusEngine> = self.engine.clone();
        let (fresh, _clock) = engine_chain(shared, &funded, GENESIS_TIME + 1_000_000);
        assert_eq!(fresh.genesis().hash(), self.nodes[0].chain.genesis().hash());
        fresh
    }

    /// One node per key, all funded so they can pay for transactions, each running
    /// `engine`'s machine with its key (a key that is no server's makes an observer).
    pub fn start(keys: Vec<SecretKey>, engine: Arc<E>) -> Cluster<E> {
        let n = keys.len();
        let funded: Vec<Address> = keys.iter().map(SecretKey::address).collect();
        let shared: Arc<dyn ConsensusEngine> = engine.clone();
        let nodes = keys
            .into_iter()
            .map(|key| {
                let (chain, _clock) =
                    engine_chain(shared.clone(), &funded, GENESIS_TIME + 1_000_000);
                Node {
                    producer: VoteSealer::new(key.clone()),
                    key,
                    chain,
                    machine: None,
                    persisted: None,
                    timers: BTreeMap::new(),
                }
            })
            .collect();
        let mut cluster = Cluster {
            engine,
            nodes,
            now: START_MS,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            blocked: BTreeSet::new(),
            decided: BTreeMap::new(),
            sent: 0,
            pending: Vec::new(),
            loss_percent: 0,
            jitter_ms: 0,
            rng: Rng(1),
            record: false,
            recorded: Vec::new(),
        };
        for i in 0..n {
            cluster.restart(i);
        }
        cluster
    }

    pub fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    pub fn head_input(&self, i: usize) -> VoteInput {
        let chain = &self.nodes[i].chain;
        VoteInput::Head {
            head: chain.head(),
            voters: self.engine.voters(chain.state()).expect("voters"),
        }
    }

    /// Starts (or restarts) server `i` from the bytes it last persisted.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.timers.clear();
        node.machine = self
            .engine
            .voting_machine(Some(&node.key), node.persisted.as_deref())
            .expect("restores")
            .map(Some)
            .expect("a voting engine has a machine");
        let head = self.head_input(i);
        self.feed(i, head);
    }

    /// What a node's range sync does: imports the certified blocks `from` has above
    /// `i`'s head, then tells `i`'s machine the new head.
    pub fn sync(&mut self, i: usize, from: usize) {
        let start = self.height(i) + 1;
        for h in start..=self.height(from) {
            let source = &self.nodes[from].chain;
            let hash = source
                .best_hash_at(Height(h))
                .expect("store")
                .expect("on the chain");
            let block = source.block(&hash).expect("store").expect("stored");
            let certificate = source
                .certificate(&hash)
                .expect("store")
                .expect("certified");
            self.nodes[i]
                .chain
                .import_certified(block, certificate)
                .expect("a synced block imports with its certificate");
        }
        let head = self.head_input(i);
        self.feed(i, head);
    }

    pub fn crash(&mut self, i: usize) {
        self.nodes[i].machine = None;
        self.nodes[i].timers.clear();
    }

    /// Cuts every link between the groups (both ways).
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (a, ga) in groups.iter().enumerate() {
            for (b, gb) in groups.iter().enumerate() {
                if a != b {
                    for &x in *ga {
                        for &y in *gb {
                            self.blocked.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    pub fn isolate(&mut self, i: usize) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|j| *j != i).collect();
        self.partition(&[&[i], &others]);
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn build(
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
        let mut header = node.chain.template(node.key.address(), timestamp);
        header.engine.data = data;
        node.producer
            .prepare(&node.chain, &head, &mut header)
            .expect("prepare");
        let built = node
            .chain
            .build_block(header, self.pending.clone(), usize::MAX)
            .expect("builds")
            .block;
        let header = node
            .producer
            .seal(built.header, &chain::CancelFlag::new())
            .expect("seals")
            .expect("not cancelled");
        Some(Block {
            header,
            txs: built.txs,
        })
    }

    /// Gives server `i` an input and carries out everything it asks, in order.
    pub fn feed(&mut self, i: usize, input: VoteInput) {
        let mut inputs = std::collections::VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = self.now;
            let Some(machine) = self.nodes[i].machine.as_mut() else {
                return;
            };
            let outputs = match machine.handle(now, input) {
                Ok(outputs) => outputs,
                Err(EngineError::Ignored { .. }) => continue,
                Err(e) => panic!("server {i} refused an honest input: {e}"),
            };
            for output in outputs {
                match output {
                    VoteOutput::Persist(bytes) => self.nodes[i].persisted = Some(bytes),
                    VoteOutput::Broadcast(bytes) => {
                        self.sent += 1;
                        if self.record {
                            self.recorded.push((i, bytes.clone()));
                        }
                        for j in 0..self.nodes.len() {
                            if j == i || self.blocked.contains(&(i, j)) {
                                continue;
                            }
                            if self.loss_percent > 0 && self.rng.below(100) < self.loss_percent {
                                continue;
                            }
                            let jitter = if self.jitter_ms > 0 {
                                self.rng.below(self.jitter_ms + 1)
                            } else {
                                0
                            };
                            let event = Event::Deliver {
                                from: i,
                                to: j,
                                bytes: bytes.clone(),
                            };
                            self.schedule(now + LATENCY_MS + jitter, event);
                        }
                    }
                    VoteOutput::SetTimer { id, after_millis } => {
                        self.seq += 1;
                        let generation = self.seq;
                        self.nodes[i].timers.insert(id, generation);
                        let event = Event::Timer {
                            node: i,
                            id,
                            generation,
                        };
                        self.schedule(now + after_millis, event);
                    }
                    VoteOutput::CancelTimer(id) => {
                        self.nodes[i].timers.remove(&id);
                    }
                    VoteOutput::Build {
                        parent,
                        timestamp,
                        data,
                    } => {
                        if let Some(block) = self.build(i, parent, timestamp, data) {
                            inputs.push_back(VoteInput::Built(Box::new(block)));
                        }
                    }
                    VoteOutput::Commit { block, certificate } => {
                        let (height, hash) = (block.header.height, block.hash());
                        let outcome = self.nodes[i]
                            .chain
                            .import_certified(*block, certificate)
                            .unwrap_or_else(|e| panic!("server {i} cannot import {hash}: {e}"));
                        assert!(
                            matches!(outcome, chain::ImportOutcome::NewHead(_)),
                            "server {i}: {outcome:?}"
                        );
                        let decided = *self.decided.entry(height).or_insert(hash);
                        assert_eq!(decided, hash, "two blocks decided at height {height}");
                        inputs.push_back(self.head_input(i));
                    }
                    VoteOutput::Validate(_) => {
                        panic!("a crash-fault engine asks for no validation")
                    }
                }
            }
        }
    }

    /// Splits a cluster of five into the leader with one follower, and the other three
    /// (cutting every link between the two groups); gives (minority, majority).
    pub fn split_2_3(&mut self) -> (Vec<usize>, Vec<usize>) {
        let (old, _) = self.sole_leader();
        let minority = vec![old, (old + 1) % 5];
        let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
        self.partition(&[&minority, &majority]);
        (minority, majority)
    }

    /// On a network that loses 5% of messages and reorders them (up to 30 ms extra
    /// delay): every second for twelve seconds the network is split at random, a server
    /// crashes or one comes back, as drawn from `seed`. Ends healed, lossless, with every
    /// server running.
    pub fn random_faults(&mut self, seed: u64) {
        let n = self.nodes.len();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        self.rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        self.loss_percent = 5;
        self.jitter_ms = 30;
        self.run_for(2_000);
        for _ in 0..12 {
            self.heal();
            match rng.below(4) {
                0 => {
                    let cut = 1 + rng.below(n as u64 / 2 + 1) as usize;
                    let (a, b): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| *i < cut);
                    self.partition(&[&a, &b]);
                }
                1 => self.isolate(rng.below(n as u64) as usize),
                2 => {
                    let i = rng.below(n as u64) as usize;
                    if self.nodes[i].machine.is_some() {
                        self.crash(i);
                    } else {
                        self.restart(i);
                    }
                }
                _ => {}
            }
            self.run_for(1_000);
        }
        self.heal();
        self.loss_percent = 0;
        self.jitter_ms = 0;
        for i in 0..n {
            if self.nodes[i].machine.is_none() {
                self.restart(i);
            }
        }
    }

    /// Runs the next event; false when none is due by `until`.
    pub fn step(&mut self, until: u64) -> bool {
        let Some(Reverse((at, seq))) = self.queue.peek().copied() else {
            return false;
        };
        if at > until {
            return false;
        }
        self.queue.pop();
        self.now = at;
        match self.events.remove(&seq) {
            Some(Event::Deliver { from, to, bytes })
                if self.nodes[to].machine.is_some() && !self.blocked.contains(&(from, to)) =>
            {
                self.feed(to, VoteInput::Message(bytes));
            }
            Some(Event::Timer {
                node,
                id,
                generation,
            }) if self.nodes[node].timers.get(&id) == Some(&generation) => {
                self.nodes[node].timers.remove(&id);
                self.feed(node, VoteInput::Timeout(id));
            }
            // Dropped on the way (the link is cut or the server is down), or a timer that
            // was moved or cancelled since.
            _ => {}
        }
        true
    }

    pub fn run_for(&mut self, millis: u64) {
        let until = self.now + millis;
        while self.step(until) {}
        self.now = until;
    }

    /// Runs until `done` holds (checked after each event); returns the time, or fails
    /// after `limit` ms.
    pub fn run_until(&mut self, limit: u64, done: impl Fn(&Cluster<E>) -> bool) -> u64 {
        let until = self.now + limit;
        while !done(self) {
            assert!(self.step(until), "not reached within {limit} ms");
        }
        self.now
    }

    pub fn status(&self, i: usize, field: &str) -> Option<String> {
        let machine = self.nodes[i].machine.as_ref()?;
        machine
            .status()
            .into_iter()
            .find(|(name, _)| *name == field)
            .map(|(_, value)| value)
    }

    /// Server `i`'s term, ballot or epoch ([`CrashFaultEngine::ROUND_FIELD`]), as a number
    /// that grows with every new leadership.
    pub fn term(&self, i: usize) -> u64 {
        let value = self
            .status(i, E::ROUND_FIELD)
            .unwrap_or_else(|| panic!("server {i} is running and has a {}", E::ROUND_FIELD));
        E::round(&value).unwrap_or_else(|| panic!("server {i}: {} {value}", E::ROUND_FIELD))
    }

    /// The running servers that lead, with their terms.
    pub fn leaders(&self) -> Vec<(usize, u64)> {
        (0..self.nodes.len())
            .filter(|i| self.status(*i, "role").as_deref() == Some("leader"))
            .map(|i| (i, self.term(i)))
            .collect()
    }

    /// The one leader among the running servers.
    pub fn sole_leader(&self) -> (usize, u64) {
        match self.leaders().as_slice() {
            [one] => *one,
            other => panic!("expected one leader, got {other:?}"),
        }
    }

    pub fn height(&self, i: usize) -> u64 {
        self.nodes[i].chain.head().height().0
    }

    /// Every server of `nodes` is past `height`, holds only decided blocks, and all end on
    /// one head.
    pub fn assert_one_chain_above(&self, nodes: &[usize], height: u64) {
        for &i in nodes {
            assert!(
                self.height(i) > height,
                "server {i} at {} after {height}",
                self.height(i)
            );
            self.assert_chain_is_decided(i);
        }
        let head = self.nodes[nodes[0]].chain.head().hash();
        for &i in nodes {
            assert_eq!(self.nodes[i].chain.head().hash(), head, "server {i}");
        }
    }

    /// Every block on server `i`'s chain is the one decided at its height.
    pub fn assert_chain_is_decided(&self, i: usize) {
        let chain = &self.nodes[i].chain;
        for h in 1..=chain.head().height().0 {
            let hash = chain
                .best_hash_at(Height(h))
                .expect("store")
                .expect("on the chain");
            assert_eq!(
                self.decided.get(&Height(h)),
                Some(&hash),
                "server {i} height {h}"
            );
        }
    }
}

/// The servers of a cluster of five after [`Cluster::minority_partition`] or
/// [`Cluster::partition_heals`].
pub struct Split {
    /// The leader before the split, with its round.
    pub old: (usize, u64),
    /// The leader now, with its round.
    pub leader: (usize, u64),
    pub minority: Vec<usize>,
    pub majority: Vec<usize>,
}

/// The named multi-server cases every crash-fault engine runs, the part they share; each
/// engine's test adds what is its own (how long an election takes, what a cut-off server
/// does, what it persisted).
impl<E: CrashFaultEngine> Cluster<E> {
    /// n3 leader crash: after 3 s of blocks the leader crashes; the two left lead again
    /// (`elected` holds) within `took` ms of the crash, with a later round, and 4 s later
    /// both are three blocks past the crash height on one decided chain, under that
    /// leader still.
    pub fn leader_crash_reelects(
        &mut self,
        elected: impl Fn(&Cluster<E>) -> bool,
        took: std::ops::Range<u64>,
    ) {
        self.run_for(3_000);
        let (old, term) = self.sole_leader();
        let height = self.height(old);
        assert!(height >= 2, "a block a second: {height}");
        self.crash(old);
        let crashed_at = self.now;
        let elected_at = self.run_until(2_000, elected);
        let (new, new_term) = self.sole_leader();
        assert_ne!(new, old);
        assert!(new_term > term);
        let after = elected_at - crashed_at;
        assert!(took.contains(&after), "re-elected after {after} ms");
        self.run_for(4_000);
        let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        self.assert_one_chain_above(&survivors, height + 2);
        assert_eq!(self.sole_leader(), (new, new_term), "no further election");
    }

    /// n3 restart: a follower (whose persisted bytes `persisted` checks against the
    /// leader's round) crashes while the two others commit; restarted from those bytes it
    /// has the leader's round back, is brought up to the leader's head on the decided
    /// chain, and the leader leads on in its round.
    pub fn restart_follower_catches_up(&mut self, persisted: impl Fn(&[u8], u64)) {
        self.run_for(3_000);
        let (leader, term) = self.sole_leader();
        let follower = (leader + 1) % 3;
        persisted(
            self.nodes[follower]
                .persisted
                .as_deref()
                .expect("persisted"),
            term,
        );
        let height = self.height(follower);
        self.crash(follower);
        self.run_for(3_000);
        assert!(self.height(leader) >= height + 2, "the other two commit");
        assert_eq!(self.height(follower), height);
        self.restart(follower);
        assert_eq!(
            self.term(follower),
            term,
            "{} restored from the persisted bytes",
            E::ROUND_FIELD
        );
        self.run_for(2_000);
        assert_eq!(
            self.nodes[follower].chain.head().hash(),
            self.nodes[leader].chain.head().hash(),
            "brought up to the leader's head"
        );
        self.assert_chain_is_decided(follower);
        assert_eq!(
            self.sole_leader(),
            (leader, term),
            "the restart disrupts nothing"
        );
    }

    /// n5 minority partition: after 3 s of blocks the leader and one follower are cut off
    /// from the three others for 5 s. Nothing the old leader built after the split was
    /// committed, by it or anyone; the majority elected a leader of a later round and
    /// committed three blocks or more on decided chains.
    pub fn minority_partition(&mut self) -> Split {
        self.run_for(3_000);
        let (old, term) = self.sole_leader();
        let frozen = self.height(old);
        let (minority, majority) = self.split_2_3();
        self.run_for(5_000);
        assert_eq!(self.height(old), frozen);
        for &i in &minority {
            assert!(self.height(i) <= frozen, "server {i} at {}", self.height(i));
        }
        let (new, new_term) = self.sole_leader();
        assert!(majority.contains(&new) && new_term > term);
        for &i in &majority {
            assert!(
                self.height(i) >= frozen + 3,
                "server {i} at {}",
                self.height(i)
            );
            self.assert_chain_is_decided(i);
        }
        Split {
            old: (old, term),
            leader: (new, new_term),
            minority,
            majority,
        }
    }

    /// n5 partition heals: the split of [`Cluster::minority_partition`] for 5 s, then 4 s
    /// healed. Every block committed anywhere is on every chain, at its height, every
    /// server is past the majority's height before the heal, and the minority ends on the
    /// leader's head, the highest decided block.
    pub fn partition_heals(&mut self) -> Split {
        self.run_for(3_000);
        let old = self.sole_leader();
        let (minority, majority) = self.split_2_3();
        self.run_for(5_000);
        let before_heal = majority
            .iter()
            .map(|i| self.height(*i))
            .max()
            .expect("three");
        self.heal();
        self.run_for(4_000);
        let (leader, term) = self.sole_leader();
        let head = self.nodes[leader].chain.head().hash();
        for i in 0..self.nodes.len() {
            self.assert_chain_is_decided(i);
            assert!(
                self.height(i) > before_heal,
                "server {i} at {}",
                self.height(i)
            );
        }
        for &i in &minority {
            assert_eq!(
                self.nodes[i].chain.head().hash(),
                head,
                "server {i} caught up"
            );
        }
        let top = self.decided.keys().next_back().expect("decided").0;
        assert_eq!(self.height(leader), top);
        Split {
            old,
            leader: (leader, term),
            minority,
            majority,
        }
    }
}

/// A small deterministic generator for the randomized runs (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Over (servers, seed), on a network that loses 5% of messages and reorders them (up to
/// 30 ms extra delay): every second the network is split at random, a server crashes or
/// one comes back ([`Cluster::random_faults`]); the harness fails at once if two blocks
/// are ever decided at one height. Healed and whole again, every server ends on the same
/// chain, and it grew. `make(n)` gives a fresh cluster of `n` servers; `cases` are the
/// (servers, seed) runs.
pub fn randomized_partitions_and_crashes<E: CrashFaultEngine>(
    make: impl Fn(usize) -> Cluster<E>,
    cases: &[(usize, u64)],
) {
    for &(n, seed) in cases {
        let mut c = make(n);
        c.random_faults(seed);
        let grown = *c.decided.keys().next_back().expect("decided");
        c.run_for(5_000);
        // What the leader's log no longer holds (past its window, or from before it
        // restarted) a server syncs, as its node would on seeing a higher peer. Where a
        // leader may be the one behind (Paxos) every server syncs from the highest, the
        // leader too, which then learns what its promisers decided before it proposes.
        let leader = E::LEADER_HOLDS_EVERY_DECISION.then(|| c.sole_leader().0);
        let source =
            leader.unwrap_or_else(|| (0..n).max_by_key(|i| c.height(*i)).expect("servers"));
        for i in 0..n {
            if c.height(i) < c.height(source) {
                c.sync(i, source);
            }
        }
        c.run_for(2_000);
        let leader = leader.unwrap_or_else(|| c.sole_leader().0);
        let head = c.nodes[leader].chain.head().hash();
        for i in 0..n {
            c.assert_chain_is_decided(i);
            assert_eq!(
                c.nodes[i].chain.head().hash(),
                head,
                "n={n} seed={seed} server {i}"
            );
        }
        assert!(
            c.height(leader) > grown.0,
            "n={n} seed={seed}: the healed cluster decides again"
        );
    }
}

/// Flips each byte of the valid message `good` in turn and gives it to `feed` (a fresh
/// machine each time): nothing panics, every refusal is bad data or merely ignored (never
/// a missing store), and all but at most `free` positions are refused (the recipient's
/// bytes can change harmlessly: the message is then someone else's).
pub fn assert_corruptions_refused(
    good: &[u8],
    free: usize,
    mut feed: impl FnMut(Vec<u8>) -> Result<Vec<VoteOutput>, EngineError>,
) {
    let mut refused = 0;
    for at in 0..good.len() {
        let mut bytes = good.to_vec();
        bytes[at] ^= 0x5a;
        if let Err(e) = feed(bytes) {
            assert!(
                e.is_bad_data() || matches!(e, EngineError::Ignored { .. }),
                "{e}"
            );
            refused += 1;
        }
    }
    assert!(refused >= good.len() - free, "{refused} of {}", good.len());
}

/// The engine's typed refusal (`E`) of importing `block` with `certificate` into `chain`.
pub fn import_refusal<E: std::error::Error + Clone + 'static>(
    chain: &mut Chain,
    block: &Block,
    certificate: Vec<u8>,
) -> E {
    match chain.import_certified(block.clone(), certificate) {
        Err(chain::BlockError::Engine(e)) => e
            .downcast_ref::<E>()
            .cloned()
            .unwrap_or_else(|| panic!("not the engine's refusal: {e}")),
        other => panic!("expected the engine's refusal, got {other:?}"),
    }
}

/// A block on `chain`'s head built and sealed by `key` with engine `data`.
pub fn build_on(chain: &Chain, key: &SecretKey, data: Vec<u8>) -> Block {
    let head = chain.head();
    let mut header = chain.template(key.address(), Timestamp(head.timestamp.0 + 1));
    header.engine.data = data;
    let built = chain
        .build_block(header, Vec::new(), usize::MAX)
        .expect("builds")
        .block;
    Block {
        header: miner::seal::sign_header(built.header, key),
        txs: built.txs,
    }
}

/// `n` server keys from `label` ("raft server 0", …), in address order, so server `i` is
/// the `i`-th address (and Paxos's ballot index `i`).
pub fn server_keys(label: &str, n: usize) -> Vec<SecretKey> {
    let mut keys: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_seed(&format!("{label} {i}")))
        .collect();
    keys.sort_by_key(SecretKey::address);
    keys
}

/// The genesis header the pure machines are handed as their first head.
pub fn genesis_header() -> chain::SealedHeader {
    chain::SealedHeader::new(chain::Header {
        version: chain::block::HEADER_VERSION,
        parent: BlockHash([0; 32]),
        height: Height(0),
        timestamp: Timestamp(GENESIS_TIME),
        tx_root: chain::Hash256::ZERO,
        state_root: chain::Hash256::ZERO,
        producer: Address::default(),
        engine: chain::EngineFields::default(),
    })
}
