//! Why the Raft engine refused a block, a certificate or a message.

use crate::seal::SealError;
use chain::codec::CodecError;
use chain::{Address, BlockHash, Height};

/// Refusals reach the node as `chain::EngineError::rejected("raft", …)`; read them back
/// with `EngineError::downcast_ref::<RaftError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("invalid raft parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("block {height} is produced by {producer}, who is not a raft server")]
    NotServer { height: Height, producer: Address },
    #[error("raft headers carry no nonce and weight 1 (bits {bits}, nonce {nonce})")]
    UnexpectedFields { bits: u32, nonce: u32 },
    #[error(
        "block {height} claims log index {index} in term {term}, but its parent is at index {parent_index} in term {parent_term}"
    )]
    LogOrder {
        height: Height,
        index: u64,
        term: u64,
        parent_index: u64,
        parent_term: u64,
    },
    #[error("certificate term {certificate_term} is below the block's term {block_term}")]
    CertificateTerm {
        certificate_term: u64,
        block_term: u64,
    },
    #[error("certificate for block {hash} carries an ack by {signer}, who is not a raft server")]
    AckNotServer { hash: BlockHash, signer: Address },
    #[error("certificate for block {hash} carries two acks by {signer}")]
    DuplicateAck { hash: BlockHash, signer: Address },
    #[error("certificate for block {hash}: the ack by {signer} does not verify: {reason}")]
    BadAck {
        hash: BlockHash,
        signer: Address,
        reason: String,
    },
    #[error(
        "certificate for block {hash} has {got} acks, a majority of {servers} servers needs {needed}"
    )]
    TooFewAcks {
        hash: BlockHash,
        got: usize,
        needed: usize,
        servers: usize,
    },
    #[error("message from {sender}, who is not a raft server")]
    SenderNotServer { sender: Address },
    #[error("message from {sender} does not verify: {reason}")]
    BadMessageSignature { sender: Address, reason: String },
    #[error("{what} from {sender} is malformed: {reason}")]
    MalformedMessage {
        sender: Address,
        what: &'static str,
        reason: String,
    },
    #[error("membership change in block {height} refused: {reason}")]
    MembershipChange { height: Height, reason: String },
    #[error("persisted raft state is unreadable: {reason}")]
    Persisted { reason: String },
}

impl From<crate::signed::BadMessageSignature> for RaftError {
    fn from(e: crate::signed::BadMessageSignature) -> RaftError {
        RaftError::BadMessageSignature {
            sender: e.sender,
            reason: e.reason,
        }
    }
}
