//! Phase 2 and learning ("Paxos Made Simple" §2.2–2.4 and §3; the commander of "Paxos
//! Made Moderately Complex"): Accept per block, Accepted votes that make the certificate,
//! the Decided notice, and catch-up of lagging learners.

use super::*;
use crate::paxos::wire::{BlockData, accepted_vote, check_certificate};
use crate::paxos::{MAX_OPEN_SLOTS, MESSAGE_BUDGET_BYTES};
use crate::quorum::Certificate;
use chain::Timestamp;

impl PaxosMachine {
    /// Phase 2a for `block` in this leader's ballot: it accepts the block itself first
    /// (persisted before the Accept leaves) and asks every acceptor.
    pub(super) fn propose(&mut self, now: u64, block: Block, out: &mut Vec<VoteOutput>) {
        let height = block.header.height;
        let mut open = Open {
            sent_at: now,
            block: block.clone(),
            votes: BTreeMap::new(),
        };
        if let Some(vote) = self.accept_locally(self.ballot, &block) {
            open.votes.insert(self.me, vote);
        }
        self.open.insert(height, open);
        self.send(
            Body::Accept {
                ballot: self.ballot,
                decided: self.committed,
                block,
            },
            out,
        );
        self.try_choose(height, out);
    }

    /// Records `block` as accepted in `ballot` and signs the Accepted vote for it.
    fn accept_locally(&mut self, ballot: Ballot, block: &Block) -> Option<VoteSignature> {
        let height = block.header.height;
        if height > self.committed {
            let proposal = Proposal {
                ballot,
                block: block.clone(),
            };
            if self.accepted.get(&height) != Some(&proposal) {
                self.accepted.insert(height, proposal);
                self.dirty = true;
            }
        }
        let key = self.key.as_ref()?;
        let vote = accepted_vote(ballot, height, block.header.parent, block.hash());
        Some(VoteSignature::sign(ENGINE_NAME, &vote, key))
    }

    /// The leader asks its node for the next block once every slot it opened is decided
    /// and imported: the node builds on its head, whose state it needs.
    pub(super) fn maybe_build(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        if self.build_pending || self.repairing.is_some() || !self.open.is_empty() {
            return;
        }
        let Some(head) = &self.head else { return };
        if head.height() != self.committed {
            return;
        }
        let timestamp = Timestamp((now / 1000).max(head.timestamp.0.saturating_add(1)));
        let data = BlockData {
            ballot: self.ballot,
        }
        .encode();
        out.push(VoteOutput::Build {
            parent: head.hash(),
            timestamp,
            data,
        });
        self.build_pending = true;
    }

    pub(super) fn on_built(
        &mut self,
        now: u64,
        block: Block,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader {
            return Err(ignored(
                "built block arrived after this server stopped leading",
            ));
        }
        let data = BlockData::of_header(&block.header).map_err(reject)?;
        let fits = data.ballot == self.ballot
            && block.header.parent == self.committed_hash
            && block.header.height == Height(self.committed.0 + 1)
            && block.header.producer == self.me
            && self.open.is_empty()
            && self.repairing.is_none();
        if !fits {
            return Err(ignored(format!(
                "built block {} at {} in ballot {} no longer fits (decided {}, ballot {})",
                block.hash(),
                block.header.height,
                data.ballot,
                self.committed,
                self.ballot
            )));
        }
        self.build_pending = false;
        self.propose(now, block, out);
        Ok(())
    }

