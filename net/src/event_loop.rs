//! The task that owns the libp2p `Swarm`: it turns commands into swarm calls and swarm
//! events into [`Event`]s, and keeps the peer bookkeeping (verified peers, reject counts,
//! bans, bootnode redials) that no other task may touch.
//!
//! The loop's state lives here with its dispatch; the protocols it drives are built in
//! [`crate::behaviour`], bans and reject counts are kept in [`crate::scoring`], and the
//! peer book with its redials in [`crate::peers`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageId, PublishError};
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionError, ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::behaviour::{Behaviour, BehaviourEvent, Topics, build_swarm};
use crate::client::{Client, Command, Event, EventStream, NetStats, ResponseHandle, Verdict};
use crate::config::{COMMAND_QUEUE, EVENT_QUEUE, MAX_PENDING_REQUESTS, NetworkConfig};
use crate::peers::{KnownPeer, Redial, without_p2p};
use crate::scoring::Rejects;
use crate::sync::{SyncRequest, SyncResponse};
use crate::topic::identify_version;
use crate::{NetError, Topic};

/// How often bans expire, reject counts age and bootnodes are redialled.
const TICK: Duration = Duration::from_millis(250);
/// Longest foreign identify version kept in [`Event::WrongChain`].
const MAX_VERSION_LEN: usize = 128;

/// Builds the swarm, starts listening and wires the channels; see [`crate::new`].
pub(crate) fn build(config: NetworkConfig) -> Result<(Client, EventStream, EventLoop), NetError> {
    let topics = Topics::new(&config);
    let swarm = build_swarm(&config, &topics)?;
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
pub(crate) struct Policy {
    pub(crate) max_response_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) reject_limit: u32,
    pub(crate) reject_window: Duration,
    pub(crate) ban_duration: Duration,
    pub(crate) wrong_chain_cooldown: Duration,
}

#[derive(Debug)]
pub(crate) struct PendingRequest {
    request: SyncRequest,
    reply: oneshot::Sender<Result<SyncResponse, NetError>>,
}

#[derive(Debug)]
pub(crate) struct PendingDial {
    pub(crate) addr: Multiaddr,
    pub(crate) reply: oneshot::Sender<Result<PeerId, NetError>>,
}

