//! Kill/restart chaos under load: four real validators commit transfers submitted with
//! `broadcast_tx_commit` while a random validator is SIGKILLed every few seconds and started
//! again (never more than one of four down, so f = 1 is never exceeded). Afterwards: one block
//! hash per height on every node, every tx any node acknowledged as committed is in every
//! node's ledger at the acknowledged height, no node reported an equivocation or panicked,
//! and the chain advanced. A killed validator, once restarted, reports at least the height it
//! reported just before the kill (its store reopened at a whole block, none lost).
//!
//! Each restart is timed to two points: caught up with the others, and signing again (its
//! `tally_signed_messages_total` above zero).
//!
//! `TALLY_CHAOS_SECONDS` sets the length of the chaos phase (default 30, as CI runs it);
//! `testnet/chaos.sh 300` runs five minutes. `TALLY_CHAOS_SEED` picks the kill sequence.
//! The second test is the disk loop (`TALLY_DISK_KILLS`, below).

mod common;

use common::{rpc_at, submit_transfers, Load, StopOnDrop, Testnet};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VALIDATORS: usize = 4;
const ACCOUNTS: u32 = 100;
const SENDERS: u32 = 8;
const KILL_EVERY: Duration = Duration::from_secs(3);
const DOWN_FOR: Duration = Duration::from_millis(1500);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator for the kill sequence.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn n4_kill_restart_chaos_under_load_slow() {
    let seconds = env_u64("TALLY_CHAOS_SECONDS", 30);
    let mut seed = env_u64("TALLY_CHAOS_SEED", 1);
    eprintln!("chaos: {seconds} s, seed {seed}");
    let mut net = Testnet::start_with(VALIDATORS as u32, ACCOUNTS, |t| {
        let consensus = t.entry("consensus").or_insert(toml::Table::new().into());
        let consensus = consensus.as_table_mut().expect("consensus table");
        consensus.insert("timeout_commit_ms".into(), 100.into());
    });
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(90));
    let start_height = net.height(0).expect("height");
    let ports: Vec<u16> = net.nodes.iter().map(|n| n.rpc_port).collect();

    let accounts = net.accounts();
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    let mut kills = 0u32;
    let mut back_secs: Vec<f64> = Vec::new();
    let mut vote_secs: Vec<f64> = Vec::new();
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        for sender in 0..SENDERS {
            let (accounts, ports, stop, acked) = (&accounts, &ports, &stop, &acked);
            scope.spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
                let call =
                    |i: usize, method: &str, params| rpc_at(&agent, ports[i], method, params);
                let load = Load { sender, senders: SENDERS, funded: ACCOUNTS };
                submit_transfers(accounts, ports.len(), &call, load, stop, acked);
            });
        }
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            std::thread::sleep(KILL_EVERY);
            let victim = (next(&mut seed) % VALIDATORS as u64) as usize;
            let n = &mut net;
            // What it reported as committed just before the kill must still be there after
            // the restart: the store reopens at a whole block at or above it.
            let before = n.height(victim);
            n.kill_node(victim);
            kills += 1;
            std::thread::sleep(DOWN_FOR);
            let others = (0..VALIDATORS).filter(|&i| i != victim);
            let tip = others.filter_map(|i| n.height(i)).max().unwrap_or(0);
            let restarted = Instant::now();
            n.start_node(victim);
            // Back when it has caught up with the height the others had at its restart and
            // signed a new vote or proposal; only then is the next validator killed (at most
            // one of four is ever out).
            let mut first_answer = true;
            let mut caught_up_at = None;
            let mut voting_at = None;
            let caught_up = loop {
                let now = n.height(victim);
                if let (true, Some(now), Some(before)) = (first_answer, now, before) {
                    assert!(now >= before, "validator {victim} lost blocks: {before} -> {now}");
                    first_answer = false;
                }
                if caught_up_at.is_none() && now.is_some_and(|h| h >= tip) {
                    caught_up_at = Some(restarted.elapsed());
                }
                let signed = n.try_metric(victim, "tally_signed_messages_total");
                if voting_at.is_none() && signed.is_some_and(|s| s > 0) {
                    voting_at = Some(restarted.elapsed());
                }
                if let (Some(back), Some(voting)) = (caught_up_at, voting_at) {
                    back_secs.push(back.as_secs_f64());
                    vote_secs.push(voting.as_secs_f64());
                    break true;
                }
                if restarted.elapsed() > Duration::from_secs(60) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(
                caught_up,
                "validator {victim} did not catch up and vote within 60 s of its restart"
            );
        }
    });

    let acked = acked.into_inner().expect("lock");
    let tip = net.check_after_load(&acked, &[0, 1, 2, 3], start_height, 2);
    let advanced = tip - start_height;
    let (back_median, back_max) = median_max(&mut back_secs);
    let (vote_median, vote_max) = median_max(&mut vote_secs);
    eprintln!(
        "chaos: {kills} kills and restarts in {seconds} s; {n} txs acknowledged, {n} found on \
         all {VALIDATORS} nodes; {advanced} blocks; restart to caught up: median \
         {back_median:.2} s, max {back_max:.2} s; restart to signing again: median \
         {vote_median:.2} s, max {vote_max:.2} s",
        n = acked.len()
    );
    assert!(kills >= 1 && !acked.is_empty(), "no chaos happened");
    assert!(advanced as f64 >= seconds as f64 / 2.0, "the chain advanced only {advanced} blocks");
}

