//! Kill/restart chaos under load: four real validators commit transfers submitted with
//! `broadcast_tx_commit` while a random validator is SIGKILLed every few seconds and started
//! again (never more than one of four down, so f = 1 is never exceeded). Afterwards: one block
//! hash per height on every node, every tx any node acknowledged as committed is in every
//! node's ledger at the acknowledged height, no node reported an equivocation or panicked,
//! and the chain advanced. A killed validator, once restarted, reports at least the height it
//! reported just before the kill (its store reopened at a whole block, none lost).
//!
//! `TALLY_CHAOS_SECONDS` sets the length of the chaos phase (default 30, as CI runs it);
//! `testnet/chaos.sh 300` runs five minutes. `TALLY_CHAOS_SEED` picks the kill sequence.

mod common;

use common::{b64, rpc_at, Accounts, Testnet};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A tx acknowledged as committed by some node.
struct Acked {
    hash: String,
    height: u64,
}

/// One sender's loop: transfer after transfer with `broadcast_tx_commit`, node after node.
/// A failed call (the node was killed, or the tx did not commit in time) is retried with the
/// same tx on the next node, after re-reading the sender's nonce (the tx may have committed
/// without an answer reaching us: then it is not counted as acknowledged).
fn submit(
    accounts: &Accounts,
    ports: &[u16],
    sender: u32,
    stop: &AtomicBool,
    acked: &Mutex<Vec<Acked>>,
) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
    let address = accounts.key(sender).public().to_hex();
    let mut nonce = 0u64;
    let mut turn = sender as usize;
    while !stop.load(Ordering::Relaxed) {
        let to = SENDERS + (sender + nonce as u32) % (ACCOUNTS - SENDERS);
        let tx = accounts.transfer(sender, to, 1, nonce);
        turn += 1;
        let port = ports[turn % ports.len()];
        match rpc_at(&agent, port, "broadcast_tx_commit", json!({ "tx": b64(&tx) })) {
            Ok(r) => {
                let height = r["height"].as_str().and_then(|h| h.parse().ok()).expect("height");
                acked.lock().expect("lock").push(Acked { hash: tx.hash().0.to_hex(), height });
                nonce += 1;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                let port = ports[(turn + 1) % ports.len()];
                if let Ok(a) = rpc_at(&agent, port, "account", json!({ "address": address })) {
                    let committed: u64 =
                        a["nonce"].as_str().and_then(|n| n.parse().ok()).unwrap_or(nonce);
                    nonce = nonce.max(committed);
                }
            }
        }
    }
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
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let (accounts, ports, stop, acked) = (&accounts, &ports, &stop, &acked);
            scope.spawn(move || submit(accounts, ports, sender, stop, acked));
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
            // Back when it has caught up with the height the others had at its restart;
            // only then is the next validator killed (at most one of four is ever out).
            let mut first_answer = true;
            let caught_up = loop {
                let now = n.height(victim);
                if let (true, Some(now), Some(before)) = (first_answer, now, before) {
                    assert!(now >= before, "validator {victim} lost blocks: {before} -> {now}");
                    first_answer = false;
                }
                if now.is_some_and(|h| h >= tip) {
                    break true;
                }
                if restarted.elapsed() > Duration::from_secs(60) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(caught_up, "validator {victim} did not catch up within 60 s of its restart");
            back_secs.push(restarted.elapsed().as_secs_f64());
        }
        stop.store(true, Ordering::Relaxed);
    });

    let acked = acked.into_inner().expect("lock");
    let top = acked.iter().map(|a| a.height).max().unwrap_or(0);
    net.wait_height(&[0, 1, 2, 3], top.max(start_height) + 2, Duration::from_secs(90));
    let tip = (0..VALIDATORS).filter_map(|i| net.height(i)).min().expect("heights");

    net.assert_one_hash_per_height(&[0, 1, 2, 3], tip);
    // Every acknowledged tx is in every node's ledger, at the acknowledged height.
    for a in &acked {
        for i in 0..VALIDATORS {
            let t = net.rpc(i, "tx", json!({ "hash": a.hash })).expect("an acknowledged tx");
            assert_eq!(t["height"].as_str(), Some(a.height.to_string().as_str()), "{}", a.hash);
        }
    }
    for i in 0..VALIDATORS {
        let log = net.log_of(i);
        assert!(!log.contains("equivocation detected"), "node {i} reported evidence");
        assert!(!log.contains("panicked"), "node {i} panicked");
    }
    let advanced = tip - start_height;
    back_secs.sort_by(f64::total_cmp);
    let median = back_secs.get(back_secs.len() / 2).copied().unwrap_or(0.0);
    let max = back_secs.last().copied().unwrap_or(0.0);
    eprintln!(
        "chaos: {kills} kills and restarts in {seconds} s; {n} txs acknowledged, {n} found on \
         all {VALIDATORS} nodes; {advanced} blocks; restart to caught up: median {median:.1} s, \
         max {max:.1} s",
        n = acked.len()
    );
    assert!(kills >= 1 && !acked.is_empty(), "no chaos happened");
    assert!(advanced as f64 >= seconds as f64 / 2.0, "the chain advanced only {advanced} blocks");
}
