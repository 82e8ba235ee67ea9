//! `toychain reliability --quick` end to end on a subset that fits CI: real 4-node
//! devnets, real faults, every row must pass and the reports must be written. The full
//! suite (every scenario on every engine) is run by hand; its last table is in the README.

use crate::support::{BIN, toychain};
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Four rows of about 30 s each on a debug build, with room for a busy machine.
const DEADLINE: Duration = Duration::from_secs(420);

#[test]
fn quick_disconnect_and_restart_pass_on_poa_and_pow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("report");
    let mut child = Command::new(BIN)
        .args([
            "reliability",
            "--quick",
            "--engines",
            "poa,pow",
            "--scenarios",
            "disconnect,restart",
            "--out",
        ])
        .arg(&out_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("toychain reliability starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            // SIGTERM first: the command stops its devnets on the way out.
            crate::support::stop_child(&mut child, Duration::from_secs(30));
            panic!("toychain reliability did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = out_reader.join().expect("stdout");
    let stderr = err_reader.join().expect("stderr");
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("reliability.json")).expect("reliability.json"),
    )
    .expect("valid JSON");
    let rows = json["rows"].as_array().expect("rows");
    let mut seen: Vec<(String, String)> = Vec::new();
    for row in rows {
        assert_eq!(row["result"], "PASS", "{row}");
        assert!(row["converge_s"].as_f64().is_some(), "{row}");
        assert!(row["acked"].as_u64().is_some_and(|n| n > 0), "{row}");
        assert_eq!(
            row["acked"].as_u64(),
            Some(row["included"].as_u64().unwrap_or(0) + row["pending"].as_u64().unwrap_or(0)),
            "{row}"
        );
        seen.push((
            row["scenario"].as_str().unwrap_or("").to_owned(),
            row["engine"].as_str().unwrap_or("").to_owned(),
        ));
    }
    seen.sort();
    let expected: Vec<(String, String)> = [
        ("disconnect", "poa"),
        ("disconnect", "pow"),
        ("restart", "poa"),
        ("restart", "pow"),
    ]
    .map(|(s, e)| (s.to_owned(), e.to_owned()))
    .to_vec();
    assert_eq!(seen, expected);
    let md = std::fs::read_to_string(out_dir.join("reliability.md")).expect("reliability.md");
    assert_eq!(md.matches("| PASS |").count(), 4, "{md}");
    assert!(stdout.contains("| restart | pow | PASS |"), "{stdout}");
}

#[test]
fn an_unknown_scenario_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = toychain(&[
        "reliability",
        "--scenarios",
        "disconnect,earthquake",
        "--out",
        dir.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("earthquake"), "{}", out.stderr);
    assert!(!dir.path().join("reliability.md").exists());
}
