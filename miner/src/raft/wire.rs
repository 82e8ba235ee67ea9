//! What Raft puts on the wire, in headers, in certificates and on disk, and how each is
//! signed. Everything is borsh, decoded strictly under a byte limit.

use crate::envelope::MessageBody;
use crate::raft::error::RaftError;
use crate::raft::params::majority;
use crate::raft::{MAX_MESSAGE_BYTES, MAX_UNCOMMITTED_ENTRIES};
use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::{MAX_BLOCK_BYTES, decode_limited};
use chain::crypto::sha256d_parts;
use chain::voting::MAX_CERTIFICATE_BYTES;
use chain::{Address, Block, BlockHash, Hash256, Header, Height, PublicKey, Signature};
use std::collections::BTreeSet;

const ACK_DOMAIN: &[u8] = b"toychain/raft/ack";
const MESSAGE_DOMAIN: &[u8] = b"toychain/raft/message";

/// What a block says of itself in `header.engine.data`: its place in the Raft log (the
/// term of the leader that appended it and its log index) and which servers that leader
/// had just heard from. Log indexes run ahead of heights, because a new leader's no-op
/// entry (the thesis's §6.4 fix for Figure 8) takes an index but is no block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EntryData {
    pub term: u64,
    pub index: u64,
    /// Bit `i` set: the leader heard from the `i`-th server (in address order, itself
    /// included) within the minimum election timeout when it asked for this block. A
    /// membership change is accepted only in a block whose live servers are a majority of
    /// the new configuration, so a change never costs the cluster its availability.
    pub live: u64,
}

impl EntryData {
    /// The genesis block's place: index 0 of term 0, before any entry.
    pub const GENESIS: EntryData = EntryData {
        term: 0,
        index: 0,
        live: 0,
    };

    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    /// The data in `header`; the genesis block (height 0) has none and sits at
    /// [`EntryData::GENESIS`].
    pub fn of_header(header: &Header) -> Result<EntryData, RaftError> {
        if header.height == Height::GENESIS {
            return Ok(EntryData::GENESIS);
        }
        Ok(decode_limited(&header.engine.data, 24, "raft entry data")?)
    }

    /// True when the server at `position` (address order) was heard from.
    pub fn is_live(&self, position: usize) -> bool {
        position < 64 && self.live & (1 << position) != 0
    }
}

/// One log entry: a block, or the no-op a new leader appends so it can commit the entries
/// of earlier terms it holds (Raft §5.4.2 lets a leader count replicas only for its own
/// term's entries).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Entry {
    pub term: u64,
    pub block: Option<Block>,
}

/// A server's signed statement that it holds `hash` at `height` in a log it accepted from
/// the leader of `term`, followed by an entry of `term` (see [`Certificate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Ack {
    pub height: Height,
    pub hash: BlockHash,
    pub signature: Signature,
}

/// The digest an ack signs.
pub fn ack_digest(term: u64, height: Height, hash: &BlockHash) -> Hash256 {
    Hash256(sha256d_parts(&[
        ACK_DOMAIN,
        &term.to_le_bytes(),
        &height.0.to_le_bytes(),
        &hash.0,
    ]))
}

/// One signer's ack inside a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedAck {
    pub key: PublicKey,
    pub signature: Signature,
}

/// Why a block is committed: a majority of the servers acked it in one `term`, each
/// holding an entry of that term at or after it.
///
/// All entries of term T come from T's single leader, so by Log Matching every signer holds
/// the leader's log up to the lowest such entry, which is of term T and at or after the
/// block: an entry of the leader's own term on a majority, which Raft commits (§5.4.2),
/// and the block with it. Acks of an old-term entry alone would not do (Figure 8: such an
/// entry on a majority can still be overwritten), which is why the signer promises the
/// later entry of `term`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Certificate {
    pub term: u64,
    pub acks: Vec<SignedAck>,
}

impl Certificate {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    pub fn decode(bytes: &[u8]) -> Result<Certificate, RaftError> {
        Ok(decode_limited(
            bytes,
            MAX_CERTIFICATE_BYTES,
            "raft certificate",
        )?)
    }

    /// The signers, in order.
    pub fn signers(&self) -> Vec<Address> {
        self.acks.iter().map(|a| a.key.address()).collect()
    }
}

