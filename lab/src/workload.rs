//! The workload generators of the lab: signed transfers sent through the nodes' RPC from a
//! seed, so every engine and every fault scenario gets the same workload.
//! - [`Workload`] (here): `rate` transfers a second among the dev accounts, one call each,
//!   signed as they fall due, each trader's nonce tracked; the reliability suite runs it
//!   and checks the traders' balances afterwards.
//! - [`batched::Presigned`]: what `compare` runs, up to 50,000 a second: many load
//!   accounts funded at genesis, pre-signed, sent in JSON-RPC batches by one thread per
//!   node.
//!
//! `simulate` draws its own transfers in virtual time but from the same accounts
//! ([`traders`]) and amounts ([`MAX_AMOUNT`]).
//!
//! Each trader always goes through the same node (trader k through node k mod N): that
//! node's mempool then holds the sender's whole nonce run, so no transaction waits on a
//! lower nonce still gossiping its way from another node. Nonces are tracked here and
//! re-read from the node's `pending_nonce` after any refusal or lost answer. Every
//! transfer a node acknowledged is recorded with its node, time, sender and nonce (the
//! reliability suite checks that none is lost or included twice; `compare` measures
//! inclusion times from them). Refusals are counted by kind, never fatal: a loaded node
//! refusing now and then, or a node that is down, is part of what is measured.

use chain::dev::{DEV_ACCOUNTS, dev_key};
use chain::{Address, Amount, Canonical, ChainId, SecretKey, TxHash};
use node::rpc::codes;
use node::rpc_client::{RpcCallError, RpcClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::debug;

pub mod batched;

/// Longest sleep between checks of the stop flag.
const NAP: Duration = Duration::from_millis(50);
/// Amounts sent, in base units: small, so no account ever runs dry.
pub(crate) const MAX_AMOUNT: u64 = 100_000;

/// The dev accounts that trade on a devnet of `nodes` nodes: those that do not produce
/// (node i authors as dev account i), when there are two of them, else all. A transfer in
/// or out of a producer would touch its stake, and a workload that kept touching the
/// stakers would measure itself rather than the engine.
pub fn traders(nodes: usize) -> &'static [&'static str] {
    match DEV_ACCOUNTS.get(nodes..) {
        Some(bystanders) if bystanders.len() >= 2 => bystanders,
        _ => &DEV_ACCOUNTS,
    }
}

/// The keys of the dev accounts that trade on a devnet of `nodes` nodes ([`traders`]).
pub fn dev_trader_keys(nodes: usize) -> Vec<SecretKey> {
    traders(nodes)
        .iter()
        .filter_map(|name| dev_key(name))
        .collect()
}

/// A transfer a node acknowledged (answered `tx_submit` without an error).
#[derive(Debug, Clone)]
pub struct Acked {
    pub hash: TxHash,
    /// The node that took it.
    pub node: usize,
    /// Seconds after the workload started, just before the `tx_submit` call was sent.
    pub at: f64,
    /// The trader's index.
    pub sender: usize,
    pub nonce: u64,
}

/// What the workload did.
#[derive(Debug, Default)]
pub struct WorkloadOutcome {
    pub acked: Vec<Acked>,
    /// Transfers not acknowledged, by kind ("nonce", "mempool", "unreachable", "node
    /// down", …).
    pub refused: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
struct Trader {
    key: SecretKey,
    address: Address,
    /// The next nonce to use; `None` until read from the node.
    nonce: Option<u64>,
}

/// The generator. See the module documentation.
#[derive(Debug)]
pub struct Workload<'a> {
    clients: &'a [RpcClient],
    /// Nodes marked here are skipped (the transfer is counted as "node down").
    down: Option<&'a [AtomicBool]>,
    chain_id: ChainId,
    rate: f64,
    rng: StdRng,
    traders: Vec<Trader>,
    outcome: WorkloadOutcome,
}

