//! Prometheus metrics at `http://<metrics.listen_addr>/metrics` (OpenMetrics text).
//!
//! Counters and histograms are updated where things happen (the driver, the ingress);
//! gauges that mirror state (height, mempool, peers) are refreshed on each scrape.

use crate::shared::Shared;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Metrics {
    registry: Registry,
    pub height: Gauge,
    pub round: Gauge,
    pub mempool_txs: Gauge,
    pub mempool_bytes: Gauge,
    pub peers: Gauge,
    pub blocks_committed: Counter,
    pub txs_committed: Counter,
    pub block_txs: Histogram,
    pub block_interval_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub bad_consensus_messages: Counter,
    pub bad_blocks: Counter,
    pub evidence: Counter,
    pub synced_blocks: Counter,
    pub gossip_txs_dropped: Gauge,
    pub net_decode_failures: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tally");
        let m = Metrics {
            height: Gauge::default(),
            round: Gauge::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            peers: Gauge::default(),
            blocks_committed: Counter::default(),
            txs_committed: Counter::default(),
            block_txs: Histogram::new([0.0, 1.0, 10.0, 100.0, 1000.0, 5000.0, 20000.0]),
            block_interval_seconds: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
            ]),
            commit_seconds: Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            bad_consensus_messages: Counter::default(),
            bad_blocks: Counter::default(),
            evidence: Counter::default(),
            synced_blocks: Counter::default(),
            gossip_txs_dropped: Gauge::default(),
            net_decode_failures: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("height", "Latest committed height", m.height.clone());
        registry.register("round", "Consensus round of the current height", m.round.clone());
        registry.register("mempool_txs", "Transactions in the mempool", m.mempool_txs.clone());
        registry.register("mempool_bytes", "Bytes of the mempool", m.mempool_bytes.clone());
        registry.register("peers", "Connected peers", m.peers.clone());
        registry.register("blocks_committed", "Blocks committed", m.blocks_committed.clone());
        registry.register("txs_committed", "Transactions committed", m.txs_committed.clone());
        registry.register("block_txs", "Transactions per committed block", m.block_txs.clone());
        registry.register(
            "block_interval_seconds",
            "Time between consecutive commits",
            m.block_interval_seconds.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time to write a block to the ledger",
            m.commit_seconds.clone(),
        );
        registry.register(
            "bad_consensus_messages",
            "Consensus messages dropped because they did not verify",
            m.bad_consensus_messages.clone(),
        );
        registry.register("bad_blocks", "Proposed blocks judged invalid", m.bad_blocks.clone());
        registry.register("evidence", "Equivocations detected", m.evidence.clone());
        registry.register("synced_blocks", "Blocks applied by block sync", m.synced_blocks.clone());
        registry.register(
            "gossip_txs_dropped",
            "Admitted txs not gossiped because the gossip queue was full",
            m.gossip_txs_dropped.clone(),
        );
        registry.register(
            "net_decode_failures",
            "Network messages that did not decode",
            m.net_decode_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Refreshes the state gauges and renders the registry.
    pub async fn render(&self, shared: &Shared) -> String {
        if let Some(h) = shared.tip_height() {
            self.height.set(h.0 as i64);
        }
        if let Some(s) = shared.consensus.read().as_ref() {
            self.round.set(i64::from(s.round.0));
        }
        let (txs, bytes) = shared.mempool_size();
        self.mempool_txs.set(txs as i64);
        self.mempool_bytes.set(bytes as i64);
        self.peers.set(shared.network.peers().await.map_or(0, |p| p.len() as i64));
        self.gossip_txs_dropped.set(shared.gossip_dropped.load(Ordering::Relaxed) as i64);
        self.net_decode_failures.set(shared.network.stats().decode_failures as i64);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out = "# encoding failed\n".into();
        }
        out
    }
}

/// Serves `GET /metrics` until the process ends. Requests are read under a size and time
/// limit; anything else gets 404.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = stream.read(&mut buf[len..]).await.ok()?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Some(())
            })
            .await;
            if !matches!(read, Ok(Some(()))) {
                return;
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let response = if request.starts_with("GET /metrics ") {
                let body = shared.metrics.render(&shared).await;
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
            };
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.write_all(response.as_bytes()))
                    .await;
        });
    }
}
