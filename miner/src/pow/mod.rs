//! Proof of work as Bitcoin does it, retargeted with Bitcoin Cash's ASERT or Bitcoin's own
//! rule.
//!
//! A block is valid when its hash, read as a little-endian 256-bit number, is at most the
//! target its `bits` encode, and those bits are the ones the retarget rule demands:
//!
//! `sha256d(header₈₀) ≤ target(bits)`, weight `= 2^256 / (target + 1)`
//!
//! - **ASERT** (aserti3-2d, the default): `target = target_anchor ·
//!   2^((t_parent − t_anchor_parent − T·(h_parent − h_anchor + 1)) / half_life)`, anchored
//!   at block 1 (which carries the genesis bits; its parent time is taken as its own time
//!   − T, since a spec's genesis time may be long before the chain starts). Each block is
//!   scheduled from one fixed point, so rounding never accumulates and a hash-rate change
//!   is absorbed within a few half-lives.
//! - **Bitcoin**: every `interval` blocks `target' = target · clamp(Δt, timespan/4,
//!   4·timespan) / timespan`, with Bitcoin's off-by-one (Δt spans `interval − 1` blocks)
//!   and BIP94's rule that a period's first block is not earlier than its parent − 600 s.
//!
//! The compact `bits` encoding follows Bitcoin Core's `SetCompact`/`GetCompact` to the
//! bit. The miner hashes only the last 16 bytes per nonce from a SHA-256 midstate, splits
//! the nonce space over rayon threads and rolls an 8-byte extra-nonce in the header's
//! engine data when it runs out.

pub mod bench;
mod engine;
mod error;
mod params;
mod producer;
mod retarget;
mod search;
mod spec;
mod target;

pub use engine::{ENGINE_NAME, PowEngine};
pub use error::PowError;
pub use params::{PowParams, Retarget};
pub use producer::{EXTRA_NONCE_BYTES, PowProducer};
pub use retarget::{AsertParams, BitcoinRetarget, asert_next_bits, bitcoin_next_bits};
pub use search::{DEFAULT_LANES, SUPPORTED_LANES};
pub use target::{CompactTarget, DecodedCompact, Target, Work, hash_value};

use chain::BlockHash;
use sha2::{Digest, Sha256};

/// Bitcoin's block hash: sha256d of the 80-byte header (shown byte-reversed, as
/// `BlockHash`'s `Display` does).
pub fn header_hash(preimage: &[u8; 80]) -> BlockHash {
    BlockHash(Sha256::digest(Sha256::digest(preimage)).into())
}
