//! The `toychain node` command line.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node config file (TOML); flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Chain spec file.
    #[arg(long, conflicts_with = "dev")]
    pub chain: Option<PathBuf>,
    /// Run the built-in dev chain of --engine (dev accounts prefunded).
    #[arg(long)]
    pub dev: bool,
    /// Engine of the dev chain (with --dev).
    #[arg(long)]
    pub engine: Option<String>,
    /// Where the database and the node key live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// JSON-RPC listen address.
    #[arg(long)]
    pub rpc_addr: Option<String>,
    /// Allow a JSON-RPC address that is not loopback (anyone who reaches it can use it).
    #[arg(long)]
    pub rpc_external: bool,
    /// libp2p listen multiaddr.
    #[arg(long)]
    pub p2p_listen: Option<String>,
    /// Peer to dial at start, as a multiaddr with or without /p2p/PEER_ID (repeatable).
    #[arg(long)]
    pub bootnode: Vec<String>,
    /// Produce blocks as this dev account or keystore key: mine, stake or sign.
    #[arg(long)]
    pub author: Option<String>,
    /// Password file for a keystore --author.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Keystore folder for a keystore --author.
    #[arg(long)]
    pub wallet_dir: Option<PathBuf>,
    /// Mining threads (PoW; 0 = every core).
    #[arg(long, default_value_t = 0)]
    pub mining_threads: usize,
    /// Target seconds between blocks (overrides the dev spec's value; with --dev only).
    #[arg(long, requires = "dev")]
    pub block_time: Option<u64>,
    /// Produce only while transactions are waiting.
    #[arg(long)]
    pub on_demand: bool,
    /// Most transactions the mempool holds (the lowest-fee ones are evicted beyond it).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub mempool_txs: u64,
    /// Discover local peers with mDNS.
    #[arg(long)]
    pub mdns: bool,
    /// Exit when this process id stops being our parent (set by the devnet launcher).
    #[arg(long, hide = true)]
    pub parent_pid: Option<u32>,
    /// Fault injection: run this node's clock SECS seconds ahead (negative: behind) of the
    /// system clock, for validation and block production alike (at most a day either way).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECS",
        allow_hyphen_values = true
    )]
    pub clock_skew: i64,
    /// Fault injection: handle every gossip message and sync response MS milliseconds
    /// after it arrives, in arrival order (0 to 60000).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub net_delay: u64,
    /// Fault injection: enable the admin RPC methods (`admin_blockPeers`); anyone who can
    /// reach the RPC can then cut this node off from its peers.
    #[arg(long)]
    pub rpc_admin: bool,
}
