//! One validator's PBFT replica as a pure [`VotingMachine`] (Castro & Liskov 1999).
//!
//! One protocol instance per height; the view is kept across heights. Per height:
//! - §4.2 normal case: the primary of view `v` asks the node to build a block (after the
//!   block time) and sends PRE-PREPARE; a replica asks the node to validate it and sends
//!   PREPARE; with `2f+1` PREPAREs for the block in `v` it is prepared and sends COMMIT;
//!   with `2f+1` COMMITs (any view) and the block in hand it outputs the decision. Every
//!   replica, the primary included, sends PREPARE, as QBFT has it, so a prepared
//!   certificate is `2f+1` PREPARE signatures (the paper counts the PRE-PREPARE as the
//!   primary's).
//! - §4.4 view change: when the view timer expires a replica moves to `v+1` and sends
//!   VIEW-CHANGE with its prepared certificate and block; on `f+1` VIEW-CHANGEs for higher
//!   views a replica joins the lowest of them (§4.5.2); the new primary, on `2f+1`, sends
//!   NEW-VIEW with them and re-proposes the block prepared in the highest view, or
//!   proposes a fresh one when none was prepared. Timeouts double per failed view up to
//!   the cap and reset after a decision.
//! - A height starts in the view its parent was decided in. A replica that learned the
//!   parent by sync, not by voting, does not know that view; a PRE-PREPARE carrying the
//!   parent's commit certificate (its justification) names it, and the replica joins it
//!   unless it has sent a message at this height in a higher view.
//!
//! Before it broadcasts, the machine asks the node to persist what it sent and what it
//! prepared ([`VoteOutput::Persist`]); a restarted machine never signs a second proposal,
//! PREPARE or COMMIT in a view it already signed one in, and its VIEW-CHANGE still
//! carries its prepared certificate.

