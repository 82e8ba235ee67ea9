//! Blocks whose parent this node does not have yet, held until the parent arrives.
//!
//! An orphan cannot be checked beyond its shape (its parent's time, state and producers
//! are unknown), so anyone can send them: the pool is what a flood of made-up parents
//! buys. It is bounded three ways — entries and bytes in all, and entries and bytes per
//! sending peer — and a peer that keeps pushing its own orphans out before any of them
//! connects is flooding: once [`JUNK_LIMIT`] of its orphans were evicted unconnected, its
//! further orphans are refused and reported against it (the net layer lowers its score
//! and, after a few, bans it). A peer whose orphans connect (a node ahead of us, sending
//! its new heads while we sync from it) never comes near the limit.

use chain::{Block, BlockHash};
use net::PeerId;
use std::collections::{HashMap, VecDeque};

/// Orphans kept at most, from all peers.
pub const MAX_ORPHANS: usize = 256;
/// Bytes of orphans kept at most, from all peers.
pub const MAX_ORPHAN_BYTES: usize = 32 * 1024 * 1024;
/// Orphans kept at most from one peer.
pub const MAX_ORPHANS_PER_PEER: usize = 32;
/// Bytes of orphans kept at most from one peer.
pub const MAX_ORPHAN_BYTES_PER_PEER: usize = 8 * 1024 * 1024;
/// A peer's orphans evicted by its own later ones, never connected, after which its
/// orphans are refused as a flood.
pub const JUNK_LIMIT: u32 = 64;

/// What became of an orphan offered to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Held until its parent arrives (or already held).
    Kept,
    /// Not held: the sender has flooded the pool with orphans that never connected.
    Flooding { evicted: u32 },
}

