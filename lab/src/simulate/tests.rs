//! Tests of the command line, the plans and the report of `toychain simulate`.

use super::*;

fn args(engines: &[&str]) -> SimulateArgs {
    SimulateArgs {
        engine: engines.iter().map(|s| (*s).to_owned()).collect(),
        chain: None,
        nodes: 4,
        duration: "10m".into(),
        latency: 100.0,
        jitter: None,
        bandwidth: 1e6,
        loss: 0.0,
        hash_rates: Vec::new(),
        seed: 1,
        tx_rate: 0.0,
        block_time: None,
        peers: 8,
        selfish: None,
        sweep: None,
        sweep_blocks: None,
        faults: Vec::new(),
        out: PathBuf::from("simulate-out"),
    }
}

#[test]
fn durations_take_units() {
    let cases = [
        ("600", Some(600)),
        ("90s", Some(90)),
        ("10m", Some(600)),
        ("2h", Some(7_200)),
        ("1.5h", Some(5_400)),
        ("3d", Some(259_200)),
        (" 5 m ", Some(300)),
        ("0", None),
        ("0.4", None),
        ("", None),
        ("h", None),
        ("10x", None),
        ("-5m", None),
        ("400d", None),
        ("1e3", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_duration(text), expected, "{text:?}");
    }
}

#[test]
fn nodes_past_the_dev_accounts_get_derived_funded_keys_and_dpos_caps_its_set() {
    let authors = author_keys(120);
    assert_eq!(authors[0].0, "alice");
    assert_eq!(authors[7].0, "heidi");
    assert_eq!(authors[8].0, "node8");
    assert_eq!(
        authors[8].1.address(),
        SecretKey::from_seed("toychain/sim/8").address()
    );
    let traders = traders(120, true);
    assert_eq!(traders[0].0, "trader0");
    let pos = dev_spec(EngineKind::Pos, &authors, &traders, None);
    assert_eq!(pos.genesis.alloc.len(), 128);
    pos.validate().expect("a valid spec");
    let dpos = dev_spec(EngineKind::Dpos, &authors, &traders, Some(2));
    dpos.validate().expect("a valid spec");
    let engine = serde_json::to_value(&dpos.engine).expect("serializes");
    assert_eq!(engine["kind"], "dpos");
    assert_eq!(engine["producers"], miner::dpos::MAX_PRODUCERS);
    assert_eq!(
        engine["genesis_delegates"].as_array().map(Vec::len),
        Some(120)
    );
    assert_eq!(dpos.engine.block_time(), 2);
}

#[test]
fn the_load_never_touches_a_producer_on_a_dev_spec() {
    let names =
        |nodes, dev| -> Vec<String> { traders(nodes, dev).into_iter().map(|(n, _)| n).collect() };
    assert_eq!(names(4, true), ["eve", "ferdie", "grace", "heidi"]);
    assert_eq!(names(4, false), names(4, true), "as compare, while it can");
    assert_eq!(names(16, true).len(), OWN_TRADERS);
    assert!(names(7, true).iter().all(|n| n.starts_with("trader")));
    assert_eq!(
        names(16, false).len(),
        DEV_ACCOUNTS.len(),
        "a spec file funds no others"
    );
}

