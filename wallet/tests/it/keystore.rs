use crate::{contains_bytes, pw, read, temp_keystore};
use chain::SecretKey;
use std::time::Instant;
use wallet::{KdfParams, Keystore, Password, PasswordSource, WalletError};

fn fixed_key() -> SecretKey {
    SecretKey::from_seed("integration-test-key")
}

#[test]
fn created_key_loads_back_identical() {
    let (_dir, store) = temp_keystore();
    let key = fixed_key();
    let address = store
        .create("main", &key, &pw("hunter2"), &KdfParams::for_tests())
        .expect("create");
    assert_eq!(address, key.address());
    let loaded = store.load("main", &pw("hunter2")).expect("load");
    assert_eq!(loaded.to_bytes(), key.to_bytes());
    assert_eq!(store.address("main").expect("address"), address);
}

#[test]
fn generated_keys_are_fresh_and_load_back() {
    let (_dir, store) = temp_keystore();
    let a = store.generate("a", &pw("pw")).expect("generate a");
    let b = store.generate("b", &pw("pw")).expect("generate b");
    assert_ne!(a, b);
    assert_eq!(store.load("a", &pw("pw")).expect("load a").address(), a);
    assert_eq!(store.load("b", &pw("pw")).expect("load b").address(), b);
}

#[test]
fn wrong_password_is_refused_naming_the_key() {
    let (_dir, store) = temp_keystore();
    store
        .create(
            "savings",
            &fixed_key(),
            &pw("right"),
            &KdfParams::for_tests(),
        )
        .expect("create");
    for wrong in ["wrong", "", "right ", "Right"] {
        let err = store.load("savings", &pw(wrong)).expect_err(wrong);
        assert!(
            matches!(&err, WalletError::WrongPassword { name, .. } if name == "savings"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("wrong password for key savings"),
            "{err}"
        );
        assert!(err.is_user_input());
    }
}

#[test]
fn flipped_ciphertext_bit_is_refused() {
    let (_dir, store) = temp_keystore();
    store
        .create("k", &fixed_key(), &pw("pw"), &KdfParams::for_tests())
        .expect("create");
    let path = store.path_of("k").expect("path");
    let mut file: serde_json::Value = serde_json::from_slice(&read(&path)).expect("json");
    let ciphertext = file["ciphertext"].as_str().expect("hex string").to_owned();
    let mut bytes = hex::decode(&ciphertext).expect("hex");
    bytes[0] ^= 1;
    file["ciphertext"] = hex::encode(bytes).into();
    std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("write");
    assert!(matches!(
        store.load("k", &pw("pw")),
        Err(WalletError::WrongPassword { .. })
    ));
}

#[test]
fn ciphertext_swapped_into_another_file_is_refused() {
    // Two keys under the same password: moving one's sealed key into the other's file
    // (keeping the other's address) must not decrypt, because the address is bound.
    let (_dir, store) = temp_keystore();
    let (key_a, key_b) = (
        SecretKey::from_seed("swap-a"),
        SecretKey::from_seed("swap-b"),
    );
    store
        .create("a", &key_a, &pw("same"), &KdfParams::for_tests())
        .expect("create a");
    store
        .create("b", &key_b, &pw("same"), &KdfParams::for_tests())
        .expect("create b");
    let path_a = store.path_of("a").expect("path");
    let path_b = store.path_of("b").expect("path");
    let file_a: serde_json::Value = serde_json::from_slice(&read(&path_a)).expect("json");
    let mut file_b: serde_json::Value = serde_json::from_slice(&read(&path_b)).expect("json");
    for field in ["kdf", "cipher", "ciphertext"] {
        file_b[field] = file_a[field].clone();
    }
    std::fs::write(&path_b, serde_json::to_vec(&file_b).expect("json")).expect("write");
    assert!(matches!(
        store.load("b", &pw("same")),
        Err(WalletError::WrongPassword { .. })
    ));
    // Still listed under b's address: the file did not become a's key.
    assert_eq!(store.address("b").expect("address"), key_b.address());
}

#[test]
fn edited_clear_address_is_refused() {
    let (_dir, store) = temp_keystore();
    store
        .create("k", &fixed_key(), &pw("pw"), &KdfParams::for_tests())
        .expect("create");
    let path = store.path_of("k").expect("path");
    let mut file: serde_json::Value = serde_json::from_slice(&read(&path)).expect("json");
    let other = SecretKey::from_seed("someone-else").address();
    file["address"] = other.to_string().into();
    std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("write");
    assert!(matches!(
        store.load("k", &pw("pw")),
        Err(WalletError::WrongPassword { .. })
    ));
}

#[test]
fn key_file_contains_neither_the_secret_hex_nor_its_bytes() {
    let (_dir, store) = temp_keystore();
    let key = fixed_key();
    store
        .create("k", &key, &pw("a password"), &KdfParams::for_tests())
        .expect("create");
    let bytes = read(&store.path_of("k").expect("path"));
    let secret = key.to_bytes();
    let lower = hex::encode(secret);
    let upper = lower.to_ascii_uppercase();
    assert!(!contains_bytes(&bytes, &secret), "raw secret key on disk");
    assert!(
        !contains_bytes(&bytes, lower.as_bytes()),
        "hex secret key on disk"
    );
    assert!(
        !contains_bytes(&bytes, upper.as_bytes()),
        "HEX secret key on disk"
    );
    assert!(!contains_bytes(&bytes, b"a password"), "password on disk");
    // And what is there is the documented format.
    let file: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(file["version"], 1);
    assert_eq!(file["address"], key.address().to_string());
    assert_eq!(file["kdf"]["name"], "scrypt");
    assert_eq!(file["cipher"]["name"], "xchacha20-poly1305");
    assert_eq!(file["cipher"]["nonce"].as_str().map(str::len), Some(48));
    assert_eq!(file["ciphertext"].as_str().map(str::len), Some(96));
}

#[test]
fn two_files_of_one_key_and_password_differ() {
    // Fresh salt and nonce per file: equal keys are not recognisable on disk.
    let (_dir, store) = temp_keystore();
    for name in ["one", "two"] {
        store
            .create(name, &fixed_key(), &pw("pw"), &KdfParams::for_tests())
            .expect("create");
    }
    let one: serde_json::Value =
        serde_json::from_slice(&read(&store.path_of("one").expect("path"))).expect("json");
    let two: serde_json::Value =
        serde_json::from_slice(&read(&store.path_of("two").expect("path"))).expect("json");
    assert_ne!(one["kdf"]["salt"], two["kdf"]["salt"]);
    assert_ne!(one["cipher"]["nonce"], two["cipher"]["nonce"]);
    assert_ne!(one["ciphertext"], two["ciphertext"]);
}

#[cfg(unix)]
#[test]
fn key_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = temp_keystore();
    store.generate("k", &pw("pw")).expect("generate");
    let mode = std::fs::metadata(store.path_of("k").expect("path"))
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn existing_name_is_never_overwritten() {
    let (_dir, store) = temp_keystore();
    let first = store.generate("k", &pw("pw")).expect("generate");
    let before = read(&store.path_of("k").expect("path"));
    let err = store
        .create("k", &fixed_key(), &pw("other"), &KdfParams::for_tests())
        .expect_err("duplicate");
    assert!(
        matches!(&err, WalletError::DuplicateName { name, .. } if name == "k"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(store.generate("k", &pw("pw")).is_err());
    assert_eq!(read(&store.path_of("k").expect("path")), before);
    assert_eq!(store.load("k", &pw("pw")).expect("load").address(), first);
}

#[test]
fn bad_and_reserved_names_are_refused_with_the_value() {
    let (_dir, store) = temp_keystore();
    for name in [
        "",
        "UPPER",
        "has space",
        "../escape",
        "a/b",
        "dot.name",
        "toy1abc",
    ] {
        let err = store.generate(name, &pw("pw")).expect_err(name);
        assert!(matches!(err, WalletError::InvalidName { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
    }
    let long = "a".repeat(33);
    assert!(matches!(
        store.generate(&long, &pw("pw")),
        Err(WalletError::InvalidName { .. })
    ));
    for dev in chain::dev::DEV_ACCOUNTS {
        let err = store.generate(dev, &pw("pw")).expect_err(dev);
        assert!(matches!(err, WalletError::ReservedName { .. }), "{err:?}");
        assert!(err.to_string().contains(dev), "{err}");
    }
    assert!(
        store.list().expect("list").is_empty(),
        "nothing was written"
    );
}

#[test]
fn empty_password_is_refused_on_create() {
    let (_dir, store) = temp_keystore();
    let err = store.generate("k", &pw("")).expect_err("empty");
    assert!(matches!(err, WalletError::EmptyPassword), "{err:?}");
    assert!(!store.contains("k"));
    assert!(matches!(
        PasswordSource::Value(String::new()).for_create("k"),
        Err(WalletError::EmptyPassword)
    ));
}

#[test]
fn list_shows_names_and_addresses_without_a_password() {
    let (_dir, store) = temp_keystore();
    let zed = store.generate("zed", &pw("one")).expect("generate");
    let amy = store
        .create("amy", &fixed_key(), &pw("two"), &KdfParams::for_tests())
        .expect("create");
    // Files that are not keys are ignored.
    std::fs::write(store.dir().join("notes.txt"), b"hello").expect("write");
    std::fs::write(store.dir().join("Bad Name.json"), b"{}").expect("write");
    std::fs::create_dir(store.dir().join("sub.json")).expect("mkdir");
    let listed = store.list().expect("list");
    assert_eq!(
        listed,
        vec![("amy".to_owned(), amy), ("zed".to_owned(), zed)]
    );
}

#[test]
fn corrupt_file_fails_list_and_load_naming_it() {
    let (_dir, store) = temp_keystore();
    store.generate("good", &pw("pw")).expect("generate");
    std::fs::write(store.dir().join("broken.json"), b"{\"version\": 1,").expect("write");
    for err in [
        store.list().expect_err("list"),
        store.load("broken", &pw("pw")).expect_err("load"),
        store.address("broken").expect_err("address"),
    ] {
        assert!(matches!(err, WalletError::CorruptFile { .. }), "{err:?}");
        assert!(err.to_string().contains("broken.json"), "{err}");
    }
}

#[test]
fn unknown_key_is_named_with_the_keystore() {
    let (_dir, store) = temp_keystore();
    let err = store.load("ghost", &pw("pw")).expect_err("unknown");
    assert!(matches!(err, WalletError::UnknownKey { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("ghost"), "{shown}");
    assert!(
        shown.contains(&store.dir().display().to_string()),
        "{shown}"
    );
}

#[test]
fn debug_and_errors_never_show_the_secret_key() {
    let (_dir, store) = temp_keystore();
    let key = fixed_key();
    let secret_hex = hex::encode(key.to_bytes());
    store
        .create("k", &key, &pw("pw"), &KdfParams::for_tests())
        .expect("create");
    let loaded = store.load("k", &pw("pw")).expect("load");
    let wrong = store.load("k", &pw("nope")).expect_err("wrong password");
    let shown = [
        format!("{store:?}"),
        format!("{:?}", KdfParams::DEFAULT),
        format!("{loaded:?}"),
        format!("{:?}", Password::new(secret_hex.clone())),
        format!("{:?}", PasswordSource::Value(secret_hex.clone())),
        format!("{wrong:?}"),
        wrong.to_string(),
        format!("{:?}", store.list().expect("list")),
    ];
    for text in shown {
        assert!(!text.contains(&secret_hex), "secret in {text}");
        assert!(
            !text.contains(&secret_hex.to_ascii_uppercase()),
            "secret in {text}"
        );
    }
}

#[test]
fn default_kdf_cost_round_trips() {
    // The one test at the real cost users get (N = 2^15, r = 8, 32 MiB).
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Keystore::open(dir.path()).expect("open");
    assert_eq!(store.kdf_params(), KdfParams::DEFAULT);
    let address = store.generate("real", &pw("pw")).expect("generate");
    let file: serde_json::Value =
        serde_json::from_slice(&read(&store.path_of("real").expect("path"))).expect("json");
    assert_eq!(file["kdf"]["log_n"], 15);
    assert_eq!(file["kdf"]["r"], 8);
    assert_eq!(file["kdf"]["p"], 1);
    let started = Instant::now();
    let key = store.load("real", &pw("pw")).expect("load");
    eprintln!(
        "unlocking at the default scrypt cost took {:?} (unoptimised test build)",
        started.elapsed()
    );
    assert_eq!(key.address(), address);
}
