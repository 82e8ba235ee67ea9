//! `toychain simulate` end to end: the binary run as users run it, its files read back.
//! Every run is in virtual time, so each takes seconds even in a debug build, and its
//! figures are fixed by the seed: the statistical checks below cannot flake.

use crate::support::toychain;
use config::{ChainSpec, EngineKind, EngineSpec};
use serde_json::Value;
use std::path::Path;

/// Runs `toychain simulate FLAGS… --out OUT` (`flags` split at white space, then `more`)
/// and returns metrics.json.
fn simulate(out: &Path, flags: &str, more: &[&str]) -> Value {
    let out_arg = out.to_str().expect("UTF-8 path");
    let mut all = vec!["simulate"];
    all.extend(flags.split_whitespace());
    all.extend_from_slice(more);
    all.extend_from_slice(&["--out", out_arg]);
    toychain(&all).assert_ok("simulate");
    let text = std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json");
    serde_json::from_str(&text).expect("metrics.json is JSON")
}

fn rows(json: &Value) -> &Vec<Value> {
    json["engines"].as_array().expect("an engines array")
}

fn number(row: &Value, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {row}"))
}

/// Blocks of the final chain per producer name.
fn producer_blocks(row: &Value) -> Vec<(String, u64)> {
    row["producers"]
        .as_array()
        .expect("producers")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["blocks"].as_u64().expect("blocks"),
            )
        })
        .collect()
}

#[test]
fn the_same_seed_gives_byte_identical_output_and_another_seed_other_figures() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // Load, loss and a lottery engine beside a clock-driven one: every source of
    // randomness and every path (orphans, requests, reorgs, mempools) is in play.
    let flags = |seed: &str| {
        format!("--engine pow,poa --nodes 4 --duration 10m --tx-rate 2 --loss 0.05 --seed {seed}")
    };
    let runs = [("a", "7"), ("b", "7"), ("c", "8")];
    for (dir, seed) in runs {
        simulate(&tmp.path().join(dir), &flags(seed), &[]);
    }
    let read = |dir: &str, file: &str| {
        std::fs::read(tmp.path().join(dir).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    for file in [
        "metrics.json",
        "metrics.csv",
        "report.md",
        "report.html",
        "intervals.svg",
        "finality.svg",
        "producers.svg",
    ] {
        assert!(
            read("a", file) == read("b", file),
            "{file} differs between two runs of seed 7"
        );
    }
    let json =
        |dir: &str| -> Value { serde_json::from_slice(&read(dir, "metrics.json")).expect("JSON") };
    let (seven, eight) = (json("a"), json("c"));
    let pow = |j: &Value| rows(j)[0].clone();
    assert_eq!(pow(&seven)["engine"], "pow");
    assert_ne!(
        pow(&seven)["block_interval_s"],
        pow(&eight)["block_interval_s"],
        "another seed draws other solve times"
    );
    assert_ne!(pow(&seven)["tx_latency_s"], pow(&eight)["tx_latency_s"]);
    for row in rows(&seven) {
        assert!(number(row, "tx_confirmed") > 0.0, "{row}");
        assert!(
            row["cpu_seconds"].is_null(),
            "nothing runs in real time: {row}"
        );
    }
}

#[test]
fn pow_with_four_equal_miners_keeps_its_target_interval() {
    // Two virtual hours of 5 s blocks: about 1,440 intervals, whose mean has a standard
    // error of about 5 / √1440 ≈ 0.13 s (2.6 %) for exponential intervals; ASERT pulls the
    // chain back to its schedule besides. The band 0.6–1.5 × 5 s is over ten standard
    // errors wide on either side, so it holds for any seed; seed 1 is fixed anyway.
    let tmp = tempfile::tempdir().expect("temp dir");
    let json = simulate(
        tmp.path(),
        "--engine pow --nodes 4 --duration 2h --seed 1",
        &[],
    );
    let row = &rows(&json)[0];
    let interval = &row["block_interval_s"];
    let mean = interval["mean"].as_f64().expect("a mean interval");
    assert!(
        (3.0..7.5).contains(&mean),
        "mean interval {mean} s for a 5 s target"
    );
    assert!(interval["count"].as_u64() > Some(1000), "{interval}");
    // Exponential intervals spread about as far as they are long.
    let stdev = interval["stdev"].as_f64().expect("stdev");
    assert!(stdev > 0.6 * mean, "stdev {stdev} s for mean {mean} s");
    let blocks = producer_blocks(row);
    assert_eq!(blocks.len(), 4);
    for (name, count) in &blocks {
        // A quarter of ~1,440 is 360, with a binomial standard deviation of about 16.
        assert!(
            (250..470).contains(count),
            "{name} made {count} blocks: {blocks:?}"
        );
    }
    assert!(number(row, "orphan_rate") < 0.1, "{row}");
}

#[test]
fn hash_power_shares_show_in_the_blocks_each_miner_makes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let json = simulate(
        tmp.path(),
        "--engine pow --nodes 4 --duration 1h --hash-rates 6,2,2,0",
        &[],
    );
    let blocks = producer_blocks(&rows(&json)[0]);
    let count = |name: &str| {
        blocks
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c)
    };
    assert_eq!(count("dave"), 0, "no hash power, no blocks: {blocks:?}");
    // 60 % of ~720 blocks: 432 ± 13; 20 %: 144 ± 11.
    assert!(count("alice") > 2 * count("bob"), "{blocks:?}");
    assert!(count("bob") > 80 && count("carol") > 80, "{blocks:?}");
}

