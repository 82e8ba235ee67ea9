//! The voting engines (PBFT, Raft, Multi-Paxos, ZAB) in virtual time: each node holds the machine its engine
//! builds ([`chain::ConsensusEngine::voting_machine`]) and the simulator does for it what
//! the node's voting driver (`node::voting`) does with tokio, in the same order:
//!
//! - **Inputs.** The head (at start and after every import, own decision or synced
//!   block, with the voters of its state), a peer's message as it arrives, a timer as it
//!   fires, and the answers to the machine's own requests, queued behind what it asked in
//!   the same step.
//! - **Outputs.** A broadcast leaves once per peer over the simulated network (its
//!   latency, bandwidth and loss, as gossip); a timer is an event `after_millis` later,
//!   named by a generation so that setting it again moves it and cancelling forgets it;
//!   a build request becomes a block on the head filled from the node's mempool and sealed
//!   by its key; a proposal is checked with [`chain::Chain::validate_proposal`]; a decision
//!   is imported with its certificate ([`chain::Chain::import_certified`]) and gossiped as
//!   a certified block; state to persist is dropped, since a simulated node never restarts.
//! - **Relay.** A node passes a message it did not refuse on to those of its peers that are
//!   not peers of the message's origin (they had it from the origin), so a partial mesh
//!   carries every message everywhere and a full mesh sends each exactly once per peer. Like
//!   gossipsub's seen cache, a node remembers the messages it saw for [`SEEN_FOR_MS`].
//!
//! The sweeps ([`super::super::theory`]) read a trace of what the machines did (proposals,
//! decisions, role and view changes) and can take down the first node to lead.

use super::{Event, World};
use crate::simulate::network::Delivery;
use crate::simulate::node::Wire;
use crate::simulate::queue::Millis;
use chain::{
    BlockHash, ChainView, EngineError, ImportOutcome, ProposalClock, SecretKey, TimerId, VoteInput,
    VoteOutput, VotingMachine,
};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

/// Bytes ahead of a machine's message on the wire: the frame's sequence number.
const FRAME_BYTES: usize = 8;
/// How long a node remembers a consensus message it saw, virtual ms: longer than any
/// delivery takes (the largest `--latency` and `delay:` fault are a minute each).
pub const SEEN_FOR_MS: Millis = 180_000;
/// Status fields the trace follows: a change in any of them is recorded.
const TRACED_FIELDS: [&str; 5] = ["role", "term", "view", "ballot", "epoch"];

/// What a sweep asks of a voting run besides the run itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct VoteProbe {
    /// Record [`Traced`] entries.
    pub trace: bool,
    /// Take down the first node whose machine says it leads (Raft's leader), right after
    /// the step in which it became leader (its first heartbeat is on the wire), and end
    /// the run as soon as another node leads.
    pub kill_first_leader: bool,
}

/// One thing a machine did, for the sweeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteEvent {
    /// The node handed its machine the block it built for `height` (the PBFT primary
    /// sends its PRE-PREPARE, the Raft leader appends it, in the same step).
    Proposed { height: u64 },
    /// The machine decided `height` (it asked to commit the block).
    Decided { height: u64 },
    /// The traced status fields (role, term, view) changed to these.
    Status(Vec<(&'static str, String)>),
    /// [`VoteProbe::kill_first_leader`] took the node down.
    Killed,
}

/// A [`VoteEvent`] at a virtual time and node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub at: Millis,
    pub node: usize,
    pub what: VoteEvent,
}

/// The voting engine's traffic and trace over a run.
#[derive(Debug, Clone, Default)]
pub struct VoteStats {
    /// Consensus messages sent, one per peer a broadcast or relay went to.
    pub messages: u64,
    /// Their bytes, frames included.
    pub bytes: u64,
    /// Distinct broadcasts.
    pub broadcasts: u64,
    pub trace: Vec<Traced>,
}

/// A consensus message on the wire: who first sent it and its gossip id.
#[derive(Debug)]
pub struct VoteMessage {
    id: u64,
    origin: usize,
    bytes: Vec<u8>,
}

