//! What Multi-Paxos puts on the wire, in headers, in certificates and on disk, and how each
//! is signed. Everything is borsh, decoded strictly under a byte limit.

use crate::envelope::MessageBody;
use crate::paxos::error::PaxosError;
use crate::paxos::{ENGINE_NAME, MAX_MESSAGE_BYTES, MAX_OPEN_SLOTS};
use crate::quorum::{Certificate, Phase, VoteBody, VoterSet};
use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::{MAX_BLOCK_BYTES, decode_limited};
use chain::{Address, Block, BlockHash, Header, Height, Signature};
use std::fmt;

const MESSAGE_DOMAIN: &[u8] = b"toychain/paxos/message";

/// A ballot number: a round and the index of its proposer (in address order), ordered by
/// round first, so every ballot belongs to one proposer and any two are comparable
/// ("Paxos Made Simple" §2.2: proposals are numbered from disjoint sets per proposer).
/// Packed as `round · 2¹⁶ + index`; ballot 0 is "none".
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Ballot(pub u64);

impl Ballot {
    /// No ballot: below every real one.
    pub const ZERO: Ballot = Ballot(0);

    pub fn new(round: u64, proposer: u16) -> Ballot {
        Ballot((round << 16) | u64::from(proposer))
    }

    pub fn round(self) -> u64 {
        self.0 >> 16
    }

    /// The proposer's index in address order.
    pub fn proposer(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round(), self.proposer())
    }
}

/// What a block says of itself in `header.engine.data`: the ballot of the leader that
/// built it. Along a chain of chosen blocks these never decrease (a block is built only
/// on a decided parent, by a leader whose ballot a majority promised after accepting the
/// parent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockData {
    pub ballot: Ballot,
}

impl BlockData {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    /// The data in `header`; the genesis block (height 0) has none and sits at ballot 0.
    pub fn of_header(header: &Header) -> Result<BlockData, PaxosError> {
        if header.height == Height::GENESIS {
            return Ok(BlockData {
                ballot: Ballot::ZERO,
            });
        }
        Ok(decode_limited(&header.engine.data, 8, "paxos block data")?)
    }
}

/// A value accepted by an acceptor: a block (its slot is its height) and the ballot it was
/// accepted in.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub ballot: Ballot,
    pub block: Block,
}

/// What an Accepted signs, so that the Accepted messages are the certificate: the block
/// `hash` on `parent` at `height`, accepted in `ballot` (carried as the vote's view; the
/// phase is [`Phase::Commit`], the vote that decides).
pub fn accepted_vote(
    ballot: Ballot,
    height: Height,
    parent: BlockHash,
    hash: BlockHash,
) -> VoteBody {
    VoteBody {
        height,
        view: ballot.0,
        parent,
        block: hash,
        phase: Phase::Commit,
    }
}

/// Checks `bytes` as the certificate of the block `hash` on `parent` at `height`, built in
/// `built_in`: ⌊N/2⌋+1 distinct `servers` signed one Accepted for it in one ballot, no
/// earlier than the one it was built in. Returns the certificate.
pub fn check_certificate(
    servers: &VoterSet,
    height: Height,
    parent: BlockHash,
    hash: BlockHash,
    built_in: Ballot,
    bytes: &[u8],
) -> Result<Certificate, PaxosError> {
    let refuse = |source| PaxosError::Certificate { hash, source };
    let certificate = Certificate::decode(bytes).map_err(refuse)?;
    let ballot = Ballot(certificate.body.view);
    let expected = accepted_vote(ballot, height, parent, hash);
    certificate
        .verify(ENGINE_NAME, &expected, servers, servers.majority())
        .map_err(refuse)?;
    if ballot < built_in {
        return Err(PaxosError::CertificateBallot {
            hash,
            certificate: ballot,
            block: built_in,
        });
    }
    Ok(certificate)
}

