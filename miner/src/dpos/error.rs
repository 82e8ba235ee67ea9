//! Why the DPoS engine refused a block or a transaction.

use crate::seal::SealError;
use chain::{Address, Height, Timestamp};

/// Refusals reach the chain as `chain::EngineError::rejected("dpos", …)`; read them back
/// with `EngineError::downcast_ref::<DposError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DposError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("timestamp {timestamp} is not the start of a {slot_secs}s slot")]
    NotSlotAligned {
        timestamp: Timestamp,
        slot_secs: u64,
    },
    #[error("block {height} is in slot {slot}, not after its parent's slot {parent_slot}")]
    SlotNotAfterParent {
        height: Height,
        slot: u64,
        parent_slot: u64,
    },
    #[error("slot {slot} belongs to {expected}, but block {height} was produced by {got}")]
    WrongProducer {
        height: Height,
        slot: u64,
        expected: Address,
        got: Address,
    },
    #[error(
        "dpos headers carry no bits or nonce, and engine data only as equivocation evidence: {reason}"
    )]
    UnexpectedFields { reason: String },
    #[error("{delegate} is already a delegate")]
    AlreadyRegistered { delegate: Address },
    #[error("{delegate} is not a registered delegate")]
    UnknownDelegate { delegate: Address },
    #[error("a vote must name at least one delegate")]
    EmptyVote,
    #[error("{delegate} is named twice in one vote")]
    DuplicateInVote { delegate: Address },
    #[error("{voter} already votes for {delegate}")]
    AlreadyVoted { voter: Address, delegate: Address },
    #[error("{voter} does not vote for {delegate}")]
    NotVoted { voter: Address, delegate: Address },
    #[error("{voter} would vote for {count} delegates; at most {max} are allowed")]
    TooManyVotes {
        voter: Address,
        count: usize,
        max: u32,
    },
    #[error("producer reward overflows {address}'s balance")]
    RewardOverflow { address: Address },
    #[error("invalid equivocation evidence: {reason}")]
    InvalidEvidence { reason: String },
    #[error("{offender}'s equivocation in slot {slot} is already recorded")]
    EvidenceAlreadyRecorded { offender: Address, slot: u64 },
    #[error("engine data holds {count} pieces of evidence; at most {max} fit in a block")]
    TooMuchEvidence { count: usize, max: usize },
    #[error("invalid dpos parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
}
