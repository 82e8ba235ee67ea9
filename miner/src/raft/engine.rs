//! The verifying half of Raft (every node) and the sealing half (servers).

use crate::engine_state;
use crate::raft::MAX_SERVERS;
use crate::raft::error::RaftError;
use crate::raft::machine::RaftMachine;
use crate::raft::params::{RaftParams, majority};
use crate::raft::wire::{Certificate, EntryData, PersistedState, check_certificate};
use crate::seal::verify_signed_seal;
use borsh::{BorshDeserialize, BorshSerialize};
use chain::{
    Address, ChainView, ConsensusEngine, EngineError, Header, Height, SealedHeader, SecretKey,
    StateOverlay, StateRead, StoreError, Transaction, TxKind, VotingMachine, Weight,
};
use tracing::info;

/// The engine's name and state namespace.
pub const ENGINE_NAME: &str = "raft";
const MEMBERSHIP_KEY: &[u8] = b"membership";

/// The servers after a block, in the chain state (so committed by the state root): the
/// genesis servers, changed one at a time by `propose-authority` transactions.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Membership {
    /// In address order.
    pub servers: Vec<Address>,
    /// The height of the block that last changed them (0: genesis).
    pub changed_at: Height,
}

pub(crate) fn reject(e: impl Into<RaftError>) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e.into())
}

/// Raft: blocks are log entries sealed by the leader and imported with the majority's acks.
#[derive(Clone, Debug)]
pub struct RaftEngine {
    params: RaftParams,
}

impl RaftEngine {
    pub fn new(params: RaftParams) -> Result<RaftEngine, RaftError> {
        params.validate()?;
        Ok(RaftEngine { params })
    }

    pub fn params(&self) -> &RaftParams {
        &self.params
    }

    /// The membership in `state` (after the block `state` belongs to).
    pub fn membership(&self, state: &dyn StateRead) -> Result<Membership, StoreError> {
        engine_state::require(state, ENGINE_NAME, MEMBERSHIP_KEY)
    }

    /// Thesis §4.1, one server at a time: `sender`, a server, adds or removes `address` in
    /// block `header`, the only change in that block, and the servers the leader heard
    /// from are a majority of the new configuration.
    fn change_membership(
        membership: &mut Membership,
        sender: &Address,
        address: Address,
        add: bool,
        header: &Header,
    ) -> Result<(), RaftError> {
        let refuse = |reason: String| RaftError::MembershipChange {
            height: header.height,
            reason,
        };
        if !membership.servers.contains(sender) {
            return Err(refuse(format!("proposed by {sender}, who is not a server")));
        }
        if membership.changed_at == header.height && header.height != Height::GENESIS {
            return Err(refuse(
                "the block already changes the membership once".into(),
            ));
        }
        let data = EntryData::of_header(header)?;
        let live: Vec<Address> = membership
            .servers
            .iter()
            .enumerate()
            .filter(|(i, _)| data.is_live(*i))
            .map(|(_, s)| *s)
            .collect();
        let mut servers = membership.servers.clone();
        if add {
            if servers.contains(&address) {
                return Err(refuse(format!("{address} is already a server")));
            }
            if servers.len() >= MAX_SERVERS {
                return Err(refuse(format!("already {MAX_SERVERS} servers, the most")));
            }
            servers.push(address);
            servers.sort();
        } else {
            if !servers.contains(&address) {
                return Err(refuse(format!("{address} is not a server")));
            }
            if servers.len() == 1 {
                return Err(refuse(format!("{address} is the last server")));
            }
            servers.retain(|s| *s != address);
        }
        let live_after = servers.iter().filter(|s| live.contains(s)).count();
        let needed = majority(servers.len());
        if live_after < needed {
            return Err(refuse(format!(
                "the leader heard from {live_after} of the {} servers after the change, {needed} needed",
                servers.len()
            )));
        }
        membership.servers = servers;
        membership.changed_at = header.height;
        Ok(())
    }
}

