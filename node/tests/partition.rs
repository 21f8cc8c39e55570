//! Network faults between real validators: four `tally` processes, each in a network
//! namespace of its own, linked pairwise by veth pairs (`common/netns.rs`), under steady
//! `broadcast_tx_commit` load. In turn: one validator cut off, the proposer cut off, a 2-2
//! split (no quorum on either side: no commits; after healing, commits resume); and, on a
//! second testnet, latency with jitter on every link, then random packet loss on top. After
//! each fault the links are healed and every validator must catch up; at the end, one block
//! hash per height on every node, every acknowledged tx in every ledger, no equivocation
//! reported, and the chain advanced.
//!
//! Needs root, iproute2 and nftables (CI runs as root and installs nftables). Without root
//! it says so and returns. `TALLY_PARTITION_SECONDS` sets how long each fault lasts
//! (default 6, as CI runs it); `testnet/partition.sh` runs longer faults.

mod common;

use common::netns::{self, Delay};
use common::{submit_transfers, Load, StopOnDrop, Testnet};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VALIDATORS: usize = 4;
const ALL: [usize; VALIDATORS] = [0, 1, 2, 3];
const ACCOUNTS: u32 = 40;
const SENDERS: u32 = 4;
const LOSS_PERCENT: u32 = 10;
const DELAY: Delay = Delay { base: Duration::from_millis(50), jitter: Duration::from_millis(20) };

/// The highest height among `which`; every node must answer (a few tries each).
fn max_height(net: &Testnet, which: &[usize]) -> u64 {
    let height = |i: usize| {
        (0..5)
            .find_map(|_| {
                net.height(i).or_else(|| {
                    std::thread::sleep(Duration::from_millis(200));
                    None
                })
            })
            .unwrap_or_else(|| panic!("node {i} does not answer"))
    };
    which.iter().map(|&i| height(i)).max().unwrap_or(0)
}

fn round_changes(net: &Testnet, which: &[usize]) -> u64 {
    which.iter().map(|&i| net.metric(i, "tally_round_changes_total")).sum()
}

/// The two tests run one after the other: each is four validators and a load on two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Heals, then waits until every node is at the highest height any node reached; returns
/// how long that took.
fn heal_and_catch_up(net: &Testnet) -> Duration {
    net.heal();
    let healed = Instant::now();
    let target = max_height(net, &ALL);
    net.wait_height(&ALL, target, Duration::from_secs(90));
    healed.elapsed()
}

fn fault_seconds() -> Option<Duration> {
    if let Some(why) = netns::unavailable() {
        eprintln!("partition: skipped, network namespaces need root and iproute2 ({why})");
        return None;
    }
    let seconds =
        std::env::var("TALLY_PARTITION_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    Some(Duration::from_secs(seconds))
}

fn start(delay: Option<Delay>) -> Testnet {
    let net = Testnet::start_in_namespaces_with(VALIDATORS as u32, ACCOUNTS, delay, |t| {
        let consensus = t.entry("consensus").or_insert(toml::Table::new().into());
        let consensus = consensus.as_table_mut().expect("consensus table");
        consensus.insert("timeout_commit_ms".into(), 100.into());
    });
    net.wait_height(&ALL, 2, Duration::from_secs(90));
    net
}

/// Runs `faults` while senders submit transfers to every node, then checks the outcome:
/// one hash per height, every acknowledged tx everywhere, no evidence, the chain advanced.
fn under_load(net: &Testnet, faults: impl FnOnce(&mut Vec<String>)) {
    let start_height = net.height(0).expect("height");
    let accounts = net.accounts();
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    let mut report = Vec::new();
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let (accounts, stop, acked) = (&accounts, &stop, &acked);
            scope.spawn(move || {
                let call = |i: usize, method: &str, params| net.rpc(i, method, params);
                let load = Load { sender, senders: SENDERS, funded: ACCOUNTS };
                submit_transfers(accounts, VALIDATORS, &call, load, stop, acked);
            });
        }
        let _stop = StopOnDrop(&stop);
        faults(&mut report);
    });
    let acked = acked.into_inner().expect("lock");
    let tip = net.check_after_load(&acked, &ALL, start_height, 1);
    for i in ALL {
        assert_eq!(net.metric(i, "tally_evidence_total"), 0, "node {i} counted evidence");
    }
    for line in &report {
        eprintln!("partition: {line}");
    }
    eprintln!(
        "partition: {} txs acknowledged, all found on all {VALIDATORS} nodes; {} blocks",
        acked.len(),
        tip - start_height
    );
    assert!(!acked.is_empty(), "no load was committed");
}

