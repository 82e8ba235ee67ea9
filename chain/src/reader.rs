//! Read access to a chain's store: blocks, indexes, state at the head. Cheap to clone and
//! safe to use from any thread while the chain's one writer imports (every import is one
//! atomic batch, so each read sees a whole block or none of it).

use crate::block::{Block, Header, SealedHeader};
use crate::chain::BlockMeta;
use crate::crypto::Address;
use crate::engine::ChainView;
use crate::primitives::{BlockHash, Height, Timestamp, TxHash};
use crate::state::{Account, StateKey, StateRead};
use crate::store::{Column, Store, StoreError, decode_value};
use crate::tx::Transaction;
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

pub(crate) const META_HEAD: &[u8] = b"head";

/// How to revert a connected block: the old value of every key it changed. Records written
/// before the state hash could be worked back from them also hold the state hash before
/// the block (`parent_lthash`); newer ones leave it empty. Public so the store's decoders can be fuzzed over every record type;
/// only the chain builds one.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct UndoRecord {
    pub(crate) parent_lthash: Vec<u8>,
    pub(crate) entries: Vec<(StateKey, Option<Vec<u8>>)>,
}

/// The state at the head, read from the store.
///
/// Recently read and written values are kept in memory (as geth keeps a state cache in
/// front of its database): a transfer's sender is read at admission, again when its pool
/// is revalidated after each block, and again when the block runs. The chain, the only
/// writer of the state column, tells the cache what it wrote ([`StoreState::written`]),
/// and a read that went to the store while a write happened does not fill the cache, so
/// a value in the cache is always the stored one.
#[derive(Clone)]
pub struct StoreState {
    store: Arc<dyn Store>,
    cache: Arc<Mutex<StateCache>>,
}

/// State values kept per generation (two generations: up to twice this many).
const STATE_CACHE_GENERATION: usize = 16_384;

struct StateCache {
    /// Hashed with SipHash: engine keys share long prefixes, and anyone can pick account
    /// addresses.
    values: Generations<StateKey, Option<Vec<u8>>, RandomState>,
    /// Counts the writes: a read that missed before a write must not keep what it read.
    writes: u64,
}

impl StoreState {
    fn new(store: Arc<dyn Store>) -> StoreState {
        StoreState {
            store,
            cache: Arc::new(Mutex::new(StateCache {
                values: Generations::new(STATE_CACHE_GENERATION),
                writes: 0,
            })),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, StateCache> {
        // A poisoned lock only means a reader panicked between two statements that each
        // leave the cache consistent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `changes` (value `None`: deleted) were written to the state column.
    /// Call it after the write, once it succeeded.
    pub(crate) fn written(&self, changes: BTreeMap<StateKey, Option<Vec<u8>>>) {
        let mut cache = self.cache();
        cache.writes += 1;
        for (key, value) in changes {
            cache.values.insert(key, value);
        }
    }
}

impl fmt::Debug for StoreState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl StateRead for StoreState {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        let writes = {
            let mut cache = self.cache();
            if let Some(value) = cache.values.get(key) {
                return Ok(value);
            }
            cache.writes
        };
        let value = self.store.get(Column::State, key.as_bytes())?;
        let mut cache = self.cache();
        if cache.writes == writes {
            cache.values.insert(key.clone(), value.clone());
        }
        Ok(value)
    }
}

#[derive(Clone)]
pub struct ChainReader {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) state: StoreState,
    pub(crate) genesis: SealedHeader,
    /// Recently read headers, shared by the clones (a header never changes: it is stored
    /// under its own hash). Validation reads the same few again and again — the median
    /// time past alone reads eleven per block.
    pub(crate) headers: Arc<Mutex<Generations<BlockHash, SealedHeader>>>,
    /// Each recent block's median time past: validating a child and building one both ask.
    pub(crate) medians: Arc<Mutex<Generations<BlockHash, Timestamp>>>,
}

/// Headers, and medians, per generation of the reader's caches.
const CACHE_GENERATION: usize = 1024;

/// A map in two generations: when the current one holds `limit` entries it becomes the old
/// one (the one before is dropped), so recently used entries stay without per-read
/// bookkeeping.
/// Keys are hashed with `S`: by default [`PrefixHasher`], for keys that are already uniform.
#[derive(Debug)]
pub(crate) struct Generations<K, V, S = BuildHasherDefault<PrefixHasher>> {
    current: HashMap<K, V, S>,
    old: HashMap<K, V, S>,
    limit: usize,
}

/// Hashes keys that are already uniform — block hashes — by folding in the first eight
/// bytes of each write instead of running SipHash over all of them. Someone grinding block
/// hashes into one bucket can slow a lookup down to a scan of one bounded generation.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }
}