impl ConsensusEngine for RaftEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    /// Without state: its producer sealed it, and its log position follows its parent's (a
    /// later index, a term no earlier). That the producer is a server needs the membership,
    /// so [`ConsensusEngine::begin_block`] checks that.
    fn verify_header(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let fields = &header.engine;
        if fields.bits != 0 || fields.nonce != 0 {
            return Err(reject(RaftError::UnexpectedFields {
                bits: fields.bits,
                nonce: fields.nonce,
            }));
        }
        let position = EntryData::of_header(header).map_err(reject)?;
        let parent_position = EntryData::of_header(parent).map_err(reject)?;
        if position.index <= parent_position.index || position.term < parent_position.term {
            return Err(reject(RaftError::LogOrder {
                height: header.height(),
                index: position.index,
                term: position.term,
                parent_index: parent_position.index,
                parent_term: parent_position.term,
            }));
        }
        verify_signed_seal(header).map_err(reject)?;
        Ok(())
    }

    fn init_genesis(&self, state: &mut StateOverlay<'_>) -> Result<(), EngineError> {
        let membership = Membership {
            servers: self.params.sorted_servers(),
            changed_at: Height::GENESIS,
        };
        engine_state::put(state, ENGINE_NAME, MEMBERSHIP_KEY, &membership);
        Ok(())
    }

    /// On the parent's membership: the producer must be a server.
    fn begin_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let membership = self.membership(state)?;
        if !membership.servers.contains(&header.producer) {
            return Err(reject(RaftError::NotServer {
                height: header.height,
                producer: header.producer,
            }));
        }
        Ok(())
    }

    /// `propose-authority`: a server adds or removes one server.
    fn apply_tx(
        &self,
        state: &mut StateOverlay<'_>,
        sender: &Address,
        tx: &Transaction,
        header: &Header,
    ) -> Result<(), EngineError> {
        let TxKind::ProposeAuthority { address, add } = tx.kind else {
            return Err(EngineError::UnsupportedTx {
                kind: tx.kind.name(),
                engine: ENGINE_NAME,
            });
        };
        let mut membership = self.membership(state)?;
        Self::change_membership(&mut membership, sender, address, add, header).map_err(reject)?;
        info!(%address, add, height = header.height.0, "raft membership changed");
        engine_state::put(state, ENGINE_NAME, MEMBERSHIP_KEY, &membership);
        Ok(())
    }

    /// Whether the account is a server at `state`.
    fn account_fields(
        &self,
        state: &dyn StateRead,
        address: &Address,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let membership = self.membership(state)?;
        Ok(vec![(
            "server",
            membership.servers.contains(address).to_string(),
        )])
    }

    /// Every block weighs the same: a decided chain has no rival branch to outweigh.
    fn block_weight(&self, _header: &SealedHeader) -> Weight {
        Weight::from_u64(1)
    }

    /// The block's term and log index, its leader, and the majority that acked it.
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let position = EntryData::of_header(header).map_err(reject)?;
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("term", position.term.to_string()),
            ("log_index", position.index.to_string()),
            ("leader", header.producer.to_string()),
        ];
        // The servers shown are the head's: past memberships are not kept.
        let membership = self.membership(chain.state())?;
        out.push(("servers_at_head", join(&membership.servers)));
        out.push((
            "majority_at_head",
            majority(membership.servers.len()).to_string(),
        ));
        if let Some(bytes) = chain.certificate(&header.hash())? {
            let certificate = Certificate::decode(&bytes).map_err(reject)?;
            out.push(("committed_in_term", certificate.term.to_string()));
            out.push(("acked_by", join(&certificate.signers())));
        }
        Ok(out)
    }

    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        match EntryData::of_header(header) {
            Ok(position) => vec![
                ("term", position.term.to_string()),
                ("log_index", position.index.to_string()),
            ],
            Err(e) => vec![("log_position", format!("unreadable: {e}"))],
        }
    }

    fn requires_certificate(&self) -> bool {
        true
    }

    /// A majority of the servers (of the parent's membership: the chain's head) acked this
    /// block hash at its height in one term no earlier than the block's (see
    /// [`Certificate`]).
    fn verify_certificate(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
        certificate: &[u8],
    ) -> Result<(), EngineError> {
        let position = EntryData::of_header(header).map_err(reject)?;
        let membership = self.membership(chain.state())?;
        check_certificate(
            &membership.servers,
            header.height(),
            &header.hash(),
            position.term,
            certificate,
        )
        .map_err(reject)?;
        Ok(())
    }

    /// The servers after the block whose state is `state`.
    fn voters(&self, state: &dyn StateRead) -> Result<Vec<Address>, EngineError> {
        Ok(self.membership(state)?.servers)
    }

    /// A server's machine, restored from its last persisted state; a node without a key,
    /// or whose key is not a server's, gets an observer that takes part in nothing.
    fn voting_machine(
        &self,
        key: Option<&SecretKey>,
        persisted: Option<&[u8]>,
    ) -> Result<Option<Box<dyn VotingMachine>>, EngineError> {
        let persisted = persisted
            .map(PersistedState::decode)
            .transpose()
            .map_err(reject)?;
        Ok(Some(Box::new(RaftMachine::new(
            self.params.clone(),
            key.cloned(),
            persisted,
        ))))
    }
}

fn join(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
