//! The bank workload: transfers among eight accounts, sent through the nodes' RPC while a
//! fault runs, with every hash a node acknowledged recorded for the "nothing lost, nothing
//! twice" check.
//!
//! The accounts are the four dev accounts a 4-node devnet does not author with (eve,
//! ferdie, grace, heidi) and four bank accounts funded at genesis (keys derived from
//! `toychain/reliability/bank/{k}`), so no transfer touches a producer's balance (a PoS
//! staker's coin age would reset). Account k always goes through node k mod N, so one
//! node's mempool holds a sender's whole nonce run; a node that is down, paused or cut
//! off refuses or times out, which is counted, and the sender's nonce is read again
//! before its next transfer.

use chain::dev::dev_key;
use chain::{Address, Amount, Canonical, ChainId, SecretKey};
use node::rpc_client::RpcClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::debug;

/// Dev accounts that take part (those node 0–3 do not author with).
const DEV_TRADERS: [&str; 4] = ["eve", "ferdie", "grace", "heidi"];
/// Bank accounts funded at genesis, besides the dev ones.
pub const BANK_ACCOUNTS: usize = 4;
/// What each bank account holds at genesis, in TOY.
pub const BANK_FUNDING_TOY: u64 = 1_000_000;
/// Largest transfer, in base units: small, so no account runs dry.
const MAX_AMOUNT: u64 = 100_000;
/// Longest sleep between checks of the stop flag.
const NAP: Duration = Duration::from_millis(50);

/// The key of bank account `k`.
pub fn bank_key(k: usize) -> SecretKey {
    SecretKey::from_seed(&format!("toychain/reliability/bank/{k}"))
}

/// The eight trading accounts' keys, dev accounts first.
pub fn trader_keys() -> Vec<SecretKey> {
    DEV_TRADERS
        .iter()
        .filter_map(|name| dev_key(name))
        .chain((0..BANK_ACCOUNTS).map(bank_key))
        .collect()
}

/// A transfer a node acknowledged (answered `tx_submit` with its hash).
#[derive(Debug, Clone)]
pub struct Acked {
    pub hash: String,
    pub node: usize,
    /// Seconds after the workload started.
    pub at: f64,
    pub sender: usize,
    pub nonce: u64,
}

/// What the workload did.
#[derive(Debug, Default)]
pub struct BankOutcome {
    pub acked: Vec<Acked>,
    pub refused: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Trader {
    key: SecretKey,
    address: Address,
    nonce: Option<u64>,
}

/// Sends `rate` transfers a second until `stop` is set, skipping nodes marked in `down`.
pub fn run(
    clients: &[RpcClient],
    down: &[AtomicBool],
    chain_id: ChainId,
    rate: f64,
    seed: u64,
    started: Instant,
    stop: &AtomicBool,
) -> BankOutcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut traders: Vec<Trader> = trader_keys()
        .into_iter()
        .map(|key| Trader {
            address: key.address(),
            key,
            nonce: None,
        })
        .collect();
    let mut outcome = BankOutcome::default();
    if clients.is_empty() || rate <= 0.0 || traders.len() < 2 {
        return outcome;
    }
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = Duration::from_secs_f64(sent as f64 / rate);
        let now = started.elapsed();
        if now < due {
            std::thread::sleep((due - now).min(NAP));
            continue;
        }
        sent += 1;
        let from = rng.random_range(0..traders.len());
        let to = (from + rng.random_range(1..traders.len())) % traders.len();
        let amount = Amount(rng.random_range(1..=MAX_AMOUNT));
        let node = from % clients.len();
        if down[node].load(Ordering::Relaxed) {
            *outcome.refused.entry("node down".into()).or_default() += 1;
            continue;
        }
        let client = &clients[node];
        let nonce = match traders[from].nonce {
            Some(n) => n,
            None => match pending_nonce(client, &traders[from].address) {
                Some(n) => n,
                None => {
                    *outcome.refused.entry("nonce lookup".into()).or_default() += 1;
                    continue;
                }
            },
        };
        let to_address = traders[to].address;
        let tx = match wallet::build_transfer(
            &traders[from].key,
            chain_id,
            nonce,
            to_address,
            amount,
            wallet::DEFAULT_FEE,
        ) {
            Ok(tx) => tx,
            Err(e) => {
                *outcome
                    .refused
                    .entry(format!("not built: {e}"))
                    .or_default() += 1;
                continue;
            }
        };
        match client.call("tx_submit", json!([hex::encode(tx.encode())])) {
            Ok(answer) => {
                traders[from].nonce = Some(nonce + 1);
                let hash = answer
                    .get("hash")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| tx.hash().to_hex());
                outcome.acked.push(Acked {
                    hash,
                    node,
                    at: started.elapsed().as_secs_f64(),
                    sender: from,
                    nonce,
                });
            }
            Err(e) => {
                debug!(error = %e, node, nonce, "reliability: transfer refused");
                traders[from].nonce = None;
                let kind = match e {
                    node::rpc_client::RpcCallError::Rpc { code, .. } => {
                        crate::compare::load::code_kind(code).to_owned()
                    }
                    node::rpc_client::RpcCallError::Unreachable { .. } => "unreachable".into(),
                    node::rpc_client::RpcCallError::BadAnswer { .. } => "bad answer".into(),
                };
                *outcome.refused.entry(kind).or_default() += 1;
            }
        }
    }
    outcome
}

fn pending_nonce(client: &RpcClient, address: &Address) -> Option<u64> {
    client
        .call("state_getAccount", json!([address.to_string()]))
        .ok()?
        .get("pending_nonce")
        .and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_distinct_traders_none_of_them_a_producer_of_four_nodes() {
        let keys = trader_keys();
        assert_eq!(keys.len(), 8);
        let mut addresses: Vec<Address> = keys.iter().map(SecretKey::address).collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), 8);
        for producer in config::dev_authorities(4) {
            assert!(!addresses.contains(&producer), "{producer} trades");
        }
    }
}
