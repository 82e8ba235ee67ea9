//! The task that owns the libp2p `Swarm`: it turns commands into swarm calls and swarm
//! events into [`Event`]s, and keeps the peer bookkeeping (verified peers, reject counts,
//! bans, bootnode redials) that no other task may touch.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use chain::BlockHash;
use futures::StreamExt;
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, PeerScoreParams,
    PeerScoreThresholds, PublishError, TopicHash, TopicScoreParams, ValidationMode,
};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, identify, mdns, noise, tcp, yamux,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::client::{
    BanReason, Client, Command, Event, EventStream, NetStats, PeerInfo, ResponseHandle, Verdict,
};
use crate::config::{
    COMMAND_QUEUE, EVENT_QUEUE, MAX_BAN, MAX_PENDING_DIALS, MAX_PENDING_REQUESTS, MAX_SYNC_STREAMS,
    NetworkConfig,
};
use crate::sync::{SyncCodec, SyncRequest, SyncResponse};
use crate::topic::{identify_version, sync_protocol_name};
use crate::{NetError, Topic};

/// How often bans expire, reject counts age and bootnodes are redialled.
const TICK: Duration = Duration::from_millis(250);
/// Gossipsub heartbeat: mesh maintenance and gossip (IHAVE) rounds.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Heartbeats an unvalidated message stays in the message cache, so the node has about
/// this many seconds to report a verdict.
const HISTORY_LENGTH: usize = 12;
/// Room for the signature, key, source, sequence number and topic that wrap a gossip
/// payload on the wire.
const GOSSIP_OVERHEAD: usize = 2 * 1024;
/// Longest foreign identify version kept in [`Event::WrongChain`].
const MAX_VERSION_LEN: usize = 128;
/// Peers remembered for reconnecting; the one unseen longest is forgotten first.
const MAX_KNOWN_PEERS: usize = 64;
/// Listen addresses remembered per known peer.
const MAX_KNOWN_ADDRS: usize = 4;

/// The protocols every node runs, in the order they see new connections: the block list
/// and connection limits first, so refused peers cost nothing further.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    blocks: allow_block_list::Behaviour<BlockedPeers>,
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    identify: identify::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The three subscribed topics with their hashes and payload limits.
#[derive(Debug)]
struct Topics {
    hashes: [TopicHash; 3],
    limits: [usize; 3],
}

