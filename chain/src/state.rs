//! Account state, the engines' namespaced key space, overlays, and the state root.
//!
//! State is a map from [`StateKey`] to bytes. Accounts live under one prefix; each engine
//! gets its own namespace for stake ages, delegate votes or authority sets, so engine state
//! is reverted by the same undo records as balances.
//!
//! The state root is a lattice hash (LtHash, as in Facebook's and Solana's state hashing):
//! each entry is expanded to 1024 16-bit lanes and the lanes of all entries are added
//! modulo 2^16. Changing an entry subtracts its old expansion and adds the new one, so the
//! root updates in time proportional to the entries a block touches, not to the whole
//! state; the header commits to sha256 of the 2048-byte sum.

use crate::amount::Amount;
use crate::crypto::Address;
use crate::primitives::Hash256;
use crate::store::StoreError;
use borsh::{BorshDeserialize, BorshSerialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, OnceLock};

const ACCOUNT_PREFIX: u8 = b'a';
const ENGINE_PREFIX: u8 = b'e';

/// Changes to apply: a new value, or `None` to delete.
pub type StateChanges = BTreeMap<StateKey, Option<Vec<u8>>>;
/// Old values of changed keys: what restores the state before the changes.
pub type UndoEntries = Vec<(StateKey, Option<Vec<u8>>)>;

/// A key in the state map.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct StateKey(pub Vec<u8>);

impl StateKey {
    pub fn account(address: &Address) -> StateKey {
        let mut key = Vec::with_capacity(21);
        key.push(ACCOUNT_PREFIX);
        key.extend_from_slice(&address.0);
        StateKey(key)
    }

    /// A key in an engine's own namespace (`namespace` is the engine's short name).
    pub fn engine(namespace: &str, key: &[u8]) -> StateKey {
        let mut out = Vec::with_capacity(2 + namespace.len() + key.len());
        out.push(ENGINE_PREFIX);
        out.push(u8::try_from(namespace.len()).expect("engine namespaces are short names"));
        out.extend_from_slice(namespace.as_bytes());
        out.extend_from_slice(key);
        StateKey(out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The account this key belongs to, when it is an account key.
    pub fn as_account(&self) -> Option<Address> {
        match self.0.split_first() {
            Some((&ACCOUNT_PREFIX, rest)) if rest.len() == 20 => {
                let mut a = [0u8; 20];
                a.copy_from_slice(rest);
                Some(Address(a))
            }
            _ => None,
        }
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_account() {
            Some(address) => write!(f, "StateKey(account {address})"),
            None => write!(f, "StateKey({})", hex::encode(&self.0)),
        }
    }
}

/// An account: its balance and the nonce its next transaction must carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct Account {
    pub balance: Amount,
    pub nonce: u64,
}

/// Read access to a state.
pub trait StateRead {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// The account at `address` (an absent account is empty).
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        match self.get(&StateKey::account(address))? {
            None => Ok(Account::default()),
            Some(bytes) => borsh::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                what: "account",
                reason: e.to_string(),
            }),
        }
    }
}

/// Changes on top of a base state. Reads fall through to the base; nothing is written
/// until the caller commits [`StateOverlay::into_changes`].
pub struct StateOverlay<'a> {
    base: &'a dyn StateRead,
    changes: BTreeMap<StateKey, Option<Vec<u8>>>,
}

impl fmt::Debug for StateOverlay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateOverlay")
            .field("changes", &self.changes.len())
            .finish()
    }
}

