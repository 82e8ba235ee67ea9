//! ZAB: conformance cases on the pure machine, each citing its source (the DSN 2011
//! paper's properties, Medeiros 2012, the invariants of `Zab.tla` in apache/zookeeper's
//! `zookeeper-specifications`, ZooKeeper's `FastLeaderElection`); refusals of bad
//! messages and certificates; and the named multi-server runs of the Raft tests in the
//! deterministic in-memory cluster.

use crate::cluster::LATENCY_MS;
use crate::support::GENESIS_TIME;
use chain::block::HEADER_VERSION;
use chain::{
    Address, Block, BlockHash, ChainView, EngineError, EngineFields, Hash256, Header, Height,
    SealedHeader, SecretKey, Timestamp, VoteInput, VoteOutput, VotingMachine,
};
use miner::quorum::{Certificate, VoteSignature};
use miner::zab::wire::{
    Ack, Body, Envelope, PeerState, PersistedState, Proposal, Vote, Zxid, ack_body,
};
use miner::zab::{
    ENGINE_NAME, Phase, Role, TIMER_BUILD, TIMER_ELECTION, TIMER_FINALIZE, TIMER_LEADER,
    TIMER_PING, TIMER_QUORUM, ZabEngine, ZabError, ZabMachine, ZabParams,
};
use std::collections::BTreeMap;
use std::sync::Arc;

fn keys(n: usize) -> Vec<SecretKey> {
    crate::cluster::server_keys("zab server", n)
}

fn params(keys: &[SecretKey]) -> ZabParams {
    ZabParams::devnet(keys.iter().map(SecretKey::address).collect())
}

/// The shared cluster harness over ZAB servers.
type Cluster = crate::cluster::Cluster<ZabEngine>;

fn cluster(n: usize) -> Cluster {
    let keys = keys(n);
    let engine = Arc::new(ZabEngine::new(params(&keys)).expect("valid params"));
    Cluster::start(keys, engine)
}

// ---------------------------------------------------------------------------------------
// Named multi-server runs (the Raft tests' names), in the deterministic cluster.
// ---------------------------------------------------------------------------------------

#[test]
fn n3_leader_crash_reelects_and_keeps_committing() {
    // The followers heard a PING at most a tick (50 ms) before the crash and gave up after
    // the 250 ms sync limit; an election (a round trip, the 50 ms finalize wait), then
    // discovery and synchronization (two round trips) later the new leader broadcasts.
    cluster(3).leader_crash_reelects(
        |c| {
            c.leaders().len() == 1
                && c.status(c.leaders()[0].0, "phase").as_deref() == Some("broadcast")
        },
        250 - 50..250 + 50 + 8 * LATENCY_MS,
    );
}

#[test]
fn n5_minority_partition_old_leader_cannot_commit() {
    let mut c = cluster(5);
    // The old leader proposed but gathered no quorum of acks.
    let split = c.minority_partition();
    for &i in &split.minority {
        // It stepped down, and two servers cannot elect anyone.
        assert_eq!(
            c.status(i, "role").as_deref(),
            Some("looking"),
            "server {i}"
        );
    }
}

#[test]
fn n5_partition_heals_without_lost_commits() {
    let mut c = cluster(5);
    // The minority's uncommitted proposals are gone (truncated in synchronization).
    let split = c.partition_heals();
    assert!(
        split.majority.contains(&split.leader.0),
        "the majority's leader stays"
    );
    for &i in &split.minority {
        assert_eq!(
            c.status(i, "role").as_deref(),
            Some("follower"),
            "server {i}"
        );
    }
}

#[test]
fn n3_restart_follower_catches_up_from_log() {
    // Brought up in synchronization from the leader's history; the restart disrupts
    // nothing: it joins the established leader.
    cluster(3).restart_follower_catches_up(|persisted, epoch| {
        let state = PersistedState::decode(persisted).expect("decodes");
        assert_eq!((state.accepted_epoch, state.current_epoch), (epoch, epoch));
    });
}

/// Over (servers, seed), on a network that loses 5% of messages and reorders them (up to
/// 30 ms extra delay): every second the network is split at random, a server crashes or
/// one comes back; the harness fails at once if two blocks are ever decided at one height
/// (the DSN 2011 paper's agreement and total order). Healed and whole again, every server
/// ends on the same chain, and it grew.
#[test]
fn randomized_partitions_and_crashes_never_decide_two_blocks_at_one_height() {
    crate::cluster::randomized_partitions_and_crashes(
        cluster,
        &[(3, 1), (3, 2), (5, 3), (5, 4), (4, 5)],
    );
}

/// Fast Leader Election's total order on votes (ZooKeeper's `totalOrderPredicate`): two
/// (or all) servers that start elections at the same instant converge on one leader in a
/// single round, with no randomized timeout: the duelling proposers of Paxos cannot happen.
#[test]
fn two_servers_starting_elections_together_elect_one_leader_without_livelock() {
    for n in [2, 3, 5] {
        let mut c = cluster(n);
        // Every server started at the same virtual instant and is LOOKING in round 1.
        let started = c.now;
        let elected = c.run_until(1_000, |c| !c.leaders().is_empty());
        let (leader, _) = c.sole_leader();
        // The highest id wins among equal (epoch, zxid): the last address.
        assert_eq!(leader, n - 1, "n={n}");
        // One notification round trip and the finalize wait (all n agreeing settles at
        // once), not a series of retries.
        assert!(
            elected - started <= 50 + 4 * LATENCY_MS,
            "n={n}: {} ms",
            elected - started
        );
        for i in 0..n {
            assert_eq!(
                c.status(i, "round").as_deref(),
                Some("1"),
                "n={n} server {i}"
            );
        }
        c.run_for(3_000);
        assert_eq!(c.sole_leader().0, leader, "n={n}: stable");
        assert!(c.height(leader) >= 2, "n={n}");
    }
}

// ---------------------------------------------------------------------------------------
// The pure machine, driven by hand.
// ---------------------------------------------------------------------------------------

fn genesis() -> SealedHeader {
    crate::cluster::genesis_header()
}

/// A block sealed by `key` at `height` on `parent`, with `zxid`.
fn block(key: &SecretKey, parent: BlockHash, height: u64, zxid: Zxid) -> Block {
    let header = Header {
        version: HEADER_VERSION,
        parent,
        height: Height(height),
        timestamp: Timestamp(GENESIS_TIME.saturating_add(height)),
        tx_root: Hash256::ZERO,
        state_root: Hash256::ZERO,
        producer: key.address(),
        engine: EngineFields {
            data: zxid.encode(),
            ..EngineFields::default()
        },
    };
    Block {
        header: miner::seal::sign_header(header, key),
        txs: Vec::new(),
    }
}

fn proposal(key: &SecretKey, parent: BlockHash, height: u64, zxid: Zxid) -> Proposal {
    Proposal {
        zxid,
        block: block(key, parent, height, zxid),
    }
}

fn zxid(epoch: u64, counter: u64) -> Zxid {
    Zxid { epoch, counter }
}

/// The certificate `signers` give `block` in `epoch`.
fn certify(signers: &[&SecretKey], block: &Block, epoch: u64) -> Vec<u8> {
    let body = ack_body(epoch, &block.header);
    let signatures = signers
        .iter()
        .map(|k| VoteSignature::sign(ENGINE_NAME, &body, k))
        .collect();
    Certificate::new(body, signatures).encode()
}

