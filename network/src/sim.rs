//! A simulated swarm: the node's [`NetworkHandle`] and [`NetworkEvents`], unchanged, with a
//! [`SimPort`] in the swarm task's place, so that real nodes can run under a deterministic
//! simulator.
//!
//! The port holds the channel ends the swarm task would hold. It has no thread, no task and
//! no clock: the simulator takes what the node asked for ([`SimPort::try_next`]), decides
//! whether, when and to whom it arrives (latency, loss, duplication, partitions are the
//! simulator's), and delivers it into the other nodes' ports. What a port does follows only
//! from the calls made on it, so the same calls in the same order give the same events.
//!
//! Kept from the real swarm:
//! - the channels and their capacities (from the [`NetworkConfig`]) and their drop rules:
//!   consensus events are never dropped (a full channel hands the event back to the
//!   simulator), tx batches are dropped and counted, sync requests are answered busy;
//! - the wire limits: what the node publishes is decoded under the limits a receiver
//!   applies, what is delivered to it must encode under its own limits (else it is rejected
//!   and counted, as undecodable gossip is), sync requests and responses are held to the
//!   sync limits and responses are trimmed to fit ([`crate::fit_response`]);
//! - the caps on sync requests in flight and inbound requests pending, the announcement rule
//!   for peers, penalty counting, and the counters behind [`NetworkHandle::stats`].
//!
//! Left to the simulator, which owns time and the links: publish retries while no peer is
//! subscribed, request timeouts, the end of a ban, gossipsub's mesh, forwarding and
//! duplicate suppression, dialling and redialling.

use crate::codec::fit_response;
use crate::config::{GossipValidation, NetworkConfig};
use crate::error::RequestError;
use crate::events::{
    ConsensusEvent, GossipRef, InboundSyncRequest, NetworkEvents, SyncResponder, TxEvent, Verdict,
};
use crate::handle::{Command, NetworkHandle, PeerInfo};
use crate::publish::TopicKind;
use crate::stats::{NetworkStats, StatsSnapshot};
use crate::wire::{self, ConsensusMsg, Message, SyncRequest, SyncResponse, TxBatch, WireError};
use libp2p::gossipsub::MessageId;
use libp2p::{Multiaddr, PeerId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tally_crypto::Hash;
use tally_ledger::Tx;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot};

/// The reason a refused [`SimReply`] gives, as a closed libp2p connection would.
const CONNECTION_CLOSED: &str = "connection closed";

/// Creates a simulated node's network: the [`NetworkHandle`] and [`NetworkEvents`] the node
/// uses, with the capacities and limits of `config`, and the [`SimPort`] the simulator
/// plays the swarm with. `peer_id` is the node's identity on the simulated network (the
/// config's `identity_seed`, `listen_addr` and libp2p tuning are not used).
///
/// # Panics
/// If `config` is invalid ([`NetworkConfig::validate`]): [`crate::spawn`] refuses it too.
pub fn endpoint(
    config: &NetworkConfig,
    peer_id: PeerId,
) -> (NetworkHandle, NetworkEvents, SimPort) {
    if let Err(e) = config.validate() {
        panic!("simulated endpoint with an invalid network config: {e}");
    }
    let stats = Arc::new(NetworkStats::default());
    let (commands_tx, commands_rx) = mpsc::channel(config.commands_capacity);
    let (tx_commands_tx, tx_commands_rx) = mpsc::channel(config.tx_commands_capacity);
    let (consensus_tx, consensus_rx) = mpsc::channel(config.events_capacity);
    let (txs_tx, txs_rx) = mpsc::channel(config.tx_events_capacity);
    let (sync_tx, sync_rx) = mpsc::channel(config.sync_requests_capacity);
    let handle =
        NetworkHandle::new(config, peer_id, Arc::clone(&stats), commands_tx, tx_commands_tx);
    let events = NetworkEvents { consensus: consensus_rx, txs: txs_rx, sync_requests: sync_rx };
    let port = SimPort {
        peer_id,
        config: config.clone(),
        stats,
        commands: commands_rx,
        tx_commands: tx_commands_rx,
        senders: Some(Senders { consensus: consensus_tx, txs: txs_tx, sync_requests: sync_tx }),
        peer_addrs: config.peers.clone(),
        announced: BTreeSet::new(),
        penalties: BTreeMap::new(),
        outbound: Arc::new(()),
        inbound: Arc::new(()),
    };
    (handle, events, port)
}