/// One node's machine and what its driver keeps.
#[derive(Debug)]
pub struct Seat {
    machine: Box<dyn VotingMachine>,
    /// Pending timers and the generation each was last set in.
    timers: BTreeMap<TimerId, u64>,
    generation: u64,
    /// Consensus messages seen (gossip's seen cache), and when, oldest first.
    seen: HashSet<u64>,
    seen_order: VecDeque<(Millis, u64)>,
    /// The head last given to the machine.
    last_head: Option<BlockHash>,
    /// The traced status fields last recorded.
    status: Vec<(&'static str, String)>,
    /// When this node first held each open proposal (built it, or was asked to check it),
    /// for the block's commit latency, as the node's driver keeps it.
    proposed_at: ProposalClock<Millis>,
}

impl Seat {
    /// Marks message `id` as seen at `at`, forgetting those seen [`SEEN_FOR_MS`] before;
    /// false when it was seen already.
    fn first_sight(&mut self, at: Millis, id: u64) -> bool {
        while let Some((seen_at, old)) = self.seen_order.front().copied() {
            if seen_at.saturating_add(SEEN_FOR_MS) > at {
                break;
            }
            self.seen.remove(&old);
            self.seen_order.pop_front();
        }
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back((at, id));
        true
    }
}

/// Each node's machine, built by the chain's engine from the node's key.
pub fn seats(world: &World, keys: &[SecretKey]) -> anyhow::Result<Vec<Seat>> {
    world
        .nodes
        .iter()
        .zip(keys)
        .map(|(node, key)| {
            let machine = node
                .chain()
                .engine()
                .voting_machine(Some(key), None)
                .map_err(|e| anyhow::anyhow!("{}: no voting machine: {e}", node.name))?
                .ok_or_else(|| {
                    anyhow::anyhow!("{}: the engine has no voting machine", node.name)
                })?;
            Ok(Seat {
                machine,
                timers: BTreeMap::new(),
                generation: 0,
                seen: HashSet::new(),
                seen_order: VecDeque::new(),
                last_head: None,
                status: Vec::new(),
                proposed_at: ProposalClock::default(),
            })
        })
        .collect()
}

impl World {
    /// Whether the engine decides by votes (its nodes have machines).
    pub(super) fn voting(&self) -> bool {
        !self.seats.is_empty()
    }

    /// Gives `node`'s machine its head when it is new to it.
    pub(super) fn vote_head(&mut self, at: Millis, node: usize) {
        if let Some(input) = self.head_input(node) {
            let _ = self.feed(at, node, input);
        }
    }

    /// The head and its voters as an input, when the machine has not had this head yet.
    fn head_input(&mut self, node: usize) -> Option<VoteInput> {
        let chain = self.nodes[node].chain();
        let head = chain.head();
        if self.seats[node].last_head == Some(head.hash()) {
            return None;
        }
        let voters = chain.engine().voters(chain.state());
        match voters {
            Ok(voters) => {
                self.seats[node].last_head = Some(head.hash());
                Some(VoteInput::Head { head, voters })
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot read the voters at the head");
                self.count("cannot read the voters at the head");
                None
            }
        }
    }

    /// Gives `input` to `node`'s machine and carries out what it asks, feeding the answers
    /// back in order; the result is the machine's verdict on `input` itself.
    fn feed(&mut self, at: Millis, node: usize, input: VoteInput) -> Result<(), EngineError> {
        let now = self.nodes[node].local_time(at);
        let mut queue = VecDeque::from([input]);
        let mut verdict = Ok(());
        let mut first = true;
        while let Some(input) = queue.pop_front() {
            if self.faults.down[node] {
                break;
            }
            if let (VoteInput::Built(block), true) = (&input, self.probe.trace) {
                let height = block.header.height.0;
                self.traced(at, node, VoteEvent::Proposed { height });
            }
            let outputs = match self.seats[node].machine.handle(now, input) {
                Ok(outputs) => outputs,
                Err(e) if first => {
                    verdict = Err(e);
                    break;
                }
                Err(e) => {
                    tracing::debug!(node, error = %e, "the machine refused an answer to its request");
                    continue;
                }
            };
            first = false;
            for output in outputs {
                self.act(at, node, output, &mut queue);
            }
            self.after_step(at, node);
        }
        verdict
    }

