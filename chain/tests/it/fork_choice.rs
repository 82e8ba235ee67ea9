//! Fork-choice cases as data: a block tree inserted in order, with the head expected after
//! each insertion, run against the real chain (memory store, test engine whose block weight
//! is the header's `bits`).
//!
//! Blocks named in a case's `bad` list claim a wrong state root, so they pass every check
//! made on arrival and fail only when executed, which happens when their branch becomes the
//! heaviest (Bitcoin Core's `InvalidChainFound`): the failing block and the blocks above it
//! on that branch are marked invalid and the node must stay on, or go to, the best branch
//! that is still valid.

use crate::addr;
use chain::test_utils::{TestEngine, build_on_path, memory_chain};
use chain::{Block, BlockError, ChainView};
use std::collections::HashMap;

/// What inserting a block should lead to.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Accepted; the head is then the named block.
    Head(&'static str),
    /// Refused because it forks below the finalized block; the head is unchanged.
    BelowFinalized,
    /// Refused as bad data (its branch failed when executed); the head is then the named
    /// block.
    Refused(&'static str),
}

use Expect::*;

struct Case {
    name: &'static str,
    finality_depth: Option<u64>,
    /// Blocks that carry a wrong state root.
    bad: &'static [&'static str],
    /// (block, parent or "genesis", weight, expectation after inserting it)
    blocks: &'static [(&'static str, &'static str, u32, Expect)],
}

const CASES: &[Case] = &[
    Case {
        name: "heavier short branch beats a longer light one",
        finality_depth: None,
        bad: &[],
        blocks: &[
            ("a1", "genesis", 1, Head("a1")),
            ("a2", "a1", 1, Head("a2")),
            ("a3", "a2", 1, Head("a3")),
            ("b1", "genesis", 5, Head("b1")),
            ("a4", "a3", 1, Head("b1")),
            ("a4b", "a4", 1, Head("b1")), // 5 vs 5: the tie keeps b1
            ("a5", "a4b", 1, Head("a5")),
        ],
    },
    Case {
        name: "equal weight keeps the block seen first",
        finality_depth: None,
        bad: &[],
        blocks: &[
            ("a1", "genesis", 2, Head("a1")),
            ("b1", "genesis", 2, Head("a1")),
            ("c1", "genesis", 1, Head("a1")),
            ("b2", "b1", 1, Head("b2")),
            ("a2", "a1", 1, Head("b2")),
        ],
    },
    Case {
        name: "longer branch wins when it is heavier",
        finality_depth: None,
        bad: &[],
        blocks: &[
            ("a1", "genesis", 3, Head("a1")),
            ("b1", "genesis", 2, Head("a1")),
            ("b2", "b1", 2, Head("b2")),
        ],
    },
    Case {
        name: "switch back and forth",
        finality_depth: None,
        bad: &[],
        blocks: &[
            ("a1", "genesis", 1, Head("a1")),
            ("b1", "genesis", 1, Head("a1")),
            ("b2", "b1", 1, Head("b2")),
            ("a2", "a1", 2, Head("a2")),
            ("b3", "b2", 2, Head("b3")),
            ("a3", "a2", 2, Head("a3")),
        ],
    },
    Case {
        name: "a branch forking below the finalized block is refused",
        finality_depth: Some(2),
        bad: &[],
        blocks: &[
            ("a1", "genesis", 1, Head("a1")),
            ("a2", "a1", 1, Head("a2")),
            ("a3", "a2", 1, Head("a3")),
            ("a4", "a3", 1, Head("a4")),
            // a2 is final now: forks at genesis or a1 are refused however heavy.
            ("b1", "genesis", 100, BelowFinalized),
            ("c2", "a1", 100, BelowFinalized),
            // A fork at the finalized block itself is allowed, and wins by weight.
            ("d3", "a2", 100, Head("d3")),
        ],
    },
    Case {
        name: "a heavier bad tip gives way to the next best valid branch",
        finality_depth: None,
        bad: &["b2"],
        blocks: &[
            ("a1", "genesis", 2, Head("a1")),
            ("b1", "genesis", 1, Head("a1")),
            ("c1", "genesis", 1, Head("a1")),
            // b1+b2 = 6 beats a1 but b2 fails: the head stays on a1, the best valid.
            ("b2", "b1", 5, Refused("a1")),
            // Nothing may build on the bad block, however heavy.
            ("b3", "b2", 9, Refused("a1")),
            // b1 itself is still valid and wins once its branch is heavier.
            ("b2v", "b1", 2, Head("b2v")),
            ("c2", "c1", 3, Head("c2")),
        ],
    },
    Case {
        name: "a bad block inside a stored side branch fails when the branch takes over",
        finality_depth: None,
        bad: &["b2"],
        blocks: &[
            ("a1", "genesis", 4, Head("a1")),
            ("b1", "genesis", 1, Head("a1")),
            // Lighter than the head: stored unexecuted, so not yet known to be bad.
            ("b2", "b1", 1, Head("a1")),
            ("c1", "genesis", 3, Head("a1")),
            // b1+b2+b3 = 7 > 4: the switch executes b1, fails on b2 and marks b2 and b3.
            ("b3", "b2", 5, Refused("a1")),
            ("b4", "b3", 1, Refused("a1")),
            // c1 (3) was lighter than a1 and stays so until extended.
            ("c2", "c1", 2, Head("c2")),
            // b1 is valid: a sibling of b2 on it takes over when heavier than c2.
            ("b2v", "b1", 5, Head("b2v")),
        ],
    },
    Case {
        name: "a bad block on the head's own branch does not move the head back",
        finality_depth: None,
        bad: &["a2"],
        blocks: &[
            ("a1", "genesis", 1, Head("a1")),
            ("a2", "a1", 1, Refused("a1")),
            ("b1", "genesis", 1, Head("a1")),
            ("b2", "b1", 1, Head("b2")),
            ("a2v", "a1", 2, Head("a2v")),
        ],
    },
];

