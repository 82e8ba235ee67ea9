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

/// Where the engines run.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// A node: every rule checked; the PoW miner on `threads` threads (0 = all cores).
    Node { threads: usize },
    /// `toychain simulate`: PoW checks every rule but the hash (the simulator's solve
    /// oracle stands for it) and never mines; PoS looks `pos_window` seconds ahead for a
    /// kernel, so an idle staker is asked again only that often.
    Simulation { pos_window: u64 },
}

/// The engine of `spec` and, with `author` (the key that mines, signs or stakes), its
/// producer; `threads` bounds the PoW miner's threads (0 = all cores).
pub fn engines(
    spec: &EngineSpec,
    author: Option<&SecretKey>,
    threads: usize,
) -> anyhow::Result<Engines> {
    build(spec, author, Mode::Node { threads })
}

/// The engine and producer of one simulated node (see [`Mode::Simulation`]).
pub fn simulated(
    spec: &EngineSpec,
    author: &SecretKey,
    pos_window: u64,
) -> anyhow::Result<Engines> {
    build(spec, Some(author), Mode::Simulation { pos_window })
}

fn build(spec: &EngineSpec, author: Option<&SecretKey>, mode: Mode) -> anyhow::Result<Engines> {
    Ok(match spec {
        EngineSpec::Pow(params) => {
            let (engine, threads) = match mode {
                Mode::Node { threads } => (miner::pow::PowEngine::new(params.clone()), threads),
                // One idle thread: the simulator asks the producer for turns and templates,
                // never for a seal.
                Mode::Simulation { .. } => {
                    (miner::pow::PowEngine::for_simulation(params.clone()), 1)
                }
            };
            let engine = engine.context("invalid pow parameters")?;
            let producer: Option<Arc<dyn BlockProducer>> = match author {
                Some(key) => Some(Arc::new(
                    miner::pow::PowProducer::with_threads(key.address(), engine.clone(), threads)
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
                    let producer = miner::pos::PosProducer::new(key.clone(), engine.clone());
                    Arc::new(match mode {
                        Mode::Node { .. } => producer,
                        Mode::Simulation { pos_window } => producer.with_search_window(pos_window),
                    })
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
