//! The node's fault-injection hooks, which `toychain reliability` and `compare --fault`
//! drive: `admin_blockPeers` (behind `--rpc-admin`) cuts a node off and heals it,
//! `--clock-skew` shifts its clock, `--net-delay` handles what it receives late. Two-node
//! networks of real processes on 127.0.0.1; every wait is a condition with a deadline.
//! Also what the reliability suite found: a tx a node acknowledged survives that node
//! being killed before anyone else heard of it.

use crate::support::{BIN, easy_chain_spec, free_ports, rpc, stop_child, toychain, wait_for};
use chain::Clock as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long nodes get to connect, reconnect or converge on a busy CI machine.
const NET_DEADLINE: Duration = Duration::from_secs(60);

/// A node process with a temp data dir; stopped when dropped.
struct Node {
    child: Child,
    rpc: String,
    p2p: String,
    log: PathBuf,
}

impl Node {
    fn start(spec: &Path, dir: &Path, name: &str, args: &[&str]) -> Node {
        let data = dir.join(name);
        let (rpc_port, p2p_port) = (free_ports(1), free_ports(1));
        let p2p = format!("/ip4/127.0.0.1/tcp/{p2p_port}");
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["node", "--chain"])
            .arg(spec)
            .arg("--data-dir")
            .arg(&data)
            .args(["--rpc-addr", &format!("127.0.0.1:{rpc_port}")])
            .args(["--p2p-listen", &p2p, "--mining-threads", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("the node starts");
        let node = Node {
            child,
            rpc: format!("http://127.0.0.1:{rpc_port}"),
            p2p,
            log,
        };
        wait_for("the node's RPC", NET_DEADLINE, || {
            rpc(&node.rpc, "chain_info", json!([])).ok()
        });
        node
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        rpc(&self.rpc, method, params)
    }

    fn info(&self) -> Value {
        self.call("chain_info", json!([])).expect("chain_info")
    }

    fn height(&self) -> u64 {
        self.info()["height"].as_u64().expect("height")
    }

    fn peers(&self) -> u64 {
        self.call("node_status", json!([])).expect("node_status")["peers"]
            .as_u64()
            .expect("peers")
    }

    fn peer_id(&self) -> String {
        self.call("node_status", json!([])).expect("node_status")["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_owned()
    }

    fn hash_at(&self, height: u64) -> Option<String> {
        let block = self.call("chain_getBlock", json!([height])).ok()?;
        block["hash"].as_str().map(str::to_owned)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(20));
    }
}

/// The easy PoW test chain with 1 s blocks: two miners cut off from each other keep
/// mining, so they grow two branches (a PoA pair could not: Clique's signer limit stops a
/// lone signer of two after one block).
fn pow_spec(dir: &Path) -> PathBuf {
    let path = dir.join("pow.toml");
    std::fs::write(&path, easy_chain_spec(config::DEV_CHAIN_ID).to_toml()).expect("spec");
    path
}

fn error_code(answer: &Result<Value, String>) -> i64 {
    let text = answer.as_ref().expect_err("an error");
    serde_json::from_str::<Value>(text).expect("an error object")["code"]
        .as_i64()
        .expect("code")
}

#[test]
fn n2_block_then_heal_pow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = pow_spec(dir.path());
    let on_demand = |author| vec!["--author", author, "--on-demand", "--rpc-admin"];
    let a = Node::start(&spec, dir.path(), "a", &on_demand("alice"));
    let mut b_args = on_demand("bob");
    b_args.extend(["--bootnode", &a.p2p]);
    let b = Node::start(&spec, dir.path(), "b", &b_args);
    wait_for("a and b to connect", NET_DEADLINE, || {
        (a.peers() == 1 && b.peers() == 1).then_some(())
    });
    mine(&a, 1);
    wait_for("b to follow a", NET_DEADLINE, || {
        (b.height() == 1 && b.hash_at(1) == a.hash_at(1)).then_some(())
    });

