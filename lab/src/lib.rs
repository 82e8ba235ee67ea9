//! The lab: measure and compare the engines. `compare` runs real devnets of each engine
//! under one load; `simulate` runs the real chain and engines in virtual time over a
//! simulated network; `reliability` breaks devnets on purpose and checks that nothing is
//! lost; `bench` measures the miner and sync. Each command is an `Args` (its command line)
//! and a `run`.

pub mod args;
pub mod bench;
pub mod bench_sync;
pub mod bench_throughput;
pub mod compare;
pub mod reliability;
pub mod report_html;
pub mod simulate;
pub mod workload;

pub use args::{BenchArgs, CompareArgs, ReliabilityArgs, SimulateArgs};

#[cfg(test)]
use config::UsageError;

/// Asserts that `parse` refuses each case with a [`UsageError`] whose message contains the
/// case's needle (the flag and the bad value): the commands' flag-parsing tests share it.
#[cfg(test)]
pub(crate) fn assert_usage_errors<'a, A, T: std::fmt::Debug>(
    cases: impl IntoIterator<Item = (A, &'a str)>,
    parse: impl Fn(A) -> anyhow::Result<T>,
) {
    for (bad, needle) in cases {
        let err = parse(bad).expect_err(needle);
        assert!(
            err.downcast_ref::<UsageError>().is_some(),
            "{needle}: {err}"
        );
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}
