//! The node's config file (`HOME/config.toml`): every field, its default, and the checks
//! that reject impossible combinations before the node starts.

pub mod keys;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A human-readable name for this node, shown by `status`.
    pub moniker: String,
    /// Validate and vote (needs `keys/validator_key.json`); false runs a full node that
    /// follows the chain without voting.
    pub validator: bool,
    pub p2p: P2pConfig,
    pub rpc: RpcConfig,
    pub metrics: MetricsConfig,
    pub mempool: MempoolConfig,
    pub consensus: ConsensusConfig,
    pub snapshots: SnapshotsConfig,
    pub state_sync: StateSyncConfig,
    pub storage: StorageConfig,
    pub tx_index: TxIndexConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// libp2p listen address.
    pub listen_addr: String,
    /// Peers to dial and keep dialled, as `/ip4/A/tcp/P/p2p/PEER_ID`.
    pub peers: Vec<String>,
    /// Consensus messages queued from the network to the node; when full the network task
    /// waits (consensus messages are never dropped in favour of anything else).
    pub consensus_queue_max: usize,
    /// Tx batches queued from the network to the node; when full new batches are dropped
    /// and counted.
    pub tx_queue_max: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// JSON-RPC over HTTP and WebSocket, one port.
    pub listen_addr: SocketAddr,
    /// Largest request body accepted.
    pub body_bytes_max: u32,
    /// Largest response body produced.
    pub response_bytes_max: u32,
    /// Open connections at once; more are refused.
    pub connections_max: u32,
    /// Requests in one JSON-RPC batch; 0 disables batches.
    pub batch_len_max: u32,
    /// Transactions in one `broadcast_tx_batch` call.
    pub tx_batch_len_max: u32,
    /// How long `broadcast_tx_commit` waits for the tx to commit.
    pub tx_commit_timeout_ms: u64,
    /// `broadcast_tx_commit` calls waiting at once; more get an error (reason `busy`).
    pub tx_commit_waiters_max: usize,
    /// Subscriptions one WebSocket connection may hold; one more is refused with
    /// "Too many subscriptions on the connection".
    pub subscriptions_per_connection_max: u32,
    /// Committed blocks a subscriber may fall behind (the capacity of the node's event
    /// channel). A subscriber further behind is dropped with the reason "lagged"; the
    /// node never waits for a subscriber.
    pub subscription_lag_blocks_max: usize,
    /// Outgoing messages buffered per WebSocket connection (responses and notifications).
    pub ws_message_buffer_max: u32,
    /// How long a notification may wait for room in a full connection buffer before the
    /// subscription is dropped as a slow client (reason "slow_client").
    pub subscription_send_timeout_ms: u64,
    /// Serve the status page (`GET /` on the RPC address).
    pub status_page: bool,
    /// Threads of the RPC server's own tokio runtime. RPC never runs on the threads of the
    /// consensus driver and the network, so a flood of requests delays consensus only as
    /// much as the operating system's scheduler lets these threads take the CPU.
    pub worker_threads: u32,
    /// Threads for RPC methods that read the store (block, tx, account, commit).
    pub blocking_threads: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus metrics at `http://ADDR/metrics`.
    pub listen_addr: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen_addr: SocketAddr::from(([127, 0, 0, 1], 26660)) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Pending transactions kept; a new one beyond this is refused ("mempool is full"),
    /// before its signature is checked. A few blocks' worth: a deeper mempool only adds
    /// latency under overload (txs wait behind a longer queue) and memory.
    pub txs_max: usize,
    /// Pending transactions kept before transactions submitted over RPC are refused
    /// ("mempool is full"); the room above it, up to `txs_max`, is for transactions gossiped
    /// by peers, which their proposals will carry (see `Chain::claim_room`). Unset: half of
    /// `txs_max`. Under overload, clients are then pushed back before peers' txs are
    /// dropped: a dropped tx leaves a nonce gap, its sender's later txs cannot be admitted
    /// either, and the proposals carrying them must be fetched and verified when they come,
    /// on the consensus path (docs/performance.md). Set it to `txs_max` to keep no room.
    pub rpc_txs_max: Option<usize>,
    /// Pending transaction bytes kept; likewise.
    pub bytes_max: u64,
    /// Pending transactions of one sender.
    pub txs_per_sender_max: usize,
    /// New transactions are gossiped in batches of at most this many...
    pub gossip_batch_txs_max: usize,
    /// ...or after this long, whichever comes first.
    pub gossip_interval_ms: u64,
    /// Every this often, the oldest pending txs (up to `regossip_txs_max`) are gossiped
    /// again, so that a tx whose first gossip was lost (a full queue, a peer that got nonce
    /// n+1 before n, a node that never proposes) still reaches a proposer. 0 turns it off.
    pub regossip_interval_ms: u64,
    pub regossip_txs_max: usize,
}

