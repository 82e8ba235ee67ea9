//! ZAB as an engine choice.

use crate::spec::{EngineParams, Engines, Finality, Mode, Reward, SpecError};
use crate::zab::{MAX_MESSAGE_BYTES, ZabEngine, ZabParams, ZabProducer};
use chain::{Address, Amount, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for ZabParams {
    /// [`ZabParams::devnet`]'s 50 ms ticks and 250 ms sync limit assume servers that
    /// answer within a millisecond or two. A devnet's servers are processes on one machine
    /// that fsync every epoch and proposal (tens of milliseconds on a busy disk) and talk
    /// through gossip, so they PING every 100 ms, give up on a leader after 1000 ms of
    /// silence, and let an election settle for 200 ms (ZooKeeper's `finalizeWait`).
    fn devnet(authorities: &[Address]) -> ZabParams {
        ZabParams {
            tick_ms: 100,
            sync_limit_ms: 1_000,
            election_wait_ms: 200,
            ..ZabParams::devnet(authorities.to_vec())
        }
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

    /// A block is final once a majority of the servers acked it (its commit), which the
    /// node reports as its finalized height (the head: every stored block was committed).
    fn finality(_producers: usize) -> Finality {
        Finality::Reported
    }

    /// ZAB mints nothing; the leader keeps the fees.
    fn reward(&self) -> Reward {
        Reward::Fixed(Amount::ZERO)
    }

    /// The leader's machine asks for a block every block time.
    fn idle_retry_secs(&self) -> u64 {
        self.block_time
    }

    fn votes() -> bool {
        true
    }

    fn max_message_bytes() -> usize {
        MAX_MESSAGE_BYTES
    }

    fn build(&self, author: Option<&SecretKey>, _mode: Mode) -> Result<Engines, SpecError> {
        let engine = ZabEngine::new(self.clone()).map_err(|e| SpecError::invalid("zab", e))?;
        Ok(Engines {
            producer: author
                .map(|key| -> Arc<dyn BlockProducer> { Arc::new(ZabProducer::new(key.clone())) }),
            engine: Arc::new(engine),
        })
    }
}
