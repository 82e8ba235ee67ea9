//! The node's side of the network: gossip in (decode, import, tell the net layer whether to
//! forward or penalise), sync requests answered from the store, and range sync from peers
//! that are ahead — used both by a late joiner and after a partition. Blocks whose parent
//! is unknown wait in a bounded orphan pool and trigger a sync with their sender.
//!
//! With `--net-delay MS` (fault tests) every gossip message and every sync response is
//! handled MS milliseconds after it arrived, in arrival order: gossip waits in a bounded
//! queue drained by the event loop's own timer (so inbound sync requests and peer events
//! are still served at once), and a sync task waits out the delay after each response.

use crate::actor::ChainHandle;
use crate::metrics::Metrics;
use crate::orphans::{Admission, OrphanPool};
use crate::rpc::NetView;
use crate::tx_relay::TxRelay;
use crate::voting::{EngineMessage, VotingInbox};
use chain::{
    Block, BlockError, Canonical, CertifiedBlock, ChainView, EngineError, Height, ImportOutcome,
    MempoolError, TxBatch, TxHash,
};
use net::{
    Client, Event, EventStream, MessageId, PeerId, SyncRequest, SyncResponse, Topic, Verdict,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, watch};
use tracing::{debug, info, warn};

/// Blocks asked for in one sync request (the net layer's cap).
const SYNC_BATCH: u32 = 128;
/// Bytes of blocks put in one sync response at most.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// How often peers are asked for their status.
const STATUS_INTERVAL: Duration = Duration::from_secs(3);
/// Gossip messages held at most while `--net-delay` delays them; when full, no further
/// event is read until the oldest is due (the net layer then sheds, as for a slow node).
const MAX_DELAYED: usize = 4096;
/// Gossiped transaction batches waiting for admission at most (each up to 1,024
/// transactions or 256 KiB, so 16 MiB at worst); one more is dropped unjudged (its
/// transactions come again with the sender's next announcement of what it holds). With
/// 32, honest peers' bursts at saturation overflowed it and confirmed about 8% less.
const TX_INTAKE_BATCHES: usize = 64;
/// Of those, the most one forwarding peer may have waiting: a peer that floods fills half
/// the queue, and the other peers' batches still find room.
const TX_INTAKE_PER_PEER: usize = TX_INTAKE_BATCHES / 2;
/// Longest `--net-delay` accepted.
pub const MAX_NET_DELAY_MS: u64 = 60_000;

/// Events held back by `--net-delay`, each with the instant it becomes due, oldest first.
#[derive(Debug, Default)]
struct DelayQueue {
    items: VecDeque<(tokio::time::Instant, Event)>,
}

impl DelayQueue {
    fn is_full(&self) -> bool {
        self.items.len() >= MAX_DELAYED
    }

    fn push(&mut self, due: tokio::time::Instant, event: Event) {
        self.items.push_back((due, event));
    }

    /// When the oldest event is due; `None` when empty.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.items.front().map(|(due, _)| *due)
    }

    /// The oldest event if it is due at `now`.
    fn pop_due(&mut self, now: tokio::time::Instant) -> Option<Event> {
        if self.next_due()? <= now {
            self.items.pop_front().map(|(_, e)| e)
        } else {
            None
        }
    }
}

/// The verdict on a gossiped transaction batch from what the pool made of each: rejected
/// (and its sender penalised) when one can never be valid, as a single transaction was;
/// otherwise forwarded when at least one was new to us, and dropped quietly when none was
/// (an announcement of what we hold, or transactions not valid yet or any more).
fn batch_verdict(results: &[Result<TxHash, MempoolError>]) -> Verdict {
    if results
        .iter()
        .any(|r| matches!(r, Err(e) if e.is_bad_data()))
    {
        Verdict::Reject
    } else if results.iter().any(Result::is_ok) {
        Verdict::Accept
    } else {
        Verdict::Ignore
    }
}

