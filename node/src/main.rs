//! `toychain`: parse the command line, run the command, report errors in one line.
//! Exit codes: 0 success, 1 runtime failure, 2 usage error.

mod actor;
mod bench_sync;
mod cli;
mod compare;
mod dev_cmd;
mod devnet;
mod metrics;
mod network;
mod producer;
mod reliability;
mod rpc;
mod rpc_client;
mod run;
mod sign_guard;
mod simulate;
mod tx_journal;
mod voting;
mod wallet_cmd;

use clap::Parser;
use std::process::ExitCode;

/// A mistake in how toychain was called (bad flag value, bad address, …): exit code 2.
pub use config::UsageError;

/// Asserts that `parse` refuses each case with a [`UsageError`] whose message contains the
/// case's needle (the flag and the bad value): the commands' flag-parsing tests share it.
#[cfg(test)]
pub(crate) fn assert_usage_errors<'a, A, T: std::fmt::Debug>(
    cases: impl IntoIterator<Item = (A, &'a str)>,
    parse: impl Fn(A) -> anyhow::Result<T>,
) {
    for (bad, needle) in cases {
        let err = parse(bad).expect_err(needle);
        assert!(
            err.downcast_ref::<UsageError>().is_some(),
            "{needle}: {err}"
        );
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

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
        cli::Command::Node(args) => run::run_node(*args),
        cli::Command::Devnet(args) => devnet::run(args),
        cli::Command::Spec(args) => run::write_spec(args),
        cli::Command::Wallet(args) => wallet_cmd::run(args),
        cli::Command::Bench(args) => run::bench(args),
        cli::Command::Dev(args) => dev_cmd::run(args),
        cli::Command::Compare(args) => compare::run(args),
        cli::Command::Simulate(args) => simulate::run(args),
        cli::Command::Reliability(args) => reliability::run(args),
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
