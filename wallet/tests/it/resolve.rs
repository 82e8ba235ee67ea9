use crate::{pw, temp_keystore};
use chain::dev::{DEV_ACCOUNTS, dev_address, dev_key};
use chain::{Address, SecretKey};
use wallet::{KdfParams, PasswordSource, WalletError, resolve_address, resolve_signer};

#[test]
fn dev_names_resolve_to_their_derived_addresses() {
    let (_dir, store) = temp_keystore();
    for name in DEV_ACCOUNTS {
        let expected = SecretKey::from_seed(name).address();
        assert_eq!(resolve_address(name, &store).expect(name), expected);
    }
}

#[test]
fn keystore_name_resolves_to_its_address() {
    let (_dir, store) = temp_keystore();
    let address = store.generate("treasury", &pw("pw")).expect("generate");
    assert_eq!(
        resolve_address("treasury", &store).expect("resolve"),
        address
    );
}

#[test]
fn address_resolves_to_itself() {
    let (_dir, store) = temp_keystore();
    let address = SecretKey::from_seed("anyone").address();
    assert_eq!(
        resolve_address(&address.to_string(), &store).expect("resolve"),
        address
    );
}

#[test]
fn mistyped_address_is_refused_with_the_value() {
    let (_dir, store) = temp_keystore();
    let shown = dev_address("carol").expect("dev").to_string();
    let mut chars: Vec<char> = shown.chars().collect();
    chars[12] = if chars[12] == 'q' { 'p' } else { 'q' };
    let typo: String = chars.into_iter().collect();
    let err = resolve_address(&typo, &store).expect_err("typo");
    assert!(
        matches!(&err, WalletError::InvalidAddress { value, .. } if *value == typo),
        "{err:?}"
    );
    assert!(err.to_string().contains(&typo), "{err}");
    assert!(err.is_user_input());
    // A truncated address is refused too, not taken for a name.
    let cut = &shown[..shown.len() - 3];
    assert!(matches!(
        resolve_address(cut, &store),
        Err(WalletError::InvalidAddress { .. })
    ));
}

#[test]
fn unknown_name_says_what_was_expected() {
    let (_dir, store) = temp_keystore();
    let err = resolve_address("mallory", &store).expect_err("unknown");
    let shown = err.to_string();
    assert!(shown.contains("\"mallory\""), "{shown}");
    assert!(shown.contains("alice"), "{shown}");
    assert!(shown.contains("toy1"), "{shown}");
}

#[test]
fn dev_signer_needs_no_password() {
    let (dir, store) = temp_keystore();
    // A password source that would fail if read: dev accounts never ask.
    let never = PasswordSource::File(dir.path().join("does-not-exist"));
    for name in DEV_ACCOUNTS {
        let key = resolve_signer(name, &store, &never).expect(name);
        assert_eq!(Some(key.address()), dev_address(name));
    }
    let key = resolve_signer("Heidi", &store, &never).expect("any case");
    assert_eq!(key.to_bytes(), dev_key("heidi").expect("dev").to_bytes());
}

#[test]
fn keystore_signer_reads_a_password_file_with_trailing_newline() {
    let (dir, store) = temp_keystore();
    let key = SecretKey::from_seed("file-signer");
    store
        .create("ops", &key, &pw("s3cret pass"), &KdfParams::for_tests())
        .expect("create");
    let file = dir.path().join("password.txt");
    std::fs::write(&file, "s3cret pass\n").expect("write");
    let loaded = resolve_signer("ops", &store, &PasswordSource::File(file)).expect("unlock");
    assert_eq!(loaded.address(), key.address());
}

#[test]
fn empty_password_file_is_refused() {
    let (dir, store) = temp_keystore();
    store.generate("ops", &pw("pw")).expect("generate");
    let file = dir.path().join("empty.txt");
    std::fs::write(&file, "").expect("write");
    let err =
        resolve_signer("ops", &store, &PasswordSource::File(file.clone())).expect_err("empty file");
    assert!(
        matches!(err, WalletError::EmptyPasswordFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.txt"), "{err}");
    assert!(matches!(
        PasswordSource::File(file).for_create("new"),
        Err(WalletError::EmptyPasswordFile { .. })
    ));
}

#[test]
fn an_address_cannot_sign() {
    let (_dir, store) = temp_keystore();
    let address: Address = dev_address("dave").expect("dev");
    let err =
        resolve_signer(&address.to_string(), &store, &PasswordSource::Prompt).expect_err("address");
    assert!(
        matches!(err, WalletError::AddressIsNotASigner { .. }),
        "{err:?}"
    );
}
