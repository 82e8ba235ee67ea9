//! The simulation loop: N nodes, one network, one queue of events, one clock.
//!
//! Every event sets the shared clock to its time first, so the chain's checks (timestamps
//! against the clock) and the engines' schedules see virtual time only. A node acts on an
//! event alone and answers with new events: a turn makes a block, which is imported and
//! gossiped to the peers; a delivery is imported (a duplicate is ignored, a block whose
//! parent is missing waits for it while the parent is asked of the sender); a new head
//! makes any turn planned on the old one stale and asks the producer again.
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
use crate::compare::load::{MAX_AMOUNT, code_kind};
use crate::compare::record::{
    BlockTree, NodeCounters, Observation, RunRecord, Secs, SeenBlock, Submitted,
};
use chain::{
    Block, BlockError, BlockHash, BlockId, ChainId, ChainView, Header, ImportOutcome, ManualClock,
    SecretKey, Transaction, Turn,
};
use config::ChainSpec;
use miner::pow::CompactTarget;
use node::rpc::mempool_error_code;
use std::collections::BTreeMap;
use std::sync::Arc;

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
}

/// A simulated run: the record the metrics are computed from, and what went wrong how often.
#[derive(Debug)]
pub struct Outcome {
    pub record: RunRecord,
    pub problems: BTreeMap<Problem, u64>,
    pub events: u64,
    /// Blocks a node asked a peer for, because a child came first.
    pub requests: u64,
    /// The node `kill-producer` took down.
    pub killed: Option<usize>,
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
        gossip: bool,
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
            Event::Turn { node, .. } | Event::Solve { node, .. } | Event::Retry { node, .. } => {
                Some(*node)
            }
            Event::Block { to, .. } | Event::Tx { to, .. } | Event::Request { to, .. } => Some(*to),
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

/// Solve times of proof of work: each node hashes at its own rate.
#[derive(Debug)]
struct Mining {
    /// Hashes a second per node.
    rates: Vec<f64>,
    rng: SimRng,
}

impl Mining {
    /// The network's hash rate is set so that the genesis difficulty gives the target
    /// block time: `work(genesis target) / block time` hashes a second, split by share.
    fn new(spec: &ChainSpec, shares: &[f64], seed: u64) -> Mining {
        let total = work_of(spec.engine.genesis_bits()).unwrap_or(1.0)
            / spec.engine.block_time().max(1) as f64;
        Mining {
            rates: shares.iter().map(|s| s * total).collect(),
            rng: SimRng::new(seed, Stream::Mining),
        }
    }

