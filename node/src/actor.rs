//! The chain actor: one thread owns the [`Chain`] and the [`Mempool`] and is their only
//! writer. Everyone else sends it commands over a bounded channel and reads blocks and state
//! through a [`ChainReader`] (each import is one atomic batch, so reads never see half a
//! block). Head changes are published on a `watch` channel, and every new head, reorg and
//! finality step on a `broadcast` channel of [`ChainEvent`]s (the WebSocket subscriptions'
//! source; a lagging receiver loses events, the actor never waits for it).

use crate::metrics::Metrics;
use chain::{
    Address, Block, BlockError, BlockHash, BlockId, CertifiedBlock, Chain, ChainReader, ChainView,
    ConsensusEngine, EngineError, HeadChange, ImportOutcome, Mempool, MempoolError, SealedHeader,
    StoreError, Timestamp, Transaction, TxHash, Weight,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// Most signatures [`ChainHandle::warm_signatures`] checks together: enough that the two
/// inversions shared by a run cost next to nothing per signature.
pub const WARM_RUN: usize = 64;

/// Commands queued for the actor at most.
const COMMAND_QUEUE: usize = 1024;
/// Chain events kept for receivers that have not read them yet; one further behind has
/// lagged and learns how many it missed.
pub const EVENT_QUEUE: usize = 1024;

/// What happened to the best chain, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainEvent {
    /// A block joined the best chain (one event per block, oldest first, so a jump of
    /// several blocks comes as several heads).
    NewHead(BlockId),
    /// The best chain switched branches: `reverted` (newest first) left it and `applied`
    /// (oldest first) joined it above `fork_point`. The applied blocks then come as
    /// [`ChainEvent::NewHead`]s too.
    Reorg {
        old_head: BlockId,
        new_head: BlockId,
        fork_point: BlockId,
        reverted: Vec<BlockId>,
        applied: Vec<BlockId>,
    },
    /// The engine's finalized block moved forward.
    Finalized(BlockId),
}

/// What everyone may know about the head without asking the actor.
#[derive(Clone, Debug)]
pub struct HeadInfo {
    pub id: BlockId,
    pub total_weight: Weight,
    pub finalized: Option<BlockId>,
    pub timestamp: Timestamp,
}

enum Command {
    Import {
        block: Box<Block>,
        reply: oneshot::Sender<Result<ImportOutcome, BlockError>>,
    },
    ImportCertified {
        block: Box<CertifiedBlock>,
        reply: oneshot::Sender<Result<ImportOutcome, BlockError>>,
    },
    ValidateProposal {
        block: Box<Block>,
        reply: oneshot::Sender<Result<(), BlockError>>,
    },
    VotingHead {
        reply: oneshot::Sender<Result<VotingHead, EngineError>>,
    },
    SubmitTx {
        tx: Box<Transaction>,
        reply: oneshot::Sender<Result<TxHash, MempoolError>>,
    },
    SubmitTxs {
        txs: Vec<Transaction>,
        /// Each transaction judged on its own (an RPC batch: independent calls), rather
        /// than stopping at the first bad one (a gossip batch: one sender).
        independent: bool,
        reply: oneshot::Sender<Vec<Result<TxHash, MempoolError>>>,
    },
    PendingTxs {
        max_txs: usize,
        max_bytes: usize,
        reply: oneshot::Sender<Vec<Transaction>>,
    },
    Build {
        header: Box<chain::Header>,
        max_txs: usize,
        reply: oneshot::Sender<Result<Block, BlockError>>,
    },
    PendingNonce {
        address: Address,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    IsPending {
        hash: TxHash,
        reply: oneshot::Sender<bool>,
    },
    PendingAmong {
        hashes: Vec<TxHash>,
        reply: oneshot::Sender<Vec<bool>>,
    },
}

/// The actor is gone (the node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the chain task has stopped")]
pub struct ActorStopped;

/// A cloneable handle to the chain actor.
#[derive(Clone, Debug)]
pub struct ChainHandle {
    commands: mpsc::Sender<Command>,
    head: watch::Receiver<HeadInfo>,
    /// Transactions in the mempool, published after every change.
    pool_size: watch::Receiver<usize>,
    reader: ChainReader,
    engine: Arc<dyn ConsensusEngine>,
    chain_id: chain::ChainId,
    events: broadcast::Sender<ChainEvent>,
    /// The signature cache the chain and the mempool verify through.
    signatures: Arc<chain::SignatureCache>,
}

fn head_info(chain: &Chain) -> HeadInfo {
    let head = chain.head();
    HeadInfo {
        id: head.id(),
        total_weight: chain.total_weight(),
        finalized: chain.finalized().ok().flatten(),
        timestamp: head.timestamp,
    }
}

/// The head and the accounts that vote on its child, read together by the chain's only
/// writer, so the voters belong to exactly that head's state.
#[derive(Clone, Debug)]
pub struct VotingHead {
    pub head: SealedHeader,
    pub voters: Vec<Address>,
}

/// A node's chain and mempool and the rules that keep them in step: what the actor thread
/// owns, and what each node of `toychain simulate` owns.
#[derive(Debug)]
pub struct Ledger {
    pub chain: Chain,
    pub mempool: Mempool,
}

impl Ledger {
    /// Imports a block; on a new head the mempool drops what the head included and takes
    /// back what a reorg reverted.
    pub fn import(&mut self, block: Block) -> Result<ImportOutcome, BlockError> {
        let result = self.chain.import_block(block);
        if let Ok(ImportOutcome::NewHead(change)) = &result
            && let Err(e) = self.mempool.on_head_change(change, self.chain.state())
        {
            warn!(error = %e, "mempool re-validation failed");
        }
        result
    }

