//! One simulation run: a cluster of simulated nodes, each a [`Core`] with what its node's
//! driver does around it (persist, then send; timers; the application's block building
//! and judging; commit; rebroadcast and block sync on a tick; crash and restart from the
//! signing record and the committed chain), over the simulated network, in simulated time,
//! with one seeded generator. The oracle watches every step; the run stops at the first
//! violation, when every honest validator has committed the target height, or at the
//! liveness deadline (GST + bound).

use crate::certificate::CommitCertificate;
use crate::core::{Bug, Core, CoreConfig, Input, Output, SignedMessage};
use crate::evidence::Evidence;
use crate::sim::app::Blocks;
use crate::sim::byzantine::Actor;
use crate::sim::keys::{Scheme, SimKeys};
use crate::sim::network::{Event, EventQueue, Network, Packet};
use crate::sim::oracle::{sign_key, view_of, Oracle, SignKey, Violation};
use crate::sim::params::{Role, SimParams};
use crate::sim::rng::SimRng;
use crate::types::Height;

/// Most events one run may process; a run that needs more is reported as a liveness
/// failure rather than looping (after GST a height takes a few hundred events).
pub const EVENTS_MAX: u64 = 5_000_000;

/// Largest wire message a simulated node decodes (a signed vote or proposal is ~170 bytes).
const WIRE_BYTES_MAX: usize = 512;

/// What a run did; `violation` is `None` when the oracle found nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    pub seed: u64,
    pub validators: usize,
    pub byzantine: usize,
    /// Heights decided by some honest validator.
    pub heights_decided: u64,
    /// The round at which each decided height was decided (first honest decision).
    pub rounds: Vec<u32>,
    /// Packets delivered to a running node.
    pub messages: u64,
    /// Packets a node rejected (undecodable, bad signature, unknown signer).
    pub rejected: u64,
    /// Evidence outputs of honest validators.
    pub evidence: u64,
    /// Crashes, and how many of them fell between a Persist and its Broadcast.
    pub crashes: u64,
    pub crashes_after_persist: u64,
    pub events: u64,
    pub sim_time_ms: u64,
    /// A digest of every event processed, in order: the same seed gives the same digest.
    pub trace: u64,
    pub violation: Option<Violation>,
    /// On a violation: each node's role, committed height and consensus state.
    pub nodes: Vec<String>,
}

struct Node {
    /// `None` while crashed, or for a silent validator.
    core: Option<Core>,
    /// Bumped at every crash and restart: timers of an earlier life are dropped.
    incarnation: u32,
    /// The signing record (what Persist wrote); survives crashes.
    record: Vec<SignedMessage>,
    /// The committed chain: certificate of height h at index h - 1; survives crashes.
    committed: Vec<CommitCertificate>,
    /// Crash right after the next Persist (a crash between persisting and sending).
    crash_after_persist: bool,
    actor: Actor,
}

impl Node {
    fn committed_height(&self) -> u64 {
        self.committed.len() as u64
    }
}

/// A cluster being simulated.
pub struct Simulation {
    params: SimParams,
    keys: SimKeys,
    config: CoreConfig,
    rng: SimRng,
    queue: EventQueue,
    net: Network,
    nodes: Vec<Node>,
    blocks: Blocks,
    oracle: Oracle,
    messages: u64,
    rejected: u64,
    evidence: u64,
    crashes: u64,
    crashes_after_persist: u64,
    events: u64,
    trace: u64,
}

/// Runs the seed's drawn scenario.
pub fn run_seed(seed: u64, scheme: Scheme) -> SimReport {
    Simulation::new(SimParams::draw(seed, scheme)).run()
}

