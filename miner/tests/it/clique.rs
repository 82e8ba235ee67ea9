//! Clique's authority rules against go-ethereum's snapshot tests (EIP-225's test cases):
//! a few inline, written in a compact notation, and all of `clique_votes.json` from the
//! repository's test data.

use crate::support::read_testdata;
use miner::poa::{Snapshot, SnapshotError};
use serde_json::Value;
use std::collections::BTreeSet;

/// The label go-ethereum's tests put in the coinbase for "no vote" (the zero address).
const NO_VOTE: char = '0';

/// One block: its signer and its vote (`target`, `authorize`).
struct Step {
    signer: char,
    target: char,
    authorize: bool,
}

/// Plays `steps` from genesis as go-ethereum's `snapshot.apply` does: block n's signer
/// checks, then its vote. Returns the sorted signers, or the first block's refusal.
fn play(signers: &str, epoch: u64, steps: &[Step]) -> Result<String, SnapshotError<char>> {
    let mut snapshot = Snapshot::new(signers.chars(), epoch);
    for (i, step) in steps.iter().enumerate() {
        let number = i as u64 + 1;
        snapshot.begin_block(number, step.signer)?;
        snapshot.vote(number, step.signer, step.target, step.authorize)?;
    }
    Ok(snapshot.ordered().into_iter().collect())
}

/// `"A>C- B>- C>D+"`: A votes to drop C, B casts no vote, C votes to add D.
fn steps(notation: &str) -> Vec<Step> {
    notation
        .split_whitespace()
        .map(|s| {
            let mut chars = s.chars();
            let signer = chars.next().expect("signer");
            assert_eq!(chars.next(), Some('>'), "{s}");
            let rest: Vec<char> = chars.collect();
            match rest.as_slice() {
                ['-'] => Step {
                    signer,
                    target: NO_VOTE,
                    authorize: false,
                },
                [target, sign] => Step {
                    signer,
                    target: *target,
                    authorize: *sign == '+',
                },
                _ => panic!("bad step {s}"),
            }
        })
        .collect()
}

// Figures from go-ethereum consensus/clique/snapshot_test.go (= EIP-225's test cases).

#[test]
fn two_signers_add_two_others_but_not_a_third_without_three_votes() {
    let got = play("AB", 30_000, &steps("A>C+ B>C+ A>D+ B>D+ C>- A>E+ B>E+"));
    assert_eq!(got, Ok("ABCD".into()));
}

#[test]
fn cascading_changes_are_not_allowed() {
    let got = play(
        "ABCD",
        30_000,
        &steps("A>C- B>- C>- A>D- B>C- C>- A>- B>D- C>D-"),
    );
    assert_eq!(got, Ok("ABC".into()));
}

#[test]
fn a_majority_reached_through_a_drop_executes_when_its_target_is_touched() {
    let got = play(
        "ABCD",
        30_000,
        &steps("A>C- B>- C>- A>D- B>C- C>- A>- B>D- C>D- A>- C>C+"),
    );
    assert_eq!(got, Ok("AB".into()));
}

#[test]
fn recent_signers_are_kept_across_an_epoch_checkpoint() {
    let got = play("ABC", 3, &steps("A>- B>- A>- A>-"));
    assert!(
        matches!(got, Err(SnapshotError::RecentlySigned { signer: 'A', .. })),
        "{got:?}"
    );
}

#[test]
fn an_outsider_cannot_sign_or_vote() {
    assert_eq!(
        play("A", 30_000, &steps("B>-")),
        Err(SnapshotError::UnauthorizedSigner { signer: 'B' })
    );
    let mut snapshot = Snapshot::new("AB".chars(), 30_000);
    assert_eq!(
        snapshot.vote(1, 'C', 'D', true),
        Err(SnapshotError::UnauthorizedVoter { voter: 'C' })
    );
}

#[test]
fn in_turn_signer_rotates_over_the_sorted_set() {
    let snapshot = Snapshot::new("CAB".chars(), 30_000);
    let turns: String = (0..6)
        .map(|n| snapshot.in_turn_signer(n).expect("signers"))
        .collect();
    assert_eq!(turns, "ABCABC");
    assert_eq!(snapshot.signer_limit(), 2);
}

fn label(value: &Value) -> char {
    match value.as_str() {
        None => NO_VOTE,
        Some(s) => {
            let mut chars = s.chars();
            let c = chars.next().expect("label");
            assert!(chars.next().is_none(), "labels are one letter: {s}");
            c
        }
    }
}

#[test]
fn conformance_clique_votes_24_cases() {
    let text = read_testdata("clique_votes.json");
    let data: Value = serde_json::from_str(&text).expect("JSON");
    let cases = data["cases"].as_array().expect("cases");
    for case in cases {
        let name = case["description"].as_str().expect("description");
        let signers: String = case["signers"]
            .as_array()
            .expect("signers")
            .iter()
            .map(label)
            .collect();
        let epoch = case["epoch"].as_u64().unwrap_or(30_000);
        let steps: Vec<Step> = case["votes"]
            .as_array()
            .expect("votes")
            .iter()
            .map(|v| Step {
                signer: label(&v["signer"]),
                target: label(&v["voted"]),
                authorize: v["auth"].as_bool().unwrap_or(false),
            })
            .collect();
        let got = play(&signers, epoch, &steps);
        match case["failure"].as_str() {
            None => {
                let want: BTreeSet<char> = case["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .map(label)
                    .collect();
                let want: String = want.into_iter().collect();
                assert_eq!(got, Ok(want), "{name}");
            }
            Some("errUnauthorizedSigner") => assert!(
                matches!(got, Err(SnapshotError::UnauthorizedSigner { .. })),
                "{name}: {got:?}"
            ),
            Some("errRecentlySigned") => assert!(
                matches!(got, Err(SnapshotError::RecentlySigned { .. })),
                "{name}: {got:?}"
            ),
            Some(other) => panic!("{name}: unknown failure {other}"),
        }
    }
    assert_eq!(cases.len(), 24, "clique_votes.json: every case");
}
