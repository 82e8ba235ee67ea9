//! The properties the fuzz targets check, one function per decoder (each fuzz target is a
//! one-line call into here, and the seed generator runs the same functions over its seeds).
//!
//! Every function takes arbitrary bytes and asserts:
//!
//! - the decoder does not panic (whatever it is given);
//! - when it accepts the bytes, encoding the value gives back exactly those bytes (one value,
//!   one encoding: the chain hashes and signs encodings), and decoding that encoding again
//!   gives an equal value;
//! - the cheap checks that follow decoding on the real path (hashing, stateless validation,
//!   nested decodes) do not panic either.
//!
//! Each returns whether the input decoded, so the seed generator can tell its valid seeds
//! from its invalid ones. The text decoders behind the RPC params are the one exception to
//! "exactly those bytes": they accept upper case and a `0x` prefix, so the property there is
//! that the value prints as the lower-case input without the prefix.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::Canonical;
use chain::reader::UndoRecord;
use chain::state::LtHash;
use chain::store::{decode_value, encode_value};
use chain::validation::{check_block_stateless, check_header_fields};
use chain::{
    Address, Block, BlockHash, BlockMeta, ChainId, Header, StateKey, StateRead, StoreError,
    Timestamp, Transaction, TxHash,
};
use miner::dpos::{DelegateBook, DposEngine, MAX_EVIDENCE_PER_BLOCK, RoundState};
use miner::engine_state;
use miner::poa::Snapshot;
use miner::pos::{EntropyLog, ModifierRecord, StakeProof};
use net::config::DEFAULT_MAX_SYNC_RESPONSE_BYTES;
use net::{SyncRequest, SyncResponse};
use std::fmt::Debug;

/// A property over arbitrary bytes: panics when it does not hold, returns whether the bytes
/// decoded.
pub type Property = fn(&[u8]) -> bool;

/// Every fuzz target: its name (a `fuzz_targets/<name>.rs` and a `corpus/<name>/`) and the
/// property it checks.
pub const TARGETS: [(&str, Property); 8] = [
    ("tx", tx),
    ("header", header),
    ("block", block),
    ("sync_request", sync_request),
    ("sync_response", sync_response),
    ("stored_value", stored_value),
    ("engine_data", engine_data),
    ("rpc_params", rpc_params),
];

/// Any slot length a DPoS chain may have (evidence checks divide by it).
const EVIDENCE_SLOT_SECS: u64 = 3;

/// Asserts that `value`, decoded from `data`, encodes to exactly `data` and decodes back
/// to itself.
fn assert_round_trip<T: PartialEq + Debug>(
    data: &[u8],
    value: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Option<T>,
) {
    let again = encode(value);
    assert_eq!(
        again, data,
        "{value:?} was decoded from bytes it does not encode to"
    );
    assert_eq!(
        decode(&again).as_ref(),
        Some(value),
        "the canonical encoding decodes to another value"
    );
}

fn to_vec<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh serialization into a Vec cannot fail")
}

/// A signed transaction, as gossiped and as `tx_submit` takes it.
pub fn tx(data: &[u8]) -> bool {
    let Ok(tx) = Transaction::decode(data) else {
        return false;
    };
    assert_round_trip(data, &tx, Canonical::encode, |b| {
        Transaction::decode(b).ok()
    });
    let _ = tx.hash();
    let _ = tx.check_stateless(tx.chain_id);
    true
}

/// A header, as synced and as carried in DPoS evidence.
pub fn header(data: &[u8]) -> bool {
    let Ok(header) = Header::decode(data) else {
        return false;
    };
    assert_round_trip(data, &header, Canonical::encode, |b| Header::decode(b).ok());
    let _ = header.hash();
    let _ = header.seal_hash();
    let _ = check_header_fields(&header);
    true
}

/// A block, as gossiped and synced.
pub fn block(data: &[u8]) -> bool {
    let Ok(block) = Block::decode(data) else {
        return false;
    };
    assert_round_trip(data, &block, Canonical::encode, |b| Block::decode(b).ok());
    let chain_id = block.txs.first().map_or(ChainId(0), |t| t.chain_id);
    // No cache: every signature is checked, as on a node that never saw the txs.
    let _ = check_block_stateless(&block, chain_id, &chain::SignatureCache::new(0));
    true
}

/// A range-sync request, as a peer sends it.
pub fn sync_request(data: &[u8]) -> bool {
    let Ok(request) = SyncRequest::decode(data) else {
        return false;
    };
    assert_round_trip(data, &request, SyncRequest::encode, |b| {
        SyncRequest::decode(b).ok()
    });
    assert_eq!(
        request.check(),
        Ok(()),
        "a decoded request breaks the limits"
    );
    true
}

