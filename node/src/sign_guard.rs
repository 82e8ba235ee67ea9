//! The double-sign guard of an authoring node whose blocks carry its signature: before a
//! block is signed, its timestamp is written durably to `signed.guard` in the data dir,
//! and nothing at or before the recorded time is ever signed again. A node killed after
//! signing a block for a slot, but before that block reached its store, restarts knowing
//! it must not sign another block for that slot (DPoS would record that as equivocation).

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "signed.guard";

#[derive(Debug)]
pub struct SignGuard {
    path: PathBuf,
    last: Option<u64>,
}

impl SignGuard {
    /// Reads the guard in `data_dir` (none yet: nothing signed).
    pub fn open(data_dir: &Path) -> anyhow::Result<SignGuard> {
        let path = data_dir.join(FILE);
        let last = match std::fs::read(&path) {
            Ok(bytes) => {
                let word: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "{} is {} bytes, not the 8 of a timestamp; if no other node signs with \
                         this key, delete it and wait one slot before restarting",
                        path.display(),
                        bytes.len()
                    )
                })?;
                Some(u64::from_le_bytes(word))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(SignGuard { path, last })
    }

    /// The newest timestamp signed (or about to be).
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Whether a block at `timestamp` may be signed: only after everything signed before.
    pub fn allows(&self, timestamp: u64) -> bool {
        self.last.is_none_or(|last| timestamp > last)
    }

    /// Records `timestamp` durably (a temp file, fsync, rename, fsync of the folder) before
    /// the block is signed. Refuses a timestamp the guard does not allow.
    pub fn record(&mut self, timestamp: u64) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.allows(timestamp),
            "refusing to sign at {timestamp}: a block at {} was already signed",
            self.last.unwrap_or_default()
        );
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(&timestamp.to_le_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.last = Some(timestamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_time_survives_a_reopen_and_is_never_signed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut guard = SignGuard::open(dir.path()).expect("open");
        assert_eq!(guard.last(), None);
        assert!(guard.allows(100));
        guard.record(100).expect("record");
        assert!(!guard.allows(100), "the same slot again");
        assert!(!guard.allows(99));
        assert!(guard.allows(101));

        // As after a kill -9: a new process reads what was recorded.
        let mut again = SignGuard::open(dir.path()).expect("reopen");
        assert_eq!(again.last(), Some(100));
        assert!(again.record(100).is_err());
        again.record(105).expect("later slot");
        assert_eq!(
            SignGuard::open(dir.path()).expect("reopen").last(),
            Some(105)
        );
    }

    #[test]
    fn a_damaged_guard_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), b"abc").expect("write");
        let err = SignGuard::open(dir.path())
            .expect_err("3 bytes")
            .to_string();
        assert!(err.contains(FILE) && err.contains("3 bytes"), "{err}");
    }
}