#[test]
fn bad_arguments_are_usage_errors_naming_the_value() {
    let cases: Vec<(SimulateArgs, &str)> = vec![
        (args(&["pow", "proof-of-vibes"]), "proof-of-vibes"),
        (args(&["pow", "pow"]), "twice"),
        (args(&[]), "--engine"),
        (
            SimulateArgs {
                nodes: 0,
                ..args(&["poa"])
            },
            "--nodes 0",
        ),
        (
            SimulateArgs {
                nodes: 1001,
                ..args(&["poa"])
            },
            "--nodes 1001",
        ),
        (
            SimulateArgs {
                duration: "10x".into(),
                ..args(&["poa"])
            },
            "--duration 10x",
        ),
        (
            SimulateArgs {
                latency: -1.0,
                ..args(&["poa"])
            },
            "--latency -1",
        ),
        (
            SimulateArgs {
                latency: f64::NAN,
                ..args(&["poa"])
            },
            "--latency NaN",
        ),
        (
            SimulateArgs {
                jitter: Some(-2.0),
                ..args(&["poa"])
            },
            "--jitter -2",
        ),
        (
            SimulateArgs {
                bandwidth: 0.0,
                ..args(&["poa"])
            },
            "--bandwidth 0",
        ),
        (
            SimulateArgs {
                loss: 1.0,
                ..args(&["poa"])
            },
            "--loss 1",
        ),
        (
            SimulateArgs {
                tx_rate: -3.0,
                ..args(&["poa"])
            },
            "--tx-rate -3",
        ),
        (
            SimulateArgs {
                block_time: Some(0),
                ..args(&["poa"])
            },
            "--block-time 0",
        ),
        (
            SimulateArgs {
                hash_rates: vec![1.0, 2.0],
                ..args(&["pow"])
            },
            "--hash-rates 1,2",
        ),
        (
            SimulateArgs {
                hash_rates: vec![1.0, -1.0, 1.0, 1.0],
                ..args(&["pow"])
            },
            "--hash-rates 1,-1,1,1",
        ),
        (
            SimulateArgs {
                hash_rates: vec![0.0; 4],
                ..args(&["pow"])
            },
            "--hash-rates 0,0,0,0",
        ),
        (
            SimulateArgs {
                hash_rates: vec![1.0; 4],
                ..args(&["poa"])
            },
            "only proof of work",
        ),
        (
            SimulateArgs {
                chain: Some(PathBuf::from("/nonexistent/spec.toml")),
                ..args(&[])
            },
            "/nonexistent/spec.toml",
        ),
    ];
    crate::assert_usage_errors(cases, Plan::from_args);
}

#[test]
fn hash_rates_become_shares_and_default_to_equal() {
    let plan = Plan::from_args(SimulateArgs {
        hash_rates: vec![1.0, 1.0, 2.0, 0.0],
        ..args(&["pow", "poa"])
    })
    .expect("valid");
    assert_eq!(plan.hash_shares, vec![0.25, 0.25, 0.5, 0.0]);
    assert_eq!(plan.engines, vec![EngineKind::Pow, EngineKind::Poa]);
    let plan = Plan::from_args(args(&["pow"])).expect("valid");
    assert_eq!(plan.hash_shares, vec![0.25; 4]);
    assert_eq!(
        plan.link.jitter_ms, 20.0,
        "a fifth of the latency by default"
    );
}

#[test]
fn a_mixed_list_with_voting_engines_runs_and_repeats_byte_for_byte() {
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    for dir in &dirs {
        SimulateArgs {
            duration: "30".into(),
            tx_rate: 1.0,
            out: dir.path().to_path_buf(),
            ..args(&["pow", "pbft", "raft", "paxos", "zab"])
        }
        .execute()
        .expect("runs");
    }
    let mut names: Vec<_> = std::fs::read_dir(dirs[0].path())
        .expect("lists")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n == "report.md"), "{names:?}");
    for name in &names {
        let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join(name)).expect("reads");
        assert_eq!(read(&dirs[0]), read(&dirs[1]), "{name:?} differs");
    }
    let report = std::fs::read_to_string(dirs[0].path().join("report.md")).expect("reads");
    for engine in ["pow", "pbft", "raft", "paxos", "zab"] {
        assert!(report.contains(engine), "{engine} missing from the report");
    }
    // A voted block is final once shown, and its finality counts from the proposal: the
    // commit latency in virtual time, as compare measures it on real nodes.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dirs[0].path().join("metrics.json")).expect("reads"),
    )
    .expect("JSON");
    for row in json["engines"].as_array().expect("engines") {
        let p50 = |key: &str| row[key]["p50"].as_f64();
        match row["engine"].as_str() {
            Some("pow") => assert!(row["commit_latency_s"].is_null(), "{row}"),
            Some(engine) => {
                let latency = p50("commit_latency_s").unwrap_or_else(|| panic!("{engine}: {row}"));
                let finality = p50("finality_s").unwrap_or_else(|| panic!("{engine}: {row}"));
                assert!(latency > 0.0, "{engine}: {row}");
                assert!(
                    (finality - latency).abs() < 1e-9,
                    "{engine}: finality p50 {finality} against commit latency p50 {latency}"
                );
            }
            None => panic!("a row without an engine: {row}"),
        }
    }
}

