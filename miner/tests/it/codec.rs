//! The engines' decoders, as the fuzz targets check them (`fuzz/`, `engine_data` and
//! `stored_value`): arbitrary bytes never panic, and any bytes that decode re-encode to
//! exactly themselves. Covers header engine data (DPoS evidence, the PoS stake proof) and
//! the values each engine keeps in its state namespace.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::block::EngineFields;
use chain::{
    Address, Amount, BlockHash, Hash256, Header, Height, StateKey, StateRead, StoreError, Timestamp,
};
use miner::dpos::{
    Delegate, DelegateBook, DposEngine, Equivocation, MAX_EVIDENCE_PER_BLOCK, RoundState,
};
use miner::engine_state;
use miner::poa::Snapshot;
use miner::pos::{
    AgeBucket, CoinAge, EntropyLog, MAX_AGE_BUCKETS, ModifierRecord, StakeModifier, StakeProof,
};
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A state holding one value under every key.
#[derive(Debug)]
struct OneValue(Vec<u8>);

impl StateRead for OneValue {
    fn get(&self, _key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Some(self.0.clone()))
    }
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u32>(),
        address(),
        vec(any::<u8>(), 0..40),
        vec(any::<u8>(), 0..100),
    )
        .prop_map(|(parent, height, time, producer, data, seal)| Header {
            version: 1,
            parent: BlockHash(parent),
            height: Height(height),
            timestamp: Timestamp(u64::from(time)),
            tx_root: Hash256([1; 32]),
            state_root: Hash256([2; 32]),
            producer,
            engine: EngineFields {
                bits: 0,
                nonce: 0,
                data,
                seal,
            },
        })
}

fn evidence() -> impl Strategy<Value = Vec<Equivocation>> {
    vec(
        (header(), header()).prop_map(|(first, second)| Equivocation { first, second }),
        1..=MAX_EVIDENCE_PER_BLOCK,
    )
}

fn stake_proof() -> impl Strategy<Value = StakeProof> {
    (
        vec((1..=u64::MAX, any::<u64>()), 0..=MAX_AGE_BUCKETS),
        any::<[u8; 32]>(),
    )
        .prop_map(|(mut buckets, modifier)| {
            // Strictly increasing origins, as a valid proof has them.
            buckets.sort_by_key(|&(_, origin)| origin);
            buckets.dedup_by_key(|&mut (_, origin)| origin);
            StakeProof {
                age: CoinAge {
                    buckets: buckets
                        .into_iter()
                        .map(|(amount, origin)| AgeBucket {
                            amount: Amount(amount),
                            origin: Timestamp(origin),
                        })
                        .collect(),
                },
                modifier: StakeModifier(Hash256(modifier)),
            }
        })
}

fn to_vec<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh serialization into a Vec cannot fail")
}

fn evidence_decodes_canonically(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(list) = DposEngine::decode_evidence(bytes) {
        if bytes.is_empty() {
            prop_assert!(list.is_empty());
        } else {
            prop_assert!((1..=MAX_EVIDENCE_PER_BLOCK).contains(&list.len()));
            prop_assert_eq!(to_vec(&list), bytes.to_vec());
        }
    }
    Ok(())
}

fn stake_proof_decodes_canonically(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(proof) = StakeProof::from_bytes(bytes) {
        prop_assert_eq!(proof.to_bytes(), bytes.to_vec());
    }
    Ok(())
}

/// Reading `bytes` as an engine value of type `T` either fails or gives a value whose
/// encoding is exactly `bytes`.
fn engine_value_decodes_canonically<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: BorshSerialize + BorshDeserialize + std::fmt::Debug,
{
    let state = OneValue(bytes.to_vec());
    if let Ok(value) = engine_state::get::<T>(&state, "test", b"value") {
        let value = value.expect("OneValue holds a value under every key");
        prop_assert_eq!(to_vec(&value), bytes.to_vec(), "{:?}", value);
    }
    Ok(())
}

