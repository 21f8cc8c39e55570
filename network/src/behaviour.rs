//! The libp2p behaviour of a tally node and its tuning for small validator sets.
//!
//! Known traps with a handful of validators, and what this module does about each:
//! - gossipsub's default mesh (D = 6, D_lo = 5) cannot form with 3 peers: D = 3, D_lo = 2,
//!   D_hi = 6, and flood publishing, so a message goes straight to every subscribed peer;
//! - message ids are blake3 of publisher, sequence number and data (see [`message_id`]);
//! - gossipsub signs every message with the node's libp2p key and checks the signature of
//!   every copy it receives (SHA-512 over the whole message: 4% of a node's CPU under load).
//!   tally's messages carry their own signatures (txs by their senders, proposals and
//!   votes by validators), checked by the node, so gossipsub publishes unsigned messages
//!   that name their author (`MessageAuthenticity::Author`) and validates permissively (a
//!   signature, if a peer sends one, is still checked). A relay could claim another author;
//!   that only changes the message id, never what the node accepts;
//! - the 64 KiB default message size cannot carry a block: the limit is the config's
//!   `gossip_bytes_max` plus room for gossipsub's own framing;
//! - messages are forwarded before anyone checked them: `validate_messages()` holds them
//!   until the network (on decode) or the node (after signatures) reports a verdict;
//! - request-response has no size caps of its own: [`crate::codec`] sets them.
//!
//! Beside gossipsub and sync: identify (protocol version `tally/<chain_id>/1`, checked on
//! receipt), ping (liveness, RTT in logs), connection limits, and a block list for bans.

use crate::codec::{sync_protocol, SyncCodec};
use crate::config::NetworkConfig;
use crate::stats::NetworkStats;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, ping, request_response,
};
use std::sync::Arc;
use tally_crypto::{ChainId, Hash};

/// Room for gossipsub's framing around a message's data: protobuf tags, topic, sequence
/// number, author key and signature.
const GOSSIP_FRAMING_BYTES: usize = 2048;

/// The two gossip topics of a chain.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    pub txs: gossipsub::IdentTopic,
    pub consensus: gossipsub::IdentTopic,
}

impl Topics {
    pub fn new(chain_id: &ChainId) -> Self {
        Topics {
            txs: gossipsub::IdentTopic::new(format!("tally/{chain_id}/txs/v1")),
            consensus: gossipsub::IdentTopic::new(format!("tally/{chain_id}/consensus/v1")),
        }
    }
}

/// The identify protocol version: a peer announcing another one is on another chain (or
/// speaks another protocol version) and is disconnected.
/// Version 2: gossip messages are unsigned (version 1 signed them and refused unsigned ones,
/// so the two cannot share a network). Version 3: validators propose with compact proposals,
/// which version 2 cannot decode.
pub(crate) fn protocol_version(chain_id: &ChainId) -> String {
    format!("tally/{chain_id}/3")
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub block_list: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

/// Why the behaviour cannot be built (a configuration gossipsub refuses).
#[derive(Debug, thiserror::Error)]
pub enum BehaviourError {
    #[error("gossipsub configuration refused: {0}")]
    GossipConfig(String),
    #[error("gossipsub refused to start: {0}")]
    Gossipsub(String),
}

/// A gossip message's id: blake3 of its publisher, its sequence number and its data. Each
/// publish is its own message, so a validator's rebroadcast of a vote or proposal that peers
/// missed gets through. With an id of the data alone it did not: gossipsub refuses to publish
/// an id still in its duplicate cache, and that cache only drops expired ids when new ones
/// arrive, so on a stalled network (nothing new arriving) the rebroadcasts that were to
/// unstall it were refused forever (seen: a four-validator testnet that never committed
/// height 1). A relayed copy keeps its publisher and sequence number, so gossip still
/// delivers each publish once; the same data published twice is told apart by the
/// application (the mempool and the consensus core both drop what they already hold).
fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let source = message.source.map(|p| p.to_bytes()).unwrap_or_default();
    let seqno = message.sequence_number.unwrap_or(0).to_be_bytes();
    let len = (source.len() as u64).to_be_bytes();
    gossipsub::MessageId::new(
        Hash::digest_parts(&[&len, &source, &seqno, &message.data]).as_bytes(),
    )
}

