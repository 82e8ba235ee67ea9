//! Load: 10,000 transfers submitted as fast as one client can to one producing node whose
//! mempool holds at most 250. The pool never exceeds its bound, the RPC keeps answering
//! (its slowest answer is printed, not asserted: tests do not judge wall-clock time), and
//! every transfer the node accepted ends up in a block — each sender's nonce on chain equals
//! its accepted count.

use crate::support::{BIN, easy_spec, free_ports, rpc, stop_child, wait_for};
use chain::dev::dev_key;
use chain::{Amount, Canonical, Transaction, TxKind};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TXS: usize = 10_000;
const POOL: u64 = 250;
const SENDERS: [&str; 7] = ["bob", "carol", "dave", "eve", "ferdie", "grace", "heidi"];

#[test]
fn ten_thousand_transfers_keep_the_pool_bounded_and_all_accepted_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, easy_spec(6_200)).expect("spec");
    let rpc_port = free_ports(1);
    let url = format!("http://127.0.0.1:{rpc_port}");
    let log = std::fs::File::create(dir.path().join("node.log")).expect("log");
    let mut child = Command::new(BIN)
        .args(["node", "--chain"])
        .arg(&spec)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--rpc-addr", &format!("127.0.0.1:{rpc_port}")])
        .args([
            "--p2p-listen",
            &format!("/ip4/127.0.0.1/tcp/{}", free_ports(1)),
        ])
        .args(["--author", "alice", "--mining-threads", "1", "--on-demand"])
        .args(["--mempool-txs", &POOL.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the node starts");
    wait_for("the node's RPC", Duration::from_secs(60), || {
        rpc(&url, "chain_info", json!([])).ok()
    });

    // Signed up front, so the loop below only submits.
    let keys: Vec<_> = SENDERS.iter().map(|n| dev_key(n).expect("dev")).collect();
    let to = dev_key("alice").expect("dev").address();
    let per_sender = TXS / SENDERS.len() + 1;
    let signed: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            (0..per_sender as u64)
                .map(|nonce| {
                    hex::encode(
                        Transaction::signed(
                            key,
                            chain::ChainId(6_200),
                            nonce,
                            Amount::from_base_units(1_000),
                            TxKind::Transfer {
                                to,
                                amount: Amount::from_base_units(1),
                            },
                        )
                        .encode(),
                    )
                })
                .collect()
        })
        .collect();

    // A watcher: the pool's size on every poll, and the slowest chain_info answer.
    let stop = Arc::new(AtomicBool::new(false));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, slowest_ms, url) = (stop.clone(), slowest_ms.clone(), url.clone());
        std::thread::spawn(move || {
            let mut polls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                rpc(&url, "chain_info", json!([])).expect("RPC answers under load");
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                slowest_ms.fetch_max(ms, Ordering::Relaxed);
                let size = rpc(&url, "node_status", json!([])).expect("status")["mempool_size"]
                    .as_u64()
                    .expect("mempool size");
                assert!(
                    size <= POOL,
                    "the pool holds {size}, more than its bound {POOL}"
                );
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            polls
        })
    };

    // JSON-RPC batches of 63 calls (9 consecutive nonces of each sender) over one kept-alive
    // connection: as fast as one client can go. Calls in a batch run in order, so after a
    // sender's first refusal (a full pool) its later nonces are refused as too high; the
    // next batch starts again from its first unaccepted nonce.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let started = Instant::now();
    let mut accepted = vec![0u64; SENDERS.len()];
    let mut refused = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    let per_batch = 9usize;
    while accepted.iter().sum::<u64>() < TXS as u64 {
        assert!(Instant::now() < deadline, "the pool never drained");
        let mut calls = Vec::new();
        let mut owners = Vec::new();
        for (s, txs) in signed.iter().enumerate() {
            let first = usize::try_from(accepted[s]).expect("fits");
            for tx in txs.iter().skip(first).take(per_batch) {
                calls.push(json!({
                    "jsonrpc": "2.0",
                    "id": calls.len(),
                    "method": "tx_submit",
                    "params": [tx],
                }));
                owners.push(s);
            }
        }
        let mut response = agent
            .post(&url)
            .send_json(serde_json::Value::Array(calls))
            .expect("the node answers the batch");
        let answers: Vec<serde_json::Value> = response.body_mut().read_json().expect("json");
        assert_eq!(answers.len(), owners.len());
        let mut blocked = vec![false; SENDERS.len()];
        let mut full = false;
        for (answer, &s) in answers.iter().zip(&owners) {
            match answer.get("error") {
                None if !blocked[s] => accepted[s] += 1,
                None => panic!("a nonce after a refused one was accepted: {answer}"),
                Some(error) => {
                    let code = error["code"].as_i64().expect("code");
                    if blocked[s] {
                        assert_eq!(code, -32011, "after a refusal only nonce gaps: {error}");
                    } else {
                        assert_eq!(code, -32013, "only a full pool may refuse: {error}");
                        refused += 1;
                        blocked[s] = true;
                        full = true;
                    }
                }
            }
        }
        if full {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let submit_secs = started.elapsed().as_secs_f64();

    for (name, count) in SENDERS.iter().zip(&accepted) {
        let address = dev_key(name).expect("dev").address().to_string();
        wait_for(
            "every accepted transfer in a block",
            Duration::from_secs(300),
            || {
                let account = rpc(&url, "state_getAccount", json!([address])).ok()?;
                (account["nonce"].as_u64()? == *count).then_some(())
            },
        );
    }
    stop.store(true, Ordering::Relaxed);
    let polls = watcher.join().expect("the watcher's checks held");
    eprintln!(
        "load: {TXS} transfers accepted in {submit_secs:.1} s ({:.0}/s), {refused} refusals while \
         the pool was full, {polls} polls, slowest chain_info {} ms",
        TXS as f64 / submit_secs,
        slowest_ms.load(Ordering::Relaxed)
    );
    assert!(polls > 0);
    assert!(accepted.iter().sum::<u64>() >= TXS as u64);
    stop_child(&mut child, Duration::from_secs(20));
}
