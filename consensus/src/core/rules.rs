//! The paper's "upon" clauses, evaluated against the current state after every input until
//! none fires. Each rule that fires changes the step, the round, the decision or a
//! "first time" flag, so the loop ends.
//!
//! Departures from the paper, and why:
//! - L49 asks for the PROPOSAL carrying v. Here the node holds the blocks, so "v is known"
//!   means the node judged the block valid: 2f+1 precommits for id(v) (counted here, or in a
//!   certificate from the node) plus valid(v) decide, even if the proposal itself was missed
//!   (tendermint.md, "Deciding from a certificate"). If valid(v) is unknown the core asks for
//!   it, which tells the node to fetch that block.
//! - L55 counts each validator at the highest round it was heard from (see
//!   `VoteKeeper::skip_round`), and skips to the highest round r that more than 1/3 of the
//!   power has reached, so a validator many rounds behind catches up in one step.

use crate::certificate::CommitCertificate;
use crate::core::io::{Output, TimeoutStep};
use crate::core::machine::{Core, Once};
use crate::core::state::Step;
use crate::core::vote_keeper::VoteTally;
use crate::types::{BlockHash, Round, VoteType, VotingPower};

impl Core {
    /// "2f+1": more than 2/3 of the power (or, under the testing bug `SmallQuorum`, more
    /// than 1/3).
    pub(super) fn is_quorum(&self, power: VotingPower) -> bool {
        #[cfg(feature = "testing")]
        if self.bug == Some(crate::core::bug::Bug::SmallQuorum) {
            return self.validators.has_f_plus_one(power);
        }
        self.validators.has_quorum(power)
    }

    /// Whether L23/L29's lock condition is skipped (only ever under the testing bug
    /// `IgnoreLock`).
    fn ignores_lock(&self) -> bool {
        #[cfg(feature = "testing")]
        if self.bug == Some(crate::core::bug::Bug::IgnoreLock) {
            return true;
        }
        false
    }

    /// Fires rules until none applies (or the height is decided).
    pub(super) fn apply_rules(&mut self, out: &mut Vec<Output>) {
        while self.step.is_active() && self.apply_one_rule(out) {}
    }

    fn apply_one_rule(&mut self, out: &mut Vec<Output>) -> bool {
        self.upon_precommit_quorum_for_value(out) // L49
            || self.upon_f_plus_one_ahead(out) // L55
            || self.upon_proposal_in_propose(out) // L22, L28
            || self.upon_prevote_quorum_any(out) // L34
            || self.upon_polka_for_proposal(out) // L36
            || self.upon_polka_for_nil(out) // L44
            || self.upon_precommit_quorum_any(out) // L47
    }

    /// L49-L54: 2f+1 precommits for id(v) in some round, and valid(v): decide.
    fn upon_precommit_quorum_for_value(&mut self, out: &mut Vec<Output>) -> bool {
        let counted = self.votes.rounds().find_map(|(round, votes)| {
            self.quorum_value(&votes.precommits).map(|value| (round, value))
        });
        let mut candidates: Vec<(Round, BlockHash)> = counted.into_iter().collect();
        if let Some(c) = &self.certificate {
            candidates.push((c.round, c.block_hash));
        }
        for (round, value) in candidates {
            match self.proposals.is_valid(&value) {
                Some(true) => {
                    let certificate = self.certificate_for(round, value);
                    self.decide(certificate, out);
                    return true;
                }
                // More than 1/3 of the power committed a block this node finds invalid:
                // nothing safe to do but not decide (and not panic).
                Some(false) => {}
                None => self.request_validity(round, value, out),
            }
        }
        false
    }

    /// The certificate for (round, value): the counted precommits if they are a quorum, else
    /// the certificate the node handed over.
    fn certificate_for(&self, round: Round, value: BlockHash) -> CommitCertificate {
        let precommits = self.votes.tally(round, VoteType::Precommit);
        if self.quorum_value(precommits) == Some(value) {
            let signed = precommits.votes_for(Some(value));
            return CommitCertificate::from_precommits(self.height, round, value, signed);
        }
        self.certificate.clone().expect("a candidate is counted precommits or the certificate")
    }

    fn decide(&mut self, certificate: CommitCertificate, out: &mut Vec<Output>) {
        self.step = Step::Commit; // L51-L52: the node commits, then starts the next height.
        self.awaiting_value = None;
        self.decision = Some(certificate.clone());
        out.push(Output::Decide { certificate });
    }

