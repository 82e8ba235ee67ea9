//! `toychain bench throughput`: the saturation sweep of a devnet, against the signature
//! ceiling measured in the same run.
//!
//! 1. The ceiling: this machine verifies freshly signed transfers (k256 ECDSA, no cache) on
//!    one thread and on every core. Each node checks each transfer's signature once (the
//!    signature cache makes its other checks hits), so `N` nodes on this machine cannot
//!    confirm more than (verifications a second on every core) / `N` transfers a second.
//!    Measured before the sweep and again after each rate; the fastest of all counts (a
//!    slow measurement would make the nodes' CPU look cheaper in verifications).
//! 2. The sweep: for each `--rates` value, a fresh devnet of `--nodes` real nodes as
//!    `toychain compare` runs it (the batched, pre-signed load of `workload::batched`), for
//!    `--duration` seconds.
//! 3. A table: offered, submitted, refused, confirmed a second, inclusion p50/p99, and the
//!    nodes' CPU per confirmed transfer per node in signature verifications, the signatures
//!    each node actually verified per transfer (its cache's misses); the saturation
//!    rate (the most confirmed a second) as a ratio of the ceiling. Written to
//!    `--out/throughput.md` too.

use crate::compare::{self, Plan, metrics::EngineMetrics};
use anyhow::anyhow;
use chain::{Amount, ChainId, SecretKey, Transaction};
use config::DEV_CHAIN_ID;
use config::EngineKind;
use devnet::{SignalWatch, say};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Transfers verified to measure the ceiling, in each of [`CEILING_ROUNDS`] rounds.
const CEILING_SAMPLE: usize = 10_000;
const CEILING_ROUNDS: usize = 3;

/// What `toychain bench throughput` runs.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub engine: EngineKind,
    pub nodes: usize,
    pub block_time: u64,
    pub rates: Vec<f64>,
    pub duration_s: u64,
    pub seed: u64,
    pub out: PathBuf,
}

/// Signature verifications a second on this machine.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    pub one_thread: f64,
    pub all_threads: f64,
    pub threads: usize,
}

impl Ceiling {
    /// Verifies `sample` freshly signed transfers (no cache) on one thread, then on every
    /// core.
    pub fn measure(sample: usize) -> Ceiling {
        let keys: Vec<SecretKey> = (0..64)
            .map(|k| SecretKey::from_seed(&format!("toychain/bench/ceiling/{k}")))
            .collect();
        let txs: Vec<Transaction> = (0..sample)
            .into_par_iter()
            .filter_map(|i| {
                let key = &keys[i % keys.len()];
                let to = keys[(i + 1) % keys.len()].address();
                wallet::build_transfer(
                    key,
                    ChainId(DEV_CHAIN_ID),
                    (i / keys.len()) as u64,
                    to,
                    Amount(1),
                    wallet::DEFAULT_FEE,
                )
                .ok()
            })
            .collect();
        let verify = |tx: &Transaction| tx.check_stateless(ChainId(DEV_CHAIN_ID)).is_ok();
        let rate = |count: usize, secs: f64| count as f64 / secs.max(f64::MIN_POSITIVE);
        // The best of a few rounds: anything else running only slows a round down.
        let (mut one_thread, mut all_threads) = (0f64, 0f64);
        for _ in 0..CEILING_ROUNDS {
            let start = Instant::now();
            let one = txs.iter().filter(|tx| verify(tx)).count();
            one_thread = one_thread.max(rate(one, start.elapsed().as_secs_f64()));
            let start = Instant::now();
            let all = txs.par_iter().filter(|tx| verify(tx)).count();
            all_threads = all_threads.max(rate(all, start.elapsed().as_secs_f64()));
        }
        Ceiling {
            one_thread,
            all_threads,
            threads: rayon::current_num_threads(),
        }
    }

    /// The faster of two measurements, figure by figure.
    pub fn best(self, other: Ceiling) -> Ceiling {
        Ceiling {
            one_thread: self.one_thread.max(other.one_thread),
            all_threads: self.all_threads.max(other.all_threads),
            threads: self.threads.max(other.threads),
        }
    }

