//! The swarm task: the only owner of the libp2p swarm. It serves the handle's commands,
//! turns swarm events into node events, keeps the configured peers connected and retries
//! publishes that found no subscriber.
//!
//! Rules it follows:
//! - It never waits on the node while it could be serving the node: when the consensus
//!   channel is full it stops polling the swarm (so TCP pushes back on peers) but keeps
//!   taking commands, so a node blocked on a command can never deadlock with it.
//! - Consensus events are never dropped; tx batches and sync requests are, when their
//!   channels are full (counted, see `NetworkConfig`).
//! - Peer input that does not decode is rejected in gossipsub (its sender is penalised
//!   there) and counted; it never reaches the node and never stops the task.

mod gossip;
mod sync;

use crate::behaviour::{protocol_version, Behaviour, BehaviourEvent, Topics};
use crate::config::NetworkConfig;
use crate::error::RequestError;
use crate::events::{ConsensusEvent, InboundSyncRequest, TxEvent, Verdict};
use crate::handle::{Command, PeerInfo};
use crate::peering::{DialFailure, Peering};
use crate::publish::{RetryQueue, TopicKind};
use crate::stats::NetworkStats;
use crate::wire::SyncResponse;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::gossipsub::{MessageAcceptance, TopicHash};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How often redials, publish retries and ban expiries are looked at.
const TICK: Duration = Duration::from_millis(100);

type Reply = oneshot::Sender<Result<SyncResponse, RequestError>>;
type InboundAnswer = (ResponseChannel<SyncResponse>, Option<SyncResponse>);

/// The channel ends the task owns.
pub(crate) struct Channels {
    pub commands: mpsc::Receiver<Command>,
    pub tx_commands: mpsc::Receiver<Vec<u8>>,
    pub consensus: mpsc::Sender<ConsensusEvent>,
    pub txs: mpsc::Sender<TxEvent>,
    pub sync_requests: mpsc::Sender<InboundSyncRequest>,
}

pub(crate) struct SwarmTask {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    topics: Topics,
    stats: Arc<NetworkStats>,
    channels: Channels,
    /// Consensus events the node's full channel could not take yet. While non-empty the
    /// swarm is not polled, so this holds at most the few events of one swarm event.
    pending_consensus: VecDeque<ConsensusEvent>,
    retry: RetryQueue,
    peering: Peering,
    /// Our sync requests awaiting an answer; at most `sync_requests_in_flight_max`. Entries
    /// leave on response or failure (request-response times every request out).
    outbound: HashMap<OutboundRequestId, Reply>,
    /// Peers' sync requests the node is answering; at most `sync_inbound_pending_max`, each
    /// bounded by `sync_request_timeout`.
    inbound: FuturesUnordered<BoxFuture<'static, InboundAnswer>>,
    /// Penalties per peer; at most `4 * peers_max` peers tracked.
    penalties: HashMap<PeerId, u32>,
    /// Banned peers by expiry (one ban duration for all, so FIFO is expiry order).
    bans: VecDeque<(Instant, PeerId)>,
    /// Peers announced to the node as connected (connected and subscribed to the consensus
    /// topic); a subset of the connected peers.
    announced: HashSet<PeerId>,
    /// Bytes of gossip messages received from each connected peer (as their propagation
    /// source), since it connected; forgotten when it disconnects.
    received_bytes: HashMap<PeerId, u64>,
}

