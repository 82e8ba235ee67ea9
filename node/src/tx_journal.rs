//! Transactions this node acknowledged through its RPC, kept in the data dir until they
//! leave the mempool, so a crash or restart does not lose what a client was told was
//! accepted (`toychain reliability` found acknowledged transfers lost when the node that
//! took them was killed before it could gossip them, e.g. right after a restart, with no
//! peer yet).
//!
//! The journal (`txs.journal`) is a sequence of records `[u32 LE length][canonical tx]`,
//! appended before `tx_submit` answers. The write goes to the operating system before
//! the answer, so it survives the process being killed (not the machine losing power:
//! there is no fsync per transaction). At start the node submits every journaled tx to
//! its mempool again — ones already on the chain or with a stale nonce are refused there
//! and dropped — and gossips the accepted ones once it has a peer. A background task
//! rewrites the journal from time to time without the txs that are done with: on the
//! best chain under [`KEEP_CONFIRMATIONS`] blocks, or neither there nor in the mempool
//! (replaced, expired). A tx in a shallow block stays journaled, since a reorg puts it
//! back in the mempool, which a crash would then lose again (the reliability suite's
//! crash cycles found exactly that while a killed producer switched branch).

use crate::actor::ChainHandle;
use anyhow::Context;
use chain::{Canonical, ChainView, Transaction, TxHash};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

/// How often the journal drops txs it no longer needs.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(10);
/// Confirmations after which an included tx leaves the journal.
pub const KEEP_CONFIRMATIONS: u64 = 20;
const FILE_NAME: &str = "txs.journal";

#[derive(Debug)]
struct Inner {
    file: File,
    /// The records in the file, in order.
    records: Vec<(TxHash, Vec<u8>)>,
}

