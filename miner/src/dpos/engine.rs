//! The verifying half of DPoS.

use crate::dpos::book::{
    Delegate, DelegateBook, RoundState, irreversible_height, shuffle, shuffle_seed, slot_owner,
};
use crate::dpos::error::DposError;
use crate::dpos::evidence::{Equivocation, EvidencePool, MAX_EVIDENCE_PER_BLOCK};
use crate::dpos::params::DposParams;
use crate::engine_state;
use crate::seal::verify_signed_seal;
use chain::validation::check_begin_block_on_parent;
use chain::{
    Address, BlockId, ChainView, ConsensusEngine, EngineError, Header, Height, SealedHeader,
    StateOverlay, StateRead, StoreError, Transaction, TxKind, Weight,
};
use std::collections::BTreeMap;

/// How far ahead of a node's clock a DPoS block's time may be: timestamps are whole
/// seconds, so a producer whose clock runs a fraction of a second ahead stamps the next
/// second.
pub const SLOT_CLOCK_TOLERANCE_SECS: u64 = 1;

/// The engine's name and state namespace.
pub const ENGINE_NAME: &str = "dpos";
const BOOK_KEY: &[u8] = b"book";
const ROUND_KEY: &[u8] = b"round";

fn reject(e: DposError) -> EngineError {
    EngineError::rejected(ENGINE_NAME, e)
}

/// Voted delegates producing in shuffled slots, with a last irreversible block. Clones
/// share one evidence pool, so give the producer a clone of the chain's engine.
#[derive(Clone, Debug)]
pub struct DposEngine {
    params: DposParams,
    evidence: EvidencePool,
}

impl DposEngine {
    pub fn new(params: DposParams) -> Result<DposEngine, DposError> {
        params.validate()?;
        Ok(DposEngine {
            params,
            evidence: EvidencePool::default(),
        })
    }

    /// Equivocations this node has seen and the chain has not recorded yet.
    pub fn evidence(&self) -> &EvidencePool {
        &self.evidence
    }

    /// The evidence a header's engine data carries (empty data = none; an empty list is
    /// not the canonical form).
    pub fn decode_evidence(data: &[u8]) -> Result<Vec<Equivocation>, DposError> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<Equivocation> =
            borsh::from_slice(data).map_err(|e| DposError::UnexpectedFields {
                reason: format!("engine data is not a list of evidence: {e}"),
            })?;
        if list.is_empty() {
            return Err(DposError::UnexpectedFields {
                reason: "an empty evidence list must be written as no data".into(),
            });
        }
        if list.len() > MAX_EVIDENCE_PER_BLOCK {
            return Err(DposError::TooMuchEvidence {
                count: list.len(),
                max: MAX_EVIDENCE_PER_BLOCK,
            });
        }
        Ok(list)
    }

    /// Pending evidence not yet recorded in `state`, as engine data for a new block.
    pub fn evidence_data(&self, state: &dyn StateRead) -> Result<Vec<u8>, StoreError> {
        let book = self.book(state)?;
        let recorded = |e: &Equivocation| {
            book.delegates.get(&e.offender()).is_none_or(|d| {
                d.equivocations
                    .contains(&(e.first.timestamp.0 / self.params.slot_secs))
            })
        };
        self.evidence.forget(recorded);
        let mut fresh = self.evidence.pending();
        fresh.truncate(MAX_EVIDENCE_PER_BLOCK);
        Ok(if fresh.is_empty() {
            Vec::new()
        } else {
            borsh::to_vec(&fresh).expect("borsh writes to a Vec without failing")
        })
    }

    pub fn params(&self) -> &DposParams {
        &self.params
    }

    pub fn book(&self, state: &dyn StateRead) -> Result<DelegateBook, StoreError> {
        engine_state::require(state, ENGINE_NAME, BOOK_KEY)
    }

    pub fn round_state(&self, state: &dyn StateRead) -> Result<RoundState, StoreError> {
        engine_state::require(state, ENGINE_NAME, ROUND_KEY)
    }

    /// The slot a timestamp falls in.
    pub fn slot_of(&self, secs: u64) -> u64 {
        secs / self.params.slot_secs
    }

    pub fn round_of(&self, slot: u64) -> u64 {
        slot / u64::from(self.params.producers)
    }

    /// The set the ranking on `state` elects.
    pub fn elect(
        &self,
        book: &DelegateBook,
        state: &dyn StateRead,
    ) -> Result<Vec<Address>, StoreError> {
        let k = usize::try_from(self.params.producers).unwrap_or(usize::MAX);
        book.elect(k, |a| state.account(a).map(|acc| acc.balance))
    }

    /// The schedule that governs `slot` for a block whose parent has `state`: the current
    /// round's, or a new election's when `slot` is in a later round.
    pub fn schedule_for(
        &self,
        state: &dyn StateRead,
        slot: u64,
    ) -> Result<(u64, Vec<Address>), StoreError> {
        let current = self.round_state(state)?;
        let round = self.round_of(slot);
        if round == current.round && !current.schedule.is_empty() {
            return Ok((round, current.schedule));
        }
        let book = self.book(state)?;
        Ok((round, shuffle(&self.elect(&book, state)?, round)))
    }

    /// Who owns `slot` for a child of the block whose state is `state`.
    pub fn owner_of(
        &self,
        state: &dyn StateRead,
        slot: u64,
    ) -> Result<Option<Address>, StoreError> {
        let (_, schedule) = self.schedule_for(state, slot)?;
        Ok(slot_owner(&schedule, self.params.producers, slot))
    }

    /// Adds the slots strictly between `from` and `to` to their owners' missed counts:
    /// slots of the current round by its schedule, later ones by `elected` shuffled for
    /// their round.
    fn count_missed(
        &self,
        book: &mut DelegateBook,
        current: &RoundState,
        elected: &[Address],
        from: u64,
        to: u64,
    ) {
        let k = u64::from(self.params.producers);
        let mut miss = |owner: Option<Address>, times: u64| {
            if let Some(owner) = owner {
                book.delegates.entry(owner).or_default().missed += times;
            }
        };
        let mut slot = from + 1;
        while slot < to {
            let round = self.round_of(slot);
            let round_end = (round + 1) * k;
            if round == current.round && !current.schedule.is_empty() {
                for s in slot..round_end.min(to) {
                    miss(slot_owner(&current.schedule, self.params.producers, s), 1);
                }
                slot = round_end;
                continue;
            }
            let n = elected.len() as u64;
            // Whole rounds without a block: when n divides K every elected delegate owns
            // K/n slots of each, whatever the shuffle.
            if slot == round * k && round_end <= to && n > 0 && k.is_multiple_of(n) {
                let rounds = (to - slot) / k;
                for d in elected {
                    miss(Some(*d), rounds * (k / n));
                }
                slot += rounds * k;
                continue;
            }
            let schedule = shuffle(elected, round);
            for s in slot..round_end.min(to) {
                miss(slot_owner(&schedule, self.params.producers, s), 1);
            }
            slot = round_end;
        }
    }
}