impl<K: std::hash::Hash + Eq, V: Clone, S: BuildHasher + Default> Generations<K, V, S> {
    pub(crate) fn new(limit: usize) -> Generations<K, V, S> {
        Generations {
            current: HashMap::default(),
            old: HashMap::default(),
            limit,
        }
    }

    /// The value of `key`; one found in the old generation moves back to the current one.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        if let Some(value) = self.current.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.old.remove_entry(key)?;
        self.insert(key, value.clone());
        Some(value)
    }

    /// `read` of the value of `key`, without cloning it; moves it up as [`Self::get`] does.
    pub(crate) fn read<R>(&mut self, key: &K, read: impl FnOnce(&V) -> R) -> Option<R> {
        if let Some(value) = self.current.get(key) {
            return Some(read(value));
        }
        let (key, value) = self.old.remove_entry(key)?;
        let out = read(&value);
        self.insert(key, value);
        Some(out)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.current.len() >= self.limit {
            self.old = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        (self.current.len(), self.old.len())
    }
}

impl fmt::Debug for ChainReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainReader")
            .field("genesis", &self.genesis.hash())
            .finish()
    }
}

impl ChainReader {
    pub(crate) fn new(store: Arc<dyn Store>, genesis: SealedHeader) -> ChainReader {
        ChainReader {
            state: StoreState::new(store.clone()),
            store,
            genesis,
            headers: Arc::new(Mutex::new(Generations::new(CACHE_GENERATION))),
            medians: Arc::new(Mutex::new(Generations::new(CACHE_GENERATION))),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The stored head pointer.
    pub fn head_hash(&self) -> Result<BlockHash, StoreError> {
        self.store
            .get(Column::Meta, META_HEAD)?
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(BlockHash)
            .ok_or(StoreError::Corrupt {
                what: "head pointer",
                reason: "missing or not 32 bytes".into(),
            })
    }

    pub fn account(&self, address: &Address) -> Result<Account, StoreError> {
        self.state.account(address)
    }

    pub fn meta(&self, hash: &BlockHash) -> Result<Option<BlockMeta>, StoreError> {
        self.store
            .get(Column::BlockMeta, &hash.0)?
            .map(|b| decode_value(&b, "block meta"))
            .transpose()
    }

    pub(crate) fn meta_required(&self, hash: &BlockHash) -> Result<BlockMeta, StoreError> {
        self.meta(hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "block meta",
            reason: format!("missing for {hash}"),
        })
    }

    pub(crate) fn header_required(&self, hash: &BlockHash) -> Result<SealedHeader, StoreError> {
        self.header(hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "header",
            reason: format!("missing for {hash}"),
        })
    }

    pub fn body(&self, hash: &BlockHash) -> Result<Option<Vec<Transaction>>, StoreError> {
        self.store
            .get(Column::Bodies, &hash.0)?
            .map(|b| decode_value(&b, "block body"))
            .transpose()
    }

    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        let Some(header) = self.header(hash)? else {
            return Ok(None);
        };
        let txs = self.body(hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "block body",
            reason: format!("missing for {hash}"),
        })?;
        Ok(Some(Block {
            header: header.into_header(),
            txs,
        }))
    }

    pub fn block_at(&self, height: Height) -> Result<Option<Block>, StoreError> {
        match self.best_hash_at(height)? {
            Some(hash) => self.block(&hash),
            None => Ok(None),
        }
    }

    /// The certificate stored with a block decided by votes (voting engines).
    pub fn certificate(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(Column::Certificates, &hash.0)
    }

    /// Where a transaction sits on the best chain: block hash and index.
    pub fn tx_location(&self, hash: &TxHash) -> Result<Option<(BlockHash, u32)>, StoreError> {
        self.store
            .get(Column::TxIndex, &hash.0)?
            .map(|b| decode_value(&b, "tx index entry"))
            .transpose()
    }
}

