//! Canonical encoding: round trips for every type, and any bytes that decode re-encode to
//! exactly themselves (so one value has one encoding and one hash), for what is sent
//! (transactions, headers, blocks) and for every record the store keeps. The fuzz targets
//! (`fuzz/`) check the same properties.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::block::EngineFields;
use chain::codec::{Canonical, CodecError, MAX_TX_BYTES};
use chain::reader::UndoRecord;
use chain::state::{LTHASH_LANES, LtHash};
use chain::store::{VALUE_VERSION, decode_value, encode_value};
use chain::{
    Address, Amount, Block, BlockHash, BlockMeta, ChainId, Hash256, Header, Height, PublicKey,
    Signature, StateKey, StateRead, StoreError, Timestamp, Transaction, TxKind, Weight,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::fmt::Debug;

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}

fn kind() -> impl Strategy<Value = TxKind> {
    prop_oneof![
        (address(), any::<u64>()).prop_map(|(to, a)| TxKind::Transfer {
            to,
            amount: Amount(a)
        }),
        Just(TxKind::RegisterDelegate),
        vec(address(), 0..4).prop_map(|delegates| TxKind::Vote { delegates }),
        vec(address(), 0..4).prop_map(|delegates| TxKind::Unvote { delegates }),
        (address(), any::<bool>())
            .prop_map(|(address, add)| TxKind::ProposeAuthority { address, add }),
    ]
}

fn tx() -> impl Strategy<Value = Transaction> {
    (
        any::<u64>(),
        any::<u64>(),
        vec(any::<u8>(), 33),
        any::<u64>(),
        kind(),
        vec(any::<u8>(), 64),
    )
        .prop_map(|(chain_id, nonce, key, fee, kind, sig)| Transaction {
            chain_id: ChainId(chain_id),
            nonce,
            sender: PublicKey(key.try_into().expect("33 bytes")),
            fee: Amount(fee),
            kind,
            signature: Signature(sig.try_into().expect("64 bytes")),
        })
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        address(),
        (
            any::<u32>(),
            any::<u32>(),
            vec(any::<u8>(), 0..40),
            vec(any::<u8>(), 0..70),
        ),
    )
        .prop_map(
            |(
                version,
                parent,
                height,
                time,
                tx_root,
                state_root,
                producer,
                (bits, nonce, data, seal),
            )| Header {
                version,
                parent: BlockHash(parent),
                height: Height(height),
                timestamp: Timestamp(u64::from(time)),
                tx_root: Hash256(tx_root),
                state_root: Hash256(state_root),
                producer,
                engine: EngineFields {
                    bits,
                    nonce,
                    data,
                    seal,
                },
            },
        )
}

fn block() -> impl Strategy<Value = Block> {
    (header(), vec(tx(), 0..4)).prop_map(|(header, txs)| Block { header, txs })
}

/// Decoding `bytes` either fails or gives a value whose encoding is exactly `bytes`.
fn decodes_canonically<T: Canonical>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = T::decode(bytes) {
        prop_assert_eq!(value.encode(), bytes.to_vec());
    }
    Ok(())
}

proptest! {
    #[test]
    fn tx_round_trips(t in tx()) {
        prop_assert_eq!(Transaction::decode(&t.encode()), Ok(t.clone()));
    }

    #[test]
    fn header_round_trips(h in header()) {
        prop_assert_eq!(Header::decode(&h.encode()), Ok(h.clone()));
    }

    #[test]
    fn block_round_trips(b in block()) {
        prop_assert_eq!(Block::decode(&b.encode()), Ok(b.clone()));
    }

    #[test]
    fn random_bytes_decode_only_canonically(bytes in vec(any::<u8>(), 0..400)) {
        decodes_canonically::<Transaction>(&bytes)?;
        decodes_canonically::<Header>(&bytes)?;
        decodes_canonically::<Block>(&bytes)?;
    }

    #[test]
    fn mutated_encodings_decode_only_canonically(
        b in block(),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = b.encode();
        let mut flipped = bytes.clone();
        let i = index.index(flipped.len());
        flipped[i] = byte;
        decodes_canonically::<Block>(&flipped)?;
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(Block::decode(truncated).is_err());
        let mut t_bytes = b.txs.first().map(Canonical::encode).unwrap_or_default();
        if !t_bytes.is_empty() {
            let j = index.index(t_bytes.len());
            t_bytes[j] = byte;
            decodes_canonically::<Transaction>(&t_bytes)?;
        }
    }
}

fn block_meta() -> impl Strategy<Value = BlockMeta> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<bool>(),
    )
        .prop_map(|(height, parent, weight, invalid)| BlockMeta {
            height: Height(height),
            parent: BlockHash(parent),
            total_weight: Weight::from_be_bytes(weight),
            invalid,
        })
}

/// The fields of an [`UndoRecord`] (which only the chain builds), in its encoding order:
/// the parent's state hash and each changed key with its old value.
type UndoLayout = (Vec<u8>, Vec<(Vec<u8>, Option<Vec<u8>>)>);

fn undo_layout() -> impl Strategy<Value = UndoLayout> {
    (
        prop_oneof![Just(vec![0; LTHASH_LANES * 2]), vec(any::<u8>(), 0..8)],
        vec(
            (vec(any::<u8>(), 0..24), option::of(vec(any::<u8>(), 0..24))),
            0..4,
        ),
    )
}

/// A state holding one value under every key, to feed bytes to [`StateRead::account`].
#[derive(Debug)]
struct OneValue(Vec<u8>);

