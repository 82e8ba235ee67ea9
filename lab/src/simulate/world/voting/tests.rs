//! The voting driver's plumbing on a scripted machine (timers set, moved and cancelled;
//! one delivery per peer; relays across a partial mesh), then the real PBFT and Raft
//! machines through the simulator with faults.

use super::super::*;
use crate::compare::metrics::chain_to;
use chain::{EngineError, VoteInput, VoteOutput, VotingMachine};
use config::EngineKind;
use std::sync::Mutex;

/// What a scripted machine was given: (virtual ms after the start, input as text).
type Log = Arc<Mutex<Vec<(u64, String)>>>;

/// At its first head: timer 1 set for 100 ms then moved to 300 ms, timer 2 for 50 ms,
/// timer 3 set and cancelled, and one broadcast naming the node. Logs every input.
#[derive(Debug)]
struct Scripted {
    node: u8,
    start: u64,
    log: Log,
    started: bool,
}

impl VotingMachine for Scripted {
    fn handle(&mut self, now: u64, input: VoteInput) -> Result<Vec<VoteOutput>, EngineError> {
        let text = match &input {
            VoteInput::Head { .. } => "head".to_owned(),
            VoteInput::Message(bytes) => format!("message {bytes:?}"),
            VoteInput::Timeout(id) => format!("timeout {id}"),
            other => format!("{other:?}"),
        };
        self.log
            .lock()
            .expect("not poisoned")
            .push((now - self.start, text));
        if self.started || !matches!(input, VoteInput::Head { .. }) {
            return Ok(Vec::new());
        }
        self.started = true;
        Ok(vec![
            VoteOutput::SetTimer {
                id: 1,
                after_millis: 100,
            },
            VoteOutput::SetTimer {
                id: 2,
                after_millis: 50,
            },
            VoteOutput::SetTimer {
                id: 1,
                after_millis: 300,
            },
            VoteOutput::SetTimer {
                id: 3,
                after_millis: 10,
            },
            VoteOutput::CancelTimer(3),
            VoteOutput::Broadcast(vec![self.node]),
            VoteOutput::Persist(vec![1, 2, 3]),
        ])
    }