    /// CPU seconds one verification takes when every core verifies: the condition the
    /// nodes run in under load (with one thread alone a core may run faster).
    pub fn cpu_per_verification(&self) -> f64 {
        self.threads.max(1) as f64 / self.all_threads.max(f64::MIN_POSITIVE)
    }

    /// The most transfers a second `nodes` nodes could confirm if each verified each
    /// transfer once and did nothing else.
    pub fn transfers_per_s(&self, nodes: usize) -> f64 {
        self.all_threads / nodes.max(1) as f64
    }
}

/// One rate's figures.
#[derive(Debug, Clone)]
pub struct Point {
    pub offered: f64,
    pub submitted_per_s: f64,
    pub refused: u64,
    pub confirmed_per_s: f64,
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    /// Node CPU per confirmed transfer per node, in signature verifications (their CPU
    /// time with every core verifying, [`Ceiling::cpu_per_verification`]).
    pub cpu_in_verifications: Option<f64>,
    /// Signatures verified per admitted transfer per node (the nodes' cache misses).
    pub checks_per_transfer: Option<f64>,
}

impl Point {
    fn of(m: &EngineMetrics, nodes: usize, duration_s: u64, ceiling: &Ceiling) -> Point {
        let secs = duration_s.max(1) as f64;
        let latency = m.tx_latency_s.as_ref();
        Point {
            offered: m.tx_offered_per_s,
            submitted_per_s: m.tx_submitted as f64 / secs,
            refused: m.tx_submit_errors,
            confirmed_per_s: m.confirmed_tps,
            p50_s: latency.map(|s| s.p50),
            p99_s: latency.map(|s| s.p99),
            cpu_in_verifications: m.cpu_seconds.and_then(|cpu| {
                (m.tx_confirmed > 0).then(|| {
                    cpu / m.tx_confirmed as f64
                        / nodes.max(1) as f64
                        / ceiling.cpu_per_verification()
                })
            }),
            checks_per_transfer: m.signature_checks.and_then(|checks| {
                (m.tx_submitted > 0)
                    .then(|| checks as f64 / m.tx_submitted as f64 / nodes.max(1) as f64)
            }),
        }
    }
}

impl Sweep {
    /// Measures the ceiling, runs every rate, prints and writes the table.
    pub fn run(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.out)
            .map_err(|e| anyhow!("cannot create --out {}: {e}", self.out.display()))?;
        say("measuring the signature ceiling…");
        let mut ceiling = Ceiling::measure(CEILING_SAMPLE);
        let signals = SignalWatch::start()?;
        let bar = compare::progress_bar(self.rates.len() as u64 * self.duration_s, "measured");
        let mut runs = Vec::new();
        for (i, rate) in self.rates.iter().enumerate() {
            let plan = Plan {
                engines: vec![self.engine],
                nodes: self.nodes,
                duration_s: self.duration_s,
                tx_rate: *rate,
                seed: self.seed,
                block_time_s: Some(self.block_time),
                faults: Vec::new(),
                out: self.out.join(format!("rate-{rate}")),
            };
            bar.set_position(i as u64 * self.duration_s);
            let Some(result) = compare::measure_engine(&plan, self.engine, &signals, &bar)? else {
                bar.finish_and_clear();
                return Err(anyhow!("interrupted at {rate} transfers a second"));
            };
            // The run's own report (report.md, metrics.json, …) beside its devnet folder.
            compare::report::write(&plan, std::slice::from_ref(&result))?;
            let point = Point::of(&result.metrics, self.nodes, self.duration_s, &ceiling);
            bar.suspend(|| {
                say(&format!(
                    "{rate}/s offered: {:.0}/s confirmed, p99 {}",
                    point.confirmed_per_s,
                    seconds(point.p99_s)
                ))
            });
            runs.push(result.metrics);
            ceiling = ceiling.best(Ceiling::measure(CEILING_SAMPLE));
        }
        bar.finish_and_clear();
        let points: Vec<Point> = runs
            .iter()
            .map(|m| Point::of(m, self.nodes, self.duration_s, &ceiling))
            .collect();
        let table = self.table(&ceiling, &points);
        print!("{table}");
        let path = self.out.join("throughput.md");
        std::fs::write(&path, &table)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
        say(&format!("wrote {}", path.display()));
        Ok(())
    }

    /// The sweep as markdown.
    pub fn table(&self, ceiling: &Ceiling, points: &[Point]) -> String {
        let limit = ceiling.transfers_per_s(self.nodes);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} nodes of {} with {} s blocks, {} s per rate. Signature ceiling measured in this \
             run (the fastest of its measurements, before the sweep and after each rate): \
             {:.0} verifications/s on one thread, {:.0}/s on {} threads ({:.0} µs of CPU \
             each with every core verifying, the unit of the CPU column), so {:.0} transfers/s \
             for {} nodes checking each once.\n",
            self.nodes,
            self.engine,
            self.block_time,
            self.duration_s,
            ceiling.one_thread,
            ceiling.all_threads,
            ceiling.threads,
            ceiling.cpu_per_verification() * 1e6,
            limit,
            self.nodes
        );
        out.push_str(
            "| offered/s | submitted/s | refused | confirmed/s | of ceiling | inclusion p50 | \
             inclusion p99 | node CPU per transfer (verifications) | signature checks per \
             transfer per node |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for p in points {
            let _ = writeln!(
                out,
                "| {:.0} | {:.0} | {} | {:.0} | {:.2} | {} | {} | {} | {} |",
                p.offered,
                p.submitted_per_s,
                p.refused,
                p.confirmed_per_s,
                p.confirmed_per_s / limit.max(f64::MIN_POSITIVE),
                seconds(p.p50_s),
                seconds(p.p99_s),
                figure(p.cpu_in_verifications),
                figure(p.checks_per_transfer)
            );
        }
        if let Some(best) = points
            .iter()
            .max_by(|a, b| a.confirmed_per_s.total_cmp(&b.confirmed_per_s))
        {
            let _ = writeln!(
                out,
                "\nSaturation: {:.0} transfers/s confirmed (offered {:.0}/s), {:.2} of the \
                 signature ceiling.",
                best.confirmed_per_s,
                best.offered,
                best.confirmed_per_s / limit.max(f64::MIN_POSITIVE)
            );
        }
        out
    }
}

