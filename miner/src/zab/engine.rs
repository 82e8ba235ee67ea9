//! The verifying half of ZAB (every node).

use crate::quorum::{Certificate, VoterSet};
use crate::seal::verify_signed_seal;
use crate::zab::error::ZabError;
use crate::zab::machine::ZabMachine;
use crate::zab::params::ZabParams;
use crate::zab::wire::{PersistedState, Zxid, check_certificate};
use chain::{
    Address, ChainView, ConsensusEngine, EngineError, Header, SealedHeader, SecretKey,
    StateOverlay, StateRead, VotingMachine, Weight,
};

/// The engine's name (also the domain its ACKs are signed in).
pub const ENGINE_NAME: &str = "zab";

pub(crate) fn reject(e: impl Into<ZabError>) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e.into())
}

/// ZAB: blocks are the leader's transactions, imported with a quorum's signed ACKs.
#[derive(Clone, Debug)]
pub struct ZabEngine {
    params: ZabParams,
    servers: VoterSet,
}

impl ZabEngine {
    pub fn new(params: ZabParams) -> Result<ZabEngine, ZabError> {
        params.validate()?;
        let servers = params.voter_set();
        Ok(ZabEngine { params, servers })
    }

    pub fn params(&self) -> &ZabParams {
        &self.params
    }
}

impl ConsensusEngine for ZabEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    /// Without state: a server sealed it, and its zxid is above its parent's (zxids grow
    /// along the delivered order: primary order).
    fn verify_header(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let fields = &header.engine;
        if fields.bits != 0 || fields.nonce != 0 {
            return Err(reject(ZabError::UnexpectedFields {
                bits: fields.bits,
                nonce: fields.nonce,
            }));
        }
        let zxid = Zxid::of_header(header).map_err(reject)?;
        let parent_zxid = Zxid::of_header(parent).map_err(reject)?;
        if zxid <= parent_zxid {
            return Err(reject(ZabError::ZxidOrder {
                height: header.height(),
                zxid: zxid.to_string(),
                parent_zxid: parent_zxid.to_string(),
            }));
        }
        if !self.servers.contains(&header.producer) {
            return Err(reject(ZabError::NotServer {
                height: header.height(),
                producer: header.producer,
            }));
        }
        verify_signed_seal(header).map_err(reject)?;
        Ok(())
    }

    /// The producer must be a server (the set is fixed, so the header check has done it).
    fn begin_block(
        &self,
        _state: &mut StateOverlay<'_>,
        header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        if !self.servers.contains(&header.producer) {
            return Err(reject(ZabError::NotServer {
                height: header.height,
                producer: header.producer,
            }));
        }
        Ok(())
    }

    fn account_fields(
        &self,
        _state: &dyn StateRead,
        address: &Address,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        Ok(vec![("server", self.servers.contains(address).to_string())])
    }

    /// Every block weighs the same: a decided chain has no rival branch to outweigh.
    fn block_weight(&self, _header: &SealedHeader) -> Weight {
        Weight::from_u64(1)
    }

    /// The block's zxid, its leader, and the quorum that acked it.
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let zxid = Zxid::of_header(header).map_err(reject)?;
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("zxid", zxid.to_string()),
            ("leader", header.producer.to_string()),
            ("quorum", self.servers.majority().to_string()),
        ];
        if let Some(bytes) = chain.certificate(&header.hash())? {
            let certificate = Certificate::decode(&bytes).map_err(|source| {
                reject(ZabError::Certificate {
                    height: header.height(),
                    source,
                })
            })?;
            out.push(("committed_in_epoch", certificate.body.view.to_string()));
            let signers: Vec<String> = certificate
                .signers()
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push(("acked_by", signers.join(",")));
        }
        Ok(out)
    }

    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        match Zxid::of_header(header) {
            Ok(zxid) => vec![("zxid", zxid.to_string())],
            Err(e) => vec![("zxid", format!("unreadable: {e}"))],
        }
    }

    fn requires_certificate(&self) -> bool {
        true
    }

    /// ⌊N/2⌋+1 servers acked this block hash at its height, on its parent, in one epoch no
    /// earlier than its zxid's (see [`check_certificate`]).
    fn verify_certificate(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        certificate: &[u8],
    ) -> Result<(), EngineError> {
        check_certificate(&self.servers, header, certificate).map_err(reject)?;
        Ok(())
    }

    /// The servers of the chain spec (fixed: no membership changes).
    fn voters(&self, _state: &dyn StateRead) -> Result<Vec<Address>, EngineError> {
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
        Ok(Some(Box::new(ZabMachine::new(
            self.params.clone(),
            key.cloned(),
            persisted,
        ))))
    }
}