/// The gossip topic a message was published on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Consensus messages; deliver them with [`SimPort::deliver_consensus`].
    Consensus,
    /// Tx batches; deliver them with [`SimPort::deliver_txs`].
    Txs,
}

/// What a node asked its network for, as [`SimPort::try_next`] hands it to the simulator.
/// Each variant is a `NetworkHandle` call; its doc says what the real swarm does with it.
#[derive(Debug)]
pub enum SimCommand {
    /// Gossip `message` to every peer subscribed to `topic`: a
    /// [`ConsensusMsg`](Message::Consensus) on [`Topic::Consensus`], a
    /// [`TxBatch`](Message::TxBatch) on [`Topic::Txs`], decoded under the receivers' limits.
    /// `bytes` is its encoded size (for a bandwidth model). Counted in `consensus_out` or
    /// `tx_batches_out`. The real swarm holds a publish that finds no subscribed peer for
    /// `publish_retry_window`, then drops it.
    Publish { topic: Topic, message: Message, bytes: usize },
    /// A sync request to `peer`. Answer through `reply`, within `sync_request_timeout` (the
    /// real swarm times the request out; the handle's own timer fires a second later).
    /// Usually: [`SimPort::deliver_sync_request`] at `peer`, then [`SimReply::answer`] with
    /// what comes back, or [`SimReply::busy`] if it was refused.
    Request { peer: PeerId, request: SyncRequest, reply: SimReply },
    /// The node's verdict on a message delivered under [`GossipValidation::ByNode`]: on
    /// `Accept` the real swarm forwards it to its other peers, on `Reject` gossipsub
    /// penalises `propagation_source`, on `Ignore` it is dropped. Counted in
    /// `validations_reported`.
    ReportValidation { message_id: MessageId, propagation_source: PeerId, verdict: Verdict },
    /// The connected peers and their subscriptions; [`SimPort::peer_infos`] is the port's
    /// own view (the announced peers, subscribed to both topics).
    Peers { reply: oneshot::Sender<Vec<PeerInfo>> },
    /// The addresses the node listens on.
    ListenAddrs { reply: oneshot::Sender<Vec<Multiaddr>> },
    /// A new address to keep connected: dial it now and redial it whenever it drops. Only
    /// new addresses come through, and none past `peers_max` (the real swarm ignores those).
    AddPeer { addr: Multiaddr },
    /// The node reported misbehaviour by `peer` (counted in `penalties`). `ban` is true when
    /// this penalty reached `peer_penalties_max` (counted in `bans`, the count restarts):
    /// the real swarm then disconnects the peer and refuses it for `peer_ban_duration`, so
    /// the simulator should cut the link (with [`SimPort::peer_disconnected`] on both
    /// sides) for that long.
    Penalize { peer: PeerId, ban: bool },
    /// The node stops its network. The port has already stopped (see [`SimPort::stop`]);
    /// send on `done` to let [`NetworkHandle::shutdown`] return.
    Shutdown { done: oneshot::Sender<()> },
}

/// The way back to a node waiting on a sync request ([`SimCommand::Request`]). Each method
/// answers once and says whether the node was still waiting. Dropping it unanswered fails
/// the request as a closed connection would (`RequestError::Failed`). Requests whose reply
/// is unanswered count towards `sync_requests_in_flight_max`.
#[derive(Debug)]
pub struct SimReply {
    reply: Option<oneshot::Sender<Result<SyncResponse, RequestError>>>,
    stats: Arc<NetworkStats>,
    response_bytes_max: usize,
    timeout_ms: u64,
    /// Held while unanswered: the port counts requests in flight by its clones.
    _in_flight: Arc<()>,
}

