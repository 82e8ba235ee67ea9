//! One server's Raft: a pure state machine behind [`chain::VotingMachine`].
//!
//! Figure 2 of the paper, rule by rule, with etcd's additions: pre-vote and check-quorum
//! (thesis §9.6) and a no-op entry from every new leader (thesis §6.4). The node's chain
//! holds the committed prefix of the log; the machine holds a window of recently committed
//! entries (to repair followers) and the uncommitted tail.

use crate::envelope;
use crate::raft::engine::reject;
use crate::raft::error::RaftError;
use crate::raft::params::{RaftParams, majority};
use crate::raft::wire::{
    Ack, Body, Certificate, Entry, EntryData, Envelope, PersistedState, SignedAck, ack_digest,
    check_certificate,
};
use crate::raft::{
    APPEND_BUDGET_BYTES, COMMITTED_WINDOW, ENGINE_NAME, MAX_ACKS_PER_RESPONSE,
    MAX_CERTIFICATES_PER_APPEND, MAX_ENTRIES_PER_APPEND, MAX_UNCOMMITTED_ENTRIES, TIMER_BUILD,
    TIMER_CHECK_QUORUM, TIMER_ELECTION, TIMER_HEARTBEAT,
};
use crate::seal::verify_signed_seal;
use chain::crypto::sha256d_parts;
use chain::{
    Address, Block, BlockHash, EngineError, SealedHeader, SecretKey, Signature, TimerId, Timestamp,
    VoteInput, VoteOutput, VotingMachine,
};
use std::collections::{BTreeMap, BTreeSet};

mod election;
mod replication;
use replication::AppendResponse;

/// A server's part at the moment (Raft §5.1, plus etcd's pre-candidate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking whether it could win the next term, before raising its own (thesis §9.6).
    PreCandidate,
    Candidate,
    Leader,
    /// A node that is no server (or has no key): it takes part in nothing.
    Observer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Observer => "observer",
        }
    }
}

/// What a leader knows of one follower (Figure 2's nextIndex and matchIndex).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    next_index: u64,
    match_index: u64,
    /// The follower's commit index as it last reported it: which certificates it lacks.
    commit_index: u64,
    /// Heard from since the last check-quorum.
    recent_active: bool,
    /// When last heard from.
    heard_at: Option<u64>,
}

/// See the module documentation.
pub struct RaftMachine {
    params: RaftParams,
    servers: Vec<Address>,
    key: Option<SecretKey>,
    me: Address,
    role: Role,
    // Persistent state (Figure 2).
    term: u64,
    voted_for: Option<Address>,
    /// The entry before `log[0]`: committed, in the node's chain or compacted away.
    base_index: u64,
    base_term: u64,
    log: Vec<Entry>,
    // Volatile state.
    commit_index: u64,
    leader: Option<Address>,
    /// Certificates of committed blocks still in the log window.
    certificates: BTreeMap<u64, Vec<u8>>,
    /// The node's chain head and its log index.
    head: Option<SealedHeader>,
    head_index: u64,
    /// Votes (or pre-votes) received in the current campaign.
    votes: BTreeMap<Address, bool>,
    /// Election timeouts drawn so far: the counter that makes each draw differ.
    timer_draws: u64,
    /// When a leader was last heard from (a leader: when a majority was last heard from).
    last_leader_contact: Option<u64>,
    progress: BTreeMap<Address, Progress>,
    /// Acks gathered by a leader in its term, by log index.
    acks: BTreeMap<u64, BTreeMap<Address, SignedAck>>,
    /// This server's own acks, by log index: (hash, term, signature), so each is signed once.
    signed: BTreeMap<u64, (BlockHash, u64, Signature)>,
    build_pending: bool,
    started: bool,
    dirty: bool,
    /// Servers this machine saw removed: their last messages may still be on the way, which
    /// is no fault of theirs.
    former: BTreeSet<Address>,
}

