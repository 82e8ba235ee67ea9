//! Phase 1 and leadership ("Paxos Made Simple" §2.2–2.3 and §3; the scout of "Paxos Made
//! Moderately Complex"): Prepare for every open slot at once, promises and refusals,
//! becoming leader and repairing the open slots, heartbeats and check-quorum.

use super::*;
use crate::paxos::{MAX_OPEN_SLOTS, MESSAGE_BUDGET_BYTES};

impl PaxosMachine {
    /// §3: a server that suspects the leader picks a ballot above every one it has seen
    /// and runs phase 1 for all slots above its decided height, promising itself first.
    pub(super) fn start_phase1(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        if self.role == Role::Leader {
            out.push(VoteOutput::CancelTimer(TIMER_HEARTBEAT));
            out.push(VoteOutput::CancelTimer(TIMER_BUILD));
            out.push(VoteOutput::CancelTimer(TIMER_CHECK_QUORUM));
        }
        let round = self.highest_seen.round().max(self.promised.round()) + 1;
        let ballot = Ballot::new(round, self.my_index());
        self.promise(ballot);
        self.ballot = ballot;
        self.role = Role::Candidate;
        self.leader = None;
        self.open.clear();
        self.repairing = None;
        self.build_pending = false;
        self.heard.clear();
        self.promises.clear();
        let own = Promised {
            decided: self.committed,
            accepted: self.accepted.values().cloned().collect(),
        };
        self.promises.insert(self.me, own);
        self.reset_election_timer(out);
        self.send(
            Body::Prepare {
                ballot,
                decided: self.committed,
            },
            out,
        );
        if self.promises.len() >= self.majority() {
            self.become_leader(now, out);
        }
    }

    /// Phase 1b: promise a ballot above the current promise, with the values accepted
    /// above the proposer's decided height; refuse a lower one with a Nack. A server that
    /// holds a lease on a live leader ignores other proposers.
    pub(super) fn on_prepare(
        &mut self,
        now: u64,
        proposer: Address,
        ballot: Ballot,
        decided: Height,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if ballot < self.promised {
            self.highest_seen = self.highest_seen.max(ballot);
            self.nack(proposer, ballot, out);
            return Ok(());
        }
        if ballot > self.promised && self.in_lease(now) && self.leader != Some(proposer) {
            return Err(ignored(format!(
                "prepare {ballot} from {proposer} while the leader of {} is live",
                self.promised
            )));
        }
        if ballot > self.promised {
            self.promise(ballot);
            // Give the proposer an election timeout to become leader.
            let leader = (self.leader == Some(proposer)).then_some(proposer);
            self.become_follower(leader, now, out);
        }
        // Equal ballots: the same proposer asking again; the answer is the same.
        let mut budget = MESSAGE_BUDGET_BYTES;
        let mut accepted = Vec::new();
        for proposal in self.accepted.range(Height(decided.0 + 1)..).map(|(_, p)| p) {
            let size = borsh::object_length(proposal).unwrap_or(usize::MAX);
            if size > budget {
                break;
            }
            budget -= size;
            accepted.push(proposal.clone());
        }
        self.send(
            Body::Promise {
                to: proposer,
                ballot,
                decided: self.committed,
                accepted,
            },
            out,
        );
        Ok(())
    }

    /// A promise for this candidate's ballot; with a majority it leads.
    pub(super) fn on_promise(
        &mut self,
        now: u64,
        acceptor: Address,
        ballot: Ballot,
        decided: Height,
        accepted: Vec<Proposal>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if accepted.len() > MAX_OPEN_SLOTS {
            return Err(malformed(
                acceptor,
                "promise",
                format!(
                    "{} accepted values, at most {MAX_OPEN_SLOTS}",
                    accepted.len()
                ),
            ));
        }
        for proposal in &accepted {
            let built_in = self.check_block(acceptor, "promise", &proposal.block)?;
            // Equal ballots happen: a late Prepare answered after this ballot's Accept.
            if proposal.ballot > ballot || proposal.ballot < built_in {
                return Err(malformed(
                    acceptor,
                    "promise",
                    format!(
                        "a value accepted in ballot {} (built in {built_in}) promised in {ballot}",
                        proposal.ballot
                    ),
                ));
            }
        }
        if self.role != Role::Candidate || ballot != self.ballot {
            return Err(ignored(format!(
                "promise for {ballot} while {} in {}",
                self.role.name(),
                self.ballot
            )));
        }
        self.promises
            .insert(acceptor, Promised { decided, accepted });
        if self.promises.len() >= self.majority() {
            self.become_leader(now, out);
        }
        Ok(())
    }

    /// A refusal: a candidate backs off to follower and waits for a fresh randomized
    /// timeout (this is what breaks duels); a leader prepares again at once above the
    /// ballot that pre-empted it, keeping its followers, whose lease it holds.
    pub(super) fn on_nack(
        &mut self,
        now: u64,
        acceptor: Address,
        ballot: Ballot,
        promised: Ballot,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if promised <= ballot {
            return Err(malformed(
                acceptor,
                "nack",
                format!("refuses {ballot} for {promised}, which is not higher"),
            ));
        }
        self.highest_seen = self.highest_seen.max(promised);
        if ballot != self.ballot {
            return Err(ignored(format!("nack of {ballot}, now in {}", self.ballot)));
        }
        match self.role {
            Role::Candidate => self.become_follower(None, now, out),
            Role::Leader => self.start_phase1(now, out),
            Role::Follower | Role::Observer => {}
        }
        Ok(())
    }