    let blocked = a
        .call("admin_blockPeers", json!([[b.peer_id()]]))
        .expect("admin_blockPeers");
    assert_eq!(blocked, json!({"blocked": 1}));
    wait_for("both to lose their only peer", NET_DEADLINE, || {
        (a.peers() == 0 && b.peers() == 0).then_some(())
    });
    // Apart, each mines its own branch from block 1.
    mine(&a, 2);
    mine(&b, 3);
    assert_eq!(
        (a.height(), b.height()),
        (3, 4),
        "neither saw the other's blocks"
    );
    assert_ne!(a.hash_at(2), b.hash_at(2));
    // b keeps redialling a (its bootnode), and a keeps refusing it.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        (a.peers(), b.peers()),
        (0, 0),
        "a let b back in while blocked"
    );

    let healed = a
        .call("admin_blockPeers", json!([[]]))
        .expect("admin_blockPeers");
    assert_eq!(healed, json!({"blocked": 0}));
    wait_for("a and b to reconnect by themselves", NET_DEADLINE, || {
        (a.peers() == 1 && b.peers() == 1).then_some(())
    });
    wait_for("a to reorg to b's heavier branch", NET_DEADLINE, || {
        (a.height() == 4 && a.hash_at(4) == b.hash_at(4)).then_some(())
    });
    assert_eq!(a.info()["head_hash"], b.info()["head_hash"]);
}

/// Asks an `--on-demand` node for `n` blocks and waits until it has made them.
fn mine(node: &Node, n: u64) {
    let target = node.height() + n;
    node.call("dev_mine", json!([n])).expect("dev_mine");
    wait_for("the requested blocks", NET_DEADLINE, || {
        (node.height() >= target).then_some(())
    });
}

#[test]
fn admin_methods_are_unknown_without_rpc_admin_and_check_their_params() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = pow_spec(dir.path());
    let plain = Node::start(&spec, dir.path(), "plain", &[]);
    let answer = plain.call("admin_blockPeers", json!([[]]));
    assert_eq!(error_code(&answer), -32601, "{answer:?}");

    let admin = Node::start(&spec, dir.path(), "admin", &["--rpc-admin"]);
    let bad = admin.call("admin_blockPeers", json!([["12D3KooWnotapeer"]]));
    assert_eq!(error_code(&bad), -32602, "{bad:?}");
    assert!(
        bad.as_ref()
            .expect_err("error")
            .contains("12D3KooWnotapeer"),
        "{bad:?}"
    );
    let not_a_list = admin.call("admin_blockPeers", json!(["12D3KooW"]));
    assert_eq!(error_code(&not_a_list), -32602, "{not_a_list:?}");
    let own = admin.call("admin_blockPeers", json!([[admin.peer_id()]]));
    assert_eq!(error_code(&own), -32602, "{own:?}");
    let other = plain.peer_id();
    assert_eq!(
        admin.call("admin_blockPeers", json!([[other, other]])),
        Ok(json!({"blocked": 1})),
        "a peer listed twice is one peer"
    );
}

