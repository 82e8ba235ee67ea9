//! The command line of the `toychain` binary.

use crate::spec_cmd::SpecArgs;
use clap::{Parser, Subcommand};
use devnet::DevnetArgs;
use lab::{BenchArgs, CompareArgs, ReliabilityArgs, SimulateArgs};
use node::NodeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "toychain",
    version,
    about = "A blockchain with pluggable consensus: run nodes and devnets, send coins, compare engines",
    long_about = "toychain runs a node or a whole local devnet of one chain whose block production \
                  is pluggable (one flag, --engine, picks proof of work, coin-age proof of stake, \
                  delegated proof of stake, proof of authority, PBFT, Raft, Multi-Paxos or \
                  ZAB), a wallet to \
                  send coins, and a lab that compares the engines on real devnets and in \
                  simulation. Logs go to \
                  stderr; raise them with RUST_LOG=debug."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start N nodes on 127.0.0.1 sharing a dev chain, and print one line per new head.
    Devnet(DevnetArgs),
    /// Run one node: store, network, JSON-RPC and (with --author) block production.
    Node(Box<NodeArgs>),
    /// Write a chain spec (TOML) for an engine.
    Spec(SpecArgs),
    /// Keys and transactions: new, list, address, balance, send, history, votes.
    Wallet(crate::wallet_cmd::WalletArgs),
    /// Measure: pow (the miner's hash rate) or sync (a fresh node catching up over
    /// loopback, against importing the same blocks with no network).
    Bench(BenchArgs),
    /// Dev-chain conveniences through a node's RPC: `dev mine N` produces N blocks now.
    Dev(crate::dev_cmd::DevArgs),
    /// Run a devnet of each engine under the same load and write a report comparing them.
    Compare(CompareArgs),
    /// Simulate N nodes of an engine in one process, in virtual time, over a simulated
    /// network, and write the same report as compare.
    Simulate(SimulateArgs),
    /// Break a 4-node devnet of each engine on purpose (disconnect, pause, restart, split,
    /// clock skew, crash cycles) and check it loses nothing; writes a summary table.
    Reliability(ReliabilityArgs),
}