impl<'a> StateOverlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> StateOverlay<'a> {
        StateOverlay {
            base,
            changes: BTreeMap::new(),
        }
    }

    pub fn put(&mut self, key: StateKey, value: Vec<u8>) {
        self.changes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: StateKey) {
        self.changes.insert(key, None);
    }

    /// Stores an account; an empty account is deleted so the state holds no zero entries.
    pub fn set_account(&mut self, address: &Address, account: Account) {
        let key = StateKey::account(address);
        if account == Account::default() {
            self.delete(key);
        } else {
            self.put(
                key,
                borsh::to_vec(&account).expect("borsh serialization into a Vec cannot fail"),
            );
        }
    }

    /// Adds `amount` to an account's balance, refusing overflow.
    pub fn credit(&mut self, address: &Address, amount: Amount) -> Result<(), CreditOverflow> {
        let mut account = self.account(address).map_err(CreditOverflow::Store)?;
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or(CreditOverflow::Overflow { address: *address })?;
        self.set_account(address, account);
        Ok(())
    }

    /// Applies a batch of changes (a child overlay's) on top of this one.
    pub fn apply(&mut self, changes: BTreeMap<StateKey, Option<Vec<u8>>>) {
        self.changes.extend(changes);
    }

    pub fn changes(&self) -> &BTreeMap<StateKey, Option<Vec<u8>>> {
        &self.changes
    }

    pub fn into_changes(self) -> BTreeMap<StateKey, Option<Vec<u8>>> {
        self.changes
    }

    /// For every changed key, its value in the base: what undoing the changes restores.
    pub fn undo(&self) -> Result<UndoEntries, StoreError> {
        self.changes
            .keys()
            .map(|k| Ok((k.clone(), self.base.get(k)?)))
            .collect()
    }
}

impl StateRead for StateOverlay<'_> {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        match self.changes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }
}

/// A credit that would overflow a balance, or a store failure while reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditOverflow {
    #[error("balance of {address} would overflow")]
    Overflow { address: Address },
    #[error(transparent)]
    Store(StoreError),
}

/// Number of 16-bit lanes in the lattice hash.
pub const LTHASH_LANES: usize = 1024;

/// The homomorphic set hash behind the state root (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(pub Box<[u16; LTHASH_LANES]>);

impl Default for LtHash {
    fn default() -> Self {
        LtHash(Box::new([0u16; LTHASH_LANES]))
    }
}

impl fmt::Debug for LtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LtHash(root {})", self.root())
    }
}

/// Expansions remembered by [`memoize_expansions`]: the lanes of recent entries by the
/// SHA-256 of what they expand, in two generations (when the current one fills it becomes
/// the old one, and the one before is dropped).
#[derive(Debug, Default)]
struct ExpandMemo {
    generations: Mutex<(Expansions, Expansions)>,
}

type Expansions = HashMap<[u8; 32], Box<[u16; LTHASH_LANES]>>;

/// Entries per generation of the memo: 2 KiB of lanes each, so at most 16 MiB in all.
const EXPAND_MEMO_GENERATION: usize = 4096;

static EXPAND_MEMO: OnceLock<ExpandMemo> = OnceLock::new();

/// Makes [`LtHash::expand`] remember recent expansions for the rest of the process. An
/// expansion is a pure function of the entry, so this changes no result; it pays where the
/// same entries are expanded again. A node expands a changed entry's old value, which was
/// an earlier block's new value, and expands its own blocks twice, building and importing
/// them; `toychain simulate` runs every node's chain in one process, so each block's
/// changes are expanded once instead of once per node.
pub fn memoize_expansions() {
    EXPAND_MEMO.get_or_init(ExpandMemo::default);
}

impl ExpandMemo {
    fn get(&self, id: &[u8; 32]) -> Option<Box<[u16; LTHASH_LANES]>> {
        let guard = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(id).or_else(|| guard.1.get(id)).cloned()
    }

    fn insert(&self, id: [u8; 32], lanes: Box<[u16; LTHASH_LANES]>) {
        let mut guard = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        let (current, old) = &mut *guard;
        if current.len() >= EXPAND_MEMO_GENERATION {
            *old = std::mem::take(current);
        }
        current.insert(id, lanes);
    }
}

impl LtHash {
    /// Expands one entry to its lanes: SHA-256 in counter mode over the key and value.
    pub fn expand(key: &StateKey, value: &[u8]) -> Box<[u16; LTHASH_LANES]> {
        let mut prefix = Sha256::new();
        prefix.update(b"toychain/lthash/v1");
        prefix.update((key.0.len() as u32).to_le_bytes());
        prefix.update(&key.0);
        prefix.update((value.len() as u32).to_le_bytes());
        prefix.update(value);
        let Some(memo) = EXPAND_MEMO.get() else {
            return Self::expand_prefix(&prefix);
        };
        let id: [u8; 32] = prefix.clone().finalize().into();
        if let Some(lanes) = memo.get(&id) {
            return lanes;
        }
        let lanes = Self::expand_prefix(&prefix);
        memo.insert(id, lanes.clone());
        lanes
    }

