//! A Byzantine peer during state sync and block sync. Four real validators run; a lying peer
//! (an in-process tally-network swarm connected to validator 0) relays gossip honestly but
//! answers sync requests with what validator 0 answers it, tampered: every snapshot chunk has
//! a flipped byte, and block responses carry a first block whose header was changed (so its
//! certificate no longer matches). A new full node whose only peers are the liar and
//! validator 1 must state-sync, block-sync and follow the chain with the validators' state;
//! every tampered chunk and block it received is refused (and counted), none is applied.
//! Then, with validator 1 down, the liar is the full node's only peer: after a restart the
//! full node refuses the liar's first (tampered) blocks and catches up from its honest ones.

mod common;

use common::Testnet;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_crypto::ChainId;
use tally_network::{
    spawn, InboundSyncRequest, Multiaddr, NetworkConfig, NetworkEvents, NetworkHandle, PeerId,
    SyncRequest, SyncResponse,
};

/// More than two chunks of 8192 accounts, so chunks are asked of both peers in turn.
const ACCOUNTS: u32 = 20_000;
const SNAPSHOT_INTERVAL: u64 = 20;
const FULL_NODE: usize = 4;

/// What the liar did, for the test to compare with what the full node reports.
#[derive(Default)]
struct Lies {
    chunks: AtomicU32,
    blocks: AtomicU32,
    /// Block responses still to tamper (then it answers honestly).
    block_budget: AtomicU32,
}

/// Answers one sync request with validator 0's answer, tampered as the budget says. An
/// upstream failure drops the responder (the asker sees a failed request).
async fn answer(net: NetworkHandle, upstream: PeerId, request: InboundSyncRequest, lies: &Lies) {
    let response = match request.request {
        SyncRequest::Snapshots => match net.request_snapshots(upstream).await {
            Ok(offers) => SyncResponse::Snapshots(offers),
            Err(_) => return,
        },
        SyncRequest::SnapshotChunk { height, index } => {
            match net.request_chunk(upstream, height, index).await {
                Ok(mut bytes) if !bytes.is_empty() => {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x01;
                    lies.chunks.fetch_add(1, Ordering::SeqCst);
                    SyncResponse::SnapshotChunk(bytes)
                }
                _ => return,
            }
        }
        SyncRequest::Blocks { from, count } => {
            match net.request_blocks(upstream, from, count).await {
                Ok(mut blocks) => {
                    let tamper = lies
                        .block_budget
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                        .is_ok();
                    if let (true, Some((block, _))) = (tamper, blocks.first_mut()) {
                        block.header.time_ms += 1;
                        lies.blocks.fetch_add(1, Ordering::SeqCst);
                    } else if tamper {
                        lies.block_budget.fetch_add(1, Ordering::SeqCst);
                    }
                    SyncResponse::Blocks(blocks)
                }
                Err(_) => return,
            }
        }
        // Txs of a proposed block (a compact proposal's receiver lacked them): relayed as
        // they are.
        SyncRequest::BlockTxs { height, block_hash, indices } => {
            match net.request_block_txs(upstream, height, block_hash, indices).await {
                Ok(txs) => SyncResponse::BlockTxs(txs),
                Err(_) => return,
            }
        }
    };
    request.responder.respond(response);
}

/// Runs the liar: drains gossip (forwarded on decode by the network, like any relay) and
/// answers sync requests from `upstream`'s answers.
async fn run_liar(
    net: NetworkHandle,
    mut events: NetworkEvents,
    upstream: PeerId,
    lies: Arc<Lies>,
) {
    loop {
        tokio::select! {
            e = events.consensus.recv() => if e.is_none() { return },
            e = events.txs.recv() => if e.is_none() { return },
            r = events.sync_requests.recv() => {
                let Some(request) = r else { return };
                let (net, lies) = (net.clone(), lies.clone());
                tokio::spawn(async move { answer(net, upstream, request, &lies).await });
            }
        }
    }
}

fn peer_of(addr: &Multiaddr) -> PeerId {
    addr.iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .expect("a peer address ends in /p2p/<id>")
}

