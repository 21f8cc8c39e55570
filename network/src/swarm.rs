//! Starting the network: the identity, the transport (TCP + noise + yamux), the behaviour,
//! the listener, the topic subscriptions, the channels, and the swarm task on tokio.

use crate::behaviour::{Behaviour, Topics};
use crate::config::NetworkConfig;
use crate::error::NetworkError;
use crate::events::NetworkEvents;
use crate::handle::NetworkHandle;
use crate::stats::NetworkStats;
use crate::task::{Channels, SwarmTask};
use libp2p::{identity, noise, tcp, yamux, Swarm};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Starts the swarm task on the current tokio runtime and returns the node's two ends: the
/// handle (commands) and the event receivers. Listens on `config.listen_addr` and starts
/// dialling `config.peers` at once. Must be called from within a tokio runtime.
pub fn spawn(config: NetworkConfig) -> Result<(NetworkHandle, NetworkEvents), NetworkError> {
    config.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetworkError::NoRuntime)?;
    // `ed25519_from_bytes` zeroes the buffer it is given; hand it a copy.
    let mut seed = config.identity_seed;
    let keypair = identity::Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| NetworkError::Identity(e.to_string()))?;
    let stats = Arc::new(NetworkStats::default());
    let topics = Topics::new(&config.chain_id);
    let mut swarm = build_swarm(keypair, &config, Arc::clone(&stats))?;

    swarm.listen_on(config.listen_addr.clone()).map_err(|e| NetworkError::Listen {
        addr: config.listen_addr.clone(),
        reason: e.to_string(),
    })?;
    for topic in [&topics.consensus, &topics.txs] {
        swarm.behaviour_mut().gossipsub.subscribe(topic).map_err(|e| NetworkError::Subscribe {
            topic: topic.to_string(),
            reason: e.to_string(),
        })?;
    }

    let (commands_tx, commands_rx) = mpsc::channel(config.commands_capacity);
    let (tx_commands_tx, tx_commands_rx) = mpsc::channel(config.tx_commands_capacity);
    let (consensus_tx, consensus_rx) = mpsc::channel(config.events_capacity);
    let (txs_tx, txs_rx) = mpsc::channel(config.tx_events_capacity);
    let (sync_tx, sync_rx) = mpsc::channel(config.sync_requests_capacity);

    let local_peer_id = *swarm.local_peer_id();
    let handle =
        NetworkHandle::new(&config, local_peer_id, Arc::clone(&stats), commands_tx, tx_commands_tx);
    let events = NetworkEvents { consensus: consensus_rx, txs: txs_rx, sync_requests: sync_rx };
    let channels = Channels {
        commands: commands_rx,
        tx_commands: tx_commands_rx,
        consensus: consensus_tx,
        txs: txs_tx,
        sync_requests: sync_tx,
    };
    tracing::info!(peer_id = %local_peer_id, listen = %config.listen_addr, "network starting");
    let task = SwarmTask::new(swarm, config, topics, stats, channels);
    runtime.spawn(task.run());
    Ok((handle, events))
}

fn build_swarm(
    keypair: identity::Keypair,
    config: &NetworkConfig,
    stats: Arc<NetworkStats>,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let behaviour = Behaviour::new(&keypair, config, stats)?;
    // yamux 0.13's defaults suit large sync responses: per-stream windows grow with the
    // measured bandwidth up to a connection-wide 1 GiB, with read-driven backpressure.
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| NetworkError::Transport(e.to_string()))?;
    let builder = match builder.with_behaviour(|_| behaviour) {
        Ok(builder) => builder,
        Err(never) => match never {},
    };
    let idle = config.idle_connection_timeout;
    Ok(builder.with_swarm_config(|c| c.with_idle_connection_timeout(idle)).build())
}
