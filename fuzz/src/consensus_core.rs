//! Target `consensus_core`: the Tendermint core of validator 0 of four (equal power, the
//! simulator's fast test signatures) fed an arbitrary sequence of proposals, votes (signed by
//! the other validators' test keys, or garbage), certificates, node answers and timeouts.
//!
//! Messages pass the check a node runs before its core (`SimKeys::verify_message`); content is
//! arbitrary, so validators 1 to 3 behave as Byzantine as the fuzzer likes. Validator 0's own
//! key signs only what its core outputs (an echo replays those).
//!
//! Oracles, after every step: `invariants()` hold; the outputs never hold two different
//! messages signed by this validator for one (height, round, step); every decision carries a
//! certificate that verifies.

use std::collections::BTreeMap;
use tally_consensus::sim::{Scheme, SimKeys};
use tally_consensus::{
    BlockHash, CommitCertificate, CommitSig, Core, CoreConfig, Height, Input, Output, Proposal,
    Round, SignedMessage, Timeout, TimeoutStep, ValidatorIndex, Vote, VoteType,
};
use tally_crypto::{Hash, Signature};

/// Steps per input: enough for several heights, short enough for fast iterations.
const STEPS_MAX: usize = 400;
const VALUES: u8 = 4;
/// A `from` byte of this value means "the proposer of that (height, round)".
const FROM_PROPOSER: u8 = 255;

fn value(i: u8) -> BlockHash {
    BlockHash(Hash::digest_parts(&[b"tally-fuzz/value", &[i % VALUES]]))
}

/// A node's answer about a block is deterministic: the last value is invalid.
fn is_valid(v: &BlockHash) -> bool {
    *v != value(VALUES - 1)
}

/// (height, round, 0 = proposal | 1 = prevote | 2 = precommit).
type SignKey = (Height, Round, u8);

fn sign_key(m: &SignedMessage) -> SignKey {
    let step = match m {
        SignedMessage::Proposal(_) => 0,
        SignedMessage::Vote(v) if v.vote.vote_type == VoteType::Prevote => 1,
        SignedMessage::Vote(_) => 2,
    };
    (m.height(), m.round(), step)
}

/// Reads small fields from the fuzz input; 0 once it is exhausted.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

struct Harness {
    keys: SimKeys,
    core: Core,
    signed: BTreeMap<SignKey, SignedMessage>,
    own: Vec<SignedMessage>,
    timeouts: Vec<Timeout>,
    to_validate: Vec<(Height, Round, BlockHash)>,
    get_value: Option<(Height, Round)>,
    out: Vec<Output>,
}

impl Harness {
    fn new() -> Harness {
        let keys = SimKeys::new(Scheme::Fast, 7, &[1, 1, 1, 1]);
        let core = Core::new(
            CoreConfig::new(keys.chain_id.clone()),
            keys.validators.clone(),
            Some(keys.signer(0)),
        )
        .expect("the default core config is valid");
        Harness {
            keys,
            core,
            signed: BTreeMap::new(),
            own: Vec::new(),
            timeouts: Vec::new(),
            to_validate: Vec::new(),
            get_value: None,
            out: Vec::new(),
        }
    }

    /// A height near the core's: one below to two above.
    fn height(&self, dh: u8) -> Height {
        Height((self.core.height().0 + u64::from(dh % 4)).saturating_sub(1))
    }

    fn signer_index(&self, from: u8, height: Height, round: Round) -> usize {
        if from == FROM_PROPOSER {
            self.keys.validators.proposer(height, round).as_usize()
        } else {
            // 1..=3 are the other validators, 4 the outsider (not in the set).
            1 + usize::from(from % 4)
        }
    }

    fn sign_or_garble(&self, bytes: &[u8], signer: usize, garbage: u8) -> Signature {
        if signer == 0 || garbage % 8 == 0 {
            // Validator 0's key is this core's: nobody else signs with it.
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(Hash::digest_parts(&[b"garbage", bytes]).as_bytes());
            return Signature(sig);
        }
        self.keys.signer(signer).sign(bytes)
    }

