//! What every voting engine counts with: a validator set, its quorums, signed votes and
//! certificates.
//!
//! With `N` validators of which at most `f = ⌊(N−1)/3⌋` are Byzantine, any two sets of
//! `⌈(N+f+1)/2⌉` validators share an honest one (`2f+1` when `N = 3f+1`, Castro & Liskov
//! 1999 §4), which is what a BFT decision needs; a crash-fault engine needs only a
//! majority, `⌊N/2⌋+1`.
//!
//! A vote is signed over a domain-separated digest: the engine's name and a borsh-encoded
//! [`VoteBody`] (height, view or round, the block voted for, the block it extends, the
//! phase), so a vote for one engine, chain, height, view or phase never counts for another.
//! A [`Certificate`] is one body with the signatures of the validators who signed it; it
//! proves a decision to a node that saw none of the votes.

use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::decode_limited;
use chain::crypto::{CryptoError, sha256d};
use chain::voting::MAX_CERTIFICATE_BYTES;
use chain::{Address, BlockHash, CodecError, Hash256, Height, PublicKey, SecretKey, Signature};
use std::fmt;

/// A sorted, deduplicated validator set: turns and indices follow address order.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct VoterSet {
    voters: Vec<Address>,
}

impl fmt::Debug for VoterSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.voters).finish()
    }
}

impl VoterSet {
    /// The set of `voters`, sorted, each once.
    pub fn new(voters: impl IntoIterator<Item = Address>) -> VoterSet {
        let mut voters: Vec<Address> = voters.into_iter().collect();
        voters.sort();
        voters.dedup();
        VoterSet { voters }
    }

    /// `N`.
    pub fn len(&self) -> usize {
        self.voters.len()
    }

    /// True when there is no validator (nothing can be decided).
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    /// Whether `address` is a validator.
    pub fn contains(&self, address: &Address) -> bool {
        self.voters.binary_search(address).is_ok()
    }

    /// The position of `address` in address order.
    pub fn index_of(&self, address: &Address) -> Option<usize> {
        self.voters.binary_search(address).ok()
    }

    /// The validator at `index mod N` (the leader of round `index`); `None` when empty.
    pub fn at_round(&self, index: u64) -> Option<Address> {
        let n = self.voters.len() as u64;
        if n == 0 {
            return None;
        }
        let i = usize::try_from(index % n).ok()?;
        self.voters.get(i).copied()
    }

    /// The validators in address order.
    pub fn as_slice(&self) -> &[Address] {
        &self.voters
    }

    /// `f = ⌊(N−1)/3⌋`: the Byzantine validators the set tolerates.
    pub fn max_faulty(&self) -> usize {
        self.voters.len().saturating_sub(1) / 3
    }

    /// `⌈(N+f+1)/2⌉`: any two such sets share an honest validator (`2f+1` when `N = 3f+1`).
    pub fn bft_quorum(&self) -> usize {
        (self.voters.len() + self.max_faulty() + 1).div_ceil(2)
    }

    /// `⌊N/2⌋+1`: any two such sets share a validator (crash faults only).
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// `f+1`: at least one of them is honest.
    pub fn weak_quorum(&self) -> usize {
        self.max_faulty() + 1
    }
}

/// ⌊n/2⌋+1: any two sets this large out of `n` share a member (the crash-fault quorum of
/// Raft, Multi-Paxos and ZAB).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Checks the parameters of a leader-based crash-fault engine (Raft, Multi-Paxos): one to
/// `max_servers` distinct servers, a block every `block_time` seconds, heartbeats every
/// `heartbeat_ms`, and election timeouts drawn from `[min_ms, max_ms)`. Gives the field at
/// fault and why.
pub fn check_leader_params(
    servers: &[Address],
    max_servers: usize,
    block_time: u64,
    heartbeat_ms: u64,
    min_ms: u64,
    max_ms: u64,
) -> Result<(), (&'static str, String)> {
    check_voter_list(servers, max_servers).map_err(|reason| ("servers", reason))?;
    if block_time == 0 {
        return Err(("block_time", "must be at least 1 second".into()));
    }
    if heartbeat_ms == 0 {
        return Err(("heartbeat_ms", "must be at least 1 ms".into()));
    }
    if min_ms <= heartbeat_ms {
        return Err((
            "election_timeout_min_ms",
            format!(
                "{min_ms} ms must exceed heartbeat_ms ({heartbeat_ms} ms), or followers stand between heartbeats"
            ),
        ));
    }
    if max_ms <= min_ms {
        return Err((
            "election_timeout_max_ms",
            format!(
                "{max_ms} ms must exceed election_timeout_min_ms ({min_ms} ms): the range [min, max) is what splits votes apart"
            ),
        ));
    }
    Ok(())
}

