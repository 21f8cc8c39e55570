//! One handler per input: route the input (current height, a later height, too old, too far
//! ahead), record what it says, then let the rules fire.
//!
//! Byzantine input (wrong height, a non-proposer's proposal, a second vote) is dropped and
//! counted in [`crate::Stats`] or becomes evidence; nothing here panics or fails.

use crate::certificate::CommitCertificate;
use crate::core::future::Buffered;
use crate::core::io::{Output, SignedMessage, Timeout, TimeoutStep};
use crate::core::machine::Core;
use crate::core::proposal_keeper::AddProposal;
use crate::core::state::Step;
use crate::core::vote_keeper::AddVote;
use crate::proposal::SignedProposal;
use crate::types::{BlockHash, Height, Round, ValidatorIndex, VoteType};
use crate::vote::SignedVote;

/// Where a message belongs when it is not for the running height's round window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elsewhere {
    /// A later height inside the buffer's range.
    Future,
    /// The running height beyond the round window: it only counts for the round skip.
    CurrentTooFar,
    /// A later height beyond the buffer's range.
    FutureTooFar,
    /// A past height, height 0, or the current one already decided.
    Stale,
}

impl Core {
    /// `Ok` for the running height inside the round window, else where the message goes.
    fn route(&self, height: Height, round: Round) -> Result<(), Elsewhere> {
        if height == self.height && self.step.is_active() {
            let window_end = self.round.0.saturating_add(self.config.rounds_ahead_max);
            return if round.0 <= window_end { Ok(()) } else { Err(Elsewhere::CurrentTooFar) };
        }
        if height <= self.height {
            return Err(Elsewhere::Stale);
        }
        let ahead = height.0 - self.height.0;
        if ahead <= self.config.future_heights_max && round.0 <= self.config.rounds_ahead_max {
            Err(Elsewhere::Future)
        } else {
            Err(Elsewhere::FutureTooFar)
        }
    }

    pub(super) fn on_start_height(&mut self, height: Height, out: &mut Vec<Output>) {
        if height <= self.height {
            self.stats.stale_node_inputs += 1;
            return;
        }
        self.reset_for_height(height);
        let restored_round = self.restore_own_messages();
        let replay = self.future.take_height(height);
        // L10/L54 (or, after a restart, the round this validator had reached).
        self.start_round(restored_round.unwrap_or(Round(0)), out);
        self.apply_rules(out);
        for message in replay {
            match message {
                SignedMessage::Proposal(p) => self.on_proposal(p, out),
                SignedMessage::Vote(v) => self.on_vote(v, out),
            }
        }
    }

    pub(super) fn on_proposal(&mut self, signed: SignedProposal, out: &mut Vec<Output>) {
        let p = &signed.proposal;
        let (height, round, proposer) = (p.height, p.round, p.proposer);
        if !self.known_validator(proposer) {
            return;
        }
        if p.check_shape().is_err() || self.validators.proposer(height, round) != proposer {
            // Only the proposer's proposal counts.
            self.stats.invalid_proposals += 1;
            return;
        }
        if let Err(elsewhere) = self.route(height, round) {
            let message = SignedMessage::Proposal(signed);
            return self.route_elsewhere(elsewhere, proposer, message, out);
        }
        let value = p.block_hash;
        self.votes.note_round(proposer, round);
        match self.proposals.add(signed) {
            AddProposal::Counted => self.request_validity(round, value, out),
            AddProposal::Duplicate => {
                self.stats.duplicates += 1;
                return;
            }
            AddProposal::Equivocation(evidence) => {
                self.stats.equivocations += 1;
                out.push(Output::Evidence(evidence));
                return;
            }
        }
        self.apply_rules(out);
    }

    pub(super) fn on_vote(&mut self, signed: SignedVote, out: &mut Vec<Output>) {
        let (round, validator) = (signed.vote.round, signed.vote.validator);
        if !self.known_validator(validator) {
            return;
        }
        if let Err(elsewhere) = self.route(signed.vote.height, round) {
            return self.route_elsewhere(elsewhere, validator, SignedMessage::Vote(signed), out);
        }
        if self.count_vote(signed, out) {
            self.apply_rules(out);
        }
    }

    /// Counts a vote of the current height; true if it was counted (new).
    pub(super) fn count_vote(&mut self, signed: SignedVote, out: &mut Vec<Output>) -> bool {
        match self.votes.add(signed, &self.validators) {
            AddVote::Counted => true,
            AddVote::Duplicate => {
                self.stats.duplicates += 1;
                false
            }
            AddVote::Equivocation(evidence) => {
                self.stats.equivocations += 1;
                out.push(Output::Evidence(evidence));
                false
            }
        }
    }

