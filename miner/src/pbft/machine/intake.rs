//! Messages coming in: decoding and checking the sender, the window of views and heights
//! a replica listens to, and the bounded buffer of messages for the next height.

use super::*;

impl PbftMachine {
    pub(super) fn on_message(
        &mut self,
        now: u64,
        bytes: &[u8],
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let message = PbftMessage::decode(bytes).map_err(reject)?;
        let Some(round) = &self.round else {
            return Err(ignored("no head yet"));
        };
        let vote = message.vote().ok_or_else(|| {
            reject(PbftError::NewViewQuorum {
                view: 0,
                got: 0,
                needed: round.voters.bft_quorum(),
            })
        })?;
        let body = vote.body;
        if body.phase != message.phase() {
            return Err(reject(mismatch("phase", message.phase(), body.phase)));
        }
        // A forgery is refused before anything is kept.
        let sender = vote.signature.verify(ENGINE_NAME, &body).map_err(reject)?;
        if body.height < round.height {
            return Err(ignored(format!(
                "{} for height {} below the current {}",
                body.phase, body.height, round.height
            )));
        }
        if body.height.0 > round.height.0.saturating_add(1) {
            return Err(ignored(format!(
                "{} for height {}, more than one above the current {}",
                body.phase, body.height, round.height
            )));
        }
        if body.height > round.height {
            // The next height's validators may include one this height's lack: its
            // message waits (a bounded few from such senders) and is judged then.
            let known = round.voters.contains(&sender);
            return self.buffer(sender, bytes, known);
        }
        if !round.voters.contains(&sender) {
            return Err(reject(QuorumError::NotAVoter { signer: sender }));
        }
        if body.parent != round.head.hash() {
            return Err(reject(mismatch("parent", round.head.hash(), body.parent)));
        }
        match message {
            PbftMessage::PrePrepare(proposal) => {
                self.on_pre_prepare(now, sender, bytes, proposal, out)
            }
            PbftMessage::Prepare(vote) => self.on_vote(sender, vote, out),
            PbftMessage::Commit(vote) => self.on_vote(sender, vote, out),
            PbftMessage::ViewChange(vc) => self.on_view_change(now, sender, vc, out),
            PbftMessage::NewView(nv) => self.on_new_view(now, nv, out),
        }
    }

    /// Keeps a message for later: at most [`MAX_BUFFERED_PER_SENDER`] per validator, and as
    /// many in all from senders that are not validators now (`known` false).
    pub(super) fn buffer(
        &mut self,
        sender: Address,
        bytes: &[u8],
        known: bool,
    ) -> Result<(), EngineError> {
        if !known {
            let voters = self.round.as_ref().map(|r| &r.voters);
            let strangers: usize = self
                .buffered
                .iter()
                .filter(|(s, _)| voters.is_none_or(|v| !v.contains(s)))
                .map(|(_, q)| q.len())
                .sum();
            if strangers >= MAX_BUFFERED_PER_SENDER {
                return Err(ignored(format!(
                    "{sender} is not a validator at this height and {strangers} messages from such senders wait already"
                )));
            }
        }
        let queue = self.buffered.entry(sender).or_default();
        if queue.iter().any(|b| b == bytes) {
            return Err(ignored(format!(
                "duplicate of a buffered message from {sender}"
            )));
        }
        if queue.len() >= MAX_BUFFERED_PER_SENDER {
            return Err(ignored(format!(
                "{sender} already has {MAX_BUFFERED_PER_SENDER} messages waiting"
            )));
        }
        queue.push_back(bytes.to_vec());
        Ok(())
    }

    /// Re-reads buffered messages after the height or view moved.
    pub(super) fn replay(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        let pending = std::mem::take(&mut self.buffered);
        for bytes in pending.into_values().flatten() {
            // A message that still does not apply is buffered again; one that broke a rule
            // was judged when it arrived, and an error now only drops it.
            let _ = self.on_message(now, &bytes, out);
        }
    }

    pub(super) fn check_window(&self, view: u64, what: Phase) -> Result<(), EngineError> {
        if view > self.view.saturating_add(VIEW_WINDOW) {
            return Err(ignored(format!(
                "{what} for view {view}, more than {VIEW_WINDOW} above the current {}",
                self.view
            )));
        }
        if view.saturating_add(VIEW_WINDOW) < self.view {
            return Err(ignored(format!(
                "{what} for view {view}, more than {VIEW_WINDOW} below the current {}",
                self.view
            )));
        }
        Ok(())
    }
}
