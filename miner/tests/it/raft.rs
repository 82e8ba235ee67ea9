//! Raft: conformance tables on the pure machine, each case citing the paper's section or
//! figure as etcd's `raft_paper_test.go` and raft-rs's `test_raft_paper.rs` name them;
//! refusals of bad messages and certificates; and named multi-server runs in a
//! deterministic in-memory cluster (virtual time, real chains, droppable links).

use crate::support::{GENESIS_TIME, engine_chain};
use chain::block::HEADER_VERSION;
use chain::{
    Address, Block, BlockError, BlockHash, BlockProducer, Chain, ChainView, ConsensusEngine,
    EngineError, EngineFields, Hash256, Header, Height, SealedHeader, SecretKey, Timestamp,
    VoteInput, VoteOutput, VotingMachine,
};
use miner::raft::wire::{
    Ack, Body, Certificate, Entry, Envelope, LogPosition, PersistedState, SignedAck, ack_digest,
    check_certificate,
};
use miner::raft::{
    MAX_MESSAGE_BYTES, RaftEngine, RaftError, RaftMachine, RaftParams, RaftProducer, Role,
    TIMER_BUILD, TIMER_CHECK_QUORUM, TIMER_ELECTION, TIMER_HEARTBEAT,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// The pure machine, driven by hand.
// ---------------------------------------------------------------------------------------

/// `n` server keys in address order, so server `i` is the `i`-th address.
fn keys(n: usize) -> Vec<SecretKey> {
    let mut keys: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_seed(&format!("raft server {i}")))
        .collect();
    keys.sort_by_key(SecretKey::address);
    keys
}

fn params(keys: &[SecretKey]) -> RaftParams {
    RaftParams::devnet(keys.iter().map(SecretKey::address).collect())
}

fn genesis() -> SealedHeader {
    SealedHeader::new(Header {
        version: HEADER_VERSION,
        parent: BlockHash([0; 32]),
        height: Height(0),
        timestamp: Timestamp(GENESIS_TIME),
        tx_root: Hash256::ZERO,
        state_root: Hash256::ZERO,
        producer: Address::default(),
        engine: EngineFields::default(),
    })
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
fn block(key: &SecretKey, parent: BlockHash, height: u64, position: LogPosition) -> Block {
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
        VoteOutput::SetTimer { id: i, after_millis } if *i == id => Some(*after_millis),
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
        let mut machine =
            RaftMachine::new(params(&keys), Some(keys[me].clone()), persisted);
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

/// §5.1 (etcd TestFollowerUpdateTermFromMessage, TestCandidate…, TestLeader…): a message
/// of a later term makes any server adopt that term and follow.
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

/// §5.2 (etcd TestLeaderElectionInOneRound): the candidate wins with a majority of votes,
/// returns to follower on a majority of refusals, and stays a candidate otherwise.
#[test]
fn section_5_2_election_in_one_round_by_vote_table() {
    use Role::{Candidate, Follower, Leader};
    let table: &[(usize, &[(usize, bool)], Role)] = &[
        (1, &[], Leader),
        (3, &[(1, true), (2, true)], Leader),
        (3, &[(1, true)], Leader),
        (5, &[(1, true), (2, true), (3, true), (4, true)], Leader),
        (5, &[(1, true), (2, true), (3, true)], Leader),
        (5, &[(1, true), (2, true)], Leader),
        (3, &[(1, false), (2, false)], Follower),
        (5, &[(1, false), (2, false), (3, false), (4, false)], Follower),
        (5, &[(1, true), (2, false), (3, false), (4, false)], Follower),
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

/// §5.2 (etcd TestFollowerVote): one vote per term, first come first served; the vote is
/// persisted before the answer goes out.
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
        let vote = voted.or(want.then_some(*candidate)).map(|v| ks[v].address());
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

/// §5.2 (etcd TestCandidateFallback): a candidate that hears AppendEntries from a leader
/// of its own term or a later one becomes its follower.
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

/// §5.2 (etcd TestFollowerElectionTimeoutRandomized, …Nonconflict): every election
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
    assert!(drawn[0].len() > 50, "timeouts spread: {} distinct", drawn[0].len());
    assert_ne!(drawn[0], drawn[1]);
    let p = params(&keys(3));
    assert_eq!((p.election_timeout_min_ms, p.election_timeout_max_ms), (150, 300));
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
    let position: LogPosition = borsh::from_slice(data).expect("position");
    let block = block(&s.keys[s.me], *parent, 1, position);
    let out = s
        .input(VoteInput::Built(Box::new(block.clone())))
        .expect("built");
    (block, out)
}

/// §5.3 (etcd TestLeaderAcknowledgeCommit, TestLeaderCommitEntry): the leader commits a
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
        let (block, mut out) = build_block(&mut s);
        let index = s.machine.last_index();
        assert_eq!(index, 2, "the no-op of term 1, then the block");
        for &peer in *acceptors {
            let o = s.accept(peer, index, &[&block], 1);
            out.extend(o);
        }
        let committed = commits(&out);
        assert_eq!(!committed.is_empty(), *want, "n={n} acceptors={acceptors:?}");
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
                Body::AppendEntries { leader_commit: 2, .. }
            )));
        }
    }
}

