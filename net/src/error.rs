//! The network layer's one error type.

use std::time::Duration;

use chain::codec::CodecError;
use libp2p::{Multiaddr, PeerId};

use crate::Topic;

/// What went wrong in the network layer, with the values involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot set up the transport: {reason}")]
    Transport { reason: String },
    #[error("cannot set up {protocol}: {reason}")]
    Setup {
        protocol: &'static str,
        reason: String,
    },
    #[error("dialling {addr} failed: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("peer {peer} is not connected")]
    NotConnected { peer: PeerId },
    #[error("refusing to ban the local peer {peer}")]
    BanSelf { peer: PeerId },
    #[error("{topic} payload is {len} bytes, more than the limit of {max}")]
    PayloadTooLarge {
        topic: Topic,
        len: usize,
        max: usize,
    },
    #[error("this {topic} message was already published or seen")]
    Duplicate { topic: Topic },
    #[error("no connected peer is subscribed to {topic}")]
    NoPeers { topic: Topic },
    #[error("publishing on {topic} failed: {reason}")]
    Publish { topic: Topic, reason: String },
    #[error("invalid sync request: {source}")]
    InvalidRequest { source: CodecError },
    #[error("sync request to {peer} timed out after {timeout:?}")]
    Timeout { peer: PeerId, timeout: Duration },
    #[error("peer {peer} does not speak our sync protocol (another chain?)")]
    UnsupportedProtocol { peer: PeerId },
    #[error("sync request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("peer {peer} sent an invalid sync response: {reason}")]
    BadResponse { peer: PeerId, reason: String },
    #[error("peer {peer} answered a {request} request with {items} {response} item(s)")]
    UnexpectedResponse {
        peer: PeerId,
        request: &'static str,
        response: &'static str,
        items: usize,
    },
    #[error("sync response is {len} bytes, more than the limit of {max}; sent an error instead")]
    ResponseTooLarge { len: usize, max: usize },
    #[error("{peer} no longer waits for this response (timed out or disconnected)")]
    RequesterGone { peer: PeerId },
    #[error("too many {what} in flight (limit {max})")]
    Busy { what: &'static str, max: usize },
    #[error("the network task has stopped")]
    Stopped,
}

impl NetError {
    /// True when the remote peer broke the protocol (an oversize, malformed or unasked-for
    /// response), so the node may penalise it; false for timeouts, disconnects and local
    /// mistakes.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            NetError::BadResponse { .. } | NetError::UnexpectedResponse { .. }
        )
    }
}
