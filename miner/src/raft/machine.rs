//! One server's Raft: a pure state machine behind [`chain::VotingMachine`].
//!
//! Figure 2 of the paper, rule by rule, with etcd's additions: pre-vote and check-quorum
//! (thesis §9.6) and a no-op entry from every new leader (thesis §6.4). The node's chain
//! holds the committed prefix of the log; the machine holds a window of recently committed
//! entries (to repair followers) and the uncommitted tail.

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
    EngineError::Ignored {
        engine: ENGINE_NAME,
        reason: reason.into(),
    }
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

    /// Thesis §9.6: ask first whether a majority would vote for us in the next term, so a
    /// server cut off from the others does not raise its term and depose a healthy leader
    /// when it returns.
    fn start_pre_vote(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.me, true);
        self.reset_election_timer(out);
        if self.votes.len() >= self.majority() {
            self.start_election(now, out);
            return;
        }
        let body = Body::RequestVote {
            term: self.term + 1,
            last_index: self.last_index(),
            last_term: self.last_term(),
            pre_vote: true,
        };
        self.send(body, out);
    }

    /// §5.2: a new term, a vote for oneself, RequestVote to all.
    fn start_election(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.term += 1;
        self.voted_for = Some(self.me);
        self.dirty = true;
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.me, true);
        self.reset_election_timer(out);
        if self.votes.len() >= self.majority() {
            self.become_leader(now, out);
            return;
        }
        let body = Body::RequestVote {
            term: self.term,
            last_index: self.last_index(),
            last_term: self.last_term(),
            pre_vote: false,
        };
        self.send(body, out);
    }

    fn become_leader(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.role = Role::Leader;
        self.leader = Some(self.me);
        self.votes.clear();
        self.acks.clear();
        self.build_pending = false;
        self.last_leader_contact = Some(now);
        let next_index = self.last_index() + 1;
        self.progress = self
            .servers
            .iter()
            .filter(|s| **s != self.me)
            .map(|s| {
                (
                    *s,
                    Progress {
                        next_index,
                        ..Progress::default()
                    },
                )
            })
            .collect();
        // Thesis §6.4: an entry of the new term, so the entries of earlier terms this
        // leader holds can be committed with it (§5.4.2 counts replicas of own-term
        // entries only), even if no block follows.
        if self.uncommitted() < MAX_UNCOMMITTED_ENTRIES as u64 {
            self.log.push(Entry {
                term: self.term,
                block: None,
            });
            self.dirty = true;
        }
        out.push(VoteOutput::CancelTimer(TIMER_ELECTION));
        out.push(VoteOutput::SetTimer {
            id: TIMER_HEARTBEAT,
            after_millis: self.params.heartbeat_ms,
        });
        out.push(VoteOutput::SetTimer {
            id: TIMER_BUILD,
            after_millis: self.params.block_time.saturating_mul(1000),
        });
        out.push(VoteOutput::SetTimer {
            id: TIMER_CHECK_QUORUM,
            after_millis: self.params.election_timeout_min_ms,
        });
        self.broadcast_append(out);
        self.advance_commit(out);
    }

    // ----- inputs -----

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
        let envelope = Envelope::decode(bytes).map_err(reject)?;
        if envelope
            .body
            .recipient()
            .is_some_and(|to| to != self.me || self.role == Role::Observer)
        {
            // Meant for another server: not ours to check or answer.
            return Ok(());
        }
        let sender = envelope.verify().map_err(reject)?;
        if !self.servers.contains(&sender) {
            if self.former.contains(&sender) {
                return Err(ignored(format!(
                    "a message from {sender}, a removed server"
                )));
            }
            return Err(reject(RaftError::SenderNotServer { sender }));
        }
        if self.role == Role::Observer {
            return Ok(());
        }
        if sender == self.me {
            return Err(ignored("a message from this server itself"));
        }
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
                self.on_append_response(
                    now,
                    sender,
                    envelope.sender,
                    success,
                    match_index,
                    last_index,
                    commit_index,
                    acks,
                    out,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request_vote(
        &mut self,
        now: u64,
        candidate: Address,
        term: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        // §5.4.1: the candidate's log must be at least as up to date as ours.
        let up_to_date = last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index());
        if term < self.term {
            if pre_vote {
                // etcd answers a stale pre-vote, so the pre-candidate learns the term.
                let body = Body::VoteResponse {
                    to: candidate,
                    term: self.term,
                    granted: false,
                    pre_vote: true,
                };
                self.send(body, out);
                return Ok(());
            }
            return Err(ignored(format!(
                "vote request of term {term}, now in {}",
                self.term
            )));
        }
        if term > self.term && self.in_lease(now) {
            return Err(ignored(format!(
                "vote request of term {term} while the leader of term {} is live",
                self.term
            )));
        }
        if pre_vote {
            // Nothing changes: no term, no vote, no timer.
            let can_vote = term > self.term
                || self.voted_for == Some(candidate)
                || (self.voted_for.is_none() && self.leader.is_none());
            let granted = can_vote && up_to_date;
            let body = Body::VoteResponse {
                to: candidate,
                term: if granted { term } else { self.term },
                granted,
                pre_vote: true,
            };
            self.send(body, out);
            return Ok(());
        }
        if term > self.term {
            self.become_follower(term, None, out);
        }
        // §5.2: at most one vote per term, first come first served.
        let can_vote = self.voted_for.is_none() || self.voted_for == Some(candidate);
        let granted = can_vote && up_to_date;
        if granted {
            if self.voted_for.is_none() {
                self.voted_for = Some(candidate);
                self.dirty = true;
            }
            self.reset_election_timer(out);
        }
        let body = Body::VoteResponse {
            to: candidate,
            term: self.term,
            granted,
            pre_vote: false,
        };
        self.send(body, out);
        Ok(())
    }

    fn on_vote_response(
        &mut self,
        now: u64,
        voter: Address,
        term: u64,
        granted: bool,
        pre_vote: bool,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let campaigning = if pre_vote {
            // A grant carries the proposed term, a refusal the voter's (etcd).
            self.role == Role::PreCandidate
                && (term == self.term + 1 || (!granted && term == self.term))
        } else {
            self.role == Role::Candidate && term == self.term
        };
        if !campaigning {
            return Err(ignored(format!(
                "{} of term {term} from {voter} while {} in term {}",
                if pre_vote { "pre-vote" } else { "vote" },
                self.role.name(),
                self.term
            )));
        }
        self.votes.insert(voter, granted);
        let grants = self.votes.values().filter(|g| **g).count();
        let refusals = self.votes.len() - grants;
        if grants >= self.majority() {
            if pre_vote {
                self.start_election(now, out);
            } else {
                self.become_leader(now, out);
            }
        } else if refusals >= self.majority() {
            // The election is lost; wait for the winner's heartbeat as a follower.
            let term = self.term;
            self.become_follower(term, None, out);
        }
        Ok(())
    }

    /// Checks that `entries`, to follow `prev_index`, are blocks where they say they are,
    /// sealed by servers, in terms that never decrease and never pass `term`, and that
    /// none contradicts an entry this server committed (Leader Completeness: an honest
    /// leader holds every committed entry).
    fn check_entries(
        &self,
        sender: Address,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        certificates: usize,
    ) -> Result<(), RaftError> {
        let malformed = |reason: String| RaftError::MalformedMessage {
            sender,
            what: "append entries",
            reason,
        };
        if certificates > MAX_CERTIFICATES_PER_APPEND {
            return Err(malformed(format!(
                "{certificates} certificates, at most {MAX_CERTIFICATES_PER_APPEND}"
            )));
        }
        if entries.len() > MAX_ENTRIES_PER_APPEND {
            return Err(malformed(format!(
                "{} entries, at most {MAX_ENTRIES_PER_APPEND}",
                entries.len()
            )));
        }
        let mut last_term = prev_term;
        for (k, entry) in entries.iter().enumerate() {
            let index = prev_index + 1 + k as u64;
            if index <= self.commit_index
                && self.term_at(index).is_some_and(|held| held != entry.term)
            {
                return Err(malformed(format!(
                    "entry {index} of term {} conflicts with the committed entry of term {}",
                    entry.term,
                    self.term_at(index).unwrap_or_default()
                )));
            }
            if entry.term < last_term || entry.term > term {
                return Err(malformed(format!(
                    "entry {index} of term {} after term {last_term}, in term {term}",
                    entry.term
                )));
            }
            last_term = entry.term;
            if let Some(block) = &entry.block {
                let position = EntryData::of_header(&block.header)?;
                if position.index != index || position.term != entry.term {
                    return Err(malformed(format!(
                        "entry {index} of term {} holds a block placed at {} of term {}",
                        entry.term, position.index, position.term
                    )));
                }
                if !self.servers.contains(&block.header.producer) {
                    return Err(RaftError::NotServer {
                        height: block.header.height,
                        producer: block.header.producer,
                    });
                }
                verify_signed_seal(&block.header)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append_entries(
        &mut self,
        now: u64,
        leader: Address,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
        certificates: Vec<(u64, Vec<u8>)>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role == Role::Leader && term == self.term {
            return Err(reject(RaftError::MalformedMessage {
                sender: leader,
                what: "append entries",
                reason: format!("a second leader in term {term}"),
            }));
        }
        self.check_entries(
            leader,
            term,
            prev_index,
            prev_term,
            &entries,
            certificates.len(),
        )
        .map_err(reject)?;
        // §5.1 and §5.2: a current leader makes us (even a candidate of its term) follow it.
        self.become_follower(term, Some(leader), out);
        self.last_leader_contact = Some(now);

        // What this server committed matches every leader's log (Leader Completeness):
        // say so, as etcd does, and the leader sends what follows.
        if prev_index < self.commit_index {
            let committed = self.commit_index;
            self.reply_append(leader, true, committed, Vec::new(), out);
            return Ok(());
        }
        // §5.3: the consistency check on the entry before the new ones.
        if self.term_at(prev_index) != Some(prev_term) {
            let hint = prev_index.saturating_sub(1).min(self.last_index());
            self.reply_append(leader, false, hint, Vec::new(), out);
            return Ok(());
        }
        let mut index = prev_index;
        for entry in entries {
            let next = index + 1;
            if next <= self.last_index() {
                if self.term_at(next) == Some(entry.term) {
                    // Same index and term: the same entry (Log Matching).
                    index = next;
                    continue;
                }
                if next <= self.commit_index {
                    // Refused before anything changed (see `check_entries`).
                    break;
                }
                // §5.3: a conflicting entry and all that follow it go.
                let keep = usize::try_from(next - self.base_index - 1).unwrap_or(usize::MAX);
                self.log.truncate(keep);
                self.signed.retain(|i, _| *i < next);
                self.certificates.retain(|i, _| *i < next);
                self.dirty = true;
            }
            if self.uncommitted() >= MAX_UNCOMMITTED_ENTRIES as u64 {
                break;
            }
            self.log.push(entry);
            self.dirty = true;
            index = next;
        }
        let matched = index;
        for (i, certificate) in certificates {
            if i > self.commit_index && i <= matched && self.certificate_fits(i, &certificate) {
                self.certificates.insert(i, certificate);
            }
        }
        self.commit_up_to(leader_commit.min(matched), out);
        // Our acks: only when our log ends, as far as the leader knows, in an entry of the
        // leader's term (see `Certificate`).
        let acks = if self.term_at(matched) == Some(self.term) {
            self.sign_acks(leader_commit.max(self.base_index), matched)
        } else {
            Vec::new()
        };
        self.reply_append(leader, true, matched, acks, out);
        Ok(())
    }

    /// True when `certificate` proves the block this log holds at `index`.
    fn certificate_fits(&self, index: u64, certificate: &[u8]) -> bool {
        let Some(Entry {
            term,
            block: Some(block),
        }) = self.entry(index)
        else {
            return false;
        };
        check_certificate(
            &self.servers,
            block.header.height,
            &block.hash(),
            *term,
            certificate,
        )
        .is_ok()
    }

    fn reply_append(
        &self,
        to: Address,
        success: bool,
        match_index: u64,
        acks: Vec<Ack>,
        out: &mut Vec<VoteOutput>,
    ) {
        let body = Body::AppendResponse {
            to,
            term: self.term,
            success,
            match_index,
            last_index: self.last_index(),
            commit_index: self.commit_index,
            acks,
        };
        self.send(body, out);
    }

    /// This server's ack of the block at `index`, signed once per (block, term).
    fn sign_ack(&mut self, index: u64) -> Option<Ack> {
        let key = self.key.as_ref()?;
        let block = self.entry(index)?.block.as_ref()?;
        let (hash, height) = (block.hash(), block.header.height);
        let signature = match self.signed.get(&index) {
            Some((h, t, signature)) if *h == hash && *t == self.term => *signature,
            _ => {
                let signature = key.sign(&ack_digest(self.term, height, &hash));
                self.signed.insert(index, (hash, self.term, signature));
                signature
            }
        };
        Some(Ack {
            height,
            hash,
            signature,
        })
    }

    /// Acks of the blocks held in `(after, through]`, the earliest first and at most
    /// [`MAX_ACKS_PER_RESPONSE`]: the leader commits in order, and asks again.
    fn sign_acks(&mut self, after: u64, through: u64) -> Vec<Ack> {
        (after.max(self.base_index) + 1..=through)
            .filter_map(|i| self.sign_ack(i))
            .take(MAX_ACKS_PER_RESPONSE)
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append_response(
        &mut self,
        now: u64,
        follower: Address,
        follower_key: chain::PublicKey,
        success: bool,
        match_index: u64,
        last_index: u64,
        commit_index: u64,
        acks: Vec<Ack>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader {
            return Err(ignored(format!(
                "append response while {} in term {}",
                self.role.name(),
                self.term
            )));
        }
        if !self.progress.contains_key(&follower) {
            return Err(ignored(format!(
                "append response from {follower}, not a follower"
            )));
        }
        if acks.len() > MAX_ACKS_PER_RESPONSE {
            return Err(reject(RaftError::MalformedMessage {
                sender: follower,
                what: "append response",
                reason: format!("{} acks, at most {MAX_ACKS_PER_RESPONSE}", acks.len()),
            }));
        }
        if success && match_index > self.last_index() {
            return Err(reject(RaftError::MalformedMessage {
                sender: follower,
                what: "append response",
                reason: format!(
                    "matches through {match_index}, past the leader's last index {}",
                    self.last_index()
                ),
            }));
        }
        // Check every ack before keeping any.
        let mut kept = Vec::new();
        if success {
            for ack in &acks {
                let index = (self.commit_index + 1..=match_index).find(|i| {
                    self.entry(*i)
                        .and_then(|e| e.block.as_ref())
                        .is_some_and(|b| b.hash() == ack.hash && b.header.height == ack.height)
                });
                follower_key
                    .verify(
                        &ack_digest(self.term, ack.height, &ack.hash),
                        &ack.signature,
                    )
                    .map_err(|e| {
                        reject(RaftError::BadAck {
                            hash: ack.hash,
                            signer: follower,
                            reason: e.to_string(),
                        })
                    })?;
                if let Some(index) = index {
                    kept.push((index, ack.signature));
                }
            }
        }
        let last = self.last_index();
        let Some(progress) = self.progress.get_mut(&follower) else {
            return Ok(());
        };
        progress.recent_active = true;
        progress.heard_at = Some(now);
        progress.commit_index = commit_index;
        if success {
            progress.match_index = progress.match_index.max(match_index);
            progress.next_index = progress.next_index.max(progress.match_index + 1);
            for (index, signature) in kept {
                self.acks.entry(index).or_default().insert(
                    follower,
                    SignedAck {
                        key: follower_key,
                        signature,
                    },
                );
            }
            let committed = self.commit_index;
            self.advance_commit(out);
            if self.commit_index > committed {
                // Tell every follower at once, with the certificates, rather than at the
                // next heartbeat.
                self.broadcast_append(out);
                return Ok(());
            }
        } else {
            // §5.3: back off nextIndex and retry; the follower's last index skips the
            // entries it cannot hold.
            let backed = progress
                .next_index
                .saturating_sub(1)
                .min(last_index.saturating_add(1));
            progress.next_index = backed.max(progress.match_index + 1).max(1);
        }
        // Retry at once while the log can serve the follower; one that needs entries
        // compacted away gets heartbeats only, until its node syncs the certified blocks
        // (retrying at once would bounce refusals back and forth at network speed).
        let base = self.base_index;
        let retry = self
            .progress
            .get(&follower)
            .is_some_and(|p| p.next_index > base && (p.next_index <= last || !success));
        if retry {
            self.send_append(follower, out);
        }
        Ok(())
    }

    /// §5.3 and §5.4.2: the highest index of this term held by a majority is committed,
    /// with everything before it; each block's certificate is the acks gathered for it.
    fn advance_commit(&mut self, out: &mut Vec<VoteOutput>) {
        if self.role != Role::Leader {
            return;
        }
        let mut target = None;
        let mut n = self.last_index();
        while n > self.commit_index {
            match self.term_at(n) {
                Some(t) if t == self.term => {
                    let holders = 1 + self
                        .progress
                        .values()
                        .filter(|p| p.match_index >= n)
                        .count();
                    if holders >= self.majority() {
                        target = Some(n);
                        break;
                    }
                }
                // Figure 8: never count replicas of an earlier term's entry.
                _ => break,
            }
            n -= 1;
        }
        let Some(target) = target else { return };
        let mut certified = self.commit_index;
        for i in self.commit_index + 1..=target {
            if self.entry(i).is_some_and(|e| e.block.is_some()) {
                let Some(own) = self.sign_ack(i) else { break };
                let Some(key) = self.key.as_ref().map(SecretKey::public_key) else {
                    break;
                };
                let mut acks = vec![SignedAck {
                    key,
                    signature: own.signature,
                }];
                if let Some(theirs) = self.acks.get(&i) {
                    acks.extend(theirs.values().copied());
                }
                if acks.len() < self.majority() {
                    break;
                }
                let certificate = Certificate {
                    term: self.term,
                    acks,
                };
                self.certificates.insert(i, certificate.encode());
            }
            certified = i;
        }
        self.commit_up_to(certified, out);
    }

    /// Commits entries in order through `target`, each block with its certificate; stops
    /// at a block whose certificate has not arrived.
    fn commit_up_to(&mut self, target: u64, out: &mut Vec<VoteOutput>) {
        while self.commit_index < target {
            let i = self.commit_index + 1;
            let Some(entry) = self.entry(i) else { break };
            if let Some(block) = &entry.block {
                let Some(certificate) = self.certificates.get(&i) else {
                    break;
                };
                out.push(VoteOutput::Commit {
                    block: Box::new(block.clone()),
                    certificate: certificate.clone(),
                });
            }
            self.commit_index = i;
        }
        self.acks.retain(|i, _| *i > self.commit_index);
        self.signed.retain(|i, _| *i > self.commit_index);
        self.compact();
    }

    /// Forgets committed entries beyond the repair window, once the chain holds them.
    fn compact(&mut self) {
        let keep_from = self
            .commit_index
            .min(self.head_index)
            .saturating_sub(COMMITTED_WINDOW as u64);
        if keep_from <= self.base_index || keep_from > self.last_index() {
            return;
        }
        let Some(base_term) = self.term_at(keep_from) else {
            return;
        };
        let drop = usize::try_from(keep_from - self.base_index).unwrap_or(usize::MAX);
        self.log.drain(..drop);
        self.base_index = keep_from;
        self.base_term = base_term;
        self.certificates.retain(|i, _| *i > keep_from);
    }

    fn broadcast_append(&mut self, out: &mut Vec<VoteOutput>) {
        let followers: Vec<Address> = self.progress.keys().copied().collect();
        for follower in followers {
            self.send_append(follower, out);
        }
    }

    /// AppendEntries for one follower: the entries from its nextIndex (as many as fit),
    /// and the certificates of committed blocks it has not committed yet.
    fn send_append(&mut self, follower: Address, out: &mut Vec<VoteOutput>) {
        let Some(progress) = self.progress.get(&follower).copied() else {
            return;
        };
        // Entries before the base are compacted: the follower's node must sync those
        // blocks from the chain (with their certificates) before the log can be repaired.
        let prev_index = progress
            .next_index
            .saturating_sub(1)
            .clamp(self.base_index, self.last_index());
        let prev_term = self.term_at(prev_index).unwrap_or(self.base_term);
        let mut budget = APPEND_BUDGET_BYTES;
        let mut entries = Vec::new();
        let mut index = prev_index;
        // A follower behind the base could not use the entries: a heartbeat will do.
        let serveable = progress.next_index > self.base_index;
        while let Some(entry) = self.entry(index + 1).filter(|_| serveable) {
            let size = borsh::object_length(entry).unwrap_or(usize::MAX);
            if (!entries.is_empty() && size > budget) || entries.len() >= MAX_ENTRIES_PER_APPEND {
                break;
            }
            budget = budget.saturating_sub(size);
            entries.push(entry.clone());
            index += 1;
        }
        let mut certificates = Vec::new();
        // A follower reports its own commit index; one ahead of ours needs nothing (and
        // must not make an inverted range).
        let (from, through) = (
            progress.commit_index.saturating_add(1),
            self.commit_index.min(index),
        );
        let wanted = if from <= through {
            self.certificates.range(from..=through)
        } else {
            self.certificates.range(0..0)
        };
        for (i, certificate) in wanted.take(MAX_CERTIFICATES_PER_APPEND) {
            if certificate.len() > budget {
                break;
            }
            budget -= certificate.len();
            certificates.push((*i, certificate.clone()));
        }
        let body = Body::AppendEntries {
            to: follower,
            term: self.term,
            prev_index,
            prev_term,
            entries,
            leader_commit: self.commit_index,
            certificates,
        };
        self.send(body, out);
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
