//! Time is injected: engines and validation ask a [`Clock`], never the system directly, so
//! slot engines and coin-age stake can run under a manual or simulated clock in tests.

use crate::primitives::Timestamp;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;

    /// Whole seconds since the Unix epoch.
    fn now(&self) -> Timestamp {
        Timestamp(self.now_millis() / 1000)
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            // A clock set before 1970 reads as the epoch rather than failing.
            .unwrap_or(0)
    }
}

/// A clock that moves only when told: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            millis: AtomicU64::new(start.0.saturating_mul(1000)),
        }
    }

    pub fn set_millis(&self, millis: u64) {
        self.millis.store(millis, Ordering::SeqCst);
    }

    pub fn advance_millis(&self, millis: u64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: u64) {
        self.advance_millis(secs.saturating_mul(1000));
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.millis.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp(100));
        assert_eq!(clock.now(), Timestamp(100));
        clock.advance_millis(999);
        assert_eq!(clock.now(), Timestamp(100));
        clock.advance_millis(1);
        assert_eq!(clock.now(), Timestamp(101));
        clock.advance_secs(86_400 * 30);
        assert_eq!(clock.now(), Timestamp(101 + 86_400 * 30));
    }

    #[test]
    fn system_clock_is_after_2023() {
        assert!(SystemClock.now() > Timestamp(1_700_000_000));
    }
}
