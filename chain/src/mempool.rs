//! The transaction pool: transactions checked against the head state, waiting for a block.
//!
//! Per sender the pool holds a gapless run of nonces starting at the account's nonce, all
//! of which the balance covers together. A transaction paying less than the minimum relay
//! fee (policy, as Bitcoin Core's `-minrelaytxfee`; the node takes it from the chain spec)
//! is refused before its signature is checked, so spam costs its sender something. Blocks
//! take the highest fee rate (fee per encoded byte) first while keeping each sender's nonce
//! order. The pool is bounded in count and bytes; when full, a new transaction evicts the
//! lowest-rate one only if its own rate is higher. A transaction with the same sender and
//! nonce as a pooled one replaces it only with a higher fee. After every head change the
//! pool is re-validated against the new state, and the transactions of reverted blocks are
//! offered again (without the minimum: they were mined once, as Bitcoin Core re-adds a
//! disconnected block's transactions).

use crate::amount::Amount;
use crate::chain::HeadChange;
use crate::codec::Canonical;
use crate::crypto::Address;
use crate::primitives::{ChainId, TxHash};
use crate::sigcache::SignatureCache;
use crate::state::StateRead;
use crate::store::StoreError;
use crate::tx::{Transaction, TxError};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;

/// Bounds and policy of the pool.
#[derive(Clone, Copy, Debug)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// The least fee a transaction must pay to enter the pool (policy, not consensus: a
    /// block may still include cheaper ones).
    pub min_relay_fee: Amount,
}

impl Default for MempoolConfig {
    /// 20,000 transactions, 16 MiB, and no minimum fee: a node takes its minimum from its
    /// chain spec's `[policy]` (`config::ChainSpec::mempool_config`).
    fn default() -> Self {
        MempoolConfig {
            max_txs: 20_000,
            max_bytes: 16 * 1024 * 1024,
            min_relay_fee: Amount::ZERO,
        }
    }
}

/// A fee per encoded byte, compared exactly (`fee₁ × bytes₂` against `fee₂ × bytes₁`).
#[derive(Clone, Copy, Debug)]
pub struct FeeRate {
    pub fee: Amount,
    pub bytes: usize,
}

impl FeeRate {
    pub fn new(fee: Amount, bytes: usize) -> FeeRate {
        FeeRate { fee, bytes }
    }

    /// The rate of nothing (what an empty pool's lowest rate reads as).
    pub const ZERO: FeeRate = FeeRate {
        fee: Amount::ZERO,
        bytes: 1,
    };
}

impl Ord for FeeRate {
    fn cmp(&self, other: &FeeRate) -> Ordering {
        // A zero-byte rate is never built (every transaction encodes to some bytes);
        // read it as one byte so the order stays total.
        let (a, b) = (self.bytes.max(1) as u128, other.bytes.max(1) as u128);
        (u128::from(self.fee.0) * b).cmp(&(u128::from(other.fee.0) * a))
    }
}

impl PartialOrd for FeeRate {
    fn partial_cmp(&self, other: &FeeRate) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for FeeRate {
    fn eq(&self, other: &FeeRate) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for FeeRate {}

impl fmt::Display for FeeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {} bytes", self.fee, self.bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("transaction {hash} is already in the pool")]
    AlreadyKnown { hash: TxHash },
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("replacement for nonce {nonce} needs a fee above the pooled {existing}, got {offered}")]
    ReplacementUnderpriced {
        nonce: u64,
        existing: Amount,
        offered: Amount,
    },
    #[error("transaction {hash} pays a fee of {fee}, below the minimum relay fee of {minimum}")]
    FeeBelowMinimum {
        hash: TxHash,
        fee: Amount,
        minimum: Amount,
    },
    #[error("mempool is full and fee rate {offered} does not beat the lowest pooled rate {lowest}")]
    Full { offered: FeeRate, lowest: FeeRate },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MempoolError {
    /// True when the transaction can never be valid (so its sender misbehaved). A fee
    /// below our minimum is our policy, not the sender's fault: peers may ask less.
    pub fn is_bad_data(&self) -> bool {
        matches!(self, MempoolError::Invalid(e) if e.is_bad_data())
    }
}

#[derive(Debug, Clone)]
struct PoolTx {
    tx: Transaction,
    sender: Address,
    bytes: usize,
}

#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    chain_id: ChainId,
    txs: HashMap<TxHash, PoolTx>,
    by_sender: HashMap<Address, BTreeMap<u64, TxHash>>,
    /// What each sender's pooled transactions cost together (amounts and fees, summed
    /// wide so no sum overflows): kept as transactions come and go, so admission checks a
    /// sender's balance in constant time rather than once per transaction it has pooled.
    cost_by_sender: HashMap<Address, u128>,
    /// (fee rate, hash), lowest first: the eviction order.
    by_rate: BTreeSet<(FeeRate, TxHash)>,
    bytes: usize,
    /// Signatures verified on this node, shared with the chain.
    signatures: Arc<SignatureCache>,
}

