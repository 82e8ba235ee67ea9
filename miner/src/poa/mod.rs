//! Proof of authority with Clique's rules (EIP-225).
//!
//! A fixed, voted set of authorities signs blocks in turn:
//! - the in-turn signer of block `n` is `authorities[n mod N]` (sorted by address); its
//!   blocks weigh 2 in fork choice, anyone else's 1, so the in-turn chain wins a race;
//! - an out-of-turn signer waits an extra 0 … (⌊N/2⌋+1)·500 ms, so the in-turn block
//!   usually arrives first;
//! - a signer may sign at most one of any ⌊N/2⌋+1 consecutive blocks, so a minority of
//!   signers cannot run the chain on their own;
//! - blocks are at least `period` seconds apart;
//! - an authority votes to add or remove an address with a `propose-authority`
//!   transaction; more than N/2 distinct authorities carry it; pending votes are discarded
//!   at every `epoch` checkpoint.
//!
//! The authority snapshot lives in the chain state (namespace `poa`), so it is committed
//! by the state root and follows reorgs like balances. The rules themselves are in
//! [`snapshot`], checked against every case of go-ethereum's Clique tests.

mod engine;
mod error;
mod params;
mod producer;
pub mod snapshot;
mod spec;

pub use engine::{ENGINE_NAME, PoaEngine};
pub use error::PoaError;
pub use params::PoaParams;
pub use producer::PoaProducer;
pub use snapshot::{Snapshot, SnapshotError, VoteOutcome};

/// Difficulty (fork-choice weight) of a block signed in turn.
pub const DIFF_IN_TURN: u32 = 2;
/// Difficulty of a block signed out of turn.
pub const DIFF_NO_TURN: u32 = 1;
/// The out-of-turn delay unit: a signer waits up to (⌊N/2⌋+1) of them.
pub const WIGGLE_MILLIS: u64 = 500;
