//! The node's side of the network task: a cloneable [`Client`] that sends commands and
//! waits for their replies, and the [`EventStream`] the task reports on.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use libp2p::gossipsub::MessageId;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::sync::{SyncRequest, SyncResponse};
use crate::{NetError, Topic};

/// Slack on top of the request timeout before [`Client::request`] gives up on the event
/// loop itself (which normally reports the timeout first).
const REQUEST_GRACE: Duration = Duration::from_secs(2);

/// The node's verdict on a gossip message, reported with [`Client::report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Valid: forward it to our mesh peers.
    Accept,
    /// Invalid: drop it, lower the sender's gossip score and count it towards a ban.
    Reject,
    /// Not useful but not wrong (already known, too old): drop it without penalty.
    Ignore,
}

/// Why a peer was banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanReason {
    /// The node rejected this many of its gossip messages within the reject window.
    RejectedMessages { count: u32 },
    /// The node asked for it with [`Client::ban`].
    Requested,
}

/// A connected peer that runs our chain (its identify version matched ours).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// The remote address of the first connection to it.
    pub address: Multiaddr,
}

/// Counters for status lines and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Peers with at least one open connection, verified or not.
    pub connected_peers: usize,
    /// Connected peers whose identify version matched ours.
    pub verified_peers: usize,
    /// Peers currently refused: banned, of another chain in their cool-down, or blocked
    /// by the operator ([`Client::set_blocked_peers`]).
    pub blocked_peers: usize,
    /// Events shed because the event queue was full.
    pub dropped_events: u64,
}

/// The way back to a peer that sent a sync request. Answer it exactly once with
/// [`Client::respond`]; dropping it makes the peer's request fail.
#[derive(Debug)]
pub struct ResponseHandle {
    pub(crate) peer: PeerId,
    pub(crate) channel: ResponseChannel<SyncResponse>,
}

impl ResponseHandle {
    /// The peer waiting for the answer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// False once the peer stopped waiting (request timed out or connection closed).
    pub fn is_open(&self) -> bool {
        self.channel.is_open()
    }
}

/// What the network task reports to the node.
#[derive(Debug)]
pub enum Event {
    /// A gossip message passed the network's checks (signature, size, not a duplicate).
    /// It is held unforwarded until the node calls [`Client::report`] with `id` and
    /// `source`; unreported messages are forgotten after about 12 s with no penalty.
    Gossip {
        topic: Topic,
        data: Vec<u8>,
        /// The peer that forwarded it to us (not necessarily its author): the one a
        /// rejection penalises.
        source: PeerId,
        id: MessageId,
    },
    /// A peer asks for sync data; answer with [`Client::respond`] within the request
    /// timeout.
    InboundRequest {
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseHandle,
    },
    /// A peer connected and proved (by identify) that it runs our chain.
    PeerConnected { peer: PeerId, addr: Multiaddr },
    /// A peer reported by [`Event::PeerConnected`] lost its last connection.
    PeerDisconnected { peer: PeerId },
    /// A peer was disconnected and is refused for `duration`.
    PeerBanned {
        peer: PeerId,
        duration: Duration,
        reason: BanReason,
    },
    /// A peer announced another chain's identify version: it was disconnected and is
    /// refused for the configured cool-down.
    WrongChain {
        peer: PeerId,
        protocol_version: String,
    },
    /// The node listens on a new address.
    NewListenAddr { addr: Multiaddr },
}

/// The events of one network task, in order. Bounded ([`crate::config::EVENT_QUEUE`]):
/// when the node falls behind, the task sheds new events rather than stall the swarm
/// (gossip is then reported as [`Verdict::Ignore`], inbound requests dropped so the
/// asker's request fails; [`Client::peers`] stays the truth about peers).
#[derive(Debug)]
pub struct EventStream {
    pub(crate) receiver: mpsc::Receiver<Event>,
}

impl EventStream {
    /// The next event; `None` once the network task has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.receiver.poll_recv(cx)
    }
}

