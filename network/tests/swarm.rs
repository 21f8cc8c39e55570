//! Real swarms on 127.0.0.1: gossip of consensus messages and tx batches, block sync, the
//! validation hold, publish retries, and a restarted peer being redialled. Every test is
//! bounded by a tokio timeout.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tally_consensus::{CommitCertificate, Height};
use tally_ledger::Block;
use tally_network::{
    spawn, CompactBlock, ConsensusEvent, ConsensusMsg, GossipRef, GossipValidation, Multiaddr,
    NetworkConfig, NetworkEvents, NetworkHandle, PeerId, RequestError, SyncRequest, SyncResponse,
    Verdict,
};
use tokio::time::{sleep, timeout, Instant};

const TEST_LIMIT: Duration = Duration::from_secs(60);

fn config(seed: u8, peers: Vec<Multiaddr>) -> NetworkConfig {
    let mut config = NetworkConfig::new(
        common::chain_id(),
        "/ip4/127.0.0.1/tcp/0".parse().expect("valid address"),
        [seed; 32],
    );
    config.peers = peers;
    config.redial_backoff_min = Duration::from_millis(100);
    config.redial_backoff_max = Duration::from_millis(500);
    config
}

async fn bounded<F: Future<Output = ()>>(test: F) {
    timeout(TEST_LIMIT, test).await.expect("test timed out");
}

