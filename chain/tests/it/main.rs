//! Integration tests of the chain core: one binary, one module per area.

mod certified;
mod codec;
mod crash;
mod faults;
mod fork_choice;
mod mempool;
mod reorg;
mod sigcache;
mod store;
mod validation;

use chain::dev::dev_key;
use chain::test_utils::TEST_CHAIN_ID;
use chain::{Amount, Transaction, TxKind};

/// A signed transfer between dev accounts.
pub fn transfer(from: &str, to: &str, nonce: u64, amount: u64, fee: u64) -> Transaction {
    let key = dev_key(from).expect("dev account");
    let to = dev_key(to).expect("dev account").address();
    Transaction::signed(
        &key,
        TEST_CHAIN_ID,
        nonce,
        Amount(fee),
        TxKind::Transfer {
            to,
            amount: Amount(amount),
        },
    )
}

/// The address of a dev account.
pub fn addr(name: &str) -> chain::Address {
    dev_key(name).expect("dev account").address()
}