impl Topics {
    fn new(config: &NetworkConfig) -> Self {
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

    fn hash(&self, topic: Topic) -> TopicHash {
        self.hashes[Self::index(topic)].clone()
    }

    fn limit(&self, topic: Topic) -> usize {
        self.limits[Self::index(topic)]
    }

    fn lookup(&self, hash: &TopicHash) -> Option<Topic> {
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

/// Scores tuned for low-rate topics (a block every few seconds): no penalty for quiet
/// mesh peers (P3/P3b off), a little credit for time in mesh and first deliveries, and a
/// steep penalty per rejected message (P4 = -10 · count²), so three rejections push a
/// peer below the graylist threshold (-80), in step with the net layer's own ban.
fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..TopicScoreParams::default()
    }
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

    let mut params = PeerScoreParams::default();
    // Local devnets run every node on one address; that is not a Sybil attack.
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    for hash in &topics.hashes {
        params.topics.insert(hash.clone(), topic_score_params());
    }
    gossipsub
        .with_peer_score(params, PeerScoreThresholds::default())
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

/// Builds the swarm, starts listening and wires the channels; see [`crate::new`].
pub(crate) fn build(config: NetworkConfig) -> Result<(Client, EventStream, EventLoop), NetError> {
    let topics = Topics::new(&config);
    let behaviour = build_behaviour(&config, &topics)?;
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

    let local_peer_id = *swarm.local_peer_id();
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let client = Client {
        commands: command_tx,
        local_peer_id,
        request_timeout: config.request_timeout,
    };
    let events = EventStream { receiver: event_rx };
    let event_loop = EventLoop {
        swarm,
        commands: command_rx,
        events: event_tx,
        topics,
        identify_version: identify_version(&config.genesis),
        policy: Policy {
            max_response_bytes: config.max_sync_response_bytes,
            request_timeout: config.request_timeout,
            reject_limit: config.reject_limit.max(1),
            reject_window: config.reject_window,
            ban_duration: config.ban_duration,
            wrong_chain_cooldown: config.wrong_chain_cooldown,
        },
        bootnodes: config.bootnodes,
        redial: Redial::new(config.redial_min, config.redial_max),
        reconnect_interval: config.reconnect_interval.max(Duration::from_millis(100)),
        next_reconnect: Instant::now(),
        max_peers: usize::try_from(config.max_peers.max(1)).unwrap_or(usize::MAX),
        known: HashMap::new(),
        admin_blocked: HashSet::new(),
        connected: HashMap::new(),
        verified: HashSet::new(),
        blocked: HashMap::new(),
        rejects: HashMap::new(),
        pending_requests: HashMap::new(),
        pending_dials: HashMap::new(),
        listen_addrs: Vec::new(),
        dropped_events: 0,
    };
    Ok((client, events, event_loop))
}

/// The configured limits the loop enforces.
#[derive(Debug, Clone, Copy)]
struct Policy {
    max_response_bytes: usize,
    request_timeout: Duration,
    reject_limit: u32,
    reject_window: Duration,
    ban_duration: Duration,
    wrong_chain_cooldown: Duration,
}

/// Exponential backoff for redialling bootnodes while the node has no peers.
#[derive(Debug)]
struct Redial {
    min: Duration,
    max: Duration,
    backoff: Duration,
    next_at: Option<Instant>,
}

impl Redial {
    fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(100));
        Self {
            min,
            max: max.max(min),
            backoff: min,
            next_at: None,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.next_at.is_none_or(|at| now >= at)
    }

    fn schedule(&mut self, now: Instant) {
        self.next_at = now.checked_add(self.backoff);
        self.backoff = self.backoff.saturating_mul(2).min(self.max);
    }

    fn reset(&mut self) {
        self.backoff = self.min;
    }
}

/// A peer we were connected to, and where it listens: dialled again while disconnected.
#[derive(Debug, Clone)]
struct KnownPeer {
    addrs: Vec<Multiaddr>,
    last_seen: Instant,
}

/// Rejected messages from one peer since `since`.
#[derive(Debug, Clone, Copy)]
struct Rejects {
    count: u32,
    since: Instant,
}

#[derive(Debug)]
struct PendingRequest {
    request: SyncRequest,
    reply: oneshot::Sender<Result<SyncResponse, NetError>>,
}

#[derive(Debug)]
struct PendingDial {
    addr: Multiaddr,
    reply: oneshot::Sender<Result<PeerId, NetError>>,
}

/// The network task. Run it with `tokio::spawn(event_loop.run())`; it ends on
/// [`Client::shutdown`] or when every [`Client`] is dropped.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    topics: Topics,
    identify_version: String,
    policy: Policy,
    bootnodes: Vec<Multiaddr>,
    redial: Redial,
    reconnect_interval: Duration,
    next_reconnect: Instant,
    max_peers: usize,
    /// Peers to reconnect to: bootnodes and verified peers, with their listen addresses.
    known: HashMap<PeerId, KnownPeer>,
    /// Peers refused by the operator ([`Client::set_blocked_peers`]), apart from bans.
    admin_blocked: HashSet<PeerId>,
    /// Every peer with an open connection, and the remote address of its first one.
    connected: HashMap<PeerId, Multiaddr>,
    /// Connected peers whose identify version matched ours.
    verified: HashSet<PeerId>,
    /// Refused peers and when they may come back.
    blocked: HashMap<PeerId, Instant>,
    rejects: HashMap<PeerId, Rejects>,
    pending_requests: HashMap<OutboundRequestId, PendingRequest>,
    pending_dials: HashMap<ConnectionId, PendingDial>,
    listen_addrs: Vec<Multiaddr>,
    dropped_events: u64,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("local_peer_id", self.swarm.local_peer_id())
            .field("identify_version", &self.identify_version)
            .field("connected", &self.connected.len())
            .field("verified", &self.verified.len())
            .field("blocked", &self.blocked.len())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Drives the swarm until shutdown.
    pub async fn run(mut self) {
        info!(peer_id = %self.swarm.local_peer_id(), version = %self.identify_version, "network task started");
        self.dial_bootnodes(Instant::now());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                _ = tick.tick() => self.on_tick(),
            }
        };
        // Close every connection and listener before confirming the shutdown.
        drop(self);
        if let Some(reply) = shutdown {
            let _ = reply.send(Ok(()));
        }
        info!("network task stopped");
    }

    /// Queues an event without waiting; false if it was shed. A full queue sheds the
    /// event instead of stalling the swarm (which would starve every connection).
    fn emit(&mut self, event: Event) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped_events = self.dropped_events.saturating_add(1);
                // Warn at 1, 2, 4, 8, … so a flood cannot flood the log too.
                if self.dropped_events.is_power_of_two() {
                    warn!(
                        dropped = self.dropped_events,
                        "event queue full, shedding events: the node is falling behind"
                    );
                }
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(event)) => self.on_mdns(event),
            SwarmEvent::Behaviour(BehaviourEvent::Blocks(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connection established");
                if let Some(dial) = self.pending_dials.remove(&connection_id) {
                    let _ = dial.reply.send(Ok(peer_id));
                }
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let bare = without_p2p(address);
                    if self.bootnodes.iter().any(|b| without_p2p(b) == bare) {
                        self.remember(peer_id, vec![bare]);
                    }
                }
                self.connected
                    .entry(peer_id)
                    .or_insert_with(|| endpoint.get_remote_address().clone());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    if self.verified.remove(&peer_id) {
                        self.emit(Event::PeerDisconnected { peer: peer_id });
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                debug!(peer = ?peer_id, %error, "outgoing connection failed");
                if let Some(dial) = self.pending_dials.remove(&connection_id) {
                    let _ = dial.reply.send(Err(NetError::Dial {
                        addr: dial.addr,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.emit(Event::NewListenAddr { addr: address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                warn!(?addresses, ?reason, "listener closed");
                self.listen_addrs.retain(|a| !addresses.contains(a));
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source: source,
            message_id: id,
            message,
        } = event
        else {
            debug!(?event, "gossipsub");
            return;
        };
        let Some(topic) = self.topics.lookup(&message.topic) else {
            self.validate(&id, &source, Verdict::Ignore);
            return;
        };
        let max = self.topics.limit(topic);
        if message.data.len() > max {
            debug!(peer = %source, %topic, len = message.data.len(), max, "oversize gossip");
            if self.validate(&id, &source, Verdict::Reject) {
                self.count_reject(source);
            }
            return;
        }
        let event = Event::Gossip {
            topic,
            data: message.data,
            source,
            id: id.clone(),
        };
        if !self.emit(event) {
            // Release it from the cache now rather than let it wait for a verdict.
            self.validate(&id, &source, Verdict::Ignore);
        }
    }

    /// Tells gossipsub the verdict; true if the message was still held.
    fn validate(&mut self, id: &MessageId, source: &PeerId, verdict: Verdict) -> bool {
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance)
    }

    fn count_reject(&mut self, peer: PeerId) {
        let now = Instant::now();
        let window = self.policy.reject_window;
        let rejects = self.rejects.entry(peer).or_insert(Rejects {
            count: 0,
            since: now,
        });
        if now.duration_since(rejects.since) > window {
            *rejects = Rejects {
                count: 0,
                since: now,
            };
        }
        rejects.count = rejects.count.saturating_add(1);
        let count = rejects.count;
        debug!(%peer, count, "gossip message rejected");
        if count >= self.policy.reject_limit {
            self.ban(
                peer,
                self.policy.ban_duration,
                BanReason::RejectedMessages { count },
            );
        }
    }

    fn ban(&mut self, peer: PeerId, duration: Duration, reason: BanReason) {
        let duration = duration.min(MAX_BAN);
        self.rejects.remove(&peer);
        self.block(peer, duration);
        warn!(%peer, ?duration, ?reason, "peer banned");
        self.emit(Event::PeerBanned {
            peer,
            duration,
            reason,
        });
    }

    /// Closes every connection to `peer` and refuses new ones for `duration`.
    fn block(&mut self, peer: PeerId, duration: Duration) {
        let now = Instant::now();
        let until = now.checked_add(duration.min(MAX_BAN)).unwrap_or(now);
        let entry = self.blocked.entry(peer).or_insert(until);
        if *entry < until {
            *entry = until;
        }
        self.swarm.behaviour_mut().blocks.block_peer(peer);
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let event = Event::InboundRequest {
                    peer,
                    request,
                    channel: ResponseHandle { peer, channel },
                };
                if !self.emit(event) {
                    // Dropping the handle fails the peer's request at once.
                    debug!(%peer, "inbound sync request shed");
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(pending) = self.pending_requests.remove(&request_id) else {
                    return;
                };
                let result = if pending.request.accepts(&response) {
                    Ok(response)
                } else {
                    Err(NetError::UnexpectedResponse {
                        peer,
                        request: pending.request.kind(),
                        response: response.kind(),
                        items: match &response {
                            SyncResponse::Blocks(items) | SyncResponse::Headers(items) => {
                                items.len()
                            }
                            SyncResponse::Status { .. } | SyncResponse::Error(_) => 1,
                        },
                    })
                };
                let _ = pending.reply.send(result);
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(pending) = self.pending_requests.remove(&request_id) {
                    let _ = pending.reply.send(Err(self.outbound_error(peer, error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn outbound_error(&self, peer: PeerId, error: OutboundFailure) -> NetError {
        match error {
            OutboundFailure::Timeout => NetError::Timeout {
                peer,
                timeout: self.policy.request_timeout,
            },
            OutboundFailure::UnsupportedProtocols => NetError::UnsupportedProtocol { peer },
            OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                NetError::BadResponse {
                    peer,
                    reason: e.to_string(),
                }
            }
            OutboundFailure::Io(e) => NetError::Request {
                peer,
                reason: format!("stream error: {e}"),
            },
            OutboundFailure::DialFailure => NetError::Request {
                peer,
                reason: "dialling the peer failed".to_owned(),
            },
            OutboundFailure::ConnectionClosed => NetError::Request {
                peer,
                reason: "the connection closed before the response arrived".to_owned(),
            },
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        match event {
            identify::Event::Received { peer_id, info, .. } => {
                if self.refused(&peer_id) {
                    return;
                }
                if info.protocol_version == self.identify_version {
                    let Some(addr) = self.connected.get(&peer_id).cloned() else {
                        return;
                    };
                    self.remember(peer_id, info.listen_addrs);
                    if self.verified.insert(peer_id) {
                        info!(peer = %peer_id, %addr, agent = %info.agent_version, "peer connected");
                        self.redial.reset();
                        self.emit(Event::PeerConnected {
                            peer: peer_id,
                            addr,
                        });
                    }
                } else {
                    let mut version = info.protocol_version;
                    if version.len() > MAX_VERSION_LEN {
                        let mut end = MAX_VERSION_LEN;
                        while !version.is_char_boundary(end) {
                            end -= 1;
                        }
                        version.truncate(end);
                    }
                    warn!(peer = %peer_id, theirs = %version, ours = %self.identify_version, "peer runs another chain, disconnecting");
                    self.block(peer_id, self.policy.wrong_chain_cooldown);
                    self.emit(Event::WrongChain {
                        peer: peer_id,
                        protocol_version: version,
                    });
                }
            }
            identify::Event::Error { peer_id, error, .. } => {
                // A peer that cannot prove its chain is no peer of ours.
                if !self.verified.contains(&peer_id) {
                    debug!(peer = %peer_id, %error, "identify failed, disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                }
            }
            identify::Event::Sent { .. } | identify::Event::Pushed { .. } => {}
        }
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        let mdns::Event::Discovered(found) = event else {
            return;
        };
        let local = *self.swarm.local_peer_id();
        for (peer, addr) in found {
            if peer == local || self.refused(&peer) || self.swarm.is_connected(&peer) {
                continue;
            }
            debug!(%peer, %addr, "mdns discovered a peer");
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(error) = self.swarm.dial(opts) {
                debug!(%peer, %error, "dialling an mdns peer failed");
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Report {
                id,
                source,
                verdict,
                reply,
            } => {
                let held = self.validate(&id, &source, verdict);
                // Count only messages still held, so one message cannot count twice.
                if held && verdict == Verdict::Reject {
                    self.count_reject(source);
                }
                let _ = reply.send(Ok(held));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let result = if !self.swarm.is_connected(&peer) {
                    Err(NetError::NotConnected { peer })
                } else if self.pending_requests.len() >= MAX_PENDING_REQUESTS {
                    Err(NetError::Busy {
                        what: "sync requests",
                        max: MAX_PENDING_REQUESTS,
                    })
                } else {
                    Ok(())
                };
                match result {
                    Ok(()) => {
                        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                        self.pending_requests
                            .insert(id, PendingRequest { request, reply });
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            Command::Respond {
                handle,
                response,
                reply,
            } => {
                let _ = reply.send(self.respond(handle, response));
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::Ban {
                peer,
                duration,
                reply,
            } => {
                let result = if &peer == self.swarm.local_peer_id() {
                    Err(NetError::BanSelf { peer })
                } else {
                    self.ban(peer, duration, BanReason::Requested);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::SetBlocked { peers, reply } => {
                let _ = reply.send(self.set_admin_blocked(peers));
            }
            Command::Peers { reply } => {
                let mut peers: Vec<PeerInfo> = self
                    .verified
                    .iter()
                    .filter_map(|peer| {
                        self.connected.get(peer).map(|address| PeerInfo {
                            peer_id: *peer,
                            address: address.clone(),
                        })
                    })
                    .collect();
                peers.sort_by_key(|p| p.peer_id);
                let _ = reply.send(Ok(peers));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(Ok(self.listen_addrs.clone()));
            }
            Command::Stats { reply } => {
                let _ = reply.send(Ok(NetStats {
                    connected_peers: self.connected.len(),
                    verified_peers: self.verified.len(),
                    blocked_peers: self
                        .admin_blocked
                        .iter()
                        .filter(|p| !self.blocked.contains_key(p))
                        .count()
                        + self.blocked.len(),
                    dropped_events: self.dropped_events,
                }));
            }
            Command::Shutdown { reply } => {
                // `run` handles shutdown before dispatching here; answer anyway.
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<MessageId, NetError> {
        let max = self.topics.limit(topic);
        if data.len() > max {
            return Err(NetError::PayloadTooLarge {
                topic,
                len: data.len(),
                max,
            });
        }
        let hash = self.topics.hash(topic);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(hash, data)
            .map_err(|error| match error {
                PublishError::Duplicate => NetError::Duplicate { topic },
                PublishError::NoPeersSubscribedToTopic => NetError::NoPeers { topic },
                other => NetError::Publish {
                    topic,
                    reason: other.to_string(),
                },
            })
    }

    fn respond(&mut self, handle: ResponseHandle, response: SyncResponse) -> Result<(), NetError> {
        let max = self.policy.max_response_bytes;
        let len = response.encoded_len();
        let ResponseHandle { peer, channel } = handle;
        let sync = &mut self.swarm.behaviour_mut().sync;
        if len > max {
            // Tell the asker at once instead of letting it wait for its timeout.
            let _ = sync.send_response(channel, SyncResponse::error("response too large"));
            return Err(NetError::ResponseTooLarge { len, max });
        }
        sync.send_response(channel, response)
            .map_err(|_| NetError::RequesterGone { peer })
    }

    fn dial(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, NetError>>) {
        if self.pending_dials.len() >= MAX_PENDING_DIALS {
            let _ = reply.send(Err(NetError::Busy {
                what: "dials",
                max: MAX_PENDING_DIALS,
            }));
            return;
        }
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(id, PendingDial { addr, reply });
            }
            Err(error) => {
                let _ = reply.send(Err(NetError::Dial {
                    addr,
                    reason: error.to_string(),
                }));
            }
        }
    }

    fn dial_bootnodes(&mut self, now: Instant) {
        if self.bootnodes.is_empty() {
            return;
        }
        let local = *self.swarm.local_peer_id();
        for addr in self.bootnodes.clone() {
            let opts = match peer_id_of(&addr) {
                Some(peer) if peer == local || self.refused(&peer) => continue,
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            match self.swarm.dial(opts) {
                Ok(()) => debug!(%addr, "dialling bootnode"),
                Err(error) => debug!(%addr, %error, "bootnode dial not started"),
            }
        }
        self.redial.schedule(now);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .blocked
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.blocked.remove(&peer);
            if !self.admin_blocked.contains(&peer) {
                self.swarm.behaviour_mut().blocks.unblock_peer(peer);
            }
            info!(%peer, "ban expired");
        }
        let window = self.policy.reject_window;
        self.rejects
            .retain(|_, rejects| now.duration_since(rejects.since) <= window);
        if self.verified.is_empty() && self.redial.due(now) {
            self.dial_bootnodes(now);
        }
        if now >= self.next_reconnect {
            self.next_reconnect = now + self.reconnect_interval;
            if self.verified.len() < self.max_peers {
                self.reconnect();
            }
        }
    }

    /// Refused: banned, of another chain in its cool-down, or blocked by the operator.
    fn refused(&self, peer: &PeerId) -> bool {
        self.blocked.contains_key(peer) || self.admin_blocked.contains(peer)
    }

    /// Records where a verified peer (or a bootnode we reached) listens, for reconnecting.
    fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let mut usable: Vec<Multiaddr> = addrs
            .into_iter()
            .filter(is_dialable)
            .map(|a| without_p2p(&a))
            .collect();
        usable.dedup();
        let now = Instant::now();
        let entry = self.known.entry(peer).or_insert_with(|| KnownPeer {
            addrs: Vec::new(),
            last_seen: now,
        });
        entry.last_seen = now;
        for addr in usable {
            if !entry.addrs.contains(&addr) {
                entry.addrs.push(addr);
            }
        }
        if entry.addrs.len() > MAX_KNOWN_ADDRS {
            let excess = entry.addrs.len() - MAX_KNOWN_ADDRS;
            entry.addrs.drain(..excess);
        }
        while self.known.len() > MAX_KNOWN_PEERS {
            let oldest = self
                .known
                .iter()
                .filter(|(p, _)| !self.swarm.is_connected(p))
                .min_by_key(|(_, k)| k.last_seen)
                .map(|(p, _)| *p);
            match oldest {
                Some(p) => {
                    self.known.remove(&p);
                }
                None => break,
            }
        }
    }

    /// Dials every known peer that is neither connected nor refused, and every bootnode
    /// whose peer we have not met yet: the way back after a partition heals. Both ends of
    /// a lost connection know each other, so only the one with the lower peer id redials
    /// (two simultaneous redials plus a dial of the user's would exceed the per-peer
    /// connection limit).
    fn reconnect(&mut self) {
        let local = *self.swarm.local_peer_id();
        let mut targets: Vec<(PeerId, Vec<Multiaddr>)> = self
            .known
            .iter()
            .filter(|(peer, known)| {
                **peer > local
                    && !known.addrs.is_empty()
                    && !self.refused(peer)
                    && !self.swarm.is_connected(peer)
            })
            .map(|(peer, known)| (*peer, known.addrs.clone()))
            .collect();
        targets.sort_by_key(|(peer, _)| *peer);
        for (peer, addrs) in targets {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => debug!(%peer, "reconnecting to a known peer"),
                Err(error) => debug!(%peer, %error, "reconnect not started"),
            }
        }
        let unmet: Vec<Multiaddr> = self
            .bootnodes
            .iter()
            .filter(|b| match peer_id_of(b) {
                Some(peer) => peer != local && !self.known.contains_key(&peer),
                None => {
                    let bare = without_p2p(b);
                    !self.known.values().any(|k| k.addrs.contains(&bare))
                }
            })
            .cloned()
            .collect();
        for addr in unmet {
            let opts = match peer_id_of(&addr) {
                Some(peer) if self.refused(&peer) => continue,
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            if let Err(error) = self.swarm.dial(opts) {
                debug!(%addr, %error, "bootnode dial not started");
            }
        }
    }

    /// Makes `peers` the operator's block list: newly listed peers are disconnected and
    /// refused, peers no longer listed (and not banned) are let in and dialled soon.
    fn set_admin_blocked(&mut self, peers: Vec<PeerId>) -> Result<usize, NetError> {
        let local = *self.swarm.local_peer_id();
        if peers.contains(&local) {
            return Err(NetError::BanSelf { peer: local });
        }
        let wanted: HashSet<PeerId> = peers.into_iter().collect();
        let released: Vec<PeerId> = self.admin_blocked.difference(&wanted).copied().collect();
        for peer in released {
            if !self.blocked.contains_key(&peer) {
                self.swarm.behaviour_mut().blocks.unblock_peer(peer);
            }
            info!(%peer, "peer unblocked by the operator");
        }
        for peer in wanted.difference(&self.admin_blocked) {
            // Closes every connection to it at once.
            self.swarm.behaviour_mut().blocks.block_peer(*peer);
            info!(%peer, "peer blocked by the operator");
        }
        self.admin_blocked = wanted;
        // Heal now rather than at the next reconnect round.
        self.next_reconnect = Instant::now();
        Ok(self.admin_blocked.len())
    }
}

/// `addr` without a trailing `/p2p/PEER_ID`.
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    let mut bare = addr.clone();
    if matches!(bare.iter().last(), Some(Protocol::P2p(_))) {
        bare.pop();
    }
    bare
}

/// An address another node can dial: not an unspecified IP (`0.0.0.0`, `::`).
fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// The peer id in a trailing `/p2p/PEER_ID`, if any.
fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_peer() -> PeerId {
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

    #[test]
    fn topic_score_params_are_valid() {
        topic_score_params()
            .validate()
            .expect("the topic score parameters pass gossipsub's own checks");
    }

    #[test]
    fn redial_backoff_doubles_up_to_the_cap_and_resets() {
        let mut redial = Redial::new(Duration::from_secs(1), Duration::from_secs(5));
        let now = Instant::now();
        assert!(redial.due(now));
        redial.schedule(now);
        assert!(!redial.due(now));
        assert!(redial.due(now + Duration::from_secs(1)));
        let mut delays = Vec::new();
        for _ in 0..4 {
            delays.push(redial.backoff);
            redial.schedule(now);
        }
        assert_eq!(delays, [2, 4, 5, 5].map(Duration::from_secs).to_vec());
        redial.reset();
        assert_eq!(redial.backoff, Duration::from_secs(1));
    }

    #[test]
    fn reconnect_addresses_drop_the_peer_id_and_unspecified_ips() {
        let peer = random_peer();
        let plain: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("valid multiaddr");
        assert_eq!(without_p2p(&plain.clone().with(Protocol::P2p(peer))), plain);
        assert_eq!(without_p2p(&plain), plain);
        assert!(is_dialable(&plain));
        let any: Multiaddr = "/ip4/0.0.0.0/tcp/1".parse().expect("valid multiaddr");
        assert!(!is_dialable(&any));
    }

    #[test]
    fn peer_id_is_read_from_a_trailing_p2p() {
        let peer = random_peer();
        let plain: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("valid multiaddr");
        assert_eq!(peer_id_of(&plain), None);
        assert_eq!(peer_id_of(&plain.with(Protocol::P2p(peer))), Some(peer));
    }
}