#[derive(Debug)]
struct Entry {
    block: Block,
    parent: BlockHash,
    peer: PeerId,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Tally {
    count: usize,
    bytes: usize,
    /// Orphans of this peer evicted to make room for its own newer ones.
    junk: u32,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct OrphanPool {
    entries: HashMap<BlockHash, Entry>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    /// Insertion order; may name entries already gone (skipped when met).
    order: VecDeque<BlockHash>,
    peers: HashMap<PeerId, Tally>,
    bytes: usize,
}

impl OrphanPool {
    /// Offers `block` (`bytes` long on the wire) from `peer`.
    pub fn insert(&mut self, block: Block, bytes: usize, peer: PeerId) -> Admission {
        let tally = self.peers.entry(peer).or_default();
        if tally.junk >= JUNK_LIMIT {
            return Admission::Flooding {
                evicted: tally.junk,
            };
        }
        let hash = block.hash();
        if self.entries.contains_key(&hash) {
            return Admission::Kept;
        }
        let parent = block.header.parent;
        tally.count += 1;
        tally.bytes += bytes;
        self.bytes += bytes;
        self.entries.insert(
            hash,
            Entry {
                block,
                parent,
                peer,
                bytes,
            },
        );
        self.by_parent.entry(parent).or_default().push(hash);
        self.order.push_back(hash);
        // The peer's own quota first: its oldest make room, and count against it.
        while self
            .peers
            .get(&peer)
            .is_some_and(|t| t.count > MAX_ORPHANS_PER_PEER || t.bytes > MAX_ORPHAN_BYTES_PER_PEER)
        {
            let Some(oldest) = self.oldest_of(&peer) else {
                break;
            };
            self.remove(&oldest);
            if let Some(t) = self.peers.get_mut(&peer) {
                t.junk = t.junk.saturating_add(1);
            }
        }
        // Then the pool's: the oldest of anyone, no one's fault.
        while self.entries.len() > MAX_ORPHANS || self.bytes > MAX_ORPHAN_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
        self.order.retain(|h| self.entries.contains_key(h));
        Admission::Kept
    }

    /// Takes the orphans waiting for `parent`, now that it is known.
    pub fn children_of(&mut self, parent: &BlockHash) -> Vec<Block> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        let children: Vec<Block> = hashes.iter().filter_map(|h| self.remove(h)).collect();
        if !children.is_empty() {
            self.order.retain(|h| self.entries.contains_key(h));
        }
        children
    }

    /// Orphans held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no orphan is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the orphans held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn oldest_of(&self, peer: &PeerId) -> Option<BlockHash> {
        self.order
            .iter()
            .find(|h| self.entries.get(h).is_some_and(|e| e.peer == *peer))
            .copied()
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let entry = self.entries.remove(hash)?;
        self.bytes -= entry.bytes;
        if let Some(siblings) = self.by_parent.get_mut(&entry.parent) {
            siblings.retain(|h| h != hash);
            if siblings.is_empty() {
                self.by_parent.remove(&entry.parent);
            }
        }
        if let Some(t) = self.peers.get_mut(&entry.peer) {
            t.count -= 1;
            t.bytes -= entry.bytes;
            if t.count == 0 && t.junk == 0 {
                self.peers.remove(&entry.peer);
            }
        }
        Some(entry.block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::{EngineFields, Hash256, Header, Height, Timestamp};

    fn orphan(parent: u8, n: u64) -> Block {
        let mut parent_hash = [0u8; 32];
        parent_hash[0] = parent;
        let header = Header {
            version: 1,
            parent: BlockHash(parent_hash),
            height: Height(n + 1),
            timestamp: Timestamp(n),
            tx_root: Hash256::default(),
            state_root: Hash256::default(),
            producer: chain::Address::default(),
            engine: EngineFields::default(),
        };
        Block {
            header,
            txs: Vec::new(),
        }
    }

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn a_peer_keeps_at_most_its_quota_and_its_own_evictions_count_against_it() {
        let mut pool = OrphanPool::default();
        let flooder = peer();
        for n in 0..u64::from(JUNK_LIMIT) + MAX_ORPHANS_PER_PEER as u64 {
            assert_eq!(pool.insert(orphan(1, n), 1_000, flooder), Admission::Kept);
            assert!(pool.len() <= MAX_ORPHANS_PER_PEER);
        }
        assert_eq!(pool.len(), MAX_ORPHANS_PER_PEER);
        assert_eq!(
            pool.insert(orphan(1, 9_999), 1_000, flooder),
            Admission::Flooding {
                evicted: JUNK_LIMIT
            }
        );
        // Another peer is not held to the flooder's record.
        assert_eq!(pool.insert(orphan(2, 0), 1_000, peer()), Admission::Kept);
    }

    #[test]
    fn bytes_are_bounded_per_peer_and_in_all() {
        let mut pool = OrphanPool::default();
        let big = 3 * 1024 * 1024;
        let one = peer();
        for n in 0..4 {
            pool.insert(orphan(1, n), big, one);
        }
        assert!(
            pool.bytes() <= MAX_ORPHAN_BYTES_PER_PEER,
            "{}",
            pool.bytes()
        );
        for p in 0..20u64 {
            let sender = peer();
            for n in 0..2 {
                pool.insert(orphan(3, p * 10 + n), big, sender);
            }
        }
        assert!(pool.bytes() <= MAX_ORPHAN_BYTES, "{}", pool.bytes());
        assert!(pool.len() <= MAX_ORPHANS);
    }

    #[test]
    fn orphans_that_connect_leave_and_are_no_ones_junk() {
        let mut pool = OrphanPool::default();
        let ahead = peer();
        // A node ahead of us sends many heads while we sync; each batch connects.
        for round in 0..10u8 {
            for n in 0..8 {
                pool.insert(orphan(round, u64::from(round) * 100 + n), 1_000, ahead);
            }
            let mut parent = [0u8; 32];
            parent[0] = round;
            assert_eq!(pool.children_of(&BlockHash(parent)).len(), 8);
        }
        assert!(pool.is_empty());
        assert_eq!(pool.bytes(), 0);
        assert_eq!(pool.insert(orphan(50, 0), 1_000, ahead), Admission::Kept);
    }
}
