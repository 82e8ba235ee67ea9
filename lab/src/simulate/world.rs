//! The simulation loop: N nodes, one network, one queue of events, one clock.
//!
//! Every event sets the shared clock to its time first, so the chain's checks (timestamps
//! against the clock) and the engines' schedules see virtual time only. A node acts on an
//! event alone and answers with new events: a turn makes a block, which is imported and
//! gossiped to the peers; a delivery is imported (a duplicate is ignored, a block whose
//! parent is missing waits for it while the parent is asked of the sender); a new head
//! makes any turn planned on the old one stale and asks the producer again.
//!
//! A voting engine's nodes have no turns: each runs its machine ([`voting`]), whose
//! messages and timers are events like the others and whose decisions are imported with
//! their certificates.
//!
//! What the record gets is what `toychain compare`'s collector would see with a poll at
//! every instant: each node's head whenever it changes, and each block from the moment
//! some node had it on its best chain.

use super::network::{Delivery, LinkModel, Network};
use super::node::{Orphan, Plan, Problem, SimNode, Wire, retry_after};
use super::queue::{EventQueue, Millis};
use super::random::{SimRng, Stream};
use super::selfish::SelfishMiner;
use crate::compare::faults::{Fault, second_half};
use crate::compare::record::{BlockTree, NodeCounters, RunRecord, Submitted};
use crate::workload::{MAX_AMOUNT, code_kind};
use chain::{
    Block, BlockError, BlockHash, BlockId, ChainId, ChainView, Header, ImportOutcome, ManualClock,
    SecretKey, Transaction, Turn,
};
use config::ChainSpec;
use node::rpc::mempool_error_code;
use std::collections::BTreeMap;
use std::sync::Arc;

use mining::Mining;
use recorder::Recorder;
use voting::{Seat, VoteMessage};
pub use voting::{Traced, VoteEvent, VoteProbe, VoteStats};

/// A decided block's certificate as it travels with the block (shared by every copy).
type Certificate = Arc<Vec<u8>>;

/// Bytes of a request for one block by hash.
const REQUEST_BYTES: usize = 64;
/// Bytes of a status message (a head hash and height).
const STATUS_BYTES: usize = 48;

/// Everything one engine's run is made of.
#[derive(Debug)]
pub struct Setup {
    pub spec: ChainSpec,
    /// Node i's name and key.
    pub authors: Vec<(String, SecretKey)>,
    pub link: LinkModel,
    /// Peers per node (a node count minus one: a full mesh).
    pub peers: usize,
    /// PoW: each node's share of the hash power (summing to 1).
    pub hash_shares: Vec<f64>,
    /// PoW: the node that mines selfishly ([`super::selfish`]).
    pub selfish: Option<usize>,
    pub seed: u64,
    /// Transfers a virtual second.
    pub tx_rate: f64,
    /// The accounts that send and receive them.
    pub traders: Vec<SecretKey>,
    pub duration_ms: Millis,
    /// Faults injected ([`crate::compare::faults`]).
    pub faults: Vec<Fault>,
    /// What a sweep watches in a voting engine's run ([`voting`]).
    pub probe: VoteProbe,
    /// The coin-age dusting attacker's key, if one attacks ([`Dust`]); the spec must fund it.
    pub dust: Option<SecretKey>,
}

/// A simulated run: the record the metrics are computed from, and what went wrong how often.
#[derive(Debug)]
pub struct Outcome {
    pub record: RunRecord,
    pub problems: BTreeMap<Problem, u64>,
    pub events: u64,
    /// Blocks a node asked a peer for, because a child came first.
    pub requests: u64,
    /// The node `kill-producer` (or the probe) took down.
    pub killed: Option<usize>,
    /// A voting engine's consensus traffic and trace.
    pub votes: VoteStats,
}

