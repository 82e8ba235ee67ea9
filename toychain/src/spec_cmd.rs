//! `toychain spec`: write a chain spec for an engine.

use anyhow::Context;
use clap::Args;
use config::{ChainSpec, EngineKind, UsageError};
use node::run::DEFAULT_WALLET_DIR;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The consensus engine.
    #[arg(long)]
    pub engine: String,
    /// Authorities (PoA) or genesis delegates (DPoS), as dev names or addresses.
    #[arg(long, value_delimiter = ',')]
    pub authorities: Vec<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Genesis timestamp (default: the dev chain's fixed time, so --dev nodes agree).
    #[arg(long)]
    pub timestamp: Option<u64>,
    /// Where keystore names given to --authorities are looked up.
    #[arg(long)]
    pub wallet_dir: Option<PathBuf>,
}

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

impl SpecArgs {
    /// `toychain spec`: writes a chain spec.
    pub fn execute(self) -> anyhow::Result<()> {
        let kind: EngineKind = self
            .engine
            .parse()
            .map_err(|e: config::SpecError| usage(e.to_string()))?;
        let spec_authorities = if self.authorities.is_empty() {
            config::dev_authorities(1)
        } else if !kind.has_authorities() {
            return Err(usage(format!(
                "--authorities names the producers or voters of engines that list them; the {kind} \
             engine has none"
            )));
        } else {
            let keystore = wallet::Keystore::open(
                self.wallet_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_WALLET_DIR)),
            )
            .map_err(|e| usage(e.to_string()))?;
            self.authorities
                .iter()
                .map(|name| {
                    wallet::resolve_address(name, &keystore)
                        .map_err(|e| usage(format!("--authorities: {e}")))
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let mut spec = ChainSpec::dev_with(kind, &spec_authorities);
        if let Some(ts) = self.timestamp {
            spec.genesis.timestamp = ts;
        }
        spec.validate()
            .map_err(|(key, reason)| usage(format!("invalid spec: {key}: {reason}")))?;
        let text = spec.to_toml();
        match self.out {
            Some(path) => {
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!(
                    "wrote {} ({} chain, engine {kind})",
                    path.display(),
                    spec.name
                );
            }
            None => print!("{text}"),
        }
        Ok(())
    }
}
