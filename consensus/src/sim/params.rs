//! Everything a simulation run varies, drawn from its seed: the validator count (4 to 10,
//! sizes that are not 3f+1 included) and powers, the Byzantine roles (at most f, and always
//! less than 1/3 of the power), the network's latency, jitter, loss, duplication and
//! partitions, the crash and restart schedule, and the global stabilisation time (GST) after
//! which the network is synchronous and every honest validator is up.

use crate::core::{Bug, TimeoutParams};
use crate::sim::keys::Scheme;
use crate::sim::rng::SimRng;

/// What a simulated validator does. Everything but `Honest` is Byzantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Honest,
    /// Runs a correct core, but every vote for a value goes to half its peers as signed and
    /// to the other half as a conflicting vote (nil for a value, a bogus block for nil).
    Equivocator,
    /// Runs a correct core, but each proposal goes to half its peers as signed and to the
    /// other half for another (valid) block.
    DoubleProposer,
    /// Never sends anything.
    Silent,
    /// Runs a correct core and adds garbage: undecodable bytes, bad signatures, votes from
    /// a non-validator, self-signed votes for far-future heights and rounds.
    Garbage,
    /// Runs a correct core and replays old messages it received (validly signed by others).
    StaleReplayer,
    /// Runs a core that ignores its lock (L23/L29 without the lock condition).
    Amnesiac,
}

impl Role {
    pub const BYZANTINE: [Role; 6] = [
        Role::Equivocator,
        Role::DoubleProposer,
        Role::Silent,
        Role::Garbage,
        Role::StaleReplayer,
        Role::Amnesiac,
    ];

    pub fn is_honest(self) -> bool {
        self == Role::Honest
    }
}

/// A partition: between `start_ms` and `end_ms`, messages between the two sides are lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub start_ms: u64,
    pub end_ms: u64,
    /// `side[i]` is validator i's side.
    pub side: Vec<bool>,
}

/// An honest validator crashes at `at_ms` (losing everything but its signing record and its
/// committed blocks) and restarts at `restart_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    pub node: usize,
    pub at_ms: u64,
    pub restart_ms: u64,
    /// Crash inside the first step after `at_ms` that persists a signed message: right after
    /// the Persist, before its Broadcast and everything after it.
    pub after_persist: bool,
}

/// The whole configuration of one run.
#[derive(Clone, Debug)]
pub struct SimParams {
    pub seed: u64,
    pub scheme: Scheme,
    /// One entry per validator, 4 to 10 entries.
    pub powers: Vec<u64>,
    /// One entry per validator; Byzantine ones hold less than 1/3 of the power.
    pub roles: Vec<Role>,
    /// Every honest validator must commit this height (liveness).
    pub target_height: u64,
    /// Global stabilisation time: no loss, no partition, everyone up from then on.
    pub gst_ms: u64,
    /// Loss before GST, per message and link.
    pub loss_percent: u32,
    /// Duplication (before and after GST: it never hurts liveness).
    pub duplicate_percent: u32,
    /// Per-link base latency is drawn from this range; `jitter_ms` is added per message,
    /// which reorders messages on a link.
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub jitter_ms: u64,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    pub timeouts: TimeoutParams,
    /// How often a node re-broadcasts its own messages of the height and asks peers that
    /// are ahead for a certificate (the node's rebroadcast timer and block sync).
    pub tick_ms: u64,
    /// After GST, every honest validator must reach `target_height` within this time.
    pub liveness_bound_ms: u64,
    /// A deliberate bug in every honest core (the harness-can-fail test).
    pub bug: Option<Bug>,
}

/// Timeouts sized for the simulated network (latency at most ~60 ms): large enough that a
/// round usually succeeds after GST, small enough that simulated time stays short.
pub fn sim_timeouts() -> TimeoutParams {
    TimeoutParams {
        propose_base_ms: 300,
        propose_delta_ms: 100,
        prevote_base_ms: 150,
        prevote_delta_ms: 50,
        precommit_base_ms: 150,
        precommit_delta_ms: 50,
    }
}

