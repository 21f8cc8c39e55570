//! Transactions between the network and the mempool: gossiped batches in (signatures
//! batch-verified on rayon, off the async threads), newly admitted txs out (batched).

use super::sigverify::OwnedItem;
use super::Admission;
use crate::chain::{Chain, Source};
use crate::config::MempoolConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally_ledger::Tx;
use tally_network::{NetworkHandle, TxEvent, Verdict};
use tokio::sync::mpsc;

/// Counters of the tx ingress.
#[derive(Default)]
pub struct IngressStats {
    pub batches: AtomicU64,
    pub admitted: AtomicU64,
    pub refused: AtomicU64,
    pub bad_signatures: AtomicU64,
}

/// Gossiped batches taken together at most: whatever queued up while the previous ones
/// were verified, so that a node under load verifies in large batches.
const EVENTS_PER_ROUND_MAX: usize = 64;

/// Verifies and admits gossiped tx batches until the network stops.
pub async fn run_tx_ingress(
    admission: Arc<Admission>,
    net: NetworkHandle,
    mut rx: mpsc::Receiver<TxEvent>,
    stats: Arc<IngressStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        while events.len() < EVENTS_PER_ROUND_MAX {
            match rx.try_recv() {
                Ok(event) => events.push(event),
                Err(_) => break,
            }
        }
        let (sources, batches): (Vec<_>, Vec<Vec<Tx>>) =
            events.into_iter().map(|e| (e.from, e.txs)).unzip();
        let admission2 = admission.clone();
        let stats2 = stats.clone();
        let exec = admission.exec;
        let verdicts = exec.run(move || admission2.admit_batches(batches, &stats2)).await;
        let verdicts = verdicts.unwrap_or_default();
        for (i, from) in sources.into_iter().enumerate() {
            let verdict = verdicts.get(i).copied().unwrap_or(Verdict::Ignore);
            let _ = net.report_validation(&from, verdict).await;
            // Under node validation the peer forwarded only what it verified, so a bad
            // signature is its fault.
            if verdict == Verdict::Reject && from.awaiting_report {
                let _ = net.penalize(from.propagation_source).await;
            }
        }
    }
}