impl MempoolConfig {
    /// Pending transactions beyond which RPC submissions are refused: `rpc_txs_max`, or
    /// half of `txs_max` (at least 1).
    pub fn rpc_limit(&self) -> usize {
        self.rpc_txs_max.unwrap_or(self.txs_max.div_ceil(2)).min(self.txs_max)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusConfig {
    /// Pause after a decision before the next height starts, to gather transactions and late
    /// precommits (CometBFT's timeout_commit); the decided block is written meanwhile, and
    /// the next height waits for the write if it takes longer. Local timing only: not part
    /// of consensus.
    pub timeout_commit_ms: u64,
    /// While a height does not advance, re-send this validator's latest proposal and votes
    /// this often, so peers that missed them (restart, dropped gossip) get them again.
    /// Keep it above the network's duplicate-cache time (5 s): gossipsub drops identical
    /// bytes seen within that window.
    pub rebroadcast_interval_ms: u64,
    /// A proposed block whose time is further ahead of this node's clock is judged invalid.
    /// Keeps a Byzantine proposer from pushing the chain's time out of reach.
    pub block_time_drift_max_ms: u64,
    /// Blocks asked for in one block-sync request.
    pub sync_batch_blocks: u32,
    /// How long a block-sync request may take before another peer is asked.
    pub sync_request_timeout_ms: u64,
}

/// Snapshots of the account state that this node writes, keeps and serves to peers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsConfig {
    /// Write a snapshot after every block whose height is a multiple of this (the issue's
    /// `snapshot_interval_blocks`); 0 writes none. Written off the consensus task.
    pub interval_blocks: u64,
    /// Snapshots kept in `data/snapshots/`; older ones are deleted after a new one is written.
    pub keep_recent: usize,
}

/// Starting from a peer's snapshot instead of replaying every block since genesis.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSyncConfig {
    /// On a node whose ledger holds no block yet: find a snapshot among the peers, check it
    /// against its certified header, restore it, then block-sync the rest.
    pub enable: bool,
    /// How long to look for snapshots (peers connecting, offers arriving) before falling back
    /// to block sync from genesis.
    pub discovery_timeout_ms: u64,
    /// After the first offers arrive, how long to wait for more peers' offers before choosing.
    pub discovery_settle_ms: u64,
    /// Chunk requests in flight at once, spread over the peers that offer the snapshot.
    pub chunk_requests_in_flight: usize,
    /// How long one chunk request may take before another peer is asked.
    pub chunk_request_timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Memory for the ledger database's page cache (redb), in MiB: 90% for reads, 10% for
    /// writes. The account state a node executes against is kept in memory apart from it;
    /// the cache serves RPC lookups and block sync. redb's own default is 1 GiB, which a
    /// node under load fills within minutes, so it is bounded here.
    pub cache_mib: u64,
}

/// The index of committed transfers by account, for `tx_search` (CometBFT's
/// `[tx_index]`). `tx`, the lookup by hash, works whatever this says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TxIndexConfig {
    /// "kv" keeps the index (data/tx_events/), "null" keeps none (and `tx_search`
    /// answers that indexing is off).
    pub indexer: String,
    /// Most candidates (index keys or txs) one search may examine before it fails asking
    /// for a narrower query; bounds the work of one call.
    pub scan_max: u64,
    /// The index's page cache, in MiB.
    pub cache_mib: u64,
}

impl Default for TxIndexConfig {
    fn default() -> Self {
        TxIndexConfig { indexer: "kv".into(), scan_max: 10_000_000, cache_mib: 64 }
    }
}