#[derive(Clone, Debug)]
struct Ctx {
    chain: ChainHandle,
    client: Client,
    view: NetView,
    metrics: Arc<Metrics>,
    orphans: Arc<Mutex<OrphanPool>>,
    /// One range sync at a time.
    sync_lock: Arc<Mutex<()>>,
    /// `--net-delay`: how long after arrival gossip and sync responses are handled.
    delay: Duration,
    /// A voting engine's driver, which takes the engine topic's messages.
    voting: Option<VotingInbox>,
    /// The engine imports blocks only with their certificates: gossip and sync carry
    /// [`CertifiedBlock`]s, and a plain block is refused.
    certified: bool,
    /// Announces the pending transactions to a peer that connects.
    relay: Option<TxRelay>,
    /// Transaction gossip on its way to admission, which runs on a task of its own: a
    /// batch's signature checks take milliseconds, and a block or vote must not wait
    /// behind them.
    tx_intake: TxIntake,
}

/// The bounded queue of gossiped transaction batches in front of the admission task, with
/// a count of each forwarding peer's batches in it.
#[derive(Clone, Debug)]
struct TxIntake {
    queue: mpsc::Sender<TxGossip>,
    waiting: Arc<std::sync::Mutex<HashMap<PeerId, usize>>>,
}

impl TxIntake {
    fn new() -> (TxIntake, mpsc::Receiver<TxGossip>) {
        let (queue, intake) = mpsc::channel(TX_INTAKE_BATCHES);
        let waiting = Arc::default();
        (TxIntake { queue, waiting }, intake)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, usize>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `gossip`; hands it back when the queue is full or its sender already has
    /// [`TX_INTAKE_PER_PEER`] batches waiting.
    fn offer(&self, gossip: TxGossip) -> Option<TxGossip> {
        let mut waiting = self.waiting();
        let count = waiting.entry(gossip.source).or_default();
        if *count >= TX_INTAKE_PER_PEER {
            return Some(gossip);
        }
        match self.queue.try_send(gossip) {
            Ok(()) => {
                *count += 1;
                None
            }
            Err(
                mpsc::error::TrySendError::Full(gossip) | mpsc::error::TrySendError::Closed(gossip),
            ) => {
                if *count == 0 {
                    waiting.remove(&gossip.source);
                }
                Some(gossip)
            }
        }
    }

    /// The admission task took a batch from `source` off the queue.
    fn taken(&self, source: &PeerId) {
        let mut waiting = self.waiting();
        if let Some(count) = waiting.get_mut(source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                waiting.remove(source);
            }
        }
    }
}

/// A gossiped transaction batch waiting for admission and its verdict.
#[derive(Debug)]
struct TxGossip {
    data: Vec<u8>,
    source: PeerId,
    id: MessageId,
}

/// What the network side of a node is given at start.
#[derive(Debug)]
pub struct NetworkTask {
    pub events: EventStream,
    pub chain: ChainHandle,
    pub client: Client,
    pub view: NetView,
    pub metrics: Arc<Metrics>,
    /// `--net-delay`.
    pub delay: Duration,
    /// The voting engine's driver, when the engine decides by votes.
    pub voting: Option<VotingInbox>,
    /// The transaction relay, told when a peer connects.
    pub relay: Option<TxRelay>,
}