/// What a pooled transaction spends: its amount and fee (a transaction whose sum
/// overflows never enters the pool, so this is exact for pooled ones).
fn pooled_cost(tx: &Transaction) -> u128 {
    u128::from(tx.kind.amount().0) + u128::from(tx.fee.0)
}

impl Mempool {
    pub fn new(chain_id: ChainId, config: MempoolConfig) -> Mempool {
        Mempool {
            config,
            chain_id,
            txs: HashMap::new(),
            by_sender: HashMap::new(),
            cost_by_sender: HashMap::new(),
            by_rate: BTreeSet::new(),
            bytes: 0,
            signatures: Arc::new(SignatureCache::default()),
        }
    }

    /// The pool verifying signatures through `cache`: pass the chain's
    /// ([`crate::ChainConfig::signature_cache`]) so a transaction admitted here is not
    /// verified again when a block with it is built or imported.
    pub fn with_signature_cache(mut self, cache: Arc<SignatureCache>) -> Mempool {
        self.signatures = cache;
        self
    }

    /// The cache the pool verifies signatures through.
    pub fn signature_cache(&self) -> &Arc<SignatureCache> {
        &self.signatures
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bounds and policy the pool was made with.
    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.txs.contains_key(hash)
    }

    pub fn get(&self, hash: &TxHash) -> Option<&Transaction> {
        self.txs.get(hash).map(|p| &p.tx)
    }

    /// The nonce the sender's next transaction should carry, counting pooled ones.
    pub fn next_nonce(&self, address: &Address, state: &dyn StateRead) -> Result<u64, StoreError> {
        let account = state.account(address)?;
        let pending = self.by_sender.get(address).map_or(0, |m| m.len() as u64);
        Ok(account.nonce + pending)
    }