    /// Imports a block decided by votes with its certificate (see
    /// [`Chain::import_certified`]); the mempool follows the new head as for
    /// [`Ledger::import`].
    pub fn import_certified(&mut self, block: CertifiedBlock) -> Result<ImportOutcome, BlockError> {
        let result = self.chain.import_certified(block.block, block.certificate);
        if let Ok(ImportOutcome::NewHead(change)) = &result
            && let Err(e) = self.mempool.on_head_change(change, self.chain.state())
        {
            warn!(error = %e, "mempool re-validation failed");
        }
        result
    }

    /// Admits a transaction (from `tx_submit` or gossip): kinds the engine refuses are
    /// turned away before the pool.
    pub fn submit(&mut self, tx: Transaction) -> Result<TxHash, MempoolError> {
        match self.chain.check_tx_kind(&tx) {
            Ok(()) => self.mempool.insert(tx, self.chain.state()),
            Err(e) => Err(MempoolError::Invalid(e)),
        }
    }

    /// Admits transactions in order (a gossip batch), stopping after the first that can
    /// never be valid: its sender misbehaved, and the rest would only cost more checks.
    /// One result per transaction tried.
    pub fn submit_batch(&mut self, txs: Vec<Transaction>) -> Vec<Result<TxHash, MempoolError>> {
        let mut results = Vec::with_capacity(txs.len());
        for tx in txs {
            let result = self.submit(tx);
            let bad = matches!(&result, Err(e) if e.is_bad_data());
            results.push(result);
            if bad {
                break;
            }
        }
        results
    }

    /// Pending transactions in block order (best fee rate first, each sender's nonces in
    /// order), at most `max_txs` of them and `max_bytes` encoded: what the node announces.
    pub fn pending(&self, max_txs: usize, max_bytes: usize) -> Vec<Transaction> {
        let mut bytes = 0usize;
        self.mempool
            .select(max_txs)
            .into_iter()
            .take_while(|tx| {
                bytes = bytes.saturating_add(tx.encoded_len());
                bytes <= max_bytes
            })
            .collect()
    }

    /// Fills `header` (whose engine fields the producer prepared) with mempool txs on the
    /// head state.
    pub fn build(&self, header: chain::Header, max_txs: usize) -> Result<Block, BlockError> {
        self.chain
            .build_block(header, self.mempool.select(max_txs), max_txs)
            .map(|built| built.block)
    }

