//! One server's ZAB: a pure state machine behind [`chain::VotingMachine`].
//!
//! The phases of the DSN 2011 paper (and the `Zab.tla` specification in apache/zookeeper's
//! `zookeeper-specifications`) with Fast Leader Election as ZooKeeper runs it. The node's
//! chain holds the committed prefix of the history; the machine holds a window of recently
//! committed proposals (to bring lagging followers up) and the uncommitted tail.

use crate::envelope;
use crate::quorum::{Certificate, VoteSignature, VoterSet};
use crate::seal::verify_signed_seal;
use crate::zab::engine::reject;
use crate::zab::error::ZabError;
use crate::zab::params::ZabParams;
use crate::zab::wire::{
    Ack, Anchor, Body, Envelope, PeerState, PersistedState, Proposal, Vote, Zxid, ack_body,
    check_certificate,
};
use crate::zab::{
    COMMITTED_WINDOW, ENGINE_NAME, MAX_ACKS_PER_MESSAGE, MAX_PROPOSALS_PER_SYNC,
    MAX_UNCOMMITTED_PROPOSALS, SYNC_BUDGET_BYTES, TIMER_BUILD, TIMER_ELECTION, TIMER_FINALIZE,
    TIMER_LEADER, TIMER_PING, TIMER_QUORUM,
};
use chain::{
    Address, Block, BlockHash, EngineError, Height, SealedHeader, SecretKey, TimerId, Timestamp,
    VoteInput, VoteOutput, VotingMachine,
};
use std::collections::BTreeMap;

mod broadcast;
mod election;
mod sync;

/// A server's state (ZooKeeper's LOOKING, FOLLOWING, LEADING), as `status()` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Looking,
    Follower,
    Leader,
    /// A node that is no server (or has no key): it takes part in nothing.
    Observer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Looking => "looking",
            Role::Follower => "follower",
            Role::Leader => "leader",
            Role::Observer => "observer",
        }
    }
}

/// The phase of the protocol a server is in (DSN 2011 §III: phase 0 is the election).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Election,
    Discovery,
    Synchronization,
    Broadcast,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Election => "election",
            Phase::Discovery => "discovery",
            Phase::Synchronization => "synchronization",
            Phase::Broadcast => "broadcast",
        }
    }
}

/// What a leader knows of one follower (the TLA+ spec's `learners`, `ackeRecv`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Learner {
    /// The acceptedEpoch its FOLLOWERINFO reported.
    accepted_epoch: u64,
    /// Its ACKEPOCH of this leader's epoch arrived.
    acked_epoch: bool,
    /// It acked NEWLEADER holding this leader's whole history.
    synced: bool,
    committed: Height,
    /// Heard from since the last quorum check.
    heard: bool,
    /// Its last PING answer showed it behind this leader's commits: a second one in a row
    /// (no COMMIT was merely in flight) brings it up with a NEWLEADER.
    lagging: bool,
}

/// See the module documentation.
pub struct ZabMachine {
    params: ZabParams,
    servers: VoterSet,
    key: Option<SecretKey>,
    me: Address,
    role: Role,
    phase: Phase,
    // Persistent state (the TLA+ spec's `acceptedEpoch`, `currentEpoch`, `history`).
    accepted_epoch: u64,
    /// The leader whose NEWEPOCH set `accepted_epoch`: a resent NEWEPOCH of the same epoch
    /// from it is accepted again, one from anyone else is not.
    accepted_leader: Option<Address>,
    current_epoch: u64,
    /// The committed block before `history[0]`.
    base: Anchor,
    history: Vec<Proposal>,
    // Volatile state.
    committed: Height,
    /// Certificates of committed proposals still in the history window.
    certificates: BTreeMap<Height, Vec<u8>>,
    head: Option<SealedHeader>,
    leader: Option<Address>,
    // Fast Leader Election.
    round: u64,
    vote: Vote,
    received: BTreeMap<Address, Vote>,
    out_of_election: BTreeMap<Address, (Vote, PeerState)>,
    finalize_pending: bool,
    retry_ms: u64,
    // Leading.
    learners: BTreeMap<Address, Learner>,
    /// The epoch this leader proposed (NEWEPOCH), once a quorum's FOLLOWERINFO chose it.
    proposed_epoch: Option<u64>,
    /// ACKs gathered for uncommitted proposals, by height.
    acks: BTreeMap<Height, BTreeMap<Address, VoteSignature>>,
    leading_since: u64,
    build_pending: bool,
    started: bool,
    dirty: bool,
}