    /// Phase 2b: accept a block in a ballot at or above the promise, and answer with the
    /// signed Accepted; refuse a lower ballot with a Nack.
    pub(super) fn on_accept(
        &mut self,
        now: u64,
        leader: Address,
        ballot: Ballot,
        decided: Height,
        block: Block,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let built_in = self.check_block(leader, "accept", &block)?;
        if built_in > ballot {
            return Err(malformed(
                leader,
                "accept",
                format!("a block built in ballot {built_in} proposed in {ballot}"),
            ));
        }
        if ballot < self.promised {
            self.nack(leader, ballot, out);
            return Ok(());
        }
        let height = block.header.height;
        if height.0 > self.committed.0 + MAX_OPEN_SLOTS as u64 {
            return Err(ignored(format!(
                "accept for slot {height}, more than {MAX_OPEN_SLOTS} above the decided {}",
                self.committed
            )));
        }
        if height <= self.committed {
            // Decided here already: only the chosen value can be proposed again (P2c), and
            // accepting it again changes nothing but helps the leader's majority.
            let same = self.decided.get(&height).map(|(b, _)| b.hash()) == Some(block.hash())
                || (height == self.committed && self.committed_hash == block.hash());
            if !same {
                return Err(ignored(format!(
                    "accept for slot {height}, decided here as another block"
                )));
            }
        }
        self.follow(now, leader, ballot, out);
        if let Some(vote) = self.accept_locally(ballot, &block) {
            self.send(
                Body::Accepted {
                    to: leader,
                    ballot,
                    height,
                    parent: block.header.parent,
                    hash: block.hash(),
                    signature: vote.signature,
                },
                out,
            );
        }
        self.learn_if_behind(now, leader, decided, out);
        Ok(())
    }

