//! The authoring loop: on every head, ask the engine when it is our turn, build a template
//! from the mempool, seal it (a nonce search or a signature), import it and gossip it. A new
//! head raises the cancel flag, so a seal search on a stale parent stops at once.
//!
//! Between steps the loop sleeps on events, not on a timer: the actor's head channel (a
//! new head ends a wait for our turn at once), its mempool-size channel (an `--on-demand`
//! producer wakes when the first transaction arrives) and the control's signal (a stop, or
//! blocks asked for by `dev_mine`). Each wait also has a timeout, after which the engine is
//! asked again.

use crate::actor::{ActorStopped, ChainHandle};
use crate::metrics::Metrics;
use chain::{
    Block, BlockHash, BlockProducer, CancelFlag, Canonical, ChainReader, ChainView, Clock, Header,
    ImportOutcome, SealedHeader, Turn,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Transactions put in one produced block at most.
pub const MAX_BLOCK_TXS: usize = 5_000;
/// How long the loop waits before asking the engine again after it found no turn or
/// failed, unless a new head comes first.
const RETRY_WAIT: Duration = Duration::from_secs(1);
/// How long an idle `--on-demand` producer waits for transactions before it looks again.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Steers the loop from outside: stop it (and any seal in progress), or ask for blocks now
/// (`dev_mine`), which overrides `--on-demand`'s wait for transactions.
#[derive(Clone, Debug)]
pub struct ProducerControl {
    stopped: Arc<AtomicBool>,
    current: Arc<Mutex<Option<CancelFlag>>>,
    requested: Arc<AtomicU64>,
    /// Bumped on every stop and request, to wake the loop wherever it waits.
    signal: Arc<watch::Sender<u64>>,
}

impl Default for ProducerControl {
    fn default() -> Self {
        ProducerControl {
            stopped: Arc::default(),
            current: Arc::default(),
            requested: Arc::default(),
            signal: Arc::new(watch::channel(0).0),
        }
    }
}

impl ProducerControl {
    /// Asks for `n` more blocks, even with nothing to include.
    pub fn request_blocks(&self, n: u64) {
        self.requested.fetch_add(n, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Blocks asked for and not produced yet.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    fn produced_one(&self) {
        let _ = self
            .requested
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake();
        if let Ok(current) = self.current.lock()
            && let Some(flag) = current.as_ref()
        {
            flag.cancel();
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

pub struct ProducerLoop {
    pub chain: ChainHandle,
    pub producer: Arc<dyn BlockProducer>,
    pub clock: Arc<dyn Clock>,
    pub client: Option<net::Client>,
    pub runtime: Handle,
    pub metrics: Arc<Metrics>,
    pub control: ProducerControl,
    /// Produce only while transactions are waiting (no empty blocks when idle).
    pub on_demand: bool,
    /// For producers that sign their blocks: what was signed, kept across restarts.
    pub guard: Option<crate::sign_guard::SignGuard>,
    /// With bootnodes to join, wait this long at most for a first peer before producing,
    /// so a node starting with others does not open the chain with a fork of its own.
    pub wait_for_peer: Option<Duration>,
}

impl std::fmt::Debug for ProducerLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerLoop")
            .field("author", &self.producer.author())
            .finish_non_exhaustive()
    }
}

impl ProducerLoop {
    pub fn spawn(self) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("producer".into())
            .spawn(move || self.run())
            .expect("the OS can start a thread")
    }

    /// Waits up to `timeout` for a head other than `seen`, a stop or a request for blocks,
    /// and with `for_txs` for the mempool to hold a transaction; true when the head moved.
    /// Every source is a channel the waiting thread sleeps on.
    fn wait(&self, seen: &BlockHash, timeout: Duration, for_txs: bool) -> bool {
        // Subscribed before the checks, so nothing that happens after them is missed.
        let mut head = self.chain.subscribe();
        let mut pool = self.chain.subscribe_pool();
        let mut control = self.control.signal.subscribe();
        if self.control.is_stopped() || (for_txs && !self.idle()) {
            return false;
        }
        self.runtime.block_on(async move {
            // A closed channel (the node stopping) never resolves; the timeout ends the wait.
            let moved = async {
                match head.wait_for(|h| h.id.hash != *seen).await {
                    Ok(_) => true,
                    Err(_) => std::future::pending().await,
                }
            };
            let filled = async {
                if !for_txs || pool.wait_for(|size| *size > 0).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                moved = moved => moved,
                () = filled => false,
                _ = control.changed() => false,
                () = tokio::time::sleep(timeout) => false,
            }
        })
    }

    /// `--on-demand` with nothing to include and no block asked for.
    fn idle(&self) -> bool {
        self.on_demand
            && *self.chain.subscribe_pool().borrow() == 0
            && self.control.requested() == 0
    }

    /// With bootnodes to join, waits (bounded) for a first peer before producing.
    fn wait_for_first_peer(&self) {
        let Some(limit) = self.wait_for_peer else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while self.metrics.peers.load(Ordering::Relaxed) == 0
            && std::time::Instant::now() < deadline
            && !self.control.is_stopped()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn run(mut self) {
        self.wait_for_first_peer();
        info!(author = %self.producer.author(), "producing blocks");
        let reader = self.chain.reader().clone();
        while !self.control.is_stopped() {
            if self.produce_one(&reader).is_err() {
                break;
            }
        }
        info!("producer stopped");
    }

    /// One round on the current head: wait for our turn, build, seal, import, gossip.
    /// Returns early (to start over on whatever the head is then) whenever a step cannot
    /// go on; fails only when the chain actor has stopped.
    fn produce_one(&mut self, reader: &ChainReader) -> Result<(), ActorStopped> {
        let head = reader.head();
        if self.idle() {
            self.wait(&head.hash(), IDLE_WAIT, true);
            return Ok(());
        }
        let Some(turn) = self.await_turn(reader, &head) else {
            return Ok(());
        };
        let Some(block) = self.template(reader, &head, &turn)? else {
            return Ok(());
        };
        match self.seal(block, &head) {
            Some(block) => self.import_and_gossip(block),
            None => Ok(()),
        }
    }

    /// Our next turn on `head`, once its time has come; `None` when there is none yet, the
    /// head moved meanwhile, or the loop was stopped.
    fn await_turn(&self, reader: &ChainReader, head: &SealedHeader) -> Option<Turn> {
        let now = self.clock.now_millis();
        let turn = match self.producer.next_turn(reader, head, now) {
            Ok(Some(turn)) => turn,
            Ok(None) => {
                self.wait(&head.hash(), RETRY_WAIT, false);
                return None;
            }
            Err(e) => {
                warn!(error = %e, "cannot tell when to produce next");
                self.wait(&head.hash(), RETRY_WAIT, false);
                return None;
            }
        };
        // A request or a stop also ends a wait early: wait again until the time has come.
        loop {
            let now = self.clock.now_millis();
            if turn.at_millis <= now || self.control.is_stopped() {
                break;
            }
            let until_turn = Duration::from_millis(turn.at_millis - now);
            if self.wait(&head.hash(), until_turn, false) {
                return None;
            }
        }
        (!self.control.is_stopped()).then_some(turn)
    }

    /// The engine's header for `turn`, filled with mempool transactions by the actor.
    fn template(
        &self,
        reader: &ChainReader,
        head: &SealedHeader,
        turn: &Turn,
    ) -> Result<Option<Block>, ActorStopped> {
        let mut header = Header::template(head, self.producer.author(), turn.timestamp);
        if let Err(e) = self.producer.prepare(reader, head, &mut header) {
            warn!(error = %e, "cannot prepare a block");
            self.wait(&head.hash(), RETRY_WAIT, false);
            return Ok(None);
        }
        match self.chain.build_blocking(header, MAX_BLOCK_TXS)? {
            Ok(block) => Ok(Some(block)),
            Err(e) => {
                debug!(error = %e, "template on a stale head; retrying");
                Ok(None)
            }
        }
    }

    /// Seals `block` unless a new head cancels the search first or the sign guard forbids
    /// signing at its timestamp.
    fn seal(&mut self, mut block: Block, head: &SealedHeader) -> Option<Block> {
        let cancel = CancelFlag::new();
        if let Ok(mut current) = self.control.current.lock() {
            *current = Some(cancel.clone());
        }
        let watcher = {
            let mut rx = self.chain.subscribe();
            let cancel = cancel.clone();
            let parent = head.hash();
            self.runtime.spawn(async move {
                let _ = rx.wait_for(|h| h.id.hash != parent).await;
                cancel.cancel();
            })
        };
        let allowed = self.guard_allows(block.header.timestamp.0);
        let sealed = allowed.then(|| self.producer.seal(block.header.clone(), &cancel));
        watcher.abort();
        if !allowed {
            self.wait(&head.hash(), RETRY_WAIT, false);
        }
        match sealed? {
            Ok(Some(header)) => {
                block.header = header;
                Some(block)
            }
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "sealing failed");
                None
            }
        }
    }

    /// For producers that sign: whether a block at `timestamp` may be signed, recorded
    /// before it is (no two blocks for one slot, across restarts too).
    fn guard_allows(&mut self, timestamp: u64) -> bool {
        let Some(guard) = &mut self.guard else {
            return true;
        };
        if !guard.allows(timestamp) {
            warn!(
                timestamp,
                signed = guard.last(),
                "not signing: a block at or after this time was signed before (a restart within one slot?)"
            );
            return false;
        }
        if let Err(e) = guard.record(timestamp) {
            warn!(error = %e, "cannot record the block about to be signed; not signing");
            return false;
        }
        true
    }

    fn import_and_gossip(&self, block: Block) -> Result<(), ActorStopped> {
        let bytes = block.encode();
        let hash = block.hash();
        let txs = block.txs.len();
        match self.chain.import_blocking(block)? {
            Ok(ImportOutcome::NewHead(change)) => {
                self.metrics.blocks_produced.fetch_add(1, Ordering::Relaxed);
                self.control.produced_one();
                info!(
                    height = change.new_head.height.0,
                    hash = %hash.short(),
                    txs,
                    "produced block"
                );
                if let Some(client) = &self.client {
                    let client = client.clone();
                    self.runtime.spawn(async move {
                        if let Err(e) = client.publish(net::Topic::Block, bytes).await {
                            debug!(error = %e, "block gossip not sent");
                        }
                    });
                }
            }
            Ok(other) => debug!(?other, "produced block did not become the head"),
            Err(e) => warn!(error = %e, "own block refused"),
        }
        Ok(())
    }
}
