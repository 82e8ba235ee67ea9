//! The authoring half of proof of work: fill in the bits, then search for a nonce.

use crate::pow::engine::PowEngine;
use crate::pow::error::PowError;
use crate::pow::search::{self, DEFAULT_LANES, Job, NONCE_SPACE, Outcome, SUPPORTED_LANES};
use crate::pow::target::Target;
use chain::{
    Address, BlockProducer, CancelFlag, ChainView, EngineError, Header, SealedHeader, Timestamp,
    Turn,
};
use rayon::{ThreadPool, ThreadPoolBuilder};
use tracing::debug;

/// Bytes of the extra-nonce kept in `engine.data` (little-endian u64).
pub const EXTRA_NONCE_BYTES: usize = 8;

/// Mines blocks for `author` on its own rayon pool, so a running search never starves the
/// global pool that checks signatures.
#[derive(Debug)]
pub struct PowProducer {
    author: Address,
    engine: PowEngine,
    pool: ThreadPool,
    lanes: usize,
}

impl PowProducer {
    /// A producer mining on every core.
    pub fn new(author: Address, engine: PowEngine) -> Result<PowProducer, PowError> {
        PowProducer::with_threads(author, engine, 0)
    }

    /// A producer mining on `threads` threads (0 means one per core).
    pub fn with_threads(
        author: Address,
        engine: PowEngine,
        threads: usize,
    ) -> Result<PowProducer, PowError> {
        Ok(PowProducer {
            author,
            engine,
            pool: mining_pool(threads)?,
            lanes: DEFAULT_LANES,
        })
    }

    /// Nonces hashed side by side per thread: 1, 2, 4, 8 or 16 (others fall back to the
    /// default).
    pub fn with_lanes(mut self, lanes: usize) -> PowProducer {
        self.lanes = if SUPPORTED_LANES.contains(&lanes) {
            lanes
        } else {
            DEFAULT_LANES
        };
        self
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    pub fn lanes(&self) -> usize {
        self.lanes
    }

    pub fn engine(&self) -> &PowEngine {
        &self.engine
    }

    /// The earliest valid timestamp for a child of `parent`: after the median time past,
    /// and in Bitcoin mode not before the timewarp bound.
    fn earliest_timestamp(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
    ) -> Result<Timestamp, EngineError> {
        let mut earliest = chain.median_time_past(parent)?.saturating_add(1);
        if let Some(bound) = parent
            .height()
            .next()
            .and_then(|h| self.engine.earliest_timestamp(parent, h))
        {
            earliest = earliest.max(bound);
        }
        Ok(earliest)
    }
}

pub(crate) fn mining_pool(threads: usize) -> Result<ThreadPool, PowError> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("pow-miner-{i}"))
        .build()
        .map_err(|e| PowError::ThreadPool {
            reason: e.to_string(),
        })
}

/// What a mining run produced and cost.
#[derive(Debug)]
pub(crate) struct MineReport {
    /// The sealed header, or `None` when cancelled.
    pub(crate) header: Option<Header>,
    pub(crate) hashes_per_thread: Vec<u64>,
}

/// The miner: for each extra-nonce from the one in `header.engine.data`, recompute the
/// commitment and midstate, then search the 32-bit nonce space on every thread of `pool`.
pub(crate) fn mine(
    pool: &ThreadPool,
    lanes: usize,
    header: Header,
    target: Target,
    cancel: &CancelFlag,
) -> Result<MineReport, PowError> {
    mine_in(pool, lanes, header, target, cancel, NONCE_SPACE)
}

/// [`mine`] over nonces `0..space` per extra-nonce (tests shrink it to reach the roll).
fn mine_in(
    pool: &ThreadPool,
    lanes: usize,
    mut header: Header,
    target: Target,
    cancel: &CancelFlag,
    space: u64,
) -> Result<MineReport, PowError> {
    let mut extra = match header.engine.data.len() {
        0 => 0,
        EXTRA_NONCE_BYTES => {
            let mut bytes = [0u8; EXTRA_NONCE_BYTES];
            bytes.copy_from_slice(&header.engine.data);
            u64::from_le_bytes(bytes)
        }
        len => return Err(PowError::ExtraNonceField { len }),
    };
    let mut hashes_per_thread = vec![0u64; pool.current_num_threads()];
    loop {
        header.engine.data = extra.to_le_bytes().to_vec();
        let commitment = header.commitment(true);
        let job = Job::new(&header.preimage_with(&commitment), target);
        let report = search::search(pool, lanes, &job, cancel, space);
        for (total, n) in hashes_per_thread.iter_mut().zip(&report.hashes_per_thread) {
            *total += n;
        }
        match report.outcome {
            Outcome::Found(nonce) => {
                header.engine.nonce = nonce;
                debug_assert!(target.is_met_by(&header.hash()), "midstate miner agrees");
                debug!(
                    height = %header.height,
                    nonce,
                    extra_nonce = extra,
                    hashes = hashes_per_thread.iter().sum::<u64>(),
                    "block sealed"
                );
                return Ok(MineReport {
                    header: Some(header),
                    hashes_per_thread,
                });
            }
            Outcome::Cancelled => {
                return Ok(MineReport {
                    header: None,
                    hashes_per_thread,
                });
            }
            Outcome::Exhausted => {
                extra = extra.checked_add(1).ok_or(PowError::SearchSpaceExhausted)?;
                debug!(
                    height = %header.height,
                    extra_nonce = extra,
                    "nonce space exhausted, rolling extra-nonce"
                );
            }
        }
    }
}

