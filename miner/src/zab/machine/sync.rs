//! Phases 1 and 2, discovery and synchronization (DSN 2011 §IV-A and §IV-B; the TLA+ spec's
//! `LeaderProcessCEPOCH`, `FollowerProcessNEWEPOCH`, `LeaderProcessACKEPOCH`,
//! `FollowerProcessNEWLEADER`, `LeaderProcessACKLD`): a new epoch agreed by a quorum, and
//! every follower brought to the leader's history before anything new is proposed.

use super::*;

impl ZabMachine {
    fn learner(accepted_epoch: u64) -> Learner {
        Learner {
            accepted_epoch,
            acked_epoch: false,
            synced: false,
            committed: Height::GENESIS,
            heard: true,
            lagging: false,
        }
    }

    /// A leader with FOLLOWERINFO from a quorum (itself included) proposes the epoch above
    /// every acceptedEpoch among them, and makes it its own acceptedEpoch.
    pub(super) fn maybe_propose_epoch(&mut self, out: &mut Vec<VoteOutput>) {
        if self.role != Role::Leader || self.proposed_epoch.is_some() {
            return;
        }
        if 1 + self.learners.len() < self.majority() {
            return;
        }
        let highest = self
            .learners
            .values()
            .map(|l| l.accepted_epoch)
            .fold(self.accepted_epoch, u64::max);
        let epoch = highest.saturating_add(1);
        self.proposed_epoch = Some(epoch);
        self.accepted_epoch = epoch;
        self.accepted_leader = Some(self.me);
        self.dirty = true;
        let followers: Vec<Address> = self.learners.keys().copied().collect();
        for to in followers {
            self.send(Body::NewEpoch { to, epoch }, out);
        }
        self.maybe_finish_discovery(out);
    }

    /// With ACKEPOCH from a quorum (itself included) the new epoch is the leader's
    /// currentEpoch, and synchronization begins.
    fn maybe_finish_discovery(&mut self, out: &mut Vec<VoteOutput>) {
        let Some(epoch) = self.proposed_epoch else {
            return;
        };
        if self.phase != Phase::Discovery {
            return;
        }
        let acked = 1 + self.learners.values().filter(|l| l.acked_epoch).count();
        if acked < self.majority() {
            return;
        }
        self.current_epoch = epoch;
        self.dirty = true;
        self.phase = Phase::Synchronization;
        let followers: Vec<Address> = self
            .learners
            .iter()
            .filter(|(_, l)| l.acked_epoch)
            .map(|(a, _)| *a)
            .collect();
        for follower in followers {
            self.send_new_leader(follower, out);
        }
        self.maybe_finish_sync(out);
    }

    /// With a quorum (itself included) holding its history in the new epoch, the leader
    /// commits that whole initial history and starts broadcasting (UPTODATE).
    pub(super) fn maybe_finish_sync(&mut self, out: &mut Vec<VoteOutput>) {
        if self.phase != Phase::Synchronization {
            return;
        }
        let synced = 1 + self.learners.values().filter(|l| l.synced).count();
        if synced < self.majority() {
            return;
        }
        self.phase = Phase::Broadcast;
        self.advance_commit(out);
        out.push(VoteOutput::SetTimer {
            id: TIMER_BUILD,
            after_millis: self.params.block_time.saturating_mul(1000),
        });
    }

    /// DIFF (and TRUNC) with NEWLEADER for one follower: the leader's history from the
    /// follower's commit point (which must be in the window), as much as fits, with the certificates of the proposals
    /// already committed. A message that cannot carry the whole history carries committed
    /// proposals only, so a follower never holds part of an uncommitted history.
    pub(super) fn send_new_leader(&mut self, follower: Address, out: &mut Vec<VoteOutput>) {
        let Some(learner) = self.learners.get(&follower).copied() else {
            return;
        };
        if learner.committed < self.base.height {
            // Behind the window: nothing here attaches to its chain, and resending the
            // window at every PING would be a storm. Its node syncs the certified blocks
            // from its peers, and its next report starts from there (ZooKeeper's SNAP).
            return;
        }
        // From the lower of the two commit points: a follower that committed more than
        // this leader acks those proposals in this epoch, and they commit here too.
        let mut height = Height(learner.committed.min(self.committed).0 + 1);
        let mut budget = SYNC_BUDGET_BYTES;
        let mut proposals = Vec::new();
        while let Some(proposal) = self.proposal(height) {
            let size = borsh::object_length(proposal).unwrap_or(usize::MAX);
            if (!proposals.is_empty() && size > budget) || proposals.len() >= MAX_PROPOSALS_PER_SYNC
            {
                break;
            }
            budget = budget.saturating_sub(size);
            proposals.push(proposal.clone());
            height = Height(height.0 + 1);
        }
        if height <= self.last_height() {
            let committed = self.committed;
            while proposals
                .last()
                .is_some_and(|p: &Proposal| p.block.header.height > committed)
            {
                proposals.pop();
            }
        }
        let mut certificates = Vec::new();
        for proposal in &proposals {
            let height = proposal.block.header.height;
            if let Some(certificate) = self.certificates.get(&height) {
                if certificate.len() > budget {
                    break;
                }
                budget -= certificate.len();
                certificates.push((height, certificate.clone()));
            }
        }
        let body = Body::NewLeader {
            to: follower,
            epoch: self.current_epoch,
            proposals,
            certificates,
            last_zxid: self.last_zxid(),
        };
        self.send(body, out);
    }