/// `--sweep NAME` with `size` a point into `out`.
fn sweep_args(name: &str, size: Option<u64>, out: &std::path::Path) -> SimulateArgs {
    SimulateArgs {
        sweep: Some(name.to_owned()),
        sweep_blocks: size,
        out: out.to_path_buf(),
        ..args(&[])
    }
}

#[test]
fn the_pbft_sweep_writes_its_table_chart_and_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    sweep_args("pbft", Some(4), dir.path())
        .execute()
        .expect("every point within tolerance");
    let md = std::fs::read_to_string(dir.path().join("sweep-pbft.md")).expect("written");
    assert!(md.contains("3d = 150 ms"), "{md}");
    assert!(md.contains("τ + 4d"), "{md}");
    assert!(!md.contains("| NO |"), "{md}");
    for file in ["sweep-pbft.csv", "sweep-pbft.svg"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    let err = sweep_args("pbft", Some(1), dir.path())
        .execute()
        .expect_err("too small");
    assert!(err.to_string().contains("--sweep-blocks 1"), "{err}");
}

/// The full voting sweeps behind the README's tables: `SWEEP_OUT=DIR cargo test -p lab --
/// --ignored --nocapture full_voting_sweeps` (minutes in a debug build).
#[test]
#[ignore = "minutes: the full PBFT and Raft sweeps"]
fn full_voting_sweeps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::env::var_os("SWEEP_OUT").map_or_else(|| dir.path().to_path_buf(), PathBuf::from);
    for name in ["pbft", "raft"] {
        sweep_args(name, None, &out)
            .execute()
            .expect("every point within tolerance");
        let md = std::fs::read_to_string(out.join(format!("sweep-{name}.md"))).expect("written");
        println!("{md}");
    }
}

#[test]
fn a_load_beyond_what_one_block_a_second_carries_is_simulated_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    SimulateArgs {
        nodes: 2,
        duration: "2".into(),
        block_time: Some(1),
        tx_rate: 20_000.0,
        out: dir.path().to_path_buf(),
        ..args(&["poa"])
    }
    .execute()
    .expect("20,000 transfers a second is within the limit");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("metrics.json")).expect("reads"),
    )
    .expect("JSON");
    let row = &json["engines"][0];
    assert_eq!(row["tx_offered_per_s"].as_f64(), Some(20_000.0), "{row}");
    let submitted = row["tx_submitted"].as_u64().expect("a count");
    let refused = row["tx_submit_errors"].as_u64().expect("a count");
    assert!(
        submitted + refused >= 36_000,
        "offered 40,000 over 2 s: {row}"
    );
    assert!(row["tx_confirmed"].as_u64() > Some(0), "{row}");
    assert!(
        row["tx_latency_s"]["p99"].as_f64().is_some(),
        "p99 inclusion reported: {row}"
    );
    let err = SimulateArgs {
        tx_rate: 60_000.0,
        out: dir.path().to_path_buf(),
        ..args(&["poa"])
    }
    .execute()
    .expect_err("above the limit");
    assert!(err.to_string().contains("--tx-rate 60000"), "{err}");
}
