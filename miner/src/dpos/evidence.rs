//! Equivocation: two different blocks signed by one producer for one slot. Every node
//! notices them as headers arrive ([`EvidencePool::observe`]); a producer puts what it
//! noticed in its next block's engine data, every node checks it there, and the state
//! records it once and bars the offender from the following elections.

use crate::dpos::error::DposError;
use crate::seal::verify_signed_seal;
use borsh::{BorshDeserialize, BorshSerialize};
use chain::{Address, BlockHash, Header};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Most pieces of evidence one block may carry.
pub const MAX_EVIDENCE_PER_BLOCK: usize = 4;

/// Two headers that prove one producer signed twice for one slot.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Equivocation {
    pub first: Header,
    pub second: Header,
}

impl Equivocation {
    pub fn offender(&self) -> Address {
        self.first.producer
    }

    /// Checks the proof without state: both seals valid and by the same producer, the same
    /// slot, two different blocks. Returns the offender and the slot.
    pub fn verify(&self, slot_secs: u64) -> Result<(Address, u64), DposError> {
        let invalid = |reason: String| DposError::InvalidEvidence { reason };
        for header in [&self.first, &self.second] {
            verify_signed_seal(header).map_err(|e| invalid(format!("a header's seal: {e}")))?;
        }
        if self.first.producer != self.second.producer {
            return Err(invalid(format!(
                "the headers are by {} and {}",
                self.first.producer, self.second.producer
            )));
        }
        let (a, b) = (
            self.first.timestamp.0 / slot_secs,
            self.second.timestamp.0 / slot_secs,
        );
        if a != b {
            return Err(invalid(format!("the headers are in slots {a} and {b}")));
        }
        if self.first.hash() == self.second.hash() {
            return Err(invalid("the two headers are the same block".into()));
        }
        Ok((self.first.producer, a))
    }
}

/// What this node has seen: one header per (slot, producer) for the recent slots, and the
/// equivocations found but not yet recorded on chain. Shared by the engine (which
/// observes every header it verifies) and the producer (which includes the evidence).
#[derive(Clone, Debug, Default)]
pub struct EvidencePool(Arc<Mutex<PoolInner>>);

#[derive(Debug, Default)]
struct PoolInner {
    seen: BTreeMap<(u64, Address), (BlockHash, Header)>,
    pending: Vec<Equivocation>,
}

impl EvidencePool {
    /// Notes a header whose seal is valid; returns the evidence when it conflicts with
    /// one seen before. Headers more than `keep_slots` behind the newest are forgotten.
    pub fn observe(&self, header: &Header, slot: u64, keep_slots: u64) -> Option<Equivocation> {
        let Ok(mut inner) = self.0.lock() else {
            return None;
        };
        let hash = header.hash();
        let key = (slot, header.producer);
        let found = match inner.seen.get(&key) {
            Some((seen, _)) if *seen == hash => return None,
            Some((_, first)) => Some(Equivocation {
                first: first.clone(),
                second: header.clone(),
            }),
            None => {
                inner.seen.insert(key, (hash, header.clone()));
                None
            }
        };
        if let Some(evidence) = &found
            && !inner
                .pending
                .iter()
                .any(|e| e.offender() == evidence.offender() && same_slot(e, evidence))
        {
            inner.pending.push(evidence.clone());
        }
        let newest = inner.seen.keys().next_back().map_or(0, |(s, _)| *s);
        let oldest_kept = newest.saturating_sub(keep_slots);
        inner.seen.retain(|(s, _), _| *s >= oldest_kept);
        found
    }

    /// Evidence waiting to be put in a block.
    pub fn pending(&self) -> Vec<Equivocation> {
        self.0.lock().map(|i| i.pending.clone()).unwrap_or_default()
    }

    /// Drops evidence the chain has recorded.
    pub fn forget(&self, recorded: impl Fn(&Equivocation) -> bool) {
        if let Ok(mut inner) = self.0.lock() {
            inner.pending.retain(|e| !recorded(e));
        }
    }
}

fn same_slot(a: &Equivocation, b: &Equivocation) -> bool {
    a.first.timestamp == b.first.timestamp
}