/// A range-sync response under the default size limit, and the blocks or headers inside it
/// (which the node decodes next).
pub fn sync_response(data: &[u8]) -> bool {
    let decode = |b: &[u8]| SyncResponse::decode(b, DEFAULT_MAX_SYNC_RESPONSE_BYTES).ok();
    let Some(response) = decode(data) else {
        return false;
    };
    assert_round_trip(data, &response, SyncResponse::encode, decode);
    assert_eq!(response.encoded_len(), data.len());
    assert_eq!(
        response.check(),
        Ok(()),
        "a decoded response breaks the limits"
    );
    match &response {
        SyncResponse::Blocks(items) => items.iter().for_each(|item| {
            block(item);
        }),
        SyncResponse::Headers(items) => items.iter().for_each(|item| {
            header(item);
        }),
        SyncResponse::Status { .. } | SyncResponse::Error(_) => {}
    }
    true
}

/// The records the store keeps, each read by its own decoder: the versioned records of
/// [`chain::store::decode_value`], the raw account and head state hash, and the engines'
/// values in their state namespaces ([`miner::engine_state::get`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKind {
    /// `headers`: block hash → header.
    Header,
    /// `bodies`: block hash → transactions.
    Body,
    /// `block_meta`: block hash → [`BlockMeta`].
    BlockMeta,
    /// `undo`: block hash → [`UndoRecord`].
    Undo,
    /// `tx_index`: tx hash → (block hash, index).
    TxIndex,
    /// `state`: an account's balance and nonce.
    Account,
    /// `meta`: the state hash at the head.
    HeadLtHash,
    /// `state`, DPoS namespace: the delegate book.
    DposBook,
    /// `state`, DPoS namespace: the round in progress.
    DposRound,
    /// `state`, PoA namespace: the authority snapshot.
    PoaSnapshot,
    /// `state`, PoS namespace: the newest stake modifier.
    PosModifier,
    /// `state`, PoS namespace: the entropy log.
    PosEntropy,
    /// `state`, PoS namespace: the genesis time and every staker's age origin.
    PosTime,
}

impl StoredKind {
    pub const ALL: [StoredKind; 13] = [
        StoredKind::Header,
        StoredKind::Body,
        StoredKind::BlockMeta,
        StoredKind::Undo,
        StoredKind::TxIndex,
        StoredKind::Account,
        StoredKind::HeadLtHash,
        StoredKind::DposBook,
        StoredKind::DposRound,
        StoredKind::PoaSnapshot,
        StoredKind::PosModifier,
        StoredKind::PosEntropy,
        StoredKind::PosTime,
    ];

    /// The kind a fuzz input's first byte selects.
    pub fn from_byte(byte: u8) -> StoredKind {
        Self::ALL[usize::from(byte) % Self::ALL.len()]
    }

    /// The first byte that selects this kind.
    pub fn tag(self) -> u8 {
        let index = Self::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is in ALL");
        u8::try_from(index).expect("fewer than 256 kinds")
    }
}

/// A stored record: the first byte picks the record type ([`StoredKind::from_byte`]), the
/// rest is the stored value.
pub fn stored_value(data: &[u8]) -> bool {
    let Some((&tag, value)) = data.split_first() else {
        return false;
    };
    match StoredKind::from_byte(tag) {
        StoredKind::Header => versioned::<Header>(value, "header"),
        StoredKind::Body => versioned::<Vec<Transaction>>(value, "block body"),
        StoredKind::BlockMeta => versioned::<BlockMeta>(value, "block meta"),
        StoredKind::Undo => versioned::<UndoRecord>(value, "undo record"),
        StoredKind::TxIndex => versioned::<(BlockHash, u32)>(value, "tx index entry"),
        StoredKind::Account => account(value),
        StoredKind::HeadLtHash => head_lthash(value),
        StoredKind::DposBook => engine_value::<DelegateBook>(value, miner::dpos::ENGINE_NAME),
        StoredKind::DposRound => engine_value::<RoundState>(value, miner::dpos::ENGINE_NAME),
        StoredKind::PoaSnapshot => {
            engine_value::<Snapshot<Address>>(value, miner::poa::ENGINE_NAME)
        }
        StoredKind::PosModifier => engine_value::<ModifierRecord>(value, miner::pos::ENGINE_NAME),
        StoredKind::PosEntropy => engine_value::<EntropyLog>(value, miner::pos::ENGINE_NAME),
        StoredKind::PosTime => engine_value::<Timestamp>(value, miner::pos::ENGINE_NAME),
    }
}

fn versioned<T>(data: &[u8], what: &'static str) -> bool
where
    T: BorshSerialize + BorshDeserialize + PartialEq + Debug,
{
    let Ok(value) = decode_value::<T>(data, what) else {
        return false;
    };
    assert_round_trip(data, &value, encode_value, |b| decode_value(b, what).ok());
    true
}

/// A state that holds `self.0` under every key: feeds one stored value to the decoders that
/// read through [`StateRead`].
#[derive(Debug)]
struct OneValue<'a>(&'a [u8]);

