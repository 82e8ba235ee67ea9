//! Configuration as data: the chain spec (name, chain id, genesis, engine and its
//! parameters) and the node config file. TOML in, typed and validated values out; no
//! sockets, no threads.
//!
//! The engine is a serde-tagged enum (`[engine] kind = "pow"` with its parameters beside
//! it), so choosing an engine is data. The enum, its parameter types and the factory live in
//! `miner` ([`miner::spec`]), which owns the choice; this crate composes them into a spec.
//! Unknown keys are refused everywhere, and every error names the file, the key and why.

mod policy;

pub use policy::{DEV_MIN_RELAY_FEE, PolicySpec};

use chain::dev::{DEV_ACCOUNTS, dev_address};
use chain::{Address, Amount, ChainId, Genesis, MempoolConfig, Timestamp};
pub use miner::{EngineKind, EngineSpec, SpecError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Chain id of the built-in dev chains.
pub const DEV_CHAIN_ID: u64 = 1337;
/// Genesis time of the built-in dev chains: fixed, so every `--dev` node shares one genesis.
pub const DEV_GENESIS_TIME: u64 = 1_700_000_000;
/// What each dev account holds at genesis, in TOY.
pub const DEV_BALANCE_TOY: u64 = 1_000_000;

/// The first `n` dev accounts' addresses (alice, bob, …), at most all eight.
pub fn dev_authorities(n: usize) -> Vec<Address> {
    DEV_ACCOUNTS
        .iter()
        .take(n)
        .map(|name| dev_address(name).expect("dev account names are valid"))
        .collect()
}

/// One genesis allocation; the balance is written in decimal TOY.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alloc {
    pub address: Address,
    #[serde(with = "toy_string")]
    pub balance: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisSpec {
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    #[serde(default)]
    pub alloc: Vec<Alloc>,
}

/// A chain spec: everything that makes a chain's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    pub name: String,
    pub chain_id: u64,
    pub genesis: GenesisSpec,
    pub engine: EngineSpec,
    /// Relay policy (`[policy]`); left out, the dev values. Not committed by the genesis.
    #[serde(default)]
    pub policy: PolicySpec,
}

/// Longest `--block-time` accepted, seconds (a day): longer only makes a devnet look dead.
pub const MAX_BLOCK_TIME_SECS: u64 = 86_400;

impl ChainSpec {
    /// Overrides the seconds between blocks of the engine (`--block-time`), refusing 0 and
    /// anything above [`MAX_BLOCK_TIME_SECS`] with the value named.
    pub fn set_block_time(&mut self, secs: u64) -> Result<(), UsageError> {
        if !(1..=MAX_BLOCK_TIME_SECS).contains(&secs) {
            return Err(UsageError(format!(
                "--block-time {secs}: must be 1 to {MAX_BLOCK_TIME_SECS} seconds"
            )));
        }
        self.engine.set_block_time(secs);
        Ok(())
    }

    /// The built-in dev chain of an engine: chain id 1337, a fixed genesis time, and every
    /// dev account (alice … heidi) prefunded with 1,000,000 TOY. PoA and DPoS chains are
    /// signed by alice alone (as geth's `--dev` is); [`ChainSpec::dev_with`] names others.
    pub fn dev(kind: EngineKind) -> ChainSpec {
        ChainSpec::dev_with(kind, &dev_authorities(1))
    }

