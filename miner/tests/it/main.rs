//! The miner's integration tests: published vectors (inline and the full shared sets), the
//! engine inside a real `chain::Chain`, the producer, retarget stability, and the canonical
//! decoding of engine data and engine state.

mod clique;
mod cluster;
mod codec;
mod conformance;
mod dpos;
mod engine;
mod entitlement;
mod paxos;
mod pbft;
mod poa;
mod pos;
mod producer;
mod raft;
mod stability;
mod support;
mod vectors;
mod zab;
