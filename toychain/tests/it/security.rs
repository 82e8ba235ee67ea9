//! Security defaults, one test each: RPC stays on loopback unless told otherwise, request
//! bodies and batches are bounded, and a producing node's key never reaches its logs (the
//! keystore's own "no plain key on disk" test is in `wallet_keys.rs`).

use crate::support::{BIN, LoneNode, easy_spec, free_ports, rpc, stop_child, toychain, wait_for};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn rpc_on_a_non_loopback_address_needs_rpc_external() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = toychain(&[
        "node",
        "--dev",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--rpc-addr",
        "0.0.0.0:18545",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("0.0.0.0:18545") && out.stderr.contains("--rpc-external"),
        "{}",
        out.stderr
    );
    assert!(!data.join("db").exists(), "nothing was opened");
}

#[test]
fn an_oversize_batch_is_refused_as_a_whole() {
    let node = LoneNode::start(&easy_spec(config::DEV_CHAIN_ID));
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "chain_info", "params": []});
    let batch = serde_json::Value::Array(vec![call.clone(); 1_001]);
    let mut response = ureq::post(&node.rpc).send_json(&batch).expect("answer");
    let answer: serde_json::Value = response.body_mut().read_json().expect("json");
    assert_eq!(answer["error"]["code"], json!(-32600), "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1001") && m.contains("1000")),
        "{answer}"
    );
    let ok = serde_json::Value::Array(vec![call; 1_000]);
    let mut response = ureq::post(&node.rpc).send_json(&ok).expect("answer");
    let answers: serde_json::Value = response.body_mut().read_json().expect("json");
    assert_eq!(answers.as_array().map(Vec::len), Some(1_000));
}

#[test]
fn a_producing_node_never_logs_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, easy_spec(config::DEV_CHAIN_ID)).expect("spec");
    let log_path = dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let rpc_port = free_ports(1);
    let url = format!("http://127.0.0.1:{rpc_port}");
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
        .args(["--author", "alice", "--mining-threads", "1"])
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the node starts");
    wait_for(
        "three blocks at trace level",
        Duration::from_secs(90),
        || {
            let info = rpc(&url, "chain_info", json!([])).ok()?;
            (info["height"].as_u64()? >= 3).then_some(())
        },
    );
    stop_child(&mut child, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(text.contains("produced block"), "the log is the node's");
    let secret = chain::dev::dev_key("alice").expect("dev").to_bytes();
    for form in [hex::encode(secret), hex::encode_upper(secret)] {
        assert!(!text.contains(&form), "alice's key in the log");
    }
    let bytes = std::fs::read(&log_path).expect("log");
    assert!(
        !bytes.windows(32).any(|w| w == secret),
        "raw key bytes in the log"
    );
    for entry in std::fs::read_dir(dir.path().join("data")).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let content = std::fs::read(&path).expect("file");
            assert!(
                !content.windows(32).any(|w| w == secret),
                "raw key bytes in {}",
                path.display()
            );
        }
    }
}
