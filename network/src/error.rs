//! Errors of the network's API. Bad input from peers never shows up here: it is rejected,
//! counted in [`crate::NetworkStats`] and logged. What is left are the node's own mistakes
//! (a config, a message too large to send) and operating errors (the task stopped, a sync
//! request that failed or timed out).

use crate::behaviour::BehaviourError;
use crate::config::ConfigError;
use crate::wire::WireError;
use libp2p::Multiaddr;

/// Why the network could not start, or could not take a command.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network config: {0}")]
    Config(#[from] ConfigError),
    #[error("identity seed refused: {0}")]
    Identity(String),
    #[error("cannot build the transport: {0}")]
    Transport(String),
    #[error(transparent)]
    Behaviour(#[from] BehaviourError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("spawn must be called from within a tokio runtime")]
    NoRuntime,
    #[error("gossipsub refused to subscribe to {topic}: {reason}")]
    Subscribe { topic: String, reason: String },
    #[error("message cannot be sent: {0}")]
    Wire(#[from] WireError),
    #[error("the tx broadcast queue is full; the batch was dropped")]
    TxQueueFull,
    #[error("the network task has stopped")]
    Stopped,
}

/// Why a sync request (blocks, snapshots, a chunk) to a peer failed. All are operating errors: try another peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("{max} sync requests are already in flight")]
    TooManyInFlight { max: usize },
    #[error("no response within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("request failed: {reason}")]
    Failed { reason: String },
    #[error("peer refused: {reason}")]
    Refused { reason: String },
    #[error("peer sent {got} blocks for a request of {asked}")]
    TooManyBlocks { got: usize, asked: u32 },
    #[error("peer sent {got} txs for a request of {asked}")]
    WrongCount { got: usize, asked: usize },
    #[error("peer answered with a {got} response")]
    WrongResponse { got: &'static str },
}
