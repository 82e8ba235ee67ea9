//! Transactions: who pays (sender key, nonce, fee), what they do (kind), for which chain
//! (chain id, inside the signed payload), and the sender's signature.

use crate::amount::Amount;
use crate::codec::{
    Canonical, CodecError, MAX_TX_BATCH_BYTES, MAX_TX_BYTES, MAX_TXS_PER_BATCH, decode_limited,
};
use crate::crypto::{
    Address, CryptoError, PublicKey, SecretKey, Signature, sha256d, sha256d_parts,
};
use crate::primitives::{ChainId, Hash256, TxHash};
use crate::sigcache::SignatureCache;
use crate::store::StoreError;
use borsh::{BorshDeserialize, BorshSerialize};

/// Domain tag of the signed payload, so a tx signature can never be replayed as anything else.
const TX_SIGNING_DOMAIN: &[u8] = b"toychain/tx/v1";

/// What a transaction does. Every engine's kinds are here from the start so the wire format
/// does not change when an engine arrives; an engine refuses the kinds it does not use.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub enum TxKind {
    /// Move `amount` from the sender to `to`.
    Transfer { to: Address, amount: Amount },
    /// DPoS: make the sender a delegate that can be voted into the producer set.
    RegisterDelegate,
    /// DPoS: add the sender's stake-weighted votes to these delegates.
    Vote { delegates: Vec<Address> },
    /// DPoS: withdraw the sender's votes from these delegates.
    Unvote { delegates: Vec<Address> },
    /// PoA: an authority votes to add (`add = true`) or remove an authority.
    ProposeAuthority { address: Address, add: bool },
}

impl TxKind {
    /// A short name for messages and RPC.
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Transfer { .. } => "transfer",
            TxKind::RegisterDelegate => "register-delegate",
            TxKind::Vote { .. } => "vote",
            TxKind::Unvote { .. } => "unvote",
            TxKind::ProposeAuthority { .. } => "propose-authority",
        }
    }

    /// Coins leaving the sender besides the fee.
    pub fn amount(&self) -> Amount {
        match self {
            TxKind::Transfer { amount, .. } => *amount,
            _ => Amount::ZERO,
        }
    }
}

/// The part of a transaction the sender signs.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct UnsignedTx {
    pub chain_id: ChainId,
    pub nonce: u64,
    pub sender: PublicKey,
    pub fee: Amount,
    pub kind: TxKind,
}

impl UnsignedTx {
    /// sha256d(domain ‖ payload): what the signature covers. The chain id is inside.
    pub fn signing_hash(&self) -> Hash256 {
        let payload = borsh::to_vec(self).expect("borsh serialization into a Vec cannot fail");
        Hash256(sha256d_parts(&[TX_SIGNING_DOMAIN, &payload]))
    }

    pub fn sign(self, key: &SecretKey) -> Transaction {
        let signature = key.sign(&self.signing_hash());
        Transaction {
            chain_id: self.chain_id,
            nonce: self.nonce,
            sender: self.sender,
            fee: self.fee,
            kind: self.kind,
            signature,
        }
    }
}

/// A signed transaction, as sent and stored.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    pub chain_id: ChainId,
    pub nonce: u64,
    pub sender: PublicKey,
    pub fee: Amount,
    pub kind: TxKind,
    pub signature: Signature,
}

impl Canonical for Transaction {
    const NAME: &'static str = "transaction";
    const MAX_BYTES: usize = MAX_TX_BYTES;
}

impl Transaction {
    /// Builds and signs a transaction with `key` as sender.
    pub fn signed(
        key: &SecretKey,
        chain_id: ChainId,
        nonce: u64,
        fee: Amount,
        kind: TxKind,
    ) -> Transaction {
        UnsignedTx {
            chain_id,
            nonce,
            sender: key.public_key(),
            fee,
            kind,
        }
        .sign(key)
    }