    // ----- inputs -----

    /// CEPOCH: a follower's FOLLOWERINFO (answered with the epoch once it is chosen).
    pub(super) fn on_follower_info(
        &mut self,
        sender: Address,
        accepted_epoch: u64,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader {
            return Err(ignored(format!(
                "followerinfo from {sender} while {}",
                self.role.name()
            )));
        }
        self.learners.insert(sender, Self::learner(accepted_epoch));
        match self.proposed_epoch {
            Some(epoch) => self.send(Body::NewEpoch { to: sender, epoch }, out),
            None => self.maybe_propose_epoch(out),
        }
        Ok(())
    }

    /// NEWEPOCH: a follower accepts an epoch above its acceptedEpoch (or the same one again
    /// from the leader it accepted it from), persists it, and answers ACKEPOCH; a lower one
    /// sends it back to LOOKING (ZooKeeper's "leader's epoch is less than accepted epoch").
    pub(super) fn on_new_epoch(
        &mut self,
        now: u64,
        sender: Address,
        epoch: u64,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Follower || self.leader != Some(sender) {
            return Err(ignored(format!(
                "newepoch {epoch} from {sender}, who is not this server's leader"
            )));
        }
        if self.phase == Phase::Broadcast {
            return Err(ignored(format!("newepoch {epoch} after synchronization")));
        }
        let again = epoch == self.accepted_epoch && self.accepted_leader == Some(sender);
        if epoch < self.accepted_epoch || (epoch == self.accepted_epoch && !again) {
            self.start_looking(now, out);
            return Ok(());
        }
        self.reset_leader_timer(out);
        if epoch > self.accepted_epoch {
            self.accepted_epoch = epoch;
            self.accepted_leader = Some(sender);
            self.dirty = true;
        }
        self.phase = Phase::Synchronization;
        self.send_ack_epoch(sender, out);
        Ok(())
    }

    pub(super) fn send_ack_epoch(&self, to: Address, out: &mut Vec<VoteOutput>) {
        let body = Body::AckEpoch {
            to,
            epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
            last_zxid: self.last_zxid(),
            committed: self.committed,
        };
        self.send(body, out);
    }

