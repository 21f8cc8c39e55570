//! Counters of the network layer, for metrics. Written by the swarm task and the handle with
//! relaxed atomics (each counter is independent; no reader needs a consistent cut), read by
//! anyone through [`crate::NetworkHandle::stats`].

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! network_stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters; all monotonic except `peers_connected`, a gauge.
        #[derive(Debug, Default)]
        pub struct NetworkStats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`NetworkStats`] at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl NetworkStats {
            /// Reads every counter (each one atomically, not all at one instant).
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

network_stats! {
    /// Consensus messages received from gossip and decoded.
    consensus_in,
    /// Consensus messages published (including retried publishes that succeeded).
    consensus_out,
    /// Tx batches received from gossip and decoded.
    tx_batches_in,
    /// Tx batches published.
    tx_batches_out,
    /// Gossip messages and sync messages that failed to decode (rejected, peer penalised by
    /// gossipsub).
    decode_failures,
    /// Incoming tx batches dropped because the tx events channel was full.
    tx_batches_dropped,
    /// Tx broadcasts dropped because the tx command channel was full.
    tx_broadcasts_dropped,
    /// Times the consensus events channel was full and the swarm task waited for the node.
    consensus_backpressure,
    /// Publishes given up: no subscribed peer within the retry window, retry queue overflow,
    /// or all peer queues full.
    publish_failures,
    /// Publishes that found no subscribed peer and were queued for a retry.
    publish_retries,
    /// Publishes refused as duplicates of a message seen within the duplicate-cache window.
    publish_duplicates,
    /// Gossip validation results reported (by the network on decode, or by the node).
    validations_reported,
    /// Sync requests received from peers.
    sync_requests_in,
    /// Sync requests answered busy (queue full or too many pending).
    sync_requests_busy,
    /// Sync requests sent to peers.
    sync_requests_out,
    /// Sync requests sent that failed (timeout, connection closed, bad response).
    sync_requests_failed,
    /// Penalties the node reported.
    penalties,
    /// Peers banned after too many penalties.
    bans,
    /// Dial attempts to configured peers.
    dials,
    /// Connected peers (a gauge).
    peers_connected,
}

impl NetworkStats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }
}
