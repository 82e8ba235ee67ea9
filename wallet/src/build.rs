//! Building signed transactions for each kind the chain knows.
//!
//! Every builder signs with the given key and then runs the chain's own stateless check
//! (`Transaction::check_stateless`: encoded size, amount + fee overflow, signature), so a
//! transaction the chain would refuse on sight is an error here, before it is sent. What
//! needs state (nonce, balance, whether the engine takes the kind) is the node's to judge.

use crate::error::{Result, WalletError};
use chain::{Address, Amount, ChainId, SecretKey, Transaction, TxKind};

/// The fee the CLI uses (and shows) when none is given: 0.0001 TOY (10,000 base units).
/// The chain has no minimum fee, but the shared mempool fills blocks highest fee first and
/// evicts the lowest fee when full, so a zero fee can wait forever under load; 0.0001 TOY
/// is still negligible next to the 1,000,000 TOY each dev account starts with.
pub const DEFAULT_FEE: Amount = Amount::from_base_units(10_000);

fn build(
    key: &SecretKey,
    chain_id: ChainId,
    nonce: u64,
    fee: Amount,
    kind: TxKind,
) -> Result<Transaction> {
    let name = kind.name();
    let tx = Transaction::signed(key, chain_id, nonce, fee, kind);
    tx.check_stateless(chain_id)
        .map_err(|e| WalletError::InvalidTx {
            kind: name,
            reason: e.to_string(),
        })?;
    Ok(tx)
}

/// Refuses an empty or repeated delegate list: the first would be a fee for nothing,
/// the second almost certainly a typo.
fn check_delegates(kind: &'static str, delegates: &[Address]) -> Result<()> {
    if delegates.is_empty() {
        return Err(WalletError::NoDelegates { kind });
    }
    for (i, address) in delegates.iter().enumerate() {
        if delegates[..i].contains(address) {
            return Err(WalletError::DuplicateDelegate { address: *address });
        }
    }
    Ok(())
}

/// Move `amount` from the key's account to `to`.
pub fn build_transfer(
    key: &SecretKey,
    chain_id: ChainId,
    nonce: u64,
    to: Address,
    amount: Amount,
    fee: Amount,
) -> Result<Transaction> {
    build(key, chain_id, nonce, fee, TxKind::Transfer { to, amount })
}

/// DPoS: make the key's account a delegate that can be voted into the producer set.
pub fn build_register_delegate(
    key: &SecretKey,
    chain_id: ChainId,
    nonce: u64,
    fee: Amount,
) -> Result<Transaction> {
    build(key, chain_id, nonce, fee, TxKind::RegisterDelegate)
}

/// DPoS: add the account's stake-weighted votes to `delegates`.
pub fn build_vote(
    key: &SecretKey,
    chain_id: ChainId,
    nonce: u64,
    delegates: Vec<Address>,
    fee: Amount,
) -> Result<Transaction> {
    check_delegates("vote", &delegates)?;
    build(key, chain_id, nonce, fee, TxKind::Vote { delegates })
}

/// DPoS: withdraw the account's votes from `delegates`.
pub fn build_unvote(
    key: &SecretKey,
    chain_id: ChainId,
    nonce: u64,
    delegates: Vec<Address>,
    fee: Amount,
) -> Result<Transaction> {
    check_delegates("unvote", &delegates)?;
    build(key, chain_id, nonce, fee, TxKind::Unvote { delegates })
}

/// PoA: as an authority, vote to add (`add = true`) or remove `address` as an authority.
pub fn build_propose_authority(
    key: &SecretKey,
    chain_id: ChainId,
    nonce: u64,
    address: Address,
    add: bool,
    fee: Amount,
) -> Result<Transaction> {
    build(
        key,
        chain_id,
        nonce,
        fee,
        TxKind::ProposeAuthority { address, add },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::dev::{dev_address, dev_key};

    fn alice() -> SecretKey {
        dev_key("alice").expect("dev account")
    }

    fn bob() -> Address {
        dev_address("bob").expect("dev account")
    }

    #[test]
    fn every_builder_signs_for_the_chain_with_the_kind_asked() {
        let chain = ChainId(1337);
        let cases: Vec<(Transaction, TxKind)> = vec![
            (
                build_transfer(&alice(), chain, 3, bob(), Amount(5), DEFAULT_FEE)
                    .expect("transfer"),
                TxKind::Transfer {
                    to: bob(),
                    amount: Amount(5),
                },
            ),
            (
                build_register_delegate(&alice(), chain, 3, DEFAULT_FEE).expect("register"),
                TxKind::RegisterDelegate,
            ),
            (
                build_vote(&alice(), chain, 3, vec![bob()], DEFAULT_FEE).expect("vote"),
                TxKind::Vote {
                    delegates: vec![bob()],
                },
            ),
            (
                build_unvote(&alice(), chain, 3, vec![bob()], DEFAULT_FEE).expect("unvote"),
                TxKind::Unvote {
                    delegates: vec![bob()],
                },
            ),
            (
                build_propose_authority(&alice(), chain, 3, bob(), false, DEFAULT_FEE)
                    .expect("propose"),
                TxKind::ProposeAuthority {
                    address: bob(),
                    add: false,
                },
            ),
        ];
        for (tx, kind) in cases {
            assert_eq!(tx.kind, kind);
            assert_eq!(tx.nonce, 3);
            assert_eq!(tx.fee, DEFAULT_FEE);
            assert_eq!(tx.sender_address(), alice().address());
            assert_eq!(tx.check_stateless(chain), Ok(()), "{}", kind.name());
            assert!(tx.check_stateless(ChainId(1)).is_err());
        }
    }

    #[test]
    fn bad_requests_are_errors_not_transactions() {
        let chain = ChainId(1);
        let err = build_transfer(&alice(), chain, 0, bob(), Amount::MAX, Amount(1))
            .expect_err("overflow");
        assert!(err.to_string().contains("overflows"), "{err}");
        assert!(matches!(
            build_vote(&alice(), chain, 0, vec![], DEFAULT_FEE),
            Err(WalletError::NoDelegates { kind: "vote" })
        ));
        let err = build_unvote(&alice(), chain, 0, vec![bob(), bob()], DEFAULT_FEE)
            .expect_err("duplicate");
        assert!(err.to_string().contains(&bob().to_string()), "{err}");
        // 300 delegates encode to more than the 4 KiB transaction limit.
        let many: Vec<Address> = (0..300u16)
            .map(|i| {
                let mut bytes = [0u8; 20];
                bytes[..2].copy_from_slice(&i.to_le_bytes());
                Address(bytes)
            })
            .collect();
        let err = build_vote(&alice(), chain, 0, many, DEFAULT_FEE).expect_err("too large");
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn default_fee_is_a_ten_thousandth_of_a_toy() {
        assert_eq!(DEFAULT_FEE.to_toy_string(), "0.0001");
    }
}
