//! Raft: conformance tables on the pure machine, each case citing the paper's section or
//! figure as etcd's `raft_paper_test.go` and raft-rs's `test_raft_paper.rs` name them;
//! refusals of bad messages and certificates; and named multi-server runs in a
//! deterministic in-memory cluster (virtual time, real chains, droppable links).

use crate::support::{GENESIS_TIME, engine_chain};
use chain::block::HEADER_VERSION;
use chain::{
    Address, Block, BlockError, BlockHash, Chain, ChainView, ConsensusEngine, EngineError,
    EngineFields, Hash256, Header, Height, SealedHeader, SecretKey, Timestamp, VoteInput,
    VoteOutput, VotingMachine,
};
use miner::raft::wire::{
    Ack, Body, Certificate, Entry, EntryData, Envelope, PersistedState, SignedAck, ack_digest,
    check_certificate,
};
use miner::raft::{
    COMMITTED_WINDOW, MAX_MESSAGE_BYTES, RaftEngine, RaftError, RaftMachine, RaftParams, Role,
    TIMER_BUILD, TIMER_CHECK_QUORUM, TIMER_ELECTION, TIMER_HEARTBEAT,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// The pure machine, driven by hand.
// ---------------------------------------------------------------------------------------

fn keys(n: usize) -> Vec<SecretKey> {
    crate::cluster::server_keys("raft server", n)
}

fn params(keys: &[SecretKey]) -> RaftParams {
    RaftParams::devnet(keys.iter().map(SecretKey::address).collect())
}

fn genesis() -> SealedHeader {
    crate::cluster::genesis_header()
}

/// Entries of these terms at indexes 1, 2, …: no-ops, which is all the log rules need.
fn log(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .map(|t| Entry {
            term: *t,
            block: None,
        })
        .collect()
}

fn state(term: u64, voted_for: Option<Address>, terms: &[u64]) -> PersistedState {
    PersistedState {
        term,
        voted_for,
        base_index: 0,
        base_term: 0,
        entries: log(terms),
    }
}

/// A block sealed by `key` at `height` on `parent`, placed at `position` in the log.
/// Block 1 by server 1 in term 1 at log `index`, and its certificate: the acks of servers
/// 1 and 2, a majority of three.
fn certified_first_block(ks: &[SecretKey], index: u64) -> (Block, Vec<u8>) {
    let b = block(
        &ks[1],
        genesis().hash(),
        1,
        EntryData {
            term: 1,
            index,
            live: 0,
        },
    );
    let acks = [&ks[1], &ks[2]]
        .iter()
        .map(|k| SignedAck {
            key: k.public_key(),
            signature: k.sign(&ack_digest(1, Height(1), &b.hash())),
        })
        .collect();
    (b, Certificate { term: 1, acks }.encode())
}

fn block(key: &SecretKey, parent: BlockHash, height: u64, position: EntryData) -> Block {
    let header = Header {
        version: HEADER_VERSION,
        parent,
        height: Height(height),
        timestamp: Timestamp(GENESIS_TIME + height),
        tx_root: Hash256::ZERO,
        state_root: Hash256::ZERO,
        producer: key.address(),
        engine: EngineFields {
            data: position.encode(),
            ..EngineFields::default()
        },
    };
    Block {
        header: miner::seal::sign_header(header, key),
        txs: Vec::new(),
    }
}

fn bodies(outputs: &[VoteOutput]) -> Vec<Body> {
    outputs
        .iter()
        .filter_map(|o| match o {
            VoteOutput::Broadcast(bytes) => Some(Envelope::decode(bytes).expect("decodes").body),
            _ => None,
        })
        .collect()
}

fn commits(outputs: &[VoteOutput]) -> Vec<(Block, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            VoteOutput::Commit { block, certificate } => {
                Some(((**block).clone(), certificate.clone()))
            }
            _ => None,
        })
        .collect()
}

fn timer(outputs: &[VoteOutput], id: chain::TimerId) -> Option<u64> {
    outputs.iter().rev().find_map(|o| match o {
        VoteOutput::SetTimer {
            id: i,
            after_millis,
        } if *i == id => Some(*after_millis),
        _ => None,
    })
}

/// One server's machine with the keys of its whole cluster, so tests can speak for its
/// peers.
struct Server {
    keys: Vec<SecretKey>,
    me: usize,
    machine: RaftMachine,
    now: u64,
}

