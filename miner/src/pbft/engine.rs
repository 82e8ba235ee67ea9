//! The verifying half of PBFT: every node checks a block's primary and seal and the commit
//! certificate that decided it.

use crate::engine_state;
use crate::pbft::error::PbftError;
use crate::pbft::machine::PbftMachine;
use crate::pbft::membership::{Membership, MembershipOutcome};
use crate::pbft::message::decode_view;
use crate::pbft::params::PbftParams;
use crate::quorum::{Certificate, Phase, VoteBody, VoterSet};
use crate::seal::verify_signed_seal;
use chain::{
    Address, ChainView, ConsensusEngine, EngineError, Header, SealedHeader, SecretKey,
    StateOverlay, StateRead, StoreError, Transaction, TxKind, VotingMachine, Weight,
};
use tracing::info;

/// The engine's name and state namespace.
pub const ENGINE_NAME: &str = "pbft";
const MEMBERSHIP_KEY: &[u8] = b"membership";

pub(crate) fn reject(e: impl Into<PbftError>) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e.into())
}

/// PBFT: blocks proposed by the view's primary, imported only with 2f+1 COMMIT signatures.
#[derive(Clone, Debug)]
pub struct PbftEngine {
    params: PbftParams,
}

impl PbftEngine {
    /// The engine for `params`, refused when they are invalid.
    pub fn new(params: PbftParams) -> Result<PbftEngine, PbftError> {
        params.validate()?;
        Ok(PbftEngine { params })
    }

    /// The chain spec's parameters.
    pub fn params(&self) -> &PbftParams {
        &self.params
    }

    /// The validator set and pending votes in `state` (after the block `state` belongs to).
    pub fn membership(&self, state: &dyn StateRead) -> Result<Membership, StoreError> {
        engine_state::require(state, ENGINE_NAME, MEMBERSHIP_KEY)
    }

    /// The validators in `state`: they vote on the block after the one `state` belongs to.
    pub fn validator_set(&self, state: &dyn StateRead) -> Result<VoterSet, StoreError> {
        Ok(self.membership(state)?.voter_set())
    }

    /// The primary of `view` over `voters`: `voters[view mod N]` (PBFT §4.1).
    pub fn primary(voters: &VoterSet, view: u64) -> Result<Address, PbftError> {
        voters.at_round(view).ok_or(PbftError::NoValidators)
    }

    /// Checks `certificate` as the commit certificate of `header` against `voters`: 2f+1
    /// distinct validators' COMMITs for exactly this hash, height and parent, in any view.
    pub fn check_commit_certificate(
        header: &SealedHeader,
        certificate: &[u8],
        voters: &VoterSet,
    ) -> Result<Certificate, PbftError> {
        let certificate = Certificate::decode(certificate)?;
        let expected = VoteBody {
            height: header.height(),
            view: certificate.body.view,
            parent: header.parent,
            block: header.hash(),
            phase: Phase::Commit,
        };
        certificate.verify(ENGINE_NAME, &expected, voters, voters.bft_quorum())?;
        Ok(certificate)
    }
}

