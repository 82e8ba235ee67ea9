//! The view change (Castro and Liskov §4.4): VIEW-CHANGE messages, the NEW-VIEW that a
//! new primary assembles from 2f+1 of them, and entering a view.

use super::*;

impl PbftMachine {
    /// §4.4: keeps a VIEW-CHANGE; f+1 of them for higher views pull this replica along
    /// (§4.5.2), and 2f+1 for a view let its primary open it.
    pub(super) fn on_view_change(
        &mut self,
        now: u64,
        sender: Address,
        vc: ViewChange,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let Some(round) = &mut self.round else {
            return Err(ignored("no head yet"));
        };
        let view = vc.vote.body.view;
        let stale = view < self.view || (view == self.view && self.status == Status::Normal);
        if stale
            && view == self.view
            && let Some(new_view) = &round.new_view_message
        {
            // A replica still asking for the view this primary opened missed the NEW-VIEW:
            // it gets it again (PBFT retransmits until received).
            out.push(VoteOutput::Broadcast(new_view.clone()));
            return Ok(());
        }
        if stale {
            return Err(ignored(format!(
                "view change to view {view}, not above the current {}",
                self.view
            )));
        }
        if view > self.view.saturating_add(VIEW_WINDOW) {
            return Err(ignored(format!(
                "view change to view {view}, more than {VIEW_WINDOW} above the current {}",
                self.view
            )));
        }
        round.check_view_change(&vc).map_err(reject)?;
        if let Some(first) = round.view_changes.get(&(view, sender)) {
            return if first.vote == vc.vote {
                Err(ignored(format!(
                    "duplicate view change from {sender} to view {view}"
                )))
            } else {
                Err(reject(PbftError::Equivocation {
                    sender,
                    phase: Phase::ViewChange,
                    height: round.height,
                    view,
                    first: first.vote.body.block,
                    second: vc.vote.body.block,
                }))
            };
        }
        if let (Some(hash), Some(block)) = (vc.prepared_hash(), &vc.block) {
            round.blocks.entry(hash).or_insert_with(|| block.clone());
        }
        round.view_changes.insert((view, sender), vc);
        // f+1 replicas (one of them honest) want a later view: join the lowest they ask for.
        let mut lowest: BTreeMap<Address, u64> = BTreeMap::new();
        for (v, s) in round.view_changes.keys() {
            if *v > self.view || (*v == self.view && self.status == Status::Normal) {
                lowest.entry(*s).or_insert(*v);
            }
        }
        if lowest.len() >= round.voters.weak_quorum()
            && round.decided.is_none()
            && let Some(target) = lowest.values().min().copied()
            && (target > self.view || self.status == Status::Normal)
        {
            self.start_view_change(now, target, out);
        }
        self.try_new_view(now, out);
        Ok(())
    }

    /// §4.4: a NEW-VIEW opens its view when it carries 2f+1 valid VIEW-CHANGEs for it and
    /// re-proposes the block prepared in the highest view among them.
    pub(super) fn on_new_view(
        &mut self,
        now: u64,
        nv: NewView,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let Some(round) = &self.round else {
            return Err(ignored("no head yet"));
        };
        let view = nv
            .view_changes
            .first()
            .map(|vc| vc.vote.body.view)
            .unwrap_or_default();
        if view < self.view || (view == self.view && self.status == Status::Normal) {
            return Err(ignored(format!(
                "new view {view}, not above the current {}",
                self.view
            )));
        }
        let mut senders = BTreeSet::new();
        let mut highest: Option<(u64, BlockHash)> = None;
        for vc in &nv.view_changes {
            if vc.vote.body.view != view {
                return Err(reject(mismatch(
                    "view of a view change",
                    view,
                    vc.vote.body.view,
                )));
            }
            if vc.vote.body.parent != round.head.hash() || vc.vote.body.height != round.height {
                return Err(reject(mismatch(
                    "height of a view change",
                    round.height,
                    vc.vote.body.height,
                )));
            }
            let sender = round.check_view_change(vc).map_err(reject)?;
            senders.insert(sender);
            if let (Some(hash), Some(pv)) = (vc.prepared_hash(), vc.prepared_view())
                && highest.is_none_or(|(v, _)| pv > v)
            {
                highest = Some((pv, hash));
            }
        }
        let needed = round.voters.bft_quorum();
        if senders.len() < needed {
            return Err(reject(PbftError::NewViewQuorum {
                view,
                got: senders.len(),
                needed,
            }));
        }
        let proposed = nv.proposal.as_ref().map(|p| p.block.hash());
        if let Some((prepared_view, prepared)) = highest
            && proposed != Some(prepared)
        {
            return Err(reject(PbftError::NewViewDropsPrepared {
                view,
                prepared,
                prepared_view,
                proposed,
            }));
        }
        if let Some(p) = &nv.proposal {
            let primary = PbftEngine::primary(&round.voters, view).map_err(reject)?;
            let signer = p.vote.verify(ENGINE_NAME, &round.voters).map_err(reject)?;
            if signer != primary {
                return Err(reject(PbftError::NotPrimary {
                    height: round.height,
                    view,
                    sender: signer,
                    primary,
                }));
            }
            if p.vote.body.view != view || p.vote.body.phase != Phase::Propose {
                return Err(reject(mismatch(
                    "new view proposal view",
                    view,
                    p.vote.body.view,
                )));
            }
            check_block(round, &p.block, p.vote.body.block).map_err(reject)?;
        }
        self.enter_view(now, view, out);
        if let Some(p) = nv.proposal {
            self.accept_proposal(view, p.block, out);
        } else if self.is_primary(view) {
            self.resend_or_schedule_proposal(now, out);
        }
        Ok(())
    }