async fn listen_addr(handle: &NetworkHandle) -> Multiaddr {
    loop {
        if let Some(addr) = handle.listen_addrs().await.expect("network running").into_iter().next()
        {
            return addr;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `handle` sees each of `peers` connected and subscribed to both topics.
async fn wait_subscribed(handle: &NetworkHandle, peers: &[PeerId]) {
    loop {
        let infos = handle.peers().await.expect("network running");
        let ready = peers.iter().all(|p| {
            infos.iter().any(|i| i.peer_id == *p && i.consensus_subscribed && i.txs_subscribed)
        });
        if ready {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

async fn next_consensus(events: &mut NetworkEvents) -> (ConsensusMsg, GossipRef) {
    loop {
        match events.consensus.recv().await.expect("network running") {
            ConsensusEvent::Message { msg, from } => return (msg, from),
            ConsensusEvent::PeerConnected(_) | ConsensusEvent::PeerDisconnected(_) => {}
        }
    }
}

/// Waits for `PeerConnected(peer)` (or `PeerDisconnected(peer)` if `connected` is false).
async fn wait_for_peer(events: &mut NetworkEvents, peer: PeerId, connected: bool) {
    loop {
        match events.consensus.recv().await.expect("network running") {
            ConsensusEvent::PeerConnected(p) if p == peer && connected => return,
            ConsensusEvent::PeerDisconnected(p) if p == peer && !connected => return,
            _ => {}
        }
    }
}

/// Answers sync requests from a map of blocks, as a node answers from its store; snapshot
/// requests get no offers, and chunk `i` is `i + 1` bytes of value `i` (a stand-in store).
/// Block txs come from the stored block of that height and hash.
fn serve_blocks(mut events: NetworkEvents, store: BTreeMap<u64, (Block, CommitCertificate)>) {
    tokio::spawn(async move {
        while let Some(request) = events.sync_requests.recv().await {
            let response = match request.request {
                SyncRequest::Blocks { from, count } => {
                    let blocks =
                        store.range(from.0..from.0 + u64::from(count)).map(|(_, b)| b.clone());
                    SyncResponse::Blocks(blocks.collect())
                }
                SyncRequest::Snapshots => SyncResponse::Snapshots(vec![]),
                SyncRequest::SnapshotChunk { index, .. } => {
                    SyncResponse::SnapshotChunk(vec![index as u8; index as usize + 1])
                }
                SyncRequest::BlockTxs { height, block_hash, indices } => {
                    match store.get(&height.0).filter(|(b, _)| b.hash() == block_hash) {
                        Some((block, _)) => SyncResponse::BlockTxs(
                            indices.iter().map(|&i| block.txs[i as usize]).collect(),
                        ),
                        None => SyncResponse::Error("block not here".into()),
                    }
                }
            };
            request.responder.respond(response);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_gossip_consensus_and_txs_then_sync_blocks() {
    bounded(async {
        let (a, mut a_events) = spawn(config(1, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let (b, mut b_events) = spawn(config(2, vec![a_addr.clone()])).unwrap();
        let b_addr = listen_addr(&b).await;
        let (c, mut c_events) = spawn(config(3, vec![a_addr, b_addr])).unwrap();
        let ids = [a.local_peer_id(), b.local_peer_id(), c.local_peer_id()];
        wait_subscribed(&a, &[ids[1], ids[2]]).await;
        wait_subscribed(&b, &[ids[0], ids[2]]).await;
        wait_subscribed(&c, &[ids[0], ids[1]]).await;

        // A compact proposal (header and tx hashes), from C to A and B.
        let block = common::block(1, 20);
        let compact = CompactBlock::of(&block);
        assert!(compact.hashes_match_header());
        let proposal =
            ConsensusMsg::CompactProposal { proposal: common::proposal(&block), block: compact };
        c.broadcast_consensus(proposal.clone()).await.unwrap();
        for events in [&mut a_events, &mut b_events] {
            let (msg, from) = next_consensus(events).await;
            assert_eq!(msg, proposal);
            assert!(!from.awaiting_report, "accepted on decode by default");
        }

        // A tx batch from A to B and C.
        let txs = common::txs(50);
        a.broadcast_txs(txs.clone()).unwrap();
        for (me, events) in [(ids[1], &mut b_events), (ids[2], &mut c_events)] {
            let batch = events.txs.recv().await.unwrap();
            assert_eq!(batch.txs, txs);
            // From A, or relayed by the third node when the receiver is not in A's mesh.
            let source = batch.from.propagation_source;
            assert!(source != me && ids.contains(&source), "{source} relayed it");
        }

        // Block sync: B asks A for heights 2..=4; A holds 1..=3.
        let store: BTreeMap<_, _> = (1..=3)
            .map(|h| {
                let block = common::block(h, h);
                let cert = common::certificate(&block);
                (h, (block, cert))
            })
            .collect();
        serve_blocks(a_events, store.clone());
        let blocks = b.request_blocks(ids[0], Height(2), 3).await.unwrap();
        assert_eq!(blocks, vec![store[&2].clone(), store[&3].clone()]);
        // Snapshot offers and chunks travel the same protocol.
        assert_eq!(b.request_snapshots(ids[0]).await.unwrap(), vec![]);
        assert_eq!(b.request_chunk(ids[0], Height(2), 4).await.unwrap(), vec![4u8; 5]);
        // The txs of a proposed block, by index: some, then all of them (a request far
        // larger than a block request).
        let (block3, _) = &store[&3];
        let some = b.request_block_txs(ids[0], Height(3), block3.hash(), vec![0, 2]).await;
        assert_eq!(some.unwrap(), vec![block3.txs[0], block3.txs[2]]);
        let big = common::block(4, 2000);
        let big_store = BTreeMap::from([(4, (big.clone(), common::certificate(&big)))]);
        let all: Vec<u32> = (0..2000).collect();
        serve_blocks(c_events, big_store);
        let got = b.request_block_txs(ids[2], Height(4), big.hash(), all).await.unwrap();
        assert_eq!(got, big.txs);
        // Another block at that height: refused, not served wrong.
        let other = b.request_block_txs(ids[0], Height(3), big.hash(), vec![0]).await;
        assert!(matches!(other, Err(RequestError::Refused { .. })), "{other:?}");

        let stats = a.stats();
        assert_eq!(stats.sync_requests_in, 5);
        assert_eq!(stats.tx_batches_out, 1);
        assert_eq!(stats.decode_failures, 0);
        assert_eq!(b.stats().consensus_in, 1);
        assert_eq!(c.stats().consensus_out, 1);

        for handle in [a, b, c] {
            handle.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_request_to_a_node_that_does_not_answer_fails_cleanly() {
    bounded(async {
        let (a, a_events) = spawn(config(11, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let (b, _b_events) = spawn(config(12, vec![a_addr])).unwrap();
        wait_subscribed(&b, &[a.local_peer_id()]).await;
        // A's node drops every responder: the peer gets an error, not a hang.
        tokio::spawn(async move {
            let mut events = a_events;
            while let Some(request) = events.sync_requests.recv().await {
                drop(request.responder);
            }
        });
        let result = b.request_blocks(a.local_peer_id(), Height(1), 5).await;
        assert!(matches!(result, Err(RequestError::Refused { .. })), "{result:?}");
        // A peer we are not connected to and cannot dial: a failure, not a hang.
        let stranger = PeerId::random();
        let result = b.request_blocks(stranger, Height(1), 5).await;
        assert!(matches!(result, Err(RequestError::Failed { .. })), "{result:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_before_any_peer_is_retried_until_one_subscribes() {
    bounded(async {
        let (a, _a_events) = spawn(config(21, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let vote = ConsensusMsg::Vote(common::vote(9));
        a.broadcast_consensus(vote.clone()).await.unwrap();
        sleep(Duration::from_millis(300)).await;
        assert!(a.stats().publish_retries >= 1);

        let (_b, mut b_events) = spawn(config(22, vec![a_addr])).unwrap();
        let (msg, _) = next_consensus(&mut b_events).await;
        assert_eq!(msg, vote);
        assert_eq!(a.stats().consensus_out, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_validation_holds_forwarding_until_accepted() {
    bounded(async {
        // A line: A - B - C. B forwards only what its node accepts.
        let (a, _a_events) = spawn(config(31, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let mut b_config = config(32, vec![a_addr]);
        b_config.consensus_validation = GossipValidation::ByNode;
        let (b, mut b_events) = spawn(b_config).unwrap();
        let b_addr = listen_addr(&b).await;
        let (c, mut c_events) = spawn(config(33, vec![b_addr])).unwrap();
        wait_subscribed(&a, &[b.local_peer_id()]).await;
        wait_subscribed(&c, &[b.local_peer_id()]).await;
        wait_subscribed(&b, &[a.local_peer_id(), c.local_peer_id()]).await;

        let vote = ConsensusMsg::Vote(common::vote(4));
        a.broadcast_consensus(vote.clone()).await.unwrap();
        let (msg, from) = next_consensus(&mut b_events).await;
        assert_eq!(msg, vote);
        assert!(from.awaiting_report);
        assert_eq!(from.propagation_source, a.local_peer_id());

        let early = timeout(Duration::from_millis(700), next_consensus(&mut c_events)).await;
        assert!(early.is_err(), "C got the message before B's node accepted it");
        b.report_validation(&from, Verdict::Accept).await.unwrap();
        let (msg, from_c) = next_consensus(&mut c_events).await;
        assert_eq!(msg, vote);
        assert_eq!(from_c.propagation_source, b.local_peer_id());

        // A rejected message is not forwarded.
        let other = ConsensusMsg::Vote(common::vote(5));
        a.broadcast_consensus(other).await.unwrap();
        let (_, from) = next_consensus(&mut b_events).await;
        b.report_validation(&from, Verdict::Reject).await.unwrap();
        let late = timeout(Duration::from_millis(700), next_consensus(&mut c_events)).await;
        assert!(late.is_err(), "a rejected message was forwarded");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_redialled() {
    bounded(async {
        let (b, _b_events) = spawn(config(42, vec![])).unwrap();
        let b_addr = listen_addr(&b).await;
        let b_id = b.local_peer_id();
        let (a, mut a_events) = spawn(config(41, vec![b_addr.clone()])).unwrap();
        wait_subscribed(&a, &[b_id]).await;

        b.shutdown().await.unwrap();
        wait_for_peer(&mut a_events, b_id, false).await;

        // Same identity, same port: A must find it again on its own.
        let mut b_config = config(42, vec![]);
        b_config.listen_addr = b_addr;
        let (b, mut b_events) = spawn(b_config).unwrap();
        wait_for_peer(&mut a_events, b_id, true).await;
        assert!(a.stats().dials >= 2, "A dialled B again");
        // Announced means subscribed: a broadcast now reaches B.
        let vote = ConsensusMsg::Vote(common::vote(1));
        a.broadcast_consensus(vote.clone()).await.unwrap();
        assert_eq!(next_consensus(&mut b_events).await.0, vote);
        b.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tx_channel_drops_batches_and_counts_them() {
    bounded(async {
        let (a, _a_events) = spawn(config(51, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let mut b_config = config(52, vec![a_addr]);
        b_config.tx_events_capacity = 1;
        let (b, mut b_events) = spawn(b_config).unwrap();
        wait_subscribed(&a, &[b.local_peer_id()]).await;
        for n in 1..=3 {
            a.broadcast_txs(common::txs(n)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.stats().tx_batches_in < 3 {
            assert!(Instant::now() < deadline, "batches did not arrive");
            sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(b.stats().tx_batches_dropped, 2);
        assert_eq!(b_events.txs.recv().await.unwrap().txs.len(), 1, "the first one was kept");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_consensus_channel_applies_backpressure_and_loses_nothing() {
    bounded(async {
        let (a, _a_events) = spawn(config(61, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let mut b_config = config(62, vec![a_addr]);
        b_config.events_capacity = 1;
        let (b, mut b_events) = spawn(b_config).unwrap();
        wait_subscribed(&a, &[b.local_peer_id()]).await;
        wait_subscribed(&b, &[a.local_peer_id()]).await;

        let votes: Vec<_> = (1..=20).map(|h| ConsensusMsg::Vote(common::vote(h))).collect();
        for vote in &votes {
            a.broadcast_consensus(vote.clone()).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.stats().consensus_backpressure == 0 {
            assert!(Instant::now() < deadline, "the channel never filled");
            sleep(Duration::from_millis(20)).await;
        }
        // B's node is not reading, yet B still serves commands: no deadlock.
        assert_eq!(b.peers().await.unwrap().len(), 1);

        let mut received = Vec::new();
        while received.len() < votes.len() {
            let (msg, _) = next_consensus(&mut b_events).await;
            received.push(msg);
        }
        assert_eq!(received, votes, "every vote arrives, in order");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_penalised_peer_is_banned_then_let_back() {
    bounded(async {
        let mut a_config = config(71, vec![]);
        a_config.peer_penalties_max = 2;
        a_config.peer_ban_duration = Duration::from_millis(1500);
        let (a, mut a_events) = spawn(a_config).unwrap();
        let a_addr = listen_addr(&a).await;
        // B keeps redialling A, so only the ban keeps them apart.
        let (b, _b_events) = spawn(config(72, vec![a_addr])).unwrap();
        let b_id = b.local_peer_id();
        wait_subscribed(&a, &[b_id]).await;

        a.penalize(b_id).await.unwrap();
        a.penalize(b_id).await.unwrap();
        wait_for_peer(&mut a_events, b_id, false).await;
        let banned_at = Instant::now();
        assert_eq!(a.stats().bans, 1);
        wait_for_peer(&mut a_events, b_id, true).await;
        assert!(banned_at.elapsed() >= Duration::from_secs(1), "let back before the ban ended");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gossip_is_rejected_counted_and_never_delivered() {
    bounded(async {
        let (a, _a_events) = spawn(config(81, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let (b, mut b_events) = spawn(config(82, vec![a_addr])).unwrap();
        wait_subscribed(&a, &[b.local_peer_id()]).await;

        a.publish_raw_consensus(vec![1, 0xff, 0xff, 0xff]).await.unwrap();
        a.publish_raw_consensus(vec![9; 64]).await.unwrap();
        let vote = ConsensusMsg::Vote(common::vote(2));
        a.broadcast_consensus(vote.clone()).await.unwrap();
        let (msg, _) = next_consensus(&mut b_events).await;
        assert_eq!(msg, vote, "the garbage never reached the node");
        assert_eq!(b.stats().decode_failures, 2);
        assert_eq!(b.stats().consensus_in, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_blocks_cross_gossip_and_sync() {
    bounded(async {
        let (a, mut a_events) = spawn(config(91, vec![])).unwrap();
        let a_addr = listen_addr(&a).await;
        let (b, _b_events) = spawn(config(92, vec![a_addr])).unwrap();
        wait_subscribed(&b, &[a.local_peer_id()]).await;

        // About 1 MiB: far over gossipsub's 64 KiB default.
        let big = common::block(1, 7_500);
        assert!(big.encoded_len() > 1 << 20);
        let certificate = ConsensusMsg::Certificate {
            certificate: common::certificate(&big),
            block: big.clone(),
        };
        b.broadcast_consensus(certificate.clone()).await.unwrap();
        assert_eq!(next_consensus(&mut a_events).await.0, certificate);

        // Three of them in one sync response.
        let store: BTreeMap<_, _> = (1..=3)
            .map(|h| {
                let mut block = big.clone();
                block.header.height = Height(h);
                let cert = common::certificate(&block);
                (h, (block, cert))
            })
            .collect();
        serve_blocks(a_events, store.clone());
        let blocks = b.request_blocks(a.local_peer_id(), Height(1), 10).await.unwrap();
        assert_eq!(blocks, store.into_values().collect::<Vec<_>>());
    })
    .await;
}