/// Verifies the signatures of all `batches` in one go, admits the good txs; returns the
/// verdict on each batch: accepted if every signature in it verified, rejected if one did
/// not, ignored if some of its txs were dropped unverified, for lack of mempool room or for
/// a nonce the mempool cannot take now (they are not forwarded: this node cannot vouch for
/// them).
impl Admission {
    fn admit_batches(&self, batches: Vec<Vec<Tx>>, stats: &IngressStats) -> Vec<Verdict> {
        let chain: &Chain = &self.chain;
        stats.batches.fetch_add(batches.len() as u64, Ordering::Relaxed);
        // Txs this node already has, or cannot admit now, need neither room nor a check.
        let (batches, unvouched): (Vec<_>, Vec<bool>) =
            chain.sift_gossip(batches).into_iter().map(|s| (s.txs, s.unvouched)).unzip();
        let total: usize = batches.iter().map(Vec::len).sum();
        let room = chain.claim_room(total, Source::Gossip);
        let batches: Vec<_> = cut_to_room(batches, room.granted())
            .into_iter()
            .zip(unvouched)
            .map(|((txs, cut), unvouched)| (txs, cut || unvouched))
            .collect();
        let dropped = total - room.granted();
        if dropped > 0 {
            self.metrics.refused_full("gossip", dropped);
        }
        let items: Vec<OwnedItem> = batches
            .iter()
            .flat_map(|(txs, _)| txs)
            .map(|(t, _)| OwnedItem {
                key: t.transfer.from,
                message: t.signing_bytes(chain.chain_id()),
                signature: t.signature,
            })
            .collect();
        let count = items.len();
        let started = std::time::Instant::now();
        let verdicts = self.sigverify.submit_blocking(items).wait_blocking();
        self.metrics.signature_batch("gossip", count, started.elapsed().as_secs_f64());
        if verdicts.len() != count {
            return vec![Verdict::Ignore; batches.len()]; // shutting down
        }
        let mut verdicts = verdicts.into_iter();
        let mut out = Vec::with_capacity(batches.len());
        for (txs, cut) in batches {
            let mut ok = true;
            for ((tx, hash), verdict) in txs.into_iter().zip(verdicts.by_ref()) {
                if verdict.is_err() || tx.check_stateless().is_err() {
                    ok = false;
                    stats.bad_signatures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Refusals are expected (the same tx arrives from several peers).
                match chain.insert(tx, hash, tally_ledger::TX_BYTES as u64) {
                    Ok(_) => stats.admitted.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.refused.fetch_add(1, Ordering::Relaxed),
                };
            }
            out.push(match (ok, cut) {
                (false, _) => Verdict::Reject,
                (true, true) => Verdict::Ignore,
                (true, false) => Verdict::Accept,
            });
        }
        out
    }
}

/// Keeps the first `room` txs, in order: whole batches while they fit, then the batch that
/// does not fit cut short and empty ones after it; each batch with whether it was cut.
fn cut_to_room<T>(batches: Vec<Vec<T>>, room: usize) -> Vec<(Vec<T>, bool)> {
    let mut left = room;
    batches
        .into_iter()
        .map(|mut txs| {
            let cut = txs.len() > left;
            txs.truncate(left);
            left -= txs.len();
            (txs, cut)
        })
        .collect()
}

/// Gossips txs admitted through RPC, in batches of at most `gossip_batch_txs_max` or every
/// `gossip_interval_ms`; and every `regossip_interval_ms` the oldest pending txs again.
pub async fn run_tx_gossip(
    chain: Arc<Chain>,
    c: MempoolConfig,
    net: NetworkHandle,
    mut rx: mpsc::Receiver<Tx>,
) {
    let batch_max = c.gossip_batch_txs_max.min(tally_network::wire::TX_BATCH_TXS_MAX as usize);
    let mut batch: Vec<Tx> = Vec::with_capacity(batch_max);
    let mut tick = tokio::time::interval(Duration::from_millis(c.gossip_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let regossip_every = Duration::from_millis(c.regossip_interval_ms.max(1));
    let mut regossip =
        tokio::time::interval_at(tokio::time::Instant::now() + regossip_every, regossip_every);
    regossip.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Biased: one fixed order of the branches, so that a run under the simulator
        // depends only on its seed.
        tokio::select! {
            biased;
            _ = regossip.tick(), if c.regossip_interval_ms > 0 => {
                let limit = c.regossip_txs_max.min(batch_max);
                let oldest = chain.oldest_pending(limit);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tally_crypto::{ChainId, Keypair};
    use tally_ledger::Transfer;

    fn txs(n: u64) -> Vec<Tx> {
        let (a, b) = (Keypair::derive_insecure("a"), Keypair::derive_insecure("b"));
        let chain = ChainId::new("t").unwrap();
        (0..n)
            .map(|nonce| {
                let transfer = Transfer { from: a.public(), to: b.public(), amount: 1, nonce };
                Tx::sign(transfer, &a, &chain)
            })
            .collect()
    }

    #[test]
    fn batches_beyond_the_room_are_cut_in_order() {
        let shape = |room| -> Vec<(usize, bool)> {
            cut_to_room(vec![txs(3), txs(2), txs(4)], room)
                .iter()
                .map(|(t, cut)| (t.len(), *cut))
                .collect()
        };
        assert_eq!(shape(100), [(3, false), (2, false), (4, false)]);
        assert_eq!(shape(9), [(3, false), (2, false), (4, false)]);
        assert_eq!(shape(4), [(3, false), (1, true), (0, true)]);
        assert_eq!(shape(5), [(3, false), (2, false), (0, true)]);
        assert_eq!(shape(0), [(0, true), (0, true), (0, true)]);
    }
}
