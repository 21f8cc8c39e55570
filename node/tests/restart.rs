//! A validator killed in the middle of a round comes back without signing anything that
//! conflicts with what it signed before, resumes the round from its consensus log, and
//! starts when the log's tail is torn.
//!
//! The round is held open on purpose: only two of the four validators run, so height 1
//! stalls in round 0 (no quorum for anything, so no timeout moves it on). The proposer of
//! (1, 0) is one of the two; it has signed its proposal and its prevote when it is killed.
//! Restarted without its signing record it would build and sign another block for (1, 0)
//! (another time, so another hash), and the other validator would report the equivocation.

mod common;

use common::Testnet;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn state(net: &Testnet, i: usize) -> Option<Value> {
    let state = net.rpc(i, "consensus_state", json!({})).ok()?;
    Some(state["round_state"]["tally"].clone()).filter(|s| !s.is_null())
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_validator_restarted_mid_round_signs_nothing_new_and_resumes_from_its_log() {
    let mut net = Testnet::write(4, 4, &[], |_, _| {}, 1);
    wait_for("node 0's consensus state", Duration::from_secs(60), || state(&net, 0).is_some());
    let first = state(&net, 0).expect("state");
    assert_eq!(first["height"], 1, "{first}");
    let proposer_index = first["proposer"].as_u64().expect("proposer");
    let proposer = net.node_of_validator(proposer_index);
    let other = if proposer == 0 { 1 } else { 0 };
    let up = [proposer, other];
    for i in up {
        if net.nodes[i].child.is_none() {
            net.start_node(i);
        }
    }
    // Both prevotes (the proposer's for its block, the other's) counted on both nodes; the
    // proposal went out before the proposer's prevote.
    let half = first["total_power"].as_u64().expect("total power") / 2;
    wait_for("both prevotes at (1, 0) on both nodes", Duration::from_secs(60), || {
        up.iter().all(|&i| {
            state(&net, i).is_some_and(|s| {
                s["height"] == 1 && s["round"] == 0 && s["prevote_power"].as_u64() == Some(half)
            })
        })
    });
    assert_eq!(net.metric(proposer, "tally_signed_messages_total"), 2, "a proposal and a prevote");

    // Killed in the middle of round 0, restarted.
    net.kill_node(proposer);
    net.start_node(proposer);
    wait_for("the log replay", Duration::from_secs(60), || {
        net.log_of(proposer).contains("replayed the consensus log")
    });
    wait_for("the restarted proposer's state", Duration::from_secs(30), || {
        state(&net, proposer).is_some()
    });
    let resumed = state(&net, proposer).expect("state");
    assert_eq!((resumed["height"].as_u64(), resumed["round"].as_u64()), (Some(1), Some(0)));
    // Its own prevote (signing record) and the other's (consensus log) are back at once.
    assert_eq!(resumed["prevote_power"].as_u64(), Some(half), "{resumed}");
    assert!(net.metric(proposer, "tally_wal_replayed_total") >= 1);
    // Past the rebroadcast interval (6 s): whatever the restarted node holds as its own
    // messages of the height has been sent to the other by now, after its mesh formed.
    std::thread::sleep(Duration::from_secs(7));
    let log = net.log_of(proposer);
    assert!(!log.contains("not re-sending a proposal"), "the proposal's block is lost: {log}");
    assert_eq!(net.metric(proposer, "tally_signed_messages_total"), 0, "re-sent, not signed anew");
    for i in up {
        assert_eq!(net.metric(i, "tally_evidence_total"), 0, "node {i} saw an equivocation");
    }

    // Killed again, with the last frame of its log torn off mid-write.
    net.kill_node(proposer);
    let wal = net.nodes[proposer].home.join("data/consensus.wal");
    let bytes = std::fs::read(&wal).expect("the consensus log exists");
    let logged = tally_node::consensus::wal::parse(&bytes);
    assert_eq!(logged.height.map(|h| h.0), Some(1));
    assert!(!logged.entries.is_empty(), "the log holds entries");
    let len = bytes.len() as u64;
    let file = std::fs::OpenOptions::new().write(true).open(&wal).expect("open the log");
    file.set_len(len - 5).expect("tear the tail");
    drop(file);
    net.start_node(proposer);
    wait_for("the restart after a torn tail", Duration::from_secs(60), || {
        state(&net, proposer).is_some()
    });
    let log = net.log_of(proposer);
    assert!(log.contains("cut a torn or corrupt tail off the consensus log"), "{log}");
    assert!(net.metric(proposer, "tally_wal_cut_bytes_total") > 0);
    let after_cut = state(&net, proposer).expect("state");
    assert_eq!(after_cut["height"], 1, "{after_cut}");

    // The other two join: the height commits and the chain goes on, with no evidence.
    for i in 0..4 {
        if net.nodes[i].child.is_none() {
            net.start_node(i);
        }
    }
    net.wait_height(&[0, 1, 2, 3], 3, Duration::from_secs(120));
    net.assert_one_hash_per_height(&[0, 1, 2, 3], 3);
    for i in 0..4 {
        assert_eq!(net.metric(i, "tally_evidence_total"), 0, "node {i} saw an equivocation");
    }
    // Votes again: signed new messages after the restart.
    assert!(net.metric(proposer, "tally_signed_messages_total") > 0);
}
