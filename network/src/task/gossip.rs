//! Gossip: publishing (with retries while no peer is subscribed) and receiving (decode
//! under limits, report a verdict to gossipsub, deliver to the node by the drop rules).

use super::SwarmTask;
use crate::config::GossipValidation;
use crate::events::{ConsensusEvent, GossipRef, TxEvent};
use crate::publish::TopicKind;
use crate::stats::NetworkStats;
use crate::wire;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, TopicHash};
use libp2p::PeerId;
use std::time::Instant;

impl SwarmTask {
    pub(super) fn topic_hash(&self, kind: TopicKind) -> TopicHash {
        match kind {
            TopicKind::Consensus => self.topics.consensus.hash(),
            TopicKind::Txs => self.topics.txs.hash(),
        }
    }

    pub(super) fn has_subscribers(&self, topic: &TopicHash) -> bool {
        self.swarm.behaviour().gossipsub.all_peers().any(|(_, topics)| topics.contains(&topic))
    }

    /// Publishes now if a peer is subscribed, else queues for a retry.
    pub(super) fn publish(&mut self, kind: TopicKind, data: Vec<u8>, now: Instant) {
        let topic = self.topic_hash(kind);
        if !self.has_subscribers(&topic) {
            let dropped = self.retry.push(kind, data, now + self.config.publish_retry_window);
            NetworkStats::inc(&self.stats.publish_retries);
            for _ in 0..dropped {
                NetworkStats::inc(&self.stats.publish_failures);
            }
            return;
        }
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => NetworkStats::inc(match kind {
                TopicKind::Consensus => &self.stats.consensus_out,
                TopicKind::Txs => &self.stats.tx_batches_out,
            }),
            Err(gossipsub::PublishError::Duplicate) => {
                NetworkStats::inc(&self.stats.publish_duplicates);
            }
            Err(e) => {
                NetworkStats::inc(&self.stats.publish_failures);
                tracing::warn!(?kind, error = %e, "gossip publish failed");
            }
        }
    }

    pub(super) fn flush_retries(&mut self, kind: TopicKind, now: Instant) {
        if self.retry.is_empty(kind) || !self.has_subscribers(&self.topic_hash(kind)) {
            return;
        }
        for waiting in self.retry.take(kind) {
            if waiting.deadline > now {
                self.publish(kind, waiting.data, now);
            } else {
                NetworkStats::inc(&self.stats.publish_failures);
            }
        }
    }

    pub(super) fn report(&mut self, id: &MessageId, source: &PeerId, verdict: MessageAcceptance) {
        NetworkStats::inc(&self.stats.validations_reported);
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, source, verdict);
    }

    pub(super) fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                self.on_gossip_message(propagation_source, message_id, message);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                let now = Instant::now();
                if topic == self.topics.consensus.hash() {
                    self.flush_retries(TopicKind::Consensus, now);
                    // Announced only now: a broadcast made before the subscription arrived
                    // would not reach this peer.
                    if self.swarm.is_connected(&peer_id) && self.announced.insert(peer_id) {
                        self.deliver_consensus(ConsensusEvent::PeerConnected(peer_id));
                    }
                } else if topic == self.topics.txs.hash() {
                    self.flush_retries(TopicKind::Txs, now);
                }
            }
            gossipsub::Event::SlowPeer { peer_id, failed_messages } => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "slow gossip peer");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::warn!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::Unsubscribed { .. } => {}
        }
    }

    pub(super) fn on_gossip_message(
        &mut self,
        source: PeerId,
        id: MessageId,
        message: gossipsub::Message,
    ) {
        if self.swarm.is_connected(&source) {
            *self.received_bytes.entry(source).or_default() += message.data.len() as u64;
        }
        if message.topic == self.topics.consensus.hash() {
            self.on_consensus_gossip(source, id, &message.data);
        } else if message.topic == self.topics.txs.hash() {
            self.on_tx_gossip(source, id, &message.data);
        } else {
            self.report(&id, &source, MessageAcceptance::Ignore);
        }
    }

    pub(super) fn on_consensus_gossip(&mut self, source: PeerId, id: MessageId, data: &[u8]) {
        let msg = match wire::decode_consensus(data, self.config.gossip_bytes_max) {
            Ok(msg) => msg,
            Err(e) => return self.decode_failed(source, id, "consensus", e),
        };
        NetworkStats::inc(&self.stats.consensus_in);
        let mode = self.config.consensus_validation;
        if mode == GossipValidation::OnDecode {
            self.report(&id, &source, MessageAcceptance::Accept);
        }
        let from = GossipRef::new(id, source, mode);
        self.deliver_consensus(ConsensusEvent::Message { msg, from });
    }

    pub(super) fn on_tx_gossip(&mut self, source: PeerId, id: MessageId, data: &[u8]) {
        let batch = match wire::decode_tx_batch(data, self.config.tx_batch_bytes_max()) {
            Ok(batch) => batch,
            Err(e) => return self.decode_failed(source, id, "tx batch", e),
        };
        NetworkStats::inc(&self.stats.tx_batches_in);
        let mode = self.config.tx_validation;
        let from = GossipRef::new(id.clone(), source, mode);
        let delivered = self.channels.txs.try_send(TxEvent { txs: batch.0, from }).is_ok();
        if !delivered {
            NetworkStats::inc(&self.stats.tx_batches_dropped);
        }
        match (mode, delivered) {
            // It decoded: forwarding it helps the others even if we could not take it.
            (GossipValidation::OnDecode, _) => self.report(&id, &source, MessageAcceptance::Accept),
            // The node will never see it, so will never judge it.
            (GossipValidation::ByNode, false) => {
                self.report(&id, &source, MessageAcceptance::Ignore)
            }
            (GossipValidation::ByNode, true) => {}
        }
    }

    pub(super) fn decode_failed(
        &mut self,
        source: PeerId,
        id: MessageId,
        what: &str,
        e: wire::WireError,
    ) {
        NetworkStats::inc(&self.stats.decode_failures);
        tracing::debug!(peer = %source, what, error = %e, "undecodable gossip rejected");
        self.report(&id, &source, MessageAcceptance::Reject);
    }
}
