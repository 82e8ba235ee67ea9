//! `toychain bench`: the miner's hash rate, a fresh node's sync against a plain import, or a
//! devnet's saturation against the signature ceiling.

use crate::args::BenchArgs;
use crate::bench_throughput::Sweep;
use crate::compare::{MAX_TX_RATE, check_common_flags, parse_engines};
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
        if self.what == "throughput" {
            return self.sweep()?.run();
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

impl BenchArgs {
    /// The throughput sweep the flags describe, checked as `compare` checks its flags.
    fn sweep(&self) -> anyhow::Result<Sweep> {
        let engine = parse_engines("--engine", std::slice::from_ref(&self.engine))?
            .first()
            .copied()
            .ok_or_else(|| usage(format!("--engine {}: name one engine", self.engine)))?;
        let max_nodes = chain::dev::DEV_ACCOUNTS.len() as u64;
        if self.nodes == 0 || self.nodes > max_nodes {
            return Err(usage(format!(
                "--nodes {}: a devnet has 1 to {max_nodes} nodes, one per dev account",
                self.nodes
            )));
        }
        if self.rates.is_empty() {
            return Err(usage(format!(
                "--rates: give one or more rates up to {MAX_TX_RATE}, like 1000,2000,4000"
            )));
        }
        for rate in &self.rates {
            if *rate <= 0.0 {
                return Err(usage(format!(
                    "--rates {rate}: every rate must be above 0 transfers a second"
                )));
            }
            check_common_flags(*rate, "second", Some(self.block_time), &self.out)
                .map_err(|e| usage(format!("--rates: {e}")))?;
        }
        if self.duration == 0 || self.duration > 3_600 {
            return Err(usage(format!(
                "--duration {}: measure each rate for 1 to 3600 seconds",
                self.duration
            )));
        }
        Ok(Sweep {
            engine,
            nodes: usize::try_from(self.nodes).unwrap_or(1),
            block_time: self.block_time,
            rates: self.rates.clone(),
            duration_s: self.duration,
            seed: 1,
            out: self.out.clone(),
        })
    }
}
