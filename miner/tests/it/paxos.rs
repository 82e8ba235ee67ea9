//! Multi-Paxos: conformance cases on the pure machine, each citing its source (a section
//! of "Paxos Made Simple" (PMS), or an invariant or action of Lamport's `Paxos.tla` from
//! the tlaplus/Examples repository: `Phase1b`, `Phase2a`, `Phase2b`, `Consistency`);
//! refusals of bad messages, blocks and certificates; and the named multi-server runs of
//! Raft's suite in the shared deterministic cluster (virtual time, real chains, droppable
//! links).

use crate::cluster::{Cluster as Harness, LATENCY_MS, Rng};
use crate::support::{GENESIS_TIME, engine_chain};
use chain::block::HEADER_VERSION;
use chain::{
    Address, Block, BlockError, BlockHash, Chain, ChainView, ConsensusEngine, EngineError,
    EngineFields, Hash256, Header, Height, SealedHeader, SecretKey, Timestamp, VoteInput,
    VoteOutput, VotingMachine,
};
use miner::paxos::wire::{
    Ballot, BlockData, Body, Envelope, PersistedState, Proposal, accepted_vote,
};
use miner::paxos::{
    MAX_MESSAGE_BYTES, PaxosEngine, PaxosError, PaxosMachine, PaxosParams, Role, TIMER_BUILD,
    TIMER_ELECTION, TIMER_HEARTBEAT,
};
use miner::quorum::{Certificate, QuorumError, VoteSignature};
use std::collections::BTreeMap;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// The pure machines, wired by hand: each message is delivered when and where a case says.
// ---------------------------------------------------------------------------------------

/// `n` server keys in address order, so server `i` has ballot index `i`.
fn keys(n: usize) -> Vec<SecretKey> {
    let mut keys: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_seed(&format!("paxos server {i}")))
        .collect();
    keys.sort_by_key(SecretKey::address);
    keys
}

