//! Multi-Paxos as an engine choice.

use crate::paxos::{MAX_MESSAGE_BYTES, PaxosEngine, PaxosParams, PaxosProducer};
use crate::spec::{EngineParams, voting_engine_params};
use chain::Address;

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

    voting_engine_params!("paxos", PaxosEngine, PaxosProducer, MAX_MESSAGE_BYTES);
}
