//! The signed seal shared by the engines whose blocks are signed instead of mined (PoA,
//! DPoS, PoS): `engine.seal = public key (33) ‖ signature (64)` over the header's
//! [`Header::seal_hash`], and the key must be the producer's.
//!
//! Carrying the key (rather than recovering it from the signature, as Clique does) costs
//! 33 bytes a block and keeps the check to one verification with the low-S rule the
//! transactions already use.

use chain::crypto::CryptoError;
use chain::{
    Address, BlockProducer, CancelFlag, ChainView, EngineError, Header, PublicKey, SealedHeader,
    SecretKey, Signature, Turn,
};

/// Bytes of a signed seal.
pub const SIGNED_SEAL_BYTES: usize = 33 + 64;

/// Why a signed seal does not prove its producer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("seal is {got} bytes, expected {SIGNED_SEAL_BYTES} (public key ‖ signature)")]
    WrongLength { got: usize },
    #[error("seal key belongs to {signer}, not to the block's producer {producer}")]
    NotProducer { signer: Address, producer: Address },
    #[error("seal signature: {0}")]
    Signature(#[from] CryptoError),
}

/// Signs `header` (its seal hash) with `key` and writes the seal. The producer field must
/// already name `key`'s address, or the seal will not verify.
pub fn sign_header(mut header: Header, key: &SecretKey) -> Header {
    let signature = key.sign(&header.seal_hash());
    let mut seal = Vec::with_capacity(SIGNED_SEAL_BYTES);
    seal.extend_from_slice(&key.public_key().0);
    seal.extend_from_slice(&signature.0);
    header.engine.seal = seal;
    header
}

/// Checks that `header`'s seal is a valid low-S signature of its seal hash by the
/// producer's key; returns that key.
pub fn verify_signed_seal(header: &Header) -> Result<PublicKey, SealError> {
    let seal = &header.engine.seal;
    let (key, signature) = match (
        <[u8; 33]>::try_from(seal.get(..33).unwrap_or_default()),
        <[u8; 64]>::try_from(seal.get(33..).unwrap_or_default()),
    ) {
        (Ok(key), Ok(signature)) => (PublicKey(key), Signature(signature)),
        _ => return Err(SealError::WrongLength { got: seal.len() }),
    };
    let signer = key.address();
    if signer != header.producer {
        return Err(SealError::NotProducer {
            signer,
            producer: header.producer,
        });
    }
    key.verify(&header.seal_hash(), &signature)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::block::HEADER_VERSION;
    use chain::{BlockHash, EngineFields, Hash256, Height, Timestamp};

    fn header(producer: Address) -> Header {
        Header {
            version: HEADER_VERSION,
            parent: BlockHash([7; 32]),
            height: Height(3),
            timestamp: Timestamp(1_700_000_010),
            tx_root: Hash256::ZERO,
            state_root: Hash256([1; 32]),
            producer,
            engine: EngineFields::default(),
        }
    }

    #[test]
    fn a_signed_header_verifies_and_any_change_breaks_it() {
        let key = SecretKey::from_seed("seal test");
        let signed = sign_header(header(key.address()), &key);
        assert_eq!(verify_signed_seal(&signed), Ok(key.public_key()));

        let mut moved = signed.clone();
        moved.timestamp = Timestamp(1_700_000_011);
        assert_eq!(
            verify_signed_seal(&moved),
            Err(SealError::Signature(CryptoError::BadSignature))
        );
    }

    #[test]
    fn a_seal_by_someone_else_or_of_the_wrong_size_is_refused() {
        let key = SecretKey::from_seed("seal test");
        let other = SecretKey::from_seed("someone else");
        let forged = sign_header(header(key.address()), &other);
        assert_eq!(
            verify_signed_seal(&forged),
            Err(SealError::NotProducer {
                signer: other.address(),
                producer: key.address()
            })
        );
        let mut short = sign_header(header(key.address()), &key);
        short.engine.seal.pop();
        assert_eq!(
            verify_signed_seal(&short),
            Err(SealError::WrongLength { got: 96 })
        );
    }

    #[test]
    fn the_high_s_twin_of_a_seal_is_refused() {
        let key = SecretKey::from_seed("seal test");
        let mut signed = sign_header(header(key.address()), &key);
        let sig = Signature(signed.engine.seal[33..].try_into().unwrap());
        signed.engine.seal[33..].copy_from_slice(&sig.malleated().unwrap().0);
        assert_eq!(
            verify_signed_seal(&signed),
            Err(SealError::Signature(CryptoError::HighS))
        );
    }
}

/// The producer of a voting engine (PBFT, Raft): the machine decides when a block is built
/// (it asks the node with `VoteOutput::Build`), so this producer never has a turn of its
/// own; it only clears the header fields voting engines leave unused and signs. The engine
/// data (view, term, log position) is the machine's, given with the build request, and is
/// kept.
#[derive(Debug)]
pub struct VoteSealer {
    key: SecretKey,
}

impl VoteSealer {
    /// A producer sealing with the voter's key `key`.
    pub fn new(key: SecretKey) -> VoteSealer {
        VoteSealer { key }
    }
}

impl BlockProducer for VoteSealer {
    fn author(&self) -> Address {
        self.key.address()
    }

    /// Never: the voting machine asks for a block when this node is to propose.
    fn next_turn(
        &self,
        _chain: &dyn ChainView,
        _parent: &SealedHeader,
        _now_millis: u64,
    ) -> Result<Option<Turn>, EngineError> {
        Ok(None)
    }

    /// No bits or nonce; the engine data is kept.
    fn prepare(
        &self,
        _chain: &dyn ChainView,
        _parent: &SealedHeader,
        header: &mut Header,
    ) -> Result<(), EngineError> {
        header.engine.bits = 0;
        header.engine.nonce = 0;
        Ok(())
    }

    fn signs_blocks(&self) -> bool {
        true
    }

    fn seal(&self, header: Header, _cancel: &CancelFlag) -> Result<Option<Header>, EngineError> {
        Ok(Some(sign_header(header, &self.key)))
    }
}
