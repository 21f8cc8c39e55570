//! Prometheus metrics at `http://<metrics.listen_addr>/metrics`: OpenMetrics text, or the
//! classic Prometheus text format 0.0.4 when the scraper asks for `text/plain` and not for
//! OpenMetrics (`Accept`), which `promtool check metrics` reads. Every series carries the
//! `chain_id` label, as CometBFT's do.
//!
//! Counters and histograms are updated where things happen (the rooms hold an
//! `Arc<Metrics>`); gauges that mirror state (height, mempool, peers) are refreshed on each
//! scrape from a [`StateGauges`] that the node's wiring (`run.rs`) reads from the rooms.
//! This room imports no other: every room may import it.

use futures::future::BoxFuture;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Metrics {
    registry: Registry,
    /// CometBFT's consensus metrics: the set, the validators missing from the last
    /// certificate, those caught equivocating at this height, state sync, and bytes
    /// received by peer (`peer_id`).
    pub validators: Gauge,
    pub validators_power: Gauge,
    pub missing_validators: Gauge,
    pub missing_validators_power: Gauge,
    pub byzantine_validators: Gauge,
    pub byzantine_validators_power: Gauge,
    pub state_syncing: Gauge,
    pub peer_receive_bytes: Family<Labels, Counter>,
    /// The peers `peer_receive_bytes` has a series for: those of peers no longer connected
    /// are removed at the next scrape, so the label set follows the connected peers.
    peer_series: parking_lot::Mutex<std::collections::HashSet<String>>,
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
    pub bad_synced_blocks: Counter,
    pub snapshots_written: Counter,
    pub snapshot_height: Gauge,
    pub gossip_txs_dropped: Gauge,
    pub net_decode_failures: Gauge,
    /// Gossiped tx batches the network dropped because the node's tx queue was full.
    pub gossip_tx_batches_dropped: Gauge,
    /// Time spent in each consensus step, by `step` (propose, prevote, precommit, commit).
    pub step_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Rounds started after round 0 (a round that did not commit).
    pub round_changes: Counter,
    pub block_bytes: Histogram,
    /// Signature batches verified, by `source` (rpc, gossip): size and time.
    pub signature_batch_size: Family<Labels, Histogram, fn() -> Histogram>,
    pub signature_batch_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub catching_up: Gauge,
    /// JSON-RPC calls and error responses by `method` (unknown names are counted as
    /// `unknown`, so a client cannot grow the label set).
    pub rpc_requests: Family<Labels, Counter>,
    pub rpc_errors: Family<Labels, Counter>,
    pub rpc_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Requests refused because `rpc.connections_max` connections were open.
    pub rpc_connections_refused: Counter,
    pub subscriptions: Gauge,
    pub subscriptions_opened: Counter,
    pub subscriptions_dropped: Family<Labels, Counter>,
    pub tx_refused_syncing: Counter,
    /// Txs refused unverified because the mempool had no room, by source (rpc, gossip).
    pub tx_refused_full: Family<Labels, Counter>,
    /// Gossiped txs dropped before their signatures were checked, by `reason`: `pending`
    /// (in the mempool, or a second copy), `nonce` (a nonce the mempool cannot take: used,
    /// or after a gap).
    pub gossip_txs_skipped: Family<Labels, Counter>,
    /// Compact proposals received, by how their block was rebuilt (`mempool`: every tx was
    /// in the mempool; `fetched`: some were fetched from a peer; `failed`: not rebuilt, the
    /// fetch failed or the proposal was beyond the window of blocks kept).
    pub compact_proposals: Family<Labels, Counter>,
    /// Txs of compact proposals fetched from peers (missing from the mempool).
    pub proposal_txs_fetched: Counter,
    /// Proposals and votes this validator newly signed (recorded in its signing record).
    pub signed_messages: Counter,
    /// Consensus log entries replayed at startup, bytes cut off its tail, write failures.
    pub wal_replayed: Counter,
    pub wal_cut_bytes: Counter,
    pub wal_failures: Counter,
}

