//! Why the proof-of-work engine refused a header or could not do its work.

use crate::pow::target::{CompactTarget, Target};
use chain::{Address, BlockHash, Height, Timestamp};

/// The proof-of-work engine's error; header refusals reach the chain wrapped in
/// `chain::EngineError::rejected("pow", …)` and can be read back with
/// `EngineError::downcast_ref::<PowError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error("block hash {hash} is above the target {target}")]
    HashAboveTarget { hash: BlockHash, target: Target },
    #[error("wrong difficulty bits: expected {expected}, got {got}")]
    WrongBits {
        expected: CompactTarget,
        got: CompactTarget,
    },
    #[error("bits {bits} do not encode a valid target (negative, overflowing or zero)")]
    InvalidBits { bits: CompactTarget },
    #[error("target {target} is easier than the proof-of-work limit {limit}")]
    TargetAboveLimit { target: Target, limit: Target },
    #[error(
        "timewarp: block {height} starts a retarget period at {timestamp}, earlier than \
         its parent's {parent_timestamp} minus {max_timewarp}s"
    )]
    TimewarpViolation {
        height: Height,
        timestamp: Timestamp,
        parent_timestamp: Timestamp,
        max_timewarp: u64,
    },
    #[error(
        "the genesis block has bits {genesis} but the pow parameters say {params}: \
         build the genesis with `Genesis::bits = PowParams::genesis_bits`"
    )]
    GenesisBitsMismatch {
        genesis: CompactTarget,
        params: CompactTarget,
    },
    #[error("invalid pow parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("engine data must hold the 8-byte extra-nonce (or be empty), found {len} bytes")]
    ExtraNonceField { len: usize },
    #[error("the extra-nonce space of this template is exhausted")]
    SearchSpaceExhausted,
    #[error("could not start the mining threads: {reason}")]
    ThreadPool { reason: String },
    #[error("block reward overflows the balance of {address}")]
    RewardOverflow { address: Address },
}

impl PowError {
    /// True when the error is the data's fault (a peer sent a bad header), as opposed to
    /// our configuration or machine.
    pub fn is_bad_data(&self) -> bool {
        matches!(
            self,
            PowError::HashAboveTarget { .. }
                | PowError::WrongBits { .. }
                | PowError::InvalidBits { .. }
                | PowError::TargetAboveLimit { .. }
                | PowError::TimewarpViolation { .. }
                | PowError::RewardOverflow { .. }
        )
    }
}
