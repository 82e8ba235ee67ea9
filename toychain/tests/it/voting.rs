//! The voting engines on real node processes on 127.0.0.1: PBFT validators and Raft
//! servers decide every block by votes over the engine gossip topic, every node finalizes
//! what it imports, a crashed validator or leader does not stop the others, a node that
//! joins later syncs certified blocks and checks each certificate, and the devnet launcher
//! runs both engines. Every wait is a condition polled against a deadline; nodes are killed
//! when their test ends, passing or not.

use crate::support::{
    Devnet, connect_fake_peer, free_ports, metrics_counter, rpc, runtime, stop_child, wait_for,
};
use config::{ChainSpec, EngineSpec};
use miner::EngineParams;
use miner::pbft::PbftParams;
use miner::raft::RaftParams;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_toychain");
/// How long a condition may take on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// A node process, killed when dropped.
struct VotingNode {
    child: Child,
    rpc: String,
    p2p: String,
    log: PathBuf,
}

impl Drop for VotingNode {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

impl VotingNode {
    /// Starts `toychain node` on `spec` in `data_dir`, signing as the dev account `author`
    /// (none: a follower), and waits for its RPC.
    fn start(spec: &Path, data_dir: &Path, author: Option<&str>, bootnodes: &[String]) -> Self {
        let rpc_port = free_ports(1);
        let p2p_port = free_ports(1);
        let rpc_addr = format!("127.0.0.1:{rpc_port}");
        let p2p = format!("/ip4/127.0.0.1/tcp/{p2p_port}");
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--chain"])
            .arg(spec)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--rpc-addr", &rpc_addr, "--p2p-listen", &p2p]);
        if let Some(author) = author {
            cmd.args(["--author", author]);
        }
        for b in bootnodes {
            cmd.args(["--bootnode", b]);
        }
        let log = data_dir.with_extension("log");
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the node starts");
        let node = VotingNode {
            child,
            rpc: format!("http://{rpc_addr}"),
            p2p,
            log,
        };
        wait_for("the node's RPC", DEADLINE, || {
            rpc(&node.rpc, "chain_info", json!([])).ok()
        });
        node
    }

    fn info(&self) -> Value {
        rpc(&self.rpc, "chain_info", json!([])).unwrap_or(Value::Null)
    }

    fn height(&self) -> u64 {
        self.info()["height"].as_u64().unwrap_or(0)
    }

    /// The hash of this node's block at `height`, once it has one.
    fn hash_at(&self, height: u64) -> Option<String> {
        let block = rpc(&self.rpc, "chain_getBlock", json!([height])).ok()?;
        block["hash"].as_str().map(str::to_owned)
    }

    /// The voting machine's status pairs from `node_status`.
    fn voting(&self) -> Value {
        rpc(&self.rpc, "node_status", json!([])).map_or(Value::Null, |s| s["voting"].clone())
    }

