//! The node's handle on the swarm task: cheap to clone, every call a message on a bounded
//! channel.
//!
//! Messages are encoded here, on the caller's task, so that a message too large to send is
//! the caller's error at once and the swarm task only moves bytes. Consensus broadcasts and
//! control calls share one channel and wait when it is full (backpressure, never a drop);
//! tx broadcasts have their own channel and are dropped, counted, when it is full, so txs can
//! never hold up consensus.

use crate::config::NetworkConfig;
use crate::error::{NetworkError, RequestError};
use crate::events::{GossipRef, Verdict};
use crate::publish::TopicKind;
use crate::stats::{NetworkStats, StatsSnapshot};
use crate::wire::{
    self, ConsensusMsg, Message, SyncRequest, SyncResponse, TxBatch, SYNC_BLOCKS_MAX,
};
use libp2p::{Multiaddr, PeerId};
use std::sync::Arc;
use std::time::Duration;
use tally_consensus::{BlockHash, CommitCertificate, Height};
use tally_ledger::{Block, SnapshotOffer, Tx};
use tokio::sync::{mpsc, oneshot};

/// Blocks with their certificates, as a sync response carries them.
pub type CertifiedBlocks = Vec<(Block, CommitCertificate)>;

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// The peer subscribed to the consensus topic (it will get our consensus messages).
    pub consensus_subscribed: bool,
    /// The peer subscribed to the tx topic.
    pub txs_subscribed: bool,
    /// Bytes of gossip messages received from it since it connected.
    pub received_bytes: u64,
}

/// What the handle asks of the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        kind: TopicKind,
        data: Vec<u8>,
    },
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
    },
    ReportValidation {
        gossip: GossipRef,
        verdict: Verdict,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    AddPeer {
        addr: Multiaddr,
    },
    Penalize {
        peer: PeerId,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// The node's side of the network. Clone it freely; the swarm task stops on
/// [`NetworkHandle::shutdown`] or when every handle is dropped.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) tx_commands: mpsc::Sender<Vec<u8>>,
    pub(crate) stats: Arc<NetworkStats>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) gossip_bytes_max: usize,
    pub(crate) tx_batch_bytes_max: usize,
    pub(crate) sync_request_timeout: Duration,
}

impl NetworkHandle {
    pub(crate) fn new(
        config: &NetworkConfig,
        local_peer_id: PeerId,
        stats: Arc<NetworkStats>,
        commands: mpsc::Sender<Command>,
        tx_commands: mpsc::Sender<Vec<u8>>,
    ) -> Self {
        NetworkHandle {
            commands,
            tx_commands,
            stats,
            local_peer_id,
            gossip_bytes_max: config.gossip_bytes_max,
            tx_batch_bytes_max: config.tx_batch_bytes_max(),
            sync_request_timeout: config.sync_request_timeout,
        }
    }

    async fn send(&self, command: Command) -> Result<(), NetworkError> {
        self.commands.send(command).await.map_err(|_| NetworkError::Stopped)
    }

    /// Gossips a consensus message to every peer subscribed to the consensus topic. Waits
    /// while the command queue is full. If no peer is subscribed yet, the message waits in
    /// the network for `publish_retry_window`. An identical message sent again within
    /// `gossip_duplicate_cache` is not resent (counted in `publish_duplicates`).
    pub async fn broadcast_consensus(&self, msg: ConsensusMsg) -> Result<(), NetworkError> {
        let data = wire::encode(&Message::Consensus(msg), self.gossip_bytes_max)?;
        self.send(Command::Publish { kind: TopicKind::Consensus, data }).await
    }

