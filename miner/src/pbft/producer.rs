//! The sealing half of PBFT. The machine decides when to propose (it asks the node with
//! `VoteOutput::Build`), so this producer never schedules a turn; it only fills the header
//! fields the node leaves to the engine and signs.

use crate::seal::sign_header;
use chain::{
    Address, BlockProducer, CancelFlag, ChainView, EngineError, Header, SealedHeader, SecretKey,
    Turn,
};

/// Signs the blocks a validator proposes as primary.
#[derive(Debug)]
pub struct PbftProducer {
    key: SecretKey,
}

impl PbftProducer {
    /// A producer sealing with the validator key `key`.
    pub fn new(key: SecretKey) -> PbftProducer {
        PbftProducer { key }
    }
}

impl BlockProducer for PbftProducer {
    fn author(&self) -> Address {
        self.key.address()
    }

    /// Never: the voting machine asks for a block when this validator is the primary.
    fn next_turn(
        &self,
        _chain: &dyn ChainView,
        _parent: &SealedHeader,
        _now_millis: u64,
    ) -> Result<Option<Turn>, EngineError> {
        Ok(None)
    }

    /// No bits or nonce; the engine data (the view) is the machine's, given with the
    /// build request, and is kept.
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
