//! The authoring loop: on every head, ask the engine when it is our turn, build a template
//! from the mempool, seal it (a nonce search or a signature), import it and gossip it. A new
//! head raises the cancel flag, so a seal search on a stale parent stops at once.

use crate::actor::ChainHandle;
use crate::metrics::Metrics;
use chain::{BlockProducer, CancelFlag, Canonical, ChainView, Clock, Header, ImportOutcome};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

/// Transactions put in one produced block at most.
pub const MAX_BLOCK_TXS: usize = 5_000;

/// Steers the loop from outside: stop it (and any seal in progress), or ask for blocks now
/// (`dev_mine`), which overrides `--on-demand`'s wait for transactions.
#[derive(Clone, Debug, Default)]
pub struct ProducerControl {
    stopped: Arc<AtomicBool>,
    current: Arc<Mutex<Option<CancelFlag>>>,
    requested: Arc<AtomicU64>,
}

impl ProducerControl {
    /// Asks for `n` more blocks, even with nothing to include.
    pub fn request_blocks(&self, n: u64) {
        self.requested.fetch_add(n, Ordering::SeqCst);
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

    /// Waits up to `timeout` for a head change (or a stop); true when the head changed.
    fn wait_for_head(&self, seen: &chain::BlockHash, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline && !self.control.is_stopped() {
            if self.chain.head().id.hash != *seen {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn run(mut self) {
        let reader = self.chain.reader().clone();
        if let Some(limit) = self.wait_for_peer {
            let deadline = std::time::Instant::now() + limit;
            while self.metrics.peers.load(Ordering::Relaxed) == 0
                && std::time::Instant::now() < deadline
                && !self.control.is_stopped()
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        info!(author = %self.producer.author(), "producing blocks");
        while !self.control.is_stopped() {
            let head = reader.head();
            if self.on_demand
                && self.metrics.mempool_size.load(Ordering::Relaxed) == 0
                && self.control.requested() == 0
            {
                self.wait_for_head(&head.hash(), Duration::from_millis(200));
                continue;
            }
            let now = self.clock.now_millis();
            let turn = match self.producer.next_turn(&reader, &head, now) {
                Ok(Some(turn)) => turn,
                Ok(None) => {
                    self.wait_for_head(&head.hash(), Duration::from_secs(1));
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "cannot tell when to produce next");
                    self.wait_for_head(&head.hash(), Duration::from_secs(1));
                    continue;
                }
            };
            if turn.at_millis > now
                && self.wait_for_head(&head.hash(), Duration::from_millis(turn.at_millis - now))
            {
                continue;
            }
            if self.control.is_stopped() {
                break;
            }
            let mut header = Header::template(&head, self.producer.author(), turn.timestamp);
            if let Err(e) = self.producer.prepare(&reader, &head, &mut header) {
                warn!(error = %e, "cannot prepare a block");
                self.wait_for_head(&head.hash(), Duration::from_secs(1));
                continue;
            }
            let mut block = match self.chain.build_blocking(header, MAX_BLOCK_TXS) {
                Ok(Ok(block)) => block,
                Ok(Err(e)) => {
                    debug!(error = %e, "template on a stale head; retrying");
                    continue;
                }
                Err(_) => break,
            };
            let cancel = CancelFlag::new();
            if let Ok(mut current) = self.control.current.lock() {
                *current = Some(cancel.clone());
            }
            let watcher = {
                let mut rx = self.chain.subscribe();
                let cancel = cancel.clone();
                let parent = head.hash();
                self.runtime.spawn(async move {
                    loop {
                        if rx.borrow_and_update().id.hash != parent {
                            cancel.cancel();
                            return;
                        }
                        if rx.changed().await.is_err() {
                            cancel.cancel();
                            return;
                        }
                    }
                })
            };
            if let Some(guard) = &mut self.guard {
                let timestamp = block.header.timestamp.0;
                if !guard.allows(timestamp) {
                    warn!(
                        timestamp,
                        signed = guard.last(),
                        "not signing: a block at or after this time was signed before (a restart within one slot?)"
                    );
                    watcher.abort();
                    self.wait_for_head(&head.hash(), Duration::from_secs(1));
                    continue;
                }
                if let Err(e) = guard.record(timestamp) {
                    warn!(error = %e, "cannot record the block about to be signed; not signing");
                    watcher.abort();
                    self.wait_for_head(&head.hash(), Duration::from_secs(1));
                    continue;
                }
            }
            let sealed = self.producer.seal(block.header.clone(), &cancel);
            watcher.abort();
            match sealed {
                Ok(Some(header)) => block.header = header,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "sealing failed");
                    continue;
                }
            }
            let bytes = block.encode();
            let hash = block.hash();
            let txs = block.txs.len();
            match self.chain.import_blocking(block) {
                Ok(Ok(ImportOutcome::NewHead(change))) => {
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
                Ok(Ok(other)) => debug!(?other, "produced block did not become the head"),
                Ok(Err(e)) => warn!(error = %e, "own block refused"),
                Err(_) => break,
            }
        }
        info!("producer stopped");
    }
}
