//! The simulated network (`tally_network::sim`): two or three nodes' handles and events
//! joined by the test playing the simulator through their ports. No sockets, no swarm task;
//! each test runs on one thread.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use tally_consensus::{CommitCertificate, Height};
use tally_crypto::Hash;
use tally_ledger::Block;
use tally_network::sim::{endpoint, SimCommand, SimPort, SimReply, Topic};
use tally_network::wire::{self, Message, TxBatch};
use tally_network::{
    ConsensusEvent, ConsensusMsg, GossipValidation, MessageId, NetworkConfig, NetworkError,
    NetworkEvents, NetworkHandle, PeerId, PeerInfo, RequestError, SyncRequest, SyncResponse,
    Verdict,
};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinHandle;

fn config() -> NetworkConfig {
    NetworkConfig::new(
        common::chain_id(),
        "/ip4/127.0.0.1/tcp/0".parse().expect("valid address"),
        [1; 32],
    )
}

fn peer(n: u8) -> PeerId {
    let mut seed = [n; 32];
    libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
        .expect("32 bytes")
        .public()
        .to_peer_id()
}

fn node(config: &NetworkConfig, n: u8) -> (NetworkHandle, NetworkEvents, SimPort) {
    endpoint(config, peer(n))
}

/// Runs a node-side call as a task, so that the test can play the network meanwhile.
fn call<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> JoinHandle<T> {
    tokio::spawn(f)
}

/// Lets spawned node-side calls run, then takes the port's next command.
async fn next_command(port: &mut SimPort) -> SimCommand {
    for _ in 0..100 {
        if let Some(command) = port.try_next() {
            return command;
        }
        tokio::task::yield_now().await;
    }
    panic!("the node asked for nothing");
}

fn blocks(heights: std::ops::Range<u64>, txs: u64) -> Vec<(Block, CommitCertificate)> {
    heights
        .map(|h| {
            let block = common::block(h, txs);
            let certificate = common::certificate(&block);
            (block, certificate)
        })
        .collect()
}

/// Plays one sync request from `a` to `b`; `serve` is `b`'s node answering.
async fn relay_request(
    a: &mut SimPort,
    b: &SimPort,
    b_events: &mut NetworkEvents,
    serve: impl FnOnce(SyncRequest) -> SyncResponse,
) {
    let SimCommand::Request { peer, request, reply } = next_command(a).await else {
        panic!("expected a sync request");
    };
    assert_eq!(peer, b.peer_id());
    let answer = b.deliver_sync_request(a.peer_id(), request).expect("room at b");
    let inbound = b_events.sync_requests.try_recv().expect("b's node got the request");
    assert_eq!(inbound.peer, a.peer_id());
    assert!(inbound.responder.respond(serve(inbound.request)));
    assert!(reply.answer(answer.await.ok()));
}

#[tokio::test]
async fn consensus_broadcast_is_published_and_delivered_to_the_peer() {
    let config = config();
    let (a, _a_events, mut a_port) = node(&config, 1);
    let (b, mut b_events, mut b_port) = node(&config, 2);
    b_port.peer_connected(a.local_peer_id()).expect("room");
    assert!(matches!(
        b_events.consensus.try_recv(),
        Ok(ConsensusEvent::PeerConnected(p)) if p == a.local_peer_id()
    ));

    let block = common::block(5, 3);
    let msg = ConsensusMsg::Proposal { proposal: common::proposal(&block), block };
    a.broadcast_consensus(msg.clone()).await.expect("queued");
    let Some(SimCommand::Publish { topic, message, bytes }) = a_port.try_next() else {
        panic!("expected a publish");
    };
    assert_eq!(topic, Topic::Consensus);
    let encoded =
        wire::encode(&Message::Consensus(msg.clone()), config.gossip_bytes_max).expect("encodes");
    assert_eq!(bytes, encoded.len());
    let Message::Consensus(published) = message else { panic!("a consensus message") };
    assert_eq!(published, msg);
    assert!(a_port.try_next().is_none(), "one broadcast, one publish");

    b_port.deliver_consensus(published, a.local_peer_id()).expect("room");
    let Ok(ConsensusEvent::Message { msg: got, from }) = b_events.consensus.try_recv() else {
        panic!("expected the message at b");
    };
    assert_eq!(got, msg);
    assert_eq!(from.propagation_source, a.local_peer_id());
    assert_eq!(from.message_id, MessageId::new(Hash::digest(&encoded).as_bytes()));
    assert!(!from.awaiting_report, "accepted on decode by default");
    assert_eq!(a.stats().consensus_out, 1);
    assert_eq!(b.stats().consensus_in, 1);
    assert_eq!(b.stats().validations_reported, 1);
    // Reporting on an accepted message is a no-op: nothing reaches the network.
    b.report_validation(&from, Verdict::Accept).await.expect("no-op");
    assert!(b_port.try_next().is_none());
}

