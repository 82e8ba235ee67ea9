//! What `compare`'s collector would have recorded, had it polled at every instant.

use crate::compare::record::{BlockTree, Observation, Secs, SeenBlock, Submitted};
use crate::simulate::queue::Millis;
use chain::{Block, BlockId, Transaction};
use std::collections::BTreeMap;

/// What the collector of `compare` would have recorded.
#[derive(Debug)]
pub(super) struct Recorder {
    pub(super) start: Millis,
    pub(super) nodes: usize,
    pub(super) blocks: BlockTree,
    pub(super) observations: Vec<Observation>,
    pub(super) submitted: Vec<Submitted>,
    pub(super) submit_errors: BTreeMap<&'static str, u64>,
}

impl Recorder {
    pub(super) fn secs(&self, at: Millis) -> Secs {
        at.saturating_sub(self.start) as f64 / 1000.0
    }

    /// `node`'s head is now its chain's; `applied` came onto its best chain.
    pub(super) fn head_changed(
        &mut self,
        at: Millis,
        node: usize,
        chain: &chain::Chain,
        applied: &[BlockId],
    ) {
        let now = self.secs(at);
        for id in applied {
            if !self.blocks.contains_key(&id.hash) {
                let Ok(Some(block)) = chain.block(&id.hash) else {
                    continue;
                };
                let seen = self.seen_block(&block, now, false);
                self.blocks.insert(id.hash, seen);
            }
            if let Some(seen) = self.blocks.get_mut(&id.hash) {
                let slot = &mut seen.seen_by[node];
                slot.get_or_insert(now);
            }
        }
        self.observations.push(Observation {
            at: now,
            node,
            head: chain.head_id().hash,
            finalized: chain.finalized().ok().flatten().map(|f| f.height),
        });
    }

    pub(super) fn seen_block(&self, block: &Block, now: Secs, preexisting: bool) -> SeenBlock {
        SeenBlock {
            hash: block.hash(),
            height: block.header.height,
            parent: block.header.parent,
            producer: block.header.producer,
            txs: block.txs.iter().map(Transaction::hash).collect(),
            first_seen: now,
            seen_by: vec![preexisting.then_some(now); self.nodes],
            preexisting,
            decided_in: None,
        }
    }
}
