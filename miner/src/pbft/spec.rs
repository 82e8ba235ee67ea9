//! PBFT as an engine choice.

use crate::pbft::message::MAX_MESSAGE_BYTES;
use crate::pbft::{PbftEngine, PbftParams, PbftProducer};
use crate::spec::{EngineParams, Engines, Finality, Mode, Reward, SpecError};
use chain::{Address, Amount, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for PbftParams {
    fn devnet(authorities: &[Address]) -> PbftParams {
        PbftParams::devnet(authorities.to_vec())
    }

    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }

    fn block_time(&self) -> u64 {
        self.block_time
    }

    fn set_block_time(&mut self, secs: u64) {
        self.block_time = secs;
    }

    fn has_authorities() -> bool {
        true
    }

    /// A block is final once 2f+1 validators committed it, which the node reports as its
    /// finalized height (the head: every stored block was committed).
    fn finality(_producers: usize) -> Finality {
        Finality::Reported
    }

    /// PBFT mints nothing; the primary keeps the fees.
    fn reward(&self) -> Reward {
        Reward::Fixed(Amount::ZERO)
    }

    /// The primary's machine asks for a block a block time after its parent.
    fn idle_retry_secs(&self) -> u64 {
        self.block_time
    }

    fn votes() -> bool {
        true
    }

    fn max_message_bytes() -> usize {
        MAX_MESSAGE_BYTES
    }

    /// Quorums of ⌈(n+f+1)/2⌉ share an honest replica with f = ⌊(n−1)/3⌋ liars.
    fn tolerates_lies() -> bool {
        true
    }

    fn build(&self, author: Option<&SecretKey>, _mode: Mode) -> Result<Engines, SpecError> {
        let engine = PbftEngine::new(self.clone()).map_err(|e| SpecError::invalid("pbft", e))?;
        Ok(Engines {
            producer: author
                .map(|key| -> Arc<dyn BlockProducer> { Arc::new(PbftProducer::new(key.clone())) }),
            engine: Arc::new(engine),
        })
    }
}