    /// Its `/p2p/` address, for another node's `--bootnode`.
    fn peer_addr(&self) -> String {
        let status = rpc(&self.rpc, "node_status", json!([])).expect("node_status");
        format!(
            "{}/p2p/{}",
            self.p2p,
            status["peer_id"].as_str().expect("a peer id")
        )
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// PBFT among the first `n` dev accounts, a block a second.
fn pbft(n: usize) -> EngineSpec {
    let mut p = <PbftParams as EngineParams>::devnet(&config::dev_authorities(n));
    p.set_block_time(1);
    // A crashed primary costs one short view, not the dev default's 4 s.
    p.view_timeout_ms = 1_500;
    p.max_view_timeout_ms = 6_000;
    EngineSpec::Pbft(p)
}

/// Raft among the first `n` dev accounts, a block a second.
fn raft(n: usize) -> EngineSpec {
    let mut p = <RaftParams as EngineParams>::devnet(&config::dev_authorities(n));
    p.set_block_time(1);
    // The paper's 150–300 ms assumes an idle machine; a CI machine running a dozen nodes on
    // two cores can starve a follower that long, and then a healthy leader is voted out.
    // The protocol is the same with longer timeouts.
    p.heartbeat_ms = 100;
    p.election_timeout_min_ms = 600;
    p.election_timeout_max_ms = 1_200;
    EngineSpec::Raft(p)
}

/// The dev chain spec of `engine` (its voters are funded dev accounts).
fn voting_spec(dir: &Path, engine: EngineSpec, chain_id: u64) -> PathBuf {
    let mut spec = ChainSpec::dev(engine.kind());
    spec.chain_id = chain_id;
    spec.engine = engine;
    let path = dir.join(format!("spec-{chain_id}.toml"));
    std::fs::write(&path, spec.to_toml()).expect("write spec");
    path
}

/// Starts one node per voter (dev accounts in order), each dialling every node before it,
/// so the nodes form a full mesh and any one of them may be killed.
fn start_voters(dir: &Path, spec: &Path, n: usize) -> Vec<VotingNode> {
    let mut nodes: Vec<VotingNode> = Vec::new();
    let mut boot = Vec::new();
    for (i, name) in chain::dev::DEV_ACCOUNTS.iter().take(n).enumerate() {
        let node = VotingNode::start(spec, &dir.join(format!("node{i}")), Some(name), &boot);
        boot.push(node.peer_addr());
        nodes.push(node);
    }
    nodes
}

/// Waits until every node is at `height` or above with the same block there, and returns
/// that block's hash.
fn agree_at(nodes: &[&VotingNode], height: u64, what: &str) -> String {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, DEADLINE, || {
            let hashes: Vec<String> = nodes
                .iter()
                .map(|n| n.hash_at(height))
                .collect::<Option<_>>()?;
            hashes
                .iter()
                .all(|h| *h == hashes[0])
                .then(|| hashes[0].clone())
        })
    }));
    match result {
        Ok(hash) => hash,
        Err(panic) => {
            for (i, node) in nodes.iter().enumerate() {
                eprintln!(
                    "node {i}: height {} voting {}\n{}",
                    node.height(),
                    node.voting(),
                    node.log_tail()
                );
            }
            std::panic::resume_unwind(panic)
        }
    }
}

/// Every node's finalized height equals its head: every stored block was decided.
fn assert_finalized_is_head(nodes: &[&VotingNode]) {
    for node in nodes {
        let info = node.info();
        assert_eq!(
            info["finalized_height"], info["height"],
            "a voting chain is final up to its head: {info}"
        );
        assert_eq!(info["finalized_hash"], info["head_hash"], "{info}");
    }
}

#[test]
fn pbft_n4_commits_and_every_node_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = voting_spec(dir.path(), pbft(4), 7101);
    let nodes = start_voters(dir.path(), &spec, 4);
    let all: Vec<&VotingNode> = nodes.iter().collect();
    agree_at(&all, 4, "four validators to commit height 4 alike");
    assert_finalized_is_head(&all);
    let status = nodes[1].voting();
    assert_eq!(status["engine"], json!("pbft"), "{status}");
    assert_eq!(status["quorum"], json!("3"), "{status}");
    let refused = rpc(&nodes[0].rpc, "dev_mine", json!([1])).expect_err("votes decide blocks");
    assert!(refused.contains("pbft"), "{refused}");
    let explain = rpc(&nodes[2].rpc, "engine_explain", json!([3])).expect("engine_explain");
    let signers = explain["commit_signers"].as_str().expect("commit signers");
    assert!(
        signers.split(',').count() >= 3,
        "a commit certificate holds 2f+1 = 3 signatures: {explain}"
    );
}

#[test]
fn pbft_n4f1_crash_one_keeps_committing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = voting_spec(dir.path(), pbft(4), 7102);
    let mut nodes = start_voters(dir.path(), &spec, 4);
    let all: Vec<&VotingNode> = nodes.iter().collect();
    agree_at(&all, 2, "four validators at height 2");
    // Crash the current primary, so the others must change view to go on.
    let primary = nodes[0].voting()["primary"].as_str().map(str::to_owned);
    let victim = (0..4)
        .find(|&i| {
            let address = chain::dev::dev_address(chain::dev::DEV_ACCOUNTS[i])
                .expect("dev account")
                .to_string();
            Some(address) == primary
        })
        .unwrap_or(3);
    drop(nodes.remove(victim));
    let rest: Vec<&VotingNode> = nodes.iter().collect();
    let top = rest.iter().map(|n| n.height()).max().unwrap_or(0);
    agree_at(
        &rest,
        top + 3,
        "three validators to commit three more heights",
    );
    assert_finalized_is_head(&rest);
}