impl<'a> Workload<'a> {
    /// `rate` transfers a second among the accounts of `keys`, through `clients`, drawn
    /// from `seed`.
    pub fn new(
        clients: &'a [RpcClient],
        keys: Vec<SecretKey>,
        chain_id: ChainId,
        rate: f64,
        seed: u64,
    ) -> Self {
        let traders = keys
            .into_iter()
            .map(|key| Trader {
                address: key.address(),
                key,
                nonce: None,
            })
            .collect();
        Workload {
            clients,
            down: None,
            chain_id,
            rate,
            rng: StdRng::seed_from_u64(seed),
            traders,
            outcome: WorkloadOutcome::default(),
        }
    }

    /// Skips the nodes whose flag is set in `down` (one flag per client) while it is set.
    pub fn skipping(mut self, down: &'a [AtomicBool]) -> Self {
        self.down = Some(down);
        self
    }

    /// Sends until `stop` is set: transfer k is due `k / rate` seconds after `started`
    /// (a late one goes at once, so a slow answer does not lower the rate).
    pub fn run(mut self, started: Instant, stop: &AtomicBool) -> WorkloadOutcome {
        if self.rate <= 0.0 || self.traders.len() < 2 || self.clients.is_empty() {
            return self.outcome;
        }
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = Duration::from_secs_f64(sent as f64 / self.rate);
            let now = started.elapsed();
            if now < due {
                std::thread::sleep((due - now).min(NAP));
                continue;
            }
            self.send_one(started);
            sent += 1;
        }
        self.outcome
    }

    fn count(&mut self, kind: &'static str) {
        *self.outcome.refused.entry(kind).or_default() += 1;
    }

    fn send_one(&mut self, started: Instant) {
        let from = self.rng.random_range(0..self.traders.len());
        let to = (from + self.rng.random_range(1..self.traders.len())) % self.traders.len();
        let amount = Amount(self.rng.random_range(1..=MAX_AMOUNT));
        let node = from % self.clients.len();
        if self
            .down
            .and_then(|down| down.get(node))
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
        {
            self.count("node down");
            return;
        }
        let client = &self.clients[node];
        let nonce = match self.traders[from].nonce {
            Some(n) => n,
            None => match pending_nonce(client, &self.traders[from].address) {
                Some(n) => n,
                None => {
                    self.count("nonce lookup failed");
                    return;
                }
            },
        };
        let to_address = self.traders[to].address;
        let tx = match wallet::build_transfer(
            &self.traders[from].key,
            self.chain_id,
            nonce,
            to_address,
            amount,
            wallet::DEFAULT_FEE,
        ) {
            Ok(tx) => tx,
            Err(e) => {
                debug!(error = %e, "workload: transfer not built");
                self.count("not built");
                return;
            }
        };
        let at = started.elapsed().as_secs_f64();
        match client.call("tx_submit", json!([hex::encode(tx.encode())])) {
            Ok(_) => {
                self.traders[from].nonce = Some(nonce + 1);
                self.outcome.acked.push(Acked {
                    hash: tx.hash(),
                    node,
                    at,
                    sender: from,
                    nonce,
                });
            }
            Err(e) => {
                debug!(error = %e, node, nonce, "workload: transfer refused");
                // Whatever happened, ask the node for the nonce before the next one.
                self.traders[from].nonce = None;
                self.count(error_kind(&e));
            }
        }
    }
}

fn pending_nonce(client: &RpcClient, address: &Address) -> Option<u64> {
    client
        .call("state_getAccount", json!([address.to_string()]))
        .ok()?
        .get("pending_nonce")
        .and_then(Value::as_u64)
}

fn error_kind(e: &RpcCallError) -> &'static str {
    match e {
        RpcCallError::Rpc { code, .. } => code_kind(*code),
        RpcCallError::Unreachable { .. } => "unreachable",
        RpcCallError::BadAnswer { .. } => "bad answer",
    }
}

