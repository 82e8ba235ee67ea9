//! The one canonical binary encoding for every byte string that is hashed, signed, stored or
//! sent: borsh (fixed-width little-endian integers, u32-length-prefixed sequences, strict
//! bools and enum tags).
//!
//! Decoding is strict: the input must fit its type's byte limit, must be consumed entirely,
//! and must be exactly what the encoder would produce for the decoded value (checked by
//! re-encoding), so every value has one encoding and one hash.

use borsh::{BorshDeserialize, BorshSerialize};

/// Largest encoded transaction.
pub const MAX_TX_BYTES: usize = 4 * 1024;
/// Most transactions in one gossip batch ([`crate::tx::TxBatch`]).
pub const MAX_TXS_PER_BATCH: usize = 1024;
/// Largest encoded gossip batch of transactions: 64 transfers of the largest size, or
/// about 1,300 plain transfers (~190 bytes each) — cut by [`MAX_TXS_PER_BATCH`] first.
pub const MAX_TX_BATCH_BYTES: usize = 256 * 1024;
/// Largest encoded block (header and transactions).
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// Most transactions in one block.
pub const MAX_TXS_PER_BLOCK: usize = 20_000;
/// Largest encoded header.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest engine data or seal inside a header.
pub const MAX_ENGINE_FIELD_BYTES: usize = 16 * 1024;

/// A type with a canonical encoding and a byte limit.
pub trait Canonical: BorshSerialize + BorshDeserialize + Sized {
    /// Name used in error messages.
    const NAME: &'static str;
    /// Longest accepted encoding.
    const MAX_BYTES: usize;

    fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh serialization into a Vec cannot fail")
    }

    /// Strict decoding: size limit, no trailing bytes, canonical form.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_limited(bytes, Self::MAX_BYTES, Self::NAME)
    }
}

/// Decodes `bytes` as `T` under `max` bytes, rejecting trailing and non-canonical input.
pub fn decode_limited<T: BorshSerialize + BorshDeserialize>(
    bytes: &[u8],
    max: usize,
    what: &'static str,
) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    let value: T = borsh::from_slice(bytes).map_err(|e| CodecError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    let again = borsh::to_vec(&value).expect("borsh serialization into a Vec cannot fail");
    if again != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} is not in canonical encoding")]
    NonCanonical { what: &'static str },
}
