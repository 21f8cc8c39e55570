//! Transactions between the network and the mempool: gossiped batches in (signatures
//! batch-verified on rayon, off the async threads), newly admitted txs out (batched).

use crate::shared::Shared;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally_crypto::SignedItem;
use tally_ledger::Tx;
use tally_network::{NetworkHandle, TxEvent};
use tokio::sync::mpsc;

/// Counters of the tx ingress.
#[derive(Default)]
pub struct IngressStats {
    pub batches: AtomicU64,
    pub admitted: AtomicU64,
    pub refused: AtomicU64,
    pub bad_signatures: AtomicU64,
}

/// Verifies and admits gossiped tx batches until the network stops.
pub async fn run_tx_ingress(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<TxEvent>,
    stats: Arc<IngressStats>,
) {
    while let Some(event) = rx.recv().await {
        let shared2 = shared.clone();
        let stats2 = stats.clone();
        let txs = event.txs;
        let verdict =
            tokio::task::spawn_blocking(move || admit_batch(&shared2, txs, &stats2)).await;
        let all_signatures_ok = verdict.unwrap_or(false);
        // Under node validation the peer forwarded only what it verified, so a bad
        // signature is its fault.
        let _ = shared.network.report_validation(&event.from, all_signatures_ok).await;
        if !all_signatures_ok && event.from.awaiting_report {
            let _ = shared.network.penalize(event.from.propagation_source).await;
        }
    }
}

/// Returns whether every signature verified.
fn admit_batch(shared: &Shared, txs: Vec<Tx>, stats: &IngressStats) -> bool {
    stats.batches.fetch_add(1, Ordering::Relaxed);
    let messages: Vec<Vec<u8>> = txs.iter().map(|t| t.signing_bytes(&shared.chain_id)).collect();
    let items: Vec<SignedItem<'_>> = txs
        .iter()
        .zip(&messages)
        .map(|(t, m)| SignedItem { key: &t.transfer.from, message: m, signature: &t.signature })
        .collect();
    let started = std::time::Instant::now();
    let verdicts = shared.verifier.verify_many(&items);
    shared.metrics.signature_batch("gossip", items.len(), started.elapsed().as_secs_f64());
    let mut all_ok = true;
    for (tx, verdict) in txs.into_iter().zip(verdicts) {
        if verdict.is_err() || tx.check_stateless().is_err() {
            all_ok = false;
            stats.bad_signatures.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match shared.admit_verified(tx) {
            Ok(_) => stats.admitted.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.refused.fetch_add(1, Ordering::Relaxed),
        };
    }
    all_ok
}

/// Gossips txs admitted through RPC, in batches of at most `gossip_batch_txs_max` or every
/// `gossip_interval_ms`; and every `regossip_interval_ms` the oldest pending txs again.
pub async fn run_tx_gossip(shared: Arc<Shared>, mut rx: mpsc::Receiver<Tx>) {
    let c = shared.config.mempool.clone();
    let net = shared.network.clone();
    let batch_max = c.gossip_batch_txs_max.min(tally_network::wire::TX_BATCH_TXS_MAX as usize);
    let mut batch: Vec<Tx> = Vec::with_capacity(batch_max);
    let mut tick = tokio::time::interval(Duration::from_millis(c.gossip_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let regossip_every = Duration::from_millis(c.regossip_interval_ms.max(1));
    let mut regossip =
        tokio::time::interval_at(tokio::time::Instant::now() + regossip_every, regossip_every);
    regossip.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = regossip.tick(), if c.regossip_interval_ms > 0 => {
                let limit = c.regossip_txs_max.min(batch_max);
                let oldest = shared.mempool.lock().oldest(limit);
                if !oldest.is_empty() {
                    let mut oldest = oldest;
                    flush(&net, &mut oldest);
                }
            }
            tx = rx.recv() => match tx {
                Some(tx) => {
                    batch.push(tx);
                    if batch.len() >= batch_max {
                        flush(&net, &mut batch);
                    }
                }
                None => {
                    flush(&net, &mut batch);
                    return;
                }
            },
            _ = tick.tick() => flush(&net, &mut batch),
        }
    }
}

fn flush(net: &NetworkHandle, batch: &mut Vec<Tx>) {
    if batch.is_empty() {
        return;
    }
    // A full network queue drops the batch (counted by the network); the txs are still in
    // this node's mempool.
    let _ = net.broadcast_txs(std::mem::take(batch));
}