impl StateRead for OneValue {
    fn get(&self, _key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Some(self.0.clone()))
    }
}

/// Reading `bytes` as a stored record of type `T` either fails or gives a value whose
/// encoding (version byte included) is exactly `bytes`.
fn stored_decodes_canonically<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: BorshSerialize + BorshDeserialize + Debug,
{
    if let Ok(value) = decode_value::<T>(bytes, "record") {
        prop_assert_eq!(encode_value(&value), bytes.to_vec(), "{:?}", value);
    }
    Ok(())
}

/// The same for every record the store keeps: the versioned ones, accounts in the state
/// column and the head's state hash.
fn every_stored_record_decodes_canonically(bytes: &[u8]) -> Result<(), TestCaseError> {
    stored_decodes_canonically::<Header>(bytes)?;
    stored_decodes_canonically::<Vec<Transaction>>(bytes)?;
    stored_decodes_canonically::<BlockMeta>(bytes)?;
    stored_decodes_canonically::<UndoRecord>(bytes)?;
    stored_decodes_canonically::<(BlockHash, u32)>(bytes)?;
    if let Ok(account) = OneValue(bytes.to_vec()).account(&Address::default()) {
        let again = borsh::to_vec(&account).expect("borsh serialization into a Vec cannot fail");
        prop_assert_eq!(again, bytes.to_vec());
    }
    if let Some(lthash) = LtHash::from_bytes(bytes) {
        prop_assert_eq!(lthash.to_bytes(), bytes.to_vec());
    }
    Ok(())
}

proptest! {
    #[test]
    fn stored_records_round_trip(
        h in header(),
        txs in vec(tx(), 0..3),
        meta in block_meta(),
        location in (any::<[u8; 32]>(), any::<u32>()),
    ) {
        prop_assert_eq!(decode_value::<Header>(&encode_value(&h), "header"), Ok(h));
        prop_assert_eq!(decode_value::<Vec<Transaction>>(&encode_value(&txs), "block body"), Ok(txs));
        prop_assert_eq!(decode_value::<BlockMeta>(&encode_value(&meta), "block meta"), Ok(meta));
        let location = (BlockHash(location.0), location.1);
        prop_assert_eq!(
            decode_value::<(BlockHash, u32)>(&encode_value(&location), "tx index entry"),
            Ok(location)
        );
    }

    #[test]
    fn undo_records_decode_from_their_layout_and_re_encode(undo in undo_layout()) {
        let bytes = encode_value(&undo);
        let record: UndoRecord = decode_value(&bytes, "undo record").expect("its own layout");
        prop_assert_eq!(encode_value(&record), bytes);
    }

    #[test]
    fn random_bytes_decode_only_canonically_as_stored_records(
        bytes in vec(any::<u8>(), 0..400),
    ) {
        every_stored_record_decodes_canonically(&bytes)?;
        // Past the version byte, to reach every record's own decoder.
        let mut versioned = vec![VALUE_VERSION];
        versioned.extend_from_slice(&bytes);
        every_stored_record_decodes_canonically(&versioned)?;
    }

    #[test]
    fn mutated_stored_records_decode_only_canonically(
        b in block(),
        meta in block_meta(),
        undo in undo_layout(),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for bytes in [
            encode_value(&b.header),
            encode_value(&b.txs),
            encode_value(&meta),
            encode_value(&undo),
        ] {
            let mut flipped = bytes.clone();
            flipped[index.index(bytes.len())] = byte;
            every_stored_record_decodes_canonically(&flipped)?;
            every_stored_record_decodes_canonically(&bytes[..cut.index(bytes.len())])?;
        }
        let bytes = encode_value(&undo);
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(decode_value::<UndoRecord>(truncated, "undo record").is_err());
    }
}

fn sample_tx(kind: TxKind) -> Transaction {
    Transaction {
        chain_id: ChainId(1),
        nonce: 0,
        sender: PublicKey([2; 33]),
        fee: Amount(1),
        kind,
        signature: Signature([1; 64]),
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = sample_tx(TxKind::RegisterDelegate).encode();
    bytes.push(0);
    assert!(matches!(
        Transaction::decode(&bytes),
        Err(CodecError::Malformed { .. })
    ));
}

#[test]
fn a_bool_other_than_0_or_1_is_refused() {
    let bytes = sample_tx(TxKind::ProposeAuthority {
        address: Address([3; 20]),
        add: true,
    })
    .encode();
    // The bool is the last byte before the 64-byte signature.
    let at = bytes.len() - 65;
    assert_eq!(bytes[at], 1);
    let mut bad = bytes.clone();
    bad[at] = 2;
    assert!(Transaction::decode(&bad).is_err());
}

#[test]
fn an_unknown_tx_kind_is_refused() {
    let bytes = sample_tx(TxKind::RegisterDelegate).encode();
    // chain id (8) + nonce (8) + key (33) + fee (8) = 57: the kind's tag.
    assert_eq!(bytes[57], 1);
    let mut bad = bytes;
    bad[57] = 9;
    let err = Transaction::decode(&bad).expect_err("unknown tag");
    assert!(err.to_string().contains("transaction"), "{err}");
}

#[test]
fn oversize_input_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_TX_BYTES + 1];
    assert_eq!(
        Transaction::decode(&bytes),
        Err(CodecError::TooLarge {
            what: "transaction",
            len: MAX_TX_BYTES + 1,
            max: MAX_TX_BYTES
        })
    );
}