impl std::fmt::Debug for RaftMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftMachine")
            .field("me", &self.me)
            .field("role", &self.role)
            .field("term", &self.term)
            .field("voted_for", &self.voted_for)
            .field("leader", &self.leader)
            .field("base_index", &self.base_index)
            .field("last_index", &self.last_index())
            .field("commit_index", &self.commit_index)
            .finish_non_exhaustive()
    }
}

fn ignored(reason: impl Into<String>) -> EngineError {
    EngineError::ignored(ENGINE_NAME, reason)
}

impl RaftMachine {
    /// A server's machine (an observer when `key` is `None` or not a server's), restored
    /// from `persisted` after a restart.
    pub fn new(
        params: RaftParams,
        key: Option<SecretKey>,
        persisted: Option<PersistedState>,
    ) -> RaftMachine {
        let servers = params.sorted_servers();
        let me = key.as_ref().map(SecretKey::address).unwrap_or_default();
        let role = if key.is_some() && servers.contains(&me) {
            Role::Follower
        } else {
            Role::Observer
        };
        let persisted = persisted.unwrap_or(PersistedState {
            term: 0,
            voted_for: None,
            base_index: 0,
            base_term: 0,
            entries: Vec::new(),
        });
        RaftMachine {
            params,
            servers,
            key,
            me,
            role,
            term: persisted.term,
            voted_for: persisted.voted_for,
            base_index: persisted.base_index,
            base_term: persisted.base_term,
            log: persisted.entries,
            commit_index: persisted.base_index,
            leader: None,
            certificates: BTreeMap::new(),
            head: None,
            head_index: persisted.base_index,
            votes: BTreeMap::new(),
            timer_draws: 0,
            last_leader_contact: None,
            progress: BTreeMap::new(),
            acks: BTreeMap::new(),
            signed: BTreeMap::new(),
            build_pending: false,
            started: false,
            dirty: false,
            former: BTreeSet::new(),
        }
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn leader(&self) -> Option<Address> {
        self.leader
    }

    pub fn voted_for(&self) -> Option<Address> {
        self.voted_for
    }

    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }

    pub fn last_index(&self) -> u64 {
        self.base_index + self.log.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.term_at(self.last_index()).unwrap_or(self.base_term)
    }

