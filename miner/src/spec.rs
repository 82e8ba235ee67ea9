//! The engine choice as data: a serde-tagged enum (`[engine] kind = "pow"` with the
//! engine's parameters beside it), the factory that turns it into code, and the facts about
//! an engine that the node and the lab need (its block time, what it mints, how its blocks
//! become final, how a simulated producer should wait). ckb's `pow/src/lib.rs` pattern: the
//! engine crate owns the choice, so no code outside `miner` matches on the engine kind.
//!
//! Each engine implements [`EngineParams`] for its parameter type in its own folder; the
//! list of engines is the one [`engines!`] invocation at the bottom of this file. Adding an
//! engine is a new folder plus one line there.

use chain::{Address, Amount, BlockProducer, ConsensusEngine, Height, SecretKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// An engine with its producer, built from the same engine value (so what the engine
/// learns while verifying, such as DPoS equivocation evidence, reaches the producer).
#[derive(Debug)]
pub struct Engines {
    pub engine: Arc<dyn ConsensusEngine>,
    /// `Some` when an author key was given.
    pub producer: Option<Arc<dyn BlockProducer>>,
}

/// Where an engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A node: every rule checked; a miner searches on `threads` threads (0 = every core).
    Node { threads: usize },
    /// `toychain simulate`: proof of work checks every rule but the hash (the simulator's
    /// solve oracle stands for it) and never mines; a staker looks
    /// [`EngineSpec::idle_retry_secs`] ahead.
    Simulation,
}

/// How the lab decides that a block is final under an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    /// Probabilistic: at least this many blocks on top of it.
    Confirmations(u64),
    /// At or below the finalized height the node reports (DPoS's last irreversible block,
    /// a voting engine's last decided block).
    Reported,
    /// Blocks at or above it signed by at least this many distinct producers (Clique).
    Signers(usize),
}

/// Confirmations after which the lab treats a block of a probabilistic engine as final
/// (Bitcoin's customary six).
pub const CONFIRMATIONS: u64 = 6;

impl Finality {
    /// Whether a block at `height` is final on a best chain whose head is at `head`, where
    /// `signers` distinct producers made the blocks from it up to the head and the node
    /// reports `finalized` as its finalized height.
    pub fn is_final(
        self,
        height: Height,
        head: Height,
        signers: usize,
        finalized: Option<Height>,
    ) -> bool {
        match self {
            Finality::Confirmations(k) => head.0.saturating_sub(height.0) >= k,
            Finality::Reported => finalized.is_some_and(|f| f >= height),
            Finality::Signers(n) => signers >= n,
        }
    }

    /// The rule in words, for reports.
    pub fn describe(self) -> String {
        match self {
            Finality::Confirmations(k) => format!("{k} blocks on top"),
            Finality::Reported => "the finalized height the node reports".to_owned(),
            Finality::Signers(n) => format!("{n} distinct signers at or above"),
        }
    }

    /// True when the engine itself names blocks that can never be reverted.
    pub fn is_engine_finality(self) -> bool {
        matches!(self, Finality::Reported)
    }
}

/// What an engine mints per block, on top of the fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reward {
    /// The same amount for every block (PoW's subsidy, DPoS's producer pay; zero for PoA).
    Fixed(Amount),
    /// An amount that depends on the block (PoS pays for the coin age it consumed), which
    /// `engine_explain` reports as `reward`.
    Explained,
}

