//! A consensus message as a crash-fault engine's server sends it (Raft, ZAB): the sender's
//! key, the body, and the sender's signature over a domain-separated digest of the body,
//! decoded strictly under the engine's byte limit.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::{CodecError, decode_limited};
use chain::crypto::sha256d_parts;
use chain::{Address, Hash256, PublicKey, SecretKey, Signature};

/// The body of one engine's messages.
pub trait MessageBody: BorshSerialize + BorshDeserialize {
    /// Separates this engine's signed messages from every other signed bytes.
    const DOMAIN: &'static [u8];
    /// What a decoding error calls the message (`"raft message"`).
    const WHAT: &'static str;
    /// Largest encoded envelope accepted.
    const MAX_BYTES: usize;
}

/// A message as sent: the sender's key, the body, and the sender's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Envelope<B> {
    pub sender: PublicKey,
    pub body: B,
    pub signature: Signature,
}

/// A message whose signature does not verify under the key it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message from {sender} does not verify: {reason}")]
pub struct BadMessageSignature {
    pub sender: Address,
    pub reason: String,
}

fn digest<B: MessageBody>(body: &B) -> Hash256 {
    let bytes = borsh::to_vec(body).expect("borsh writes to a Vec without failing");
    Hash256(sha256d_parts(&[B::DOMAIN, &bytes]))
}

impl<B: MessageBody> Envelope<B> {
    /// Signs `body` with `key`.
    pub fn seal(body: B, key: &SecretKey) -> Envelope<B> {
        let signature = key.sign(&digest(&body));
        Envelope {
            sender: key.public_key(),
            body,
            signature,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    /// Strict decoding under [`MessageBody::MAX_BYTES`]; the signature is not checked here.
    pub fn decode(bytes: &[u8]) -> Result<Envelope<B>, CodecError> {
        decode_limited(bytes, B::MAX_BYTES, B::WHAT)
    }

    /// Checks the signature; returns the sender's address.
    pub fn verify(&self) -> Result<Address, BadMessageSignature> {
        let sender = self.sender.address();
        self.sender
            .verify(&digest(&self.body), &self.signature)
            .map_err(|e| BadMessageSignature {
                sender,
                reason: e.to_string(),
            })?;
        Ok(sender)
    }
}