fn every_engine_value_decodes_canonically(bytes: &[u8]) -> Result<(), TestCaseError> {
    engine_value_decodes_canonically::<DelegateBook>(bytes)?;
    engine_value_decodes_canonically::<RoundState>(bytes)?;
    engine_value_decodes_canonically::<Snapshot<Address>>(bytes)?;
    engine_value_decodes_canonically::<ModifierRecord>(bytes)?;
    engine_value_decodes_canonically::<EntropyLog>(bytes)?;
    engine_value_decodes_canonically::<CoinAge>(bytes)?;
    engine_value_decodes_canonically::<Timestamp>(bytes)
}

/// A delegate book's maps written as lists, in any order and with repeats: what a store or
/// a bug could hold where the engine writes sorted maps.
fn book_entries() -> impl Strategy<Value = Vec<u8>> {
    let delegate = (any::<bool>(), any::<u64>(), vec(any::<u64>(), 0..3)).prop_map(
        |(genesis, produced, equivocations)| Delegate {
            genesis,
            produced,
            missed: 0,
            last_produced: produced,
            equivocations,
        },
    );
    // Few distinct addresses, so repeats happen.
    let small_address = (0u8..4).prop_map(|b| Address([b; 20]));
    (
        vec((small_address.clone(), delegate), 0..4),
        vec((small_address.clone(), vec(small_address, 0..3)), 0..3),
    )
        .prop_map(|lists| to_vec(&lists))
}

proptest! {
    #[test]
    fn evidence_round_trips(list in evidence()) {
        let bytes = to_vec(&list);
        prop_assert_eq!(DposEngine::decode_evidence(&bytes).ok(), Some(list));
    }

    #[test]
    fn stake_proofs_round_trip(proof in stake_proof()) {
        prop_assert_eq!(StakeProof::from_bytes(&proof.to_bytes()), Ok(proof));
    }

    #[test]
    fn random_bytes_decode_only_canonically_as_engine_data_and_values(
        bytes in vec(any::<u8>(), 0..300),
    ) {
        evidence_decodes_canonically(&bytes)?;
        stake_proof_decodes_canonically(&bytes)?;
        every_engine_value_decodes_canonically(&bytes)?;
    }

    #[test]
    fn mutated_engine_data_decodes_only_canonically(
        list in evidence(),
        proof in stake_proof(),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for bytes in [to_vec(&list), proof.to_bytes()] {
            let mut flipped = bytes.clone();
            flipped[index.index(bytes.len())] = byte;
            evidence_decodes_canonically(&flipped)?;
            stake_proof_decodes_canonically(&flipped)?;
        }
        let bytes = to_vec(&list);
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(truncated.is_empty() || DposEngine::decode_evidence(truncated).is_err());
        let bytes = proof.to_bytes();
        prop_assert!(StakeProof::from_bytes(&bytes[..cut.index(bytes.len())]).is_err());
    }

    #[test]
    fn delegate_books_in_any_order_decode_only_canonically(bytes in book_entries()) {
        engine_value_decodes_canonically::<DelegateBook>(&bytes)?;
    }
}

#[test]
fn a_delegate_book_written_out_of_key_order_is_refused() {
    let (a, b) = (Address([1; 20]), Address([2; 20]));
    let sorted = DelegateBook {
        delegates: BTreeMap::from([(a, Delegate::default()), (b, Delegate::default())]),
        votes: BTreeMap::new(),
    };
    let state = OneValue(to_vec(&sorted));
    assert_eq!(
        engine_state::get::<DelegateBook>(&state, "dpos", b"book"),
        Ok(Some(sorted.clone()))
    );
    // The same two delegates, b before a: plain borsh reads it as the sorted book.
    let unsorted = to_vec(&(
        vec![(b, Delegate::default()), (a, Delegate::default())],
        Vec::<(Address, Vec<Address>)>::new(),
    ));
    assert_eq!(
        borsh::from_slice::<DelegateBook>(&unsorted).expect("borsh alone accepts it"),
        sorted
    );
    let err = engine_state::get::<DelegateBook>(&OneValue(unsorted), "dpos", b"book")
        .expect_err("not the canonical encoding");
    assert!(
        matches!(err, StoreError::Corrupt { what: "dpos", .. }),
        "{err}"
    );
}
