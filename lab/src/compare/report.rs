//! `report.md`, `metrics.csv` and `metrics.json`: one row per engine, one table per metric.

use super::Plan;
use super::metrics::{CONFIRMATIONS, EngineMetrics, EngineResult, Summary};
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The machine the figures come from.
#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    cpu: Option<String>,
}

impl Machine {
    fn this() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            });
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
        }
    }

    fn describe(&self) -> String {
        match &self.cpu {
            Some(cpu) => format!("{} cores ({cpu})", self.cores),
            None => format!("{} cores", self.cores),
        }
    }
}

/// What a report is about: its title, the paragraph under it, and the settings that
/// `metrics.json` records. `compare` and `simulate` each describe their runs; the tables
/// below are the same for both.
#[derive(Debug)]
pub struct About<'a, S> {
    pub title: String,
    /// Ends with a blank line.
    pub intro: String,
    pub settings: &'a S,
    /// Whether the figures depend on this machine, which `metrics.json` then names.
    pub machine: bool,
    /// How often the nodes were polled, when they were.
    pub poll_interval_ms: Option<u128>,
}

#[derive(Debug, Serialize)]
struct JsonReport<'a, S> {
    settings: &'a S,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<Machine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_interval_ms: Option<u128>,
    pow_confirmations: u64,
    engines: Vec<&'a EngineMetrics>,
}

/// Writes compare's three files; returns their paths.
pub fn write(plan: &Plan, results: &[EngineResult]) -> anyhow::Result<Vec<PathBuf>> {
    let engines: Vec<&str> = results.iter().map(|r| r.metrics.engine.as_str()).collect();
    let about = About {
        title: format!("toychain compare: {}", engines.join(", ")),
        intro: intro(plan, &Machine::this()),
        settings: plan,
        machine: true,
        poll_interval_ms: Some(super::POLL.as_millis()),
    };
    write_report(&about, &plan.out, results)
}