impl StateRead for OneValue<'_> {
    fn get(&self, _key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Some(self.0.to_vec()))
    }
}

fn account(data: &[u8]) -> bool {
    let read = |b: &[u8]| OneValue(b).account(&Address::default()).ok();
    let Some(account) = read(data) else {
        return false;
    };
    assert_round_trip(data, &account, to_vec, read);
    true
}

fn head_lthash(data: &[u8]) -> bool {
    let Some(lthash) = LtHash::from_bytes(data) else {
        return false;
    };
    assert_round_trip(data, &lthash, LtHash::to_bytes, LtHash::from_bytes);
    true
}

fn engine_value<T>(data: &[u8], namespace: &'static str) -> bool
where
    T: BorshSerialize + BorshDeserialize + PartialEq + Debug,
{
    // The key only names the value in errors; `OneValue` holds the bytes under every key.
    let read = |b: &[u8]| {
        engine_state::get::<T>(&OneValue(b), namespace, b"fuzz")
            .ok()
            .flatten()
    };
    let Some(value) = read(data) else {
        return false;
    };
    assert_round_trip(data, &value, to_vec, read);
    true
}

/// What a header's engine data carries, by engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineDataKind {
    /// DPoS: equivocation evidence ([`DposEngine::decode_evidence`]).
    DposEvidence,
    /// PoS: the stake proof ([`StakeProof::from_bytes`]).
    PosStakeProof,
}

impl EngineDataKind {
    pub const ALL: [EngineDataKind; 2] =
        [EngineDataKind::DposEvidence, EngineDataKind::PosStakeProof];

    /// The kind a fuzz input's first byte selects.
    pub fn from_byte(byte: u8) -> EngineDataKind {
        Self::ALL[usize::from(byte) % Self::ALL.len()]
    }

    /// The first byte that selects this kind.
    pub fn tag(self) -> u8 {
        let index = Self::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is in ALL");
        u8::try_from(index).expect("fewer than 256 kinds")
    }
}

/// A header's engine data: the first byte picks the engine ([`EngineDataKind::from_byte`]),
/// the rest is the data.
pub fn engine_data(data: &[u8]) -> bool {
    let Some((&tag, value)) = data.split_first() else {
        return false;
    };
    match EngineDataKind::from_byte(tag) {
        EngineDataKind::DposEvidence => dpos_evidence(value),
        EngineDataKind::PosStakeProof => pos_stake_proof(value),
    }
}

fn dpos_evidence(data: &[u8]) -> bool {
    let Ok(list) = DposEngine::decode_evidence(data) else {
        return false;
    };
    if data.is_empty() {
        assert!(list.is_empty(), "no data is no evidence");
        return true;
    }
    assert!(
        (1..=MAX_EVIDENCE_PER_BLOCK).contains(&list.len()),
        "{} pieces of evidence decoded",
        list.len()
    );
    assert_round_trip(data, &list, to_vec, |b| DposEngine::decode_evidence(b).ok());
    for evidence in &list {
        let _ = evidence.verify(EVIDENCE_SLOT_SECS);
    }
    true
}

fn pos_stake_proof(data: &[u8]) -> bool {
    let Ok(proof) = StakeProof::from_bytes(data) else {
        return false;
    };
    assert_round_trip(data, &proof, StakeProof::to_bytes, |b| {
        StakeProof::from_bytes(b).ok()
    });
    true
}

/// A JSON-RPC string param, through the decoders the RPC hands params to: addresses
/// (`state_getAccount`, `account_history`), tx hashes (`tx_get`) and block hashes
/// (`chain_getBlock`). Signed transactions (`tx_submit`) are the `tx` target's.
pub fn rpc_params(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut decoded = false;
    if let Ok(address) = Address::parse(text) {
        let shown = address.to_string();
        assert_eq!(shown, text.to_ascii_lowercase(), "address prints otherwise");
        assert_eq!(Address::parse(&shown), Ok(address));
        decoded = true;
    }
    let digits = text.strip_prefix("0x").unwrap_or(text).to_ascii_lowercase();
    if let Ok(hash) = TxHash::from_hex(text) {
        assert_eq!(hash.to_hex(), digits, "tx hash prints otherwise");
        assert_eq!(TxHash::from_hex(&hash.to_hex()), Ok(hash));
        decoded = true;
    }
    if let Ok(hash) = BlockHash::from_hex(text) {
        assert_eq!(hash.to_hex(), digits, "block hash prints otherwise");
        assert_eq!(BlockHash::from_hex(&hash.to_hex()), Ok(hash));
        decoded = true;
    }
    decoded
}