    fn status(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

fn setup(kind: EngineKind, nodes: usize, peers: usize, secs: u64) -> Setup {
    let authors = super::super::super::author_keys(nodes);
    let traders = super::super::super::traders(nodes, true);
    Setup {
        spec: super::super::super::dev_spec(kind, &authors, &traders, None),
        link: LinkModel {
            latency_ms: 40.0,
            jitter_ms: 0.0,
            bandwidth: f64::INFINITY,
            loss: 0.0,
        },
        peers,
        hash_shares: vec![1.0 / nodes as f64; nodes],
        selfish: None,
        seed: 3,
        tx_rate: 0.0,
        traders: traders.into_iter().map(|(_, key)| key).collect(),
        duration_ms: secs * 1000,
        faults: Vec::new(),
        dust: None,
        probe: VoteProbe::default(),
        authors,
    }
}

/// Runs `nodes` scripted machines on a PBFT chain for a second; each node's log.
fn scripted(nodes: usize, peers: usize) -> (Vec<Vec<(u64, String)>>, VoteStats) {
    let setup = setup(EngineKind::Pbft, nodes, peers, 1);
    let mut world = World::new(&setup).expect("opens");
    let logs: Vec<Log> = (0..nodes).map(|_| Log::default()).collect();
    for (i, seat) in world.seats.iter_mut().enumerate() {
        seat.machine = Box::new(Scripted {
            node: i as u8,
            start: world.start,
            log: logs[i].clone(),
            started: false,
        });
    }
    world.begin();
    while let Some((at, event)) = world.queue.pop_until(world.start + 1000) {
        world.clock.set_millis(at);
        world.handle(at, event);
    }
    let logs = logs
        .iter()
        .map(|l| l.lock().expect("not poisoned").clone())
        .collect();
    (logs, world.votes)
}

#[test]
fn timers_fire_once_where_last_set_and_cancelled_ones_never() {
    let (logs, _) = scripted(3, 2);
    for log in &logs {
        let timeouts: Vec<_> = log
            .iter()
            .filter(|(_, t)| t.starts_with("timeout"))
            .collect();
        assert_eq!(
            timeouts,
            [
                &(50, "timeout 2".to_owned()),
                &(300, "timeout 1".to_owned())
            ],
            "{log:?}"
        );
    }
}

#[test]
fn a_broadcast_reaches_each_peer_once_after_the_one_way_delay() {
    let (logs, stats) = scripted(4, 3);
    for (i, log) in logs.iter().enumerate() {
        let mut got: Vec<_> = log
            .iter()
            .filter(|(_, t)| t.starts_with("message"))
            .collect();
        got.sort();
        let expected: Vec<(u64, String)> = (0..4u8)
            .filter(|j| usize::from(*j) != i)
            .map(|j| (40, format!("message [{j}]")))
            .collect();
        assert_eq!(got, expected.iter().collect::<Vec<_>>(), "node {i}");
    }
    // A full mesh: no relays, one delivery per peer.
    assert_eq!((stats.broadcasts, stats.messages), (4, 12));
}

#[test]
fn relays_carry_a_broadcast_across_a_partial_mesh_once_to_each_node() {
    // Twelve nodes with two peers each: a ring, so a message travels up to six hops.
    let (logs, stats) = scripted(12, 2);
    for (i, log) in logs.iter().enumerate() {
        let from_0: Vec<_> = log.iter().filter(|(_, t)| t == "message [0]").collect();
        if i == 0 {
            assert!(from_0.is_empty());
            continue;
        }
        let hops = i.min(12 - i) as u64;
        assert_eq!(from_0, [&(40 * hops, "message [0]".to_owned())], "node {i}");
    }
    assert_eq!(stats.broadcasts, 12);
    assert!(
        stats.messages > 12 * 2,
        "relays were sent: {}",
        stats.messages
    );
}

fn voting(kind: EngineKind, nodes: usize, secs: u64, faults: Vec<Fault>) -> Outcome {
    let mut setup = setup(kind, nodes, nodes - 1, secs);
    setup.tx_rate = 1.0;
    setup.faults = faults;
    simulate(setup, &mut |_| {}).expect("runs")
}

/// Each node's last head, and the heights of the blocks any node ever held.
fn heads_and_forks(record: &RunRecord) -> (Vec<BlockHash>, usize) {
    let mut heads = vec![record.final_head; record.authors.len()];
    for o in &record.observations {
        heads[o.node] = o.head;
    }
    let heights: Vec<_> = record.blocks.values().map(|b| b.height).collect();
    let distinct: std::collections::BTreeSet<_> = heights.iter().collect();
    (heads, heights.len() - distinct.len())
}

#[test]
fn n4_pbft_commits_every_block_with_transfers_and_no_fork() {
    let outcome = voting(EngineKind::Pbft, 4, 60, Vec::new());
    let record = &outcome.record;
    let chain = chain_to(&record.blocks, record.final_head);
    // A block every 2 s.
    assert!(
        (28..=31).contains(&(chain.len() - 1)),
        "{} blocks",
        chain.len() - 1
    );
    let (heads, forks) = heads_and_forks(record);
    assert_eq!(forks, 0, "two blocks at one height");
    assert!(heads.iter().all(|h| *h == heads[0]) || chain.len() > 2);
    let txs: usize = chain.iter().map(|b| b.txs.len()).sum();
    assert!(txs > 40, "{txs} transfers included");
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    // Every node finalizes what it holds.
    let last = record
        .observations
        .iter()
        .rev()
        .find(|o| o.node == 1)
        .expect("node 1");
    assert!(
        last.finalized
            .is_some_and(|f| f.0 as usize + 1 >= chain.len() - 1)
    );
}

#[test]
fn n4_pbft_kill_of_the_primary_changes_the_view_and_keeps_committing() {
    let outcome = voting(
        EngineKind::Pbft,
        4,
        90,
        vec![Fault::KillProducer { at_s: 30 }],
    );
    let record = &outcome.record;
    let killed = outcome.killed.expect("a node was killed");
    let chain = chain_to(&record.blocks, record.final_head);
    let after: Vec<_> = chain.iter().filter(|b| b.first_seen > 30.0).collect();
    assert!(after.len() >= 20, "{} blocks after the kill", after.len());
    let killed_address = record.authors[killed].1;
    assert!(after.iter().all(|b| b.producer != killed_address));
    assert_eq!(heads_and_forks(record).1, 0);
}

#[test]
fn n4_pbft_partition_2_2_halts_without_forks_and_heals() {
    let outcome = voting(
        EngineKind::Pbft,
        4,
        120,
        vec![Fault::Partition {
            at_s: 20,
            duration_s: 30,
        }],
    );
    let record = &outcome.record;
    let chain = chain_to(&record.blocks, record.final_head);
    // Neither half holds 2f+1 = 3 validators: nothing is decided while they are apart
    // (a height in flight at the cut may still finish within its delays).
    let during = chain
        .iter()
        .filter(|b| b.first_seen > 21.0 && b.first_seen < 50.0)
        .count();
    assert_eq!(during, 0, "blocks decided during the partition");
    let after = chain.iter().filter(|b| b.first_seen >= 50.0).count();
    assert!(after >= 10, "{after} blocks after the heal");
    let (heads, forks) = heads_and_forks(record);
    assert_eq!(forks, 0);
    let behind = heads.iter().filter(|h| **h != record.final_head).count();
    assert!(behind <= 3, "{heads:?}");
}

#[test]
fn n3_raft_reelects_after_the_leader_is_killed() {
    let outcome = voting(
        EngineKind::Raft,
        3,
        30,
        vec![Fault::KillProducer { at_s: 10 }],
    );
    let record = &outcome.record;
    let killed = outcome.killed.expect("a node was killed");
    let chain = chain_to(&record.blocks, record.final_head);
    let after: Vec<_> = chain.iter().filter(|b| b.first_seen > 12.0).collect();
    assert!(after.len() >= 15, "{} blocks after the kill", after.len());
    assert!(after.iter().all(|b| b.producer != record.authors[killed].1));
    assert_eq!(heads_and_forks(record).1, 0);
}

#[test]
fn n4_raft_partition_2_2_halts_both_halves_and_heals_without_lost_commits() {
    let outcome = voting(
        EngineKind::Raft,
        4,
        60,
        vec![Fault::Partition {
            at_s: 10,
            duration_s: 20,
        }],
    );
    let record = &outcome.record;
    let chain = chain_to(&record.blocks, record.final_head);
    // A majority of 4 is 3: neither half commits.
    let during = chain
        .iter()
        .filter(|b| b.first_seen > 11.0 && b.first_seen < 30.0)
        .count();
    assert_eq!(during, 0, "blocks committed during the partition");
    assert!(chain.iter().filter(|b| b.first_seen >= 30.0).count() >= 15);
    // Every block committed before the cut is still on the final chain.
    let before = record
        .blocks
        .values()
        .filter(|b| b.first_seen < 10.0)
        .count();
    assert_eq!(chain.iter().filter(|b| b.first_seen < 10.0).count(), before);
    assert_eq!(heads_and_forks(record).1, 0);
}

#[test]
fn a_voting_run_is_the_same_for_the_same_seed() {
    let run = |kind| {
        let outcome = voting(kind, 4, 20, Vec::new());
        let record = &outcome.record;
        let mut blocks: Vec<String> = record.blocks.values().map(|b| format!("{b:?}")).collect();
        blocks.sort();
        let seen = format!(
            "{:?} {:?} {blocks:?}",
            record.observations, record.final_head
        );
        (seen, outcome.votes.messages)
    };
    for kind in [
        EngineKind::Pbft,
        EngineKind::Raft,
        EngineKind::Paxos,
        EngineKind::Zab,
    ] {
        let (a, messages) = run(kind);
        assert_eq!(run(kind), (a, messages), "{kind}");
        assert!(messages > 0);
    }
}

#[test]
fn the_seen_cache_forgets_messages_after_its_window() {
    let setup = setup(EngineKind::Pbft, 2, 1, 1);
    let world = World::new(&setup).expect("opens");
    let mut seats = super::seats(&world, &[setup.authors[0].1.clone()]).expect("a machine");
    let seat = &mut seats[0];
    assert!(seat.first_sight(1_000, 7));
    assert!(!seat.first_sight(2_000, 7), "a duplicate inside the window");
    assert!(seat.first_sight(1_000 + super::SEEN_FOR_MS, 8));
    assert!(
        seat.first_sight(1_000 + super::SEEN_FOR_MS, 7),
        "forgotten after the window"
    );
    assert_eq!(seat.seen.len(), 2);
}

#[test]
fn n2_a_killed_pbft_primary_or_raft_leader_halts_the_chain_without_a_fork() {
    // Two validators: f = 0 and a quorum of 2 (PBFT), a majority of 2 (Raft), so the kill
    // of one (f + 1, a majority) stops both, and nothing is decided twice.
    for kind in [
        EngineKind::Pbft,
        EngineKind::Raft,
        EngineKind::Paxos,
        EngineKind::Zab,
    ] {
        let outcome = voting(kind, 2, 40, vec![Fault::KillProducer { at_s: 15 }]);
        let record = &outcome.record;
        assert!(outcome.killed.is_some(), "{kind}");
        let chain = chain_to(&record.blocks, record.final_head);
        assert!(
            chain.len() > 5,
            "{kind}: {} blocks before the kill",
            chain.len()
        );
        // A height in flight at the kill may still land within its delays.
        let after = chain.iter().filter(|b| b.first_seen > 16.0).count();
        assert_eq!(after, 0, "{kind}: blocks decided after the kill");
        assert_eq!(heads_and_forks(record).1, 0, "{kind}");
    }
}