impl SimReply {
    /// Sends `result` to the node as the real requester's swarm would: a response is first
    /// trimmed to `sync_response_bytes_max` ([`crate::fit_response`]); one that still does not
    /// encode within the limits becomes `RequestError::Failed`. Errors and
    /// `SyncResponse::Error` answers are counted in `sync_requests_failed`.
    pub fn send(mut self, result: Result<SyncResponse, RequestError>) -> bool {
        self.finish(result)
    }

    /// Relays the responder's answer: `Some` as [`SimReply::send`] does, `None` (the node
    /// dropped the responder, or did not answer in time) as `SyncResponse::Error("not
    /// served")`, the answer the real swarm gives then.
    pub fn answer(self, answer: Option<SyncResponse>) -> bool {
        let response = answer.unwrap_or_else(|| SyncResponse::Error("not served".to_string()));
        self.send(Ok(response))
    }

    /// Answers `SyncResponse::Error("busy")`, as a peer whose sync queue is full does
    /// ([`SimPort::deliver_sync_request`] returned `None`).
    pub fn busy(self) -> bool {
        self.send(Ok(SyncResponse::Error("busy".to_string())))
    }

    /// Fails the request with `RequestError::Timeout`, as the real swarm does when no
    /// answer came within `sync_request_timeout`.
    pub fn timeout(self) -> bool {
        let timeout_ms = self.timeout_ms;
        self.send(Err(RequestError::Timeout { timeout_ms }))
    }

    fn finish(&mut self, result: Result<SyncResponse, RequestError>) -> bool {
        let Some(reply) = self.reply.take() else { return false };
        let max = self.response_bytes_max;
        let result = result.and_then(|response| {
            let message = Message::SyncResponse(fit_response(response, max));
            if let Err(e) = wire::encode(&message, max) {
                return Err(RequestError::Failed { reason: e.to_string() });
            }
            let Message::SyncResponse(response) = message else { unreachable!("built above") };
            Ok(response)
        });
        if matches!(result, Err(_) | Ok(SyncResponse::Error(_))) {
            NetworkStats::inc(&self.stats.sync_requests_failed);
        }
        reply.send(result).is_ok()
    }
}

impl Drop for SimReply {
    fn drop(&mut self) {
        if self.reply.is_some() {
            self.finish(Err(RequestError::Failed { reason: CONNECTION_CLOSED.to_string() }));
        }
    }
}

/// A consensus event the node's full channel could not take. The real swarm stops reading
/// from its peers until the node makes room (backpressure, never a drop); the simulator
/// holds it instead and retries with [`SimPort::redeliver`], delivering nothing else to
/// this node's consensus channel before it, so that the order is kept.
#[derive(Debug, thiserror::Error)]
#[error("the consensus events channel is full")]
pub struct Full {
    pub event: ConsensusEvent,
}

/// The ends of the node's event channels; gone once the port has stopped.
#[derive(Debug)]
struct Senders {
    consensus: mpsc::Sender<ConsensusEvent>,
    txs: mpsc::Sender<TxEvent>,
    sync_requests: mpsc::Sender<InboundSyncRequest>,
}