/// The network task. Run it with `tokio::spawn(event_loop.run())`; it ends on
/// [`Client::shutdown`] or when every [`Client`] is dropped.
//
// The fields are crate-visible because `scoring` and `peers` implement their part of the
// loop as methods on it; nothing but the loop's own methods touches them.
pub struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    topics: Topics,
    identify_version: String,
    pub(crate) policy: Policy,
    pub(crate) bootnodes: Vec<Multiaddr>,
    pub(crate) redial: Redial,
    pub(crate) reconnect_interval: Duration,
    pub(crate) next_reconnect: Instant,
    pub(crate) max_peers: usize,
    /// Peers to reconnect to: bootnodes and verified peers, with their listen addresses.
    pub(crate) known: HashMap<PeerId, KnownPeer>,
    /// Peers refused by the operator ([`Client::set_blocked_peers`]), apart from bans.
    pub(crate) admin_blocked: HashSet<PeerId>,
    /// Every peer with an open connection, and the remote address of its first one.
    pub(crate) connected: HashMap<PeerId, Multiaddr>,
    /// Connected peers whose identify version matched ours.
    pub(crate) verified: HashSet<PeerId>,
    /// Refused peers and when they may come back.
    pub(crate) blocked: HashMap<PeerId, Instant>,
    pub(crate) rejects: HashMap<PeerId, Rejects>,
    pending_requests: HashMap<OutboundRequestId, PendingRequest>,
    pub(crate) pending_dials: HashMap<ConnectionId, PendingDial>,
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
    pub(crate) fn emit(&mut self, event: Event) -> bool {
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

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.expire_bans_and_rejects(now);
        self.dial_when_due(now);
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
            } => self.on_connection_established(peer_id, connection_id, endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => self.on_connection_closed(peer_id, num_established, cause),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => self.on_outgoing_connection_error(connection_id, peer_id, error),
            SwarmEvent::NewListenAddr { address, .. } => self.on_new_listen_addr(address),
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

    fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: ConnectedPoint,
    ) {
        debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connection established");
        if let Some(dial) = self.pending_dials.remove(&connection_id) {
            let _ = dial.reply.send(Ok(peer_id));
        }
        if let ConnectedPoint::Dialer { address, .. } = &endpoint {
            let bare = without_p2p(address);
            if self.bootnodes.iter().any(|b| without_p2p(b) == bare) {
                self.remember(peer_id, vec![bare]);
            }
        }
        self.connected
            .entry(peer_id)
            .or_insert_with(|| endpoint.get_remote_address().clone());
    }

    fn on_connection_closed(
        &mut self,
        peer_id: PeerId,
        num_established: u32,
        cause: Option<ConnectionError>,
    ) {
        debug!(peer = %peer_id, ?cause, "connection closed");
        if num_established == 0 {
            self.connected.remove(&peer_id);
            if self.verified.remove(&peer_id) {
                self.emit(Event::PeerDisconnected { peer: peer_id });
            }
        }
    }

    /// Fails the [`Client::dial`] call waiting on this connection, if any.
    fn on_outgoing_connection_error(
        &mut self,
        connection_id: ConnectionId,
        peer_id: Option<PeerId>,
        error: DialError,
    ) {
        debug!(peer = ?peer_id, %error, "outgoing connection failed");
        if let Some(dial) = self.pending_dials.remove(&connection_id) {
            let _ = dial.reply.send(Err(NetError::Dial {
                addr: dial.addr,
                reason: error.to_string(),
            }));
        }
    }

    fn on_new_listen_addr(&mut self, address: Multiaddr) {
        info!(%address, "listening");
        if !self.listen_addrs.contains(&address) {
            self.listen_addrs.push(address.clone());
        }
        self.emit(Event::NewListenAddr { addr: address });
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

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_sync_request(peer, request, channel),
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_sync_response(peer, request_id, response),
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

    fn on_sync_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
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

    /// Hands a response to the [`Client::request`] call waiting for it, refusing a
    /// response of another kind than the request asked for.
    fn on_sync_response(
        &mut self,
        peer: PeerId,
        request_id: OutboundRequestId,
        response: SyncResponse,
    ) {
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
                    SyncResponse::Blocks(items) | SyncResponse::Headers(items) => items.len(),
                    SyncResponse::Status { .. } | SyncResponse::Error(_) => 1,
                },
            })
        };
        let _ = pending.reply.send(result);
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
                    self.on_same_chain(peer_id, info);
                } else {
                    self.on_wrong_chain(peer_id, info.protocol_version);
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

    /// The peer's identify version matched ours: it is verified and remembered.
    fn on_same_chain(&mut self, peer_id: PeerId, info: identify::Info) {
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
    }

    /// The peer runs another chain: disconnect it and refuse it for the cool-down.
    fn on_wrong_chain(&mut self, peer_id: PeerId, mut version: String) {
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

    fn on_mdns(&mut self, event: mdns::Event) {
        let mdns::Event::Discovered(found) = event else {
            return;
        };
        self.dial_discovered(found);
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
                let _ = reply.send(Ok(self.report(&id, source, verdict)));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => self.request(peer, request, reply),
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
                let _ = reply.send(self.ban_requested(peer, duration));
            }
            Command::SetBlocked { peers, reply } => {
                let _ = reply.send(self.set_admin_blocked(peers));
            }
            Command::Peers { reply } => {
                let _ = reply.send(Ok(self.peer_infos()));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(Ok(self.listen_addrs.clone()));
            }
            Command::Stats { reply } => {
                let _ = reply.send(Ok(self.stats()));
            }
            Command::Shutdown { reply } => {
                // `run` handles shutdown before dispatching here; answer anyway.
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn stats(&self) -> NetStats {
        NetStats {
            connected_peers: self.connected.len(),
            verified_peers: self.verified.len(),
            blocked_peers: self.refused_count(),
            dropped_events: self.dropped_events,
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

    /// Sends a sync request for [`Client::request`]; `reply` gets the response.
    fn request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, NetError>>,
    ) {
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
}