/// Runs until the event stream ends or `shutdown` flips. `delay` (`--net-delay`) holds
/// every gossip message and sync response back that long; zero handles them at once.
pub async fn run(task: NetworkTask, mut shutdown: watch::Receiver<bool>) {
    let NetworkTask {
        mut events,
        chain,
        client,
        view,
        metrics,
        delay,
        voting,
        relay,
    } = task;
    let certified = chain.engine().requires_certificate();
    let (tx_intake, intake) = TxIntake::new();
    let ctx = Ctx {
        chain,
        client,
        view,
        metrics,
        orphans: Arc::new(Mutex::new(OrphanPool::default())),
        sync_lock: Arc::new(Mutex::new(())),
        delay,
        voting,
        certified,
        relay,
        tx_intake,
    };
    tokio::spawn(admit_tx_gossip(ctx.clone(), intake, shutdown.clone()));
    let mut ticker = tokio::time::interval(STATUS_INTERVAL);
    let mut delayed = DelayQueue::default();
    loop {
        let next_due = delayed.next_due();
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = ticker.tick() => {
                let ctx = ctx.clone();
                tokio::spawn(async move { ctx.poll_peers().await });
            }
            _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(tokio::time::Instant::now)).await }, if next_due.is_some() => {
                let now = tokio::time::Instant::now();
                while let Some(event) = delayed.pop_due(now) {
                    ctx.handle(event).await;
                }
            }
            event = events.next(), if !delayed.is_full() => {
                let Some(event) = event else { break };
                if !delay.is_zero() && matches!(event, Event::Gossip { .. }) {
                    delayed.push(tokio::time::Instant::now() + delay, event);
                } else {
                    ctx.handle(event).await;
                }
            }
        }
    }
}

/// Admits gossiped transaction batches one after another, in the order they came, and
/// reports each verdict, until `shutdown` flips.
async fn admit_tx_gossip(
    ctx: Ctx,
    mut intake: mpsc::Receiver<TxGossip>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let gossip = tokio::select! {
            _ = shutdown.changed() => break,
            gossip = intake.recv() => match gossip {
                Some(gossip) => gossip,
                None => break,
            },
        };
        ctx.tx_intake.taken(&gossip.source);
        let verdict = ctx.on_gossip_txs(&gossip.data, gossip.source).await;
        ctx.report(gossip.id, gossip.source, verdict).await;
    }
}

impl Ctx {
    async fn handle(&self, event: Event) {
        match event {
            Event::Gossip {
                topic,
                data,
                source,
                id,
            } => {
                if topic == Topic::Engine
                    && let Some(inbox) = &self.voting
                {
                    // The driver reports the verdict once the machine has judged it.
                    if let Err(message) = inbox.offer(EngineMessage { data, source, id }) {
                        debug!("voting driver busy; consensus message dropped");
                        let _ = self
                            .client
                            .report(message.id, message.source, Verdict::Ignore)
                            .await;
                    }
                    return;
                }
                let verdict = match topic {
                    Topic::Block if self.certified => self.on_gossip_certified(&data, source).await,
                    Topic::Block => self.on_gossip_block(&data, source).await,
                    // Judged by the admission task, which reports the verdict.
                    Topic::Tx => return self.queue_txs(TxGossip { data, source, id }).await,
                    Topic::Engine => self.on_engine_message(data).await,
                };
                self.report(id, source, verdict).await;
            }
            Event::InboundRequest {
                peer,
                request,
                channel,
            } => {
                let response = self.answer(&request);
                if let Err(e) = self.client.respond(channel, response).await {
                    debug!(%peer, error = %e, "could not answer a sync request");
                }
            }
            Event::PeerConnected { peer, addr } => {
                info!(%peer, %addr, "peer connected");
                self.update_peer_count().await;
                if let Some(relay) = &self.relay {
                    relay.announce_pending();
                }
                let ctx = self.clone();
                tokio::spawn(async move { ctx.sync_with(peer).await });
            }
            Event::PeerDisconnected { peer } => {
                debug!(%peer, "peer disconnected");
                if let Ok(mut heights) = self.view.peer_heights.lock() {
                    heights.remove(&peer.to_string());
                }
                self.update_peer_count().await;
            }
            Event::PeerBanned {
                peer,
                duration,
                reason,
            } => {
                warn!(%peer, ?duration, ?reason, "peer banned");
            }
            Event::WrongChain {
                peer,
                protocol_version,
            } => {
                warn!(%peer, %protocol_version, "peer is on another chain; disconnected");
            }
            Event::NewListenAddr { addr } => info!(%addr, "listening for peers"),
        }
    }

