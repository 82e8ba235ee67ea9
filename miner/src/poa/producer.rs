//! The authoring half of proof of authority: wait for the period, add the out-of-turn
//! wiggle, sign.

use crate::poa::WIGGLE_MILLIS;
use crate::poa::engine::PoaEngine;
use crate::seal::sign_header;
use chain::crypto::sha256d_parts;
use chain::{
    Address, BlockProducer, CancelFlag, ChainView, EngineError, Header, SealedHeader, SecretKey,
    Timestamp, Turn,
};

/// Signs blocks for one authority.
#[derive(Debug)]
pub struct PoaProducer {
    key: SecretKey,
    engine: PoaEngine,
}

impl PoaProducer {
    pub fn new(key: SecretKey, engine: PoaEngine) -> PoaProducer {
        PoaProducer { key, engine }
    }

    /// The out-of-turn delay for block `number`: 0 … (⌊N/2⌋+1)·500 ms. Clique draws it at
    /// random; here it is derived from the signer and the height, so it differs between
    /// signers (the race still has one early winner) and a simulation replays it exactly.
    pub fn wiggle_millis(signer: &Address, number: u64, signers: usize) -> u64 {
        let range = (signers as u64 / 2 + 1) * WIGGLE_MILLIS;
        let digest = sha256d_parts(&[b"toychain/poa/wiggle", &signer.0, &number.to_le_bytes()]);
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(word) % range
    }
}

impl BlockProducer for PoaProducer {
    fn author(&self) -> Address {
        self.key.address()
    }

    /// At `parent + period` (or now, when that has passed); out of turn, the wiggle later,
    /// counted from the slot's start or from now, whichever is later. Clique counts it from
    /// the slot's start (in whole seconds) even when the parent came late, so a late parent
    /// leaves the in-turn signer little or no head start and out-of-turn blocks race it;
    /// under load (blocks late by their import) a third of all blocks were orphaned that
    /// way. `None` while this signer is not an authority or signed too recently (a new
    /// head may change that).
    fn next_turn(
        &self,
        chain: &dyn ChainView,
        parent: &SealedHeader,
        now_millis: u64,
    ) -> Result<Option<Turn>, EngineError> {
        let snapshot = self.engine.snapshot(chain.state())?;
        let number = parent.height().0 + 1;
        let me = self.author();
        if snapshot.check_signer(number, &me).is_err() {
            return Ok(None);
        }
        let earliest = parent
            .timestamp
            .0
            .saturating_add(self.engine.params().period);
        let timestamp = earliest.max(now_millis / 1000);
        let mut at_millis = timestamp.saturating_mul(1000);
        if !snapshot.is_in_turn(number, &me) {
            at_millis = at_millis.max(now_millis)
                + Self::wiggle_millis(&me, number, snapshot.signers.len());
        }
        Ok(Some(Turn {
            at_millis,
            timestamp: Timestamp(timestamp),
        }))
    }

    fn prepare(
        &self,
        chain: &dyn ChainView,
        _parent: &SealedHeader,
        header: &mut Header,
    ) -> Result<(), EngineError> {
        let snapshot = self.engine.snapshot(chain.state())?;
        header.engine.bits = PoaEngine::difficulty(&snapshot, header.height.0, &header.producer);
        header.engine.nonce = 0;
        header.engine.data.clear();
        Ok(())
    }

    fn signs_blocks(&self) -> bool {
        true
    }

    /// Signs the header; the producer loop has named this signer as its producer.
    fn seal(&self, header: Header, _cancel: &CancelFlag) -> Result<Option<Header>, EngineError> {
        Ok(Some(sign_header(header, &self.key)))
    }
}