impl ConsensusEngine for PbftEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn init_genesis(&self, state: &mut StateOverlay<'_>) -> Result<(), EngineError> {
        let membership = Membership::new(self.params.validators.iter().copied());
        engine_state::put(state, ENGINE_NAME, MEMBERSHIP_KEY, &membership);
        Ok(())
    }

    /// Without state: the fields' shapes, the block time and the producer's seal. Whether
    /// the producer was the primary of the view it names needs the validator set, so
    /// [`ConsensusEngine::begin_block`] checks that on the parent's state.
    fn verify_header(
        &self,
        _chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let fields = &header.engine;
        if fields.bits != 0 || fields.nonce != 0 {
            return Err(reject(PbftError::UnexpectedFields {
                bits: fields.bits,
                nonce: fields.nonce,
            }));
        }
        decode_view(&fields.data).map_err(reject)?;
        if header.timestamp.0 < parent.timestamp.0.saturating_add(self.params.block_time) {
            return Err(reject(PbftError::TooEarly {
                height: header.height(),
                timestamp: header.timestamp,
                parent_timestamp: parent.timestamp,
                block_time: self.params.block_time,
            }));
        }
        verify_signed_seal(header).map_err(reject)?;
        Ok(())
    }

    /// Every block is decided, so weight only counts blocks.
    fn block_weight(&self, _header: &SealedHeader) -> Weight {
        Weight::from_u64(1)
    }

    /// The producer must be the primary of the view its header names, on the parent's
    /// validator set. A block re-proposed in a later view keeps the view it was built in
    /// and its producer, the primary of that view.
    fn begin_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let view = decode_view(&header.engine.data).map_err(reject)?;
        let voters = self.validator_set(state)?;
        let primary = Self::primary(&voters, view).map_err(reject)?;
        if header.producer != primary {
            return Err(reject(PbftError::NotPrimary {
                height: header.height,
                view,
                sender: header.producer,
                primary,
            }));
        }
        Ok(())
    }

    /// `propose-authority`: a validator's vote to add or remove a validator; 2f+1 of them
    /// change the set in this block's state, so from the next height.
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
        match membership.vote(*sender, address, add).map_err(reject)? {
            MembershipOutcome::Added => {
                info!(%address, height = header.height.0, "validator added");
            }
            MembershipOutcome::Removed => {
                info!(%address, height = header.height.0, "validator removed");
            }
            MembershipOutcome::Counted { .. } => {}
        }
        engine_state::put(state, ENGINE_NAME, MEMBERSHIP_KEY, &membership);
        Ok(())
    }

    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let mut out = vec![("engine", ENGINE_NAME.to_owned())];
        if let Ok(view) = decode_view(&header.engine.data) {
            out.push(("proposed_in_view", view.to_string()));
        }
        out.push(("primary", header.producer.to_string()));
        if let Some(bytes) = chain.certificate(&header.hash())? {
            match Certificate::decode(&bytes) {
                Ok(cert) => {
                    out.push(("committed_in_view", cert.body.view.to_string()));
                    out.push(("commit_signers", join(&cert.signers())));
                    out.push(("commit_votes", cert.signatures.len().to_string()));
                }
                Err(e) => out.push(("certificate_error", e.to_string())),
            }
        }
        // Past validator sets are not kept apart from the state; the head's is shown.
        let voters = self.validator_set(chain.state())?;
        out.push(("validators_at_head", join(voters.as_slice())));
        out.push(("quorum", voters.bft_quorum().to_string()));
        out.push(("max_faulty", voters.max_faulty().to_string()));
        Ok(out)
    }

    fn account_fields(
        &self,
        state: &dyn StateRead,
        address: &Address,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let membership = self.membership(state)?;
        let votes: Vec<String> = membership
            .pending
            .iter()
            .filter(|(_, voters)| voters.contains(address))
            .map(|((target, add), _)| format!("{}{target}", if *add { "+" } else { "-" }))
            .collect();
        Ok(vec![
            (
                "validator",
                membership.validators.contains(address).to_string(),
            ),
            ("pending_votes", votes.join(",")),
        ])
    }

    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        match decode_view(&header.engine.data) {
            Ok(view) => vec![("view", view.to_string())],
            Err(e) => vec![("view", e.to_string())],
        }
    }

    fn requires_certificate(&self) -> bool {
        true
    }

    /// 2f+1 COMMITs for exactly `header` by the validators of its parent's state (the
    /// chain's head).
    fn verify_certificate(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
        certificate: &[u8],
    ) -> Result<(), EngineError> {
        let voters = self.validator_set(chain.state())?;
        Self::check_commit_certificate(header, certificate, &voters).map_err(reject)?;
        Ok(())
    }

    fn voters(&self, state: &dyn StateRead) -> Result<Vec<Address>, EngineError> {
        Ok(self.validator_set(state)?.as_slice().to_vec())
    }

    fn voting_machine(
        &self,
        key: Option<&SecretKey>,
        persisted: Option<&[u8]>,
    ) -> Result<Option<Box<dyn VotingMachine>>, EngineError> {
        let machine =
            PbftMachine::new(self.params.clone(), key.cloned(), persisted).map_err(reject)?;
        Ok(Some(Box::new(machine)))
    }
}

fn join(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