#[test]
fn raft_n3_leader_crash_reelects_and_keeps_committing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = voting_spec(dir.path(), raft(3), 7103);
    let mut nodes = start_voters(dir.path(), &spec, 3);
    let all: Vec<&VotingNode> = nodes.iter().collect();
    agree_at(&all, 2, "three servers at height 2");
    assert_finalized_is_head(&all);
    let leader = wait_for("a leader", DEADLINE, || {
        nodes
            .iter()
            .position(|n| n.voting()["role"] == json!("leader"))
    });
    let old_term: u64 = nodes[leader].voting()["term"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a term");
    drop(nodes.remove(leader));
    let rest: Vec<&VotingNode> = nodes.iter().collect();
    let top = rest.iter().map(|n| n.height()).max().unwrap_or(0);
    agree_at(&rest, top + 3, "two servers to commit three more blocks");
    assert_finalized_is_head(&rest);
    let new_leader = rest
        .iter()
        .map(|n| n.voting())
        .find(|s| s["role"] == json!("leader"))
        .expect("one of the two leads");
    let new_term: u64 = new_leader["term"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a term");
    assert!(
        new_term > old_term,
        "a new term: {old_term} -> {new_leader}"
    );
}

#[test]
fn late_joiner_verifies_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = voting_spec(dir.path(), pbft(4), 7104);
    let nodes = start_voters(dir.path(), &spec, 4);
    let all: Vec<&VotingNode> = nodes.iter().collect();
    agree_at(&all, 5, "four validators at height 5");
    // A fifth node without a key joins late: it can only sync certified blocks.
    let boot = vec![nodes[1].peer_addr()];
    let late = VotingNode::start(&spec, &dir.path().join("late"), None, &boot);
    let hash = agree_at(&[&nodes[0], &late], 5, "the late joiner to hold height 5");
    assert!(!hash.is_empty());
    assert_finalized_is_head(&[&late]);
    assert_eq!(
        late.voting()["role"],
        json!("follower"),
        "{}",
        late.voting()
    );
    for height in 1..=5 {
        let explain = rpc(&late.rpc, "engine_explain", json!([height])).expect("explain");
        let signers = explain["commit_signers"].as_str().unwrap_or_default();
        assert!(
            signers.split(',').filter(|s| !s.is_empty()).count() >= 3,
            "the late joiner stored the certificate of height {height}: {explain}"
        );
    }
}

#[test]
fn devnet_runs_pbft_and_raft() {
    for engine in ["pbft", "raft"] {
        devnet_finalizes_height_3(engine);
    }
}

/// ZAB as a devnet of real processes: elected, its epoch agreed, blocks final.
#[test]
fn devnet_runs_zab() {
    devnet_finalizes_height_3("zab");
}

/// A 2-node devnet of `engine` finalizes height 3 on both nodes.
fn devnet_finalizes_height_3(engine: &str) {
    let devnet = Devnet::start_engine(2, engine);
    wait_for(
        &format!("a 2-node {engine} devnet to finalize height 3"),
        DEADLINE,
        || {
            devnet
                .rpc
                .iter()
                .all(|url| {
                    rpc(url, "chain_info", json!([]))
                        .ok()
                        .and_then(|i| i["finalized_height"].as_u64())
                        .is_some_and(|f| f >= 3)
                })
                .then_some(())
        },
    );
    let info = rpc(&devnet.rpc[0], "chain_info", json!([])).expect("chain_info");
    assert_eq!(info["engine"], json!(engine), "{info}");
}