/// A cache's lock; a panic while it was held cannot leave a half-made entry, so a poisoned
/// lock still guards good data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChainView for ChainReader {
    fn header(&self, hash: &BlockHash) -> Result<Option<SealedHeader>, StoreError> {
        if let Some(header) = lock(&self.headers).get(hash) {
            return Ok(Some(header));
        }
        let header = self
            .store
            .get(Column::Headers, &hash.0)?
            .map(|b| {
                decode_value::<Header>(&b, "header").map(|h| SealedHeader::new_unchecked(h, *hash))
            })
            .transpose()?;
        if let Some(header) = &header {
            lock(&self.headers).insert(*hash, header.clone());
        }
        Ok(header)
    }

    fn time_and_parent(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<(Timestamp, BlockHash)>, StoreError> {
        let link = |h: &SealedHeader| (h.timestamp, h.parent);
        if let Some(found) = lock(&self.headers).read(hash, link) {
            return Ok(Some(found));
        }
        Ok(self.header(hash)?.as_ref().map(link))
    }

    fn median_time_past(&self, parent: &SealedHeader) -> Result<Timestamp, StoreError> {
        if let Some(median) = lock(&self.medians).get(&parent.hash()) {
            return Ok(median);
        }
        let median = crate::validation::median_time_past(self, parent)?;
        lock(&self.medians).insert(parent.hash(), median);
        Ok(median)
    }

    fn best_hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        Ok(self
            .store
            .get(Column::Heights, &height.0.to_be_bytes())?
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(BlockHash))
    }

    /// The stored head; the genesis if the store cannot be read (logged).
    fn head(&self) -> SealedHeader {
        match self.head_hash().and_then(|h| self.header_required(&h)) {
            Ok(head) => head,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the head");
                self.genesis.clone()
            }
        }
    }

    fn genesis(&self) -> &SealedHeader {
        &self.genesis
    }

    fn state(&self) -> &dyn StateRead {
        &self.state
    }

    fn certificate(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, StoreError> {
        ChainReader::certificate(self, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_generation_cache_keeps_the_recent_and_what_was_read_again() {
        let mut cache: Generations<u64, u64> = Generations::new(4);
        for k in 0..6 {
            cache.insert(k, k * 10);
        }
        // 0–3 rolled over into the old generation: still there.
        assert_eq!(cache.sizes(), (2, 4));
        assert_eq!(cache.get(&0), Some(0));
        assert_eq!(cache.get(&5), Some(50));
        // Another rollover drops the old generation but 0, read since, moved up.
        for k in 6..8 {
            cache.insert(k, k * 10);
        }
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&0), Some(0));
        assert_eq!(cache.get(&7), Some(70));
        let (current, old) = cache.sizes();
        assert!(current <= 4 && old <= 4);
    }

    #[test]
    fn the_reader_remembers_headers_and_medians_it_read() {
        use crate::test_utils::{TestEngine, build_on_head, memory_chain};
        let mut chain = memory_chain(TestEngine::default());
        for _ in 0..12 {
            let block = build_on_head(&chain, 1, Address([7; 20]), Vec::new());
            chain.import_block(block).expect("import");
        }
        let head = ChainView::head(&chain);
        let walked = crate::validation::median_time_past(&chain, &head).expect("walk");
        assert_eq!(
            ChainView::median_time_past(&chain, &head).expect("memo"),
            walked
        );
        assert_eq!(
            ChainView::median_time_past(&chain, &head).expect("memo"),
            walked
        );
        assert!(lock(&chain.medians).get(&head.hash()).is_some());
        assert_eq!(
            ChainView::header(&chain, &head.parent)
                .expect("read")
                .map(|h| h.hash()),
            Some(head.parent)
        );
        assert!(lock(&chain.headers).get(&head.parent).is_some());
    }
}