fn signed_ack(key: &SecretKey, block: &Block, epoch: u64) -> Ack {
    Ack {
        height: block.header.height,
        hash: block.hash(),
        signature: VoteSignature::sign(ENGINE_NAME, &ack_body(epoch, &block.header), key).signature,
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

fn commits(outputs: &[VoteOutput]) -> Vec<Block> {
    outputs
        .iter()
        .filter_map(|o| match o {
            VoteOutput::Commit { block, .. } => Some((**block).clone()),
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

fn is_ignored(result: &Result<Vec<VoteOutput>, EngineError>) -> bool {
    matches!(result, Err(EngineError::Ignored { .. }))
}

fn zab_error(result: Result<Vec<VoteOutput>, EngineError>) -> ZabError {
    match result {
        Err(e) => e
            .downcast_ref::<ZabError>()
            .cloned()
            .unwrap_or_else(|| panic!("not a zab refusal: {e}")),
        Ok(out) => panic!("expected a refusal, got {out:?}"),
    }
}

/// One server's machine with the keys of its whole cluster, so tests can speak for its
/// peers.
struct Server {
    keys: Vec<SecretKey>,
    me: usize,
    machine: ZabMachine,
    now: u64,
}

impl Server {
    /// Server `me` of `n`, given the genesis head: LOOKING in round 1.
    fn new(n: usize, me: usize, persisted: Option<PersistedState>) -> Server {
        let keys = keys(n);
        let machine = ZabMachine::new(params(&keys), Some(keys[me].clone()), persisted);
        let mut s = Server {
            keys,
            me,
            machine,
            now: 0,
        };
        let out = s.head(genesis());
        assert_eq!(
            s.machine.role(),
            if n == 1 { Role::Leader } else { Role::Looking }
        );
        assert!(n == 1 || timer(&out, TIMER_ELECTION).is_some());
        s
    }

    fn head(&mut self, head: SealedHeader) -> Vec<VoteOutput> {
        self.input(VoteInput::Head {
            head,
            voters: Vec::new(),
        })
        .expect("head")
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

    /// Leads: `peers` send LOOKING notifications for this server's own vote, and
    /// finalizeWait passes (discovery begins).
    fn lead_with(&mut self, peers: &[usize]) -> Vec<VoteOutput> {
        let vote = self.machine.vote();
        for p in peers {
            self.looking(*p, vote).expect("notification");
        }
        self.timeout(TIMER_FINALIZE)
    }

    /// Peer `peer`'s FOLLOWERINFO to this server, the leader.
    fn follower_info(
        &mut self,
        peer: usize,
        accepted_epoch: u64,
    ) -> Result<Vec<VoteOutput>, EngineError> {
        let to = self.addr(self.me);
        self.from(peer, Body::FollowerInfo { to, accepted_epoch })
    }

    /// A LOOKING peer's notification in round 1.
    fn looking(&mut self, peer: usize, vote: Vote) -> Result<Vec<VoteOutput>, EngineError> {
        let round = self.machine.round();
        self.from(
            peer,
            Body::Notification {
                round,
                state: PeerState::Looking,
                vote,
            },
        )
    }

    /// A vote for server `leader` with this zxid and epoch.
    fn vote_for(&self, leader: usize, zxid: Zxid, epoch: u64) -> Vote {
        Vote {
            leader: self.addr(leader),
            zxid,
            epoch,
        }
    }

    /// Elects `leader` with the votes of the peers in `voters`, settles after the finalize
    /// wait if needed, and (following) takes the leader's NEWEPOCH(`epoch`) and an empty
    /// NEWLEADER, ending in broadcast.
    fn follow(&mut self, leader: usize, voters: &[usize], epoch: u64) {
        let vote = self.vote_for(
            leader,
            self.machine.last_zxid(),
            self.machine.current_epoch(),
        );
        for &v in voters {
            self.looking(v, vote).expect("notification");
        }
        if self.machine.role() == Role::Looking {
            self.timeout(TIMER_FINALIZE);
        }
        assert_eq!(self.machine.role(), Role::Follower);
        assert_eq!(self.machine.leader(), Some(self.addr(leader)));
        let to = self.addr(self.me);
        self.from(leader, Body::NewEpoch { to, epoch })
            .expect("newepoch");
        let last_zxid = self.machine.last_zxid();
        self.from(
            leader,
            Body::NewLeader {
                to,
                epoch,
                proposals: Vec::new(),
                certificates: Vec::new(),
                last_zxid,
            },
        )
        .expect("newleader");
        assert_eq!(self.machine.phase(), Phase::Broadcast);
        assert_eq!(self.machine.current_epoch(), epoch);
    }

    /// Elected by every peer (this server must hold the best vote), takes FOLLOWERINFO,
    /// ACKEPOCH and the ACK of NEWLEADER from the peers in `quorum`; returns the outputs of
    /// the last step.
    fn lead(&mut self, quorum: &[usize]) -> Vec<VoteOutput> {
        let vote = self.machine.vote();
        for &p in quorum {
            self.looking(p, vote).expect("notification");
        }
        if self.machine.role() == Role::Looking {
            self.timeout(TIMER_FINALIZE);
        }
        assert_eq!(self.machine.role(), Role::Leader);
        let to = self.addr(self.me);
        for &p in quorum {
            self.from(
                p,
                Body::FollowerInfo {
                    to,
                    accepted_epoch: 0,
                },
            )
            .expect("followerinfo");
        }
        let epoch = self.machine.accepted_epoch();
        for &p in quorum {
            self.from(
                p,
                Body::AckEpoch {
                    to,
                    epoch,
                    current_epoch: 0,
                    last_zxid: Zxid::GENESIS,
                    committed: Height(0),
                },
            )
            .expect("ackepoch");
        }
        assert_eq!(self.machine.phase(), Phase::Synchronization);
        let mut out = Vec::new();
        for &p in quorum {
            let last_zxid = self.machine.last_zxid();
            out = self
                .from(
                    p,
                    Body::AckNewLeader {
                        to,
                        epoch,
                        last_zxid,
                        acks: Vec::new(),
                    },
                )
                .expect("ack of newleader");
        }
        assert_eq!(self.machine.phase(), Phase::Broadcast);
        out
    }
}

/// (my current epoch, [(peer, its zxid, its epoch)], expected leader).
type ElectionCase = (u64, [(usize, Zxid, u64); 2], usize);

/// ZooKeeper's `FastLeaderElection.totalOrderPredicate`, as a table: among the votes a
/// quorum exchanges, the one with the highest (epoch, last zxid, id) wins; a server that
/// stays silent does not count (n = 5, three servers decide).
#[test]
fn election_picks_the_highest_epoch_zxid_id_among_a_quorum() {
    // (my current epoch, [(peer, its zxid, its epoch)], expected leader)
    let table: [ElectionCase; 5] = [
        // All equal: the highest id among the three that speak (server 4 is silent).
        (0, [(1, zxid(0, 0), 0), (3, zxid(0, 0), 0)], 3),
        // A later epoch beats a later zxid and a higher id.
        (0, [(1, zxid(0, 0), 2), (3, zxid(1, 9), 1)], 1),
        // Same epoch: the later zxid beats the higher id.
        (1, [(1, zxid(1, 5), 1), (3, zxid(1, 4), 1)], 1),
        // Same epoch and zxid: the higher id.
        (1, [(1, zxid(1, 5), 1), (3, zxid(1, 5), 1)], 3),
        // This server's own epoch is the latest.
        (4, [(1, zxid(3, 7), 3), (3, zxid(3, 7), 3)], 2),
    ];
    for (my_epoch, peers, expected) in table {
        let persisted = PersistedState {
            accepted_epoch: my_epoch,
            accepted_leader: None,
            current_epoch: my_epoch,
            base: None,
            proposals: Vec::new(),
        };
        let mut s = Server::new(5, 2, Some(persisted));
        // Each peer first sends its own vote, then the best it has seen (which it adopts).
        for (peer, z, e) in peers {
            let own = s.vote_for(peer, z, e);
            s.looking(peer, own).expect("notification");
        }
        let best = s.machine.vote();
        assert_eq!(best.leader, s.addr(expected), "{peers:?}");
        for (peer, _, _) in peers {
            s.looking(peer, best).expect("notification");
        }
        assert_eq!(
            s.machine.role(),
            Role::Looking,
            "settled only after finalizeWait"
        );
        let out = s.timeout(TIMER_FINALIZE);
        if expected == 2 {
            assert_eq!(s.machine.role(), Role::Leader);
        } else {
            assert_eq!(s.machine.role(), Role::Follower);
            // Discovery begins: FOLLOWERINFO(acceptedEpoch) to the elected leader.
            assert!(bodies(&out).contains(&Body::FollowerInfo {
                to: s.addr(expected),
                accepted_epoch: my_epoch
            }));
        }
        assert_eq!(s.machine.leader(), Some(s.addr(expected)));
        assert_eq!(s.machine.phase(), Phase::Discovery);
    }
}

/// `lookForLeader`: a notification of a later round makes a server join that round; one of
/// an earlier round is answered with the current vote and not counted; a better vote in the
/// same round is adopted and sent on.
#[test]
fn election_rounds_and_better_votes_by_notification_table() {
    let mut s = Server::new(3, 0, None);
    assert_eq!(s.machine.round(), 1);
    let own = s.machine.vote();
    assert_eq!(own.leader, s.addr(0));
    let better = s.vote_for(2, zxid(0, 0), 0);
    // A later round: joined, with the better vote.
    let out = s
        .from(
            1,
            Body::Notification {
                round: 3,
                state: PeerState::Looking,
                vote: better,
            },
        )
        .expect("notification");
    assert_eq!(s.machine.round(), 3);
    assert_eq!(s.machine.vote(), better);
    assert!(bodies(&out).contains(&Body::Notification {
        round: 3,
        state: PeerState::Looking,
        vote: better
    }));
    // An earlier round: answered, not counted.
    let result = s.from(
        2,
        Body::Notification {
            round: 1,
            state: PeerState::Looking,
            vote: s.vote_for(2, zxid(0, 0), 0),
        },
    );
    assert!(is_ignored(&result));
    assert_eq!(s.machine.role(), Role::Looking);
    // A worse vote in the round changes nothing, but counts as that server's vote.
    let worse = s.vote_for(1, zxid(0, 0), 0);
    let out = s
        .from(
            1,
            Body::Notification {
                round: 3,
                state: PeerState::Looking,
                vote: worse,
            },
        )
        .expect("notification");
    assert!(bodies(&out).is_empty());
    assert_eq!(s.machine.vote(), better);
    // A vote for someone who is no server is refused.
    let stranger = Vote {
        leader: SecretKey::from_seed("stranger").address(),
        zxid: zxid(9, 9),
        epoch: 9,
    };
    let err = zab_error(s.looking(1, stranger));
    assert!(matches!(err, ZabError::MalformedMessage { .. }), "{err}");
}

/// `lookForLeader` out of election (`outofelection`, `checkLeader`): a server that comes
/// back to an established ensemble follows the leader a quorum of FOLLOWING and LEADING
/// servers report, once the leader itself says it leads.
#[test]
fn a_looking_server_joins_the_leader_a_quorum_of_settled_servers_reports() {
    let mut s = Server::new(5, 0, None);
    let settled = s.vote_for(3, zxid(2, 7), 2);
    let tell = |s: &mut Server, peer: usize, state: PeerState| {
        s.from(
            peer,
            Body::Notification {
                round: 9,
                state,
                vote: settled,
            },
        )
        .expect("notification")
    };
    tell(&mut s, 1, PeerState::Following);
    tell(&mut s, 2, PeerState::Following);
    assert_eq!(
        s.machine.role(),
        Role::Looking,
        "the leader has not spoken yet"
    );
    let out = tell(&mut s, 3, PeerState::Leading);
    assert_eq!(s.machine.role(), Role::Follower);
    assert_eq!(s.machine.leader(), Some(s.addr(3)));
    assert!(bodies(&out).contains(&Body::FollowerInfo {
        to: s.addr(3),
        accepted_epoch: 0
    }));
    // And a settled server answers a LOOKING one with its settled vote.
    let out = s
        .from(
            4,
            Body::Notification {
                round: 1,
                state: PeerState::Looking,
                vote: s.vote_for(4, zxid(0, 0), 0),
            },
        )
        .expect("answered");
    assert!(matches!(
        bodies(&out).as_slice(),
        [Body::Notification {
            state: PeerState::Following,
            ..
        }]
    ));
}

/// DSN 2011 §IV-A (phase 1, and `Zab.tla`'s `LeaderProcessCEPOCH`): the leader proposes
/// an epoch above every acceptedEpoch of a quorum of FOLLOWERINFO, and persists it as its
/// own acceptedEpoch before sending NEWEPOCH.
#[test]
fn discovery_proposes_an_epoch_above_every_accepted_epoch_of_a_quorum() {
    let mut s = Server::new(5, 4, None);
    s.lead_with(&[1, 2]);
    assert_eq!(s.machine.role(), Role::Leader);
    let to = s.addr(4);
    let out = s
        .from(
            1,
            Body::FollowerInfo {
                to,
                accepted_epoch: 3,
            },
        )
        .expect("followerinfo");
    assert!(
        bodies(&out).is_empty(),
        "one follower and the leader are no quorum of 5"
    );
    let out = s
        .from(
            2,
            Body::FollowerInfo {
                to,
                accepted_epoch: 7,
            },
        )
        .expect("followerinfo");
    let Some(VoteOutput::Persist(bytes)) = out.first() else {
        panic!("the epoch is persisted first: {out:?}");
    };
    let persisted = PersistedState::decode(bytes).expect("decodes");
    assert_eq!((persisted.accepted_epoch, persisted.current_epoch), (8, 0));
    assert_eq!(
        bodies(&out),
        vec![
            Body::NewEpoch {
                to: s.addr(1),
                epoch: 8
            },
            Body::NewEpoch {
                to: s.addr(2),
                epoch: 8
            }
        ]
    );
    // A follower that comes later gets the same epoch.
    let out = s
        .from(
            3,
            Body::FollowerInfo {
                to,
                accepted_epoch: 1,
            },
        )
        .expect("followerinfo");
    assert_eq!(
        bodies(&out),
        vec![Body::NewEpoch {
            to: s.addr(3),
            epoch: 8
        }]
    );
    assert_eq!(s.machine.phase(), Phase::Discovery);
}

/// DSN 2011 §IV-A and `Zab.tla`'s `FollowerProcessNEWEPOCH`: a follower accepts NEWEPOCH(e′)
/// only above its acceptedEpoch, persists e′ before it answers ACKEPOCH(currentEpoch,
/// lastZxid), and never accepts a lower epoch after (ZooKeeper: "leader's epoch is less
/// than accepted epoch" sends it back to LOOKING).
#[test]
fn a_follower_refuses_a_newepoch_below_its_accepted_epoch() {
    let persisted = PersistedState {
        accepted_epoch: 5,
        accepted_leader: None,
        current_epoch: 4,
        base: None,
        proposals: Vec::new(),
    };
    let mut s = Server::new(3, 0, Some(persisted));
    let vote = s.vote_for(2, zxid(0, 0), 4);
    s.looking(2, vote).expect("notification");
    s.timeout(TIMER_FINALIZE);
    assert_eq!(s.machine.role(), Role::Follower);
    let to = s.addr(0);
    // Below: refused, back to LOOKING, nothing persisted or acked.
    let out = s.from(2, Body::NewEpoch { to, epoch: 4 }).expect("handled");
    assert_eq!(s.machine.role(), Role::Looking);
    assert_eq!(s.machine.accepted_epoch(), 5);
    assert!(!out.iter().any(|o| matches!(o, VoteOutput::Persist(_))));
    assert!(
        !bodies(&out)
            .iter()
            .any(|b| matches!(b, Body::AckEpoch { .. }))
    );
    // Equal, from a leader that did not set it: refused too (one leader per epoch).
    s.looking(2, vote).expect("notification");
    s.timeout(TIMER_FINALIZE);
    let out = s.from(2, Body::NewEpoch { to, epoch: 5 }).expect("handled");
    assert_eq!(s.machine.role(), Role::Looking);
    assert!(
        !bodies(&out)
            .iter()
            .any(|b| matches!(b, Body::AckEpoch { .. }))
    );
    // Above: persisted, then acked with the follower's currentEpoch and last zxid.
    s.looking(2, vote).expect("notification");
    s.timeout(TIMER_FINALIZE);
    let out = s.from(2, Body::NewEpoch { to, epoch: 6 }).expect("handled");
    let Some(VoteOutput::Persist(bytes)) = out.first() else {
        panic!("acceptedEpoch is persisted before the ack: {out:?}");
    };
    assert_eq!(
        PersistedState::decode(bytes)
            .expect("decodes")
            .accepted_epoch,
        6
    );
    assert_eq!(
        bodies(&out),
        vec![Body::AckEpoch {
            to: s.addr(2),
            epoch: 6,
            current_epoch: 4,
            last_zxid: Zxid::GENESIS,
            committed: Height(0)
        }]
    );
    assert_eq!(s.machine.phase(), Phase::Synchronization);
}

/// ZooKeeper's `Leader.waitForEpochAck`: a leader that learns from an ACKEPOCH that a
/// follower is ahead of it (a later currentEpoch, or the same and a later zxid) gives up
/// leading, since its history might miss a committed proposal.
#[test]
fn a_leader_steps_down_when_an_ackepoch_shows_a_follower_ahead() {
    let mut s = Server::new(3, 2, None);
    s.lead_with(&[1]);
    let to = s.addr(2);
    s.follower_info(1, 0).expect("followerinfo");
    let epoch = s.machine.accepted_epoch();
    let out = s
        .from(
            1,
            Body::AckEpoch {
                to,
                epoch,
                current_epoch: 0,
                last_zxid: zxid(0, 3),
                committed: Height(0),
            },
        )
        .expect("ackepoch");
    assert_eq!(s.machine.role(), Role::Looking);
    assert!(out.contains(&VoteOutput::CancelTimer(TIMER_PING)));
    assert_eq!(
        s.machine.current_epoch(),
        0,
        "the epoch was never established"
    );
}

/// DSN 2011 primary integrity (and `Zab.tla`'s `LeaderProcessRequest`, enabled only once
/// the leader is broadcasting): a new leader broadcasts nothing new before a quorum holds
/// its initial history; then the first block it asks for is zxid (e′, 1).
#[test]
fn primary_integrity_no_new_proposal_before_synchronization_completes() {
    let mut s = Server::new(3, 2, None);
    s.lead_with(&[1]);
    let to = s.addr(2);
    s.follower_info(1, 0).expect("followerinfo");
    let out = s
        .from(
            1,
            Body::AckEpoch {
                to,
                epoch: 1,
                current_epoch: 0,
                last_zxid: Zxid::GENESIS,
                committed: Height(0),
            },
        )
        .expect("ackepoch");
    assert_eq!(s.machine.phase(), Phase::Synchronization);
    assert_eq!(s.machine.current_epoch(), 1);
    assert!(timer(&out, TIMER_BUILD).is_none());
    assert!(matches!(
        bodies(&out).as_slice(),
        [Body::NewLeader { epoch: 1, .. }]
    ));
    // The block clock firing early (or a stale timer) builds nothing.
    let out = s.timeout(TIMER_BUILD);
    assert!(!out.iter().any(|o| matches!(o, VoteOutput::Build { .. })));
    let out = s
        .from(
            1,
            Body::AckNewLeader {
                to,
                epoch: 1,
                last_zxid: Zxid::GENESIS,
                acks: Vec::new(),
            },
        )
        .expect("ack of newleader");
    assert_eq!(s.machine.phase(), Phase::Broadcast);
    assert_eq!(timer(&out, TIMER_BUILD), Some(1_000));
    let out = s.timeout(TIMER_BUILD);
    let data = out
        .iter()
        .find_map(|o| match o {
            VoteOutput::Build { data, .. } => Some(data.clone()),
            _ => None,
        })
        .expect("asks for a block");
    assert_eq!(
        borsh::from_slice::<Zxid>(&data).expect("a zxid"),
        zxid(1, 1)
    );
}

/// Medeiros 2012 (and `Zab.tla`'s invariant that the initial history of a new leader holds
/// every committed transaction): a new leader whose history holds an uncommitted proposal
/// of an earlier epoch commits it with its quorum's ACKs of NEWLEADER, in its own epoch,
/// before anything new.
#[test]
fn the_new_leader_commits_its_initial_history_with_the_quorums_newleader_acks() {
    let ks = keys(3);
    let p = proposal(&ks[0], genesis().hash(), 1, zxid(1, 1));
    let persisted = PersistedState {
        accepted_epoch: 1,
        accepted_leader: Some(ks[0].address()),
        current_epoch: 1,
        base: None,
        proposals: vec![p.clone()],
    };
    let mut s = Server::new(3, 2, Some(persisted));
    assert_eq!(s.machine.vote().zxid, zxid(1, 1));
    s.lead_with(&[1]);
    let to = s.addr(2);
    s.follower_info(1, 1).expect("followerinfo");
    let out = s
        .from(
            1,
            Body::AckEpoch {
                to,
                epoch: 2,
                current_epoch: 1,
                last_zxid: Zxid::GENESIS,
                committed: Height(0),
            },
        )
        .expect("ackepoch");
    // DIFF: the follower gets the proposal it lacks, uncommitted, with the leader's last.
    let Some(Body::NewLeader {
        epoch: 2,
        proposals,
        certificates,
        last_zxid,
        ..
    }) = bodies(&out).into_iter().next()
    else {
        panic!("a newleader: {out:?}");
    };
    assert_eq!(
        (proposals, certificates.len(), last_zxid),
        (vec![p.clone()], 0, zxid(1, 1))
    );
    let out = s
        .from(
            1,
            Body::AckNewLeader {
                to,
                epoch: 2,
                last_zxid: zxid(1, 1),
                acks: vec![signed_ack(&ks[1], &p.block, 2)],
            },
        )
        .expect("ack of newleader");
    assert_eq!(commits(&out), vec![p.block.clone()]);
    let Some(Body::Commit { certificate, .. }) = bodies(&out).into_iter().next() else {
        panic!("a commit: {out:?}");
    };
    let certificate = Certificate::decode(&certificate).expect("decodes");
    assert_eq!(certificate.body.view, 2, "acked in the new epoch");
    assert_eq!(certificate.signers().len(), 2);
}

/// The follower's side of phase 2 (`Zab.tla`'s `FollowerProcessNEWLEADER`, ZooKeeper's
/// TRUNC): an uncommitted proposal of an earlier epoch that is not in the new leader's
/// history is dropped, the leader's proposals take its place, and only then does the
/// follower make the epoch its currentEpoch and ack.
#[test]
fn a_followers_uncommitted_proposal_not_in_the_new_leaders_history_is_truncated() {
    let ks = keys(3);
    let stale = proposal(&ks[0], genesis().hash(), 1, zxid(1, 1));
    let persisted = PersistedState {
        accepted_epoch: 1,
        accepted_leader: Some(ks[0].address()),
        current_epoch: 1,
        base: None,
        proposals: vec![stale.clone()],
    };
    // Truncated and replaced: the leader holds another proposal at that height.
    let mut s = Server::new(3, 1, Some(persisted.clone()));
    s.follow(2, &[2], 3);
    // `follow` sent a NEWLEADER ending at the follower's own last zxid: nothing changed yet.
    assert_eq!(s.machine.history(), std::slice::from_ref(&stale));
    let mut s = Server::new(3, 1, Some(persisted.clone()));
    let vote = s.vote_for(2, zxid(2, 1), 2);
    s.looking(2, vote).expect("notification");
    s.timeout(TIMER_FINALIZE);
    let to = s.addr(1);
    s.from(2, Body::NewEpoch { to, epoch: 3 })
        .expect("newepoch");
    let theirs = proposal(&ks[2], genesis().hash(), 1, zxid(2, 1));
    let out = s
        .from(
            2,
            Body::NewLeader {
                to,
                epoch: 3,
                proposals: vec![theirs.clone()],
                certificates: Vec::new(),
                last_zxid: zxid(2, 1),
            },
        )
        .expect("newleader");
    assert_eq!(s.machine.history(), std::slice::from_ref(&theirs));
    assert_eq!(s.machine.current_epoch(), 3);
    let Some(VoteOutput::Persist(bytes)) = out.first() else {
        panic!("persisted first: {out:?}");
    };
    let saved = PersistedState::decode(bytes).expect("decodes");
    assert_eq!(
        (saved.current_epoch, saved.proposals),
        (3, vec![theirs.clone()])
    );
    assert_eq!(
        bodies(&out),
        vec![Body::AckNewLeader {
            to: s.addr(2),
            epoch: 3,
            last_zxid: zxid(2, 1),
            acks: vec![signed_ack(&ks[1], &theirs.block, 3)],
        }]
    );
    // Truncated to nothing: the leader's history ends before it.
    let mut s = Server::new(3, 1, Some(persisted));
    let vote = s.vote_for(2, zxid(0, 0), 2);
    s.looking(2, vote).expect("notification");
    s.timeout(TIMER_FINALIZE);
    s.from(2, Body::NewEpoch { to, epoch: 3 })
        .expect("newepoch");
    s.from(
        2,
        Body::NewLeader {
            to,
            epoch: 3,
            proposals: Vec::new(),
            certificates: Vec::new(),
            last_zxid: Zxid::GENESIS,
        },
    )
    .expect("newleader");
    assert!(s.machine.history().is_empty());
    assert_eq!(s.machine.last_zxid(), Zxid::GENESIS);
    assert_eq!(s.machine.phase(), Phase::Broadcast);
}

/// DSN 2011 primary order (and `Zab.tla`'s `PrimaryOrder`/`LocalPrimaryOrder`): a follower
/// accepts its leader's proposals only in zxid order, each right after the last it holds,
/// acks each after persisting it, and delivers in that order: a COMMIT that arrives before
/// the one before it waits for it.
#[test]
fn primary_order_a_follower_accepts_and_delivers_in_zxid_order() {
    let ks = keys(3);
    let mut s = Server::new(3, 0, None);
    s.follow(2, &[2], 1);
    let p1 = proposal(&ks[2], genesis().hash(), 1, zxid(1, 1));
    let p2 = proposal(&ks[2], p1.block.hash(), 2, zxid(1, 2));
    // The second before the first: not accepted, not acked.
    let result = s.from(
        2,
        Body::Propose {
            epoch: 1,
            proposal: p2.clone(),
        },
    );
    assert!(is_ignored(&result), "{result:?}");
    // In order: each persisted, then acked.
    for p in [&p1, &p2] {
        let out = s
            .from(
                2,
                Body::Propose {
                    epoch: 1,
                    proposal: p.clone(),
                },
            )
            .expect("proposal");
        assert!(
            matches!(out.first(), Some(VoteOutput::Persist(_))),
            "{out:?}"
        );
        assert_eq!(
            bodies(&out),
            vec![Body::Ack {
                to: s.addr(2),
                epoch: 1,
                ack: signed_ack(&ks[0], &p.block, 1)
            }]
        );
    }
    // A zxid that does not grow is refused even where it would fit.
    let p3 = proposal(&ks[2], p2.block.hash(), 3, zxid(1, 2));
    let result = s.from(
        2,
        Body::Propose {
            epoch: 1,
            proposal: p3,
        },
    );
    assert!(is_ignored(&result), "{result:?}");
    assert_eq!(s.machine.last_zxid(), zxid(1, 2));
    // COMMIT of the second first: delivered only with the first.
    let c2 = certify(&[&ks[0], &ks[2]], &p2.block, 1);
    let out = s
        .from(
            2,
            Body::Commit {
                epoch: 1,
                height: Height(2),
                certificate: c2,
            },
        )
        .expect("commit");
    assert!(commits(&out).is_empty());
    let c1 = certify(&[&ks[0], &ks[2]], &p1.block, 1);
    let out = s
        .from(
            2,
            Body::Commit {
                epoch: 1,
                height: Height(1),
                certificate: c1,
            },
        )
        .expect("commit");
    assert_eq!(commits(&out), vec![p1.block.clone(), p2.block.clone()]);
    assert_eq!(s.machine.committed(), Height(2));
}

/// DSN 2011 integrity ("if some process delivers a transaction, some primary broadcast
/// it"): a follower delivers only proposals it holds from its own leader, each with a
/// certificate of that very block; proposals from another server, from another epoch, or a
/// COMMIT whose certificate proves another block deliver nothing.
#[test]
fn integrity_only_proposed_transactions_are_delivered() {
    let ks = keys(3);
    let mut s = Server::new(3, 0, None);
    s.follow(2, &[2], 1);
    let p1 = proposal(&ks[2], genesis().hash(), 1, zxid(1, 1));
    let other = proposal(&ks[2], genesis().hash(), 1, zxid(1, 2));
    // Not the leader.
    let by_other = proposal(&ks[1], genesis().hash(), 1, zxid(1, 1));
    assert!(is_ignored(&s.from(
        1,
        Body::Propose {
            epoch: 1,
            proposal: by_other
        }
    )));
    // Another epoch.
    let later = proposal(&ks[2], genesis().hash(), 1, zxid(2, 1));
    assert!(is_ignored(&s.from(
        2,
        Body::Propose {
            epoch: 2,
            proposal: later
        }
    )));
    // A COMMIT of what was never proposed to it.
    let c = certify(&[&ks[0], &ks[2]], &p1.block, 1);
    let result = s.from(
        2,
        Body::Commit {
            epoch: 1,
            height: Height(1),
            certificate: c.clone(),
        },
    );
    assert!(is_ignored(&result), "{result:?}");
    s.from(
        2,
        Body::Propose {
            epoch: 1,
            proposal: p1.clone(),
        },
    )
    .expect("proposal");
    // A certificate of another block at that height.
    let wrong = certify(&[&ks[0], &ks[2]], &other.block, 1);
    let err = zab_error(s.from(
        2,
        Body::Commit {
            epoch: 1,
            height: Height(1),
            certificate: wrong,
        },
    ));
    assert!(
        matches!(err, ZabError::MalformedMessage { what: "commit", .. }),
        "{err}"
    );
    // One signer short of a quorum.
    let short = certify(&[&ks[2]], &p1.block, 1);
    let err = zab_error(s.from(
        2,
        Body::Commit {
            epoch: 1,
            height: Height(1),
            certificate: short,
        },
    ));
    assert!(matches!(err, ZabError::MalformedMessage { .. }), "{err}");
    assert_eq!(s.machine.committed(), Height(0));
    let out = s
        .from(
            2,
            Body::Commit {
                epoch: 1,
                height: Height(1),
                certificate: c,
            },
        )
        .expect("commit");
    assert_eq!(commits(&out), vec![p1.block]);
}

/// DSN 2011 §IV-C (`LeaderProcessACK`): the leader commits a proposal once ⌊N/2⌋+1 servers
/// (itself included) acked it in its epoch, sends COMMIT with the certificate, and counts
/// no ack signed over another block or epoch.
#[test]
fn the_leader_commits_with_a_quorum_of_acks_in_its_epoch() {
    let ks = keys(5);
    let mut s = Server::new(5, 4, None);
    s.lead(&[0, 1]);
    let epoch = s.machine.current_epoch();
    let out = s.timeout(TIMER_BUILD);
    let Some(VoteOutput::Build { parent, data, .. }) =
        out.iter().find(|o| matches!(o, VoteOutput::Build { .. }))
    else {
        panic!("asks for a block: {out:?}");
    };
    let z: Zxid = borsh::from_slice(data).expect("a zxid");
    let b = block(&ks[4], *parent, 1, z);
    let out = s
        .input(VoteInput::Built(Box::new(b.clone())))
        .expect("built");
    assert!(matches!(out.first(), Some(VoteOutput::Persist(_))));
    assert!(matches!(bodies(&out).as_slice(), [Body::Propose { .. }]));
    let to = s.addr(4);
    // Signed in another epoch: refused.
    let err = zab_error(s.from(
        0,
        Body::Ack {
            to,
            epoch,
            ack: signed_ack(&ks[0], &b, epoch + 1),
        },
    ));
    assert!(matches!(err, ZabError::BadAck { .. }), "{err}");
    let out = s
        .from(
            0,
            Body::Ack {
                to,
                epoch,
                ack: signed_ack(&ks[0], &b, epoch),
            },
        )
        .expect("ack");
    assert!(commits(&out).is_empty(), "two of five");
    let out = s
        .from(
            1,
            Body::Ack {
                to,
                epoch,
                ack: signed_ack(&ks[1], &b, epoch),
            },
        )
        .expect("ack");
    assert_eq!(commits(&out), vec![b.clone()]);
    let Some(Body::Commit {
        height,
        certificate,
        ..
    }) = bodies(&out).into_iter().next()
    else {
        panic!("a commit: {out:?}");
    };
    assert_eq!(height, Height(1));
    let engine = ZabEngine::new(params(&ks)).expect("valid");
    let servers = engine.params().voter_set();
    miner::zab::wire::check_certificate(&servers, &b.header, &certificate).expect("proves it");
}

/// Timers: a follower gives its leader up after `sync_limit_ms` without a message and
/// looks again; a leader steps down at its quorum check without a majority heard, and
/// keeps leading with one.
#[test]
fn silence_sends_followers_and_leaders_back_to_looking() {
    let mut f = Server::new(3, 0, None);
    f.follow(2, &[2], 1);
    let out = f.from(2, Body::Ping { epoch: 1 }).expect("ping");
    assert_eq!(timer(&out, TIMER_LEADER), Some(250));
    assert!(matches!(bodies(&out).as_slice(), [Body::PingAck { .. }]));
    let out = f.timeout(TIMER_LEADER);
    assert_eq!(f.machine.role(), Role::Looking);
    assert_eq!(f.machine.round(), 2, "a new election round");
    assert!(matches!(
        bodies(&out).as_slice(),
        [Body::Notification {
            round: 2,
            state: PeerState::Looking,
            ..
        }]
    ));

    let mut l = Server::new(3, 2, None);
    l.lead(&[1]);
    let out = l.timeout(TIMER_QUORUM);
    assert_eq!(
        l.machine.role(),
        Role::Leader,
        "heard from server 1 in this period"
    );
    assert_eq!(timer(&out, TIMER_QUORUM), Some(250));
    let out = l.timeout(TIMER_QUORUM);
    assert_eq!(l.machine.role(), Role::Looking, "nothing heard since");
    for id in [TIMER_PING, TIMER_BUILD] {
        assert!(out.contains(&VoteOutput::CancelTimer(id)));
    }
}

#[test]
fn status_names_the_role_phase_epoch_leader_last_zxid_and_committed_height() {
    let mut s = Server::new(3, 0, None);
    s.follow(2, &[2], 4);
    let status: BTreeMap<&str, String> = s.machine.status().into_iter().collect();
    assert_eq!(status["engine"], "zab");
    assert_eq!(status["role"], "follower");
    assert_eq!(status["phase"], "broadcast");
    assert_eq!(status["epoch"], "4");
    assert_eq!(status["leader"], s.addr(2).to_string());
    assert_eq!(status["last_zxid"], "0:0");
    assert_eq!(status["committed_height"], "0");
    let mut l = Server::new(3, 2, None);
    l.lead(&[1]);
    let status: BTreeMap<&str, String> = l.machine.status().into_iter().collect();
    assert_eq!(
        status["role"], "leader",
        "the simulator finds the leader by this"
    );
}

/// Medeiros 2012 and `Zab.tla`'s invariant that a new leader's initial history holds every
/// committed proposal: crash the leader at moments spread over a block interval (before,
/// during and after a commit reaches the followers); whoever is elected holds, when it
/// starts synchronization, every block any server committed (in its chain or its history).
#[test]
fn the_new_leaders_initial_history_contains_every_committed_proposal() {
    // Steps of 13 ms against 5 ms links: some crashes fall between a commit at the leader
    // and its COMMIT at the followers.
    for offset in (0..1_000).step_by(13) {
        let mut c = cluster(3);
        c.run_for(2_500 + offset);
        let (old, _) = c.sole_leader();
        c.crash(old);
        // Stop as the new leader leaves discovery: its initial history is set.
        c.run_until(2_000, |c| {
            (0..3).any(|i| {
                c.status(i, "role").as_deref() == Some("leader")
                    && c.status(i, "phase").as_deref() != Some("discovery")
            })
        });
        let leader = (0..3)
            .find(|&i| c.status(i, "role").as_deref() == Some("leader"))
            .expect("a leader");
        let persisted =
            PersistedState::decode(c.nodes[leader].persisted.as_deref().expect("persisted"))
                .expect("decodes");
        let chain = &c.nodes[leader].chain;
        for (height, hash) in &c.decided {
            let in_chain = chain.best_hash_at(*height).expect("store") == Some(*hash);
            let in_history = persisted
                .proposals
                .iter()
                .any(|p| p.block.header.height == *height && p.block.hash() == *hash);
            assert!(
                in_chain || in_history,
                "offset {offset}: the new leader {leader} misses block {height} ({hash})"
            );
        }
        // Agreement: both survivors go on to deliver the same blocks in the same order.
        c.run_for(3_000);
        let rest: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        for &i in &rest {
            c.assert_chain_is_decided(i);
        }
        assert_eq!(
            c.nodes[rest[0]].chain.head().hash(),
            c.nodes[rest[1]].chain.head().hash(),
            "offset {offset}"
        );
    }
}

/// Primary order across epochs on whole chains (DSN 2011 global primary order): along
/// every server's chain zxids grow, so every block of an earlier primary comes before the
/// blocks of a later one, through several leader crashes and restarts.
#[test]
fn primary_order_holds_along_every_chain_across_leader_changes() {
    let mut c = cluster(5);
    c.run_for(2_500);
    for _ in 0..3 {
        let (old, _) = c.sole_leader();
        c.crash(old);
        c.run_for(2_500);
        c.restart(old);
        c.run_for(1_500);
    }
    let mut epochs = std::collections::BTreeSet::new();
    for i in 0..5 {
        let chain = &c.nodes[i].chain;
        let mut last = Zxid::GENESIS;
        for h in 1..=c.height(i) {
            let hash = chain.best_hash_at(Height(h)).expect("store").expect("held");
            let header = chain.header(&hash).expect("store").expect("held");
            let z = Zxid::of_header(&header).expect("a zxid");
            assert!(z > last, "server {i}: {z} after {last} at height {h}");
            epochs.insert(z.epoch);
            last = z;
        }
        c.assert_chain_is_decided(i);
    }
    assert!(epochs.len() >= 3, "blocks of several primaries: {epochs:?}");
}

/// Restart (the TLA+ spec's persisted `acceptedEpoch`, `currentEpoch`, `history`): a server
/// restored from its persisted bytes has its epochs and its uncommitted proposals back, and
/// elects with them.
#[test]
fn a_restart_restores_the_epochs_and_the_uncommitted_history() {
    let ks = keys(3);
    let mut s = Server::new(3, 0, None);
    s.follow(2, &[2], 3);
    let p = proposal(&ks[2], genesis().hash(), 1, zxid(3, 1));
    let out = s
        .from(
            2,
            Body::Propose {
                epoch: 3,
                proposal: p.clone(),
            },
        )
        .expect("proposal");
    let Some(VoteOutput::Persist(bytes)) = out.first() else {
        panic!("persisted before the ack: {out:?}");
    };
    let state = PersistedState::decode(bytes).expect("decodes");
    assert_eq!(
        (
            state.accepted_epoch,
            state.current_epoch,
            state.proposals.clone()
        ),
        (3, 3, vec![p.clone()])
    );
    let mut restarted = Server::new(3, 0, Some(state));
    assert_eq!(restarted.machine.accepted_epoch(), 3);
    assert_eq!(restarted.machine.current_epoch(), 3);
    assert_eq!(restarted.machine.history(), &[p]);
    assert_eq!(
        restarted.machine.vote(),
        restarted.vote_for(0, zxid(3, 1), 3),
        "it stands with its last zxid and epoch"
    );
    let _ = restarted.timeout(TIMER_ELECTION);
    assert!(
        PersistedState::decode(&[1, 2, 3]).is_err(),
        "unreadable bytes are refused"
    );
}

/// Every single-byte corruption of a valid NEWLEADER (with a block and a certificate) is
/// either refused or harmless: no panic, and a refusal never blames a missing store.
#[test]
fn corrupted_messages_are_refused_without_panicking() {
    let ks = keys(3);
    let p = proposal(&ks[2], genesis().hash(), 1, zxid(1, 1));
    let certificate = certify(&[&ks[1], &ks[2]], &p.block, 1);
    let body = Body::NewLeader {
        to: ks[0].address(),
        epoch: 1,
        proposals: vec![p],
        certificates: vec![(Height(1), certificate)],
        last_zxid: zxid(1, 1),
    };
    let good = Envelope::seal(body, &ks[2]).encode();
    crate::cluster::assert_corruptions_refused(&good, 20, |bytes| {
        let mut s = Server::new(3, 0, None);
        s.looking(2, s.vote_for(2, Zxid::GENESIS, 0)).expect("vote");
        s.timeout(TIMER_FINALIZE);
        let to = s.addr(0);
        s.from(2, Body::NewEpoch { to, epoch: 1 })
            .expect("newepoch");
        s.input(VoteInput::Message(bytes))
    });
}

/// Forged, foreign, malformed and oversized messages are rejected, naming the problem.
#[test]
fn forged_foreign_malformed_and_oversized_messages_are_rejected() {
    let ks = keys(3);
    let mut s = Server::new(3, 0, None);
    let body = Body::Notification {
        round: 1,
        state: PeerState::Looking,
        vote: s.vote_for(1, Zxid::GENESIS, 0),
    };
    // Forged: server 1's key, signed by server 2.
    let mut forged = Envelope::seal(body.clone(), &ks[2]);
    forged.sender = ks[1].public_key();
    let err = zab_error(s.input(VoteInput::Message(forged.encode())));
    assert!(
        matches!(err, ZabError::BadMessageSignature { sender, .. } if sender == ks[1].address()),
        "{err}"
    );
    // From a key that is no server.
    let outsider = SecretKey::from_seed("not a zab server");
    let bytes = Envelope::seal(body.clone(), &outsider).encode();
    assert_eq!(
        zab_error(s.input(VoteInput::Message(bytes))),
        ZabError::SenderNotServer {
            sender: outsider.address()
        }
    );
    // Garbage, and a message over the size limit, refused before anything is read.
    let err = zab_error(s.input(VoteInput::Message(vec![7; 9])));
    assert!(matches!(err, ZabError::Codec(_)), "{err}");
    let err = zab_error(s.input(VoteInput::Message(vec![
        0;
        miner::zab::MAX_MESSAGE_BYTES + 1
    ])));
    assert!(matches!(err, ZabError::Codec(_)), "{err}");
    // A NEWLEADER with more proposals than any leader sends.
    s.follow(2, &[2], 1);
    let p = proposal(&ks[2], genesis().hash(), 1, zxid(1, 1));
    let too_many = vec![p; miner::zab::MAX_PROPOSALS_PER_SYNC + 1];
    let err = zab_error(s.from(
        2,
        Body::NewLeader {
            to: ks[0].address(),
            epoch: 1,
            proposals: too_many,
            certificates: Vec::new(),
            last_zxid: zxid(1, 1),
        },
    ));
    assert!(
        matches!(
            err,
            ZabError::MalformedMessage {
                what: "newleader",
                ..
            }
        ),
        "{err}"
    );
    // A proposal whose block carries another zxid than it claims.
    let mut lying = proposal(&ks[2], genesis().hash(), 1, zxid(1, 1));
    lying.zxid = zxid(1, 5);
    let err = zab_error(s.from(
        2,
        Body::Propose {
            epoch: 1,
            proposal: lying,
        },
    ));
    assert!(
        matches!(
            err,
            ZabError::MalformedMessage {
                what: "proposal",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn params_are_validated_naming_the_field() {
    let ks = keys(3);
    let good = params(&ks);
    good.validate().expect("the devnet params are valid");
    type Breaks = (&'static str, fn(&mut ZabParams));
    let cases: [Breaks; 6] = [
        ("servers", |p| p.servers.clear()),
        ("servers", |p| {
            let first = p.servers[0];
            p.servers.push(first);
        }),
        ("block_time", |p| p.block_time = 0),
        ("tick_ms", |p| p.tick_ms = 0),
        ("election_wait_ms", |p| p.election_wait_ms = 0),
        ("sync_limit_ms", |p| p.sync_limit_ms = 2 * p.tick_ms),
    ];
    for (field, break_it) in cases {
        let mut p = good.clone();
        break_it(&mut p);
        match p.validate() {
            Err(ZabError::InvalidParams { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
        assert!(ZabEngine::new(p).is_err(), "{field}");
    }
}

fn certificate_error(chain: &mut chain::Chain, block: &Block, certificate: Vec<u8>) -> ZabError {
    crate::cluster::import_refusal(chain, block, certificate)
}

/// A certificate is ⌊N/2⌋+1 distinct servers' valid signatures over this block at this
/// height on this parent, in one epoch no earlier than the block's: forged, short,
/// duplicated, foreign, early or borrowed ones are refused, naming the problem.
#[test]
fn certificates_forged_short_duplicated_foreign_or_for_another_block_are_refused() {
    use miner::quorum::QuorumError;
    let mut c = cluster(3);
    c.run_for(3_000);
    let at = |h: u64| {
        let (block, certificate) = c.decided_at(h);
        (block, Certificate::decode(&certificate).expect("decodes"))
    };
    let (first, good) = at(1);
    let (_, second) = at(2);
    assert_eq!(good.signatures.len(), 2, "two of three");
    let mut fresh = c.fresh_chain();
    let quorum = |e: ZabError| match e {
        ZabError::Certificate { source, .. } => source,
        other => panic!("not a certificate refusal: {other}"),
    };

    let mut forged = good.clone();
    forged.signatures[1].signature.0[10] ^= 1;
    let err = quorum(certificate_error(&mut fresh, &first, forged.encode()));
    assert!(matches!(err, QuorumError::BadSignature { .. }), "{err}");

    let mut short = good.clone();
    short.signatures.pop();
    let err = quorum(certificate_error(&mut fresh, &first, short.encode()));
    assert_eq!(
        err,
        QuorumError::TooFewSigners {
            got: 1,
            needed: 2,
            voters: 3
        }
    );

    let mut duplicated = short.clone();
    duplicated.signatures.push(duplicated.signatures[0]);
    let err = quorum(certificate_error(&mut fresh, &first, duplicated.encode()));
    assert!(matches!(err, QuorumError::DuplicateSigner { .. }), "{err}");

    let outsider = SecretKey::from_seed("not a zab server");
    let mut foreign = short.clone();
    foreign
        .signatures
        .push(VoteSignature::sign(ENGINE_NAME, &good.body, &outsider));
    let err = quorum(certificate_error(&mut fresh, &first, foreign.encode()));
    assert_eq!(
        err,
        QuorumError::NotAVoter {
            signer: outsider.address()
        }
    );

    // The acks of block 2 prove nothing about block 1.
    let err = quorum(certificate_error(&mut fresh, &first, second.encode()));
    assert!(matches!(err, QuorumError::WrongVote { .. }), "{err}");

    // Acks in an epoch before the block's own.
    let block_epoch = Zxid::of_header(&first.header).expect("zxid").epoch;
    let mut early_body = good.body;
    early_body.view = block_epoch - 1;
    let early = Certificate::new(
        early_body,
        c.nodes
            .iter()
            .map(|n| VoteSignature::sign(ENGINE_NAME, &early_body, &n.key))
            .collect(),
    );
    let err = certificate_error(&mut fresh, &first, early.encode());
    assert!(matches!(err, ZabError::CertificateEpoch { .. }), "{err}");

    let err = quorum(certificate_error(&mut fresh, &first, vec![1, 2, 3]));
    assert!(matches!(err, QuorumError::Codec(_)), "{err}");
    assert_eq!(fresh.head().height().0, 0, "nothing was imported");
    assert!(matches!(
        fresh.import_certified(first, good.encode()),
        Ok(chain::ImportOutcome::NewHead(_))
    ));
}

/// A block on `chain`'s head built and sealed by `key` with `zxid`.
fn build_on(chain: &chain::Chain, key: &SecretKey, zxid: Zxid) -> Block {
    crate::cluster::build_on(chain, key, zxid.encode())
}

/// Even with a certificate, a block must be sealed by a server, with a zxid above its
/// parent's, without PoW fields.
#[test]
fn blocks_by_outsiders_out_of_zxid_order_or_with_pow_fields_are_refused() {
    let servers = keys(3);
    let engine = Arc::new(ZabEngine::new(params(&servers)).expect("valid params"));
    let (mut chain, _clock) = crate::support::engine_chain(engine, &[], GENESIS_TIME + 1_000_000);
    let z = zxid(1, 1);
    let certified = |b: &Block| certify(&[&servers[0], &servers[1]], b, 1);
    let outsider = SecretKey::from_seed("not a zab server");
    let mut by_outsider = build_on(&chain, &servers[0], z);
    by_outsider.header.producer = outsider.address();
    by_outsider.header = miner::seal::sign_header(by_outsider.header, &outsider);
    let err = certificate_error(&mut chain, &by_outsider, certified(&by_outsider));
    assert_eq!(
        err,
        ZabError::NotServer {
            height: Height(1),
            producer: outsider.address()
        }
    );
    let at_genesis = build_on(&chain, &servers[0], Zxid::GENESIS);
    let err = certificate_error(&mut chain, &at_genesis, certified(&at_genesis));
    assert!(matches!(err, ZabError::ZxidOrder { .. }), "{err}");
    let mut mined = build_on(&chain, &servers[0], z);
    mined.header.engine.nonce = 7;
    mined.header = miner::seal::sign_header(mined.header, &servers[0]);
    let err = certificate_error(&mut chain, &mined, certified(&mined));
    assert_eq!(err, ZabError::UnexpectedFields { bits: 0, nonce: 7 });

    let good = build_on(&chain, &servers[0], z);
    assert!(chain.import_certified(good.clone(), Vec::new()).is_err());
    assert!(matches!(
        chain.import_certified(good, certified(&build_on(&chain, &servers[0], z))),
        Ok(chain::ImportOutcome::NewHead(_))
    ));
}

/// A follower further behind than the leader's committed window cannot be brought up from
/// the history: the leader sends it PINGs only (no storm of NEWLEADERs), and once its node
/// has synced the certified blocks it joins and commits with the others.
#[test]
fn n3_follower_past_the_window_catches_up_by_syncing_certified_blocks() {
    let mut c = cluster(3);
    c.run_for(2_000);
    let (leader, epoch) = c.sole_leader();
    let follower = (leader + 1) % 3;
    c.crash(follower);
    c.run_for((miner::zab::COMMITTED_WINDOW as u64 + 10) * 1000);
    c.restart(follower);
    c.run_for(1_000);
    let sent = c.sent;
    c.run_for(1_000);
    // 20 PINGs a second, the two followers' answers, one block's proposal, acks and commit.
    assert!(
        c.sent - sent < 100,
        "{} messages in a second",
        c.sent - sent
    );
    let behind = c.height(follower);
    assert!(c.height(leader) > behind + miner::zab::COMMITTED_WINDOW as u64 / 2);
    c.sync(follower, leader);
    c.run_for(2_000);
    assert_eq!(
        c.nodes[follower].chain.head().hash(),
        c.nodes[leader].chain.head().hash()
    );
    c.assert_chain_is_decided(follower);
    assert_eq!(c.sole_leader(), (leader, epoch));
}

/// Steady state, as the family table counts it: per committed block one PROPOSAL and one
/// COMMIT (each a single broadcast), N−1 ACKs, plus a PING every tick with N−1 answers.
#[test]
fn steady_state_costs_a_proposal_n_minus_1_acks_and_a_commit_per_block() {
    for n in [3, 5] {
        let mut c = cluster(n);
        c.run_for(3_000);
        let (from, sent) = (c.height(0), c.sent);
        c.run_for(10_000);
        let blocks = c.height(0) - from;
        let messages = c.sent - sent;
        // Ticks of 50 ms: 20 a second, each a PING and n−1 answers.
        let pings = 10 * 20 * n as u64;
        let per_block = (messages - pings) as f64 / blocks as f64;
        eprintln!(
            "n={n}: {blocks} blocks, {messages} messages, {per_block:.1} a block besides PINGs"
        );
        assert!(blocks >= 9, "n={n}: {blocks}");
        let expected = (n + 1) as f64;
        assert!(
            (per_block - expected).abs() <= 1.0,
            "n={n}: {per_block:.1} messages a block, expected about {expected}"
        );
    }
}

/// Signed messages from a server carrying the largest numbers (rounds, epochs, heights,
/// zxids) in every phase change no arithmetic into a panic.
#[test]
fn extreme_values_in_signed_messages_never_panic() {
    let ks = keys(3);
    let max = u64::MAX;
    let top = Zxid {
        epoch: max,
        counter: max,
    };
    let far = proposal(&ks[2], BlockHash([9; 32]), max, top);
    // Each with the largest epoch, and with epoch 1 (the epoch of the states below), so
    // the checks behind the epoch's are reached too.
    let bodies = |to: Address, epoch: u64| {
        vec![
            Body::Notification {
                round: max,
                state: PeerState::Looking,
                vote: Vote {
                    leader: ks[2].address(),
                    zxid: top,
                    epoch: max,
                },
            },
            Body::FollowerInfo {
                to,
                accepted_epoch: max,
            },
            Body::NewEpoch { to, epoch },
            Body::AckEpoch {
                to,
                epoch,
                current_epoch: max,
                last_zxid: top,
                committed: Height(max),
            },
            Body::NewLeader {
                to,
                epoch,
                proposals: vec![far.clone()],
                certificates: vec![(Height(max), vec![0; 8])],
                last_zxid: top,
            },
            Body::AckNewLeader {
                to,
                epoch,
                last_zxid: top,
                acks: vec![signed_ack(&ks[2], &far.block, max)],
            },
            Body::Propose {
                epoch,
                proposal: far.clone(),
            },
            Body::Ack {
                to,
                epoch,
                ack: signed_ack(&ks[2], &far.block, max),
            },
            Body::Commit {
                epoch,
                height: Height(max),
                certificate: vec![1; 4],
            },
            Body::Ping { epoch },
            Body::PingAck {
                to,
                epoch,
                last_zxid: top,
                committed: Height(max),
                acks: vec![signed_ack(&ks[2], &far.block, epoch)],
            },
        ]
    };
    let states: [fn() -> Server; 4] = [
        || Server::new(3, 0, None),
        || {
            let mut s = Server::new(3, 0, None);
            s.follow(2, &[2], 1);
            s
        },
        || {
            let mut s = Server::new(3, 1, None);
            s.lead(&[0]);
            s
        },
        || {
            let mut s = Server::new(3, 1, None);
            let vote = s.machine.vote();
            s.looking(0, vote).expect("vote");
            s.timeout(TIMER_FINALIZE);
            s
        },
    ];
    for (k, make) in states.iter().enumerate() {
        for sender in [0, 2] {
            let template = make();
            let to = template.addr(template.me);
            for body in bodies(to, max).into_iter().chain(bodies(to, 1)) {
                let mut s = make();
                if s.me == sender {
                    continue;
                }
                let name = body.name();
                let _ = s.from(sender, body);
                for id in [TIMER_PING, TIMER_QUORUM, TIMER_BUILD, TIMER_LEADER] {
                    let _ = s.input(VoteInput::Timeout(id));
                }
                let _ = s.machine.status();
                assert!(
                    s.machine.persisted().encode().len() < 1 << 20,
                    "state {k} {name}"
                );
            }
        }
    }
}

/// A follower may have committed a proposal whose COMMIT never reached the server elected
/// next (Medeiros 2012: the new leader holds every committed proposal, not necessarily
/// knowing it is committed). The new leader sends its history from its own commit point,
/// and the follower acks what it already committed, so the leader commits it with the
/// follower's acks alone: two of three servers suffice.
#[test]
fn a_follower_that_committed_more_than_the_new_leader_acks_it_in_the_new_epoch() {
    let ks = keys(3);
    let mut s = Server::new(3, 0, None);
    s.follow(2, &[2], 1);
    let p = proposal(&ks[2], genesis().hash(), 1, zxid(1, 1));
    s.from(
        2,
        Body::Propose {
            epoch: 1,
            proposal: p.clone(),
        },
    )
    .expect("proposal");
    let certificate = certify(&[&ks[0], &ks[2]], &p.block, 1);
    let out = s
        .from(
            2,
            Body::Commit {
                epoch: 1,
                height: Height(1),
                certificate,
            },
        )
        .expect("commit");
    assert_eq!(commits(&out), vec![p.block.clone()]);
    // The leader is gone; server 1 (which holds the proposal, uncommitted) is elected.
    s.timeout(TIMER_LEADER);
    let vote = s.vote_for(1, zxid(1, 1), 1);
    s.looking(1, vote).expect("notification");
    s.timeout(TIMER_FINALIZE);
    assert_eq!(s.machine.leader(), Some(s.addr(1)));
    let to = s.addr(0);
    let out = s
        .from(1, Body::NewEpoch { to, epoch: 2 })
        .expect("newepoch");
    assert!(bodies(&out).contains(&Body::AckEpoch {
        to: s.addr(1),
        epoch: 2,
        current_epoch: 1,
        last_zxid: zxid(1, 1),
        committed: Height(1)
    }));
    let out = s
        .from(
            1,
            Body::NewLeader {
                to,
                epoch: 2,
                proposals: vec![p.clone()],
                certificates: Vec::new(),
                last_zxid: zxid(1, 1),
            },
        )
        .expect("newleader");
    assert_eq!(
        bodies(&out),
        vec![Body::AckNewLeader {
            to: s.addr(1),
            epoch: 2,
            last_zxid: zxid(1, 1),
            acks: vec![signed_ack(&ks[0], &p.block, 2)],
        }]
    );

    // The leader's side: it sends from its own commit point, and commits with that ack.
    let persisted = PersistedState {
        accepted_epoch: 1,
        accepted_leader: Some(ks[2].address()),
        current_epoch: 1,
        base: None,
        proposals: vec![p.clone()],
    };
    let mut l = Server::new(3, 1, Some(persisted));
    let vote = l.machine.vote();
    l.looking(0, vote).expect("notification");
    l.timeout(TIMER_FINALIZE);
    let to = l.addr(1);
    l.from(
        0,
        Body::FollowerInfo {
            to,
            accepted_epoch: 1,
        },
    )
    .expect("followerinfo");
    let out = l
        .from(
            0,
            Body::AckEpoch {
                to,
                epoch: 2,
                current_epoch: 1,
                last_zxid: zxid(1, 1),
                committed: Height(1),
            },
        )
        .expect("ackepoch");
    assert!(matches!(
        bodies(&out).as_slice(),
        [Body::NewLeader { proposals, .. }] if proposals == &vec![p.clone()]
    ));
    let out = l
        .from(
            0,
            Body::AckNewLeader {
                to,
                epoch: 2,
                last_zxid: zxid(1, 1),
                acks: vec![signed_ack(&ks[0], &p.block, 2)],
            },
        )
        .expect("ack of newleader");
    assert_eq!(commits(&out), vec![p.block]);
    assert_eq!(l.machine.phase(), Phase::Broadcast);
}
