//! Every refused send: one line on stderr naming the problem, a non-zero exit code, and
//! nothing moved.

use crate::support::{
    Devnet, LoneNode, Output, account, closed_port, easy_spec, mempool_size, wallet,
};

/// Exit codes of the binary.
const USAGE: i32 = 2;
const RUNTIME: i32 = 1;

/// Asserts a refusal: the exit code, one stderr line containing every `needles`, no
/// transaction submitted.
fn assert_refused(case: &str, out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(
        out.code, code,
        "{case}: exit code\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: exactly one line on stderr, got {:?}",
        out.stderr
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{case}: {needle:?} in {:?}",
            lines[0]
        );
    }
    assert!(
        !out.stdout.contains("submitted"),
        "{case}: nothing sent: {}",
        out.stdout
    );
    assert!(!out.stderr.contains("panicked"), "{case}: {}", out.stderr);
}

/// dave's address with one character changed, so its bech32m checksum fails.
fn mistyped_dave() -> String {
    let good = chain::dev::dev_address("dave")
        .expect("dev account")
        .to_string();
    let (head, last) = good.split_at(good.len() - 1);
    let swapped = if last == "q" { "p" } else { "q" };
    format!("{head}{swapped}")
}

#[test]
fn refused_sends_exit_nonzero_with_one_clear_line_and_move_nothing() {
    let devnet = Devnet::start(1);
    let url = devnet.rpc[0].clone();
    let carol_before = account(&url, "carol");
    let dave_before = account(&url, "dave");
    let typo = mistyped_dave();
    let unreachable = format!("http://127.0.0.1:{}", closed_port());

    let send = |rpc: &str, from: &str, to: &str, amount: &str| {
        wallet(
            rpc,
            &[
                "send", "--from", from, "--to", to, "--amount", amount, "--wait",
            ],
        )
    };
    // (case, output, exit code, what stderr must name)
    let cases: Vec<(&str, Output, i32, Vec<&str>)> = vec![
        (
            "mistyped address",
            send(&url, "carol", &typo, "1"),
            USAGE,
            vec!["invalid address", &typo],
        ),
        (
            "amount with two dots",
            send(&url, "carol", "dave", "1.2.3"),
            USAGE,
            vec!["invalid amount", "1.2.3"],
        ),
        (
            "negative amount",
            send(&url, "carol", "dave", "-1"),
            USAGE,
            vec!["invalid amount", "-1"],
        ),
        (
            "too many decimals",
            send(&url, "carol", "dave", "0.000000001"),
            USAGE,
            vec!["invalid amount", "more than 8 decimal places"],
        ),
        (
            "zero amount",
            send(&url, "carol", "dave", "0"),
            USAGE,
            vec!["--amount 0"],
        ),
        (
            "bad fee",
            wallet(
                &url,
                &[
                    "send", "--from", "carol", "--to", "dave", "--amount", "1", "--fee", "1,5",
                ],
            ),
            USAGE,
            vec!["--fee", "invalid amount", "1,5"],
        ),
        (
            "insufficient balance",
            send(&url, "carol", "dave", "2000000"),
            RUNTIME,
            vec![
                "insufficient balance",
                "has 1000000 TOY",
                "needs 2000000 TOY + fee 0.0001 TOY",
            ],
        ),
        (
            "unknown key name",
            send(&url, "mallory", "dave", "1"),
            USAGE,
            vec!["\"mallory\"", "not a dev account"],
        ),
        (
            "unknown recipient",
            send(&url, "carol", "davr", "1"),
            USAGE,
            vec!["\"davr\""],
        ),
        (
            "node unreachable",
            send(&unreachable, "carol", "dave", "1"),
            RUNTIME,
            vec!["cannot reach the node", &unreachable],
        ),
    ];
    for (case, out, code, needles) in &cases {
        assert_refused(case, out, *code, needles);
    }

    assert_eq!(
        account(&url, "carol"),
        carol_before,
        "carol's balance and nonce unchanged"
    );
    assert_eq!(
        account(&url, "dave"),
        dave_before,
        "dave's balance and nonce unchanged"
    );
    assert_eq!(mempool_size(&url), 0, "nothing waits in the mempool");
}

#[test]
fn wrong_chain_is_refused_before_anything_is_signed() {
    let other = LoneNode::start(&easy_spec(4242));
    let carol_before = account(&other.rpc, "carol");
    let out = wallet(
        &other.rpc,
        &[
            "--chain-id",
            "1337",
            "send",
            "--from",
            "carol",
            "--to",
            "dave",
            "--amount",
            "1",
        ],
    );
    assert_refused(
        "wrong chain",
        &out,
        RUNTIME,
        &["wrong chain", "4242", "1337"],
    );
    assert_eq!(account(&other.rpc, "carol"), carol_before);
    assert_eq!(mempool_size(&other.rpc), 0);

    // Without --chain-id the wallet signs for the node's chain, and the node takes it.
    let ok = wallet(
        &other.rpc,
        &["send", "--from", "carol", "--to", "dave", "--amount", "1"],
    );
    ok.assert_ok("send on the node's own chain");
    assert!(ok.stdout.contains("chain 4242"), "{}", ok.stdout);
}