    /// The counter-mode lanes after `prefix` has absorbed an entry.
    fn expand_prefix(prefix: &Sha256) -> Box<[u16; LTHASH_LANES]> {
        let mut lanes = Box::new([0u16; LTHASH_LANES]);
        for (block, chunk) in lanes.chunks_mut(16).enumerate() {
            let mut h = prefix.clone();
            h.update((block as u32).to_le_bytes());
            let digest = h.finalize();
            for (lane, bytes) in chunk.iter_mut().zip(digest.chunks_exact(2)) {
                *lane = u16::from_le_bytes([bytes[0], bytes[1]]);
            }
        }
        lanes
    }

    pub fn add(&mut self, lanes: &[u16; LTHASH_LANES]) {
        for (a, b) in self.0.iter_mut().zip(lanes.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    pub fn sub(&mut self, lanes: &[u16; LTHASH_LANES]) {
        for (a, b) in self.0.iter_mut().zip(lanes.iter()) {
            *a = a.wrapping_sub(*b);
        }
    }

    /// Replaces `old` by `new` for `key` (either may be absent).
    pub fn update(&mut self, key: &StateKey, old: Option<&[u8]>, new: Option<&[u8]>) {
        if let Some(old) = old {
            self.sub(&Self::expand(key, old));
        }
        if let Some(new) = new {
            self.add(&Self::expand(key, new));
        }
    }

    /// The 32-byte state root committed in headers.
    pub fn root(&self) -> Hash256 {
        let mut h = Sha256::new();
        for lane in self.0.iter() {
            h.update(lane.to_le_bytes());
        }
        Hash256(h.finalize().into())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<LtHash> {
        if bytes.len() != LTHASH_LANES * 2 {
            return None;
        }
        let mut lanes = Box::new([0u16; LTHASH_LANES]);
        for (lane, b) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([b[0], b[1]]);
        }
        Some(LtHash(lanes))
    }

    /// The hash of a whole state, from scratch (for checks and genesis).
    pub fn of_entries<'k>(entries: impl IntoIterator<Item = (&'k StateKey, &'k [u8])>) -> LtHash {
        let mut acc = LtHash::default();
        for (k, v) in entries {
            acc.add(&Self::expand(k, v));
        }
        acc
    }
}

/// Entries below which [`update_lthash`] expands on the calling thread: handing a block's
/// two or three changes to rayon's pool (and waiting for them) costs more than hashing
/// them.
const PARALLEL_LTHASH_MIN: usize = 32;

/// Applies `changes` (with their `undo` old values) to `lthash`, expanding entries on rayon
/// when there are many.
pub fn update_lthash(
    lthash: &mut LtHash,
    undo: &[(StateKey, Option<Vec<u8>>)],
    changes: &BTreeMap<StateKey, Option<Vec<u8>>>,
) {
    use rayon::prelude::*;
    // What one entry adds and removes.
    let delta = |(key, old): &(StateKey, Option<Vec<u8>>)| {
        let new = changes.get(key).and_then(|v| v.as_deref());
        let mut plus = LtHash::default();
        let mut minus = LtHash::default();
        if old.as_deref() != new {
            if let Some(new) = new {
                plus.add(&LtHash::expand(key, new));
            }
            if let Some(old) = old {
                minus.add(&LtHash::expand(key, old));
            }
        }
        (plus, minus)
    };
    let sum = |(mut pa, mut ma): (LtHash, LtHash), (pb, mb): (LtHash, LtHash)| {
        pa.add(&pb.0);
        ma.add(&mb.0);
        (pa, ma)
    };
    let zero = || (LtHash::default(), LtHash::default());
    let (added, removed) = if undo.len() < PARALLEL_LTHASH_MIN {
        undo.iter().map(delta).fold(zero(), sum)
    } else {
        undo.par_iter().map(delta).reduce(zero, sum)
    };
    lthash.add(&added.0);
    lthash.sub(&removed.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn memoized_expansions_equal_fresh_ones() {
        let key = StateKey(b"account/alice".to_vec());
        let fresh: Vec<_> = (0u8..40).map(|v| LtHash::expand(&key, &[v; 9])).collect();
        memoize_expansions();
        for round in 0..2 {
            for (v, lanes) in (0u8..40).zip(&fresh) {
                assert_eq!(
                    &LtHash::expand(&key, &[v; 9]),
                    lanes,
                    "value {v}, round {round}"
                );
            }
        }
        // A different key with the same value is a different entry.
        let other = StateKey(b"account/bob".to_vec());
        assert_ne!(LtHash::expand(&other, &[0; 9]), fresh[0]);
    }

    #[derive(Default)]
    struct MapState(HashMap<StateKey, Vec<u8>>);

    impl StateRead for MapState {
        fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(key).cloned())
        }
    }