impl SimParams {
    /// A fault-free run of `n` equal-power honest validators up to `target_height` (the
    /// bench's setting).
    pub fn quiet(seed: u64, n: usize, target_height: u64, scheme: Scheme) -> SimParams {
        SimParams {
            seed,
            scheme,
            powers: vec![1; n],
            roles: vec![Role::Honest; n],
            target_height,
            gst_ms: 0,
            loss_percent: 0,
            duplicate_percent: 0,
            latency_min_ms: 5,
            latency_max_ms: 20,
            jitter_ms: 5,
            partitions: Vec::new(),
            crashes: Vec::new(),
            timeouts: sim_timeouts(),
            tick_ms: 1000,
            liveness_bound_ms: 30_000 + target_height * 2_000,
            bug: None,
        }
    }

    /// Draws every parameter from `seed`.
    pub fn draw(seed: u64, scheme: Scheme) -> SimParams {
        let mut rng = SimRng::new(seed ^ 0x7A11_5EED);
        let n = usize::try_from(rng.range(4, 10)).expect("4..=10 fits");
        // A third of the runs weigh validators unequally (1 to 3 each).
        let weighted = rng.chance(33);
        let powers: Vec<u64> = (0..n).map(|_| if weighted { rng.range(1, 3) } else { 1 }).collect();
        let roles = draw_roles(&mut rng, &powers);
        let gst_ms = if rng.chance(15) { 0 } else { rng.range(500, 6_000) };
        let target_height = rng.range(2, 5);
        let partitions = draw_partitions(&mut rng, n, gst_ms);
        let crashes = draw_crashes(&mut rng, &roles, gst_ms);
        let latency_min_ms = rng.range(1, 20);
        SimParams {
            seed,
            scheme,
            powers,
            roles,
            target_height,
            gst_ms,
            loss_percent: u32::try_from(rng.range(0, 30)).expect("small"),
            duplicate_percent: u32::try_from(rng.range(0, 20)).expect("small"),
            latency_min_ms,
            latency_max_ms: latency_min_ms + rng.range(0, 30),
            jitter_ms: rng.range(0, 20),
            partitions,
            crashes,
            timeouts: sim_timeouts(),
            tick_ms: rng.range(200, 1_000),
            liveness_bound_ms: 30_000 + target_height * 5_000,
            bug: None,
        }
    }

    pub fn validators(&self) -> usize {
        self.powers.len()
    }

    pub fn byzantine(&self) -> usize {
        self.roles.iter().filter(|r| !r.is_honest()).count()
    }
}

/// Up to f = (n - 1) / 3 Byzantine validators, fewer if their power reaches 1/3.
fn draw_roles(rng: &mut SimRng, powers: &[u64]) -> Vec<Role> {
    let n = powers.len();
    let total: u64 = powers.iter().sum();
    let f = (n - 1) / 3;
    let wanted = rng.range(0, f as u64);
    let mut roles = vec![Role::Honest; n];
    let mut byzantine_power = 0u64;
    for _ in 0..wanted {
        let i = rng.index(n);
        if !roles[i].is_honest() || (byzantine_power + powers[i]) * 3 >= total {
            continue;
        }
        byzantine_power += powers[i];
        roles[i] = Role::BYZANTINE[rng.index(Role::BYZANTINE.len())];
    }
    roles
}

fn draw_partitions(rng: &mut SimRng, n: usize, gst_ms: u64) -> Vec<Partition> {
    if gst_ms == 0 {
        return Vec::new();
    }
    (0..rng.range(0, 3))
        .map(|_| {
            let start_ms = rng.range(0, gst_ms - 1);
            let end_ms = rng.range(start_ms + 1, gst_ms);
            let side = (0..n).map(|_| rng.chance(50)).collect();
            Partition { start_ms, end_ms, side }
        })
        .collect()
}

/// Up to two crashes of honest validators, each restarted by GST.
fn draw_crashes(rng: &mut SimRng, roles: &[Role], gst_ms: u64) -> Vec<Crash> {
    if gst_ms == 0 {
        return Vec::new();
    }
    (0..rng.range(0, 2))
        .filter_map(|_| {
            let node = rng.index(roles.len());
            if !roles[node].is_honest() {
                return None;
            }
            let at_ms = rng.range(0, gst_ms - 1);
            let restart_ms = rng.range(at_ms + 1, gst_ms);
            // Derived, not drawn, so that adding it changed no seed's other parameters.
            let after_persist = at_ms % 2 == 1;
            Some(Crash { node, at_ms, restart_ms, after_persist })
        })
        .collect()
}
