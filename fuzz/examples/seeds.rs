//! Writes the committed seed corpus, `corpus/<target>/`, from real values: dev-account
//! signed transactions, the blocks, headers and store records of a small test chain, signed
//! DPoS evidence, PoS stake proofs, sync messages and RPC params; plus a few invalid inputs
//! next to each (truncated, trailing bytes, over a limit, non-canonical).
//!
//! Every seed is run through its target's property first, and must decode exactly when it is
//! meant to, so regenerating the corpus also tests the properties on stable:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use borsh::BorshSerialize;
use chain::crypto::sha256d;
use chain::dev::{DEV_ACCOUNTS, dev_key};
use chain::primitives::Weight;
use chain::state::LtHash;
use chain::store::{Column, MemoryStore, Store, VALUE_VERSION};
use chain::test_utils::{TestEngine, build_on_head, open_test_chain};
use chain::{
    Address, Amount, Block, BlockHash, Canonical, Hash256, Header, Height, SecretKey, StateKey,
    Timestamp, Transaction, TxKind,
};
use miner::dpos::{Delegate, DelegateBook, Equivocation, MAX_EVIDENCE_PER_BLOCK, RoundState};
use miner::poa::Snapshot;
use miner::pos::{
    CoinAge, EntropyEntry, EntropyLog, ModifierRecord, StakeModifier, StakeProof,
};
use miner::seal::sign_header;
use net::{MAX_SYNC_ERROR_BYTES, MAX_SYNC_ITEMS, SyncRequest, SyncResponse};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use toychain_fuzz::{EngineDataKind, Property, StoredKind, TARGETS};

/// One target's seeds: inputs meant to decode and inputs meant to be refused.
#[derive(Default)]
struct Seeds {
    valid: Vec<Vec<u8>>,
    invalid: Vec<Vec<u8>>,
}

impl Seeds {
    /// Each valid seed, and the variants of it that must be refused: cut short by one
    /// byte, and with one byte too many.
    fn with_damaged(valid: Vec<Vec<u8>>) -> Seeds {
        let mut invalid = Vec::new();
        for bytes in &valid {
            if let Some((_, shorter)) = bytes.split_last() {
                invalid.push(shorter.to_vec());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            invalid.push(longer);
        }
        Seeds { valid, invalid }
    }
}

fn key(name: &str) -> SecretKey {
    dev_key(name).expect("a dev account")
}

fn to_vec<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh serialization into a Vec cannot fail")
}

fn tagged(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(value);
    out
}

/// A small test chain: blocks with every transaction kind the test engine takes, a
/// transfer to a new account (an undo entry with no old value), and its store.
struct TestChain {
    store: Arc<MemoryStore>,
    blocks: Vec<Block>,
}

fn test_chain() -> TestChain {
    let store = Arc::new(MemoryStore::new());
    let mut chain = open_test_chain(store.clone(), TestEngine::default());
    let chain_id = chain.config().chain_id;
    let alice = key("alice");
    let newcomer = SecretKey::from_seed("fuzz newcomer").address();
    let transfer = |from: &SecretKey, nonce: u64, to: Address, amount: u64| {
        Transaction::signed(
            from,
            chain_id,
            nonce,
            Amount(10),
            TxKind::Transfer {
                to,
                amount: Amount(amount),
            },
        )
    };
    let rounds = [
        vec![transfer(&alice, 0, key("bob").address(), 1_000)],
        vec![
            transfer(&alice, 1, newcomer, 5_000),
            transfer(&key("bob"), 0, key("carol").address(), 7),
        ],
        vec![Transaction::signed(
            &key("dave"),
            chain_id,
            0,
            Amount(1),
            TxKind::RegisterDelegate,
        )],
        Vec::new(),
    ];
    let mut blocks = vec![chain.block_at(Height(0)).ok().flatten().expect("genesis")];
    for (i, txs) in rounds.into_iter().enumerate() {
        let weight = u32::try_from(i + 1).expect("a few blocks");
        let block = build_on_head(&chain, weight, key("carol").address(), txs);
        chain
            .import_block(block.clone())
            .expect("a built block imports");
        blocks.push(block);
    }
    TestChain { store, blocks }
}

/// Up to `most` stored values of `column` whose key passes `keep`.
fn column_values(
    store: &MemoryStore,
    column: Column,
    most: usize,
    keep: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .for_each(column, &mut |k, v| {
            if keep(k) {
                out.push(v.to_vec());
            }
            out.len() < most
        })
        .expect("a memory store reads");
    out
}

