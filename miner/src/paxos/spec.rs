//! Multi-Paxos as an engine choice.

use crate::paxos::{MAX_MESSAGE_BYTES, PaxosEngine, PaxosParams, PaxosProducer};
use crate::spec::{EngineParams, Engines, Finality, Mode, Reward, SpecError};
use chain::{Address, Amount, BlockProducer, SecretKey};
use std::sync::Arc;

impl EngineParams for PaxosParams {
    /// Raft's devnet timings, for the same reason: [`PaxosParams::devnet`]'s 150–300 ms
    /// assume servers that answer within a millisecond or two, while a devnet's servers
    /// are processes on one busy machine that fsync every promise and accepted value and
    /// talk through gossip. They wait 500–1000 ms for a leader, which heartbeats every
    /// 100 ms.
    fn devnet(authorities: &[Address]) -> PaxosParams {
        PaxosParams {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1_000,
            ..PaxosParams::devnet(authorities.to_vec())
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

    /// A block is final once it is chosen (a majority accepted it in one ballot), which
    /// the node reports as its finalized height: every stored block was chosen.
    fn finality(_producers: usize) -> Finality {
        Finality::Reported
    }

    /// Paxos mints nothing; the leader keeps the fees.
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
        let engine = PaxosEngine::new(self.clone()).map_err(|e| SpecError::invalid("paxos", e))?;
        Ok(Engines {
            producer: author
                .map(|key| -> Arc<dyn BlockProducer> { Arc::new(PaxosProducer::new(key.clone())) }),
            engine: Arc::new(engine),
        })
    }
}
