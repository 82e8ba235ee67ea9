//! The normal case (Castro and Liskov §4.2): PRE-PREPARE, PREPARE and COMMIT, and
//! deciding a block once 2f+1 COMMITs match.

use super::*;

impl PbftMachine {
    /// §4.2: a PRE-PREPARE is accepted from the view's primary, once per view.
    pub(super) fn on_pre_prepare(
        &mut self,
        now: u64,
        sender: Address,
        bytes: &[u8],
        proposal: Proposal,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let Some(round) = &self.round else {
            return Err(ignored("no head yet"));
        };
        let view = proposal.vote.body.view;
        let primary = PbftEngine::primary(&round.voters, view).map_err(reject)?;
        if sender != primary {
            return Err(reject(PbftError::NotPrimary {
                height: round.height,
                view,
                sender,
                primary,
            }));
        }
        let hash = proposal.block.hash();
        check_block(round, &proposal.block, proposal.vote.body.block).map_err(reject)?;
        if let Some(first) = round.proposals.get(&view) {
            return if *first == hash {
                Err(ignored(format!("duplicate pre-prepare for view {view}")))
            } else {
                Err(reject(PbftError::Equivocation {
                    sender,
                    phase: Phase::Propose,
                    height: round.height,
                    view,
                    first: *first,
                    second: hash,
                }))
            };
        }
        // A PRE-PREPARE for the view the parent was decided in opens it, when its
        // justification proves that view and nothing was signed here in a later one.
        let justified = proposal.justification.as_ref().is_some_and(|cert| {
            cert.body.view == view
                && PbftEngine::check_commit_certificate(&round.head, &cert.encode(), &round.voters)
                    .is_ok()
        }) && round.sent.highest_view().is_none_or(|v| v <= view)
            && round.proposals.keys().all(|v| *v < view);
        if justified && view != self.view {
            self.view = view;
            self.normal_view = view;
            self.status = Status::Normal;
            self.arm_timers(now, true, out);
        } else {
            if view < self.view {
                return Err(ignored(format!(
                    "pre-prepare for view {view} below the current {}",
                    self.view
                )));
            }
            self.check_window(view, Phase::Propose)?;
            if view > self.view || self.status == Status::ViewChanging {
                // Its NEW-VIEW has not arrived yet.
                return self.buffer(sender, bytes, true);
            }
        }
        self.accept_proposal(view, proposal.block, out);
        Ok(())
    }

    /// Keeps the view's proposal and votes for it once the node finds it valid.
    pub(super) fn accept_proposal(&mut self, view: u64, block: Block, out: &mut Vec<VoteOutput>) {
        let Some(round) = &mut self.round else { return };
        let hash = block.hash();
        round.proposals.insert(view, hash);
        round.blocks.entry(hash).or_insert_with(|| block.clone());
        if round.validated.contains(&hash) {
            self.send_prepare(view, hash, out);
        } else if !round.invalid.contains(&hash) && round.asked.insert(hash) {
            out.push(VoteOutput::Validate(Box::new(block)));
        }
        self.progress(out);
    }

    /// PREPAREs and COMMITs: one per sender, view and phase; counted in any view near the
    /// current one (a COMMIT quorum decides in whatever view it formed).
    pub(super) fn on_vote(
        &mut self,
        sender: Address,
        vote: SignedVote,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let body = vote.body;
        self.check_window(body.view, body.phase)?;
        let Some(round) = &mut self.round else {
            return Err(ignored("no head yet"));
        };
        let votes = if body.phase == Phase::Prepare {
            &mut round.prepares
        } else {
            &mut round.commits
        };
        if let Some(first) = votes.get(&(body.view, sender)) {
            return if first.body.block == body.block {
                Err(ignored(format!(
                    "duplicate {} from {sender} in view {}",
                    body.phase, body.view
                )))
            } else {
                Err(reject(PbftError::Equivocation {
                    sender,
                    phase: body.phase,
                    height: body.height,
                    view: body.view,
                    first: first.body.block,
                    second: body.block,
                }))
            };
        }
        votes.insert((body.view, sender), vote);
        self.progress(out);
        Ok(())
    }

