//! Phase 3, broadcast (DSN 2011 §IV-C; the TLA+ spec's `LeaderProcessRequest`,
//! `FollowerProcessPROPOSE`, `LeaderProcessACK`, `FollowerProcessCOMMIT`): one proposal per
//! block, acked by followers after they persist it, committed in zxid order by a quorum's
//! acks; PINGs keep followers and bring lagging ones up.

use super::*;

impl ZabMachine {
    /// The node builds on its chain head, whose state it needs, so a leader asks for the
    /// next block only once everything it proposed is committed and imported.
    pub(super) fn maybe_build(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        if self.role != Role::Leader || self.phase != Phase::Broadcast || self.build_pending {
            return;
        }
        let Some(head) = &self.head else { return };
        let caught_up = head.hash() == self.last_hash()
            && head.height() == self.committed
            && self.committed == self.last_height();
        if !caught_up {
            return;
        }
        out.push(VoteOutput::Build {
            parent: head.hash(),
            timestamp: block_timestamp(now, head),
            data: next_zxid(self.current_epoch, self.last_zxid()).encode(),
        });
        self.build_pending = true;
    }

    pub(super) fn on_built(
        &mut self,
        block: Block,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader || self.phase != Phase::Broadcast {
            return Err(ignored(
                "built block arrived after this server stopped leading",
            ));
        }
        let zxid = Zxid::of_header(&block.header).map_err(reject)?;
        let expected = next_zxid(self.current_epoch, self.last_zxid());
        let fits = zxid == expected
            && block.header.parent == self.last_hash()
            && block.header.height.0 == self.last_height().0 + 1
            && block.header.producer == self.me;
        if !fits {
            return Err(ignored(format!(
                "built block {zxid} on {} no longer fits the history (next {expected})",
                block.header.parent
            )));
        }
        if self.uncommitted() >= MAX_UNCOMMITTED_PROPOSALS as u64 {
            return Err(ignored("the uncommitted history is full"));
        }
        let proposal = Proposal { zxid, block };
        self.history.push(proposal.clone());
        self.dirty = true;
        self.build_pending = false;
        let body = Body::Propose {
            epoch: self.current_epoch,
            proposal,
        };
        self.send(body, out);
        self.advance_commit(out);
        Ok(())
    }

    fn is_my_leader(&self, sender: Address) -> bool {
        self.role == Role::Follower && self.leader == Some(sender)
    }

    /// PROPOSE: a synced follower appends the next proposal of its leader's epoch to its
    /// history, persists it, and acks it.
    pub(super) fn on_propose(
        &mut self,
        sender: Address,
        epoch: u64,
        proposal: Proposal,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if !self.is_my_leader(sender)
            || self.phase != Phase::Broadcast
            || epoch != self.current_epoch
        {
            return Err(ignored(format!(
                "proposal {} of epoch {epoch} from {sender} while {} in {} of epoch {}",
                proposal.zxid,
                self.role.name(),
                self.phase.name(),
                self.current_epoch
            )));
        }
        let malformed = |reason: String| {
            reject(ZabError::MalformedMessage {
                sender,
                what: "proposal",
                reason,
            })
        };
        if proposal.zxid.epoch != epoch || proposal.block.header.producer != sender {
            return Err(malformed(format!(
                "proposal {} of epoch {epoch} built by {}",
                proposal.zxid, proposal.block.header.producer
            )));
        }
        self.check_proposals(sender, "proposal", epoch, std::slice::from_ref(&proposal))
            .map_err(reject)?;
        self.reset_leader_timer(out);
        let height = proposal.block.header.height;
        let hash = proposal.block.hash();
        if height <= self.last_height() && self.hash_at(height) == Some(hash) {
            // Already held (a resend): ack it again.
            self.send_ack(sender, height, out);
            return Ok(());
        }
        let follows = height.0 == self.last_height().0 + 1
            && proposal.block.header.parent == self.last_hash()
            && proposal.zxid > self.last_zxid();
        if !follows {
            return Err(ignored(format!(
                "proposal {} at height {height} does not follow {} at height {}: the leader resends",
                proposal.zxid,
                self.last_zxid(),
                self.last_height()
            )));
        }
        if self.uncommitted() >= MAX_UNCOMMITTED_PROPOSALS as u64 {
            return Err(ignored(format!(
                "proposal {} while {} proposals wait for their commit",
                proposal.zxid,
                self.uncommitted()
            )));
        }
        self.history.push(proposal);
        self.dirty = true;
        self.send_ack(sender, height, out);
        Ok(())
    }