type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// A command for the event loop. Each carries the sender its answer goes back on.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: Reply<MessageId>,
    },
    Report {
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
        reply: Reply<bool>,
    },
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: Reply<SyncResponse>,
    },
    Respond {
        handle: ResponseHandle,
        response: SyncResponse,
        reply: Reply<()>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<PeerId>,
    },
    Ban {
        peer: PeerId,
        duration: Duration,
        reply: Reply<()>,
    },
    SetBlocked {
        peers: Vec<PeerId>,
        reply: Reply<usize>,
    },
    Peers {
        reply: Reply<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    Stats {
        reply: Reply<NetStats>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// A cloneable handle on the network task. Every call queues a command (bounded:
/// [`crate::config::COMMAND_QUEUE`]) and waits for the task's answer; every call fails
/// with [`NetError::Stopped`] once the task has ended.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) request_timeout: Duration,
}

impl Client {
    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        answer.await.map_err(|_| NetError::Stopped)?
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Gossips `data` on `topic`. Fails with [`NetError::NoPeers`] while no peer is
    /// subscribed and [`NetError::Duplicate`] for bytes already published or seen (the
    /// message id is the content hash).
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<MessageId, NetError> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await
    }

    /// Reports the node's verdict on a gossip message from [`Event::Gossip`]. Returns
    /// whether the message was still held (false: it expired, nothing was forwarded).
    pub async fn report(
        &self,
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) -> Result<bool, NetError> {
        self.call(|reply| Command::Report {
            id,
            source,
            verdict,
            reply,
        })
        .await
    }

    /// Asks a connected peer for sync data and waits for its answer, at most the
    /// configured request timeout.
    pub async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, NetError> {
        request
            .check()
            .map_err(|source| NetError::InvalidRequest { source })?;
        let timeout = self.request_timeout.saturating_add(REQUEST_GRACE);
        let call = self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        });
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| NetError::Timeout { peer, timeout })?
    }

    /// Answers an [`Event::InboundRequest`]. A response over the configured size limit is
    /// not sent: the peer gets [`SyncResponse::Error`] and this returns
    /// [`NetError::ResponseTooLarge`].
    pub async fn respond(
        &self,
        handle: ResponseHandle,
        response: SyncResponse,
    ) -> Result<(), NetError> {
        self.call(|reply| Command::Respond {
            handle,
            response,
            reply,
        })
        .await
    }

    /// Dials an address (with or without `/p2p/PEER_ID`) and waits until the connection
    /// is established or has failed. Ok names the peer; the remote may still close the
    /// connection (ban, other chain) right after.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Disconnects `peer` and refuses it for `duration` (cut to [`crate::config::MAX_BAN`]).
    pub async fn ban(&self, peer: PeerId, duration: Duration) -> Result<(), NetError> {
        self.call(|reply| Command::Ban {
            peer,
            duration,
            reply,
        })
        .await
    }

    /// Replaces the set of peers refused by the operator (fault tests, `admin_blockPeers`):
    /// connections to newly listed peers close at once and every new connection to or
    /// from them is refused until a later call leaves them out; peers left out are
    /// redialled within [`crate::NetworkConfig::reconnect_interval`]. Independent of bans:
    /// a banned peer stays refused until its ban expires. Returns the size of the new set;
    /// fails with [`NetError::BanSelf`] if the list names this node.
    pub async fn set_blocked_peers(&self, peers: Vec<PeerId>) -> Result<usize, NetError> {
        self.call(|reply| Command::SetBlocked { peers, reply })
            .await
    }

    /// Connected peers that run our chain.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The addresses this node listens on (empty until the listeners are up).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Connection and queue counters.
    pub async fn stats(&self) -> Result<NetStats, NetError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// Stops the network task: every connection closes, every later call fails with
    /// [`NetError::Stopped`] and the event stream ends.
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.call(|reply| Command::Shutdown { reply }).await
    }
}