/// What a build can say about its engine parameters. Implemented by each engine's
/// parameter type; [`EngineSpec`] dispatches to it.
pub trait EngineParams:
    Clone + fmt::Debug + PartialEq + Eq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The dev parameters; `authorities` are the listed producers where the engine has
    /// them (PoA signers, DPoS genesis delegates, voting validators).
    fn devnet(authorities: &[Address]) -> Self;

    /// Checks what the types cannot, naming the field.
    fn check(&self) -> Result<(), String>;

    /// Seconds between blocks the engine aims for.
    fn block_time(&self) -> u64;

    /// Sets the seconds between blocks (and whatever the engine scales with it).
    fn set_block_time(&mut self, secs: u64);

    /// The genesis block's difficulty bits (0 for engines without a target).
    fn genesis_bits(&self) -> u32 {
        0
    }

    /// Whether the engine's producers are a listed set of accounts that a spec must name.
    fn has_authorities() -> bool {
        false
    }

    /// Whether a block's seal is its producer's signature, so two blocks by one producer
    /// for one slot are a double sign (everything but proof of work).
    fn signs_blocks() -> bool {
        true
    }

    /// Whether producers win blocks in proportion to hash power (proof of work): the
    /// simulator draws solve times, and `--hash-rates`/`--selfish` apply.
    fn mines() -> bool {
        false
    }

    /// How the lab decides finality on a chain of `producers` producers.
    fn finality(producers: usize) -> Finality;

    /// Whether the engine decides by votes: each node runs its
    /// [`chain::VotingMachine`], driven by the engine gossip topic and timers, and no
    /// producer has a turn of its own (PBFT, Raft).
    fn votes() -> bool {
        false
    }

    /// Largest message the engine sends on the engine gossip topic (0: it sends none).
    fn max_message_bytes() -> usize {
        0
    }

    /// Whether the engine's quorums outvote validators that lie (Byzantine faults, PBFT's
    /// ⌊(n−1)/3⌋), rather than only ones that crash: a crash-fault engine believes any
    /// leader it elected.
    fn tolerates_lies() -> bool {
        false
    }

    /// What a block mints.
    fn reward(&self) -> Reward;

    /// What block shares should follow on a dev spec, for people ("equal turns").
    fn share_basis() -> &'static str {
        "equal turns"
    }

    /// How long a simulated producer without a turn waits before asking again, in seconds:
    /// as long as its answer stays valid on an unchanged head.
    fn idle_retry_secs(&self) -> u64;

    /// The engine and, with `author`, its producer.
    fn build(&self, author: Option<&SecretKey>, mode: Mode) -> Result<Engines, SpecError>;
}

/// Why an engine choice cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown engine {value:?}: this build has {known}")]
    UnknownEngine { value: String, known: String },
    #[error("invalid {engine} parameters: {reason}")]
    InvalidParams {
        engine: &'static str,
        reason: String,
    },
    #[error("cannot start the {engine} producer: {reason}")]
    Producer {
        engine: &'static str,
        reason: String,
    },
}

impl SpecError {
    pub fn invalid(engine: &'static str, reason: impl fmt::Display) -> SpecError {
        SpecError::InvalidParams {
            engine,
            reason: reason.to_string(),
        }
    }
}

/// Declares the engines of this build: `Variant(params type) = "name"`. Generates
/// [`EngineKind`], [`EngineSpec`] and the dispatch of every [`EngineParams`] method.
/// The [`EngineParams`] methods every engine that decides by votes shares (PBFT, Raft,
/// Multi-Paxos, ZAB), written once inside each `impl EngineParams`: the parameters carry a
/// `block_time` and validate themselves; the engine has authorities, reports its own
/// finality (every stored block was decided), mints nothing (the leader keeps the fees),
/// asks for a block every block time from its machine, votes on the engine topic with
/// messages of at most `$max_message` bytes, and is built by `$engine::new` with
/// `$producer` sealing what the machine asks for.
macro_rules! voting_engine_params {
    ($name:literal, $engine:ty, $producer:ty, $max_message:expr) => {
        fn check(&self) -> Result<(), String> {
            self.validate().map_err(|e| e.to_string())
        }

        fn block_time(&self) -> u64 {
            self.block_time
        }

        fn set_block_time(&mut self, secs: u64) {
            self.block_time = secs;
        }

        fn has_authorities() -> bool {
            true
        }

        /// A block is final once the engine's quorum decided it, which the node reports as
        /// its finalized height (the head: every stored block was decided).
        fn finality(_producers: usize) -> $crate::spec::Finality {
            $crate::spec::Finality::Reported
        }

        /// Nothing is minted; the leader keeps the fees.
        fn reward(&self) -> $crate::spec::Reward {
            $crate::spec::Reward::Fixed(chain::Amount::ZERO)
        }

        /// The leader's machine asks for a block every block time.
        fn idle_retry_secs(&self) -> u64 {
            self.block_time
        }

        fn votes() -> bool {
            true
        }

        fn max_message_bytes() -> usize {
            $max_message
        }

        fn build(
            &self,
            author: Option<&chain::SecretKey>,
            _mode: $crate::spec::Mode,
        ) -> Result<$crate::spec::Engines, $crate::spec::SpecError> {
            let engine = <$engine>::new(self.clone())
                .map_err(|e| $crate::spec::SpecError::invalid($name, e))?;
            Ok($crate::spec::Engines {
                producer: author.map(|key| -> std::sync::Arc<dyn chain::BlockProducer> {
                    std::sync::Arc::new(<$producer>::new(key.clone()))
                }),
                engine: std::sync::Arc::new(engine),
            })
        }
    };
}
pub(crate) use voting_engine_params;

