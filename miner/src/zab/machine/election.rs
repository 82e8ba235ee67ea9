//! Fast Leader Election as ZooKeeper runs it (`FastLeaderElection.lookForLeader`): votes
//! by `(epoch, last zxid, id)`, rounds (`logicalclock`), a quorum of equal votes settled
//! after `finalizeWait`, and joining an established leader from the votes of servers that
//! are already FOLLOWING or LEADING.

use super::*;

impl ZabMachine {
    /// This server's own vote: itself, with its last zxid and current epoch.
    pub(super) fn own_vote(&self) -> Vote {
        Vote {
            leader: self.me,
            zxid: self.last_zxid(),
            epoch: self.current_epoch,
        }
    }

    fn peer_state(&self) -> PeerState {
        match self.role {
            Role::Leader => PeerState::Leading,
            Role::Follower => PeerState::Following,
            Role::Looking | Role::Observer => PeerState::Looking,
        }
    }

    fn notify(&self, out: &mut Vec<VoteOutput>) {
        let body = Body::Notification {
            round: self.round,
            state: self.peer_state(),
            vote: self.vote,
        };
        self.send(body, out);
    }

    /// Back to LOOKING (phase 0): a new round, a vote for oneself, to all.
    pub(super) fn start_looking(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        if self.role == Role::Leader {
            out.push(VoteOutput::CancelTimer(TIMER_PING));
            out.push(VoteOutput::CancelTimer(TIMER_BUILD));
            out.push(VoteOutput::CancelTimer(TIMER_QUORUM));
        }
        out.push(VoteOutput::CancelTimer(TIMER_LEADER));
        self.role = Role::Looking;
        self.phase = Phase::Election;
        self.leader = None;
        self.learners.clear();
        self.proposed_epoch = None;
        self.acks.clear();
        self.build_pending = false;
        self.round += 1;
        self.vote = self.own_vote();
        self.received.clear();
        self.received.insert(self.me, self.vote);
        self.out_of_election.clear();
        self.finalize_pending = false;
        self.retry_ms = self.params.election_wait_ms;
        self.notify(out);
        out.push(VoteOutput::SetTimer {
            id: TIMER_ELECTION,
            after_millis: self.retry_ms,
        });
        // A single server is its own quorum.
        self.try_decide(now, false, out);
    }

    /// No decision yet: send the vote again, waiting twice as long next time (up to eight
    /// times the first wait), as ZooKeeper's `notTimeout` does.
    pub(super) fn resend_notification(&mut self, out: &mut Vec<VoteOutput>) {
        self.notify(out);
        self.retry_ms = self
            .retry_ms
            .saturating_mul(2)
            .min(self.params.election_wait_ms.saturating_mul(8));
        out.push(VoteOutput::SetTimer {
            id: TIMER_ELECTION,
            after_millis: self.retry_ms,
        });
    }

    pub(super) fn on_notification(
        &mut self,
        now: u64,
        sender: Address,
        round: u64,
        state: PeerState,
        vote: Vote,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role != Role::Looking {
            // A settled server answers a LOOKING one with the vote it settled on, so a
            // restarted or partitioned server finds the established leader.
            if state == PeerState::Looking {
                self.notify(out);
            }
            return Ok(());
        }
        if !self.servers.contains(&vote.leader) {
            return Err(reject(ZabError::MalformedMessage {
                sender,
                what: "notification",
                reason: format!("a vote for {}, who is not a server", vote.leader),
            }));
        }
        match state {
            PeerState::Looking => {
                if round > self.round {
                    // A later election: join it, with the better of our own vote and theirs.
                    self.round = round;
                    self.received.clear();
                    let own = self.own_vote();
                    self.vote = if vote.beats(&own) { vote } else { own };
                    self.notify(out);
                } else if round < self.round {
                    // An earlier election: tell the sender where we are.
                    self.notify(out);
                    return Err(ignored(format!(
                        "notification of round {round} from {sender}, now in {}",
                        self.round
                    )));
                } else if vote.beats(&self.vote) {
                    self.vote = vote;
                    self.notify(out);
                }
                self.received.insert(sender, vote);
                self.received.insert(self.me, self.vote);
                self.try_decide(now, false, out);
            }
            PeerState::Following | PeerState::Leading => {
                if round == self.round {
                    self.received.insert(sender, vote);
                }
                self.out_of_election.insert(sender, (vote, state));
                self.try_join(now, out);
            }
        }
        Ok(())
    }

