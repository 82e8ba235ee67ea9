//! The PBFT chain parameters, as they appear in a chain spec.

use crate::pbft::error::PbftError;
use chain::Address;
use serde::{Deserialize, Serialize};

/// Part of the chain's identity: the genesis hash commits to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbftParams {
    /// The genesis validators; their order does not matter (primaries follow address order).
    pub validators: Vec<Address>,
    /// Least seconds between a block and its parent; the primary proposes this long after
    /// its parent's timestamp.
    pub block_time: u64,
    /// How long a replica waits in a view for a decision before it asks for the next view
    /// (after the block time, at the first failed view).
    pub view_timeout_ms: u64,
    /// The cap on the view timeout, which doubles with every view that fails in a row.
    pub max_view_timeout_ms: u64,
}

impl PbftParams {
    /// A dev chain of `validators` deciding a block every 2 s, with a 4 s view timeout
    /// doubling up to a minute.
    pub fn devnet(validators: Vec<Address>) -> PbftParams {
        PbftParams {
            validators,
            block_time: 2,
            view_timeout_ms: 4_000,
            max_view_timeout_ms: 60_000,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), PbftError> {
        let invalid = |field, reason: String| PbftError::InvalidParams { field, reason };
        if self.validators.is_empty() {
            return Err(invalid("validators", "at least one is needed".into()));
        }
        if self.validators.len() > usize::from(u8::MAX) {
            return Err(invalid(
                "validators",
                format!(
                    "{} listed, at most 255 fit a certificate",
                    self.validators.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.validators {
            if !seen.insert(v) {
                return Err(invalid("validators", format!("{v} is listed twice")));
            }
        }
        if self.block_time == 0 {
            return Err(invalid("block_time", "must be at least 1 second".into()));
        }
        if self.view_timeout_ms == 0 {
            return Err(invalid(
                "view_timeout_ms",
                "must be at least 1 millisecond".into(),
            ));
        }
        if self.max_view_timeout_ms < self.view_timeout_ms {
            return Err(invalid(
                "max_view_timeout_ms",
                format!(
                    "{} is below view_timeout_ms {}",
                    self.max_view_timeout_ms, self.view_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    /// The timeout of a view after `failed` views failed in a row:
    /// `min(view_timeout_ms · 2^failed, max_view_timeout_ms)` (PBFT §4.5.2).
    pub fn view_timeout(&self, failed: u32) -> u64 {
        let doubled = self
            .view_timeout_ms
            .checked_shl(failed.min(63))
            .filter(|t| t >> failed.min(63) == self.view_timeout_ms)
            .unwrap_or(u64::MAX);
        doubled.min(self.max_view_timeout_ms)
    }
}
