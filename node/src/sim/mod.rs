//! The real node under deterministic simulation (`sim` feature).
//!
//! N nodes run their own driver, mempool, admission and ledger, the code of `tally start`,
//! in one process: one thread, tokio's paused clock (time moves only when every task waits),
//! one seeded generator. Their ledgers and signing records are redb on [`SimDisk`]s, whose
//! power can be cut at any point of a write (keeping what was made durable and a torn part
//! of the rest); their networks are [`tally_network::sim`] ports, and the world in this
//! file plays every link: latency, jitter, loss, duplication, reordering, partitions healed
//! at GST. Clients submit transfers through the admission path the RPC uses
//! (`commit_waiter_for` + `submit_tx`, as `broadcast_tx_commit`). Byzantine validators run
//! the node's code with the consensus simulator's sending behaviours
//! ([`tally_consensus::sim::byzantine::Actor`]); a lying peer answers block sync with
//! forged blocks.
//!
//! What is simulated and how, and why no simulation crate: ARCHITECTURE.md, "Simulation".
//!
//! The oracle ([`oracle`]) checks agreement of committed blocks, no honest double-sign
//! across restarts, every acknowledged transfer durable where it was acknowledged and on
//! every honest node at the end, balances conserved, liveness after GST, and the ledger
//! reopening at a whole tip, never below what it had committed, after every crash.
//! The same seed gives the same trace ([`Report::trace`]); a failure names the command that
//! replays its seed.

pub mod oracle;
pub mod params;

pub use crate::consensus::NodeBug;
pub use oracle::Violation;
pub use params::SimParams;

use crate::chain::ChainReader;
use crate::config::Config;
use crate::consensus::signing_record::SigningRecord;
use crate::consensus::wal::Wal;
use crate::consensus::{Driver, DriverConfig};
use crate::exec::Exec;
use crate::rpc::NodeInfo;
use crate::run::Rooms;
use oracle::Oracle;
use params::CrashKind;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tally_consensus::sim::byzantine::Actor;
use tally_consensus::sim::{Role, SimRng};
use tally_consensus::{Core, CoreConfig, Height, SignedMessage, TimeoutParams};
use tally_crypto::{ChainId, Keypair, Verifier, VerifierConfig};
use tally_ledger::{
    ConsensusParams, DiskImage, Genesis, GenesisAccount, GenesisValidator, Ledger, Transfer, Tx,
    TxHash, TxIndex,
};
use tally_network::sim::{SimCommand, SimPort, Topic};
use tally_network::wire::{Message, SyncRequest, SyncResponse, TxBatch};
use tally_network::{ConsensusMsg, NetworkConfig, PeerId};
use tokio::task::JoinHandle;

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub validators: usize,
    pub byzantine: usize,
    /// The lowest tip of the honest nodes at the end.
    pub height: u64,
    pub acked: usize,
    pub crashes: usize,
    pub deliveries: u64,
    pub forged_served: u64,
    /// blake3 of everything the world delivered and every node's blocks: the same seed
    /// gives the same trace.
    pub trace: String,
}

/// A run whose oracle found a violation.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub report: Report,
}

impl Failure {
    /// The command that runs this seed again.
    pub fn replay(&self) -> String {
        format!(
            "SIM_SEED={} cargo test -p tally-node --features sim --test node_sim replay_one_seed -- --exact --nocapture",
            self.seed
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed:", self.seed)?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        write!(f, "reproduce: {}", self.replay())
    }
}

/// Runs one seed (with `bug` planted in every node, for the harness's own tests).
pub fn run_seed(seed: u64, bug: Option<NodeBug>) -> Result<Report, Failure> {
    run(SimParams::draw(seed, bug))
}

/// Runs one drawn configuration on a fresh single-threaded runtime with paused time.
pub fn run(params: SimParams) -> Result<Report, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let seed = params.seed;
    let (oracle, report, graveyard) = runtime.block_on(async move {
        let mut world = World::new(params);
        world.run().await;
        world.finish()
    });
    // The nodes go the way killed processes go: nothing they hold writes on its way out.
    // Their tasks end with the runtime, and what they held is dropped during an unwind,
    // where redb skips the commit it makes on a clean close (`Database::drop` checks
    // `thread::panicking`), on another thread so that the next seed need not wait.
    std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _dead = (runtime, graveyard);
            std::panic::resume_unwind(Box::new("the simulated processes stop"));
        }));
    });
    if oracle.violations.is_empty() {
        Ok(report)
    } else {
        Err(Failure { seed, violations: oracle.violations, report })
    }
}

const GENESIS_TIME_MS: u64 = 1_800_000_000_000;
const CLIENT_BALANCE: u64 = 1_000_000_000;
/// How long a client waits for its transfer to commit before it asks again.
const CLIENT_WAIT_MS: u64 = 4_000;
const SYNC_TIMEOUT_MS: u64 = 1_000;
/// The liveness check takes each honest node's height this long after GST (every honest
/// node is up by GST, and restarted ones catch up by block sync), and wants a higher one at
/// the end of the run.
const LIVENESS_AFTER_GST_MS: u64 = 1_000;