    /// An Accepted vote for one of this leader's open slots; a majority chooses the block.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_accepted(
        &mut self,
        acceptor: Address,
        ballot: Ballot,
        height: Height,
        parent: BlockHash,
        hash: BlockHash,
        vote: VoteSignature,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let body = accepted_vote(ballot, height, parent, hash);
        vote.verify(ENGINE_NAME, &body).map_err(|e| {
            malformed(
                acceptor,
                "accepted",
                format!("the vote does not verify: {e}"),
            )
        })?;
        if self.role != Role::Leader || ballot != self.ballot {
            return Err(ignored(format!(
                "accepted in {ballot} while {} in {}",
                self.role.name(),
                self.ballot
            )));
        }
        self.heard.insert(acceptor);
        let Some(open) = self.open.get_mut(&height) else {
            return Err(ignored(format!("accepted for slot {height}, not open")));
        };
        if open.block.hash() != hash || open.block.header.parent != parent {
            return Err(malformed(
                acceptor,
                "accepted",
                format!(
                    "accepts {hash} at {height}, but {} was proposed",
                    open.block.hash()
                ),
            ));
        }
        open.votes.insert(acceptor, vote);
        self.try_choose(height, out);
        Ok(())
    }

    /// §2.2: a block accepted by a majority in one ballot is chosen; its certificate is
    /// those Accepted votes, and the learners are told.
    fn try_choose(&mut self, height: Height, out: &mut Vec<VoteOutput>) {
        let Some(open) = self.open.get(&height) else {
            return;
        };
        if open.votes.len() < self.majority() {
            return;
        }
        let Some(open) = self.open.remove(&height) else {
            return;
        };
        let body = accepted_vote(
            self.ballot,
            height,
            open.block.header.parent,
            open.block.hash(),
        );
        let certificate = Certificate::new(body, open.votes.into_values().collect()).encode();
        self.send(
            Body::Decided {
                certificate: certificate.clone(),
            },
            out,
        );
        self.decided.insert(height, (open.block, certificate));
        self.commit_decided(out);
    }

    /// Gives the node every decided block that follows its decided height, in order.
    pub(super) fn commit_decided(&mut self, out: &mut Vec<VoteOutput>) {
        while let Some((block, certificate)) = self.decided.get(&Height(self.committed.0 + 1)) {
            if block.header.parent != self.committed_hash {
                // Cannot happen with an honest majority; keep the chain's word.
                let height = block.header.height;
                self.decided.remove(&height);
                break;
            }
            out.push(VoteOutput::Commit {
                block: Box::new(block.clone()),
                certificate: certificate.clone(),
            });
            self.committed = block.header.height;
            self.committed_hash = block.hash();
        }
        // Values of decided slots need no longer be kept; dropping them needs no write
        // (a restarted acceptor drops them again at its head).
        let committed = self.committed;
        self.accepted.retain(|h, _| *h > committed);
    }

    /// Asks `peer` for the decided blocks after this learner's, when `peer` reports a
    /// higher decided height; at most once per heartbeat interval.
    pub(super) fn learn_if_behind(
        &mut self,
        now: u64,
        peer: Address,
        decided: Height,
        out: &mut Vec<VoteOutput>,
    ) {
        if decided <= self.committed {
            return;
        }
        let recent = self
            .learn_asked_at
            .is_some_and(|t| now < t.saturating_add(self.params.heartbeat_ms));
        if recent {
            return;
        }
        self.learn_asked_at = Some(now);
        self.send(
            Body::Learn {
                to: peer,
                from: Height(self.committed.0 + 1),
            },
            out,
        );
    }

    /// The learner's notice: a block is chosen. Committed at once when this server
    /// accepted that block; otherwise it asks the sender for it.
    pub(super) fn on_decided(
        &mut self,
        now: u64,
        sender: Address,
        certificate: &[u8],
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let decoded = Certificate::decode(certificate).map_err(|source| {
            malformed(
                sender,
                "decided",
                format!("unreadable certificate: {source}"),
            )
        })?;
        let body = decoded.body;
        if body.height <= self.committed {
            return Err(ignored(format!(
                "decided {} at {}, already decided here",
                body.block, body.height
            )));
        }
        let Some(proposal) = self
            .accepted
            .get(&body.height)
            .filter(|p| p.block.hash() == body.block)
        else {
            // Check what can be checked without the block before asking for it.
            let built_in = Ballot::ZERO;
            check_certificate(
                &self.servers,
                body.height,
                body.parent,
                body.block,
                built_in,
                certificate,
            )
            .map_err(reject)?;
            self.learn_if_behind(now, sender, body.height, out);
            return Ok(());
        };
        let block = proposal.block.clone();
        let built_in = BlockData::of_header(&block.header).map_err(reject)?.ballot;
        check_certificate(
            &self.servers,
            body.height,
            block.header.parent,
            block.hash(),
            built_in,
            certificate,
        )
        .map_err(reject)?;
        self.decided
            .insert(body.height, (block, certificate.to_vec()));
        self.commit_decided(out);
        // A gap before it: this learner missed earlier decisions.
        self.learn_if_behind(now, sender, body.height, out);
        Ok(())
    }

    /// Serves a lagging learner the decided blocks from `from` that this server still
    /// holds with their certificates, as many as fit one message.
    pub(super) fn on_learn(
        &mut self,
        learner: Address,
        from: Height,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let mut budget = MESSAGE_BUDGET_BYTES;
        let mut blocks = Vec::new();
        for (height, (block, certificate)) in self.decided.range(from..) {
            if *height > self.committed {
                break;
            }
            let size = borsh::object_length(block).unwrap_or(usize::MAX) + certificate.len();
            if size > budget {
                break;
            }
            budget -= size;
            blocks.push((block.clone(), certificate.clone()));
        }
        if blocks.first().is_none_or(|(b, _)| b.header.height != from) {
            return Err(ignored(format!(
                "{learner} asks to learn from {from}, which this server no longer holds"
            )));
        }
        self.send(
            Body::Learned {
                to: learner,
                blocks,
            },
            out,
        );
        Ok(())
    }

    /// Decided blocks from a peer: each is checked (a server built and sealed it, and a
    /// majority's certificate proves it chosen) before it is kept and committed in order.
    pub(super) fn on_learned(
        &mut self,
        sender: Address,
        blocks: Vec<(Block, Vec<u8>)>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if blocks.len() > COMMITTED_WINDOW {
            return Err(malformed(
                sender,
                "learned",
                format!("{} blocks, at most {COMMITTED_WINDOW}", blocks.len()),
            ));
        }
        let mut checked = Vec::new();
        for (block, certificate) in blocks {
            let built_in = self.check_block(sender, "learned", &block)?;
            check_certificate(
                &self.servers,
                block.header.height,
                block.header.parent,
                block.hash(),
                built_in,
                &certificate,
            )
            .map_err(reject)?;
            checked.push((block, certificate));
        }
        // Blocks far beyond this learner's height wait for none before them: dropped,
        // so what is kept stays bounded.
        let (committed, horizon) = (
            self.committed,
            Height(self.committed.0 + MAX_OPEN_SLOTS as u64),
        );
        let fresh: Vec<_> = checked
            .into_iter()
            .filter(|(b, _)| b.header.height > committed && b.header.height <= horizon)
            .collect();
        if fresh.is_empty() {
            return Err(ignored("learned nothing new"));
        }
        for (block, certificate) in fresh {
            self.decided
                .insert(block.header.height, (block, certificate));
        }
        self.learn_asked_at = None;
        self.commit_decided(out);
        Ok(())
    }
}
