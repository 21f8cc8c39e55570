//! Test support: a local testnet of real `tally` processes on free 127.0.0.1 ports, killed
//! when the `Testnet` is dropped (also when a test panics).

#![allow(dead_code)]

pub mod netns;
pub mod ws;

use base64::Engine as _;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_crypto::{ChainId, Keypair};
use tally_ledger::{Transfer, Tx};

/// Sets its flag when dropped, also while a panic unwinds. Made first thing in a thread
/// scope whose threads run until the flag is set (a load), it makes a failing assertion in
/// the scope end the test instead of leaving the scope waiting for those threads forever.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub const SEED: &str = "tally-testnet";

pub struct Node {
    pub home: PathBuf,
    pub rpc_port: u16,
    pub metrics_port: u16,
    pub child: Option<Child>,
    /// The network namespace the node runs in (`netns.rs`), `None` for the host's loopback.
    pub netns: Option<String>,
}

pub struct Testnet {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub chain_id: ChainId,
    http: ureq::Agent,
    /// Network namespaces this testnet made, deleted when it is dropped.
    namespaces: Vec<String>,
    /// Tells the delaying relays of `netns.rs` to stop accepting.
    stop_relays: std::sync::Arc<AtomicBool>,
}

/// A base port such that base + 10 i + {0, 1, 4} are free for every node. Each call in this
/// process searches its own range, so tests running in parallel never collide.
fn free_base_port(nodes: u32) -> u16 {
    static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);
    let span = 10 * nodes as u16 + 10;
    let first = 20_000 + (std::process::id() % 200) as u16 * 100;
    'search: for _ in 0..200 {
        let range = NEXT_RANGE.fetch_add(1, Ordering::Relaxed);
        let base = first.wrapping_add(range.wrapping_mul(span)) % 40_000 + 20_000;
        for i in 0..nodes as u16 {
            for off in [0u16, 1, 4] {
                if TcpListener::bind(("127.0.0.1", base + 10 * i + off)).is_err() {
                    continue 'search;
                }
            }
        }
        return base;
    }
    panic!("no free port range found");
}

/// `text` without its `chain_id="..."` labels (`{chain_id="x"}` goes whole).
pub fn without_chain_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("chain_id=\"") {
        let end = rest[at + 10..].find('"').map_or(rest.len(), |e| at + 10 + e + 1);
        let (mut before, mut after) = (&rest[..at], &rest[end..]);
        if let Some(a) = after.strip_prefix(',') {
            after = a;
        } else if let Some(b) = before.strip_suffix(',') {
            before = b;
        } else if let (Some(b), Some(a)) = (before.strip_suffix('{'), after.strip_prefix('}')) {
            before = b;
            after = a;
        }
        out.push_str(before);
        rest = after;
    }
    out.push_str(rest);
    out
}

pub fn tally_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tally")
}

impl Testnet {
    /// Writes and starts `n` validators.
    pub fn start(n: u32, accounts: u32) -> Testnet {
        Testnet::start_with(n, accounts, |_| {})
    }

    /// Like `start`, with each node's config.toml edited by `edit` before it starts.
    pub fn start_with(n: u32, accounts: u32, edit: impl Fn(&mut toml::Table)) -> Testnet {
        Testnet::write(n, accounts, &[], |_, t| edit(t), n as usize)
    }

