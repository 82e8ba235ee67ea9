//! Measurements of the miner for `toychain bench pow` and `cargo bench -p miner --bench pow`:
//! hash rate per thread, the raw compression ceiling of one core, and how long a search
//! takes to stop once cancelled. Wall-clock timing is the point here, so these use
//! `std::time::Instant`; nothing in consensus does.

use crate::pow::error::PowError;
use crate::pow::producer::{mine, mining_pool};
use crate::pow::search::DEFAULT_LANES;
use crate::pow::target::Target;
use chain::{Address, BlockHash, CancelFlag, EngineFields, Hash256, Header, Height, Timestamp};
use sha2::block_api::compress256;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

/// Hashes done in a timed run.
#[derive(Clone, Debug)]
pub struct HashrateReport {
    pub threads: usize,
    /// Nonces hashed side by side per thread.
    pub lanes: usize,
    pub elapsed: Duration,
    pub hashes_per_thread: Vec<u64>,
    /// CPU time each mining thread got (Linux only): on a machine shared with other work
    /// the wall-clock rate understates the miner, hashes per CPU-second do not.
    pub cpu_per_thread: Option<Vec<Duration>>,
}

impl HashrateReport {
    pub fn total_hashes(&self) -> u64 {
        self.hashes_per_thread.iter().sum()
    }

    /// All threads together, hashes per second.
    pub fn hashes_per_sec(&self) -> f64 {
        self.total_hashes() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Each thread's hashes per second.
    pub fn per_thread_hashes_per_sec(&self) -> Vec<f64> {
        let secs = self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        self.hashes_per_thread
            .iter()
            .map(|&h| h as f64 / secs)
            .collect()
    }

    /// Each thread's hashes per second of CPU time it was given, when known.
    pub fn per_thread_hashes_per_cpu_sec(&self) -> Option<Vec<f64>> {
        let cpu = self.cpu_per_thread.as_ref()?;
        Some(
            self.hashes_per_thread
                .iter()
                .zip(cpu)
                .map(|(&h, t)| h as f64 / t.as_secs_f64().max(f64::MIN_POSITIVE))
                .collect(),
        )
    }

    /// The share of the wall-clock time the threads were on a CPU (1.0 = each thread had
    /// a core to itself), when known.
    pub fn cpu_share(&self) -> Option<f64> {
        let cpu = self.cpu_per_thread.as_ref()?;
        let total: f64 = cpu.iter().map(Duration::as_secs_f64).sum();
        Some(total / (self.elapsed.as_secs_f64() * cpu.len().max(1) as f64))
    }
}

/// CPU time the calling thread has run, from `/proc/thread-self/schedstat` (nanoseconds on
/// CPU); `None` where that file does not exist.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// CPU time of every thread of `pool`, by thread index.
fn pool_cpu_times(pool: &rayon::ThreadPool) -> Option<Vec<Duration>> {
    pool.broadcast(|_| thread_cpu_time()).into_iter().collect()
}

impl fmt::Display for HashrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_thread: Vec<String> = self
            .per_thread_hashes_per_sec()
            .iter()
            .map(|r| format!("{:.2}", r / 1e6))
            .collect();
        write!(
            f,
            "{} thread(s), {} lane(s): {:.2} MH/s total, per thread [{}] MH/s, {} hashes in {:.2?}",
            self.threads,
            self.lanes,
            self.hashes_per_sec() / 1e6,
            per_thread.join(", "),
            self.total_hashes(),
            self.elapsed
        )?;
        if let (Some(rates), Some(share)) = (self.per_thread_hashes_per_cpu_sec(), self.cpu_share())
        {
            let rates: Vec<String> = rates.iter().map(|r| format!("{:.2}", r / 1e6)).collect();
            write!(
                f,
                "; per CPU-second [{}] MH/s, CPU share {:.0}%",
                rates.join(", "),
                100.0 * share
            )?;
        }
        Ok(())
    }
}

/// A header to mine in benchmarks: realistic field sizes, fixed contents.
fn bench_header() -> Header {
    Header {
        version: chain::block::HEADER_VERSION,
        parent: BlockHash([0x11; 32]),
        height: Height(1),
        timestamp: Timestamp(1_700_000_000),
        tx_root: Hash256([0x22; 32]),
        state_root: Hash256([0x33; 32]),
        producer: Address([0x44; 20]),
        engine: EngineFields {
            bits: 0x0101_0000,
            nonce: 0,
            data: 0u64.to_le_bytes().to_vec(),
            seal: Vec::new(),
        },
    }
}

/// Mines with an unreachable target for about `duration` on `threads` threads (0 = one
/// per core) with the miner's default lane count.
pub fn hashrate(threads: usize, duration: Duration) -> Result<HashrateReport, PowError> {
    hashrate_with_lanes(threads, DEFAULT_LANES, duration)
}

/// [`hashrate`] with a chosen number of interleaved nonces per thread (1, 2, 4, 8 or 16).
pub fn hashrate_with_lanes(
    threads: usize,
    lanes: usize,
    duration: Duration,
) -> Result<HashrateReport, PowError> {
    let pool = mining_pool(threads)?;
    let cancel = CancelFlag::new();
    let timer = {
        let cancel = cancel.clone();
        thread::spawn(move || {
            thread::sleep(duration);
            cancel.cancel();
        })
    };
    let cpu_before = pool_cpu_times(&pool);
    let start = Instant::now();
    // A zero target is met only by a zero hash: the search runs until cancelled.
    let report = mine(&pool, lanes, bench_header(), Target::ZERO, &cancel);
    let elapsed = start.elapsed();
    let cpu_after = pool_cpu_times(&pool);
    // The timer only sleeps and sets a flag; it cannot panic.
    let _ = timer.join();
    let report = report?;
    Ok(HashrateReport {
        threads: pool.current_num_threads(),
        lanes,
        elapsed,
        hashes_per_thread: report.hashes_per_thread,
        cpu_per_thread: cpu_before.zip(cpu_after).map(|(before, after)| {
            after
                .iter()
                .zip(&before)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect()
        }),
    })
}

