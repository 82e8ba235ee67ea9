//! The one place that turns an engine spec into code: the engine every node runs and, for
//! authoring nodes, its block producer, built from the same engine value (so what the
//! engine learns while verifying, such as DPoS equivocation evidence, reaches the producer).

use anyhow::Context;
use chain::{BlockProducer, ConsensusEngine, SecretKey};
use config::EngineSpec;
use std::sync::Arc;

pub struct Engines {
    pub engine: Arc<dyn ConsensusEngine>,
    /// `Some` when an author key was given.
    pub producer: Option<Arc<dyn BlockProducer>>,
}

/// The engine of `spec` and, with `author` (the key that mines, signs or stakes), its
/// producer; `threads` bounds the PoW miner's threads (0 = all cores).
pub fn engines(
    spec: &EngineSpec,
    author: Option<&SecretKey>,
    threads: usize,
) -> anyhow::Result<Engines> {
    Ok(match spec {
        EngineSpec::Pow(params) => {
            let engine =
                miner::pow::PowEngine::new(params.clone()).context("invalid pow parameters")?;
            let producer: Option<Arc<dyn BlockProducer>> = match author {
                Some(key) => Some(Arc::new(
                    if threads == 0 {
                        miner::pow::PowProducer::new(key.address(), engine.clone())
                    } else {
                        miner::pow::PowProducer::with_threads(
                            key.address(),
                            engine.clone(),
                            threads,
                        )
                    }
                    .context("cannot start the pow miner")?,
                )),
                None => None,
            };
            Engines {
                engine: Arc::new(engine),
                producer,
            }
        }
        EngineSpec::Pos(params) => {
            let engine =
                miner::pos::PosEngine::new(params.clone()).context("invalid pos parameters")?;
            Engines {
                producer: author.map(|key| -> Arc<dyn BlockProducer> {
                    Arc::new(miner::pos::PosProducer::new(key.clone(), engine.clone()))
                }),
                engine: Arc::new(engine),
            }
        }
        EngineSpec::Dpos(params) => {
            let engine =
                miner::dpos::DposEngine::new(params.clone()).context("invalid dpos parameters")?;
            Engines {
                producer: author.map(|key| -> Arc<dyn BlockProducer> {
                    Arc::new(miner::dpos::DposProducer::new(key.clone(), engine.clone()))
                }),
                engine: Arc::new(engine),
            }
        }
        EngineSpec::Poa(params) => {
            let engine =
                miner::poa::PoaEngine::new(params.clone()).context("invalid poa parameters")?;
            Engines {
                producer: author.map(|key| -> Arc<dyn BlockProducer> {
                    Arc::new(miner::poa::PoaProducer::new(key.clone(), engine.clone()))
                }),
                engine: Arc::new(engine),
            }
        }
    })
}