    #[test]
    fn lthash_is_order_independent_and_incremental() {
        let a = (StateKey(vec![1]), vec![10u8]);
        let b = (StateKey(vec![2]), vec![20u8]);
        let c = (StateKey(vec![3]), vec![30u8]);
        let ab = LtHash::of_entries([(&a.0, &a.1[..]), (&b.0, &b.1[..])]);
        let ba = LtHash::of_entries([(&b.0, &b.1[..]), (&a.0, &a.1[..])]);
        assert_eq!(ab, ba);
        // Update b -> c via the incremental path equals building {a, c} from scratch.
        let mut inc = ab.clone();
        inc.update(&b.0, Some(&b.1), None);
        inc.update(&c.0, None, Some(&c.1));
        let ac = LtHash::of_entries([(&a.0, &a.1[..]), (&c.0, &c.1[..])]);
        assert_eq!(inc, ac);
        assert_ne!(ab.root(), ac.root());
        // Same key, other value: different root.
        let a2 = LtHash::of_entries([(&a.0, &[11u8][..]), (&b.0, &b.1[..])]);
        assert_ne!(ab.root(), a2.root());
        assert_eq!(LtHash::from_bytes(&ab.to_bytes()), Some(ab));
    }

    #[test]
    fn overlay_reads_through_and_records_undo() {
        let alice = Address([1; 20]);
        let bob = Address([2; 20]);
        let mut base = MapState::default();
        base.0.insert(
            StateKey::account(&alice),
            borsh::to_vec(&Account {
                balance: Amount(100),
                nonce: 1,
            })
            .expect("encodes"),
        );
        let mut overlay = StateOverlay::new(&base);
        assert_eq!(overlay.account(&alice).expect("read").balance, Amount(100));
        overlay.credit(&bob, Amount(5)).expect("credit");
        overlay.set_account(&alice, Account::default());
        assert_eq!(overlay.account(&bob).expect("read").balance, Amount(5));
        // Emptied account is deleted, not stored as zeros.
        assert_eq!(overlay.get(&StateKey::account(&alice)).expect("read"), None);
        let undo = overlay.undo().expect("undo");
        assert_eq!(undo.len(), 2);
        let alice_undo = undo
            .iter()
            .find(|(k, _)| k == &StateKey::account(&alice))
            .expect("alice in undo");
        assert!(alice_undo.1.is_some());
        overlay.set_account(
            &bob,
            Account {
                balance: Amount::MAX,
                nonce: 0,
            },
        );
        assert_eq!(
            overlay.credit(&bob, Amount(1)),
            Err(CreditOverflow::Overflow { address: bob })
        );
    }

    #[test]
    fn engine_keys_never_collide_with_accounts_or_other_engines() {
        let addr = Address([b'x'; 20]);
        let account = StateKey::account(&addr);
        let pos = StateKey::engine("pos", &addr.0);
        let dpos = StateKey::engine("dpos", &addr.0);
        assert_ne!(account, pos);
        assert_ne!(pos, dpos);
        assert_eq!(account.as_account(), Some(addr));
        assert_eq!(pos.as_account(), None);
    }
}