    /// [`ChainSpec::dev`] with `authorities` as the PoA signers or DPoS genesis delegates.
    pub fn dev_with(kind: EngineKind, authorities: &[Address]) -> ChainSpec {
        ChainSpec {
            name: "devnet".into(),
            chain_id: DEV_CHAIN_ID,
            genesis: GenesisSpec {
                timestamp: DEV_GENESIS_TIME,
                alloc: DEV_ACCOUNTS
                    .iter()
                    .map(|name| Alloc {
                        address: dev_address(name).expect("dev account names are valid"),
                        balance: Amount::from_toy(DEV_BALANCE_TOY).expect("fits in u64"),
                    })
                    .collect(),
            },
            engine: EngineSpec::dev(kind, authorities),
            policy: PolicySpec::default(),
        }
    }

    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<ChainSpec, ConfigError> {
        let text = read(path)?;
        let spec: ChainSpec = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        spec.validate()
            .map_err(|(key, reason)| ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                reason,
            })?;
        Ok(spec)
    }

    /// Allocates the dev balance (1,000,000 TOY) to each of `accounts` that the genesis does
    /// not fund yet: the lab's extra traders and load accounts.
    pub fn fund_dev_balance(&mut self, accounts: impl IntoIterator<Item = Address>) {
        let balance = Amount::from_toy(DEV_BALANCE_TOY).expect("fits in u64");
        let mut funded: std::collections::HashSet<Address> =
            self.genesis.alloc.iter().map(|a| a.address).collect();
        for address in accounts {
            if funded.insert(address) {
                self.genesis.alloc.push(Alloc { address, balance });
            }
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a chain spec serializes to TOML")
    }

    /// Checks what the types cannot: a name, distinct allocations, a total supply that
    /// fits, engine parameters that can run.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.name.trim().is_empty() {
            return Err(("name".into(), "must not be empty".into()));
        }
        if self.genesis.timestamp > u64::from(u32::MAX) {
            return Err((
                "genesis.timestamp".into(),
                format!("{} does not fit in 32 bits", self.genesis.timestamp),
            ));
        }
        let mut total = Amount::ZERO;
        let mut seen = std::collections::HashSet::new();
        for (i, alloc) in self.genesis.alloc.iter().enumerate() {
            if !seen.insert(alloc.address) {
                return Err((
                    format!("genesis.alloc[{i}].address"),
                    format!("{} is allocated twice", alloc.address),
                ));
            }
            total = total.checked_add(alloc.balance).ok_or_else(|| {
                (
                    format!("genesis.alloc[{i}].balance"),
                    "total supply overflows".to_string(),
                )
            })?;
        }
        self.engine
            .validate()
            .map_err(|e| ("engine".to_string(), e.to_string()))
    }

    /// The mempool settings of this chain's relay policy (its minimum relay fee), with
    /// the pool's default bounds; a node may tighten the bounds further.
    pub fn mempool_config(&self) -> MempoolConfig {
        self.policy.mempool_config()
    }

    /// The core's genesis description. Its hash commits to the chain id and the engine.
    pub fn genesis(&self) -> Genesis {
        Genesis {
            chain_id: ChainId(self.chain_id),
            timestamp: Timestamp(self.genesis.timestamp),
            alloc: self
                .genesis
                .alloc
                .iter()
                .map(|a| (a.address, a.balance))
                .collect(),
            engine_params: self.engine.commitment(),
            bits: self.engine.genesis_bits(),
        }
    }
}

/// The node's own settings, from a TOML file; command-line flags override them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the database and the node key live.
    pub data_dir: Option<PathBuf>,
    /// A chain spec file; without it the node needs `dev = true`.
    pub chain: Option<PathBuf>,
    /// Run the built-in dev chain of `engine`.
    #[serde(default)]
    pub dev: bool,
    pub engine: Option<EngineKind>,
    /// JSON-RPC listen address (default 127.0.0.1:8545).
    pub rpc_addr: Option<String>,
    /// Allow an RPC address that is not loopback.
    #[serde(default)]
    pub rpc_external: bool,
    /// libp2p listen multiaddrs.
    #[serde(default)]
    pub p2p_listen: Vec<String>,
    /// Peers to dial at start, as multiaddrs (with or without `/p2p/PEER_ID`).
    #[serde(default)]
    pub bootnodes: Vec<String>,
    /// Produce blocks as this dev account or keystore key.
    pub author: Option<String>,
    /// Local peer discovery with mDNS.
    #[serde(default)]
    pub mdns: bool,
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = read(path)?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// A config problem, naming the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("invalid {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("invalid {}: key `{key}`: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Engine(#[from] SpecError),
}

