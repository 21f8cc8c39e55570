//! Whole-cluster scenarios over the in-memory network of `common::cluster`.

mod common;

use common::cluster::{Chaos, Cluster};
use tally_consensus::{Height, Round, ValidatorIndex};

#[test]
fn n4_all_honest_commit_height_1_in_round_0() {
    let mut c = Cluster::new(4, 1);
    c.start();
    c.run(10_000);
    c.assert_agreement();
    let proposer = c.validators.proposer(Height(1), Round(0));
    for d in &c.decisions {
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].round, Round(0));
        assert_eq!(d[0].block_hash, Cluster::block_of(Height(1), 0, proposer.as_usize()));
        assert!(d[0].signatures.len() >= 3);
    }
    assert!(c.evidence.is_empty());
}

#[test]
fn n4_all_honest_commit_five_heights_with_rotating_proposers() {
    let mut c = Cluster::new(4, 5);
    c.start();
    c.run(50_000);
    c.assert_agreement();
    for h in 1..=5u64 {
        let d = &c.decisions[0][(h - 1) as usize];
        let proposer = c.validators.proposer(Height(h), Round(0));
        assert_eq!(d.block_hash, Cluster::block_of(Height(h), 0, proposer.as_usize()));
    }
    for core in &c.cores {
        assert_eq!(core.height(), Height(5));
    }
}

#[test]
fn n4f1_silent_round_0_proposer_others_commit_in_round_1() {
    let mut c = Cluster::new(4, 1);
    let silent = c.validators.proposer(Height(1), Round(0));
    c.silent.insert(silent.as_usize());
    c.start();
    c.run(10_000);
    c.assert_agreement();
    let next = c.validators.proposer(Height(1), Round(1));
    assert_ne!(next, silent);
    for (i, d) in c.decisions.iter().enumerate() {
        if i == silent.as_usize() {
            assert!(d.is_empty());
            continue;
        }
        assert_eq!(d[0].round, Round(1), "core {i}");
        assert_eq!(d[0].block_hash, Cluster::block_of(Height(1), 1, next.as_usize()));
        assert!(d[0].signatures.iter().all(|s| s.validator != silent));
    }
}

#[test]
fn n4f1_silent_proposers_at_heights_2_and_3_chain_still_grows() {
    let mut c = Cluster::new(4, 4);
    // Validator 3 proposes (h=3, r=0) and (h=2, r=1); it is down for the whole run.
    c.silent.insert(3);
    c.start();
    c.run(100_000);
    c.assert_agreement();
    assert_eq!(c.decisions[0].len(), 4);
    assert_eq!(c.decisions[0][2].round, Round(1), "height 3's round-0 proposer is silent");
    assert_eq!(c.validators.proposer(Height(3), Round(0)), ValidatorIndex(3));
}

#[test]
fn same_run_twice_gives_the_same_decisions() {
    let run = || {
        let mut c = Cluster::new(4, 3);
        c.silent.insert(2);
        c.start();
        c.run(50_000);
        (c.decisions, c.steps)
    };
    assert_eq!(run(), run());
}

/// Many seeds of reordering, 10% loss and 10% duplication (with re-broadcast on the timer):
/// invariants after every step, agreement, and every height decided.
#[test]
fn n4_reordering_loss_and_duplication_still_agree_over_many_seeds() {
    for seed in 0..40u64 {
        let mut c = Cluster::new(4, 3);
        c.chaos = Some(Chaos::new(seed, 10, 10));
        c.start();
        c.run(200_000);
        c.assert_agreement();
    }
}

#[test]
fn n4f1_equivocator_is_reported_and_honest_validators_agree() {
    for seed in 0..20u64 {
        let mut c = Cluster::new(4, 3);
        c.chaos = Some(Chaos::new(seed, 0, 0));
        c.equivocators.insert(0);
        c.start();
        c.run(200_000);
        c.assert_agreement();
        assert!(
            c.evidence.iter().all(|e| e.offender() == ValidatorIndex(0)),
            "seed {seed}: only the equivocator is accused"
        );
        assert!(!c.evidence.is_empty(), "seed {seed}: equivocation goes unreported");
    }
}

#[test]
fn n7f2_two_silent_validators_chain_still_grows() {
    let mut c = Cluster::new(7, 3);
    c.silent.insert(1);
    c.silent.insert(4);
    c.chaos = Some(Chaos::new(7, 5, 5));
    c.start();
    c.run(500_000);
    c.assert_agreement();
}

/// Validators crash at arbitrary points and restart from their signing record: they never
/// sign anything conflicting (the harness sees every Persist; invariants check the record),
/// no evidence is produced against them, and the cluster agrees.
#[test]
fn n4_crash_and_restart_from_the_signing_record_never_equivocates() {
    for seed in 0..20u64 {
        let mut c = Cluster::new(4, 4);
        c.chaos = Some(Chaos::new(seed, 5, 5));
        c.start();
        for k in 0..6u64 {
            c.run_for(40 + seed * 3);
            c.restart(((seed + k) % 4) as usize);
        }
        c.run(300_000);
        c.assert_agreement();
        assert!(c.evidence.is_empty(), "seed {seed}: {:?}", c.evidence);
    }
}
