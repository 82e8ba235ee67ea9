//! The simulated network: a seeded peer graph and the delay of each message on it.
//!
//! - **Peers.** With up to `degree + 1` nodes every node is every other's peer; with more,
//!   a ring (so the graph is connected) plus random links until each node has `degree`
//!   peers where the draw allows it (gossipsub keeps a mesh of about that many).
//! - **Delay.** A message first waits for its sender's uplink: each node sends one
//!   message at a time at `bandwidth` bytes a second, so a block going to eight peers
//!   leaves eight times. Then it travels a one-way delay drawn per message from a
//!   log-normal distribution with mean `latency` and standard deviation `jitter`. A link
//!   delivers in order (it is a TCP stream), so a message never overtakes an earlier one
//!   on the same link.
//! - **Loss.** A gossiped message is lost with probability `loss` (its uplink time is
//!   spent all the same). Requests and their answers, like the real node's sync over
//!   request-response, are not lost.

use super::queue::Millis;
use super::random::SimRng;
use std::collections::{BTreeMap, BTreeSet};

/// Most peers a node keeps.
pub const DEGREE: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LinkModel {
    /// Mean one-way delay, ms.
    pub latency_ms: f64,
    /// Standard deviation of the one-way delay, ms.
    pub jitter_ms: f64,
    /// Each node's upload rate, bytes a second.
    pub bandwidth: f64,
    /// Probability that a gossiped message is lost.
    pub loss: f64,
}

#[derive(Debug)]
pub struct Network {
    model: LinkModel,
    peers: Vec<Vec<usize>>,
    /// When each node's uplink is free again, in fractional ms.
    uplink_free: Vec<f64>,
    /// The last arrival on each link (from, to), for in-order delivery.
    last_arrival: BTreeMap<(usize, usize), Millis>,
    rng: SimRng,
}

/// Whether a message may be lost on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Gossip,
    Reliable,
}

impl Network {
    pub fn new(
        nodes: usize,
        model: LinkModel,
        degree: usize,
        topology: &mut SimRng,
        rng: SimRng,
    ) -> Network {
        Network {
            model,
            peers: peer_graph(nodes, degree, topology),
            uplink_free: vec![0.0; nodes],
            last_arrival: BTreeMap::new(),
            rng,
        }
    }

    pub fn peers(&self, node: usize) -> &[usize] {
        &self.peers[node]
    }

    /// When a message of `bytes` that `from` sends at `now` reaches `to`; `None` when it
    /// is lost.
    pub fn send(
        &mut self,
        now: Millis,
        from: usize,
        to: usize,
        bytes: usize,
        delivery: Delivery,
    ) -> Option<Millis> {
        let transmit = bytes as f64 / self.model.bandwidth * 1000.0;
        let start = self.uplink_free[from].max(now as f64);
        let sent = start + transmit;
        self.uplink_free[from] = sent;
        if delivery == Delivery::Gossip && self.rng.chance(self.model.loss) {
            return None;
        }
        let delay = self
            .rng
            .lognormal(self.model.latency_ms, self.model.jitter_ms);
        let arrival = (sent + delay).ceil() as Millis;
        let last = self.last_arrival.entry((from, to)).or_insert(0);
        *last = (*last).max(arrival).max(now);
        Some(*last)
    }
}

