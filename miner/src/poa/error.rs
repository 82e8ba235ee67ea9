//! Why the proof-of-authority engine refused a block or a vote.

use crate::poa::snapshot::SnapshotError;
use crate::seal::SealError;
use chain::{Address, Height, Timestamp};

/// Refusals reach the chain as `chain::EngineError::rejected("poa", …)`; read them back
/// with `EngineError::downcast_ref::<PoaError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoaError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Authority(#[from] SnapshotError<Address>),
    #[error(
        "block {height} at {timestamp} is less than the period of {period}s after its parent's {parent_timestamp}"
    )]
    TooEarly {
        height: Height,
        timestamp: Timestamp,
        parent_timestamp: Timestamp,
        period: u64,
    },
    #[error("difficulty {got} is neither 1 (out of turn) nor 2 (in turn)")]
    InvalidDifficulty { got: u32 },
    #[error("block {height} by {signer} claims difficulty {got}, but its turn gives {expected}")]
    WrongDifficulty {
        height: Height,
        signer: Address,
        expected: u32,
        got: u32,
    },
    #[error(
        "proof-of-authority headers carry no nonce or engine data (nonce {nonce}, {data_len} data bytes)"
    )]
    UnexpectedFields { nonce: u32, data_len: usize },
    #[error("invalid poa parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
}