    /// Writes `n` nodes with `tally testnet ... <extra args>`, edits node i's config.toml with
    /// `edit(i, table)`, and starts nodes `0..start` (the others wait for `start_node`).
    pub fn write(
        n: u32,
        accounts: u32,
        extra: &[&str],
        edit: impl Fn(usize, &mut toml::Table),
        start: usize,
    ) -> Testnet {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = free_base_port(n);
        // A test may name the chain itself (`--chain-id` in `extra`).
        let given = extra.windows(2).find(|w| w[0] == "--chain-id").map(|w| w[1].to_string());
        let chain = given.clone().unwrap_or_else(|| format!("tally-it-{base}"));
        let mut command = Command::new(tally_bin());
        command
            .args(["testnet", "--validators", &n.to_string(), "--accounts", &accounts.to_string()])
            .args(["--base-port", &base.to_string()]);
        if given.is_none() {
            command.args(["--chain-id", &chain]);
        }
        let out =
            command.args(extra).arg("--out").arg(dir.path()).output().expect("run tally testnet");
        assert!(
            out.status.success(),
            "tally testnet failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut nodes = Vec::new();
        for i in 0..n {
            let home = dir.path().join(format!("node{i}"));
            let p2p = base + 10 * i as u16;
            let config_path = home.join("config.toml");
            let text = std::fs::read_to_string(&config_path).expect("read config.toml");
            let mut table: toml::Table = toml::from_str(&text).expect("parse config.toml");
            edit(i as usize, &mut table);
            std::fs::write(&config_path, toml::to_string(&table).expect("encode config"))
                .expect("write config.toml");
            nodes.push(Node {
                home,
                rpc_port: p2p + 1,
                metrics_port: p2p + 4,
                child: None,
                netns: None,
            });
        }
        let mut net = Testnet {
            dir,
            nodes,
            chain_id: ChainId::new(chain).expect("chain id"),
            http: ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build(),
            namespaces: Vec::new(),
            stop_relays: Default::default(),
        };
        for i in 0..start {
            net.start_node(i);
        }
        net
    }

    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        // Appended to, so a restarted node's log keeps what it said before.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.home.join("node.log"))
            .expect("log file");
        let mut command = match &node.netns {
            // `ip netns exec` enters the namespace and execs tally: the child is tally.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.as_str(), tally_bin()]);
                c
            }
            None => Command::new(tally_bin()),
        };
        let child = command
            .args(["start", "--home"])
            .arg(&node.home)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tally start");
        node.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].home.join("node.log")).unwrap_or_default()
    }

    pub fn rpc(&self, i: usize, method: &str, params: Value) -> Result<Value, Value> {
        let port = self.nodes[i].rpc_port;
        match &self.nodes[i].netns {
            Some(ns) => netns::within(ns, || rpc_at(&netns::agent(), port, method, params)),
            None => rpc_at(&self.http, port, method, params),
        }
    }

    /// The hash of node i's block at `height`.
    pub fn block_hash(&self, i: usize, height: u64) -> String {
        let b = self.rpc(i, "block", json!({ "height": height.to_string() })).expect("block");
        b["block_id"]["hash"].as_str().expect("block hash").to_string()
    }

    /// Asserts that every node in `which` holds the same block at every height 1..=`tip`.
    pub fn assert_one_hash_per_height(&self, which: &[usize], tip: u64) {
        for h in 1..=tip {
            let ids: Vec<String> = which.iter().map(|&i| self.block_hash(i, h)).collect();
            assert!(ids.iter().all(|id| *id == ids[0]), "height {h}: {ids:?}");
        }
    }

    /// The heights of node i's snapshots, oldest first (`tally snapshot list`).
    pub fn snapshot_heights(&self, i: usize) -> Vec<u64> {
        let out = Command::new(tally_bin())
            .args(["snapshot", "list", "--home"])
            .arg(&self.nodes[i].home)
            .output()
            .expect("tally snapshot list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The value of an unlabelled metric of node i (0 if it is not there yet).
    pub fn metric(&self, i: usize, name: &str) -> u64 {
        self.try_metric(i, name).expect("metrics")
    }

    /// Like `metric`, `None` while the node does not answer.
    pub fn try_metric(&self, i: usize, name: &str) -> Option<u64> {
        let text = self.try_metrics(i)?;
        Some(
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0),
        )
    }

    /// POSTs raw bytes to node i's RPC port: the HTTP status and the body as JSON
    /// (`Value::Null` if it is not JSON).
    pub fn post_raw(&self, i: usize, body: &[u8]) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}", self.nodes[i].rpc_port);
        let reply = self.http.post(&url).set("content-type", "application/json").send_bytes(body);
        let response = match reply {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("POST to node {i}: {e}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn rpc_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].rpc_port)
    }

    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://127.0.0.1:{}", self.nodes[i].rpc_port)
    }

    /// The Prometheus text of node i.
    pub fn metrics(&self, i: usize) -> String {
        self.try_metrics(i).expect("metrics")
    }

    /// The Prometheus text of node i, `None` while it does not answer. The `chain_id`
    /// label every series carries is left out, so tests name series as before it.
    pub fn try_metrics(&self, i: usize) -> Option<String> {
        self.try_metrics_with_labels(i).map(|t| without_chain_id(&t))
    }

    /// The Prometheus text of node i as served (OpenMetrics).
    pub fn try_metrics_with_labels(&self, i: usize) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.nodes[i].metrics_port);
        let get = |agent: &ureq::Agent| agent.get(&url).call().ok()?.into_string().ok();
        match &self.nodes[i].netns {
            Some(ns) => netns::within(ns, || get(&netns::agent())),
            None => get(&self.http),
        }
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        let status = self.rpc(i, "status", json!({})).ok()?;
        status["sync_info"]["latest_block_height"].as_str()?.parse().ok()
    }

    /// Waits until every node in `which` is at `height` or above.
    pub fn wait_height(&self, which: &[usize], height: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let heights: Vec<Option<u64>> = which.iter().map(|&i| self.height(i)).collect();
            if heights.iter().all(|h| h.is_some_and(|h| h >= height)) {
                return;
            }
            if Instant::now() > deadline {
                for &i in which {
                    eprintln!("---- log of node {i} (tail) ----");
                    let log = self.log_of(i);
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
                panic!("nodes {which:?} did not reach height {height} in {timeout:?}: {heights:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn account_key(&self, index: u32) -> Keypair {
        self.accounts().key(index)
    }

    pub fn signed_transfer(&self, from: u32, to: u32, amount: u64, nonce: u64) -> Tx {
        self.accounts().transfer(from, to, amount, nonce)
    }

    /// The funded test accounts of this chain, for threads that do not hold the `Testnet`.
    pub fn accounts(&self) -> Accounts {
        Accounts { chain_id: self.chain_id.clone() }
    }
}

/// Keys and signed transfers of the accounts `tally testnet` funds (`<SEED>/account/<i>`).
#[derive(Clone)]
pub struct Accounts {
    chain_id: ChainId,
}

impl Accounts {
    pub fn key(&self, index: u32) -> Keypair {
        Keypair::derive_insecure(&format!("{SEED}/account/{index}"))
    }

    pub fn transfer(&self, from: u32, to: u32, amount: u64, nonce: u64) -> Tx {
        let key = self.key(from);
        let transfer = Transfer { from: key.public(), to: self.key(to).public(), amount, nonce };
        Tx::sign(transfer, &key, &self.chain_id)
    }
}

/// A JSON-RPC call to the node whose RPC port is `port`: its result, or its error (a
/// transport failure or a malformed reply as an error object too).
pub fn rpc_at(agent: &ureq::Agent, port: u16, method: &str, params: Value) -> Result<Value, Value> {
    let url = format!("http://127.0.0.1:{port}");
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let reply: Value = agent
        .post(&url)
        .send_json(body)
        .map_err(|e| json!({ "transport": e.to_string() }))?
        .into_json()
        .map_err(|e| json!({ "transport": e.to_string() }))?;
    match (reply.get("result"), reply.get("error")) {
        (Some(r), None) => Ok(r.clone()),
        (_, Some(e)) => Err(e.clone()),
        _ => Err(json!({ "malformed": reply })),
    }
}

/// A tx acknowledged as committed by some node (`broadcast_tx_commit` answered).
pub struct Acked {
    pub hash: String,
    pub height: u64,
}

/// Which sender a `submit_transfers` loop is, of how many, over how many funded accounts.
#[derive(Clone, Copy)]
pub struct Load {
    pub sender: u32,
    pub senders: u32,
    pub funded: u32,
}

/// A JSON-RPC call to node i.
pub type Call<'a> = dyn Fn(usize, &str, Value) -> Result<Value, Value> + Sync + 'a;

/// One sender's closed loop until `stop`: transfer after transfer from account
/// `load.sender` to accounts above the senders, with `broadcast_tx_commit`, node after node.
/// A failed call (the node was killed or cut off, or the tx did not commit in time) is
/// retried with the same tx on the next node after re-reading the sender's nonce (the tx may
/// have committed without an answer reaching us: then it is not counted as acknowledged).
pub fn submit_transfers(
    accounts: &Accounts,
    nodes: usize,
    call: &Call<'_>,
    load: Load,
    stop: &AtomicBool,
    acked: &Mutex<Vec<Acked>>,
) {
    let Load { sender, senders, funded } = load;
    let address = accounts.key(sender).public().to_hex();
    let mut nonce = 0u64;
    let mut turn = sender as usize;
    while !stop.load(Ordering::Relaxed) {
        let to = senders + (sender + nonce as u32) % (funded - senders);
        let tx = accounts.transfer(sender, to, 1, nonce);
        turn += 1;
        // A refusal (a result with a code, e.g. a nonce already used by a tx that committed
        // unacknowledged) is handled like a failed call.
        let reply = call(turn % nodes, "broadcast_tx_commit", json!({ "tx": b64(&tx) }))
            .and_then(|r| if r["check_tx"]["code"] == 0 { Ok(r) } else { Err(r) });
        match reply {
            Ok(r) => {
                let height = r["height"].as_str().and_then(|h| h.parse().ok()).expect("height");
                acked.lock().expect("lock").push(Acked { hash: tx.hash().0.to_hex(), height });
                nonce += 1;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(a) = call((turn + 1) % nodes, "account", json!({ "address": address })) {
                    let committed: u64 =
                        a["nonce"].as_str().and_then(|n| n.parse().ok()).unwrap_or(nonce);
                    nonce = nonce.max(committed);
                }
            }
        }
    }
}

impl Testnet {
    /// Every acknowledged tx is in the ledger of every node in `which`, at the acknowledged
    /// height.
    pub fn assert_acked_everywhere(&self, acked: &[Acked], which: &[usize]) {
        for a in acked {
            for &i in which {
                let t = self.rpc(i, "tx", json!({ "hash": a.hash })).expect("an acknowledged tx");
                let height = a.height.to_string();
                assert_eq!(t["height"].as_str(), Some(height.as_str()), "{} on node {i}", a.hash);
            }
        }
    }

    /// After a load: waits until every node in `which` is `past` blocks beyond the highest
    /// acknowledged height (and `start`), then checks one hash per height, every acknowledged
    /// tx everywhere, and no evidence or panic. Returns the lowest tip.
    pub fn check_after_load(&self, acked: &[Acked], which: &[usize], start: u64, past: u64) -> u64 {
        let top = acked.iter().map(|a| a.height).max().unwrap_or(0);
        self.wait_height(which, top.max(start) + past, Duration::from_secs(90));
        let tip = which.iter().filter_map(|&i| self.height(i)).min().expect("heights");
        self.assert_one_hash_per_height(which, tip);
        self.assert_acked_everywhere(acked, which);
        self.assert_no_evidence_no_panic(which);
        tip
    }

    /// No node in `which` reported an equivocation (by anyone: all validators are honest
    /// here) or panicked.
    pub fn assert_no_evidence_no_panic(&self, which: &[usize]) {
        for &i in which {
            let log = self.log_of(i);
            assert!(!log.contains("equivocation detected"), "node {i} reported evidence");
            assert!(!log.contains("panicked"), "node {i} panicked");
        }
    }

    /// The validator set of genesis.json (it is fixed).
    pub fn validator_set(&self) -> tally_consensus::ValidatorSet {
        let genesis = tally_ledger::Genesis::load(&self.nodes[0].home.join("genesis.json"))
            .expect("genesis.json");
        genesis.validator_set().expect("validator set")
    }

    /// The node that proposes in round `round` of `height`.
    pub fn proposer_node(&self, height: u64, round: u32) -> usize {
        let index = self
            .validator_set()
            .proposer(tally_consensus::Height(height), tally_consensus::Round(round));
        self.node_of_validator(u64::from(index.0))
    }

    /// The node whose validator key has index `index` in the validator set.
    pub fn node_of_validator(&self, index: u64) -> usize {
        let set = self.validator_set();
        let index = u32::try_from(index).expect("a validator index");
        let key = set.get(tally_consensus::ValidatorIndex(index)).expect("in the set").public_key;
        (0..self.nodes.len())
            .find(|&i| {
                let path = self.nodes[i].home.join("keys/validator_key.json");
                tally_node::config::keys::load_key(&path).expect("validator key").public() == key
            })
            .expect("a node holds the validator's key")
    }
}

pub fn b64(tx: &Tx) -> String {
    base64::engine::general_purpose::STANDARD.encode(tx.encode())
}

impl Drop for Testnet {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        self.stop_relays.store(true, Ordering::Relaxed);
        for ns in &self.namespaces {
            netns::delete(ns);
        }
    }
}

pub fn data_dir(net: &Testnet, i: usize) -> &Path {
    &net.nodes[i].home
}
