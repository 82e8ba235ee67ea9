//! A bounded cache of signatures already verified, after Bitcoin Core's `CSignatureCache`.
//!
//! A node checks a transaction's signature when the transaction enters its mempool, and
//! again when a block carrying it is built, proposed or imported. The cache keeps one
//! entry per *successful* verification, so each signature costs one ECDSA check per node.
//!
//! The entry is `sha256d(domain ‖ prehash ‖ public key ‖ signature)`: all three inputs of
//! the check, so a signature cached for one message or key says nothing about another
//! (changing any of them changes the entry, and finding two inputs with one entry is a
//! SHA-256 collision). Nothing enters the cache but what [`SignatureCache::verify`] has
//! just verified, so an unchecked or invalid signature can never be answered from it.
//! The table is bounded: past its capacity the oldest entries go first (a miss then costs
//! one more verification, never a wrong answer).
//!
//! Beside it the cache keeps the recently used public keys decoded: a compressed key costs
//! a field square root to decode (about a twelfth of a verification), and one sender's
//! transactions share a key. Only keys that decoded are kept, under their exact 33 bytes.

use crate::crypto::{CryptoError, PublicKey, Signature, sha256d_parts, verify_decoded_batch};
use crate::primitives::Hash256;
use crate::reader::Generations;
use k256::ecdsa::VerifyingKey;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

/// Entries a node keeps by default: about 8 MB with the table's overhead, a few blocks'
/// worth of transactions at the block limit (`MAX_TXS_PER_BLOCK`) plus a full mempool.
pub const DEFAULT_SIGNATURE_CACHE_ENTRIES: usize = 100_000;

/// Decoded public keys kept per generation (two generations: up to twice this many).
const KEY_GENERATION: usize = 4_096;

/// Domain tag of the cache entry hash.
const ENTRY_DOMAIN: &[u8] = b"toychain/sigcache/v1";

type Entry = [u8; 32];

#[derive(Default)]
struct Table {
    entries: HashSet<Entry>,
    /// Insertion order, oldest first: the eviction order.
    order: VecDeque<Entry>,
}

/// What the cache has done so far, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignatureCacheStats {
    /// Verifications answered from the cache.
    pub hits: u64,
    /// Verifications that ran the ECDSA check (successful or not).
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
    /// Public keys decoded for the checks that ran (the rest reused a decoded key).
    pub keys_decoded: u64,
}

/// A bounded, thread-safe set of (prehash, key, signature) triples known to verify. One
/// per node, shared by mempool admission, block building and block import (clone the
/// `Arc`); safe to use from rayon's parallel checks.
pub struct SignatureCache {
    capacity: usize,
    table: RwLock<Table>,
    hits: AtomicU64,
    misses: AtomicU64,
    keys: Mutex<Generations<[u8; 33], VerifyingKey>>,
    keys_decoded: AtomicU64,
}