#[test]
fn n4_full_node_refuses_a_lying_peer_during_state_sync_and_block_sync_slow() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let lies = Arc::new(Lies::default());
    lies.block_budget.store(u32::MAX, Ordering::SeqCst);
    let v0_addr: Arc<Mutex<Option<Multiaddr>>> = Arc::default();

    // The liar listens first (the full node's config names it) on the chain this test names;
    // it dials validator 0 once the testnet is written.
    let unique = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let chain = ChainId::new(format!("tally-byz-{unique}")).expect("chain id");
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    let (liar, liar_events) = rt
        .block_on(async { spawn(NetworkConfig::new(chain.clone(), listen, [0x66; 32])) })
        .expect("the liar's network starts");
    let liar_addr = rt.block_on(async {
        loop {
            if let Some(a) = liar.listen_addrs().await.expect("liar running").into_iter().next() {
                break a.with(libp2p::multiaddr::Protocol::P2p(liar.local_peer_id()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let interval = SNAPSHOT_INTERVAL.to_string();
    let extra = [
        "--full-nodes",
        "4",
        "--state-sync",
        "--snapshot-interval",
        interval.as_str(),
        "--chain-id",
        chain.as_str(),
    ];
    let recorded = v0_addr.clone();
    let liar_for_config = liar_addr.to_string();
    let mut net = Testnet::write(
        5,
        ACCOUNTS,
        &extra,
        move |i, t| {
            let consensus = t.entry("consensus").or_insert(toml::Table::new().into());
            let consensus = consensus.as_table_mut().expect("consensus table");
            consensus.insert("timeout_commit_ms".into(), 100.into());
            let p2p = t.get_mut("p2p").and_then(|p| p.as_table_mut()).expect("p2p table");
            if i != FULL_NODE {
                // The validators do not dial the full node: its only peers are the two it
                // names.
                let own = p2p["listen_addr"].as_str().expect("listen_addr").to_string();
                let port: u16 = own.rsplit('/').next().and_then(|p| p.parse().ok()).expect("port");
                let full = format!("/tcp/{}/", port - 10 * i as u16 + 10 * FULL_NODE as u16);
                let peers = p2p.get_mut("peers").and_then(|p| p.as_array_mut()).expect("peers");
                peers.retain(|p| !p.as_str().is_some_and(|p| p.contains(&full)));
                return;
            }
            let peers = p2p.get("peers").and_then(|p| p.as_array()).expect("peers").clone();
            let addr = |k: usize| peers[k].as_str().expect("peer address").to_string();
            *recorded.lock().expect("lock") = Some(addr(0).parse().expect("v0 address"));
            p2p.insert("peers".into(), vec![liar_for_config.clone(), addr(1)].into());
            let sync = t.entry("state_sync").or_insert(toml::Table::new().into());
            let sync = sync.as_table_mut().expect("state_sync table");
            sync.insert("discovery_settle_ms".into(), 200.into());
        },
        4,
    );
    let v0 = v0_addr.lock().expect("lock").clone().expect("node 4's config named validator 0");
    let upstream = peer_of(&v0);
    rt.block_on(liar.add_peer(v0)).expect("the liar dials validator 0");
    rt.spawn(run_liar(liar.clone(), liar_events, upstream, lies.clone()));

    // Two snapshots on validators 0 and 1 alike, so the full node finds its newest offered by
    // both the liar (relaying validator 0) and validator 1.
    net.wait_height(&[0, 1, 2, 3], 2 * SNAPSHOT_INTERVAL + 5, Duration::from_secs(120));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (net.snapshot_heights(0), net.snapshot_heights(1));
        if a.len() >= 2 && a == b {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "snapshots differ: {a:?} {b:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Phase 1: state sync and block sync with the liar and validator 1 as peers.
    net.start_node(FULL_NODE);
    let tip = (0..4).filter_map(|i| net.height(i)).max().expect("tip");
    net.wait_height(&[FULL_NODE], tip + 3, Duration::from_secs(120));
    let log = net.log_of(FULL_NODE);
    assert!(log.contains("state sync: snapshot restored"), "the full node state-synced");
    let bad_chunks = log.matches("peer served a bad chunk").count() as u32;
    let lied_chunks = lies.chunks.load(Ordering::SeqCst);
    assert!(lied_chunks >= 1, "the liar was asked for no chunk");
    assert_eq!(bad_chunks, lied_chunks, "every tampered chunk refused");
    // A tampered block is refused and counted unless consensus committed its height first
    // (the answer then holds nothing new); none is applied (same block hash as validator 0).
    let bad_blocks = net.metric(FULL_NODE, "tally_bad_synced_blocks_total");
    assert!(bad_blocks <= u64::from(lies.blocks.load(Ordering::SeqCst)));
    eprintln!(
        "phase 1: {lied_chunks} tampered chunks refused; {bad_blocks} of {} tampered block answers refused",
        lies.blocks.load(Ordering::SeqCst)
    );
    let h = net.height(FULL_NODE).expect("height");
    assert_eq!(net.block_hash(FULL_NODE, h), net.block_hash(0, h), "same block at {h}");
    for index in [0, 1, 8191, 8192, 19_999] {
        let address = net.account_key(index).public().to_hex();
        let q = json!({ "address": address, "prove": true });
        let mine = net.rpc(FULL_NODE, "account", q.clone()).expect("account");
        let theirs = net.rpc(0, "account", q).expect("account");
        assert_eq!(mine["balance"], theirs["balance"], "account {index}");
        assert_eq!(mine["proof"]["raw"], theirs["proof"]["raw"], "account {index}");
    }

    // Phase 2: validator 1 down (three validators keep the chain going), the full node down
    // for a while; on restart its only live peer is the liar, whose first block answers are
    // tampered. It refuses them, asks again, and catches up from the liar's honest ones.
    net.kill_node(1);
    net.kill_node(FULL_NODE);
    let behind = net.height(0).expect("height") + 40;
    net.wait_height(&[0, 2, 3], behind, Duration::from_secs(120));
    lies.blocks.store(0, Ordering::SeqCst);
    lies.block_budget.store(2, Ordering::SeqCst);
    net.start_node(FULL_NODE);
    net.wait_height(&[FULL_NODE], behind, Duration::from_secs(120));
    let lied = lies.blocks.load(Ordering::SeqCst);
    let refused = net.metric(FULL_NODE, "tally_bad_synced_blocks_total");
    eprintln!("phase 2: {refused} of {lied} tampered block answers refused");
    assert!(lied >= 1, "the liar was asked for no block");
    assert_eq!(refused, u64::from(lied), "every tampered block refused");
    assert_eq!(net.block_hash(FULL_NODE, behind), net.block_hash(0, behind));
    for i in [0, 2, 3, FULL_NODE] {
        assert!(!net.log_of(i).contains("equivocation detected"), "node {i} reported evidence");
    }
    rt.block_on(liar.shutdown()).expect("the liar stops");
}