/// A mistake in how toychain was called or configured (a bad flag value, a bad address, a
/// file that does not parse): the commands exit with code 2 for it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Amounts written as decimal TOY strings in TOML (`balance = "1000000"`).
pub(crate) mod toy_string {
    use chain::Amount;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(amount: &Amount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&amount.to_toy_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        let text = String::deserialize(d)?;
        Amount::parse_toy(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spec.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn block_time_overrides_refuse_zero_and_absurd_values_and_keep_the_spec() {
        for &kind in EngineKind::ALL {
            let mut spec = ChainSpec::dev(kind);
            let before = spec.clone();
            for bad in [0, MAX_BLOCK_TIME_SECS + 1, u64::MAX] {
                let err = spec.set_block_time(bad).expect_err("refused");
                assert!(err.to_string().contains(&bad.to_string()), "{err}");
                assert_eq!(spec, before, "a refused value changes nothing");
            }
            spec.set_block_time(7).expect("7 s is fine");
            assert_eq!(spec.engine.block_time(), 7, "{kind}");
            spec.validate().expect("still a valid spec");
        }
    }

    #[test]
    fn dev_spec_round_trips_through_toml() {
        let spec = ChainSpec::dev(EngineKind::Pow);
        let (_dir, path) = write(&spec.to_toml());
        let back = ChainSpec::load(&path).expect("loads");
        assert_eq!(back, spec);
        assert_eq!(back.genesis.alloc.len(), 8);
        assert!(
            spec.to_toml().contains("kind = \"pow\""),
            "{}",
            spec.to_toml()
        );
        assert!(spec.to_toml().contains("balance = \"1000000\""));
    }

    #[test]
    fn the_spec_of_spec_md_parses() {
        let alice = dev_address("alice").expect("dev");
        let text = format!(
            "name = \"devnet\"\nchain_id = 1337\n[genesis]\ntimestamp = 1700000000\n\
             [[genesis.alloc]]\naddress = \"{alice}\"\nbalance = \"1000000\"\n\
             [engine]\nkind = \"pow\"\ntarget_block_time = 5\nretarget = \"asert\"\n"
        );
        let (_dir, path) = write(&text);
        let spec = ChainSpec::load(&path).expect("loads");
        assert_eq!(spec.engine.kind(), EngineKind::Pow);
        assert_eq!(
            spec.genesis.alloc[0].balance,
            Amount::from_toy(1_000_000).expect("fits")
        );
    }

    #[test]
    fn unknown_keys_bad_values_and_missing_files_name_the_problem() {
        let spec = ChainSpec::dev(EngineKind::Pow).to_toml();
        let cases = [
            (spec.replace("chain_id", "chain_idd"), "chain_idd"),
            (
                spec.replace("balance = \"1000000\"", "balance = \"1.123456789\""),
                "1.123456789",
            ),
            (
                spec.replace("kind = \"pow\"", "kind = \"hotstuff\""),
                "hotstuff",
            ),
            (format!("{spec}\n[extra]\nx = 1\n"), "extra"),
        ];
        for (text, needle) in cases {
            let (_dir, path) = write(&text);
            let err = ChainSpec::load(&path).expect_err(needle).to_string();
            assert!(err.contains(needle), "{needle}: {err}");
            assert!(err.contains("spec.toml"), "{err}");
        }
        let alice = dev_address("alice").expect("dev");
        let dup = spec.replacen(
            &dev_address("bob").expect("dev").to_string(),
            &alice.to_string(),
            1,
        );
        let (_dir, path) = write(&dup);
        let err = ChainSpec::load(&path).expect_err("duplicate").to_string();
        assert!(err.contains("allocated twice"), "{err}");
        let missing = ChainSpec::load(Path::new("/nonexistent/spec.toml")).expect_err("missing");
        assert!(
            missing.to_string().contains("/nonexistent/spec.toml"),
            "{missing}"
        );
    }

    #[test]
    fn genesis_commits_to_engine_parameters() {
        let a = ChainSpec::dev(EngineKind::Pow);
        let mut b = a.clone();
        b.engine.set_block_time(a.engine.block_time() + 1);
        let engine = |s: &ChainSpec| s.engine.engines(None, 1).expect("valid params").engine;
        let (ga, _, _) = a.genesis().build(&*engine(&a)).expect("builds");
        let (gb, _, _) = b.genesis().build(&*engine(&b)).expect("builds");
        assert_ne!(ga.hash(), gb.hash());
        let mut c = a.clone();
        c.chain_id += 1;
        let (gc, _, _) = c.genesis().build(&*engine(&c)).expect("builds");
        assert_ne!(ga.hash(), gc.hash());
    }

    #[test]
    fn every_engine_has_a_dev_spec_that_round_trips_and_validates() {
        for &kind in EngineKind::ALL {
            let spec = ChainSpec::dev_with(kind, &dev_authorities(3));
            let (_dir, path) = write(&spec.to_toml());
            let back = ChainSpec::load(&path).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(back, spec);
            assert_eq!(back.engine.kind(), kind);
            assert!(spec.to_toml().contains(&format!("kind = \"{kind}\"")));
        }
    }

    #[test]
    fn signed_engines_refuse_an_empty_or_repeated_authority_list() {
        for kind in [EngineKind::Poa, EngineKind::Dpos] {
            let empty = ChainSpec::dev_with(kind, &[]).to_toml();
            let (_dir, path) = write(&empty);
            let err = ChainSpec::load(&path)
                .expect_err("no authorities")
                .to_string();
            assert!(
                err.contains("engine") && err.contains("at least one"),
                "{kind}: {err}"
            );
            let alice = dev_authorities(1)[0];
            let twice = ChainSpec::dev_with(kind, &[alice, alice]).to_toml();
            let (_dir, path) = write(&twice);
            let err = ChainSpec::load(&path).expect_err("repeated").to_string();
            assert!(
                err.contains(&alice.to_string()) && err.contains("twice"),
                "{kind}: {err}"
            );
        }
    }

    #[test]
    fn node_config_refuses_unknown_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "rpc_addr = \"127.0.0.1:9000\"\nbootnode = []\n").expect("write");
        let err = NodeConfig::load(&path)
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.contains("bootnode") && err.contains("node.toml"),
            "{err}"
        );
        std::fs::write(&path, "rpc_addr = \"127.0.0.1:9000\"\nauthor = \"alice\"\n")
            .expect("write");
        let cfg = NodeConfig::load(&path).expect("valid");
        assert_eq!(cfg.author.as_deref(), Some("alice"));
    }

    #[test]
    fn the_relay_policy_defaults_to_the_dev_minimum_and_reads_toy_amounts() {
        let spec = ChainSpec::dev(EngineKind::Pow);
        assert_eq!(spec.policy.min_relay_fee, Amount(1_000));
        assert_eq!(spec.mempool_config().min_relay_fee, Amount(1_000));
        assert!(
            spec.to_toml()
                .contains("[policy]\nmin_relay_fee = \"0.00001\""),
            "{}",
            spec.to_toml()
        );
        // A spec written before `[policy]` existed takes the dev minimum.
        let text = spec
            .to_toml()
            .replace("[policy]\nmin_relay_fee = \"0.00001\"\n", "");
        assert!(!text.contains("policy"), "{text}");
        let (_dir, path) = write(&text);
        assert_eq!(
            ChainSpec::load(&path).expect("loads").policy,
            PolicySpec::default()
        );
        // Another minimum, in TOY; zero turns the minimum off.
        for (written, units) in [("0.5", 50_000_000), ("0", 0)] {
            let text = spec.to_toml().replace(
                "min_relay_fee = \"0.00001\"",
                &format!("min_relay_fee = \"{written}\""),
            );
            let (_dir, path) = write(&text);
            let loaded = ChainSpec::load(&path).expect("loads");
            assert_eq!(loaded.mempool_config().min_relay_fee, Amount(units));
        }
        // The policy is no part of the chain's identity.
        let mut other = spec.clone();
        other.policy.min_relay_fee = Amount(7);
        assert_eq!(other.genesis().engine_params, spec.genesis().engine_params);
        // Bad amounts and unknown policy keys are refused, naming them.
        for (text, needle) in [
            (
                spec.to_toml().replace(
                    "min_relay_fee = \"0.00001\"",
                    "min_relay_fee = \"0.000000001\"",
                ),
                "0.000000001",
            ),
            (
                spec.to_toml()
                    .replace("min_relay_fee = \"0.00001\"", "min_relay_feee = \"1\""),
                "min_relay_feee",
            ),
        ] {
            let (_dir, path) = write(&text);
            let err = ChainSpec::load(&path).expect_err(needle).to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn unknown_engine_names_the_known_ones() {
        let err = "hotstuff"
            .parse::<EngineKind>()
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("hotstuff") && err.contains("pow"), "{err}");
    }
}
