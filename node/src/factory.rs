//! The one place that turns an engine spec into code: the engine every node runs and, for
//! authoring nodes, its block producer.

use anyhow::Context;
use chain::{BlockProducer, ConsensusEngine, SecretKey};
use config::EngineSpec;
use std::sync::Arc;

pub fn engine(spec: &EngineSpec) -> anyhow::Result<Arc<dyn ConsensusEngine>> {
    Ok(match spec {
        EngineSpec::Pow(params) => {
            Arc::new(miner::pow::PowEngine::new(params.clone()).context("invalid pow parameters")?)
        }
        EngineSpec::Dpos(params) => Arc::new(
            miner::dpos::DposEngine::new(params.clone()).context("invalid dpos parameters")?,
        ),
        EngineSpec::Poa(params) => {
            Arc::new(miner::poa::PoaEngine::new(params.clone()).context("invalid poa parameters")?)
        }
    })
}

/// The producer for `author` (the key that mines, signs or stakes); `threads` bounds the
/// PoW miner's threads (0 = all cores).
pub fn producer(
    spec: &EngineSpec,
    author: &SecretKey,
    threads: usize,
) -> anyhow::Result<Arc<dyn BlockProducer>> {
    Ok(match spec {
        EngineSpec::Pow(params) => {
            let engine =
                miner::pow::PowEngine::new(params.clone()).context("invalid pow parameters")?;
            let producer = if threads == 0 {
                miner::pow::PowProducer::new(author.address(), engine)
            } else {
                miner::pow::PowProducer::with_threads(author.address(), engine, threads)
            };
            Arc::new(producer.context("cannot start the pow miner")?)
        }
        EngineSpec::Dpos(params) => Arc::new(miner::dpos::DposProducer::new(
            author.clone(),
            miner::dpos::DposEngine::new(params.clone()).context("invalid dpos parameters")?,
        )),
        EngineSpec::Poa(params) => Arc::new(miner::poa::PoaProducer::new(
            author.clone(),
            miner::poa::PoaEngine::new(params.clone()).context("invalid poa parameters")?,
        )),
    })
}
