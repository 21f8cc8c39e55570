//! A verifiable ledger end to end: four real validators commit 300+ blocks under transfers and
//! take snapshots; a fifth, new full node state-syncs from a snapshot, block-syncs to the tip,
//! and answers `account` with the same balances and proofs as the validators (and `tally
//! verify` accepts them from it); a validator whose data folder is deleted comes back by block
//! sync from genesis and votes again.

mod common;

use common::{b64, tally_bin, StopOnDrop, Testnet};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ACCOUNTS: u32 = 200;
const SENDERS: u32 = 40;
const SNAPSHOT_INTERVAL: u64 = 100;
const TARGET_HEIGHT: u64 = 310;

/// Submits transfers from `SENDERS` accounts, nonce after nonce, round-robin over the
/// validators, until `stop`; counts the accepted ones.
fn submit_until(net: &Testnet, stop: &AtomicBool, accepted: &AtomicU64) {
    let mut nonce = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for sender in 0..SENDERS {
            let to = SENDERS + (sender * 7 + nonce as u32) % (ACCOUNTS - SENDERS);
            let tx = net.signed_transfer(sender, to, 1 + nonce % 5, nonce);
            let node = (sender % 4) as usize;
            let reply = net.rpc(node, "broadcast_tx_sync", json!({ "tx": b64(&tx) }));
            if reply.is_ok_and(|r| r["code"] == 0) {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
        nonce += 1;
        // Keep the block rate up: the point is many blocks, not a load test.
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn mempool_empty(net: &Testnet, i: usize) -> bool {
    net.rpc(i, "num_unconfirmed_txs", json!({})).is_ok_and(|r| r["n_txs"].as_str() == Some("0"))
}

/// The fields of an `account` answer that depend only on the state (not on the node).
fn account_view(net: &Testnet, i: usize, index: u32) -> Value {
    let address = net.account_key(index).public().to_hex();
    let a = net.rpc(i, "account", json!({ "address": address, "prove": true })).expect("account");
    json!([
        a["balance"],
        a["nonce"],
        a["proof"]["present"],
        a["proof"]["state_root"],
        a["proof"]["raw"]
    ])
}

fn signers_of(net: &Testnet, node: usize, height: u64) -> Vec<u64> {
    let c = net.rpc(node, "commit", json!({ "height": height.to_string() })).expect("commit");
    c["signed_header"]["commit"]["signatures"]
        .as_array()
        .expect("signatures")
        .iter()
        .enumerate()
        // One entry per validator, in set order; 2 marks a signature for the block.
        .filter(|(_, s)| s["block_id_flag"] == 2)
        .map(|(i, _)| i as u64)
        .collect()
}

#[test]
fn n4_full_node_state_syncs_and_a_wiped_validator_block_syncs_back_slow() {
    let extra = ["--full-nodes", "4", "--state-sync", "--snapshot-interval"];
    let interval = SNAPSHOT_INTERVAL.to_string();
    let args: Vec<&str> = extra.iter().copied().chain([interval.as_str()]).collect();
    let mut net = Testnet::write(
        5,
        ACCOUNTS,
        &args,
        |_, t| {
            let consensus = t.entry("consensus").or_insert(toml::Table::new().into());
            let consensus = consensus.as_table_mut().expect("consensus table");
            consensus.insert("timeout_commit_ms".into(), 10.into());
        },
        4,
    );
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(90));

    // 300+ blocks with transfers in them.
    let stop = AtomicBool::new(false);
    let accepted = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| submit_until(&net, &stop, &accepted));
        net.wait_height(&[0, 1, 2, 3], TARGET_HEIGHT, Duration::from_secs(240));
        // Blocks can come faster than the senders fill them: keep the load on until enough
        // transfers are in, so the snapshots and block sync carry real state.
        let deadline = Instant::now() + Duration::from_secs(60);
        while accepted.load(Ordering::Relaxed) <= 1000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let accepted = accepted.load(Ordering::Relaxed);
    assert!(accepted > 1000, "only {accepted} transfers accepted");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(0..4).all(|i| mempool_empty(&net, i)) {
        assert!(Instant::now() < deadline, "mempools did not drain");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{TARGET_HEIGHT} blocks, {accepted} transfers in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Snapshots were written (and the oldest pruned: keep_recent = 2).
    let heights = net.snapshot_heights(0);
    assert!(
        heights.len() == 2
            && heights[1] >= 300
            && heights[1].is_multiple_of(SNAPSHOT_INTERVAL)
            && heights[1] - heights[0] == SNAPSHOT_INTERVAL,
        "node 0 keeps its two newest snapshots, every {SNAPSHOT_INTERVAL} blocks: {heights:?}"
    );

    // The fifth node, new, state-syncs from a snapshot and follows the chain.
    let sync_started = Instant::now();
    net.start_node(4);
    let tip = (0..4).map(|i| net.height(i).expect("height")).max().expect("tip");
    net.wait_height(&[4], tip, Duration::from_secs(120));
    let sync_secs = sync_started.elapsed().as_secs_f64();
    let status = net.rpc(4, "status", json!({})).expect("status");
    let earliest: u64 = status["sync_info"]["earliest_block_height"]
        .as_str()
        .expect("earliest")
        .parse()
        .expect("n");
    assert!(
        earliest > 300 && (earliest - 1).is_multiple_of(SNAPSHOT_INTERVAL),
        "restored from a snapshot (of 300 or later), not replayed from genesis: {earliest}"
    );
    assert!(net.log_of(4).contains("state sync: snapshot restored"));
    eprintln!("full node: state sync + block sync to {tip} in {sync_secs:.1} s");
    // It keeps following.
    net.wait_height(&[4], tip + 5, Duration::from_secs(60));
    let err = net.rpc(4, "block", json!({ "height": "100" })).expect_err("below its base");
    assert!(err["message"].as_str().unwrap_or("").contains("snapshot"), "{err}");

    // Same balances, nonces and proofs as the validators, for every account.
    for index in 0..ACCOUNTS {
        let expected = account_view(&net, 0, index);
        assert_eq!(account_view(&net, 4, index), expected, "account {index}");
    }
    // `tally verify` accepts the full node's proof, trusting only the genesis.
    let genesis = net.nodes[0].home.join("genesis.json");
    let address = net.account_key(3).public().to_hex();
    let out = Command::new(tally_bin())
        .args(["verify", "account", "--genesis"])
        .arg(&genesis)
        .args(["--rpc", &net.rpc_url(4), "--address", &address])
        .output()
        .expect("tally verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("verified"), "{stdout} {:?}", out.stderr);

    // A validator loses its data folder and comes back by block sync from genesis.
    net.kill_node(3);
    std::fs::remove_dir_all(net.nodes[3].home.join("data")).expect("delete node 3's data");
    let rejoin_started = Instant::now();
    net.start_node(3);
    let tip = (0..3).map(|i| net.height(i).expect("height")).max().expect("tip");
    net.wait_height(&[3], tip, Duration::from_secs(120));
    let secs = rejoin_started.elapsed().as_secs_f64();
    eprintln!(
        "wiped validator: block sync of {tip} blocks in {secs:.1} s ({:.0} blocks/s)",
        tip as f64 / secs
    );
    let status = net.rpc(3, "status", json!({})).expect("status");
    assert_eq!(status["sync_info"]["earliest_block_height"].as_str(), Some("1"));
    // ... and votes again: its precommit is in certificates of blocks after it caught up.
    let from = net.height(0).expect("height") + 1;
    net.wait_height(&[0, 3], from + 30, Duration::from_secs(120));
    let voted = (from..from + 30).filter(|h| signers_of(&net, 0, *h).contains(&3)).count();
    assert!(voted > 0, "validator 3 signed none of the 30 certificates after it rejoined");
    // Nobody saw an equivocation.
    for i in 0..5 {
        assert!(!net.log_of(i).contains("equivocation detected"), "node {i} reported evidence");
    }
}
