//! The network's configuration: addresses, identity, and the size of every limit and queue.
//!
//! Every queue between the swarm task and the node is bounded by a field here, and each
//! field's doc says what happens when the queue is full. [`NetworkConfig::validate`] checks
//! all limits together once, before the swarm starts.

use crate::wire::{SYNC_REQUEST_BYTES_MAX, SYNC_RESPONSE_OVERHEAD_BYTES, TX_BATCH_BYTES_MAX};
use libp2p::Multiaddr;
use std::time::Duration;
use tally_crypto::ChainId;

/// Bytes a consensus message adds around its block: the envelope, a signed proposal or a
/// commit certificate with one signature per validator (up to
/// `tally_consensus::limits::CERTIFICATE_SIGNATURES_MAX`, 68 bytes each).
pub const CONSENSUS_OVERHEAD_BYTES: usize =
    4096 + tally_consensus::limits::CERTIFICATE_SIGNATURES_MAX * 68;

/// The gossip size limit that fits a block of `block_bytes_max` bytes in a consensus message.
pub const fn gossip_bytes_for_block(block_bytes_max: usize) -> usize {
    block_bytes_max + CONSENSUS_OVERHEAD_BYTES
}

/// Who checks a gossip message before gossipsub forwards it to other peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GossipValidation {
    /// The network accepts (forwards) every message that decodes; the node checks
    /// signatures afterwards and needs not report.
    OnDecode,
    /// The network forwards a message only after the node calls
    /// [`crate::NetworkHandle::report_validation`] with [`crate::Verdict::Accept`]. The node must
    /// report within about `gossip_heartbeat * gossip_history_length` (gossipsub keeps the
    /// message that long), or the message is never forwarded (it is still delivered).
    ByNode,
}

/// Everything [`crate::spawn`] needs. Build it with [`NetworkConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Names the gossip topics (`tally/<chain_id>/txs/v1`, `tally/<chain_id>/consensus/v1`),
    /// the sync protocol and the identify protocol version, so chains never mix.
    pub chain_id: ChainId,
    /// The TCP address to listen on, e.g. `/ip4/127.0.0.1/tcp/26656` (port 0: any free port,
    /// see [`crate::NetworkHandle::listen_addrs`]).
    pub listen_addr: Multiaddr,
    /// Peers dialled at start and redialled with backoff whenever no connection to them is
    /// left. An address may end in `/p2p/<peer id>` to pin the identity it must present.
    /// At most `peers_max` entries.
    pub peers: Vec<Multiaddr>,
    /// Seed of this node's libp2p ed25519 identity; the peer id follows from it.
    pub identity_seed: [u8; 32],
    /// Largest gossip message (envelope included) sent or accepted, in bytes. Must fit the
    /// largest block plus [`CONSENSUS_OVERHEAD_BYTES`] (see [`gossip_bytes_for_block`]).
    pub gossip_bytes_max: usize,
    /// Largest sync response (envelope included), in bytes; the responder trims a response
    /// to fit. Must hold at least one block of `gossip_bytes_max`.
    pub sync_response_bytes_max: usize,
    /// Capacity of the consensus events channel (consensus messages, peer connected and
    /// disconnected). Never dropped: when it is full the swarm task stops reading from the
    /// network until the node catches up (TCP backpressure to the peers), while it keeps
    /// serving the node's commands, so the node can never deadlock with it.
    pub events_capacity: usize,
    /// Capacity of the tx events channel. When full, an incoming tx batch is dropped and
    /// counted in `tx_batches_dropped`; under [`GossipValidation::ByNode`] it is not
    /// forwarded either (the node never judges it), under `OnDecode` it still is.
    pub tx_events_capacity: usize,
    /// Capacity of the inbound sync requests channel. When full, a request is answered at
    /// once with `SyncResponse::Error("busy")` and counted in `sync_requests_busy`.
    pub sync_requests_capacity: usize,
    /// Capacity of the command channel for consensus broadcasts and control calls. When full,
    /// the calling method awaits (backpressure on the node, never a drop).
    pub commands_capacity: usize,
    /// Capacity of the command channel for tx broadcasts. When full,
    /// [`crate::NetworkHandle::broadcast_txs`] drops the batch, counts it in
    /// `tx_broadcasts_dropped` and returns `NetworkError::TxQueueFull`.
    pub tx_commands_capacity: usize,
    /// Publishes that found no subscribed peer wait here, per topic, and are retried each
    /// tick and whenever a peer subscribes. When full, the oldest waiting message is dropped
    /// and counted in `publish_failures`.
    pub publish_retry_capacity: usize,
    /// How long a publish may wait for a subscribed peer before it is dropped and counted in
    /// `publish_failures`.
    pub publish_retry_window: Duration,
    /// Who validates gossiped consensus messages before they are forwarded.
    pub consensus_validation: GossipValidation,
    /// Who validates gossiped tx batches before they are forwarded.
    pub tx_validation: GossipValidation,
    /// Gossipsub heartbeat: mesh maintenance and lazy gossip (IHAVE) happen once per beat.
    pub gossip_heartbeat: Duration,
    /// Heartbeats a message stays in gossipsub's cache (forwardable, answerable to IWANT).
    pub gossip_history_length: usize,
    /// How long a message id is remembered as seen. An identical message (same bytes, same
    /// id) published or received again within this window is dropped as a duplicate, so a
    /// node that re-broadcasts its votes should wait at least this long between copies.
    /// Must exceed `gossip_heartbeat * gossip_history_length`.
    pub gossip_duplicate_cache: Duration,
    /// Timeout of one block sync request (the swarm's and [`crate::NetworkHandle`]'s).
    pub sync_request_timeout: Duration,
    /// Most sync requests this node may have outstanding; more fail at once with
    /// `RequestError::TooManyInFlight`.
    pub sync_requests_in_flight_max: usize,
    /// Most inbound sync requests waiting for the node's answer; more are answered
    /// `SyncResponse::Error("busy")`.
    pub sync_inbound_pending_max: usize,
    /// First redial delay after a dropped connection or a failed dial; doubles with each
    /// failure up to `redial_backoff_max`, back to this after a success.
    pub redial_backoff_min: Duration,
    /// Longest redial delay.
    pub redial_backoff_max: Duration,
    /// Bounds the connections (at most two per peer, `2 * peers_max` in all, further ones are
    /// refused) and the length of `peers`.
    pub peers_max: usize,
    /// Penalties ([`crate::NetworkHandle::penalize`]) after which a peer is disconnected and
    /// banned for `peer_ban_duration`.
    pub peer_penalties_max: u32,
    /// How long a banned peer stays banned; its penalty count restarts from zero after.
    pub peer_ban_duration: Duration,
    /// How long a connection with no active protocol stays open. Validators keep their
    /// links, so this is long; explicit peering redials anyway.
    pub idle_connection_timeout: Duration,
}