    pub fn unsigned(&self) -> UnsignedTx {
        UnsignedTx {
            chain_id: self.chain_id,
            nonce: self.nonce,
            sender: self.sender,
            fee: self.fee,
            kind: self.kind.clone(),
        }
    }

    /// Length of the canonical encoding, without encoding.
    pub fn encoded_len(&self) -> usize {
        borsh::object_length(self).unwrap_or(usize::MAX)
    }

    /// sha256d of the canonical bytes (signature included).
    pub fn hash(&self) -> TxHash {
        TxHash(sha256d(&self.encode()))
    }

    pub fn sender_address(&self) -> Address {
        self.sender.address()
    }

    /// Amount plus fee: what the sender must hold. `None` on overflow.
    pub fn total_cost(&self) -> Option<Amount> {
        self.kind.amount().checked_add(self.fee)
    }

    /// The checks that need no state: chain id, encoded size, signature (low-S only).
    pub fn check_stateless(&self, chain_id: ChainId) -> Result<(), TxError> {
        self.check_fields(chain_id)?;
        self.sender
            .verify(&self.unsigned().signing_hash(), &self.signature)
            .map_err(TxError::Signature)
    }

    /// [`Transaction::check_stateless`] with the signature answered from `cache` when this
    /// node verified it before (and remembered there when it verifies now).
    pub fn check_stateless_cached(
        &self,
        chain_id: ChainId,
        cache: &SignatureCache,
    ) -> Result<(), TxError> {
        self.check_fields(chain_id)?;
        cache
            .verify(
                &self.sender,
                &self.unsigned().signing_hash(),
                &self.signature,
            )
            .map_err(TxError::Signature)
    }

    /// [`Transaction::check_stateless_cached`] for each of `txs`, one verdict each (the
    /// same as one by one), with the signatures not in `cache` checked together
    /// ([`SignatureCache::verify_batch`]).
    pub fn check_stateless_batch_cached(
        txs: &[Transaction],
        chain_id: ChainId,
        cache: &SignatureCache,
    ) -> Vec<Result<(), TxError>> {
        let mut verdicts: Vec<Result<(), TxError>> =
            txs.iter().map(|tx| tx.check_fields(chain_id)).collect();
        let (signed, triples): (Vec<usize>, Vec<_>) = txs
            .iter()
            .enumerate()
            .filter(|(i, _)| verdicts[*i].is_ok())
            .map(|(i, tx)| (i, (tx.sender, tx.unsigned().signing_hash(), tx.signature)))
            .unzip();
        for (i, verdict) in signed.into_iter().zip(cache.verify_batch(&triples)) {
            verdicts[i] = verdict.map_err(TxError::Signature);
        }
        verdicts
    }

    /// Chain id, encoded size, amount overflow: everything stateless but the signature.
    fn check_fields(&self, chain_id: ChainId) -> Result<(), TxError> {
        if self.chain_id != chain_id {
            return Err(TxError::WrongChainId {
                expected: chain_id,
                got: self.chain_id,
            });
        }
        let len = self.encoded_len();
        if len > MAX_TX_BYTES {
            return Err(TxError::TooLarge {
                len,
                max: MAX_TX_BYTES,
            });
        }
        if self.total_cost().is_none() {
            return Err(TxError::AmountOverflow);
        }
        Ok(())
    }
}

/// Transactions gossiped together in one message, as Ethereum's `Transactions` message
/// carries many: one gossip id, signature and frame for up to [`MAX_TXS_PER_BATCH`]
/// transactions instead of one each.
///
/// Gossip message ids are content hashes, so the same transactions announced again (to a
/// peer that connected since) would be dropped as a duplicate; `sequence` is the sender's
/// counter that makes each announcement a new message. It means nothing else and receivers
/// ignore it.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct TxBatch {
    pub sequence: u64,
    pub txs: Vec<Transaction>,
}

impl TxBatch {
    /// Bytes of the encoding around the transactions (sequence and length prefix).
    pub const OVERHEAD_BYTES: usize = 8 + 4;

