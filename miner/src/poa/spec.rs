//! Proof of authority as an engine choice.

use crate::poa::{PoaEngine, PoaParams, PoaProducer};
use crate::spec::{EngineParams, Engines, Finality, Mode, Reward, SpecError};
use chain::{Address, Amount, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for PoaParams {
    fn devnet(authorities: &[Address]) -> PoaParams {
        PoaParams::devnet(authorities.to_vec())
    }

    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }

    fn block_time(&self) -> u64 {
        self.period
    }

    fn set_block_time(&mut self, secs: u64) {
        self.period = secs;
    }

    fn has_authorities() -> bool {
        true
    }

    /// Clique has no finality of its own: a block is as safe as the majority of signers
    /// that built on it (⌊N/2⌋+1 distinct signers at or above it).
    fn finality(producers: usize) -> Finality {
        Finality::Signers(producers / 2 + 1)
    }

    fn reward(&self) -> Reward {
        Reward::Fixed(Amount::ZERO)
    }

    /// A signer without a turn (not an authority, or signed too recently) gets one only
    /// from a new head; asking once a period is a safety net.
    fn idle_retry_secs(&self) -> u64 {
        self.period
    }

    fn build(&self, author: Option<&SecretKey>, _mode: Mode) -> Result<Engines, SpecError> {
        let engine = PoaEngine::new(self.clone()).map_err(|e| SpecError::invalid("poa", e))?;
        Ok(Engines {
            producer: author.map(|key| -> Arc<dyn BlockProducer> {
                Arc::new(PoaProducer::new(key.clone(), engine.clone()))
            }),
            engine: Arc::new(engine),
        })
    }
}
