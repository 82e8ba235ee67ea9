//! Raft as an engine choice.

use crate::raft::{MAX_MESSAGE_BYTES, RaftEngine, RaftParams, RaftProducer};
use crate::spec::{EngineParams, Engines, Finality, Mode, Reward, SpecError};
use chain::{Address, Amount, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for RaftParams {
    /// [`RaftParams::devnet`]'s 150–300 ms elections assume servers that answer within a
    /// millisecond or two. A devnet's servers are processes on one machine that fsync every
    /// term and vote (tens of milliseconds on a busy disk) and talk through gossip, so
    /// they wait 500–1000 ms for a leader, which heartbeats every 100 ms.
    fn devnet(authorities: &[Address]) -> RaftParams {
        RaftParams {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1_000,
            ..RaftParams::devnet(authorities.to_vec())
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

    /// A block is final once a majority of the servers hold it (its commit), which the
    /// node reports as its finalized height (the head: every stored block was committed).
    fn finality(_producers: usize) -> Finality {
        Finality::Reported
    }

    /// Raft mints nothing; the leader keeps the fees.
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
        let engine = RaftEngine::new(self.clone()).map_err(|e| SpecError::invalid("raft", e))?;
        Ok(Engines {
            producer: author
                .map(|key| -> Arc<dyn BlockProducer> { Arc::new(RaftProducer::new(key.clone())) }),
            engine: Arc::new(engine),
        })
    }
}