/// Why a configured list of voters is unusable: empty, longer than `max`, or naming one
/// twice (the reason, for the engine's parameter error).
pub fn check_voter_list(voters: &[Address], max: usize) -> Result<(), String> {
    if voters.is_empty() {
        return Err("at least one is needed".into());
    }
    if voters.len() > max {
        return Err(format!("{} listed, at most {max}", voters.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for voter in voters {
        if !seen.insert(voter) {
            return Err(format!("{voter} is listed twice"));
        }
    }
    Ok(())
}

/// The step of a round a vote belongs to; part of what is signed, so a PREPARE never
/// counts as a COMMIT.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
pub enum Phase {
    /// The leader's proposal (PBFT's PRE-PREPARE).
    Propose,
    /// PBFT's PREPARE (Tendermint's prevote).
    Prepare,
    /// PBFT's COMMIT (Tendermint's precommit).
    Commit,
    /// PBFT's VIEW-CHANGE (QBFT's ROUND-CHANGE): `block` names the prepared block, or is
    /// [`BlockHash::ZERO`] when there is none.
    ViewChange,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Propose => "propose",
            Phase::Prepare => "prepare",
            Phase::Commit => "commit",
            Phase::ViewChange => "view-change",
        })
    }
}

/// What a validator signs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, BorshSerialize, BorshDeserialize)]
pub struct VoteBody {
    /// The height decided (PBFT's sequence number).
    pub height: Height,
    /// The view (round) the vote is cast in.
    pub view: u64,
    /// The block the height extends: binds the vote to one chain.
    pub parent: BlockHash,
    /// The block voted for.
    pub block: BlockHash,
    pub phase: Phase,
}

impl VoteBody {
    /// The digest signed for `engine`: sha256d of the borsh encoding of
    /// (`"toychain/vote"`, engine name, body).
    pub fn digest(&self, engine: &str) -> Hash256 {
        let bytes = borsh::to_vec(&("toychain/vote", engine, self))
            .expect("borsh writes to a Vec without failing");
        Hash256(sha256d(&bytes))
    }
}

/// One validator's signature over a [`VoteBody`]: its key (whose address is the signer)
/// and a low-S signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct VoteSignature {
    pub key: PublicKey,
    pub signature: Signature,
}

impl VoteSignature {
    /// Signs `body` for `engine` with `key`.
    pub fn sign(engine: &str, body: &VoteBody, key: &SecretKey) -> VoteSignature {
        VoteSignature {
            key: key.public_key(),
            signature: key.sign(&body.digest(engine)),
        }
    }

    /// The signer's address.
    pub fn signer(&self) -> Address {
        self.key.address()
    }

    /// Checks the signature over `body` for `engine`; returns the signer.
    pub fn verify(&self, engine: &str, body: &VoteBody) -> Result<Address, QuorumError> {
        let signer = self.signer();
        self.key
            .verify(&body.digest(engine), &self.signature)
            .map_err(|source| QuorumError::BadSignature { signer, source })?;
        Ok(signer)
    }
}

/// A signed vote: a body and one signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct SignedVote {
    pub body: VoteBody,
    pub signature: VoteSignature,
}

impl SignedVote {
    /// Signs `body` for `engine` with `key`.
    pub fn sign(engine: &str, body: VoteBody, key: &SecretKey) -> SignedVote {
        SignedVote {
            body,
            signature: VoteSignature::sign(engine, &body, key),
        }
    }

    /// Checks the signature and that the signer is in `voters`; returns the signer.
    pub fn verify(&self, engine: &str, voters: &VoterSet) -> Result<Address, QuorumError> {
        let signer = self.signature.verify(engine, &self.body)?;
        if !voters.contains(&signer) {
            return Err(QuorumError::NotAVoter { signer });
        }
        Ok(signer)
    }
}

/// One vote body and the signatures of the validators who cast it: proof that a quorum
/// voted for `body.block` at `body.height` in `body.view`.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Certificate {
    pub body: VoteBody,
    pub signatures: Vec<VoteSignature>,
}

impl Certificate {
    /// A certificate from votes that all carry `body` (the caller collected them).
    pub fn new(body: VoteBody, signatures: Vec<VoteSignature>) -> Certificate {
        Certificate { body, signatures }
    }