/// A refusal's kind by its RPC error code (`simulate` counts its refusals by these too).
pub(crate) fn code_kind(code: i64) -> &'static str {
    match code {
        codes::TX_NONCE => "nonce",
        codes::TX_BALANCE => "balance",
        codes::TX_POOL => "mempool",
        codes::TX_INVALID => "invalid",
        _ => "rpc error",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_kind() {
        let rpc = |code| RpcCallError::Rpc {
            code,
            message: String::new(),
        };
        assert_eq!(error_kind(&rpc(codes::TX_NONCE)), "nonce");
        assert_eq!(error_kind(&rpc(codes::TX_POOL)), "mempool");
        assert_eq!(error_kind(&rpc(codes::INTERNAL)), "rpc error");
        let down = RpcCallError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            reason: "refused".into(),
        };
        assert_eq!(error_kind(&down), "unreachable");
    }

    #[test]
    fn dev_transfers_leave_the_producers_alone_when_two_others_remain() {
        let names_for = |nodes: usize| -> Vec<&'static str> {
            dev_trader_keys(nodes)
                .iter()
                .filter_map(|key| {
                    DEV_ACCOUNTS
                        .iter()
                        .copied()
                        .find(|n| chain::dev::dev_address(n) == Some(key.address()))
                })
                .collect()
        };
        assert_eq!(names_for(3), ["dave", "eve", "ferdie", "grace", "heidi"]);
        assert_eq!(names_for(6), ["grace", "heidi"]);
        assert_eq!(
            names_for(7),
            DEV_ACCOUNTS.to_vec(),
            "one bystander cannot trade alone"
        );
        assert_eq!(names_for(8), DEV_ACCOUNTS.to_vec());
    }

    /// The URL of a port free right now: nothing listens there.
    pub(crate) fn unused_url() -> String {
        let port = node::ports::free_ports(1).expect("a free port");
        format!("http://127.0.0.1:{port}")
    }

    /// `n` transfers sent one after another, with no clock involved: what the loop in
    /// [`Workload::run`] does at each due time.
    fn send(mut workload: Workload<'_>, n: usize) -> WorkloadOutcome {
        let started = Instant::now();
        for _ in 0..n {
            workload.send_one(started);
        }
        workload.outcome
    }

    #[test]
    fn a_stop_set_before_the_first_transfer_sends_nothing() {
        let clients = [RpcClient::new(&unused_url(), Duration::from_millis(200))];
        let workload = Workload::new(&clients, dev_trader_keys(1), ChainId(1337), 50.0, 7);
        let outcome = workload.run(Instant::now(), &AtomicBool::new(true));
        assert!(outcome.acked.is_empty() && outcome.refused.is_empty());
    }

    #[test]
    fn an_unreachable_node_is_counted_not_fatal() {
        let clients = [RpcClient::new(&unused_url(), Duration::from_millis(200))];
        let workload = Workload::new(&clients, dev_trader_keys(1), ChainId(1337), 50.0, 7);
        let outcome = send(workload, 3);
        assert!(outcome.acked.is_empty());
        assert!(
            outcome
                .refused
                .get("nonce lookup failed")
                .copied()
                .unwrap_or(0)
                > 0,
            "{:?}",
            outcome.refused
        );
    }

    #[test]
    fn a_node_marked_down_is_skipped_without_a_call() {
        let clients = [RpcClient::new(&unused_url(), Duration::from_millis(200))];
        let down = [AtomicBool::new(true)];
        let workload =
            Workload::new(&clients, dev_trader_keys(1), ChainId(1337), 100.0, 7).skipping(&down);
        let outcome = send(workload, 3);
        assert!(outcome.acked.is_empty());
        assert!(outcome.refused.get("node down").copied().unwrap_or(0) > 0);
        assert_eq!(
            outcome.refused.get("nonce lookup failed"),
            None,
            "a node marked down is not asked: {:?}",
            outcome.refused
        );
    }
}