/// Each node's peers, sorted: a full mesh for up to `degree + 1` nodes, else a ring plus
/// seeded random links up to `degree` per node.
pub fn peer_graph(nodes: usize, degree: usize, rng: &mut SimRng) -> Vec<Vec<usize>> {
    let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes];
    if nodes <= degree + 1 {
        for (i, peers) in adj.iter_mut().enumerate() {
            peers.extend((0..nodes).filter(|j| *j != i));
        }
    } else {
        for i in 0..nodes {
            let j = (i + 1) % nodes;
            adj[i].insert(j);
            adj[j].insert(i);
        }
        for i in 0..nodes {
            // A bounded number of draws: a node whose candidates are all full keeps fewer.
            for _ in 0..degree * 20 {
                if adj[i].len() >= degree {
                    break;
                }
                let j = rng.index(nodes);
                if j != i && adj[j].len() < degree && !adj[i].contains(&j) {
                    adj[i].insert(j);
                    adj[j].insert(i);
                }
            }
        }
    }
    adj.into_iter().map(|p| p.into_iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::random::Stream;

    fn reachable(graph: &[Vec<usize>]) -> usize {
        let mut seen = BTreeSet::from([0]);
        let mut todo = vec![0];
        while let Some(n) = todo.pop() {
            for p in &graph[n] {
                if seen.insert(*p) {
                    todo.push(*p);
                }
            }
        }
        seen.len()
    }

    #[test]
    fn peer_graphs_are_symmetric_connected_and_bounded() {
        for (nodes, seed) in [
            (1, 1),
            (2, 1),
            (9, 1),
            (10, 1),
            (100, 1),
            (500, 2),
            (500, 3),
        ] {
            let graph = peer_graph(nodes, DEGREE, &mut SimRng::new(seed, Stream::Topology));
            assert_eq!(reachable(&graph), nodes, "{nodes} nodes, seed {seed}");
            for (i, peers) in graph.iter().enumerate() {
                assert!(peers.len() <= DEGREE.min(nodes - 1), "{nodes}: {peers:?}");
                for p in peers {
                    assert!(graph[*p].contains(&i), "{i} → {p} has no way back");
                }
            }
            if nodes <= DEGREE + 1 {
                assert!(graph.iter().all(|p| p.len() == nodes - 1), "full mesh");
            } else {
                // Just past a full mesh the random draw can leave a few nodes short.
                let full = graph.iter().filter(|p| p.len() == DEGREE).count();
                let wanted = if nodes >= 50 {
                    nodes * 9 / 10
                } else {
                    nodes / 2
                };
                assert!(full >= wanted, "{full} of {nodes} have {DEGREE} peers");
                assert!(graph.iter().all(|p| p.len() >= DEGREE / 2), "{graph:?}");
            }
        }
        let again = |seed| peer_graph(100, DEGREE, &mut SimRng::new(seed, Stream::Topology));
        assert_eq!(again(5), again(5));
        assert_ne!(again(5), again(6));
    }

    fn network(model: LinkModel) -> Network {
        Network::new(
            3,
            model,
            DEGREE,
            &mut SimRng::new(1, Stream::Topology),
            SimRng::new(1, Stream::Network),
        )
    }

    #[test]
    fn an_uplink_sends_one_message_at_a_time_and_links_deliver_in_order() {
        // 1,000 bytes a second: a 500-byte message holds the uplink for 500 ms.
        let mut net = network(LinkModel {
            latency_ms: 100.0,
            jitter_ms: 0.0,
            bandwidth: 1_000.0,
            loss: 0.0,
        });
        assert_eq!(net.send(0, 0, 1, 500, Delivery::Gossip), Some(600));
        assert_eq!(net.send(0, 0, 2, 500, Delivery::Gossip), Some(1_100));
        // Another sender's uplink is free.
        assert_eq!(net.send(0, 1, 2, 500, Delivery::Gossip), Some(600));

        let mut jittery = network(LinkModel {
            latency_ms: 100.0,
            jitter_ms: 200.0,
            bandwidth: 1e12,
            loss: 0.0,
        });
        let arrivals: Vec<Millis> = (0..200)
            .map(|t| {
                jittery
                    .send(t, 0, 1, 10, Delivery::Gossip)
                    .expect("no loss")
            })
            .collect();
        assert!(
            arrivals.windows(2).all(|w| w[0] <= w[1]),
            "in order on a link"
        );
        assert!(arrivals.iter().zip(0..).all(|(a, t)| *a >= t));
    }

    #[test]
    fn only_gossip_is_lost() {
        let mut net = network(LinkModel {
            latency_ms: 10.0,
            jitter_ms: 0.0,
            bandwidth: 1e9,
            loss: 0.5,
        });
        let lost = (0..1000)
            .filter(|t| net.send(*t, 0, 1, 100, Delivery::Gossip).is_none())
            .count();
        assert!((400..600).contains(&lost), "{lost}");
        assert!((0..1000).all(|t| net.send(t, 0, 1, 100, Delivery::Reliable).is_some()));
    }
}