/// Writes `report.md`, `metrics.csv` and `metrics.json` into `out`; returns their paths.
pub fn write_report<S: Serialize>(
    about: &About<'_, S>,
    out: &Path,
    results: &[EngineResult],
) -> anyhow::Result<Vec<PathBuf>> {
    let rows: Vec<&EngineMetrics> = results.iter().map(|r| &r.metrics).collect();
    let markdown = markdown(&about.title, &about.intro, &rows);
    let json = serde_json::to_string_pretty(&JsonReport {
        settings: about.settings,
        machine: about.machine.then(Machine::this),
        poll_interval_ms: about.poll_interval_ms,
        pow_confirmations: CONFIRMATIONS,
        engines: rows.clone(),
    })
    .context("cannot encode metrics.json")?;
    let files = [
        ("report.md", markdown),
        ("metrics.csv", csv(&rows)),
        ("metrics.json", json + "\n"),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = out.join(name);
        write_file(&path, &text)?;
        written.push(path);
    }
    Ok(written)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The line printed when an engine is done.
pub fn one_line(m: &EngineMetrics) -> String {
    format!(
        "{}: {} blocks on the final chain ({} produced), interval mean {} s, finality p50 {} s, \
         {} txs confirmed ({:.2}/s), CPU {} s/block, Gini {:.2}",
        m.engine,
        m.blocks_final,
        m.blocks_produced,
        num(m.block_interval_s.map(|s| s.mean)),
        num(m.finality_s.map(|s| s.p50)),
        m.tx_confirmed,
        m.confirmed_tps,
        num(m.cpu_seconds_per_block),
        m.gini
    )
}

/// A figure with two decimals, or a dash when there is none.
fn num(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// "Lowest: poa (0.21 s); highest: pow (4.90 s). " — empty with fewer than two values.
fn extremes(
    rows: &[&EngineMetrics],
    unit: &str,
    value: impl Fn(&EngineMetrics) -> Option<f64>,
) -> String {
    let mut valued: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|m| value(m).map(|v| (m.engine.as_str(), v)))
        .collect();
    if valued.len() < 2 {
        return String::new();
    }
    valued.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (low, high) = (valued[0], valued[valued.len() - 1]);
    if low.1 == high.1 {
        return format!("Every engine: {:.2}{unit}. ", low.1);
    }
    format!(
        "Lowest: {} ({:.2}{unit}); highest: {} ({:.2}{unit}). ",
        low.0, low.1, high.0, high.1
    )
}

fn summary_cells(s: Option<Summary>, fields: &[fn(&Summary) -> f64]) -> Vec<String> {
    fields.iter().map(|f| num(s.as_ref().map(f))).collect()
}

/// The paragraph under compare's title.
fn intro(plan: &Plan, machine: &Machine) -> String {
    let block_time = match plan.block_time_s {
        Some(s) => format!("{s} s for every engine"),
        None => "each engine's dev default".to_owned(),
    };
    format!(
        "{} node(s) per devnet on 127.0.0.1, {} s measured per engine, {} transfers/s offered \
         between {} load accounts funded at genesis, pre-signed and sent in JSON-RPC batches \
         (seed {}), block time: {block_time}. Machine: {}. Every node's RPC was \
         polled every {} ms; times are when the collector first saw something, so they carry \
         up to that much polling delay.\n",
        plan.nodes,
        plan.duration_s,
        plan.tx_rate,
        crate::workload::batched::sender_count(plan.tx_rate, plan.nodes),
        plan.seed,
        machine.describe(),
        super::POLL.as_millis()
    )
}

fn markdown(title: &str, intro: &str, rows: &[&EngineMetrics]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(out, "{intro}");

    section_block_interval(&mut out, rows);
    section_forks_and_orphans(&mut out, rows);
    section_reorgs(&mut out, rows);
    section_time_to_finality(&mut out, rows);
    section_transaction_inclusion(&mut out, rows);
    section_throughput(&mut out, rows);
    section_resources(&mut out, rows);
    section_producers(&mut out, rows);
    section_block_propagation(&mut out, rows);
    section_charts(&mut out);
    out
}

/// The report's "Block interval (s)" section.
fn section_block_interval(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Block interval (s)\n");
    let rows_interval: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let mut row = vec![
                m.engine.clone(),
                m.block_time_s.to_string(),
                m.block_interval_s.map_or(0, |s| s.count).to_string(),
            ];
            row.extend(summary_cells(
                m.block_interval_s,
                &[|s| s.mean, |s| s.stdev, |s| s.p50, |s| s.p95],
            ));
            row
        })
        .collect();
    table(
        out,
        &[
            "engine",
            "target",
            "intervals",
            "mean",
            "stdev",
            "p50",
            "p95",
        ],
        &rows_interval,
    );
    let _ = writeln!(
        out,
        "{}A small spread means blocks come on a clock (PoA periods, DPoS slots); proof of \
         work is a lottery on every hash, so its intervals are roughly exponential, with a \
         spread about as large as the mean; proof of stake's kernel is a lottery too, each \
         second, so its intervals spread as well.\n",
        extremes(rows, " s stdev", |m| m.block_interval_s.map(|s| s.stdev))
    );
}

/// The report's "Forks and orphans" section.
fn section_forks_and_orphans(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Forks and orphans\n");
    let rows_forks: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                m.engine.clone(),
                m.blocks_produced.to_string(),
                m.blocks_seen.to_string(),
                m.blocks_final.to_string(),
                pct(m.orphan_rate),
            ]
        })
        .collect();
    table(
        out,
        &[
            "engine",
            "produced",
            "seen by the collector",
            "on the final chain",
            "orphan rate",
        ],
        &rows_forks,
    );
    let _ = writeln!(
        out,
        "{}An orphan is a block that lost a race: two producers may both make the next block \
         when production is a lottery (proof of work's hashes, proof of stake's kernels), \
         almost never when each slot has one owner (DPoS) or an in-turn signer (PoA). \
         Produced is the larger of the blocks seen on any node's best chain and the nodes' own \
         counts; the final chain is node 0's at the end.\n",
        extremes(rows, "", |m| m.orphan_rate)
    );
}