/// Label pairs; the values come from fixed sets (method names, step names, reasons).
pub type Labels = Vec<(&'static str, String)>;

fn step_buckets() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

fn batch_size_buckets() -> Histogram {
    Histogram::new([1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 10000.0])
}

fn batch_seconds_buckets() -> Histogram {
    Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
}

fn rpc_seconds_buckets() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_registry(Registry::with_prefix("tally"))
    }

    /// Metrics whose every series carries `chain_id`.
    pub fn for_chain(chain_id: &str) -> Metrics {
        let labels = [(Cow::Borrowed("chain_id"), Cow::Owned(chain_id.to_string()))];
        Metrics::with_registry(Registry::with_prefix_and_labels("tally", labels.into_iter()))
    }

    fn with_registry(mut registry: Registry) -> Metrics {
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
            bad_synced_blocks: Counter::default(),
            snapshots_written: Counter::default(),
            snapshot_height: Gauge::default(),
            gossip_txs_dropped: Gauge::default(),
            net_decode_failures: Gauge::default(),
            gossip_tx_batches_dropped: Gauge::default(),
            step_seconds: Family::new_with_constructor(step_buckets),
            round_changes: Counter::default(),
            block_bytes: Histogram::new([
                1024.0, 16384.0, 131072.0, 524288.0, 1048576.0, 2097152.0, 4194304.0,
            ]),
            signature_batch_size: Family::new_with_constructor(batch_size_buckets),
            signature_batch_seconds: Family::new_with_constructor(batch_seconds_buckets),
            catching_up: Gauge::default(),
            rpc_requests: Family::default(),
            rpc_errors: Family::default(),
            rpc_seconds: Family::new_with_constructor(rpc_seconds_buckets),
            rpc_connections_refused: Counter::default(),
            subscriptions: Gauge::default(),
            subscriptions_opened: Counter::default(),
            subscriptions_dropped: Family::default(),
            tx_refused_syncing: Counter::default(),
            tx_refused_full: Family::default(),
            gossip_txs_skipped: Family::default(),
            compact_proposals: Family::default(),
            proposal_txs_fetched: Counter::default(),
            signed_messages: Counter::default(),
            wal_replayed: Counter::default(),
            wal_cut_bytes: Counter::default(),
            wal_failures: Counter::default(),
            validators: Gauge::default(),
            validators_power: Gauge::default(),
            missing_validators: Gauge::default(),
            missing_validators_power: Gauge::default(),
            byzantine_validators: Gauge::default(),
            byzantine_validators_power: Gauge::default(),
            state_syncing: Gauge::default(),
            peer_receive_bytes: Family::default(),
            peer_series: Default::default(),
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
            "Time to write a committed block to the ledger (one fsynced redb write transaction, then its tx index batch)",
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
            "bad_synced_blocks",
            "Blocks served by a peer during block sync that did not verify (the peer is penalized)",
            m.bad_synced_blocks.clone(),
        );
        registry.register(
            "snapshots_written",
            "State snapshots written to data/snapshots",
            m.snapshots_written.clone(),
        );
        registry.register(
            "snapshot_height",
            "Height of the newest snapshot written (0: none yet)",
            m.snapshot_height.clone(),
        );
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
        registry.register(
            "gossip_tx_batches_dropped",
            "Gossiped tx batches dropped unread because the node's tx queue was full",
            m.gossip_tx_batches_dropped.clone(),
        );
        m.register_operability(&mut registry);
        m.register_crash_safety(&mut registry);
        m.register_cometbft(&mut registry);
        Metrics { registry, ..m }
    }

    /// The signing record and the consensus log (issue 5).
    /// CometBFT's consensus metrics that tally had no counterpart for.
    fn register_cometbft(&self, r: &mut Registry) {
        r.register("consensus_validators", "Validators in the set", self.validators.clone());
        r.register(
            "consensus_validators_power",
            "Total voting power of the set",
            self.validators_power.clone(),
        );
        r.register(
            "consensus_missing_validators",
            "Validators whose precommit is not in the certificate of the last committed block",
            self.missing_validators.clone(),
        );
        r.register(
            "consensus_missing_validators_power",
            "Voting power of the missing validators",
            self.missing_validators_power.clone(),
        );
        r.register(
            "consensus_byzantine_validators",
            "Validators this node caught equivocating at the current height",
            self.byzantine_validators.clone(),
        );
        r.register(
            "consensus_byzantine_validators_power",
            "Voting power of the byzantine validators",
            self.byzantine_validators_power.clone(),
        );
        r.register(
            "statesync_syncing",
            "1 while the node restores a snapshot by state sync",
            self.state_syncing.clone(),
        );
        r.register(
            "p2p_peer_receive_bytes",
            "Bytes of gossip and sync messages received, by peer",
            self.peer_receive_bytes.clone(),
        );
    }

    fn register_crash_safety(&self, r: &mut Registry) {
        r.register(
            "signed_messages",
            "Proposals and votes newly signed by this validator (each fsynced to the signing record first)",
            self.signed_messages.clone(),
        );
        r.register(
            "wal_replayed",
            "Consensus log entries (messages received, timeouts) replayed at startup",
            self.wal_replayed.clone(),
        );
        r.register(
            "wal_cut_bytes",
            "Bytes of a torn or corrupt consensus log tail cut off at startup",
            self.wal_cut_bytes.clone(),
        );
        r.register(
            "wal_failures",
            "Consensus log writes that failed (the node then runs without the log until restarted)",
            self.wal_failures.clone(),
        );
    }

    /// The metrics of issue 8 (consensus steps, blocks, signatures, sync, RPC, subscriptions).
    fn register_operability(&self, r: &mut Registry) {
        r.register("step_seconds", "Time spent in a consensus step", self.step_seconds.clone());
        r.register("round_changes", "Rounds started after round 0", self.round_changes.clone());
        r.register("block_bytes", "Encoded bytes per committed block", self.block_bytes.clone());
        r.register(
            "signature_batch_size",
            "Signatures per verified batch",
            self.signature_batch_size.clone(),
        );
        r.register(
            "signature_batch_seconds",
            "Time to verify a signature batch",
            self.signature_batch_seconds.clone(),
        );
        r.register("catching_up", "1 while the node block-syncs", self.catching_up.clone());
        r.register("rpc_requests", "JSON-RPC calls by method", self.rpc_requests.clone());
        r.register("rpc_errors", "JSON-RPC error responses by method", self.rpc_errors.clone());
        r.register("rpc_seconds", "JSON-RPC call time by method", self.rpc_seconds.clone());
        r.register(
            "rpc_connections_refused",
            "RPC requests refused at rpc.connections_max",
            self.rpc_connections_refused.clone(),
        );
        r.register("subscriptions", "Open WebSocket subscriptions", self.subscriptions.clone());
        r.register(
            "subscriptions_opened",
            "WebSocket subscriptions accepted",
            self.subscriptions_opened.clone(),
        );
        r.register(
            "subscriptions_dropped",
            "Subscriptions dropped by the node, by reason",
            self.subscriptions_dropped.clone(),
        );
        r.register(
            "tx_refused_syncing",
            "Submitted txs refused while the node was catching up",
            self.tx_refused_syncing.clone(),
        );
        r.register(
            "tx_refused_full",
            "Txs refused before their signatures were checked because the mempool had no room",
            self.tx_refused_full.clone(),
        );
        r.register(
            "gossip_txs_skipped",
            "Gossiped txs dropped before their signatures were checked (pending: in the mempool or a second copy; nonce: used, or after a gap)",
            self.gossip_txs_skipped.clone(),
        );
        r.register(
            "compact_proposals",
            "Compact proposals received, by how their block was rebuilt (mempool, fetched; failed: not rebuilt)",
            self.compact_proposals.clone(),
        );
        r.register(
            "proposal_txs_fetched",
            "Txs of compact proposals fetched from peers because the mempool lacked them",
            self.proposal_txs_fetched.clone(),
        );
    }

    pub fn compact_proposal(&self, rebuilt: &'static str) {
        self.compact_proposals.get_or_create(&vec![("rebuilt", rebuilt.to_string())]).inc();
    }

    pub fn refused_full(&self, source: &'static str, count: usize) {
        self.tx_refused_full
            .get_or_create(&vec![("source", source.to_string())])
            .inc_by(count as u64);
    }

    pub fn gossip_txs_skipped(&self, pending: u64, nonce: u64) {
        for (reason, n) in [("pending", pending), ("nonce", nonce)] {
            if n > 0 {
                let labels = vec![("reason", reason.to_string())];
                self.gossip_txs_skipped.get_or_create(&labels).inc_by(n);
            }
        }
    }

    pub fn subscription_dropped(&self, reason: &'static str) {
        self.subscriptions_dropped.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    /// Records one verified signature batch from `source` ("rpc" or "gossip").
    pub fn signature_batch(&self, source: &'static str, size: usize, seconds: f64) {
        self.signature_batches().observe(source, size, seconds);
    }

    /// The signature-batch histograms, for a thread of its own (they share state).
    pub fn signature_batches(&self) -> SignatureBatches {
        SignatureBatches {
            size: self.signature_batch_size.clone(),
            seconds: self.signature_batch_seconds.clone(),
        }
    }

    /// Refreshes the state gauges and renders the registry.
    pub fn render(&self, state: &StateGauges) -> String {
        if let Some(h) = state.height {
            self.height.set(h as i64);
        }
        if let Some(round) = state.round {
            self.round.set(i64::from(round));
        }
        self.mempool_txs.set(state.mempool_txs as i64);
        self.mempool_bytes.set(state.mempool_bytes as i64);
        self.peers.set(state.peers as i64);
        self.gossip_txs_dropped.set(state.gossip_txs_dropped as i64);
        self.net_decode_failures.set(state.net_decode_failures as i64);
        self.gossip_tx_batches_dropped.set(state.gossip_tx_batches_dropped as i64);
        self.catching_up.set(i64::from(state.catching_up));
        self.subscriptions.set(state.subscriptions as i64);
        {
            // The network counts from a peer's connection on; a peer that disconnected loses
            // its series, so a reconnected one starts a new one from zero.
            let mut series = self.peer_series.lock();
            series.retain(|peer| {
                let connected = state.peer_bytes.iter().any(|(p, _)| p == peer);
                if !connected {
                    self.peer_receive_bytes.remove(&vec![("peer_id", peer.clone())]);
                }
                connected
            });
            for (peer, bytes) in &state.peer_bytes {
                series.insert(peer.clone());
                let labels = vec![("peer_id", peer.clone())];
                let counter = self.peer_receive_bytes.get_or_create(&labels);
                if *bytes > counter.get() {
                    counter.inc_by(bytes - counter.get());
                }
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out = "# encoding failed\n".into();
        }
        out
    }
}

/// The state the gauges mirror, read from the rooms at each scrape.
#[derive(Debug, Default, Clone)]
pub struct StateGauges {
    pub height: Option<u64>,
    pub round: Option<u32>,
    pub mempool_txs: usize,
    pub mempool_bytes: u64,
    pub peers: usize,
    pub gossip_txs_dropped: u64,
    pub net_decode_failures: u64,
    pub gossip_tx_batches_dropped: u64,
    pub catching_up: bool,
    pub subscriptions: usize,
    /// Bytes of gossip received from each connected peer since it connected.
    pub peer_bytes: Vec<(String, u64)>,
}

/// Reads the [`StateGauges`] for one scrape.
pub type ReadGauges = Arc<dyn Fn() -> BoxFuture<'static, StateGauges> + Send + Sync>;

/// Scrapes served at once at most; a connection beyond it waits in the listener's backlog.
pub const SCRAPES_MAX: usize = 16;

/// Serves `GET /metrics` until the process ends, at most [`SCRAPES_MAX`] at once. Requests
/// are read under a size and time limit; anything else gets 404.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, read: ReadGauges) {
    let scrapes = Arc::new(tokio::sync::Semaphore::new(SCRAPES_MAX));
    loop {
        let Ok(permit) = scrapes.clone().acquire_owned().await else { return };
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let (metrics, read_gauges) = (metrics.clone(), read.clone());
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
                let body = metrics.render(&read_gauges().await);
                let (body, content_type) = if wants_classic_text(&request) {
                    (classic_text(&body), "text/plain; version=0.0.4; charset=utf-8")
                } else {
                    (body, "application/openmetrics-text; version=1.0.0; charset=utf-8")
                };
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
            };
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.write_all(response.as_bytes()))
                    .await;
            drop(permit);
        });
    }
}

