//! `tally start`: the one file that names every room and wires them. It opens the ledger,
//! starts the network, then builds the rooms (chain, notify, admission, consensus, RPC,
//! metrics) and runs until SIGINT/SIGTERM or a fatal error.
//!
//! The arrows between the rooms (who may `use` whom) are checked by `.ci/rooms`:
//! ```text
//! cli ──► run ──► rpc ──► admission ──► chain ──► config, metrics
//!          │       └────► notify ◄─────┘ │
//!          └──► consensus ──► chain, notify, config, metrics
//! ```

use crate::admission::ingress::{run_tx_gossip, run_tx_ingress, IngressStats};
use crate::admission::{Admission, GOSSIP_QUEUE_MAX};
use crate::chain::Chain;
use crate::chain::Search;
use crate::config::{Config, Home};
use crate::consensus::signing_record::SigningRecord;
use crate::consensus::state_sync::StateSync;
use crate::consensus::{Driver, DriverConfig};
use crate::exec::Exec;
use crate::metrics::{Metrics, StateGauges};
use crate::notify::{Notify, NotifyLimits};
use crate::rpc::{NodeInfo, RpcContext};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tally_consensus::{Core, CoreConfig};
use tally_crypto::{Verifier, VerifierConfig};
use tally_ledger::{Genesis, Ledger, SnapshotDir};
use tally_network::{NetworkConfig, NetworkHandle};