/// One simulated node: its identity and disks, which outlive its process.
struct Node {
    key: Keypair,
    peer: PeerId,
    ledger_disk: DiskImage,
    record_disk: DiskImage,
    /// The consensus log (a file; the tx index is in memory, rebuilt at each start).
    dir: tempfile::TempDir,
    running: Option<Running>,
    /// The highest height this node had applied when it last went down.
    applied_before_crash: u64,
    restart_at: Option<u64>,
    role: Role,
    actor: Option<Actor>,
}

/// A node's process while it runs.
struct Running {
    port: SimPort,
    rooms: Rooms,
    driver: JoinHandle<anyhow::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    _stop: tokio::sync::watch::Sender<bool>,
    /// Consensus messages waiting for room in the node's channel, in order.
    backlog: VecDeque<(ConsensusMsg, PeerId)>,
    held: Option<tally_network::sim::Full>,
    /// A disk fault is armed: the node is expected to stop with a write error.
    fault_armed: bool,
}

enum Delivery {
    Consensus { to: usize, from: PeerId, msg: ConsensusMsg },
    Txs { to: usize, from: PeerId, txs: Vec<Tx> },
    Sync { to: usize, from: usize, request: SyncRequest, reply: tally_network::sim::SimReply },
}

struct Client {
    key: Keypair,
    next_nonce: u64,
    busy: bool,
    next_at: u64,
}

type AckReport = (usize, usize, TxHash, Option<(Height, u32, bool)>);

struct World {
    p: SimParams,
    rng: SimRng,
    chain_id: ChainId,
    genesis: Genesis,
    verifier: Arc<Verifier>,
    nodes: Vec<Node>,
    liar: PeerId,
    queue: BinaryHeap<std::cmp::Reverse<(u64, u64)>>,
    deliveries: BTreeMap<u64, Delivery>,
    seq: u64,
    clients: Vec<Client>,
    acks_tx: tokio::sync::mpsc::UnboundedSender<AckReport>,
    acks_rx: tokio::sync::mpsc::UnboundedReceiver<AckReport>,
    oracle: Oracle,
    trace: blake3::Hasher,
    report: Report,
    start: tokio::time::Instant,
    blocks: tally_consensus::sim::app::Blocks,
    next_crash: usize,
    height_at_gst: Vec<Option<u64>>,
    /// Processes that went down, kept until the run ends (see `run`).
    graveyard: Vec<Running>,
    /// Disk faults not yet struck were turned off at GST.
    disarmed: bool,
}

fn peer_of(label: &str) -> PeerId {
    let seed = Keypair::derive_insecure(label).seed();
    libp2p::identity::Keypair::ed25519_from_bytes(seed)
        .expect("32 bytes make an ed25519 key")
        .public()
        .to_peer_id()
}