use crate::pbft::engine::{ENGINE_NAME, PbftEngine, reject};
use crate::pbft::error::PbftError;
use crate::pbft::message::{NewView, PbftMessage, Proposal, ViewChange, decode_view, encode_view};
use crate::pbft::params::PbftParams;
use crate::quorum::{Certificate, Phase, QuorumError, SignedVote, VoteBody, VoterSet};
use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::decode_limited;
use chain::{
    Address, Block, BlockHash, EngineError, Height, SealedHeader, SecretKey, TimerId, Timestamp,
    VoteInput, VoteOutput, VotingMachine,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The primary's block-time timer: when it fires, the primary asks for a block.
pub const TIMER_BUILD: TimerId = 1;
/// The view timer: when it fires before a decision, the replica asks for the next view.
pub const TIMER_VIEW: TimerId = 2;
/// The resend timer: when it fires before a decision, the replica sends again what it
/// signed in the current view, since a lost message is otherwise lost for good.
pub const TIMER_RESEND: TimerId = 3;
/// Views ahead of (or behind) the current one whose messages are kept; further ones are
/// ignored, which bounds memory per sender.
pub const VIEW_WINDOW: u64 = 8;
/// Messages for the next height or a future view kept per sender until they apply.
const MAX_BUFFERED_PER_SENDER: usize = 16;
/// Doubling stops here (the cap on the timeout is reached long before).
const MAX_FAILED_VIEWS: u32 = 32;
/// Largest persisted record: two blocks and a certificate.
mod intake;
mod normal;
mod view_change;

const MAX_PERSISTED_BYTES: usize = crate::pbft::message::MAX_MESSAGE_BYTES;

/// What this replica signed at a height: it never signs a conflicting one.
#[derive(Clone, Default, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
struct Sent {
    /// The view and block of its last PRE-PREPARE (as primary).
    proposal: Option<(u64, Block)>,
    /// The view and block of its last PREPARE.
    prepare: Option<(u64, BlockHash)>,
    /// The view and block of its last COMMIT.
    commit: Option<(u64, BlockHash)>,
    /// The last view it asked for.
    view_change: Option<u64>,
    /// The last view it opened as primary.
    new_view: Option<u64>,
}

impl Sent {
    /// The highest view this replica signed anything in at the height.
    fn highest_view(&self) -> Option<u64> {
        [
            self.proposal.as_ref().map(|p| p.0),
            self.prepare.map(|p| p.0),
            self.commit.map(|c| c.0),
            self.view_change,
            self.new_view,
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// A block with 2f+1 PREPAREs for it in one view: PBFT's prepared certificate.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
struct Prepared {
    block: Block,
    certificate: Certificate,
}

impl Prepared {
    fn view(&self) -> u64 {
        self.certificate.body.view
    }
}

/// What survives a restart.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
struct Persisted {
    height: Height,
    view: u64,
    failed_views: u32,
    sent: Sent,
    prepared: Option<Prepared>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    /// In a view, taking its proposal and votes.
    Normal,
    /// Asked for the current view, waiting for its NEW-VIEW.
    ViewChanging,
}

/// One height's instance.
#[derive(Debug)]
struct Round {
    head: SealedHeader,
    voters: VoterSet,
    height: Height,
    /// The accepted proposal per view.
    proposals: BTreeMap<u64, BlockHash>,
    /// Every block seen with a valid proposal or prepared certificate, by hash.
    blocks: BTreeMap<BlockHash, Block>,
    validated: BTreeSet<BlockHash>,
    invalid: BTreeSet<BlockHash>,
    asked: BTreeSet<BlockHash>,
    prepares: BTreeMap<(u64, Address), SignedVote>,
    commits: BTreeMap<(u64, Address), SignedVote>,
    view_changes: BTreeMap<(u64, Address), ViewChange>,
    prepared: Option<Prepared>,
    sent: Sent,
    /// The NEW-VIEW this replica sent as primary, for replicas that missed it.
    new_view_message: Option<Vec<u8>>,
    /// The view whose COMMITs decided the height, once decided.
    decided: Option<Certificate>,
}

impl Round {
    fn new(head: SealedHeader, voters: VoterSet) -> Round {
        let height = Height(head.height().0.saturating_add(1));
        Round {
            head,
            voters,
            height,
            proposals: BTreeMap::new(),
            blocks: BTreeMap::new(),
            validated: BTreeSet::new(),
            invalid: BTreeSet::new(),
            asked: BTreeSet::new(),
            prepares: BTreeMap::new(),
            commits: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            prepared: None,
            sent: Sent::default(),
            new_view_message: None,
            decided: None,
        }
    }

    fn body(&self, view: u64, block: BlockHash, phase: Phase) -> VoteBody {
        VoteBody {
            height: self.height,
            view,
            parent: self.head.hash(),
            block,
            phase,
        }
    }

    /// The signatures of the votes in `votes` for `block` in `view`.
    fn matching(
        votes: &BTreeMap<(u64, Address), SignedVote>,
        view: u64,
        block: BlockHash,
    ) -> Vec<SignedVote> {
        votes
            .range((view, Address::default())..)
            .take_while(|((v, _), _)| *v == view)
            .filter(|(_, vote)| vote.body.block == block)
            .map(|(_, vote)| *vote)
            .collect()
    }

    fn view_changes_for(&self, view: u64) -> Vec<&ViewChange> {
        self.view_changes
            .range((view, Address::default())..)
            .take_while(|((v, _), _)| *v == view)
            .map(|(_, vc)| vc)
            .collect()
    }

    /// Checks a VIEW-CHANGE's own rules: its vote is for this height and chain, and a
    /// prepared block it names is proven by 2f+1 PREPAREs in an earlier view.
    fn check_view_change(&self, vc: &ViewChange) -> Result<Address, PbftError> {
        let body = &vc.vote.body;
        if body.phase != Phase::ViewChange {
            return Err(mismatch("view change phase", Phase::ViewChange, body.phase));
        }
        let sender = vc.vote.verify(ENGINE_NAME, &self.voters)?;
        let bad = |reason: String| PbftError::BadPrepared {
            view: body.view,
            block: body.block,
            reason,
        };
        match (vc.prepared_hash(), &vc.prepared) {
            (None, None) => {
                if vc.block.is_some() {
                    return Err(bad("a block without a prepared certificate".into()));
                }
            }
            (None, Some(_)) => return Err(bad("a certificate naming no block".into())),
            (Some(_), None) => return Err(bad("no certificate".into())),
            (Some(hash), Some(cert)) => {
                if cert.body.view >= body.view {
                    return Err(bad(format!(
                        "prepared in view {}, not before the view asked for",
                        cert.body.view
                    )));
                }
                let expected = self.body(cert.body.view, hash, Phase::Prepare);
                cert.verify(
                    ENGINE_NAME,
                    &expected,
                    &self.voters,
                    self.voters.bft_quorum(),
                )
                .map_err(|e| bad(e.to_string()))?;
                if let Some(block) = &vc.block
                    && block.hash() != hash
                {
                    return Err(bad(format!("carries block {}", block.hash())));
                }
            }
        }
        Ok(sender)
    }
}

fn mismatch(
    what: &'static str,
    expected: impl std::fmt::Display,
    got: impl std::fmt::Display,
) -> PbftError {
    PbftError::Mismatch {
        what,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

fn ignored(reason: impl Into<String>) -> EngineError {
    EngineError::ignored(ENGINE_NAME, reason)
}

/// A PBFT replica. See the module documentation.
#[derive(Debug)]
pub struct PbftMachine {
    params: PbftParams,
    key: Option<SecretKey>,
    view: u64,
    status: Status,
    /// The last view this replica was in normally (not asking for the next one).
    normal_view: u64,
    /// Views failed in a row since the last decision: the timeout's exponent.
    failed_views: u32,
    round: Option<Round>,
    /// The persisted record of a height the node has not reached yet (after a restart).
    restored: Option<Persisted>,
    /// The commit certificate of the head, when this replica decided it: the
    /// justification of its proposals at the next height.
    parent_certificate: Option<Certificate>,
    /// Messages for the next height or a view not entered yet, per sender.
    buffered: BTreeMap<Address, VecDeque<Vec<u8>>>,
}

impl PbftMachine {
    /// A replica voting with `key` (`None` follows without voting), resuming from the bytes
    /// it last asked to persist.
    pub fn new(
        params: PbftParams,
        key: Option<SecretKey>,
        persisted: Option<&[u8]>,
    ) -> Result<PbftMachine, PbftError> {
        params.validate()?;
        let restored = persisted
            .map(|bytes| {
                decode_limited::<Persisted>(bytes, MAX_PERSISTED_BYTES, "pbft persisted state")
                    .map_err(PbftError::Persisted)
            })
            .transpose()?;
        Ok(PbftMachine {
            params,
            key,
            view: restored.as_ref().map_or(0, |p| p.view),
            status: Status::Normal,
            normal_view: restored.as_ref().map_or(0, |p| p.view),
            failed_views: restored.as_ref().map_or(0, |p| p.failed_views),
            round: None,
            restored,
            parent_certificate: None,
            buffered: BTreeMap::new(),
        })
    }

    /// The current view.
    pub fn view(&self) -> u64 {
        self.view
    }

    /// The height being decided, once the machine has a head.
    pub fn height(&self) -> Option<Height> {
        self.round.as_ref().map(|r| r.height)
    }

    /// This replica's address when it is a validator at the current height.
    fn me(&self) -> Option<Address> {
        let round = self.round.as_ref()?;
        let me = self.key.as_ref()?.address();
        round.voters.contains(&me).then_some(me)
    }

    fn primary_of(&self, view: u64) -> Option<Address> {
        self.round.as_ref()?.voters.at_round(view)
    }

    fn is_primary(&self, view: u64) -> bool {
        self.me().is_some() && self.me() == self.primary_of(view)
    }

    fn position(&self) -> (Option<Height>, u64, Status) {
        (self.height(), self.view, self.status)
    }

    fn persist(&self) -> Option<VoteOutput> {
        let round = self.round.as_ref()?;
        let record = Persisted {
            height: round.height,
            view: self.view,
            failed_views: self.failed_views,
            sent: round.sent.clone(),
            prepared: round.prepared.clone(),
        };
        Some(VoteOutput::Persist(
            borsh::to_vec(&record).expect("borsh writes to a Vec without failing"),
        ))
    }

    /// Persist, then broadcast: what is on the wire is always on disk first.
    fn send(&self, message: &PbftMessage, out: &mut Vec<VoteOutput>) {
        out.extend(self.persist());
        out.push(VoteOutput::Broadcast(message.encode()));
    }

    fn sign(&self, body: VoteBody) -> Option<SignedVote> {
        self.key
            .as_ref()
            .map(|key| SignedVote::sign(ENGINE_NAME, body, key))
    }

    /// When the primary may propose at this height: the parent's timestamp plus the block
    /// time, in milliseconds.
    fn build_at_millis(&self) -> u64 {
        self.round.as_ref().map_or(0, |r| {
            r.head
                .timestamp
                .0
                .saturating_add(self.params.block_time)
                .saturating_mul(1000)
        })
    }

    /// The view timer (after the block time too when `with_build_wait`), and the resend
    /// timer at half the view timeout.
    fn arm_timers(&self, now: u64, with_build_wait: bool, out: &mut Vec<VoteOutput>) {
        let wait = if with_build_wait {
            self.build_at_millis().saturating_sub(now)
        } else {
            0
        };
        let timeout = self.params.view_timeout(self.failed_views);
        out.push(VoteOutput::SetTimer {
            id: TIMER_VIEW,
            after_millis: wait.saturating_add(timeout),
        });
        out.push(VoteOutput::SetTimer {
            id: TIMER_RESEND,
            after_millis: wait.saturating_add(timeout / 2),
        });
    }

    // ---- inputs -------------------------------------------------------------------------

    fn on_head(
        &mut self,
        now: u64,
        head: SealedHeader,
        voters: Vec<Address>,
        out: &mut Vec<VoteOutput>,
    ) {
        let mut round = Round::new(head, VoterSet::new(voters));
        let mut resend = false;
        if let Some(current) = &self.round {
            if round.height <= current.height {
                return;
            }
            // A decision (ours or synced): the timeouts start over, and the height starts
            // in the view its parent was decided in when we know it, else in the last view
            // we were in normally.
            self.failed_views = 0;
            match &current.decided {
                Some(cert) if current.height.0 + 1 == round.height.0 => {
                    self.view = cert.body.view;
                    self.parent_certificate = Some(cert.clone());
                }
                _ => {
                    self.view = self.normal_view;
                    self.parent_certificate = None;
                }
            }
        }
        self.status = Status::Normal;
        if let Some(restored) = self.restored.take() {
            if restored.height == round.height {
                self.view = self.view.max(restored.view);
                self.failed_views = restored.failed_views;
                if restored.sent.view_change == Some(self.view)
                    && restored.sent.new_view != Some(self.view)
                {
                    self.status = Status::ViewChanging;
                }
                if let Some(p) = &restored.prepared {
                    round.blocks.insert(p.block.hash(), p.block.clone());
                    round.validated.insert(p.block.hash());
                }
                if let Some((view, block)) = &restored.sent.proposal {
                    round.blocks.insert(block.hash(), block.clone());
                    round.validated.insert(block.hash());
                    round.proposals.insert(*view, block.hash());
                }
                round.sent = restored.sent;
                round.prepared = restored.prepared;
                resend = true;
            } else if restored.height > round.height {
                self.restored = Some(restored);
            }
        }
        if self.status == Status::Normal {
            self.normal_view = self.view;
        }
        self.round = Some(round);
        self.arm_timers(now, self.status == Status::Normal, out);
        if resend {
            self.resend_votes(out);
        }
        if self.status == Status::Normal && self.is_primary(self.view) {
            self.resend_or_schedule_proposal(now, out);
        }
    }

    /// Sends again the PRE-PREPARE this primary signed in the current view, if any.
    fn resend_proposal(&self, out: &mut Vec<VoteOutput>) -> bool {
        let Some(round) = &self.round else {
            return false;
        };
        let Some((view, block)) = &round.sent.proposal else {
            return false;
        };
        if *view != self.view {
            return false;
        }
        if let Some(vote) = self.sign(round.body(*view, block.hash(), Phase::Propose)) {
            let message = PbftMessage::PrePrepare(Proposal {
                vote,
                block: block.clone(),
                justification: self.parent_certificate.clone(),
            });
            out.push(VoteOutput::Broadcast(message.encode()));
        }
        true
    }

    /// Sends again the PREPARE, COMMIT or VIEW-CHANGE this replica signed in the current
    /// view: after a restart (what was persisted may not have reached the wire before the
    /// crash) and on the resend timer (a message may have been lost). Signing is
    /// deterministic (RFC 6979), so the same bytes go out again, never a different vote.
    fn resend_votes(&self, out: &mut Vec<VoteOutput>) {
        let Some(round) = &self.round else { return };
        let view = self.view;
        let mut messages = Vec::new();
        if let Some((v, hash)) = round.sent.prepare
            && v == view
            && let Some(vote) = self.sign(round.body(v, hash, Phase::Prepare))
        {
            messages.push(PbftMessage::Prepare(vote));
        }
        if let Some((v, hash)) = round.sent.commit
            && v == view
            && let Some(vote) = self.sign(round.body(v, hash, Phase::Commit))
        {
            messages.push(PbftMessage::Commit(vote));
        }
        if self.status == Status::ViewChanging && round.sent.view_change == Some(view) {
            let (prepared, block, hash) = match &round.prepared {
                Some(p) => (
                    Some(p.certificate.clone()),
                    Some(p.block.clone()),
                    p.block.hash(),
                ),
                None => (None, None, BlockHash::ZERO),
            };
            if let Some(vote) = self.sign(round.body(view, hash, Phase::ViewChange)) {
                messages.push(PbftMessage::ViewChange(ViewChange {
                    vote,
                    prepared,
                    block,
                }));
            }
        }
        out.extend(messages.iter().map(|m| VoteOutput::Broadcast(m.encode())));
    }

    /// As primary in a normal view: re-send the proposal already signed in this view
    /// (after a restart), or set the block-time timer.
    fn resend_or_schedule_proposal(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        if self.resend_proposal(out) {
            return;
        }
        out.push(VoteOutput::SetTimer {
            id: TIMER_BUILD,
            after_millis: self.build_at_millis().saturating_sub(now),
        });
    }

    fn on_timeout(&mut self, now: u64, id: TimerId, out: &mut Vec<VoteOutput>) {
        let Some(round) = &self.round else { return };
        if round.decided.is_some() {
            return;
        }
        match id {
            TIMER_BUILD => {
                if self.status != Status::Normal
                    || !self.is_primary(self.view)
                    || round.proposals.contains_key(&self.view)
                {
                    return;
                }
                let at = self.build_at_millis();
                if now < at {
                    out.push(VoteOutput::SetTimer {
                        id: TIMER_BUILD,
                        after_millis: at - now,
                    });
                    return;
                }
                let earliest = round
                    .head
                    .timestamp
                    .0
                    .saturating_add(self.params.block_time);
                out.push(VoteOutput::Build {
                    parent: round.head.hash(),
                    timestamp: Timestamp(earliest.max(now / 1000)),
                    data: encode_view(self.view),
                });
            }
            TIMER_RESEND => {
                // PBFT retransmits until a message is received; signatures are
                // deterministic, so the copies are the same bytes and cost the receivers a
                // duplicate check.
                self.resend_votes(out);
                if let Some(new_view) = &round.new_view_message
                    && self.status == Status::Normal
                    && round.sent.new_view == Some(self.view)
                {
                    out.push(VoteOutput::Broadcast(new_view.clone()));
                } else if self.status == Status::Normal && self.is_primary(self.view) {
                    self.resend_proposal(out);
                }
                out.push(VoteOutput::SetTimer {
                    id: TIMER_RESEND,
                    after_millis: self.params.view_timeout(self.failed_views) / 2,
                });
            }
            TIMER_VIEW => {
                // §4.5.2: a replica asking for a view moves on to the next one only once
                // 2f+1 replicas asked for it too, so one that missed a NEW-VIEW does not run
                // ahead of the others for good; until then it repeats its request (its
                // VIEW-CHANGE may have been lost) and waits as long again.
                let gathered = round.view_changes_for(self.view).len();
                if self.status == Status::ViewChanging && gathered < round.voters.bft_quorum() {
                    self.resend_votes(out);
                    self.arm_timers(now, false, out);
                    return;
                }
                let next = self.view.saturating_add(1);
                self.start_view_change(now, next, out);
            }
            _ => {}
        }
    }

    fn on_built(&mut self, block: Block, out: &mut Vec<VoteOutput>) {
        let view = self.view;
        let Some(round) = &self.round else { return };
        let hash = block.hash();
        let fresh = block.header.parent == round.head.hash()
            && block.header.height == round.height
            && decode_view(&block.header.engine.data).ok() == Some(view)
            && self.status == Status::Normal
            && self.is_primary(view)
            && !round.proposals.contains_key(&view)
            && round.sent.proposal.as_ref().is_none_or(|(v, _)| *v < view)
            && round.decided.is_none();
        if !fresh {
            return;
        }
        let Some(vote) = self.sign(round.body(view, hash, Phase::Propose)) else {
            return;
        };
        let message = PbftMessage::PrePrepare(Proposal {
            vote,
            block: block.clone(),
            justification: self.parent_certificate.clone(),
        });
        if let Some(round) = &mut self.round {
            round.sent.proposal = Some((view, block.clone()));
            round.validated.insert(hash);
            round.proposals.insert(view, hash);
            round.blocks.insert(hash, block);
        }
        self.send(&message, out);
        self.send_prepare(view, hash, out);
    }

    fn on_validated(&mut self, hash: BlockHash, valid: bool, out: &mut Vec<VoteOutput>) {
        let view = self.view;
        let Some(round) = &mut self.round else { return };
        if !round.asked.remove(&hash) {
            return;
        }
        if !valid {
            round.invalid.insert(hash);
            return;
        }
        round.validated.insert(hash);
        if self.status == Status::Normal && round.proposals.get(&view) == Some(&hash) {
            self.send_prepare(view, hash, out);
        }
        self.progress(out);
    }

    // ---- messages -----------------------------------------------------------------------
}

impl Round {
    fn matching_all(votes: &BTreeMap<(u64, Address), SignedVote>, view: u64) -> Vec<SignedVote> {
        votes
            .range((view, Address::default())..)
            .take_while(|((v, _), _)| *v == view)
            .map(|(_, vote)| *vote)
            .collect()
    }
}

/// A proposed block must be the one the vote names, on this height's parent.
fn check_block(round: &Round, block: &Block, voted: BlockHash) -> Result<(), PbftError> {
    let hash = block.hash();
    if hash != voted {
        return Err(mismatch("proposed block", voted, hash));
    }
    if block.header.parent != round.head.hash() {
        return Err(mismatch(
            "proposed block's parent",
            round.head.hash(),
            block.header.parent,
        ));
    }
    if block.header.height != round.height {
        return Err(mismatch(
            "proposed block's height",
            round.height,
            block.header.height,
        ));
    }
    Ok(())
}

impl VotingMachine for PbftMachine {
    fn handle(
        &mut self,
        now_millis: u64,
        input: VoteInput,
    ) -> Result<Vec<VoteOutput>, EngineError> {
        let before = self.position();
        let mut out = Vec::new();
        match input {
            VoteInput::Head { head, voters } => self.on_head(now_millis, head, voters, &mut out),
            VoteInput::Message(bytes) => self.on_message(now_millis, &bytes, &mut out)?,
            VoteInput::Timeout(id) => self.on_timeout(now_millis, id, &mut out),
            VoteInput::Built(block) => self.on_built(*block, &mut out),
            VoteInput::Validated { hash, valid } => {
                self.on_validated(hash, valid, &mut out);
            }
        }
        // A new height or view may make buffered messages apply; a few passes settle it.
        let mut last = before;
        for _ in 0..4 {
            let now = self.position();
            if now == last || self.buffered.is_empty() {
                break;
            }
            last = now;
            self.replay(now_millis, &mut out);
        }
        Ok(out)
    }

    fn status(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("engine", ENGINE_NAME.to_owned())];
        let Some(round) = &self.round else {
            out.push(("phase", "waiting for a head".to_owned()));
            return out;
        };
        let view = self.view;
        let phase = if round.decided.is_some() {
            "committed"
        } else if self.status == Status::ViewChanging {
            "view-change"
        } else if round.prepared.as_ref().is_some_and(|p| p.view() == view) {
            "prepared"
        } else if round.proposals.contains_key(&view) {
            "pre-prepared"
        } else {
            "waiting for pre-prepare"
        };
        let count = |votes: &BTreeMap<(u64, Address), SignedVote>| {
            votes.keys().filter(|(v, _)| *v == view).count()
        };
        out.push(("height", round.height.0.to_string()));
        out.push(("view", view.to_string()));
        if let Some(primary) = round.voters.at_round(view) {
            out.push(("primary", primary.to_string()));
        }
        let role = match (self.me(), self.is_primary(view)) {
            (None, _) => "follower",
            (Some(_), true) => "primary",
            (Some(_), false) => "backup",
        };
        out.push(("role", role.to_owned()));
        out.push(("phase", phase.to_owned()));
        out.push(("prepares", count(&round.prepares).to_string()));
        out.push(("commits", count(&round.commits).to_string()));
        out.push((
            "view_changes",
            round.view_changes_for(view).len().to_string(),
        ));
        out.push(("quorum", round.voters.bft_quorum().to_string()));
        out.push(("failed_views", self.failed_views.to_string()));
        out
    }
}