/// The report's "Reorgs" section.
fn section_reorgs(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Reorgs\n");
    let rows_reorgs: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                m.engine.clone(),
                m.reorgs.to_string(),
                m.reorg_max_depth.to_string(),
                m.reorgs_node_reported
                    .map_or_else(|| "–".to_owned(), |v| v.to_string()),
            ]
        })
        .collect();
    table(
        out,
        &[
            "engine",
            "reorgs seen",
            "max depth",
            "reorgs the nodes counted",
        ],
        &rows_reorgs,
    );
    let _ = writeln!(
        out,
        "{}A reorg is a node switching to a branch that does not contain its previous head \
         (summed over nodes); its depth is how many blocks it dropped. Reorgs follow orphans: \
         every lost race that a node had already adopted costs it one.\n",
        extremes(rows, "", |m| Some(m.reorgs as f64))
    );
}

/// The report's "Time to finality (s)" section.
fn section_time_to_finality(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Time to finality (s)\n");
    let rows_finality: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let mut row = vec![
                m.engine.clone(),
                m.finality_rule.clone(),
                m.finality_s.map_or(0, |s| s.count).to_string(),
            ];
            row.extend(summary_cells(
                m.finality_s,
                &[|s| s.mean, |s| s.p50, |s| s.p95, |s| s.max],
            ));
            row.push(m.blocks_not_final.to_string());
            row.push(num(m.commit_latency_s.map(|s| s.p50)));
            row
        })
        .collect();
    table(
        out,
        &[
            "engine",
            "final when",
            "blocks",
            "mean",
            "p50",
            "p95",
            "max",
            "not yet final",
            "commit latency p50",
        ],
        &rows_finality,
    );
    let _ = writeln!(
        out,
        "{}From a block's first sighting to the first moment some node's best chain made it \
         final. Proof of work and proof of stake never finalise: {CONFIRMATIONS} blocks on top \
         only make a reversal unlikely, so it costs about {CONFIRMATIONS} intervals. DPoS waits \
         until more than 2/3 of the producers have built on a block, PoA (as measured here) \
         until ⌊N/2⌋+1 distinct signers have: a number of turns, not of lottery wins. A block \
         decided by votes (PBFT, Raft, Multi-Paxos, ZAB) is shown only once decided, so its time counts from its \
         proposal: the commit latency the nodes measured, from holding the proposal to the \
         decision.\n",
        extremes(rows, " s p50", |m| m.finality_s.map(|s| s.p50))
    );
}

/// The report's "Transaction inclusion (s)" section.
fn section_transaction_inclusion(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Transaction inclusion (s)\n");
    let rows_tx: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let mut row = vec![
                m.engine.clone(),
                m.tx_submitted.to_string(),
                m.tx_submit_errors.to_string(),
                m.tx_included.to_string(),
            ];
            row.extend(summary_cells(m.tx_latency_s, &[|s| s.p50, |s| s.p99]));
            row
        })
        .collect();
    table(
        out,
        &["engine", "submitted", "refused", "included", "p50", "p99"],
        &rows_tx,
    );
    let _ = writeln!(
        out,
        "{}A transfer waits for the next block, so its latency is about half an interval plus \
         propagation, longer when intervals are irregular (a long gap holds many transfers).\n",
        extremes(rows, " s p50", |m| m.tx_latency_s.map(|s| s.p50))
    );
}

/// The report's "Throughput" section.
fn section_throughput(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Throughput\n");
    let rows_tps: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                m.engine.clone(),
                format!("{:.2}", m.tx_offered_per_s),
                m.tx_confirmed.to_string(),
                format!("{:.2}", m.confirmed_tps),
            ]
        })
        .collect();
    table(
        out,
        &["engine", "offered tx/s", "confirmed txs", "confirmed tx/s"],
        &rows_tps,
    );
    let _ = writeln!(
        out,
        "{}Confirmed means in a block of the final chain. With a load far below block capacity \
         every engine confirms what it is offered; the gap is transfers still waiting at the \
         end, which grows with the interval.\n",
        extremes(rows, " tx/s", |m| Some(m.confirmed_tps))
    );
}