impl World {
    fn new(p: SimParams) -> World {
        let seed = p.seed;
        let chain_id = ChainId::new(format!("tally-sim-{seed}")).expect("chain id");
        let keys: Vec<Keypair> = (0..p.n())
            .map(|i| Keypair::derive_insecure(&format!("sim/{seed}/validator/{i}")))
            .collect();
        let clients: Vec<Client> = (0..p.clients)
            .map(|c| Client {
                key: Keypair::derive_insecure(&format!("sim/{seed}/client/{c}")),
                next_nonce: 0,
                busy: false,
                next_at: 0,
            })
            .collect();
        let params = ConsensusParams {
            timeouts: TimeoutParams {
                // Links take at most 40 ms: a round lasts 400 ms + 100 ms per round.
                propose_base_ms: 200,
                propose_delta_ms: 50,
                prevote_base_ms: 100,
                prevote_delta_ms: 25,
                precommit_base_ms: 100,
                precommit_delta_ms: 25,
            },
            ..ConsensusParams::default()
        };
        let genesis = Genesis {
            chain_id: chain_id.clone(),
            genesis_time_ms: GENESIS_TIME_MS,
            validators: keys
                .iter()
                .enumerate()
                .map(|(i, k)| GenesisValidator {
                    name: format!("v{i}"),
                    public_key: k.public(),
                    power: 10,
                })
                .collect(),
            // The clients' accounts, then one that only receives.
            accounts: clients
                .iter()
                .map(|c| c.key.public())
                .chain([Keypair::derive_insecure(&format!("sim/{seed}/sink")).public()])
                .map(|public_key| GenesisAccount { public_key, balance: CLIENT_BALANCE })
                .collect(),
            params,
        };
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let role = p.roles[i];
                let actor = (!role.is_honest()).then(|| {
                    let signer = Box::new(key.clone()) as Box<dyn tally_consensus::Signer + Send>;
                    let outsider = Keypair::derive_insecure(&format!("sim/{seed}/outsider"));
                    let outsider = Box::new(outsider) as Box<dyn tally_consensus::Signer + Send>;
                    Actor::new(role, i, signer, Some(outsider))
                });
                Node {
                    peer: peer_of(&format!("sim/{seed}/node/{i}")),
                    key,
                    ledger_disk: DiskImage::new(),
                    record_disk: DiskImage::new(),
                    dir: scratch_dir(),
                    running: None,
                    applied_before_crash: 0,
                    restart_at: None,
                    role,
                    actor,
                }
            })
            .collect();
        let (acks_tx, acks_rx) = tokio::sync::mpsc::unbounded_channel();
        World {
            rng: SimRng::new(seed),
            liar: peer_of(&format!("sim/{seed}/liar")),
            chain_id,
            genesis,
            verifier: Arc::new(Verifier::new(VerifierConfig::default())),
            nodes,
            queue: BinaryHeap::new(),
            deliveries: BTreeMap::new(),
            seq: 0,
            clients,
            acks_tx,
            acks_rx,
            oracle: Oracle::default(),
            trace: blake3::Hasher::new(),
            report: Report { seed, ..Report::default() },
            start: tokio::time::Instant::now(),
            blocks: Default::default(),
            next_crash: 0,
            height_at_gst: Vec::new(),
            graveyard: Vec::new(),
            disarmed: false,
            p,
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(&mut self) {
        self.report.validators = self.p.n();
        self.report.byzantine = self.p.roles.iter().filter(|r| !r.is_honest()).count();
        for i in 0..self.p.n() {
            if self.p.roles[i] != Role::Silent {
                self.start_node(i);
            }
        }
        loop {
            let now = self.now();
            if now >= self.p.end_ms {
                break;
            }
            if self.height_at_gst.is_empty() && now >= self.p.gst_ms + LIVENESS_AFTER_GST_MS {
                self.height_at_gst = (0..self.p.n()).map(|i| self.tip(i)).collect();
            }
            if !self.disarmed && now >= self.p.gst_ms {
                self.disarmed = true;
                self.disarm_faults();
            }
            self.crashes(now);
            for i in 0..self.nodes.len() {
                self.watch(i, now);
                self.take_commands(i, now);
                self.flush_backlog(i);
            }
            self.deliver_due(now);
            self.clients_step(now);
            while let Ok(ack) = self.acks_rx.try_recv() {
                self.on_ack(ack);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Let in-flight acks arrive.
        while let Ok(ack) = self.acks_rx.try_recv() {
            self.on_ack(ack);
        }
    }

    fn tip(&self, i: usize) -> Option<u64> {
        let running = self.nodes[i].running.as_ref()?;
        Some(running.rooms.chain.tip_height().map_or(0, |h| h.0))
    }

    // ----- nodes -----

    fn start_node(&mut self, i: usize) {
        let now = self.now();
        let node = &mut self.nodes[i];
        // The tx index is derived data, rebuilt from the store at each start: in memory here.
        let ledger = match Ledger::open_with_backend(
            node.ledger_disk.disk(),
            TxIndex::in_memory(),
            self.genesis.clone(),
        ) {
            Ok(l) => l,
            Err(e) => {
                self.oracle.fail(Violation::ReopenFailed { node: i, error: format!("{e}") });
                return;
            }
        };
        let tip = ledger.tip().map_or(0, |(h, _)| h.0);
        if tip < node.applied_before_crash {
            self.oracle.fail(Violation::TipWentBack {
                node: i,
                before: node.applied_before_crash,
                after: tip,
            });
        }
        let mut config = Config::default();
        config.consensus.timeout_commit_ms = 50;
        config.consensus.rebroadcast_interval_ms = 1_000;
        config.consensus.sync_request_timeout_ms = SYNC_TIMEOUT_MS;
        config.mempool.regossip_interval_ms = 1_000;
        let mut net_config = NetworkConfig::new(
            self.chain_id.clone(),
            "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"),
            node.key.seed(),
        );
        net_config.consensus_validation = tally_network::GossipValidation::ByNode;
        net_config.tx_validation = tally_network::GossipValidation::ByNode;
        let (handle, mut events, port) = tally_network::sim::endpoint(&net_config, node.peer);
        let info = NodeInfo {
            peer_id: node.peer.to_string(),
            node_key: node.key.public(),
            listen_addr: String::new(),
            moniker: format!("sim{i}"),
            validator_key: Some(node.key.public()),
        };
        let exec = Exec::Inline { latency_ms: self.p.disk_latency_ms };
        let (gossip_tx, gossip_rx) = tokio::sync::mpsc::channel(crate::admission::GOSSIP_QUEUE_MAX);
        let rooms = Rooms::with_exec(
            &config,
            ledger,
            self.verifier.clone(),
            info,
            handle.clone(),
            gossip_tx,
            exec,
        )
        .expect("rooms");
        let record = match SigningRecord::open_with_backend(node.record_disk.disk()) {
            Ok(r) => r,
            Err(e) => {
                self.oracle.fail(Violation::ReopenFailed {
                    node: i,
                    error: format!("signing record: {e}"),
                });
                return;
            }
        };
        let mut core_config = CoreConfig::new(self.chain_id.clone());
        core_config.timeouts = self.genesis.params.timeouts;
        let validators = self.genesis.validator_set().expect("validators");
        let signer = Box::new(node.key.clone()) as Box<dyn tally_consensus::Signer + Send>;
        let mut core = Core::new(core_config, validators, Some(signer)).expect("core");
        if node.role == Role::Amnesiac {
            core.set_bug(Some(tally_consensus::Bug::IgnoreLock));
        }
        let from = Height(tip + 1);
        match record.from_height(from) {
            Ok(signed) => {
                let signed: Vec<SignedMessage> = signed.into_iter().collect();
                if node.role.is_honest() {
                    self.oracle.on_restart(i, from, &signed);
                }
                core.restore_signed(signed);
            }
            Err(e) => {
                self.oracle.fail(Violation::ReopenFailed {
                    node: i,
                    error: format!("signing record read: {e}"),
                });
                return;
            }
        }
        let wal = Wal::open(&node.dir.path().join("consensus.wal")).ok();
        let driver_config = DriverConfig {
            consensus: config.consensus.clone(),
            snapshots: config.snapshots.clone(),
            proposer: Some(node.key.public()),
            exec,
            clock: crate::exec::tokio_clock(GENESIS_TIME_MS + 1_000 + now),
            bug: self.p.bug,
        };
        let driver = Driver::new(
            rooms.chain.clone(),
            rooms.notify.clone(),
            rooms.metrics.clone(),
            driver_config,
            core,
            Some(record),
            wal,
            handle.clone(),
            None,
        );
        let tx_events = std::mem::replace(&mut events.txs, tokio::sync::mpsc::channel(1).1);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Every log line of this node's driver names it (`node{i=..}`), for replays.
        let span = tracing::info_span!("node", i);
        let driver =
            tokio::spawn(tracing::Instrument::instrument(driver.run(events, stop_rx), span));
        let stats = Arc::new(crate::admission::ingress::IngressStats::default());
        let tasks = vec![
            tokio::spawn(crate::admission::ingress::run_tx_ingress(
                rooms.admission.clone(),
                handle.clone(),
                tx_events,
                stats,
            )),
            tokio::spawn(crate::admission::ingress::run_tx_gossip(
                rooms.chain.clone(),
                config.mempool.clone(),
                handle,
                gossip_rx,
            )),
        ];
        node.running = Some(Running {
            port,
            rooms,
            driver,
            tasks,
            _stop: stop_tx,
            backlog: VecDeque::new(),
            held: None,
            fault_armed: false,
        });
        // Everyone up is connected to everyone up, and to the liar.
        let me = self.nodes[i].peer;
        let others: Vec<(usize, PeerId)> = (0..self.nodes.len())
            .filter(|&k| k != i && self.nodes[k].running.is_some())
            .map(|k| (k, self.nodes[k].peer))
            .collect();
        let liar = self.p.liar.then_some(self.liar);
        if let Some(running) = self.nodes[i].running.as_mut() {
            for (_, peer) in &others {
                let _ = running.port.peer_connected(*peer);
            }
            if let Some(liar) = liar {
                let _ = running.port.peer_connected(liar);
            }
        }
        for (k, _) in others {
            if let Some(running) = self.nodes[k].running.as_mut() {
                let _ = running.port.peer_connected(me);
            }
        }
    }

    /// Takes node `i` down: its tasks stop where they are, its disks lose what was not
    /// durable (torn as `bits` says), and its peers see it go.
    fn take_down(&mut self, i: usize, bits: u64, lose_wal: bool) {
        // What the node handed its network before it went has left the host.
        let now = self.now();
        self.take_commands(i, now);
        let Some(running) = self.nodes[i].running.take() else { return };
        let applied = running.rooms.chain.tip_height().map_or(0, |h| h.0);
        running.driver.abort();
        for t in &running.tasks {
            t.abort();
        }
        let node = &mut self.nodes[i];
        node.applied_before_crash = node.applied_before_crash.max(applied);
        node.ledger_disk.crash(bits);
        node.record_disk.crash(bits.rotate_left(17));
        if lose_wal && std::env::var_os("SIM_KEEP_WAL").is_none() {
            let _ = std::fs::remove_file(node.dir.path().join("consensus.wal"));
        }
        self.graveyard.push(running);
        self.report.crashes += 1;
        let me = self.nodes[i].peer;
        for k in 0..self.nodes.len() {
            if let Some(r) = self.nodes[k].running.as_mut() {
                let _ = r.port.peer_disconnected(me);
            }
        }
    }

    /// At GST every honest node is up and stays up: disk faults not yet triggered are off.
    fn disarm_faults(&mut self) {
        for node in &mut self.nodes {
            for disk in [&node.ledger_disk, &node.record_disk] {
                disk.crash_after(u64::MAX, 0);
                disk.fail_sync_after(u64::MAX);
            }
            if let Some(r) = node.running.as_mut() {
                r.fault_armed = false;
            }
        }
    }

    fn crashes(&mut self, now: u64) {
        while let Some(c) = self.p.crashes.get(self.next_crash).cloned() {
            if c.at_ms > now {
                break;
            }
            self.next_crash += 1;
            let node = &mut self.nodes[c.node];
            if node.running.is_none() || node.restart_at.is_some() {
                continue; // already down: this crash is skipped
            }
            let bits = self.rng.next_u64();
            match c.kind {
                CrashKind::PowerCut => {
                    self.take_down(c.node, bits, c.lose_wal);
                    self.nodes[c.node].restart_at = Some(now + c.down_ms);
                }
                CrashKind::CutInWrite { ledger, ops } => {
                    let disk = if ledger { &node.ledger_disk } else { &node.record_disk };
                    disk.crash_after(ops, bits);
                    if let Some(r) = node.running.as_mut() {
                        r.fault_armed = true;
                    }
                    node.restart_at = Some(u64::MAX - c.down_ms);
                }
                CrashKind::FailedSync { ledger, n } => {
                    let disk = if ledger { &node.ledger_disk } else { &node.record_disk };
                    disk.fail_sync_after(n);
                    if let Some(r) = node.running.as_mut() {
                        r.fault_armed = true;
                    }
                    node.restart_at = Some(u64::MAX - c.down_ms);
                }
            }
        }
        for i in 0..self.nodes.len() {
            if let Some(at) = self.nodes[i].restart_at {
                // Restarts happen by GST at the latest.
                let due = at.min(self.p.gst_ms);
                if self.nodes[i].running.is_none() && now >= due {
                    self.nodes[i].restart_at = None;
                    self.start_node(i);
                }
            }
        }
    }

    /// A node whose driver stopped: after an armed disk fault that is the crash; otherwise
    /// an honest node must never stop.
    fn watch(&mut self, i: usize, now: u64) {
        let Some(running) = self.nodes[i].running.as_mut() else { return };
        if !running.driver.is_finished() {
            return;
        }
        let outcome = match futures::FutureExt::now_or_never(&mut running.driver) {
            Some(Ok(Ok(()))) => "the driver returned".to_string(),
            Some(Ok(Err(e))) => format!("{e:#}"),
            Some(Err(e)) => format!("the driver task failed: {e}"),
            None => "the driver ended".to_string(),
        };
        // A fault armed before GST may strike in the instant before it is disarmed: what
        // the simulated disk injected is a disk fault whenever it strikes.
        let injected = ["simulated power cut", "injected fsync failure"];
        let armed = running.fault_armed || injected.iter().any(|m| outcome.contains(m));
        let lose_wal = self.rng.chance(50);
        let bits = self.rng.next_u64();
        self.take_down(i, bits, lose_wal);
        let node = &mut self.nodes[i];
        if armed {
            let down = u64::MAX - node.restart_at.unwrap_or(u64::MAX - 500);
            node.restart_at = Some(now + down.min(2_000));
        } else if node.role.is_honest() {
            self.oracle.fail(Violation::NodeFailed {
                node: i,
                error: format!("without a disk fault: {outcome}"),
            });
        }
    }

    // ----- the network -----

    fn connected(&self, a: usize, b: usize, now: u64) -> bool {
        !self.p.partitions.iter().any(|p| {
            now >= p.start_ms && now < p.end_ms && now < self.p.gst_ms && p.side[a] != p.side[b]
        })
    }

    fn schedule(&mut self, at: u64, delivery: Delivery) {
        self.seq += 1;
        self.queue.push(std::cmp::Reverse((at, self.seq)));
        self.deliveries.insert(self.seq, delivery);
    }

    fn latency(&mut self) -> u64 {
        self.p.latency_ms + self.rng.below(self.p.jitter_ms + 1)
    }

    fn lost(&mut self, now: u64) -> bool {
        now < self.p.gst_ms && self.rng.chance(self.p.loss_percent)
    }

    /// Sends `msg` from node `from` to every other node up, through the links.
    fn gossip(&mut self, from: usize, now: u64, msg: &ConsensusMsg, to_only: Option<usize>) {
        for to in 0..self.nodes.len() {
            if to == from || to_only.is_some_and(|t| t != to) {
                continue;
            }
            if self.nodes[to].running.is_none() || !self.connected(from, to, now) || self.lost(now)
            {
                continue;
            }
            let at = now + self.latency();
            let peer = self.nodes[from].peer;
            self.schedule(at, Delivery::Consensus { to, from: peer, msg: msg.clone() });
            if self.rng.chance(self.p.duplicate_percent) {
                let again = at + self.latency();
                self.schedule(again, Delivery::Consensus { to, from: peer, msg: msg.clone() });
            }
            if self.p.liar && matches!(msg, ConsensusMsg::Vote(_)) {
                // The liar relays votes faster than the direct link.
                let liar = self.liar;
                self.schedule(now + 1, Delivery::Consensus { to, from: liar, msg: msg.clone() });
            }
        }
    }

    fn take_commands(&mut self, i: usize, now: u64) {
        loop {
            let Some(running) = self.nodes[i].running.as_mut() else { return };
            let Some(command) = running.port.try_next() else { return };
            match command {
                SimCommand::Publish {
                    topic: Topic::Consensus,
                    message: Message::Consensus(msg),
                    ..
                } => {
                    self.publish_consensus(i, now, msg);
                }
                SimCommand::Publish {
                    topic: Topic::Txs,
                    message: Message::TxBatch(TxBatch(txs)),
                    ..
                } => {
                    for to in 0..self.nodes.len() {
                        if to == i
                            || self.nodes[to].running.is_none()
                            || !self.connected(i, to, now)
                            || self.lost(now)
                        {
                            continue;
                        }
                        let at = now + self.latency();
                        let from = self.nodes[i].peer;
                        self.schedule(at, Delivery::Txs { to, from, txs: txs.clone() });
                    }
                }
                SimCommand::Publish { .. } => {}
                SimCommand::Request { peer, request, reply } => {
                    if self.p.liar && peer == self.liar {
                        self.answer_as_liar(request, reply);
                        continue;
                    }
                    let target = self.nodes.iter().position(|n| n.peer == peer);
                    match target {
                        Some(to)
                            if self.nodes[to].running.is_some() && self.connected(i, to, now) =>
                        {
                            let at = now + self.latency();
                            self.schedule(at, Delivery::Sync { to, from: i, request, reply });
                        }
                        _ => {
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(SYNC_TIMEOUT_MS)).await;
                                reply.timeout();
                            });
                        }
                    }
                }
                SimCommand::Peers { reply } => {
                    let _ = reply.send(running.port.peer_infos());
                }
                SimCommand::ListenAddrs { reply } => {
                    let _ = reply.send(Vec::new());
                }
                SimCommand::Shutdown { done } => {
                    let _ = done.send(());
                }
                SimCommand::AddPeer { .. }
                | SimCommand::ReportValidation { .. }
                | SimCommand::Penalize { .. } => {}
            }
        }
    }

    fn publish_consensus(&mut self, i: usize, now: u64, msg: ConsensusMsg) {
        let n = self.nodes.len();
        let Some(actor) = self.nodes[i].actor.as_mut() else {
            self.oracle.on_honest_publish(i, &msg);
            self.gossip(i, now, &msg, None);
            return;
        };
        let signed = match &msg {
            ConsensusMsg::Vote(v) => SignedMessage::Vote(v.clone()),
            ConsensusMsg::CompactProposal { proposal, .. } => {
                SignedMessage::Proposal(proposal.clone())
            }
            _ => {
                self.gossip(i, now, &msg, None);
                return;
            }
        };
        let sends = actor.sends(&signed, n, &self.chain_id, &mut self.rng, &mut self.blocks);
        for (to, packet) in sends {
            let tally_consensus::sim::network::Packet::Message(m) = packet else { continue };
            let out = match (m, &msg) {
                (SignedMessage::Vote(v), _) => ConsensusMsg::Vote(v),
                (SignedMessage::Proposal(p), ConsensusMsg::CompactProposal { block, .. }) => {
                    ConsensusMsg::CompactProposal { proposal: p, block: block.clone() }
                }
                _ => continue,
            };
            self.gossip(i, now, &out, Some(to));
        }
    }

    /// The liar: forged blocks for block sync (the same txs and state, another time, so
    /// another hash; the certificate names the forged hash and so does not verify).
    fn answer_as_liar(&mut self, request: SyncRequest, reply: tally_network::sim::SimReply) {
        let SyncRequest::Blocks { from, count } = request else {
            reply.busy();
            return;
        };
        let best = (0..self.nodes.len())
            .filter(|&k| self.nodes[k].role.is_honest())
            .filter_map(|k| Some((self.tip(k)?, k)))
            .max();
        let Some((_, k)) = best else {
            reply.busy();
            return;
        };
        let reader = self.nodes[k].running.as_ref().map(|r| r.rooms.chain.reader());
        let Some(reader) = reader else { return };
        let mut blocks = reader.blocks_from(from, count.min(8), 4 << 20);
        for (block, cert) in &mut blocks {
            block.header.time_ms += 1;
            cert.block_hash = block.hash();
        }
        self.report.forged_served += blocks.len() as u64;
        let at = self.latency();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(at)).await;
            reply.answer(Some(SyncResponse::Blocks(blocks)));
        });
    }

    fn deliver_due(&mut self, now: u64) {
        while let Some(std::cmp::Reverse((at, seq))) = self.queue.peek().copied() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(d) = self.deliveries.remove(&seq) else { continue };
            self.report.deliveries += 1;
            match d {
                Delivery::Consensus { to, from, msg } => {
                    self.trace_msg(now, to, &from, &msg);
                    if let Some(r) = self.nodes[to].running.as_mut() {
                        r.backlog.push_back((msg, from));
                    }
                }
                Delivery::Txs { to, from, txs } => {
                    self.trace.update(&[2]);
                    self.trace.update(&(txs.len() as u64).to_le_bytes());
                    if let Some(r) = self.nodes[to].running.as_ref() {
                        r.port.deliver_txs(txs, from);
                    }
                }
                Delivery::Sync { to, from, request, reply } => {
                    let from_peer = self.nodes[from].peer;
                    let rx = self.nodes[to]
                        .running
                        .as_ref()
                        .and_then(|r| r.port.deliver_sync_request(from_peer, request));
                    let Some(rx) = rx else {
                        reply.busy();
                        continue;
                    };
                    let back = self.latency();
                    tokio::spawn(async move {
                        let limit = Duration::from_millis(SYNC_TIMEOUT_MS);
                        match tokio::time::timeout(limit, rx).await {
                            Ok(Ok(response)) => {
                                tokio::time::sleep(Duration::from_millis(back)).await;
                                reply.answer(Some(response));
                            }
                            Ok(Err(_)) => {
                                reply.answer(None);
                            }
                            Err(_) => {
                                reply.timeout();
                            }
                        }
                    });
                }
            }
        }
    }

    /// Hands node `i` the consensus messages waiting for it, in order, while its channel
    /// has room (the real network's backpressure).
    fn flush_backlog(&mut self, i: usize) {
        let Some(r) = self.nodes[i].running.as_mut() else { return };
        if let Some(full) = r.held.take() {
            if let Err(full) = r.port.redeliver(full) {
                r.held = Some(full);
                return;
            }
        }
        while let Some((msg, from)) = r.backlog.pop_front() {
            if let Err(full) = r.port.deliver_consensus(msg, from) {
                r.held = Some(full);
                return;
            }
        }
    }

    fn trace_msg(&mut self, now: u64, to: usize, from: &PeerId, msg: &ConsensusMsg) {
        let (kind, h, r) = match msg {
            ConsensusMsg::Vote(v) => (1u8, v.vote.height.0, v.vote.round.0),
            ConsensusMsg::CompactProposal { proposal, .. } => {
                (3, proposal.proposal.height.0, proposal.proposal.round.0)
            }
            ConsensusMsg::Proposal { proposal, .. } => {
                (4, proposal.proposal.height.0, proposal.proposal.round.0)
            }
            ConsensusMsg::Certificate { certificate, .. } => {
                (5, certificate.height.0, certificate.round.0)
            }
            ConsensusMsg::Evidence(e) => (6, e.height().0, e.round().0),
        };
        self.trace.update(&now.to_le_bytes());
        self.trace.update(&(to as u64).to_le_bytes());
        self.trace.update(&from.to_bytes());
        self.trace.update(&[kind]);
        self.trace.update(&h.to_le_bytes());
        self.trace.update(&r.to_le_bytes());
    }

    // ----- clients -----

    fn clients_step(&mut self, now: u64) {
        for c in 0..self.clients.len() {
            if self.clients[c].busy || self.clients[c].next_at > now {
                continue;
            }
            let up: Vec<usize> = (0..self.nodes.len())
                .filter(|&k| self.nodes[k].running.is_some() && self.nodes[k].role.is_honest())
                .collect();
            if up.is_empty() {
                continue;
            }
            let target = up[self.rng.index(up.len())];
            // Another genesis account (the last one only receives).
            let accounts = &self.genesis.accounts;
            let pick = (c + 1 + self.rng.index(accounts.len() - 1)) % accounts.len();
            let to = accounts[pick].public_key;
            let client = &mut self.clients[c];
            let transfer = Transfer {
                from: client.key.public(),
                to,
                amount: 1 + (now % 7),
                nonce: client.next_nonce,
            };
            let tx = Tx::sign(transfer, &client.key, &self.chain_id);
            client.busy = true;
            let Some(running) = self.nodes[target].running.as_ref() else { continue };
            let admission = running.rooms.admission.clone();
            let reader = running.rooms.chain.reader();
            let report = self.acks_tx.clone();
            let hash = tx.hash();
            tokio::spawn(async move {
                let bytes = tx.encode();
                let outcome = async {
                    let waiter = admission.commit_waiter_for(&bytes).ok()?;
                    admission.submit_tx(bytes).await.ok()?;
                    let wait = Duration::from_millis(CLIENT_WAIT_MS);
                    let (height, index) = tokio::time::timeout(wait, waiter.wait()).await.ok()??;
                    // Answered committed: it must be readable from this node's committed
                    // state now.
                    let durable = matches!(reader.tx(hash, false), Ok(Some(f)) if f.height == height && f.index == index);
                    Some((height, index, durable))
                }
                .await;
                let _ = report.send((c, target, hash, outcome));
            });
        }
    }

    fn on_ack(&mut self, (c, node, hash, outcome): AckReport) {
        let now = self.now();
        let (lo, hi) = self.p.client_interval_ms;
        let next = now + lo + self.rng.below(hi - lo + 1);
        let client = &mut self.clients[c];
        client.busy = false;
        client.next_at = next;
        match outcome {
            Some((height, index, durable)) => {
                client.next_nonce += 1;
                if !durable {
                    self.oracle.fail(Violation::AckNotDurable {
                        node,
                        tx: hash.0.to_hex(),
                        height: height.0,
                    });
                }
                self.oracle.acked.insert(hash, (height, index));
                self.report.acked += 1;
            }
            None => {
                // Refused or not committed in time: ask a node up for the next nonce.
                let key = client.key.public();
                let next = (0..self.nodes.len())
                    .filter(|&k| self.nodes[k].role.is_honest())
                    .find_map(|k| self.nodes[k].running.as_ref())
                    .map(|r| r.rooms.chain.reader().account(&key, false).next_nonce);
                if let Some(n) = next {
                    self.clients[c].next_nonce = n;
                }
            }
        }
    }

    // ----- the end -----

    fn finish(mut self) -> (Oracle, Report, Vec<Running>) {
        let honest: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].role.is_honest()).collect();
        let readers: Vec<(usize, ChainReader)> = honest
            .iter()
            .filter_map(|&i| Some((i, self.nodes[i].running.as_ref()?.rooms.chain.reader())))
            .collect();
        // Liveness: every honest node moved on after GST.
        for &i in &honest {
            let before = self.height_at_gst.get(i).copied().flatten();
            let after = self.tip(i);
            match (before, after) {
                (Some(b), Some(a)) if a > b => {}
                _ => self.oracle.fail(Violation::NoProgress {
                    node: i,
                    from: before.unwrap_or(0),
                    to: after.unwrap_or(0),
                }),
            }
        }
        // Agreement, and the trace of every node's blocks.
        let top =
            readers.iter().filter_map(|(_, r)| r.tip_height()).map(|h| h.0).max().unwrap_or(0);
        for h in 1..=top {
            let mut first: Option<(usize, String)> = None;
            for (i, r) in &readers {
                let Ok(Some(block)) = r.block(Height(h)) else { continue };
                let hash = block.hash().0.to_hex();
                self.trace.update(hash.as_bytes());
                match &first {
                    None => first = Some((*i, hash)),
                    Some((a, first_hash)) if *first_hash != hash => {
                        self.oracle.fail(Violation::Disagreement {
                            height: h,
                            a: *a,
                            b: *i,
                            hash_a: first_hash.clone(),
                            hash_b: hash,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        // Every acknowledged transfer is where it was acknowledged, on every honest node
        // that reached its height.
        let acked: Vec<(TxHash, (Height, u32))> =
            self.oracle.acked.iter().map(|(h, l)| (*h, *l)).collect();
        for (i, r) in &readers {
            let tip = r.tip_height().map_or(0, |h| h.0);
            for (hash, (height, index)) in &acked {
                if height.0 > tip {
                    continue;
                }
                let found = match r.tx(*hash, false) {
                    Ok(Some(f)) if f.height == *height && f.index == *index => continue,
                    Ok(Some(f)) => format!("at ({}, {})", f.height.0, f.index),
                    Ok(None) => "missing".to_string(),
                    Err(e) => format!("unreadable ({e})"),
                };
                self.oracle.fail(Violation::AckLost {
                    node: *i,
                    tx: hash.0.to_hex(),
                    height: height.0,
                    index: *index,
                    found,
                });
            }
            // Balances conserved.
            let expected: u128 = self.genesis.accounts.iter().map(|a| u128::from(a.balance)).sum();
            let total: u128 = self
                .genesis
                .accounts
                .iter()
                .map(|a| u128::from(r.account(&a.public_key, false).account.balance))
                .sum();
            if total != expected {
                self.oracle.fail(Violation::BalanceNotConserved { node: *i, total, expected });
            }
        }
        self.report.height =
            readers.iter().map(|(_, r)| r.tip_height().map_or(0, |h| h.0)).min().unwrap_or(0);
        self.report.trace = self.trace.finalize().to_hex().to_string();
        if !self.oracle.violations.is_empty() {
            // Where each node stood, for whoever replays the seed with RUST_LOG set.
            for (i, node) in self.nodes.iter().enumerate() {
                let state = node.running.as_ref().map(|r| r.rooms.notify.consensus());
                tracing::warn!(
                    node = i,
                    now_ms = self.now(),
                    ?state,
                    "state at the end of the run"
                );
            }
        }
        // Stop every node before the runtime goes.
        for i in 0..self.nodes.len() {
            if let Some(r) = self.nodes[i].running.take() {
                r.driver.abort();
                for t in &r.tasks {
                    t.abort();
                }
                self.graveyard.push(r);
            }
        }
        (self.oracle, self.report, std::mem::take(&mut self.graveyard))
    }
}

/// A scratch folder for a node's consensus log: on tmpfs when there is one
/// (its fsyncs cost nothing there), else the system's temp folder.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("tally-sim").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::Builder::new().prefix("tally-sim").tempdir().expect("a temp dir")
}