    /// Gossips a tx batch (at most `TX_BATCH_TXS_MAX` txs). Never waits: if the tx queue is
    /// full the batch is dropped, counted in `tx_broadcasts_dropped`, and
    /// `NetworkError::TxQueueFull` returned.
    pub fn broadcast_txs(&self, txs: Vec<Tx>) -> Result<(), NetworkError> {
        let data = wire::encode(&Message::TxBatch(TxBatch(txs)), self.tx_batch_bytes_max)?;
        self.tx_commands.try_send(data).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                NetworkStats::inc(&self.stats.tx_broadcasts_dropped);
                NetworkError::TxQueueFull
            }
            mpsc::error::TrySendError::Closed(_) => NetworkError::Stopped,
        })
    }

    /// Sends one sync request to `peer` and waits for its answer; `SyncResponse::Error`
    /// comes back as [`RequestError::Refused`].
    async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, RequestError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Request { peer, request, reply };
        self.commands.send(command).await.map_err(|_| RequestError::Stopped)?;
        // The swarm times the request out itself; this margin only guards against a stuck task.
        let limit = self.sync_request_timeout + Duration::from_secs(1);
        let timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        match tokio::time::timeout(limit, answer)
            .await
            .map_err(|_| RequestError::Timeout { timeout_ms })?
            .map_err(|_| RequestError::Stopped)??
        {
            SyncResponse::Error(reason) => Err(RequestError::Refused { reason }),
            response => Ok(response),
        }
    }

    /// Asks `peer` for the committed blocks `from`, `from + 1`, ... (`count` is capped at
    /// `SYNC_BLOCKS_MAX`), each with its certificate. The answer may hold fewer blocks (the
    /// peer has no more, or they did not fit one response); checking that they are
    /// consecutive and certified is the caller's job.
    pub async fn request_blocks(
        &self,
        peer: PeerId,
        from: Height,
        count: u32,
    ) -> Result<CertifiedBlocks, RequestError> {
        let count = count.min(SYNC_BLOCKS_MAX);
        match self.request(peer, SyncRequest::Blocks { from, count }).await? {
            SyncResponse::Blocks(blocks) if blocks.len() > count as usize => {
                Err(RequestError::TooManyBlocks { got: blocks.len(), asked: count })
            }
            SyncResponse::Blocks(blocks) => Ok(blocks),
            other => Err(RequestError::WrongResponse { got: response_name(&other) }),
        }
    }

    /// Asks `peer` for its newest snapshots. Nothing in them is checked: verify each offer
    /// (`tally_ledger::verify_offer`) before using it.
    pub async fn request_snapshots(
        &self,
        peer: PeerId,
    ) -> Result<Vec<SnapshotOffer>, RequestError> {
        match self.request(peer, SyncRequest::Snapshots).await? {
            SyncResponse::Snapshots(offers) => Ok(offers),
            other => Err(RequestError::WrongResponse { got: response_name(&other) }),
        }
    }

    /// Asks `peer` for chunk `index` of its snapshot of `height`. The bytes are unchecked:
    /// `tally_ledger::Restore::add_chunk` checks them against the manifest.
    pub async fn request_chunk(
        &self,
        peer: PeerId,
        height: Height,
        index: u32,
    ) -> Result<Vec<u8>, RequestError> {
        match self.request(peer, SyncRequest::SnapshotChunk { height, index }).await? {
            SyncResponse::SnapshotChunk(bytes) => Ok(bytes),
            other => Err(RequestError::WrongResponse { got: response_name(&other) }),
        }
    }

    /// Asks `peer` for the txs at `indices` of the block `block_hash` proposed at `height`.
    /// The answer has exactly one tx per index; checking them against the compact block's
    /// hashes is the caller's job.
    pub async fn request_block_txs(
        &self,
        peer: PeerId,
        height: Height,
        block_hash: BlockHash,
        indices: Vec<u32>,
    ) -> Result<Vec<Tx>, RequestError> {
        let asked = indices.len();
        match self.request(peer, SyncRequest::BlockTxs { height, block_hash, indices }).await? {
            SyncResponse::BlockTxs(txs) if txs.len() != asked => {
                Err(RequestError::WrongCount { got: txs.len(), asked })
            }
            SyncResponse::BlockTxs(txs) => Ok(txs),
            other => Err(RequestError::WrongResponse { got: response_name(&other) }),
        }
    }

    /// Reports the node's verdict on a gossip message received under
    /// `GossipValidation::ByNode` (see [`Verdict`]). A no-op for messages the network
    /// already accepted on decode (`gossip.awaiting_report == false`).
    pub async fn report_validation(
        &self,
        gossip: &GossipRef,
        verdict: Verdict,
    ) -> Result<(), NetworkError> {
        if !gossip.awaiting_report {
            return Ok(());
        }
        self.send(Command::ReportValidation { gossip: gossip.clone(), verdict }).await
    }

    /// The connected peers and their topic subscriptions.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Peers { reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)
    }

    /// The addresses the node listens on (empty until the listener is up, just after spawn).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ListenAddrs { reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)
    }

    /// Adds an address to the explicit peer list: dialled now, redialled when it drops.
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.send(Command::AddPeer { addr }).await
    }

    /// Reports misbehaviour by `peer` (e.g. the propagation source of a message with a bad
    /// signature: honest peers forward only what they validated). After `peer_penalties_max`
    /// penalties the peer is disconnected and banned for `peer_ban_duration`.
    pub async fn penalize(&self, peer: PeerId) -> Result<(), NetworkError> {
        self.send(Command::Penalize { peer }).await
    }

    /// Stops the swarm task and waits until it has stopped; event channels then end.
    pub async fn shutdown(&self) -> Result<(), NetworkError> {
        let (done, stopped) = oneshot::channel();
        self.send(Command::Shutdown { done }).await?;
        stopped.await.map_err(|_| NetworkError::Stopped)
    }

    /// Byzantine mock (the garbage sender): publishes `data` on the consensus topic without
    /// encoding or checking it.
    #[cfg(feature = "testing")]
    pub async fn publish_raw_consensus(&self, data: Vec<u8>) -> Result<(), NetworkError> {
        self.send(Command::Publish { kind: TopicKind::Consensus, data }).await
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The live counters, for a metrics exporter that reads them on scrape.
    pub fn stats_handle(&self) -> Arc<NetworkStats> {
        Arc::clone(&self.stats)
    }
}

fn response_name(response: &SyncResponse) -> &'static str {
    match response {
        SyncResponse::Blocks(_) => "blocks",
        SyncResponse::Error(_) => "error",
        SyncResponse::Snapshots(_) => "snapshots",
        SyncResponse::SnapshotChunk(_) => "snapshot chunk",
        SyncResponse::BlockTxs(_) => "block txs",
    }
}
