//! `toychain reliability`: network faults, pauses, crashes and a skewed clock on a 4-node
//! devnet of real node processes per engine, each checked against the invariants of
//! Jepsen-style tests (issue 9): after healing, the nodes converge to one head within a
//! bound; no finalized block is ever reverted; the balances of every account that ever
//! held coins add up to the genesis supply plus the rewards minted on the final chain,
//! exactly; and every transfer a node acknowledged is on the final chain exactly once or
//! still pending in a mempool. The crash scenario adds, after every restart: the node's
//! state at its head equals a reference node's at the same block, its finalized block
//! did not go back, and no producer ever signed two blocks for one slot.
//!
//! Each (scenario, engine) pair is a row on a fresh devnet in `OUT/devnets/`; the table
//! goes to stdout, `OUT/reliability.md` and `OUT/reliability.json`. The exit code is 1
//! when a row fails, 2 for a usage error.

mod bank;
mod checks;
mod cluster;
mod scenario;

use crate::args::ReliabilityArgs;
use anyhow::{Context, anyhow};
use config::EngineKind;
use config::UsageError;
use devnet::{SignalWatch, say};
use scenario::{Scenario, Timing};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// The validated command line.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub engines: Vec<EngineKind>,
    pub scenarios: Vec<Scenario>,
    pub quick: bool,
    pub seed: u64,
    pub timing: Timing,
    #[serde(skip)]
    pub out: PathBuf,
}

impl Plan {
    fn from_args(args: ReliabilityArgs) -> anyhow::Result<Plan> {
        let mut engines = crate::compare::parse_engines("--engines", &args.engines)?;
        if engines.is_empty() {
            engines = EngineKind::ALL.to_vec();
        }
        let mut scenarios = Vec::new();
        for name in &args.scenarios {
            let name = name.trim();
            let scenario = Scenario::parse(name).ok_or_else(|| {
                usage(format!(
                    "--scenarios: unknown scenario {name:?}; choose from {}",
                    Scenario::ALL.map(Scenario::name).join(", ")
                ))
            })?;
            if scenarios.contains(&scenario) {
                return Err(usage(format!("--scenarios names {name} twice")));
            }
            scenarios.push(scenario);
        }
        if scenarios.is_empty() {
            scenarios = Scenario::ALL.to_vec();
        }
        if args.out.exists() && !args.out.is_dir() {
            return Err(usage(format!(
                "--out {}: exists and is not a folder; name a folder for the report",
                args.out.display()
            )));
        }
        let mut timing = if args.quick {
            Timing::quick()
        } else {
            Timing::full()
        };
        if let Some(n) = args.crash_cycles {
            if n == 0 || n > 10_000 {
                return Err(usage(format!("--crash-cycles {n}: give 1 to 10000 kills")));
            }
            timing.crash_cycles = n;
        }
        Ok(Plan {
            engines,
            scenarios,
            quick: args.quick,
            seed: args.seed,
            timing,
            out: args.out,
        })
    }
}

/// One (scenario, engine) result and its figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: Scenario,
    pub engine: String,
    pub result: &'static str,
    pub failures: Vec<String>,
    /// Seconds from the heal to one head on every node.
    pub converge_s: Option<f64>,
    /// When the fault began and was healed, seconds after the workload started.
    pub fault_window_s: Option<(f64, f64)>,
    /// Blocks added to the highest chain during the fault.
    pub fault_blocks: u64,
    pub acked: u64,
    pub refused: u64,
    pub included: u64,
    pub pending: u64,
    pub finalized_before: Option<u64>,
    pub finalized_after: Option<u64>,
    /// Times a node's finalized height went down with no finalized block reverted.
    pub finalized_went_down: u64,
    /// Blocks some node had under `miner::CONFIRMATIONS` blocks that the final chain
    /// does not hold: reverted after that many confirmations.
    pub reverted_confirmed: u64,
    pub final_height: u64,
    pub kills: Option<u64>,
    pub state_checks: Option<u64>,
    pub double_signs: Option<u64>,
    pub duration_s: f64,
}

impl Row {
    fn new(scenario: Scenario, kind: EngineKind) -> Row {
        Row {
            scenario,
            engine: kind.name().to_owned(),
            result: "FAIL",
            failures: Vec::new(),
            converge_s: None,
            fault_window_s: None,
            fault_blocks: 0,
            acked: 0,
            refused: 0,
            included: 0,
            pending: 0,
            finalized_before: None,
            finalized_after: None,
            finalized_went_down: 0,
            reverted_confirmed: 0,
            final_height: 0,
            kills: None,
            state_checks: None,
            double_signs: None,
            duration_s: 0.0,
        }
    }

    fn settle(&mut self) {
        self.result = if self.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
    }

    fn notes(&self) -> String {
        let mut notes: Vec<String> = self.failures.clone();
        if let (Some(k), Some(s)) = (self.kills, self.state_checks) {
            notes.push(format!(
                "{k} kills, {s} state comparisons, {} double signs",
                self.double_signs
                    .map_or("n/a".to_owned(), |d| d.to_string())
            ));
        }
        if self.finalized_went_down > 0 {
            notes.push(format!(
                "finalized height went down {}× (no finalized block reverted)",
                self.finalized_went_down
            ));
        }
        notes.join("; ")
    }
}

