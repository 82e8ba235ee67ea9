//! Gossip topics and protocol names. Every name carries the genesis hash, so two chains
//! share no topic and no protocol: their nodes cannot exchange a block even by mistake.

use std::fmt;

use chain::BlockHash;

/// What a gossip message carries. The node decodes the bytes; the network layer only
/// routes them and enforces each topic's size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Encoded blocks ([`chain::Block`]).
    Block,
    /// Batches of signed transactions ([`chain::TxBatch`]).
    Tx,
    /// Engine messages (votes, proposals), opaque to everyone but the engine.
    Engine,
}

impl Topic {
    /// Every topic, each subscribed at start.
    pub const ALL: [Topic; 3] = [Topic::Block, Topic::Tx, Topic::Engine];

    /// The short name used inside the topic string and in messages.
    pub const fn label(self) -> &'static str {
        match self {
            Topic::Block => "blocks",
            Topic::Tx => "txs",
            Topic::Engine => "engine",
        }
    }

    /// The version of what the topic carries: 2 for transactions, which travel in batches
    /// since version 1's one transaction per message, so nodes of the two formats share
    /// no transaction topic (and never penalise each other for it).
    pub const fn version(self) -> u32 {
        match self {
            Topic::Tx => 2,
            Topic::Block | Topic::Engine => 1,
        }
    }

    /// The gossipsub topic string, e.g. `/toychain/<genesis hex>/blocks/1`.
    pub fn name(self, genesis: &BlockHash) -> String {
        format!(
            "/toychain/{}/{}/{}",
            genesis.to_hex(),
            self.label(),
            self.version()
        )
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The request-response sync protocol name: `/toychain/<genesis hex>/sync/1`.
pub fn sync_protocol_name(genesis: &BlockHash) -> String {
    format!("/toychain/{}/sync/1", genesis.to_hex())
}

/// The identify protocol version: `/toychain/<genesis hex>/1`. Peers that announce any
/// other version are disconnected.
pub fn identify_version(genesis: &BlockHash) -> String {
    format!("/toychain/{}/1", genesis.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_genesis_hash() {
        let a = BlockHash::from_bytes([1; 32]);
        let b = BlockHash::from_bytes([2; 32]);
        for topic in Topic::ALL {
            assert!(topic.name(&a).contains(&a.to_hex()));
            assert_ne!(topic.name(&a), topic.name(&b));
        }
        assert_ne!(sync_protocol_name(&a), sync_protocol_name(&b));
        assert_ne!(identify_version(&a), identify_version(&b));
        assert_eq!(
            Topic::Block.name(&a),
            format!("/toychain/{}/blocks/1", a.to_hex())
        );
        assert_eq!(
            Topic::Tx.name(&a),
            format!("/toychain/{}/txs/2", a.to_hex())
        );
    }
}