    fn send_ack(&self, to: Address, height: Height, out: &mut Vec<VoteOutput>) {
        let (Some(signature), Some(hash)) = (self.sign_ack(height), self.hash_at(height)) else {
            return;
        };
        let body = Body::Ack {
            to,
            epoch: self.current_epoch,
            ack: Ack {
                height,
                hash,
                signature: signature.signature,
            },
        };
        self.send(body, out);
    }

    /// ACK: counted toward the proposal's quorum.
    pub(super) fn on_ack(
        &mut self,
        sender: Address,
        key: chain::PublicKey,
        epoch: u64,
        ack: Ack,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader || epoch != self.current_epoch {
            return Err(ignored(format!(
                "ack of epoch {epoch} from {sender} while {} of epoch {}",
                self.role.name(),
                self.current_epoch
            )));
        }
        self.record_acks("ack", sender, key, &[ack])?;
        if let Some(learner) = self.learners.get_mut(&sender) {
            learner.heard = true;
        }
        self.advance_commit(out);
        Ok(())
    }

    /// COMMIT: a follower delivers the proposal, proven by its certificate, and every one
    /// before it (in zxid order).
    pub(super) fn on_commit(
        &mut self,
        sender: Address,
        epoch: u64,
        height: Height,
        certificate: Vec<u8>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if !self.is_my_leader(sender)
            || self.phase != Phase::Broadcast
            || epoch != self.current_epoch
        {
            return Err(ignored(format!(
                "commit of {height} in epoch {epoch} from {sender} while {} in {} of epoch {}",
                self.role.name(),
                self.phase.name(),
                self.current_epoch
            )));
        }
        self.reset_leader_timer(out);
        if height <= self.committed {
            return Err(ignored(format!("commit of {height}, already committed")));
        }
        if self.proposal(height).is_none() {
            return Err(ignored(format!(
                "commit of {height}, a proposal not held yet: the leader resends"
            )));
        }
        if !self.certificate_fits(height, &certificate) {
            return Err(reject(ZabError::MalformedMessage {
                sender,
                what: "commit",
                reason: format!("the certificate does not prove the proposal at height {height}"),
            }));
        }
        self.certificates.insert(height, certificate);
        // Through every later proposal whose COMMIT came first, too.
        let last = self.last_height();
        self.commit_up_to(last, out);
        Ok(())
    }

    /// PING: a follower stays with its leader, resends the step it waits on (FOLLOWERINFO
    /// or ACKEPOCH, which a lossy network may have dropped), or says where it stands.
    pub(super) fn on_ping(
        &mut self,
        sender: Address,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if !self.is_my_leader(sender) {
            return Err(ignored(format!(
                "ping from {sender} while {}",
                self.role.name()
            )));
        }
        self.reset_leader_timer(out);
        match self.phase {
            Phase::Discovery => {
                let body = Body::FollowerInfo {
                    to: sender,
                    accepted_epoch: self.accepted_epoch,
                };
                self.send(body, out);
            }
            Phase::Synchronization => self.send_ack_epoch(sender, out),
            Phase::Broadcast => {
                let body = Body::PingAck {
                    to: sender,
                    epoch: self.current_epoch,
                    last_zxid: self.last_zxid(),
                    committed: self.committed,
                    acks: self.uncommitted_acks(self.committed),
                };
                self.send(body, out);
            }
            Phase::Election => {}
        }
        Ok(())
    }

    /// A follower's answer to a PING: it is alive (and in broadcast, so it holds this
    /// leader's history); its acks count; one that stays behind this leader's history or
    /// commits over two PINGs (so no PROPOSAL or COMMIT was merely in flight) is brought
    /// up with a NEWLEADER (DIFF).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_ping_ack(
        &mut self,
        sender: Address,
        key: chain::PublicKey,
        epoch: u64,
        last_zxid: Zxid,
        committed: Height,
        acks: Vec<Ack>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader || epoch != self.current_epoch {
            return Err(ignored(format!(
                "ping ack of epoch {epoch} from {sender} while {} of epoch {}",
                self.role.name(),
                self.current_epoch
            )));
        }
        self.record_acks("ping ack", sender, key, &acks)?;
        let behind = committed < self.committed || last_zxid < self.last_zxid();
        let Some(learner) = self.learners.get_mut(&sender) else {
            return Ok(());
        };
        learner.heard = true;
        learner.synced = true;
        learner.committed = committed;
        let resend = behind && learner.lagging;
        learner.lagging = behind && !resend;
        if self.phase == Phase::Synchronization {
            self.maybe_finish_sync(out);
        } else {
            self.advance_commit(out);
        }
        if resend && self.phase == Phase::Broadcast {
            self.send_new_leader(sender, out);
        }
        Ok(())
    }
}