#[tokio::test]
async fn message_ids_are_content_hashes() {
    let config = config();
    let (_b, mut b_events, b_port) = node(&config, 2);
    let vote = |h| ConsensusMsg::Vote(common::vote(h));
    let mut ids = Vec::new();
    for msg in [vote(1), vote(1), vote(2)] {
        b_port.deliver_consensus(msg, peer(1)).expect("room");
        let Ok(ConsensusEvent::Message { from, .. }) = b_events.consensus.try_recv() else {
            panic!("delivered");
        };
        ids.push(from.message_id);
    }
    assert_eq!(ids[0], ids[1], "same bytes, same id");
    assert_ne!(ids[0], ids[2]);
}

#[tokio::test]
async fn node_validation_is_awaited_and_reported() {
    let mut config = config();
    config.consensus_validation = GossipValidation::ByNode;
    config.tx_validation = GossipValidation::ByNode;
    let (b, mut b_events, mut b_port) = node(&config, 2);
    b_port.deliver_consensus(ConsensusMsg::Vote(common::vote(1)), peer(1)).expect("room");
    let Ok(ConsensusEvent::Message { from, .. }) = b_events.consensus.try_recv() else {
        panic!("delivered");
    };
    assert!(from.awaiting_report);
    assert_eq!(b.stats().validations_reported, 0, "the node's verdict is awaited");
    b.report_validation(&from, Verdict::Reject).await.expect("queued");
    let Some(SimCommand::ReportValidation { message_id, propagation_source, verdict }) =
        b_port.try_next()
    else {
        panic!("expected a report");
    };
    assert_eq!(
        (message_id, propagation_source, verdict),
        (from.message_id, peer(1), Verdict::Reject)
    );
    assert_eq!(b.stats().validations_reported, 1);

    assert!(b_port.deliver_txs(common::txs(2), peer(1)));
    let event = b_events.txs.try_recv().expect("delivered");
    assert!(event.from.awaiting_report);
    assert_eq!(b.stats().validations_reported, 1);
}

#[tokio::test]
async fn sync_request_round_trip_through_two_ports() {
    let config = config();
    let (a, _a_events, mut a_port) = node(&config, 1);
    let (b, mut b_events, b_port) = node(&config, 2);
    let store: BTreeMap<u64, _> =
        blocks(1..10, 2).into_iter().map(|b| (b.0.height().0, b)).collect();

    let b_id = b.local_peer_id();
    let a2 = a.clone();
    let request = call(async move { a2.request_blocks(b_id, Height(3), 4).await });
    relay_request(&mut a_port, &b_port, &mut b_events, |request| {
        let SyncRequest::Blocks { from, count } = request else { panic!("a blocks request") };
        assert_eq!((from, count), (Height(3), 4));
        SyncResponse::Blocks(store.range(3..3 + u64::from(count)).map(|(_, b)| b.clone()).collect())
    })
    .await;
    let got = request.await.expect("task").expect("blocks");
    let heights: Vec<u64> = got.iter().map(|(block, _)| block.height().0).collect();
    assert_eq!(heights, vec![3, 4, 5, 6]);
    assert_eq!(got, store.range(3..7).map(|(_, b)| b.clone()).collect::<Vec<_>>());
    assert_eq!(a.stats().sync_requests_out, 1);
    assert_eq!(a.stats().sync_requests_failed, 0);
    assert_eq!(b.stats().sync_requests_in, 1);

    // A dropped responder is answered "not served", refused by the handle.
    let request = call(async move { a.request_snapshots(b_id).await });
    let SimCommand::Request { request: asked, reply, .. } = next_command(&mut a_port).await else {
        panic!("a request");
    };
    let answer = b_port.deliver_sync_request(peer(1), asked).expect("room");
    drop(b_events.sync_requests.try_recv().expect("delivered"));
    assert!(reply.answer(answer.await.ok()));
    assert_eq!(
        request.await.expect("task"),
        Err(RequestError::Refused { reason: "not served".to_string() })
    );
}

