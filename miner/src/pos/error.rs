//! Why the proof-of-stake engine refused a block or could not do its work.

use crate::pos::kernel::KernelHash;
use crate::pow::{CompactTarget, Target};
use crate::seal::SealError;
use chain::{Address, Amount, BlockHash, Timestamp};

/// The proof-of-stake engine's error; refusals reach the chain wrapped in
/// `chain::EngineError::rejected("pos", …)` and can be read back with
/// `EngineError::downcast_ref::<PosError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PosError {
    #[error(
        "stake kernel {kernel} of {staker} at {time} is above its weighted target \
         {weighted_target} ({coin_days} coin-days)"
    )]
    KernelAboveTarget {
        staker: Address,
        time: Timestamp,
        kernel: KernelHash,
        weighted_target: Target,
        coin_days: u128,
    },
    #[error(
        "stake of {staker} is {age_secs}s old at {time}, younger than the minimum age of \
         {min_age}s"
    )]
    StakeTooYoung {
        staker: Address,
        time: Timestamp,
        age_secs: u64,
        min_age: u64,
    },
    #[error("{staker} has no coin-days to stake at {time} (balance {balance}, {age_secs}s old)")]
    ZeroWeight {
        staker: Address,
        time: Timestamp,
        balance: Amount,
        age_secs: u64,
    },
    #[error("block seal: {0}")]
    Seal(#[from] SealError),
    #[error("timestamp {timestamp} is not a multiple of the stake granularity {granularity}s")]
    TimestampNotAligned {
        timestamp: Timestamp,
        granularity: u64,
    },
    #[error("timestamp {timestamp} is not after the parent's {parent_timestamp}")]
    TimestampNotAfterParent {
        timestamp: Timestamp,
        parent_timestamp: Timestamp,
    },
    #[error("wrong stake target bits: expected {expected}, got {got}")]
    WrongBits {
        expected: CompactTarget,
        got: CompactTarget,
    },
    #[error("bits {bits} do not encode a valid target (negative, overflowing or zero)")]
    InvalidBits { bits: CompactTarget },
    #[error("target {target} is easier than the proof-of-stake limit {limit}")]
    TargetAboveLimit { target: Target, limit: Target },
    #[error("the stake proof in the header's engine data cannot be read: {reason}")]
    BadStakeProof { reason: String },
    #[error(
        "the header's stake proof says {field} is {header}, but the parent state gives {state}"
    )]
    StakeProofMismatch {
        field: &'static str,
        header: String,
        state: String,
    },
    #[error("stake reward of {address} overflows ({balance} for {age_secs}s)")]
    RewardOverflow {
        address: Address,
        balance: Amount,
        age_secs: u64,
    },
    #[error("stake is read from the head state, but the parent {parent} is not the head {head}")]
    StateNotAtParent { parent: BlockHash, head: BlockHash },
    #[error("the block names {producer} as producer but the staking key is {key}'s")]
    ProducerKeyMismatch { producer: Address, key: Address },
    #[error("invalid pos parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
}

impl PosError {
    /// True when the error is the data's fault (a peer sent a bad block), as opposed to our
    /// configuration or a caller's mistake.
    pub fn is_bad_data(&self) -> bool {
        !matches!(
            self,
            PosError::StateNotAtParent { .. }
                | PosError::ProducerKeyMismatch { .. }
                | PosError::InvalidParams { .. }
        )
    }
}
