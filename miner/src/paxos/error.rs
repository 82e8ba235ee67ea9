//! Why the Multi-Paxos engine refused a block, a certificate or a message.

use crate::paxos::wire::Ballot;
use crate::quorum::QuorumError;
use crate::seal::SealError;
use chain::codec::CodecError;
use chain::{Address, BlockHash, Height};

/// Refusals reach the node as `chain::EngineError::rejected("paxos", …)`; read them back
/// with `EngineError::downcast_ref::<PaxosError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaxosError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("invalid paxos parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("block {height} is produced by {producer}, who is not a paxos server")]
    NotServer { height: Height, producer: Address },
    #[error("paxos headers carry no nonce and weight 1 (bits {bits}, nonce {nonce})")]
    UnexpectedFields { bits: u32, nonce: u32 },
    #[error("block {height} by {producer} claims ballot {ballot}, which belongs to {owner}")]
    BallotNotProducers {
        height: Height,
        producer: Address,
        ballot: Ballot,
        owner: String,
    },
    #[error("block {height} was built in ballot {ballot}, below its parent's ballot {parent}")]
    BallotOrder {
        height: Height,
        ballot: Ballot,
        parent: Ballot,
    },
    #[error("certificate for block {hash}: {source}")]
    Certificate {
        hash: BlockHash,
        source: QuorumError,
    },
    #[error(
        "certificate for block {hash} chooses it in ballot {certificate}, below the ballot {block} it was built in"
    )]
    CertificateBallot {
        hash: BlockHash,
        certificate: Ballot,
        block: Ballot,
    },
    #[error("message from {sender}, who is not a paxos server")]
    SenderNotServer { sender: Address },
    #[error("message from {sender} does not verify: {reason}")]
    BadMessageSignature { sender: Address, reason: String },
    #[error("{what} from {sender} is malformed: {reason}")]
    MalformedMessage {
        sender: Address,
        what: &'static str,
        reason: String,
    },
    #[error("persisted paxos state is unreadable: {reason}")]
    Persisted { reason: String },
}

impl From<crate::envelope::BadSignature> for PaxosError {
    fn from(e: crate::envelope::BadSignature) -> PaxosError {
        PaxosError::BadMessageSignature {
            sender: e.sender,
            reason: e.reason,
        }
    }
}
