//! What ZAB puts on the wire, in headers, in certificates and on disk, and how each is
//! signed. Everything is borsh, decoded strictly under a byte limit.

use crate::envelope::MessageBody;
use crate::quorum::{Certificate, Phase, VoteBody, VoterSet};
use crate::zab::error::ZabError;
use crate::zab::{ENGINE_NAME, MAX_MESSAGE_BYTES, MAX_UNCOMMITTED_PROPOSALS};
use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::{MAX_BLOCK_BYTES, decode_limited};
use chain::{Address, Block, BlockHash, Header, Height, Signature};
use std::fmt;

const MESSAGE_DOMAIN: &[u8] = b"toychain/zab/message";

/// A transaction id: the epoch of the leader that proposed it and a counter within that
/// epoch, compared lexicographically (epoch first), as ZooKeeper's 64-bit zxid is.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Zxid {
    pub epoch: u64,
    pub counter: u64,
}

impl fmt::Display for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.counter)
    }
}

impl Zxid {
    /// The genesis block's zxid, before every proposal.
    pub const GENESIS: Zxid = Zxid {
        epoch: 0,
        counter: 0,
    };

    /// What a block carries in `header.engine.data`.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    /// The zxid in `header`; the genesis block (height 0) has none and sits at
    /// [`Zxid::GENESIS`].
    pub fn of_header(header: &Header) -> Result<Zxid, ZabError> {
        if header.height == Height::GENESIS {
            return Ok(Zxid::GENESIS);
        }
        Ok(decode_limited(&header.engine.data, 16, "zab zxid")?)
    }
}

/// One transaction of the broadcast: a block with its zxid (also in its header).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub zxid: Zxid,
    pub block: Block,
}

/// The vote an ACK signs: the block at its height on its parent, in `epoch`. Its
/// signatures make the [`Certificate`] a committed block is imported with.
pub fn ack_body(epoch: u64, header: &Header) -> VoteBody {
    VoteBody {
        height: header.height,
        view: epoch,
        parent: header.parent,
        block: header.hash(),
        phase: Phase::Commit,
    }
}

/// A follower's signed ACK of the proposal at `height` (see [`ack_body`]); the signer is the
/// message's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Ack {
    pub height: Height,
    pub hash: BlockHash,
    pub signature: Signature,
}

/// Checks `bytes` as the certificate of `header`: ⌊N/2⌋+1 distinct `servers` signed its
/// [`ack_body`] in one epoch no earlier than the block's zxid epoch.
///
/// Why that proves a commit: a server acks in epoch `e` only once it holds the history of
/// `e`'s leader through this block and has made `e` its currentEpoch; any later leader is
/// elected and agreed by a quorum that shares a server with this one, and its history is at
/// least as recent as that server's (Medeiros 2012, the new leader's initial history holds
/// every committed proposal).
pub fn check_certificate(
    servers: &VoterSet,
    header: &Header,
    bytes: &[u8],
) -> Result<Certificate, ZabError> {
    let height = header.height;
    let certificate =
        Certificate::decode(bytes).map_err(|source| ZabError::Certificate { height, source })?;
    let zxid = Zxid::of_header(header)?;
    if certificate.body.view < zxid.epoch {
        return Err(ZabError::CertificateEpoch {
            height,
            certificate_epoch: certificate.body.view,
            block_epoch: zxid.epoch,
        });
    }
    let expected = ack_body(certificate.body.view, header);
    certificate
        .verify(ENGINE_NAME, &expected, servers, servers.majority())
        .map_err(|source| ZabError::Certificate { height, source })?;
    Ok(certificate)
}

/// A server's state as its notifications say (ZooKeeper's `ServerState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
}

/// A Fast Leader Election vote: the proposed leader with its last zxid and current epoch.
/// Votes compare by `(epoch, zxid, leader)`: ZooKeeper's `totalOrderPredicate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub leader: Address,
    pub zxid: Zxid,
    pub epoch: u64,
}

impl Vote {
    /// The key votes are ordered by.
    pub fn rank(&self) -> (u64, Zxid, Address) {
        (self.epoch, self.zxid, self.leader)
    }

    /// True when `self` is a better vote than `other`.
    pub fn beats(&self, other: &Vote) -> bool {
        self.rank() > other.rank()
    }
}

