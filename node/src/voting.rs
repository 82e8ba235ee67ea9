//! The driver of a voting engine's machine (PBFT, Raft, Multi-Paxos, ZAB): one tokio task owns the
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
//! folder) and given back to the engine at start, so a restarted node never contradicts
//! what it signed.
//!
//! Writes are batched as etcd's raft batches a `Ready`: the messages that queued while the
//! driver was busy are fed to the machine together, and within a batch the state to
//! persist is held (a newer one replaces it) and the broadcasts wait with it; both are
//! flushed — the newest state written once, then the messages sent — before the driver
//! waits on the chain (build, validate, commit) and at the end of the batch. Nothing leaves
//! the node before the state that produced it is on disk (the newest state includes what
//! every earlier one did: it is where the same inputs one at a time would have ended), and
//! one slow write no longer costs one write per queued message ([`Ready`]).
//!
//! A timer that fell due while the driver was busy fires only after the messages that
//! queued meanwhile: a heartbeat waiting in the inbox resets the election timer it would
//! otherwise lose to, and the answers a leader already received count for its
//! check-quorum.
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
    EngineError, Header, ImportOutcome, ProposalClock, TimerId, Timestamp, VoteInput, VoteOutput,
    VotingMachine,
};
use net::{Client, MessageId, PeerId, Topic, Verdict};
use std::collections::{BTreeMap, VecDeque};
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
/// Engine messages fed to the machine in one batch at most (see [`Ready`]).
const MAX_BATCH: usize = 64;
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

/// One step of a batch's outputs, in the order the driver carries them out.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write this state durably; the steps after it wait for the write.
    Write(Vec<u8>),
    /// Broadcast this message on the engine topic.
    Send(Vec<u8>),
    /// Any other output, carried out as it comes.
    Act(VoteOutput),
}

/// A batch's held state and messages (etcd's `Ready`): [`VoteOutput::Persist`] is held, a
/// newer one replacing it, and broadcasts wait with it; both are flushed, the write first,
/// before an output that waits on the chain or lets a block leave (build, validate,
/// commit) and at the end of the batch ([`Ready::flush`]).
#[derive(Debug, Default)]
pub struct Ready {
    state: Option<Vec<u8>>,
    messages: Vec<Vec<u8>>,
    /// States replaced by a newer one before they were written.
    superseded: u64,
}

impl Ready {
    /// What to do now for `output`, the next one the machine gave.
    pub fn push(&mut self, output: VoteOutput) -> Vec<Step> {
        match output {
            VoteOutput::Persist(bytes) => {
                if self.state.replace(bytes).is_some() {
                    self.superseded += 1;
                }
                Vec::new()
            }
            VoteOutput::Broadcast(bytes) => {
                self.messages.push(bytes);
                Vec::new()
            }
            timer @ (VoteOutput::SetTimer { .. } | VoteOutput::CancelTimer(_)) => {
                vec![Step::Act(timer)]
            }
            waits @ (VoteOutput::Build { .. }
            | VoteOutput::Validate(_)
            | VoteOutput::Commit { .. }) => {
                let mut steps = self.flush();
                steps.push(Step::Act(waits));
                steps
            }
        }
    }

    /// The held state's write, then the held messages, in the order they were given.
    pub fn flush(&mut self) -> Vec<Step> {
        let mut steps: Vec<Step> = self.state.take().map(Step::Write).into_iter().collect();
        steps.extend(self.messages.drain(..).map(Step::Send));
        steps
    }