fn figure(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2} s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_measured_and_divided_among_the_nodes() {
        let ceiling = Ceiling::measure(200);
        assert!(ceiling.one_thread > 0.0 && ceiling.all_threads > 0.0);
        assert!(
            (ceiling.transfers_per_s(4) * 4.0 - ceiling.all_threads).abs() < 1e-6,
            "{ceiling:?}"
        );
        let slower = Ceiling {
            one_thread: ceiling.one_thread / 2.0,
            all_threads: ceiling.all_threads * 2.0,
            threads: ceiling.threads,
        };
        let best = ceiling.best(slower);
        assert_eq!(best.one_thread, ceiling.one_thread);
        assert_eq!(best.all_threads, slower.all_threads);
        assert!(best.cpu_per_verification() < ceiling.cpu_per_verification());
    }

    #[test]
    fn the_table_names_the_saturation_point_and_its_ratio_to_the_ceiling() {
        let sweep = Sweep {
            engine: EngineKind::Poa,
            nodes: 4,
            block_time: 1,
            rates: vec![1_000.0, 4_000.0],
            duration_s: 20,
            seed: 1,
            out: PathBuf::from("unused"),
        };
        let ceiling = Ceiling {
            one_thread: 20_000.0,
            all_threads: 40_000.0,
            threads: 2,
        };
        let point = |offered: f64, confirmed: f64| Point {
            offered,
            submitted_per_s: offered,
            refused: 0,
            confirmed_per_s: confirmed,
            p50_s: Some(0.5),
            p99_s: None,
            cpu_in_verifications: Some(3.0),
            checks_per_transfer: Some(1.0),
        };
        let table = sweep.table(&ceiling, &[point(1_000.0, 990.0), point(4_000.0, 2_500.0)]);
        assert!(table.contains("10000 transfers/s for 4 nodes"), "{table}");
        assert!(
            table.contains("| 4000 | 4000 | 0 | 2500 | 0.25 | 0.50 s | n/a | 3.00 | 1.00 |"),
            "{table}"
        );
        assert!(
            table.contains("Saturation: 2500 transfers/s confirmed (offered 4000/s), 0.25"),
            "{table}"
        );
    }
}
