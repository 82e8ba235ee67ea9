//! Sending coins through a devnet and seeing them arrive, to the base unit.
//!
//! Sender and receiver are carol and dave: the devnets here have two nodes, authored by
//! alice and bob, so no block reward or fee lands on either side of the transfer.

use crate::support::{Devnet, account, rpc, wait_for, wallet};
use serde_json::json;
use std::time::Duration;

/// 1.5 TOY and 0.0001 TOY in base units.
const AMOUNT: u64 = 150_000_000;
const FEE: u64 = 10_000;

/// `key value` → value, for the words the wallet prints.
fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}

#[test]
fn devnet_send_and_wait_moves_exact_amounts() {
    let devnet = Devnet::start(2);
    let url = &devnet.rpc[0];
    let (carol_before, carol_nonce) = account(url, "carol");
    let (dave_before, _) = account(url, "dave");

    let out = wallet(
        url,
        &[
            "send", "--from", "carol", "--to", "dave", "--amount", "1.5", "--fee", "0.0001",
            "--wait",
        ],
    );
    out.assert_ok("send --wait");
    assert!(
        out.stdout.contains("fee 0.0001 TOY"),
        "fee shown: {}",
        out.stdout
    );
    let included = out
        .stdout
        .lines()
        .find(|l| l.starts_with("included"))
        .unwrap_or_else(|| panic!("no inclusion line in {}", out.stdout));
    let height: u64 = word_after(included, "height")
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no height in {included:?}"));
    let block = word_after(included, "block").unwrap_or_else(|| panic!("no block in {included:?}"));
    assert!(height >= 1, "{included}");
    assert_eq!(block.len(), 64, "a full block hash in {included:?}");
    assert!(block.bytes().all(|b| b.is_ascii_hexdigit()), "{included:?}");

    let (carol_after, carol_nonce_after) = account(url, "carol");
    let (dave_after, _) = account(url, "dave");
    assert_eq!(
        carol_before - carol_after,
        AMOUNT + FEE,
        "sender pays amount + fee"
    );
    assert_eq!(dave_after - dave_before, AMOUNT, "receiver gets the amount");
    assert_eq!(carol_nonce_after, carol_nonce + 1);

    // The wallet's own view agrees, in decimal TOY.
    let shown = wallet(url, &["balance", "carol"]);
    shown.assert_ok("balance");
    let expected = chain::Amount(carol_after).to_toy_string();
    assert!(
        shown.stdout.contains(&format!(": {expected} TOY")),
        "balance shows {expected}: {}",
        shown.stdout
    );
    let history = wallet(url, &["history", "dave"]);
    history.assert_ok("history");
    assert!(
        history.stdout.contains("in  1.5 TOY from carol"),
        "{}",
        history.stdout
    );
}

#[test]
fn two_quick_sends_both_land() {
    let devnet = Devnet::start(2);
    let url = &devnet.rpc[0];
    let (carol_before, nonce_before) = account(url, "carol");
    let (dave_before, _) = account(url, "dave");

    let first = wallet(
        url,
        &["send", "--from", "carol", "--to", "dave", "--amount", "1"],
    );
    first.assert_ok("first send");
    let second = wallet(
        url,
        &["send", "--from", "carol", "--to", "dave", "--amount", "2"],
    );
    second.assert_ok("second send");
    assert!(
        first.stdout.contains(&format!("nonce {nonce_before} ")),
        "{}",
        first.stdout
    );
    assert!(
        second
            .stdout
            .contains(&format!("nonce {} ", nonce_before + 1)),
        "the second send counts the first, still pending: {}",
        second.stdout
    );

    let hashes: Vec<String> = [&first, &second]
        .iter()
        .map(|o| {
            word_after(&o.stdout, "tx")
                .unwrap_or_else(|| panic!("no tx hash in {}", o.stdout))
                .to_owned()
        })
        .collect();
    for hash in &hashes {
        wait_for(
            &format!("tx {hash} to be included"),
            Duration::from_secs(90),
            || {
                let status = rpc(url, "tx_get", json!([hash])).ok()?;
                (status["status"] == "included").then_some(())
            },
        );
    }
    let (carol_after, nonce_after) = account(url, "carol");
    let (dave_after, _) = account(url, "dave");
    assert_eq!(nonce_after, nonce_before + 2);
    assert_eq!(
        carol_before - carol_after,
        300_000_000 + 2 * FEE,
        "default fee 0.0001 each"
    );
    assert_eq!(dave_after - dave_before, 300_000_000);
}