impl std::fmt::Debug for ZabMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZabMachine")
            .field("me", &self.me)
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field("accepted_epoch", &self.accepted_epoch)
            .field("current_epoch", &self.current_epoch)
            .field("leader", &self.leader)
            .field("last_zxid", &self.last_zxid())
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

pub(super) fn ignored(reason: impl Into<String>) -> EngineError {
    EngineError::ignored(ENGINE_NAME, reason)
}

impl ZabMachine {
    /// A server's machine (an observer when `key` is `None` or not a server's), restored
    /// from `persisted` after a restart. It starts LOOKING once it is given its head.
    pub fn new(
        params: ZabParams,
        key: Option<SecretKey>,
        persisted: Option<PersistedState>,
    ) -> ZabMachine {
        let servers = params.voter_set();
        let me = key.as_ref().map(SecretKey::address).unwrap_or_default();
        let role = if key.is_some() && servers.contains(&me) {
            Role::Looking
        } else {
            Role::Observer
        };
        let persisted = persisted.unwrap_or(PersistedState {
            accepted_epoch: 0,
            accepted_leader: None,
            current_epoch: 0,
            base: None,
            proposals: Vec::new(),
        });
        let base = persisted.base.unwrap_or(Anchor {
            height: Height::GENESIS,
            zxid: Zxid::GENESIS,
            hash: BlockHash::ZERO,
        });
        let retry_ms = params.election_wait_ms;
        ZabMachine {
            params,
            servers,
            key,
            me,
            role,
            phase: Phase::Election,
            accepted_epoch: persisted.accepted_epoch,
            accepted_leader: persisted.accepted_leader,
            current_epoch: persisted.current_epoch,
            base,
            history: persisted.proposals,
            committed: base.height,
            certificates: BTreeMap::new(),
            head: None,
            leader: None,
            round: 0,
            vote: Vote {
                leader: me,
                zxid: Zxid::GENESIS,
                epoch: 0,
            },
            received: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            finalize_pending: false,
            retry_ms,
            learners: BTreeMap::new(),
            proposed_epoch: None,
            acks: BTreeMap::new(),
            leading_since: 0,
            build_pending: false,
            started: false,
            dirty: false,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn leader(&self) -> Option<Address> {
        self.leader
    }

    pub fn accepted_epoch(&self) -> u64 {
        self.accepted_epoch
    }

    pub fn current_epoch(&self) -> u64 {
        self.current_epoch
    }

    /// The election round (ZooKeeper's `logicalclock`).
    pub fn round(&self) -> u64 {
        self.round
    }

    /// This server's current Fast Leader Election vote.
    pub fn vote(&self) -> Vote {
        self.vote
    }

    /// The height through which this server has committed.
    pub fn committed(&self) -> Height {
        self.committed
    }

    /// The zxid of the last proposal held (the committed base when none is).
    pub fn last_zxid(&self) -> Zxid {
        self.history.last().map_or(self.base.zxid, |p| p.zxid)
    }

    pub fn last_height(&self) -> Height {
        Height(self.base.height.0 + self.history.len() as u64)
    }

    fn last_hash(&self) -> BlockHash {
        self.history
            .last()
            .map_or(self.base.hash, |p| p.block.hash())
    }

    /// The proposals this server holds (committed window and uncommitted tail), in zxid
    /// order.
    pub fn history(&self) -> &[Proposal] {
        &self.history
    }

    /// The proposal held at `height`, if any.
    pub fn proposal(&self, height: Height) -> Option<&Proposal> {
        let offset = height.0.checked_sub(self.base.height.0 + 1)?;
        self.history.get(usize::try_from(offset).ok()?)
    }

    fn hash_at(&self, height: Height) -> Option<BlockHash> {
        if height == self.base.height {
            return Some(self.base.hash);
        }
        self.proposal(height).map(|p| p.block.hash())
    }

    fn uncommitted(&self) -> u64 {
        self.last_height().0.saturating_sub(self.committed.0)
    }

    fn head_height(&self) -> Height {
        self.head
            .as_ref()
            .map_or(self.base.height, SealedHeader::height)
    }

    /// The state that [`VoteOutput::Persist`] writes, as a restart reads it back.
    pub fn persisted(&self) -> PersistedState {
        // Proposals up to the chain head are in the chain; persist what comes after.
        let from = self
            .head_height()
            .0
            .clamp(self.base.height.0, self.last_height().0);
        let skip = usize::try_from(from - self.base.height.0).unwrap_or(usize::MAX);
        let base = if from == self.base.height.0 {
            self.base
        } else {
            let p = &self.history[skip - 1];
            Anchor {
                height: p.block.header.height,
                zxid: p.zxid,
                hash: p.block.hash(),
            }
        };
        PersistedState {
            accepted_epoch: self.accepted_epoch,
            accepted_leader: self.accepted_leader,
            current_epoch: self.current_epoch,
            base: Some(base),
            proposals: self.history.iter().skip(skip).cloned().collect(),
        }
    }

    fn send(&self, body: Body, out: &mut Vec<VoteOutput>) {
        if let Some(key) = &self.key {
            out.push(VoteOutput::Broadcast(Envelope::seal(body, key).encode()));
        }
    }

    fn majority(&self) -> usize {
        self.servers.majority()
    }

    /// This server's signed ACK of the proposal at `height` in its current epoch.
    fn sign_ack(&self, height: Height) -> Option<VoteSignature> {
        let key = self.key.as_ref()?;
        let proposal = self.proposal(height)?;
        let body = ack_body(self.current_epoch, &proposal.block.header);
        Some(VoteSignature::sign(ENGINE_NAME, &body, key))
    }

    /// Commits proposals in order through `target`, each with its certificate; stops at one
    /// whose certificate has not arrived.
    fn commit_up_to(&mut self, target: Height, out: &mut Vec<VoteOutput>) {
        while self.committed < target {
            let next = Height(self.committed.0 + 1);
            let Some(proposal) = self.proposal(next) else {
                break;
            };
            let Some(certificate) = self.certificates.get(&next) else {
                break;
            };
            out.push(VoteOutput::Commit {
                block: Box::new(proposal.block.clone()),
                certificate: certificate.clone(),
            });
            self.committed = next;
        }
        let committed = self.committed;
        self.acks.retain(|h, _| *h > committed);
        self.compact();
    }

    /// True when `certificate` proves the proposal held at `height`.
    fn certificate_fits(&self, height: Height, certificate: &[u8]) -> bool {
        self.proposal(height)
            .is_some_and(|p| check_certificate(&self.servers, &p.block.header, certificate).is_ok())
    }

    /// Forgets committed proposals beyond the window, once the chain holds them.
    fn compact(&mut self) {
        let keep_from = self
            .committed
            .0
            .min(self.head_height().0)
            .saturating_sub(COMMITTED_WINDOW as u64);
        if keep_from <= self.base.height.0 || keep_from > self.last_height().0 {
            return;
        }
        let drop = usize::try_from(keep_from - self.base.height.0).unwrap_or(usize::MAX);
        let Some(last_dropped) = self.history.get(drop - 1) else {
            return;
        };
        self.base = Anchor {
            height: last_dropped.block.header.height,
            zxid: last_dropped.zxid,
            hash: last_dropped.block.hash(),
        };
        self.history.drain(..drop);
        let base = self.base.height;
        self.certificates.retain(|h, _| *h > base);
    }

    fn on_head(
        &mut self,
        now: u64,
        head: SealedHeader,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let zxid = Zxid::of_header(&head).map_err(reject)?;
        let height = head.height();
        if height > self.committed {
            // Committed elsewhere and synced, or imported before a restart: when the
            // history holds that very block, what precedes it is committed too; otherwise
            // the history starts afresh after it and the leader brings the rest.
            if self.hash_at(height) != Some(head.hash()) {
                self.history.clear();
                self.certificates.clear();
                self.dirty = true;
            } else {
                let keep = usize::try_from(height.0 - self.base.height.0).unwrap_or(usize::MAX);
                self.history.drain(..keep.min(self.history.len()));
                self.certificates.retain(|h, _| *h > height);
            }
            self.base = Anchor {
                height,
                zxid,
                hash: head.hash(),
            };
            self.committed = height;
        } else if height == self.base.height {
            // A first start (or a restart at the persisted base): the anchor is the head.
            self.base = Anchor {
                height,
                zxid,
                hash: head.hash(),
            };
        }
        self.head = Some(head);
        self.build_pending = false;
        self.compact();
        if !self.started {
            self.started = true;
            if self.role == Role::Looking {
                self.start_looking(now, out);
            }
        }
        Ok(())
    }

    fn on_timeout(&mut self, now: u64, id: TimerId, out: &mut Vec<VoteOutput>) {
        match (id, self.role) {
            (TIMER_ELECTION, Role::Looking) => self.resend_notification(out),
            (TIMER_FINALIZE, Role::Looking) => {
                self.finalize_pending = false;
                self.try_decide(now, true, out);
            }
            (TIMER_PING, Role::Leader) => {
                let epoch = self.accepted_epoch;
                self.send(Body::Ping { epoch }, out);
                out.push(VoteOutput::SetTimer {
                    id: TIMER_PING,
                    after_millis: self.params.tick_ms,
                });
            }
            (TIMER_BUILD, Role::Leader) => {
                self.maybe_build(now, out);
                out.push(VoteOutput::SetTimer {
                    id: TIMER_BUILD,
                    after_millis: self.params.block_time.saturating_mul(1000),
                });
            }
            (TIMER_QUORUM, Role::Leader) => self.check_quorum(now, out),
            (TIMER_LEADER, Role::Follower) => self.start_looking(now, out),
            _ => {}
        }
    }

    /// A leader that heard from no majority within the sync limit (or that has not reached
    /// broadcast within the init limit, twice it) goes back to LOOKING.
    fn check_quorum(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        let heard = 1 + self.learners.values().filter(|l| l.heard).count();
        for learner in self.learners.values_mut() {
            learner.heard = false;
        }
        let init_limit = self
            .leading_since
            .saturating_add(self.params.sync_limit_ms.saturating_mul(2));
        let stalled = self.phase != Phase::Broadcast && now >= init_limit;
        if heard < self.majority() || stalled {
            self.start_looking(now, out);
            return;
        }
        out.push(VoteOutput::SetTimer {
            id: TIMER_QUORUM,
            after_millis: self.params.sync_limit_ms,
        });
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
                envelope::refused::<ZabError>(ENGINE_NAME, refusal, |sender| {
                    reject(ZabError::SenderNotServer { sender })
                })
            })?;
        let Some((sender, envelope)) = admitted else {
            return Ok(());
        };
        let key = envelope.sender;
        match envelope.body {
            Body::Notification { round, state, vote } => {
                self.on_notification(now, sender, round, state, vote, out)
            }
            Body::FollowerInfo { accepted_epoch, .. } => {
                self.on_follower_info(sender, accepted_epoch, out)
            }
            Body::NewEpoch { epoch, .. } => self.on_new_epoch(now, sender, epoch, out),
            Body::AckEpoch {
                epoch,
                current_epoch,
                last_zxid,
                committed,
                ..
            } => self.on_ack_epoch(now, sender, epoch, current_epoch, last_zxid, committed, out),
            Body::NewLeader {
                epoch,
                proposals,
                certificates,
                last_zxid,
                ..
            } => self.on_new_leader(sender, epoch, proposals, certificates, last_zxid, out),
            Body::AckNewLeader {
                epoch,
                last_zxid,
                acks,
                ..
            } => self.on_ack_new_leader(sender, key, epoch, last_zxid, acks, out),
            Body::Propose { epoch, proposal } => self.on_propose(sender, epoch, proposal, out),
            Body::Ack { epoch, ack, .. } => self.on_ack(sender, key, epoch, ack, out),
            Body::Commit {
                epoch,
                height,
                certificate,
            } => self.on_commit(sender, epoch, height, certificate, out),
            Body::Ping { .. } => self.on_ping(sender, out),
            Body::PingAck {
                epoch,
                last_zxid,
                committed,
                acks,
                ..
            } => self.on_ping_ack(sender, key, epoch, last_zxid, committed, acks, out),
        }
    }