#[derive(Debug)]
enum Event {
    /// A signing producer's turn, planned in `epoch`.
    Turn { node: usize, epoch: u64, turn: Turn },
    /// A proof-of-work template planned in `epoch` is solved.
    Solve {
        node: usize,
        epoch: u64,
        header: Box<Header>,
        candidates: Vec<Transaction>,
    },
    /// Ask the producer again.
    Retry { node: usize, epoch: u64 },
    /// A block reaches `to`: gossip, or the answer to a request.
    Block {
        to: usize,
        from: usize,
        block: Arc<Wire<Block>>,
        /// A voting engine's block travels with its certificate.
        certificate: Option<Certificate>,
        gossip: bool,
    },
    /// A consensus message reaches `to`.
    Vote {
        to: usize,
        from: usize,
        message: Arc<VoteMessage>,
    },
    /// A voting machine's timer, set in `generation`.
    VoteTimer {
        node: usize,
        id: chain::TimerId,
        generation: u64,
    },
    Tx {
        to: usize,
        from: usize,
        tx: Arc<Wire<Transaction>>,
    },
    /// `asker` asks `to` for the block `hash`.
    Request {
        to: usize,
        asker: usize,
        hash: BlockHash,
    },
    /// The load generator's next transfer.
    Submit,
    /// `kill-producer`: the newest block's producer goes down for good.
    Kill,
    /// A partition ends: each node tells the peers it was cut off from its head, as the
    /// real node's status exchange does, so each side learns the other's blocks.
    Heal,
}

impl Event {
    /// The node that handles the event, if one does.
    fn node(&self) -> Option<usize> {
        match self {
            Event::Turn { node, .. }
            | Event::Solve { node, .. }
            | Event::Retry { node, .. }
            | Event::VoteTimer { node, .. } => Some(*node),
            Event::Block { to, .. }
            | Event::Tx { to, .. }
            | Event::Request { to, .. }
            | Event::Vote { to, .. } => Some(*to),
            Event::Submit | Event::Kill | Event::Heal => None,
        }
    }
}

/// The faults in force: who is down, when the halves are cut off, the added delay.
#[derive(Debug, Default)]
struct Faults {
    down: Vec<bool>,
    /// `[from, until)` in virtual ms.
    partitions: Vec<(Millis, Millis)>,
    delay: Millis,
    killed: Option<usize>,
}

impl Faults {
    /// Whether `a` and `b` can reach each other at `at`.
    fn linked(&self, at: Millis, a: usize, b: usize) -> bool {
        let n = self.down.len();
        !self.down[a]
            && !self.down[b]
            && !self.partitions.iter().any(|(from, until)| {
                (*from..*until).contains(&at) && second_half(a, n) != second_half(b, n)
            })
    }
}

/// The seeded transfers: transfer k is due `k / rate` seconds after the start; the
/// sender, receiver and amount are drawn as `compare`'s generator draws them, and each
/// sender always goes through the same node (the k-th account through node k mod N).
#[derive(Debug)]
struct Load {
    rate: f64,
    traders: Vec<SecretKey>,
    rng: SimRng,
    sent: u64,
}

impl Load {
    fn due(&self, start: Millis) -> Millis {
        start + (self.sent as f64 * 1000.0 / self.rate).round() as Millis
    }
}

/// The coin-age dusting attack (issue 16): at every new head of its node (genesis
/// included), the attacker signs one transfer of 1 base unit to every author, paying the
/// spec's minimum relay fee, with its pending nonce, and submits it there as the load
/// submits (mempool, then gossip). Under a rule where received coins restart an account's
/// age, this keeps every staker below `stake_min_age` for as long as it runs.
#[derive(Debug)]
struct Dust {
    key: SecretKey,
    /// The node the attacker submits through.
    node: usize,
    receivers: Vec<chain::Address>,
    fee: chain::Amount,
}

/// The node the dusting attacker submits through.
const DUST_NODE: usize = 0;

#[derive(Debug)]
struct World {
    nodes: Vec<SimNode>,
    net: Network,
    queue: EventQueue<Event>,
    clock: Arc<ManualClock>,
    start: Millis,
    retry: Millis,
    mining: Option<Mining>,
    load: Option<Load>,
    dust: Option<Dust>,
    chain_id: ChainId,
    recorder: Recorder,
    problems: BTreeMap<Problem, u64>,
    requests: u64,
    /// The selfish miner and its node.
    selfish: Option<(usize, SelfishMiner<Arc<Wire<Block>>>)>,
    faults: Faults,
    /// A voting engine's machines, one per node; empty for a block engine.
    seats: Vec<Seat>,
    probe: VoteProbe,
    votes: VoteStats,
    /// The probe has what it wanted: the run ends.
    done: bool,
}

