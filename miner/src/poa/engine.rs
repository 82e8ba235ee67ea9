//! The verifying half of proof of authority.

use crate::engine_state;
use crate::poa::error::PoaError;
use crate::poa::params::PoaParams;
use crate::poa::snapshot::{Snapshot, VoteOutcome};
use crate::poa::{DIFF_IN_TURN, DIFF_NO_TURN};
use crate::seal::verify_signed_seal;
use chain::validation::check_begin_block_on_parent;
use chain::{
    Address, ChainView, ConsensusEngine, EngineError, Header, SealedHeader, StateOverlay,
    StateRead, StoreError, Transaction, TxKind, Weight,
};
use tracing::info;

/// The engine's name and state namespace.
pub const ENGINE_NAME: &str = "poa";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

fn reject(e: impl Into<PoaError>) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e.into())
}

/// Clique: signed blocks, in-turn weight 2, out-of-turn 1, voted authorities.
#[derive(Clone, Debug)]
pub struct PoaEngine {
    params: PoaParams,
}

impl PoaEngine {
    pub fn new(params: PoaParams) -> Result<PoaEngine, PoaError> {
        params.validate()?;
        Ok(PoaEngine { params })
    }

    pub fn params(&self) -> &PoaParams {
        &self.params
    }

    /// The authority snapshot in `state` (after the block `state` belongs to).
    pub fn snapshot(&self, state: &dyn StateRead) -> Result<Snapshot<Address>, StoreError> {
        engine_state::require(state, ENGINE_NAME, SNAPSHOT_KEY)
    }

    /// The difficulty `signer` gives block `number` on top of `snapshot`.
    pub fn difficulty(snapshot: &Snapshot<Address>, number: u64, signer: &Address) -> u32 {
        if snapshot.is_in_turn(number, signer) {
            DIFF_IN_TURN
        } else {
            DIFF_NO_TURN
        }
    }
}

impl ConsensusEngine for PoaEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn init_genesis(&self, state: &mut StateOverlay<'_>) -> Result<(), EngineError> {
        let snapshot = Snapshot::new(self.params.authorities.iter().copied(), self.params.epoch);
        engine_state::put(state, ENGINE_NAME, SNAPSHOT_KEY, &snapshot);
        Ok(())
    }

    /// The fields' shapes, the period and the producer's signature, then — on the
    /// parent's snapshot, before the block is stored or weighed, as Clique's `verifySeal`
    /// — whether the producer is an authority, outside the recent-signer window, and
    /// claims the difficulty of its turn ([`ConsensusEngine::begin_block`]'s checks).
    fn verify_header(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let fields = &header.engine;
        if fields.bits != DIFF_IN_TURN && fields.bits != DIFF_NO_TURN {
            return Err(reject(PoaError::InvalidDifficulty { got: fields.bits }));
        }
        if fields.nonce != 0 || !fields.data.is_empty() {
            return Err(reject(PoaError::UnexpectedFields {
                nonce: fields.nonce,
                data_len: fields.data.len(),
            }));
        }
        if header.timestamp.0 < parent.timestamp.0.saturating_add(self.params.period) {
            return Err(reject(PoaError::TooEarly {
                height: header.height(),
                timestamp: header.timestamp,
                parent_timestamp: parent.timestamp,
                period: self.params.period,
            }));
        }
        verify_signed_seal(header).map_err(reject)?;
        check_begin_block_on_parent(self, chain, header, parent)
    }

    /// Clique's difficulty: 2 in turn, 1 out of turn.
    fn block_weight(&self, header: &SealedHeader) -> Weight {
        Weight::from_u64(u64::from(header.engine.bits))
    }

    /// Equal branches go to the lower tip hash on every node: after a split each side's
    /// signers may only extend the other side's branch, so keeping the first-seen one would
    /// stall both for good.
    fn tie_break(&self) -> chain::fork_choice::TieBreak {
        chain::fork_choice::TieBreak::LowerHash
    }

    /// The producer's right to this block, on the parent's snapshot: its difficulty must
    /// match its turn, it must be an authority and outside the recent-signer window.
    fn begin_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let mut snapshot = self.snapshot(state)?;
        let number = header.height.0;
        snapshot
            .begin_block(number, header.producer)
            .map_err(reject)?;
        // The turn is the parent snapshot's: begin_block changes only the recent window.
        let expected = Self::difficulty(&snapshot, number, &header.producer);
        if header.engine.bits != expected {
            return Err(reject(PoaError::WrongDifficulty {
                height: header.height,
                signer: header.producer,
                expected,
                got: header.engine.bits,
            }));
        }
        engine_state::put(state, ENGINE_NAME, SNAPSHOT_KEY, &snapshot);
        Ok(())
    }

    /// `propose-authority`: the sender (an authority) votes on adding or removing an address.
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
        let mut snapshot = self.snapshot(state)?;
        let outcome = snapshot
            .vote(header.height.0, *sender, address, add)
            .map_err(reject)?;
        match outcome {
            VoteOutcome::Added => info!(%address, height = header.height.0, "authority added"),
            VoteOutcome::Removed => {
                info!(%address, height = header.height.0, "authority removed");
            }
            VoteOutcome::Counted | VoteOutcome::Ignored => {}
        }
        engine_state::put(state, ENGINE_NAME, SNAPSHOT_KEY, &snapshot);
        Ok(())
    }

    /// The signer, its turn and the authority set the block was checked against.
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("signer", header.producer.to_string()),
            ("difficulty", header.engine.bits.to_string()),
            ("in_turn", (header.engine.bits == DIFF_IN_TURN).to_string()),
        ];
        // `in_turn` above was checked against the parent's snapshot when the block was
        // imported; past snapshots are not kept, so the set shown is the head's.
        let snapshot = self.snapshot(chain.state())?;
        let authorities = snapshot.ordered();
        out.push(("authorities_at_head", join(&authorities)));
        if let Some(index) = authorities.iter().position(|a| *a == header.producer) {
            out.push(("signer_index", index.to_string()));
            out.push((
                "in_turn_index",
                (header.height().0 % authorities.len() as u64).to_string(),
            ));
        }
        out.push(("signer_limit", snapshot.signer_limit().to_string()));
        out.push(("period", format!("{} s", self.params.period)));
        Ok(out)
    }

    /// Whether the account signs, and its pending votes.
    fn account_fields(
        &self,
        state: &dyn StateRead,
        address: &Address,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let snapshot = self.snapshot(state)?;
        let votes: Vec<String> = snapshot
            .votes
            .iter()
            .filter(|v| v.signer == *address)
            .map(|v| format!("{}{}", if v.authorize { "+" } else { "-" }, v.target))
            .collect();
        Ok(vec![
            ("authority", snapshot.signers.contains(address).to_string()),
            ("pending_votes", votes.join(",")),
        ])
    }

    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        vec![
            ("difficulty", header.engine.bits.to_string()),
            ("in_turn", (header.engine.bits == DIFF_IN_TURN).to_string()),
        ]
    }
}

fn join(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
