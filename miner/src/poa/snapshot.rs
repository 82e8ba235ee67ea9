//! Clique's authority snapshot (EIP-225, as go-ethereum's `consensus/clique/snapshot.go`
//! applies it): who may sign, who signed recently, and the votes on adding or removing
//! signers. Pure data and rules, generic over the signer identity, so the published vote
//! cases run on it with labels and the engine runs it with addresses.
//!
//! Per block `n` signed by `s` ([`Snapshot::begin_block`]):
//! 1. at an epoch checkpoint (`n % epoch == 0`) every pending vote is discarded;
//! 2. the recent-signer entry that falls out of the window (`n − limit`, with
//!    `limit = ⌊N/2⌋ + 1`) is forgotten;
//! 3. `s` must be a signer (`UnauthorizedSigner`) and not in the window (`RecentlySigned`);
//! 4. `s` is recorded as the signer of `n`.
//!
//! Per vote by signer `v` on `target` ([`Snapshot::vote`]; Clique has one per block, in
//! the header, toychain one per `propose-authority` transaction): `v`'s earlier vote on
//! `target` is withdrawn; the new vote counts only when it means a change (add a
//! non-signer, remove a signer); when the votes on `target` exceed `⌊N/2⌋` the change takes
//! effect at once (in the tally's direction) and every vote on `target` is discarded. A
//! removed signer's own votes are discarded and the window shrinks with the signer count.
//! Other proposals that now have a majority wait until their target is voted on again,
//! by any vote at all (no cascade).

use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// A vote cast and still pending.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote<A> {
    pub signer: A,
    pub target: A,
    /// `true` to add `target`, `false` to remove it.
    pub authorize: bool,
}

/// Votes on one target; all of them point the same way (a vote the other way is not a
/// meaningful change and is never counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tally {
    pub authorize: bool,
    pub votes: u32,
}

/// Why a block's signer may not sign it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError<A: Debug> {
    #[error("{signer:?} is not an authority")]
    UnauthorizedSigner { signer: A },
    #[error(
        "{signer:?} signed block {last} and may sign only one of any {limit} consecutive blocks"
    )]
    RecentlySigned { signer: A, last: u64, limit: u64 },
    #[error("{voter:?} is not an authority, so it cannot vote on authorities")]
    UnauthorizedVoter { voter: A },
}

/// What a vote did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Counted toward its target's tally.
    Counted,
    /// Not a change (adding a signer or removing a non-signer): ignored, as in Clique.
    Ignored,
    /// It completed a majority: the target was added.
    Added,
    /// It completed a majority: the target was removed.
    Removed,
}

/// The authority state after some block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Snapshot<A: Ord> {
    /// Blocks between checkpoints that discard pending votes.
    pub epoch: u64,
    pub signers: BTreeSet<A>,
    /// Block number → its signer, for the last `limit` blocks.
    pub recents: BTreeMap<u64, A>,
    /// Pending votes, in the order they were cast.
    pub votes: Vec<Vote<A>>,
    pub tally: BTreeMap<A, Tally>,
}

impl<A: Ord + Copy + Debug> Snapshot<A> {
    /// The genesis snapshot. An epoch of 0 is taken as 30,000, as go-ethereum does.
    pub fn new(signers: impl IntoIterator<Item = A>, epoch: u64) -> Snapshot<A> {
        Snapshot {
            epoch: if epoch == 0 { 30_000 } else { epoch },
            signers: signers.into_iter().collect(),
            recents: BTreeMap::new(),
            votes: Vec::new(),
            tally: BTreeMap::new(),
        }
    }

    /// How many consecutive blocks one signer may sign only one of: `⌊N/2⌋ + 1`.
    pub fn signer_limit(&self) -> u64 {
        self.signers.len() as u64 / 2 + 1
    }

    /// The signers in turn order (sorted).
    pub fn ordered(&self) -> Vec<A> {
        self.signers.iter().copied().collect()
    }

    /// The signer whose turn block `number` is: `signers[number mod N]`.
    pub fn in_turn_signer(&self, number: u64) -> Option<A> {
        let n = self.signers.len() as u64;
        if n == 0 {
            return None;
        }
        self.signers
            .iter()
            .nth(usize::try_from(number % n).unwrap_or(0))
            .copied()
    }