pub async fn run(home: Home) -> anyhow::Result<()> {
    let config = Config::load(&home.config())?;
    init_logging(&config);
    let genesis = Genesis::load(&home.genesis()).context("loading genesis.json")?;
    genesis.validate().context("checking genesis.json")?;
    let validators = genesis.validator_set().context("genesis validators")?;
    let validator_key = if config.validator {
        Some(crate::config::keys::load_key(&home.validator_key())?)
    } else {
        None
    };
    if let Some(key) = &validator_key {
        if validators.index_of(&key.public()).is_none() {
            tracing::warn!(key = %key.public(), "this validator's key is not in the genesis validator set: following without voting");
        }
    }
    let node_key = crate::config::keys::load_key(&home.node_key())?;
    std::fs::create_dir_all(home.data()).context("creating the data folder")?;

    let mut ledger =
        Ledger::open_with_cache(&home.ledger_db(), genesis.clone(), config.storage.cache_bytes())
            .context("opening the ledger")?;
    let snapshot_dir = SnapshotDir::open(home.snapshots()).context("opening data/snapshots")?;
    tracing::info!(
        chain = %genesis.chain_id,
        height = ledger.tip().map_or(0, |t| t.0 .0),
        base = ledger.store().base().ok().flatten().map_or(0, |h| h.0),
        validators = validators.len(),
        "ledger opened"
    );

    let mut net_config = NetworkConfig::new(
        genesis.chain_id.clone(),
        config.p2p.listen_addr.parse().context("p2p.listen_addr")?,
        node_key.seed(),
    );
    net_config.peers = config
        .p2p
        .peers
        .iter()
        .map(|p| p.parse().with_context(|| format!("p2p.peers: {p}")))
        .collect::<anyhow::Result<_>>()?;
    net_config.events_capacity = config.p2p.consensus_queue_max;
    net_config.tx_events_capacity = config.p2p.tx_queue_max;
    // The node verifies every message before gossipsub forwards it, so a peer only ever
    // relays what it checked, and a bad message is its sender's fault.
    net_config.consensus_validation = tally_network::GossipValidation::ByNode;
    net_config.tx_validation = tally_network::GossipValidation::ByNode;
    let (net, mut events) = tally_network::spawn(net_config).context("starting the network")?;

    // The metrics are served from here on, state sync included; the gauges that read the
    // rooms join once the rooms exist.
    let metrics = Arc::new(Metrics::for_chain(genesis.chain_id.as_str()));
    let gauges: Arc<std::sync::OnceLock<crate::metrics::ReadGauges>> = Arc::default();
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics.listen_addr)
        .await
        .with_context(|| format!("binding metrics to {}", config.metrics.listen_addr))?;
    let read_gauges: crate::metrics::ReadGauges = {
        let gauges = gauges.clone();
        Arc::new(move || match gauges.get() {
            Some(read) => read(),
            None => Box::pin(async { StateGauges::default() }),
        })
    };
    tokio::spawn(crate::metrics::serve(metrics_listener, metrics.clone(), read_gauges));

    let verifier = Arc::new(Verifier::new(VerifierConfig::default()));
    if config.state_sync.enable {
        if let Some((height, _)) = ledger.tip() {
            tracing::info!(%height, "state sync skipped: the ledger already holds blocks");
        } else {
            let sync = StateSync {
                config: &config.state_sync,
                genesis: &genesis,
                verifier: &verifier,
                net: &net,
                events: &mut events,
                snapshots: Some(&snapshot_dir),
            };
            metrics.state_syncing.set(1);
            let synced = sync.run(&mut ledger).await;
            metrics.state_syncing.set(0);
            synced.context("state sync")?;
        }
    }
    let tip = ledger.tip();
    let info = NodeInfo {
        peer_id: net.local_peer_id().to_string(),
        node_key: node_key.public(),
        listen_addr: config.p2p.listen_addr.clone(),
        moniker: config.moniker.clone(),
        validator_key: validator_key.as_ref().map(|k| k.public()),
    };
    let (gossip_tx, gossip_rx) = tokio::sync::mpsc::channel(GOSSIP_QUEUE_MAX);
    let rooms = Rooms::with_metrics(
        &config,
        ledger,
        verifier,
        info,
        net.clone(),
        gossip_tx,
        Exec::Threads,
        metrics,
    )?;
    let _ = gauges.set(rooms.gauges());

    let mut core_config = CoreConfig::new(genesis.chain_id.clone());
    core_config.timeouts = genesis.params.timeouts;
    let signer =
        validator_key.clone().map(|k| Box::new(k) as Box<dyn tally_consensus::Signer + Send>);
    let mut core = Core::new(core_config, validators, signer).context("consensus config")?;
    let record = match &validator_key {
        Some(_) => {
            let path = home.signing_record();
            let record = SigningRecord::open(&path)
                .with_context(|| format!("opening the signing record {}", path.display()))?;
            let from = tip.map_or(tally_consensus::Height(1), |t| t.0.next());
            let restored = core.restore_signed(record.from_height(from)?);
            if restored > 0 {
                tracing::info!(restored, "signing record loaded");
            }
            Some(record)
        }
        None => None,
    };
    // The log only saves time after a restart: a validator whose log cannot be opened runs
    // without it (its signing record keeps it from signing twice).
    let wal = match &validator_key {
        Some(_) => match crate::consensus::wal::Wal::open(&home.consensus_wal()) {
            Ok(wal) => Some(wal),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot open the consensus log; running without it");
                rooms.metrics.wal_failures.inc();
                None
            }
        },
        None => None,
    };

    let rpc_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.rpc.worker_threads as usize)
        .max_blocking_threads(config.rpc.blocking_threads as usize)
        .thread_name("tally-rpc")
        .enable_all()
        .build()
        .context("starting the RPC runtime")?;
    let (rpc_handle, rpc_addr) =
        crate::rpc::start(rooms.rpc.clone(), rpc_runtime.handle().clone()).await?;
    tracing::info!(rpc = %rpc_addr, p2p = %config.p2p.listen_addr, peer_id = %net.local_peer_id(), "node started");

    let ingress_stats = Arc::new(IngressStats::default());
    let tx_events = std::mem::replace(&mut events.txs, tokio::sync::mpsc::channel(1).1);
    tokio::spawn(run_tx_ingress(rooms.admission.clone(), net.clone(), tx_events, ingress_stats));
    let mempool_config = config.mempool.clone();
    tokio::spawn(run_tx_gossip(rooms.chain.clone(), mempool_config, net.clone(), gossip_rx));
    let indexer_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if config.tx_index.indexer == "kv" {
        let cache = usize::try_from(config.tx_index.cache_mib << 20).unwrap_or(usize::MAX);
        let index = tally_ledger::EventIndex::open(&home.event_index(), cache)
            .with_context(|| format!("opening {}", home.event_index().display()))?;
        let _ = rooms.search.attach(index);
        crate::chain::search::spawn_follower(rooms.search.clone(), indexer_stop.clone())
            .context("starting the indexer thread")?;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let driver_config = DriverConfig {
        consensus: config.consensus.clone(),
        snapshots: config.snapshots.clone(),
        proposer: validator_key.as_ref().map(|k| k.public()),
        exec: Exec::Threads,
        clock: crate::exec::system_clock(),
        #[cfg(feature = "sim")]
        bug: None,
    };
    let driver = Driver::new(
        rooms.chain.clone(),
        rooms.notify.clone(),
        rooms.metrics.clone(),
        driver_config,
        core,
        record,
        wal,
        net.clone(),
        Some(snapshot_dir),
    );
    let mut driver_task = tokio::spawn(driver.run(events, stop_rx));

    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
            match tokio::time::timeout(Duration::from_secs(5), &mut driver_task).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(anyhow::anyhow!("driver task failed: {e}")),
                Err(_) => Ok(()),
            }
        }
        result = &mut driver_task => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.context("consensus driver stopped")),
            Err(e) => Err(anyhow::anyhow!("driver task failed: {e}")),
        },
    };
    let _ = rpc_handle.stop();
    indexer_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // A runtime may not be dropped from async code: let its threads wind down on their own.
    rpc_runtime.shutdown_background();
    let _ = tokio::time::timeout(Duration::from_secs(2), net.shutdown()).await;
    if let Err(e) = &outcome {
        tracing::error!(error = %format!("{e:#}"), "node stopped");
    }
    outcome
}