fn params(keys: &[SecretKey]) -> PaxosParams {
    PaxosParams::devnet(keys.iter().map(SecretKey::address).collect())
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

/// A block sealed by `key` at `height` on `parent` with engine data `data`; `salt` makes
/// two blocks of one slot differ.
fn block_with(key: &SecretKey, parent: BlockHash, height: u64, data: Vec<u8>, salt: u64) -> Block {
    let header = Header {
        version: HEADER_VERSION,
        parent,
        height: Height(height),
        timestamp: Timestamp(GENESIS_TIME + height + salt),
        tx_root: Hash256::ZERO,
        state_root: Hash256::ZERO,
        producer: key.address(),
        engine: EngineFields {
            data,
            ..EngineFields::default()
        },
    };
    Block {
        header: miner::seal::sign_header(header, key),
        txs: Vec::new(),
    }
}

/// A block on genesis built by `key` in `ballot`.
fn first_block(key: &SecretKey, ballot: Ballot, salt: u64) -> Block {
    block_with(
        key,
        genesis().hash(),
        1,
        BlockData { ballot }.encode(),
        salt,
    )
}

/// A message on its way.
#[derive(Clone, Debug)]
struct Sent {
    from: usize,
    bytes: Vec<u8>,
    body: Body,
}

/// `n` machines at genesis. Builds are answered at once with a block on the asking
/// server's head; commits move that server's head (and the case's record of decisions,
/// which fails at once on two blocks at one height).
struct Lab {
    keys: Vec<SecretKey>,
    machines: Vec<PaxosMachine>,
    heads: Vec<SealedHeader>,
    persisted: Vec<Option<Vec<u8>>>,
    decided: BTreeMap<Height, BlockHash>,
    now: u64,
    builds: u64,
}

impl Lab {
    fn new(n: usize) -> Lab {
        let keys = keys(n);
        let mut lab = Lab {
            machines: (0..n)
                .map(|i| PaxosMachine::new(params(&keys), Some(keys[i].clone()), None))
                .collect(),
            keys,
            heads: vec![genesis(); n],
            persisted: vec![None; n],
            decided: BTreeMap::new(),
            now: 1_000,
            builds: 0,
        };
        for i in 0..n {
            lab.run(i, lab.head_input(i));
        }
        lab
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn head_input(&self, i: usize) -> VoteInput {
        VoteInput::Head {
            head: self.heads[i].clone(),
            voters: Vec::new(),
        }
    }

    /// Restarts server `i` from what it persisted (its head is kept: the chain's).
    fn restart(&mut self, i: usize) {
        let persisted = self.persisted[i]
            .as_deref()
            .map(|b| PersistedState::decode(b).expect("decodes"));
        self.machines[i] =
            PaxosMachine::new(params(&self.keys), Some(self.keys[i].clone()), persisted);
        self.run(i, self.head_input(i));
    }

    fn try_run(&mut self, i: usize, input: VoteInput) -> Result<Vec<Sent>, EngineError> {
        self.now += 1;
        let mut sent = Vec::new();
        let mut inputs = std::collections::VecDeque::from([input]);
        let mut first = true;
        while let Some(input) = inputs.pop_front() {
            let outputs = match self.machines[i].handle(self.now, input) {
                Ok(outputs) => outputs,
                Err(e) if first => return Err(e),
                Err(_) => continue,
            };
            first = false;
            for output in outputs {
                match output {
                    VoteOutput::Persist(bytes) => self.persisted[i] = Some(bytes),
                    VoteOutput::Broadcast(bytes) => {
                        let body = Envelope::decode(&bytes).expect("decodes").body;
                        sent.push(Sent {
                            from: i,
                            bytes,
                            body,
                        });
                    }
                    VoteOutput::Build { parent, data, .. } => {
                        assert_eq!(parent, self.heads[i].hash(), "built on the head");
                        self.builds += 1;
                        let height = self.heads[i].height().0 + 1;
                        let block = block_with(&self.keys[i], parent, height, data, self.builds);
                        inputs.push_back(VoteInput::Built(Box::new(block)));
                    }
                    VoteOutput::Commit { block, .. } => {
                        let (height, hash) = (block.header.height, block.hash());
                        assert_eq!(block.header.parent, self.heads[i].hash(), "server {i}");
                        let decided = *self.decided.entry(height).or_insert(hash);
                        assert_eq!(decided, hash, "two blocks decided at height {height}");
                        self.heads[i] = SealedHeader::new(block.header.clone());
                        inputs.push_back(self.head_input(i));
                    }
                    VoteOutput::SetTimer { .. } | VoteOutput::CancelTimer(_) => {}
                    VoteOutput::Validate(_) => panic!("paxos asks for no validation"),
                }
            }
        }
        Ok(sent)
    }

    /// Runs an input that must not be refused (an ignored one gives nothing).
    fn run(&mut self, i: usize, input: VoteInput) -> Vec<Sent> {
        match self.try_run(i, input) {
            Ok(sent) => sent,
            Err(EngineError::Ignored { .. }) => Vec::new(),
            Err(e) => panic!("server {i} refused an honest input: {e}"),
        }
    }

    fn timeout(&mut self, i: usize, id: chain::TimerId) -> Vec<Sent> {
        self.run(i, VoteInput::Timeout(id))
    }

    /// Delivers `message` to server `to`; returns what `to` sends in answer.
    fn deliver(&mut self, message: &Sent, to: usize) -> Vec<Sent> {
        if message.from == to {
            return Vec::new();
        }
        self.run(to, VoteInput::Message(message.bytes.clone()))
    }

    /// Delivers every message in `messages` to every server in `to`, and everything sent in
    /// answer likewise, until nothing more is sent (a reliable network among `to`).
    /// Returns every message exchanged.
    fn settle(&mut self, messages: Vec<Sent>, to: &[usize]) -> Vec<Sent> {
        let mut queue = std::collections::VecDeque::from(messages);
        let mut exchanged = Vec::new();
        while let Some(message) = queue.pop_front() {
            assert!(exchanged.len() < 10_000, "the exchange never settles");
            if !to.contains(&message.from) {
                continue;
            }
            for &j in to {
                queue.extend(self.deliver(&message, j));
            }
            exchanged.push(message);
        }
        exchanged
    }

    /// A message from server `from` (signed with its key), to server `to`.
    fn from(&mut self, from: usize, to: usize, body: Body) -> Result<Vec<Sent>, EngineError> {
        let bytes = Envelope::seal(body, &self.keys[from]).encode();
        self.try_run(to, VoteInput::Message(bytes))
    }

    fn role(&self, i: usize) -> Role {
        self.machines[i].role()
    }

    fn height(&self, i: usize) -> u64 {
        self.heads[i].height().0
    }
}

/// The bodies among `sent`, by kind name.
fn kinds(sent: &[Sent]) -> Vec<&'static str> {
    sent.iter().map(|s| s.body.name()).collect()
}

fn paxos_error(result: Result<Vec<Sent>, EngineError>) -> PaxosError {
    match result {
        Err(e) => e
            .downcast_ref::<PaxosError>()
            .cloned()
            .unwrap_or_else(|| panic!("not a paxos refusal: {e}")),
        Ok(out) => panic!("expected a refusal, got {out:?}"),
    }
}

/// Makes server `i` lead: it times out and every other server promises.
fn elect(lab: &mut Lab, i: usize) -> Ballot {
    let prepare = lab.timeout(i, TIMER_ELECTION);
    assert_eq!(kinds(&prepare), ["prepare"]);
    let n = lab.machines.len();
    for j in (0..n).filter(|j| *j != i) {
        for promise in lab.deliver(&prepare[0], j) {
            lab.deliver(&promise, i);
        }
    }
    assert_eq!(lab.role(i), Role::Leader);
    lab.machines[i].ballot()
}

/// PMS §2.2, phase 1(b); `Paxos.tla` `Phase1b` (an acceptor answers a prepare only when
/// `b > maxBal[a]`, and its promise carries `maxVBal[a]` and `maxVal[a]`): a promise is
/// persisted before it is sent, carries what was accepted with its ballot, and a lower
/// ballot is refused with a Nack naming the promise.
#[test]
fn phase_1b_a_promise_refuses_lower_ballots() {
    let mut lab = Lab::new(3);
    let acceptor = 2;
    let high = Ballot::new(2, 1);
    let ask = |lab: &mut Lab, ballot: Ballot| {
        let from = usize::from(ballot.proposer());
        let sent = lab
            .from(
                from,
                acceptor,
                Body::Prepare {
                    ballot,
                    decided: Height(0),
                },
            )
            .expect("answered");
        assert_eq!(sent.len(), 1);
        sent[0].body.clone()
    };
    let answer = ask(&mut lab, high);
    assert!(
        matches!(&answer, Body::Promise { ballot, accepted, .. } if *ballot == high && accepted.is_empty()),
        "{answer:?}"
    );
    let persisted = PersistedState::decode(lab.persisted[acceptor].as_ref().expect("persisted"))
        .expect("decodes");
    assert_eq!(
        persisted.promised, high,
        "the promise is on disk before it is sent"
    );
    // Lower ballots: one of a lower round, and one of the same round by a lower index.
    for low in [Ballot::new(1, 0), Ballot::new(2, 0)] {
        let answer = ask(&mut lab, low);
        assert_eq!(
            answer,
            Body::Nack {
                to: lab.addr(usize::from(low.proposer())),
                ballot: low,
                promised: high
            }
        );
    }
    assert_eq!(
        lab.machines[acceptor].promised(),
        high,
        "a refusal changes nothing"
    );
    // An accepted value comes back in the next promise, with its ballot.
    let x = first_block(&lab.keys[1], high, 0);
    let accepted = lab
        .from(
            1,
            acceptor,
            Body::Accept {
                ballot: high,
                decided: Height(0),
                block: x.clone(),
            },
        )
        .expect("accepted");
    assert_eq!(kinds(&accepted), ["accepted"]);
    // Past the lease the Accept gave server 1, a higher ballot is promised.
    lab.now += 10_000;
    let higher = Ballot::new(3, 0);
    let answer = ask(&mut lab, higher);
    assert_eq!(
        answer,
        Body::Promise {
            to: lab.addr(0),
            ballot: higher,
            decided: Height(0),
            accepted: vec![Proposal {
                ballot: high,
                block: x
            }],
        }
    );
}

/// PMS §2.2, phase 2(b); `Paxos.tla` `Phase2b` (an acceptor accepts a 2a message only
/// when `maxBal[a] ≤ m.bal`): a lower ballot's Accept is refused and leaves nothing
/// accepted; one at the promise is accepted, persisted and answered with a signed vote;
/// a higher one raises the promise.
#[test]
fn phase_2b_an_acceptor_accepts_only_at_or_above_its_promise() {
    let mut lab = Lab::new(3);
    let acceptor = 0;
    let promised = Ballot::new(2, 1);
    lab.from(
        1,
        acceptor,
        Body::Prepare {
            ballot: promised,
            decided: Height(0),
        },
    )
    .expect("promised");

    let low = Ballot::new(1, 2);
    let early = first_block(&lab.keys[2], low, 0);
    let answer = lab
        .from(
            2,
            acceptor,
            Body::Accept {
                ballot: low,
                decided: Height(0),
                block: early,
            },
        )
        .expect("answered");
    assert_eq!(
        answer[0].body,
        Body::Nack {
            to: lab.addr(2),
            ballot: low,
            promised
        }
    );
    assert_eq!(lab.machines[acceptor].accepted(Height(1)), None);

    let x = first_block(&lab.keys[1], promised, 0);
    let answer = lab
        .from(
            1,
            acceptor,
            Body::Accept {
                ballot: promised,
                decided: Height(0),
                block: x.clone(),
            },
        )
        .expect("answered");
    let Body::Accepted {
        to,
        ballot,
        height,
        parent,
        hash,
        signature,
    } = answer[0].body.clone()
    else {
        panic!("{answer:?}");
    };
    assert_eq!(
        (to, ballot, height, hash),
        (lab.addr(1), promised, Height(1), x.hash())
    );
    let vote = VoteSignature {
        key: lab.keys[acceptor].public_key(),
        signature,
    };
    assert_eq!(
        vote.verify("paxos", &accepted_vote(ballot, height, parent, hash)),
        Ok(lab.addr(acceptor)),
        "the vote signs the block at its slot in the ballot"
    );
    let persisted = PersistedState::decode(lab.persisted[acceptor].as_ref().expect("persisted"))
        .expect("decodes");
    assert_eq!(
        persisted.accepted,
        vec![Proposal {
            ballot: promised,
            block: x
        }]
    );

    let higher = Ballot::new(4, 2);
    let y = first_block(&lab.keys[2], higher, 1);
    let answer = lab
        .from(
            2,
            acceptor,
            Body::Accept {
                ballot: higher,
                decided: Height(0),
                block: y.clone(),
            },
        )
        .expect("answered");
    assert_eq!(kinds(&answer), ["accepted"]);
    assert_eq!(lab.machines[acceptor].promised(), higher);
    assert_eq!(
        lab.machines[acceptor].accepted(Height(1)),
        Some(&Proposal {
            ballot: higher,
            block: y
        })
    );
}

/// PMS §2.2 (P2c) and §3; `Paxos.tla` `Phase2a` (the value proposed in ballot `b` is the
/// one of the highest `mbal` among a quorum's 1b messages): a new leader re-proposes, for
/// the open slot, the value accepted in the highest ballot among the promises, before it
/// asks for any new block.
#[test]
fn a_new_leader_re_proposes_the_highest_ballot_accepted_value() {
    let (b1, b2) = (Ballot::new(1, 1), Ballot::new(2, 2));
    let mut lab = Lab::new(3);
    let y = first_block(&lab.keys[2], b2, 1);
    lab.from(
        2,
        0,
        Body::Prepare {
            ballot: b2,
            decided: Height(0),
        },
    )
    .expect("promised");
    // Server 0 itself accepted y in 2.2, and server 1 offers x of 1.1.
    lab.from(
        2,
        0,
        Body::Accept {
            ballot: b2,
            decided: Height(0),
            block: y.clone(),
        },
    )
    .expect("accepted");
    // Server 0 has seen ballot 2.2, so its own goes above it.
    lab.timeout(0, TIMER_ELECTION);
    let ballot = lab.machines[0].ballot();
    assert_eq!(ballot, Ballot::new(3, 0), "above every ballot seen");
    let x = first_block(&lab.keys[1], b1, 0);
    let promise = Body::Promise {
        to: lab.addr(0),
        ballot,
        decided: Height(0),
        accepted: vec![Proposal {
            ballot: b1,
            block: x,
        }],
    };
    let sent = lab.from(1, 0, promise).expect("promise");
    assert_eq!(lab.role(0), Role::Leader);
    let proposed: Vec<Block> = sent
        .iter()
        .filter_map(|s| match &s.body {
            Body::Accept { block, .. } => Some(block.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        proposed,
        vec![y.clone()],
        "the value of ballot 2.2, not of 1.1"
    );
    assert_eq!(
        lab.builds, 0,
        "no new block before the open slot is decided"
    );
    let accepted = lab.deliver(
        &sent
            .iter()
            .find(|s| s.body.name() == "accept")
            .cloned()
            .expect("accept"),
        1,
    );
    for a in accepted {
        lab.deliver(&a, 0);
    }
    assert_eq!(lab.decided.get(&Height(1)), Some(&y.hash()));
    assert_eq!(lab.height(0), 1);
    // Only now does the leader's block clock ask for a new block.
    lab.timeout(0, TIMER_BUILD);
    assert_eq!(lab.builds, 1);
}

/// PMS §2.2 (P2c: if a value is chosen in ballot `b`, every higher ballot proposes it);
/// `Paxos.tla`'s `Consistency` (at most one value chosen): a block chosen in one ballot
/// by servers 0 and 1 is the value every later leader decides, whichever of the two is in
/// its majority.
#[test]
fn p2c_a_value_chosen_in_one_ballot_is_the_only_value_later_ballots_can_choose() {
    for witness in [0, 1] {
        let mut lab = Lab::new(3);
        elect(&mut lab, 0);
        // Server 0 proposes a block; only server 1 hears the Accept: chosen by {0, 1}.
        let sent = lab.timeout(0, TIMER_BUILD);
        let accept = sent
            .into_iter()
            .find(|s| s.body.name() == "accept")
            .expect("accept");
        let Body::Accept { block: chosen, .. } = accept.body.clone() else {
            unreachable!("found by name")
        };
        for accepted in lab.deliver(&accept, 1) {
            lab.deliver(&accepted, 0);
        }
        assert_eq!(lab.decided.get(&Height(1)), Some(&chosen.hash()), "chosen");
        assert_eq!(lab.height(1), 0, "server 1 accepted it but was not told");
        // The old leader, hearing no one, steps down at its second quorum check.
        lab.timeout(0, miner::paxos::TIMER_CHECK_QUORUM);
        lab.timeout(0, miner::paxos::TIMER_CHECK_QUORUM);
        assert_eq!(lab.role(0), Role::Follower);
        lab.now += 10_000; // past every lease
        // Server 2 never heard of the block; it leads next with itself and the witness.
        let prepare = lab.timeout(2, TIMER_ELECTION);
        let exchanged = lab.settle(prepare, &[witness, 2]);
        assert_eq!(lab.role(2), Role::Leader, "witness {witness}");
        for sent in exchanged.iter().filter(|s| s.from == 2) {
            if let Body::Accept { block, .. } = &sent.body {
                assert_eq!(
                    block.hash(),
                    chosen.hash(),
                    "witness {witness}: only the chosen value"
                );
            }
        }
        assert_eq!(
            lab.height(2),
            1,
            "witness {witness}: slot 1 decided at server 2"
        );
        let build = lab.timeout(2, TIMER_BUILD);
        let exchanged = lab.settle(build, &[0, 1, 2]);
        assert!(exchanged.iter().any(|s| s.body.name() == "decided"));
        assert_eq!(lab.decided.get(&Height(1)), Some(&chosen.hash()));
        assert!(
            lab.decided.contains_key(&Height(2)),
            "the new leader goes on"
        );
    }
}

/// PMS §2.1's livelock (two proposers each pre-empting the other with a higher ballot
/// "can be prevented" only by electing a distinguished proposer) and §3: proposers that
/// keep pre-empting each other, each one's Prepare reaching the deciding acceptor just
/// before the other's Accept, choose nothing however long they duel; once one backs off,
/// the other's next Accept chooses its block.
#[test]
fn dueling_proposers_make_no_progress_until_one_backs_off() {
    let mut lab = Lab::new(3);
    let acceptor = 2;
    // Both lead with the acceptor's promise in turn, and each proposes a block whose
    // Accept is held back on the way.
    let mut held = Vec::new();
    for proposer in [0, 1] {
        elect_with(&mut lab, proposer, acceptor);
        let sent = lab.timeout(proposer, TIMER_BUILD);
        held.push(
            sent.into_iter()
                .find(|s| s.body.name() == "accept")
                .expect("accept"),
        );
    }
    let mut last_ballot = lab.machines[1].ballot();
    for round in 0..8 {
        let p = round % 2;
        // p's Accept arrives after the other's Prepare: refused.
        let nack = lab.deliver(&held[p], acceptor);
        assert_eq!(kinds(&nack), ["nack"], "round {round}: pre-empted");
        // p, pre-empted while leading, prepares again at once above the ballot it heard,
        // wins the acceptor's promise, and proposes again: this Accept is held back too.
        let prepare = lab.deliver(&nack[0], p);
        assert_eq!(kinds(&prepare), ["prepare"], "round {round}");
        let mut accept = None;
        for promise in lab.deliver(&prepare[0], acceptor) {
            for sent in lab.deliver(&promise, p) {
                if sent.body.name() == "accept" {
                    accept = Some(sent);
                }
            }
        }
        assert_eq!(lab.role(p), Role::Leader, "round {round}");
        let ballot = lab.machines[p].ballot();
        assert!(ballot > last_ballot, "round {round}: ballots climb");
        last_ballot = ballot;
        held[p] = accept.expect("the leader re-proposes its own accepted block");
        assert!(
            lab.decided.is_empty(),
            "round {round}: nothing chosen while they duel"
        );
    }
    // The proposer whose turn it is backs off (it waits, as a candidate refused does);
    // the other's Accept now meets no higher prepare and is chosen.
    let last = held[1].clone();
    for accepted in lab.deliver(&last, acceptor) {
        lab.deliver(&accepted, 1);
    }
    assert_eq!(lab.height(1), 1, "chosen once the duel stops");
}

/// Makes `proposer` lead with the promise of `acceptor` alone (a majority of three).
fn elect_with(lab: &mut Lab, proposer: usize, acceptor: usize) {
    let prepare = lab.timeout(proposer, TIMER_ELECTION);
    for promise in lab.deliver(&prepare[0], acceptor) {
        lab.deliver(&promise, proposer);
    }
    assert_eq!(lab.role(proposer), Role::Leader);
}
