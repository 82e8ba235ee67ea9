//! Turning what a user typed into an address or a signing key.
//!
//! Wherever the CLI asks for an account it accepts, in this order: a `toy1…` address, a
//! dev account name (`alice` … `heidi`, any case), or a keystore key name. The three can
//! never be confused: keystore names may not be dev names nor start with `toy1`.

use crate::error::{Result, WalletError};
use crate::keystore::Keystore;
use crate::password::PasswordSource;
use chain::{Address, SecretKey, dev};

/// Whether `input` is meant as an address: bech32 strings may be all upper-case.
fn looks_like_address(input: &str) -> bool {
    input
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("toy1"))
}

/// Parses a `toy1…` address. Bech32 allows an all-upper-case form (QR codes use it);
/// the chain parses lower case, so such input is lowered first. Mixed case stays invalid.
fn parse_address(input: &str) -> Result<Address> {
    let parsed = if input.bytes().any(|b| b.is_ascii_lowercase()) {
        Address::parse(input)
    } else {
        Address::parse(&input.to_ascii_lowercase())
    };
    parsed.map_err(|e| WalletError::InvalidAddress {
        value: input.to_owned(),
        reason: e.reason,
    })
}

/// The address for a dev account name, a keystore name or a `toy1…` address. A mistyped
/// address fails its checksum and the error shows the value.
pub fn resolve_address(input: &str, keystore: &Keystore) -> Result<Address> {
    let input = input.trim();
    if looks_like_address(input) {
        return parse_address(input);
    }
    if let Some(address) = dev::dev_address(input) {
        return Ok(address);
    }
    if keystore.contains(input) {
        return keystore.address(input);
    }
    Err(WalletError::UnknownName {
        value: input.to_owned(),
        dir: keystore.dir().to_owned(),
    })
}

/// The signing key for a dev account name (no password asked) or a keystore name
/// (password from `password`).
pub fn resolve_signer(
    input: &str,
    keystore: &Keystore,
    password: &PasswordSource,
) -> Result<SecretKey> {
    let input = input.trim();
    if let Some(key) = dev::dev_key(input) {
        return Ok(key);
    }
    if keystore.contains(input) {
        let password = password.for_unlock(input)?;
        return keystore.load(input, &password);
    }
    if looks_like_address(input) {
        // Say which mistake it is: a valid address has no key here, a broken one is a typo.
        parse_address(input)?;
        return Err(WalletError::AddressIsNotASigner {
            value: input.to_owned(),
        });
    }
    Err(WalletError::UnknownName {
        value: input.to_owned(),
        dir: keystore.dir().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::KdfParams;
    use crate::password::Password;

    #[test]
    fn upper_case_addresses_and_dev_names_resolve() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Keystore::open(dir.path()).expect("open");
        let alice = dev::dev_address("alice").expect("dev");
        let upper = alice.to_string().to_ascii_uppercase();
        assert_eq!(resolve_address(&upper, &store).expect("upper"), alice);
        let mixed = format!("TOY{}", &alice.to_string()[3..]);
        let err = resolve_address(&mixed, &store).expect_err("mixed case");
        assert!(err.to_string().contains(&mixed), "{err}");
        assert_eq!(resolve_address("Alice", &store).expect("Alice"), alice);
        assert_eq!(
            resolve_address(" bob ", &store).ok(),
            dev::dev_address("bob")
        );
    }

    #[test]
    fn signer_errors_say_which_mistake_it_was() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Keystore::open(dir.path())
            .expect("open")
            .with_kdf_params(KdfParams::for_tests());
        let pw = PasswordSource::Value("pw".into());
        let bob = dev::dev_address("bob").expect("dev").to_string();
        assert!(matches!(
            resolve_signer(&bob, &store, &pw),
            Err(WalletError::AddressIsNotASigner { .. })
        ));
        let last = if bob.ends_with('q') { 'p' } else { 'q' };
        let typo = format!("{}{last}", &bob[..bob.len() - 1]);
        assert!(matches!(
            resolve_signer(&typo, &store, &pw),
            Err(WalletError::InvalidAddress { .. })
        ));
        assert!(matches!(
            resolve_signer("mallory", &store, &pw),
            Err(WalletError::UnknownName { .. })
        ));
        store
            .generate("mine", &Password::new("pw"))
            .expect("generate");
        let wrong = PasswordSource::Value("nope".into());
        assert!(matches!(
            resolve_signer("mine", &store, &wrong),
            Err(WalletError::WrongPassword { .. })
        ));
        let key = resolve_signer("mine", &store, &pw).expect("unlock");
        assert_eq!(Some(key.address()), store.address("mine").ok());
    }
}