    /// Checks that `proposals` are blocks sealed by servers, each carrying its zxid, in
    /// consecutive heights whose zxids grow, none of an epoch after `epoch`.
    fn check_proposals(
        &self,
        sender: Address,
        what: &'static str,
        epoch: u64,
        proposals: &[Proposal],
    ) -> Result<(), ZabError> {
        let malformed = |reason: String| ZabError::MalformedMessage {
            sender,
            what,
            reason,
        };
        let mut previous: Option<&Proposal> = None;
        for proposal in proposals {
            let header = &proposal.block.header;
            let zxid = Zxid::of_header(header)?;
            if zxid != proposal.zxid {
                return Err(malformed(format!(
                    "proposal {} carries a block of zxid {zxid}",
                    proposal.zxid
                )));
            }
            if zxid.epoch > epoch {
                return Err(malformed(format!(
                    "proposal {zxid} is of an epoch after {epoch}"
                )));
            }
            if let Some(previous) = previous
                && (previous.block.header.height.0.checked_add(1) != Some(header.height.0)
                    || header.parent != previous.block.hash()
                    || zxid <= previous.zxid)
            {
                return Err(malformed(format!(
                    "proposal {zxid} at height {} does not follow {} at height {}",
                    header.height, previous.zxid, previous.block.header.height
                )));
            }
            if !self.servers.contains(&header.producer) {
                return Err(ZabError::NotServer {
                    height: header.height,
                    producer: header.producer,
                });
            }
            verify_signed_seal(header)?;
            previous = Some(proposal);
        }
        Ok(())
    }

