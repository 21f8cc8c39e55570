//! An in-memory cluster of cores: every broadcast is delivered to every other running core,
//! node requests are answered at once, and timeouts fire when nothing else is left to do.
//! Deterministic: FIFO queues, no randomness.

use super::{chain, keys, validator_set};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, VecDeque};
use tally_consensus::{
    BlockHash, CommitCertificate, Core, CoreConfig, Evidence, Height, Input, Output, SignedMessage,
    Timeout, ValidatorSet, Vote,
};
use tally_crypto::{Hash, Keypair, Verifier, VerifierConfig};

pub struct Cluster {
    pub cores: Vec<Core>,
    pub keys: Vec<Keypair>,
    pub validators: ValidatorSet,
    /// Crashed validators: they receive nothing and send nothing.
    pub silent: BTreeSet<usize>,
    /// Decisions of each core, in height order.
    pub decisions: Vec<Vec<CommitCertificate>>,
    pub evidence: Vec<Evidence>,
    /// What each core persisted, in order.
    pub persisted: Vec<Vec<SignedMessage>>,
    /// Heights are started up to this one.
    pub last_height: u64,
    queue: VecDeque<(usize, Input)>,
    timeouts: Vec<VecDeque<Timeout>>,
    verifier: Verifier,
    pub steps: u64,
    /// Reordering, duplication and loss, from one seed; `None` = FIFO, lossless.
    pub chaos: Option<Chaos>,
    /// Byzantine validators that send a conflicting vote (for another block) to every other
    /// peer whenever they vote for a block.
    pub equivocators: BTreeSet<usize>,
}

pub struct Chaos {
    pub rng: StdRng,
    pub drop_percent: u32,
    pub duplicate_percent: u32,
}

impl Chaos {
    pub fn new(seed: u64, drop_percent: u32, duplicate_percent: u32) -> Chaos {
        Chaos { rng: StdRng::seed_from_u64(seed), drop_percent, duplicate_percent }
    }
}

impl Cluster {
    pub fn new(n: usize, last_height: u64) -> Cluster {
        let keys = keys(n);
        let validators = validator_set(&keys, &vec![1; n]);
        let cores = keys
            .iter()
            .map(|k| {
                let config = CoreConfig::new(chain());
                Core::new(config, validators.clone(), Some(Box::new(k.clone())))
                    .expect("default config is valid")
            })
            .collect();
        Cluster {
            cores,
            keys,
            validators,
            silent: BTreeSet::new(),
            decisions: vec![Vec::new(); n],
            evidence: Vec::new(),
            persisted: vec![Vec::new(); n],
            last_height,
            queue: VecDeque::new(),
            timeouts: vec![VecDeque::new(); n],
            verifier: Verifier::new(VerifierConfig::default()),
            steps: 0,
            chaos: None,
            equivocators: BTreeSet::new(),
        }
    }

    /// The block a proposer builds: a function of (height, round, proposer).
    pub fn block_of(height: Height, round: u32, proposer: usize) -> BlockHash {
        BlockHash(Hash::digest_parts(&[
            b"block",
            &height.0.to_le_bytes(),
            &round.to_le_bytes(),
            &(proposer as u64).to_le_bytes(),
        ]))
    }

    pub fn start(&mut self) {
        for i in 0..self.cores.len() {
            self.queue.push_back((i, Input::StartHeight(Height(1))));
        }
    }

    /// Runs until every running core decided `last_height`, firing timeouts when the queue
    /// drains. Panics after `max_steps`.
    pub fn run(&mut self, max_steps: u64) {
        while !self.all_done() {
            assert!(
                self.steps < max_steps,
                "no progress after {max_steps} steps\n{}",
                self.describe()
            );
            self.step_once();
        }
    }

    /// Delivers `count` more inputs (or fewer, if everyone is done).
    pub fn run_for(&mut self, count: u64) {
        let end = self.steps + count;
        while self.steps < end && !self.all_done() {
            self.step_once();
        }
    }

    fn step_once(&mut self) {
        if let Some((to, input)) = self.next_message() {
            self.deliver(to, input);
        } else {
            self.rebroadcast();
            self.fire_timeouts();
        }
    }

    /// Crashes core `i` and restarts it from its persisted signing record, at the height
    /// after its last decision (what the node's store would say).
    pub fn restart(&mut self, i: usize) {
        let height = self.decisions[i].last().map_or(Height(1), |c| c.height.next());
        let config = CoreConfig::new(chain());
        let signer = Box::new(self.keys[i].clone());
        let mut core = Core::new(config, self.validators.clone(), Some(signer))
            .expect("default config is valid");
        core.restore_signed(self.persisted[i].clone());
        self.cores[i] = core;
        self.timeouts[i].clear();
        self.queue.retain(|(to, _)| *to != i);
        self.queue.push_back((i, Input::StartHeight(height)));
    }

    fn all_done(&self) -> bool {
        (0..self.cores.len())
            .filter(|i| !self.silent.contains(i))
            .all(|i| self.decisions[i].last().is_some_and(|c| c.height.0 >= self.last_height))
    }

    fn next_message(&mut self) -> Option<(usize, Input)> {
        match &mut self.chaos {
            Some(chaos) if !self.queue.is_empty() => {
                let i = chaos.rng.gen_range(0..self.queue.len());
                self.queue.swap_remove_back(i)
            }
            _ => self.queue.pop_front(),
        }
    }