impl StorageConfig {
    pub fn cache_bytes(&self) -> usize {
        usize::try_from(self.cache_mib << 20).unwrap_or(usize::MAX)
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { cache_mib: 64 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `info,tally_network=debug`; RUST_LOG overrides it.
    pub filter: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            moniker: "tally".into(),
            validator: true,
            p2p: P2pConfig::default(),
            rpc: RpcConfig::default(),
            metrics: MetricsConfig::default(),
            mempool: MempoolConfig::default(),
            consensus: ConsensusConfig::default(),
            snapshots: SnapshotsConfig::default(),
            state_sync: StateSyncConfig::default(),
            storage: StorageConfig::default(),
            tx_index: TxIndexConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen_addr: "/ip4/127.0.0.1/tcp/26656".into(),
            peers: Vec::new(),
            consensus_queue_max: 4096,
            tx_queue_max: 1024,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 26657)),
            body_bytes_max: 8 << 20,
            response_bytes_max: 32 << 20,
            connections_max: 512,
            batch_len_max: 1024,
            tx_batch_len_max: 10_000,
            tx_commit_timeout_ms: 10_000,
            tx_commit_waiters_max: 10_000,
            subscriptions_per_connection_max: 16,
            subscription_lag_blocks_max: 64,
            ws_message_buffer_max: 1024,
            subscription_send_timeout_ms: 2_000,
            status_page: true,
            worker_threads: 1,
            blocking_threads: 2,
        }
    }
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            txs_max: 50_000,
            rpc_txs_max: None,
            bytes_max: 256 << 20,
            txs_per_sender_max: 10_000,
            gossip_batch_txs_max: 2_000,
            gossip_interval_ms: 20,
            regossip_interval_ms: 3_000,
            regossip_txs_max: 1_000,
        }
    }
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            timeout_commit_ms: 200,
            rebroadcast_interval_ms: 6_000,
            block_time_drift_max_ms: 10_000,
            sync_batch_blocks: 64,
            sync_request_timeout_ms: 5_000,
        }
    }
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig { interval_blocks: 1000, keep_recent: 2 }
    }
}

