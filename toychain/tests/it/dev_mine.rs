//! `toychain dev mine N`: blocks on request on an `--on-demand` devnet that is otherwise
//! idle, and clear refusals.

use crate::support::{Devnet, LoneNode, easy_spec, rpc, toychain};
use serde_json::json;

fn height(url: &str) -> u64 {
    rpc(url, "chain_info", json!([])).expect("chain_info")["height"]
        .as_u64()
        .expect("height")
}

#[test]
fn dev_mine_produces_blocks_on_an_idle_on_demand_devnet() {
    let devnet = Devnet::start(1);
    let url = &devnet.rpc[0];
    let before = height(url);
    let out = toychain(&["dev", "mine", "3", "--rpc", url]);
    out.assert_ok("dev mine 3");
    assert!(out.stdout.contains("3/3: head #"), "{}", out.stdout);
    // On demand, nothing else makes blocks: exactly the three asked for.
    assert_eq!(height(url), before + 3);
}

#[test]
fn dev_mine_refuses_a_node_that_does_not_produce_and_a_zero_count() {
    let node = LoneNode::start(&easy_spec(config::DEV_CHAIN_ID));
    let out = toychain(&["dev", "mine", "2", "--rpc", &node.rpc]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("does not produce blocks") && out.stderr.contains("--author"),
        "{}",
        out.stderr
    );
    let zero = toychain(&["dev", "mine", "0", "--rpc", &node.rpc]);
    assert_eq!(zero.code, 2, "{}", zero.stderr);
    assert!(zero.stderr.contains('0'), "{}", zero.stderr);
    assert_eq!(height(&node.rpc), 0);
}
