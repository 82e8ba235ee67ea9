//! The protocols a node runs and how they are built: the composed libp2p
//! [`NetworkBehaviour`], the three gossip topics with their size limits, gossipsub's
//! content-addressed message ids, and the swarm (transport, limits, listeners) around it.

use std::fmt;
use std::time::Duration;

use chain::BlockHash;
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, TopicHash, ValidationMode,
};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, Swarm, SwarmBuilder, identify, mdns, noise, tcp, yamux};

use crate::config::{MAX_SYNC_STREAMS, NetworkConfig};
use crate::scoring::{peer_score_params, peer_score_thresholds};
use crate::sync::SyncCodec;
use crate::topic::{identify_version, sync_protocol_name};
use crate::{NetError, Topic};

/// Gossipsub heartbeat: mesh maintenance and gossip (IHAVE) rounds.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Heartbeats an unvalidated message stays in the message cache, so the node has about
/// this many seconds to report a verdict.
const HISTORY_LENGTH: usize = 12;
/// Room for the signature, key, source, sequence number and topic that wrap a gossip
/// payload on the wire.
const GOSSIP_OVERHEAD: usize = 2 * 1024;

/// The protocols every node runs, in the order they see new connections: the block list
/// and connection limits first, so refused peers cost nothing further.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) blocks: allow_block_list::Behaviour<BlockedPeers>,
    limits: connection_limits::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    identify: identify::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The three subscribed topics with their hashes and payload limits.
#[derive(Debug)]
pub(crate) struct Topics {
    hashes: [TopicHash; 3],
    limits: [usize; 3],
}

impl Topics {
    pub(crate) fn new(config: &NetworkConfig) -> Self {
        Self {
            hashes: Topic::ALL.map(|topic| ident_topic(topic, &config.genesis).hash()),
            limits: Topic::ALL.map(|topic| match topic {
                Topic::Block => config.max_block_bytes,
                Topic::Tx => config.max_tx_bytes,
                Topic::Engine => config.max_engine_bytes,
            }),
        }
    }

    fn index(topic: Topic) -> usize {
        match topic {
            Topic::Block => 0,
            Topic::Tx => 1,
            Topic::Engine => 2,
        }
    }

    pub(crate) fn hash(&self, topic: Topic) -> TopicHash {
        self.hashes[Self::index(topic)].clone()
    }

    pub(crate) fn limit(&self, topic: Topic) -> usize {
        self.limits[Self::index(topic)]
    }

    pub(crate) fn lookup(&self, hash: &TopicHash) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|topic| &self.hashes[Self::index(*topic)] == hash)
    }
}

fn ident_topic(topic: Topic, genesis: &BlockHash) -> IdentTopic {
    IdentTopic::new(topic.name(genesis))
}

/// Message id = hash of topic and payload, so the same bytes published by two nodes (or
/// twice) are one message and never gossiped twice.
fn content_id(message: &gossipsub::Message) -> MessageId {
    let topic = message.topic.as_str().as_bytes();
    let topic_len = (topic.len() as u64).to_le_bytes();
    MessageId::new(&chain::crypto::sha256d_parts(&[
        b"toychain/gossip",
        &topic_len,
        topic,
        &message.data,
    ]))
}

fn setup_error(protocol: &'static str, reason: impl fmt::Display) -> NetError {
    NetError::Setup {
        protocol,
        reason: reason.to_string(),
    }
}

fn build_gossipsub(
    config: &NetworkConfig,
    topics: &Topics,
) -> Result<gossipsub::Behaviour, NetError> {
    let largest = topics.limits.iter().copied().max().unwrap_or(0);
    // The frame limit covers a whole RPC: the largest message plus control messages.
    let frame_max = largest.saturating_add(2 * GOSSIP_OVERHEAD).max(64 * 1024);
    let mut builder = gossipsub::ConfigBuilder::default();
    builder
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(content_id)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(HEARTBEAT)
        .history_length(HISTORY_LENGTH)
        .history_gossip(3)
        .max_transmit_size(frame_max);
    for topic in Topic::ALL {
        builder.max_transmit_size_for_topic(
            topics.limit(topic).saturating_add(GOSSIP_OVERHEAD),
            topics.hash(topic),
        );
    }
    let gossip_config = builder.build().map_err(|e| setup_error("gossipsub", e))?;
    let mut gossipsub = gossipsub::Behaviour::new(
        MessageAuthenticity::Signed(config.keypair.clone()),
        gossip_config,
    )
    .map_err(|e| setup_error("gossipsub", e))?;

    gossipsub
        .with_peer_score(peer_score_params(&topics.hashes), peer_score_thresholds())
        .map_err(|e| setup_error("gossipsub peer scoring", e))?;
    for topic in Topic::ALL {
        gossipsub
            .subscribe(&ident_topic(topic, &config.genesis))
            .map_err(|e| setup_error("gossipsub subscription", e))?;
    }
    Ok(gossipsub)
}

fn build_behaviour(config: &NetworkConfig, topics: &Topics) -> Result<Behaviour, NetError> {
    let local_peer_id = config.keypair.public().to_peer_id();
    let sync_protocol = StreamProtocol::try_from_owned(sync_protocol_name(&config.genesis))
        .map_err(|e| setup_error("sync", e))?;
    let sync = request_response::Behaviour::with_codec(
        SyncCodec {
            max_response_bytes: config.max_sync_response_bytes,
        },
        [(sync_protocol, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(MAX_SYNC_STREAMS),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(identify_version(&config.genesis), config.keypair.public())
            .with_agent_version(config.agent_version.clone()),
    );
    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), local_peer_id)
                .map_err(|e| setup_error("mdns", e))?,
        )
    } else {
        None
    };
    let max_peers = config.max_peers.max(1);
    let limits = ConnectionLimits::default()
        .with_max_established(Some(max_peers))
        .with_max_pending_incoming(Some(max_peers))
        .with_max_pending_outgoing(Some(max_peers))
        .with_max_established_per_peer(Some(2));
    Ok(Behaviour {
        blocks: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        gossipsub: build_gossipsub(config, topics)?,
        sync,
        identify,
        mdns: mdns.into(),
    })
}

/// Builds the swarm (TCP + noise + yamux around [`Behaviour`]) and starts listening on
/// every configured address, so a bad listen address fails here.
pub(crate) fn build_swarm(
    config: &NetworkConfig,
    topics: &Topics,
) -> Result<Swarm<Behaviour>, NetError> {
    let behaviour = build_behaviour(config, topics)?;
    let idle_timeout = config.idle_timeout;
    let Ok(builder) = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport {
            reason: e.to_string(),
        })?
        .with_behaviour(|_| behaviour);
    let mut swarm = builder
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(swarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_peer() -> libp2p::PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn content_id_depends_on_topic_and_data_only() {
        let message = |topic: &str, data: &[u8], seq: u64| gossipsub::Message {
            source: Some(random_peer()),
            data: data.to_vec(),
            sequence_number: Some(seq),
            topic: TopicHash::from_raw(topic),
        };
        assert_eq!(
            content_id(&message("/a", b"block", 1)),
            content_id(&message("/a", b"block", 2))
        );
        assert_ne!(
            content_id(&message("/a", b"block", 1)),
            content_id(&message("/b", b"block", 1))
        );
        assert_ne!(
            content_id(&message("/a", b"block", 1)),
            content_id(&message("/a", b"block2", 1))
        );
    }
}