    /// How many states were replaced before being written (each a write saved), since the
    /// last call.
    pub fn take_superseded(&mut self) -> u64 {
        std::mem::take(&mut self.superseded)
    }
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
    proposed_at: ProposalClock<Instant>,
}

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
            proposed_at: ProposalClock::default(),
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
                        Some((id, _)) => self.on_timer(id, &mut inbox).await,
                        None => Ok(()),
                    }
                }
                message = inbox.recv() => match message {
                    Some(message) => {
                        let batch = drain(&mut inbox, vec![message]);
                        self.on_messages(batch).await
                    }
                    None => break,
                },
            };
            if let Err(Stop::Stopped) = outcome {
                break;
            }
        }
        info!("voting machine stopped");
    }

    /// Timer `id` fell due: the messages already waiting go first (they arrived while the
    /// driver was busy, before it could look at the clock), and the timer fires only if
    /// they did not move or cancel it.
    async fn on_timer(
        &mut self,
        id: TimerId,
        inbox: &mut mpsc::Receiver<EngineMessage>,
    ) -> Result<(), Stop> {
        let waiting = drain(inbox, Vec::new());
        if !waiting.is_empty() {
            self.on_messages(waiting).await?;
        }
        match self.timers.get(&id) {
            Some(at) if *at <= Instant::now() => {
                self.timers.remove(&id);
                self.feed(vec![VoteInput::Timeout(id)]).await.map(|_| ())
            }
            _ => Ok(()),
        }
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
        self.feed(vec![input]).await.map(|_| ())
    }

    /// Peers' messages: fed to the machine as one batch, each verdict reported to the
    /// network.
    async fn on_messages(&mut self, batch: Vec<EngineMessage>) -> Result<(), Stop> {
        self.metrics
            .engine_messages
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut inputs = Vec::with_capacity(batch.len());
        let mut senders = Vec::with_capacity(batch.len());
        let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(batch.len());
        for EngineMessage { data, source, id } in batch {
            match unframe(&data) {
                None => {
                    debug!(%source, len = data.len(), "engine frame too short");
                    verdicts.push(Some(Verdict::Reject));
                }
                Some(bytes) => {
                    inputs.push(VoteInput::Message(bytes.to_vec()));
                    verdicts.push(None);
                }
            }
            senders.push((id, source));
        }
        let (outcome, judged) = match self.feed(inputs).await {
            Ok(judged) => (Ok(()), judged),
            // Our own failure, not the senders'.
            Err(stop) => (Err(stop), Vec::new()),
        };
        let mut judged = judged.into_iter();
        for ((id, source), framing) in senders.into_iter().zip(verdicts) {
            // A message the batch did not reach (a failed write) is no fault of its sender.
            let verdict = framing.unwrap_or_else(|| {
                judged
                    .next()
                    .map_or(Verdict::Ignore, |judged| verdict_on(judged, source))
            });
            if verdict == Verdict::Reject {
                self.metrics.gossip_rejected.fetch_add(1, Ordering::Relaxed);
            }
            let _ = self.client.report(id, source, verdict).await;
        }
        outcome
    }

    /// Gives `inputs` to the machine in order and carries out everything it asks, with the
    /// answers (built blocks, verdicts, new heads) fed back after them; the state to persist
    /// and the broadcasts go through one [`Ready`]. The error is the driver's own failure;
    /// otherwise the machine's verdict on each input, in order (an input after a failed
    /// write is not given to the machine and counts as ignored).
    async fn feed(&mut self, inputs: Vec<VoteInput>) -> Result<Vec<Result<(), EngineError>>, Stop> {
        let mut verdicts: Vec<Result<(), EngineError>> = Vec::with_capacity(inputs.len());
        let originals = inputs.len();
        let mut queue: VecDeque<VoteInput> = inputs.into();
        let mut ready = Ready::default();
        let mut given = 0;
        let mut stopped = None;
        'batch: while let Some(input) = queue.pop_front() {
            let original = given < originals;
            given += 1;
            let now = self.clock.now_millis();
            let outputs = match self.machine.handle(now, input) {
                Ok(outputs) => {
                    if original {
                        verdicts.push(Ok(()));
                    }
                    outputs
                }
                Err(e) if original => {
                    verdicts.push(Err(e));
                    continue;
                }
                Err(e) => {
                    debug!(error = %e, "the machine refused an answer to its own request");
                    continue;
                }
            };
            for output in outputs {
                for step in ready.push(output) {
                    if let Err(stop) = self.step(step, &mut queue).await {
                        stopped = Some(stop);
                        break 'batch;
                    }
                }
            }
        }
        if stopped.is_none() {
            for step in ready.flush() {
                if let Err(stop) = self.step(step, &mut queue).await {
                    stopped = Some(stop);
                    break;
                }
            }
        }
        self.metrics
            .voting_persists_superseded
            .fetch_add(ready.take_superseded(), Ordering::Relaxed);
        self.publish_status();
        match stopped {
            None => Ok(verdicts),
            Some(Stop::Stopped) => Err(Stop::Stopped),
            Some(Stop::Persist(e)) => {
                warn!(
                    error = %e,
                    path = %self.state_path.display(),
                    "cannot persist the voting state; the outputs after it are dropped"
                );
                Ok(verdicts)
            }
        }
    }

    fn publish_status(&self) {
        if let Ok(mut status) = self.status.lock() {
            *status = self.machine.status();
        }
    }

    async fn step(&mut self, step: Step, queue: &mut VecDeque<VoteInput>) -> Result<(), Stop> {
        match step {
            Step::Write(bytes) => self.persist(bytes).await,
            Step::Send(bytes) => {
                self.send(bytes).await;
                Ok(())
            }
            Step::Act(output) => self.act(output, queue).await,
        }
    }

    async fn send(&mut self, message: Vec<u8>) {
        self.seq = self.seq.wrapping_add(1);
        let framed = frame(self.seq, &message);
        if let Err(e) = self.client.publish(Topic::Engine, framed).await {
            debug!(error = %e, "consensus message not sent");
        }
    }

    /// Writes the voting state durably; nothing held after it goes out unless it succeeds.
    async fn persist(&mut self, bytes: Vec<u8>) -> Result<(), Stop> {
        let path = self.state_path.clone();
        let len = bytes.len();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| Stop::Persist(std::io::Error::other(e.to_string())))?
            .map_err(Stop::Persist)?;
        let took = started.elapsed();
        self.metrics.voting_persists.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .voting_persist_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        self.metrics.voting_persist_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if took >= SLOW_PERSIST {
            // Nothing the machine decides goes out before this returns: a slow disk is a
            // slow consensus.
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
        Ok(())
    }

    /// An output other than a write or a broadcast (those go through [`Ready`]).
    async fn act(
        &mut self,
        output: VoteOutput,
        queue: &mut VecDeque<VoteInput>,
    ) -> Result<(), Stop> {
        match output {
            // Not given here by `Ready`, but carried out the same way if they were.
            VoteOutput::Broadcast(bytes) => self.send(bytes).await,
            VoteOutput::Persist(bytes) => self.persist(bytes).await?,
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
                    self.proposed_at.held(block.hash(), Instant::now());
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
                self.proposed_at.held(hash, Instant::now());
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
                if let Some(at) = self.proposed_at.decided(&hash) {
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
        }
        Ok(())
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

/// `batch` and the messages already waiting behind it, up to [`MAX_BATCH`] in all.
fn drain(
    inbox: &mut mpsc::Receiver<EngineMessage>,
    mut batch: Vec<EngineMessage>,
) -> Vec<EngineMessage> {
    while batch.len() < MAX_BATCH {
        match inbox.try_recv() {
            Ok(message) => batch.push(message),
            Err(_) => break,
        }
    }
    batch
}

/// The network verdict on a peer's message from the machine's: a refusal costs the sender;
/// a message of no use to this node (a stale round, a duplicate, a vote this node does not
/// need) is not wrong and is relayed all the same, because in a partial mesh this node may
/// be the only path to the nodes that need it (the devnet's nodes all dial node 0; a Raft
/// pre-vote node 0 ignores while it campaigns itself must still reach the others).
fn verdict_on(judged: Result<(), EngineError>, source: PeerId) -> Verdict {
    match judged {
        Ok(()) => Verdict::Accept,
        Err(EngineError::Rejected {
            engine,
            source: reason,
        }) => {
            info!(%source, engine, %reason, "consensus message refused");
            Verdict::Reject
        }
        Err(e) => {
            debug!(%source, error = %e, "consensus message ignored (relayed)");
            Verdict::Accept
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

    fn persist(bytes: &[u8]) -> VoteOutput {
        VoteOutput::Persist(bytes.to_vec())
    }

    fn broadcast(bytes: &[u8]) -> VoteOutput {
        VoteOutput::Broadcast(bytes.to_vec())
    }

    /// Every step for `outputs` given one after another, then the end of the batch.
    fn steps(ready: &mut Ready, outputs: Vec<VoteOutput>) -> Vec<Step> {
        let mut steps: Vec<Step> = outputs.into_iter().flat_map(|o| ready.push(o)).collect();
        steps.extend(ready.flush());
        steps
    }

    #[test]
    fn a_batch_writes_its_newest_state_once_before_any_message_leaves() {
        let timer = VoteOutput::SetTimer {
            id: 1,
            after_millis: 10,
        };
        let mut ready = Ready::default();
        // Three messages' worth of outputs, as a follower gives for appends that queued
        // behind a slow write.
        let got = steps(
            &mut ready,
            vec![
                persist(b"term 2"),
                broadcast(b"ack 1"),
                timer.clone(),
                persist(b"term 2, entry 5"),
                broadcast(b"ack 2"),
                broadcast(b"ack 3"),
                persist(b"term 2, entry 6"),
            ],
        );
        assert_eq!(
            got,
            vec![
                Step::Act(timer),
                Step::Write(b"term 2, entry 6".to_vec()),
                Step::Send(b"ack 1".to_vec()),
                Step::Send(b"ack 2".to_vec()),
                Step::Send(b"ack 3".to_vec()),
            ]
        );
        assert_eq!(ready.take_superseded(), 2, "two writes saved");
        assert_eq!(ready.take_superseded(), 0);
        assert!(ready.flush().is_empty(), "nothing is held after a flush");
    }

    #[test]
    fn what_is_held_is_written_and_sent_before_the_driver_waits_on_the_chain() {
        let block = Block {
            header: Header {
                version: chain::block::HEADER_VERSION,
                parent: BlockHash([0; 32]),
                height: chain::Height(1),
                timestamp: Timestamp(1),
                tx_root: chain::Hash256::ZERO,
                state_root: chain::Hash256::ZERO,
                producer: chain::Address::default(),
                engine: chain::EngineFields::default(),
            },
            txs: Vec::new(),
        };
        let commit = VoteOutput::Commit {
            block: Box::new(block),
            certificate: vec![7],
        };
        let build = VoteOutput::Build {
            parent: BlockHash([1; 32]),
            timestamp: Timestamp(2),
            data: Vec::new(),
        };
        for waits in [commit, build] {
            let mut ready = Ready::default();
            let got = steps(
                &mut ready,
                vec![
                    persist(b"entry 3"),
                    broadcast(b"append"),
                    waits.clone(),
                    broadcast(b"heartbeat"),
                ],
            );
            assert_eq!(
                got,
                vec![
                    Step::Write(b"entry 3".to_vec()),
                    Step::Send(b"append".to_vec()),
                    Step::Act(waits),
                    // Nothing new to write: the message after needs no second write.
                    Step::Send(b"heartbeat".to_vec()),
                ]
            );
        }
    }

    #[test]
    fn a_message_never_leaves_before_the_state_given_with_or_before_it() {
        // Whatever the order, each Send comes after a Write of the newest state given
        // before its broadcast.
        let outputs = vec![
            broadcast(b"m0"),
            persist(b"s1"),
            broadcast(b"m1"),
            persist(b"s2"),
            VoteOutput::CancelTimer(2),
            broadcast(b"m2"),
            persist(b"s3"),
        ];
        let mut ready = Ready::default();
        let got = steps(&mut ready, outputs.clone());
        let mut written: Option<usize> = None;
        let mut newest_before: Vec<Option<usize>> = Vec::new();
        let mut newest = None;
        for (i, o) in outputs.iter().enumerate() {
            match o {
                VoteOutput::Persist(_) => newest = Some(i),
                VoteOutput::Broadcast(_) => newest_before.push(newest),
                _ => {}
            }
        }
        let mut sent = 0;
        for step in &got {
            match step {
                Step::Write(bytes) => {
                    written = outputs
                        .iter()
                        .position(|o| o == &VoteOutput::Persist(bytes.clone()));
                }
                Step::Send(_) => {
                    assert!(
                        written >= newest_before[sent],
                        "message {sent} left before its state: {got:?}"
                    );
                    sent += 1;
                }
                Step::Act(_) => {}
            }
        }
        assert_eq!(sent, 3);
        assert_eq!(
            got.iter().filter(|s| matches!(s, Step::Write(_))).count(),
            1
        );
    }
}