/// The messages of ZAB's four phases.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Body {
    /// Fast Leader Election: the sender's current vote in election `round`, and its state
    /// (a FOLLOWING or LEADING server answers a LOOKING one with the vote it settled on).
    Notification {
        round: u64,
        state: PeerState,
        vote: Vote,
    },
    /// Discovery: a follower tells its prospective leader its acceptedEpoch.
    FollowerInfo { to: Address, accepted_epoch: u64 },
    /// Discovery: the leader's new epoch, above every acceptedEpoch of a quorum.
    NewEpoch { to: Address, epoch: u64 },
    /// Discovery: the follower accepted `epoch` and reports its history (also resent as
    /// progress during synchronization).
    AckEpoch {
        to: Address,
        epoch: u64,
        current_epoch: u64,
        last_zxid: Zxid,
        committed: Height,
    },
    /// Synchronization (DIFF and TRUNC with NEWLEADER): the leader's history from the
    /// follower's commit point, `certificates` for the proposals already committed; the
    /// follower holds the leader's history once its last zxid is `last_zxid`. Resent to
    /// bring a lagging follower up.
    NewLeader {
        to: Address,
        epoch: u64,
        proposals: Vec<Proposal>,
        certificates: Vec<(Height, Vec<u8>)>,
        last_zxid: Zxid,
    },
    /// Synchronization: the follower holds the leader's history through `last_zxid` in
    /// `epoch`, and acks each uncommitted proposal of it.
    AckNewLeader {
        to: Address,
        epoch: u64,
        last_zxid: Zxid,
        acks: Vec<Ack>,
    },
    /// Broadcast: a new transaction.
    Propose { epoch: u64, proposal: Proposal },
    /// Broadcast: a follower persisted the proposal.
    Ack { to: Address, epoch: u64, ack: Ack },
    /// Broadcast: the proposal at `height` is committed, proven by `certificate`.
    Commit {
        epoch: u64,
        height: Height,
        certificate: Vec<u8>,
    },
    /// The leader's tick, sent in every phase: `epoch` is the epoch it leads or proposes.
    Ping { epoch: u64 },
    /// A synced follower's answer to a PING: how far its history and its commits reach,
    /// and its acks of the proposals it holds uncommitted again (a lost PROPOSAL shows as
    /// a `last_zxid` behind the leader's, a lost ACK is made good).
    PingAck {
        to: Address,
        epoch: u64,
        last_zxid: Zxid,
        committed: Height,
        acks: Vec<Ack>,
    },
}

impl Body {
    pub fn name(&self) -> &'static str {
        match self {
            Body::Notification { .. } => "notification",
            Body::FollowerInfo { .. } => "followerinfo",
            Body::NewEpoch { .. } => "newepoch",
            Body::AckEpoch { .. } => "ackepoch",
            Body::NewLeader { .. } => "newleader",
            Body::AckNewLeader { .. } => "ack of newleader",
            Body::Propose { .. } => "proposal",
            Body::Ack { .. } => "ack",
            Body::Commit { .. } => "commit",
            Body::Ping { .. } => "ping",
            Body::PingAck { .. } => "ping ack",
        }
    }
}

impl MessageBody for Body {
    const DOMAIN: &'static [u8] = MESSAGE_DOMAIN;
    const NAME: &'static str = "zab message";
    const MAX_BYTES: usize = MAX_MESSAGE_BYTES;

    /// The one server a message is meant for; `None` for one meant for all.
    fn recipient(&self) -> Option<Address> {
        match self {
            Body::Notification { .. }
            | Body::Propose { .. }
            | Body::Commit { .. }
            | Body::Ping { .. } => None,
            Body::FollowerInfo { to, .. }
            | Body::NewEpoch { to, .. }
            | Body::AckEpoch { to, .. }
            | Body::NewLeader { to, .. }
            | Body::AckNewLeader { to, .. }
            | Body::Ack { to, .. }
            | Body::PingAck { to, .. } => Some(*to),
        }
    }
}

/// A ZAB message as sent (see [`crate::envelope::Envelope`]).
pub type Envelope = crate::envelope::Envelope<Body>;

/// Where a server's history starts: the committed block before its first held proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Anchor {
    pub height: Height,
    pub zxid: Zxid,
    pub hash: BlockHash,
}

/// What a server writes before it answers: acceptedEpoch (and the leader it accepted it
/// from), currentEpoch, and its history after `base` (the node's chain head, whose blocks
/// the chain stores itself).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PersistedState {
    pub accepted_epoch: u64,
    pub accepted_leader: Option<Address>,
    pub current_epoch: u64,
    pub base: Option<Anchor>,
    pub proposals: Vec<Proposal>,
}

/// Largest persisted state: the history after the chain head, which is the capped
/// uncommitted proposals and what one message committed before the node imported it.
pub const MAX_PERSISTED_BYTES: usize =
    MAX_MESSAGE_BYTES + (MAX_UNCOMMITTED_PROPOSALS + 1) * MAX_BLOCK_BYTES;

impl PersistedState {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh writes to a Vec without failing")
    }

    pub fn decode(bytes: &[u8]) -> Result<PersistedState, ZabError> {
        decode_limited(bytes, MAX_PERSISTED_BYTES, "zab persisted state").map_err(|e| {
            ZabError::Persisted {
                reason: e.to_string(),
            }
        })
    }
}