    /// Checks `tx` fully (the minimum relay fee first, then its signature) and adds it.
    pub fn insert(
        &mut self,
        tx: Transaction,
        state: &dyn StateRead,
    ) -> Result<TxHash, MempoolError> {
        let hash = tx.hash();
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown { hash });
        }
        if tx.fee < self.config.min_relay_fee {
            return Err(MempoolError::FeeBelowMinimum {
                hash,
                fee: tx.fee,
                minimum: self.config.min_relay_fee,
            });
        }
        tx.check_stateless_cached(self.chain_id, &self.signatures)?;
        self.insert_verified(tx, hash, state)
    }

    /// Adds a transaction whose stateless checks already passed (from a block we validated
    /// or from this pool).
    fn insert_verified(
        &mut self,
        tx: Transaction,
        hash: TxHash,
        state: &dyn StateRead,
    ) -> Result<TxHash, MempoolError> {
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown { hash });
        }
        let sender = tx.sender_address();
        let account = state.account(&sender)?;
        if tx.nonce < account.nonce {
            return Err(TxError::NonceTooLow {
                expected: account.nonce,
                got: tx.nonce,
            }
            .into());
        }
        let pending = self.by_sender.get(&sender);
        let next = account.nonce + pending.map_or(0, |m| m.len() as u64);
        if tx.nonce > next {
            return Err(TxError::NonceTooHigh {
                expected: next,
                got: tx.nonce,
            }
            .into());
        }
        let replaced = pending.and_then(|m| m.get(&tx.nonce)).copied();
        if let Some(old) = replaced {
            let existing = self.txs[&old].tx.fee;
            if tx.fee <= existing {
                return Err(MempoolError::ReplacementUnderpriced {
                    nonce: tx.nonce,
                    existing,
                    offered: tx.fee,
                });
            }
        }
        // The balance must cover every pooled tx of the sender with this one in its slot.
        let cost = tx.total_cost().ok_or(TxError::AmountOverflow)?;
        let pooled = self.cost_by_sender.get(&sender).copied().unwrap_or(0);
        let replaced_cost = replaced.map_or(0, |h| pooled_cost(&self.txs[&h].tx));
        let needed = u64::try_from(pooled - replaced_cost + u128::from(cost.0))
            .map(Amount)
            .map_err(|_| TxError::AmountOverflow)?;
        if needed > account.balance {
            return Err(TxError::InsufficientBalance {
                address: sender,
                available: account.balance,
                needed,
            }
            .into());
        }
        let bytes = tx.encode().len();
        self.make_room(&tx, &sender, bytes, replaced)?;
        if let Some(old) = replaced {
            self.remove_one(&old);
        }
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(tx.nonce, hash);
        self.by_rate.insert((FeeRate::new(tx.fee, bytes), hash));
        self.bytes += bytes;
        *self.cost_by_sender.entry(sender).or_default() += pooled_cost(&tx);
        self.txs.insert(hash, PoolTx { tx, sender, bytes });
        Ok(hash)
    }

    /// Evicts the lowest-rate transactions (and their sender's later nonces) until `tx`
    /// fits; refuses `tx` when it does not pay a higher rate than the one to evict.
    fn make_room(
        &mut self,
        tx: &Transaction,
        sender: &Address,
        bytes: usize,
        replaced: Option<TxHash>,
    ) -> Result<(), MempoolError> {
        let offered = FeeRate::new(tx.fee, bytes);
        loop {
            let freed = replaced
                .and_then(|h| self.txs.get(&h))
                .map_or((0, 0), |p| (1, p.bytes));
            let count_after = self.txs.len() + 1 - freed.0;
            let bytes_after = self.bytes + bytes - freed.1;
            if count_after <= self.config.max_txs && bytes_after <= self.config.max_bytes {
                return Ok(());
            }
            let Some(&(lowest_rate, lowest)) =
                self.by_rate.iter().find(|(_, h)| Some(*h) != replaced)
            else {
                return Err(MempoolError::Full {
                    offered,
                    lowest: FeeRate::ZERO,
                });
            };
            let victim = &self.txs[&lowest];
            let blocks_own_chain = victim.sender == *sender && victim.tx.nonce < tx.nonce;
            if lowest_rate >= offered || blocks_own_chain {
                return Err(MempoolError::Full {
                    offered,
                    lowest: lowest_rate,
                });
            }
            let (victim_sender, victim_nonce) = (victim.sender, victim.tx.nonce);
            let doomed: Vec<TxHash> = self
                .by_sender
                .get(&victim_sender)
                .map(|m| m.range(victim_nonce..).map(|(_, h)| *h).collect())
                .unwrap_or_default();
            for h in doomed {
                self.remove_one(&h);
            }
        }
    }

    fn remove_one(&mut self, hash: &TxHash) -> Option<Transaction> {
        let pooled = self.txs.remove(hash)?;
        self.by_rate
            .remove(&(FeeRate::new(pooled.tx.fee, pooled.bytes), *hash));
        if let Some(m) = self.by_sender.get_mut(&pooled.sender) {
            m.remove(&pooled.tx.nonce);
            if m.is_empty() {
                self.by_sender.remove(&pooled.sender);
            }
        }
        if self.by_sender.contains_key(&pooled.sender) {
            if let Some(cost) = self.cost_by_sender.get_mut(&pooled.sender) {
                *cost -= pooled_cost(&pooled.tx);
            }
        } else {
            self.cost_by_sender.remove(&pooled.sender);
        }
        self.bytes -= pooled.bytes;
        Some(pooled.tx)
    }

    /// Up to `max` transactions for a block: highest fee rate first, each sender's in nonce
    /// order.
    pub fn select(&self, max: usize) -> Vec<Transaction> {
        let rate = |h: &TxHash| {
            let p = &self.txs[h];
            FeeRate::new(p.tx.fee, p.bytes)
        };
        let mut heap: BinaryHeap<(FeeRate, Reverse<TxHash>, Address, u64)> = self
            .by_sender
            .iter()
            .filter_map(|(sender, m)| {
                m.iter()
                    .next()
                    .map(|(nonce, h)| (rate(h), Reverse(*h), *sender, *nonce))
            })
            .collect();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, Reverse(hash), sender, nonce)) = heap.pop() else {
                break;
            };
            out.push(self.txs[&hash].tx.clone());
            if let Some((next_nonce, next)) = self
                .by_sender
                .get(&sender)
                .and_then(|m| m.range(nonce + 1..).next())
            {
                heap.push((rate(next), Reverse(*next), sender, *next_nonce));
            }
        }
        out
    }

    /// After the head moved: offers the reverted blocks' transactions again and keeps only
    /// what is valid on the new state (included ones drop out by their nonce).
    pub fn on_head_change(
        &mut self,
        change: &HeadChange,
        state: &dyn StateRead,
    ) -> Result<(), StoreError> {
        let reinjected: Vec<Transaction> = change
            .reverted
            .iter()
            .flat_map(|b| b.txs.iter().cloned())
            .collect();
        self.revalidate(reinjected, state)
    }

    /// Rebuilds the pool from its transactions plus `extra`, against `state`.
    pub fn revalidate(
        &mut self,
        extra: Vec<Transaction>,
        state: &dyn StateRead,
    ) -> Result<(), StoreError> {
        let mut all: Vec<(TxHash, Transaction)> = self
            .txs
            .drain()
            .map(|(h, p)| (h, p.tx))
            .chain(extra.into_iter().map(|tx| (tx.hash(), tx)))
            .collect();
        self.by_sender.clear();
        self.cost_by_sender.clear();
        self.by_rate.clear();
        self.bytes = 0;
        // Nonce order first so each sender's run is rebuilt without gaps; higher fee first
        // among equal nonces so the better of two conflicting txs stays.
        all.sort_by(|(ha, a), (hb, b)| {
            (a.nonce, Reverse(a.fee), ha).cmp(&(b.nonce, Reverse(b.fee), hb))
        });
        for (hash, tx) in all {
            match self.insert_verified(tx, hash, state) {
                Ok(_) | Err(MempoolError::Invalid(_)) => {}
                Err(MempoolError::AlreadyKnown { .. })
                | Err(MempoolError::FeeBelowMinimum { .. })
                | Err(MempoolError::ReplacementUnderpriced { .. })
                | Err(MempoolError::Full { .. }) => {}
                Err(MempoolError::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }
}
