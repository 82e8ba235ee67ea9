//! Multi-Paxos: conformance cases on the pure machine, each citing its source (a section
//! of "Paxos Made Simple" (PMS), or an invariant or action of Lamport's `Paxos.tla` from
//! the tlaplus/Examples repository: `Phase1b`, `Phase2a`, `Phase2b`, `Consistency`);
//! refusals of bad messages, blocks and certificates; and the named multi-server runs of
//! Raft's suite in the shared deterministic cluster (virtual time, real chains, droppable
//! links).

use crate::cluster::{Cluster as Harness, LATENCY_MS, Rng};
use crate::support::GENESIS_TIME;
use chain::block::HEADER_VERSION;
use chain::{
    Address, Block, BlockHash, Chain, ChainView, ConsensusEngine, EngineError, EngineFields,
    Hash256, Header, Height, SealedHeader, SecretKey, Timestamp, VoteInput, VoteOutput,
    VotingMachine,
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

fn keys(n: usize) -> Vec<SecretKey> {
    crate::cluster::server_keys("paxos server", n)
}

fn params(keys: &[SecretKey]) -> PaxosParams {
    PaxosParams::devnet(keys.iter().map(SecretKey::address).collect())
}

fn genesis() -> SealedHeader {
    crate::cluster::genesis_header()
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

/// Phase 1a from a proposer that has decided nothing.
fn prepare(ballot: Ballot) -> Body {
    Body::Prepare {
        ballot,
        decided: Height(0),
    }
}

/// Phase 2a for `block` from a leader that has decided nothing.
fn accept(ballot: Ballot, block: Block) -> Body {
    Body::Accept {
        ballot,
        decided: Height(0),
        block,
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
        let sent = lab.from(from, acceptor, prepare(ballot)).expect("answered");
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
        .from(1, acceptor, accept(high, x.clone()))
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
    lab.from(1, acceptor, prepare(promised)).expect("promised");

    let low = Ballot::new(1, 2);
    let early = first_block(&lab.keys[2], low, 0);
    let answer = lab.from(2, acceptor, accept(low, early)).expect("answered");
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
        .from(1, acceptor, accept(promised, x.clone()))
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
        .from(2, acceptor, accept(higher, y.clone()))
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
    lab.from(2, 0, prepare(b2)).expect("promised");
    // Server 0 itself accepted y in 2.2, and server 1 offers x of 1.1.
    lab.from(2, 0, accept(b2, y.clone())).expect("accepted");
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

/// `Paxos.tla`'s `Consistency` under its whole next-state relation: over many seeds,
/// proposers time out at random and every message is delivered late, out of order, to
/// some servers and not others, so phases of competing ballots interleave every way;
/// the lab fails at once if two blocks are ever decided at one height.
#[test]
fn competing_proposers_with_interleaved_phases_never_choose_two_values() {
    let mut progress = 0;
    for seed in 1..=40u64 {
        let n = if seed % 2 == 0 { 3 } else { 5 };
        let mut lab = Lab::new(n);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut in_flight: Vec<(usize, Sent)> = Vec::new();
        for _ in 0..600 {
            lab.now += rng.below(40);
            match rng.below(10) {
                0 => {
                    let i = rng.below(n as u64) as usize;
                    let sent = lab.timeout(i, TIMER_ELECTION);
                    in_flight.extend(spread(&sent, n));
                }
                1 => {
                    let i = rng.below(n as u64) as usize;
                    let sent = lab.timeout(i, TIMER_BUILD);
                    in_flight.extend(spread(&sent, n));
                }
                2 => {
                    let i = rng.below(n as u64) as usize;
                    let sent = lab.timeout(i, TIMER_HEARTBEAT);
                    in_flight.extend(spread(&sent, n));
                }
                _ if !in_flight.is_empty() => {
                    // Any message in flight, to its one recipient; a tenth are lost.
                    let k = rng.below(in_flight.len() as u64) as usize;
                    let (to, message) = in_flight.swap_remove(k);
                    if rng.below(10) > 0 {
                        let sent = lab.deliver(&message, to);
                        in_flight.extend(spread(&sent, n));
                    }
                }
                _ => {}
            }
            in_flight.truncate(2_000);
        }
        progress += lab.decided.len();
    }
    assert!(
        progress >= 20,
        "the interleavings decide something: {progress} blocks"
    );
}

/// Every message in `sent` addressed to each other server.
fn spread(sent: &[Sent], n: usize) -> Vec<(usize, Sent)> {
    sent.iter()
        .flat_map(|s| {
            (0..n)
                .filter(move |j| *j != s.from)
                .map(move |j| (j, s.clone()))
        })
        .collect()
}

/// PMS §2.3 ("an acceptor must remember this information even if it fails and then
/// restarts"): a restarted acceptor keeps its promise and its accepted value.
#[test]
fn a_restarted_acceptor_keeps_its_promise_and_accepted_value() {
    let mut lab = Lab::new(3);
    let ballot = Ballot::new(2, 1);
    let x = first_block(&lab.keys[1], ballot, 0);
    lab.from(1, 0, prepare(ballot)).expect("promised");
    lab.from(1, 0, accept(ballot, x.clone())).expect("accepted");
    lab.restart(0);
    assert_eq!(lab.machines[0].promised(), ballot);
    assert_eq!(
        lab.machines[0].accepted(Height(1)),
        Some(&Proposal { ballot, block: x })
    );
    let low = Ballot::new(1, 2);
    let answer = lab.from(2, 0, prepare(low)).expect("answered");
    assert_eq!(
        answer[0].body,
        Body::Nack {
            to: lab.addr(2),
            ballot: low,
            promised: ballot
        }
    );
    // Only a change is persisted: a heartbeat at the promise writes nothing.
    let before = lab.persisted[0].clone();
    lab.persisted[0] = None;
    lab.from(
        1,
        0,
        Body::Heartbeat {
            ballot,
            decided: Height(0),
        },
    )
    .expect("followed");
    assert_eq!(lab.persisted[0], None, "nothing changed, nothing written");
    assert!(before.is_some());
}

#[test]
fn forged_foreign_malformed_and_oversized_messages_are_rejected() {
    let mut lab = Lab::new(3);
    let body = Body::Prepare {
        ballot: Ballot::new(1, 1),
        decided: Height(0),
    };
    // Signed by server 2 but claiming server 1's key.
    let mut forged = Envelope::seal(body.clone(), &lab.keys[2]);
    forged.sender = lab.keys[1].public_key();
    let err = paxos_error(lab.try_run(0, VoteInput::Message(forged.encode())));
    assert!(
        matches!(err, PaxosError::BadMessageSignature { .. }),
        "{err}"
    );

    let outsider = SecretKey::from_seed("not a paxos server");
    let err = paxos_error(lab.try_run(
        0,
        VoteInput::Message(Envelope::seal(body.clone(), &outsider).encode()),
    ));
    assert_eq!(
        err,
        PaxosError::SenderNotServer {
            sender: outsider.address()
        }
    );

    let mut truncated = Envelope::seal(body, &lab.keys[1]).encode();
    truncated.pop();
    let err = paxos_error(lab.try_run(0, VoteInput::Message(truncated)));
    assert!(matches!(err, PaxosError::Codec(_)), "{err}");

    let err = paxos_error(lab.try_run(0, VoteInput::Message(vec![0; MAX_MESSAGE_BYTES + 1])));
    assert!(
        matches!(err, PaxosError::Codec(chain::CodecError::TooLarge { .. })),
        "{err}"
    );

    // A ballot that is not the sender's own.
    let err = paxos_error(lab.from(
        1,
        0,
        Body::Prepare {
            ballot: Ballot::new(1, 2),
            decided: Height(0),
        },
    ));
    assert!(
        matches!(&err, PaxosError::MalformedMessage { what: "prepare", reason, .. } if reason.contains("1.2")),
        "{err}"
    );
    // A Nack that refuses nothing.
    let err = paxos_error(lab.from(
        1,
        0,
        Body::Nack {
            to: lab.addr(0),
            ballot: Ballot::new(2, 0),
            promised: Ballot::new(1, 1),
        },
    ));
    assert!(
        matches!(err, PaxosError::MalformedMessage { what: "nack", .. }),
        "{err}"
    );
    // An Accept whose block claims a later ballot than the Accept's.
    let late = first_block(&lab.keys[1], Ballot::new(5, 1), 0);
    let err = paxos_error(lab.from(
        1,
        0,
        Body::Accept {
            ballot: Ballot::new(4, 1),
            decided: Height(0),
            block: late,
        },
    ));
    assert!(
        matches!(err, PaxosError::MalformedMessage { what: "accept", .. }),
        "{err}"
    );
    // A block built by an outsider.
    let foreign = first_block(&outsider, Ballot::new(1, 1), 0);
    let err = paxos_error(lab.from(
        1,
        0,
        Body::Accept {
            ballot: Ballot::new(1, 1),
            decided: Height(0),
            block: foreign,
        },
    ));
    assert!(matches!(err, PaxosError::NotServer { .. }), "{err}");
    // An Accepted whose vote is not the sender's signature.
    let mut lab = Lab::new(3);
    let ballot = elect(&mut lab, 0);
    let sent = lab.timeout(0, TIMER_BUILD);
    let Some(Body::Accept { block, .. }) = sent
        .iter()
        .map(|s| s.body.clone())
        .find(|b| b.name() == "accept")
    else {
        panic!("{sent:?}")
    };
    let wrong = lab.keys[2]
        .sign(&accepted_vote(ballot, Height(1), block.header.parent, block.hash()).digest("paxos"));
    let err = paxos_error(lab.from(
        1,
        0,
        Body::Accepted {
            to: lab.addr(0),
            ballot,
            height: Height(1),
            parent: block.header.parent,
            hash: block.hash(),
            signature: wrong,
        },
    ));
    assert!(
        matches!(
            err,
            PaxosError::MalformedMessage {
                what: "accepted",
                ..
            }
        ),
        "{err}"
    );
    assert!(lab.decided.is_empty(), "nothing counted");
    // Stale: an Accepted for another ballot is ignored, not blamed.
    let old = Ballot::new(ballot.round() + 5, 1);
    let vote = lab.keys[1]
        .sign(&accepted_vote(old, Height(1), block.header.parent, block.hash()).digest("paxos"));
    let stale = lab.from(
        1,
        0,
        Body::Accepted {
            to: lab.addr(0),
            ballot: old,
            height: Height(1),
            parent: block.header.parent,
            hash: block.hash(),
            signature: vote,
        },
    );
    assert!(
        matches!(stale, Err(EngineError::Ignored { .. })),
        "{stale:?}"
    );
}

/// Every single-byte corruption of a valid Learned (a block with its certificate) is
/// either refused or harmless: no panic, and never a decision of another block.
#[test]
fn corrupted_messages_are_refused_without_panicking() {
    let mut lab = Lab::new(3);
    elect(&mut lab, 0);
    let build = lab.timeout(0, TIMER_BUILD);
    lab.settle(build, &[0, 1]);
    assert_eq!(lab.height(0), 1);
    let learned = lab
        .from(
            2,
            0,
            Body::Learn {
                to: lab.addr(0),
                from: Height(1),
            },
        )
        .expect("served");
    assert_eq!(kinds(&learned), ["learned"]);
    let good = learned[0].bytes.clone();
    let chosen = lab.decided[&Height(1)];
    for k in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[k] ^= 0x5a;
        let mut fresh = Lab::new(3);
        match fresh.try_run(2, VoteInput::Message(bad)) {
            Ok(_) => {}
            Err(EngineError::Ignored { .. }) => {}
            Err(e) => assert!(e.is_bad_data(), "byte {k}: {e}"),
        }
        if let Some(hash) = fresh.decided.get(&Height(1)) {
            assert_eq!(*hash, chosen, "byte {k}");
        }
    }
    let mut fresh = Lab::new(3);
    fresh
        .try_run(2, VoteInput::Message(good))
        .expect("the intact message teaches");
    assert_eq!(fresh.height(2), 1);
}

#[test]
fn params_are_validated_naming_the_field() {
    let ks = keys(3);
    let good = params(&ks);
    assert_eq!(good.validate(), Ok(()));
    let cases: Vec<(PaxosParams, &str)> = vec![
        (
            PaxosParams {
                servers: Vec::new(),
                ..good.clone()
            },
            "servers",
        ),
        (
            PaxosParams {
                servers: vec![ks[0].address(); 2],
                ..good.clone()
            },
            "servers",
        ),
        (
            PaxosParams {
                block_time: 0,
                ..good.clone()
            },
            "block_time",
        ),
        (
            PaxosParams {
                heartbeat_ms: 0,
                ..good.clone()
            },
            "heartbeat_ms",
        ),
        (
            PaxosParams {
                election_timeout_min_ms: 50,
                ..good.clone()
            },
            "election_timeout_min_ms",
        ),
        (
            PaxosParams {
                election_timeout_max_ms: 150,
                ..good.clone()
            },
            "election_timeout_max_ms",
        ),
    ];
    for (p, field) in cases {
        match p.validate() {
            Err(PaxosError::InvalidParams { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Named multi-server runs in the shared cluster (Raft's suite, the same names).
// ---------------------------------------------------------------------------------------

type Cluster = Harness<PaxosEngine>;

fn cluster(n: usize) -> Cluster {
    let keys = keys(n);
    let engine = Arc::new(PaxosEngine::new(params(&keys)).expect("valid params"));
    Cluster::start(keys, engine)
}

#[test]
fn n3_leader_crash_reelects_and_keeps_committing() {
    // The followers heard a heartbeat at most 50 ms before the crash, ran phase 1 after
    // [150, 300) ms of silence, and a Prepare and Promise round trip later one led.
    cluster(3).leader_crash_reelects(|c| !c.leaders().is_empty(), 150 - 50..300 + 2 * LATENCY_MS);
}

#[test]
fn n5_minority_partition_old_leader_cannot_commit() {
    let mut c = cluster(5);
    // The old leader asked for blocks but could gather no majority of Accepted votes.
    let split = c.minority_partition();
    let (_, ballot) = split.old;
    for &i in &split.minority {
        // Check-quorum deposed the old leader; with no pre-vote (unlike Raft) the
        // minority keeps running phase 1 with ever higher ballots, and fails.
        assert_ne!(c.status(i, "role").as_deref(), Some("leader"), "server {i}");
        assert!(c.term(i) > ballot, "server {i} tried higher ballots");
    }
}

#[test]
fn n5_partition_heals_without_lost_commits() {
    // Every block chosen anywhere is on every chain, at its height, and nothing the old
    // leader proposed in the minority was chosen.
    cluster(5).partition_heals();
}

#[test]
fn n3_restart_follower_catches_up_from_log() {
    // The promise is restored from the persisted bytes, and the leader teaches the
    // decided blocks.
    cluster(3).restart_follower_catches_up(|persisted, ballot| {
        let state = PersistedState::decode(persisted).expect("decodes");
        assert_eq!(state.promised.0, ballot);
    });
}

/// A learner further behind than the leader's window of decided blocks catches up by its
/// node syncing certified blocks (as Raft's does), then learns the rest.
#[test]
fn n3_follower_past_the_window_catches_up_by_syncing_certified_blocks() {
    let mut c = cluster(3);
    c.run_for(2_000);
    let (leader, _) = c.sole_leader();
    let follower = (leader + 1) % 3;
    c.isolate(follower);
    c.run_for((miner::paxos::COMMITTED_WINDOW as u64 + 6) * 1_000);
    c.heal();
    c.run_for(1_000);
    assert!(
        c.height(follower) + 1 < c.height(leader),
        "too far behind to learn"
    );
    c.sync(follower, leader);
    c.run_for(2_000);
    assert_eq!(
        c.nodes[follower].chain.head().hash(),
        c.nodes[leader].chain.head().hash()
    );
    c.assert_chain_is_decided(follower);
}

/// Steady state, one block a second with a stable leader of three: per decided block
/// one Accept, N−1 Accepted and one Decided (N+1 messages, each broadcast counted once),
/// and the heartbeats with their acks between blocks.
#[test]
fn steady_state_costs_one_accept_two_accepted_and_one_decided_per_block() {
    let mut c = cluster(3);
    c.run_for(3_000);
    let (leader, _) = c.sole_leader();
    let from = c.height(leader);
    c.record = true;
    c.run_for(10_000);
    let blocks = c.height(leader) - from;
    assert!(blocks >= 9, "{blocks} blocks in 10 s");
    let mut count: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (_, bytes) in &c.recorded {
        *count
            .entry(Envelope::decode(bytes).expect("decodes").body.name())
            .or_default() += 1;
    }
    let per_block = |kind: &str| count.get(kind).copied().unwrap_or(0) as f64 / blocks as f64;
    assert!((per_block("accept") - 1.0).abs() < 0.2, "{count:?}");
    assert!((per_block("accepted") - 2.0).abs() < 0.3, "{count:?}");
    assert!((per_block("decided") - 1.0).abs() < 0.2, "{count:?}");
    for kind in ["prepare", "promise", "nack", "learn", "learned"] {
        assert_eq!(count.get(kind), None, "{kind} in steady state: {count:?}");
    }
}

/// Over (servers, seed), on a network that loses 5% of messages and reorders them (up to
/// 30 ms extra delay): every second the network is split at random, a server crashes or
/// one comes back; the harness fails at once if two blocks are ever decided at one height.
/// Healed and whole again, every server ends on the same chain, and it grew. Unlike
/// Raft's, a Paxos leader may be the one behind: every server, the leader too, syncs from
/// the highest before the leader is named.
#[test]
fn randomized_partitions_and_crashes_never_decide_two_blocks_at_one_height() {
    crate::cluster::randomized_partitions_and_crashes(cluster, &[(3, 1), (3, 2), (5, 3), (5, 4)]);
}

fn certificate_error(chain: &mut Chain, block: &Block, certificate: Vec<u8>) -> PaxosError {
    crate::cluster::import_refusal(chain, block, certificate)
}

#[test]
fn certificates_forged_short_duplicated_foreign_or_for_another_block_are_refused() {
    let mut c = cluster(3);
    c.run_for(3_000);
    let at = |h: u64| {
        let (block, certificate) = c.decided_at(h);
        (block, Certificate::decode(&certificate).expect("decodes"))
    };
    let (first, good) = at(1);
    let (_, second) = at(2);
    assert!(good.signatures.len() >= 2, "a majority of three");
    let mut fresh = c.fresh_chain();
    let quorum = |e: &PaxosError| match e {
        PaxosError::Certificate { source, .. } => source.clone(),
        other => panic!("not a certificate refusal: {other}"),
    };

    let mut forged = good.clone();
    forged.signatures[1].signature.0[10] ^= 1;
    let err = certificate_error(&mut fresh, &first, forged.encode());
    assert!(
        matches!(quorum(&err), QuorumError::BadSignature { .. }),
        "{err}"
    );

    let mut short = good.clone();
    short.signatures.truncate(1);
    let err = certificate_error(&mut fresh, &first, short.encode());
    assert_eq!(
        quorum(&err),
        QuorumError::TooFewSigners {
            got: 1,
            needed: 2,
            voters: 3
        },
        "{err}"
    );

    let mut duplicated = short.clone();
    duplicated.signatures.push(duplicated.signatures[0]);
    let err = certificate_error(&mut fresh, &first, duplicated.encode());
    assert!(
        matches!(quorum(&err), QuorumError::DuplicateSigner { .. }),
        "{err}"
    );

    let outsider = SecretKey::from_seed("not a paxos server");
    let mut foreign = short.clone();
    foreign
        .signatures
        .push(VoteSignature::sign("paxos", &good.body, &outsider));
    let err = certificate_error(&mut fresh, &first, foreign.encode());
    assert_eq!(
        quorum(&err),
        QuorumError::NotAVoter {
            signer: outsider.address()
        }
    );

    // The votes for block 2 prove nothing about block 1.
    let err = certificate_error(&mut fresh, &first, second.encode());
    assert!(
        matches!(quorum(&err), QuorumError::WrongVote { .. }),
        "{err}"
    );

    // Votes of a ballot below the one the block was built in cannot have chosen it.
    let built_in = BlockData::of_header(&first.header).expect("data").ballot;
    let early = accepted_vote(
        Ballot(built_in.0 - 1),
        Height(1),
        first.header.parent,
        first.hash(),
    );
    let keys = keys(3);
    let votes = keys
        .iter()
        .map(|k| VoteSignature::sign("paxos", &early, k))
        .collect();
    let err = certificate_error(&mut fresh, &first, Certificate::new(early, votes).encode());
    assert!(matches!(err, PaxosError::CertificateBallot { .. }), "{err}");

    assert_eq!(fresh.head().height().0, 0, "nothing was imported");
    assert!(matches!(
        fresh.import_certified(first, good.encode()),
        Ok(chain::ImportOutcome::NewHead(_))
    ));
}

/// Headers: a server built the block in a ballot of its own, no lower than its parent's,
/// with no proof-of-work fields, and sealed it.
#[test]
fn blocks_by_outsiders_in_foreign_or_falling_ballots_or_with_pow_fields_are_refused() {
    let ks = keys(3);
    let servers = params(&ks).voter_set();
    let parent = first_block(&ks[1], Ballot::new(3, 1), 0);
    let on = |key: &SecretKey, ballot: Ballot| {
        block_with(key, parent.hash(), 2, BlockData { ballot }.encode(), 0).header
    };
    let check =
        |header: &Header| PaxosEngine::check_block_header(&servers, header, Some(&parent.header));
    assert!(check(&on(&ks[1], Ballot::new(3, 1))).is_ok());
    assert!(check(&on(&ks[2], Ballot::new(4, 2))).is_ok());
    let outsider = SecretKey::from_seed("not a paxos server");
    assert!(matches!(
        check(&on(&outsider, Ballot::new(4, 2))),
        Err(PaxosError::NotServer { .. })
    ));
    assert!(matches!(
        check(&on(&ks[2], Ballot::new(4, 1))),
        Err(PaxosError::BallotNotProducers { .. })
    ));
    assert!(matches!(
        check(&on(&ks[2], Ballot::new(2, 2))),
        Err(PaxosError::BallotOrder { .. })
    ));
    let mut mined = on(&ks[1], Ballot::new(3, 1));
    mined.engine.nonce = 7;
    assert!(matches!(
        check(&mined),
        Err(PaxosError::UnexpectedFields { .. })
    ));
    let mut tampered = on(&ks[1], Ballot::new(3, 1));
    tampered.timestamp = Timestamp(tampered.timestamp.0 + 1);
    assert!(matches!(check(&tampered), Err(PaxosError::Seal(_))));
}

/// What `explain` and `status` say: the ballots, the leader and who accepted.
#[test]
fn explain_and_status_name_the_ballot_the_leader_and_the_acceptors() {
    let mut c = cluster(3);
    c.run_for(3_000);
    let (leader, ballot) = c.sole_leader();
    let chain = &c.nodes[leader].chain;
    let head = chain.head();
    let explained: BTreeMap<&str, String> = c
        .engine
        .explain(chain, &head)
        .expect("explains")
        .into_iter()
        .collect();
    assert_eq!(explained["engine"], "paxos");
    assert_eq!(explained["leader"], head.producer.to_string());
    assert!(explained["accepted_by"].split(',').count() >= 2);
    let status: BTreeMap<&str, String> = c.nodes[leader]
        .machine
        .as_ref()
        .expect("running")
        .status()
        .into_iter()
        .collect();
    assert_eq!(status["role"], "leader");
    assert_eq!(status["leader"], c.nodes[leader].key.address().to_string());
    assert_eq!(status["decided_height"], head.height().0.to_string());
    assert_eq!(c.term(leader), ballot);
    assert_eq!(explained["chosen_in_ballot"], status["ballot"]);
}

/// Two proposers whose timers fire at the same instant do not split the vote as Raft's
/// candidates can: their ballots of one round are ordered by proposer index, so the
/// lower one's Prepare is refused by the higher candidate (which has promised itself),
/// the lower one backs off, and promises the higher one in the same exchange; one round
/// trip decides who leads.
#[test]
fn n3_two_proposers_starting_together_agree_on_the_higher_ballot_in_one_round_trip() {
    let mut c = cluster(3);
    c.run_for(3_000);
    let (old, _) = c.sole_leader();
    c.crash(old);
    let (a, b) = ((old + 1) % 3, (old + 2) % 3);
    let started = c.now;
    c.feed(a, VoteInput::Timeout(TIMER_ELECTION));
    c.feed(b, VoteInput::Timeout(TIMER_ELECTION));
    let elected = c.run_until(1_000, |c| !c.leaders().is_empty());
    let (leader, _) = c.sole_leader();
    assert_eq!(leader, a.max(b), "the higher index wins the tie");
    assert!(
        elected - started <= 2 * LATENCY_MS,
        "one Prepare and Promise exchange: {} ms",
        elected - started
    );
    c.run_for(3_000);
    assert_eq!(c.sole_leader().0, leader, "no further duel");
    assert!(c.height(a.min(b)) >= 3, "and blocks are decided on");
}