    /// The nonce the sender's next transaction should carry, counting pooled ones.
    pub fn pending_nonce(&self, address: &Address) -> Result<u64, StoreError> {
        self.mempool.next_nonce(address, self.chain.state())
    }
}

/// Starts the actor thread. It stops (flushing the store) when every handle is dropped.
pub fn spawn(
    chain: Chain,
    mempool: Mempool,
    metrics: Arc<Metrics>,
) -> (ChainHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (head_tx, head_rx) = watch::channel(head_info(&chain));
    let (events, _) = broadcast::channel(EVENT_QUEUE);
    let (pool_tx, pool_rx) = watch::channel(mempool.len());
    let handle = ChainHandle {
        commands: tx,
        head: head_rx,
        pool_size: pool_rx,
        reader: ChainReader::clone(&chain),
        engine: chain.engine().clone(),
        chain_id: chain.config().chain_id,
        events: events.clone(),
        signatures: mempool.signature_cache().clone(),
    };
    metrics.set_head(&head_info(&chain));
    let publish = Publish {
        head: head_tx,
        events,
        pool_size: pool_tx,
        metrics,
    };
    let join = std::thread::Builder::new()
        .name("chain".into())
        .spawn(move || run(Ledger { chain, mempool }, rx, publish))
        .expect("the OS can start a thread");
    (handle, join)
}

/// Where the actor tells the rest of the node what changed.
struct Publish {
    head: watch::Sender<HeadInfo>,
    events: broadcast::Sender<ChainEvent>,
    pool_size: watch::Sender<usize>,
    metrics: Arc<Metrics>,
}

impl Publish {
    /// The pool's size, to the metrics and to whoever waits for transactions (an
    /// `--on-demand` producer); waiters wake only when it changed.
    fn pool(&self, ledger: &Ledger) {
        let size = ledger.mempool.len();
        self.metrics
            .mempool_size
            .store(size as u64, Ordering::Relaxed);
        self.pool_size.send_if_modified(|old| {
            let changed = *old != size;
            *old = size;
            changed
        });
    }
}

fn run(mut ledger: Ledger, mut rx: mpsc::Receiver<Command>, publish: Publish) {
    let metrics = publish.metrics.clone();
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Import { block, reply } => {
                let hash = block.hash();
                let (txs, started) = (block.txs.len(), std::time::Instant::now());
                let result = ledger.import(*block);
                debug!(block = %hash.short(), txs, ms = started.elapsed().as_millis(), "block import ran");
                after_import(&ledger, &hash, &result, &publish);
                publish.pool(&ledger);
                let _ = reply.send(result);
            }
            Command::ImportCertified { block, reply } => {
                let hash = block.block.hash();
                let result = ledger.import_certified(*block);
                after_import(&ledger, &hash, &result, &publish);
                publish.pool(&ledger);
                let _ = reply.send(result);
            }
            Command::ValidateProposal { block, reply } => {
                let _ = reply.send(ledger.chain.validate_proposal(&block));
            }
            Command::VotingHead { reply } => {
                let head = ledger.chain.head();
                let voters = ledger.chain.engine().voters(ledger.chain.state());
                let _ = reply.send(voters.map(|voters| VotingHead { head, voters }));
            }
            Command::SubmitTx { tx, reply } => {
                let result = ledger.submit(*tx);
                if result.is_ok() {
                    metrics.txs_accepted.fetch_add(1, Ordering::Relaxed);
                }
                publish.pool(&ledger);
                let _ = reply.send(result);
            }
            Command::SubmitTxs {
                txs,
                independent,
                reply,
            } => {
                let (count, started) = (txs.len(), std::time::Instant::now());
                let results = if independent {
                    txs.into_iter().map(|tx| ledger.submit(tx)).collect()
                } else {
                    ledger.submit_batch(txs)
                };
                let accepted = results.iter().filter(|r| r.is_ok()).count() as u64;
                debug!(
                    count,
                    accepted,
                    ms = started.elapsed().as_millis(),
                    "transactions admitted"
                );
                metrics.txs_accepted.fetch_add(accepted, Ordering::Relaxed);
                publish.pool(&ledger);
                let _ = reply.send(results);
            }
            Command::PendingTxs {
                max_txs,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(ledger.pending(max_txs, max_bytes));
            }
            Command::Build {
                header,
                max_txs,
                reply,
            } => {
                let started = std::time::Instant::now();
                let built = ledger.build(*header, max_txs);
                debug!(ms = started.elapsed().as_millis(), "block template built");
                let _ = reply.send(built);
            }
            Command::PendingNonce { address, reply } => {
                let _ = reply.send(ledger.pending_nonce(&address));
            }
            Command::IsPending { hash, reply } => {
                let _ = reply.send(ledger.mempool.contains(&hash));
            }
            Command::PendingAmong { hashes, reply } => {
                let _ = reply.send(hashes.iter().map(|h| ledger.mempool.contains(h)).collect());
            }
        }
    }
    match ledger.chain.flush() {
        Ok(()) => info!("chain store flushed"),
        Err(e) => warn!(error = %e, "flushing the chain store failed"),
    }
}