#[derive(Debug)]
pub struct TxJournal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl TxJournal {
    /// Opens (or creates) the journal in `data_dir` and returns the txs it holds, in the
    /// order they were accepted. A torn last record (a crash mid-write) is dropped.
    pub fn open(data_dir: &Path) -> anyhow::Result<(TxJournal, Vec<Transaction>)> {
        let path = data_dir.join(FILE_NAME);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        let (txs, records) = decode_records(&bytes);
        let journal = TxJournal {
            inner: Mutex::new(Inner {
                file: open_append(&path)?,
                records: Vec::new(),
            }),
            path,
        };
        // Start from exactly the records that decoded, without a torn tail.
        journal.rewrite(records)?;
        Ok((journal, txs))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `tx`; call before acknowledging it.
    pub fn append(&self, tx: &Transaction) -> std::io::Result<()> {
        self.append_all(&[(tx, tx.hash())])
    }

    /// Appends transactions (each with its hash) in one write: an RPC batch's admitted
    /// transactions cost one system call, not one each.
    pub fn append_all(&self, txs: &[(&Transaction, TxHash)]) -> std::io::Result<()> {
        if txs.is_empty() {
            return Ok(());
        }
        let encoded: Vec<(TxHash, Vec<u8>)> =
            txs.iter().map(|(tx, hash)| (*hash, tx.encode())).collect();
        let mut out = Vec::with_capacity(encoded.iter().map(|(_, b)| b.len() + 4).sum());
        for (_, bytes) in &encoded {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let mut inner = self.lock();
        inner.file.write_all(&out)?;
        inner.records.extend(encoded);
        Ok(())
    }

    /// Replaces the file with `records` (write a temporary file, then rename over).
    fn rewrite(&self, records: Vec<(TxHash, Vec<u8>)>) -> anyhow::Result<()> {
        let mut inner = self.lock();
        let tmp = self.path.with_extension("journal.tmp");
        let mut out = Vec::new();
        for (_, bytes) in &records {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        inner.file = open_append(&self.path)?;
        inner.records = records;
        Ok(())
    }

    /// Drops the records whose tx is done with: deep enough on the best chain, or
    /// neither on it nor pending. The store reads (one or two a record, tens of thousands
    /// under load) and the rewrite run on the blocking pool, not on the runtime's threads.
    pub async fn compact(self: &Arc<Self>, chain: &ChainHandle) -> anyhow::Result<()> {
        let snapshot: Vec<TxHash> = self.lock().records.iter().map(|(h, _)| *h).collect();
        if snapshot.is_empty() {
            return Ok(());
        }
        // One trip to the chain actor for the whole journal (every trip waits behind
        // imports and admissions).
        let pending = chain.pending_among(snapshot.clone()).await?;
        let head_height = chain.head().id.height.0;
        let reader = chain.reader().clone();
        let journal = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut gone = std::collections::HashSet::new();
            for (hash, pending) in snapshot.iter().zip(pending) {
                if pending {
                    continue;
                }
                let confirmations = match reader.tx_location(hash)? {
                    None => None,
                    Some((block, _)) => reader
                        .header(&block)?
                        .map(|header| head_height.saturating_sub(header.height().0) + 1),
                };
                if confirmations.is_none_or(|c| c >= KEEP_CONFIRMATIONS) {
                    gone.insert(*hash);
                }
            }
            journal.drop_records(&gone)
        })
        .await
        .context("the tx journal's compaction stopped")?
    }

    /// Rewrites the journal without `gone`; records appended meanwhile stay.
    fn drop_records(&self, gone: &std::collections::HashSet<TxHash>) -> anyhow::Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let kept: Vec<(TxHash, Vec<u8>)> = self
            .lock()
            .records
            .iter()
            .filter(|(h, _)| !gone.contains(h))
            .cloned()
            .collect();
        debug!(
            dropped = gone.len(),
            kept = kept.len(),
            "tx journal compacted"
        );
        self.rewrite(kept)
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The txs and raw records of a journal's bytes, up to the first record that does not
/// decode (a torn write at a crash).
fn decode_records(bytes: &[u8]) -> (Vec<Transaction>, Vec<(TxHash, Vec<u8>)>) {
    let mut txs = Vec::new();
    let mut records = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(body) = rest.get(4..4 + len) else {
            break;
        };
        let Ok(tx) = Transaction::decode(body) else {
            break;
        };
        records.push((tx.hash(), body.to_vec()));
        txs.push(tx);
        rest = &rest[4 + len..];
    }
    if !rest.is_empty() {
        warn!(
            bytes = rest.len(),
            "tx journal ends in a torn record; dropped"
        );
    }
    (txs, records)
}

/// Submits the journaled txs to the mempool again (nonce order, so a sender's run goes in
/// whole); returns the accepted ones for gossip.
pub async fn replay(chain: &ChainHandle, mut txs: Vec<Transaction>) -> Vec<Transaction> {
    txs.sort_by_key(|tx| tx.nonce);
    let mut accepted = Vec::new();
    let total = txs.len();
    for tx in txs {
        if let Ok(Ok(_)) = chain.submit_tx(tx.clone()).await {
            accepted.push(tx);
        }
    }
    if total > 0 {
        info!(
            journaled = total,
            pending_again = accepted.len(),
            "acknowledged txs from before the restart are back in the mempool"
        );
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::dev::dev_key;

    fn tx(nonce: u64) -> Transaction {
        let key = dev_key("eve").expect("a dev account");
        let to = chain::dev::dev_address("ferdie").expect("a dev account");
        wallet::build_transfer(
            &key,
            chain::ChainId(1337),
            nonce,
            to,
            chain::Amount(5),
            wallet::DEFAULT_FEE,
        )
        .expect("a transfer")
    }

    /// Compaction asks the chain actor about the whole journal in one trip and keeps what
    /// a crash could still lose: pending txs and those in shallow blocks.
    #[tokio::test]
    async fn compaction_keeps_pending_and_shallow_txs_and_drops_deep_and_forgotten_ones() {
        use chain::test_utils::{TestEngine, build_on_head, memory_chain};
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = TxJournal::open(dir.path()).expect("open");
        let journal = Arc::new(journal);
        let mut chain = memory_chain(TestEngine::default());
        let producer = chain::dev::dev_address("alice").expect("a dev account");
        let import = |chain: &mut chain::Chain, txs: Vec<Transaction>| {
            let block = build_on_head(chain, 1, producer, txs);
            chain.import_block(block).expect("imports");
        };
        let (deep, shallow, pending, forgotten) = (tx(0), tx(1), tx(2), tx(7));
        import(&mut chain, vec![deep.clone()]);
        for _ in 1..KEEP_CONFIRMATIONS {
            import(&mut chain, Vec::new());
        }
        import(&mut chain, vec![shallow.clone()]);
        let mut mempool = chain::Mempool::new(chain::ChainId(1337), Default::default());
        mempool
            .insert(pending.clone(), chain.state())
            .expect("the next nonce");
        for t in [&deep, &shallow, &pending, &forgotten] {
            journal.append(t).expect("append");
        }
        let (handle, _actor) = crate::actor::spawn(chain, mempool, Default::default());
        journal.compact(&handle).await.expect("compacts");
        drop(journal);
        let (_, kept) = TxJournal::open(dir.path()).expect("reopen");
        assert_eq!(kept, vec![shallow, pending]);
    }

    #[test]
    fn appended_txs_come_back_in_order_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, none) = TxJournal::open(dir.path()).expect("open");
        assert!(none.is_empty());
        journal.append(&tx(0)).expect("append");
        // Two in one write (an RPC batch), then none (nothing admitted).
        let (one, two) = (tx(1), tx(2));
        journal
            .append_all(&[(&one, one.hash()), (&two, two.hash())])
            .expect("append two");
        journal.append_all(&[]).expect("append none");
        drop(journal);
        let (_, back) = TxJournal::open(dir.path()).expect("reopen");
        assert_eq!(back, vec![tx(0), tx(1), tx(2)]);

        // A crash in the middle of a record: length written, body cut short.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .expect("open");
        file.write_all(&200u32.to_le_bytes()).expect("write");
        file.write_all(&[1, 2, 3]).expect("write");
        drop(file);
        let (journal, back) = TxJournal::open(dir.path()).expect("reopen after a torn write");
        assert_eq!(back.len(), 3);
        journal.append(&tx(3)).expect("append after the torn tail");
        drop(journal);
        let (_, back) = TxJournal::open(dir.path()).expect("reopen");
        assert_eq!(back, vec![tx(0), tx(1), tx(2), tx(3)]);
    }
}
