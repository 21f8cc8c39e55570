//! Testnets whose validators each run in a Linux network namespace of their own, joined by
//! one veth pair per pair of validators, so that a test can cut, split and degrade the
//! network between real `tally` processes (as root, with iproute2 and nftables).
//!
//! Every address lives inside a namespace this harness made: the link between validators i
//! and j (i < j) is 10.77.k.0/30 (k the pair's index), `.1` on i's side and `.2` on j's;
//! each node's RPC and metrics listen on 127.0.0.1 of its own namespace, reached from the
//! test by a thread that enters the namespace (`within`). Nothing is added to the host's
//! network; the namespaces (and with them the links) are deleted when the testnet drops.
//!
//! Latency: the kernels this runs on may lack netem (`CONFIG_NET_SCH_NETEM` is not set on
//! the machines tally is developed and tested on; `tc qdisc add ... netem` answers "unknown
//! qdisc"), so a testnet made with a delay routes every p2p connection through a relay in the
//! receiving node's namespace (`relay`) that holds each chunk of bytes for the delay, plus
//! jitter, before passing it on (in order: TCP stays a stream). Loss is real packet loss on
//! the links (nftables), so TCP retransmits over the delayed path as it would over a WAN.

use super::Testnet;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub const P2P_PORT: u16 = 26656;
pub const RPC_PORT: u16 = 26657;
pub const METRICS_PORT: u16 = 26660;
/// Where a namespace's delaying relay listens (forwarding to its node's P2P_PORT).
pub const RELAY_PORT: u16 = 26700;
const NFT_TABLE: &str = "tally_test";

/// Why namespaces cannot be used here, if they cannot (found once per test process).
pub fn unavailable() -> Option<String> {
    static FOUND: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FOUND.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    let Ok(uid) = Command::new("id").arg("-u").output() else {
        return Some("cannot run `id -u`".into());
    };
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    // Root without CAP_SYS_ADMIN (a default container) cannot make namespaces: try one.
    let probe = format!("tlyprobe{}", std::process::id());
    let made = Command::new("ip").args(["netns", "add", &probe]).output().ok()?;
    if !made.status.success() {
        return Some(format!("ip netns add: {}", String::from_utf8_lossy(&made.stderr).trim()));
    }
    delete(&probe);
    None
}

/// Moves the calling thread into namespace `ns` (a thread's network namespace is its own).
fn enter(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}")).expect("open the namespace");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the namespace");
}

/// Runs `f` on a thread inside namespace `ns`; the rest of the test stays on the host's.
pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                f()
            })
            .join()
            .expect("the namespace thread panicked")
    })
}

/// A one-way delay added to every p2p byte stream: `base` plus up to `jitter`, drawn per
/// chunk (never reordering a stream).
#[derive(Clone, Copy, Debug)]
pub struct Delay {
    pub base: Duration,
    pub jitter: Duration,
}

impl std::fmt::Display for Delay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (base, jitter) = (self.base.as_millis(), self.jitter.as_millis());
        write!(f, "{base} ms (+0-{jitter} ms jitter) latency")
    }
}

/// Accepts on RELAY_PORT in namespace `ns` and forwards each connection to the node's
/// P2P_PORT there, both directions delayed, until `stop`.
fn relay(ns: String, delay: Delay, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        enter(&ns);
        let listener = TcpListener::bind(("0.0.0.0", RELAY_PORT)).expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let mut seed = u64::from(std::process::id()) ^ u64::from(RELAY_PORT);
        while !stop.load(Ordering::Relaxed) {
            let Ok((inbound, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Ok(node) = TcpStream::connect(("127.0.0.1", P2P_PORT)) else { continue };
            inbound.set_nonblocking(false).expect("blocking");
            for (from, to) in [(&inbound, &node), (&node, &inbound)] {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let (from, to) = (from.try_clone().expect("clone"), to.try_clone().expect("clone"));
                pump(from, to, delay, seed);
            }
        }
    });
}

/// Copies `from` to `to`, each chunk held until its due time.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Delay, mut seed: u64) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut last_due = Instant::now();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let jitter_us = delay.jitter.as_micros() as u64;
            let extra =
                Duration::from_micros(if jitter_us == 0 { 0 } else { (seed >> 33) % jitter_us });
            let due = (Instant::now() + delay.base + extra).max(last_due);
            last_due = due;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A fresh HTTP agent: every namespace's 127.0.0.1:26657 looks the same to a connection
/// pool, so no pooled connection may be reused across namespaces.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build()
}

/// Runs `ip <args>`; panics with its error output on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn delete(ns: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// The link of validators i and j: its subnet index and each side's interface and address.
fn link(n: usize, i: usize, j: usize) -> (usize, String) {
    let (a, b) = (i.min(j), i.max(j));
    // Pairs in order (0,1), (0,2), ..., (1,2), ...
    let k = (0..a).map(|x| n - 1 - x).sum::<usize>() + (b - a - 1);
    let side = if i == a { 1 } else { 2 };
    (k, format!("10.77.{k}.{side}"))
}

impl Testnet {
    /// Writes `n` validators as `Testnet::write` does, puts each in a namespace of its own
    /// with a veth link to every other, and starts them. `edit` edits each config.toml.
    pub fn start_in_namespaces(n: u32, accounts: u32, edit: impl Fn(&mut toml::Table)) -> Testnet {
        Testnet::start_in_namespaces_with(n, accounts, None, edit)
    }