#[tokio::test]
async fn sync_response_is_trimmed_to_the_limit() {
    let mut config = config();
    config.gossip_bytes_max = 4096;
    config.sync_response_bytes_max = 4096 + wire::SYNC_RESPONSE_OVERHEAD_BYTES;
    let one = borsh::object_length(&blocks(1..2, 8)[0]).expect("length");
    assert!(2 * one < config.sync_response_bytes_max && 3 * one > config.sync_response_bytes_max);
    let (a, _a_events, mut a_port) = node(&config, 1);
    let (b, mut b_events, b_port) = node(&config, 2);
    let b_id = b.local_peer_id();
    let request = call(async move { a.request_blocks(b_id, Height(1), 5).await });
    relay_request(&mut a_port, &b_port, &mut b_events, |_| SyncResponse::Blocks(blocks(1..6, 8)))
        .await;
    let got = request.await.expect("task").expect("blocks");
    assert_eq!(got, blocks(1..3, 8), "the prefix that fits");
}

#[tokio::test]
async fn sync_requests_beyond_the_caps_fail_or_are_busy() {
    let mut config = config();
    config.sync_requests_in_flight_max = 1;
    config.sync_requests_capacity = 1;
    config.sync_inbound_pending_max = 2;
    let (a, _a_events, mut a_port) = node(&config, 1);
    let (b, mut b_events, b_port) = node(&config, 2);
    let b_id = b.local_peer_id();

    // One in flight: the second fails at once, without reaching the simulator.
    let a2 = a.clone();
    let first = call(async move { a2.request_snapshots(b_id).await });
    let SimCommand::Request { reply, .. } = next_command(&mut a_port).await else {
        panic!("a request");
    };
    let a2 = a.clone();
    let second = call(async move { a2.request_snapshots(b_id).await });
    tokio::task::yield_now().await;
    assert!(a_port.try_next().is_none());
    assert_eq!(second.await.expect("task"), Err(RequestError::TooManyInFlight { max: 1 }));
    // A reply dropped unanswered fails like a closed connection, and frees the slot.
    drop(reply);
    assert!(matches!(first.await.expect("task"), Err(RequestError::Failed { .. })));
    let a2 = a.clone();
    let third = call(async move { a2.request_snapshots(b_id).await });
    let SimCommand::Request { reply, .. } = next_command(&mut a_port).await else {
        panic!("a request");
    };
    assert!(reply.timeout());
    assert!(matches!(third.await.expect("task"), Err(RequestError::Timeout { .. })));
    assert_eq!(a.stats().sync_requests_out, 2);
    assert_eq!(a.stats().sync_requests_failed, 2);

    // A request over the size limit fails at the requester.
    let a2 = a.clone();
    let indices = (0..=tally_ledger::BLOCK_TXS_MAX).collect();
    let hash = common::block(1, 0).hash();
    let big = call(async move { a2.request_block_txs(b_id, Height(1), hash, indices).await });
    tokio::task::yield_now().await;
    assert!(a_port.try_next().is_none());
    assert!(matches!(big.await.expect("task"), Err(RequestError::Failed { .. })));

    // b: a full queue answers busy; so do requests past the pending cap.
    let asked = || SyncRequest::Snapshots;
    let pending = b_port.deliver_sync_request(peer(1), asked()).expect("room");
    assert!(b_port.deliver_sync_request(peer(1), asked()).is_none(), "queue full");
    let held = b_events.sync_requests.try_recv().expect("delivered");
    let _also_pending = b_port.deliver_sync_request(peer(1), asked()).expect("room again");
    let _unread = b_events.sync_requests.try_recv().expect("delivered");
    assert!(b_port.deliver_sync_request(peer(1), asked()).is_none(), "two pending");
    assert!(held.responder.respond(SyncResponse::Snapshots(vec![])));
    assert_eq!(pending.await, Ok(SyncResponse::Snapshots(vec![])));
    assert!(b_port.deliver_sync_request(peer(1), asked()).is_some(), "one answered");
    assert_eq!(b.stats().sync_requests_in, 5);
    assert_eq!(b.stats().sync_requests_busy, 2);

    // Answering busy for a refused request.
    let a2 = a.clone();
    let busy = call(async move { a2.request_snapshots(b_id).await });
    let SimCommand::Request { reply, .. } = next_command(&mut a_port).await else {
        panic!("a request");
    };
    assert!(SimReply::busy(reply));
    assert_eq!(busy.await.expect("task"), Err(RequestError::Refused { reason: "busy".into() }));
}

