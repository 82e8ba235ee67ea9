//! `toychain node`: wires config, chain (RocksDB in the data dir), engine from the spec,
//! network, JSON-RPC and — with `--author` — the producer; shuts down cleanly on Ctrl-C,
//! SIGTERM or when its devnet launcher dies, flushing the store.

use crate::args::NodeArgs;
use crate::metrics::Metrics;
use crate::producer::{ProducerControl, ProducerLoop};
use crate::rpc::{NetView, RpcState};
use crate::sign_guard::SignGuard;
use crate::tx_journal::{self, TxJournal};
use crate::voting::{VotingDriver, VotingStatus};
use crate::{UsageError, actor, network, rpc, tx_relay, voting};
use anyhow::Context;
use chain::{
    Chain, ChainConfig, ChainView, Clock, Mempool, MempoolConfig, RocksStore, SkewedClock,
    SystemClock,
};
use config::{ChainSpec, EngineKind, NodeConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Default folders, relative to where toychain runs.
pub const DEFAULT_DATA_DIR: &str = ".toychain/node";
pub const DEFAULT_WALLET_DIR: &str = ".toychain/wallet";
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:8545";
/// How long an authoring node with bootnodes waits for a first peer before producing.
const FIRST_PEER_WAIT: Duration = Duration::from_secs(10);
pub const DEFAULT_P2P_LISTEN: &str = "/ip4/127.0.0.1/tcp/30333";
/// Largest `--clock-skew`, either way: a day.
pub const MAX_CLOCK_SKEW_SECS: i64 = 86_400;

/// The node's settings after the config file and the flags are merged.
#[derive(Debug)]
pub(crate) struct Settings {
    spec: ChainSpec,
    data_dir: PathBuf,
    rpc_addr: SocketAddr,
    p2p_listen: net::Multiaddr,
    bootnodes: Vec<net::Multiaddr>,
    author: Option<chain::SecretKey>,
    mdns: bool,
    /// `--clock-skew`, seconds.
    clock_skew: i64,
    /// `--net-delay`.
    net_delay: Duration,
    /// What a test puts around the voting machine (never set from flags or files).
    pub(crate) voting_wrap: Option<crate::testnet::MachineWrap>,
}

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

pub(crate) fn settings(args: &NodeArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => NodeConfig::load(path).map_err(|e| usage(e.to_string()))?,
        None => NodeConfig::default(),
    };
    let engine = match args.engine.as_deref() {
        Some(name) => Some(
            name.parse::<EngineKind>()
                .map_err(|e| usage(e.to_string()))?,
        ),
        None => file.engine,
    };
    let chain_file = args.chain.clone().or(file.chain.clone());
    let dev = args.dev || file.dev;
    let mut spec = match (chain_file, dev) {
        (Some(path), false) => ChainSpec::load(&path).map_err(|e| usage(e.to_string()))?,
        (None, true) => ChainSpec::dev(engine.unwrap_or(EngineKind::Pow)),
        (Some(_), true) => {
            return Err(usage("give either --chain FILE or --dev, not both".into()));
        }
        (None, false) => {
            return Err(usage(
                "no chain: give --chain SPEC.toml or --dev (with --engine KIND)".into(),
            ));
        }
    };
    if let Some(secs) = args.block_time {
        spec.set_block_time(secs)?;
    }
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let rpc_text = args
        .rpc_addr
        .clone()
        .or(file.rpc_addr.clone())
        .unwrap_or_else(|| DEFAULT_RPC_ADDR.into());
    let rpc_addr: SocketAddr = rpc_text
        .parse()
        .map_err(|e| usage(format!("invalid --rpc-addr {rpc_text:?}: {e}")))?;
    if !rpc_addr.ip().is_loopback() {
        if !(args.rpc_external || file.rpc_external) {
            return Err(usage(format!(
                "--rpc-addr {rpc_addr} is not loopback: anyone who can reach it could use this \
                 node's RPC; add --rpc-external if that is what you want"
            )));
        }
        warn!(%rpc_addr, "RPC listens on a non-loopback address");
    }
    let listen_text = args
        .p2p_listen
        .clone()
        .or(file.p2p_listen.first().cloned())
        .unwrap_or_else(|| DEFAULT_P2P_LISTEN.into());
    let p2p_listen = listen_text
        .parse()
        .map_err(|e| usage(format!("invalid --p2p-listen {listen_text:?}: {e}")))?;
    let bootnodes = args
        .bootnode
        .iter()
        .chain(file.bootnodes.iter())
        .map(|b| {
            b.parse::<net::Multiaddr>()
                .map_err(|e| usage(format!("invalid --bootnode {b:?}: {e}")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.clock_skew.abs() > MAX_CLOCK_SKEW_SECS {
        return Err(usage(format!(
            "--clock-skew {}: give at most {MAX_CLOCK_SKEW_SECS} seconds either way",
            args.clock_skew
        )));
    }
    if args.net_delay > network::MAX_NET_DELAY_MS {
        return Err(usage(format!(
            "--net-delay {}: give 0 to {} milliseconds",
            args.net_delay,
            network::MAX_NET_DELAY_MS
        )));
    }
    let author = match args.author.clone().or(file.author.clone()) {
        None => None,
        Some(name) => {
            let dir = args
                .wallet_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_WALLET_DIR));
            let keystore = wallet::Keystore::open(&dir).map_err(|e| usage(e.to_string()))?;
            let password = match &args.password_file {
                Some(p) => wallet::PasswordSource::File(p.clone()),
                None => wallet::PasswordSource::Prompt,
            };
            Some(
                wallet::resolve_signer(&name, &keystore, &password)
                    .map_err(|e| usage(format!("--author {name}: {e}")))?,
            )
        }
    };
    Ok(Settings {
        spec,
        data_dir,
        rpc_addr,
        p2p_listen,
        bootnodes,
        author,
        mdns: args.mdns || file.mdns,
        clock_skew: args.clock_skew,
        net_delay: Duration::from_millis(args.net_delay),
        voting_wrap: None,
    })
}

/// The node's libp2p identity, created once and kept in the data dir.
fn node_key(data_dir: &Path) -> anyhow::Result<net::Keypair> {
    let path = data_dir.join("node.key");
    if let Ok(bytes) = std::fs::read(&path) {
        return net::Keypair::from_protobuf_encoding(&bytes).with_context(|| {
            format!(
                "node key {} is corrupt; delete it to make a new one",
                path.display()
            )
        });
    }
    let key = net::Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .context("cannot encode the node key")?;
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

impl NodeArgs {
    /// Runs `toychain node`: the node of these arguments until it is told to stop.
    pub fn execute(self) -> anyhow::Result<()> {
        let settings = settings(&self)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("toychain-rt")
            .build()
            .context("cannot start the async runtime")?;
        let parent = self.parent_pid;
        runtime.block_on(serve(settings, self, Shutdown::Process { parent }, None))
    }
}

/// How a running node learns that it must stop.
pub(crate) enum Shutdown {
    /// Ctrl-C, SIGTERM, or the launcher process `parent` gone (`toychain node`).
    Process { parent: Option<u32> },
    /// A word from the [`crate::testnet::NodeHandle`] that started it in this process.
    Handle(tokio::sync::oneshot::Receiver<Stop>),
}

/// How an in-process node stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The orderly shutdown `toychain node` does on SIGTERM: production stops, the network
    /// says goodbye, in-flight work finishes, the store is flushed.
    Graceful,
    /// No shutdown sequence: production is halted and every task is dropped where it
    /// stands (gossip half sent, sync requests unanswered, the network never closed). The
    /// store keeps what its atomic batches committed, as after a power cut between them.
    Crash,
}

/// What an in-process node reports once it serves.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub rpc_addr: SocketAddr,
    pub peer_id: net::PeerId,
    /// The address the network listens on (the port the system gave, for port 0).
    pub p2p_addr: net::Multiaddr,
}

/// How long a node waits for its network to report the address it listens on.
const LISTEN_DEADLINE: Duration = Duration::from_secs(5);

/// The address the network listens on once its listener is up: for `/tcp/0`, the port the
/// system gave. If none is reported within [`LISTEN_DEADLINE`], the configured one.
async fn bound_listen_addr(client: &net::Client, configured: &net::Multiaddr) -> net::Multiaddr {
    let until = tokio::time::Instant::now() + LISTEN_DEADLINE;
    loop {
        let first = client
            .listen_addrs()
            .await
            .ok()
            .and_then(|addrs| addrs.into_iter().next());
        if let Some(addr) = first {
            return addr;
        }
        if tokio::time::Instant::now() >= until {
            warn!(listen = %configured, "the network reported no listen address");
            return configured.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn serve(
    settings: Settings,
    args: NodeArgs,
    shutdown: Shutdown,
    ready: Option<std::sync::mpsc::Sender<Ready>>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    let spec = &settings.spec;
    let miner::Engines { engine, producer } = spec
        .engine
        .engines(settings.author.as_ref(), args.mining_threads)?;
    let clock = node_clock(settings.clock_skew);
    let (chain, mempool, metrics) = open_chain(&settings, &args, &engine, &clock)?;
    let genesis = chain.genesis().hash();
    let (handle, actor_thread) = actor::spawn(chain, mempool, metrics.clone());
    let (journal, journaled) = TxJournal::open(&settings.data_dir)?;
    let journal = Arc::new(journal);
    let replayed = tx_journal::replay(&handle, journaled).await;

    // Network.
    let kind = spec.engine.kind();
    let net_config = net_config(&settings, genesis, kind, engine.as_ref())?;
    let (client, events, event_loop) =
        net::new(net_config).map_err(|e| anyhow::anyhow!("cannot start the network: {e}"))?;
    let net_task = tokio::spawn(event_loop.run());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Transactions go out in batches; the pending ones are announced to each new peer and
    // again from time to time, so txs acknowledged before a restart reach a peer too.
    let (relay, relay_task) = tx_relay::spawn(handle.clone(), client.clone(), shutdown_rx.clone());
    for tx in replayed {
        relay.relay(tx);
    }
    let view = NetView {
        client: Some(client.clone()),
        relay: Some(relay.clone()),
        ..NetView::default()
    };
    let voting = spawn_voting(
        &settings,
        engine.as_ref(),
        VotingDriverParts {
            chain: handle.clone(),
            client: client.clone(),
            producer: producer.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
        },
        shutdown_rx.clone(),
    )?;
    let sync_task = tokio::spawn(network::run(
        network::NetworkTask {
            events,
            chain: handle.clone(),
            client: client.clone(),
            view: view.clone(),
            metrics: metrics.clone(),
            delay: settings.net_delay,
            voting: voting.inbox,
            relay: Some(relay),
        },
        shutdown_rx.clone(),
    ));
    if !settings.net_delay.is_zero() {
        warn!(
            delay_ms = settings.net_delay.as_millis(),
            "--net-delay: gossip and sync responses are handled late"
        );
    }

    // RPC.
    let control = ProducerControl::default();
    let rpc_state = RpcState {
        chain: handle.clone(),
        metrics: metrics.clone(),
        net: view,
        author: settings.author.as_ref().map(|k| k.address()),
        producer: settings
            .author
            .as_ref()
            .filter(|_| !kind.votes())
            .map(|_| control.clone()),
        admin: args.rpc_admin,
        journal: Some(journal.clone()),
        voting: voting.status,
        closing: shutdown_rx.clone(),
    };
    let (rpc_addr, rpc_task) = spawn_rpc(&settings, rpc_state, shutdown_rx.clone()).await?;
    let p2p_addr = bound_listen_addr(&client, &settings.p2p_listen).await;
    println!(
        "toychain node: rpc http://{} · peer {} · p2p {}",
        rpc_addr,
        client.local_peer_id(),
        p2p_addr
    );

    // The journal drops what left the mempool from time to time.
    let journal_task = tokio::spawn(keep_journal(journal, handle.clone(), shutdown_rx.clone()));

    // Production. A voting engine's blocks are built when its machine asks (above); its
    // producer never has a turn of its own.
    let producer_thread = match producer {
        Some(producer) if !kind.votes() => Some(spawn_producer(
            &settings,
            &args,
            producer,
            ProducerLoopParts {
                chain: handle.clone(),
                client: client.clone(),
                clock,
                metrics: metrics.clone(),
                control: control.clone(),
            },
        )?),
        _ => None,
    };

    if let Some(ready) = ready {
        let _ = ready.send(Ready {
            rpc_addr,
            peer_id: client.local_peer_id(),
            p2p_addr,
        });
    }
    let stop = match shutdown {
        Shutdown::Process { parent } => {
            wait_for_shutdown(parent).await;
            Stop::Graceful
        }
        Shutdown::Handle(word) => word.await.unwrap_or(Stop::Graceful),
    };
    if stop == Stop::Crash {
        warn!("crashing: no shutdown sequence");
        control.stop();
        return Ok(());
    }
    Running {
        shutdown: shutdown_tx,
        control,
        client,
        producer_thread,
        tasks: [rpc_task, sync_task, net_task, journal_task, relay_task]
            .into_iter()
            .chain(voting.task)
            .collect(),
        handle,
        actor_thread,
    }
    .shut_down()
    .await;
    Ok(())
}

/// What a running node stops, in order, at a graceful shutdown.
struct Running {
    shutdown: watch::Sender<bool>,
    control: ProducerControl,
    client: net::Client,
    producer_thread: Option<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    handle: actor::ChainHandle,
    actor_thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops production, tells every task, closes the network, waits (boundedly) for the
    /// tasks, and lets the chain actor flush the store.
    async fn shut_down(self) {
        info!("shutting down");
        self.control.stop();
        let _ = self.shutdown.send(true);
        let _ = self.client.shutdown().await;
        if let Some(thread) = self.producer_thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        drop(self.handle);
        drop(self.client);
        // The actor flushes the store when its last handle is gone.
        let actor_thread = self.actor_thread;
        let _ = tokio::task::spawn_blocking(move || actor_thread.join()).await;
        info!("stopped");
    }
}

/// What the producer loop shares with the rest of the node.
struct ProducerLoopParts {
    chain: actor::ChainHandle,
    client: net::Client,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    control: ProducerControl,
}

/// Starts the producer thread of a block engine, with the double-sign guard when its
/// blocks are signed.
fn spawn_producer(
    settings: &Settings,
    args: &NodeArgs,
    producer: Arc<dyn chain::BlockProducer>,
    parts: ProducerLoopParts,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let guard = if producer.signs_blocks() {
        Some(SignGuard::open(&settings.data_dir)?)
    } else {
        None
    };
    Ok(ProducerLoop {
        chain: parts.chain,
        producer,
        clock: parts.clock,
        client: Some(parts.client),
        runtime: tokio::runtime::Handle::current(),
        metrics: parts.metrics,
        control: parts.control,
        on_demand: args.on_demand,
        guard,
        wait_for_peer: (!settings.bootnodes.is_empty()).then_some(FIRST_PEER_WAIT),
    }
    .spawn())
}

/// The system clock, shifted by `--clock-skew` seconds when asked.
fn node_clock(skew_secs: i64) -> Arc<dyn Clock> {
    if skew_secs == 0 {
        return Arc::new(SystemClock);
    }
    warn!(
        skew_secs,
        "--clock-skew: this node's clock is shifted from the system clock"
    );
    Arc::new(SkewedClock::new(
        Arc::new(SystemClock),
        skew_secs.saturating_mul(1000),
    ))
}

/// The chain in the data dir's RocksDB, its mempool and the node's metrics, sharing one
/// signature cache: a tx verified at admission is not verified again when its block is
/// built or imported.
fn open_chain(
    settings: &Settings,
    args: &NodeArgs,
    engine: &Arc<dyn chain::ConsensusEngine>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<(Chain, Mempool, Arc<Metrics>)> {
    let spec = &settings.spec;
    let store = Arc::new(
        RocksStore::open(settings.data_dir.join("db")).with_context(|| {
            format!(
                "cannot open the database in {}",
                settings.data_dir.display()
            )
        })?,
    );
    // A changed account's old value was a recent block's new value: expand it once.
    chain::state::memoize_expansions();
    let chain_id = chain::ChainId(spec.chain_id);
    let chain_config = ChainConfig::new(chain_id);
    let signatures = chain_config.signature_cache.clone();
    let chain = Chain::open(
        store,
        engine.clone(),
        clock.clone(),
        chain_config,
        &spec.genesis(),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the chain in {}: {e}",
            settings.data_dir.display()
        )
    })?;
    let metrics = Arc::new(Metrics::default());
    metrics.attach_signature_cache(signatures.clone());
    let mempool = Mempool::new(
        chain_id,
        MempoolConfig {
            max_txs: usize::try_from(args.mempool_txs).unwrap_or(usize::MAX),
            ..spec.mempool_config()
        },
    )
    .with_signature_cache(signatures);
    info!(
        chain = %spec.name,
        engine = engine.name(),
        genesis = %chain.genesis().hash(),
        height = chain.head().height().0,
        "chain ready"
    );
    Ok((chain, mempool, metrics))
}

/// The network's settings: addresses, the node key, and message bounds that fit the
/// engine (a proposal or a Raft append carries whole blocks; a certified block its
/// certificate).
fn net_config(
    settings: &Settings,
    genesis: chain::BlockHash,
    kind: EngineKind,
    engine: &dyn chain::ConsensusEngine,
) -> anyhow::Result<net::NetworkConfig> {
    let mut config = net::NetworkConfig::new(node_key(&settings.data_dir)?, genesis);
    config.listen = vec![settings.p2p_listen.clone()];
    config.bootnodes = settings.bootnodes.clone();
    config.mdns = settings.mdns;
    if kind.votes() {
        config.max_engine_bytes = kind.max_message_bytes() + voting::FRAME_HEADER_BYTES;
    }
    if engine.requires_certificate() {
        config.max_block_bytes = <chain::CertifiedBlock as chain::Canonical>::MAX_BYTES;
    }
    Ok(config)
}

/// What the voting driver shares with the rest of the node.
struct VotingDriverParts {
    chain: actor::ChainHandle,
    client: net::Client,
    producer: Option<Arc<dyn chain::BlockProducer>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

/// A voting engine's running driver: where the network hands it messages, its status for
/// RPC, its task. All `None` for an engine that does not vote.
struct VotingParts {
    inbox: Option<voting::VotingInbox>,
    status: Option<VotingStatus>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts a voting engine's machine, restored from what it last persisted.
fn spawn_voting(
    settings: &Settings,
    engine: &dyn chain::ConsensusEngine,
    parts: VotingDriverParts,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<VotingParts> {
    let persisted = voting::load_state(&settings.data_dir)?;
    let machine = engine
        .voting_machine(settings.author.as_ref(), persisted.as_deref())
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the {} voting machine from {}: {e}",
                engine.name(),
                settings.data_dir.join(voting::STATE_FILE).display()
            )
        })?;
    let Some(mut machine) = machine else {
        return Ok(VotingParts {
            inbox: None,
            status: None,
            task: None,
        });
    };
    if let Some(wrap) = &settings.voting_wrap {
        machine = (wrap.0)(machine);
    }
    let status = VotingStatus::default();
    let (inbox, task) = VotingDriver {
        machine,
        chain: parts.chain,
        client: parts.client,
        producer: parts.producer,
        clock: parts.clock,
        metrics: parts.metrics,
        data_dir: settings.data_dir.clone(),
        status: status.clone(),
    }
    .spawn(shutdown);
    Ok(VotingParts {
        inbox: Some(inbox),
        status: Some(status),
        task: Some(task),
    })
}

/// Binds the RPC port and serves JSON-RPC (HTTP and WebSocket), the dashboard and
/// `/metrics` until shutdown; returns the bound address.
async fn spawn_rpc(
    settings: &Settings,
    state: RpcState,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(settings.rpc_addr)
        .await
        .with_context(|| format!("cannot listen for RPC on {} (in use?)", settings.rpc_addr))?;
    let rpc_addr = listener
        .local_addr()
        .context("the RPC listener has no address")?;
    if state.admin {
        warn!("--rpc-admin: admin RPC methods are on; anyone who reaches the RPC may use them");
    }
    let task = tokio::spawn(async move {
        let serving = rpc::serve(listener, state, async move {
            let _ = shutdown.changed().await;
        });
        if let Err(e) = serving.await {
            warn!(error = %e, "the RPC server stopped");
        }
    });
    Ok((rpc_addr, task))
}

/// Compacts the journal every [`tx_journal::COMPACT_INTERVAL`] until shutdown.
async fn keep_journal(
    journal: Arc<TxJournal>,
    chain: actor::ChainHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(tx_journal::COMPACT_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = ticker.tick() => {
                if let Err(e) = journal.compact(&chain).await {
                    warn!(error = %e, "tx journal not compacted");
                }
            }
        }
    }
}

/// Resolves on Ctrl-C, SIGTERM, or when `parent` stops being our parent process.
async fn wait_for_shutdown(parent: Option<u32>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let orphaned = async move {
        match parent {
            Some(pid) => loop {
                if std::os::unix::process::parent_id() != pid {
                    warn!(parent = pid, "launcher is gone");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            },
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        _ = orphaned => {}
    }
}