/// Why a [`NetworkConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange { field: &'static str, value: u64, min: u64, max: u64 },
    #[error("{count} peers configured, more than peers_max {max}")]
    TooManyPeers { count: usize, max: usize },
    #[error("gossip_duplicate_cache {cache:?} must exceed heartbeat * history = {history:?}")]
    DuplicateCacheTooShort { cache: Duration, history: Duration },
    #[error("redial_backoff_min {min:?} is above redial_backoff_max {max:?}")]
    BackoffOrder { min: Duration, max: Duration },
    #[error("sync_response_bytes_max {response} cannot hold one block of gossip size {gossip}")]
    SyncResponseTooSmall { response: usize, gossip: usize },
}

impl NetworkConfig {
    /// A configuration with the defaults below, sized for the ledger's largest block.
    pub fn new(chain_id: ChainId, listen_addr: Multiaddr, identity_seed: [u8; 32]) -> Self {
        let gossip_bytes_max = gossip_bytes_for_block(tally_ledger::limits::BLOCK_BYTES_MAX);
        NetworkConfig {
            chain_id,
            listen_addr,
            peers: Vec::new(),
            identity_seed,
            gossip_bytes_max,
            sync_response_bytes_max: 4 * gossip_bytes_max,
            events_capacity: 1024,
            tx_events_capacity: 256,
            sync_requests_capacity: 16,
            commands_capacity: 1024,
            tx_commands_capacity: 256,
            publish_retry_capacity: 256,
            publish_retry_window: Duration::from_secs(5),
            consensus_validation: GossipValidation::OnDecode,
            tx_validation: GossipValidation::OnDecode,
            gossip_heartbeat: Duration::from_millis(500),
            gossip_history_length: 6,
            gossip_duplicate_cache: Duration::from_secs(5),
            sync_request_timeout: Duration::from_secs(10),
            sync_requests_in_flight_max: 32,
            sync_inbound_pending_max: 32,
            redial_backoff_min: Duration::from_millis(250),
            redial_backoff_max: Duration::from_secs(10),
            peers_max: 64,
            peer_penalties_max: 10,
            peer_ban_duration: Duration::from_secs(600),
            idle_connection_timeout: Duration::from_secs(3600),
        }
    }