    /// Sends PREPARE for `hash` in `view` unless this replica signed another one in this
    /// view or a later one.
    pub(super) fn send_prepare(&mut self, view: u64, hash: BlockHash, out: &mut Vec<VoteOutput>) {
        let Some(me) = self.me() else { return };
        let Some(round) = &self.round else { return };
        if round.decided.is_some() || round.sent.prepare.is_some_and(|(v, _)| v >= view) {
            return;
        }
        let Some(vote) = self.sign(round.body(view, hash, Phase::Prepare)) else {
            return;
        };
        if let Some(round) = &mut self.round {
            round.sent.prepare = Some((view, hash));
            round.prepares.insert((view, me), vote);
        }
        self.send(&PbftMessage::Prepare(vote), out);
        self.progress(out);
    }

    /// Prepared → COMMIT; committed → decision.
    pub(super) fn progress(&mut self, out: &mut Vec<VoteOutput>) {
        let view = self.view;
        let me = self.me();
        let Some(round) = &mut self.round else { return };
        if round.decided.is_some() {
            return;
        }
        let quorum = round.voters.bft_quorum();
        // Prepared (§4.2): the view's proposal, found valid here, with 2f+1 PREPAREs.
        if self.status == Status::Normal
            && let Some(&hash) = round.proposals.get(&view)
            && round.validated.contains(&hash)
            && round.prepared.as_ref().is_none_or(|p| p.view() < view)
        {
            let votes = Round::matching(&round.prepares, view, hash);
            if votes.len() >= quorum
                && let Some(block) = round.blocks.get(&hash)
            {
                round.prepared = Some(Prepared {
                    block: block.clone(),
                    certificate: Certificate::new(
                        round.body(view, hash, Phase::Prepare),
                        votes.iter().map(|v| v.signature).collect(),
                    ),
                });
                let can_commit = round.sent.commit.is_none_or(|(v, _)| v < view);
                if let (Some(me), true) = (me, can_commit)
                    && let Some(key) = &self.key
                {
                    let vote =
                        SignedVote::sign(ENGINE_NAME, round.body(view, hash, Phase::Commit), key);
                    round.sent.commit = Some((view, hash));
                    round.commits.insert((view, me), vote);
                    let message = PbftMessage::Commit(vote);
                    out.extend(self.persist());
                    out.push(VoteOutput::Broadcast(message.encode()));
                }
            }
        }
        // Committed (§4.2): 2f+1 COMMITs for one block in one view, and the block in hand.
        let Some(round) = &mut self.round else { return };
        let views: BTreeSet<u64> = round.commits.keys().map(|(v, _)| *v).collect();
        for v in views {
            let mut by_block: BTreeMap<BlockHash, Vec<SignedVote>> = BTreeMap::new();
            for vote in Round::matching_all(&round.commits, v) {
                by_block.entry(vote.body.block).or_default().push(vote);
            }
            for (hash, votes) in by_block {
                if votes.len() < quorum {
                    continue;
                }
                let Some(block) = round.blocks.get(&hash).cloned() else {
                    continue;
                };
                let certificate = Certificate::new(
                    round.body(v, hash, Phase::Commit),
                    votes.iter().map(|v| v.signature).collect(),
                );
                round.decided = Some(certificate.clone());
                out.push(VoteOutput::CancelTimer(TIMER_VIEW));
                out.push(VoteOutput::CancelTimer(TIMER_BUILD));
                out.push(VoteOutput::CancelTimer(TIMER_RESEND));
                out.push(VoteOutput::Commit {
                    block: Box::new(block),
                    certificate: certificate.encode(),
                });
                return;
            }
        }
    }
}