/// The report's "Resources" section.
fn section_resources(out: &mut String, rows: &[&EngineMetrics]) {
    // Left out when nothing was measured (a simulation runs no processes).
    if rows.iter().any(|m| m.cpu_seconds.is_some()) {
        let _ = writeln!(out, "## CPU per block (energy proxy)\n");
        let rows_cpu: Vec<Vec<String>> = rows
            .iter()
            .map(|m| {
                vec![
                    m.engine.clone(),
                    num(m.cpu_seconds),
                    num(m.cpu_seconds_per_block),
                ]
            })
            .collect();
        table(
            out,
            &["engine", "CPU s, all nodes", "CPU s per final block"],
            &rows_cpu,
        );
        let _ = writeln!(
            out,
            "{}User plus system time of the node processes from /proc while measuring. Proof \
             of work burns CPU on hashing whether or not it wins, so its cost per block is hash \
             rate times interval; the signing engines spend only on validation, gossip and RPC.\n",
            extremes(rows, " s", |m| m.cpu_seconds_per_block)
        );
    }
}

/// The report's "Producers" section.
fn section_producers(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Producers\n");
    let names: Vec<String> = rows
        .iter()
        .flat_map(|m| m.producers.iter().map(|p| p.name.clone()))
        .fold(Vec::new(), |mut acc, n| {
            if !acc.contains(&n) {
                acc.push(n);
            }
            acc
        });
    let rows_producers: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let mut row = vec![m.engine.clone()];
            for name in &names {
                row.push(match m.producers.iter().find(|p| &p.name == name) {
                    Some(p) => format!("{} ({:.0}%)", p.blocks, p.share * 100.0),
                    None => "–".to_owned(),
                });
            }
            row.push(format!("{:.3}", m.gini));
            row
        })
        .collect();
    let mut headers: Vec<&str> = vec!["engine"];
    headers.extend(names.iter().map(String::as_str));
    headers.push("Gini");
    table(out, &headers, &rows_producers);
    let _ = writeln!(
        out,
        "{}Blocks of the final chain per producer (node i authors as dev account i). Gini 0 \
         means equal shares; PoA and DPoS take turns, so they should be near 0, while proof of \
         work with equal hash power is fair only on average and a short run shows luck. An \
         engine that decides by votes (PBFT, Raft, Multi-Paxos, ZAB) is led: its leader or \
         primary proposes every block until it fails or is voted out, so a Gini near \
         (N−1)/N there is the design, not unfairness.\n",
        extremes(rows, "", |m| Some(m.gini))
    );

    faults_section(out, rows);
}

/// The report's "Block propagation (s)" section.
fn section_block_propagation(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Block propagation (s)\n");
    let rows_prop: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let mut row = vec![m.engine.clone()];
            row.extend(summary_cells(m.propagation_s, &[|s| s.p50, |s| s.p95]));
            row
        })
        .collect();
    table(out, &["engine", "p50", "p95"], &rows_prop);
    let _ = writeln!(
        out,
        "From a block's first sighting to when the last node had it on its best chain: gossip \
         and import, much the same for every engine.\n"
    );
}

/// The report's "Charts" section.
fn section_charts(out: &mut String) {
    let _ = writeln!(out, "## Charts\n");
    for (file, title) in super::charts::FILES {
        let _ = writeln!(out, "![{title}]({file})\n");
    }
}