impl SignatureCache {
    /// A cache holding at most `capacity` entries; zero caches nothing (every call verifies).
    pub fn new(capacity: usize) -> SignatureCache {
        SignatureCache {
            capacity,
            table: RwLock::new(Table::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            keys: Mutex::new(Generations::new(KEY_GENERATION.min(capacity))),
            keys_decoded: AtomicU64::new(0),
        }
    }

    /// Verifies a low-S signature over `prehash` by `key` ([`PublicKey::verify`]),
    /// answering from the cache when this exact triple verified before, and remembering it
    /// when it verifies now.
    pub fn verify(
        &self,
        key: &PublicKey,
        prehash: &Hash256,
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        // A batch of one: the same lookups and counters, and the same check as one alone.
        self.verify_batch(&[(*key, *prehash, *signature)])
            .pop()
            .unwrap_or(Err(CryptoError::BadSignature))
    }

    /// [`SignatureCache::verify`] for many triples at once, one verdict each (the same
    /// as one by one): the ones not cached are checked together
    /// ([`crate::crypto::verify_decoded_batch`], cheaper per signature than one by one).
    pub fn verify_batch(
        &self,
        items: &[(PublicKey, Hash256, Signature)],
    ) -> Vec<Result<(), CryptoError>> {
        let mut verdicts: Vec<Result<(), CryptoError>> = Vec::with_capacity(items.len());
        // (index, entry) and (decoded key, prehash, signature) of each one to check.
        let mut pending = Vec::new();
        let mut batch = Vec::new();
        for (i, (key, prehash, signature)) in items.iter().enumerate() {
            let entry = Self::entry(key, prehash, signature);
            if self.contains(&entry) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                verdicts.push(Ok(()));
                continue;
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            match self.decoded(key) {
                Err(e) => verdicts.push(Err(e)),
                Ok(decoded) => {
                    pending.push((i, entry));
                    batch.push((decoded, *prehash, *signature));
                    verdicts.push(Ok(()));
                }
            }
        }
        for ((i, entry), verdict) in pending.into_iter().zip(verify_decoded_batch(&batch)) {
            if verdict.is_ok() {
                self.insert(entry);
            }
            verdicts[i] = verdict;
        }
        verdicts
    }

    /// `key` decoded, from the recently used keys or decoded now (and then kept).
    fn decoded(&self, key: &PublicKey) -> Result<VerifyingKey, CryptoError> {
        let keys = || self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(decoded) = keys().get(&key.0) {
            return Ok(decoded);
        }
        self.keys_decoded.fetch_add(1, Ordering::Relaxed);
        let decoded = key.verifying_key()?;
        if self.capacity > 0 {
            keys().insert(key.0, decoded);
        }
        Ok(decoded)
    }

    /// Counters and size.
    pub fn stats(&self) -> SignatureCacheStats {
        SignatureCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.len(),
            keys_decoded: self.keys_decoded.load(Ordering::Relaxed),
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most entries held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn entry(key: &PublicKey, prehash: &Hash256, signature: &Signature) -> Entry {
        sha256d_parts(&[ENTRY_DOMAIN, &prehash.0, &key.0, &signature.0])
    }

    fn contains(&self, entry: &Entry) -> bool {
        self.read().entries.contains(entry)
    }

    fn insert(&self, entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        // A poisoned lock only means another thread panicked mid-insert: the set and the
        // order may disagree on one entry, which costs at most one extra verification.
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if !table.entries.insert(entry) {
            return;
        }
        table.order.push_back(entry);
        while table.order.len() > self.capacity {
            if let Some(oldest) = table.order.pop_front() {
                table.entries.remove(&oldest);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for SignatureCache {
    /// A cache of [`DEFAULT_SIGNATURE_CACHE_ENTRIES`].
    fn default() -> Self {
        SignatureCache::new(DEFAULT_SIGNATURE_CACHE_ENTRIES)
    }
}

impl fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureCache")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{SecretKey, sha256d};
    use std::sync::Arc;

    fn signed(seed: &str, message: &[u8]) -> (PublicKey, Hash256, Signature) {
        let key = SecretKey::from_seed(seed);
        let prehash = Hash256(sha256d(message));
        (key.public_key(), prehash, key.sign(&prehash))
    }

    #[test]
    fn a_verified_signature_is_answered_from_the_cache() {
        let cache = SignatureCache::new(16);
        let (key, msg, sig) = signed("alice", b"pay bob");
        assert_eq!(cache.verify(&key, &msg, &sig), Ok(()));
        assert_eq!(cache.verify(&key, &msg, &sig), Ok(()));
        assert_eq!(cache.verify(&key, &msg, &sig), Ok(()));
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits, stats.entries), (1, 2, 1));
    }

    #[test]
    fn a_cached_sibling_does_not_let_a_tampered_triple_pass() {
        let cache = SignatureCache::new(16);
        let (key, msg, sig) = signed("alice", b"pay bob");
        cache.verify(&key, &msg, &sig).expect("valid signature");
        let other_msg = Hash256(sha256d(b"pay eve"));
        let other_key = SecretKey::from_seed("eve").public_key();
        let (_, _, other_sig) = signed("alice", b"pay eve");
        let high_s = sig.malleated().expect("a valid signature has a twin");
        let cases: [(&str, PublicKey, Hash256, Signature, CryptoError); 4] = [
            ("message", key, other_msg, sig, CryptoError::BadSignature),
            ("key", other_key, msg, sig, CryptoError::BadSignature),
            ("signature", key, msg, other_sig, CryptoError::BadSignature),
            ("high-s twin", key, msg, high_s, CryptoError::HighS),
        ];
        for (changed, key, msg, sig, expected) in cases {
            // Twice: a failure is not remembered as a success either.
            for _ in 0..2 {
                assert_eq!(
                    cache.verify(&key, &msg, &sig),
                    Err(expected.clone()),
                    "{changed}"
                );
            }
        }
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits, stats.entries), (9, 0, 1));
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_forgets_the_oldest() {
        let cache = SignatureCache::new(3);
        let triples: Vec<_> = (0..5u8).map(|i| signed("alice", &[i])).collect();
        for (key, msg, sig) in &triples {
            cache.verify(key, msg, sig).expect("valid signature");
        }
        assert_eq!(cache.len(), 3);
        // The newest three answer from the cache; the two oldest were evicted.
        for (key, msg, sig) in &triples[2..] {
            cache.verify(key, msg, sig).expect("valid signature");
        }
        assert_eq!(cache.stats().hits, 3);
        let (key, msg, sig) = &triples[0];
        cache.verify(key, msg, sig).expect("valid signature");
        assert_eq!(cache.stats().misses, 6);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_key_is_decoded_once_for_its_signatures_and_a_bad_key_is_never_kept() {
        let cache = SignatureCache::new(16);
        let alice: Vec<_> = (0..3u8).map(|i| signed("alice", &[i])).collect();
        for (key, msg, sig) in &alice {
            cache.verify(key, msg, sig).expect("valid signature");
        }
        assert_eq!(cache.stats().keys_decoded, 1);
        // A kept key still checks the signature: alice's key under bob's signature fails.
        let (_, bob_msg, bob_sig) = signed("bob", b"pay carol");
        assert_eq!(
            cache.verify(&alice[0].0, &bob_msg, &bob_sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(cache.stats().keys_decoded, 1);
        let off_curve = PublicKey([0x05; 33]);
        for _ in 0..2 {
            assert!(matches!(
                cache.verify(&off_curve, &bob_msg, &bob_sig),
                Err(CryptoError::BadPublicKey { .. })
            ));
        }
        assert_eq!(cache.stats().keys_decoded, 3);
    }

    #[test]
    fn a_batch_is_answered_as_one_by_one_and_caches_only_what_verified() {
        let cache = SignatureCache::new(64);
        let (key, msg, sig) = signed("alice", b"pay bob");
        cache.verify(&key, &msg, &sig).expect("valid signature");
        let fresh = signed("carol", b"pay dave");
        let forged = (fresh.0, msg, fresh.2);
        let off_curve = (PublicKey([0x05; 33]), msg, sig);
        let items = [(key, msg, sig), fresh, forged, off_curve, fresh];
        let verdicts = cache.verify_batch(&items);
        assert_eq!(
            verdicts[..3],
            [Ok(()), Ok(()), Err(CryptoError::BadSignature)]
        );
        assert!(matches!(verdicts[3], Err(CryptoError::BadPublicKey { .. })));
        // The same triple twice in one batch is checked twice (neither was cached yet).
        assert_eq!(verdicts[4], Ok(()));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 5, 2));
        // Now the fresh one is a hit and the forgery is still refused.
        let again = cache.verify_batch(&[fresh, forged]);
        assert_eq!(again, [Ok(()), Err(CryptoError::BadSignature)]);
        assert_eq!(cache.stats().hits, 2);
    }

    #[test]
    fn a_zero_capacity_cache_verifies_every_time() {
        let cache = SignatureCache::new(0);
        let (key, msg, sig) = signed("alice", b"pay bob");
        for _ in 0..3 {
            cache.verify(&key, &msg, &sig).expect("valid signature");
        }
        assert_eq!(cache.stats().misses, 3);
        assert!(cache.is_empty());
    }

    #[test]
    fn concurrent_verifications_agree_and_stay_bounded() {
        let cache = Arc::new(SignatureCache::new(40));
        let triples: Arc<Vec<_>> = Arc::new((0..64u8).map(|i| signed("bob", &[i])).collect());
        let (bad_key, bad_msg, _) = signed("carol", b"x");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                let triples = triples.clone();
                std::thread::spawn(move || {
                    for round in 0..2 {
                        for (i, (key, msg, sig)) in triples.iter().enumerate() {
                            if (i + t + round) % 5 == 0 {
                                assert!(cache.verify(&bad_key, &bad_msg, sig).is_err());
                            } else {
                                assert_eq!(cache.verify(key, msg, sig), Ok(()));
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a verifying thread panicked");
        }
        let stats = cache.stats();
        assert!(stats.entries <= 40, "{stats:?}");
        assert_eq!(stats.hits + stats.misses, 4 * 2 * 64);
        assert!(stats.hits > 0, "{stats:?}");
    }
}
