//! The verifying half of Raft (every node) and the sealing half (servers).

use crate::raft::error::RaftError;
use crate::raft::machine::RaftMachine;
use crate::raft::params::RaftParams;
use crate::raft::wire::{Certificate, LogPosition, PersistedState, check_certificate};
use crate::seal::{sign_header, verify_signed_seal};
use chain::{
    Address, BlockId, BlockProducer, CancelFlag, ChainView, ConsensusEngine, EngineError, Header,
    SealedHeader, SecretKey, StateRead, Turn, VotingMachine, Weight,
};

/// The engine's name.
pub const ENGINE_NAME: &str = "raft";

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
}

impl ConsensusEngine for RaftEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    /// Without state: a server sealed it, and its log position follows its parent's (a
    /// later index, a term no earlier).
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
        if !self.params.servers.contains(&header.producer) {
            return Err(reject(RaftError::NotServer {
                height: header.height(),
                producer: header.producer,
            }));
        }
        let position = LogPosition::of_header(header).map_err(reject)?;
        let parent_position = LogPosition::of_header(parent).map_err(reject)?;
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

    /// Every block weighs the same: a decided chain has no rival branch to outweigh.
    fn block_weight(&self, _header: &SealedHeader) -> Weight {
        Weight::from_u64(1)
    }

    /// Every stored block was committed, so the head is final.
    fn finalized(&self, chain: &dyn ChainView) -> Result<Option<BlockId>, EngineError> {
        let head = chain.head();
        Ok(Some(BlockId {
            height: head.height(),
            hash: head.hash(),
        }))
    }

    /// The block's term and log index, its leader, and the majority that acked it.
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let position = LogPosition::of_header(header).map_err(reject)?;
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("term", position.term.to_string()),
            ("log_index", position.index.to_string()),
            ("leader", header.producer.to_string()),
            ("servers", join(&self.params.sorted_servers())),
            ("majority", self.params.majority().to_string()),
        ];
        if let Some(bytes) = chain.certificate(&header.hash())? {
            let certificate = Certificate::decode(&bytes).map_err(reject)?;
            out.push(("committed_in_term", certificate.term.to_string()));
            out.push(("acked_by", join(&certificate.signers())));
        }
        Ok(out)
    }

    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        match LogPosition::of_header(header) {
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

    /// A majority of the servers acked this block hash at its height in one term no
    /// earlier than the block's (see [`Certificate`]).
    fn verify_certificate(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        certificate: &[u8],
    ) -> Result<(), EngineError> {
        let position = LogPosition::of_header(header).map_err(reject)?;
        check_certificate(
            &self.params.servers,
            header.height(),
            &header.hash(),
            position.term,
            certificate,
        )
        .map_err(reject)?;
        Ok(())
    }

    /// The genesis servers (membership does not change).
    fn voters(&self, _state: &dyn StateRead) -> Result<Vec<Address>, EngineError> {
        Ok(self.params.sorted_servers())
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

/// Seals the blocks a leader's machine asks its node to build. The machine decides when
/// ([`chain::VoteOutput::Build`]), so this producer never has a turn of its own.
#[derive(Debug)]
pub struct RaftProducer {
    key: SecretKey,
}

impl RaftProducer {
    pub fn new(key: SecretKey) -> RaftProducer {
        RaftProducer { key }
    }
}

impl BlockProducer for RaftProducer {
    fn author(&self) -> Address {
        self.key.address()
    }

    /// Never: blocks are built when the leader's machine asks.
    fn next_turn(
        &self,
        _chain: &dyn ChainView,
        _parent: &SealedHeader,
        _now_millis: u64,
    ) -> Result<Option<Turn>, EngineError> {
        Ok(None)
    }

    /// Clears the fields Raft does not use; `engine.data` (the log position from the
    /// machine's build request) is the node's to set and is kept.
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

fn join(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
