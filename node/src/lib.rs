//! One toychain node as a library: the chain actor that owns the chain and the mempool, the
//! network glue (gossip and range sync over `net`), the block producer loop, the JSON-RPC
//! server (HTTP, and WebSocket with subscriptions) with its dashboard, and its client, metrics,
//! the transaction journal and the double-sign guard.
//! [`NodeArgs::execute`] runs one from its command line ([`NodeArgs`]); the `toychain` binary,
//! the devnet launcher and the lab build on it.

pub mod actor;
pub mod args;
pub mod dashboard;
pub mod metrics;
pub mod network;
pub mod orphans;
pub mod ports;
pub mod producer;
pub mod rpc;
pub mod rpc_client;
pub mod run;
pub mod sign_guard;
pub mod testnet;
pub mod tx_journal;
pub mod tx_relay;
pub mod voting;
pub mod ws;

pub use args::NodeArgs;
pub use config::UsageError;
