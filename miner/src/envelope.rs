//! A voting engine's message as it travels (Raft, Multi-Paxos, ZAB): the sender's key, the
//! body, and the sender's signature over a digest of the body separated by the engine's
//! domain, so a message of one engine never verifies as another's. Decoded strictly under
//! the engine's size limit before anything else is read.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::{CodecError, decode_limited};
use chain::crypto::sha256d_parts;
use chain::{Address, Hash256, PublicKey, SecretKey, Signature};

/// The messages of one engine.
pub trait MessageBody: BorshSerialize + BorshDeserialize {
    /// Separates this engine's message signatures from every other signature.
    const DOMAIN: &'static [u8];
    /// What a decoding error calls the message.
    const NAME: &'static str;
    /// Largest encoded envelope; larger bytes are refused unread.
    const MAX_BYTES: usize;

    /// The one server the message is for, or `None` when it is for every server.
    fn recipient(&self) -> Option<Address>;
}

/// A message as sent. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Envelope<B> {
    pub sender: PublicKey,
    pub body: B,
    pub signature: Signature,
}

/// The signature of a message does not verify under the key it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message from {sender} does not verify: {reason}")]
pub struct BadSignature {
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
        decode_limited(bytes, B::MAX_BYTES, B::NAME)
    }

    /// Checks the signature; returns the sender's address.
    pub fn verify(&self) -> Result<Address, BadSignature> {
        let sender = self.sender.address();
        self.sender
            .verify(&digest(&self.body), &self.signature)
            .map_err(|e| BadSignature {
                sender,
                reason: e.to_string(),
            })?;
        Ok(sender)
    }
}

/// Why [`admit`] refused a message.
#[derive(Debug)]
pub enum Refusal {
    /// Not a well-formed envelope of this engine.
    Malformed(CodecError),
    BadSignature(BadSignature),
    /// Signed by someone who is not one of the servers.
    NotServer(Address),
    /// This server's own message, come back.
    FromItself,
}

/// What a server's machine does with a message before reading its body, the same for Raft,
/// Multi-Paxos and ZAB: decode it under the engine's size limit; leave one addressed to
/// another server (or any addressed one, when this node only observes) unchecked, since it
/// is not ours to answer; check the signature; refuse a sender that is not a server; drop
/// what reaches an observer; refuse this server's own. `Ok(None)`: nothing to do.
pub fn admit<B: MessageBody>(
    bytes: &[u8],
    me: Address,
    observer: bool,
    is_server: impl Fn(&Address) -> bool,
) -> Result<Option<(Address, Envelope<B>)>, Refusal> {
    let envelope = Envelope::<B>::decode(bytes).map_err(Refusal::Malformed)?;
    if envelope
        .body
        .recipient()
        .is_some_and(|to| to != me || observer)
    {
        return Ok(None);
    }
    let sender = envelope.verify().map_err(Refusal::BadSignature)?;
    if !is_server(&sender) {
        return Err(Refusal::NotServer(sender));
    }
    if observer {
        return Ok(None);
    }
    if sender == me {
        return Err(Refusal::FromItself);
    }
    Ok(Some((sender, envelope)))
}

/// The engine error for a refusal: a malformed envelope or a forged signature costs the
/// sender its score (as the engine's error `E`), a server's own message is ignored, and a
/// non-server's message is whatever `not_server` says (Raft ignores a removed server's).
pub fn refused<E>(
    engine: &'static str,
    refusal: Refusal,
    not_server: impl FnOnce(Address) -> chain::EngineError,
) -> chain::EngineError
where
    E: From<CodecError> + From<BadSignature> + std::error::Error + Send + Sync + 'static,
{
    match refusal {
        Refusal::Malformed(e) => chain::EngineError::rejected(engine, E::from(e)),
        Refusal::BadSignature(e) => chain::EngineError::rejected(engine, E::from(e)),
        Refusal::NotServer(sender) => not_server(sender),
        Refusal::FromItself => {
            chain::EngineError::ignored(engine, "a message from this server itself")
        }
    }
}