/// Counts an import in the metrics, logs a refusal, and publishes a new head and its
/// events.
fn after_import(
    ledger: &Ledger,
    hash: &BlockHash,
    result: &Result<ImportOutcome, BlockError>,
    publish: &Publish,
) {
    let metrics = &publish.metrics;
    match result {
        Ok(ImportOutcome::NewHead(change)) => {
            metrics.blocks_imported.fetch_add(1, Ordering::Relaxed);
            if change.is_reorg() {
                metrics.reorgs.fetch_add(1, Ordering::Relaxed);
                metrics
                    .reorg_depth_max
                    .fetch_max(change.reverted.len() as u64, Ordering::Relaxed);
            }
            let info = head_info(&ledger.chain);
            metrics.set_head(&info);
            let finalized_before = publish.head.borrow().finalized;
            let finalized_now = info.finalized;
            publish_events(change, finalized_before, finalized_now, &publish.events);
            publish.head.send_replace(info);
        }
        Ok(ImportOutcome::SideChain(_)) => {
            metrics.blocks_imported.fetch_add(1, Ordering::Relaxed);
            metrics.side_blocks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(ImportOutcome::AlreadyKnown) => {}
        Err(e) => {
            if e.is_bad_data() {
                metrics.blocks_rejected.fetch_add(1, Ordering::Relaxed);
                warn!(block = %hash, error = %e, "rejected block");
            } else {
                debug!(block = %hash, error = %e, "block not imported");
            }
        }
    }
}

/// Sends the events of one head change: the reorg first (if any), then each new head, then
/// finality if it moved. Nobody listening is not an error.
fn publish_events(
    change: &HeadChange,
    finalized_before: Option<BlockId>,
    finalized_now: Option<BlockId>,
    events: &broadcast::Sender<ChainEvent>,
) {
    if change.is_reorg() {
        let _ = events.send(ChainEvent::Reorg {
            old_head: change.old_head,
            new_head: change.new_head,
            fork_point: change.fork_point,
            reverted: change
                .reverted
                .iter()
                .map(|b| BlockId {
                    height: b.header.height,
                    hash: b.hash(),
                })
                .collect(),
            applied: change.applied.clone(),
        });
    }
    for id in &change.applied {
        let _ = events.send(ChainEvent::NewHead(*id));
    }
    if let Some(now) = finalized_now
        && finalized_before.is_none_or(|before| before.height < now.height)
    {
        let _ = events.send(ChainEvent::Finalized(now));
    }
}

impl ChainHandle {
    /// A receiver of every [`ChainEvent`] from now on.
    pub fn events(&self) -> broadcast::Receiver<ChainEvent> {
        self.events.subscribe()
    }

    pub fn reader(&self) -> &ChainReader {
        &self.reader
    }

    pub fn engine(&self) -> &Arc<dyn ConsensusEngine> {
        &self.engine
    }

    pub fn chain_id(&self) -> chain::ChainId {
        self.chain_id
    }

    pub fn head(&self) -> HeadInfo {
        self.head.borrow().clone()
    }

    /// A receiver that wakes on every head change.
    pub fn subscribe(&self) -> watch::Receiver<HeadInfo> {
        self.head.clone()
    }

    /// A receiver of the mempool's size that wakes whenever it changes (transactions
    /// admitted, or taken by a block).
    pub fn subscribe_pool(&self) -> watch::Receiver<usize> {
        self.pool_size.clone()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ActorStopped> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ActorStopped)?;
        rx.await.map_err(|_| ActorStopped)
    }

    fn ask_blocking<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ActorStopped> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .blocking_send(make(tx))
            .map_err(|_| ActorStopped)?;
        rx.blocking_recv().map_err(|_| ActorStopped)
    }

    pub async fn import(
        &self,
        block: Block,
    ) -> Result<Result<ImportOutcome, BlockError>, ActorStopped> {
        self.ask(|reply| Command::Import {
            block: Box::new(block),
            reply,
        })
        .await
    }

    /// Imports a block decided by votes, with its certificate.
    pub async fn import_certified(
        &self,
        block: CertifiedBlock,
    ) -> Result<Result<ImportOutcome, BlockError>, ActorStopped> {
        self.ask(|reply| Command::ImportCertified {
            block: Box::new(block),
            reply,
        })
        .await
    }

    /// Checks that `block` is a valid child of the head without storing it.
    pub async fn validate_proposal(
        &self,
        block: Block,
    ) -> Result<Result<(), BlockError>, ActorStopped> {
        self.ask(|reply| Command::ValidateProposal {
            block: Box::new(block),
            reply,
        })
        .await
    }

    /// The head with the voters of its child, read in one step by the actor.
    pub async fn voting_head(&self) -> Result<Result<VotingHead, EngineError>, ActorStopped> {
        self.ask(|reply| Command::VotingHead { reply }).await
    }

    /// Fills `header` (whose engine fields the producer prepared) with mempool txs on the
    /// head state, from async code.
    pub async fn build(
        &self,
        header: chain::Header,
        max_txs: usize,
    ) -> Result<Result<Block, BlockError>, ActorStopped> {
        self.ask(|reply| Command::Build {
            header: Box::new(header),
            max_txs,
            reply,
        })
        .await
    }

    /// For threads outside the async runtime (the producer).
    pub fn import_blocking(
        &self,
        block: Block,
    ) -> Result<Result<ImportOutcome, BlockError>, ActorStopped> {
        self.ask_blocking(|reply| Command::Import {
            block: Box::new(block),
            reply,
        })
    }

    pub async fn submit_tx(
        &self,
        tx: Transaction,
    ) -> Result<Result<TxHash, MempoolError>, ActorStopped> {
        self.ask(|reply| Command::SubmitTx {
            tx: Box::new(tx),
            reply,
        })
        .await
    }

    /// Verifies the signatures of `txs` on a blocking thread through the shared signature
    /// cache, so that admission inside the actor finds each valid one there instead of
    /// verifying it on the actor's single thread (where it would hold up imports and every
    /// other command). The verdicts stay the actor's: a transaction that fails here is
    /// only not cached, and is refused there with its reason. The first failure stops the
    /// rest, as the actor stops a gossip batch at its first bad transaction: a batch of
    /// forgeries costs one check, not one each, and a forgery after valid transactions
    /// at most [`WARM_RUN`] checks more than one by one would.
    ///
    /// One batch is checked on one thread; batches from RPC callers and from each peer
    /// run side by side. (Fanning each batch out on rayon cost more than it gave under
    /// load: its workers spin between the many small jobs, 3% of a node's CPU at 4,000
    /// transfers a second.)
    pub async fn warm_signatures(&self, txs: Vec<Transaction>) -> Vec<Transaction> {
        let txs = Arc::new(txs);
        let (shared, cache, chain_id) = (txs.clone(), self.signatures.clone(), self.chain_id);
        let _ = tokio::task::spawn_blocking(move || {
            // Checked together in runs of 1, 2, 4, … up to WARM_RUN (a batch check costs
            // less per signature), stopping after the first run with a failure.
            let mut run = 1;
            let mut rest = &shared[..];
            while !rest.is_empty() {
                let (now, later) = rest.split_at(run.min(rest.len()));
                let verdicts = Transaction::check_stateless_batch_cached(now, chain_id, &cache);
                if verdicts.iter().any(Result::is_err) {
                    break;
                }
                rest = later;
                run = (run * 2).min(WARM_RUN);
            }
        })
        .await;
        Arc::try_unwrap(txs).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Admits a batch of transactions in one trip to the actor (see
    /// [`Ledger::submit_batch`]): one result per transaction tried, in order.
    pub async fn submit_txs(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<TxHash, MempoolError>>, ActorStopped> {
        self.ask(|reply| Command::SubmitTxs {
            txs,
            independent: false,
            reply,
        })
        .await
    }

    /// Admits transactions from independent callers (an RPC batch) in one trip to the
    /// actor, in order, each judged on its own: one result per transaction.
    pub async fn submit_txs_each(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<TxHash, MempoolError>>, ActorStopped> {
        self.ask(|reply| Command::SubmitTxs {
            txs,
            independent: true,
            reply,
        })
        .await
    }

    /// Pending transactions to announce, best first, bounded in count and encoded bytes.
    pub async fn pending_txs(
        &self,
        max_txs: usize,
        max_bytes: usize,
    ) -> Result<Vec<Transaction>, ActorStopped> {
        self.ask(|reply| Command::PendingTxs {
            max_txs,
            max_bytes,
            reply,
        })
        .await
    }

    /// Fills `header` (whose engine fields the producer prepared) with mempool txs on the
    /// head state.
    pub fn build_blocking(
        &self,
        header: chain::Header,
        max_txs: usize,
    ) -> Result<Result<Block, BlockError>, ActorStopped> {
        self.ask_blocking(|reply| Command::Build {
            header: Box::new(header),
            max_txs,
            reply,
        })
    }

    pub async fn pending_nonce(
        &self,
        address: Address,
    ) -> Result<Result<u64, StoreError>, ActorStopped> {
        self.ask(|reply| Command::PendingNonce { address, reply })
            .await
    }

    pub async fn is_pending(&self, hash: TxHash) -> Result<bool, ActorStopped> {
        self.ask(|reply| Command::IsPending { hash, reply }).await
    }

    /// For each of `hashes`, whether it is in the mempool: one trip to the actor.
    pub async fn pending_among(&self, hashes: Vec<TxHash>) -> Result<Vec<bool>, ActorStopped> {
        self.ask(|reply| Command::PendingAmong { hashes, reply })
            .await
    }
}
