//! The verifying half of Multi-Paxos (every node).

use crate::paxos::error::PaxosError;
use crate::paxos::machine::PaxosMachine;
use crate::paxos::params::PaxosParams;
use crate::paxos::wire::{BlockData, PersistedState, check_certificate};
use crate::quorum::{Certificate, VoterSet};
use crate::seal::verify_signed_seal;
use chain::{
    ChainView, ConsensusEngine, EngineError, Header, SealedHeader, SecretKey, StateRead,
    VotingMachine, Weight,
};

/// The engine's name and the domain its Accepted votes are signed in.
pub const ENGINE_NAME: &str = "paxos";

pub(crate) fn reject(e: impl Into<PaxosError>) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e.into())
}

/// Multi-Paxos: blocks are the values chosen slot by slot, sealed by the leader that built
/// them and imported with the majority's signed Accepted messages.
#[derive(Clone, Debug)]
pub struct PaxosEngine {
    params: PaxosParams,
    servers: VoterSet,
}

impl PaxosEngine {
    pub fn new(params: PaxosParams) -> Result<PaxosEngine, PaxosError> {
        params.validate()?;
        let servers = params.voter_set();
        Ok(PaxosEngine { params, servers })
    }

    pub fn params(&self) -> &PaxosParams {
        &self.params
    }

    /// Checks what a block says of itself against the fixed server set: a server built it
    /// in a ballot of its own, no lower than its parent's, and sealed it.
    pub fn check_block_header(
        servers: &VoterSet,
        header: &Header,
        parent: Option<&Header>,
    ) -> Result<BlockData, PaxosError> {
        let fields = &header.engine;
        if fields.bits != 0 || fields.nonce != 0 {
            return Err(PaxosError::UnexpectedFields {
                bits: fields.bits,
                nonce: fields.nonce,
            });
        }
        let data = BlockData::of_header(header)?;
        let Some(index) = servers.index_of(&header.producer) else {
            return Err(PaxosError::NotServer {
                height: header.height,
                producer: header.producer,
            });
        };
        if usize::from(data.ballot.proposer()) != index || data.ballot.round() == 0 {
            let owner = servers
                .as_slice()
                .get(usize::from(data.ballot.proposer()))
                .map_or_else(|| "no server".to_owned(), ToString::to_string);
            return Err(PaxosError::BallotNotProducers {
                height: header.height,
                producer: header.producer,
                ballot: data.ballot,
                owner,
            });
        }
        if let Some(parent) = parent {
            let parent_ballot = BlockData::of_header(parent)?.ballot;
            if data.ballot < parent_ballot {
                return Err(PaxosError::BallotOrder {
                    height: header.height,
                    ballot: data.ballot,
                    parent: parent_ballot,
                });
            }
        }
        verify_signed_seal(header)?;
        Ok(data)
    }
}

impl ConsensusEngine for PaxosEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    /// Without state: a server built it in its own ballot, no lower than its parent's,
    /// and sealed it.
    fn verify_header(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        Self::check_block_header(&self.servers, header, Some(parent)).map_err(reject)?;
        Ok(())
    }

    /// Every block weighs the same: a decided chain has no rival branch to outweigh.
    fn block_weight(&self, _header: &SealedHeader) -> Weight {
        Weight::from_u64(1)
    }

    /// The ballot the block was built in, its leader, and the ballot and majority that
    /// chose it.
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let data = BlockData::of_header(header).map_err(reject)?;
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("built_in_ballot", data.ballot.to_string()),
            ("leader", header.producer.to_string()),
            ("majority", self.servers.majority().to_string()),
        ];
        if let Some(bytes) = chain.certificate(&header.hash())? {
            let certificate = Certificate::decode(&bytes).map_err(|source| {
                reject(PaxosError::Certificate {
                    hash: header.hash(),
                    source,
                })
            })?;
            out.push((
                "chosen_in_ballot",
                crate::paxos::wire::Ballot(certificate.body.view).to_string(),
            ));
            let signers: Vec<String> = certificate
                .signers()
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push(("accepted_by", signers.join(",")));
        }
        Ok(out)
    }

    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        match BlockData::of_header(header) {
            Ok(data) => vec![("ballot", data.ballot.to_string())],
            Err(e) => vec![("ballot", format!("unreadable: {e}"))],
        }
    }

    fn requires_certificate(&self) -> bool {
        true
    }

    /// ⌊N/2⌋+1 servers accepted this block hash on its parent at its height in one ballot
    /// no earlier than the one it was built in (see [`check_certificate`]).
    fn verify_certificate(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        certificate: &[u8],
    ) -> Result<(), EngineError> {
        let data = BlockData::of_header(header).map_err(reject)?;
        check_certificate(
            &self.servers,
            header.height(),
            header.parent,
            header.hash(),
            data.ballot,
            certificate,
        )
        .map_err(reject)?;
        Ok(())
    }

    /// The fixed servers of the parameters.
    fn voters(&self, _state: &dyn StateRead) -> Result<Vec<chain::Address>, EngineError> {
        Ok(self.servers.as_slice().to_vec())
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
        Ok(Some(Box::new(PaxosMachine::new(
            self.params.clone(),
            key.cloned(),
            persisted,
        ))))
    }
}
