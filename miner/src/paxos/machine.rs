//! One server's Multi-Paxos: a pure state machine behind [`chain::VotingMachine`].
//!
//! The acceptor's state (its promise and the values it accepted above the chain's head) is
//! persisted before any answer leaves; the proposer's (its ballot, the promises and the
//! open proposals) and the learner's (decided blocks not yet imported, and a window of
//! imported ones to teach others) are volatile. The node's chain holds the decided prefix.

use crate::envelope;
use crate::paxos::engine::{PaxosEngine, reject};
use crate::paxos::error::PaxosError;
use crate::paxos::params::PaxosParams;
use crate::paxos::wire::{Ballot, Body, Envelope, PersistedState, Proposal};
use crate::paxos::{
    COMMITTED_WINDOW, ENGINE_NAME, TIMER_BUILD, TIMER_CHECK_QUORUM, TIMER_ELECTION, TIMER_HEARTBEAT,
};
use crate::quorum::{VoteSignature, VoterSet};
use chain::crypto::sha256d_parts;
use chain::{
    Address, Block, BlockHash, EngineError, Height, SealedHeader, SecretKey, TimerId, VoteInput,
    VoteOutput, VotingMachine,
};
use std::collections::{BTreeMap, BTreeSet};

mod phase1;
mod phase2;

/// A server's part at the moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An acceptor and learner following a leader (or waiting for one).
    Follower,
    /// Running phase 1 in its own ballot.
    Candidate,
    /// The distinguished proposer: phase 1 done in its ballot, phase 2 per block.
    Leader,
    /// A node that is no server (or has no key): it takes part in nothing.
    Observer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Observer => "observer",
        }
    }
}

/// One acceptor's phase 1b answer.
#[derive(Clone, Debug)]
struct Promised {
    decided: Height,
    accepted: Vec<Proposal>,
}

/// A block the leader proposed in its ballot, and the Accepted votes gathered for it.
#[derive(Clone, Debug)]
struct Open {
    block: Block,
    /// When its Accept was last sent: a heartbeat resends one unanswered this long.
    sent_at: u64,
    votes: BTreeMap<Address, VoteSignature>,
}

/// See the module documentation.
pub struct PaxosMachine {
    params: PaxosParams,
    servers: VoterSet,
    key: Option<SecretKey>,
    me: Address,
    role: Role,
    // Acceptor, persisted.
    promised: Ballot,
    /// Values accepted in slots above the decided height, by slot.
    accepted: BTreeMap<Height, Proposal>,
    // Proposer.
    /// The highest ballot seen in any message: the next Prepare goes above it.
    highest_seen: Ballot,
    /// The ballot this server campaigns or leads in.
    ballot: Ballot,
    promises: BTreeMap<Address, Promised>,
    /// A leader still learning the blocks its promisers decided: the height it must reach
    /// before it re-proposes anything.
    repairing: Option<Height>,
    open: BTreeMap<Height, Open>,
    leader: Option<Address>,
    /// Servers heard in the leader's ballot since the last check-quorum.
    heard: BTreeSet<Address>,
    // Learner.
    head: Option<SealedHeader>,
    /// The highest height given to the node as [`VoteOutput::Commit`] (or its head, when
    /// higher), and the hash there.
    committed: Height,
    committed_hash: BlockHash,
    /// Decided blocks with their certificates: those not yet committed, and a window of
    /// committed ones to teach lagging learners.
    decided: BTreeMap<Height, (Block, Vec<u8>)>,
    /// When this learner last asked to learn, so it asks once per heartbeat at most.
    learn_asked_at: Option<u64>,
    // Timers.
    timer_draws: u64,
    last_leader_contact: Option<u64>,
    build_pending: bool,
    started: bool,
    dirty: bool,
}