    /// Refuses an empty batch, more than [`MAX_TXS_PER_BATCH`] transactions, or one
    /// transaction over [`MAX_TX_BYTES`], naming the count or the index and size.
    pub fn check(&self) -> Result<(), CodecError> {
        let malformed = |reason: String| CodecError::Malformed {
            what: Self::NAME,
            reason,
        };
        if self.txs.is_empty() {
            return Err(malformed("no transactions".into()));
        }
        if self.txs.len() > MAX_TXS_PER_BATCH {
            return Err(malformed(format!(
                "{} transactions, more than the limit of {MAX_TXS_PER_BATCH}",
                self.txs.len()
            )));
        }
        for (index, tx) in self.txs.iter().enumerate() {
            let len = tx.encoded_len();
            if len > MAX_TX_BYTES {
                return Err(malformed(format!(
                    "transaction {index} is {len} bytes, more than the limit of {MAX_TX_BYTES}"
                )));
            }
        }
        Ok(())
    }
}

impl Canonical for TxBatch {
    const NAME: &'static str = "transaction batch";
    const MAX_BYTES: usize = MAX_TX_BATCH_BYTES;

    /// Strict decoding ([`decode_limited`]) and [`TxBatch::check`].
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let batch: TxBatch = decode_limited(bytes, Self::MAX_BYTES, Self::NAME)?;
        batch.check()?;
        Ok(batch)
    }
}

/// Why a transaction is invalid. `Display` gives the message users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("wrong chain id: expected {expected}, got {got}")]
    WrongChainId { expected: ChainId, got: ChainId },
    #[error("transaction is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("amount plus fee overflows")]
    AmountOverflow,
    #[error("{0}")]
    Signature(CryptoError),
    #[error("nonce too low: expected {expected}, got {got}")]
    NonceTooLow { expected: u64, got: u64 },
    #[error("nonce too high: expected {expected}, got {got}")]
    NonceTooHigh { expected: u64, got: u64 },
    #[error("insufficient balance: {address} has {available}, needs {needed}")]
    InsufficientBalance {
        address: Address,
        available: Amount,
        needed: Amount,
    },
    #[error("balance of {address} would overflow")]
    BalanceOverflow { address: Address },
    #[error("{kind} transactions are not used by the {engine} engine")]
    UnsupportedKind {
        kind: &'static str,
        engine: &'static str,
    },
    #[error("{kind} transaction refused by the engine: {reason}")]
    EngineRefused { kind: &'static str, reason: String },
    /// Our store failed while the transaction was applied (disk full, I/O error): says
    /// nothing about the transaction, which may be tried again.
    #[error("the state could not be read or written while applying the transaction: {0}")]
    Store(StoreError),
}

impl TxError {
    /// True when the transaction can never become valid (as opposed to "not yet" or "no
    /// longer" valid against the current state).
    pub fn is_bad_data(&self) -> bool {
        matches!(
            self,
            TxError::WrongChainId { .. }
                | TxError::TooLarge { .. }
                | TxError::AmountOverflow
                | TxError::Signature(_)
                | TxError::UnsupportedKind { .. }
        )
    }

