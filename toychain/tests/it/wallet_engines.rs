//! The wallet's engine transactions on devnets of the engines that use them: DPoS delegate
//! registration and votes, PoA authority proposals. Each is seen in the engine's account
//! fields over RPC, and a refused one is one clear line with nothing sent.

use crate::support::{Devnet, rpc, wallet};
use serde_json::{Value, json};

fn engine_fields(url: &str, name: &str) -> Value {
    let address = chain::dev::dev_address(name)
        .expect("dev account")
        .to_string();
    rpc(url, "state_getAccount", json!([address])).expect("account")["engine"].clone()
}

#[test]
fn dpos_register_vote_and_unvote_through_the_wallet() {
    let devnet = Devnet::start_engine(2, "dpos");
    let url = &devnet.rpc[0];
    wallet(url, &["register-delegate", "--from", "carol", "--wait"]).assert_ok("register");
    assert_eq!(engine_fields(url, "carol")["delegate"], json!("true"));

    wallet(url, &["vote", "--from", "dave", "carol", "--wait"]).assert_ok("vote");
    let carol = engine_fields(url, "carol");
    let dave_balance = rpc(
        url,
        "state_getAccount",
        json!([chain::dev::dev_address("dave").expect("dev").to_string()]),
    )
    .expect("account")["balance"]
        .as_u64()
        .expect("balance");
    assert_eq!(carol["votes"], json!(dave_balance.to_string()), "{carol}");
    assert!(
        engine_fields(url, "dave")["votes_for"]
            .as_str()
            .is_some_and(|v| v.starts_with("toy1")),
        "dave's votes are listed"
    );

    let refused = wallet(url, &["vote", "--from", "dave", "heidi"]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("not a registered delegate"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "{}",
        refused.stderr
    );

    wallet(url, &["unvote", "--from", "dave", "carol", "--wait"]).assert_ok("unvote");
    assert_eq!(engine_fields(url, "carol")["votes"], json!("0"));
}

#[test]
fn poa_authorities_vote_a_third_signer_in_through_the_wallet() {
    let devnet = Devnet::start_engine(2, "poa");
    let url = &devnet.rpc[0];
    wallet(
        url,
        &["propose-authority", "--from", "alice", "carol", "--wait"],
    )
    .assert_ok("first vote");
    assert_eq!(
        engine_fields(url, "carol")["authority"],
        json!("false"),
        "one vote of two is no majority"
    );
    let refused = wallet(url, &["propose-authority", "--from", "dave", "carol"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("not an authority"),
        "{}",
        refused.stderr
    );

    wallet(
        url,
        &["propose-authority", "--from", "bob", "carol", "--wait"],
    )
    .assert_ok("second vote");
    assert_eq!(engine_fields(url, "carol")["authority"], json!("true"));
}
