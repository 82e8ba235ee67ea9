//! Delegated proof of stake, BitShares/EOSIO style.
//!
//! - Anyone registers as a delegate (`register-delegate`); holders vote for up to
//!   `max_votes` delegates (`vote`/`unvote`), each vote carrying the voter's whole balance
//!   (approval voting).
//! - Time is cut into slots of `slot_secs` aligned to the Unix epoch (slot `s` starts at
//!   `s · slot_secs`), and slots into rounds of `producers` slots. At the first block of a
//!   round the delegates are ranked on the parent's state (votes weighted by the voters'
//!   balances at that boundary; genesis delegates first among equals, so they hold the set
//!   until votes exist) and the top `producers` form the active set.
//! - The active set is shuffled with a seed from the round number and the elected set
//!   only: nothing in a block feeds it, so no producer can grind the schedule with the
//!   block it makes, and every node computes the same order. Slot `s` belongs to
//!   `schedule[(s mod producers) mod n]`; a block outside its producer's slot is refused,
//!   and every slot passed over without a block counts as missed for its producer.
//! - A block weighs 1 (the chain with the most produced slots wins).
//! - Equivocation: every node remembers one header per (slot, producer) it verified; a
//!   second, different one is evidence. Producers put pending evidence in their next
//!   block's engine data; the state records it once and the offender is never elected
//!   again.
//! - Irreversibility: a producer's block confirms its ancestors; the last irreversible
//!   block is the newest one confirmed by more than 2/3 of the active producers (the
//!   ⌊2n/3⌋+1-th highest of their last produced heights). Fork choice never reverts it.

mod book;
mod engine;
mod error;
mod evidence;
mod params;
mod producer;
mod spec;

pub use book::{Delegate, DelegateBook, RoundState, shuffle, shuffle_seed, slot_owner};
pub use engine::{DposEngine, ENGINE_NAME};
pub use error::DposError;
pub use evidence::{Equivocation, EvidencePool, MAX_EVIDENCE_PER_BLOCK};
pub use params::{DposParams, MAX_PRODUCERS};
pub use producer::DposProducer;
