//! What a node tells the network layer at start, and the bounds it runs under.

use std::time::Duration;

use chain::BlockHash;
use chain::codec::{MAX_BLOCK_BYTES, MAX_TX_BATCH_BYTES};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;

/// Commands a [`crate::Client`] may queue before its calls wait for the event loop.
pub const COMMAND_QUEUE: usize = 256;
/// Events the event loop may queue before it sheds them (see [`crate::Event`]).
pub const EVENT_QUEUE: usize = 1024;
/// Outbound sync requests in flight at once, over all peers.
pub const MAX_PENDING_REQUESTS: usize = 256;
/// [`crate::Client::dial`] calls in flight at once.
pub const MAX_PENDING_DIALS: usize = 64;
/// Concurrent sync streams (inbound and outbound) per connection.
pub const MAX_SYNC_STREAMS: usize = 32;
/// Default largest engine message (votes, proposals, signatures) on the engine topic.
pub const MAX_ENGINE_MESSAGE_BYTES: usize = 64 * 1024;
/// Default largest encoded sync response: four largest blocks plus framing, so one
/// response always fits at least one block of any legal size.
pub const DEFAULT_MAX_SYNC_RESPONSE_BYTES: usize = 4 * MAX_BLOCK_BYTES + 64 * 1024;
/// Longest ban [`crate::Client::ban`] honours; longer requests are cut to this.
pub const MAX_BAN: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Everything the network layer needs to start.
///
/// Build it with [`NetworkConfig::new`] and override the public fields; every limit has
/// a default derived from the chain's own limits.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The node's identity; its public key is the node's [`libp2p::PeerId`].
    pub keypair: Keypair,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/30333`. Empty: dial out only.
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and redialled (with backoff) while the node has no peers.
    /// With or without a trailing `/p2p/PEER_ID`.
    pub bootnodes: Vec<Multiaddr>,
    /// The chain's identity: every protocol name and gossip topic carries it.
    pub genesis: BlockHash,
    /// Discover and dial peers on the local network with mDNS.
    pub mdns: bool,
    /// Largest block payload accepted on the block topic.
    pub max_block_bytes: usize,
    /// Largest payload accepted on the transaction topic (a batch of transactions).
    pub max_tx_bytes: usize,
    /// Largest payload accepted on the engine topic.
    pub max_engine_bytes: usize,
    /// Largest encoded sync response sent or accepted.
    pub max_sync_response_bytes: usize,
    /// Most established connections (inbound and outbound together).
    pub max_peers: u32,
    /// How long a sync request may wait for its response; also how long the node has to
    /// answer an inbound request.
    pub request_timeout: Duration,
    /// Rejected gossip messages from one peer, within `reject_window`, that get it banned.
    pub reject_limit: u32,
    /// The window in which rejected messages are counted.
    pub reject_window: Duration,
    /// How long a peer stays banned after `reject_limit` rejected messages.
    pub ban_duration: Duration,
    /// How long a peer of another chain (identify version mismatch) is refused.
    pub wrong_chain_cooldown: Duration,
    /// First delay before bootnodes are redialled while the node has no peers.
    pub redial_min: Duration,
    /// Longest delay between bootnode redials (the delay doubles up to this).
    pub redial_max: Duration,
    /// How often bootnodes and peers we were connected to, now disconnected, are dialled
    /// again while the node has fewer than `max_peers` peers, so a node heals by itself
    /// after a partition, a paused peer or a restart.
    pub reconnect_interval: Duration,
    /// How long a connection with no protocol in use is kept open.
    pub idle_timeout: Duration,
    /// The agent string sent in identify, e.g. `toychain/0.1.0`.
    pub agent_version: String,
}

impl NetworkConfig {
    /// A configuration with default limits that listens nowhere and knows no bootnodes.
    pub fn new(keypair: Keypair, genesis: BlockHash) -> Self {
        Self {
            keypair,
            listen: Vec::new(),
            bootnodes: Vec::new(),
            genesis,
            mdns: false,
            max_block_bytes: MAX_BLOCK_BYTES,
            max_tx_bytes: MAX_TX_BATCH_BYTES,
            max_engine_bytes: MAX_ENGINE_MESSAGE_BYTES,
            max_sync_response_bytes: DEFAULT_MAX_SYNC_RESPONSE_BYTES,
            max_peers: 50,
            request_timeout: Duration::from_secs(10),
            reject_limit: 3,
            reject_window: Duration::from_secs(10 * 60),
            ban_duration: Duration::from_secs(30 * 60),
            wrong_chain_cooldown: Duration::from_secs(60),
            redial_min: Duration::from_secs(1),
            redial_max: Duration::from_secs(60),
            reconnect_interval: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(120),
            agent_version: format!("toychain/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}
