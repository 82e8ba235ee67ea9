//! The peer book: where known peers listen, how bootnodes are redialled with backoff
//! while the node has no peers, and how lost peers are dialled again after a partition.

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tracing::debug;

use crate::NetError;
use crate::client::PeerInfo;
use crate::config::MAX_PENDING_DIALS;
use crate::event_loop::{EventLoop, PendingDial};

/// Peers remembered for reconnecting; the one unseen longest is forgotten first.
const MAX_KNOWN_PEERS: usize = 64;
/// Listen addresses remembered per known peer.
const MAX_KNOWN_ADDRS: usize = 4;

/// Exponential backoff for redialling bootnodes while the node has no peers.
#[derive(Debug)]
pub(crate) struct Redial {
    min: Duration,
    max: Duration,
    backoff: Duration,
    next_at: Option<Instant>,
}

impl Redial {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
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

    pub(crate) fn reset(&mut self) {
        self.backoff = self.min;
    }
}

/// A peer we were connected to, and where it listens: dialled again while disconnected.
#[derive(Debug, Clone)]
pub(crate) struct KnownPeer {
    addrs: Vec<Multiaddr>,
    last_seen: Instant,
}

impl EventLoop {
    /// Dials `addr` for [`crate::Client::dial`]; `reply` gets the peer id once connected.
    pub(crate) fn dial(
        &mut self,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    ) {
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

    /// Dials every bootnode not known to be us or refused, and schedules the next round.
    pub(crate) fn dial_bootnodes(&mut self, now: Instant) {
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

    /// Redials the bootnodes if no verified peer is left and the backoff has run out,
    /// and every reconnect interval dials known peers while below the peer limit.
    pub(crate) fn dial_when_due(&mut self, now: Instant) {
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

    /// Dials peers mDNS found on the local network, unless refused or connected.
    pub(crate) fn dial_discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
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

    /// The verified peers with the address of their first connection, by peer id.
    pub(crate) fn peer_infos(&self) -> Vec<PeerInfo> {
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
        peers
    }

    /// Records where a verified peer (or a bootnode we reached) listens, for reconnecting.
    pub(crate) fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
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
}

/// `addr` without a trailing `/p2p/PEER_ID`.
pub(crate) fn without_p2p(addr: &Multiaddr) -> Multiaddr {
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