/// Liveness around each fault and safety for every engine.
fn faults_section(out: &mut String, rows: &[&EngineMetrics]) {
    let _ = writeln!(out, "## Faults and safety\n");
    let any_fault = rows.iter().any(|m| !m.faults.is_empty());
    if any_fault {
        let height = |h: Option<u64>| h.map_or_else(|| "–".to_owned(), |h| h.to_string());
        let rate = |r: Option<f64>| r.map_or_else(|| "–".to_owned(), |r| format!("{r:.1}"));
        let rows_faults: Vec<Vec<String>> = rows
            .iter()
            .flat_map(|m| {
                m.faults.iter().map(move |f| {
                    vec![
                        m.engine.clone(),
                        f.fault.clone(),
                        rate(f.blocks_per_min_before),
                        rate(f.blocks_per_min_during),
                        rate(f.blocks_per_min_after),
                        height(f.finalized_at_start),
                        height(f.finalized_at_end),
                        height(f.finalized_at_finish),
                    ]
                })
            })
            .collect();
        table(
            out,
            &[
                "engine",
                "fault",
                "blocks/min before",
                "during",
                "after",
                "finalized height at its start",
                "at its end",
                "at the finish",
            ],
            &rows_faults,
        );
        let _ = writeln!(
            out,
            "Liveness: final-chain blocks a minute before, during and after each fault (a \
             fault lasting to the end has no after), and the highest final-chain height that \
             was final by then under the engine's rule (the time-to-finality table's). PoA and \
             DPoS need most producers to finalize, so a partition into halves stalls their \
             finality: they choose safety. k-deep confirmation in PoW and PoS goes on in each \
             half — it is a probability, not a promise, and the half that loses reverts \
             \"confirmed\" blocks.\n"
        );
    }
    let rows_safety: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                m.engine.clone(),
                if m.engine_finality {
                    "finality".to_owned()
                } else {
                    "confirmations only".to_owned()
                },
                if m.engine_finality {
                    m.finalized_conflicts.to_string()
                } else {
                    "—".to_owned()
                },
                m.reverted_after_k.to_string(),
                if m.finalized_conflicts > 0 {
                    "UNSAFE: finality broken"
                } else if m.reverted_after_k > 0 {
                    "confirmed blocks reverted"
                } else {
                    "safe"
                }
                .to_owned(),
            ]
        })
        .collect();
    let k = rows
        .first()
        .map_or(miner::CONFIRMATIONS, |m| m.confirmations_k);
    table(
        out,
        &[
            "engine",
            "gives",
            "heights finalized twice",
            &format!("blocks reverted after {k} confirmations"),
            "verdict",
        ],
        &rows_safety,
    );
    let _ = writeln!(
        out,
        "Safety, two ways. Engine finality: heights at which two different blocks were ever \
         reported finalized (by any two nodes, or by one node at two times); only engines \
         that finalize (a reported finalized height: DPoS's last irreversible block, a voting \
         engine's decided block) promise this, and it must be 0 with or without faults. \
         Confirmations, for every engine: distinct blocks that some node had under {k} blocks \
         of its own and later reverted — what a user who waits for {k} confirmations would \
         have seen undone. PoW, PoS and PoA give only confirmations: a long partition can \
         revert confirmed blocks, and this column shows when it did.\n"
    );
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The columns of `metrics.csv`, in order.
const CSV_HEADERS: [&str; 40] = [
    "engine",
    "nodes",
    "block_time_s",
    "measured_s",
    "intervals",
    "interval_mean_s",
    "interval_stdev_s",
    "interval_p50_s",
    "interval_p95_s",
    "blocks_produced",
    "blocks_seen",
    "blocks_final",
    "orphan_rate",
    "reorgs",
    "reorg_max_depth",
    "finality_rule",
    "final_blocks",
    "finality_mean_s",
    "finality_p50_s",
    "finality_p95_s",
    "commit_latency_p50_s",
    "blocks_not_final",
    "tx_offered_per_s",
    "tx_submitted",
    "tx_submit_errors",
    "tx_included",
    "tx_latency_p50_s",
    "tx_latency_p99_s",
    "tx_confirmed",
    "confirmed_tps",
    "cpu_seconds",
    "cpu_seconds_per_block",
    "propagation_p50_s",
    "propagation_p95_s",
    "gini",
    "producer_blocks",
    "finalized_conflicts",
    "engine_finality",
    "reverted_after_k",
    "faults",
];

