//! Headers and blocks, and how a header is hashed.
//!
//! Every engine's blocks hash the way Bitcoin's do: sha256d over an 80-byte preimage
//! `version(4) | parent(32) | commitment(32) | time(4) | bits(4) | nonce(4)`, where the
//! commitment binds every other header field (height, roots, producer, engine data and
//! seal). So PoW mines exactly Bitcoin's function, and the hash a signer signs is the same
//! preimage with the seal left out of the commitment.

use crate::codec::{Canonical, MAX_BLOCK_BYTES, MAX_HEADER_BYTES};
use crate::crypto::{Address, sha256d, sha256d_parts};
use crate::primitives::{BlockHash, BlockId, Hash256, Height, Timestamp};
use crate::tx::Transaction;
use borsh::{BorshDeserialize, BorshSerialize};

/// Header format version.
pub const HEADER_VERSION: u32 = 1;

const COMMITMENT_DOMAIN: &[u8] = b"toychain/header/v1";

/// The fields an engine owns. `bits` and `nonce` sit in the 80-byte preimage (PoW target
/// and nonce; PoA uses `bits` for its difficulty 1/2); `data` is engine-defined bytes (an
/// extra-nonce, a signer's key, a slot, a vote); `seal` is what is added after the rest is
/// fixed (a signature) and is left out of [`Header::seal_hash`].
#[derive(Clone, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct EngineFields {
    pub bits: u32,
    pub nonce: u32,
    pub data: Vec<u8>,
    pub seal: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Header {
    pub version: u32,
    pub parent: BlockHash,
    pub height: Height,
    /// Seconds since the epoch; must fit in 32 bits (it is the preimage's `time`).
    pub timestamp: Timestamp,
    pub tx_root: Hash256,
    pub state_root: Hash256,
    /// Who made the block; collects the fees and the engine's reward.
    pub producer: Address,
    pub engine: EngineFields,
}

/// Fields bound by the commitment, borrowed in encoding order.
#[derive(BorshSerialize)]
struct Commitment<'a> {
    height: &'a Height,
    timestamp: &'a Timestamp,
    tx_root: &'a Hash256,
    state_root: &'a Hash256,
    producer: &'a Address,
    data: &'a Vec<u8>,
    seal: &'a [u8],
}

impl Header {
    /// The header of a block `producer` would make on `parent` at `timestamp`: roots and
    /// engine fields empty, for the block builder and the engine's producer to fill.
    pub fn template(parent: &SealedHeader, producer: Address, timestamp: Timestamp) -> Header {
        Header {
            version: HEADER_VERSION,
            parent: parent.hash(),
            height: Height(parent.height().0 + 1),
            timestamp,
            tx_root: Hash256::ZERO,
            state_root: Hash256::ZERO,
            producer,
            engine: EngineFields::default(),
        }
    }

    /// sha256d of the fields outside the 80-byte preimage, with or without the seal.
    pub fn commitment(&self, with_seal: bool) -> Hash256 {
        let fields = Commitment {
            height: &self.height,
            timestamp: &self.timestamp,
            tx_root: &self.tx_root,
            state_root: &self.state_root,
            producer: &self.producer,
            data: &self.engine.data,
            seal: if with_seal { &self.engine.seal } else { &[] },
        };
        let bytes = borsh::to_vec(&fields).expect("borsh serialization into a Vec cannot fail");
        Hash256(sha256d_parts(&[COMMITMENT_DOMAIN, &bytes]))
    }

    /// The 80-byte Bitcoin-shaped preimage over `commitment`.
    pub fn preimage_with(&self, commitment: &Hash256) -> [u8; 80] {
        let mut out = [0u8; 80];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..36].copy_from_slice(&self.parent.0);
        out[36..68].copy_from_slice(&commitment.0);
        // Truncation is safe: `check_header_fields` refuses timestamps above u32::MAX.
        out[68..72].copy_from_slice(&(self.timestamp.0 as u32).to_le_bytes());
        out[72..76].copy_from_slice(&self.engine.bits.to_le_bytes());
        out[76..80].copy_from_slice(&self.engine.nonce.to_le_bytes());
        out
    }

    /// The preimage whose sha256d is the block hash (the PoW miner's input).
    pub fn preimage(&self) -> [u8; 80] {
        self.preimage_with(&self.commitment(true))
    }

    pub fn hash(&self) -> BlockHash {
        BlockHash(sha256d(&self.preimage()))
    }

    /// The hash a signing engine signs: the block hash with the seal left out.
    pub fn seal_hash(&self) -> Hash256 {
        Hash256(sha256d(&self.preimage_with(&self.commitment(false))))
    }

    pub fn seal(self) -> SealedHeader {
        SealedHeader::new(self)
    }
}