    /// A message that is not for the running round window: buffer, note or drop it.
    fn route_elsewhere(
        &mut self,
        route: Elsewhere,
        sender: ValidatorIndex,
        message: SignedMessage,
        out: &mut Vec<Output>,
    ) {
        match route {
            Elsewhere::Future => match self.future.insert(message) {
                Buffered::Kept => self.stats.future_buffered += 1,
                Buffered::KeptEvicting => {
                    self.stats.future_buffered += 1;
                    self.stats.future_dropped += 1;
                }
                Buffered::Duplicate => self.stats.duplicates += 1,
                Buffered::DroppedFull => self.stats.future_dropped += 1,
            },
            Elsewhere::CurrentTooFar => {
                // Not stored, but it still says its sender reached that round (L55).
                self.stats.too_far_ahead += 1;
                self.votes.note_round(sender, message.round());
                self.apply_rules(out);
            }
            Elsewhere::FutureTooFar => self.stats.too_far_ahead += 1,
            Elsewhere::Stale => self.stats.stale_messages += 1,
        }
    }

    fn known_validator(&mut self, index: ValidatorIndex) -> bool {
        let known = self.validators.get(index).is_some();
        if !known {
            self.stats.unknown_validators += 1;
        }
        known
    }

    pub(super) fn on_propose_value(
        &mut self,
        height: Height,
        round: Round,
        value: BlockHash,
        out: &mut Vec<Output>,
    ) {
        // Late answers (after the propose timeout, in the same round) still propose: the
        // proposal for (height, round) is still unique, and may still help a slower peer.
        let wanted = height == self.height
            && self.step.is_active()
            && round == self.round
            && self.awaiting_value == Some(round);
        if !wanted {
            self.stats.stale_node_inputs += 1;
            return;
        }
        self.awaiting_value = None;
        // The node built this block itself: valid(v) holds.
        self.proposals.set_validity(value, true);
        self.propose(value, None, out); // L19 with validRound = -1
        self.apply_rules(out);
    }

    pub(super) fn on_value_validity(
        &mut self,
        height: Height,
        _round: Round,
        value: BlockHash,
        valid: bool,
        out: &mut Vec<Output>,
    ) {
        if height != self.height
            || !self.step.is_active()
            || !self.proposals.set_validity(value, valid)
        {
            self.stats.stale_node_inputs += 1;
            return;
        }
        self.apply_rules(out);
    }

    pub(super) fn on_timeout_elapsed(&mut self, timeout: Timeout, out: &mut Vec<Output>) {
        let current = timeout.height == self.height && timeout.round == self.round;
        match timeout.step {
            // L57-L60: OnTimeoutPropose while step = propose.
            TimeoutStep::Propose if current && self.step == Step::Propose => {
                self.send_vote(VoteType::Prevote, None, out);
                self.step = Step::Prevote;
            }
            // L61-L64: OnTimeoutPrevote while step = prevote.
            TimeoutStep::Prevote if current && self.step == Step::Prevote => {
                self.send_vote(VoteType::Precommit, None, out);
                self.step = Step::Precommit;
            }
            // L65-L67: OnTimeoutPrecommit, any step of the running height.
            TimeoutStep::Precommit if current && self.step.is_active() => {
                self.start_round(self.round.next(), out);
            }
            _ => {
                self.stats.stale_timeouts += 1;
                return;
            }
        }
        self.apply_rules(out);
    }

    pub(super) fn on_certificate(&mut self, certificate: CommitCertificate, out: &mut Vec<Output>) {
        if certificate.height != self.height || !self.step.is_active() {
            self.stats.stale_node_inputs += 1;
            return;
        }
        if let Some(first) = &self.certificate {
            if first.block_hash != certificate.block_hash {
                self.stats.conflicting_certificates += 1;
            } else {
                self.stats.duplicates += 1;
            }
            return;
        }
        self.request_validity(certificate.round, certificate.block_hash, out);
        self.certificate = Some(certificate);
        self.apply_rules(out);
    }

    /// Asks the node for valid(value) unless it was asked or answered already.
    pub(super) fn request_validity(
        &mut self,
        round: Round,
        value: BlockHash,
        out: &mut Vec<Output>,
    ) {
        if self.proposals.request(value) {
            out.push(Output::ValidateValue { height: self.height, round, block_hash: value });
        }
    }
}