/// A lone validator commits alone (N = 1, quorum 1). A peer that gossips a plain block
/// (no certificate) or a consensus message that does not decode is refused and scored for
/// it, and the plain block is not stored.
#[test]
fn plain_blocks_and_malformed_votes_are_refused_on_a_voting_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = voting_spec(dir.path(), pbft(1), 7105);
    let nodes = start_voters(dir.path(), &spec, 1);
    let node = &nodes[0];
    agree_at(&[node], 1, "a lone validator to commit height 1");
    let genesis = node.hash_at(0).expect("genesis");
    let plain = chain::Block {
        header: chain::Header {
            version: chain::block::HEADER_VERSION,
            parent: chain::BlockHash::from_hex(&genesis).expect("hex"),
            height: chain::Height(1),
            timestamp: chain::Timestamp(2_000_000_000),
            tx_root: chain::Hash256::ZERO,
            state_root: chain::Hash256::ZERO,
            producer: chain::dev::dev_address("alice").expect("dev account"),
            engine: chain::EngineFields::default(),
        },
        txs: Vec::new(),
    };
    let plain_hash = plain.hash().to_hex();
    let plain_bytes = chain::Canonical::encode(&plain);
    runtime().block_on(async {
        let client = connect_fake_peer(&node.rpc).await;
        let until = std::time::Instant::now() + DEADLINE;
        let mut sent = [false, false];
        while !sent.iter().all(|s| *s) {
            assert!(std::time::Instant::now() < until, "could not publish");
            if !sent[0] {
                sent[0] = client
                    .publish(net::Topic::Block, plain_bytes.clone())
                    .await
                    .is_ok();
            }
            if !sent[1] {
                // A sequence number, then bytes that are no consensus message.
                let mut junk = 9u64.to_le_bytes().to_vec();
                junk.extend_from_slice(&[0xff; 40]);
                sent[1] = client.publish(net::Topic::Engine, junk).await.is_ok();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    wait_for("both refusals counted", DEADLINE, || {
        (metrics_counter(&node.rpc, "toychain_gossip_rejected_total") >= 2).then_some(())
    });
    let top = node.height();
    agree_at(&[node], top + 1, "the validator to go on committing");
    assert_ne!(
        node.hash_at(1),
        Some(plain_hash),
        "the plain block is not stored"
    );
    assert_finalized_is_head(&[node]);
}

/// The validator set changes by on-chain votes of 2f + 1 validators, cast with the wallet
/// (`propose-authority`, as PoA's authorities do), and takes effect at the next height:
/// two votes of four validators are not enough, a non-validator's vote is refused before
/// it is sent, the third vote makes eve a validator, the quorum of five is 4, and the four
/// running validators go on committing without her.
#[test]
fn pbft_validators_vote_a_fifth_in_through_the_wallet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = voting_spec(dir.path(), pbft(4), 7106);
    let nodes = start_voters(dir.path(), &spec, 4);
    let all: Vec<&VotingNode> = nodes.iter().collect();
    agree_at(&all, 2, "four validators at height 2");
    let url = &nodes[0].rpc;
    let validator = |name: &str| {
        let address = chain::dev::dev_address(name).expect("dev").to_string();
        rpc(url, "state_getAccount", json!([address])).expect("account")["engine"]["validator"]
            .clone()
    };
    for from in ["alice", "bob"] {
        crate::support::wallet(url, &["propose-authority", "--from", from, "eve", "--wait"])
            .assert_ok("a vote");
    }
    assert_eq!(validator("eve"), json!("false"), "2 of 4 is no 2f + 1");
    let refused = crate::support::wallet(url, &["propose-authority", "--from", "heidi", "eve"]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(!refused.stderr.contains("panicked"), "{}", refused.stderr);
    crate::support::wallet(
        url,
        &["propose-authority", "--from", "carol", "eve", "--wait"],
    )
    .assert_ok("the third vote");
    wait_for("eve to be a validator", DEADLINE, || {
        (validator("eve") == json!("true")).then_some(())
    });
    wait_for("the quorum of five validators", DEADLINE, || {
        (nodes[1].voting()["quorum"] == json!("4")).then_some(())
    });
    let top = nodes[0].height();
    agree_at(&all, top + 2, "four of five validators commit on");
}
