//! Proof of work as an engine choice.

use crate::pow::{PowEngine, PowParams, PowProducer, Retarget};
use crate::spec::{CONFIRMATIONS, EngineParams, Engines, Finality, Mode, Reward, SpecError};
use chain::{Address, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for PowParams {
    fn devnet(_authorities: &[Address]) -> PowParams {
        PowParams::devnet()
    }

    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }

    fn block_time(&self) -> u64 {
        self.target_block_time
    }

    /// Also keeps an ASERT half-life of 20 blocks.
    fn set_block_time(&mut self, secs: u64) {
        self.target_block_time = secs;
        if let Retarget::Asert { half_life } = &mut self.retarget {
            *half_life = secs * 20;
        }
    }

    fn genesis_bits(&self) -> u32 {
        self.genesis_bits.to_consensus()
    }

    /// A proof of work proves nothing about its author and may repeat a timestamp freely.
    fn signs_blocks() -> bool {
        false
    }

    fn mines() -> bool {
        true
    }

    fn finality(_producers: usize) -> Finality {
        Finality::Confirmations(CONFIRMATIONS)
    }

    fn reward(&self) -> Reward {
        Reward::Fixed(self.block_reward)
    }

    fn share_basis() -> &'static str {
        "hash power"
    }

    /// A miner always has a turn.
    fn idle_retry_secs(&self) -> u64 {
        1
    }

    fn build(&self, author: Option<&SecretKey>, mode: Mode) -> Result<Engines, SpecError> {
        let (engine, threads) = match mode {
            Mode::Node { threads } => (PowEngine::new(self.clone()), threads),
            // One idle thread: the simulator asks the producer for turns and templates,
            // never for a seal.
            Mode::Simulation => (PowEngine::for_simulation(self.clone()), 1),
        };
        let engine = engine.map_err(|e| SpecError::invalid("pow", e))?;
        let producer: Option<Arc<dyn BlockProducer>> = match author {
            Some(key) => Some(Arc::new(
                PowProducer::with_threads(key.address(), engine.clone(), threads).map_err(|e| {
                    SpecError::Producer {
                        engine: "pow",
                        reason: e.to_string(),
                    }
                })?,
            )),
            None => None,
        };
        Ok(Engines {
            engine: Arc::new(engine),
            producer,
        })
    }
}