fn median_max(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
    (median, values.last().copied().unwrap_or(0.0))
}

/// The disk loop: validator 3 is SIGKILLed again and again at a random point of its block
/// cycle (a commit is one fsynced redb transaction, so many kills land inside or around
/// one), under load. After each kill, before the restart, its store is opened as the kill
/// left it: it must open, its tip must be a whole block (header, every tx, the tx root,
/// a certificate that verifies) at or above the height it last reported, and then the
/// restarted validator must catch up. `TALLY_DISK_KILLS` sets the number of kills
/// (default 12).
#[test]
fn n4_kills_during_block_commits_leave_a_whole_block_slow() {
    let kills = env_u64("TALLY_DISK_KILLS", 12);
    let mut seed = env_u64("TALLY_CHAOS_SEED", 1);
    const VICTIM: usize = 3;
    let mut net = Testnet::start_with(VALIDATORS as u32, ACCOUNTS, |t| {
        let consensus = t.entry("consensus").or_insert(toml::Table::new().into());
        let consensus = consensus.as_table_mut().expect("consensus table");
        consensus.insert("timeout_commit_ms".into(), 100.into());
    });
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(90));
    let start_height = net.height(0).expect("height");
    let genesis =
        tally_ledger::Genesis::load(&net.nodes[VICTIM].home.join("genesis.json")).expect("genesis");
    let verifier = tally_crypto::Verifier::new(tally_crypto::VerifierConfig::default());
    let ledger_path = net.nodes[VICTIM].home.join("data/ledger.redb");
    let net_dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = net.nodes.iter().map(|n| n.rpc_port).collect();
    let accounts = net.accounts();
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    let mut txs_at_tip = Vec::new();
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        for sender in 0..SENDERS {
            let (accounts, ports, stop, acked) = (&accounts, &ports, &stop, &acked);
            scope.spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
                // Never validator 3: its restarts would only slow the load down.
                let call =
                    |i: usize, method: &str, params| rpc_at(&agent, ports[i], method, params);
                let load = Load { sender, senders: SENDERS, funded: ACCOUNTS };
                submit_transfers(accounts, VICTIM, &call, load, stop, acked);
            });
        }
        for k in 0..kills {
            let n = &mut net;
            // Right after a commit of the victim, the next one is at most a block interval
            // away: kill at a random point of it.
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut reported = None;
            let before = loop {
                assert!(Instant::now() < deadline, "validator {VICTIM} stopped committing");
                match (reported, n.height(VICTIM)) {
                    (None, now) => reported = now,
                    (Some(r), Some(now)) if now > r => break now,
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            std::thread::sleep(Duration::from_millis(next(&mut seed) % 300));
            n.kill_node(VICTIM);

            // A copy: opening the store repairs it, and the node's own open after the kill
            // must be the one that does.
            let copy = net_dir.path().join(format!("ledger-after-kill-{k}.redb"));
            std::fs::copy(&ledger_path, &copy).expect("copy the store");
            let store = tally_ledger::Store::open(&copy).expect("the store opens after a kill");
            let (tip, hash) = store.tip().expect("tip").expect("a tip");
            assert!(tip.0 >= before, "the store lost blocks: reported {before}, tip {tip}");
            let block = store.block(tip).expect("read").expect("the tip's block");
            assert_eq!(block.hash(), hash, "the tip's header is the tip's");
            assert_eq!(block.header.tx_count as usize, block.txs.len(), "every tx of the tip");
            let hashes: Vec<_> = block.txs.iter().map(|t| t.hash()).collect();
            assert_eq!(tally_ledger::tx_root(&hashes), block.header.tx_root, "the tip's tx root");
            let certificate = store.certificate(tip).expect("read").expect("the tip's certificate");
            tally_ledger::verify_header(&genesis, &block.header, &certificate, &verifier)
                .expect("the tip's certificate verifies");
            txs_at_tip.push(block.txs.len());
            drop(store);
            std::fs::remove_file(&copy).expect("remove the copy");

            let tip_of_others = (0..VICTIM).filter_map(|i| n.height(i)).max().unwrap_or(0);
            n.start_node(VICTIM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while n.height(VICTIM).is_none_or(|h| h < tip_of_others) {
                assert!(Instant::now() < deadline, "validator {VICTIM} did not catch up");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let acked = acked.into_inner().expect("lock");
    net.check_after_load(&acked, &[0, 1, 2, 3], start_height, 1);
    let least = txs_at_tip.iter().min().copied().unwrap_or(0);
    let most = txs_at_tip.iter().max().copied().unwrap_or(0);
    eprintln!(
        "disk: {kills} kills of validator {VICTIM} within its block cycle; the store opened \
         with a whole, certified tip every time (tip blocks of {least} to {most} txs); \
         {} txs acknowledged, all found on all {VALIDATORS} nodes",
        acked.len()
    );
}