impl SwarmTask {
    pub fn new(
        swarm: Swarm<Behaviour>,
        config: NetworkConfig,
        topics: Topics,
        stats: Arc<NetworkStats>,
        channels: Channels,
    ) -> Self {
        let local = *swarm.local_peer_id();
        let mut peering = Peering::new(local, config.redial_backoff_min, config.redial_backoff_max);
        let now = Instant::now();
        for addr in &config.peers {
            peering.add(addr.clone(), now);
        }
        SwarmTask {
            swarm,
            retry: RetryQueue::new(config.publish_retry_capacity),
            config,
            topics,
            stats,
            channels,
            pending_consensus: VecDeque::new(),
            peering,
            outbound: HashMap::new(),
            inbound: FuturesUnordered::new(),
            penalties: HashMap::new(),
            bans: VecDeque::new(),
            announced: HashSet::new(),
            received_bytes: HashMap::new(),
        }
    }

    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut done = None;
        loop {
            tokio::select! {
                command = self.channels.commands.recv() => match command {
                    Some(command) => {
                        if let Some(reply) = self.on_command(command) {
                            done = Some(reply);
                            break;
                        }
                    }
                    None => break,
                },
                Some(data) = self.channels.tx_commands.recv() => {
                    self.publish(TopicKind::Txs, data, Instant::now());
                }
                // An owned permit (on a cheap sender clone), so that no borrow of `self`
                // outlives the select.
                permit = self.channels.consensus.clone().reserve_owned(),
                    if !self.pending_consensus.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.pending_consensus.pop_front() {
                            permit.send(event);
                        }
                    }
                    // The node dropped its receiver: nobody will read these.
                    Err(_) => self.pending_consensus.clear(),
                },
                Some((channel, answer)) = self.inbound.next(), if !self.inbound.is_empty() => {
                    self.answer_sync(channel, answer);
                }
                _ = tick.tick() => self.on_tick(Instant::now()),
                event = self.swarm.select_next_some(), if self.pending_consensus.is_empty() => {
                    self.on_swarm_event(event);
                }
            }
        }
        tracing::info!(peer_id = %self.swarm.local_peer_id(), "network stopped");
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Carries out a command; returns the shutdown acknowledgement when told to stop.
    fn on_command(&mut self, command: Command) -> Option<oneshot::Sender<()>> {
        match command {
            Command::Publish { kind, data } => self.publish(kind, data, Instant::now()),
            Command::Request { peer, request, reply } => {
                self.send_sync_request(peer, request, reply)
            }
            Command::ReportValidation { gossip, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                self.report(&gossip.message_id, &gossip.propagation_source, acceptance);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::AddPeer { addr } => self.add_peer(addr),
            Command::Penalize { peer } => self.penalize(peer, Instant::now()),
            Command::Shutdown { done } => return Some(done),
        }
        None
    }

    fn on_tick(&mut self, now: Instant) {
        self.dial_due(now);
        self.flush_retries(TopicKind::Consensus, now);
        self.flush_retries(TopicKind::Txs, now);
        for _ in 0..self.retry.expire(now) {
            NetworkStats::inc(&self.stats.publish_failures);
        }
        while let Some(&(until, peer)) = self.bans.front() {
            if until > now {
                break;
            }
            self.bans.pop_front();
            self.swarm.behaviour_mut().block_list.unblock_peer(peer);
            tracing::info!(%peer, "peer ban lifted");
        }
    }

    fn dial_due(&mut self, now: Instant) {
        let swarm = &self.swarm;
        let due = self.peering.due(now, |peer| swarm.is_connected(peer));
        for (index, addr) in due {
            let opts =
                DialOpts::unknown_peer_id().address(addr.clone()).allocate_new_port().build();
            let connection = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    NetworkStats::inc(&self.stats.dials);
                    self.peering.dialing(index, connection);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "dial refused");
                    self.peering.dial_refused(index, now);
                }
            }
        }
    }

    fn add_peer(&mut self, addr: Multiaddr) {
        if self.peering.len() >= self.config.peers_max {
            tracing::warn!(%addr, max = self.config.peers_max, "peer list full, address ignored");
            return;
        }
        if self.peering.add(addr, Instant::now()) {
            self.dial_due(Instant::now());
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let consensus = self.topics.consensus.hash();
        let txs = self.topics.txs.hash();
        let gossip = &self.swarm.behaviour().gossipsub;
        let subscriptions: HashMap<&PeerId, Vec<&TopicHash>> = gossip.all_peers().collect();
        self.swarm
            .connected_peers()
            .map(|peer| {
                let topics = subscriptions.get(peer);
                let has = |t: &TopicHash| topics.is_some_and(|ts| ts.contains(&t));
                PeerInfo {
                    peer_id: *peer,
                    consensus_subscribed: has(&consensus),
                    txs_subscribed: has(&txs),
                    received_bytes: self.received_bytes.get(peer).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    fn penalize(&mut self, peer: PeerId, now: Instant) {
        NetworkStats::inc(&self.stats.penalties);
        if !self.penalties.contains_key(&peer) && self.penalties.len() >= 4 * self.config.peers_max
        {
            // Forget a disconnected peer's count to make room (connected ones matter most).
            let idle = self.penalties.keys().find(|p| !self.swarm.is_connected(p)).copied();
            match idle {
                Some(idle) => self.penalties.remove(&idle),
                None => return,
            };
        }
        let count = self.penalties.entry(peer).or_insert(0);
        *count += 1;
        if *count < self.config.peer_penalties_max {
            return;
        }
        self.penalties.remove(&peer);
        if self.bans.len() >= 4 * self.config.peers_max {
            if let Some((_, oldest)) = self.bans.pop_front() {
                self.swarm.behaviour_mut().block_list.unblock_peer(oldest);
            }
        }
        tracing::warn!(%peer, "peer banned after too many penalties");
        NetworkStats::inc(&self.stats.bans);
        self.swarm.behaviour_mut().block_list.block_peer(peer);
        self.bans.push_back((now + self.config.peer_ban_duration, peer));
    }

    /// Hands a consensus event to the node, or queues it (and stops polling the swarm) if
    /// the node's channel is full.
    fn deliver_consensus(&mut self, event: ConsensusEvent) {
        if !self.pending_consensus.is_empty() {
            self.pending_consensus.push_back(event);
            return;
        }
        match self.channels.consensus.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                NetworkStats::inc(&self.stats.consensus_backpressure);
                self.pending_consensus.push_back(event);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let ours = protocol_version(&self.config.chain_id);
                if info.protocol_version != ours {
                    tracing::warn!(peer = %peer_id, theirs = %info.protocol_version, %ours,
                        "peer speaks another chain or version, disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => {
                if let Err(e) = event.result {
                    tracing::debug!(peer = %event.peer, error = %e, "ping failed");
                }
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::ConnectionEstablished {
                peer_id, connection_id, num_established, ..
            } => {
                self.peering.on_established(peer_id, connection_id);
                self.update_peer_gauge();
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, "peer connected");
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                self.update_peer_gauge();
                if num_established == 0 {
                    self.received_bytes.remove(&peer_id);
                    tracing::info!(peer = %peer_id, cause = ?cause, "peer disconnected");
                    self.peering.on_disconnected(peer_id, Instant::now());
                    if self.announced.remove(&peer_id) {
                        self.deliver_consensus(ConsensusEvent::PeerDisconnected(peer_id));
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, peer_id } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
                self.peering.on_dial_failed(connection_id, dial_failure(&error), Instant::now());
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ListenerClosed { addresses, reason: Err(e), .. } => {
                tracing::error!(?addresses, error = %e, "listener failed; no inbound connections");
            }
            _ => {}
        }
    }

    fn update_peer_gauge(&self) {
        let count = self.swarm.connected_peers().count();
        NetworkStats::set(&self.stats.peers_connected, u64::try_from(count).unwrap_or(u64::MAX));
    }
}

fn dial_failure(error: &DialError) -> DialFailure {
    match error {
        DialError::LocalPeerId { .. } => DialFailure::LocalPeer,
        DialError::WrongPeerId { .. } => DialFailure::WrongPeer,
        _ => DialFailure::Other,
    }
}