    /// Keeps the acks in a `what` from `signer` (whose key is `key`), a follower of this
    /// leader: each a signature over a proposal this leader holds uncommitted, in its
    /// current epoch. Too many acks, or any bad signature, refuses them all.
    fn record_acks(
        &mut self,
        what: &'static str,
        signer: Address,
        key: chain::PublicKey,
        acks: &[Ack],
    ) -> Result<(), EngineError> {
        if acks.len() > MAX_ACKS_PER_MESSAGE {
            return Err(reject(ZabError::MalformedMessage {
                sender: signer,
                what,
                reason: format!("{} acks, at most {MAX_ACKS_PER_MESSAGE}", acks.len()),
            }));
        }
        if !self.learners.contains_key(&signer) {
            return Err(ignored(format!("{what} from {signer}, not a follower")));
        }
        let kept = self.check_acks(signer, key, acks)?;
        for (height, signature) in kept {
            self.acks
                .entry(height)
                .or_default()
                .insert(signer, signature);
        }
        Ok(())
    }

    /// The verified signatures of `acks` by `signer` (whose key is `key`) over proposals
    /// this leader holds uncommitted, in its current epoch; any bad signature refuses all.
    fn check_acks(
        &self,
        signer: Address,
        key: chain::PublicKey,
        acks: &[Ack],
    ) -> Result<Vec<(Height, VoteSignature)>, EngineError> {
        let mut kept = Vec::new();
        for ack in acks {
            let Some(proposal) = self.proposal(ack.height) else {
                continue;
            };
            if proposal.block.hash() != ack.hash || ack.height <= self.committed {
                continue;
            }
            let signature = VoteSignature {
                key,
                signature: ack.signature,
            };
            let body = ack_body(self.current_epoch, &proposal.block.header);
            signature.verify(ENGINE_NAME, &body).map_err(|e| {
                reject(ZabError::BadAck {
                    signer,
                    height: ack.height,
                    reason: e.to_string(),
                })
            })?;
            kept.push((ack.height, signature));
        }
        Ok(kept)
    }

