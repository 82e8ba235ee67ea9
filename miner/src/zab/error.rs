//! Why the ZAB engine refused a block, a certificate or a message.

use crate::quorum::QuorumError;
use crate::seal::SealError;
use chain::codec::CodecError;
use chain::{Address, Height};

/// Refusals reach the node as `chain::EngineError::rejected("zab", …)`; read them back
/// with `EngineError::downcast_ref::<ZabError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZabError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("invalid zab parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("block {height} is produced by {producer}, who is not a zab server")]
    NotServer { height: Height, producer: Address },
    #[error("zab headers carry no nonce and weight 1 (bits {bits}, nonce {nonce})")]
    UnexpectedFields { bits: u32, nonce: u32 },
    #[error("block {height} has zxid {zxid}, not above its parent's {parent_zxid}")]
    ZxidOrder {
        height: Height,
        zxid: String,
        parent_zxid: String,
    },
    #[error(
        "certificate of block {height} is of epoch {certificate_epoch}, below the block's zxid epoch {block_epoch}"
    )]
    CertificateEpoch {
        height: Height,
        certificate_epoch: u64,
        block_epoch: u64,
    },
    #[error("certificate of block {height} does not prove it: {source}")]
    Certificate { height: Height, source: QuorumError },
    #[error("message from {sender}, who is not a zab server")]
    SenderNotServer { sender: Address },
    #[error("message from {sender} does not verify: {reason}")]
    BadMessageSignature { sender: Address, reason: String },
    #[error("ack by {signer} of block {height} does not verify: {reason}")]
    BadAck {
        signer: Address,
        height: Height,
        reason: String,
    },
    #[error("{what} from {sender} is malformed: {reason}")]
    MalformedMessage {
        sender: Address,
        what: &'static str,
        reason: String,
    },
    #[error("persisted zab state is unreadable: {reason}")]
    Persisted { reason: String },
}

impl From<crate::envelope::BadSignature> for ZabError {
    fn from(e: crate::envelope::BadSignature) -> ZabError {
        ZabError::BadMessageSignature {
            sender: e.sender,
            reason: e.reason,
        }
    }
}