impl BlockProducer for PowProducer {
    fn author(&self) -> Address {
        self.author
    }

    /// Proof of work may always try: now, with a timestamp no earlier than the rules allow.
    fn next_turn(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        now_millis: u64,
    ) -> Result<Option<Turn>, EngineError> {
        let now = Timestamp(now_millis / 1000);
        let timestamp = now.max(self.earliest_timestamp(chain, parent)?);
        Ok(Some(Turn {
            at_millis: now_millis,
            timestamp,
        }))
    }

    /// Sets the expected bits, a zero extra-nonce and nonce, and raises the timestamp to
    /// the earliest valid one if the template's is earlier.
    fn prepare(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        header: &mut Header,
    ) -> Result<(), EngineError> {
        header.engine.bits = self.engine.next_bits(chain, parent)?.to_consensus();
        header.engine.nonce = 0;
        header.engine.data = 0u64.to_le_bytes().to_vec();
        header.timestamp = header
            .timestamp
            .max(self.earliest_timestamp(chain, parent)?);
        Ok(())
    }

    fn seal(&self, header: Header, cancel: &CancelFlag) -> Result<Option<Header>, EngineError> {
        let reject = |e| EngineError::rejected(crate::pow::engine::ENGINE_NAME, e);
        let target = self
            .engine
            .target_of(crate::pow::CompactTarget::from_consensus(
                header.engine.bits,
            ))
            .map_err(reject)?;
        let report = mine(&self.pool, self.lanes, header, target, cancel).map_err(reject)?;
        Ok(report.header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::{BlockHash, EngineFields, Hash256, Height, U256};

    fn header(data: Vec<u8>) -> Header {
        Header {
            version: chain::block::HEADER_VERSION,
            parent: BlockHash([1; 32]),
            height: Height(5),
            timestamp: Timestamp(1_700_000_000),
            tx_root: Hash256([2; 32]),
            state_root: Hash256([3; 32]),
            producer: Address([4; 20]),
            engine: EngineFields {
                bits: 0,
                nonce: 0,
                data,
                seal: Vec::new(),
            },
        }
    }

    #[test]
    fn exhausted_nonce_space_rolls_the_extra_nonce() {
        let pool = mining_pool(2).expect("pool");
        // One hash in 2^10 qualifies, but each extra-nonce gets only 16 nonces, so the
        // miner must roll the extra-nonce many times (and recompute the midstate each time).
        let target = Target::from_u256(U256::MAX >> 10);
        let start = 5u64.to_le_bytes().to_vec();
        let report =
            mine_in(&pool, 4, header(start), target, &CancelFlag::new(), 16).expect("mines");
        let sealed = report.header.expect("not cancelled");
        assert!(target.is_met_by(&sealed.hash()));
        let extra = u64::from_le_bytes(sealed.engine.data.clone().try_into().expect("8 bytes"));
        assert!(extra > 5, "extra-nonce rolled from 5 to {extra}");
        assert!(sealed.engine.nonce < 16);
        let hashes: u64 = report.hashes_per_thread.iter().sum();
        assert!(
            hashes >= (extra - 5) * 16,
            "every exhausted template was fully searched"
        );
    }

    #[test]
    fn an_empty_data_field_starts_at_extra_nonce_zero_and_odd_lengths_are_refused() {
        let pool = mining_pool(1).expect("pool");
        let report = mine(
            &pool,
            2,
            header(Vec::new()),
            Target::MAX,
            &CancelFlag::new(),
        )
        .expect("mines");
        let sealed = report.header.expect("not cancelled");
        assert_eq!(sealed.engine.data, 0u64.to_le_bytes().to_vec());
        assert_eq!(
            sealed.engine.nonce, 0,
            "every hash meets the maximum target"
        );
        let err = mine(
            &pool,
            2,
            header(vec![1, 2, 3]),
            Target::MAX,
            &CancelFlag::new(),
        )
        .expect_err("3-byte extra-nonce");
        assert_eq!(err, PowError::ExtraNonceField { len: 3 });
    }

    #[test]
    fn a_raised_cancel_flag_stops_the_search_without_a_block() {
        let pool = mining_pool(2).expect("pool");
        let cancel = CancelFlag::new();
        cancel.cancel();
        let report = mine(&pool, 4, header(Vec::new()), Target::ZERO, &cancel).expect("runs");
        assert!(report.header.is_none());
    }
}
