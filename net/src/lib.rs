//! toychain's peer-to-peer layer on libp2p (TCP + noise + yamux): gossipsub for blocks,
//! transactions and engine messages, a request-response protocol for range sync,
//! identify, bootnodes and mDNS.
//!
//! # Shape
//!
//! The network is a task with a handle, after libp2p's file-sharing example:
//!
//! ```text
//!  node ──Client (clone)──▶ [commands, bounded] ──▶ EventLoop (owns the Swarm)
//!  node ◀──EventStream──── [events, bounded]   ◀──┘
//! ```
//!
//! [`new`] returns a [`Client`] (cloneable; each call sends a command and waits for a
//! oneshot reply), an [`EventStream`] and the [`EventLoop`], which the node spawns with
//! `tokio::spawn(event_loop.run())`. Only the event loop touches the swarm, so there is no
//! lock around it.
//!
//! The layer knows bytes and peers, not chain semantics. Gossip arrives as
//! [`Event::Gossip`] and is held (gossipsub validation mode) until the node decodes and
//! validates it and calls [`Client::report`]: `Accept` forwards it, `Reject` drops it,
//! lowers the sender's gossipsub score and counts towards a ban
//! ([`NetworkConfig::reject_limit`] rejections ban the peer for
//! [`NetworkConfig::ban_duration`]), `Ignore` just drops it. Sync requests arrive as
//! [`Event::InboundRequest`] with a [`ResponseHandle`] the node answers through
//! [`Client::respond`]: the node owns the chain, the network task never reads it.
//!
//! # Why bounded queues
//!
//! Every channel and table has a bound ([`config::COMMAND_QUEUE`],
//! [`config::EVENT_QUEUE`], [`config::MAX_PENDING_REQUESTS`], …), as libp2p's coding
//! guidelines ask: an unbounded queue turns a slow consumer or a flooding peer into
//! unbounded memory. Commands wait for room (back-pressure on the caller); events never
//! wait (a stalled swarm would drop every connection), so a full event queue sheds new
//! events and counts them in [`NetStats::dropped_events`]. Every message has a byte limit
//! too: per-topic gossip limits from the chain's own (`MAX_BLOCK_BYTES`,
//! `MAX_TX_BATCH_BYTES`: transactions travel in batches), and sync frames refused past
//! [`NetworkConfig::max_sync_response_bytes`] before they are decoded.
//!
//! # Why the genesis hash is in every protocol name
//!
//! Gossip topics (`/toychain/<genesis>/blocks/1`, …), the sync protocol
//! (`/toychain/<genesis>/sync/1`) and the identify version (`/toychain/<genesis>/1`) all
//! carry the genesis hash. Nodes of two chains therefore share no topic and cannot
//! negotiate sync, so no block can cross between them even before identify runs; identify
//! then disconnects them ([`Event::WrongChain`]) and refuses the peer for a cool-down.

pub mod config;

mod behaviour;
mod client;
mod error;
mod event_loop;
mod peers;
mod scoring;
mod sync;
mod topic;

pub use client::{
    BanReason, Client, Event, EventStream, NetStats, PeerInfo, ResponseHandle, Verdict,
};
pub use config::NetworkConfig;
pub use error::NetError;
pub use event_loop::EventLoop;
pub use sync::{
    MAX_SYNC_ERROR_BYTES, MAX_SYNC_ITEMS, MAX_SYNC_REQUEST_BYTES, SyncRequest, SyncResponse,
};
pub use topic::{Topic, identify_version, sync_protocol_name};

pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::{self, Keypair};
pub use libp2p::{Multiaddr, PeerId, multiaddr};

/// Builds the network: a [`Client`] to command it, the [`EventStream`] it reports on, and
/// the [`EventLoop`] to spawn (`tokio::spawn(event_loop.run())`). Listening starts here,
/// so a bad listen address fails now; bootnodes are dialled once the loop runs.
///
/// Must be called inside a tokio runtime (the TCP transport and mDNS register with it).
pub fn new(config: NetworkConfig) -> Result<(Client, EventStream, EventLoop), NetError> {
    event_loop::build(config)
}