/// Runs one engine's simulation; `progress` hears the virtual seconds done.
pub fn simulate(setup: Setup, progress: &mut dyn FnMut(u64)) -> anyhow::Result<Outcome> {
    let mut world = World::new(&setup)?;
    let start = world.start;
    let end = start.saturating_add(setup.duration_ms);
    world.begin();
    let mut events = 0u64;
    let mut reported = start;
    while !world.done
        && let Some((at, event)) = world.queue.pop_until(end)
    {
        world.clock.set_millis(at);
        world.handle(at, event);
        events += 1;
        if at >= reported + 1000 {
            reported = at;
            progress((at - start) / 1000);
        }
    }
    world.clock.set_millis(end);
    progress(setup.duration_ms / 1000);
    Ok(world.finish(
        setup.spec,
        setup.authors.iter(),
        setup.duration_ms,
        events,
        setup.faults,
    ))
}

/// How far ahead node `node`'s clock runs, ms, by the run's `clock-skew` faults.
fn skew_of(faults: &[Fault], node: usize) -> i64 {
    faults
        .iter()
        .find_map(|f| match f {
            Fault::ClockSkew { node: n, secs } if *n == node => Some(secs * 1000),
            _ => None,
        })
        .unwrap_or(0)
}

impl World {
    /// The nodes at genesis, the network, the producers' and machines' state, and the
    /// faults scheduled.
    fn new(setup: &Setup) -> anyhow::Result<World> {
        // Every node applies every block: expand each state change once for all of them.
        chain::state::memoize_expansions();
        let start: Millis = setup.spec.genesis.timestamp.saturating_mul(1000);
        let clock = Arc::new(ManualClock::new(chain::Timestamp(
            setup.spec.genesis.timestamp,
        )));
        let nodes = setup
            .authors
            .iter()
            .enumerate()
            .map(|(i, (name, key))| {
                let skew = skew_of(&setup.faults, i);
                SimNode::open(name.clone(), key, &setup.spec, clock.clone(), skew)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let n = nodes.len();
        let mut topology = SimRng::new(setup.seed, Stream::Topology);
        let net = Network::new(
            n,
            setup.link,
            setup.peers,
            &mut topology,
            SimRng::new(setup.seed, Stream::Network),
        );
        let kind = setup.spec.engine.kind();
        let mining = kind
            .mines()
            .then(|| Mining::new(&setup.spec, &setup.hash_shares, setup.seed));
        let load = (setup.tx_rate > 0.0 && setup.traders.len() >= 2).then(|| Load {
            rate: setup.tx_rate,
            traders: setup.traders.clone(),
            rng: SimRng::new(setup.seed, Stream::Load),
            sent: 0,
        });
        let mut world = World {
            retry: retry_after(&setup.spec.engine),
            chain_id: ChainId(setup.spec.chain_id),
            recorder: Recorder {
                start,
                nodes: n,
                blocks: BlockTree::new(),
                observations: Vec::new(),
                submitted: Vec::new(),
                submit_errors: BTreeMap::new(),
            },
            nodes,
            net,
            queue: EventQueue::default(),
            clock,
            start,
            mining,
            load,
            dust: setup.dust.clone().map(|key| Dust {
                key,
                node: DUST_NODE,
                receivers: setup.authors.iter().map(|(_, k)| k.address()).collect(),
                fee: setup.spec.policy.min_relay_fee,
            }),
            problems: BTreeMap::new(),
            requests: 0,
            selfish: setup
                .selfish
                .filter(|node| *node < n)
                .map(|node| (node, SelfishMiner::new(0))),
            faults: Faults {
                down: vec![false; n],
                ..Faults::default()
            },
            seats: Vec::new(),
            probe: setup.probe,
            votes: VoteStats::default(),
            done: false,
        };
        if kind.votes() {
            let keys: Vec<SecretKey> = setup.authors.iter().map(|(_, k)| k.clone()).collect();
            world.seats = voting::seats(&world, &keys)?;
        }
        world.schedule_faults(&setup.faults);
        Ok(world)
    }

    /// Puts the kills and heals on the queue and the partitions and delay in force.
    fn schedule_faults(&mut self, faults: &[Fault]) {
        let start = self.start;
        for fault in faults {
            match *fault {
                Fault::KillProducer { at_s } => self.queue.push(start + at_s * 1000, Event::Kill),
                Fault::Partition { at_s, duration_s } => {
                    let from = start + at_s * 1000;
                    let until = from + duration_s * 1000;
                    self.faults.partitions.push((from, until));
                    self.queue.push(until, Event::Heal);
                }
                Fault::Delay { ms } => self.faults.delay += ms,
                Fault::ClockSkew { .. } => {}
            }
        }
    }

    fn count(&mut self, problem: Problem) {
        *self.problems.entry(problem).or_default() += 1;
    }

    /// Genesis as every node's first head, each producer's first turn, the first transfer.
    fn begin(&mut self) {
        let genesis = self.nodes[0].chain().genesis().hash();
        if let Ok(Some(block)) = self.nodes[0].chain().block(&genesis) {
            let seen = self.recorder.seen_block(&block, 0.0, true);
            self.recorder.blocks.insert(genesis, seen);
        }
        for node in 0..self.nodes.len() {
            self.nodes[node].first_sight_of_block(genesis);
            self.recorder
                .head_changed(self.start, node, self.nodes[node].chain(), &[]);
            if self.voting() {
                self.vote_head(self.start, node);
            } else {
                self.plan(node, self.start);
            }
        }
        self.dust(self.start);
        if let Some(load) = &self.load {
            self.queue.push(load.due(self.start), Event::Submit);
        }
    }

    fn handle(&mut self, at: Millis, event: Event) {
        if event.node().is_some_and(|node| self.faults.down[node]) {
            return;
        }
        match event {
            Event::Turn { node, epoch, turn } => {
                if self.nodes[node].epoch == epoch {
                    let made = self.nodes[node].sign(turn);
                    self.made(at, node, made);
                }
            }
            Event::Solve {
                node,
                epoch,
                header,
                candidates,
            } => {
                if self.nodes[node].epoch == epoch {
                    let made = self.nodes[node].solved(*header, candidates);
                    self.made(at, node, made);
                }
            }
            Event::Retry { node, epoch } => {
                if self.nodes[node].epoch == epoch {
                    self.plan(node, at);
                }
            }
            Event::Block {
                to,
                from,
                block,
                certificate,
                gossip,
            } => self.receive_block(at, to, from, block, certificate, gossip),
            Event::Vote { to, from, message } => self.receive_vote(at, to, from, message),
            Event::VoteTimer {
                node,
                id,
                generation,
            } => self.vote_timer(at, node, id, generation),
            Event::Tx { to, from, tx } => self.receive_tx(at, to, from, tx),
            Event::Request { to, asker, hash } => self.answer(at, to, asker, hash),
            Event::Submit => self.submit(at),
            Event::Kill => self.kill(),
            Event::Heal => self.heal(at),
        }
    }

    /// Takes down the producer of the newest block on the first live node's best chain.
    fn kill(&mut self) {
        let Some(witness) = (0..self.nodes.len()).find(|n| !self.faults.down[*n]) else {
            return;
        };
        let producer = self.nodes[witness].chain().head().producer;
        let victim = self
            .nodes
            .iter()
            .position(|node| node.author() == producer)
            .unwrap_or(witness);
        self.faults.down[victim] = true;
        self.faults.killed = Some(victim);
    }

    /// Each live node sends its head to the peers it was cut off from; a peer missing it
    /// fetches the chain below it from the sender.
    fn heal(&mut self, at: Millis) {
        let n = self.nodes.len();
        for node in 0..n {
            if self.faults.down[node] {
                continue;
            }
            let head = self.nodes[node].chain().head_id().hash;
            let Some((block, certificate)) = self.shipped(node, &head) else {
                continue;
            };
            for peer in self.net.peers(node).to_vec() {
                if second_half(node, n) == second_half(peer, n) {
                    continue;
                }
                let bytes =
                    STATUS_BYTES + block.bytes + certificate.as_ref().map_or(0, |c| c.len());
                if let Some(arrival) = self.send(at, node, peer, bytes, Delivery::Reliable) {
                    self.queue.push(
                        arrival,
                        Event::Block {
                            to: peer,
                            from: node,
                            block: block.clone(),
                            certificate: certificate.clone(),
                            gossip: false,
                        },
                    );
                }
            }
        }
    }

    /// Sends a message over the simulated network unless a fault cuts the link; the
    /// arrival time includes any added delay.
    fn send(
        &mut self,
        at: Millis,
        from: usize,
        to: usize,
        bytes: usize,
        delivery: Delivery,
    ) -> Option<Millis> {
        if !self.faults.linked(at, from, to) {
            return None;
        }
        let arrival = self.net.send(at, from, to, bytes, delivery)?;
        Some(arrival + self.faults.delay)
    }

    /// Asks `node`'s producer what to do on its head and schedules it.
    fn plan(&mut self, node: usize, now: Millis) {
        let epoch = self.nodes[node].epoch;
        match self.nodes[node].plan(now, self.mining.is_some()) {
            Plan::Sign(turn) => {
                let due = self.nodes[node].virtual_time(turn.at_millis).max(now);
                self.queue.push(due, Event::Turn { node, epoch, turn });
            }
            Plan::Mine { header, candidates } => {
                let delay = self
                    .mining
                    .as_mut()
                    .and_then(|m| m.solve_delay(node, header.engine.bits));
                if let Some(delay) = delay {
                    self.queue.push(
                        now + delay,
                        Event::Solve {
                            node,
                            epoch,
                            header,
                            candidates,
                        },
                    );
                }
            }
            Plan::Later(problem) => {
                if let Some(problem) = problem {
                    self.count(problem);
                }
                self.queue
                    .push(now + self.retry, Event::Retry { node, epoch });
            }
        }
    }

    /// `node` made a block (or failed to): import it, record the new head, gossip it.
    fn made(&mut self, at: Millis, node: usize, made: Result<Block, Problem>) {
        let outcome = made.and_then(|block| {
            let block = Wire::new(block);
            self.nodes[node].first_sight_of_block(block.hash);
            match self.nodes[node].import(block.item.clone()) {
                Ok(ImportOutcome::NewHead(change)) => Ok((block, change)),
                Ok(_) => Err("own block did not become the head"),
                Err(e) => {
                    tracing::debug!(node, error = %e, "own block refused");
                    Err("own block refused")
                }
            }
        });
        match outcome {
            Ok((block, change)) => {
                self.nodes[node].produced += 1;
                self.new_head(at, node, &change.applied);
                let publish = match &mut self.selfish {
                    Some((selfish, miner)) if *selfish == node => {
                        miner.found(block.item.header.height.0, block)
                    }
                    _ => vec![block],
                };
                for block in publish {
                    self.gossip_block(at, node, None, &block, None);
                }
            }
            Err(problem) => {
                // As the real loop: wait a second for a new head, then ask again.
                self.count(problem);
                let epoch = self.nodes[node].epoch;
                self.queue.push(at + 1000, Event::Retry { node, epoch });
            }
        }
    }

    fn new_head(&mut self, at: Millis, node: usize, applied: &[BlockId]) {
        self.recorder
            .head_changed(at, node, self.nodes[node].chain(), applied);
        if self.dust.as_ref().is_some_and(|d| d.node == node) {
            self.dust(at);
        }
        if self.voting() {
            self.vote_head(at, node);
        } else {
            self.plan(node, at);
        }
    }

    /// The block `hash` as `node` would send it: with its certificate when it has one.
    fn shipped(
        &self,
        node: usize,
        hash: &BlockHash,
    ) -> Option<(Arc<Wire<Block>>, Option<Certificate>)> {
        let chain = self.nodes[node].chain();
        let block = chain.block(hash).ok().flatten()?;
        let certificate = chain.certificate(hash).ok().flatten().map(Arc::new);
        Some((Wire::new(block), certificate))
    }

    /// Sends `bytes` from `node` to each peer but `except`; `deliver` makes each peer's
    /// delivery event.
    fn gossip(
        &mut self,
        at: Millis,
        node: usize,
        except: Option<usize>,
        bytes: usize,
        deliver: impl Fn(usize) -> Event,
    ) {
        for peer in self.net.peers(node).to_vec() {
            if Some(peer) == except {
                continue;
            }
            if let Some(arrival) = self.send(at, node, peer, bytes, Delivery::Gossip) {
                self.queue.push(arrival, deliver(peer));
            }
        }
    }

    fn gossip_block(
        &mut self,
        at: Millis,
        node: usize,
        except: Option<usize>,
        block: &Arc<Wire<Block>>,
        certificate: Option<&Certificate>,
    ) {
        let bytes = block.bytes + certificate.map_or(0, |c| c.len());
        self.gossip(at, node, except, bytes, |to| Event::Block {
            to,
            from: node,
            block: block.clone(),
            certificate: certificate.cloned(),
            gossip: true,
        });
    }

    fn gossip_tx(
        &mut self,
        at: Millis,
        node: usize,
        except: Option<usize>,
        tx: &Arc<Wire<Transaction>>,
    ) {
        self.gossip(at, node, except, tx.bytes, |to| Event::Tx {
            to,
            from: node,
            tx: tx.clone(),
        });
    }

    /// A block reaches `to`. Gossip is relayed once it is imported; an answer to a request
    /// is not (as a node does not gossip what it synced). Blocks waiting for this one
    /// follow it in.
    fn receive_block(
        &mut self,
        at: Millis,
        to: usize,
        from: usize,
        block: Arc<Wire<Block>>,
        certificate: Option<Certificate>,
        gossip: bool,
    ) {
        let hash = block.hash;
        let first = self.nodes[to].first_sight_of_block(hash);
        if gossip && !first {
            return;
        }
        if !gossip {
            self.nodes[to].answered(&hash);
        }
        let mut work = vec![(block, from, certificate, gossip)];
        while let Some((block, from, certificate, relay)) = work.pop() {
            let hash = block.hash;
            match self.nodes[to].import_with(block.item.clone(), certificate.as_ref()) {
                Ok(ImportOutcome::AlreadyKnown) => {}
                Ok(outcome) => {
                    if let ImportOutcome::NewHead(change) = &outcome {
                        self.new_head(at, to, &change.applied);
                    }
                    if relay {
                        self.gossip_block(at, to, Some(from), &block, certificate.as_ref());
                    }
                    self.others_found(at, to, &block.item);
                    for orphan in self.nodes[to].release_orphans(&hash) {
                        work.push((orphan.block, orphan.from, orphan.certificate, true));
                    }
                }
                Err(BlockError::UnknownParent { parent }) => {
                    if !self.nodes[to].keep_orphan(Orphan {
                        block,
                        from,
                        certificate,
                    }) {
                        self.count("orphan dropped: the buffer is full");
                    }
                    if self.faults.linked(at, to, from)
                        && self.nodes[to].request(parent, at)
                        && let Some(arrival) =
                            self.send(at, to, from, REQUEST_BYTES, Delivery::Reliable)
                    {
                        self.queue.push(
                            arrival,
                            Event::Request {
                                to: from,
                                asker: to,
                                hash: parent,
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(node = to, block = %hash, error = %e, "block not imported");
                    self.count(if e.is_bad_data() {
                        "block refused"
                    } else {
                        "block not imported"
                    });
                }
            }
        }
    }

    /// A selfish miner at `node` answers a block the others published.
    fn others_found(&mut self, at: Millis, node: usize, block: &Block) {
        let publish = match &mut self.selfish {
            Some((selfish, miner)) if *selfish == node => miner.others_found(block.header.height.0),
            _ => return,
        };
        for block in publish {
            self.gossip_block(at, node, None, &block, None);
        }
    }

    /// `to` answers `asker`'s request for a block it has.
    fn answer(&mut self, at: Millis, to: usize, asker: usize, hash: BlockHash) {
        self.requests += 1;
        let Some((block, certificate)) = self.shipped(to, &hash) else {
            self.count("request for an unknown block");
            return;
        };
        let bytes = block.bytes + certificate.as_ref().map_or(0, |c| c.len());
        if let Some(arrival) = self.send(at, to, asker, bytes, Delivery::Reliable) {
            self.queue.push(
                arrival,
                Event::Block {
                    to: asker,
                    from: to,
                    block,
                    certificate,
                    gossip: false,
                },
            );
        }
    }

    /// A transaction reaches `to`: relayed when its mempool takes it.
    fn receive_tx(&mut self, at: Millis, to: usize, from: usize, tx: Arc<Wire<Transaction>>) {
        if !self.nodes[to].first_sight_of_tx(tx.hash) {
            return;
        }
        if self.nodes[to].ledger.submit(tx.item.clone()).is_ok() {
            self.gossip_tx(at, to, Some(from), &tx);
        }
    }

    /// The next transfer of the load: signed with the sender's pending nonce at its node,
    /// submitted there, gossiped on.
    fn submit(&mut self, at: Millis) {
        let Some(load) = self.load.as_mut() else {
            return;
        };
        let count = load.traders.len();
        let from = load.rng.index(count);
        let to = (from + 1 + load.rng.index(count - 1)) % count;
        let amount = chain::Amount(load.rng.between(1, MAX_AMOUNT));
        let key = load.traders[from].clone();
        let receiver = load.traders[to].address();
        load.sent += 1;
        let next = load.due(self.start);
        self.queue.push(next, Event::Submit);

        let entry = from % self.nodes.len();
        if self.faults.down[entry] {
            *self.recorder.submit_errors.entry("node down").or_default() += 1;
            return;
        }
        let ledger = &mut self.nodes[entry].ledger;
        let Ok(nonce) = ledger.pending_nonce(&key.address()) else {
            *self
                .recorder
                .submit_errors
                .entry("nonce lookup failed")
                .or_default() += 1;
            return;
        };
        let tx = match wallet::build_transfer(
            &key,
            self.chain_id,
            nonce,
            receiver,
            amount,
            wallet::DEFAULT_FEE,
        ) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::debug!(error = %e, "simulate: transfer not built");
                *self.recorder.submit_errors.entry("not built").or_default() += 1;
                return;
            }
        };
        match ledger.submit(tx.clone()) {
            Ok(hash) => {
                let at_secs = self.recorder.secs(at);
                self.recorder
                    .submitted
                    .push(Submitted { hash, at: at_secs });
                self.nodes[entry].first_sight_of_tx(hash);
                self.gossip_tx(at, entry, None, &Wire::new(tx));
            }
            Err(e) => {
                let kind = code_kind(mempool_error_code(&e));
                *self.recorder.submit_errors.entry(kind).or_default() += 1;
            }
        }
    }

    /// The dusting attacker's transfers for its node's new head: 1 base unit to each author.
    fn dust(&mut self, at: Millis) {
        let Some(dust) = self.dust.as_mut() else {
            return;
        };
        let node = dust.node;
        if self.faults.down[node] {
            return;
        }
        let mut sent = Vec::new();
        for receiver in &dust.receivers {
            let ledger = &mut self.nodes[node].ledger;
            let Ok(nonce) = ledger.pending_nonce(&dust.key.address()) else {
                *self
                    .problems
                    .entry("dust: nonce lookup failed")
                    .or_default() += 1;
                continue;
            };
            let tx = match wallet::build_transfer(
                &dust.key,
                self.chain_id,
                nonce,
                *receiver,
                chain::Amount(1),
                dust.fee,
            ) {
                Ok(tx) => tx,
                Err(e) => {
                    tracing::debug!(error = %e, "simulate: dust transfer not built");
                    *self.problems.entry("dust: not built").or_default() += 1;
                    continue;
                }
            };
            match ledger.submit(tx.clone()) {
                Ok(_) => sent.push(Wire::new(tx)),
                Err(e) => {
                    tracing::debug!(error = %e, "simulate: dust transfer refused");
                    *self
                        .problems
                        .entry("dust: refused by the mempool")
                        .or_default() += 1;
                }
            }
        }
        for tx in sent {
            self.nodes[node].first_sight_of_tx(tx.hash);
            self.gossip_tx(at, node, None, &tx);
        }
    }

    fn finish<'a>(
        self,
        spec: ChainSpec,
        authors: impl Iterator<Item = &'a (String, SecretKey)>,
        duration_ms: Millis,
        events: u64,
        faults: Vec<Fault>,
    ) -> Outcome {
        let counters = NodeCounters {
            blocks_produced: Some(self.nodes.iter().map(|n| n.produced).sum()),
            reorgs: Some(self.nodes.iter().map(|n| n.reorgs).sum()),
            reorg_depth_max: Some(
                self.nodes
                    .iter()
                    .map(|n| n.deepest_reorg)
                    .max()
                    .unwrap_or(0),
            ),
            // The simulator charges no CPU, so it does not count signature checks.
            signature_checks: None,
        };
        let record = RunRecord {
            engine: spec.engine.kind(),
            block_time: spec.engine.block_time(),
            authors: authors
                .map(|(name, key)| (name.clone(), key.address()))
                .collect(),
            window: duration_ms as f64 / 1000.0,
            blocks: self.recorder.blocks,
            observations: self.recorder.observations,
            // Node 0's, or the first live node's when a fault took node 0 down.
            final_head: self.nodes[(0..self.nodes.len())
                .find(|n| !self.faults.down[*n])
                .unwrap_or(0)]
            .chain()
            .head_id()
            .hash,
            submitted: self.recorder.submitted,
            submit_errors: self.recorder.submit_errors,
            poll_errors: 0,
            cpu_seconds: None,
            counters,
            faults,
        };
        Outcome {
            record,
            problems: self.problems,
            events,
            requests: self.requests,
            killed: self.faults.killed,
            votes: self.votes,
        }
    }
}

mod mining;
mod recorder;
#[cfg(test)]
mod tests;
mod voting;