fn tx_seeds() -> Seeds {
    let chain_id = chain::test_utils::TEST_CHAIN_ID;
    let bob = key("bob").address();
    let kinds = [
        TxKind::Transfer {
            to: bob,
            amount: Amount::from_toy(5).expect("fits"),
        },
        TxKind::RegisterDelegate,
        TxKind::Vote {
            delegates: vec![bob, key("carol").address()],
        },
        TxKind::Unvote {
            delegates: vec![bob],
        },
        TxKind::ProposeAuthority {
            address: bob,
            add: true,
        },
        TxKind::ProposeAuthority {
            address: bob,
            add: false,
        },
    ];
    let valid: Vec<Vec<u8>> = kinds
        .into_iter()
        .enumerate()
        .map(|(nonce, kind)| {
            let nonce = u64::try_from(nonce).expect("a few");
            Transaction::signed(&key("alice"), chain_id, nonce, Amount(10), kind).encode()
        })
        .collect();
    let mut seeds = Seeds::with_damaged(valid.clone());
    // A bool other than 0 or 1 (the propose-authority flag, just before the signature).
    let mut bad_bool = valid[4].clone();
    let at = bad_bool.len() - 65;
    bad_bool[at] = 2;
    seeds.invalid.push(bad_bool);
    // An unknown kind tag (after chain id, nonce, key and fee: 8 + 8 + 33 + 8 bytes).
    let mut bad_tag = valid[1].clone();
    bad_tag[57] = 9;
    seeds.invalid.push(bad_tag);
    seeds.invalid.push(Vec::new());
    seeds
}

/// A header signed by `producer` at `timestamp`, built on a test chain header.
fn signed_header(base: &Header, producer: &SecretKey, timestamp: u64, nonce: u32) -> Header {
    let mut header = base.clone();
    header.producer = producer.address();
    header.timestamp = Timestamp(timestamp);
    header.engine.nonce = nonce;
    sign_header(header, producer)
}

