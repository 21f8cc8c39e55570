//! What the network delivers to the node: three bounded channels, so that consensus traffic
//! never waits behind transactions and block sync never waits behind either.
//!
//! - consensus: consensus messages and peer (dis)connections; never dropped (backpressure).
//! - txs: gossiped tx batches; dropped and counted when the node falls behind.
//! - sync requests: a peer's request and a one-shot responder; answered busy when full.
//!
//! The capacities and drop rules are fields of [`crate::NetworkConfig`].

use crate::config::GossipValidation;
use crate::wire::{ConsensusMsg, SyncRequest, SyncResponse};
use libp2p::gossipsub::MessageId;
use libp2p::PeerId;
use std::sync::Arc;
use tally_ledger::Tx;
use tokio::sync::{mpsc, oneshot};

/// Identifies one received gossip message, for [`crate::NetworkHandle::report_validation`]
/// and [`crate::NetworkHandle::penalize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipRef {
    /// blake3 of the message bytes.
    pub message_id: MessageId,
    /// The peer that sent it to us (not necessarily its author).
    pub propagation_source: PeerId,
    /// Whether gossipsub still waits for the node's verdict ([`GossipValidation::ByNode`]);
    /// when false the network already accepted the message on decode and reporting is a
    /// no-op.
    pub awaiting_report: bool,
}

impl GossipRef {
    pub(crate) fn new(message_id: MessageId, source: PeerId, mode: GossipValidation) -> Self {
        GossipRef {
            message_id,
            propagation_source: source,
            awaiting_report: mode == GossipValidation::ByNode,
        }
    }
}

/// The node's verdict on a gossip message received under
/// [`GossipValidation::ByNode`] ([`crate::NetworkHandle::report_validation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Checked and good: forwarded to other peers.
    Accept,
    /// Checked and bad: dropped, and the peer that sent it is penalised by gossipsub.
    Reject,
    /// Not checked or not wanted (stale, or no room for it): dropped, held against no one.
    Ignore,
}

/// An event on the consensus channel.
#[derive(Debug)]
pub enum ConsensusEvent {
    /// A decoded consensus message. Its signatures are not checked yet: that is the node's.
    Message { msg: ConsensusMsg, from: GossipRef },
    /// The peer is connected and subscribed to the consensus topic: from now on a
    /// consensus broadcast reaches it (a good moment to re-send the current height's own
    /// messages, once the duplicate-cache window allows it).
    PeerConnected(PeerId),
    /// The last connection to a peer announced by `PeerConnected` closed (the network
    /// redials configured peers).
    PeerDisconnected(PeerId),
}

/// A decoded tx batch (at most `TX_BATCH_TXS_MAX` txs, signatures unchecked).
#[derive(Debug)]
pub struct TxEvent {
    pub txs: Vec<Tx>,
    pub from: GossipRef,
}

/// A block sync request from a peer. Answer it with [`SyncResponder::respond`]; dropping
/// the responder answers `SyncResponse::Error`. The peer gives up after its request timeout.
#[derive(Debug)]
pub struct InboundSyncRequest {
    pub peer: PeerId,
    pub request: SyncRequest,
    pub responder: SyncResponder,
}

/// The way back to the peer that sent an [`InboundSyncRequest`].
#[derive(Debug)]
pub struct SyncResponder {
    pub(crate) tx: oneshot::Sender<SyncResponse>,
    /// Held until the request is answered or dropped, so that a [`crate::sim::SimPort`] can
    /// count the requests its node has not answered yet (the swarm task counts its own).
    pub(crate) _pending: Option<Arc<()>>,
}

impl SyncResponder {
    /// Sends the answer. The network trims `SyncResponse::Blocks` to `SYNC_BLOCKS_MAX` blocks
    /// and to the response byte limit (dropping blocks from the end), so the node may pass
    /// everything it has. Returns false if the request is gone (timed out, peer left).
    pub fn respond(self, response: SyncResponse) -> bool {
        self.tx.send(response).is_ok()
    }
}

/// The receiving ends the node reads from. Each is bounded (see [`crate::NetworkConfig`]).
/// When the swarm task stops, every channel yields `None` after its buffered events.
#[derive(Debug)]
pub struct NetworkEvents {
    /// Consensus messages and peer (dis)connections; never dropped. Read it promptly: when
    /// it is full the network stops reading from peers.
    pub consensus: mpsc::Receiver<ConsensusEvent>,
    /// Gossiped tx batches; dropped and counted (`tx_batches_dropped`) when full.
    pub txs: mpsc::Receiver<TxEvent>,
    /// Block sync requests from peers; answered busy when full.
    pub sync_requests: mpsc::Receiver<InboundSyncRequest>,
}
