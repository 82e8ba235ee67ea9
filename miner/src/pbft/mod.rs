//! Practical Byzantine Fault Tolerance (Castro & Liskov, OSDI 1999), one instance per
//! height (the sequence number is the height).
//!
//! `N` validators tolerate `f = ⌊(N−1)/3⌋` Byzantine ones. In view `v` the primary is
//! `validators[v mod N]` (address order). The normal case (§4.2): the primary sends
//! PRE-PREPARE(v, h, block); each replica that finds the block valid sends PREPARE; on
//! `2f+1` matching PREPAREs it is *prepared* and sends COMMIT; on `2f+1` matching COMMITs
//! the block is decided and imported with those COMMIT signatures as its certificate, so
//! every stored block is final. The view is kept across heights until a view change
//! (§4.4): a replica whose view timer expires sends VIEW-CHANGE(v+1) with its prepared
//! certificate; the new primary, on `2f+1` of them, sends NEW-VIEW and re-proposes the
//! block prepared in the highest view among them, so a block that may have been decided is
//! never replaced. View timeouts double per failed view up to a cap and reset after a
//! decision (§4.5.2).
//!
//! The validators are the chain spec's at genesis and change by votes of 2f+1 of them,
//! taking effect at the next height ([`membership`]).
//!
//! The protocol runs in [`PbftMachine`], a pure [`chain::VotingMachine`]; [`PbftEngine`]
//! checks blocks and certificates on every node.

mod engine;
mod error;
mod machine;
pub mod membership;
pub mod message;
mod params;
mod spec;

/// PBFT's producer: signs what the primary's machine asks for.
pub use crate::seal::VoteSealer as PbftProducer;
pub use engine::{ENGINE_NAME, PbftEngine};
pub use error::PbftError;
pub use machine::{PbftMachine, TIMER_BUILD, TIMER_RESEND, TIMER_VIEW, VIEW_WINDOW};
pub use params::PbftParams;
