//! `toychain dev`: conveniences for a local dev chain, through a node's RPC.

use crate::wallet_cmd::DEFAULT_RPC_URL;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use node::rpc_client::RpcClient;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(subcommand)]
    pub command: DevCommand,
    /// The node's JSON-RPC URL (a node started with --author).
    #[arg(long, global = true, default_value = DEFAULT_RPC_URL, value_name = "URL")]
    pub rpc: String,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Produce N blocks now, even with no transactions waiting (as fast as the engine
    /// allows: PoW mines them at the current difficulty, PoA keeps its period, DPoS its
    /// producer's slots).
    Mine {
        /// How many blocks (1–1000).
        #[arg(value_parser = clap::value_parser!(u64).range(1..=1000))]
        blocks: u64,
        /// Give up after this many seconds (default: 60 per block).
        #[arg(long)]
        timeout: Option<u64>,
    },
}

impl DevArgs {
    /// Runs `toychain dev`.
    pub fn execute(self) -> anyhow::Result<()> {
        let client = RpcClient::new(&self.rpc, Duration::from_secs(10));
        match self.command {
            DevCommand::Mine { blocks, timeout } => mine(&client, blocks, timeout),
        }
    }
}

fn mine(client: &RpcClient, blocks: u64, timeout: Option<u64>) -> anyhow::Result<()> {
    let answer = client.call_explained("dev_mine", json!([blocks]))?;
    let start = answer["blocks_produced"]
        .as_u64()
        .ok_or_else(|| anyhow!("dev_mine answered without blocks_produced: {answer}"))?;
    let deadline = Duration::from_secs(timeout.unwrap_or(60 * blocks));
    let began = Instant::now();
    let mut shown = start;
    println!("asked {} for {blocks} block(s)", client.url());
    while shown < start + blocks {
        if began.elapsed() > deadline {
            return Err(anyhow!(
                "only {} of {blocks} block(s) produced within {} s; the node keeps working on \
                 the rest (raise --timeout to wait longer)",
                shown - start,
                deadline.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
        let status = client.call_explained("node_status", json!([]))?;
        let produced = status["blocks_produced"].as_u64().unwrap_or(shown);
        if produced > shown {
            shown = produced;
            let info = client.call_explained("chain_info", json!([]))?;
            println!(
                "{}/{blocks}: head #{} {}",
                (shown - start).min(blocks),
                info["height"],
                short(&info["head_hash"])
            );
        }
    }
    Ok(())
}

fn short(hash: &Value) -> String {
    hash.as_str()
        .map_or_else(String::new, |h| h.chars().take(8).collect())
}
