//! PBFT's messages on the wire (Castro & Liskov 1999 §4.2, §4.4) and the certificates built
//! from them. Every message is, or carries, a [`SignedVote`] by a validator, so a relay
//! cannot alter what a validator said; PREPARE and COMMIT signatures are the ones a
//! certificate collects.

use crate::pbft::error::PbftError;
use crate::quorum::{Certificate, Phase, SignedVote};
use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::{MAX_BLOCK_BYTES, decode_limited};
use chain::{Block, BlockHash};

/// Largest encoded message: a NEW-VIEW carries a block and up to 255 view changes with
/// their prepared certificates.
pub const MAX_MESSAGE_BYTES: usize = 3 * MAX_BLOCK_BYTES;

/// A PRE-PREPARE: the primary's signed proposal (phase [`Phase::Propose`]) and the block.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub vote: SignedVote,
    pub block: Block,
    /// The parent's commit certificate when it was decided in this proposal's view: it
    /// tells a replica that learned the parent by sync which view the height starts in.
    pub justification: Option<Certificate>,
}

/// A VIEW-CHANGE to `vote.body.view`: `vote.body.block` names the block this replica
/// prepared at the height (or [`BlockHash::ZERO`]), `prepared` proves it (2f+1 PREPAREs in
/// an earlier view, PBFT's P set), and `block` carries it so the new primary can
/// re-propose it (left out inside a NEW-VIEW, whose proposal carries it).
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct ViewChange {
    pub vote: SignedVote,
    pub prepared: Option<Certificate>,
    pub block: Option<Block>,
}

impl ViewChange {
    /// The prepared block's hash, when the replica names one.
    pub fn prepared_hash(&self) -> Option<BlockHash> {
        (self.vote.body.block != BlockHash::ZERO).then_some(self.vote.body.block)
    }

    /// The view the block was prepared in.
    pub fn prepared_view(&self) -> Option<u64> {
        self.prepared.as_ref().map(|c| c.body.view)
    }
}

/// A NEW-VIEW: 2f+1 view changes to one view, and the new primary's proposal, which must
/// re-propose the block prepared in the highest view among them when there is one. Without
/// a proposal the new primary proposes a fresh block with a PRE-PREPARE afterwards.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct NewView {
    pub view_changes: Vec<ViewChange>,
    pub proposal: Option<Proposal>,
}

/// A PBFT message.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub enum PbftMessage {
    PrePrepare(Proposal),
    /// Phase [`Phase::Prepare`].
    Prepare(SignedVote),
    /// Phase [`Phase::Commit`].
    Commit(SignedVote),
    ViewChange(ViewChange),
    NewView(NewView),
}

impl PbftMessage {
    /// The canonical wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    /// Strict decoding under [`MAX_MESSAGE_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<PbftMessage, PbftError> {
        decode_limited(bytes, MAX_MESSAGE_BYTES, "pbft message").map_err(PbftError::Codec)
    }

    /// The vote that names the message's height and view and authenticates its sender
    /// (a NEW-VIEW's first view change: its proposal is checked on its own).
    pub fn vote(&self) -> Option<&SignedVote> {
        match self {
            PbftMessage::PrePrepare(p) => Some(&p.vote),
            PbftMessage::Prepare(v) | PbftMessage::Commit(v) => Some(v),
            PbftMessage::ViewChange(vc) => Some(&vc.vote),
            PbftMessage::NewView(nv) => nv.view_changes.first().map(|vc| &vc.vote),
        }
    }

    /// The phase a vote of this kind must carry.
    pub fn phase(&self) -> Phase {
        match self {
            PbftMessage::PrePrepare(_) => Phase::Propose,
            PbftMessage::Prepare(_) => Phase::Prepare,
            PbftMessage::Commit(_) => Phase::Commit,
            PbftMessage::ViewChange(_) | PbftMessage::NewView(_) => Phase::ViewChange,
        }
    }
}

/// The engine data of a PBFT header: the view its block was proposed in (borsh u64), so a
/// verifier knows whose turn it was.
pub fn encode_view(view: u64) -> Vec<u8> {
    view.to_le_bytes().to_vec()
}

/// Reads [`encode_view`]'s bytes back.
pub fn decode_view(data: &[u8]) -> Result<u64, PbftError> {
    decode_limited(data, 8, "pbft header view").map_err(PbftError::HeaderData)
}