#[test]
fn n4_partitions_isolation_of_one_and_of_the_proposer_and_a_2_2_split_slow() {
    let Some(fault) = fault_seconds() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = start(None);
    under_load(&net, |report| {
        // 1. One validator cut off: the other three are a quorum and go on.
        net.isolate(3);
        let before = max_height(&net, &[0, 1, 2]);
        std::thread::sleep(fault);
        let during = max_height(&net, &[0, 1, 2]) - before;
        assert!(during >= 2, "three of four validators committed only {during} blocks");
        let back = heal_and_catch_up(&net);
        report.push(format!(
            "validator 3 cut off for {fault:?}: {during} blocks by the others; caught up \
             {back:.1?} after healing"
        ));

        // 2. The proposer of a coming height cut off (the next-but-one, so that it is cut
        // off before that height starts): the others time out its round, move on to the
        // next round's proposer, and go on; so at each of its turns while it is away.
        let coming = max_height(&net, &ALL) + 2;
        let proposer = net.proposer_node(coming, 0);
        net.isolate(proposer);
        let rest: Vec<usize> = ALL.into_iter().filter(|&i| i != proposer).collect();
        let (before, rounds_before) = (max_height(&net, &rest), round_changes(&net, &rest));
        std::thread::sleep(fault);
        let during = max_height(&net, &rest) - before;
        let rounds = round_changes(&net, &rest) - rounds_before;
        assert!(during >= 1, "without the proposer the others committed nothing");
        assert!(rounds >= 1, "no round was lost to the cut-off proposer");
        let back = heal_and_catch_up(&net);
        report.push(format!(
            "the proposer of height {coming} (validator {proposer}) cut off for {fault:?}: \
             {during} blocks by the others, {rounds} rounds moved past it; caught up \
             {back:.1?} after healing"
        ));

        // 3. A 2-2 split: no side has a quorum, nothing commits. A height whose precommits
        // were already on the way may still land in the first moment.
        net.split(&[0, 1]);
        std::thread::sleep(Duration::from_secs(2));
        let frozen = max_height(&net, &ALL);
        std::thread::sleep(fault);
        let after = max_height(&net, &ALL);
        assert_eq!(after, frozen, "a block was committed without a quorum");
        let healed = Instant::now();
        net.heal();
        net.wait_height(&ALL, frozen + 2, Duration::from_secs(90));
        report.push(format!(
            "2-2 split: no commits for {fault:?} (height {frozen}); all four 2 blocks further \
             {:.1?} after healing",
            healed.elapsed()
        ));
    });
}

#[test]
fn n4_latency_jitter_and_packet_loss_slow() {
    let Some(fault) = fault_seconds() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = start(Some(DELAY));
    under_load(&net, |report| {
        let before = max_height(&net, &ALL);
        std::thread::sleep(fault);
        let during = max_height(&net, &ALL) - before;
        assert!(during >= 2, "with {DELAY} only {during} blocks were committed");
        report.push(format!("{DELAY} one way on every link: {during} blocks in {fault:?}"));

        net.set_loss(LOSS_PERCENT);
        let before = max_height(&net, &ALL);
        std::thread::sleep(fault);
        let during = max_height(&net, &ALL) - before;
        net.set_loss(0);
        assert!(during >= 2, "with {LOSS_PERCENT}% loss only {during} blocks were committed");
        report.push(format!(
            "{DELAY} and {LOSS_PERCENT}% packet loss on every link: {during} blocks in {fault:?}"
        ));
    });
}