#[test]
fn fork_choice_table() {
    let producers = [
        "alice", "bob", "carol", "dave", "eve", "ferdie", "grace", "heidi",
    ];
    for case in CASES {
        let engine = TestEngine {
            finality_depth: case.finality_depth,
            ..TestEngine::default()
        };
        let mut chain = memory_chain(engine.clone());
        let mut blocks: HashMap<&str, Block> = HashMap::new();
        // The valid twin of each block's ancestry, to build on (a bad block's twin has the
        // right state root); the block sent links to its real parent.
        let mut paths: HashMap<&str, Vec<Block>> = HashMap::from([("genesis", Vec::new())]);
        for (i, (name, parent, weight, expect)) in case.blocks.iter().enumerate() {
            let path = paths[parent].clone();
            // Distinct producers make sibling blocks distinct.
            let producer = addr(producers[i % producers.len()]);
            let twin = build_on_path(&engine, &path, *weight, producer, Vec::new());
            let mut block = twin.clone();
            if let Some(parent) = blocks.get(parent) {
                block.header.parent = parent.hash();
            }
            if case.bad.contains(name) {
                block.header.state_root.0[0] ^= 1;
            }
            let before = chain.head_id();
            let result = chain.import_block(block.clone());
            match expect {
                Head(head) => {
                    result.unwrap_or_else(|e| panic!("{}: {name} refused: {e}", case.name));
                    let expected = if *head == *name {
                        block.hash()
                    } else {
                        blocks[head].hash()
                    };
                    assert_eq!(
                        chain.head_id().hash,
                        expected,
                        "{}: after {name} the head should be {head}",
                        case.name
                    );
                }
                BelowFinalized => {
                    let err = result.expect_err(&format!("{}: {name} must be refused", case.name));
                    assert!(
                        matches!(err, BlockError::BelowFinalized { .. }),
                        "{}: {name}: {err}",
                        case.name
                    );
                    assert_eq!(chain.head_id(), before, "{}: head moved", case.name);
                }
                Refused(head) => {
                    let err = result.expect_err(&format!("{}: {name} must be refused", case.name));
                    assert!(err.is_bad_data(), "{}: {name}: {err}", case.name);
                    assert_eq!(
                        chain.head_id().hash,
                        blocks[head].hash(),
                        "{}: after {name} the head should be {head}",
                        case.name
                    );
                    // Remembered: sent again, it is refused without being executed.
                    let again = chain
                        .import_block(block.clone())
                        .expect_err(&format!("{}: {name} sent again", case.name));
                    assert!(
                        matches!(
                            again,
                            BlockError::KnownInvalid { .. } | BlockError::InvalidAncestor { .. }
                        ),
                        "{}: {name} sent again: {again}",
                        case.name
                    );
                }
            }
            let mut own_path = path;
            own_path.push(twin);
            paths.insert(name, own_path);
            blocks.insert(name, block);
        }
        // The height index names exactly the head's ancestry, with nothing above it.
        let head = chain.head();
        let mut current = head.clone();
        loop {
            assert_eq!(
                chain.best_hash_at(current.height()).expect("read"),
                Some(current.hash()),
                "{}: height index at {}",
                case.name,
                current.height()
            );
            if current.height().0 == 0 {
                break;
            }
            current = chain
                .header(&current.parent)
                .expect("read")
                .expect("parent stored");
        }
        chain
            .verify_state()
            .expect("state matches head after the case");
    }
}