fn csv(rows: &[&EngineMetrics]) -> String {
    let mut out = CSV_HEADERS.join(",") + "\n";
    for m in rows {
        let cells: Vec<String> = csv_cells(m).iter().map(|c| field(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// One engine's row of `metrics.csv`, a cell per [`CSV_HEADERS`] column.
fn csv_cells(m: &EngineMetrics) -> [String; CSV_HEADERS.len()] {
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.4}"));
    let interval = m.block_interval_s;
    let finality = m.finality_s;
    let latency = m.tx_latency_s;
    let producers: Vec<String> = m
        .producers
        .iter()
        .map(|p| format!("{}={}", p.name, p.blocks))
        .collect();
    [
        m.engine.clone(),
        m.nodes.to_string(),
        m.block_time_s.to_string(),
        format!("{:.3}", m.measured_s),
        interval.map_or(0, |s| s.count).to_string(),
        opt(interval.map(|s| s.mean)),
        opt(interval.map(|s| s.stdev)),
        opt(interval.map(|s| s.p50)),
        opt(interval.map(|s| s.p95)),
        m.blocks_produced.to_string(),
        m.blocks_seen.to_string(),
        m.blocks_final.to_string(),
        opt(m.orphan_rate),
        m.reorgs.to_string(),
        m.reorg_max_depth.to_string(),
        m.finality_rule.clone(),
        finality.map_or(0, |s| s.count).to_string(),
        opt(finality.map(|s| s.mean)),
        opt(finality.map(|s| s.p50)),
        opt(finality.map(|s| s.p95)),
        opt(m.commit_latency_s.map(|s| s.p50)),
        m.blocks_not_final.to_string(),
        format!("{:.3}", m.tx_offered_per_s),
        m.tx_submitted.to_string(),
        m.tx_submit_errors.to_string(),
        m.tx_included.to_string(),
        opt(latency.map(|s| s.p50)),
        opt(latency.map(|s| s.p99)),
        m.tx_confirmed.to_string(),
        format!("{:.4}", m.confirmed_tps),
        opt(m.cpu_seconds),
        opt(m.cpu_seconds_per_block),
        opt(m.propagation_s.map(|s| s.p50)),
        opt(m.propagation_s.map(|s| s.p95)),
        format!("{:.4}", m.gini),
        producers.join(";"),
        m.finalized_conflicts.to_string(),
        m.engine_finality.to_string(),
        m.reverted_after_k.to_string(),
        m.faults
            .iter()
            .map(|f| {
                format!(
                    "{}: {}/{}/{} blocks/min",
                    f.fault,
                    opt(f.blocks_per_min_before),
                    opt(f.blocks_per_min_during),
                    opt(f.blocks_per_min_after)
                )
            })
            .collect::<Vec<_>>()
            .join(";"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(field("6 blocks on top"), "6 blocks on top");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn extremes_name_the_lowest_and_highest() {
        let row = |engine: &str, gini: f64| EngineMetrics {
            engine: engine.to_owned(),
            nodes: 2,
            block_time_s: 1,
            measured_s: 1.0,
            block_interval_s: None,
            blocks_produced: 0,
            blocks_seen: 0,
            blocks_final: 0,
            orphan_rate: None,
            reorgs: 0,
            reorg_max_depth: 0,
            reorgs_node_reported: None,
            reorg_max_depth_node_reported: None,
            finality_rule: String::new(),
            finality_s: None,
            commit_latency_s: None,
            blocks_not_final: 0,
            tx_offered_per_s: 0.0,
            tx_submitted: 0,
            tx_submit_errors: 0,
            tx_included: 0,
            tx_latency_s: None,
            tx_confirmed: 0,
            confirmed_tps: 0.0,
            cpu_seconds: None,
            cpu_seconds_per_block: None,
            propagation_s: None,
            producers: Vec::new(),
            gini,
            poll_errors: 0,
            faults: Vec::new(),
            finalized_conflicts: 0,
            engine_finality: false,
            confirmations_k: 6,
            reverted_after_k: 0,
            signature_checks: None,
        };
        let (a, b, c) = (row("pow", 0.4), row("poa", 0.0), row("dpos", 0.1));
        assert_eq!(
            extremes(&[&a, &b, &c], "", |m| Some(m.gini)),
            "Lowest: poa (0.00); highest: pow (0.40). "
        );
        assert_eq!(extremes(&[&a], "", |m| Some(m.gini)), "");
        assert_eq!(
            extremes(&[&a, &a], " s", |m| Some(m.gini)),
            "Every engine: 0.40 s. "
        );
        let text = csv(&[&a, &b]);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("pow,2,1,")),
            "{text}"
        );
    }
}
