//! The authoring half of DPoS: find this delegate's next slot, sign at its start.

use crate::dpos::book::slot_owner;
use crate::dpos::engine::DposEngine;
use crate::seal::sign_header;
use chain::{
    Address, BlockProducer, CancelFlag, ChainView, EngineError, Header, SealedHeader, SecretKey,
    Timestamp, Turn,
};

/// Produces blocks for one delegate.
#[derive(Debug)]
pub struct DposProducer {
    key: SecretKey,
    engine: DposEngine,
}

impl DposProducer {
    pub fn new(key: SecretKey, engine: DposEngine) -> DposProducer {
        DposProducer { key, engine }
    }
}

impl BlockProducer for DposProducer {
    fn author(&self) -> Address {
        self.key.address()
    }

    /// The first slot from now (and after the parent's) that this delegate owns, looking
    /// two rounds ahead; `None` when it is not scheduled in them (not elected).
    fn next_turn(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        now_millis: u64,
    ) -> Result<Option<Turn>, EngineError> {
        let slot_secs = self.engine.params().slot_secs;
        let first = self
            .engine
            .slot_of(parent.timestamp.0)
            .saturating_add(1)
            .max(self.engine.slot_of(now_millis / 1000));
        let producers = self.engine.params().producers;
        let horizon = 2 * u64::from(producers);
        let me = self.author();
        // A round's schedule serves all its slots: elect and shuffle once per round, not
        // once per slot (an election ranks every delegate).
        let mut schedule: Option<(u64, Vec<Address>)> = None;
        for slot in first..first.saturating_add(horizon) {
            let round = self.engine.round_of(slot);
            let current = match schedule {
                Some((r, ref s)) if r == round => s,
                _ => {
                    let (_, s) = self.engine.schedule_for(chain.state(), slot)?;
                    &schedule.insert((round, s)).1
                }
            };
            if slot_owner(current, producers, slot) == Some(me) {
                let start = slot.saturating_mul(slot_secs);
                return Ok(Some(Turn {
                    at_millis: start.saturating_mul(1000).max(now_millis),
                    timestamp: Timestamp(start),
                }));
            }
        }
        Ok(None)
    }

    /// Puts the equivocation evidence this node has seen, and the chain has not recorded,
    /// in the block.
    fn prepare(
        &self,
        chain: &dyn ChainView,
        _parent: &SealedHeader,
        header: &mut Header,
    ) -> Result<(), EngineError> {
        header.engine = chain::EngineFields {
            data: self.engine.evidence_data(chain.state())?,
            ..chain::EngineFields::default()
        };
        Ok(())
    }

    fn signs_blocks(&self) -> bool {
        true
    }

    /// Signs the header; the producer loop has named this delegate as its producer.
    fn seal(&self, header: Header, _cancel: &CancelFlag) -> Result<Option<Header>, EngineError> {
        Ok(Some(sign_header(header, &self.key)))
    }
}
