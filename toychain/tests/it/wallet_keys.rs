//! Keys made by `toychain wallet new`, and names that resolve without a node.

use crate::support::{Output, toychain};
use wallet::{Keystore, Password};

fn wallet_offline(dir: &std::path::Path, args: &[&str]) -> Output {
    let dir = dir.to_str().expect("temp path is UTF-8");
    let mut all = vec!["wallet", "--wallet-dir", dir];
    all.extend_from_slice(args);
    toychain(&all)
}

#[test]
fn keystore_file_holds_no_plain_key() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let keys = tmp.path().join("keys");
    let password_file = tmp.path().join("pw.txt");
    std::fs::write(&password_file, "correct horse battery staple\n").expect("password file");
    let pw = password_file.to_str().expect("UTF-8 path");

    let out = wallet_offline(&keys, &["--password-file", pw, "new"]);
    out.assert_ok("wallet new");
    assert!(
        out.stdout.contains("created key key1: toy1"),
        "{}",
        out.stdout
    );
    let second = wallet_offline(&keys, &["--password-file", pw, "new", "savings"]);
    second.assert_ok("wallet new savings");

    let store = Keystore::open(&keys).expect("keystore");
    for name in ["key1", "savings"] {
        let key = store
            .load(name, &Password::new("correct horse battery staple"))
            .expect("the key decrypts with its password");
        let secret = key.to_bytes();
        let file = std::fs::read(store.path_of(name).expect("path")).expect("key file");
        let text = String::from_utf8_lossy(&file).to_string();
        let hex_lower = hex::encode(secret);
        assert!(!text.contains(&hex_lower), "{name}: plain key in hex");
        assert!(
            !text.to_lowercase().contains(&hex_lower),
            "{name}: plain key in upper-case hex"
        );
        assert!(
            !file.windows(32).any(|w| w == secret),
            "{name}: plain key bytes"
        );
        assert!(!out.stdout.contains(&hex_lower) && !second.stdout.contains(&hex_lower));
        assert!(
            text.contains(&key.address().to_string()),
            "the address is in clear"
        );
    }

    let list = wallet_offline(&keys, &["list"]);
    list.assert_ok("wallet list");
    for expected in ["key1", "savings", "alice", "heidi"] {
        assert!(
            list.stdout.contains(expected),
            "{expected} listed: {}",
            list.stdout
        );
    }
    // A taken name is refused as a usage error.
    let again = wallet_offline(&keys, &["--password-file", pw, "new", "savings"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[test]
fn address_resolves_dev_names_and_refuses_a_mistyped_address() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let alice = chain::dev::dev_address("alice")
        .expect("dev account")
        .to_string();
    let out = wallet_offline(tmp.path(), &["address", "alice"]);
    out.assert_ok("address alice");
    assert_eq!(out.stdout.trim(), alice);

    let (head, last) = alice.split_at(alice.len() - 1);
    let typo = format!("{head}{}", if last == "q" { "p" } else { "q" });
    let out = wallet_offline(tmp.path(), &["address", &typo]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("invalid address"), "{}", out.stderr);
}