    /// Tells the net layer what to do with a gossip message (forward, drop or penalise).
    async fn report(&self, id: MessageId, source: PeerId, verdict: Verdict) {
        if verdict == Verdict::Reject {
            self.metrics.gossip_rejected.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.client.report(id, source, verdict).await;
    }

    /// Hands a transaction batch to the admission task; when the queue or its sender's
    /// share of it is full, drops it unjudged (neither forwarded nor held against its
    /// sender).
    async fn queue_txs(&self, gossip: TxGossip) {
        if let Some(gossip) = self.tx_intake.offer(gossip) {
            self.metrics
                .tx_gossip_dropped
                .fetch_add(1, Ordering::Relaxed);
            debug!(source = %gossip.source, "transaction gossip dropped: admission is behind");
            self.report(gossip.id, gossip.source, Verdict::Ignore).await;
        }
    }

    async fn update_peer_count(&self) {
        if let Ok(peers) = self.client.peers().await {
            self.metrics
                .peers
                .store(peers.len() as u64, Ordering::Relaxed);
        }
    }

    async fn on_gossip_block(&self, data: &[u8], source: PeerId) -> Verdict {
        let block = match Block::decode(data) {
            Ok(b) => b,
            Err(e) => {
                warn!(%source, error = %e, "undecodable block gossip");
                return Verdict::Reject;
            }
        };
        match self.import(block.clone()).await {
            Ok(()) => Verdict::Accept,
            Err(Some(BlockError::UnknownParent { parent })) => {
                let admission = self.orphans.lock().await.insert(block, data.len(), source);
                if let Admission::Flooding { evicted } = admission {
                    warn!(%source, evicted, "orphan flood: blocks on unknown parents that never connect");
                    return Verdict::Reject;
                }
                debug!(%parent, "orphan block; fetching its ancestors");
                let ctx = self.clone();
                tokio::spawn(async move { ctx.sync_with(source).await });
                Verdict::Ignore
            }
            Err(Some(e)) if e.is_bad_data() => Verdict::Reject,
            Err(Some(e)) => {
                // Not the sender's fault (a timestamp ahead of our clock, below finality).
                info!(%source, error = %e, "gossiped block not imported");
                Verdict::Ignore
            }
            Err(None) => Verdict::Ignore,
        }
    }

    /// A decided block with its certificate (voting engines). Its parent must be our head;
    /// a node that is behind fetches the blocks in between by range sync, which carries
    /// certificates too. A plain block does not decode, so it is refused and not stored.
    async fn on_gossip_certified(&self, data: &[u8], source: PeerId) -> Verdict {
        let certified = match CertifiedBlock::decode(data) {
            Ok(c) => c,
            Err(e) => {
                warn!(%source, error = %e, "block gossip without a valid certificate encoding");
                return Verdict::Reject;
            }
        };
        match self.chain.import_certified(certified).await {
            Err(_) => Verdict::Ignore,
            Ok(Ok(_)) => Verdict::Accept,
            Ok(Err(BlockError::UnknownParent { parent })) => {
                debug!(%parent, "certified block ahead of our head; syncing");
                let ctx = self.clone();
                tokio::spawn(async move { ctx.sync_with(source).await });
                Verdict::Ignore
            }
            Ok(Err(e)) if e.is_bad_data() => {
                warn!(%source, error = %e, "certified block refused");
                Verdict::Reject
            }
            Ok(Err(e)) => {
                info!(%source, error = %e, "certified block not imported");
                Verdict::Ignore
            }
        }
    }

    /// An engine message (BFT votes, Raft appends): the engine judges it on the chain as it
    /// is and may answer with messages to broadcast. Engines without messages refuse them,
    /// which is no fault of the sender's.
    async fn on_engine_message(&self, data: Vec<u8>) -> Verdict {
        self.metrics.engine_messages.fetch_add(1, Ordering::Relaxed);
        let chain = self.chain.clone();
        let handled = tokio::task::spawn_blocking(move || {
            chain.engine().handle_message(chain.reader(), &data)
        })
        .await;
        match handled {
            Ok(Ok(replies)) => {
                for reply in replies {
                    if let Err(e) = self.client.publish(Topic::Engine, reply).await {
                        debug!(error = %e, "engine reply not sent");
                    }
                }
                Verdict::Accept
            }
            Ok(Err(EngineError::Rejected { engine, source })) => {
                debug!(engine, reason = %source, "engine message refused");
                Verdict::Reject
            }
            Ok(Err(e)) => {
                debug!(error = %e, "engine message not handled");
                Verdict::Ignore
            }
            Err(e) => {
                warn!(error = %e, "engine message handler failed");
                Verdict::Ignore
            }
        }
    }

    /// A batch of transactions: each is offered to the pool in one trip to the actor, and
    /// the batch is judged by [`batch_verdict`].
    async fn on_gossip_txs(&self, data: &[u8], source: PeerId) -> Verdict {
        let batch = match TxBatch::decode(data) {
            Ok(batch) => batch,
            Err(e) => {
                warn!(%source, error = %e, "undecodable transaction gossip");
                return Verdict::Reject;
            }
        };
        // Verified in parallel off the chain actor; known ones are cache hits.
        let txs = self.chain.warm_signatures(batch.txs).await;
        match self.chain.submit_txs(txs).await {
            Ok(results) => {
                let verdict = batch_verdict(&results);
                if verdict == Verdict::Reject
                    && let Some(Err(e)) = results.last()
                {
                    warn!(%source, error = %e, "gossiped transaction batch carries an invalid transaction");
                }
                verdict
            }
            Err(_) => Verdict::Ignore,
        }
    }

    /// Imports a block, then any orphans waiting for it. `Err(None)` when the node is
    /// stopping.
    async fn import(&self, block: Block) -> Result<(), Option<BlockError>> {
        let hash = block.hash();
        match self.chain.import(block).await {
            Err(_) => return Err(None),
            Ok(Err(e)) => return Err(Some(e)),
            Ok(Ok(outcome)) => {
                if let ImportOutcome::NewHead(change) = &outcome
                    && change.is_reorg()
                {
                    info!(
                        depth = change.reverted.len(),
                        new_head = %change.new_head.hash.short(),
                        "reorg"
                    );
                }
            }
        }
        let mut ready = vec![hash];
        while let Some(parent) = ready.pop() {
            let children = self.orphans.lock().await.children_of(&parent);
            for child in children {
                let child_hash = child.hash();
                if let Ok(Ok(_)) = self.chain.import(child).await {
                    ready.push(child_hash);
                }
            }
        }
        Ok(())
    }

    /// Imports a synced block with its certificate, which the chain checks against the
    /// voters of its parent. `Err(None)` when the node is stopping.
    async fn import_synced_certified(
        &self,
        certified: CertifiedBlock,
    ) -> Result<(), Option<BlockError>> {
        match self.chain.import_certified(certified).await {
            Err(_) => Err(None),
            Ok(Err(e)) => Err(Some(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// A sync request to `peer`; with `--net-delay` the response is handed over only once
    /// the delay since its arrival has passed (this task waits, the event loop does not).
    async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, net::NetError> {
        let response = self.client.request(peer, request).await;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        response
    }

    /// Answers a peer's sync request from the store.
    fn answer(&self, request: &SyncRequest) -> SyncResponse {
        let reader = self.chain.reader();
        let head = self.chain.head();
        match request {
            SyncRequest::Status => SyncResponse::Status {
                genesis: reader.genesis().hash(),
                head_height: head.id.height,
                head_hash: head.id.hash,
                total_weight: head.total_weight,
            },
            SyncRequest::Blocks { from, count } | SyncRequest::Headers { from, count } => {
                let headers_only = matches!(request, SyncRequest::Headers { .. });
                let mut items = Vec::new();
                let mut bytes = 0usize;
                let last = from.0.saturating_add(u64::from((*count).min(SYNC_BATCH)));
                for h in from.0..last.min(head.id.height.0.saturating_add(1)) {
                    let block = match reader.block_at(Height(h)) {
                        Ok(Some(b)) => b,
                        Ok(None) => break,
                        Err(e) => return SyncResponse::error(format!("store error: {e}")),
                    };
                    let encoded = if headers_only {
                        block.header.encode()
                    } else if self.certified {
                        let certificate = match reader.certificate(&block.hash()) {
                            Ok(Some(c)) => c,
                            Ok(None) => {
                                return SyncResponse::error(format!(
                                    "block {h} has no stored certificate"
                                ));
                            }
                            Err(e) => return SyncResponse::error(format!("store error: {e}")),
                        };
                        CertifiedBlock { block, certificate }.encode()
                    } else {
                        block.encode()
                    };
                    if bytes + encoded.len() > MAX_RESPONSE_BYTES {
                        break;
                    }
                    bytes += encoded.len();
                    items.push(encoded);
                }
                if headers_only {
                    SyncResponse::Headers(items)
                } else {
                    SyncResponse::Blocks(items)
                }
            }
        }
    }

    /// Asks every peer for its status; syncs from the heaviest one ahead of us.
    async fn poll_peers(&self) {
        let Ok(peers) = self.client.peers().await else {
            return;
        };
        self.metrics
            .peers
            .store(peers.len() as u64, Ordering::Relaxed);
        let mut best: Option<(PeerId, chain::Weight)> = None;
        for peer in peers {
            if let Ok(SyncResponse::Status {
                head_height,
                head_hash,
                total_weight,
                ..
            }) = self.request(peer.peer_id, SyncRequest::Status).await
            {
                if let Ok(mut heights) = self.view.peer_heights.lock() {
                    heights.insert(peer.peer_id.to_string(), head_height.0);
                }
                if self.peer_is_better(total_weight, &head_hash)
                    && best.as_ref().is_none_or(|(_, w)| total_weight > *w)
                {
                    best = Some((peer.peer_id, total_weight));
                }
            }
        }
        if let Some((peer, _)) = best {
            self.sync_with(peer).await;
        }
    }

    /// Range sync from `peer` while it is heavier than us. Steps back when its blocks do not
    /// attach (we are on another branch) until they do, so reorgs are followed on the way.
    /// Whether a peer's branch (its total weight and head) would replace our head by our
    /// engine's fork choice: heavier, or as heavy and winning the engine's tie-break (PoA
    /// takes the lower tip hash, so equal branches left by a split are fetched and settle
    /// the same way everywhere). A head we already hold has been weighed.
    fn peer_is_better(&self, weight: chain::Weight, head: &chain::BlockHash) -> bool {
        if ChainView::header(self.chain.reader(), head)
            .ok()
            .flatten()
            .is_some()
        {
            return false;
        }
        let ours = self.chain.head();
        chain::fork_choice::prefer(
            weight,
            head,
            ours.total_weight,
            &ours.id.hash,
            self.chain.engine().tie_break(),
        )
    }

    async fn sync_with(&self, peer: PeerId) {
        let Ok(_guard) = self.sync_lock.try_lock() else {
            return;
        };
        let (status, peer_head) = match self.request(peer, SyncRequest::Status).await {
            Ok(SyncResponse::Status {
                head_height,
                head_hash,
                total_weight,
                genesis,
            }) if genesis == self.chain.reader().genesis().hash() => {
                ((head_height, total_weight), head_hash)
            }
            Ok(_) => return,
            Err(e) => {
                debug!(%peer, error = %e, "status request failed");
                return;
            }
        };
        if let Ok(mut heights) = self.view.peer_heights.lock() {
            heights.insert(peer.to_string(), status.0.0);
        }
        if !self.peer_is_better(status.1, &peer_head) {
            return;
        }
        self.view.syncing.store(true, Ordering::Relaxed);
        let start_height = self.chain.head().id.height.0;
        info!(%peer, from = start_height, to = status.0.0, "syncing");
        // From the peer's tip when it is not above ours: a heavier branch of the same or a
        // lower height (an in-turn PoA block beating an out-of-turn one made before the two
        // nodes connected) has nothing above our height to fetch.
        let mut from = (start_height + 1).min(status.0.0).max(1);
        let mut imported = 0u64;
        let mut step_back = u64::from(SYNC_BATCH);
        'outer: while self.peer_is_better(status.1, &peer_head) {
            let response = match self
                .request(
                    peer,
                    SyncRequest::Blocks {
                        from: Height(from),
                        count: SYNC_BATCH,
                    },
                )
                .await
            {
                Ok(SyncResponse::Blocks(items)) => items,
                Ok(_) | Err(_) => break,
            };
            if response.is_empty() {
                break;
            }
            let count = response.len() as u64;
            for raw in response {
                let imported_one = if self.certified {
                    match CertifiedBlock::decode(&raw) {
                        Ok(c) => self.import_synced_certified(c).await,
                        Err(e) => {
                            warn!(%peer, error = %e, "peer sent an undecodable certified block; banning");
                            let _ = self.client.ban(peer, Duration::from_secs(600)).await;
                            break 'outer;
                        }
                    }
                } else {
                    match Block::decode(&raw) {
                        Ok(b) => self.import(b).await,
                        Err(e) => {
                            warn!(%peer, error = %e, "peer sent an undecodable block; banning");
                            let _ = self.client.ban(peer, Duration::from_secs(600)).await;
                            break 'outer;
                        }
                    }
                };
                match imported_one {
                    Ok(()) => imported += 1,
                    Err(Some(BlockError::UnknownParent { .. })) => {
                        if from <= 1 {
                            break 'outer;
                        }
                        // Our branch differs below `from`: fetch from further back.
                        from = from.saturating_sub(step_back).max(1);
                        step_back = step_back.saturating_mul(2);
                        continue 'outer;
                    }
                    Err(Some(e)) if e.is_bad_data() => {
                        warn!(%peer, error = %e, "peer sent an invalid block; banning");
                        let _ = self.client.ban(peer, Duration::from_secs(600)).await;
                        break 'outer;
                    }
                    Err(Some(e)) => {
                        info!(%peer, error = %e, "synced block not imported; sync stops");
                        break 'outer;
                    }
                    Err(None) => break 'outer,
                }
            }
            from += count;
        }
        self.view.syncing.store(false, Ordering::Relaxed);
        info!(%peer, imported, height = self.chain.head().id.height.0, "sync finished");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::TxError;
    use chain::crypto::CryptoError;

    #[test]
    fn a_batch_is_judged_by_its_worst_and_its_news() {
        let new = Ok(TxHash([1; 32]));
        let known = Err(MempoolError::AlreadyKnown {
            hash: TxHash([2; 32]),
        });
        let stale = Err(MempoolError::Invalid(TxError::NonceTooLow {
            expected: 3,
            got: 1,
        }));
        let forged = Err(MempoolError::Invalid(TxError::Signature(
            CryptoError::BadSignature,
        )));
        type Results = Vec<Result<TxHash, MempoolError>>;
        let cases: [(&str, Results, Verdict); 5] = [
            ("all new", vec![new.clone(), new.clone()], Verdict::Accept),
            (
                "one new among known",
                vec![known.clone(), new.clone()],
                Verdict::Accept,
            ),
            (
                "an announcement of known txs",
                vec![known.clone(), stale.clone()],
                Verdict::Ignore,
            ),
            (
                "a forged one after good ones",
                vec![new.clone(), forged.clone()],
                Verdict::Reject,
            ),
            ("only a forged one", vec![forged], Verdict::Reject),
        ];
        for (case, results, verdict) in cases {
            assert_eq!(batch_verdict(&results), verdict, "{case}");
        }
    }

    /// Transaction gossip waits in a bounded queue for the admission task, so a block
    /// gossiped behind it is imported at once (before, the event loop verified each batch
    /// itself and a block waited behind every batch that came first). A batch over the
    /// bound, or over its forwarding peer's half of it, is dropped unjudged and counted, so
    /// one flooding peer cannot crowd out the others.
    #[tokio::test]
    async fn a_block_is_imported_while_transaction_gossip_waits_and_the_queue_is_bounded() {
        use chain::test_utils::{TestEngine, build_on_head, memory_chain};
        let engine = TestEngine::default();
        let producer = chain::dev::dev_address("alice").expect("a dev account");
        let block = build_on_head(&memory_chain(engine.clone()), 1, producer, Vec::new());
        let node_chain = memory_chain(engine);
        let genesis = node_chain.genesis().hash();
        let metrics = Arc::new(Metrics::default());
        let mempool = chain::Mempool::new(chain::ChainId(1337), Default::default());
        let (chain, _actor) = crate::actor::spawn(node_chain, mempool, metrics.clone());
        let config = net::NetworkConfig::new(net::Keypair::generate_ed25519(), genesis);
        let (client, _events, event_loop) = net::new(config).expect("network");
        tokio::spawn(event_loop.run());
        // Nobody drains the queue unless the test does: admission is as far behind as it
        // gets.
        let (tx_intake, mut stalled) = TxIntake::new();
        let ctx = Ctx {
            chain: chain.clone(),
            client,
            view: NetView::default(),
            metrics: metrics.clone(),
            orphans: Arc::new(Mutex::new(OrphanPool::default())),
            sync_lock: Arc::new(Mutex::new(())),
            delay: Duration::ZERO,
            voting: None,
            certified: false,
            relay: None,
            tx_intake,
        };
        let (flooder, honest, late) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut sent = 0usize;
        let mut offer = |source: PeerId, topic: Topic, data: Vec<u8>| {
            sent += 1;
            let gossip = Event::Gossip {
                topic,
                data,
                source,
                id: MessageId::new(&sent.to_le_bytes()),
            };
            let ctx = ctx.clone();
            async move {
                // Handing a batch over never waits for admission (a bounded guard against
                // hanging, not a timing).
                tokio::time::timeout(Duration::from_secs(60), ctx.handle(gossip))
                    .await
                    .expect("transaction gossip is queued, not admitted, by the event loop");
            }
        };
        let dropped = || metrics.tx_gossip_dropped.load(Ordering::Relaxed);
        for _ in 0..=TX_INTAKE_PER_PEER {
            offer(flooder, Topic::Tx, vec![1, 2, 3]).await;
        }
        assert_eq!(dropped(), 1, "the flooder's batch over its share");
        for _ in 0..TX_INTAKE_PER_PEER {
            offer(honest, Topic::Tx, vec![4, 5, 6]).await;
        }
        assert_eq!(dropped(), 1, "another peer's batches still find room");
        offer(late, Topic::Tx, vec![7]).await;
        assert_eq!(dropped(), 2, "the queue is full");
        // The admission task takes one of the flooder's: room for one more of its batches.
        let first = stalled.try_recv().expect("a queued batch");
        assert_eq!(first.source, flooder);
        ctx.tx_intake.taken(&first.source);
        offer(flooder, Topic::Tx, vec![1, 2, 3]).await;
        assert_eq!(dropped(), 2);
        assert_eq!(metrics.gossip_rejected.load(Ordering::Relaxed), 0);

        offer(flooder, Topic::Block, block.encode()).await;
        assert_eq!(chain.head().id.hash, block.hash(), "the block is the head");
    }
}
