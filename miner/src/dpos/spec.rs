//! Delegated proof of stake as an engine choice.

use crate::dpos::{DposEngine, DposParams, DposProducer};
use crate::spec::{EngineParams, Engines, Finality, Mode, Reward, SpecError};
use chain::{Address, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for DposParams {
    fn devnet(authorities: &[Address]) -> DposParams {
        DposParams::devnet(authorities.to_vec())
    }

    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }

    fn block_time(&self) -> u64 {
        self.slot_secs
    }

    fn set_block_time(&mut self, secs: u64) {
        self.slot_secs = secs;
    }

    fn has_authorities() -> bool {
        true
    }

    /// The last irreversible block, which the engine reports.
    fn finality(_producers: usize) -> Finality {
        Finality::Reported
    }

    fn reward(&self) -> Reward {
        Reward::Fixed(self.block_reward)
    }

    /// The producer looks two rounds ahead; one round later the next look still starts
    /// where the last one ended.
    fn idle_retry_secs(&self) -> u64 {
        self.slot_secs.saturating_mul(u64::from(self.producers))
    }

    fn build(&self, author: Option<&SecretKey>, _mode: Mode) -> Result<Engines, SpecError> {
        let engine = DposEngine::new(self.clone()).map_err(|e| SpecError::invalid("dpos", e))?;
        Ok(Engines {
            producer: author.map(|key| -> Arc<dyn BlockProducer> {
                Arc::new(DposProducer::new(key.clone(), engine.clone()))
            }),
            engine: Arc::new(engine),
        })
    }
}