    /// Like `start_in_namespaces`; with a `delay`, every p2p connection goes through the
    /// delaying relay of the namespace it enters.
    pub fn start_in_namespaces_with(
        n: u32,
        accounts: u32,
        delay: Option<Delay>,
        edit: impl Fn(&mut toml::Table),
    ) -> Testnet {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!("tly{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut net = Testnet::write(n, accounts, &[], |_, t| edit(t), 0);
        let n = n as usize;
        // Peer ids by node, from the generated peer lists (`/ip4/127.0.0.1/tcp/P/p2p/ID`).
        let p2p_ports: Vec<u16> = net.nodes.iter().map(|node| node.rpc_port - 1).collect();
        let mut peer_ids = vec![String::new(); n];
        for node in &net.nodes {
            for addr in read_config(&node.home)["p2p"]["peers"].as_array().expect("peers") {
                let addr = addr.as_str().expect("peer address");
                let parts: Vec<&str> = addr.split('/').collect();
                let port: u16 = parts[4].parse().expect("peer port");
                let j = p2p_ports.iter().position(|&p| p == port).expect("a known port");
                peer_ids[j] = parts[6].to_string();
            }
        }
        for i in 0..n {
            let ns = format!("{tag}n{i}");
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        for i in 0..n {
            for j in i + 1..n {
                let (ns_i, ns_j) = (&net.namespaces[i], &net.namespaces[j]);
                let (dev_i, dev_j) = (format!("to{j}"), format!("to{i}"));
                // Both ends are made inside their namespaces: no name on the host, where
                // tests running in parallel would collide.
                ip(&[
                    "link", "add", &dev_i, "netns", ns_i, "type", "veth", "peer", "name", &dev_j,
                    "netns", ns_j,
                ]);
                for (ns, dev, me, other) in [(ns_i, &dev_i, i, j), (ns_j, &dev_j, j, i)] {
                    let (_, addr) = link(n, me, other);
                    ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
                    ip(&["-n", ns, "link", "set", dev, "up"]);
                }
            }
        }
        for i in 0..n {
            let home = net.nodes[i].home.clone();
            let mut table = read_config(&home);
            let peers: Vec<toml::Value> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (_, addr) = link(n, j, i);
                    let port = if delay.is_some() { RELAY_PORT } else { P2P_PORT };
                    format!("/ip4/{addr}/tcp/{port}/p2p/{}", peer_ids[j]).into()
                })
                .collect();
            let p2p = table["p2p"].as_table_mut().expect("p2p table");
            p2p.insert("listen_addr".into(), format!("/ip4/0.0.0.0/tcp/{P2P_PORT}").into());
            p2p.insert("peers".into(), peers.into());
            let rpc = table["rpc"].as_table_mut().expect("rpc table");
            rpc.insert("listen_addr".into(), format!("127.0.0.1:{RPC_PORT}").into());
            let metrics = table["metrics"].as_table_mut().expect("metrics table");
            metrics.insert("listen_addr".into(), format!("127.0.0.1:{METRICS_PORT}").into());
            std::fs::write(home.join("config.toml"), toml::to_string(&table).expect("encode"))
                .expect("write config.toml");
            let node = &mut net.nodes[i];
            node.netns = Some(net.namespaces[i].clone());
            node.rpc_port = RPC_PORT;
            node.metrics_port = METRICS_PORT;
        }
        if let Some(delay) = delay {
            for ns in &net.namespaces {
                relay(ns.clone(), delay, net.stop_relays.clone());
            }
        }
        for i in 0..n {
            net.start_node(i);
        }
        net
    }

    /// Brings the link between validators i and j up or down (down: neither side can send
    /// to the other; the connected route is gone, so sends fail at once).
    pub fn set_link(&self, i: usize, j: usize, up: bool) {
        let ns = &self.namespaces[i];
        ip(&["-n", ns, "link", "set", &format!("to{j}"), if up { "up" } else { "down" }]);
        if up {
            // A veth pair is up only when both ends are.
            ip(&["-n", &self.namespaces[j], "link", "set", &format!("to{i}"), "up"]);
        }
    }

    /// Cuts validator i off from every other.
    pub fn isolate(&self, i: usize) {
        for j in (0..self.nodes.len()).filter(|&j| j != i) {
            self.set_link(i, j, false);
        }
    }

    /// Cuts every link between `group` and the rest.
    pub fn split(&self, group: &[usize]) {
        for &i in group {
            for j in (0..self.nodes.len()).filter(|j| !group.contains(j)) {
                self.set_link(i, j, false);
            }
        }
    }

    /// Every link up again.
    pub fn heal(&self) {
        for i in 0..self.nodes.len() {
            for j in i + 1..self.nodes.len() {
                self.set_link(i, j, true);
            }
        }
    }

    /// Drops `percent` of the packets arriving on every link, at random (nftables `numgen
    /// random`, in each namespace); 0 removes the rule.
    pub fn set_loss(&self, percent: u32) {
        for ns in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "delete", "table", "inet", NFT_TABLE])
                .output();
            if percent == 0 {
                continue;
            }
            let script = format!(
                "add table inet {NFT_TABLE}\n\
                 add chain inet {NFT_TABLE} input {{ type filter hook input priority 0 ; policy accept ; }}\n\
                 add rule inet {NFT_TABLE} input iifname \"to*\" numgen random mod 100 < {percent} drop\n"
            );
            let path = self.dir.path().join(format!("{ns}.nft"));
            std::fs::write(&path, script).expect("write the nft script");
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "-f"])
                .arg(&path)
                .output()
                .expect("run nft (Debian package nftables)");
            assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn read_config(home: &std::path::Path) -> toml::Table {
    let text = std::fs::read_to_string(home.join("config.toml")).expect("read config.toml");
    toml::from_str(&text).expect("parse config.toml")
}