#[test]
fn poa_and_dpos_blocks_come_from_every_node_on_the_clock() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let json = simulate(
        tmp.path(),
        "--engine poa,dpos --nodes 6 --duration 10m --latency 50",
        &[],
    );
    for row in rows(&json) {
        let blocks = producer_blocks(row);
        assert_eq!(blocks.len(), 6, "{row}");
        for (name, count) in &blocks {
            // 10 minutes of 5 s turns shared by 6: 20 each.
            assert!(
                *count >= 15,
                "{}: {name} made {count}: {blocks:?}",
                row["engine"]
            );
        }
        let interval = &row["block_interval_s"];
        let (mean, stdev) = (number(interval, "mean"), number(interval, "stdev"));
        assert!((mean - 5.0).abs() < 1e-9 && stdev < 1e-9, "{row}");
        assert!(row["finality_s"]["count"].as_u64() > Some(100), "{row}");
    }
}

#[test]
fn pos_with_peercoin_ages_stakes_after_thirty_days_of_virtual_time() {
    // Peercoin's ages: no coin stakes before 30 days, so 32 virtual days are simulated.
    // An account stakes at most once per minimum age (staking resets its age), so each of
    // the eight stakers makes one block in the days after the 30th.
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut spec = ChainSpec::dev(EngineKind::Pos);
    spec.engine = EngineSpec::Pos(miner::pos::PosParams::peercoin_like());
    let path = tmp.path().join("peercoin.toml");
    std::fs::write(&path, spec.to_toml()).expect("write the spec");
    let json = simulate(
        &tmp.path().join("out"),
        "--nodes 8 --duration 32d",
        &["--chain", path.to_str().expect("UTF-8 path")],
    );
    let row = &rows(&json)[0];
    assert_eq!(row["engine"], "pos");
    assert_eq!(row["measured_s"].as_f64(), Some(32.0 * 86_400.0));
    let blocks = producer_blocks(row);
    let stakers = blocks.iter().filter(|(_, c)| *c > 0).count();
    assert!(stakers >= 6, "blocks from several stakers: {blocks:?}");
    assert!(
        blocks.iter().all(|(_, c)| *c <= 1),
        "one stake each per 30 days: {blocks:?}"
    );
    assert_eq!(
        json["settings"]["chain"],
        path.to_str().expect("UTF-8 path")
    );
}

#[test]
fn a_hundred_and_twenty_nodes_simulate_in_seconds() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let json = simulate(
        tmp.path(),
        "--engine pow --nodes 120 --duration 2m --seed 3",
        &[],
    );
    let row = &rows(&json)[0];
    assert_eq!(row["nodes"].as_u64(), Some(120));
    assert!(number(row, "blocks_final") >= 10.0, "{row}");
    // Every block of the final chain but the newest reached all 120 nodes.
    let propagation = &row["propagation_s"];
    assert!(propagation["count"].as_u64() >= Some(10), "{propagation}");
    assert!(propagation["max"].as_f64() < Some(5.0), "{propagation}");
    let names: Vec<String> = producer_blocks(row).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"node119".to_owned()), "{names:?}");
}