/// The rooms of a running node, built in the order of their arrows. Tests and fuzz targets
/// build them too, to drive the RPC without a consensus task.
pub struct Rooms {
    pub metrics: Arc<Metrics>,
    pub chain: Arc<Chain>,
    pub notify: Arc<Notify>,
    pub admission: Arc<Admission>,
    pub rpc: Arc<RpcContext>,
    pub search: Arc<Search>,
    net: NetworkHandle,
}

impl Rooms {
    /// `gossip` is the sending side of the admission room's gossip queue (its receiver goes
    /// to [`run_tx_gossip`]).
    pub fn new(
        config: &Config,
        ledger: Ledger,
        verifier: Arc<Verifier>,
        info: NodeInfo,
        net: NetworkHandle,
        gossip: tokio::sync::mpsc::Sender<tally_ledger::Tx>,
    ) -> anyhow::Result<Rooms> {
        Rooms::with_exec(config, ledger, verifier, info, net, gossip, Exec::Threads)
    }

    /// [`Rooms::new`] with blocking work run as `exec` says (the simulator: inline).
    pub fn with_exec(
        config: &Config,
        ledger: Ledger,
        verifier: Arc<Verifier>,
        info: NodeInfo,
        net: NetworkHandle,
        gossip: tokio::sync::mpsc::Sender<tally_ledger::Tx>,
        exec: Exec,
    ) -> anyhow::Result<Rooms> {
        let metrics = Arc::new(Metrics::for_chain(ledger.genesis().chain_id.as_str()));
        Rooms::with_metrics(config, ledger, verifier, info, net, gossip, exec, metrics)
    }

    /// [`Rooms::with_exec`] reporting to `metrics` (made before the rooms, so that state
    /// sync is seen in them).
    #[allow(clippy::too_many_arguments)]
    pub fn with_metrics(
        config: &Config,
        ledger: Ledger,
        verifier: Arc<Verifier>,
        info: NodeInfo,
        net: NetworkHandle,
        gossip: tokio::sync::mpsc::Sender<tally_ledger::Tx>,
        exec: Exec,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Rooms> {
        let chain = Arc::new(Chain::new(ledger, &config.mempool, verifier, metrics.clone()));
        let set = chain.validators();
        metrics.validators.set(set.len() as i64);
        metrics.validators_power.set(i64::try_from(set.total_power().0).unwrap_or(i64::MAX));
        let limits = NotifyLimits {
            waiters_max: config.rpc.tx_commit_waiters_max,
            events_max: config.rpc.subscription_lag_blocks_max,
        };
        let notify = Arc::new(Notify::new(limits, metrics.clone()));
        let admission =
            Admission::start(chain.clone(), notify.clone(), gossip, metrics.clone(), exec)
                .context("starting the signature verification thread")?;
        let admission = Arc::new(admission);
        let search = Arc::new(Search::new(chain.clone(), config.tx_index.scan_max));
        let rpc = Arc::new(RpcContext::new(
            admission.clone(),
            chain.reader(),
            search.clone(),
            notify.clone(),
            metrics.clone(),
            config.rpc.clone(),
            info,
            net.clone(),
        ));
        Ok(Rooms { metrics, chain, notify, admission, rpc, search, net })
    }

    /// What the metrics' state gauges read at each scrape.
    pub fn gauges(&self) -> crate::metrics::ReadGauges {
        let (reader, notify) = (self.chain.reader(), self.notify.clone());
        let (admission, rpc, net) = (self.admission.clone(), self.rpc.clone(), self.net.clone());
        Arc::new(move || {
            let (reader, notify) = (reader.clone(), notify.clone());
            let (admission, rpc, net) = (admission.clone(), rpc.clone(), net.clone());
            Box::pin(async move {
                let (mempool_txs, mempool_bytes) = reader.mempool_size();
                let stats = net.stats();
                let peers = net.peers().await.unwrap_or_default();
                StateGauges {
                    height: reader.tip_height().map(|h| h.0),
                    round: notify.consensus().map(|s| s.round.0),
                    mempool_txs,
                    mempool_bytes,
                    peers: peers.len(),
                    peer_bytes: peers
                        .iter()
                        .map(|p| (p.peer_id.to_string(), p.received_bytes))
                        .collect(),
                    gossip_txs_dropped: admission.gossip_dropped(),
                    net_decode_failures: stats.decode_failures,
                    gossip_tx_batches_dropped: stats.tx_batches_dropped,
                    catching_up: notify.catching_up(),
                    subscriptions: rpc.subscriptions_open(),
                }
            })
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.log.filter.clone()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if config.log.json { builder.json().try_init() } else { builder.try_init() };
}