macro_rules! engines {
    ($($variant:ident($params:ty) = $name:literal,)+) => {
        /// The engines this build can run.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum EngineKind {
            $($variant,)+
        }

        impl EngineKind {
            pub const ALL: &'static [EngineKind] = &[$(EngineKind::$variant,)+];

            pub fn name(self) -> &'static str {
                match self {
                    $(EngineKind::$variant => $name,)+
                }
            }

            /// Whether a spec must name the engine's producers (PoA, DPoS, voting engines).
            pub fn has_authorities(self) -> bool {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::has_authorities(),)+
                }
            }

            /// Whether blocks are signed by their producer (everything but proof of work).
            pub fn signs_blocks(self) -> bool {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::signs_blocks(),)+
                }
            }

            /// Whether producers win blocks by hash power (proof of work).
            pub fn mines(self) -> bool {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::mines(),)+
                }
            }

            /// How the lab decides finality on a chain of `producers` producers.
            pub fn finality(self, producers: usize) -> Finality {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::finality(producers),)+
                }
            }

            /// Whether the engine decides by votes through a [`chain::VotingMachine`].
            pub fn votes(self) -> bool {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::votes(),)+
                }
            }

            /// Largest message the engine sends on the engine gossip topic (0: none).
            pub fn max_message_bytes(self) -> usize {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::max_message_bytes(),)+
                }
            }

            /// Whether the engine's quorums outvote lying validators (Byzantine faults).
            pub fn tolerates_lies(self) -> bool {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::tolerates_lies(),)+
                }
            }

            /// What block shares should follow on a dev spec, for people.
            pub fn share_basis(self) -> &'static str {
                match self {
                    $(EngineKind::$variant => <$params as EngineParams>::share_basis(),)+
                }
            }
        }

        /// The engine and its parameters, as a chain spec's `[engine]` table.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        pub enum EngineSpec {
            $($variant($params),)+
        }

        impl EngineSpec {
            pub fn kind(&self) -> EngineKind {
                match self {
                    $(EngineSpec::$variant(_) => EngineKind::$variant,)+
                }
            }

            /// The dev parameters of an engine; `authorities` become its listed producers
            /// where it has them (the others ignore them).
            pub fn dev(kind: EngineKind, authorities: &[Address]) -> EngineSpec {
                match kind {
                    $(EngineKind::$variant => EngineSpec::$variant(<$params as EngineParams>::devnet(authorities)),)+
                }
            }

            /// Seconds between blocks the engine aims for.
            pub fn block_time(&self) -> u64 {
                match self {
                    $(EngineSpec::$variant(p) => p.block_time(),)+
                }
            }

            /// Sets the seconds between blocks (PoW also scales its ASERT half-life; PoS its
            /// ages, modifier times and retarget window).
            pub fn set_block_time(&mut self, secs: u64) {
                match self {
                    $(EngineSpec::$variant(p) => p.set_block_time(secs),)+
                }
            }

            /// The genesis block's difficulty bits (0 for engines without a target).
            pub fn genesis_bits(&self) -> u32 {
                match self {
                    $(EngineSpec::$variant(p) => p.genesis_bits(),)+
                }
            }

            /// Checks the parameters, naming the field.
            pub fn validate(&self) -> Result<(), SpecError> {
                match self {
                    $(EngineSpec::$variant(p) => p.check().map_err(|e| SpecError::invalid($name, e)),)+
                }
            }

            /// What a block mints.
            pub fn reward(&self) -> Reward {
                match self {
                    $(EngineSpec::$variant(p) => p.reward(),)+
                }
            }

            /// How long a simulated producer without a turn waits before asking again, s.
            pub fn idle_retry_secs(&self) -> u64 {
                match self {
                    $(EngineSpec::$variant(p) => p.idle_retry_secs(),)+
                }
            }

            /// The engine every node runs and, with `author` (the key that mines, signs or
            /// stakes), its producer; a PoW miner on `threads` threads (0 = every core).
            pub fn engines(
                &self,
                author: Option<&SecretKey>,
                threads: usize,
            ) -> Result<Engines, SpecError> {
                self.build(author, Mode::Node { threads })
            }

            /// The engine and producer of one node of `toychain simulate` ([`Mode::Simulation`]).
            pub fn simulated(&self, author: &SecretKey) -> Result<Engines, SpecError> {
                self.build(Some(author), Mode::Simulation)
            }

            fn build(&self, author: Option<&SecretKey>, mode: Mode) -> Result<Engines, SpecError> {
                match self {
                    $(EngineSpec::$variant(p) => p.build(author, mode),)+
                }
            }
        }
    };
}

