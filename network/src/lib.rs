//! tally-network: the libp2p swarm of a tally node.
//!
//! - Gossip (gossipsub) of consensus messages and tx batches, on two topics per chain,
//!   tuned for small validator sets (mesh sizes, content-hash ids, size limit, validation).
//! - Block sync over request-response, with a size-capped borsh codec.
//! - The wire format with explicit limits ([`wire`]).
//! - Explicit peering: configured peers are dialled and redialled with backoff.
//!
//! The node talks to it through [`spawn`], which returns a [`NetworkHandle`] (commands) and
//! [`NetworkEvents`] (bounded channels: consensus, txs, sync requests). This crate decides
//! nothing about consensus: it moves bytes, decodes them under limits, and reports.
//! [`sim::endpoint`] gives the same handle and events without a swarm, for a deterministic
//! simulator to play the network through a [`sim::SimPort`].

mod behaviour;
mod codec;
mod config;
mod error;
mod events;
mod handle;
mod peering;
mod publish;
pub mod sim;
mod stats;
mod swarm;
mod task;
pub mod wire;

pub use behaviour::BehaviourError;
pub use codec::fit_response;
pub use config::{
    gossip_bytes_for_block, ConfigError, GossipValidation, NetworkConfig, CONSENSUS_OVERHEAD_BYTES,
};
pub use error::{NetworkError, RequestError};
pub use events::{
    ConsensusEvent, GossipRef, InboundSyncRequest, NetworkEvents, SyncResponder, TxEvent, Verdict,
};
pub use handle::{CertifiedBlocks, NetworkHandle, PeerInfo};
pub use stats::{NetworkStats, StatsSnapshot};
pub use swarm::spawn;
pub use wire::{CompactBlock, ConsensusMsg, SyncRequest, SyncResponse, TxBatch, WireError};

pub use libp2p::gossipsub::MessageId;
pub use libp2p::{Multiaddr, PeerId};
