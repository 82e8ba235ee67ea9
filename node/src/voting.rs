//! The driver of a voting engine's machine (PBFT, Raft): one tokio task owns the
//! [`VotingMachine`] and is the only one to call it, in the order inputs arrive.
//!
//! Inputs: consensus messages from the engine gossip topic (handed over by the network
//! task with their gossip id, so this task reports the verdict: a message the machine
//! rejects lowers its sender's score like any bad data), the machine's timers (one tokio
//! deadline per [`TimerId`]; setting one again moves it, cancelling forgets it), and the
//! chain head after every import, own or synced, with the voters of its child read by the
//! chain actor in the same step.
//!
//! Outputs, carried out in order: broadcasts go out on the engine topic; a build request
//! becomes a block on the head filled from the mempool and sealed by this node's key; a
//! proposal is checked with [`chain::Chain::validate_proposal`]; a decision is imported
//! with its certificate and gossiped as a [`CertifiedBlock`] on the block topic; state to
//! persist is written to `<data dir>/voting.state` (temp file, fsync, rename, fsync of the
//! folder) before any later output is acted on, and given back to the engine at start, so
//! a restarted node never contradicts what it signed.
//!
//! A message the machine ignores (stale, duplicate, not needed here) is still relayed by
//! gossip; only one it rejects is dropped and scored against its sender.
//!
//! Engine-topic frames carry a sequence number ahead of the machine's bytes: gossipsub
//! names a message by its content, so a Raft heartbeat or a PBFT resend that repeats
//! byte for byte would otherwise be dropped as already seen.

use crate::actor::ChainHandle;
use crate::metrics::Metrics;
use crate::producer::MAX_BLOCK_TXS;
use anyhow::Context;
use chain::{
    Block, BlockHash, BlockProducer, CancelFlag, Canonical, CertifiedBlock, ChainView, Clock,
    EngineError, Header, ImportOutcome, TimerId, Timestamp, VoteInput, VoteOutput, VotingMachine,
};
use net::{Client, MessageId, PeerId, Topic, Verdict};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Engine messages queued for the driver at most; when full, further ones are ignored
/// (no penalty) until it catches up.
const INBOX: usize = 1024;
/// A durable write of the voting state slower than this is logged as a warning.
const SLOW_PERSIST: Duration = Duration::from_millis(200);
/// The file, in the data dir, holding what the machine last asked to persist.
pub const STATE_FILE: &str = "voting.state";
/// Bytes ahead of the machine's message in an engine-topic frame: the sequence number.
pub const FRAME_HEADER_BYTES: usize = 8;

/// A consensus message from the engine topic, with what the verdict is reported on.
#[derive(Debug)]
pub struct EngineMessage {
    pub data: Vec<u8>,
    pub source: PeerId,
    pub id: MessageId,
}

/// Where the network task hands engine messages to the driver.
#[derive(Clone, Debug)]
pub struct VotingInbox(mpsc::Sender<EngineMessage>);

impl VotingInbox {
    /// Queues a message for the driver, which reports its verdict; hands it back when the
    /// queue is full or the driver has stopped.
    pub fn offer(&self, message: EngineMessage) -> Result<(), Box<EngineMessage>> {
        self.0.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => {
                Box::new(m)
            }
        })
    }
}

/// The machine's latest [`VotingMachine::status`], for `node_status`.
pub type VotingStatus = Arc<Mutex<Vec<(&'static str, String)>>>;

/// A machine's message framed for the engine topic: `seq` (little-endian u64), then the
/// message.
pub fn frame(seq: u64, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + message.len());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(message);
    out
}

/// The machine's message inside an engine-topic frame; `None` when the frame is too short
/// to hold a sequence number.
pub fn unframe(data: &[u8]) -> Option<&[u8]> {
    data.get(FRAME_HEADER_BYTES..)
}