impl Canonical for Header {
    const NAME: &'static str = "header";
    const MAX_BYTES: usize = MAX_HEADER_BYTES;
}

/// A header with its hash, computed once.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedHeader {
    header: Header,
    hash: BlockHash,
}

impl SealedHeader {
    pub fn new(header: Header) -> SealedHeader {
        let hash = header.hash();
        SealedHeader { header, hash }
    }

    /// Pairs a header with a hash known to be its own (read back from our own store).
    pub(crate) fn new_unchecked(header: Header, hash: BlockHash) -> SealedHeader {
        SealedHeader { header, hash }
    }

    pub fn hash(&self) -> BlockHash {
        self.hash
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn height(&self) -> Height {
        self.header.height
    }

    pub fn id(&self) -> BlockId {
        BlockId {
            height: self.header.height,
            hash: self.hash,
        }
    }

    pub fn into_header(self) -> Header {
        self.header
    }
}

impl std::ops::Deref for SealedHeader {
    type Target = Header;
    fn deref(&self) -> &Header {
        &self.header
    }
}

#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<Transaction>,
}

impl Canonical for Block {
    const NAME: &'static str = "block";
    const MAX_BYTES: usize = MAX_BLOCK_BYTES;
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            version: HEADER_VERSION,
            parent: BlockHash([7; 32]),
            height: Height(3),
            timestamp: Timestamp(1_700_000_000),
            tx_root: Hash256([1; 32]),
            state_root: Hash256([2; 32]),
            producer: Address([9; 20]),
            engine: EngineFields {
                bits: 0x207f_ffff,
                nonce: 42,
                data: vec![1, 2, 3],
                seal: vec![4, 5],
            },
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = header();
        let mut variants = Vec::new();
        let mut h = base.clone();
        h.version += 1;
        variants.push(h);
        let mut h = base.clone();
        h.parent.0[0] ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h.height = Height(4);
        variants.push(h);
        let mut h = base.clone();
        h.timestamp = Timestamp(1_700_000_001);
        variants.push(h);
        let mut h = base.clone();
        h.tx_root.0[5] ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h.state_root.0[5] ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h.producer.0[0] ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h.engine.bits ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h.engine.nonce ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h.engine.data.push(0);
        variants.push(h);
        let mut h = base.clone();
        h.engine.seal.push(0);
        variants.push(h);
        for v in variants {
            assert_ne!(v.hash(), base.hash(), "{v:?}");
        }
    }

    #[test]
    fn seal_hash_ignores_only_the_seal() {
        let base = header();
        let mut resealed = base.clone();
        resealed.engine.seal = vec![9; 64];
        assert_eq!(base.seal_hash(), resealed.seal_hash());
        assert_ne!(base.hash(), resealed.hash());
        let mut other = base.clone();
        other.engine.data = vec![];
        assert_ne!(base.seal_hash(), other.seal_hash());
    }

    #[test]
    fn preimage_has_bitcoins_layout() {
        let h = header();
        let pre = h.preimage();
        assert_eq!(&pre[0..4], &1u32.to_le_bytes());
        assert_eq!(&pre[4..36], &[7u8; 32]);
        assert_eq!(&pre[36..68], &h.commitment(true).0);
        assert_eq!(&pre[68..72], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&pre[72..76], &0x207f_ffffu32.to_le_bytes());
        assert_eq!(&pre[76..80], &42u32.to_le_bytes());
        assert_eq!(h.hash().0, sha256d(&pre));
    }
}