impl Simulation {
    pub fn new(params: SimParams) -> Simulation {
        let n = params.validators();
        let keys = SimKeys::new(params.scheme, params.seed, &params.powers);
        let mut config = CoreConfig::new(keys.chain_id.clone());
        config.timeouts = params.timeouts;
        let mut rng = SimRng::new(params.seed);
        let net = Network::new(&params, &mut rng.fork());
        let nodes = (0..n)
            .map(|i| {
                let role = params.roles[i];
                let outsider = (role == Role::Garbage).then(|| keys.signer(n));
                Node {
                    core: None,
                    incarnation: 0,
                    record: Vec::new(),
                    committed: Vec::new(),
                    crash_after_persist: false,
                    actor: Actor::new(role, i, keys.signer(i), outsider),
                }
            })
            .collect();
        let honest = params.roles.iter().map(|r| r.is_honest()).collect();
        let oracle = Oracle::new(&params.powers, honest, config.rounds_ahead_max);
        Simulation {
            keys,
            config,
            rng,
            queue: EventQueue::default(),
            net,
            nodes,
            blocks: Blocks::default(),
            oracle,
            messages: 0,
            rejected: 0,
            evidence: 0,
            crashes: 0,
            crashes_after_persist: 0,
            events: 0,
            trace: 0xCBF2_9CE4_8422_2325,
            params,
        }
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> SimReport {
        for i in 0..self.nodes.len() {
            if self.params.roles[i] != Role::Silent {
                self.start_node(i);
            }
        }
        for c in self.params.crashes.clone() {
            let after_persist = c.after_persist;
            self.queue.push(c.at_ms, Event::Crash { node: c.node, after_persist });
            self.queue.push(c.restart_ms, Event::Restart { node: c.node });
        }
        let deadline_ms = self.params.gst_ms + self.params.liveness_bound_ms;
        while self.oracle.violation.is_none() && !self.all_reached_target() {
            let next = self.queue.pop();
            match next {
                Some((at_ms, event)) if at_ms <= deadline_ms && self.events < EVENTS_MAX => {
                    self.events += 1;
                    self.handle_event(event);
                }
                _ => self.fail_liveness(),
            }
        }
        self.report()
    }

    fn report(&self) -> SimReport {
        let rounds: Vec<u32> = self.oracle.decision_rounds().collect();
        SimReport {
            seed: self.params.seed,
            validators: self.params.validators(),
            byzantine: self.params.byzantine(),
            heights_decided: rounds.len() as u64,
            rounds,
            messages: self.messages,
            rejected: self.rejected,
            evidence: self.evidence,
            crashes: self.crashes,
            crashes_after_persist: self.crashes_after_persist,
            events: self.events,
            sim_time_ms: self.queue.now_ms(),
            trace: self.trace,
            violation: self.oracle.violation.clone(),
            nodes: if self.oracle.violation.is_some() { self.describe() } else { Vec::new() },
        }
    }

    fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("{:?}", self.params)];
        for (i, node) in self.nodes.iter().enumerate() {
            let state = node.core.as_ref().map(|c| (c.state_summary(), c.stats()));
            lines.push(format!(
                "node {i} {:?} committed {} incarnation {}: {state:?}",
                self.params.roles[i],
                node.committed_height(),
                node.incarnation
            ));
        }
        lines
    }

    fn all_reached_target(&self) -> bool {
        self.honest_nodes().all(|i| self.nodes[i].committed_height() >= self.params.target_height)
    }

    fn honest_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.params.roles[*i].is_honest())
    }

    fn fail_liveness(&mut self) {
        let target = self.params.target_height;
        let lagging = self.honest_nodes().find(|i| self.nodes[*i].committed_height() < target);
        let node = lagging.unwrap_or(0);
        let committed = self.nodes[node].committed_height();
        let at_ms = self.queue.now_ms();
        self.oracle.fail(Violation::Liveness { node, committed, target, at_ms });
    }

    /// A fresh core for node `i` (first start or restart), fed its signing record and
    /// started at the height after its last commit.
    fn start_node(&mut self, i: usize) {
        let signer = self.keys.signer(i);
        let mut core = Core::new(self.config.clone(), self.keys.validators.clone(), Some(signer))
            .expect("the simulation's config is valid");
        if self.params.roles[i] == Role::Amnesiac {
            core.set_bug(Some(Bug::IgnoreLock));
        } else if self.params.roles[i].is_honest() {
            core.set_bug(self.params.bug);
        }
        let node = &mut self.nodes[i];
        core.restore_signed(node.record.iter().cloned());
        node.core = Some(core);
        node.incarnation += 1;
        let (incarnation, height) = (node.incarnation, Height(node.committed_height() + 1));
        self.queue
            .push_after(0, Event::Local { to: i, incarnation, input: Input::StartHeight(height) });
        self.queue.push_after(self.params.tick_ms, Event::Tick { to: i, incarnation });
    }

    fn mix(&mut self, x: u64) {
        self.trace = (self.trace ^ x).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(29);
    }

    fn handle_event(&mut self, event: Event) {
        self.mix(self.queue.now_ms());
        match event {
            Event::Deliver { to, packet } => self.deliver(to, packet),
            Event::Local { to, incarnation, input } => {
                self.mix(0x10 | (to as u64) << 8);
                if self.is_live(to, incarnation) {
                    let start = matches!(input, Input::StartHeight(_));
                    self.step(to, input, None);
                    if start {
                        self.sync(to);
                    }
                }
            }
            Event::Tick { to, incarnation } => {
                self.mix(0x20 | (to as u64) << 8);
                if self.is_live(to, incarnation) {
                    self.tick(to);
                    self.queue.push_after(self.params.tick_ms, Event::Tick { to, incarnation });
                }
            }
            Event::Crash { node, after_persist } => {
                self.mix(0x30 | (node as u64) << 8);
                if after_persist {
                    self.nodes[node].crash_after_persist = self.nodes[node].core.is_some();
                } else {
                    self.crash(node);
                }
            }
            Event::Restart { node } => {
                self.mix(0x40 | (node as u64) << 8);
                self.nodes[node].crash_after_persist = false;
                if self.nodes[node].core.is_none() {
                    self.oracle.on_restart(node);
                    self.start_node(node);
                }
            }
        }
    }

    fn crash(&mut self, node: usize) {
        if self.nodes[node].core.take().is_some() {
            self.nodes[node].incarnation += 1;
            self.crashes += 1;
        }
    }

    fn is_live(&self, node: usize, incarnation: u32) -> bool {
        self.nodes[node].core.is_some() && self.nodes[node].incarnation == incarnation
    }

    /// A packet reaches node `to`: decoded and checked as the node would, then stepped.
    fn deliver(&mut self, to: usize, packet: Packet) {
        if self.nodes[to].core.is_none() {
            return;
        }
        self.messages += 1;
        let message = match packet {
            Packet::Certificate(c) => {
                self.mix(0x50 | (to as u64) << 8 | c.height.0 << 16);
                if self.keys.verify_certificate(&c) {
                    self.step(to, Input::Certificate(c), None);
                } else {
                    self.rejected += 1;
                }
                return;
            }
            Packet::Bytes(bytes) => {
                self.mix(0x60 | (to as u64) << 8 | (bytes.len() as u64) << 16);
                let decoded = (bytes.len() <= WIRE_BYTES_MAX)
                    .then(|| borsh::from_slice::<SignedMessage>(&bytes).ok())
                    .flatten();
                match decoded {
                    Some(m) => m,
                    None => {
                        self.rejected += 1;
                        return;
                    }
                }
            }
            Packet::Message(m) => m,
        };
        let (signer, height, round, step) = sign_key(&message);
        self.mix(0x70 | (to as u64) << 8 | u64::from(step) << 12 | u64::from(signer) << 16);
        self.mix(height << 32 | u64::from(round));
        if !self.keys.verify_message(&message) {
            self.rejected += 1;
            return;
        }
        self.nodes[to].actor.observe(&message);
        let expected = self.expected_evidence(to, &message);
        let input = match message {
            SignedMessage::Proposal(p) => Input::Proposal(p),
            SignedMessage::Vote(v) => Input::Vote(v),
        };
        self.step(to, input, expected);
    }

    /// The equivocation honest node `to` must report if it is handed `message` now.
    fn expected_evidence(&mut self, to: usize, message: &SignedMessage) -> Option<SignKey> {
        if !self.params.roles[to].is_honest() {
            return None;
        }
        let core = self.nodes[to].core.as_ref()?;
        let view = view_of(core.height(), core.round(), core.current_step().is_active());
        let proposer = self.keys.validators.proposer(message.height(), message.round());
        self.oracle.before_delivery(to, view, message, proposer)
    }

    /// Steps node `i`'s core and carries out its outputs in order, as the driver does.
    fn step(&mut self, i: usize, input: Input, expected: Option<SignKey>) {
        let honest = self.params.roles[i].is_honest();
        let mut out = Vec::new();
        {
            let Some(core) = self.nodes[i].core.as_mut() else { return };
            core.step(input, &mut out);
            if honest {
                if let Err(message) = core.invariants() {
                    self.oracle.fail(Violation::Invariant { node: i, message });
                }
            }
        }
        let mut evidence: Vec<Evidence> = Vec::new();
        for output in out {
            let persist = matches!(output, Output::Persist(_));
            match output {
                Output::Evidence(e) => evidence.push(e),
                other => self.carry_out(i, other),
            }
            if persist && self.nodes[i].crash_after_persist {
                // On disk, never sent: the rest of this step's outputs die with the node.
                self.nodes[i].crash_after_persist = false;
                self.crashes_after_persist += 1;
                self.crash(i);
                return;
            }
        }
        if honest {
            self.evidence += evidence.len() as u64;
            self.oracle.on_evidence(i, &evidence, expected, &self.keys);
        }
    }

    fn carry_out(&mut self, i: usize, output: Output) {
        let honest = self.params.roles[i].is_honest();
        let incarnation = self.nodes[i].incarnation;
        match output {
            Output::Persist(m) => {
                if honest {
                    self.oracle.on_signed(&m);
                }
                self.nodes[i].record.push(m);
            }
            Output::Broadcast(m) => {
                if honest {
                    self.oracle.on_signed(&m);
                }
                self.broadcast(i, &m);
            }
            Output::ScheduleTimeout { timeout, duration_ms } => {
                self.queue.push_after(duration_ms, Event::timeout(i, incarnation, timeout));
            }
            Output::GetValue { height, round } => {
                // A garbage sender proposes an invalid block half the time.
                let valid = !(self.params.roles[i] == Role::Garbage && self.rng.chance(50));
                let block_hash = self.blocks.build(height, round, i, 0, valid);
                let input = Input::ProposeValue { height, round, block_hash };
                self.queue.push_after(1, Event::Local { to: i, incarnation, input });
            }
            Output::ValidateValue { height, round, block_hash } => {
                let valid = self.blocks.verdict(height, block_hash).unwrap_or(false);
                let input = Input::ValueValidity { height, round, block_hash, valid };
                self.queue.push_after(1, Event::Local { to: i, incarnation, input });
            }
            Output::Decide { certificate } => self.commit(i, certificate),
            // `step` collects evidence for the oracle before calling this.
            Output::Evidence(_) => {}
        }
    }

    /// The node commits the decided block and starts the next height.
    fn commit(&mut self, i: usize, certificate: CommitCertificate) {
        let height = certificate.height;
        if self.params.roles[i].is_honest() {
            let valid = self.blocks.verdict(height, certificate.block_hash);
            self.oracle.on_decide(i, &certificate, &self.keys, valid);
        }
        let node = &mut self.nodes[i];
        if height.0 == node.committed_height() + 1 {
            node.committed.push(certificate);
            // The signing record below the committed height is no longer needed.
            node.record.retain(|m| m.height() > height);
        }
        let incarnation = node.incarnation;
        let input = Input::StartHeight(height.next());
        self.queue.push_after(1, Event::Local { to: i, incarnation, input });
    }

    fn broadcast(&mut self, from: usize, message: &SignedMessage) {
        let n = self.nodes.len();
        let chain = self.keys.chain_id.clone();
        let sends =
            self.nodes[from].actor.sends(message, n, &chain, &mut self.rng, &mut self.blocks);
        for (to, packet) in sends {
            self.send(from, to, packet);
        }
    }

    fn send(&mut self, from: usize, to: usize, packet: Packet) {
        if let Packet::Message(m) = &packet {
            self.oracle.on_proposal_sent(m);
        }
        let now = self.queue.now_ms();
        let [first, second] = self.net.delays(&mut self.rng, from, to, now);
        if let Some(d) = second {
            self.queue.push_after(d, Event::Deliver { to, packet: packet.clone() });
        }
        if let Some(d) = first {
            self.queue.push_after(d, Event::Deliver { to, packet });
        }
    }

    /// The node's timer: re-send its own messages of the height, and sync.
    fn tick(&mut self, i: usize) {
        let own = match &self.nodes[i].core {
            Some(core) => core.own_messages(),
            None => return,
        };
        for m in own {
            self.broadcast(i, &m);
        }
        self.sync(i);
    }

    /// Block sync: a connected peer that committed node `i`'s current height sends it the
    /// certificate (the block itself is in the shared registry).
    fn sync(&mut self, i: usize) {
        let Some(core) = &self.nodes[i].core else { return };
        if core.decision().is_some() || core.height() == Height(0) {
            return;
        }
        let height = core.height().0;
        let now = self.queue.now_ms();
        let n = self.nodes.len();
        let offset = self.rng.index(n);
        let peer = (0..n).map(|k| (k + offset) % n).find(|j| {
            *j != i
                && self.nodes[*j].core.is_some()
                && self.nodes[*j].committed_height() >= height
                && self.net.connected(*j, i, now)
        });
        if let Some(j) = peer {
            let certificate = self.nodes[j].committed[(height - 1) as usize].clone();
            self.send(j, i, Packet::Certificate(certificate));
        }
    }
}
