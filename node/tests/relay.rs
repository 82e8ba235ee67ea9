//! Every pending transaction reaches a producer: a transaction acknowledged by a node that
//! cannot produce and has nobody to gossip to is announced to the first peer that connects,
//! and a producer that connects later includes it.

use anyhow::{Context, anyhow};
use chain::{Amount, Canonical, ChainId, Transaction, TxKind};
use config::{ChainSpec, EngineKind};
use node::testnet::{NodeHandle, launch};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// A node on `root`'s spec, listening on a port the system gives (see
/// [`NodeHandle::p2p_addr`]).
fn start(root: &Path, name: &str, extra: &[String]) -> anyhow::Result<NodeHandle> {
    let mut flags: Vec<String> = [
        "--chain",
        &root.join("spec.toml").display().to_string(),
        "--data-dir",
        &root.join(name).display().to_string(),
        "--rpc-addr",
        "127.0.0.1:0",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    flags.extend_from_slice(extra);
    launch(&flags)
}

fn status(node: &NodeHandle, hash: &str) -> anyhow::Result<String> {
    let answer = node
        .client()
        .call("tx_get", json!([hash]))
        .map_err(|e| anyhow!("tx_get: {e}"))?;
    answer["status"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("tx_get answered without a status: {answer}"))
}

#[test]
fn a_tx_sent_to_a_lone_non_producing_node_is_included_once_a_producer_connects()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let alice = chain::dev::dev_address("alice").context("dev account")?;
    let mut spec = ChainSpec::dev_with(EngineKind::Poa, &[alice]);
    spec.set_block_time(1)?;
    spec.genesis.timestamp = chain::Clock::now(&chain::SystemClock).0.saturating_sub(1);
    std::fs::write(root.join("spec.toml"), spec.to_toml())?;
    // A node without an author: it never produces, and it has no peer yet.
    let relay = start(root, "relay", &[])?;
    let tx = Transaction::signed(
        &chain::dev::dev_key("bob").context("dev account")?,
        ChainId(spec.chain_id),
        0,
        Amount::from_toy(1).context("fee fits")?,
        TxKind::Transfer {
            to: chain::dev::dev_address("carol").context("dev account")?,
            amount: Amount::from_toy(5).context("amount fits")?,
        },
    );
    let answer = relay
        .client()
        .call("tx_submit", json!([hex::encode(tx.encode())]))
        .map_err(|e| anyhow!("tx_submit: {e}"))?;
    let hash = tx.hash().to_hex();
    assert_eq!(answer["hash"].as_str(), Some(hash.as_str()));
    // Its gossip found nobody; give it time to be lost if it were only gossiped once.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(&relay, &hash)?, "pending");

    // The only producer connects afterwards: the pending tx is announced to it.
    let producer = start(
        root,
        "producer",
        &[
            "--author".into(),
            "alice".into(),
            "--bootnode".into(),
            relay.p2p_addr().to_string(),
        ],
    )?;
    let until = Instant::now() + DEADLINE;
    loop {
        let (on_producer, on_relay) = (status(&producer, &hash)?, status(&relay, &hash)?);
        if on_producer == "included" && on_relay == "included" {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(anyhow!(
                "the tx was not included within {} s: {on_producer} on the producer, \
                 {on_relay} on the node it was sent to",
                DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 19: a JSON-RPC batch of `tx_submit` calls is admitted in one trip to the chain
/// actor, each call still answered on its own and in order: a bad call in the middle gets
/// its own error and does not stop the calls after it, a notification gets no answer, and
/// another method splits the run.
#[test]
fn a_batch_of_tx_submits_is_admitted_in_one_trip_with_an_answer_per_call() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let alice = chain::dev::dev_address("alice").context("dev account")?;
    let spec = ChainSpec::dev_with(EngineKind::Poa, &[alice]);
    std::fs::write(root.join("spec.toml"), spec.to_toml())?;
    // No author: nothing is mined while the batch is checked.
    let node = start(root, "node", &[])?;
    let bob = chain::dev::dev_key("bob").context("dev account")?;
    let carol = chain::dev::dev_address("carol").context("dev account")?;
    let transfer = |nonce: u64| {
        Transaction::signed(
            &bob,
            ChainId(spec.chain_id),
            nonce,
            Amount::from_base_units(100_000),
            TxKind::Transfer {
                to: carol,
                amount: Amount::from_base_units(1),
            },
        )
    };
    let call = |id: u64, tx: &Transaction| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tx_submit",
               "params": [hex::encode(tx.encode())]})
    };
    let mut calls: Vec<serde_json::Value> = (0..20).map(|n| call(n, &transfer(n))).collect();
    // Call 20 repeats the transaction with nonce 5 (refused on its own); 21 is a notification; 22 is another
    // method; 23 is not a transaction; 24 goes on with nonce 21 after 20 of 21.
    calls.push(call(20, &transfer(5)));
    calls.push(json!({"jsonrpc": "2.0", "method": "tx_submit",
                      "params": [hex::encode(transfer(20).encode())]}));
    calls.push(json!({"jsonrpc": "2.0", "id": 22, "method": "chain_info", "params": []}));
    calls.push(json!({"jsonrpc": "2.0", "id": 23, "method": "tx_submit", "params": ["zz"]}));
    calls.push(call(24, &transfer(21)));

    let client = node.client();
    let metric = |name: &str| -> anyhow::Result<u64> {
        client
            .metric(name)
            .map(|v| v as u64)
            .ok_or_else(|| anyhow!("no {name} in /metrics"))
    };
    let batches_before = metric("toychain_rpc_tx_batches_total")?;
    let hits_before = metric("toychain_signature_cache_hits_total")?;
    let answers = node.client().batch(serde_json::Value::Array(calls))?;
    let answers = answers.as_array().context("an array of answers")?;
    let ids: Vec<u64> = answers.iter().filter_map(|a| a["id"].as_u64()).collect();
    let expected: Vec<u64> = (0..21).chain([22, 23, 24]).collect();
    assert_eq!(ids, expected, "one answer per call with an id, in order");
    for answer in &answers[..20] {
        assert!(answer["result"]["hash"].is_string(), "{answer}");
    }
    assert!(answers[20]["error"]["code"].is_i64(), "{}", answers[20]);
    assert!(answers[21]["result"]["height"].is_u64(), "{}", answers[21]);
    assert!(answers[22]["error"].is_object(), "{}", answers[22]);
    assert!(answers[23]["result"]["hash"].is_string(), "{}", answers[23]);
    // Two runs (before and after chain_info; the malformed call goes on its own): two
    // trips to the actor for 23 admitted transactions.
    assert_eq!(metric("toychain_rpc_tx_batches_total")? - batches_before, 2);
    // Each signature was verified before the chain actor, which then found it in the
    // cache: a hit per admitted transaction (the repeated one is known before its check).
    let hits = metric("toychain_signature_cache_hits_total")? - hits_before;
    assert!(hits >= 22, "{hits} cache hits for 22 admitted transactions");
    let account = node.client().call(
        "state_getAccount",
        json!([chain::dev::dev_address("bob").context("bob")?.to_string()]),
    )?;
    assert_eq!(account["pending_nonce"], 22, "{account}");
    Ok(())
}