    /// `termPredicate` with `finalizeWait`: once ⌊N/2⌋+1 received votes equal ours, wait a
    /// little for a better one (`finalize` when the wait is over); all N agreeing settles at
    /// once.
    pub(super) fn try_decide(&mut self, now: u64, finalize: bool, out: &mut Vec<VoteOutput>) {
        if self.role != Role::Looking {
            return;
        }
        let agreeing = self.received.values().filter(|v| **v == self.vote).count();
        if agreeing < self.majority() {
            return;
        }
        if finalize || agreeing == self.servers.len() {
            let leader = self.vote.leader;
            self.settle(now, leader, out);
        } else if !self.finalize_pending {
            self.finalize_pending = true;
            out.push(VoteOutput::SetTimer {
                id: TIMER_FINALIZE,
                after_millis: self.params.election_wait_ms,
            });
        }
    }

    /// An established ensemble: ⌊N/2⌋+1 servers FOLLOWING or LEADING under one leader,
    /// which itself says it leads (ZooKeeper's `checkLeader`).
    fn try_join(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        let mut support: BTreeMap<Address, usize> = BTreeMap::new();
        for (vote, _) in self.out_of_election.values() {
            *support.entry(vote.leader).or_default() += 1;
        }
        let joined = support.into_iter().find(|(leader, count)| {
            *count >= self.majority()
                && *leader != self.me
                && self
                    .out_of_election
                    .get(leader)
                    .is_some_and(|(_, state)| *state == PeerState::Leading)
        });
        if let Some((leader, _)) = joined {
            if let Some((vote, _)) = self.out_of_election.get(&leader) {
                self.vote = *vote;
            }
            self.settle(now, leader, out);
        }
    }

    /// The election is over: lead, or follow `leader` (phase 1 begins).
    fn settle(&mut self, now: u64, leader: Address, out: &mut Vec<VoteOutput>) {
        out.push(VoteOutput::CancelTimer(TIMER_ELECTION));
        out.push(VoteOutput::CancelTimer(TIMER_FINALIZE));
        self.finalize_pending = false;
        self.received.clear();
        self.out_of_election.clear();
        self.leader = Some(leader);
        self.phase = Phase::Discovery;
        if leader == self.me {
            self.become_leader(now, out);
        } else {
            self.role = Role::Follower;
            self.reset_leader_timer(out);
            let body = Body::FollowerInfo {
                to: leader,
                accepted_epoch: self.accepted_epoch,
            };
            self.send(body, out);
        }
    }

    pub(super) fn reset_leader_timer(&self, out: &mut Vec<VoteOutput>) {
        out.push(VoteOutput::SetTimer {
            id: TIMER_LEADER,
            after_millis: self.params.sync_limit_ms,
        });
    }

    fn become_leader(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.role = Role::Leader;
        self.leading_since = now;
        self.learners.clear();
        self.proposed_epoch = None;
        self.acks.clear();
        self.build_pending = false;
        out.push(VoteOutput::SetTimer {
            id: TIMER_PING,
            after_millis: self.params.tick_ms,
        });
        out.push(VoteOutput::SetTimer {
            id: TIMER_QUORUM,
            after_millis: self.params.sync_limit_ms,
        });
        // A single server is its own quorum in every phase.
        self.maybe_propose_epoch(out);
    }
}
