//! Raft as an engine choice.

use crate::raft::{MAX_MESSAGE_BYTES, RaftEngine, RaftParams, RaftProducer};
use crate::spec::{EngineParams, voting_engine_params};
use chain::Address;

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

    voting_engine_params!("raft", RaftEngine, RaftProducer, MAX_MESSAGE_BYTES);
}