    pub fn is_in_turn(&self, number: u64, signer: &A) -> bool {
        self.in_turn_signer(number).as_ref() == Some(signer)
    }

    /// The block `signer` signed within the recent window, if any.
    pub fn recently_signed(&self, signer: &A) -> Option<u64> {
        self.recents
            .iter()
            .find(|(_, s)| *s == signer)
            .map(|(number, _)| *number)
    }

    /// Whether `signer` may sign block `number` (what [`Snapshot::begin_block`] will check),
    /// without changing the snapshot.
    pub fn check_signer(&self, number: u64, signer: &A) -> Result<(), SnapshotError<A>> {
        self.clone().begin_block(number, *signer)
    }

    /// Steps 1–4 for block `number` signed by `signer`.
    pub fn begin_block(&mut self, number: u64, signer: A) -> Result<(), SnapshotError<A>> {
        if number.is_multiple_of(self.epoch) {
            self.votes.clear();
            self.tally.clear();
        }
        self.forget_expired_recent(number);
        if !self.signers.contains(&signer) {
            return Err(SnapshotError::UnauthorizedSigner { signer });
        }
        if let Some(last) = self.recently_signed(&signer) {
            return Err(SnapshotError::RecentlySigned {
                signer,
                last,
                limit: self.signer_limit(),
            });
        }
        self.recents.insert(number, signer);
        Ok(())
    }

    /// A vote by `voter` (a signer) in block `number`.
    pub fn vote(
        &mut self,
        number: u64,
        voter: A,
        target: A,
        authorize: bool,
    ) -> Result<VoteOutcome, SnapshotError<A>> {
        if !self.signers.contains(&voter) {
            return Err(SnapshotError::UnauthorizedVoter { voter });
        }
        // One vote per signer and target: a new one replaces the old.
        if let Some(i) = self
            .votes
            .iter()
            .position(|v| v.signer == voter && v.target == target)
        {
            let old = self.votes.remove(i);
            self.uncast(&old.target, old.authorize);
        }
        let counted = self.cast(target, authorize);
        if counted {
            self.votes.push(Vote {
                signer: voter,
                target,
                authorize,
            });
        }
        // Checked even when this vote did not count: a tally that gained its majority
        // because the signer set shrank executes when its target is touched again, in the
        // direction of the tally (go-ethereum's behaviour, pinned by the shared cases).
        let passed = match self.tally.get(&target) {
            Some(t) if u64::from(t.votes) > self.signers.len() as u64 / 2 => t.authorize,
            _ => {
                return Ok(if counted {
                    VoteOutcome::Counted
                } else {
                    VoteOutcome::Ignored
                });
            }
        };
        let outcome = if passed {
            self.signers.insert(target);
            VoteOutcome::Added
        } else {
            self.signers.remove(&target);
            self.forget_expired_recent(number);
            // The removed signer's own votes no longer count.
            let mut i = 0;
            while i < self.votes.len() {
                if self.votes[i].signer == target {
                    let gone = self.votes.remove(i);
                    self.uncast(&gone.target, gone.authorize);
                } else {
                    i += 1;
                }
            }
            VoteOutcome::Removed
        };
        self.votes.retain(|v| v.target != target);
        self.tally.remove(&target);
        Ok(outcome)
    }

    /// Drops the recent entry of block `number − limit`, which no longer restricts anyone.
    fn forget_expired_recent(&mut self, number: u64) {
        let limit = self.signer_limit();
        if number >= limit {
            self.recents.remove(&(number - limit));
        }
    }

    fn cast(&mut self, target: A, authorize: bool) -> bool {
        if self.signers.contains(&target) == authorize {
            return false;
        }
        let entry = self.tally.entry(target).or_insert(Tally {
            authorize,
            votes: 0,
        });
        entry.votes += 1;
        true
    }

    fn uncast(&mut self, target: &A, authorize: bool) {
        if let Some(tally) = self.tally.get_mut(target)
            && tally.authorize == authorize
        {
            if tally.votes > 1 {
                tally.votes -= 1;
            } else {
                self.tally.remove(target);
            }
        }
    }
}
