//! The bank's accounts: the reliability suite runs the lab's workload
//! ([`crate::workload::Workload`]) among eight traders while a fault runs, and checks that
//! every transfer a node acknowledged is on the final chain exactly once.
//!
//! The traders are the four dev accounts a 4-node devnet does not author with (eve,
//! ferdie, grace, heidi) and four bank accounts funded at genesis (keys derived from
//! `toychain/reliability/bank/{k}`), so no transfer touches a producer's balance. A node
//! that is down, paused or cut off is skipped or refuses, which is counted.

use chain::SecretKey;
use chain::dev::dev_key;

/// Dev accounts that take part (those node 0–3 do not author with).
const DEV_TRADERS: [&str; 4] = ["eve", "ferdie", "grace", "heidi"];
/// Bank accounts funded at genesis, besides the dev ones.
pub const BANK_ACCOUNTS: usize = 4;
/// What each bank account holds at genesis, in TOY.
pub const BANK_FUNDING_TOY: u64 = 1_000_000;

/// The key of bank account `k`.
pub fn bank_key(k: usize) -> SecretKey {
    SecretKey::from_seed(&format!("toychain/reliability/bank/{k}"))
}

/// The eight trading accounts' keys, dev accounts first.
pub fn trader_keys() -> Vec<SecretKey> {
    DEV_TRADERS
        .iter()
        .filter_map(|name| dev_key(name))
        .chain((0..BANK_ACCOUNTS).map(bank_key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::Address;

    #[test]
    fn eight_distinct_traders_none_of_them_a_producer_of_four_nodes() {
        let keys = trader_keys();
        assert_eq!(keys.len(), 8);
        let mut addresses: Vec<Address> = keys.iter().map(SecretKey::address).collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), 8);
        for producer in config::dev_authorities(4) {
            assert!(!addresses.contains(&producer), "{producer} trades");
        }
    }
}
