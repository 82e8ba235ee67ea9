//! Blocks decided by votes: imported only with a certificate, which is stored with them;
//! a proposal is checked on the head without being stored.

use crate::{addr, transfer};
use chain::test_utils::{TestEngine, build_on_head, memory_chain};
use chain::{BlockError, ChainView, ImportOutcome};

fn certified_engine() -> TestEngine {
    TestEngine {
        certified: true,
        ..TestEngine::default()
    }
}

#[test]
fn a_certified_engine_refuses_a_block_without_its_certificate() {
    let mut chain = memory_chain(certified_engine());
    let block = build_on_head(&chain, 1, addr("alice"), Vec::new());
    let err = chain.import_block(block).expect_err("no certificate");
    assert!(
        matches!(err, BlockError::MissingCertificate { engine: "test" }),
        "{err}"
    );
    assert!(err.is_bad_data());
    assert_eq!(chain.head().height().0, 0);
}

#[test]
fn a_certified_block_is_stored_with_its_certificate_and_a_forged_one_is_refused() {
    let mut chain = memory_chain(certified_engine());
    let block = build_on_head(&chain, 1, addr("alice"), Vec::new());
    let hash = block.hash();
    let forged = chain
        .import_certified(block.clone(), vec![7; 32])
        .expect_err("forged certificate");
    assert!(forged.is_bad_data(), "{forged}");
    assert_eq!(chain.certificate(&hash).expect("read"), None);
    assert_eq!(chain.head().height().0, 0);

    let outcome = chain
        .import_certified(block.clone(), hash.0.to_vec())
        .expect("imports");
    assert!(matches!(outcome, ImportOutcome::NewHead(_)), "{outcome:?}");
    assert_eq!(chain.head().hash(), hash);
    assert_eq!(
        chain.certificate(&hash).expect("read"),
        Some(hash.0.to_vec())
    );
    assert!(matches!(
        chain.import_certified(block, hash.0.to_vec()),
        Ok(ImportOutcome::AlreadyKnown)
    ));
}

#[test]
fn a_certified_block_beside_the_head_conflicts_with_a_decided_one() {
    let mut chain = memory_chain(certified_engine());
    let first = build_on_head(&chain, 1, addr("alice"), Vec::new());
    let rival = build_on_head(&chain, 1, addr("bob"), Vec::new());
    assert_ne!(first.hash(), rival.hash());
    let first_hash = first.hash();
    chain
        .import_certified(first, first_hash.0.to_vec())
        .expect("first decided block");
    let rival_hash = rival.hash();
    let err = chain
        .import_certified(rival, rival_hash.0.to_vec())
        .expect_err("a second block at height 1");
    assert!(
        matches!(err, BlockError::ConflictsWithDecided { .. }),
        "{err}"
    );
    assert_eq!(chain.head().hash(), first_hash);
}

#[test]
fn a_proposal_is_validated_on_the_head_without_being_stored() {
    let chain = memory_chain(certified_engine());
    let good = build_on_head(
        &chain,
        1,
        addr("alice"),
        vec![transfer("eve", "ferdie", 0, 5, 1)],
    );
    chain.validate_proposal(&good).expect("a valid proposal");
    assert_eq!(chain.meta(&good.hash()).expect("read"), None);

    let mut wrong_root = good.clone();
    wrong_root.header.state_root = chain::Hash256([9; 32]);
    let err = chain
        .validate_proposal(&wrong_root)
        .expect_err("state root");
    assert!(matches!(err, BlockError::StateRootMismatch { .. }), "{err}");

    let mut bad_seal = good;
    bad_seal.header.engine.nonce = u32::MAX;
    assert!(matches!(
        chain.validate_proposal(&bad_seal),
        Err(BlockError::Engine(_))
    ));
}