impl ConsensusEngine for DposEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn init_genesis(&self, state: &mut StateOverlay<'_>) -> Result<(), EngineError> {
        let book = DelegateBook {
            delegates: self
                .params
                .genesis_delegates
                .iter()
                .map(|a| {
                    (
                        *a,
                        Delegate {
                            genesis: true,
                            ..Delegate::default()
                        },
                    )
                })
                .collect(),
            votes: BTreeMap::new(),
        };
        engine_state::put(state, ENGINE_NAME, BOOK_KEY, &book);
        // No schedule yet: the first block elects one for its round.
        engine_state::put(state, ENGINE_NAME, ROUND_KEY, &RoundState::default());
        Ok(())
    }

    /// Field shapes, slot alignment, a slot after the parent's and the producer's
    /// signature, then — on the parent's state, before the block is stored or weighed —
    /// that the slot is the producer's in the schedule ([`ConsensusEngine::begin_block`]'s
    /// checks, evidence included). Only then is the header remembered for equivocation.
    fn verify_header(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let fields = &header.engine;
        if fields.bits != 0 || fields.nonce != 0 {
            return Err(reject(DposError::UnexpectedFields {
                reason: format!("bits {}, nonce {}", fields.bits, fields.nonce),
            }));
        }
        for evidence in Self::decode_evidence(&fields.data).map_err(reject)? {
            evidence.verify(self.params.slot_secs).map_err(reject)?;
        }
        if !header.timestamp.0.is_multiple_of(self.params.slot_secs) {
            return Err(reject(DposError::NotSlotAligned {
                timestamp: header.timestamp,
                slot_secs: self.params.slot_secs,
            }));
        }
        let slot = self.slot_of(header.timestamp.0);
        let parent_slot = self.slot_of(parent.timestamp.0);
        if slot <= parent_slot {
            return Err(reject(DposError::SlotNotAfterParent {
                height: header.height(),
                slot,
                parent_slot,
            }));
        }
        verify_signed_seal(header).map_err(|e| reject(e.into()))?;
        check_begin_block_on_parent(self, chain, header, parent)?;
        // A valid header: remember it, and notice a second one for the same slot.
        let keep = 4 * u64::from(self.params.producers);
        if let Some(evidence) = self.evidence.observe(header, slot, keep) {
            tracing::warn!(
                producer = %evidence.offender(),
                slot,
                "equivocation: two blocks by one producer for one slot"
            );
        }
        Ok(())
    }

    /// One per produced slot.
    fn block_weight(&self, _header: &SealedHeader) -> Weight {
        Weight::from_u64(1)
    }

    /// A block is refused before its slot has begun (EOSIO's rule): only clock
    /// disagreement up to [`SLOT_CLOCK_TOLERANCE_SECS`] is allowed, not the chain's
    /// general future bound, under which a delegate could sign several slots early.
    fn max_future_drift(&self) -> Option<u64> {
        Some(SLOT_CLOCK_TOLERANCE_SECS)
    }

    /// The slot's owner on the parent's state (electing a new round's set when the slot
    /// opens one), missed slots since the parent, and the producer's record.
    fn begin_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        let slot = self.slot_of(header.timestamp.0);
        let mut current = self.round_state(state)?;
        let mut book = self.book(state)?;
        // Evidence first: an offender recorded here is left out of this block's election.
        for evidence in Self::decode_evidence(&header.engine.data).map_err(reject)? {
            let (offender, evidence_slot) =
                evidence.verify(self.params.slot_secs).map_err(reject)?;
            let delegate = book.delegates.get_mut(&offender).ok_or_else(|| {
                reject(DposError::InvalidEvidence {
                    reason: format!("{offender} is not a delegate"),
                })
            })?;
            if delegate.equivocations.contains(&evidence_slot) {
                return Err(reject(DposError::EvidenceAlreadyRecorded {
                    offender,
                    slot: evidence_slot,
                }));
            }
            delegate.equivocations.push(evidence_slot);
            tracing::warn!(%offender, slot = evidence_slot, "equivocation recorded; the delegate is barred from elections");
        }
        let round = self.round_of(slot);
        let elected = if round == current.round && !current.schedule.is_empty() {
            None
        } else {
            Some(self.elect(&book, state)?)
        };
        // The span from genesis to the first block is the chain not yet running, not missed
        // slots (a spec's genesis time may be long before the first block).
        if parent.height() > Height::GENESIS {
            let parent_slot = self.slot_of(parent.timestamp.0);
            self.count_missed(
                &mut book,
                &current,
                elected.as_deref().unwrap_or(&current.schedule),
                parent_slot,
                slot,
            );
        }
        if let Some(elected) = elected {
            current.round = round;
            current.schedule = shuffle(&elected, round);
        }
        let expected = slot_owner(&current.schedule, self.params.producers, slot);
        if expected != Some(header.producer) {
            return Err(reject(DposError::WrongProducer {
                height: header.height,
                slot,
                expected: expected.unwrap_or_default(),
                got: header.producer,
            }));
        }
        let me = book.delegates.entry(header.producer).or_default();
        me.produced += 1;
        me.last_produced = header.height.0;
        let heights = current
            .schedule
            .iter()
            .map(|p| book.delegates.get(p).map_or(0, |d| d.last_produced))
            .collect();
        current.irreversible = current.irreversible.max(irreversible_height(heights));
        engine_state::put(state, ENGINE_NAME, BOOK_KEY, &book);
        engine_state::put(state, ENGINE_NAME, ROUND_KEY, &current);
        Ok(())
    }

    /// Registrations and votes.
    fn apply_tx(
        &self,
        state: &mut StateOverlay<'_>,
        sender: &Address,
        tx: &Transaction,
        _header: &Header,
    ) -> Result<(), EngineError> {
        let mut book = self.book(state)?;
        match &tx.kind {
            TxKind::RegisterDelegate => {
                if book.delegates.contains_key(sender) {
                    return Err(reject(DposError::AlreadyRegistered { delegate: *sender }));
                }
                book.delegates.insert(*sender, Delegate::default());
            }
            TxKind::Vote { delegates } => {
                check_list(delegates)?;
                let mine = book.votes.get(sender).cloned().unwrap_or_default();
                for d in delegates {
                    if !book.delegates.contains_key(d) {
                        return Err(reject(DposError::UnknownDelegate { delegate: *d }));
                    }
                    if mine.contains(d) {
                        return Err(reject(DposError::AlreadyVoted {
                            voter: *sender,
                            delegate: *d,
                        }));
                    }
                }
                let count = mine.len() + delegates.len();
                if count > usize::try_from(self.params.max_votes).unwrap_or(usize::MAX) {
                    return Err(reject(DposError::TooManyVotes {
                        voter: *sender,
                        count,
                        max: self.params.max_votes,
                    }));
                }
                let entry = book.votes.entry(*sender).or_default();
                entry.extend(delegates.iter().copied());
                entry.sort();
            }
            TxKind::Unvote { delegates } => {
                check_list(delegates)?;
                let mine = book.votes.entry(*sender).or_default();
                for d in delegates {
                    if !mine.contains(d) {
                        return Err(reject(DposError::NotVoted {
                            voter: *sender,
                            delegate: *d,
                        }));
                    }
                }
                mine.retain(|d| !delegates.contains(d));
                if mine.is_empty() {
                    book.votes.remove(sender);
                }
            }
            other => {
                return Err(EngineError::UnsupportedTx {
                    kind: other.name(),
                    engine: ENGINE_NAME,
                });
            }
        }
        engine_state::put(state, ENGINE_NAME, BOOK_KEY, &book);
        Ok(())
    }

    fn end_block(
        &self,
        state: &mut StateOverlay<'_>,
        header: &Header,
        _parent: &SealedHeader,
    ) -> Result<(), EngineError> {
        engine_state::pay_reward(
            state,
            ENGINE_NAME,
            &header.producer,
            self.params.block_reward,
            |address| DposError::RewardOverflow { address },
        )
    }

    /// The last irreversible block recorded in the head's state.
    fn finalized(&self, chain: &dyn ChainView) -> Result<Option<BlockId>, EngineError> {
        let height = Height(self.round_state(chain.state())?.irreversible);
        Ok(chain
            .best_hash_at(height)?
            .map(|hash| BlockId { height, hash }))
    }

    /// The slot, its round and owner, the round's shape (slots and their length), and the
    /// schedule (the head's round when the block is in it).
    fn explain(
        &self,
        chain: &dyn ChainView,
        header: &SealedHeader,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let slot = self.slot_of(header.timestamp.0);
        let round = self.round_of(slot);
        let mut out = vec![
            ("engine", ENGINE_NAME.to_owned()),
            ("producer", header.producer.to_string()),
            ("slot", slot.to_string()),
            ("round", round.to_string()),
            (
                "slot_in_round",
                (slot % u64::from(self.params.producers)).to_string(),
            ),
            ("slots_per_round", self.params.producers.to_string()),
            ("slot_secs", self.params.slot_secs.to_string()),
        ];
        let current = self.round_state(chain.state())?;
        if current.round == round {
            out.push((
                "shuffle_seed",
                hex::encode(shuffle_seed(&current.schedule, round)),
            ));
            out.push((
                "schedule",
                current
                    .schedule
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        let book = self.book(chain.state())?;
        if let Some(d) = book.delegates.get(&header.producer) {
            out.push(("producer_produced", d.produced.to_string()));
            out.push(("producer_missed", d.missed.to_string()));
        }
        out.push(("last_irreversible", current.irreversible.to_string()));
        Ok(out)
    }

    /// The account's delegate record (votes received, blocks produced, slots missed,
    /// active now) and whom it votes for.
    fn account_fields(
        &self,
        state: &dyn StateRead,
        address: &Address,
    ) -> Result<Vec<(&'static str, String)>, EngineError> {
        let book = self.book(state)?;
        let mut out = vec![(
            "votes_for",
            book.votes
                .get(address)
                .map(|ds| {
                    ds.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        )];
        out.push(("delegate", book.delegates.contains_key(address).to_string()));
        if let Some(d) = book.delegates.get(address) {
            let approval = book
                .tally(|a| state.account(a).map(|acc| acc.balance))?
                .get(address)
                .copied()
                .unwrap_or(0);
            let active = self.round_state(state)?.schedule.contains(address);
            out.push(("votes", approval.to_string()));
            out.push(("active", active.to_string()));
            out.push(("produced", d.produced.to_string()));
            out.push(("missed", d.missed.to_string()));
            out.push((
                "equivocations",
                d.equivocations
                    .iter()
                    .map(|s| format!("slot {s}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        Ok(out)
    }

    fn header_fields(&self, header: &Header) -> Vec<(&'static str, String)> {
        vec![("slot", self.slot_of(header.timestamp.0).to_string())]
    }
}

fn check_list(delegates: &[Address]) -> Result<(), EngineError> {
    if delegates.is_empty() {
        return Err(reject(DposError::EmptyVote));
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in delegates {
        if !seen.insert(d) {
            return Err(reject(DposError::DuplicateInVote { delegate: *d }));
        }
    }
    Ok(())
}
