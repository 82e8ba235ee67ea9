//! PBFT as an engine choice.

use crate::pbft::message::MAX_MESSAGE_BYTES;
use crate::pbft::{PbftEngine, PbftParams, PbftProducer};
use crate::spec::{EngineParams, voting_engine_params};
use chain::Address;

impl EngineParams for PbftParams {
    fn devnet(authorities: &[Address]) -> PbftParams {
        PbftParams::devnet(authorities.to_vec())
    }

    /// Quorums of ⌈(n+f+1)/2⌉ share an honest replica with f = ⌊(n−1)/3⌋ liars.
    fn tolerates_lies() -> bool {
        true
    }

    voting_engine_params!("pbft", PbftEngine, PbftProducer, MAX_MESSAGE_BYTES);
}