    // ---- steps --------------------------------------------------------------------------

    pub(super) fn enter_view(&mut self, now: u64, view: u64, out: &mut Vec<VoteOutput>) {
        self.view = view;
        self.normal_view = view;
        self.status = Status::Normal;
        self.arm_timers(now, false, out);
    }

    /// Moves to `view` and asks for it with this replica's prepared certificate.
    pub(super) fn start_view_change(&mut self, now: u64, view: u64, out: &mut Vec<VoteOutput>) {
        if self.round.as_ref().is_none_or(|r| r.decided.is_some()) {
            return;
        }
        self.view = view;
        self.status = Status::ViewChanging;
        self.failed_views = self.failed_views.saturating_add(1).min(MAX_FAILED_VIEWS);
        out.push(VoteOutput::CancelTimer(TIMER_BUILD));
        self.arm_timers(now, false, out);
        let me = self.me();
        let Some(round) = &self.round else { return };
        let (prepared, block, hash) = match &round.prepared {
            Some(p) => (
                Some(p.certificate.clone()),
                Some(p.block.clone()),
                p.block.hash(),
            ),
            None => (None, None, BlockHash::ZERO),
        };
        let already = round.sent.view_change.is_some_and(|v| v >= view);
        let (Some(me), Some(vote)) = (me, self.sign(round.body(view, hash, Phase::ViewChange)))
        else {
            return;
        };
        if already {
            return;
        }
        let vc = ViewChange {
            vote,
            prepared,
            block,
        };
        if let Some(round) = &mut self.round {
            round.sent.view_change = Some(view);
            round.view_changes.insert((view, me), vc.clone());
        }
        self.send(&PbftMessage::ViewChange(vc), out);
        self.try_new_view(now, out);
    }

    /// As the primary of the view being changed to, with 2f+1 VIEW-CHANGEs: NEW-VIEW.
    pub(super) fn try_new_view(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        let view = self.view;
        if self.status != Status::ViewChanging || !self.is_primary(view) {
            return;
        }
        let Some(round) = &self.round else { return };
        if round.sent.new_view == Some(view) || round.decided.is_some() {
            return;
        }
        let vcs = round.view_changes_for(view);
        if vcs.len() < round.voters.bft_quorum() {
            return;
        }
        let highest = vcs
            .iter()
            .filter_map(|vc| Some((vc.prepared_view()?, vc.prepared_hash()?)))
            .max_by_key(|(v, _)| *v);
        let proposal = match highest {
            Some((_, hash)) => {
                let Some(block) = round.blocks.get(&hash).cloned() else {
                    // No VIEW-CHANGE carried the block; wait for one that does.
                    return;
                };
                let Some(vote) = self.sign(round.body(view, hash, Phase::Propose)) else {
                    return;
                };
                Some(Proposal {
                    vote,
                    block,
                    justification: None,
                })
            }
            None => None,
        };
        let view_changes = vcs
            .into_iter()
            .map(|vc| ViewChange {
                block: None,
                ..vc.clone()
            })
            .collect();
        let message = PbftMessage::NewView(NewView {
            view_changes,
            proposal: proposal.clone(),
        });
        if let Some(round) = &mut self.round {
            round.sent.new_view = Some(view);
            round.new_view_message = Some(message.encode());
            if let Some(p) = &proposal {
                round.sent.proposal = Some((view, p.block.clone()));
            }
        }
        self.status = Status::Normal;
        self.normal_view = view;
        self.send(&message, out);
        self.arm_timers(now, false, out);
        match proposal {
            Some(p) => self.accept_proposal(view, p.block, out),
            None => self.resend_or_schedule_proposal(now, out),
        }
    }
}
