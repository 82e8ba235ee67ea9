//! The launcher's lifecycle: its nodes never outlive it, a second run resumes the chain,
//! `--fresh` starts over, and bad flags are usage errors.

use crate::support::{
    Devnet, children_of, free_ports, process_is_gone, rpc, toychain, wait_for, wallet,
    write_easy_spec,
};
use serde_json::json;
use std::time::Duration;

#[test]
fn no_child_left_after_launcher_is_killed() {
    let mut devnet = Devnet::start(2);
    let launcher = devnet.launcher.id();
    let nodes = wait_for(
        "the launcher's two node processes",
        Duration::from_secs(10),
        || {
            let children = children_of(launcher);
            (children.len() == 2).then_some(children)
        },
    );

    devnet.launcher.kill().expect("SIGKILL the launcher");
    devnet.launcher.wait().expect("reap the launcher");

    wait_for(
        "every node process to exit after its launcher was killed",
        Duration::from_secs(20),
        || nodes.iter().all(|pid| process_is_gone(*pid)).then_some(()),
    );
    assert!(
        rpc(&devnet.rpc[0], "chain_info", json!([])).is_err(),
        "node 0's RPC is gone too"
    );
}

#[test]
fn second_run_resumes_the_chain_unless_fresh() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write_easy_spec(tmp.path());
    let (rpc_port, p2p_port) = (free_ports(1), free_ports(1));

    // First run: one transaction makes block 1, shown as a live line.
    let mut first = Devnet::launch(tmp.path(), 1, rpc_port, p2p_port, &[]);
    first.wait_ready();
    let url = first.rpc[0].clone();
    wallet(
        &url,
        &[
            "send", "--from", "carol", "--to", "dave", "--amount", "1", "--wait",
        ],
    )
    .assert_ok("send");
    wait_for("a live line for block 1", Duration::from_secs(10), || {
        first
            .stdout()
            .lines()
            .any(|l| l.starts_with("#1 ") && l.contains("by alice"))
            .then_some(())
    });
    let head = rpc(&url, "chain_info", json!([])).expect("chain_info")["head_hash"].clone();
    let status = first.stop();
    assert!(
        status.success(),
        "Ctrl-C ends the launcher cleanly: {status}\n{}",
        first.stderr()
    );
    let out = first.stdout();
    assert!(
        out.contains("summary:") && out.contains("alice 1 (100%)"),
        "{out}"
    );
    assert!(out.contains("node 0 (alice): stopped cleanly"), "{out}");
    drop(first);

    // Second run: the same chain, same head.
    let mut second = Devnet::launch(tmp.path(), 1, rpc_port, p2p_port, &[]);
    second.wait_ready();
    assert!(
        second.stdout().contains("resumed at height 1"),
        "{}",
        second.stdout()
    );
    let info = rpc(&url, "chain_info", json!([])).expect("chain_info");
    assert_eq!(info["head_hash"], head, "the chain continues");
    assert!(second.stop().success());
    drop(second);

    // A block time other than the stored chain's is refused rather than silently ignored.
    let refused = toychain(&[
        "devnet",
        "--dir",
        tmp.path().to_str().expect("UTF-8 path"),
        "--block-time",
        "7",
        "--rpc-port",
        &rpc_port.to_string(),
        "--p2p-port",
        &p2p_port.to_string(),
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--fresh"), "{}", refused.stderr);

    // --fresh: a new chain at height 0.
    let mut third = Devnet::launch(tmp.path(), 1, rpc_port, p2p_port, &["--fresh"]);
    third.wait_ready();
    assert!(third.stdout().contains("new chain"), "{}", third.stdout());
    let info = rpc(&url, "chain_info", json!([])).expect("chain_info");
    assert_eq!(info["height"], 0, "{info}");
    assert!(third.stop().success());
}

#[test]
fn bad_devnet_flags_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("UTF-8 path");
    let cases: [(&[&str], &str); 3] = [
        (
            &["devnet", "--dir", dir, "--engine", "proof-of-vibes"],
            "unknown engine",
        ),
        (&["devnet", "--dir", dir, "--nodes", "9"], "9"),
        (
            &[
                "devnet",
                "--dir",
                dir,
                "--rpc-port",
                "65535",
                "--nodes",
                "2",
            ],
            "--rpc-port",
        ),
    ];
    for (args, needle) in cases {
        let out = toychain(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    assert!(
        std::fs::read_dir(tmp.path()).expect("dir").next().is_none(),
        "nothing written on a usage error"
    );
}