impl EngineKind {
    /// The names of every engine, comma-separated (for messages).
    pub fn names() -> String {
        EngineKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EngineKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| SpecError::UnknownEngine {
                value: s.to_owned(),
                known: EngineKind::names(),
            })
    }
}

impl EngineSpec {
    /// Bytes the genesis hash commits to: the JSON of the typed, normalised parameters
    /// (structs serialize their fields in declaration order, so this is deterministic).
    pub fn commitment(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("engine parameters serialize to JSON")
    }
}

// The engines of this build, one line each.
engines! {
    Pow(crate::pow::PowParams) = "pow",
    Pos(crate::pos::PosParams) = "pos",
    Dpos(crate::dpos::DposParams) = "dpos",
    Poa(crate::poa::PoaParams) = "poa",
    Pbft(crate::pbft::PbftParams) = "pbft",
    Raft(crate::raft::RaftParams) = "raft",
    Paxos(crate::paxos::PaxosParams) = "paxos",
    Zab(crate::zab::ZabParams) = "zab",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.name().parse::<EngineKind>(), Ok(*kind));
            let spec = EngineSpec::dev(*kind, &[]);
            assert_eq!(spec.kind(), *kind);
        }
        let err = "paxosx".parse::<EngineKind>().expect_err("unknown");
        assert!(
            err.to_string().contains("paxosx") && err.to_string().contains("pow"),
            "{err}"
        );
    }

    #[test]
    fn voting_engines_list_their_voters_and_report_finality() {
        let voters = [
            chain::dev::dev_address("alice").expect("dev account"),
            chain::dev::dev_address("bob").expect("dev account"),
        ];
        for kind in EngineKind::ALL {
            let voting = matches!(kind.name(), "pbft" | "raft" | "paxos" | "zab");
            assert_eq!(kind.votes(), voting, "{kind}");
            assert_eq!(kind.max_message_bytes() > 0, voting, "{kind}");
            if !voting {
                continue;
            }
            assert!(kind.has_authorities() && kind.signs_blocks() && !kind.mines());
            assert_eq!(kind.finality(4), Finality::Reported);
            let spec = EngineSpec::dev(*kind, &voters);
            spec.validate().expect("the dev spec is valid");
            assert_eq!(spec.reward(), Reward::Fixed(Amount::ZERO));
            assert_eq!(spec.idle_retry_secs(), spec.block_time());
            let engines = spec
                .engines(Some(&chain::dev::dev_key("alice").expect("dev key")), 1)
                .expect("builds");
            assert!(engines.engine.requires_certificate(), "{kind}");
            assert_eq!(engines.engine.name(), kind.name());
            let machine = engines.engine.voting_machine(None, None).expect("machine");
            assert!(machine.is_some(), "{kind} drives a voting machine");
            let producer = engines.producer.expect("a producer with a key");
            assert!(producer.signs_blocks());
            let invalid = EngineSpec::dev(*kind, &[])
                .validate()
                .expect_err("no voters");
            assert!(invalid.to_string().contains(kind.name()), "{invalid}");
        }
    }

    #[test]
    fn finality_rules_decide_as_their_names_say() {
        let h = Height;
        assert!(Finality::Confirmations(6).is_final(h(4), h(10), 1, None));
        assert!(!Finality::Confirmations(6).is_final(h(5), h(10), 1, None));
        assert!(Finality::Reported.is_final(h(5), h(10), 1, Some(h(5))));
        assert!(!Finality::Reported.is_final(h(6), h(10), 1, Some(h(5))));
        assert!(!Finality::Reported.is_final(h(1), h(10), 1, None));
        assert!(Finality::Signers(3).is_final(h(1), h(2), 3, None));
        assert!(!Finality::Signers(3).is_final(h(1), h(9), 2, None));
    }
}