    /// L55-L56: f+1 validators heard from in rounds above ours: StartRound(r).
    fn upon_f_plus_one_ahead(&mut self, out: &mut Vec<Output>) -> bool {
        match self.votes.skip_round(self.round, &self.validators) {
            Some(round) => {
                self.start_round(round, out);
                true
            }
            None => false,
        }
    }

    /// L22-L27 (vr = -1) and L28-L33 (0 <= vr < round, with a polka for v in round vr).
    fn upon_proposal_in_propose(&mut self, out: &mut Vec<Output>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some(signed) = self.proposals.get(self.round) else { return false };
        let (value, pol_round) = (signed.proposal.block_hash, signed.proposal.pol_round);
        // valid(v) is needed by both rules; the propose timeout bounds the wait.
        let Some(valid) = self.proposals.is_valid(&value) else { return false };
        let prevote_value = match pol_round {
            // L23: valid(v) and (lockedRound = -1 or lockedValue = v).
            None => {
                valid
                    && (self.ignores_lock()
                        || self.locked.is_none_or(|(_, locked)| locked == value))
            }
            // L29: valid(v) and (lockedRound <= vr or lockedValue = v). check_shape made
            // vr < round when the proposal was accepted.
            Some(vr) => {
                if !self.has_polka(vr, value) {
                    return false;
                }
                valid
                    && (self.ignores_lock()
                        || self.locked.is_none_or(|(lr, locked)| lr <= vr || locked == value))
            }
        };
        // L24/L30 prevote id(v), or L26/L32 prevote nil.
        self.send_vote(VoteType::Prevote, prevote_value.then_some(value), out);
        self.step = Step::Prevote; // L27, L33
        true
    }

    /// L34-L35: 2f+1 prevotes of any kind while step = prevote, first time: timeout.
    fn upon_prevote_quorum_any(&mut self, out: &mut Vec<Output>) -> bool {
        let total = self.votes.tally(self.round, VoteType::Prevote).total();
        if self.step != Step::Prevote
            || !self.is_quorum(total)
            || !self.fired.insert((self.round, Once::PrevoteQuorum))
        {
            return false;
        }
        self.schedule_timeout(TimeoutStep::Prevote, out);
        true
    }

    /// L36-L43: the proposal of this round and 2f+1 prevotes for its value, valid(v), step >=
    /// prevote, first time: lock and precommit (if still in prevote), and remember v as valid.
    fn upon_polka_for_proposal(&mut self, out: &mut Vec<Output>) -> bool {
        if self.step < Step::Prevote {
            return false;
        }
        let Some(signed) = self.proposals.get(self.round) else { return false };
        let value = signed.proposal.block_hash;
        if self.proposals.is_valid(&value) != Some(true)
            || !self.has_polka(self.round, value)
            || !self.fired.insert((self.round, Once::Polka))
        {
            return false;
        }
        if self.step == Step::Prevote {
            self.locked = Some((self.round, value)); // L38-L39
            self.send_vote(VoteType::Precommit, Some(value), out); // L40
            self.step = Step::Precommit; // L41
        }
        self.valid = Some((self.round, value)); // L42-L43
        true
    }

    /// L44-L46: 2f+1 prevotes for nil while step = prevote: precommit nil.
    fn upon_polka_for_nil(&mut self, out: &mut Vec<Output>) -> bool {
        let nil_power = self.votes.tally(self.round, VoteType::Prevote).power_for(None);
        if self.step != Step::Prevote || !self.is_quorum(nil_power) {
            return false;
        }
        self.send_vote(VoteType::Precommit, None, out);
        self.step = Step::Precommit;
        true
    }

    /// L47-L48: 2f+1 precommits of any kind, first time: timeout.
    fn upon_precommit_quorum_any(&mut self, out: &mut Vec<Output>) -> bool {
        let total = self.votes.tally(self.round, VoteType::Precommit).total();
        if !self.is_quorum(total) || !self.fired.insert((self.round, Once::PrecommitQuorum)) {
            return false;
        }
        self.schedule_timeout(TimeoutStep::Precommit, out);
        true
    }

    /// 2f+1 prevotes for id(value) in `round`.
    fn has_polka(&self, round: Round, value: BlockHash) -> bool {
        let power = self.votes.tally(round, VoteType::Prevote).power_for(Some(value));
        self.is_quorum(power)
    }

    /// The non-nil value of `tally` with a quorum of the power, if any.
    fn quorum_value(&self, tally: &VoteTally) -> Option<BlockHash> {
        tally.values().find(|(value, power)| value.is_some() && self.is_quorum(*power))?.0
    }
}
