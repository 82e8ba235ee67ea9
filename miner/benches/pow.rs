//! `cargo bench -p miner --bench pow`: the miner's hash rate on 1 and 2 threads, the raw
//! `compress256` ceiling of one core measured in the same run, the effect of interleaving
//! nonces, and how fast a search stops when cancelled.
//!
//! Set `POW_BENCH_SECS` to change the length of each hash-rate run (default 3 s).

use miner::pow::DEFAULT_LANES;
use miner::pow::PowError;
use miner::pow::SUPPORTED_LANES;
use miner::pow::bench::{
    cancel_latency, compress_ceiling, hashrate, hashrate_with_lanes, sha_ni_available,
};
use std::time::Duration;

fn main() -> Result<(), PowError> {
    let secs: f64 = std::env::var("POW_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .unwrap_or(3.0);
    let run = Duration::from_secs_f64(secs);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "pow miner benchmark: {cores} core(s), SHA-NI available: {}",
        sha_ni_available()
    );

    let ceiling = compress_ceiling(run);
    println!("{ceiling}");

    println!("\ninterleaving (1 thread, {:.1} s each):", secs / 2.0);
    for lanes in SUPPORTED_LANES {
        let r = hashrate_with_lanes(1, lanes, run / 2)?;
        let marker = if lanes == DEFAULT_LANES {
            "  <- default"
        } else {
            ""
        };
        let cpu = r
            .per_thread_hashes_per_cpu_sec()
            .map(|rates| format!(", {:.2} MH/s per CPU-second", rates[0] / 1e6))
            .unwrap_or_default();
        println!(
            "  {lanes} lane(s): {:.2} MH/s{cpu}{marker}",
            r.hashes_per_sec() / 1e6
        );
    }

    println!("\nhash rate ({DEFAULT_LANES} lanes):");
    let one = hashrate(1, run)?;
    println!("  {one}");
    let two = hashrate(2, run)?;
    println!("  {two}");
    let per_thread_one = one.hashes_per_sec();
    let per_thread_two = two.hashes_per_sec() / two.threads as f64;
    println!(
        "  wall clock: 1 thread {:.2} MH/s, 2 threads {:.2} MH/s per thread; speed-up {:.2}x; \
         1 thread = {:.0}% of the compress256 ceiling",
        per_thread_one / 1e6,
        per_thread_two / 1e6,
        two.hashes_per_sec() / per_thread_one,
        100.0 * per_thread_one / ceiling.hashes_per_sec()
    );
    if let (Some(r1), Some(r2)) = (
        one.per_thread_hashes_per_cpu_sec(),
        two.per_thread_hashes_per_cpu_sec(),
    ) {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "  per CPU-second: 1 thread {:.2} MH/s, 2 threads {:.2} MH/s per thread; \
             speed-up if each thread had a core {:.2}x",
            mean(&r1) / 1e6,
            mean(&r2) / 1e6,
            r2.iter().sum::<f64>() / mean(&r1)
        );
        if let Some(ceiling) = ceiling.hashes_per_cpu_sec() {
            println!(
                "  per CPU-second, 1 thread = {:.0}% of the compress256 ceiling",
                100.0 * mean(&r1) / ceiling
            );
        }
    }

    println!("\ncancellation (search cancelled 200 ms after it started):");
    for threads in [1, 2] {
        let latency = cancel_latency(threads, 20, Duration::from_millis(200))?;
        println!("  {latency}");
    }
    Ok(())
}
