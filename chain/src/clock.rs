//! Time is injected: engines and validation ask a [`Clock`], never the system directly, so
//! slot engines and coin-age stake can run under a manual or simulated clock in tests.

use crate::primitives::Timestamp;
use std::fmt::Debug;
use std::sync::Arc;
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

/// Another clock shifted by a fixed number of milliseconds, ahead (positive) or behind
/// (negative): a node started with `--clock-skew` runs on one, so fault tests can show
/// what a wrong wall clock does to validation and to a producer's schedule.
#[derive(Debug, Clone)]
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    skew_millis: i64,
}

impl SkewedClock {
    pub fn new(inner: Arc<dyn Clock>, skew_millis: i64) -> SkewedClock {
        SkewedClock { inner, skew_millis }
    }

    /// The shift, in milliseconds.
    pub fn skew_millis(&self) -> i64 {
        self.skew_millis
    }
}

impl Clock for SkewedClock {
    fn now_millis(&self) -> u64 {
        let now = self.inner.now_millis();
        // Saturating at both ends: a clock pushed before 1970 reads as the epoch.
        if self.skew_millis >= 0 {
            now.saturating_add(self.skew_millis.unsigned_abs())
        } else {
            now.saturating_sub(self.skew_millis.unsigned_abs())
        }
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
    fn skewed_clock_is_its_inner_clock_shifted() {
        // (inner start, skew, reading, reading one second later)
        let cases: [(u64, i64, u64, u64); 5] = [
            (100_000, 0, 100_000, 101_000),
            (100_000, 30_000, 130_000, 131_000),
            (100_000, -30_000, 70_000, 71_000),
            (10_000, -30_000, 0, 0),
            (u64::MAX - 1_005, 1_000, u64::MAX - 5, u64::MAX),
        ];
        for (start, skew, reading, later) in cases {
            let manual = Arc::new(ManualClock::default());
            manual.set_millis(start);
            let skewed = SkewedClock::new(manual.clone(), skew);
            assert_eq!(skewed.now_millis(), reading, "{start} {skew:+}");
            manual.advance_millis(1_000);
            assert_eq!(
                skewed.now_millis(),
                later,
                "{start} {skew:+} a second later"
            );
        }
        let ahead = SkewedClock::new(Arc::new(SystemClock), 3_600_000);
        assert!(ahead.now().0 >= SystemClock.now().0 + 3_599);
    }

    #[test]
    fn system_clock_is_after_2023() {
        assert!(SystemClock.now() > Timestamp(1_700_000_000));
    }
}
