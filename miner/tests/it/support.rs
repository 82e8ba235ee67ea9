//! Shared helpers: where the test vectors live, and a PoW chain to import into.

use chain::test_utils::TEST_CHAIN_ID;
use chain::{
    Amount, Block, BlockProducer, CancelFlag, Chain, ChainConfig, ChainView, ConsensusEngine,
    Genesis, ManualClock, MemoryStore, Timestamp, Transaction,
};
use miner::pow::{CompactTarget, PowEngine, PowParams, PowProducer, Retarget};
use std::path::PathBuf;
use std::sync::Arc;

/// Genesis time of the test chains.
pub const GENESIS_TIME: u64 = 1_700_000_000;

/// The public test vectors in the repository's `testdata/` folder (see its SOURCES.md),
/// found relative to this crate. A missing folder fails the test naming the path: a
/// conformance test never passes without its data.
pub fn testdata_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    assert!(
        dir.is_dir(),
        "conformance test data not found at {}: the repository's testdata/ folder is missing",
        dir.display()
    );
    dir
}

/// Reads `name` from [`testdata_dir`], failing with the path when it cannot.
pub fn read_testdata(name: &str) -> String {
    let path = testdata_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read test data {}: {e}", path.display()))
}

/// Easy PoW parameters for chains that mine in a debug build: regtest's limit.
pub fn easy_params(retarget: Retarget, genesis_bits: u32) -> PowParams {
    PowParams {
        target_block_time: 5,
        retarget,
        pow_limit: CompactTarget::from_consensus(0x207f_ffff),
        genesis_bits: CompactTarget::from_consensus(genesis_bits),
        block_reward: Amount::from_toy(50).expect("fits"),
    }
}

pub fn asert() -> Retarget {
    Retarget::Asert { half_life: 100 }
}

/// Bitcoin retargeting with 4-block periods, so boundaries come quickly.
pub fn bitcoin_every_4() -> Retarget {
    Retarget::Bitcoin {
        interval: 4,
        timespan: 20,
        max_timewarp: 600,
    }
}

/// A memory chain with the PoW engine and a clock far past genesis (so no test block is
/// "in the future").
pub fn pow_chain(params: &PowParams) -> Chain {
    pow_chain_with_genesis_bits(params, params.genesis_bits.to_consensus())
}

/// [`pow_chain`] with a genesis whose bits may differ from the parameters'.
pub fn pow_chain_with_genesis_bits(params: &PowParams, genesis_bits: u32) -> Chain {
    let engine = PowEngine::new(params.clone()).expect("valid params");
    let genesis = Genesis {
        chain_id: TEST_CHAIN_ID,
        timestamp: Timestamp(GENESIS_TIME),
        alloc: Vec::new(),
        engine_params: b"pow-test".to_vec(),
        bits: genesis_bits,
    };
    Chain::open(
        Arc::new(MemoryStore::new()),
        Arc::new(engine),
        Arc::new(ManualClock::new(Timestamp(GENESIS_TIME + 1_000_000))),
        ChainConfig::new(TEST_CHAIN_ID),
        &genesis,
    )
    .expect("chain opens")
}

pub fn producer(params: &PowParams, threads: usize) -> PowProducer {
    let engine = PowEngine::new(params.clone()).expect("valid params");
    let author = chain::dev::dev_address("alice").expect("dev account");
    PowProducer::with_threads(author, engine, threads).expect("thread pool")
}

/// A template on the head at `timestamp` after the producer's `prepare`; `edit` may change
/// the header before the block is built (to break a rule on purpose).
pub fn build(
    chain: &Chain,
    producer: &dyn BlockProducer,
    timestamp: Timestamp,
    edit: impl FnOnce(&mut chain::Header),
) -> Block {
    build_with(chain, producer, timestamp, Vec::new(), edit)
}

/// [`build`] with transactions.
pub fn build_with(
    chain: &Chain,
    producer: &dyn BlockProducer,
    timestamp: Timestamp,
    txs: Vec<Transaction>,
    edit: impl FnOnce(&mut chain::Header),
) -> Block {
    let parent = chain.head();
    let mut header = chain.template(producer.author(), timestamp);
    producer
        .prepare(chain, &parent, &mut header)
        .expect("prepare");
    edit(&mut header);
    chain
        .build_block(header, txs, usize::MAX)
        .expect("template builds")
        .block
}

/// Seals `block` with `producer`.
pub fn seal(producer: &dyn BlockProducer, block: Block) -> Block {
    let header = producer
        .seal(block.header, &CancelFlag::new())
        .expect("seal")
        .expect("not cancelled");
    Block {
        header,
        txs: block.txs,
    }
}

/// Builds, seals and imports a block at `timestamp` on the head.
pub fn mine_on_head(chain: &mut Chain, producer: &PowProducer, timestamp: Timestamp) -> Block {
    let block = seal(producer, build(chain, producer, timestamp, |_| {}));
    chain
        .import_block(block.clone())
        .expect("mined block imports");
    block
}

/// A memory chain running `engine`, each of `funded` holding 1,000 TOY, with a manual
/// clock set to `now` (seconds).
pub fn engine_chain(
    engine: Arc<dyn ConsensusEngine>,
    funded: &[chain::Address],
    now: u64,
) -> (Chain, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(now)));
    let genesis = Genesis {
        chain_id: TEST_CHAIN_ID,
        timestamp: Timestamp(GENESIS_TIME),
        alloc: funded
            .iter()
            .map(|a| (*a, Amount::from_toy(1_000).expect("fits")))
            .collect(),
        engine_params: engine.name().as_bytes().to_vec(),
        bits: 0,
    };
    let chain = Chain::open(
        Arc::new(MemoryStore::new()),
        engine,
        clock.clone(),
        ChainConfig::new(TEST_CHAIN_ID),
        &genesis,
    )
    .expect("chain opens");
    (chain, clock)
}

/// Builds and seals a block with `txs` at `timestamp` on the head (not imported).
pub fn produce(
    chain: &Chain,
    producer: &dyn BlockProducer,
    timestamp: Timestamp,
    txs: Vec<Transaction>,
) -> Block {
    seal(
        producer,
        build_with(chain, producer, timestamp, txs, |_| {}),
    )
}