    /// Traces a status change, and takes down a new leader when the probe says so.
    fn after_step(&mut self, at: Millis, node: usize) {
        if !self.probe.trace && !self.probe.kill_first_leader {
            return;
        }
        let status: Vec<(&'static str, String)> = self.seats[node]
            .machine
            .status()
            .into_iter()
            .filter(|(name, _)| TRACED_FIELDS.contains(name))
            .collect();
        if status == self.seats[node].status {
            return;
        }
        let leads = status.iter().any(|(k, v)| *k == "role" && v == "leader");
        self.seats[node].status = status.clone();
        if self.probe.trace {
            self.traced(at, node, VoteEvent::Status(status));
        }
        if self.probe.kill_first_leader && leads {
            match self.faults.killed {
                None => {
                    self.faults.down[node] = true;
                    self.faults.killed = Some(node);
                    self.traced(at, node, VoteEvent::Killed);
                }
                Some(killed) if killed != node => self.done = true,
                Some(_) => {}
            }
        }
    }

    fn traced(&mut self, at: Millis, node: usize, what: VoteEvent) {
        if self.probe.trace {
            self.votes.trace.push(Traced { at, node, what });
        }
    }

    fn act(
        &mut self,
        at: Millis,
        node: usize,
        output: VoteOutput,
        queue: &mut VecDeque<VoteInput>,
    ) {
        match output {
            VoteOutput::Broadcast(bytes) => {
                self.votes.broadcasts += 1;
                let message = Arc::new(VoteMessage {
                    id: self.votes.broadcasts,
                    origin: node,
                    bytes,
                });
                self.seats[node].first_sight(at, message.id);
                let peers = self.net.peers(node).to_vec();
                self.send_vote(at, node, &peers, &message);
            }
            VoteOutput::SetTimer { id, after_millis } => {
                let seat = &mut self.seats[node];
                seat.generation += 1;
                let generation = seat.generation;
                seat.timers.insert(id, generation);
                self.queue.push(
                    at.saturating_add(after_millis),
                    Event::VoteTimer {
                        node,
                        id,
                        generation,
                    },
                );
            }
            VoteOutput::CancelTimer(id) => {
                self.seats[node].timers.remove(&id);
            }
            VoteOutput::Build {
                parent,
                timestamp,
                data,
            } => match self.nodes[node].build_proposal(parent, timestamp, data) {
                Ok(block) => {
                    self.seats[node].proposed_at.held(block.hash(), at);
                    queue.push_back(VoteInput::Built(Box::new(block)));
                }
                Err(problem) => self.count(problem),
            },
            VoteOutput::Validate(block) => {
                let hash = block.hash();
                self.seats[node].proposed_at.held(hash, at);
                let valid = match self.nodes[node].chain().validate_proposal(&block) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(node, block = %hash, error = %e, "proposal is invalid");
                        false
                    }
                };
                queue.push_back(VoteInput::Validated { hash, valid });
            }
            VoteOutput::Commit { block, certificate } => {
                let height = block.header.height.0;
                self.traced(at, node, VoteEvent::Decided { height });
                let hash = block.hash();
                let proposed = self.seats[node].proposed_at.decided(&hash);
                self.commit(at, node, Wire::new(*block), Arc::new(certificate));
                // The node that first shows a decided block tells how long it took, as
                // `chain_getBlock`'s `commit_latency_ms` does on a real node.
                if let (Some(proposed), Some(seen)) =
                    (proposed, self.recorder.blocks.get_mut(&hash))
                    && seen.decided_in.is_none()
                    && seen.seen_by.iter().flatten().count() == 1
                {
                    seen.decided_in = Some(at.saturating_sub(proposed) as f64 / 1000.0);
                }
                if let Some(head) = self.head_input(node) {
                    queue.push_back(head);
                }
            }
            // A simulated node never restarts, so nothing needs to survive one.
            VoteOutput::Persist(_) => {}
        }
    }

    /// Sends `message` from `node` to each of `peers`.
    fn send_vote(&mut self, at: Millis, node: usize, peers: &[usize], message: &Arc<VoteMessage>) {
        let bytes = FRAME_BYTES + message.bytes.len();
        for &to in peers {
            self.votes.messages += 1;
            self.votes.bytes += bytes as u64;
            if let Some(arrival) = self.send(at, node, to, bytes, Delivery::Gossip) {
                self.queue.push(
                    arrival,
                    Event::Vote {
                        to,
                        from: node,
                        message: message.clone(),
                    },
                );
            }
        }
    }

    /// A decided block: imported with its certificate, recorded, gossiped as the node's
    /// driver gossips it (nodes that missed the votes import it from there).
    fn commit(
        &mut self,
        at: Millis,
        node: usize,
        block: Arc<Wire<chain::Block>>,
        certificate: Arc<Vec<u8>>,
    ) {
        self.nodes[node].first_sight_of_block(block.hash);
        match self.nodes[node].import_with(block.item.clone(), Some(&certificate)) {
            Ok(ImportOutcome::NewHead(change)) => {
                if block.item.header.producer == self.nodes[node].author() {
                    self.nodes[node].produced += 1;
                }
                self.recorder
                    .head_changed(at, node, self.nodes[node].chain(), &change.applied);
                self.gossip_block(at, node, None, &block, Some(&certificate));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(node, block = %block.hash, error = %e, "cannot import a decided block");
                self.count("cannot import a decided block");
            }
        }
    }

    /// A consensus message reaches `to`: fed to its machine once, then relayed unless the
    /// machine refused it.
    pub(super) fn receive_vote(
        &mut self,
        at: Millis,
        to: usize,
        from: usize,
        message: Arc<VoteMessage>,
    ) {
        if !self.seats[to].first_sight(at, message.id) {
            return;
        }
        let verdict = self.feed(at, to, VoteInput::Message(message.bytes.clone()));
        if let Err(EngineError::Rejected { .. }) = verdict {
            self.count("consensus message refused");
            return;
        }
        let origin = message.origin;
        let relay: Vec<usize> = self
            .net
            .peers(to)
            .iter()
            .copied()
            .filter(|p| *p != origin && *p != from && !self.net.peers(origin).contains(p))
            .collect();
        if !relay.is_empty() {
            self.send_vote(at, to, &relay, &message);
        }
    }

    /// A machine's timer is due: it fires unless it was set again or cancelled since.
    pub(super) fn vote_timer(&mut self, at: Millis, node: usize, id: TimerId, generation: u64) {
        if self.seats[node].timers.get(&id) != Some(&generation) {
            return;
        }
        self.seats[node].timers.remove(&id);
        let _ = self.feed(at, node, VoteInput::Timeout(id));
    }
}

#[cfg(test)]
mod tests;
