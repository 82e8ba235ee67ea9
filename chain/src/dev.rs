//! Well-known development accounts, like Substrate's `//Alice`.
//!
//! The secret key of dev account `name` is `sha256("toychain/dev-key/" ‖ name)` read as a
//! big-endian scalar (hashed again in the ~2^-128 case it is not a valid key). Every dev
//! chain spec prefunds them; never use them on a chain with value.

use crate::crypto::{Address, SecretKey};

/// The dev accounts, in the order devnet nodes use them (node i authors as account i).
pub const DEV_ACCOUNTS: [&str; 8] = [
    "alice", "bob", "carol", "dave", "eve", "ferdie", "grace", "heidi",
];

/// The key of a dev account, or `None` when `name` is not one.
pub fn dev_key(name: &str) -> Option<SecretKey> {
    let lower = name.to_ascii_lowercase();
    DEV_ACCOUNTS
        .contains(&lower.as_str())
        .then(|| SecretKey::from_seed(&lower))
}

/// The address of a dev account.
pub fn dev_address(name: &str) -> Option<Address> {
    dev_key(name).map(|k| k.address())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_accounts_are_distinct_and_stable() {
        let addresses: Vec<Address> = DEV_ACCOUNTS
            .iter()
            .map(|n| dev_address(n).expect("dev name"))
            .collect();
        let mut unique = addresses.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), DEV_ACCOUNTS.len());
        assert_eq!(dev_address("Alice"), dev_address("alice"));
        assert_eq!(dev_key("mallory").map(|k| k.address()), None);
        // Pinned so a change of derivation (which would orphan every devnet) is noticed.
        let alice = dev_key("alice").expect("alice");
        let expected: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            b"toychain/dev-key/alice",
        ))
        .into();
        assert_eq!(alice.to_bytes(), expected);
    }
}
