//! The faults of `toychain compare --fault` on real node processes: what each node is
//! started with, and what happens to the running devnet when a fault's time comes.
//!
//! - `clock-skew:NODE:SECS` starts that node with `--clock-skew SECS`.
//! - `delay:MS` starts every node with `--net-delay MS` (each handles what it receives MS
//!   late, so every message between two nodes takes MS longer).
//! - `partition@T:DUR` starts every node with `--rpc-admin`; at T each node is told over
//!   RPC to block the other half's peer ids (`admin_blockPeers`), at T + DUR to block none.
//! - `kill-producer@T` SIGKILLs the node that made node 0's head at T; it stays down.

use super::collect::Collector;
use super::faults::{Fault, second_half};
use chain::Address;
use devnet::Fleet;
use node::rpc_client::RpcClient;
use serde_json::{Value, json};
use std::time::Duration;

/// The extra command-line arguments of node `i` for these faults.
pub fn node_args(faults: &[Fault], i: usize) -> Vec<String> {
    let mut args = Vec::new();
    for fault in faults {
        match *fault {
            Fault::ClockSkew { node, secs } if node == i => {
                args.push(format!("--clock-skew={secs}"));
            }
            Fault::Delay { ms } => args.extend(["--net-delay".to_owned(), ms.to_string()]),
            Fault::Partition { .. } if !args.iter().any(|a| a == "--rpc-admin") => {
                args.push("--rpc-admin".to_owned());
            }
            _ => {}
        }
    }
    args
}

/// One timed action.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Kill,
    Split,
    Heal,
}

/// Carries out the timed faults as the measurement passes their times.
#[derive(Debug)]
pub struct Injector {
    /// (seconds from the start, action), in time order; done ones removed.
    due: Vec<(f64, Action)>,
    /// Each node's peer id, read once at the start (`node_status`).
    peer_ids: Vec<Option<String>>,
    /// Node i's author address.
    authors: Vec<Address>,
    down: Vec<bool>,
}

impl Injector {
    pub fn new(faults: &[Fault], clients: &[RpcClient], authors: Vec<Address>) -> Injector {
        let mut due = Vec::new();
        for fault in faults {
            match *fault {
                Fault::KillProducer { at_s } => due.push((at_s as f64, Action::Kill)),
                Fault::Partition { at_s, duration_s } => {
                    due.push((at_s as f64, Action::Split));
                    due.push(((at_s + duration_s) as f64, Action::Heal));
                }
                Fault::ClockSkew { .. } | Fault::Delay { .. } => {}
            }
        }
        due.sort_by(|a, b| a.0.total_cmp(&b.0));
        let peer_ids = if due.iter().any(|(_, a)| *a == Action::Split) {
            clients
                .iter()
                .map(|c| {
                    c.call("node_status", json!([]))
                        .ok()
                        .and_then(|s| s.get("peer_id").and_then(Value::as_str).map(str::to_owned))
                })
                .collect()
        } else {
            vec![None; clients.len()]
        };
        Injector {
            due,
            peer_ids,
            down: vec![false; clients.len()],
            authors,
        }
    }

    /// The first node no fault took down: its chain is the final chain.
    pub fn first_live(&self) -> usize {
        (0..self.down.len()).find(|n| !self.down[*n]).unwrap_or(0)
    }

    /// Carries out what is due by `elapsed`; returns a line for each thing done.
    pub fn step(
        &mut self,
        elapsed: Duration,
        fleet: &mut Fleet,
        clients: &[RpcClient],
        collector: &Collector<'_>,
    ) -> Vec<String> {
        let now = elapsed.as_secs_f64();
        let mut said = Vec::new();
        while let Some((at, action)) = self.due.first().copied()
            && at <= now
        {
            self.due.remove(0);
            said.push(match action {
                Action::Kill => self.kill(fleet, collector),
                Action::Split => self.block(clients, true),
                Action::Heal => self.block(clients, false),
            });
        }
        said
    }

    fn kill(&mut self, fleet: &mut Fleet, collector: &Collector<'_>) -> String {
        let witness = self.first_live();
        let victim = collector
            .head_producer(witness)
            .and_then(|p| self.authors.iter().position(|a| *a == p))
            .filter(|v| !self.down[*v])
            .unwrap_or(witness);
        fleet.kill_node(victim);
        self.down[victim] = true;
        format!("kill-producer: SIGKILL to node {victim}, which made node {witness}'s head")
    }

    /// Splits the nodes into halves (`split`) or lets every peer back in.
    fn block(&self, clients: &[RpcClient], split: bool) -> String {
        let n = clients.len();
        let mut failed = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            if self.down[i] {
                continue;
            }
            let others: Vec<&String> = (0..n)
                .filter(|j| split && second_half(*j, n) != second_half(i, n))
                .filter_map(|j| self.peer_ids[j].as_ref())
                .collect();
            if let Err(e) = client.call("admin_blockPeers", json!([others])) {
                tracing::warn!(node = i, error = %e, "compare: admin_blockPeers failed");
                failed.push(i.to_string());
            }
        }
        let what = if split {
            format!(
                "partition: nodes 0–{} cut off from {}–{}",
                n.div_ceil(2) - 1,
                n.div_ceil(2),
                n - 1
            )
        } else {
            "partition healed".to_owned()
        };
        if failed.is_empty() {
            what
        } else {
            format!("{what} (node(s) {} did not answer)", failed.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_the_flags_of_its_faults() {
        let faults = [
            Fault::ClockSkew { node: 1, secs: -7 },
            Fault::Delay { ms: 300 },
            Fault::Partition {
                at_s: 10,
                duration_s: 5,
            },
            Fault::Partition {
                at_s: 30,
                duration_s: 5,
            },
        ];
        assert_eq!(node_args(&faults, 0), ["--net-delay", "300", "--rpc-admin"]);
        assert_eq!(
            node_args(&faults, 1),
            ["--clock-skew=-7", "--net-delay", "300", "--rpc-admin"]
        );
        assert!(node_args(&[Fault::KillProducer { at_s: 5 }], 0).is_empty());
    }
}
