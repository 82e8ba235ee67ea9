//! Coin-age proof of stake as an engine choice.

use crate::pos::{PosEngine, PosParams, PosProducer};
use crate::spec::{CONFIRMATIONS, EngineParams, Engines, Finality, Mode, Reward, SpecError};
use chain::{Address, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for PosParams {
    fn devnet(_authorities: &[Address]) -> PosParams {
        PosParams::devnet()
    }

    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }

    fn block_time(&self) -> u64 {
        self.target_spacing
    }

    /// Scales the ages, modifier times and retarget window with the spacing as the
    /// devnet's 5 s values do; the retarget finds the target.
    fn set_block_time(&mut self, secs: u64) {
        self.target_spacing = secs;
        self.target_timespan = 24 * secs;
        self.stake_min_age = 2 * secs;
        self.stake_max_age = 6 * secs;
        self.modifier_interval = 6 * secs;
        self.modifier_selection = 12 * secs;
    }

    fn genesis_bits(&self) -> u32 {
        self.genesis_bits.to_consensus()
    }

    fn finality(_producers: usize) -> Finality {
        Finality::Confirmations(CONFIRMATIONS)
    }

    /// Peercoin pays for the coin age a stake consumed.
    fn reward(&self) -> Reward {
        Reward::Explained
    }

    fn share_basis() -> &'static str {
        "equal stakes"
    }

    /// Four target spacings: a staker with no kernel in that window is asked again when it
    /// has passed (the answer cannot change sooner on the same head), and every head change
    /// asks at once; a longer window would only scan seconds that the next head makes moot.
    /// The node's own producer looks [`crate::pos::DEFAULT_SEARCH_WINDOW`] seconds ahead.
    fn idle_retry_secs(&self) -> u64 {
        self.target_spacing.saturating_mul(4).max(self.granularity)
    }

    fn build(&self, author: Option<&SecretKey>, mode: Mode) -> Result<Engines, SpecError> {
        let engine = PosEngine::new(self.clone()).map_err(|e| SpecError::invalid("pos", e))?;
        let window = self.idle_retry_secs();
        Ok(Engines {
            producer: author.map(|key| -> Arc<dyn BlockProducer> {
                let producer = PosProducer::new(key.clone(), engine.clone());
                Arc::new(match mode {
                    Mode::Node { .. } => producer,
                    Mode::Simulation => producer.with_search_window(window),
                })
            }),
            engine: Arc::new(engine),
        })
    }
}
