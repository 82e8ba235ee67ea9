//! Why the PBFT engine refused a block, a certificate or a message.

use crate::quorum::QuorumError;
use crate::seal::SealError;
use chain::{Address, BlockHash, CodecError, Height, Timestamp};

/// Refusals reach the chain and the node as `chain::EngineError::rejected("pbft", …)`; read
/// them back with `EngineError::downcast_ref::<PbftError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PbftError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("pbft message: {0}")]
    Codec(CodecError),
    #[error("pbft header engine data: {0}")]
    HeaderData(CodecError),
    #[error("pbft headers carry no bits or nonce (bits {bits}, nonce {nonce})")]
    UnexpectedFields { bits: u32, nonce: u32 },
    #[error(
        "block {height} at {timestamp} is less than the block time of {block_time}s after its parent's {parent_timestamp}"
    )]
    TooEarly {
        height: Height,
        timestamp: Timestamp,
        parent_timestamp: Timestamp,
        block_time: u64,
    },
    #[error("{sender} is not the primary of view {view} at height {height}; {primary} is")]
    NotPrimary {
        height: Height,
        view: u64,
        sender: Address,
        primary: Address,
    },
    #[error("the validator set is empty")]
    NoValidators,
    #[error(
        "{sender} sent two different {phase} messages in view {view} at height {height}: {first} and {second}"
    )]
    Equivocation {
        sender: Address,
        phase: crate::quorum::Phase,
        height: Height,
        view: u64,
        first: BlockHash,
        second: BlockHash,
    },
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error(
        "a view change to view {view} names prepared block {block} without a valid prepared certificate: {reason}"
    )]
    BadPrepared {
        view: u64,
        block: BlockHash,
        reason: String,
    },
    #[error("new view {view} carries {got} distinct view changes, {needed} needed")]
    NewViewQuorum {
        view: u64,
        got: usize,
        needed: usize,
    },
    #[error(
        "new view {view} must re-propose block {prepared}, prepared in view {prepared_view}, but proposes {proposed:?}"
    )]
    NewViewDropsPrepared {
        view: u64,
        prepared: BlockHash,
        prepared_view: u64,
        proposed: Option<BlockHash>,
    },
    #[error("{sender} is not a validator, so it cannot vote on validators")]
    NotAValidator { sender: Address },
    #[error("a vote to {} {target} changes nothing", if *add { "add" } else { "remove" })]
    PointlessVote { target: Address, add: bool },
    #[error("removing {target}, the last validator, would leave no one to decide")]
    WouldEmptySet { target: Address },
    #[error("the validator set is full ({max})")]
    TooManyValidators { max: usize },
    #[error("invalid pbft parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("persisted pbft state: {0}")]
    Persisted(CodecError),
}