    /// The term of the entry at `index`, when the machine still holds it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, when the machine still holds it (not the base).
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.base_index + 1)?;
        self.log.get(usize::try_from(offset).ok()?)
    }

    /// The state that [`VoteOutput::Persist`] writes, as a restart reads it back.
    pub fn persisted(&self) -> PersistedState {
        // Entries up to the chain head are in the chain; persist what comes after.
        let from = self.head_index.clamp(self.base_index, self.last_index());
        let skip = usize::try_from(from - self.base_index).unwrap_or(usize::MAX);
        PersistedState {
            term: self.term,
            voted_for: self.voted_for,
            base_index: from,
            base_term: self.term_at(from).unwrap_or(self.base_term),
            entries: self.log.iter().skip(skip).cloned().collect(),
        }
    }

    fn send(&self, body: Body, out: &mut Vec<VoteOutput>) {
        if let Some(key) = &self.key {
            out.push(VoteOutput::Broadcast(Envelope::seal(body, key).encode()));
        }
    }

    /// A fresh election timeout, uniform on `[min, max)`: drawn from this server's
    /// address, its term and a counter, so two servers (or two draws) differ but a
    /// simulation replays it exactly.
    fn election_timeout(&mut self) -> u64 {
        let span = self.params.election_timeout_max_ms - self.params.election_timeout_min_ms;
        let digest = sha256d_parts(&[
            b"toychain/raft/election-timeout",
            &self.me.0,
            &self.term.to_le_bytes(),
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

    fn majority(&self) -> usize {
        majority(self.servers.len())
    }

    fn uncommitted(&self) -> u64 {
        self.last_index().saturating_sub(self.commit_index)
    }

    /// etcd's lease: a server that heard from a live leader less than the minimum election
    /// timeout ago ignores requests to replace it (thesis §9.6, with check-quorum).
    fn in_lease(&self, now: u64) -> bool {
        self.leader.is_some()
            && self
                .last_leader_contact
                .is_some_and(|t| now < t.saturating_add(self.params.election_timeout_min_ms))
    }

    // ----- role changes -----

    fn become_follower(&mut self, term: u64, leader: Option<Address>, out: &mut Vec<VoteOutput>) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.dirty = true;
        }
        if self.role == Role::Leader {
            out.push(VoteOutput::CancelTimer(TIMER_HEARTBEAT));
            out.push(VoteOutput::CancelTimer(TIMER_BUILD));
            out.push(VoteOutput::CancelTimer(TIMER_CHECK_QUORUM));
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
        self.acks.clear();
        self.build_pending = false;
        self.reset_election_timer(out);
    }

    fn on_head(
        &mut self,
        head: SealedHeader,
        voters: Vec<Address>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let position = EntryData::of_header(&head).map_err(reject)?;
        if !voters.is_empty() {
            self.set_servers(voters, out);
        }
        if position.index > self.commit_index {
            // Committed elsewhere and synced, or imported before a restart: when the log
            // holds that very block, what precedes it is committed too; otherwise the log
            // starts afresh after it and the leader repairs the rest.
            let held = self
                .entry(position.index)
                .and_then(|e| e.block.as_ref())
                .is_some_and(|b| b.hash() == head.hash());
            if !held {
                self.log.clear();
                self.base_index = position.index;
                self.base_term = position.term;
                self.certificates.clear();
                self.signed.clear();
                self.dirty = true;
            }
            self.commit_index = position.index;
        }
        self.head_index = position.index;
        self.head = Some(head);
        self.build_pending = false;
        self.compact();
        if !self.started {
            self.started = true;
            if matches!(self.role, Role::Follower) {
                self.reset_election_timer(out);
            }
        }
        Ok(())
    }

    /// The membership at the node's head (thesis §4.1, single-server changes, adopted as
    /// each block carrying one is committed): a server removed stops voting and leading;
    /// a server added starts following; a leader starts or stops replicating.
    fn set_servers(&mut self, mut servers: Vec<Address>, out: &mut Vec<VoteOutput>) {
        servers.sort();
        servers.dedup();
        if servers == self.servers {
            return;
        }
        if self.former.len() > crate::raft::MAX_SERVERS {
            self.former.clear();
        }
        for removed in self.servers.iter().filter(|s| !servers.contains(s)) {
            self.former.insert(*removed);
        }
        for added in &servers {
            self.former.remove(added);
        }
        self.servers = servers;
        let member = self.key.is_some() && self.servers.contains(&self.me);
        match (self.role, member) {
            (Role::Observer, true) => {
                self.role = Role::Follower;
                if self.started {
                    self.reset_election_timer(out);
                }
            }
            (Role::Observer, false) => {}
            (role, false) => {
                if role == Role::Leader {
                    out.push(VoteOutput::CancelTimer(TIMER_HEARTBEAT));
                    out.push(VoteOutput::CancelTimer(TIMER_BUILD));
                    out.push(VoteOutput::CancelTimer(TIMER_CHECK_QUORUM));
                }
                out.push(VoteOutput::CancelTimer(TIMER_ELECTION));
                self.role = Role::Observer;
                self.leader = None;
                self.votes.clear();
                self.progress.clear();
            }
            (Role::Leader, true) => {
                let next_index = self.last_index() + 1;
                let servers = self.servers.clone();
                self.progress.retain(|s, _| servers.contains(s));
                for server in servers.into_iter().filter(|s| *s != self.me) {
                    self.progress.entry(server).or_insert(Progress {
                        next_index,
                        ..Progress::default()
                    });
                }
            }
            (_, true) => {}
        }
    }

    fn on_timeout(&mut self, now: u64, id: TimerId, out: &mut Vec<VoteOutput>) {
        match (id, self.role) {
            (TIMER_ELECTION, Role::Follower | Role::PreCandidate | Role::Candidate) => {
                self.start_pre_vote(now, out);
            }
            (TIMER_HEARTBEAT, Role::Leader) => {
                self.broadcast_append(out);
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

    /// etcd's check-quorum: a leader that has not heard from a majority within an election
    /// timeout steps down, so a leader cut off in a minority stops acting as one.
    fn check_quorum(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        let active = 1 + self.progress.values().filter(|p| p.recent_active).count();
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        if active < self.majority() {
            let term = self.term;
            self.become_follower(term, None, out);
            return;
        }
        self.last_leader_contact = Some(now);
        out.push(VoteOutput::SetTimer {
            id: TIMER_CHECK_QUORUM,
            after_millis: self.params.election_timeout_min_ms,
        });
    }

    /// The node builds on its chain head, whose state it needs, so a leader asks for the
    /// next block only once every block in its log is committed and imported, and once it
    /// has committed an entry of its own term (its no-op): the thesis's §4.1 condition
    /// before a leader may change the membership, kept for every block.
    fn maybe_build(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        if self.build_pending || self.uncommitted() >= MAX_UNCOMMITTED_ENTRIES as u64 {
            return;
        }
        if self.term_at(self.commit_index) != Some(self.term) {
            return;
        }
        let Some(head) = &self.head else { return };
        // The head must be committed, and no older than the log: entries the log no
        // longer holds may be blocks the node has not imported yet.
        if self.head_index > self.commit_index || self.head_index < self.base_index {
            return;
        }
        let block_after_head = (self.head_index + 1..=self.last_index())
            .any(|i| self.entry(i).is_some_and(|e| e.block.is_some()));
        if block_after_head {
            return;
        }
        let timestamp = Timestamp((now / 1000).max(head.timestamp.0.saturating_add(1)));
        let data = EntryData {
            term: self.term,
            index: self.last_index() + 1,
            live: self.live_servers(now),
        }
        .encode();
        out.push(VoteOutput::Build {
            parent: head.hash(),
            timestamp,
            data,
        });
        self.build_pending = true;
    }

    /// The servers (as [`EntryData::live`] bits) a leader heard from within the minimum
    /// election timeout, itself included.
    fn live_servers(&self, now: u64) -> u64 {
        let window = self.params.election_timeout_min_ms;
        self.servers
            .iter()
            .enumerate()
            .take(64)
            .filter(|(_, s)| {
                **s == self.me
                    || self
                        .progress
                        .get(*s)
                        .and_then(|p| p.heard_at)
                        .is_some_and(|t| now < t.saturating_add(window))
            })
            .fold(0u64, |mask, (i, _)| mask | (1 << i))
    }

    fn on_built(&mut self, block: Block, out: &mut Vec<VoteOutput>) -> Result<(), EngineError> {
        if self.role != Role::Leader {
            return Err(ignored(
                "built block arrived after this server stopped leading",
            ));
        }
        let data = EntryData::of_header(&block.header).map_err(reject)?;
        let position = (data.term, data.index);
        let expected = (self.term, self.last_index() + 1);
        let on_head = self
            .head
            .as_ref()
            .is_some_and(|h| h.hash() == block.header.parent);
        if position != expected || !on_head || block.header.producer != self.me {
            return Err(ignored(format!(
                "built block at {position:?} on {} no longer fits the log (next {expected:?})",
                block.header.parent
            )));
        }
        if self.uncommitted() >= MAX_UNCOMMITTED_ENTRIES as u64 {
            return Err(ignored("the uncommitted log is full"));
        }
        self.log.push(Entry {
            term: self.term,
            block: Some(block),
        });
        self.dirty = true;
        self.build_pending = false;
        self.broadcast_append(out);
        self.advance_commit(out);
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
                envelope::refused::<RaftError>(ENGINE_NAME, refusal, |sender| {
                    // A removed server may still send what it sent before it learned.
                    if self.former.contains(&sender) {
                        ignored(format!("a message from {sender}, a removed server"))
                    } else {
                        reject(RaftError::SenderNotServer { sender })
                    }
                })
            })?;
        let Some((sender, envelope)) = admitted else {
            return Ok(());
        };
        let term = envelope.body.term();
        match envelope.body {
            Body::RequestVote {
                term,
                last_index,
                last_term,
                pre_vote,
            } => self.on_request_vote(now, sender, term, last_index, last_term, pre_vote, out),
            Body::VoteResponse {
                granted, pre_vote, ..
            } => {
                // A granted pre-vote carries the term it would be for, not the voter's.
                let pre_vote_grant = pre_vote && granted;
                if term > self.term && !pre_vote_grant {
                    self.become_follower(term, None, out);
                    return Ok(());
                }
                if term < self.term {
                    return Err(ignored(format!(
                        "vote response of term {term}, now in {}",
                        self.term
                    )));
                }
                self.on_vote_response(now, sender, term, granted, pre_vote, out)
            }
            Body::AppendEntries {
                prev_index,
                prev_term,
                entries,
                leader_commit,
                certificates,
                ..
            } => {
                if term < self.term {
                    // Figure 2: reply false, with the term that tells the old leader to step
                    // down.
                    self.reply_append(sender, false, 0, Vec::new(), out);
                    return Ok(());
                }
                self.on_append_entries(
                    now,
                    sender,
                    term,
                    prev_index,
                    prev_term,
                    entries,
                    leader_commit,
                    certificates,
                    out,
                )
            }
            Body::AppendResponse {
                success,
                match_index,
                last_index,
                commit_index,
                acks,
                ..
            } => {
                if term > self.term {
                    self.become_follower(term, None, out);
                    return Ok(());
                }
                if term < self.term {
                    return Err(ignored(format!(
                        "append response of term {term}, now in {}",
                        self.term
                    )));
                }
                let response = AppendResponse {
                    success,
                    match_index,
                    last_index,
                    commit_index,
                    acks,
                };
                self.on_append_response(now, sender, envelope.sender, response, out)
            }
        }
    }
}

impl VotingMachine for RaftMachine {
    fn handle(
        &mut self,
        now_millis: u64,
        input: VoteInput,
    ) -> Result<Vec<VoteOutput>, EngineError> {
        let mut out = Vec::new();
        match input {
            VoteInput::Head { head, voters } => self.on_head(head, voters, &mut out)?,
            VoteInput::Message(bytes) => self.on_message(now_millis, &bytes, &mut out)?,
            VoteInput::Timeout(id) => self.on_timeout(now_millis, id, &mut out),
            VoteInput::Built(block) => self.on_built(*block, &mut out)?,
            VoteInput::Validated { hash, .. } => {
                return Err(ignored(format!(
                    "raft asks for no validation (got a verdict on {hash})"
                )));
            }
        }
        // Figure 2: persistent state is on stable storage before any answer goes out.
        if self.dirty {
            self.dirty = false;
            out.insert(0, VoteOutput::Persist(self.persisted().encode()));
        }
        Ok(out)
    }

    fn status(&self) -> Vec<(&'static str, String)> {
        vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("term", self.term.to_string()),
            ("role", self.role.name().to_owned()),
            (
                "leader",
                self.leader
                    .map_or_else(|| "none".to_owned(), |l| l.to_string()),
            ),
            ("commit_index", self.commit_index.to_string()),
            ("last_index", self.last_index().to_string()),
            (
                "voted_for",
                self.voted_for
                    .map_or_else(|| "none".to_owned(), |v| v.to_string()),
            ),
        ]
    }
}