/// Checks `bytes` as the certificate of the block `hash` at `height` whose header places it
/// in `block_term`: at least ⌊N/2⌋+1 distinct `servers`, each ack signed by its key over
/// the certificate's term, a term no earlier than the block's.
pub fn check_certificate(
    servers: &[Address],
    height: Height,
    hash: &BlockHash,
    block_term: u64,
    bytes: &[u8],
) -> Result<Certificate, RaftError> {
    let certificate = Certificate::decode(bytes)?;
    if certificate.term < block_term {
        return Err(RaftError::CertificateTerm {
            certificate_term: certificate.term,
            block_term,
        });
    }
    let digest = ack_digest(certificate.term, height, hash);
    let mut seen = BTreeSet::new();
    for ack in &certificate.acks {
        let signer = ack.key.address();
        if !servers.contains(&signer) {
            return Err(RaftError::AckNotServer {
                hash: *hash,
                signer,
            });
        }
        if !seen.insert(signer) {
            return Err(RaftError::DuplicateAck {
                hash: *hash,
                signer,
            });
        }
        ack.key
            .verify(&digest, &ack.signature)
            .map_err(|e| RaftError::BadAck {
                hash: *hash,
                signer,
                reason: e.to_string(),
            })?;
    }
    let needed = majority(servers.len());
    if seen.len() < needed {
        return Err(RaftError::TooFewAcks {
            hash: *hash,
            got: seen.len(),
            needed,
            servers: servers.len(),
        });
    }
    Ok(certificate)
}

/// The four messages of Raft, with pre-vote folded into RequestVote as etcd does.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Body {
    /// A candidate asks for votes in `term` (§5.2); a pre-candidate (`pre_vote`) asks
    /// whether it would win `term` without raising its own term yet (thesis §9.6).
    RequestVote {
        term: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
    },
    /// The answer to a RequestVote, for `to` only.
    VoteResponse {
        to: Address,
        term: u64,
        granted: bool,
        pre_vote: bool,
    },
    /// The leader's replication and heartbeat for follower `to` (§5.3): `entries` follow
    /// the entry at `prev_index` of `prev_term`; `certificates` prove the blocks among the
    /// entries up to `leader_commit` the follower has not committed yet.
    AppendEntries {
        to: Address,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
        certificates: Vec<(u64, Vec<u8>)>,
    },
    /// A follower's answer: `success` with the index its log now matches the leader's
    /// through, or a refusal with its `last_index` so the leader can back off quickly.
    /// `acks` are its signed acks of blocks the leader has not committed.
    AppendResponse {
        to: Address,
        term: u64,
        success: bool,
        match_index: u64,
        last_index: u64,
        commit_index: u64,
        acks: Vec<Ack>,
    },
}

impl Body {
    /// The term the sender was in (or, for a pre-vote, the term it proposes).
    pub fn term(&self) -> u64 {
        match self {
            Body::RequestVote { term, .. }
            | Body::VoteResponse { term, .. }
            | Body::AppendEntries { term, .. }
            | Body::AppendResponse { term, .. } => *term,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Body::RequestVote { pre_vote: true, .. } => "pre-vote request",
            Body::RequestVote { .. } => "vote request",
            Body::VoteResponse { .. } => "vote response",
            Body::AppendEntries { .. } => "append entries",
            Body::AppendResponse { .. } => "append response",
        }
    }
}

/// A raft message as sent: the sender's key, the body, and the sender's signature.
pub type Envelope = crate::envelope::Envelope<Body>;

impl MessageBody for Body {
    const DOMAIN: &'static [u8] = MESSAGE_DOMAIN;
    const NAME: &'static str = "raft message";
    const MAX_BYTES: usize = MAX_MESSAGE_BYTES;

    /// The one node a reply or an append is meant for; `None` for a vote request.
    fn recipient(&self) -> Option<Address> {
        match self {
            Body::RequestVote { .. } => None,
            Body::VoteResponse { to, .. }
            | Body::AppendEntries { to, .. }
            | Body::AppendResponse { to, .. } => Some(*to),
        }
    }
}

/// What a server writes before it answers (Raft's persistent state, Figure 2): its term,
/// its vote, and the log entries after `base_index` (the node's chain head, whose blocks
/// are stored by the chain itself).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PersistedState {
    pub term: u64,
    pub voted_for: Option<Address>,
    pub base_index: u64,
    pub base_term: u64,
    pub entries: Vec<Entry>,
}

/// Largest persisted state: the capped uncommitted log of full blocks and its framing.
pub const MAX_PERSISTED_BYTES: usize = (MAX_UNCOMMITTED_ENTRIES + 1) * (MAX_BLOCK_BYTES + 64);

impl PersistedState {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    pub fn decode(bytes: &[u8]) -> Result<PersistedState, RaftError> {
        decode_limited(bytes, MAX_PERSISTED_BYTES, "raft persisted state").map_err(|e| {
            RaftError::Persisted {
                reason: e.to_string(),
            }
        })
    }
}
