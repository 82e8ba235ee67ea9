//! Typed values in an engine's state namespace (borsh bytes under
//! `StateKey::engine(namespace, key)`): the authority snapshot of PoA, the delegate book
//! of DPoS, the stake records of PoS. They live in the chain state, so they are committed
//! by the state root, undone by a reorg and read at any block like balances.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::decode_limited;
use chain::{StateKey, StateOverlay, StateRead, StoreError};

/// Reads the value under `key`, or `None` when absent; undecodable bytes are a corrupt
/// store (only the engine writes there, through [`put`]). Decoding is strict, like every
/// other stored record's: the state root hashes these bytes, so a value has one encoding,
/// and a map written out of key order is refused rather than read as the sorted one.
pub fn get<T: BorshDeserialize + BorshSerialize>(
    state: &dyn StateRead,
    namespace: &'static str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match state.get(&StateKey::engine(namespace, key))? {
        None => Ok(None),
        Some(bytes) => decode_limited(&bytes, usize::MAX, namespace)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: namespace,
                reason: format!("engine value {}: {e}", String::from_utf8_lossy(key)),
            }),
    }
}

/// Like [`get`], for values the engine writes at genesis: absent is a corrupt store.
pub fn require<T: BorshDeserialize + BorshSerialize>(
    state: &dyn StateRead,
    namespace: &'static str,
    key: &[u8],
) -> Result<T, StoreError> {
    get(state, namespace, key)?.ok_or_else(|| StoreError::Corrupt {
        what: namespace,
        reason: format!(
            "engine value {} is missing (was the chain created with another engine?)",
            String::from_utf8_lossy(key)
        ),
    })
}

pub fn put<T: BorshSerialize>(
    state: &mut StateOverlay<'_>,
    namespace: &'static str,
    key: &[u8],
    value: &T,
) {
    state.put(
        StateKey::engine(namespace, key),
        borsh::to_vec(value).expect("borsh writes to a Vec without failing"),
    );
}

/// Credits a block reward to `producer` (nothing for zero); a balance that would overflow
/// is the engine's own `overflow` error, refused as the engine `engine`.
pub fn pay_reward<E>(
    state: &mut StateOverlay<'_>,
    engine: &'static str,
    producer: &chain::Address,
    amount: chain::Amount,
    overflow: impl FnOnce(chain::Address) -> E,
) -> Result<(), chain::EngineError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    if amount.base_units() == 0 {
        return Ok(());
    }
    state.credit(producer, amount).map_err(|e| match e {
        chain::state::CreditOverflow::Overflow { address } => {
            chain::EngineError::rejected(engine, overflow(address))
        }
        chain::state::CreditOverflow::Store(e) => chain::EngineError::Store(e),
    })
}