#[test]
fn bad_flags_exit_2_naming_the_value() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().to_str().expect("UTF-8 path");
    let cases: [&[&str]; 12] = [
        &["--engine", "hotstuff"],
        &["--engine", "pow", "--fault", "meteor@5"],
        &[
            "--engine",
            "pow",
            "--duration",
            "60",
            "--fault",
            "partition@50:30",
        ],
        &["--engine", "pow", "--fault", "clock-skew:9:5"],
        &["--engine", "poa", "--selfish", "0"],
        &["--sweep", "greedy"],
        &["--sweep", "selfish", "--sweep-blocks", "5"],
        &["--engine", "pow", "--nodes", "0"],
        &["--engine", "pow", "--duration", "10x"],
        &["--engine", "pow", "--loss", "2"],
        &["--engine", "poa", "--hash-rates", "1,1,1,1"],
        &["--engine", "pow", "--latency", "fast"],
    ];
    for args in cases {
        let mut all = vec!["simulate", "--out", out];
        all.extend_from_slice(args);
        let run = toychain(&all);
        assert_eq!(run.code, 2, "{args:?}\n{}", run.stderr);
        let value = args[args.len() - 1];
        let value = value.split(':').next().unwrap_or(value);
        assert!(run.stderr.contains(value), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let missing = toychain(&["simulate", "--out", out]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("--engine"), "{}", missing.stderr);
}

#[test]
fn faults_get_a_liveness_and_safety_section_for_every_engine() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let json = simulate(
        tmp.path(),
        "--engine poa,dpos,pow --nodes 4 --duration 10m --seed 3",
        &[
            "--fault",
            "partition@120:120",
            "--fault",
            "kill-producer@400",
        ],
    );
    for row in rows(&json) {
        let engine = row["engine"].as_str().expect("engine");
        assert_eq!(row["finalized_conflicts"], 0, "{engine}");
        // Every engine reports blocks reverted after 6 confirmations; only DPoS finalizes
        // itself. In a 2|2 split each half of its schedule keeps building, so the heal
        // reverts blocks 6 deep on the losing side, while no finalized height ever held
        // two blocks: confirmations are not its finality, the LIB is.
        let reverted = row["reverted_after_k"].as_u64().expect("reverted_after_k");
        assert_eq!(row["engine_finality"], engine == "dpos", "{engine}");
        if engine == "dpos" {
            assert!(reverted > 0, "{row}");
        }
        let faults = row["faults"].as_array().expect("faults");
        assert_eq!(faults.len(), 2, "{engine}");
        assert_eq!(faults[0]["fault"], "partition@120:120");
        assert!(
            number(&faults[0], "blocks_per_min_after") > 0.0,
            "{engine}: {row}"
        );
        assert!(
            faults[1]["blocks_per_min_after"].is_null(),
            "a kill lasts to the end"
        );
    }
    let report = std::fs::read_to_string(tmp.path().join("report.md")).expect("report.md");
    assert!(report.contains("## Faults and safety"), "{report}");
    assert!(report.contains("| dpos | partition@120:120 |"), "{report}");
}

#[test]
fn the_selfish_sweep_writes_its_table_chart_and_verdict() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().to_str().expect("UTF-8 path");
    // 20,000 blocks a point: the same tolerance as the full sweep, in seconds.
    let run = toychain(&[
        "simulate",
        "--sweep",
        "selfish",
        "--sweep-blocks",
        "20000",
        "--seed",
        "4",
        "--out",
        out,
    ]);
    run.assert_ok("sweep");
    let md = std::fs::read_to_string(tmp.path().join("sweep-selfish.md")).expect("md");
    assert!(md.contains("within 0.02 of Eyal–Sirer: yes"), "{md}");
    assert_eq!(md.matches("\n| 0.").count(), 7, "one row per α: {md}");
    let csv = std::fs::read_to_string(tmp.path().join("sweep-selfish.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 8, "{csv}");
    let svg = std::fs::read_to_string(tmp.path().join("sweep-selfish.svg")).expect("svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("<circle"),
        "a chart with points"
    );
}

#[test]
fn block_shares_pass_a_chi_square_test_against_hash_power_stake_and_turns() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (flags, basis) in [
        (
            "--engine pow --nodes 4 --duration 2h --latency 20 --hash-rates 5,3,2,0",
            "hash power",
        ),
        (
            "--engine pos --nodes 4 --duration 6h --latency 20",
            "equal stakes",
        ),
        ("--engine dpos --nodes 5 --duration 1h", "equal turns"),
    ] {
        let out = tmp.path().join(basis.replace(' ', "-"));
        let mut args = vec!["simulate", "--out", out.to_str().expect("UTF-8 path")];
        args.extend(flags.split_whitespace());
        let run = toychain(&args);
        run.assert_ok(flags);
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains("block shares against"))
            .unwrap_or_else(|| panic!("no share check in: {}", run.stdout));
        assert!(line.contains(basis), "{line}");
        assert!(
            line.contains("(consistent at the 1% level"),
            "{flags}: {line}"
        );
    }
}