/// Whether the request's `Accept` asks for the classic text format: it names `text/plain`
/// and not OpenMetrics (Prometheus asks for both, and gets OpenMetrics).
fn wants_classic_text(request: &str) -> bool {
    request.lines().any(|line| {
        let Some((name, value)) = line.split_once(':') else { return false };
        let value = value.to_ascii_lowercase();
        name.trim().eq_ignore_ascii_case("accept")
            && value.contains("text/plain")
            && !value.contains("application/openmetrics-text")
    })
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics text: no `# EOF` or
/// `# UNIT` lines, counters described under their sample name (`*_total`), info metrics as
/// gauges.
pub fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters: Vec<String> = Vec::new();
    let mut infos: Vec<String> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name.to_string());
            } else if let Some(name) = rest.strip_suffix(" info") {
                infos.push(name.to_string());
            }
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# TYPE ", "# HELP "].into_iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            if counters.iter().any(|c| c == name) {
                let tail = if p == "# TYPE " { "counter" } else { tail };
                Some(format!("{p}{name}_total {tail}"))
            } else if infos.iter().any(|c| c == name) {
                let tail = if p == "# TYPE " { "gauge" } else { tail };
                Some(format!("{p}{name}_info {tail}"))
            } else {
                None
            }
        });
        match described {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `tally_signature_batch_size` and `tally_signature_batch_seconds`, by `source`.
#[derive(Clone)]
pub struct SignatureBatches {
    size: Family<Labels, Histogram, fn() -> Histogram>,
    seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

impl SignatureBatches {
    pub fn observe(&self, source: &'static str, size: usize, seconds: f64) {
        let labels = vec![("source", source.to_string())];
        self.size.get_or_create(&labels).observe(size as f64);
        self.seconds.get_or_create(&labels).observe(seconds);
    }
}