#[test]
fn fault_flags_out_of_range_are_usage_errors_naming_the_value() {
    for (flag, value, needle) in [
        ("--clock-skew", "86401", "--clock-skew 86401"),
        ("--clock-skew=-90000", "", "--clock-skew -90000"),
        ("--net-delay", "60001", "--net-delay 60001"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut args = vec![
            "node",
            "--dev",
            "--data-dir",
            data.to_str().expect("utf-8"),
            flag,
        ];
        if !value.is_empty() {
            args.push(value);
        }
        let out = toychain(&args);
        assert_eq!(out.code, 2, "{flag} {value}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        assert!(!data.join("db").exists(), "nothing was opened");
    }
}

#[test]
fn blocks_from_a_clock_an_hour_ahead_are_refused_as_future() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = pow_spec(dir.path());
    let honest = Node::start(&spec, dir.path(), "honest", &[]);
    let skewed = Node::start(
        &spec,
        dir.path(),
        "skewed",
        &[
            "--author",
            "alice",
            "--clock-skew",
            "3600",
            "--bootnode",
            &honest.p2p,
        ],
    );
    wait_for("the skewed node to mine three blocks", NET_DEADLINE, || {
        (skewed.height() >= 3 && honest.peers() == 1).then_some(())
    });
    let now = chain::SystemClock.now().0;
    let tip = skewed.call("chain_getBlock", json!([1])).expect("block 1");
    let stamped = tip["timestamp"].as_u64().expect("timestamp");
    assert!(
        stamped >= now + 3_000,
        "block 1 carries the skewed clock's time: {stamped} vs now {now}"
    );
    // Connected, told of a heavier chain, yet nothing of it is accepted.
    wait_for("the honest node to try and refuse it", NET_DEADLINE, || {
        honest
            .log_text()
            .contains("ahead of our clock")
            .then_some(())
    });
    assert_eq!(honest.height(), 0, "{}", honest.log_text());
}

#[test]
fn net_delay_holds_a_new_block_back_then_delivers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = pow_spec(dir.path());
    let producer = Node::start(
        &spec,
        dir.path(),
        "producer",
        &["--author", "alice", "--on-demand"],
    );
    let slow = Node::start(
        &spec,
        dir.path(),
        "slow",
        &["--net-delay", "4000", "--bootnode", &producer.p2p],
    );
    wait_for("the nodes to connect", NET_DEADLINE, || {
        (producer.peers() == 1 && slow.peers() == 1).then_some(())
    });
    for round in 1..=2u64 {
        mine(&producer, 1);
        // Gossiped at once, but handled 4 s after it arrived.
        assert_eq!(
            slow.height(),
            round - 1,
            "round {round}: the delayed node already has the block"
        );
        wait_for("the delayed node to catch up", NET_DEADLINE, || {
            (slow.height() == round).then_some(())
        });
        assert_eq!(slow.hash_at(round), producer.hash_at(round));
    }
}

#[test]
fn an_acknowledged_tx_survives_a_sigkill_of_the_node_that_took_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = pow_spec(dir.path());
    // No author and no peer: the tx can only wait in this node's mempool.
    let mut node = Node::start(&spec, dir.path(), "lone", &[]);
    let sent = crate::support::wallet(
        &node.rpc,
        &["send", "--from", "eve", "--to", "ferdie", "--amount", "1.5"],
    );
    sent.assert_ok("wallet send");
    let hash = sent
        .stdout
        .split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("a tx hash in {}", sent.stdout))
        .to_owned();
    assert_eq!(
        node.call("tx_get", json!([hash])).expect("tx_get")["status"],
        "pending"
    );

    let _ = node.child.kill();
    let _ = node.child.wait();
    let node = Node::start(&spec, dir.path(), "lone", &[]);
    assert_eq!(
        node.call("tx_get", json!([hash])).expect("tx_get")["status"],
        "pending",
        "{}",
        node.log_text()
    );
    assert!(
        node.log_text().contains("back in the mempool"),
        "{}",
        node.log_text()
    );
}

/// `dev_mine` is a dev chain's tool, as geth's `--dev` APIs are: a producing node on any
/// other chain refuses it, naming both chain ids, and makes no block.
#[test]
fn dev_mine_answers_only_on_a_dev_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.toml");
    std::fs::write(&path, easy_chain_spec(4242).to_toml()).expect("spec");
    let node = Node::start(
        &path,
        dir.path(),
        "other",
        &["--author", "alice", "--on-demand"],
    );
    let refused = node.call("dev_mine", json!([1]));
    assert_eq!(error_code(&refused), -32030, "{refused:?}");
    let text = refused.expect_err("refused");
    assert!(text.contains("4242") && text.contains("1337"), "{text}");
    assert_eq!(node.height(), 0);
}