    /// Feeds a peer message as a node does: only if it passes the signature check.
    fn deliver(&mut self, message: SignedMessage) {
        if !self.keys.verify_message(&message) {
            return;
        }
        match message {
            SignedMessage::Proposal(p) => self.step(Input::Proposal(p)),
            SignedMessage::Vote(v) => self.step(Input::Vote(v)),
        }
    }

    fn op(&mut self, r: &mut Reader<'_>) {
        match r.byte() % 10 {
            0 => {
                let h = Height(self.core.height().0 + 1 + u64::from(r.byte() % 2));
                self.step(Input::StartHeight(h));
            }
            1 => {
                let (from, h, round) =
                    (r.byte(), self.height(r.byte()), Round(u32::from(r.byte() % 4)));
                let pol = r.byte();
                let pol_round = (pol % 2 == 1).then(|| Round(u32::from(pol / 2 % 4)));
                let signer = self.signer_index(from, h, round);
                let proposal = Proposal {
                    height: h,
                    round,
                    block_hash: value(r.byte()),
                    pol_round,
                    proposer: ValidatorIndex(u32::try_from(signer).expect("small")),
                };
                let signature = self.sign_or_garble(
                    &proposal.signing_bytes(&self.keys.chain_id),
                    signer,
                    r.byte(),
                );
                self.deliver(SignedMessage::Proposal(tally_consensus::SignedProposal {
                    proposal,
                    signature,
                }));
            }
            2 | 3 => {
                let (from, h, round) =
                    (r.byte(), self.height(r.byte()), Round(u32::from(r.byte() % 4)));
                let kind = r.byte();
                let vote_type = if kind % 2 == 0 { VoteType::Prevote } else { VoteType::Precommit };
                let block_hash = (kind / 2 % 5 != 0).then(|| value(kind / 2));
                let signer = self.signer_index(from, h, round);
                let vote = Vote {
                    height: h,
                    round,
                    vote_type,
                    block_hash,
                    validator: ValidatorIndex(u32::try_from(signer).expect("small")),
                };
                let signature =
                    self.sign_or_garble(&vote.signing_bytes(&self.keys.chain_id), signer, r.byte());
                self.deliver(SignedMessage::Vote(tally_consensus::SignedVote { vote, signature }));
            }
            4 => {
                let v = value(r.byte() % (VALUES - 1));
                if let Some((height, round)) = self.get_value.take() {
                    self.step(Input::ProposeValue { height, round, block_hash: v });
                }
            }
            5 => {
                if !self.to_validate.is_empty() {
                    let i = usize::from(r.byte()) % self.to_validate.len();
                    let (height, round, block_hash) = self.to_validate.swap_remove(i);
                    let valid = is_valid(&block_hash);
                    self.step(Input::ValueValidity { height, round, block_hash, valid });
                }
            }
            6 => {
                if !self.timeouts.is_empty() {
                    let i = usize::from(r.byte()) % self.timeouts.len();
                    let t = self.timeouts.swap_remove(i);
                    self.step(Input::TimeoutElapsed(t));
                }
            }
            7 => {
                let (h, round, s) =
                    (self.height(r.byte()), Round(u32::from(r.byte() % 4)), r.byte());
                let step = [TimeoutStep::Propose, TimeoutStep::Prevote, TimeoutStep::Precommit]
                    [usize::from(s % 3)];
                self.step(Input::TimeoutElapsed(Timeout { height: h, round, step }));
            }
            8 => {
                let (h, round, v, signers) = (
                    self.height(r.byte()),
                    Round(u32::from(r.byte() % 4)),
                    value(r.byte()),
                    r.byte(),
                );
                self.certificate(h, round, v, signers);
            }
            _ => {
                if !self.own.is_empty() {
                    let m = self.own[usize::from(r.byte()) % self.own.len()].clone();
                    match m {
                        SignedMessage::Proposal(p) => self.step(Input::Proposal(p)),
                        SignedMessage::Vote(v) => self.step(Input::Vote(v)),
                    }
                }
            }
        }
    }