    /// Milliseconds until `node` solves a block with `bits`: exponential with mean
    /// `work / rate` (each hash is an independent try), or `None` for no hash power.
    fn solve_delay(&mut self, node: usize, bits: u32) -> Option<Millis> {
        let rate = self.rates[node];
        let work = work_of(bits)?;
        if rate <= 0.0 {
            return None;
        }
        let secs = self.rng.exponential(work / rate);
        Some(((secs * 1000.0).ceil() as Millis).max(1))
    }
}

/// The expected hashes of a block with `bits`.
fn work_of(bits: u32) -> Option<f64> {
    let target = CompactTarget::from_consensus(bits).to_target()?;
    Some(f64::from(target.to_work().to_u256()))
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

/// What the collector of `compare` would have recorded.
#[derive(Debug)]
struct Recorder {
    start: Millis,
    nodes: usize,
    blocks: BlockTree,
    observations: Vec<Observation>,
    submitted: Vec<Submitted>,
    submit_errors: BTreeMap<&'static str, u64>,
}

impl Recorder {
    fn secs(&self, at: Millis) -> Secs {
        at.saturating_sub(self.start) as f64 / 1000.0
    }

    /// `node`'s head is now its chain's; `applied` came onto its best chain.
    fn head_changed(&mut self, at: Millis, node: usize, chain: &chain::Chain, applied: &[BlockId]) {
        let now = self.secs(at);
        for id in applied {
            if !self.blocks.contains_key(&id.hash) {
                let Ok(Some(block)) = chain.block(&id.hash) else {
                    continue;
                };
                let seen = self.seen_block(&block, now, false);
                self.blocks.insert(id.hash, seen);
            }
            if let Some(seen) = self.blocks.get_mut(&id.hash) {
                let slot = &mut seen.seen_by[node];
                slot.get_or_insert(now);
            }
        }
        self.observations.push(Observation {
            at: now,
            node,
            head: chain.head_id().hash,
            finalized: chain.finalized().ok().flatten().map(|f| f.height),
        });
    }

    fn seen_block(&self, block: &Block, now: Secs, preexisting: bool) -> SeenBlock {
        SeenBlock {
            hash: block.hash(),
            height: block.header.height,
            parent: block.header.parent,
            producer: block.header.producer,
            txs: block.txs.iter().map(Transaction::hash).collect(),
            first_seen: now,
            seen_by: vec![preexisting.then_some(now); self.nodes],
            preexisting,
        }
    }
}

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
    chain_id: ChainId,
    recorder: Recorder,
    problems: BTreeMap<Problem, u64>,
    requests: u64,
    /// The selfish miner and its node.
    selfish: Option<(usize, SelfishMiner<Arc<Wire<Block>>>)>,
    faults: Faults,
}

/// Runs one engine's simulation; `progress` hears the virtual seconds done.
pub fn simulate(setup: Setup, progress: &mut dyn FnMut(u64)) -> anyhow::Result<Outcome> {
    // Every node applies every block: expand each state change once for all of them.
    chain::state::memoize_expansions();
    let start: Millis = setup.spec.genesis.timestamp.saturating_mul(1000);
    let clock = Arc::new(ManualClock::new(chain::Timestamp(
        setup.spec.genesis.timestamp,
    )));
    let skew_of = |node: usize| -> i64 {
        setup
            .faults
            .iter()
            .find_map(|f| match f {
                Fault::ClockSkew { node: n, secs } if *n == node => Some(secs * 1000),
                _ => None,
            })
            .unwrap_or(0)
    };
    let nodes = setup
        .authors
        .iter()
        .enumerate()
        .map(|(i, (name, key))| {
            SimNode::open(name.clone(), key, &setup.spec, clock.clone(), skew_of(i))
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
    let mining = setup
        .spec
        .engine
        .kind()
        .mines()
        .then(|| Mining::new(&setup.spec, &setup.hash_shares, setup.seed));
    let load = (setup.tx_rate > 0.0 && setup.traders.len() >= 2).then(|| Load {
        rate: setup.tx_rate,
        traders: setup.traders,
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
    };
    for fault in &setup.faults {
        match *fault {
            Fault::KillProducer { at_s } => world.queue.push(start + at_s * 1000, Event::Kill),
            Fault::Partition { at_s, duration_s } => {
                let from = start + at_s * 1000;
                let until = from + duration_s * 1000;
                world.faults.partitions.push((from, until));
                world.queue.push(until, Event::Heal);
            }
            Fault::Delay { ms } => world.faults.delay += ms,
            Fault::ClockSkew { .. } => {}
        }
    }
    let end = start.saturating_add(setup.duration_ms);
    world.begin();
    let mut events = 0u64;
    let mut reported = start;
    while let Some((at, event)) = world.queue.pop_until(end) {
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

impl World {
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
            self.plan(node, self.start);
        }
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
                gossip,
            } => self.receive_block(at, to, from, block, gossip),
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
            let Ok(Some(block)) = self.nodes[node].chain().block(&head) else {
                continue;
            };
            let block = Wire::new(block);
            for peer in self.net.peers(node).to_vec() {
                if second_half(node, n) == second_half(peer, n) {
                    continue;
                }
                if let Some(arrival) = self.send(
                    at,
                    node,
                    peer,
                    STATUS_BYTES + block.bytes,
                    Delivery::Reliable,
                ) {
                    self.queue.push(
                        arrival,
                        Event::Block {
                            to: peer,
                            from: node,
                            block: block.clone(),
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
                    self.gossip_block(at, node, None, &block);
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
        self.plan(node, at);
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
    ) {
        self.gossip(at, node, except, block.bytes, |to| Event::Block {
            to,
            from: node,
            block: block.clone(),
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
        let mut work = vec![(block, from, gossip)];
        while let Some((block, from, relay)) = work.pop() {
            let hash = block.hash;
            match self.nodes[to].import(block.item.clone()) {
                Ok(ImportOutcome::AlreadyKnown) => {}
                Ok(outcome) => {
                    if let ImportOutcome::NewHead(change) = &outcome {
                        self.new_head(at, to, &change.applied);
                    }
                    if relay {
                        self.gossip_block(at, to, Some(from), &block);
                    }
                    self.others_found(at, to, &block.item);
                    for orphan in self.nodes[to].release_orphans(&hash) {
                        work.push((orphan.block, orphan.from, true));
                    }
                }
                Err(BlockError::UnknownParent { parent }) => {
                    if !self.nodes[to].keep_orphan(Orphan { block, from }) {
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
            self.gossip_block(at, node, None, &block);
        }
    }

    /// `to` answers `asker`'s request for a block it has.
    fn answer(&mut self, at: Millis, to: usize, asker: usize, hash: BlockHash) {
        self.requests += 1;
        let Ok(Some(block)) = self.nodes[to].chain().block(&hash) else {
            self.count("request for an unknown block");
            return;
        };
        let block = Wire::new(block);
        if let Some(arrival) = self.send(at, to, asker, block.bytes, Delivery::Reliable) {
            self.queue.push(
                arrival,
                Event::Block {
                    to: asker,
                    from: to,
                    block,
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
        }
    }
}

#[cfg(test)]
mod tests {
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
            authors,
        }
    }

    #[test]
    fn n6_poa_over_a_lossy_network_catches_up_by_asking_for_missing_parents() {
        // Four in ten gossip messages lost: nodes miss blocks, get their children first,
        // and must fetch the parents from the sender to follow the chain.
        let outcome =
            simulate(setup(EngineKind::Poa, 6, 0.4, 300, 1.0), &mut |_| {}).expect("runs");
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
        let outcome =
            simulate(setup(EngineKind::Dpos, 3, 0.0, 60, 0.0), &mut |_| {}).expect("runs");
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
}
