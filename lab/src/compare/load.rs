//! The load generator: `rate` signed transfers a second between the dev accounts, sent
//! through the nodes' RPC, from a seeded RNG so every engine gets the same workload.
//!
//! The transfers move coins between the dev accounts that do not produce blocks (node i
//! authors as dev account i, so accounts N … 7) whenever there are two of them: a transfer
//! in or out resets an account's coin age, and a workload that kept touching the stakers
//! would starve proof of stake rather than measure it. With 7 or 8 nodes every account
//! takes part.
//!
//! Each sender always goes through the same node (the k-th account through node k mod N):
//! that node's mempool then holds the sender's whole nonce run, so no transaction waits
//! on a lower nonce still gossiping its way from another node. Nonces are tracked here
//! and re-read from the node's `pending_nonce` after any refusal or lost answer.
//! Failures are counted by kind, never fatal: a loaded node refusing now and then is part
//! of what is measured.

use super::record::{Secs, Submitted};
use chain::dev::{DEV_ACCOUNTS, dev_key};
use chain::{Address, Amount, Canonical, ChainId, SecretKey};
use node::rpc::codes;
use node::rpc_client::{RpcCallError, RpcClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::debug;

/// Longest sleep between checks of the stop flag.
const NAP: Duration = Duration::from_millis(50);
/// Amounts sent, in base units: small, so no dev account ever runs dry.
pub(crate) const MAX_AMOUNT: u64 = 100_000;

/// What the generator did.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub submitted: Vec<Submitted>,
    pub errors: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
struct Account {
    key: SecretKey,
    address: Address,
    /// The next nonce to use; `None` until read from the node.
    nonce: Option<u64>,
}

#[derive(Debug)]
pub struct LoadGenerator<'a> {
    clients: &'a [RpcClient],
    chain_id: ChainId,
    rate: f64,
    rng: StdRng,
    accounts: Vec<Account>,
    outcome: LoadOutcome,
}

impl<'a> LoadGenerator<'a> {
    pub fn new(clients: &'a [RpcClient], chain_id: ChainId, rate: f64, seed: u64) -> Self {
        let accounts = traders(clients.len())
            .iter()
            .filter_map(|name| dev_key(name))
            .map(|key| Account {
                address: key.address(),
                key,
                nonce: None,
            })
            .collect();
        LoadGenerator {
            clients,
            chain_id,
            rate,
            rng: StdRng::seed_from_u64(seed),
            accounts,
            outcome: LoadOutcome::default(),
        }
    }

    /// Sends until `stop` is set: transfer k is due `k / rate` seconds after `started`
    /// (a late one goes at once, so a slow answer does not lower the rate).
    pub fn run(mut self, started: Instant, stop: &AtomicBool) -> LoadOutcome {
        if self.rate <= 0.0 || self.accounts.len() < 2 || self.clients.is_empty() {
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
        *self.outcome.errors.entry(kind).or_default() += 1;
    }

    fn send_one(&mut self, started: Instant) {
        let from = self.rng.random_range(0..self.accounts.len());
        let to = (from + self.rng.random_range(1..self.accounts.len())) % self.accounts.len();
        let amount = Amount(self.rng.random_range(1..=MAX_AMOUNT));
        let client = &self.clients[from % self.clients.len()];
        let nonce = match self.accounts[from].nonce {
            Some(n) => n,
            None => match pending_nonce(client, &self.accounts[from].address) {
                Some(n) => n,
                None => {
                    self.count("nonce lookup failed");
                    return;
                }
            },
        };
        let to_address = self.accounts[to].address;
        let tx = match wallet::build_transfer(
            &self.accounts[from].key,
            self.chain_id,
            nonce,
            to_address,
            amount,
            wallet::DEFAULT_FEE,
        ) {
            Ok(tx) => tx,
            Err(e) => {
                debug!(error = %e, "compare: transfer not built");
                self.count("not built");
                return;
            }
        };
        let at: Secs = started.elapsed().as_secs_f64();
        match client.call("tx_submit", json!([hex::encode(tx.encode())])) {
            Ok(_) => {
                self.accounts[from].nonce = Some(nonce + 1);
                self.outcome.submitted.push(Submitted {
                    hash: tx.hash(),
                    at,
                });
            }
            Err(e) => {
                debug!(error = %e, nonce, "compare: transfer refused");
                // Whatever happened, ask the node for the nonce before the next one.
                self.accounts[from].nonce = None;
                self.count(error_kind(&e));
            }
        }
    }
}

/// The dev accounts that send and receive the transfers of a devnet of `nodes` nodes: those
/// that do not produce, when there are two of them, else all.
pub fn traders(nodes: usize) -> &'static [&'static str] {
    match DEV_ACCOUNTS.get(nodes..) {
        Some(bystanders) if bystanders.len() >= 2 => bystanders,
        _ => &DEV_ACCOUNTS,
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
mod tests {
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
    fn transfers_leave_the_producers_alone_when_two_others_remain() {
        let names_for = |nodes: usize| -> Vec<&'static str> {
            let clients: Vec<RpcClient> = (0..nodes)
                .map(|i| RpcClient::new(&format!("http://127.0.0.1:{}", 1 + i), NAP))
                .collect();
            let generator = LoadGenerator::new(&clients, ChainId(1337), 1.0, 1);
            generator
                .accounts
                .iter()
                .filter_map(|a| {
                    DEV_ACCOUNTS
                        .iter()
                        .copied()
                        .find(|n| chain::dev::dev_address(n) == Some(a.address))
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

    #[test]
    fn an_unreachable_node_is_counted_not_fatal() {
        // A port bound and released at once: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("an ephemeral port")
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let clients = [RpcClient::new(&url, Duration::from_millis(200))];
        let stop = AtomicBool::new(false);
        let generator = LoadGenerator::new(&clients, ChainId(1337), 50.0, 7);
        let outcome = std::thread::scope(|s| {
            let handle = s.spawn(|| generator.run(Instant::now(), &stop));
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Relaxed);
            handle.join().expect("the generator does not panic")
        });
        assert!(outcome.submitted.is_empty());
        assert!(
            outcome
                .errors
                .get("nonce lookup failed")
                .copied()
                .unwrap_or(0)
                > 0,
            "{:?}",
            outcome.errors
        );
    }
}