    /// A leader's commits: every uncommitted proposal, in zxid order, that ⌊N/2⌋+1 servers
    /// (itself included) acked in its epoch, with a COMMIT to all.
    fn advance_commit(&mut self, out: &mut Vec<VoteOutput>) {
        if self.role != Role::Leader || self.phase != Phase::Broadcast {
            return;
        }
        loop {
            let next = Height(self.committed.0 + 1);
            let Some(proposal) = self.proposal(next) else {
                return;
            };
            let Some(own) = self.sign_ack(next) else {
                return;
            };
            let mut signatures = vec![own];
            if let Some(theirs) = self.acks.get(&next) {
                signatures.extend(theirs.values().copied());
            }
            if signatures.len() < self.majority() {
                return;
            }
            let body = ack_body(self.current_epoch, &proposal.block.header);
            let certificate = Certificate::new(body, signatures).encode();
            self.certificates.insert(next, certificate.clone());
            self.commit_up_to(next, out);
            let body = Body::Commit {
                epoch: self.current_epoch,
                height: next,
                certificate,
            };
            self.send(body, out);
        }
    }
}

impl VotingMachine for ZabMachine {
    fn handle(
        &mut self,
        now_millis: u64,
        input: VoteInput,
    ) -> Result<Vec<VoteOutput>, EngineError> {
        let mut out = Vec::new();
        match input {
            VoteInput::Head { head, .. } => self.on_head(now_millis, head, &mut out)?,
            VoteInput::Message(bytes) => self.on_message(now_millis, &bytes, &mut out)?,
            VoteInput::Timeout(id) => self.on_timeout(now_millis, id, &mut out),
            VoteInput::Built(block) => self.on_built(*block, &mut out)?,
            VoteInput::Validated { hash, .. } => {
                return Err(ignored(format!(
                    "zab asks for no validation (got a verdict on {hash})"
                )));
            }
        }
        // The epochs and the history are on stable storage before any answer goes out
        // (the TLA+ spec's actions update them with the messages they send).
        if self.dirty {
            self.dirty = false;
            out.insert(0, VoteOutput::Persist(self.persisted().encode()));
        }
        Ok(out)
    }

    fn status(&self) -> Vec<(&'static str, String)> {
        vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("epoch", self.current_epoch.to_string()),
            ("accepted_epoch", self.accepted_epoch.to_string()),
            ("role", self.role.name().to_owned()),
            ("phase", self.phase.name().to_owned()),
            (
                "leader",
                self.leader
                    .map_or_else(|| "none".to_owned(), |l| l.to_string()),
            ),
            ("last_zxid", self.last_zxid().to_string()),
            ("committed_height", self.committed.0.to_string()),
            ("round", self.round.to_string()),
        ]
    }
}

/// The zxid of a block a leader builds next in `epoch` after `last`.
fn next_zxid(epoch: u64, last: Zxid) -> Zxid {
    Zxid {
        epoch,
        counter: if last.epoch == epoch {
            last.counter.saturating_add(1)
        } else {
            1
        },
    }
}

/// A block's timestamp: the node's clock, and after its parent's.
fn block_timestamp(now: u64, parent: &SealedHeader) -> Timestamp {
    Timestamp((now / 1000).max(parent.timestamp.0.saturating_add(1)))
}