/// Reads what the machine last persisted in `data_dir`; `None` on a first start.
pub fn load_state(data_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let path = data_dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `bytes` to `path` so that after a crash the file holds either the old or the new
/// bytes, whole: a temp file, fsync, rename over the old one, fsync of the folder.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("state.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Everything the driver task needs.
pub struct VotingDriver {
    pub machine: Box<dyn VotingMachine>,
    pub chain: ChainHandle,
    pub client: Client,
    /// Seals the blocks this node proposes; `None` on a node without a key (it follows).
    pub producer: Option<Arc<dyn BlockProducer>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub data_dir: PathBuf,
    pub status: VotingStatus,
}

impl std::fmt::Debug for VotingDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VotingDriver")
            .field("machine", &self.machine)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// The running driver's state.
struct Driver {
    machine: Box<dyn VotingMachine>,
    chain: ChainHandle,
    client: Client,
    producer: Option<Arc<dyn BlockProducer>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    state_path: PathBuf,
    status: VotingStatus,
    timers: BTreeMap<TimerId, Instant>,
    /// The head last given to the machine.
    last_head: Option<BlockHash>,
    /// The next engine-topic frame's sequence number.
    seq: u64,
    /// When this node first held each open proposal (built it, or was asked to check it),
    /// for the commit latency of the block once decided.
    proposed_at: HashMap<BlockHash, Instant>,
}

/// Open proposals whose start time is remembered (older ones were never decided here).
const MAX_OPEN_PROPOSALS: usize = 256;

/// Why a batch of outputs was abandoned part-way.
#[derive(Debug)]
enum Stop {
    /// Persisting failed: nothing after it may be acted on.
    Persist(std::io::Error),
    /// The chain actor stopped (shutdown).
    Stopped,
}

impl VotingDriver {
    /// Starts the driver task; returns the inbox the network task feeds and the task.
    pub fn spawn(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> (VotingInbox, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(INBOX);
        let seq = self.clock.now_millis() << 16;
        let driver = Driver {
            machine: self.machine,
            chain: self.chain,
            client: self.client,
            producer: self.producer,
            clock: self.clock,
            metrics: self.metrics,
            state_path: self.data_dir.join(STATE_FILE),
            status: self.status,
            timers: BTreeMap::new(),
            last_head: None,
            seq,
            proposed_at: HashMap::new(),
        };
        (VotingInbox(tx), tokio::spawn(driver.run(rx, shutdown)))
    }
}

impl Driver {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<EngineMessage>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut heads = self.chain.subscribe();
        info!(
            engine = self.chain.engine().name(),
            "voting machine running"
        );
        if self.on_head().await.is_err() {
            return;
        }
        loop {
            let next_timer = self
                .timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, at)| (*id, *at));
            let sleep_until = next_timer.map_or_else(Instant::now, |(_, at)| at);
            let outcome = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                changed = heads.changed() => match changed {
                    Ok(()) => self.on_head().await,
                    Err(_) => break,
                },
                _ = tokio::time::sleep_until(sleep_until), if next_timer.is_some() => {
                    match next_timer {
                        Some((id, _)) => {
                            self.timers.remove(&id);
                            self.feed(VoteInput::Timeout(id)).await.map(|_| ())
                        }
                        None => Ok(()),
                    }
                }
                message = inbox.recv() => match message {
                    Some(message) => self.on_message(message).await,
                    None => break,
                },
            };
            if let Err(Stop::Stopped) = outcome {
                break;
            }
        }
        info!("voting machine stopped");
    }

    /// Gives the machine the head if it is new to it.
    async fn on_head(&mut self) -> Result<(), Stop> {
        let voting_head = match self.chain.voting_head().await {
            Err(_) => return Err(Stop::Stopped),
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the voters at the head");
                return Ok(());
            }
            Ok(Ok(h)) => h,
        };
        if self.last_head == Some(voting_head.head.hash()) {
            return Ok(());
        }
        self.last_head = Some(voting_head.head.hash());
        let input = VoteInput::Head {
            head: voting_head.head,
            voters: voting_head.voters,
        };
        self.feed(input).await.map(|_| ())
    }

    /// A peer's message: fed to the machine, the verdict reported to the network.
    async fn on_message(&mut self, message: EngineMessage) -> Result<(), Stop> {
        self.metrics.engine_messages.fetch_add(1, Ordering::Relaxed);
        let EngineMessage { data, source, id } = message;
        let (verdict, outcome) = match unframe(&data) {
            None => {
                debug!(%source, len = data.len(), "engine frame too short");
                (Verdict::Reject, Ok(()))
            }
            Some(bytes) => match self.feed(VoteInput::Message(bytes.to_vec())).await {
                Ok(Ok(())) => (Verdict::Accept, Ok(())),
                Ok(Err(EngineError::Rejected {
                    engine,
                    source: reason,
                })) => {
                    info!(%source, engine, %reason, "consensus message refused");
                    (Verdict::Reject, Ok(()))
                }
                // Of no use to this node (a stale round, a duplicate, a vote this node
                // does not need), but not wrong: it is relayed all the same, because in a
                // partial mesh this node may be the only path to the nodes that need it
                // (the devnet's nodes all dial node 0; a Raft pre-vote node 0 ignores
                // while it campaigns itself must still reach the others).
                Ok(Err(e)) => {
                    debug!(%source, error = %e, "consensus message ignored (relayed)");
                    (Verdict::Accept, Ok(()))
                }
                // Our own failure, not the sender's.
                Err(stop) => (Verdict::Ignore, Err(stop)),
            },
        };
        if verdict == Verdict::Reject {
            self.metrics.gossip_rejected.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.client.report(id, source, verdict).await;
        outcome
    }

    /// Gives `input` to the machine and carries out everything it asks, with the answers
    /// (built blocks, verdicts, new heads) fed back in order. The outer result is the
    /// driver's own failure; the inner one the machine's verdict on `input` itself.
    async fn feed(&mut self, input: VoteInput) -> Result<Result<(), EngineError>, Stop> {
        let mut queue = VecDeque::from([input]);
        let mut first = true;
        let mut verdict = Ok(());
        while let Some(input) = queue.pop_front() {
            let now = self.clock.now_millis();
            let outputs = match self.machine.handle(now, input) {
                Ok(outputs) => outputs,
                Err(e) if first => {
                    verdict = Err(e);
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "the machine refused an answer to its own request");
                    continue;
                }
            };
            first = false;
            for output in outputs {
                if let Err(stop) = self.act(output, &mut queue).await {
                    if let Stop::Persist(e) = &stop {
                        warn!(
                            error = %e,
                            path = %self.state_path.display(),
                            "cannot persist the voting state; the outputs after it are dropped"
                        );
                    }
                    self.publish_status();
                    return match stop {
                        Stop::Persist(_) => Ok(verdict),
                        Stop::Stopped => Err(Stop::Stopped),
                    };
                }
            }
        }
        self.publish_status();
        Ok(verdict)
    }

    fn publish_status(&self) {
        if let Ok(mut status) = self.status.lock() {
            *status = self.machine.status();
        }
    }

    async fn act(
        &mut self,
        output: VoteOutput,
        queue: &mut VecDeque<VoteInput>,
    ) -> Result<(), Stop> {
        match output {
            VoteOutput::Broadcast(bytes) => {
                self.seq = self.seq.wrapping_add(1);
                let framed = frame(self.seq, &bytes);
                if let Err(e) = self.client.publish(Topic::Engine, framed).await {
                    debug!(error = %e, "consensus message not sent");
                }
            }
            VoteOutput::SetTimer { id, after_millis } => {
                self.timers
                    .insert(id, Instant::now() + Duration::from_millis(after_millis));
            }
            VoteOutput::CancelTimer(id) => {
                self.timers.remove(&id);
            }
            VoteOutput::Build {
                parent,
                timestamp,
                data,
            } => {
                if let Some(block) = self.build(parent, timestamp, data).await? {
                    self.note_proposal(block.hash());
                    info!(
                        height = block.header.height.0,
                        hash = %block.hash().short(),
                        txs = block.txs.len(),
                        "proposing block"
                    );
                    queue.push_back(VoteInput::Built(Box::new(block)));
                }
            }
            VoteOutput::Validate(block) => {
                let hash = block.hash();
                self.note_proposal(hash);
                let valid = match self.chain.validate_proposal(*block).await {
                    Err(_) => return Err(Stop::Stopped),
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        info!(block = %hash.short(), error = %e, "proposal is invalid");
                        false
                    }
                };
                queue.push_back(VoteInput::Validated { hash, valid });
            }
            VoteOutput::Commit { block, certificate } => {
                let certified = CertifiedBlock {
                    block: *block,
                    certificate,
                };
                let bytes = certified.encode();
                let (height, hash) = (certified.block.header.height, certified.block.hash());
                if let Some(at) = self.proposed_at.remove(&hash) {
                    self.metrics.record_commit(hash, at.elapsed());
                }
                match self.chain.import_certified(certified).await {
                    Err(_) => return Err(Stop::Stopped),
                    Ok(Ok(outcome)) => {
                        if matches!(outcome, ImportOutcome::NewHead(_)) {
                            info!(height = height.0, hash = %hash.short(), "committed block");
                            if let Err(e) = self.client.publish(Topic::Block, bytes).await {
                                debug!(error = %e, "committed block gossip not sent");
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        warn!(height = height.0, hash = %hash.short(), error = %e, "cannot import a decided block");
                    }
                }
                if let Some(head) = self.head_input().await? {
                    queue.push_back(head);
                }
            }
            VoteOutput::Persist(bytes) => {
                let path = self.state_path.clone();
                let len = bytes.len();
                let started = Instant::now();
                tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
                    .await
                    .map_err(|e| Stop::Persist(std::io::Error::other(e.to_string())))?
                    .map_err(Stop::Persist)?;
                let took = started.elapsed();
                if took >= SLOW_PERSIST {
                    // Nothing the machine decides goes out before this returns: a slow
                    // disk is a slow consensus.
                    warn!(
                        bytes = len,
                        millis = took.as_millis() as u64,
                        "voting state written slowly"
                    );
                } else {
                    debug!(
                        bytes = len,
                        micros = took.as_micros() as u64,
                        "voting state written"
                    );
                }
            }
        }
        Ok(())
    }

    /// Remembers when this node first held the proposal `hash`.
    fn note_proposal(&mut self, hash: BlockHash) {
        if self.proposed_at.len() >= MAX_OPEN_PROPOSALS {
            self.proposed_at.clear();
        }
        self.proposed_at.entry(hash).or_insert_with(Instant::now);
    }

    /// The head as an input, when it is new to the machine.
    async fn head_input(&mut self) -> Result<Option<VoteInput>, Stop> {
        match self.chain.voting_head().await {
            Err(_) => Err(Stop::Stopped),
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the voters at the head");
                Ok(None)
            }
            Ok(Ok(h)) if self.last_head == Some(h.head.hash()) => Ok(None),
            Ok(Ok(h)) => {
                self.last_head = Some(h.head.hash());
                Ok(Some(VoteInput::Head {
                    head: h.head,
                    voters: h.voters,
                }))
            }
        }
    }

    /// A block on the head `parent` with the machine's timestamp and engine data, filled
    /// from the mempool and sealed; `None` when the head moved on or this node has no key.
    async fn build(
        &mut self,
        parent: BlockHash,
        timestamp: Timestamp,
        data: Vec<u8>,
    ) -> Result<Option<Block>, Stop> {
        let Some(producer) = &self.producer else {
            warn!("the machine asked for a block, but this node has no key to seal it");
            return Ok(None);
        };
        let reader = self.chain.reader();
        let head = ChainView::head(reader);
        if head.hash() != parent {
            debug!(%parent, head = %head.hash(), "build request for an old head dropped");
            return Ok(None);
        }
        let mut header = Header::template(&head, producer.author(), timestamp);
        if let Err(e) = producer.prepare(reader, &head, &mut header) {
            warn!(error = %e, "cannot prepare a block");
            return Ok(None);
        }
        header.engine.data = data;
        let built = match self.chain.build(header, MAX_BLOCK_TXS).await {
            Err(_) => return Err(Stop::Stopped),
            Ok(Err(e)) => {
                debug!(error = %e, "block not built (the head moved?)");
                return Ok(None);
            }
            Ok(Ok(block)) => block,
        };
        match producer.seal(built.header, &CancelFlag::new()) {
            Ok(Some(header)) => Ok(Some(Block {
                header,
                txs: built.txs,
            })),
            Ok(None) => Ok(None),
            Err(e) => {
                warn!(error = %e, "sealing failed");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_message_after_the_sequence_number() {
        let framed = frame(7, b"vote");
        assert_eq!(framed.len(), FRAME_HEADER_BYTES + 4);
        assert_eq!(unframe(&framed), Some(&b"vote"[..]));
        assert_ne!(
            frame(8, b"vote"),
            framed,
            "a repeat is a new gossip message"
        );
        assert_eq!(unframe(&[1, 2, 3]), None);
    }

    #[test]
    fn persisted_state_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_state(dir.path()).expect("reads"), None);
        let path = dir.path().join(STATE_FILE);
        write_durably(&path, b"first").expect("writes");
        write_durably(&path, b"second, longer").expect("writes again");
        assert_eq!(
            load_state(dir.path()).expect("reads"),
            Some(b"second, longer".to_vec())
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("lists")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left: {leftovers:?}");
    }
}