impl ReliabilityArgs {
    /// Runs `toychain reliability`.
    pub fn execute(self) -> anyhow::Result<()> {
        let plan = Plan::from_args(self)?;
        std::fs::create_dir_all(&plan.out)
            .with_context(|| format!("cannot create --out {}", plan.out.display()))?;
        let signals = SignalWatch::start()?;
        say(&format!(
            "reliability{}: {} scenario(s) × {} engine(s), report in {}",
            if plan.quick { " --quick" } else { "" },
            plan.scenarios.len(),
            plan.engines.len(),
            plan.out.display()
        ));
        let mut rows: Vec<Row> = Vec::new();
        let mut interrupted = false;
        'all: for scenario in &plan.scenarios {
            for kind in &plan.engines {
                match scenario::run_row(&plan, *scenario, *kind, &signals) {
                    Ok(Some(mut row)) => {
                        row.settle();
                        say(&format!(
                            "[{scenario}/{kind}] {}{}",
                            row.result,
                            if row.failures.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", row.notes())
                            }
                        ));
                        rows.push(row);
                    }
                    Ok(None) => {
                        interrupted = true;
                        break 'all;
                    }
                    Err(e) => {
                        let mut row = Row::new(*scenario, *kind);
                        row.failures.push(format!("{e:#}"));
                        row.settle();
                        say(&format!("[{scenario}/{kind}] FAIL: {e:#}"));
                        rows.push(row);
                    }
                }
                if signals.count() > 0 {
                    interrupted = true;
                    break 'all;
                }
            }
        }
        let table = table(&rows);
        say("");
        say(&table);
        write_reports(&plan, &rows, &table)?;
        say(&format!(
            "wrote reliability.md and reliability.json in {}",
            plan.out.display()
        ));
        let failed = rows.iter().filter(|r| r.result != "PASS").count();
        if interrupted {
            return Err(anyhow!("interrupted after {} row(s)", rows.len()));
        }
        if failed > 0 {
            return Err(anyhow!(
                "{failed} of {} row(s) failed; see {}",
                rows.len(),
                plan.out.join("reliability.md").display()
            ));
        }
        Ok(())
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// The summary as a Markdown table.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | engine | result | converge s | blocks in fault | txs acked / included / pending | finalized before → after | reverted after k conf. | notes |\n\
         |---|---|---|---:|---:|---|---|---:|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} / {} / {} | {} → {} | {} | {} |",
            r.scenario,
            r.engine,
            r.result,
            r.converge_s.map_or("–".to_owned(), |s| format!("{s:.1}")),
            r.fault_blocks,
            r.acked,
            r.included,
            r.pending,
            opt(r.finalized_before),
            opt(r.finalized_after),
            r.reverted_confirmed,
            r.notes().replace('|', "/"),
        );
    }
    out
}

fn write_reports(plan: &Plan, rows: &[Row], table: &str) -> anyhow::Result<()> {
    let t = &plan.timing;
    let mut md = String::from("# toychain reliability\n\n");
    let _ = writeln!(
        md,
        "{} run, seed {}: 4 node processes per row on 127.0.0.1, {} s blocks, {} bank \
         transfers a second among 8 accounts; faults of {} s (split {} s), convergence \
         bound {} s, {} crash kills.\n",
        if plan.quick { "Quick" } else { "Full" },
        plan.seed,
        t.block_time,
        t.tx_rate,
        t.fault.as_secs(),
        t.split.as_secs(),
        t.converge_bound.as_secs(),
        t.crash_cycles
    );
    md.push_str(table);
    let _ = writeln!(
        md,
        "\nreverted after k conf.: blocks that some node had under {k} blocks of its own \
         (the watch reads each node's block {k} below its head every poll) and that the final \
         chain does not hold. An engine that finalizes (DPoS, PBFT, Raft, Multi-Paxos, ZAB) must also never \
         revert a finalized block, which the finality check fails the row for; PoW, PoS and \
         PoA give only confirmations, so a long enough partition may revert confirmed blocks \
         and this column counts them.",
        k = miner::CONFIRMATIONS
    );
    let md_path = plan.out.join("reliability.md");
    std::fs::write(&md_path, md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let json = serde_json::json!({"plan": plan, "rows": rows});
    let json_path = plan.out.join("reliability.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json).context("cannot encode the report")?,
    )
    .with_context(|| format!("cannot write {}", json_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scenarios: &[&str]) -> ReliabilityArgs {
        ReliabilityArgs {
            engines: vec!["poa".into()],
            scenarios: scenarios.iter().map(|s| (*s).to_owned()).collect(),
            quick: true,
            out: PathBuf::from("reliability-out"),
            seed: 1,
            crash_cycles: None,
        }
    }

    #[test]
    fn defaults_run_every_scenario_and_quick_is_short() {
        let plan = Plan::from_args(args(&[])).expect("valid");
        assert_eq!(plan.scenarios, Scenario::ALL.to_vec());
        assert_eq!(plan.timing.crash_cycles, 5);
        let full = Plan::from_args(ReliabilityArgs {
            quick: false,
            ..args(&[])
        })
        .expect("valid");
        assert_eq!(full.timing.crash_cycles, 100);
        assert_eq!(full.timing.fault.as_secs(), 10);
        assert_eq!(full.timing.split.as_secs(), 20);
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_value() {
        let cases = [
            (args(&["disconnect", "earthquake"]), "earthquake"),
            (args(&["pause", "pause"]), "twice"),
            (
                ReliabilityArgs {
                    engines: vec!["hotstuff".into()],
                    ..args(&[])
                },
                "hotstuff",
            ),
            (
                ReliabilityArgs {
                    crash_cycles: Some(0),
                    ..args(&[])
                },
                "--crash-cycles 0",
            ),
        ];
        crate::assert_usage_errors(cases, Plan::from_args);
    }

    #[test]
    fn a_row_passes_only_without_failures() {
        let mut row = Row::new(Scenario::Split, EngineKind::Pow);
        row.settle();
        assert_eq!(row.result, "PASS");
        row.failures.push("supply: off by one".into());
        row.settle();
        assert_eq!(row.result, "FAIL");
        assert!(table(&[row]).contains("| split | pow | FAIL |"));
    }
}