/// The swarm's side of a simulated node's network (see the module doc): takes the node's
/// commands ([`SimPort::try_next`]) and delivers peers' messages and connections into its
/// event channels. No thread, task or clock.
#[derive(Debug)]
pub struct SimPort {
    peer_id: PeerId,
    config: NetworkConfig,
    stats: Arc<NetworkStats>,
    commands: mpsc::Receiver<Command>,
    tx_commands: mpsc::Receiver<Vec<u8>>,
    senders: Option<Senders>,
    /// The addresses to keep connected: the config's peers, then [`SimCommand::AddPeer`]'s;
    /// at most `peers_max`.
    peer_addrs: Vec<Multiaddr>,
    /// Peers announced to the node by `PeerConnected` and not yet disconnected.
    announced: BTreeSet<PeerId>,
    /// Penalties per peer; at most `4 * peers_max` peers tracked, as in the real swarm.
    penalties: BTreeMap<PeerId, u32>,
    /// Cloned into each unanswered [`SimReply`]: requests in flight are its clones.
    outbound: Arc<()>,
    /// Cloned into each unanswered [`SyncResponder`]: inbound requests pending likewise.
    inbound: Arc<()>,
}

impl SimPort {
    /// The node's identity on the simulated network.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// A copy of the node's network counters (the same as its handle's).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Whether the network has stopped: the node called [`NetworkHandle::shutdown`] or
    /// dropped every handle, or [`SimPort::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.senders.is_none()
    }

    /// Stops the network as the swarm task does when it ends: commands still queued are
    /// dropped (their callers get `Stopped`), later calls on the handle fail with `Stopped`,
    /// and each event channel ends after the events already in it. Deliveries are ignored
    /// from then on. A crashed node's port is stopped this way; the simulator should then
    /// drop the [`SimReply`]s it still holds for this node, as the swarm task's end drops
    /// its pending requests.
    pub fn stop(&mut self) {
        self.senders = None;
        self.commands.close();
        self.tx_commands.close();
        while self.commands.try_recv().is_ok() {}
        while self.tx_commands.try_recv().is_ok() {}
    }

    /// The next thing the node asked for, without waiting: consensus broadcasts and control
    /// calls first (in the order made), then tx broadcasts. `None` when nothing is queued,
    /// or once the network has stopped. Commands the real swarm answers by itself are
    /// answered here and never come out: a sync request over `sync_requests_in_flight_max`
    /// (`RequestError::TooManyInFlight`) or over the request size limit
    /// (`RequestError::Failed`), a publish that does not decode (only the `testing`
    /// garbage sender makes one; counted in `decode_failures`, as every receiver would),
    /// an address already kept or past `peers_max`.
    pub fn try_next(&mut self) -> Option<SimCommand> {
        loop {
            if self.is_stopped() {
                return None;
            }
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                // Every handle is gone: the swarm task ends.
                Err(TryRecvError::Disconnected) => {
                    self.stop();
                    return None;
                }
                Err(TryRecvError::Empty) => match self.tx_commands.try_recv() {
                    Ok(data) => Command::Publish { kind: TopicKind::Txs, data },
                    Err(_) => return None,
                },
            };
            if let Some(command) = self.on_command(command) {
                return Some(command);
            }
        }
    }

    fn on_command(&mut self, command: Command) -> Option<SimCommand> {
        match command {
            Command::Publish { kind, data } => self.publish(kind, &data),
            Command::Request { peer, request, reply } => self.request(peer, request, reply),
            Command::ReportValidation { gossip, verdict } => {
                NetworkStats::inc(&self.stats.validations_reported);
                Some(SimCommand::ReportValidation {
                    message_id: gossip.message_id,
                    propagation_source: gossip.propagation_source,
                    verdict,
                })
            }
            Command::Peers { reply } => Some(SimCommand::Peers { reply }),
            Command::ListenAddrs { reply } => Some(SimCommand::ListenAddrs { reply }),
            Command::AddPeer { addr } => self.add_peer(addr),
            Command::Penalize { peer } => {
                let ban = self.penalize(peer);
                Some(SimCommand::Penalize { peer, ban })
            }
            Command::Shutdown { done } => {
                self.stop();
                Some(SimCommand::Shutdown { done })
            }
        }
    }

    fn publish(&mut self, kind: TopicKind, data: &[u8]) -> Option<SimCommand> {
        let decoded =
            match kind {
                TopicKind::Consensus => wire::decode_consensus(data, self.config.gossip_bytes_max)
                    .map(Message::Consensus),
                TopicKind::Txs => wire::decode_tx_batch(data, self.config.tx_batch_bytes_max())
                    .map(Message::TxBatch),
            };
        let message = match decoded {
            Ok(message) => message,
            Err(e) => {
                NetworkStats::inc(&self.stats.decode_failures);
                tracing::debug!(peer = %self.peer_id, ?kind, error = %e,
                    "undecodable publish dropped by the simulated network");
                return None;
            }
        };
        let topic = match kind {
            TopicKind::Consensus => {
                NetworkStats::inc(&self.stats.consensus_out);
                Topic::Consensus
            }
            TopicKind::Txs => {
                NetworkStats::inc(&self.stats.tx_batches_out);
                Topic::Txs
            }
        };
        Some(SimCommand::Publish { topic, message, bytes: data.len() })
    }

    fn request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
    ) -> Option<SimCommand> {
        let max = self.config.sync_requests_in_flight_max;
        if held(&self.outbound) >= max {
            let _ = reply.send(Err(RequestError::TooManyInFlight { max }));
            return None;
        }
        NetworkStats::inc(&self.stats.sync_requests_out);
        let message = Message::SyncRequest(request);
        if let Err(e) = wire::encode(&message, self.config.sync_request_bytes_max()) {
            // The real codec refuses to write it: the request fails on its stream.
            NetworkStats::inc(&self.stats.sync_requests_failed);
            let _ = reply.send(Err(RequestError::Failed { reason: e.to_string() }));
            return None;
        }
        let Message::SyncRequest(request) = message else { unreachable!("built above") };
        let reply = SimReply {
            reply: Some(reply),
            stats: Arc::clone(&self.stats),
            response_bytes_max: self.config.sync_response_bytes_max,
            timeout_ms: u64::try_from(self.config.sync_request_timeout.as_millis())
                .unwrap_or(u64::MAX),
            _in_flight: Arc::clone(&self.outbound),
        };
        Some(SimCommand::Request { peer, request, reply })
    }

    fn add_peer(&mut self, addr: Multiaddr) -> Option<SimCommand> {
        if self.peer_addrs.len() >= self.config.peers_max {
            tracing::warn!(%addr, max = self.config.peers_max, "peer list full, address ignored");
            return None;
        }
        if self.peer_addrs.contains(&addr) {
            return None;
        }
        self.peer_addrs.push(addr.clone());
        Some(SimCommand::AddPeer { addr })
    }

    /// Counts a penalty as the real swarm does; true when it bans the peer.
    fn penalize(&mut self, peer: PeerId) -> bool {
        NetworkStats::inc(&self.stats.penalties);
        if !self.penalties.contains_key(&peer) && self.penalties.len() >= 4 * self.config.peers_max
        {
            // Forget a disconnected peer's count to make room (connected ones matter most).
            let idle = self.penalties.keys().find(|p| !self.announced.contains(p)).copied();
            match idle {
                Some(idle) => self.penalties.remove(&idle),
                None => return false,
            };
        }
        let count = self.penalties.entry(peer).or_insert(0);
        *count += 1;
        if *count < self.config.peer_penalties_max {
            return false;
        }
        self.penalties.remove(&peer);
        tracing::warn!(%peer, "peer banned after too many penalties");
        NetworkStats::inc(&self.stats.bans);
        true
    }

    /// Delivers a gossiped consensus message that `from` sent this node (its propagation
    /// source, not necessarily its author). The message must encode within this node's
    /// `gossip_bytes_max`; one that does not is what the real swarm fails to decode: it is
    /// rejected, counted in `decode_failures` and never reaches the node (`Ok`, as bad peer
    /// input is never the caller's error). Its id is blake3 of its encoding, and under
    /// [`GossipValidation::ByNode`] it awaits the node's report. Counted in `consensus_in`.
    ///
    /// Never dropped: if the node's consensus channel is full the event comes back in
    /// [`Full`] (counted in `consensus_backpressure`). Ignored once the port has stopped.
    pub fn deliver_consensus(&self, msg: ConsensusMsg, from: PeerId) -> Result<(), Full> {
        if self.is_stopped() {
            return Ok(());
        }
        let message = Message::Consensus(msg);
        let Some(id) = self.gossip_id(&message, self.config.gossip_bytes_max, from) else {
            return Ok(());
        };
        let Message::Consensus(msg) = message else { unreachable!("built above") };
        NetworkStats::inc(&self.stats.consensus_in);
        let mode = self.config.consensus_validation;
        if mode == GossipValidation::OnDecode {
            NetworkStats::inc(&self.stats.validations_reported);
        }
        let from = GossipRef::new(id, from, mode);
        self.send_event(ConsensusEvent::Message { msg, from }, true)
    }

    /// Tries again to deliver an event a full channel refused (not counted again).
    pub fn redeliver(&self, full: Full) -> Result<(), Full> {
        self.send_event(full.event, false)
    }

    /// `peer` is connected and subscribed to the consensus topic: the node gets
    /// `PeerConnected` once, until [`SimPort::peer_disconnected`]. From then on the simulator
    /// should deliver this node's consensus broadcasts to `peer` (the real swarm announces a
    /// peer only once a broadcast would reach it). Sets `peers_connected`. A full consensus
    /// channel hands the event back as in [`SimPort::deliver_consensus`].
    pub fn peer_connected(&mut self, peer: PeerId) -> Result<(), Full> {
        if self.is_stopped() || peer == self.peer_id || !self.announced.insert(peer) {
            return Ok(());
        }
        self.update_peer_gauge();
        self.send_event(ConsensusEvent::PeerConnected(peer), true)
    }

    /// The last connection to `peer` closed: the node gets `PeerDisconnected` if it was
    /// told `PeerConnected`. Sets `peers_connected`. A full consensus channel hands the
    /// event back as in [`SimPort::deliver_consensus`].
    pub fn peer_disconnected(&mut self, peer: PeerId) -> Result<(), Full> {
        if self.is_stopped() || !self.announced.remove(&peer) {
            return Ok(());
        }
        self.update_peer_gauge();
        self.send_event(ConsensusEvent::PeerDisconnected(peer), true)
    }

    /// The connected peers as this port knows them: every peer announced by
    /// [`SimPort::peer_connected`], subscribed to both topics, in peer id order. An answer
    /// for [`SimCommand::Peers`].
    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        let info = |peer: &PeerId| PeerInfo {
            peer_id: *peer,
            consensus_subscribed: true,
            txs_subscribed: true,
            // The simulated network carries decoded messages: no bytes to count.
            received_bytes: 0,
        };
        self.announced.iter().map(info).collect()
    }

    /// Delivers a gossiped tx batch that `from` sent this node. Returns whether the node got
    /// it. Counted in `tx_batches_in` (if it decodes), dropped and counted in
    /// `tx_batches_dropped` when the node's tx channel is full. A batch over this node's
    /// limits (more than `TX_BATCH_TXS_MAX` txs or the tx batch byte limit) is rejected and
    /// counted in `decode_failures`. Under [`GossipValidation::ByNode`] a delivered batch
    /// awaits the node's report. Ignored once the port has stopped.
    pub fn deliver_txs(&self, txs: Vec<Tx>, from: PeerId) -> bool {
        let Some(senders) = &self.senders else { return false };
        let message = Message::TxBatch(TxBatch(txs));
        let Some(id) = self.gossip_id(&message, self.config.tx_batch_bytes_max(), from) else {
            return false;
        };
        let Message::TxBatch(TxBatch(txs)) = message else { unreachable!("built above") };
        NetworkStats::inc(&self.stats.tx_batches_in);
        let mode = self.config.tx_validation;
        let from = GossipRef::new(id, from, mode);
        let delivered = senders.txs.try_send(TxEvent { txs, from }).is_ok();
        if !delivered {
            NetworkStats::inc(&self.stats.tx_batches_dropped);
        }
        // The real swarm reports: accepted on decode, or ignored when the node will never
        // see it to judge it.
        if mode == GossipValidation::OnDecode || !delivered {
            NetworkStats::inc(&self.stats.validations_reported);
        }
        delivered
    }

    /// Hands the node a sync request from `from` and returns where its answer will come
    /// (fitting it to the limits is [`SimReply`]'s job; a closed receiver means the node
    /// dropped the responder: answer with [`SimReply::answer`]`(None)`). Counted in
    /// `sync_requests_in`.
    ///
    /// `None` when the real swarm answers busy (counted in `sync_requests_busy`): the node's
    /// sync queue is full, or `sync_inbound_pending_max` requests already wait for its
    /// answer. Also `None`, counted in `decode_failures`, for a request over the sync request
    /// limits (the real swarm cannot read it; only a crafted request can be), and once the
    /// port has stopped.
    pub fn deliver_sync_request(
        &self,
        from: PeerId,
        request: SyncRequest,
    ) -> Option<oneshot::Receiver<SyncResponse>> {
        let senders = self.senders.as_ref()?;
        NetworkStats::inc(&self.stats.sync_requests_in);
        let message = Message::SyncRequest(request);
        if let Err(e) = wire::encode(&message, self.config.sync_request_bytes_max()) {
            NetworkStats::inc(&self.stats.decode_failures);
            tracing::debug!(peer = %from, error = %e, "undecodable sync request");
            return None;
        }
        let Message::SyncRequest(request) = message else { unreachable!("built above") };
        if held(&self.inbound) >= self.config.sync_inbound_pending_max {
            NetworkStats::inc(&self.stats.sync_requests_busy);
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let responder = SyncResponder { tx, _pending: Some(Arc::clone(&self.inbound)) };
        let event = InboundSyncRequest { peer: from, request, responder };
        if senders.sync_requests.try_send(event).is_err() {
            NetworkStats::inc(&self.stats.sync_requests_busy);
            return None;
        }
        Some(rx)
    }

    /// The id of a gossip message: blake3 of its encoding. `None` if it does not encode
    /// within `bytes_max`: then it is what a receiver cannot decode, and is counted (and
    /// reported rejected) as such.
    fn gossip_id(&self, message: &Message, bytes_max: usize, from: PeerId) -> Option<MessageId> {
        match wire::encode(message, bytes_max) {
            Ok(data) => Some(MessageId::new(Hash::digest(&data).as_bytes())),
            Err(e) => {
                self.rejected(from, message.kind(), &e);
                None
            }
        }
    }

    fn rejected(&self, from: PeerId, what: wire::MessageKind, e: &WireError) {
        NetworkStats::inc(&self.stats.decode_failures);
        NetworkStats::inc(&self.stats.validations_reported);
        tracing::debug!(peer = %from, %what, error = %e, "undecodable gossip rejected");
    }

    fn send_event(&self, event: ConsensusEvent, count: bool) -> Result<(), Full> {
        let Some(senders) = &self.senders else { return Ok(()) };
        match senders.consensus.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(event)) => {
                if count {
                    NetworkStats::inc(&self.stats.consensus_backpressure);
                }
                Err(Full { event })
            }
            // The node dropped its receiver: nobody will read it.
            Err(TrySendError::Closed(_)) => Ok(()),
        }
    }

    fn update_peer_gauge(&self) {
        let count = u64::try_from(self.announced.len()).unwrap_or(u64::MAX);
        NetworkStats::set(&self.stats.peers_connected, count);
    }
}

/// How many clones of a port's guard are out (the port's own copy not counted).
fn held(guard: &Arc<()>) -> usize {
    Arc::strong_count(guard) - 1
}