    /// True when our own store failed, not the transaction: trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TxError::Store(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(key: &SecretKey, chain: u64) -> Transaction {
        Transaction::signed(
            key,
            ChainId(chain),
            0,
            Amount(1_000),
            TxKind::Transfer {
                to: SecretKey::from_seed("bob").address(),
                amount: Amount(5 * crate::amount::COIN),
            },
        )
    }

    #[test]
    fn a_tx_signed_for_another_chain_is_rejected() {
        let key = SecretKey::from_seed("alice");
        let tx = transfer(&key, 7);
        assert_eq!(tx.check_stateless(ChainId(7)), Ok(()));
        assert_eq!(
            tx.check_stateless(ChainId(8)),
            Err(TxError::WrongChainId {
                expected: ChainId(8),
                got: ChainId(7)
            })
        );
        // Rewriting the chain id breaks the signature, because the id is signed.
        let mut moved = tx.clone();
        moved.chain_id = ChainId(8);
        assert_eq!(
            moved.check_stateless(ChainId(8)),
            Err(TxError::Signature(CryptoError::BadSignature))
        );
    }

    #[test]
    fn high_s_twin_of_a_tx_signature_is_rejected() {
        let key = SecretKey::from_seed("alice");
        let mut tx = transfer(&key, 1);
        tx.signature = tx.signature.malleated().expect("twin");
        assert_eq!(
            tx.check_stateless(ChainId(1)),
            Err(TxError::Signature(CryptoError::HighS))
        );
    }

    #[test]
    fn tampered_fields_break_the_signature() {
        let key = SecretKey::from_seed("alice");
        let tx = transfer(&key, 1);
        let mut fee = tx.clone();
        fee.fee = Amount(0);
        let mut nonce = tx.clone();
        nonce.nonce = 1;
        let mut sender = tx.clone();
        sender.sender = SecretKey::from_seed("eve").public_key();
        for bad in [fee, nonce, sender] {
            assert_eq!(
                bad.check_stateless(ChainId(1)),
                Err(TxError::Signature(CryptoError::BadSignature))
            );
        }
    }

    #[test]
    fn a_batch_round_trips_and_malformed_batches_are_refused_by_name() {
        let key = SecretKey::from_seed("alice");
        let batch = TxBatch {
            sequence: 9,
            txs: vec![transfer(&key, 1), transfer(&key, 2)],
        };
        let bytes = batch.encode();
        assert_eq!(
            bytes.len(),
            TxBatch::OVERHEAD_BYTES + 2 * batch.txs[0].encode().len()
        );
        assert_eq!(TxBatch::decode(&bytes), Ok(batch.clone()));

        let reason = |bytes: &[u8]| TxBatch::decode(bytes).expect_err("malformed").to_string();
        let empty = TxBatch {
            sequence: 0,
            txs: Vec::new(),
        }
        .encode();
        assert!(
            reason(&empty).contains("no transactions"),
            "{}",
            reason(&empty)
        );
        let many = TxBatch {
            sequence: 0,
            txs: vec![transfer(&key, 1); MAX_TXS_PER_BATCH + 1],
        }
        .encode();
        let text = reason(&many);
        assert!(
            text.contains("1025 transactions, more than the limit of 1024"),
            "{text}"
        );
        // A length prefix claiming far more transactions than the bytes hold.
        let mut lying = bytes.clone();
        lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            reason(&lying).contains("malformed transaction batch"),
            "{}",
            reason(&lying)
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(TxBatch::decode(&trailing).is_err());
        assert!(TxBatch::decode(&bytes[..bytes.len() - 1]).is_err());
        // A single transaction (the old one-per-message form) is not a batch.
        assert!(TxBatch::decode(&batch.txs[0].encode()).is_err());
        let big = Transaction {
            kind: TxKind::Vote {
                delegates: vec![Address([1; 20]); MAX_TX_BYTES / 20],
            },
            ..transfer(&key, 1)
        };
        let oversized = TxBatch {
            sequence: 0,
            txs: vec![transfer(&key, 1), big],
        }
        .encode();
        let text = reason(&oversized);
        assert!(text.contains("transaction 1 is"), "{text}");
    }

    #[test]
    fn overflowing_amount_plus_fee_is_rejected_before_the_signature() {
        let key = SecretKey::from_seed("alice");
        let tx = Transaction::signed(
            &key,
            ChainId(1),
            0,
            Amount(2),
            TxKind::Transfer {
                to: key.address(),
                amount: Amount::MAX,
            },
        );
        assert_eq!(tx.check_stateless(ChainId(1)), Err(TxError::AmountOverflow));
    }
}