/// The messages of Multi-Paxos. Those meant for one server name it in `to`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Body {
    /// Phase 1a, for every slot above `decided` (the proposer's decided height) at once.
    Prepare { ballot: Ballot, decided: Height },
    /// Phase 1b: the promise not to accept below `ballot`, with every value accepted in
    /// a slot above the proposer's decided height, and the acceptor's own decided height.
    Promise {
        to: Address,
        ballot: Ballot,
        decided: Height,
        accepted: Vec<Proposal>,
    },
    /// The refusal of `ballot` (a Prepare, Accept or heartbeat), naming the higher ballot
    /// the acceptor promised.
    Nack {
        to: Address,
        ballot: Ballot,
        promised: Ballot,
    },
    /// Phase 2a for the slot `block.header.height`.
    Accept {
        ballot: Ballot,
        decided: Height,
        block: Block,
    },
    /// Phase 2b: the acceptor accepted the block `hash` on `parent` at `height` in
    /// `ballot`; `signature` signs [`accepted_vote`] and goes into the certificate.
    Accepted {
        to: Address,
        ballot: Ballot,
        height: Height,
        parent: BlockHash,
        hash: BlockHash,
        signature: Signature,
    },
    /// The leader is alive in `ballot` and has decided up to `decided`.
    Heartbeat { ballot: Ballot, decided: Height },
    /// A follower's answer to a heartbeat (the leader's check-quorum counts these).
    HeartbeatAck {
        to: Address,
        ballot: Ballot,
        decided: Height,
    },
    /// The learners' notice: the block the certificate names is chosen.
    Decided { certificate: Vec<u8> },
    /// A lagging learner asks for the decided blocks from height `from`.
    Learn { to: Address, from: Height },
    /// Decided blocks with their certificates, in height order.
    Learned {
        to: Address,
        blocks: Vec<(Block, Vec<u8>)>,
    },
}

impl Body {
    pub fn name(&self) -> &'static str {
        match self {
            Body::Prepare { .. } => "prepare",
            Body::Promise { .. } => "promise",
            Body::Nack { .. } => "nack",
            Body::Accept { .. } => "accept",
            Body::Accepted { .. } => "accepted",
            Body::Heartbeat { .. } => "heartbeat",
            Body::HeartbeatAck { .. } => "heartbeat ack",
            Body::Decided { .. } => "decided",
            Body::Learn { .. } => "learn",
            Body::Learned { .. } => "learned",
        }
    }
}

/// A paxos message as sent: the sender's key, the body, and the sender's signature.
pub type Envelope = crate::envelope::Envelope<Body>;

impl MessageBody for Body {
    const DOMAIN: &'static [u8] = MESSAGE_DOMAIN;
    const NAME: &'static str = "paxos message";
    const MAX_BYTES: usize = MAX_MESSAGE_BYTES;

    /// The one server a reply is meant for; `None` for a broadcast.
    fn recipient(&self) -> Option<Address> {
        match self {
            Body::Promise { to, .. }
            | Body::Nack { to, .. }
            | Body::Accepted { to, .. }
            | Body::HeartbeatAck { to, .. }
            | Body::Learn { to, .. }
            | Body::Learned { to, .. } => Some(*to),
            Body::Prepare { .. }
            | Body::Accept { .. }
            | Body::Heartbeat { .. }
            | Body::Decided { .. } => None,
        }
    }
}

/// What an acceptor writes before it answers ("Paxos Made Simple" §2.3: an acceptor must
/// remember its promise and what it accepted, even across a crash): its promised ballot
/// and the values it accepted above its chain's head.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PersistedState {
    pub promised: Ballot,
    pub accepted: Vec<Proposal>,
}

/// Largest persisted state: the capped accepted values, full blocks, and their framing.
pub const MAX_PERSISTED_BYTES: usize = (MAX_OPEN_SLOTS + 1) * (MAX_BLOCK_BYTES + 64);

impl PersistedState {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    pub fn decode(bytes: &[u8]) -> Result<PersistedState, PaxosError> {
        decode_limited(bytes, MAX_PERSISTED_BYTES, "paxos persisted state").map_err(|e| {
            PaxosError::Persisted {
                reason: e.to_string(),
            }
        })
    }
}