impl Server {
    fn new(n: usize, me: usize, persisted: Option<PersistedState>) -> Server {
        let keys = keys(n);
        let mut machine = RaftMachine::new(params(&keys), Some(keys[me].clone()), persisted);
        machine
            .handle(
                0,
                VoteInput::Head {
                    head: genesis(),
                    voters: Vec::new(),
                },
            )
            .expect("head");
        Server {
            keys,
            me,
            machine,
            now: 0,
        }
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn input(&mut self, input: VoteInput) -> Result<Vec<VoteOutput>, EngineError> {
        self.now += 1;
        self.machine.handle(self.now, input)
    }

    fn from(&mut self, peer: usize, body: Body) -> Result<Vec<VoteOutput>, EngineError> {
        let bytes = Envelope::seal(body, &self.keys[peer]).encode();
        self.input(VoteInput::Message(bytes))
    }

    fn timeout(&mut self, id: chain::TimerId) -> Vec<VoteOutput> {
        self.input(VoteInput::Timeout(id)).expect("timeout")
    }

    fn terms(&self) -> Vec<u64> {
        (1..=self.machine.last_index())
            .map(|i| self.machine.term_at(i).expect("held"))
            .collect()
    }

    /// Times out and collects pre-votes from every peer in `grants`; returns the outputs of
    /// the last step.
    fn pre_campaign(&mut self, grants: &[usize]) -> Vec<VoteOutput> {
        let mut out = self.timeout(TIMER_ELECTION);
        let next = self.machine.term() + 1;
        for &peer in grants {
            if self.machine.role() != Role::PreCandidate {
                break;
            }
            let body = Body::VoteResponse {
                to: self.addr(self.me),
                term: next,
                granted: true,
                pre_vote: true,
            };
            out = self.from(peer, body).expect("pre-vote");
        }
        out
    }

    /// Becomes leader with the votes of all other servers (pre-votes first).
    fn elect(&mut self) -> Vec<VoteOutput> {
        let peers: Vec<usize> = (0..self.keys.len()).filter(|p| *p != self.me).collect();
        let majority = self.keys.len() / 2;
        let mut out = self.pre_campaign(&peers[..majority]);
        for &peer in &peers[..majority] {
            let body = Body::VoteResponse {
                to: self.addr(self.me),
                term: self.machine.term(),
                granted: true,
                pre_vote: false,
            };
            out = self.from(peer, body).expect("vote");
        }
        assert_eq!(self.machine.role(), Role::Leader);
        out
    }

    /// A follower's successful answer matching through `match_index`, with acks (signed
    /// in `ack_term`) of the blocks given.
    fn accept(
        &mut self,
        peer: usize,
        match_index: u64,
        acked: &[&Block],
        ack_term: u64,
    ) -> Vec<VoteOutput> {
        let acks = acked
            .iter()
            .map(|b| Ack {
                height: b.header.height,
                hash: b.hash(),
                signature: self.keys[peer].sign(&ack_digest(ack_term, b.header.height, &b.hash())),
            })
            .collect();
        let body = Body::AppendResponse {
            to: self.addr(self.me),
            term: self.machine.term(),
            success: true,
            match_index,
            last_index: match_index,
            commit_index: 0,
            acks,
        };
        self.from(peer, body).expect("append response")
    }
}

fn is_ignored(result: &Result<Vec<VoteOutput>, EngineError>) -> bool {
    matches!(result, Err(EngineError::Ignored { .. }))
}

fn raft_error(result: Result<Vec<VoteOutput>, EngineError>) -> RaftError {
    match result {
        Err(e) => e
            .downcast_ref::<RaftError>()
            .cloned()
            .unwrap_or_else(|| panic!("not a raft refusal: {e}")),
        Ok(out) => panic!("expected a refusal, got {out:?}"),
    }
}

#[derive(Clone, Copy, Debug)]
enum Start {
    Follower,
    Candidate,
    Leader,
}

fn server_as(start: Start) -> Server {
    let mut s = Server::new(3, 0, Some(state(1, None, &[])));
    match start {
        Start::Follower => {}
        Start::Candidate => {
            s.pre_campaign(&[1]);
            assert_eq!(s.machine.role(), Role::Candidate);
        }
        Start::Leader => {
            s.elect();
        }
    }
    s
}

/// §5.1 (etcd TestFollowerUpdateTermFromMessage and its candidate and leader twins; raft-rs
/// test_follower_update_term_from_message, …): a message of a later term makes any server
/// adopt that term and follow.
#[test]
fn section_5_1_a_later_term_in_any_message_updates_the_term_and_demotes() {
    for start in [Start::Follower, Start::Candidate, Start::Leader] {
        for kind in ["append entries", "append response", "vote refusal"] {
            let mut s = server_as(start);
            let later = s.machine.term() + 1;
            let me = s.addr(0);
            let body = match kind {
                "append entries" => Body::AppendEntries {
                    to: me,
                    term: later,
                    prev_index: 0,
                    prev_term: 0,
                    entries: Vec::new(),
                    leader_commit: 0,
                    certificates: Vec::new(),
                },
                "append response" => Body::AppendResponse {
                    to: me,
                    term: later,
                    success: false,
                    match_index: 0,
                    last_index: 0,
                    commit_index: 0,
                    acks: Vec::new(),
                },
                _ => Body::VoteResponse {
                    to: me,
                    term: later,
                    granted: false,
                    pre_vote: false,
                },
            };
            let out = s.from(2, body).expect("handled");
            assert_eq!(s.machine.term(), later, "{start:?} {kind}");
            assert_eq!(s.machine.role(), Role::Follower, "{start:?} {kind}");
            let leader = (kind == "append entries").then(|| s.addr(2));
            assert_eq!(s.machine.leader(), leader, "{start:?} {kind}");
            assert!(
                matches!(out.first(), Some(VoteOutput::Persist(_))),
                "the new term is persisted before anything else: {out:?}"
            );
        }
    }
}

/// §5.1 (etcd TestRejectStaleTermMessage): a message of an earlier term changes nothing;
/// a stale AppendEntries is answered with false and the current term (Figure 2).
#[test]
fn section_5_1_stale_term_messages_change_nothing() {
    let mut s = Server::new(3, 0, Some(state(3, None, &[1, 2])));
    let me = s.addr(0);
    let stale = [
        Body::RequestVote {
            term: 2,
            last_index: 9,
            last_term: 2,
            pre_vote: false,
        },
        Body::VoteResponse {
            to: me,
            term: 2,
            granted: true,
            pre_vote: false,
        },
        Body::AppendResponse {
            to: me,
            term: 2,
            success: true,
            match_index: 2,
            last_index: 2,
            commit_index: 0,
            acks: Vec::new(),
        },
    ];
    for body in stale {
        let result = s.from(1, body.clone());
        assert!(is_ignored(&result), "{body:?}: {result:?}");
    }
    let out = s
        .from(
            1,
            Body::AppendEntries {
                to: me,
                term: 2,
                prev_index: 2,
                prev_term: 2,
                entries: log(&[2]),
                leader_commit: 2,
                certificates: Vec::new(),
            },
        )
        .expect("answered");
    assert!(matches!(
        bodies(&out).as_slice(),
        [Body::AppendResponse {
            term: 3,
            success: false,
            ..
        }]
    ));
    assert_eq!(
        (s.machine.term(), s.machine.leader(), s.terms()),
        (3, None, vec![1, 2])
    );
}

/// §5.2 (etcd TestLeaderElectionInOneRoundRPC, raft-rs
/// test_leader_election_in_one_round_rpc): the candidate wins with a majority of votes,
/// returns to follower on a majority of refusals, and stays a candidate otherwise.
#[test]
fn section_5_2_election_in_one_round_by_vote_table() {
    use Role::{Candidate, Follower, Leader};
    /// (servers, votes by peer, the candidate's role after them)
    type Case = (usize, &'static [(usize, bool)], Role);
    let table: &[Case] = &[
        (1, &[], Leader),
        (3, &[(1, true), (2, true)], Leader),
        (3, &[(1, true)], Leader),
        (5, &[(1, true), (2, true), (3, true), (4, true)], Leader),
        (5, &[(1, true), (2, true), (3, true)], Leader),
        (5, &[(1, true), (2, true)], Leader),
        (3, &[(1, false), (2, false)], Follower),
        (
            5,
            &[(1, false), (2, false), (3, false), (4, false)],
            Follower,
        ),
        (
            5,
            &[(1, true), (2, false), (3, false), (4, false)],
            Follower,
        ),
        (3, &[], Candidate),
        (5, &[(1, true)], Candidate),
        (5, &[(1, false), (2, false)], Candidate),
        (5, &[], Candidate),
    ];
    for (n, votes, want) in table {
        let mut s = Server::new(*n, 0, None);
        let all: Vec<usize> = (1..*n).collect();
        s.pre_campaign(&all);
        if *n > 1 {
            assert_eq!(s.machine.role(), Role::Candidate, "n={n}");
        }
        let term = s.machine.term();
        assert_eq!(term, 1, "the campaign raised the term once");
        for (peer, granted) in *votes {
            let body = Body::VoteResponse {
                to: s.addr(0),
                term,
                granted: *granted,
                pre_vote: false,
            };
            // Votes after the outcome is decided are ignored; the outcome is what counts.
            let _ = s.from(*peer, body);
        }
        assert_eq!(s.machine.role(), *want, "n={n} votes={votes:?}");
        assert_eq!(s.machine.term(), 1, "n={n} votes={votes:?}");
    }
}

/// §5.2 (etcd TestFollowerVote, raft-rs test_follower_vote): one vote per term, first come
/// first served; the vote is persisted before the answer goes out.
#[test]
fn section_5_2_a_server_votes_at_most_once_per_term() {
    let table: &[(Option<usize>, usize, bool)] = &[
        (None, 1, true),
        (None, 2, true),
        (Some(1), 1, true),
        (Some(2), 2, true),
        (Some(1), 2, false),
        (Some(2), 1, false),
    ];
    for (voted, candidate, want) in table {
        let ks = keys(3);
        let mut s = Server::new(3, 0, Some(state(1, voted.map(|v| ks[v].address()), &[])));
        let out = s
            .from(
                *candidate,
                Body::RequestVote {
                    term: 1,
                    last_index: 0,
                    last_term: 0,
                    pre_vote: false,
                },
            )
            .expect("answered");
        let granted = bodies(&out).iter().any(|b| {
            matches!(b, Body::VoteResponse { granted: true, pre_vote: false, to, .. } if *to == ks[*candidate].address())
        });
        assert_eq!(granted, *want, "voted {voted:?}, candidate {candidate}");
        let vote = voted
            .or(want.then_some(*candidate))
            .map(|v| ks[v].address());
        assert_eq!(s.machine.voted_for(), vote);
        if voted.is_none() {
            let Some(VoteOutput::Persist(bytes)) = out.first() else {
                panic!("a new vote is persisted first: {out:?}");
            };
            let persisted = PersistedState::decode(bytes).expect("decodes");
            assert_eq!(persisted.voted_for, vote);
        }
    }
}

/// §5.2 (etcd TestCandidateFallback, raft-rs test_candidate_fallback): a candidate that
/// hears AppendEntries from a leader of its own term or a later one becomes its follower.
#[test]
fn section_5_2_a_candidate_falls_back_on_append_entries_of_its_term() {
    for later in [0, 1] {
        let mut s = server_as(Start::Candidate);
        let term = s.machine.term() + later;
        let body = Body::AppendEntries {
            to: s.addr(0),
            term,
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            leader_commit: 0,
            certificates: Vec::new(),
        };
        s.from(1, body).expect("handled");
        assert_eq!(s.machine.role(), Role::Follower);
        assert_eq!(s.machine.term(), term);
        assert_eq!(s.machine.leader(), Some(s.addr(1)));
    }
}

/// §5.2 (etcd TestFollowerElectionTimeoutRandomized, …Nonconflict; raft-rs
/// test_follower_election_timeout_randomized, …_nonconflict): every election
/// timeout is in [min, max), they spread over the range, and two servers draw apart.
#[test]
fn section_5_2_election_timeouts_are_randomized_in_range() {
    let mut drawn: [BTreeSet<u64>; 2] = [BTreeSet::new(), BTreeSet::new()];
    for (me, seen) in drawn.iter_mut().enumerate() {
        let mut s = Server::new(3, me, None);
        let leader = 2;
        for _ in 0..100 {
            let body = Body::AppendEntries {
                to: s.addr(me),
                term: 1,
                prev_index: 0,
                prev_term: 0,
                entries: Vec::new(),
                leader_commit: 0,
                certificates: Vec::new(),
            };
            let out = s.from(leader, body).expect("heartbeat");
            let after = timer(&out, TIMER_ELECTION).expect("heartbeat resets the timer");
            assert!((150..300).contains(&after), "{after}");
            seen.insert(after);
        }
    }
    assert!(
        drawn[0].len() > 50,
        "timeouts spread: {} distinct",
        drawn[0].len()
    );
    assert_ne!(drawn[0], drawn[1]);
    let p = params(&keys(3));
    assert_eq!(
        (p.election_timeout_min_ms, p.election_timeout_max_ms),
        (150, 300)
    );
}

/// The leader's Build → Built round: the block the machine asked for, at the position
/// it named.
fn build_block(s: &mut Server) -> (Block, Vec<VoteOutput>) {
    let out = s.timeout(TIMER_BUILD);
    let Some(VoteOutput::Build {
        parent,
        timestamp: _,
        data,
    }) = out.iter().find(|o| matches!(o, VoteOutput::Build { .. }))
    else {
        panic!("the leader asks for a block: {out:?}");
    };
    let position: EntryData = borsh::from_slice(data).expect("position");
    let block = block(&s.keys[s.me], *parent, 1, position);
    let out = s
        .input(VoteInput::Built(Box::new(block.clone())))
        .expect("built");
    (block, out)
}

/// §5.3 (etcd TestLeaderAcknowledgeCommit, TestLeaderCommitEntry; raft-rs
/// test_leader_acknowledge_commit, test_leader_commit_entry): the leader commits a
/// block once a majority of the servers hold it, with their acks as its certificate.
#[test]
fn section_5_3_the_leader_commits_a_block_a_majority_holds() {
    let table: &[(usize, &[usize], bool)] = &[
        (1, &[], true),
        (3, &[], false),
        (3, &[1], true),
        (3, &[1, 2], true),
        (5, &[], false),
        (5, &[1], false),
        (5, &[1, 2], true),
        (5, &[1, 2, 3], true),
        (5, &[1, 2, 3, 4], true),
    ];
    for (n, acceptors, want) in table {
        let mut s = Server::new(*n, 0, None);
        s.elect();
        // The leader builds only after committing its no-op (thesis §4.1's condition).
        for peer in 1..=*n / 2 {
            s.accept(peer, 1, &[], 1);
        }
        assert_eq!(s.machine.commit_index(), 1);
        let (block, mut out) = build_block(&mut s);
        let index = s.machine.last_index();
        assert_eq!(index, 2, "the no-op of term 1, then the block");
        for &peer in *acceptors {
            let o = s.accept(peer, index, &[&block], 1);
            out.extend(o);
        }
        let committed = commits(&out);
        assert_eq!(
            !committed.is_empty(),
            *want,
            "n={n} acceptors={acceptors:?}"
        );
        assert_eq!(s.machine.commit_index() == index, *want);
        if let [(b, certificate)] = committed.as_slice() {
            assert_eq!(b.hash(), block.hash());
            let servers: Vec<Address> = s.keys.iter().map(SecretKey::address).collect();
            let cert = check_certificate(&servers, Height(1), &block.hash(), 1, certificate)
                .expect("the certificate proves the block");
            // Formed the moment a majority held it: later acks come too late to count.
            assert_eq!(cert.acks.len(), n / 2 + 1);
            // Followers learn the commit with the certificate in the next append.
            let hb = bodies(&s.timeout(TIMER_HEARTBEAT));
            assert!(hb.iter().all(|b| matches!(
                b,
                Body::AppendEntries {
                    leader_commit: 2,
                    ..
                }
            )));
        }
    }
}

/// §5.3 (etcd TestFollowerCommitEntry, raft-rs test_follower_commit_entry): a follower
/// commits what the leader committed, in order, each block with the certificate the leader
/// sent; without it, it waits.
#[test]
fn section_5_3_a_follower_commits_up_to_the_leader_commit_with_certificates() {
    let ks = keys(3);
    let (b, certificate) = certified_first_block(&ks, 2);
    for with_certificate in [false, true] {
        let mut s = Server::new(3, 0, None);
        let entries = vec![
            Entry {
                term: 1,
                block: None,
            },
            Entry {
                term: 1,
                block: Some(b.clone()),
            },
        ];
        let certificates = if with_certificate {
            vec![(2, certificate.clone())]
        } else {
            Vec::new()
        };
        let out = s
            .from(
                1,
                Body::AppendEntries {
                    to: s.addr(0),
                    term: 1,
                    prev_index: 0,
                    prev_term: 0,
                    entries,
                    leader_commit: 2,
                    certificates,
                },
            )
            .expect("appended");
        let committed = commits(&out);
        if with_certificate {
            assert_eq!(committed, vec![(b.clone(), certificate.clone())]);
            assert_eq!(s.machine.commit_index(), 2);
        } else {
            assert!(committed.is_empty());
            assert_eq!(
                s.machine.commit_index(),
                1,
                "the no-op needs no certificate"
            );
        }
        // The follower acks the block it holds (its log ends in the leader's term).
        let reply = bodies(&out);
        let Some(Body::AppendResponse {
            success: true,
            match_index: 2,
            ..
        }) = reply.last()
        else {
            panic!("success through 2: {reply:?}");
        };
    }
}

/// §5.3 (etcd TestFollowerCheckMsgApp, raft-rs test_follower_check_msg_append): the
/// consistency check on the entry before the new ones; a refusal carries a hint for the
/// leader's backoff. The follower holds entries of terms 1 and 2 and has committed the
/// first.
#[test]
fn section_5_3_the_follower_checks_the_previous_entry() {
    // (prev_term, prev_index, success, match or hint)
    let table = [
        // Matches committed entries.
        (0, 0, true, 1),
        (1, 1, true, 1),
        // Matches an uncommitted entry.
        (2, 2, true, 2),
        // Differs from the entry held; an entry not held.
        (1, 2, false, 1),
        (3, 3, false, 2),
    ];
    for (prev_term, prev_index, want, index) in table {
        let committed = PersistedState {
            term: 2,
            voted_for: None,
            base_index: 1,
            base_term: 1,
            entries: log(&[2]),
        };
        let mut s = Server::new(3, 0, Some(committed));
        assert_eq!(s.machine.commit_index(), 1);
        let out = s
            .from(
                1,
                Body::AppendEntries {
                    to: s.addr(0),
                    term: 2,
                    prev_index,
                    prev_term,
                    entries: Vec::new(),
                    leader_commit: 0,
                    certificates: Vec::new(),
                },
            )
            .expect("answered");
        let got = match bodies(&out).as_slice() {
            [
                Body::AppendResponse {
                    success,
                    match_index,
                    ..
                },
            ] => (*success, *match_index),
            other => panic!("one answer: {other:?}"),
        };
        assert_eq!(got, (want, index), "prev ({prev_term}, {prev_index})");
    }
}

/// §5.3 (etcd TestFollowerAppendEntries, raft-rs test_follower_append_entries): new entries
/// are appended; a conflicting entry and all that follow it are deleted first; entries
/// already held stay.
#[test]
fn section_5_3_the_follower_appends_and_truncates_conflicts() {
    let table: &[(u64, u64, &[u64], &[u64])] = &[
        (2, 2, &[3], &[1, 2, 3]),
        (1, 1, &[3, 4], &[1, 3, 4]),
        (0, 0, &[1], &[1, 2]),
        (0, 0, &[3], &[3]),
    ];
    for (prev_index, prev_term, entries, want) in table {
        let mut s = Server::new(3, 0, Some(state(1, None, &[1, 2])));
        s.from(
            1,
            Body::AppendEntries {
                to: s.addr(0),
                term: 4,
                prev_index: *prev_index,
                prev_term: *prev_term,
                entries: log(entries),
                leader_commit: 0,
                certificates: Vec::new(),
            },
        )
        .expect("appended");
        assert_eq!(s.terms(), *want, "prev {prev_index} entries {entries:?}");
    }
}

/// Delivers messages between `a` and `b` (both ways) until neither has anything to say.
fn exchange(a: &mut Server, b: &mut Server, first: Vec<VoteOutput>) {
    let mut to_b: Vec<Vec<u8>> = broadcasts(&first);
    let mut rounds = 0;
    while !to_b.is_empty() {
        rounds += 1;
        assert!(rounds < 200, "the exchange does not settle");
        let mut to_a = Vec::new();
        for bytes in to_b.drain(..) {
            if let Ok(out) = b.input(VoteInput::Message(bytes)) {
                to_a.extend(broadcasts(&out));
            }
        }
        for bytes in to_a {
            if let Ok(out) = a.input(VoteInput::Message(bytes)) {
                to_b.extend(broadcasts(&out));
            }
        }
    }
}

fn broadcasts(outputs: &[VoteOutput]) -> Vec<Vec<u8>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            VoteOutput::Broadcast(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

/// §5.3, Figure 7 (etcd TestLeaderSyncFollowerLog, raft-rs test_leader_sync_follower_log):
/// the leader of term 8 brings each of the figure's followers (a)–(f) — missing entries,
/// extra uncommitted entries, both — to its own log by backing off nextIndex; committing
/// its no-op commits all before it (etcd TestLeaderCommitPrecedingEntries, raft-rs
/// test_leader_commit_preceding_entries).
#[test]
fn figure_7_the_leader_repairs_every_divergent_follower_log() {
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: &[(&str, &[u64])] = &[
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
        ("b as etcd has it", &[1, 1, 1, 4, 4]),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, follower_log) in followers {
        let mut leader = Server::new(3, 0, Some(state(7, None, &leader_log)));
        let first = leader.elect();
        assert_eq!(leader.machine.term(), 8);
        let last_term = *follower_log.last().expect("non-empty");
        let mut follower = Server::new(3, 1, Some(state(last_term, None, follower_log)));
        exchange(&mut leader, &mut follower, first);
        let mut want = leader_log.to_vec();
        want.push(8);
        assert_eq!(follower.terms(), want, "follower ({name})");
        assert_eq!(leader.machine.commit_index(), 11, "follower ({name})");
        assert_eq!(follower.machine.commit_index(), 11, "follower ({name})");
    }
}

/// §5.4.1 (etcd TestVoter, raft-rs test_voter): a vote only for a log at least as up to
/// date: a later last term, or the same last term and at least as long.
#[test]
fn section_5_4_1_votes_only_for_logs_at_least_as_up_to_date() {
    let table: &[(&[u64], u64, u64, bool)] = &[
        // Same last term.
        (&[1], 1, 1, true),
        (&[1], 1, 2, true),
        (&[1, 1], 1, 1, false),
        // The candidate's last term is later.
        (&[1], 2, 1, true),
        (&[1], 2, 2, true),
        (&[1, 1], 2, 1, true),
        // The voter's last term is later.
        (&[2], 1, 1, false),
        (&[2], 1, 2, false),
        (&[2, 2], 1, 1, false),
        (&[1, 1], 1, 1, false),
    ];
    for (voter_log, last_term, last_index, want) in table {
        let mut s = Server::new(3, 0, Some(state(2, None, voter_log)));
        let out = s
            .from(
                1,
                Body::RequestVote {
                    term: 3,
                    last_index: *last_index,
                    last_term: *last_term,
                    pre_vote: false,
                },
            )
            .expect("answered");
        let granted = bodies(&out)
            .iter()
            .any(|b| matches!(b, Body::VoteResponse { granted: true, .. }));
        assert_eq!(
            granted, *want,
            "voter {voter_log:?}, candidate ({last_term}, {last_index})"
        );
        assert_eq!(s.machine.term(), 3);
    }
}

/// §5.4.2, Figure 8 (etcd TestLeaderOnlyCommitsLogFromCurrentTerm,
/// raft-rs test_leader_only_commits_log_from_current_term): a leader counts
/// replicas only of its own term's entries; an earlier term's block commits with the
/// leader's no-op, certified in the leader's term.
#[test]
fn figure_8_a_leader_commits_only_entries_of_its_own_term() {
    for (acked, want_commit) in [(1, 0), (2, 0), (3, 3)] {
        let mut s = Server::new(3, 0, Some(state(2, None, &[1, 2])));
        s.elect();
        assert_eq!((s.machine.term(), s.machine.last_index()), (3, 3));
        s.accept(1, acked, &[], 3);
        assert_eq!(
            s.machine.commit_index(),
            want_commit,
            "acked through {acked}"
        );
    }
    // The same with a block of term 2 at index 2: replicas of it do not commit it, the
    // no-op of term 3 on a majority does, and the certificate is of term 3.
    let ks = keys(3);
    let old = block(
        &ks[2],
        genesis().hash(),
        1,
        EntryData {
            term: 2,
            index: 2,
            live: 0,
        },
    );
    let mut persisted = state(2, None, &[1]);
    persisted.entries.push(Entry {
        term: 2,
        block: Some(old.clone()),
    });
    let mut s = Server::new(3, 0, Some(persisted));
    s.elect();
    let out = s.accept(1, 2, &[], 3);
    assert!(commits(&out).is_empty());
    assert_eq!(s.machine.commit_index(), 0);
    let out = s.accept(1, 3, &[&old], 3);
    let committed = commits(&out);
    assert_eq!(committed.len(), 1);
    let servers: Vec<Address> = ks.iter().map(SecretKey::address).collect();
    let cert =
        check_certificate(&servers, Height(1), &old.hash(), 2, &committed[0].1).expect("certified");
    assert_eq!(cert.term, 3);
    assert_eq!(s.machine.commit_index(), 3);
}

/// Thesis §9.6 (etcd TestPreVote…): a pre-candidate does not raise its term; a server
/// that heard from its leader within the minimum election timeout ignores pre-votes and
/// votes of later terms; one that did not grants a pre-vote without changing its state.
#[test]
fn section_9_6_pre_vote_keeps_terms_and_a_live_leader_keeps_its_followers() {
    let mut s = Server::new(3, 0, Some(state(4, None, &[4])));
    let out = s.timeout(TIMER_ELECTION);
    assert_eq!(s.machine.role(), Role::PreCandidate);
    assert_eq!(s.machine.term(), 4, "no term raised by a pre-vote");
    assert!(matches!(
        bodies(&out).as_slice(),
        [Body::RequestVote {
            term: 5,
            pre_vote: true,
            ..
        }]
    ));
    // A refused pre-vote campaign leaves the term alone.
    for peer in [1, 2] {
        s.from(
            peer,
            Body::VoteResponse {
                to: s.addr(0),
                term: 4,
                granted: false,
                pre_vote: true,
            },
        )
        .expect("refusal");
    }
    assert_eq!((s.machine.role(), s.machine.term()), (Role::Follower, 4));

    // A follower of a live leader ignores both kinds of request.
    let mut f = Server::new(3, 0, Some(state(4, None, &[4])));
    f.from(
        1,
        Body::AppendEntries {
            to: f.addr(0),
            term: 4,
            prev_index: 1,
            prev_term: 4,
            entries: Vec::new(),
            leader_commit: 0,
            certificates: Vec::new(),
        },
    )
    .expect("heartbeat");
    for pre_vote in [true, false] {
        let result = f.from(
            2,
            Body::RequestVote {
                term: 5,
                last_index: 9,
                last_term: 4,
                pre_vote,
            },
        );
        assert!(is_ignored(&result), "pre_vote={pre_vote}: {result:?}");
    }
    assert_eq!((f.machine.term(), f.machine.leader()), (4, Some(f.addr(1))));

    // Without a leader, a pre-vote is granted and nothing changes.
    let mut g = Server::new(3, 0, Some(state(4, None, &[4])));
    let out = g
        .from(
            2,
            Body::RequestVote {
                term: 5,
                last_index: 1,
                last_term: 4,
                pre_vote: true,
            },
        )
        .expect("answered");
    assert!(matches!(
        bodies(&out).as_slice(),
        [Body::VoteResponse {
            term: 5,
            granted: true,
            pre_vote: true,
            ..
        }]
    ));
    assert_eq!((g.machine.term(), g.machine.voted_for()), (4, None));
    assert!(!out.iter().any(|o| matches!(o, VoteOutput::Persist(_))));
}

/// Thesis §9.6 (etcd TestLeaderStepdownWhenQuorumLost / …Active): a leader that heard from
/// no majority within the minimum election timeout steps down; one that did stays.
#[test]
fn section_9_6_check_quorum_deposes_a_leader_cut_off_from_the_majority() {
    for heard in [false, true] {
        let mut s = Server::new(3, 0, None);
        s.elect();
        if heard {
            s.accept(1, 0, &[], 1);
        }
        let out = s.timeout(TIMER_CHECK_QUORUM);
        let want = if heard { Role::Leader } else { Role::Follower };
        assert_eq!(s.machine.role(), want, "heard={heard}");
        if !heard {
            assert!(out.contains(&VoteOutput::CancelTimer(TIMER_HEARTBEAT)));
            assert!(timer(&out, TIMER_ELECTION).is_some());
        }
    }
}

fn persists(outputs: &[VoteOutput]) -> usize {
    outputs
        .iter()
        .filter(|o| matches!(o, VoteOutput::Persist(_)))
        .count()
}

/// Figure 2 ("persistent state on all servers: currentTerm, votedFor, log[]", updated on
/// stable storage before responding to RPCs): a write when one of those changes, and only
/// then. Heartbeats, a resent entry already held, the commit index (volatile state) and the
/// chain head moving on write nothing, so a server writes once per entry it takes. Each
/// step: (what happens, writes wanted).
#[test]
fn figure_2_only_a_change_of_term_vote_or_log_is_persisted() {
    let ks = keys(3);
    let (b, certificate) = certified_first_block(&ks, 2);
    let append = |s: &Server, prev_index, entries: Vec<Entry>, leader_commit, certificates| {
        Body::AppendEntries {
            to: s.addr(0),
            term: 1,
            prev_index,
            prev_term: if prev_index == 0 { 0 } else { 1 },
            entries,
            leader_commit,
            certificates,
        }
    };
    let entries = vec![
        Entry {
            term: 1,
            block: None,
        },
        Entry {
            term: 1,
            block: Some(b.clone()),
        },
    ];

    // A follower of server 1.
    let mut f = Server::new(3, 0, None);
    let steps: Vec<(&str, Body, usize)> = vec![
        (
            "a new term and two new entries",
            append(&f, 0, entries.clone(), 0, Vec::new()),
            1,
        ),
        (
            "the same entries resent before the ack",
            append(&f, 0, entries, 0, Vec::new()),
            0,
        ),
        ("a heartbeat", append(&f, 2, Vec::new(), 0, Vec::new()), 0),
        (
            "the commit index moves to the no-op",
            append(&f, 2, Vec::new(), 1, Vec::new()),
            0,
        ),
        (
            "the commit index moves to the block, with its certificate",
            append(&f, 2, Vec::new(), 2, vec![(2, certificate.clone())]),
            0,
        ),
    ];
    for (what, body, want) in steps {
        let out = f.from(1, body).expect("handled");
        assert_eq!(persists(&out), want, "follower: {what}: {out:?}");
        if want > 0 {
            assert!(
                matches!(out.first(), Some(VoteOutput::Persist(_))),
                "follower: {what}: written before anything else"
            );
        }
    }
    assert_eq!(f.machine.commit_index(), 2);
    let out = f
        .input(VoteInput::Head {
            head: SealedHeader::new(b.header.clone()),
            voters: Vec::new(),
        })
        .expect("head");
    assert_eq!(persists(&out), 0, "follower: the committed block imported");

    // A leader.
    let mut l = Server::new(3, 0, None);
    let out = l.elect();
    assert_eq!(persists(&out), 1, "leader: its no-op");
    let out = l.accept(1, 1, &[], 1);
    assert_eq!(persists(&out), 0, "leader: the no-op commits");
    let out = l.timeout(TIMER_HEARTBEAT);
    assert_eq!(persists(&out), 0, "leader: a heartbeat");
    let (built, out) = build_block(&mut l);
    assert_eq!(persists(&out), 1, "leader: the block it appends");
    let out = l.accept(1, 2, &[&built], 1);
    assert_eq!(commits(&out).len(), 1, "leader: the block commits");
    assert_eq!(persists(&out), 0, "leader: the commit index moves");
    let out = l
        .input(VoteInput::Head {
            head: SealedHeader::new(built.header.clone()),
            voters: Vec::new(),
        })
        .expect("head");
    assert_eq!(persists(&out), 0, "leader: the committed block imported");
    let out = l.timeout(TIMER_HEARTBEAT);
    assert_eq!(persists(&out), 0, "leader: a heartbeat after the commit");
}

#[test]
fn forged_foreign_malformed_and_oversized_messages_are_rejected() {
    let mut s = Server::new(3, 0, None);
    let body = Body::RequestVote {
        term: 1,
        last_index: 0,
        last_term: 0,
        pre_vote: false,
    };
    // Signed by server 2 but claiming server 1's key.
    let mut forged = Envelope::seal(body.clone(), &s.keys[2]);
    forged.sender = s.keys[1].public_key();
    let err = raft_error(s.input(VoteInput::Message(forged.encode())));
    assert!(
        matches!(err, RaftError::BadMessageSignature { .. }),
        "{err}"
    );

    let outsider = SecretKey::from_seed("not a raft server");
    let err = raft_error(s.input(VoteInput::Message(
        Envelope::seal(body.clone(), &outsider).encode(),
    )));
    assert_eq!(
        err,
        RaftError::SenderNotServer {
            sender: outsider.address()
        }
    );

    let mut truncated = Envelope::seal(body, &s.keys[1]).encode();
    truncated.pop();
    let err = raft_error(s.input(VoteInput::Message(truncated)));
    assert!(matches!(err, RaftError::Codec(_)), "{err}");

    let err = raft_error(s.input(VoteInput::Message(vec![0; MAX_MESSAGE_BYTES + 1])));
    assert!(
        matches!(err, RaftError::Codec(chain::CodecError::TooLarge { .. })),
        "{err}"
    );

    // An entry whose block claims another place in the log is malformed.
    let misplaced = block(
        &s.keys[1],
        genesis().hash(),
        1,
        EntryData {
            term: 1,
            index: 5,
            live: 0,
        },
    );
    let err = raft_error(s.from(
        1,
        Body::AppendEntries {
            to: s.addr(0),
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![Entry {
                term: 1,
                block: Some(misplaced),
            }],
            leader_commit: 0,
            certificates: Vec::new(),
        },
    ));
    assert!(matches!(err, RaftError::MalformedMessage { .. }), "{err}");
    assert_eq!((s.machine.term(), s.machine.last_index()), (0, 0));
}

/// §5.4 (Leader Completeness): every leader holds the committed entries, so an append
/// that contradicts one is refused before it changes anything (term, leader, log).
#[test]
fn an_append_contradicting_a_committed_entry_is_refused_and_changes_nothing() {
    let mut s = Server::new(3, 0, Some(state(1, None, &[1, 1])));
    let heartbeat = Body::AppendEntries {
        to: s.addr(0),
        term: 1,
        prev_index: 2,
        prev_term: 1,
        entries: Vec::new(),
        leader_commit: 2,
        certificates: Vec::new(),
    };
    s.from(1, heartbeat).expect("heartbeat");
    assert_eq!(s.machine.commit_index(), 2);
    let rewrite = Body::AppendEntries {
        to: s.addr(0),
        term: 2,
        prev_index: 0,
        prev_term: 0,
        entries: log(&[2]),
        leader_commit: 0,
        certificates: Vec::new(),
    };
    let err = raft_error(s.from(2, rewrite));
    assert!(matches!(err, RaftError::MalformedMessage { .. }), "{err}");
    assert_eq!(
        (s.machine.term(), s.machine.leader(), s.terms()),
        (1, Some(s.addr(1)), vec![1, 1])
    );
}

#[test]
fn params_are_validated_naming_the_field() {
    let servers = keys(3).iter().map(SecretKey::address).collect::<Vec<_>>();
    let ok = RaftParams::devnet(servers.clone());
    assert_eq!(ok.validate(), Ok(()));
    let cases: Vec<(RaftParams, &str)> = vec![
        (RaftParams::devnet(Vec::new()), "servers"),
        (RaftParams::devnet(vec![servers[0], servers[0]]), "servers"),
        (
            RaftParams {
                block_time: 0,
                ..ok.clone()
            },
            "block_time",
        ),
        (
            RaftParams {
                heartbeat_ms: 0,
                ..ok.clone()
            },
            "heartbeat_ms",
        ),
        (
            RaftParams {
                election_timeout_min_ms: 50,
                ..ok.clone()
            },
            "election_timeout_min_ms",
        ),
        (
            RaftParams {
                election_timeout_max_ms: 150,
                ..ok.clone()
            },
            "election_timeout_max_ms",
        ),
    ];
    for (params, field) in cases {
        match params.validate() {
            Err(RaftError::InvalidParams { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let json = r#"{"servers":[],"block_time":1,"election_timeout_min_ms":150,"election_timeout_max_ms":300,"heartbeat_ms":50,"extra":1}"#;
    assert!(serde_json::from_str::<RaftParams>(json).is_err());
}

/// The cluster harness over Raft servers.
type Cluster = crate::cluster::Cluster<RaftEngine>;
use crate::cluster::LATENCY_MS;

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster::with_spares(n, 0)
    }

    /// `servers` servers and `spares` more nodes with keys that are not servers (yet), all
    /// funded so they can pay for transactions.
    fn with_spares(servers: usize, spares: usize) -> Cluster {
        let keys = keys(servers + spares);
        let engine = Arc::new(RaftEngine::new(params(&keys[..servers])).expect("valid params"));
        Cluster::start(keys, engine)
    }
}

#[test]
fn n3_leader_crash_reelects_and_keeps_committing() {
    // The followers heard a heartbeat at most 50 ms before the crash, stood after
    // [150, 300) ms of silence, and a pre-vote and a vote round trip later one led.
    Cluster::new(3)
        .leader_crash_reelects(|c| !c.leaders().is_empty(), 150 - 50..300 + 4 * LATENCY_MS);
}

#[test]
fn n5_minority_partition_old_leader_cannot_commit() {
    let mut c = Cluster::new(5);
    // The old leader asked for blocks but could gather no majority.
    let split = c.minority_partition();
    let (old, term) = split.old;
    // Check-quorum deposed it; pre-vote kept the minority from raising its terms.
    assert_ne!(c.status(old, "role").as_deref(), Some("leader"));
    for &i in &split.minority {
        assert_eq!(c.term(i), term, "server {i}");
    }
}

#[test]
fn n5_partition_heals_without_lost_commits() {
    let mut c = Cluster::new(5);
    // The minority's uncommitted blocks are gone.
    let split = c.partition_heals();
    assert!(
        split.majority.contains(&split.leader.0),
        "the majority's leader stays"
    );
}

#[test]
fn n3_restart_follower_catches_up_from_log() {
    // Repaired from the leader's log.
    Cluster::new(3).restart_follower_catches_up(|persisted, term| {
        let state = PersistedState::decode(persisted).expect("decodes");
        assert_eq!(state.term, term);
    });
}

#[test]
fn n4_prevote_rejoining_node_does_not_disrupt() {
    let mut c = Cluster::new(4);
    c.run_for(3_000);
    let (leader, term) = c.sole_leader();
    let rejoining = (leader + 1) % 4;
    c.isolate(rejoining);
    c.run_for(5_000);
    // Alone it timed out again and again, but pre-votes never raised its term.
    assert_eq!(c.term(rejoining), term);
    assert_eq!(c.sole_leader(), (leader, term));
    let stale = c.height(rejoining);
    assert!(
        c.height(leader) >= stale + 3,
        "three of four keep committing"
    );
    c.heal();
    c.run_for(2_000);
    assert_eq!(
        c.sole_leader(),
        (leader, term),
        "the leader was not deposed"
    );
    assert_eq!(c.term(rejoining), term);
    assert_eq!(
        c.nodes[rejoining].chain.head().hash(),
        c.nodes[leader].chain.head().hash()
    );
}

fn certificate_error(chain: &mut Chain, block: &Block, certificate: Vec<u8>) -> RaftError {
    crate::cluster::import_refusal(chain, block, certificate)
}

#[test]
fn certificates_forged_short_duplicated_foreign_or_for_another_block_are_refused() {
    let mut c = Cluster::new(3);
    c.run_for(3_000);
    let at = |h: u64| {
        let (block, certificate) = c.decided_at(h);
        (block, Certificate::decode(&certificate).expect("decodes"))
    };
    let (first, good) = at(1);
    let (_, second) = at(2);
    assert_eq!(good.acks.len(), 2, "two of three");
    let mut fresh = c.fresh_chain();

    let mut forged = good.clone();
    forged.acks[1].signature.0[10] ^= 1;
    let err = certificate_error(&mut fresh, &first, forged.encode());
    assert!(matches!(err, RaftError::BadAck { .. }), "{err}");

    let mut short = good.clone();
    short.acks.pop();
    let err = certificate_error(&mut fresh, &first, short.encode());
    assert!(
        matches!(
            err,
            RaftError::TooFewAcks {
                got: 1,
                needed: 2,
                servers: 3,
                ..
            }
        ),
        "{err}"
    );

    let mut duplicated = short.clone();
    duplicated.acks.push(duplicated.acks[0]);
    let err = certificate_error(&mut fresh, &first, duplicated.encode());
    assert!(matches!(err, RaftError::DuplicateAck { .. }), "{err}");

    let outsider = SecretKey::from_seed("not a raft server");
    let mut foreign = short.clone();
    foreign.acks.push(SignedAck {
        key: outsider.public_key(),
        signature: outsider.sign(&ack_digest(good.term, Height(1), &first.hash())),
    });
    let err = certificate_error(&mut fresh, &first, foreign.encode());
    assert_eq!(
        err,
        RaftError::AckNotServer {
            hash: first.hash(),
            signer: outsider.address()
        }
    );

    // The acks of block 2 prove nothing about block 1.
    let err = certificate_error(&mut fresh, &first, second.encode());
    assert!(matches!(err, RaftError::BadAck { .. }), "{err}");

    let block_term = EntryData::of_header(&first.header).expect("position").term;
    if block_term > 0 {
        let early = Certificate {
            term: block_term - 1,
            acks: good.acks.clone(),
        };
        let err = certificate_error(&mut fresh, &first, early.encode());
        assert!(matches!(err, RaftError::CertificateTerm { .. }), "{err}");
    }
    assert_eq!(fresh.head().height().0, 0, "nothing was imported");
    assert!(matches!(
        fresh.import_certified(first, good.encode()),
        Ok(chain::ImportOutcome::NewHead(_))
    ));
}

/// Every single-byte corruption of a valid append (with a block and a certificate) is
/// either refused or harmless: no panic, and a refusal never blames a missing store.
#[test]
fn corrupted_appends_are_refused_without_panicking() {
    let ks = keys(3);
    let (b, certificate) = certified_first_block(&ks, 1);
    let body = Body::AppendEntries {
        to: ks[0].address(),
        term: 1,
        prev_index: 0,
        prev_term: 0,
        entries: vec![Entry {
            term: 1,
            block: Some(b),
        }],
        leader_commit: 1,
        certificates: vec![(1, certificate)],
    };
    let good = Envelope::seal(body, &ks[1]).encode();
    // Only the bytes of the recipient field can change without a refusal (the message
    // is then someone else's).
    crate::cluster::assert_corruptions_refused(&good, 20, |bytes| {
        Server::new(3, 0, None).input(VoteInput::Message(bytes))
    });
}

#[test]
fn n3_follower_past_the_repair_window_catches_up_by_syncing_certified_blocks() {
    let mut c = Cluster::new(3);
    c.run_for(2_000);
    let (leader, term) = c.sole_leader();
    let follower = (leader + 1) % 3;
    c.crash(follower);
    // More blocks (and so log entries) than the leader keeps after committing them.
    c.run_for((COMMITTED_WINDOW as u64 + 10) * 1000);
    c.restart(follower);
    let sent = c.sent;
    c.run_for(1_000);
    // The leader cannot repair it from its log: heartbeats only, no storm of refusals
    // (20 heartbeats a second to each of two followers, their answers, one block's round).
    assert!(
        c.sent - sent < 100,
        "{} messages in a second",
        c.sent - sent
    );
    let behind = c.height(follower);
    assert!(c.height(leader) > behind + COMMITTED_WINDOW as u64 / 2);
    c.sync(follower, leader);
    c.run_for(2_000);
    assert_eq!(
        c.nodes[follower].chain.head().hash(),
        c.nodes[leader].chain.head().hash()
    );
    c.assert_chain_is_decided(follower);
    assert_eq!(c.sole_leader(), (leader, term));
}

fn propose(from: &SecretKey, nonce: u64, address: Address, add: bool) -> chain::Transaction {
    chain::Transaction::signed(
        from,
        chain::test_utils::TEST_CHAIN_ID,
        nonce,
        chain::Amount::from_base_units(1_000),
        chain::TxKind::ProposeAuthority { address, add },
    )
}

impl Cluster {
    fn servers(&self, i: usize) -> Vec<Address> {
        self.engine
            .voters(self.nodes[i].chain.state())
            .expect("membership")
    }

    fn role(&self, i: usize) -> Option<String> {
        self.status(i, "role")
    }
}

/// Thesis §4.1: one server added by transaction, then one removed; the added server's acks
/// count toward the new majority, and the removed one stops taking part.
#[test]
fn n3_membership_adds_a_server_then_removes_one() {
    let mut c = Cluster::with_spares(3, 1);
    let spare = 3;
    let spare_address = c.nodes[spare].key.address();
    c.run_for(3_000);
    let (leader, _) = c.sole_leader();
    assert_eq!(c.role(spare).as_deref(), Some("observer"));
    let leader_key = c.nodes[leader].key.clone();
    c.pending.push(propose(&leader_key, 0, spare_address, true));
    c.run_for(2_000);
    assert_eq!(c.servers(leader).len(), 4);
    assert!(c.servers(leader).contains(&spare_address));
    // The new server learns it was added by syncing the chain, then follows.
    c.sync(spare, leader);
    assert_eq!(c.role(spare).as_deref(), Some("follower"));
    c.run_for(2_000);
    assert_eq!(
        c.nodes[spare].chain.head().hash(),
        c.nodes[leader].chain.head().hash()
    );
    // Of four servers a majority is three: with an old follower down, the new server's
    // acks are needed for every block.
    let down = (0..3).find(|i| *i != leader).expect("a follower");
    c.crash(down);
    let height = c.height(leader);
    c.run_for(3_000);
    assert!(
        c.height(leader) >= height + 2,
        "the leader, a follower and the new server commit"
    );
    let head = c.nodes[leader].chain.head();
    let certificate = c.nodes[leader]
        .chain
        .certificate(&head.hash())
        .expect("store")
        .expect("certified");
    let signers = Certificate::decode(&certificate)
        .expect("decodes")
        .signers();
    assert_eq!(signers.len(), 3);
    assert!(signers.contains(&spare_address));
    c.restart(down);
    c.run_for(2_000);
    // Now the spare goes again, while it is live.
    c.pending
        .push(propose(&leader_key, 1, spare_address, false));
    c.run_for(2_000);
    assert_eq!(c.servers(leader).len(), 3);
    assert_eq!(
        c.role(spare).as_deref(),
        Some("observer"),
        "a removed server stops"
    );
    let stopped = c.height(spare);
    let height = c.height(leader);
    c.run_for(3_000);
    assert_eq!(c.height(spare), stopped, "it no longer receives entries");
    for i in 0..3 {
        assert!(c.height(i) >= height + 2, "server {i} at {}", c.height(i));
        c.assert_chain_is_decided(i);
    }
}

/// A change waits until the servers the leader hears from are a majority of the new
/// configuration: adding a fourth server while one of three is down would leave two of
/// four, so the transaction stays out of blocks until the third returns.
#[test]
fn n3_membership_change_waits_for_a_live_majority_of_the_new_configuration() {
    let mut c = Cluster::with_spares(3, 1);
    let spare_address = c.nodes[3].key.address();
    c.run_for(3_000);
    let (leader, _) = c.sole_leader();
    let down = (0..3).find(|i| *i != leader).expect("a follower");
    c.crash(down);
    let leader_key = c.nodes[leader].key.clone();
    c.pending.push(propose(&leader_key, 0, spare_address, true));
    let height = c.height(leader);
    c.run_for(3_000);
    assert!(
        c.height(leader) >= height + 2,
        "blocks go on without the change"
    );
    assert_eq!(c.servers(leader).len(), 3);
    c.restart(down);
    c.run_for(3_000);
    assert_eq!(c.servers(leader).len(), 4, "made once the cluster is whole");
}

#[test]
fn explain_names_the_term_the_leader_and_the_majority_that_acked() {
    let mut c = Cluster::new(3);
    c.run_for(3_000);
    let (leader, term) = c.sole_leader();
    let chain = &c.nodes[leader].chain;
    let head = chain.head();
    let fields: BTreeMap<&str, String> = c
        .engine
        .explain(chain, &head)
        .expect("explains")
        .into_iter()
        .collect();
    assert_eq!(fields["engine"], "raft");
    assert_eq!(fields["term"], term.to_string());
    assert_eq!(fields["leader"], c.nodes[leader].key.address().to_string());
    assert_eq!(fields["committed_in_term"], term.to_string());
    assert_eq!(fields["acked_by"].split(',').count(), 2);
    assert!(fields["acked_by"].contains(&c.nodes[leader].key.address().to_string()));
    assert_eq!(fields["majority_at_head"], "2");
    assert_eq!(
        c.engine.finalized(chain).expect("final"),
        Some(chain::BlockId {
            height: head.height(),
            hash: head.hash()
        }),
        "every stored block is committed"
    );
    let status: BTreeMap<&str, String> = c.nodes[leader]
        .machine
        .as_ref()
        .expect("running")
        .status()
        .into_iter()
        .collect();
    assert_eq!(status["role"], "leader");
    assert_eq!(status["term"], term.to_string());
    let position = EntryData::of_header(&head).expect("entry data");
    assert!(status["commit_index"].parse::<u64>().expect("a number") >= position.index);
}

/// Over (servers, seed), on a network that loses 5% of messages and reorders them (up to
/// 30 ms extra delay): every second the network is split at random, a server crashes or
/// one comes back; the harness fails at once if two blocks are ever decided at one height.
/// Healed and whole again, every server ends on the same chain, and it grew.
#[test]
fn randomized_partitions_and_crashes_never_decide_two_blocks_at_one_height() {
    crate::cluster::randomized_partitions_and_crashes(
        Cluster::new,
        &[(3, 1), (3, 2), (5, 3), (5, 4)],
    );
}

/// A block on `chain`'s head built and sealed by `key` with `data`.
fn build_on(chain: &Chain, key: &SecretKey, data: EntryData) -> Block {
    crate::cluster::build_on(chain, key, data.encode())
}

/// A certificate any two of `servers` would sign for `block` in `term`.
fn acked(servers: &[SecretKey], block: &Block, term: u64) -> Vec<u8> {
    let digest = ack_digest(term, block.header.height, &block.hash());
    Certificate {
        term,
        acks: servers
            .iter()
            .take(2)
            .map(|k| SignedAck {
                key: k.public_key(),
                signature: k.sign(&digest),
            })
            .collect(),
    }
    .encode()
}

/// Even with a certificate, a block must be sealed by a server of its parent's membership,
/// in a log position after its parent's, without PoW fields.
#[test]
fn blocks_by_outsiders_out_of_log_order_or_with_pow_fields_are_refused() {
    let servers = keys(3);
    let engine = Arc::new(RaftEngine::new(params(&servers)).expect("valid params"));
    let (mut chain, _clock) = engine_chain(engine, &[], GENESIS_TIME + 1_000_000);
    let data = EntryData {
        term: 1,
        index: 2,
        live: 0b111,
    };
    let outsider = SecretKey::from_seed("not a raft server");
    // Built as a server would (the builder refuses outsiders), then claimed by one.
    let mut by_outsider = build_on(&chain, &servers[0], data);
    by_outsider.header.producer = outsider.address();
    by_outsider.header = miner::seal::sign_header(by_outsider.header, &outsider);
    let err = certificate_error(&mut chain, &by_outsider, acked(&servers, &by_outsider, 1));
    assert_eq!(
        err,
        RaftError::NotServer {
            height: Height(1),
            producer: outsider.address()
        }
    );
    let at_genesis = build_on(&chain, &servers[0], EntryData { index: 0, ..data });
    let err = certificate_error(&mut chain, &at_genesis, acked(&servers, &at_genesis, 1));
    assert!(matches!(err, RaftError::LogOrder { index: 0, .. }), "{err}");
    let mut mined = build_on(&chain, &servers[0], data);
    mined.header.engine.nonce = 7;
    mined.header = miner::seal::sign_header(mined.header, &servers[0]);
    let err = certificate_error(&mut chain, &mined, acked(&servers, &mined, 1));
    assert_eq!(err, RaftError::UnexpectedFields { bits: 0, nonce: 7 });

    let good = build_on(&chain, &servers[0], data);
    assert!(matches!(
        chain.import_certified(good, Vec::new()),
        Err(BlockError::Engine(_))
    ));
    let good = build_on(&chain, &servers[0], data);
    let certificate = acked(&servers, &good, 1);
    assert!(matches!(
        chain.import_certified(good, certificate),
        Ok(chain::ImportOutcome::NewHead(_))
    ));
}