impl std::fmt::Debug for PaxosMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaxosMachine")
            .field("me", &self.me)
            .field("role", &self.role)
            .field("promised", &self.promised)
            .field("ballot", &self.ballot)
            .field("leader", &self.leader)
            .field("committed", &self.committed)
            .field("accepted", &self.accepted.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub(super) fn ignored(reason: impl Into<String>) -> EngineError {
    EngineError::ignored(ENGINE_NAME, reason)
}

fn malformed(sender: Address, what: &'static str, reason: String) -> EngineError {
    reject(PaxosError::MalformedMessage {
        sender,
        what,
        reason,
    })
}

impl PaxosMachine {
    /// A server's machine (an observer when `key` is `None` or not a server's), restored
    /// from `persisted` after a restart.
    pub fn new(
        params: PaxosParams,
        key: Option<SecretKey>,
        persisted: Option<PersistedState>,
    ) -> PaxosMachine {
        let servers = params.voter_set();
        let me = key.as_ref().map(SecretKey::address).unwrap_or_default();
        let role = if key.is_some() && servers.contains(&me) {
            Role::Follower
        } else {
            Role::Observer
        };
        let persisted = persisted.unwrap_or(PersistedState {
            promised: Ballot::ZERO,
            accepted: Vec::new(),
        });
        let accepted = persisted
            .accepted
            .into_iter()
            .map(|p| (p.block.header.height, p))
            .collect();
        PaxosMachine {
            params,
            servers,
            key,
            me,
            role,
            promised: persisted.promised,
            accepted,
            highest_seen: persisted.promised,
            ballot: Ballot::ZERO,
            promises: BTreeMap::new(),
            repairing: None,
            open: BTreeMap::new(),
            leader: None,
            heard: BTreeSet::new(),
            head: None,
            committed: Height::GENESIS,
            committed_hash: BlockHash::ZERO,
            decided: BTreeMap::new(),
            learn_asked_at: None,
            timer_draws: 0,
            last_leader_contact: None,
            build_pending: false,
            started: false,
            dirty: false,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The ballot this server promised not to go below.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The ballot this server campaigns or leads in (zero before its first phase 1).
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    pub fn leader(&self) -> Option<Address> {
        self.leader
    }

    /// The highest decided height given to the node.
    pub fn decided_height(&self) -> Height {
        self.committed
    }

    /// The value this acceptor accepted in slot `height`, if any.
    pub fn accepted(&self, height: Height) -> Option<&Proposal> {
        self.accepted.get(&height)
    }

    /// The state that [`VoteOutput::Persist`] writes, as a restart reads it back.
    pub fn persisted(&self) -> PersistedState {
        PersistedState {
            promised: self.promised,
            accepted: self.accepted.values().cloned().collect(),
        }
    }

    fn my_index(&self) -> u16 {
        self.servers
            .index_of(&self.me)
            .and_then(|i| u16::try_from(i).ok())
            .unwrap_or(u16::MAX)
    }

    fn majority(&self) -> usize {
        self.servers.majority()
    }

    fn send(&self, body: Body, out: &mut Vec<VoteOutput>) {
        if let Some(key) = &self.key {
            out.push(VoteOutput::Broadcast(Envelope::seal(body, key).encode()));
        }
    }

    /// A fresh election timeout, uniform on `[min, max)`: drawn from this server's
    /// address, its promise and a counter, so two servers (or two draws) differ but a
    /// simulation replays it exactly.
    fn election_timeout(&mut self) -> u64 {
        let span = self.params.election_timeout_max_ms - self.params.election_timeout_min_ms;
        let digest = sha256d_parts(&[
            b"toychain/paxos/election-timeout",
            &self.me.0,
            &self.promised.0.to_le_bytes(),
            &self.timer_draws.to_le_bytes(),
        ]);
        self.timer_draws += 1;
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        self.params.election_timeout_min_ms + u64::from_le_bytes(word) % span.max(1)
    }

    fn reset_election_timer(&mut self, out: &mut Vec<VoteOutput>) {
        let after_millis = self.election_timeout();
        out.push(VoteOutput::SetTimer {
            id: TIMER_ELECTION,
            after_millis,
        });
    }

    /// Paxos Made Live's master lease, as Raft's check-quorum lease: a server that heard
    /// from its leader less than the minimum election timeout ago (or leads itself) keeps
    /// it, and ignores other proposers' prepares.
    fn in_lease(&self, now: u64) -> bool {
        self.role == Role::Leader
            || (self.leader.is_some()
                && self
                    .last_leader_contact
                    .is_some_and(|t| now < t.saturating_add(self.params.election_timeout_min_ms)))
    }

    /// Raises the promise to `ballot` (to be persisted before any answer).
    fn promise(&mut self, ballot: Ballot) {
        if ballot > self.promised {
            self.promised = ballot;
            self.dirty = true;
        }
        self.highest_seen = self.highest_seen.max(ballot);
    }

    /// Refuses `ballot`, below the promise, naming the promise (PMS §2.3's optimisation:
    /// the proposer learns to abandon it).
    fn nack(&self, to: Address, ballot: Ballot, out: &mut Vec<VoteOutput>) {
        let promised = self.promised;
        self.send(
            Body::Nack {
                to,
                ballot,
                promised,
            },
            out,
        );
    }

    /// Stops leading or campaigning, and waits for `leader` (or a fresh timeout).
    fn become_follower(&mut self, leader: Option<Address>, now: u64, out: &mut Vec<VoteOutput>) {
        if self.role == Role::Leader {
            out.push(VoteOutput::CancelTimer(TIMER_HEARTBEAT));
            out.push(VoteOutput::CancelTimer(TIMER_BUILD));
            out.push(VoteOutput::CancelTimer(TIMER_CHECK_QUORUM));
        }
        if self.role != Role::Observer {
            self.role = Role::Follower;
        }
        self.leader = leader;
        if leader.is_some() {
            self.last_leader_contact = Some(now);
        }
        self.promises.clear();
        self.open.clear();
        self.repairing = None;
        self.build_pending = false;
        self.heard.clear();
        if self.role == Role::Follower {
            self.reset_election_timer(out);
        }
    }

    fn on_head(
        &mut self,
        head: SealedHeader,
        voters: Vec<Address>,
        now: u64,
        out: &mut Vec<VoteOutput>,
    ) {
        if !voters.is_empty() {
            let servers = VoterSet::new(voters);
            if servers != self.servers {
                // The set is fixed by the parameters; a head naming others means this
                // machine was built for another chain. Follow the chain's.
                self.servers = servers;
                if self.role != Role::Observer && !self.servers.contains(&self.me) {
                    self.become_follower(None, now, out);
                    self.role = Role::Observer;
                    out.push(VoteOutput::CancelTimer(TIMER_ELECTION));
                }
            }
        }
        let height = head.height();
        if height >= self.committed {
            self.committed = height;
            self.committed_hash = head.hash();
        }
        // Decided slots' values are dropped without a write (see `commit_decided`).
        self.accepted.retain(|h, _| *h > height);
        self.open.retain(|h, _| *h > height);
        let keep_from = Height(height.0.saturating_sub(COMMITTED_WINDOW as u64));
        self.decided.retain(|h, _| *h > keep_from);
        self.head = Some(head);
        self.build_pending = false;
        if !self.started {
            self.started = true;
            if self.role == Role::Follower {
                self.reset_election_timer(out);
            }
        }
        self.commit_decided(out);
        if self.role == Role::Leader {
            self.continue_repair(now, out);
        }
    }

    fn on_timeout(&mut self, now: u64, id: TimerId, out: &mut Vec<VoteOutput>) {
        match (id, self.role) {
            (TIMER_ELECTION, Role::Follower | Role::Candidate) => self.start_phase1(now, out),
            (TIMER_HEARTBEAT, Role::Leader) => {
                self.heartbeat(now, out);
                out.push(VoteOutput::SetTimer {
                    id: TIMER_HEARTBEAT,
                    after_millis: self.params.heartbeat_ms,
                });
            }
            (TIMER_BUILD, Role::Leader) => {
                self.maybe_build(now, out);
                out.push(VoteOutput::SetTimer {
                    id: TIMER_BUILD,
                    after_millis: self.params.block_time.saturating_mul(1000),
                });
            }
            (TIMER_CHECK_QUORUM, Role::Leader) => self.check_quorum(now, out),
            _ => {}
        }
    }

    /// A leader that has not heard from a majority (itself included) within the minimum
    /// election timeout steps down, so one cut off in a minority stops leading.
    fn check_quorum(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        let heard = 1 + self.heard.iter().filter(|s| **s != self.me).count();
        self.heard.clear();
        if heard < self.majority() {
            self.become_follower(None, now, out);
            return;
        }
        out.push(VoteOutput::SetTimer {
            id: TIMER_CHECK_QUORUM,
            after_millis: self.params.election_timeout_min_ms,
        });
    }

    /// Checks a block carried in a message from `sender`: a server built it in a ballot of
    /// its own and sealed it, at a slot above genesis.
    fn check_block(
        &self,
        sender: Address,
        what: &'static str,
        block: &Block,
    ) -> Result<Ballot, EngineError> {
        if block.header.height == Height::GENESIS {
            return Err(malformed(sender, what, "a block at height 0".into()));
        }
        let data =
            PaxosEngine::check_block_header(&self.servers, &block.header, None).map_err(reject)?;
        Ok(data.ballot)
    }

    /// A ballot in a proposer's message must be the sender's own.
    fn check_owner(
        &self,
        sender: Address,
        what: &'static str,
        ballot: Ballot,
    ) -> Result<(), EngineError> {
        let owner = self.servers.as_slice().get(usize::from(ballot.proposer()));
        if owner != Some(&sender) || ballot.round() == 0 {
            return Err(malformed(
                sender,
                what,
                format!("ballot {ballot} is not the sender's"),
            ));
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        now: u64,
        bytes: &[u8],
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let admitted =
            envelope::admit::<Body>(bytes, self.me, self.role == Role::Observer, |sender| {
                self.servers.contains(sender)
            })
            .map_err(|refusal| {
                envelope::refused::<PaxosError>(ENGINE_NAME, refusal, |sender| {
                    reject(PaxosError::SenderNotServer { sender })
                })
            })?;
        let Some((sender, envelope)) = admitted else {
            return Ok(());
        };
        let what = envelope.body.name();
        match envelope.body {
            Body::Prepare { ballot, decided } => {
                self.check_owner(sender, what, ballot)?;
                self.on_prepare(now, sender, ballot, decided, out)
            }
            Body::Promise {
                ballot,
                decided,
                accepted,
                ..
            } => self.on_promise(now, sender, ballot, decided, accepted, out),
            Body::Nack {
                ballot, promised, ..
            } => self.on_nack(now, sender, ballot, promised, out),
            Body::Accept {
                ballot,
                decided,
                block,
            } => {
                self.check_owner(sender, what, ballot)?;
                self.on_accept(now, sender, ballot, decided, block, out)
            }
            Body::Accepted {
                ballot,
                height,
                parent,
                hash,
                signature,
                ..
            } => {
                let vote = VoteSignature {
                    key: envelope.sender,
                    signature,
                };
                self.on_accepted(sender, ballot, height, parent, hash, vote, out)
            }
            Body::Heartbeat { ballot, decided } => {
                self.check_owner(sender, what, ballot)?;
                self.on_heartbeat(now, sender, ballot, decided, out)
            }
            Body::HeartbeatAck {
                ballot, decided, ..
            } => self.on_heartbeat_ack(sender, ballot, decided),
            Body::Decided { certificate } => self.on_decided(now, sender, &certificate, out),
            Body::Learn { from, .. } => self.on_learn(sender, from, out),
            Body::Learned { blocks, .. } => self.on_learned(sender, blocks, out),
        }
    }
}

impl VotingMachine for PaxosMachine {
    fn handle(
        &mut self,
        now_millis: u64,
        input: VoteInput,
    ) -> Result<Vec<VoteOutput>, EngineError> {
        let mut out = Vec::new();
        let result = match input {
            VoteInput::Head { head, voters } => {
                self.on_head(head, voters, now_millis, &mut out);
                Ok(())
            }
            VoteInput::Message(bytes) => self.on_message(now_millis, &bytes, &mut out),
            VoteInput::Timeout(id) => {
                self.on_timeout(now_millis, id, &mut out);
                Ok(())
            }
            VoteInput::Built(block) => self.on_built(now_millis, *block, &mut out),
            VoteInput::Validated { hash, .. } => Err(ignored(format!(
                "paxos asks for no validation (got a verdict on {hash})"
            ))),
        };
        // "Paxos Made Simple" §2.3: an acceptor records its promise and what it accepted
        // on stable storage before it answers.
        if self.dirty {
            self.dirty = false;
            out.insert(0, VoteOutput::Persist(self.persisted().encode()));
        }
        result.map(|()| out)
    }

    fn status(&self) -> Vec<(&'static str, String)> {
        vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("ballot", self.promised.to_string()),
            ("role", self.role.name().to_owned()),
            (
                "leader",
                self.leader
                    .map_or_else(|| "none".to_owned(), |l| l.to_string()),
            ),
            ("decided_height", self.committed.0.to_string()),
            ("accepted_slots", self.accepted.len().to_string()),
        ]
    }
}
