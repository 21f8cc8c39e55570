//! The real node under deterministic simulation (node/src/sim): a slice of seeds, the
//! replay of one seed, the same trace for the same seed, and the harness shown to catch
//! bugs planted in the node's own code, each within a bounded number of seeds.
//!
//! Runs when the `sim` feature is on, which `cargo test --workspace` turns on (the bench
//! crate's campaign binary needs it).
#![cfg(feature = "sim")]

use tally_node::sim::{run_seed, NodeBug, Violation};

/// Seeds in CI's slice; `SIM_SEEDS` changes it.
const CI_SEEDS: u64 = 300;

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(CI_SEEDS)
}

#[test]
fn seeds_hold_every_property() {
    let (mut heights, mut acked, mut crashes) = (0, 0, 0);
    for seed in 0..seeds() {
        match run_seed(seed, None) {
            Ok(r) => {
                heights += r.height;
                acked += r.acked;
                crashes += r.crashes;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    eprintln!(
        "{} seeds: {heights} heights, {acked} acknowledged transfers, {crashes} crashes",
        seeds()
    );
    assert!(heights > 0 && acked > 0, "the runs committed nothing");
}

/// Seeds that once failed, kept: 64 (more Byzantine validators than f were drawn), 1565
/// (a liveness bound shorter than the rounds an equivocator and two crashes cost), 804
/// (a disk fault armed before GST struck in the instant GST fell between two ticks) and
/// 8721 (validators came back locked, through their recorded precommits, on a block only
/// their lost consensus logs held, and the chain stalled: the block of a precommit is now
/// recorded with it in the signing record), 15328 and 16034 (nodes behind heard of the
/// later height only through the lying peer's relays; once it was banned, having asked
/// every other peer once while they had nothing, they never asked again: block sync is now
/// retried on every tick while a node is behind) and 34894 (an equivocator's prevote that
/// completed one validator's polka never reached another, which so never accepted the
/// locked value proposed again: a node now re-sends the polka behind its valid value).
#[test]
fn seeds_that_once_failed_hold() {
    for seed in [64, 804, 1565, 8721, 15328, 16034, 34894] {
        if let Err(failure) = run_seed(seed, None) {
            panic!("{failure}");
        }
    }
}

#[test]
fn replay_one_seed() {
    // RUST_LOG=info shows what every node logs (each line names no node: read them in order).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    let seed = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    match run_seed(seed, None) {
        Ok(r) => eprintln!("{r:?}"),
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [3, 11] {
        let a = run_seed(seed, None).expect("the seed holds");
        let b = run_seed(seed, None).expect("the seed holds");
        assert_eq!(a.trace, b.trace, "seed {seed}");
        assert!(a.deliveries > 0);
    }
}

/// Runs seeds with `bug` planted until one fails with a violation `expected` accepts;
/// panics if none does within `bound` seeds.
fn caught_within(bug: NodeBug, bound: u64, expected: impl Fn(&Violation) -> bool) -> u64 {
    for seed in 0..bound {
        if let Err(failure) = run_seed(seed, Some(bug)) {
            assert!(
                failure.violations.iter().any(&expected),
                "seed {seed} with {bug:?} failed otherwise: {failure}"
            );
            eprintln!("{bug:?} caught at seed {seed}: {}", failure.violations[0]);
            return seed;
        }
    }
    panic!("{bug:?} was not caught within {bound} seeds");
}

#[test]
fn a_transfer_acknowledged_before_its_block_is_durable_is_caught() {
    caught_within(NodeBug::AckBeforeDurable, 50, |v| matches!(v, Violation::AckNotDurable { .. }));
}

#[test]
fn sending_before_persisting_is_caught() {
    caught_within(NodeBug::SendBeforePersist, 200, |v| {
        matches!(v, Violation::SentNotRecorded { .. } | Violation::DoubleSign { .. })
    });
}

#[test]
fn a_block_sync_that_skips_the_certificate_check_is_caught() {
    caught_within(NodeBug::SkipSyncCertificate, 200, |v| {
        matches!(v, Violation::Disagreement { .. } | Violation::NoProgress { .. })
    });
}

#[test]
#[ignore = "prints the parameters of SIM_SEED"]
fn print_params() {
    let seed = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    eprintln!("{:#?}", tally_node::sim::SimParams::draw(seed, None));
}

/// Seed 64 once drew three silent validators of eight (more than f: the chain rightly
/// stalled, and the oracle reported it). Every draw keeps the Byzantine validators at f or
/// fewer, on distinct validators.
#[test]
fn draws_never_have_more_than_f_byzantine_validators() {
    for seed in 0..20_000 {
        let p = tally_node::sim::SimParams::draw(seed, None);
        let byzantine = (0..p.n()).filter(|&i| !p.honest(i)).count();
        assert!(byzantine <= p.f(), "seed {seed}: {byzantine} Byzantine of {}", p.n());
        assert!((4..=7).contains(&p.n()), "seed {seed}: {} validators", p.n());
    }
}