/// The raw speed of `sha2::block_api::compress256` on one thread: the ceiling for a miner
/// that needs two compressions per nonce.
#[derive(Clone, Copy, Debug)]
pub struct CompressCeiling {
    pub compressions_per_sec: f64,
    /// Compressions per second of CPU time the thread got (Linux only).
    pub compressions_per_cpu_sec: Option<f64>,
}

impl CompressCeiling {
    /// sha256d hashes per second if nothing but the two compressions cost time.
    pub fn hashes_per_sec(&self) -> f64 {
        self.compressions_per_sec / 2.0
    }

    /// The same per second of CPU time, when known.
    pub fn hashes_per_cpu_sec(&self) -> Option<f64> {
        self.compressions_per_cpu_sec.map(|c| c / 2.0)
    }
}

impl fmt::Display for CompressCeiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "compress256: {:.2} M compressions/s = {:.2} MH/s sha256d ceiling (serial, one thread)",
            self.compressions_per_sec / 1e6,
            self.hashes_per_sec() / 1e6
        )?;
        if let Some(per_cpu) = self.compressions_per_cpu_sec {
            write!(
                f,
                "; per CPU-second {:.2} M compressions = {:.2} MH/s",
                per_cpu / 1e6,
                per_cpu / 2e6
            )?;
        }
        Ok(())
    }
}

/// Runs dependent compressions (each on the previous state, as within one nonce) for about
/// `duration` on the calling thread.
pub fn compress_ceiling(duration: Duration) -> CompressCeiling {
    let mut state = [0x6a09_e667u32; 8];
    let mut block = [0x5au8; 64];
    let mut count = 0u64;
    let cpu_before = thread_cpu_time();
    let start = Instant::now();
    while start.elapsed() < duration {
        for _ in 0..10_000 {
            compress256(&mut state, std::slice::from_ref(&block));
        }
        // Feed the state back so the compiler cannot hoist or skip the work.
        block[0] = state[0] as u8;
        count += 10_000;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_before
        .zip(thread_cpu_time())
        .map(|(b, a)| a.saturating_sub(b));
    CompressCeiling {
        compressions_per_sec: count as f64 / elapsed.as_secs_f64(),
        compressions_per_cpu_sec: cpu
            .filter(|c| !c.is_zero())
            .map(|c| count as f64 / c.as_secs_f64()),
    }
}

/// Time from raising the cancel flag to the search returning.
#[derive(Clone, Debug)]
pub struct CancelLatency {
    pub threads: usize,
    pub samples: Vec<Duration>,
}

impl CancelLatency {
    pub fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }

    pub fn median(&self) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }
}

impl fmt::Display for CancelLatency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cancel latency on {} thread(s): median {:.2?}, max {:.2?} over {} runs",
            self.threads,
            self.median(),
            self.max(),
            self.samples.len()
        )
    }
}

/// Starts `samples` searches, cancels each after `run_for`, and times how long each took
/// to return after the cancel.
pub fn cancel_latency(
    threads: usize,
    samples: usize,
    run_for: Duration,
) -> Result<CancelLatency, PowError> {
    let pool = mining_pool(threads)?;
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let cancel = CancelFlag::new();
        let timer = {
            let cancel = cancel.clone();
            thread::spawn(move || {
                thread::sleep(run_for);
                let at = Instant::now();
                cancel.cancel();
                at
            })
        };
        mine(&pool, DEFAULT_LANES, bench_header(), Target::ZERO, &cancel)?;
        let returned = Instant::now();
        // A timer that somehow panicked counts as a zero latency, not a failed bench.
        let cancelled_at = timer.join().unwrap_or(returned);
        latencies.push(returned.saturating_duration_since(cancelled_at));
    }
    Ok(CancelLatency {
        threads: pool.current_num_threads(),
        samples: latencies,
    })
}

/// Whether this CPU has the SHA extensions that `sha2` uses when present.
pub fn sha_ni_available() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("sha") && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shape only: tests never assert on speed.
    #[test]
    fn reports_count_every_thread_and_sample() {
        let report = hashrate(2, Duration::from_millis(30)).expect("runs");
        assert_eq!(report.threads, 2);
        assert_eq!(report.hashes_per_thread.len(), 2);
        assert!(report.hashes_per_thread.iter().all(|&h| h > 0));
        assert_eq!(report.per_thread_hashes_per_sec().len(), 2);
        if let Some(cpu) = &report.cpu_per_thread {
            assert_eq!(cpu.len(), 2);
        }
        assert!(report.to_string().contains("2 thread(s)"));
        let latency = cancel_latency(1, 3, Duration::from_millis(5)).expect("runs");
        assert_eq!(latency.samples.len(), 3);
        assert!(latency.median() <= latency.max());
        assert!(compress_ceiling(Duration::from_millis(5)).compressions_per_sec > 0.0);
    }
}