fn header_seeds(chain: &TestChain) -> Seeds {
    let mut valid: Vec<Vec<u8>> = chain.blocks.iter().map(|b| b.header.encode()).collect();
    let base = &chain.blocks[1].header;
    valid.push(signed_header(base, &key("eve"), 1_700_000_100, 0).encode());
    let mut pos = base.clone();
    pos.engine.data = stake_proof().to_bytes();
    valid.push(sign_header(pos, &key("carol")).encode());
    let mut seeds = Seeds::with_damaged(valid);
    // A header whose engine data claims more bytes than follow.
    let mut header = base.clone();
    header.engine.data = vec![7; 4];
    header.engine.seal = Vec::new();
    let mut long_data = header.encode();
    let seal_len_at = long_data.len() - 4;
    let data_len_at = seal_len_at - 4 - 4;
    long_data[data_len_at..data_len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    seeds.invalid.push(long_data);
    seeds
}

fn block_seeds(chain: &TestChain) -> Seeds {
    let valid: Vec<Vec<u8>> = chain.blocks.iter().map(Canonical::encode).collect();
    let mut seeds = Seeds::with_damaged(valid);
    // A transaction count far beyond the bytes that follow.
    let mut many = chain.blocks[2].encode();
    let count_at = chain.blocks[2].header.encode().len();
    many[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    seeds.invalid.push(many);
    seeds
}

fn sync_request_seeds() -> Seeds {
    let valid = [
        SyncRequest::Status,
        SyncRequest::Blocks {
            from: Height(1),
            count: MAX_SYNC_ITEMS,
        },
        SyncRequest::Headers {
            from: Height(0),
            count: 16,
        },
    ]
    .iter()
    .map(SyncRequest::encode)
    .collect();
    let mut seeds = Seeds::with_damaged(valid);
    seeds.invalid.push(
        SyncRequest::Blocks {
            from: Height(1),
            count: MAX_SYNC_ITEMS + 1,
        }
        .encode(),
    );
    seeds.invalid.push(vec![3]);
    seeds
}

fn sync_response_seeds(chain: &TestChain) -> Seeds {
    let head = chain.blocks.last().expect("blocks");
    let valid = [
        SyncResponse::Status {
            genesis: chain.blocks[0].hash(),
            head_height: head.header.height,
            head_hash: head.hash(),
            total_weight: Weight::from_u64(11),
        },
        SyncResponse::Blocks(chain.blocks[1..].iter().map(Canonical::encode).collect()),
        SyncResponse::Headers(chain.blocks.iter().map(|b| b.header.encode()).collect()),
        SyncResponse::error("no block at height 9"),
    ]
    .iter()
    .map(SyncResponse::encode)
    .collect();
    let mut seeds = Seeds::with_damaged(valid);
    seeds
        .invalid
        .push(SyncResponse::Headers(vec![Vec::new(); MAX_SYNC_ITEMS as usize + 1]).encode());
    seeds
        .invalid
        .push(SyncResponse::Error("x".repeat(MAX_SYNC_ERROR_BYTES + 1)).encode());
    seeds.invalid.push(vec![4]);
    seeds
}

fn delegate_book() -> DelegateBook {
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| key(n).address());
    DelegateBook {
        delegates: BTreeMap::from([
            (
                alice,
                Delegate {
                    genesis: true,
                    produced: 12,
                    missed: 1,
                    last_produced: 40,
                    equivocations: Vec::new(),
                },
            ),
            (
                bob,
                Delegate {
                    genesis: false,
                    produced: 3,
                    missed: 0,
                    last_produced: 39,
                    equivocations: vec![17],
                },
            ),
        ]),
        votes: BTreeMap::from([(carol, vec![alice, bob]), (alice, vec![alice])]),
    }
}

fn poa_snapshot() -> Snapshot<Address> {
    let signers = ["alice", "bob", "carol"].map(|n| key(n).address());
    let mut snapshot = Snapshot::new(signers, 30_000);
    snapshot
        .begin_block(1, signers[0])
        .expect("an authority signs");
    snapshot
        .vote(1, signers[0], key("dave").address(), true)
        .expect("an authority votes");
    snapshot
}

/// A staker's proof with coins held since genesis and a young bucket received later.
fn stake_proof() -> StakeProof {
    let mut age = CoinAge::single(
        Amount::from_toy(250_000).expect("fits"),
        Timestamp(1_700_000_000),
    );
    age.received(Amount(1), Timestamp(1_700_000_600));
    StakeProof {
        age,
        modifier: StakeModifier(Hash256(sha256d(b"toychain fuzz modifier"))),
    }
}

fn stored_value_seeds(chain: &TestChain) -> Seeds {
    let store = &chain.store;
    let any = |_: &[u8]| true;
    let mut valid = Vec::new();
    for (kind, column) in [
        (StoredKind::Header, Column::Headers),
        (StoredKind::Body, Column::Bodies),
        (StoredKind::BlockMeta, Column::BlockMeta),
        (StoredKind::Undo, Column::Undo),
        (StoredKind::TxIndex, Column::TxIndex),
    ] {
        for value in column_values(store, column, 3, any) {
            valid.push(tagged(kind.tag(), &value));
        }
    }
    let is_account = |k: &[u8]| StateKey(k.to_vec()).as_account().is_some();
    for value in column_values(store, Column::State, 3, is_account) {
        valid.push(tagged(StoredKind::Account.tag(), &value));
    }
    for value in column_values(store, Column::Meta, 1, |k| k == b"head_lthash") {
        valid.push(tagged(StoredKind::HeadLtHash.tag(), &value));
    }
    let round = RoundState {
        round: 9,
        schedule: ["bob", "alice"].map(|n| key(n).address()).to_vec(),
        irreversible: 33,
    };
    let modifier = ModifierRecord {
        epoch_start: Timestamp(1_700_000_000),
        value: stake_proof().modifier,
    };
    let entropy = EntropyLog {
        entries: vec![
            EntropyEntry {
                time: Timestamp(1_700_000_010),
                bit: true,
            },
            EntropyEntry {
                time: Timestamp(1_700_000_020),
                bit: false,
            },
        ],
    };
    for (kind, value) in [
        (StoredKind::DposBook, to_vec(&delegate_book())),
        (StoredKind::DposBook, to_vec(&DelegateBook::default())),
        (StoredKind::DposRound, to_vec(&round)),
        (StoredKind::PoaSnapshot, to_vec(&poa_snapshot())),
        (StoredKind::PosModifier, to_vec(&modifier)),
        (StoredKind::PosEntropy, to_vec(&entropy)),
        (StoredKind::PosTime, to_vec(&Timestamp(1_700_000_000))),
    ] {
        valid.push(tagged(kind.tag(), &value));
    }
    let mut seeds = Seeds::with_damaged(valid.clone());
    // A record of a future format version.
    let mut future = column_values(store, Column::BlockMeta, 1, any).remove(0);
    future[0] = VALUE_VERSION + 1;
    seeds
        .invalid
        .push(tagged(StoredKind::BlockMeta.tag(), &future));
    seeds.invalid.push(tagged(StoredKind::Undo.tag(), &[]));
    seeds.invalid.push(tagged(
        StoredKind::HeadLtHash.tag(),
        &LtHash::default().to_bytes()[1..],
    ));
    // A delegate book whose two delegates are written in the wrong order: the same book as
    // the sorted bytes, so not the canonical encoding.
    let book = delegate_book();
    let mut entries: Vec<_> = book.delegates.into_iter().collect();
    entries.reverse();
    let unsorted = to_vec(&(entries, book.votes));
    seeds
        .invalid
        .push(tagged(StoredKind::DposBook.tag(), &unsorted));
    seeds
}

fn equivocation(chain: &TestChain, offender: &str, slot_start: u64) -> Equivocation {
    let base = &chain.blocks[1].header;
    let key = key(offender);
    Equivocation {
        first: signed_header(base, &key, slot_start, 1),
        second: signed_header(base, &key, slot_start + 1, 2),
    }
}

fn engine_data_seeds(chain: &TestChain) -> Seeds {
    let evidence = EngineDataKind::DposEvidence.tag();
    let proof = EngineDataKind::PosStakeProof.tag();
    let one = vec![equivocation(chain, "eve", 1_700_000_100)];
    let two = vec![
        equivocation(chain, "eve", 1_700_000_100),
        equivocation(chain, "ferdie", 1_700_000_200),
    ];
    let valid = vec![
        tagged(evidence, &to_vec(&one)),
        tagged(evidence, &to_vec(&two)),
        tagged(proof, &stake_proof().to_bytes()),
    ];
    let mut seeds = Seeds::with_damaged(valid);
    // No data is no evidence (valid, and nothing to damage).
    seeds.valid.push(vec![evidence]);
    // An empty list must be written as no data; more than the limit is refused.
    seeds
        .invalid
        .push(tagged(evidence, &to_vec(&Vec::<Equivocation>::new())));
    let too_many = vec![one[0].clone(); MAX_EVIDENCE_PER_BLOCK + 1];
    seeds.invalid.push(tagged(evidence, &to_vec(&too_many)));
    seeds
}

fn rpc_params_seeds(chain: &TestChain) -> Seeds {
    let mut valid: Vec<Vec<u8>> = DEV_ACCOUNTS[..3]
        .iter()
        .map(|n| key(n).address().to_string().into_bytes())
        .collect();
    let head = chain.blocks.last().expect("blocks");
    let tx_hash = chain.blocks[1].txs[0].hash().to_hex();
    valid.push(tx_hash.clone().into_bytes());
    valid.push(format!("0x{}", head.hash().to_hex()).into_bytes());
    valid.push(tx_hash.to_ascii_uppercase().into_bytes());
    valid.push(BlockHash::ZERO.to_hex().into_bytes());
    let address = key("alice").address().to_string();
    let invalid = vec![
        b"toy1qqqq".to_vec(),
        b"zz".to_vec(),
        tx_hash.as_bytes()[1..].to_vec(),
        format!("0X{tx_hash}").into_bytes(),
        // Mixed case is not bech32.
        format!("{}{}", &address[..10], address[10..].to_ascii_uppercase()).into_bytes(),
        vec![0xff, 0xfe],
    ];
    Seeds { valid, invalid }
}

/// Writes `seeds` into `dir` (emptied first), after checking each one against `check`.
fn write(dir: &Path, name: &str, check: Property, seeds: &Seeds) -> std::io::Result<()> {
    for (bytes, meant) in seeds
        .valid
        .iter()
        .map(|b| (b, true))
        .chain(seeds.invalid.iter().map(|b| (b, false)))
    {
        assert_eq!(
            check(bytes),
            meant,
            "{name} seed {} should {}decode",
            hex::encode(bytes),
            if meant { "" } else { "not " }
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for (prefix, list) in [("valid", &seeds.valid), ("invalid", &seeds.invalid)] {
        for bytes in list {
            let id = hex::encode(&sha256d(bytes)[..8]);
            std::fs::write(dir.join(format!("{prefix}-{id}")), bytes)?;
        }
    }
    println!(
        "{name}: {} valid, {} invalid seeds",
        seeds.valid.len(),
        seeds.invalid.len()
    );
    Ok(())
}

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let chain = test_chain();
    for (name, check) in TARGETS {
        let seeds = match name {
            "tx" => tx_seeds(),
            "header" => header_seeds(&chain),
            "block" => block_seeds(&chain),
            "sync_request" => sync_request_seeds(),
            "sync_response" => sync_response_seeds(&chain),
            "stored_value" => stored_value_seeds(&chain),
            "engine_data" => engine_data_seeds(&chain),
            "rpc_params" => rpc_params_seeds(&chain),
            other => panic!("no seeds for the target {other}"),
        };
        write(&corpus.join(name), name, check, &seeds)?;
    }
    Ok(())
}