impl Default for StateSyncConfig {
    fn default() -> Self {
        StateSyncConfig {
            enable: false,
            discovery_timeout_ms: 60_000,
            discovery_settle_ms: 2_000,
            chunk_requests_in_flight: 4,
            chunk_request_timeout_ms: 10_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "info,libp2p_gossipsub=error".into(), json: false }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.validate().with_context(|| format!("checking {}", path.display()))?;
        Ok(config)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self).context("encoding config")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Rejects impossible combinations, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive: [(&str, u64); 19] = [
            ("p2p.consensus_queue_max", self.p2p.consensus_queue_max as u64),
            ("p2p.tx_queue_max", self.p2p.tx_queue_max as u64),
            ("rpc.body_bytes_max", self.rpc.body_bytes_max.into()),
            ("rpc.response_bytes_max", self.rpc.response_bytes_max.into()),
            ("rpc.connections_max", self.rpc.connections_max.into()),
            ("rpc.tx_batch_len_max", self.rpc.tx_batch_len_max.into()),
            ("rpc.worker_threads", self.rpc.worker_threads.into()),
            ("rpc.blocking_threads", self.rpc.blocking_threads.into()),
            ("rpc.tx_commit_waiters_max", self.rpc.tx_commit_waiters_max as u64),
            (
                "rpc.subscriptions_per_connection_max",
                self.rpc.subscriptions_per_connection_max.into(),
            ),
            ("rpc.subscription_lag_blocks_max", self.rpc.subscription_lag_blocks_max as u64),
            ("rpc.ws_message_buffer_max", self.rpc.ws_message_buffer_max.into()),
            ("rpc.subscription_send_timeout_ms", self.rpc.subscription_send_timeout_ms),
            ("mempool.txs_max", self.mempool.txs_max as u64),
            ("mempool.bytes_max", self.mempool.bytes_max),
            ("mempool.txs_per_sender_max", self.mempool.txs_per_sender_max as u64),
            ("mempool.gossip_batch_txs_max", self.mempool.gossip_batch_txs_max as u64),
            ("consensus.rebroadcast_interval_ms", self.consensus.rebroadcast_interval_ms),
            ("consensus.sync_batch_blocks", self.consensus.sync_batch_blocks.into()),
        ];
        for (field, value) in positive {
            if value == 0 {
                bail!("{field} must be greater than 0");
            }
        }
        if self.rpc.worker_threads > 64 || self.rpc.blocking_threads > 512 {
            bail!("rpc.worker_threads must be at most 64 and rpc.blocking_threads at most 512");
        }
        if self.mempool.txs_per_sender_max > self.mempool.txs_max {
            bail!("mempool.txs_per_sender_max must not exceed mempool.txs_max");
        }
        if self.mempool.rpc_txs_max.is_some_and(|n| n == 0 || n > self.mempool.txs_max) {
            bail!("mempool.rpc_txs_max must be between 1 and mempool.txs_max");
        }
        if self.mempool.regossip_interval_ms > 0
            && (self.mempool.regossip_interval_ms < 100 || self.mempool.regossip_txs_max == 0)
        {
            bail!("mempool.regossip_interval_ms must be 0 (off) or at least 100, with mempool.regossip_txs_max > 0");
        }
        if self.mempool.gossip_interval_ms == 0 || self.mempool.gossip_interval_ms > 10_000 {
            bail!("mempool.gossip_interval_ms must be between 1 and 10000");
        }
        if self.consensus.sync_batch_blocks > tally_network::wire::SYNC_BLOCKS_MAX {
            bail!(
                "consensus.sync_batch_blocks must be at most {}",
                tally_network::wire::SYNC_BLOCKS_MAX
            );
        }
        if self.consensus.sync_request_timeout_ms < 100 {
            bail!("consensus.sync_request_timeout_ms must be at least 100");
        }
        if !matches!(self.tx_index.indexer.as_str(), "kv" | "null") {
            bail!("tx_index.indexer must be \"kv\" or \"null\", not {:?}", self.tx_index.indexer);
        }
        if self.tx_index.scan_max == 0
            || self.tx_index.cache_mib == 0
            || self.tx_index.cache_mib > 1 << 20
        {
            bail!(
                "tx_index.scan_max must be positive and tx_index.cache_mib between 1 and 1048576"
            );
        }
        if self.storage.cache_mib == 0 || self.storage.cache_mib > 1 << 20 {
            bail!("storage.cache_mib must be between 1 and 1048576");
        }
        if self.rpc.tx_commit_timeout_ms == 0 {
            bail!("rpc.tx_commit_timeout_ms must be greater than 0");
        }
        if u64::from(self.rpc.body_bytes_max) < tally_ledger::TX_BYTES_MAX as u64 * 2 {
            bail!("rpc.body_bytes_max must fit at least one encoded transaction");
        }
        self.validate_combinations()
    }

    /// Limits that are each possible but impossible together.
    fn validate_combinations(&self) -> anyhow::Result<()> {
        if self.rpc.listen_addr == self.metrics.listen_addr && self.rpc.listen_addr.port() != 0 {
            bail!(
                "rpc.listen_addr and metrics.listen_addr must differ (both {})",
                self.rpc.listen_addr
            );
        }
        // A full batch of base64 txs (4/3 of their bytes, plus quotes and commas) must fit
        // in one request body, or rpc.tx_batch_len_max promises what the body limit refuses.
        let batch_body =
            u64::from(self.rpc.tx_batch_len_max) * (tally_ledger::TX_BYTES as u64 * 4 / 3 + 8);
        if batch_body > u64::from(self.rpc.body_bytes_max) {
            bail!(
                "rpc.tx_batch_len_max ({}) txs need about {batch_body} bytes, more than rpc.body_bytes_max ({})",
                self.rpc.tx_batch_len_max,
                self.rpc.body_bytes_max
            );
        }
        if self.rpc.subscriptions_per_connection_max > self.rpc.ws_message_buffer_max {
            bail!("rpc.subscriptions_per_connection_max must not exceed rpc.ws_message_buffer_max");
        }
        if self.rpc.tx_commit_timeout_ms > 600_000 {
            bail!("rpc.tx_commit_timeout_ms must be at most 600000 (10 minutes)");
        }
        if self.consensus.timeout_commit_ms > 60_000 {
            bail!("consensus.timeout_commit_ms must be at most 60000");
        }
        if self.consensus.sync_request_timeout_ms > 600_000 {
            bail!("consensus.sync_request_timeout_ms must be at most 600000");
        }
        if self.snapshots.interval_blocks > 0 && self.snapshots.keep_recent == 0 {
            bail!(
                "snapshots.keep_recent must be at least 1 while snapshots.interval_blocks is set"
            );
        }
        let sync = &self.state_sync;
        if sync.chunk_requests_in_flight == 0 || sync.chunk_requests_in_flight > 64 {
            bail!("state_sync.chunk_requests_in_flight must be between 1 and 64");
        }
        if sync.chunk_request_timeout_ms < 100 || sync.chunk_request_timeout_ms > 600_000 {
            bail!("state_sync.chunk_request_timeout_ms must be between 100 and 600000");
        }
        if sync.discovery_settle_ms > sync.discovery_timeout_ms {
            bail!("state_sync.discovery_settle_ms must not exceed state_sync.discovery_timeout_ms");
        }
        if self.log.filter.trim().is_empty() {
            bail!("log.filter must not be empty (use \"info\" for the default)");
        }
        Ok(())
    }
}

