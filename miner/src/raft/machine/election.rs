//! Leader election (Raft §5.2, §5.4.1, and pre-vote from Ongaro's thesis §9.6):
//! campaigns, RequestVote and its answers, becoming leader.

use super::*;

impl RaftMachine {
    /// Thesis §9.6: ask first whether a majority would vote for us in the next term, so a
    /// server cut off from the others does not raise its term and depose a healthy leader
    /// when it returns.
    pub(super) fn start_pre_vote(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.me, true);
        self.reset_election_timer(out);
        if self.votes.len() >= self.majority() {
            self.start_election(now, out);
            return;
        }
        let body = Body::RequestVote {
            term: self.term + 1,
            last_index: self.last_index(),
            last_term: self.last_term(),
            pre_vote: true,
        };
        self.send(body, out);
    }

    /// §5.2: a new term, a vote for oneself, RequestVote to all.
    pub(super) fn start_election(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.term += 1;
        self.voted_for = Some(self.me);
        self.dirty = true;
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.me, true);
        self.reset_election_timer(out);
        if self.votes.len() >= self.majority() {
            self.become_leader(now, out);
            return;
        }
        let body = Body::RequestVote {
            term: self.term,
            last_index: self.last_index(),
            last_term: self.last_term(),
            pre_vote: false,
        };
        self.send(body, out);
    }

    pub(super) fn become_leader(&mut self, now: u64, out: &mut Vec<VoteOutput>) {
        self.role = Role::Leader;
        self.leader = Some(self.me);
        self.votes.clear();
        self.acks.clear();
        self.build_pending = false;
        self.last_leader_contact = Some(now);
        let next_index = self.last_index() + 1;
        self.progress = self
            .servers
            .iter()
            .filter(|s| **s != self.me)
            .map(|s| {
                (
                    *s,
                    Progress {
                        next_index,
                        ..Progress::default()
                    },
                )
            })
            .collect();
        // Thesis §6.4: an entry of the new term, so the entries of earlier terms this
        // leader holds can be committed with it (§5.4.2 counts replicas of own-term
        // entries only), even if no block follows.
        if self.uncommitted() < MAX_UNCOMMITTED_ENTRIES as u64 {
            self.log.push(Entry {
                term: self.term,
                block: None,
            });
            self.dirty = true;
        }
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
        self.broadcast_append(out);
        self.advance_commit(out);
    }

    // ----- inputs -----

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_request_vote(
        &mut self,
        now: u64,
        candidate: Address,
        term: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        // §5.4.1: the candidate's log must be at least as up to date as ours.
        let up_to_date = last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index());
        if term < self.term {
            if pre_vote {
                // etcd answers a stale pre-vote, so the pre-candidate learns the term.
                let body = Body::VoteResponse {
                    to: candidate,
                    term: self.term,
                    granted: false,
                    pre_vote: true,
                };
                self.send(body, out);
                return Ok(());
            }
            return Err(ignored(format!(
                "vote request of term {term}, now in {}",
                self.term
            )));
        }
        if term > self.term && self.in_lease(now) {
            return Err(ignored(format!(
                "vote request of term {term} while the leader of term {} is live",
                self.term
            )));
        }
        if pre_vote {
            // Nothing changes: no term, no vote, no timer.
            let can_vote = term > self.term
                || self.voted_for == Some(candidate)
                || (self.voted_for.is_none() && self.leader.is_none());
            let granted = can_vote && up_to_date;
            let body = Body::VoteResponse {
                to: candidate,
                term: if granted { term } else { self.term },
                granted,
                pre_vote: true,
            };
            self.send(body, out);
            return Ok(());
        }
        if term > self.term {
            self.become_follower(term, None, out);
        }
        // §5.2: at most one vote per term, first come first served.
        let can_vote = self.voted_for.is_none() || self.voted_for == Some(candidate);
        let granted = can_vote && up_to_date;
        if granted {
            if self.voted_for.is_none() {
                self.voted_for = Some(candidate);
                self.dirty = true;
            }
            self.reset_election_timer(out);
        }
        let body = Body::VoteResponse {
            to: candidate,
            term: self.term,
            granted,
            pre_vote: false,
        };
        self.send(body, out);
        Ok(())
    }

    pub(super) fn on_vote_response(
        &mut self,
        now: u64,
        voter: Address,
        term: u64,
        granted: bool,
        pre_vote: bool,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let campaigning = if pre_vote {
            // A grant carries the proposed term, a refusal the voter's (etcd).
            self.role == Role::PreCandidate
                && (term == self.term + 1 || (!granted && term == self.term))
        } else {
            self.role == Role::Candidate && term == self.term
        };
        if !campaigning {
            return Err(ignored(format!(
                "{} of term {term} from {voter} while {} in term {}",
                if pre_vote { "pre-vote" } else { "vote" },
                self.role.name(),
                self.term
            )));
        }
        self.votes.insert(voter, granted);
        let grants = self.votes.values().filter(|g| **g).count();
        let refusals = self.votes.len() - grants;
        if grants >= self.majority() {
            if pre_vote {
                self.start_election(now, out);
            } else {
                self.become_leader(now, out);
            }
        } else if refusals >= self.majority() {
            // The election is lost; wait for the winner's heartbeat as a follower.
            let term = self.term;
            self.become_follower(term, None, out);
        }
        Ok(())
    }
}