/// §5.3 (etcd TestFollowerCommitEntry): a follower commits what the leader committed, in
/// order, each block with the certificate the leader sent; without it, it waits.
#[test]
fn section_5_3_a_follower_commits_up_to_the_leader_commit_with_certificates() {
    let ks = keys(3);
    let leader = &ks[1];
    let b = block(leader, genesis().hash(), 1, LogPosition { term: 1, index: 2 });
    let acks = [&ks[1], &ks[2]]
        .iter()
        .map(|k| SignedAck {
            key: k.public_key(),
            signature: k.sign(&ack_digest(1, Height(1), &b.hash())),
        })
        .collect();
    let certificate = Certificate { term: 1, acks }.encode();
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
            assert_eq!(s.machine.commit_index(), 1, "the no-op needs no certificate");
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

/// §5.3 (etcd TestFollowerCheckMsgApp): the consistency check on the entry before the new
/// ones; a refusal carries a hint for the leader's backoff.
#[test]
fn section_5_3_the_follower_checks_the_previous_entry() {
    // (prev_term, prev_index, success, match or hint)
    let table = [
        (0, 0, true, 0),
        (1, 1, true, 1),
        (2, 2, true, 2),
        (1, 2, false, 1),
        (3, 3, false, 2),
    ];
    for (prev_term, prev_index, want, index) in table {
        let mut s = Server::new(3, 0, Some(state(2, None, &[1, 2])));
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
            [Body::AppendResponse {
                success,
                match_index,
                ..
            }] => (*success, *match_index),
            other => panic!("one answer: {other:?}"),
        };
        assert_eq!(got, (want, index), "prev ({prev_term}, {prev_index})");
    }
}

/// §5.3 (etcd TestFollowerAppendEntries): new entries are appended; a conflicting entry
/// and all that follow it are deleted first; entries already held stay.
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

/// §5.3, Figure 7 (etcd TestLeaderSyncFollowerLog): the leader of term 8 brings each of
/// the figure's followers (a)–(f) — missing entries, extra uncommitted entries, both — to
/// its own log by backing off nextIndex; committing its no-op commits all before it
/// (etcd TestLeaderCommitPrecedingEntries).
#[test]
fn figure_7_the_leader_repairs_every_divergent_follower_log() {
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: &[(&str, &[u64])] = &[
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
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

/// §5.4.1 (etcd TestVoter): a vote only for a log at least as up to date: a later last
/// term, or the same last term and at least as long.
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
        (&[2, 1], 1, 1, false),
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

/// §5.4.2, Figure 8 (etcd TestLeaderOnlyCommitsLogFromCurrentTerm): a leader counts
/// replicas only of its own term's entries; an earlier term's block commits with the
/// leader's no-op, certified in the leader's term.
#[test]
fn figure_8_a_leader_commits_only_entries_of_its_own_term() {
    for (acked, want_commit) in [(1, 0), (2, 0), (3, 3)] {
        let mut s = Server::new(3, 0, Some(state(2, None, &[1, 2])));
        s.elect();
        assert_eq!((s.machine.term(), s.machine.last_index()), (3, 3));
        s.accept(1, acked, &[], 3);
        assert_eq!(s.machine.commit_index(), want_commit, "acked through {acked}");
    }
    // The same with a block of term 2 at index 2: replicas of it do not commit it, the
    // no-op of term 3 on a majority does, and the certificate is of term 3.
    let ks = keys(3);
    let old = block(&ks[2], genesis().hash(), 1, LogPosition { term: 2, index: 2 });
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
    let cert = check_certificate(&servers, Height(1), &old.hash(), 2, &committed[0].1)
        .expect("certified");
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
    assert!(matches!(err, RaftError::BadMessageSignature { .. }), "{err}");

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
    let misplaced = block(&s.keys[1], genesis().hash(), 1, LogPosition { term: 1, index: 5 });
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

#[test]
fn params_are_validated_naming_the_field() {
    let servers = keys(3).iter().map(SecretKey::address).collect::<Vec<_>>();
    let ok = RaftParams::devnet(servers.clone());
    assert_eq!(ok.validate(), Ok(()));
    let cases: Vec<(RaftParams, &str)> = vec![
        (RaftParams::devnet(Vec::new()), "servers"),
        (
            RaftParams::devnet(vec![servers[0], servers[0]]),
            "servers",
        ),
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
