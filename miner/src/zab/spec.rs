//! ZAB as an engine choice.

use crate::spec::{EngineParams, voting_engine_params};
use crate::zab::{MAX_MESSAGE_BYTES, ZabEngine, ZabParams, ZabProducer};
use chain::Address;

impl EngineParams for ZabParams {
    /// [`ZabParams::devnet`]'s 50 ms ticks and 250 ms sync limit assume servers that
    /// answer within a millisecond or two. A devnet's servers are processes on one machine
    /// that fsync every epoch and proposal (tens of milliseconds on a busy disk) and talk
    /// through gossip, so they PING every 100 ms, give up on a leader after 1000 ms of
    /// silence, and let an election settle for 200 ms (ZooKeeper's `finalizeWait`).
    fn devnet(authorities: &[Address]) -> ZabParams {
        ZabParams {
            tick_ms: 100,
            sync_limit_ms: 1_000,
            election_wait_ms: 200,
            ..ZabParams::devnet(authorities.to_vec())
        }
    }

    voting_engine_params!("zab", ZabEngine, ZabProducer, MAX_MESSAGE_BYTES);
}