    /// The canonical bytes, at most [`MAX_CERTIFICATE_BYTES`] for up to 255 signers.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    /// Strict decoding under [`MAX_CERTIFICATE_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Certificate, QuorumError> {
        decode_limited(bytes, MAX_CERTIFICATE_BYTES, "certificate").map_err(QuorumError::Codec)
    }

    /// The signers, in the certificate's order.
    pub fn signers(&self) -> Vec<Address> {
        self.signatures.iter().map(VoteSignature::signer).collect()
    }

    /// Checks that the certificate's body is `expected` and that at least `threshold`
    /// distinct members of `voters` signed it, each signature valid. Returns the signers.
    pub fn verify(
        &self,
        engine: &str,
        expected: &VoteBody,
        voters: &VoterSet,
        threshold: usize,
    ) -> Result<Vec<Address>, QuorumError> {
        if self.body != *expected {
            return Err(QuorumError::WrongVote {
                expected: Box::new(*expected),
                got: Box::new(self.body),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for vote in &self.signatures {
            let signer = vote.signer();
            if !seen.insert(signer) {
                return Err(QuorumError::DuplicateSigner { signer });
            }
            if !voters.contains(&signer) {
                return Err(QuorumError::NotAVoter { signer });
            }
        }
        if seen.len() < threshold {
            return Err(QuorumError::TooFewSigners {
                got: seen.len(),
                needed: threshold,
                voters: voters.len(),
            });
        }
        // Signatures last: they are the costly check, and the cheap ones name the problem.
        let digest = self.body.digest(engine);
        for vote in &self.signatures {
            vote.key
                .verify(&digest, &vote.signature)
                .map_err(|source| QuorumError::BadSignature {
                    signer: vote.signer(),
                    source,
                })?;
        }
        Ok(seen.into_iter().collect())
    }
}

/// Why a vote or a certificate does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error(transparent)]
    Codec(CodecError),
    #[error("certificate is for {got:?}, expected {expected:?}")]
    WrongVote {
        expected: Box<VoteBody>,
        got: Box<VoteBody>,
    },
    #[error("{signer} signed the certificate more than once")]
    DuplicateSigner { signer: Address },
    #[error("{signer} is not a validator")]
    NotAVoter { signer: Address },
    #[error("signature by {signer} does not verify: {source}")]
    BadSignature {
        signer: Address,
        source: CryptoError,
    },
    #[error("{got} distinct signers of {voters} validators, {needed} needed")]
    TooFewSigners {
        got: usize,
        needed: usize,
        voters: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: u8) -> VoterSet {
        VoterSet::new((0..n).map(|i| Address([i; 20])))
    }

    #[test]
    fn quorums_follow_the_formulas() {
        // (N, f, BFT quorum, majority)
        let table = [
            (1, 0, 1, 1),
            (2, 0, 2, 2),
            (3, 0, 2, 2),
            (4, 1, 3, 3),
            (5, 1, 4, 3),
            (6, 1, 4, 4),
            (7, 2, 5, 4),
            (10, 3, 7, 6),
            (31, 10, 21, 16),
        ];
        for (n, f, q, m) in table {
            let s = set(n);
            assert_eq!(
                (s.len(), s.max_faulty(), s.bft_quorum(), s.majority()),
                (usize::from(n), f, q, m),
                "N = {n}"
            );
            // Two quorums overlap in more than f validators, so in an honest one.
            assert!(2 * s.bft_quorum() > s.len() + s.max_faulty(), "N = {n}");
        }
    }

    #[test]
    fn the_set_is_sorted_and_deduplicated() {
        let s = VoterSet::new([Address([3; 20]), Address([1; 20]), Address([3; 20])]);
        assert_eq!(s.as_slice(), &[Address([1; 20]), Address([3; 20])]);
        assert_eq!(s.at_round(3), Some(Address([3; 20])));
        assert_eq!(VoterSet::default().at_round(0), None);
    }

    #[test]
    fn a_vote_signed_for_one_engine_or_phase_does_not_verify_for_another() {
        let key = SecretKey::from_seed("quorum test");
        let body = VoteBody {
            height: Height(4),
            view: 1,
            parent: BlockHash([1; 32]),
            block: BlockHash([2; 32]),
            phase: Phase::Prepare,
        };
        let vote = SignedVote::sign("pbft", body, &key);
        let voters = VoterSet::new([key.address()]);
        assert_eq!(vote.verify("pbft", &voters), Ok(key.address()));
        assert!(matches!(
            vote.signature.verify("other", &body),
            Err(QuorumError::BadSignature { .. })
        ));
        let commit = VoteBody {
            phase: Phase::Commit,
            ..body
        };
        assert!(matches!(
            vote.signature.verify("pbft", &commit),
            Err(QuorumError::BadSignature { .. })
        ));
    }
}
