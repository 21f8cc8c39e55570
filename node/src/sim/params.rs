//! Everything one run of the node simulator varies, drawn from its seed: the validators (4
//! to 7) and their Byzantine roles (at most f, on distinct validators), the network (latency, jitter, loss,
//! duplication, partitions that heal at GST), the crashes (power cuts, cuts inside a disk
//! write, failed fsyncs), a lying peer, the clients and the disk's latency.

use crate::consensus::NodeBug;
pub use tally_consensus::sim::params::Partition;
use tally_consensus::sim::{Role, SimRng};

/// How a node goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// The power goes at `at_ms`, between two steps of the node.
    PowerCut,
    /// The power goes inside the `ops`-th disk operation after `at_ms` on the ledger's disk
    /// (`ledger`) or the signing record's: that write or fsync fails and the node stops.
    CutInWrite { ledger: bool, ops: u64 },
    /// The `n`-th fsync after `at_ms` on the ledger's or the signing record's disk fails:
    /// the node stops (a failed write is fatal), and its unsynced writes may be torn.
    FailedSync { ledger: bool, n: u64 },
}

/// One crash of an honest validator, and its restart `down_ms` after it went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    pub node: usize,
    pub at_ms: u64,
    pub down_ms: u64,
    pub kind: CrashKind,
    /// The consensus log is lost with the crash (its unsynced tail, here all of it): it
    /// saves time, never safety, so nothing may depend on it.
    pub lose_wal: bool,
}

/// The whole configuration of one run.
#[derive(Clone, Debug)]
pub struct SimParams {
    pub seed: u64,
    pub roles: Vec<Role>,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Before GST only.
    pub loss_percent: u32,
    pub duplicate_percent: u32,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    /// A peer that relays validators' votes quickly and answers block sync with forged
    /// blocks (valid execution, certificates that do not verify).
    pub liar: bool,
    /// Clients, each with its own account, submitting a transfer every so often.
    pub clients: usize,
    pub client_interval_ms: (u64, u64),
    /// Simulated time a block write or a signature batch takes (results handed over late).
    pub disk_latency_ms: u64,
    /// After it the network is synchronous and every honest node is up.
    pub gst_ms: u64,
    /// The run ends here; the liveness check wants progress between GST and the end.
    pub end_ms: u64,
    pub bug: Option<NodeBug>,
}

impl SimParams {
    pub fn n(&self) -> usize {
        self.roles.len()
    }

    pub fn f(&self) -> usize {
        (self.n() - 1) / 3
    }

    pub fn honest(&self, i: usize) -> bool {
        self.roles[i].is_honest()
    }

    /// Draws every parameter from `seed`.
    pub fn draw(seed: u64, bug: Option<NodeBug>) -> SimParams {
        let mut rng = SimRng::new(seed ^ 0x7a11_7a11_0de5_1a4e);
        // SimRng::range is inclusive.
        let n = rng.range(4, 7) as usize;
        let f = (n - 1) / 3;
        let mut roles = vec![Role::Honest; n];
        let byzantine = if rng.chance(40) { rng.range(1, f as u64) as usize } else { 0 };
        for k in 0..byzantine {
            // Distinct validators: the k-th Byzantine one is among the first n - k honest.
            let honest_now: Vec<usize> = (0..n).filter(|&i| roles[i].is_honest()).collect();
            let i = honest_now[rng.index(n - k)];
            let kinds = [
                Role::Equivocator,
                Role::DoubleProposer,
                Role::Silent,
                Role::Garbage,
                Role::StaleReplayer,
                Role::Amnesiac,
            ];
            roles[i] = kinds[rng.index(kinds.len())];
        }
        let gst_ms = rng.range(1_000, 3_000);
        let end_ms = gst_ms + 6_000;
        let honest: Vec<usize> = (0..n).filter(|&i| roles[i].is_honest()).collect();
        let mut partitions = Vec::new();
        for _ in 0..rng.range(0, 2) {
            let start_ms = rng.range(0, gst_ms);
            let end_ms = rng.range(start_ms, gst_ms + 1);
            let side = (0..n).map(|_| rng.chance(50)).collect();
            partitions.push(Partition { start_ms, end_ms, side });
        }
        let mut crashes = Vec::new();
        for _ in 0..rng.range(0, 3) {
            let node = honest[rng.index(honest.len())];
            let at_ms = rng.range(200, gst_ms.saturating_sub(500).max(300));
            let down_ms = rng.range(50, 1_500);
            let ledger = rng.chance(50);
            let kind = match rng.below(3) {
                0 => CrashKind::PowerCut,
                1 => CrashKind::CutInWrite { ledger, ops: rng.range(1, 40) },
                _ => CrashKind::FailedSync { ledger, n: rng.range(0, 3) },
            };
            crashes.push(Crash { node, at_ms, down_ms, kind, lose_wal: rng.chance(50) });
        }
        // A node crashes once at a time: a second crash waits for the first restart.
        crashes.sort_by_key(|c| c.at_ms);
        let clients = rng.range(1, 5) as usize;
        let lo = rng.range(5, 60);
        SimParams {
            seed,
            roles,
            latency_ms: rng.range(1, 25),
            jitter_ms: rng.range(0, 15),
            loss_percent: if rng.chance(50) { rng.range(0, 20) as u32 } else { 0 },
            duplicate_percent: if rng.chance(30) { rng.range(0, 15) as u32 } else { 0 },
            partitions,
            crashes,
            liar: rng.chance(50),
            clients,
            client_interval_ms: (lo, lo + rng.range(0, 100)),
            disk_latency_ms: rng.range(0, 8),
            gst_ms,
            end_ms,
            bug,
        }
    }
}
