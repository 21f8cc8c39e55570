//! The core's invariants, checked by tests and the simulator after every step. A violation
//! is a bug in the core, never a consequence of Byzantine input.

use crate::core::io::SignedMessage;
use crate::core::machine::Core;
use crate::core::state::Step;
use crate::types::Height;

impl Core {
    /// `Err` describes the first invariant that does not hold:
    /// - each validator has at most one counted vote per (round, type), tallies match votes;
    /// - lockedRound <= validRound <= round; a lock implies a valid value;
    /// - step = Commit exactly when a decision exists, for this height;
    /// - the future buffer holds only later heights, within its capacity;
    /// - this validator's counted votes and proposals are the ones in its signing record, so
    ///   it never signed two messages for one (height, round, step);
    /// - counted proposals come from the proposer of their round.
    pub fn invariants(&self) -> Result<(), String> {
        self.votes.check(&self.validators)?;
        self.check_rounds()?;
        if (self.step == Step::Commit) != self.decision.is_some() {
            return Err(format!("step {:?} but decision {:?}", self.step, self.decision));
        }
        if let Some(d) = &self.decision {
            if d.height != self.height {
                return Err(format!("decision for {} at height {}", d.height, self.height));
            }
        }
        if self.step == Step::Unstarted && self.height != Height(0) {
            return Err(format!("unstarted at height {}", self.height));
        }
        if !self.future.all_above(self.height) || self.future.len() > self.future.capacity() {
            return Err("future buffer holds a past height or is over capacity".to_string());
        }
        self.check_own_messages()?;
        self.check_proposers()
    }

    fn check_rounds(&self) -> Result<(), String> {
        if let Some((locked_round, _)) = self.locked {
            if locked_round > self.round {
                return Err(format!("locked round {locked_round} above round {}", self.round));
            }
            match self.valid {
                Some((valid_round, _)) if valid_round >= locked_round => {}
                other => return Err(format!("locked at {locked_round} but valid is {other:?}")),
            }
        }
        if let Some((valid_round, _)) = self.valid {
            if valid_round > self.round {
                return Err(format!("valid round {valid_round} above round {}", self.round));
            }
        }
        if let Some(r) = self.awaiting_value {
            if r != self.round || self.me != Some(self.validators.proposer(self.height, r)) {
                return Err(format!("awaiting a value for round {r} at round {}", self.round));
            }
        }
        Ok(())
    }

    fn check_own_messages(&self) -> Result<(), String> {
        for message in self.record.at_height(self.height) {
            match message {
                SignedMessage::Vote(v) => {
                    let counted =
                        self.votes.tally(v.vote.round, v.vote.vote_type).get(v.vote.validator);
                    if counted != Some(v) {
                        return Err(format!("own vote {:?} counted as {:?}", v.vote, counted));
                    }
                }
                SignedMessage::Proposal(p) => {
                    if self.proposals.get(p.proposal.round) != Some(p) {
                        return Err(format!("own proposal {:?} not the counted one", p.proposal));
                    }
                }
            }
            if Some(signer_of(message)) != self.me {
                return Err(format!("record holds a message of {}", signer_of(message)));
            }
        }
        Ok(())
    }

    fn check_proposers(&self) -> Result<(), String> {
        for (round, p) in self.proposals.iter() {
            let expected = self.validators.proposer(self.height, *round);
            if p.proposal.proposer != expected || p.proposal.height != self.height {
                return Err(format!("proposal {:?} counted for round {round}", p.proposal));
            }
        }
        Ok(())
    }
}

fn signer_of(message: &SignedMessage) -> crate::types::ValidatorIndex {
    match message {
        SignedMessage::Proposal(p) => p.proposal.proposer,
        SignedMessage::Vote(v) => v.vote.validator,
    }
}