    /// ACKEPOCH: a quorum of them ends discovery; a later one (a follower joining, or
    /// reporting progress) gets the history at once. A follower ahead of this leader (a
    /// later currentEpoch, or the same with a later zxid) makes it step down.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_ack_epoch(
        &mut self,
        now: u64,
        sender: Address,
        epoch: u64,
        current_epoch: u64,
        last_zxid: Zxid,
        committed: Height,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader || self.proposed_epoch != Some(epoch) {
            return Err(ignored(format!(
                "ackepoch of epoch {epoch} from {sender} while {} with epoch {:?}",
                self.role.name(),
                self.proposed_epoch
            )));
        }
        if self.phase == Phase::Discovery
            && (current_epoch, last_zxid) > (self.current_epoch, self.last_zxid())
        {
            self.start_looking(now, out);
            return Ok(());
        }
        let Some(learner) = self.learners.get_mut(&sender) else {
            return Err(ignored(format!(
                "ackepoch from {sender} before followerinfo"
            )));
        };
        learner.acked_epoch = true;
        learner.committed = committed;
        learner.heard = true;
        if self.phase == Phase::Discovery {
            self.maybe_finish_discovery(out);
        } else {
            self.send_new_leader(sender, out);
        }
        Ok(())
    }

    /// NEWLEADER: the follower takes the leader's history (keeping what it shares, truncating
    /// what it does not, committing what is certified); once it holds all of it, it makes
    /// the epoch its currentEpoch and acks every uncommitted proposal.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_new_leader(
        &mut self,
        sender: Address,
        epoch: u64,
        proposals: Vec<Proposal>,
        certificates: Vec<(Height, Vec<u8>)>,
        last_zxid: Zxid,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let ours = self.role == Role::Follower
            && self.leader == Some(sender)
            && epoch == self.accepted_epoch
            && self.accepted_leader == Some(sender)
            && matches!(self.phase, Phase::Synchronization | Phase::Broadcast);
        if !ours {
            return Err(ignored(format!(
                "newleader of epoch {epoch} from {sender} while {} in {} with accepted epoch {}",
                self.role.name(),
                self.phase.name(),
                self.accepted_epoch
            )));
        }
        let malformed = |reason: String| {
            reject(ZabError::MalformedMessage {
                sender,
                what: "newleader",
                reason,
            })
        };
        if proposals.len() > MAX_PROPOSALS_PER_SYNC || certificates.len() > MAX_PROPOSALS_PER_SYNC {
            return Err(malformed(format!(
                "{} proposals and {} certificates, at most {MAX_PROPOSALS_PER_SYNC} of each",
                proposals.len(),
                certificates.len()
            )));
        }
        self.check_proposals(sender, "newleader", epoch, &proposals)
            .map_err(reject)?;
        for proposal in &proposals {
            let height = proposal.block.header.height;
            if height <= self.committed
                && self
                    .hash_at(height)
                    .is_some_and(|held| held != proposal.block.hash())
            {
                return Err(malformed(format!(
                    "proposal {} contradicts the block committed at height {height}",
                    proposal.zxid
                )));
            }
        }
        self.reset_leader_timer(out);
        let before = (self.committed, self.last_zxid());
        // The leader sends its history from its own commit point; what this follower
        // already committed of it is acked too, so a leader that lacks those commits can
        // make them with this follower's acks.
        let first = proposals
            .first()
            .map_or(self.committed, |p| p.block.header.height)
            .min(Height(self.committed.0 + 1));
        for proposal in proposals {
            let height = proposal.block.header.height;
            if height <= self.committed {
                continue;
            }
            if height <= self.last_height() {
                if self.hash_at(height) == Some(proposal.block.hash()) {
                    continue;
                }
                // TRUNC: our uncommitted proposal here is not in the leader's history.
                let keep = usize::try_from(height.0 - self.base.height.0 - 1).unwrap_or(0);
                self.history.truncate(keep);
                self.certificates.retain(|h, _| *h < height);
                self.dirty = true;
            }
            let follows = height.0 == self.last_height().0 + 1
                && proposal.block.header.parent == self.last_hash()
                && proposal.zxid > self.last_zxid();
            if !follows || self.uncommitted() >= MAX_PROPOSALS_PER_SYNC as u64 {
                // A gap: this server is behind the leader's window, and its node syncs
                // the certified blocks first.
                break;
            }
            self.history.push(proposal);
            self.dirty = true;
        }
        // TRUNC: what follows the end of the leader's history is not in it (zxids grow
        // along a history, so those are exactly the proposals above the leader's last).
        while self.last_height() > self.committed && self.last_zxid() > last_zxid {
            self.history.pop();
            self.dirty = true;
        }
        let held = self.last_height();
        self.certificates.retain(|h, _| *h <= held);
        for (height, certificate) in certificates {
            if height > self.committed && self.certificate_fits(height, &certificate) {
                self.certificates.insert(height, certificate);
            }
        }
        let last = self.last_height();
        self.commit_up_to(last, out);
        if self.last_zxid() != last_zxid {
            // Part of the history: say how far it got, and the leader sends the rest. One
            // that could use none of it (its node must sync blocks first) stays quiet, or
            // the two would bounce messages at network speed; its PING answers go on.
            if (self.committed, self.last_zxid()) != before {
                self.send_ack_epoch(sender, out);
            }
            return Ok(());
        }
        if self.current_epoch != epoch {
            self.current_epoch = epoch;
            self.dirty = true;
        }
        self.phase = Phase::Broadcast;
        let acks = self.uncommitted_acks(Height(first.0.saturating_sub(1)));
        let body = Body::AckNewLeader {
            to: sender,
            epoch,
            last_zxid: self.last_zxid(),
            acks,
        };
        self.send(body, out);
        Ok(())
    }

    /// This server's acks, in its current epoch, of the proposals it holds after `after`
    /// (at most [`MAX_ACKS_PER_MESSAGE`]).
    pub(super) fn uncommitted_acks(&self, after: Height) -> Vec<Ack> {
        (after.0.max(self.base.height.0) + 1..=self.last_height().0)
            .take(MAX_ACKS_PER_MESSAGE)
            .filter_map(|h| {
                let height = Height(h);
                let signature = self.sign_ack(height)?;
                Some(Ack {
                    height,
                    hash: self.hash_at(height)?,
                    signature: signature.signature,
                })
            })
            .collect()
    }

    /// ACKLD: the follower holds this leader's history in its epoch; its acks count.
    pub(super) fn on_ack_new_leader(
        &mut self,
        sender: Address,
        key: chain::PublicKey,
        epoch: u64,
        last_zxid: Zxid,
        acks: Vec<Ack>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let ours = self.role == Role::Leader
            && epoch == self.current_epoch
            && matches!(self.phase, Phase::Synchronization | Phase::Broadcast);
        if !ours {
            return Err(ignored(format!(
                "ack of newleader {epoch} from {sender} while {} in {} of epoch {}",
                self.role.name(),
                self.phase.name(),
                self.current_epoch
            )));
        }
        self.record_acks("ack of newleader", sender, key, &acks)?;
        let synced = last_zxid == self.last_zxid();
        if let Some(learner) = self.learners.get_mut(&sender) {
            learner.heard = true;
            learner.synced = synced;
        }
        if self.phase == Phase::Synchronization {
            self.maybe_finish_sync(out);
        } else {
            self.advance_commit(out);
        }
        Ok(())
    }
}
