//! The authoring half of proof of stake: find the first time the staker's kernel meets its
//! weighted target, then sign.

use crate::pos::engine::{ENGINE_NAME, PosEngine};
use crate::pos::error::PosError;
use crate::pos::kernel::KernelCheck;
use crate::seal::sign_header;
use chain::{
    Address, BlockProducer, CancelFlag, ChainView, EngineError, Header, SealedHeader, SecretKey,
    Timestamp, Turn,
};
use tracing::debug;

/// How far ahead of now the producer looks for a kernel by default, in seconds.
pub const DEFAULT_SEARCH_WINDOW: u64 = 60;

/// Stakes the coins of one key: tries every `granularity`-aligned time of a bounded
/// window against the kernel inequality, from the head state.
#[derive(Debug)]
pub struct PosProducer {
    key: SecretKey,
    engine: PosEngine,
    window: u64,
}

impl PosProducer {
    pub fn new(key: SecretKey, engine: PosEngine) -> PosProducer {
        PosProducer {
            key,
            engine,
            window: DEFAULT_SEARCH_WINDOW,
        }
    }

    /// Looks for kernels up to `secs` ahead of now (at least one granularity step).
    pub fn with_search_window(mut self, secs: u64) -> PosProducer {
        self.window = secs;
        self
    }

    pub fn engine(&self) -> &PosEngine {
        &self.engine
    }

    /// The first time in `[from, to]` at which the staker may sign a child of `parent`
    /// (the head), with its kernel; `None` when there is none (no stake, too young, no
    /// lucky kernel). Only `granularity`-aligned times after the parent are tried.
    pub fn find_kernel(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<KernelCheck>, EngineError> {
        let params = self.engine.params();
        let inputs = self
            .engine
            .stake_inputs(chain, parent, self.key.address())?;
        let Some(oldest) = inputs.age.oldest_origin() else {
            return Ok(None);
        };
        let step = params.granularity;
        // No second counts until one past the minimum age of the oldest coins.
        let first_weighted = oldest
            .0
            .saturating_add(params.stake_min_age)
            .saturating_add(1);
        let start = from
            .0
            .max(parent.timestamp.0.saturating_add(1))
            .max(first_weighted);
        let Some(mut t) = start.checked_next_multiple_of(step) else {
            return Ok(None);
        };
        while t <= to.0 {
            let check = inputs.evaluate(params, Timestamp(t));
            if check.meets() {
                return Ok(Some(check));
            }
            let Some(next) = t.checked_add(step) else {
                break;
            };
            t = next;
        }
        Ok(None)
    }
}

impl BlockProducer for PosProducer {
    fn author(&self) -> Address {
        self.key.address()
    }

    /// The first kernel hit from `max(parent + granularity, now)` to `now + window`. A
    /// parent other than the head has no state to read yet: no turn (the caller asks again
    /// for the new head).
    fn next_turn(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        now_millis: u64,
    ) -> Result<Option<Turn>, EngineError> {
        if chain.head().hash() != parent.hash() {
            return Ok(None);
        }
        let now = now_millis / 1000;
        let found = self.find_kernel(
            chain,
            parent,
            Timestamp(now),
            Timestamp(now.saturating_add(self.window)),
        )?;
        Ok(found.map(|check| {
            debug!(
                staker = %check.staker,
                time = %check.time,
                coin_days = check.coin_days,
                "stake kernel found"
            );
            Turn {
                at_millis: check.time.0.saturating_mul(1000),
                timestamp: check.time,
            }
        }))
    }

    /// Sets the expected bits and writes the stake proof of the header's producer and
    /// time into the engine data (the kernel itself is judged when the block is executed).
    fn prepare(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        header: &mut Header,
    ) -> Result<(), EngineError> {
        header.engine.bits = self.engine.next_bits(chain, parent)?.to_consensus();
        let check = self
            .engine
            .kernel_at(chain, parent, header.producer, header.timestamp)?;
        header.engine.nonce = 0;
        header.engine.data = check.proof().to_bytes();
        header.engine.seal = Vec::new();
        Ok(())
    }

    fn signs_blocks(&self) -> bool {
        true
    }

    /// Signs with the staker's key; a header naming another producer is refused rather
    /// than given a seal that cannot verify.
    fn seal(&self, header: Header, cancel: &CancelFlag) -> Result<Option<Header>, EngineError> {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let key = self.key.address();
        if header.producer != key {
            return Err(EngineError::rejected(
                ENGINE_NAME,
                PosError::ProducerKeyMismatch {
                    producer: header.producer,
                    key,
                },
            ));
        }
        Ok(Some(sign_header(header, &self.key)))
    }
}
