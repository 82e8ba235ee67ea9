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

fn start(root: &Path, name: &str, p2p_port: u16, extra: &[String]) -> anyhow::Result<NodeHandle> {
    let mut flags: Vec<String> = [
        "--chain",
        &root.join("spec.toml").display().to_string(),
        "--data-dir",
        &root.join(name).display().to_string(),
        "--rpc-addr",
        "127.0.0.1:0",
        "--p2p-listen",
        &format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
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
    let (_, p2p) = node::ports::free_port_bases(2)?;

    // A node without an author: it never produces, and it has no peer yet.
    let relay = start(root, "relay", p2p, &[])?;
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
        p2p + 1,
        &[
            "--author".into(),
            "alice".into(),
            "--bootnode".into(),
            format!("/ip4/127.0.0.1/tcp/{p2p}"),
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
