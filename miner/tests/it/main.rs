//! The miner's integration tests: published vectors (inline and the full shared sets), the
//! engine inside a real `chain::Chain`, the producer, and retarget stability.

mod clique;
mod conformance;
mod dpos;
mod engine;
mod poa;
mod pos;
mod producer;
mod stability;
mod support;
mod vectors;