    /// Phase 1 done: lead, learn what the promisers decided beyond this server, then
    /// re-propose the open slots' values.
    pub(super) fn become_leader(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.role = Role::Leader;
        self.leader = Some(self.me);
        self.last_leader_contact = Some(now);
        self.heard.clear();
        let decided = self
            .promises
            .values()
            .map(|p| p.decided)
            .max()
            .unwrap_or(self.committed);
        self.repairing = Some(decided);
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
        self.send(
            Body::Heartbeat {
                ballot: self.ballot,
                decided: self.committed,
            },
            out,
        );
        self.continue_repair(now, out);
    }

    /// A leader repairing: while behind the promisers' decided height it asks one that is
    /// ahead; once level, it re-proposes, slot after slot, the value accepted in the
    /// highest ballot among the promises (§2.2's rule: any later ballot may only propose
    /// that value), each a child of the one before.
    pub(super) fn continue_repair(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        let Some(target) = self.repairing else { return };
        if self.committed < target {
            // Ask every promiser that is ahead: one restarted since may no longer hold
            // the blocks (then the node's sync of certified blocks brings them).
            let ahead: Vec<Address> = self
                .promises
                .iter()
                .filter(|(a, p)| p.decided > self.committed && **a != self.me)
                .map(|(a, _)| *a)
                .collect();
            for to in ahead {
                self.send(
                    Body::Learn {
                        to,
                        from: Height(self.committed.0 + 1),
                    },
                    out,
                );
            }
            return;
        }
        self.repairing = None;
        let mut highest: BTreeMap<Height, Proposal> = BTreeMap::new();
        for proposal in self.promises.values().flat_map(|p| p.accepted.iter()) {
            let height = proposal.block.header.height;
            if height <= self.committed {
                continue;
            }
            let better = highest
                .get(&height)
                .is_none_or(|held| proposal.ballot > held.ballot);
            if better {
                highest.insert(height, proposal.clone());
            }
        }
        self.promises.clear();
        let mut parent = self.committed_hash;
        let mut slot = Height(self.committed.0 + 1);
        while let Some(proposal) = highest.remove(&slot) {
            // A value proposed for a slot was built on the slot before once it was
            // decided, so a gap or a stranger's parent ends what can have been chosen.
            if proposal.block.header.parent != parent {
                break;
            }
            parent = proposal.block.hash();
            self.propose(now, proposal.block, out);
            slot = Height(slot.0 + 1);
        }
    }

    /// The leader's heartbeat; a leader with a slot still open resends its Accept instead
    /// of a bare heartbeat, so a lost Accept is made good.
    pub(super) fn heartbeat(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        if self.repairing.is_some() {
            self.continue_repair(now, out);
        }
        let resend = self.params.heartbeat_ms;
        if let Some(open) = self
            .open
            .values_mut()
            .next()
            .filter(|o| now >= o.sent_at.saturating_add(resend))
        {
            open.sent_at = now;
            let body = Body::Accept {
                ballot: self.ballot,
                decided: self.committed,
                block: open.block.clone(),
            };
            self.send(body, out);
        }
        self.send(
            Body::Heartbeat {
                ballot: self.ballot,
                decided: self.committed,
            },
            out,
        );
    }

    /// Follows the leader of `ballot` (at or above the promise): a candidate or leader of
    /// a lower ballot steps down.
    pub(super) fn follow(
        &mut self,
        now: u64,
        leader: Address,
        ballot: Ballot,
        out: &mut Vec<VoteOutput>,
    ) {
        self.promise(ballot);
        if self.role == Role::Follower && self.leader == Some(leader) {
            self.last_leader_contact = Some(now);
            self.reset_election_timer(out);
            return;
        }
        self.become_follower(Some(leader), now, out);
    }

    pub(super) fn on_heartbeat(
        &mut self,
        now: u64,
        leader: Address,
        ballot: Ballot,
        decided: Height,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if ballot < self.promised {
            self.nack(leader, ballot, out);
            return Ok(());
        }
        self.follow(now, leader, ballot, out);
        self.send(
            Body::HeartbeatAck {
                to: leader,
                ballot,
                decided: self.committed,
            },
            out,
        );
        self.learn_if_behind(now, leader, decided, out);
        Ok(())
    }

    pub(super) fn on_heartbeat_ack(
        &mut self,
        follower: Address,
        ballot: Ballot,
        _decided: Height,
    ) -> Result<(), EngineError> {
        if self.role != Role::Leader || ballot != self.ballot {
            return Err(ignored(format!(
                "heartbeat ack for {ballot} while {} in {}",
                self.role.name(),
                self.ballot
            )));
        }
        self.heard.insert(follower);
        Ok(())
    }
}
