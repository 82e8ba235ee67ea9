//! `toychain bench`: the miner's hash rate, or a fresh node's sync against a plain import.

use crate::args::BenchArgs;
use config::UsageError;
use std::time::Duration;

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

impl BenchArgs {
    /// `toychain bench pow|sync`.
    pub fn execute(self) -> anyhow::Result<()> {
        if self.what == "sync" {
            return crate::bench_sync::run(self.blocks, usize::try_from(self.txs).unwrap_or(0));
        }
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            return Err(usage("--threads must be at least 1".into()));
        }
        println!(
            "measuring pow hash rate on {threads} thread(s) for {} s…",
            self.seconds
        );
        let report = miner::pow::bench::hashrate(threads, Duration::from_secs(self.seconds))
            .map_err(|e| anyhow::anyhow!("benchmark failed: {e}"))?;
        for (i, rate) in report.per_thread_hashes_per_sec().iter().enumerate() {
            println!("thread {i}: {:.2} MH/s", rate / 1e6);
        }
        println!("total: {:.2} MH/s", report.hashes_per_sec() / 1e6);
        Ok(())
    }
}