    /// Checks every limit once, together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        range("gossip_bytes_max", self.gossip_bytes_max, 4 * KIB, 64 * MIB)?;
        range("sync_response_bytes_max", self.sync_response_bytes_max, 4 * KIB, 512 * MIB)?;
        range("events_capacity", self.events_capacity, 1, 1_000_000)?;
        range("tx_events_capacity", self.tx_events_capacity, 1, 1_000_000)?;
        range("sync_requests_capacity", self.sync_requests_capacity, 1, 10_000)?;
        range("commands_capacity", self.commands_capacity, 1, 1_000_000)?;
        range("tx_commands_capacity", self.tx_commands_capacity, 1, 1_000_000)?;
        range("publish_retry_capacity", self.publish_retry_capacity, 1, 100_000)?;
        range("gossip_history_length", self.gossip_history_length, 3, 100)?;
        range("sync_requests_in_flight_max", self.sync_requests_in_flight_max, 1, 10_000)?;
        range("sync_inbound_pending_max", self.sync_inbound_pending_max, 1, 10_000)?;
        range("peers_max", self.peers_max, 1, 10_000)?;
        range("peer_penalties_max", self.peer_penalties_max as usize, 1, 1_000_000)?;
        range_ms("gossip_heartbeat", self.gossip_heartbeat, 10, 60_000)?;
        range_ms("publish_retry_window", self.publish_retry_window, 0, 600_000)?;
        range_ms("sync_request_timeout", self.sync_request_timeout, 100, 600_000)?;
        range_ms("redial_backoff_min", self.redial_backoff_min, 10, 600_000)?;
        range_ms("redial_backoff_max", self.redial_backoff_max, 10, 3_600_000)?;
        range_ms("peer_ban_duration", self.peer_ban_duration, 0, 86_400_000)?;
        range_ms("idle_connection_timeout", self.idle_connection_timeout, 1_000, u64::MAX)?;
        if self.peers.len() > self.peers_max {
            return Err(ConfigError::TooManyPeers { count: self.peers.len(), max: self.peers_max });
        }
        let history = self.gossip_heartbeat.saturating_mul(self.gossip_history_length as u32);
        if self.gossip_duplicate_cache <= history {
            return Err(ConfigError::DuplicateCacheTooShort {
                cache: self.gossip_duplicate_cache,
                history,
            });
        }
        if self.redial_backoff_min > self.redial_backoff_max {
            return Err(ConfigError::BackoffOrder {
                min: self.redial_backoff_min,
                max: self.redial_backoff_max,
            });
        }
        if self.sync_response_bytes_max < self.gossip_bytes_max + SYNC_RESPONSE_OVERHEAD_BYTES {
            return Err(ConfigError::SyncResponseTooSmall {
                response: self.sync_response_bytes_max,
                gossip: self.gossip_bytes_max,
            });
        }
        Ok(())
    }

    /// Largest tx batch accepted from gossip: the wire ceiling, or the gossip limit if lower.
    pub(crate) fn tx_batch_bytes_max(&self) -> usize {
        TX_BATCH_BYTES_MAX.min(self.gossip_bytes_max)
    }

    /// Largest sync request accepted: a request for every tx of the largest block.
    pub(crate) fn sync_request_bytes_max(&self) -> usize {
        SYNC_REQUEST_BYTES_MAX
    }
}

fn range(field: &'static str, value: usize, min: u64, max: u64) -> Result<(), ConfigError> {
    let value = u64::try_from(value).unwrap_or(u64::MAX);
    if value < min || value > max {
        return Err(ConfigError::OutOfRange { field, value, min, max });
    }
    Ok(())
}

fn range_ms(field: &'static str, value: Duration, min: u64, max: u64) -> Result<(), ConfigError> {
    let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
    if ms < min || ms > max {
        return Err(ConfigError::OutOfRange { field, value: ms, min, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetworkConfig {
        let chain = ChainId::new("test-chain").unwrap();
        NetworkConfig::new(chain, "/ip4/127.0.0.1/tcp/0".parse().unwrap(), [7; 32])
    }

    #[test]
    fn defaults_are_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn zero_capacity_is_refused() {
        let mut c = config();
        c.events_capacity = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange { field: "events_capacity", .. })
        ));
    }

    #[test]
    fn duplicate_cache_must_outlive_the_message_cache() {
        let mut c = config();
        c.gossip_duplicate_cache = Duration::from_secs(1);
        assert!(matches!(c.validate(), Err(ConfigError::DuplicateCacheTooShort { .. })));
    }

    #[test]
    fn sync_response_must_hold_a_block() {
        let mut c = config();
        c.sync_response_bytes_max = c.gossip_bytes_max;
        assert!(matches!(c.validate(), Err(ConfigError::SyncResponseTooSmall { .. })));
    }

    #[test]
    fn too_many_peers_are_refused() {
        let mut c = config();
        c.peers_max = 1;
        c.peers = vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap(); 2];
        assert!(matches!(c.validate(), Err(ConfigError::TooManyPeers { count: 2, max: 1 })));
    }
}