#[tokio::test]
async fn txs_dropped_when_the_tx_queues_are_full_are_counted() {
    let mut config = config();
    config.tx_events_capacity = 1;
    config.tx_commands_capacity = 1;
    let (a, _a_events, mut a_port) = node(&config, 1);
    let (b, mut b_events, b_port) = node(&config, 2);

    // The handle's queue: the second batch is dropped.
    a.broadcast_txs(common::txs(3)).expect("queued");
    assert!(matches!(a.broadcast_txs(common::txs(1)), Err(NetworkError::TxQueueFull)));
    assert_eq!(a.stats().tx_broadcasts_dropped, 1);
    let Some(SimCommand::Publish { topic: Topic::Txs, message, .. }) = a_port.try_next() else {
        panic!("a tx publish");
    };
    let Message::TxBatch(TxBatch(txs)) = message else { panic!("a tx batch") };
    assert_eq!(txs, common::txs(3));
    assert_eq!(a.stats().tx_batches_out, 1);

    // The node's queue: the second delivery is dropped.
    assert!(b_port.deliver_txs(txs.clone(), peer(1)));
    assert!(!b_port.deliver_txs(txs.clone(), peer(1)));
    let stats = b.stats();
    assert_eq!((stats.tx_batches_in, stats.tx_batches_dropped), (2, 1));
    assert_eq!(b_events.txs.try_recv().expect("the first").txs, txs);
    assert!(matches!(b_events.txs.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test]
async fn consensus_broadcasts_come_before_tx_broadcasts() {
    let config = config();
    let (a, _a_events, mut a_port) = node(&config, 1);
    a.broadcast_txs(common::txs(1)).expect("queued");
    a.broadcast_consensus(ConsensusMsg::Vote(common::vote(1))).await.expect("queued");
    let topics: Vec<Topic> = std::iter::from_fn(|| a_port.try_next())
        .map(|c| match c {
            SimCommand::Publish { topic, .. } => topic,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(topics, vec![Topic::Consensus, Topic::Txs]);
}

#[tokio::test]
async fn a_full_consensus_channel_hands_the_event_back() {
    let mut config = config();
    config.events_capacity = 1;
    let (b, mut b_events, b_port) = node(&config, 2);
    b_port.deliver_consensus(ConsensusMsg::Vote(common::vote(1)), peer(1)).expect("room");
    let full = b_port
        .deliver_consensus(ConsensusMsg::Vote(common::vote(2)), peer(1))
        .expect_err("channel full");
    assert_eq!(b.stats().consensus_backpressure, 1);
    let full = b_port.redeliver(full).expect_err("still full");
    assert!(matches!(b_events.consensus.try_recv(), Ok(ConsensusEvent::Message { .. })));
    b_port.redeliver(full).expect("room now");
    let Ok(ConsensusEvent::Message { msg, .. }) = b_events.consensus.try_recv() else {
        panic!("the refused message");
    };
    assert_eq!(msg, ConsensusMsg::Vote(common::vote(2)));
    assert_eq!(b.stats().consensus_backpressure, 1, "a retry is not counted again");
    assert_eq!(b.stats().consensus_in, 2);
}

#[tokio::test]
async fn peers_are_announced_once_and_answered() {
    let config = config();
    let (a, mut a_events, mut a_port) = node(&config, 1);
    for p in [peer(3), peer(2), peer(3), peer(1)] {
        a_port.peer_connected(p).expect("room");
    }
    let mut announced = Vec::new();
    while let Ok(event) = a_events.consensus.try_recv() {
        announced.push(event);
    }
    assert!(
        matches!(announced[..], [ConsensusEvent::PeerConnected(x), ConsensusEvent::PeerConnected(y)] if x == peer(3) && y == peer(2)),
        "once each, never itself: {announced:?}"
    );
    assert_eq!(a.stats().peers_connected, 2);

    let a2 = a.clone();
    let peers = call(async move { a2.peers().await });
    let SimCommand::Peers { reply } = next_command(&mut a_port).await else {
        panic!("a peers call");
    };
    reply.send(a_port.peer_infos()).expect("waiting");
    let mut want: Vec<PeerInfo> = [peer(2), peer(3)]
        .into_iter()
        .map(|peer_id| PeerInfo {
            peer_id,
            consensus_subscribed: true,
            txs_subscribed: true,
            received_bytes: 0,
        })
        .collect();
    want.sort_by_key(|p| p.peer_id);
    assert_eq!(peers.await.expect("task").expect("answered"), want);

    a_port.peer_disconnected(peer(2)).expect("room");
    a_port.peer_disconnected(peer(2)).expect("room");
    a_port.peer_disconnected(peer(4)).expect("room");
    assert!(
        matches!(a_events.consensus.try_recv(), Ok(ConsensusEvent::PeerDisconnected(p)) if p == peer(2))
    );
    assert!(a_events.consensus.try_recv().is_err(), "only announced peers, once");
    assert_eq!(a.stats().peers_connected, 1);

    let a2 = a.clone();
    let addrs = call(async move { a2.listen_addrs().await });
    let SimCommand::ListenAddrs { reply } = next_command(&mut a_port).await else {
        panic!("a listen addrs call");
    };
    reply.send(vec![config.listen_addr.clone()]).expect("waiting");
    assert_eq!(addrs.await.expect("task").expect("answered"), vec![config.listen_addr.clone()]);

    let addr: libp2p::Multiaddr = "/ip4/10.0.0.2/tcp/26656".parse().expect("valid");
    a.add_peer(addr.clone()).await.expect("queued");
    a.add_peer(addr.clone()).await.expect("queued");
    assert!(matches!(a_port.try_next(), Some(SimCommand::AddPeer { addr: x }) if x == addr));
    assert!(a_port.try_next().is_none(), "an address already kept");
}

#[tokio::test]
async fn messages_over_the_limits_are_refused_at_the_handle_and_rejected_on_delivery() {
    let mut small = config();
    small.gossip_bytes_max = 4096;
    small.sync_response_bytes_max = 4096 + wire::SYNC_RESPONSE_OVERHEAD_BYTES;
    let (a, _a_events, mut a_port) = node(&small, 1);
    let block = common::block(1, 40);
    let big = ConsensusMsg::Certificate { certificate: common::certificate(&block), block };
    assert!(matches!(
        a.broadcast_consensus(big.clone()).await,
        Err(NetworkError::Wire(wire::WireError::TooLarge { .. }))
    ));
    assert!(a_port.try_next().is_none());

    // Sent by a node with larger limits, it is what the small node cannot decode.
    let (_b, mut b_events, b_port) = node(&small, 2);
    b_port.deliver_consensus(big, peer(1)).expect("not the caller's error");
    assert!(!b_port.deliver_txs(common::txs(40), peer(1)));
    assert!(b_events.consensus.try_recv().is_err());
    assert!(b_events.txs.try_recv().is_err());
    let stats = b_port.stats();
    assert_eq!((stats.decode_failures, stats.consensus_in, stats.tx_batches_in), (2, 0, 0));
}

#[tokio::test]
async fn an_undecodable_publish_is_dropped_and_counted() {
    let config = config();
    let (a, _a_events, mut a_port) = node(&config, 1);
    a.publish_raw_consensus(vec![0xff, 1, 2, 3]).await.expect("queued");
    a.publish_raw_consensus(vec![]).await.expect("queued");
    a.broadcast_consensus(ConsensusMsg::Vote(common::vote(1))).await.expect("queued");
    assert!(matches!(a_port.try_next(), Some(SimCommand::Publish { topic: Topic::Consensus, .. })));
    assert!(a_port.try_next().is_none());
    assert_eq!(a.stats().decode_failures, 2);
    assert_eq!(a.stats().consensus_out, 1);
}

#[tokio::test]
async fn penalties_ban_a_peer_at_the_limit() {
    let mut config = config();
    config.peer_penalties_max = 2;
    let (a, _a_events, mut a_port) = node(&config, 1);
    let mut bans = Vec::new();
    for _ in 0..4 {
        a.penalize(peer(2)).await.expect("queued");
        let Some(SimCommand::Penalize { peer: p, ban }) = a_port.try_next() else {
            panic!("a penalty");
        };
        assert_eq!(p, peer(2));
        bans.push(ban);
    }
    assert_eq!(bans, vec![false, true, false, true], "the count restarts after a ban");
    assert_eq!((a.stats().penalties, a.stats().bans), (4, 2));
}

#[tokio::test]
async fn shutdown_stops_the_port_and_ends_the_events() {
    let config = config();
    let (a, mut a_events, mut a_port) = node(&config, 1);
    a_port.deliver_consensus(ConsensusMsg::Vote(common::vote(1)), peer(2)).expect("room");
    let a2 = a.clone();
    let stopped = call(async move { a2.shutdown().await });
    let SimCommand::Shutdown { done } = next_command(&mut a_port).await else {
        panic!("a shutdown");
    };
    assert!(a_port.is_stopped());
    done.send(()).expect("waiting");
    stopped.await.expect("task").expect("stopped");

    assert!(matches!(a_events.consensus.recv().await, Some(ConsensusEvent::Message { .. })));
    assert!(a_events.consensus.recv().await.is_none(), "ends after the buffered event");
    assert!(a_events.txs.recv().await.is_none());
    assert!(a_events.sync_requests.recv().await.is_none());
    assert!(matches!(a.penalize(peer(2)).await, Err(NetworkError::Stopped)));
    assert!(matches!(a.broadcast_txs(common::txs(1)), Err(NetworkError::Stopped)));
    assert!(a_port.try_next().is_none());
    a_port.deliver_consensus(ConsensusMsg::Vote(common::vote(2)), peer(2)).expect("ignored");
    assert!(!a_port.deliver_txs(common::txs(1), peer(2)));
    assert!(a_port.deliver_sync_request(peer(2), SyncRequest::Snapshots).is_none());
}

#[tokio::test]
async fn dropping_every_handle_stops_the_port() {
    let config = config();
    let (a, mut a_events, mut a_port) = node(&config, 1);
    a.broadcast_consensus(ConsensusMsg::Vote(common::vote(1))).await.expect("queued");
    let a2 = a.clone();
    drop(a);
    assert!(a_port.try_next().is_some(), "queued commands are still served");
    assert!(a_port.try_next().is_none());
    assert!(!a_port.is_stopped(), "a handle is left");
    drop(a2);
    assert!(a_port.try_next().is_none());
    assert!(a_port.is_stopped());
    assert!(a_events.consensus.recv().await.is_none());
}

#[test]
#[should_panic(expected = "invalid network config")]
fn an_invalid_config_is_refused() {
    let mut config = config();
    config.events_capacity = 0;
    let _ = endpoint(&config, peer(1));
}

/// One scripted exchange between two nodes: what b's node saw and both nodes' counters.
async fn script() -> String {
    let config = config();
    let (a, _a_events, mut a_port) = node(&config, 1);
    let (b, mut b_events, mut b_port) = node(&config, 2);
    b_port.peer_connected(a.local_peer_id()).expect("room");
    a.broadcast_txs(common::txs(2)).expect("queued");
    for h in 1..4 {
        a.broadcast_consensus(ConsensusMsg::Vote(common::vote(h))).await.expect("queued");
    }
    while let Some(command) = a_port.try_next() {
        let SimCommand::Publish { message, .. } = command else { panic!("a publish") };
        match message {
            Message::Consensus(msg) => b_port.deliver_consensus(msg, peer(1)).expect("room"),
            Message::TxBatch(TxBatch(txs)) => assert!(b_port.deliver_txs(txs, peer(1))),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut trace = Vec::new();
    while let Ok(event) = b_events.consensus.try_recv() {
        trace.push(format!("{event:?}"));
    }
    while let Ok(event) = b_events.txs.try_recv() {
        trace.push(format!("{event:?}"));
    }
    trace.push(format!("{:?} {:?}", a.stats(), b.stats()));
    trace.join("\n")
}

#[tokio::test]
async fn the_same_calls_give_the_same_events() {
    assert_eq!(script().await, script().await);
}
