//! `toychain`: parse the command line, run the command, report errors in one line.
//! Exit codes: 0 success, 1 runtime failure, 2 usage error.

mod cli;
mod dev_cmd;
mod spec_cmd;
mod wallet_cmd;

use clap::Parser;
use std::process::ExitCode;

/// A mistake in how toychain was called (bad flag value, bad address, …): exit code 2.
pub use config::UsageError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        cli::Command::Node(args) => args.execute(),
        cli::Command::Devnet(args) => args.execute(),
        cli::Command::Spec(args) => args.execute(),
        cli::Command::Wallet(args) => args.execute(),
        cli::Command::Bench(args) => args.execute(),
        cli::Command::Dev(args) => args.execute(),
        cli::Command::Compare(args) => args.execute(),
        cli::Command::Simulate(args) => args.execute(),
        cli::Command::Reliability(args) => args.execute(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
