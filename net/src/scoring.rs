//! How peers earn distrust: gossipsub's peer scores, tuned for low-rate topics, and the
//! net layer's own reject counts, bans and operator block list, which refuse a peer at
//! the connection level (see [`crate::NetworkConfig::reject_limit`]).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::gossipsub::{
    MessageAcceptance, MessageId, PeerScoreParams, PeerScoreThresholds, TopicHash, TopicScoreParams,
};
use tracing::{debug, info, warn};

use crate::NetError;
use crate::client::{BanReason, Event, Verdict};
use crate::config::MAX_BAN;
use crate::event_loop::EventLoop;

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

/// Gossipsub's peer score parameters: [`topic_score_params`] on every subscribed topic.
pub(crate) fn peer_score_params(topics: &[TopicHash]) -> PeerScoreParams {
    let mut params = PeerScoreParams::default();
    // Local devnets run every node on one address; that is not a Sybil attack.
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    for hash in topics {
        params.topics.insert(hash.clone(), topic_score_params());
    }
    params
}

/// Gossipsub's default thresholds: its graylist (-80) is what [`topic_score_params`]
/// is tuned against.
pub(crate) fn peer_score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds::default()
}

/// Rejected messages from one peer since `since`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejects {
    count: u32,
    since: Instant,
}

impl EventLoop {
    /// Tells gossipsub the verdict; true if the message was still held.
    pub(crate) fn validate(&mut self, id: &MessageId, source: &PeerId, verdict: Verdict) -> bool {
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

    /// The node's verdict on a held message ([`crate::Client::report`]); true if it was
    /// still held. Only a held message counts towards a ban, so none counts twice.
    pub(crate) fn report(&mut self, id: &MessageId, source: PeerId, verdict: Verdict) -> bool {
        let held = self.validate(id, &source, verdict);
        if held && verdict == Verdict::Reject {
            self.count_reject(source);
        }
        held
    }

    /// Bans `peer` for [`crate::Client::ban`]; the local peer is refused.
    pub(crate) fn ban_requested(
        &mut self,
        peer: PeerId,
        duration: Duration,
    ) -> Result<(), NetError> {
        if &peer == self.swarm.local_peer_id() {
            return Err(NetError::BanSelf { peer });
        }
        self.ban(peer, duration, BanReason::Requested);
        Ok(())
    }

    /// Counts a rejected message from `peer` and bans it at the reject limit.
    pub(crate) fn count_reject(&mut self, peer: PeerId) {
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

    /// Bans `peer` for `duration` (at most [`MAX_BAN`]) and reports it.
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
    pub(crate) fn block(&mut self, peer: PeerId, duration: Duration) {
        let now = Instant::now();
        let until = now.checked_add(duration.min(MAX_BAN)).unwrap_or(now);
        let entry = self.blocked.entry(peer).or_insert(until);
        if *entry < until {
            *entry = until;
        }
        self.swarm.behaviour_mut().blocks.block_peer(peer);
    }

    /// Lets in the peers whose ban has run out (unless the operator blocks them) and
    /// forgets rejects older than the reject window.
    pub(crate) fn expire_bans_and_rejects(&mut self, now: Instant) {
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
    }

    /// Refused: banned, of another chain in its cool-down, or blocked by the operator.
    pub(crate) fn refused(&self, peer: &PeerId) -> bool {
        self.blocked.contains_key(peer) || self.admin_blocked.contains(peer)
    }

    /// Peers refused for any reason, each counted once.
    pub(crate) fn refused_count(&self) -> usize {
        self.admin_blocked
            .iter()
            .filter(|p| !self.blocked.contains_key(p))
            .count()
            + self.blocked.len()
    }

    /// Makes `peers` the operator's block list: newly listed peers are disconnected and
    /// refused, peers no longer listed (and not banned) are let in and dialled soon.
    pub(crate) fn set_admin_blocked(&mut self, peers: Vec<PeerId>) -> Result<usize, NetError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_score_params_are_valid() {
        topic_score_params()
            .validate()
            .expect("the topic score parameters pass gossipsub's own checks");
    }
}