    /// What a node does on its re-broadcast timer: send its own messages of the height again,
    /// and hand a peer that is behind the certificate of its height (block sync does that).
    fn rebroadcast(&mut self) {
        if self.chaos.is_none() {
            return;
        }
        for from in 0..self.cores.len() {
            for message in self.cores[from].own_messages() {
                self.broadcast(from, message);
            }
        }
        for to in 0..self.cores.len() {
            let height = self.cores[to].height();
            let known = self.decisions.iter().flatten().find(|c| c.height == height).cloned();
            if let Some(certificate) = known {
                if self.cores[to].decision().is_none() {
                    self.queue.push_back((to, Input::Certificate(certificate)));
                }
            }
        }
    }

    /// Where every running core is, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, core) in self.cores.iter().enumerate() {
            if !self.silent.contains(&i) {
                s += &format!("core {i}: {:?} stats {:?}\n", core.state_summary(), core.stats());
            }
        }
        s
    }

    fn fire_timeouts(&mut self) {
        for i in 0..self.cores.len() {
            if let Some(t) = self.timeouts[i].pop_front() {
                self.queue.push_back((i, Input::TimeoutElapsed(t)));
            }
        }
        assert!(!self.queue.is_empty(), "deadlock: no messages and no timeouts");
    }

    pub fn deliver(&mut self, to: usize, input: Input) {
        if self.silent.contains(&to) {
            return;
        }
        self.steps += 1;
        let mut out = Vec::new();
        self.cores[to].step(input, &mut out);
        self.cores[to].invariants().unwrap_or_else(|e| panic!("core {to}: {e}"));
        for output in out {
            self.handle(to, output);
        }
    }

    fn handle(&mut self, from: usize, output: Output) {
        match output {
            Output::Persist(m) => self.persisted[from].push(m),
            Output::Broadcast(m) => self.broadcast(from, m),
            Output::ScheduleTimeout { timeout, .. } => self.timeouts[from].push_back(timeout),
            Output::GetValue { height, round } => {
                let block_hash = Self::block_of(height, round.0, from);
                self.queue.push_back((from, Input::ProposeValue { height, round, block_hash }));
            }
            Output::ValidateValue { height, round, block_hash } => {
                let valid = true;
                let input = Input::ValueValidity { height, round, block_hash, valid };
                self.queue.push_back((from, input));
            }
            Output::Decide { certificate } => self.on_decide(from, certificate),
            Output::Evidence(e) => self.evidence.push(e),
        }
    }

    fn broadcast(&mut self, from: usize, message: SignedMessage) {
        assert!(self.persisted[from].contains(&message), "core {from} sent before persisting");
        if self.silent.contains(&from) {
            return;
        }
        let conflicting = self.conflicting(from, &message);
        for to in 0..self.cores.len() {
            if to == from {
                continue;
            }
            // Odd peers get the equivocator's conflicting vote too, so they can report it.
            let evil = conflicting.as_ref().filter(|_| to % 2 == 1);
            for message in std::iter::once(&message).chain(evil) {
                self.send(to, message);
            }
        }
    }

    /// Queues `message` for `to`: dropped, duplicated or once, as the chaos says.
    fn send(&mut self, to: usize, message: &SignedMessage) {
        let input = match message {
            SignedMessage::Proposal(p) => Input::Proposal(p.clone()),
            SignedMessage::Vote(v) => Input::Vote(v.clone()),
        };
        let copies = match &mut self.chaos {
            Some(c) => {
                let (drop, dup) = (c.rng.gen_range(0..100), c.rng.gen_range(0..100));
                if drop < c.drop_percent {
                    0
                } else if dup < c.duplicate_percent {
                    2
                } else {
                    1
                }
            }
            None => 1,
        };
        for _ in 0..copies {
            self.queue.push_back((to, input.clone()));
        }
    }

    /// An equivocator's second vote: same (height, round, type), another block.
    fn conflicting(&self, from: usize, message: &SignedMessage) -> Option<SignedMessage> {
        let SignedMessage::Vote(v) = message else { return None };
        if !self.equivocators.contains(&from) || v.vote.block_hash.is_none() {
            return None;
        }
        let evil = BlockHash(Hash::digest_parts(&[b"evil", &v.vote.height.0.to_le_bytes()]));
        let vote = Vote { block_hash: Some(evil), ..v.vote.clone() };
        Some(SignedMessage::Vote(vote.sign(&chain(), &self.keys[from])))
    }

    fn on_decide(&mut self, from: usize, certificate: CommitCertificate) {
        certificate
            .verify(&chain(), &self.validators, &self.verifier)
            .unwrap_or_else(|e| panic!("core {from} decided with a bad certificate: {e}"));
        let height = certificate.height;
        self.decisions[from].push(certificate);
        if height.0 < self.last_height {
            self.queue.push_back((from, Input::StartHeight(height.next())));
        }
    }

    /// Every pair of cores decided the same block at every height both decided.
    pub fn assert_agreement(&self) {
        for a in &self.decisions {
            for b in &self.decisions {
                for (x, y) in a.iter().zip(b) {
                    assert_eq!(x.height, y.height);
                    assert_eq!(x.block_hash, y.block_hash, "disagreement at {}", x.height);
                }
            }
        }
    }
}