    /// A certificate signed by the validators in the bitmask `signers` (bits 1 to 3), passed
    /// to the core only if it verifies, as a node does.
    fn certificate(&mut self, height: Height, round: Round, v: BlockHash, signers: u8) {
        let signatures = (1..4u32)
            .filter(|i| signers & (1 << i) != 0)
            .map(|i| {
                let vote = Vote {
                    height,
                    round,
                    vote_type: VoteType::Precommit,
                    block_hash: Some(v),
                    validator: ValidatorIndex(i),
                };
                let signer = self.keys.signer(i as usize);
                CommitSig {
                    validator: ValidatorIndex(i),
                    signature: signer.sign(&vote.signing_bytes(&self.keys.chain_id)),
                }
            })
            .collect();
        let cert = CommitCertificate { height, round, block_hash: v, signatures };
        if self.keys.verify_certificate(&cert) {
            self.step(Input::Certificate(cert));
        }
    }

    fn step(&mut self, input: Input) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.core.step(input, &mut out);
        if let Err(violation) = self.core.invariants() {
            panic!("invariant violated: {violation}");
        }
        for o in &out {
            match o {
                Output::Persist(m) | Output::Broadcast(m) => self.record(m),
                Output::ScheduleTimeout { timeout, .. } => {
                    if self.timeouts.len() < 64 {
                        self.timeouts.push(*timeout);
                    }
                }
                Output::GetValue { height, round } => self.get_value = Some((*height, *round)),
                Output::ValidateValue { height, round, block_hash } => {
                    if self.to_validate.len() < 64 {
                        self.to_validate.push((*height, *round, *block_hash));
                    }
                }
                Output::Decide { certificate } => {
                    assert!(
                        self.keys.verify_certificate(certificate),
                        "decided on a bad certificate"
                    );
                    assert_eq!(certificate.height, self.core.height());
                }
                Output::Evidence(_) => {}
            }
        }
        self.out = out;
    }

    fn record(&mut self, m: &SignedMessage) {
        assert!(self.keys.verify_message(m), "the core output a message that does not verify");
        match self.signed.get(&sign_key(m)) {
            Some(previous) => assert_eq!(previous, m, "two different signed messages for one step"),
            None => {
                self.signed.insert(sign_key(m), m.clone());
                if self.own.len() < 64 {
                    self.own.push(m.clone());
                }
            }
        }
    }
}

pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    let mut r = Reader(data);
    h.step(Input::StartHeight(Height(1)));
    let mut steps = 0;
    while !r.0.is_empty() && steps < STEPS_MAX {
        h.op(&mut r);
        steps += 1;
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    // Ops are (tag % 10, fields...): see `Harness::op`.
    let p = FROM_PROPOSER;
    // The proposer's proposal for (1, 0), prevotes and precommits from 1, 2, 3 for value 0.
    let mut decide = vec![1, p, 1, 0, 0, 0, 1, 5];
    for from in 0..3u8 {
        decide.extend([2, from, 1, 0, 8, 1]); // prevote for value 0 (kind 8)
    }
    decide.extend([5, 0]); // answer validation
    for from in 0..3u8 {
        decide.extend([3, from, 1, 0, 9, 1]); // precommit for value 0 (kind 9)
    }
    decide.extend([0, 0]); // next height
                           // Timeouts only: rounds pass with nil votes.
    let timeouts = vec![6, 0, 6, 0, 6, 0, 6, 1, 6, 2, 7, 1, 1, 0];
    // This validator proposes when asked, and a certificate arrives.
    let propose = vec![4, 1, 5, 0, 8, 1, 0, 2, 0b1110, 9, 0];
    // Garbage signatures and the outsider.
    let garbage = vec![2, 3, 1, 0, 2, 0, 3, 1, 1, 0, 3, 8, 1, p, 1, 1, 0, 0, 0];
    vec![decide, timeouts, propose, garbage]
}