/// The files of a node's home folder.
#[derive(Clone, Debug)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis.json")
    }
    pub fn validator_key(&self) -> PathBuf {
        self.root.join("keys").join("validator_key.json")
    }
    pub fn node_key(&self) -> PathBuf {
        self.root.join("keys").join("node_key.json")
    }
    /// The event index (`tx_index.indexer = "kv"`).
    pub fn event_index(&self) -> PathBuf {
        self.data().join("tx_events")
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn ledger_db(&self) -> PathBuf {
        self.data().join("ledger.redb")
    }
    pub fn signing_record(&self) -> PathBuf {
        self.data().join("signing-record.redb")
    }
    /// The consensus write-ahead log of the height in progress (`wal.rs`).
    pub fn consensus_wal(&self) -> PathBuf {
        self.data().join("consensus.wal")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.data().join("snapshots")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_round_trips() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string_pretty(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back.rpc.listen_addr, c.rpc.listen_addr);
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = Config::default();
        c.mempool.txs_max = 0;
        assert!(c.validate().unwrap_err().to_string().contains("mempool.txs_max"));
        let mut c = Config::default();
        assert_eq!(c.mempool.rpc_limit(), c.mempool.txs_max / 2, "half of txs_max when unset");
        c.mempool.rpc_txs_max = Some(c.mempool.txs_max + 1);
        assert!(c.validate().unwrap_err().to_string().contains("mempool.rpc_txs_max"));
        c.mempool.txs_max = 1;
        c.mempool.txs_per_sender_max = 1;
        c.mempool.rpc_txs_max = None;
        c.validate().unwrap();
        assert_eq!(c.mempool.rpc_limit(), 1, "never 0");
        c.mempool.rpc_txs_max = Some(1);
        c.validate().unwrap();
        assert_eq!(c.mempool.rpc_limit(), 1);
        let mut c = Config::default();
        c.mempool.txs_per_sender_max = c.mempool.txs_max + 1;
        assert!(c.validate().unwrap_err().to_string().contains("txs_per_sender_max"));
    }

    #[test]
    fn impossible_combinations_name_their_fields() {
        let mut c = Config::default();
        c.metrics.listen_addr = c.rpc.listen_addr;
        assert!(c.validate().unwrap_err().to_string().contains("metrics.listen_addr"));
        let mut c = Config::default();
        c.rpc.body_bytes_max = 1 << 16;
        assert!(c.validate().unwrap_err().to_string().contains("rpc.tx_batch_len_max"));
        let mut c = Config::default();
        c.rpc.subscriptions_per_connection_max = 0;
        assert!(c.validate().unwrap_err().to_string().contains("subscriptions_per_connection_max"));
        let mut c = Config::default();
        c.rpc.subscription_lag_blocks_max = 0;
        assert!(c.validate().unwrap_err().to_string().contains("subscription_lag_blocks_max"));
        let mut c = Config::default();
        c.log.filter = " ".into();
        assert!(c.validate().unwrap_err().to_string().contains("log.filter"));
        let mut c = Config::default();
        c.snapshots.keep_recent = 0;
        assert!(c.validate().unwrap_err().to_string().contains("snapshots.keep_recent"));
        let mut c = Config::default();
        c.state_sync.chunk_requests_in_flight = 0;
        assert!(c.validate().unwrap_err().to_string().contains("chunk_requests_in_flight"));
        let mut c = Config::default();
        c.state_sync.discovery_settle_ms = c.state_sync.discovery_timeout_ms + 1;
        assert!(c.validate().unwrap_err().to_string().contains("discovery_settle_ms"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<Config>("no_such_field = 1").is_err());
    }
}