fn gossip_config(config: &NetworkConfig) -> Result<gossipsub::Config, BehaviourError> {
    gossipsub::ConfigBuilder::default()
        .mesh_n(3)
        .mesh_n_low(2)
        .mesh_n_high(6)
        .mesh_outbound_min(1)
        .gossip_lazy(2)
        .flood_publish(true)
        .heartbeat_interval(config.gossip_heartbeat)
        .heartbeat_initial_delay(config.gossip_heartbeat.min(std::time::Duration::from_millis(100)))
        .history_length(config.gossip_history_length)
        .history_gossip(3)
        .duplicate_cache_time(config.gossip_duplicate_cache)
        .max_transmit_size(config.gossip_bytes_max + GOSSIP_FRAMING_BYTES)
        .validate_messages()
        .validation_mode(gossipsub::ValidationMode::Permissive)
        .message_id_fn(message_id)
        .build()
        .map_err(|e| BehaviourError::GossipConfig(e.to_string()))
}

impl Behaviour {
    pub fn new(
        keypair: &identity::Keypair,
        config: &NetworkConfig,
        stats: Arc<NetworkStats>,
    ) -> Result<Self, BehaviourError> {
        // Unsigned, with the author and a random sequence number (see the module doc).
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Author(keypair.public().to_peer_id()),
            gossip_config(config)?,
        )
        .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
        let codec = SyncCodec {
            request_bytes_max: config.sync_request_bytes_max(),
            response_bytes_max: config.sync_response_bytes_max,
            stats,
        };
        let sync = request_response::Behaviour::with_codec(
            codec,
            [(sync_protocol(&config.chain_id), request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.sync_request_timeout)
                .with_max_concurrent_streams(
                    config.sync_requests_in_flight_max + config.sync_inbound_pending_max,
                ),
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(protocol_version(&config.chain_id), keypair.public())
                .with_agent_version(format!("tally/{}", env!("CARGO_PKG_VERSION"))),
        );
        Ok(Behaviour {
            block_list: allow_block_list::Behaviour::default(),
            limits: connection_limits::Behaviour::new(connection_limits(config)),
            gossipsub,
            sync,
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
        })
    }
}

/// Caps on connections: two per peer (one dialled each way, when two validators dial each
/// other at once), so `2 * peers_max` in all, and as many pending handshakes as peers.
fn connection_limits(config: &NetworkConfig) -> connection_limits::ConnectionLimits {
    let peers = u32::try_from(config.peers_max).unwrap_or(u32::MAX);
    connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(2))
        .with_max_established(Some(peers.saturating_mul(2)))
        .with_max_pending_incoming(Some(peers))
        .with_max_pending_outgoing(Some(peers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(source: Option<libp2p::PeerId>, seqno: u64, data: &[u8]) -> gossipsub::Message {
        gossipsub::Message {
            source,
            data: data.to_vec(),
            sequence_number: Some(seqno),
            topic: gossipsub::IdentTopic::new("t").hash(),
        }
    }

    #[test]
    fn a_republished_message_gets_a_new_id() {
        let peer = identity::Keypair::generate_ed25519().public().to_peer_id();
        let other = identity::Keypair::generate_ed25519().public().to_peer_id();
        let first = message_id(&message(Some(peer), 1, b"vote"));
        assert_eq!(first, message_id(&message(Some(peer), 1, b"vote")), "a relayed copy");
        assert_ne!(first, message_id(&message(Some(peer), 2, b"vote")), "a rebroadcast");
        assert_ne!(first, message_id(&message(Some(other), 1, b"vote")));
        assert_ne!(first, message_id(&message(Some(peer), 1, b"other")));
    }
}
