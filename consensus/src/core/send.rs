//! Starting rounds and heights, and this validator's own messages: signing them under the
//! signing record, emitting Persist before Broadcast, and counting them like anyone else's.

use crate::core::io::{Output, SignedMessage, Timeout, TimeoutStep};
use crate::core::machine::Core;
use crate::core::proposal_keeper::{AddProposal, ProposalKeeper};
use crate::core::sign_record::SignStep;
use crate::core::state::Step;
use crate::core::vote_keeper::VoteKeeper;
use crate::proposal::{Proposal, SignedProposal};
use crate::types::{BlockHash, Height, Round, VoteType};
use crate::vote::{SignedVote, Vote};

impl Core {
    /// L11-L21: StartRound(round).
    pub(super) fn start_round(&mut self, round: Round, out: &mut Vec<Output>) {
        self.round = round; // L12
        self.step = Step::Propose; // L13
        self.awaiting_value = None;
        let proposer = self.validators.proposer(self.height, round);
        if self.me == Some(proposer) {
            if let Some(recorded) = self.record.get(self.height, round, SignStep::Proposal) {
                // Proposed this round before a restart (restore counted it): re-send it.
                out.push(Output::Broadcast(recorded.clone()));
            } else if let Some((valid_round, value)) = self.valid {
                self.propose(value, Some(valid_round), out); // L15
            } else {
                self.awaiting_value = Some(round); // L17: getValue()
                out.push(Output::GetValue { height: self.height, round });
            }
        }
        // L21. The proposer schedules it too: it may be waiting on its node for a value, and
        // the timeout then moves it on like everyone else.
        self.schedule_timeout(TimeoutStep::Propose, out);
    }

    /// Clears every per-height field for `height` (L52-L53) and prunes the record.
    pub(super) fn reset_for_height(&mut self, height: Height) {
        self.height = height;
        self.round = Round(0);
        self.step = Step::Propose;
        self.locked = None;
        self.valid = None;
        self.votes = VoteKeeper::default();
        self.proposals = ProposalKeeper::default();
        self.fired.clear();
        self.awaiting_value = None;
        self.certificate = None;
        self.decision = None;
        self.record.prune_below(height);
    }

    /// Counts this validator's recorded messages of the current height (after a restart) and
    /// restores its lock from its highest recorded precommit for a value: a precommit for v
    /// is only ever sent when locking v (L38-L40). Returns the highest recorded round.
    pub(super) fn restore_own_messages(&mut self) -> Option<Round> {
        let own: Vec<SignedMessage> = self.record.at_height(self.height).cloned().collect();
        let mut highest = None;
        for message in own {
            highest = highest.max(Some(message.round()));
            match message {
                SignedMessage::Proposal(p) => {
                    // It proposed this value, so its node had judged it valid.
                    self.proposals.set_validity(p.proposal.block_hash, true);
                    self.proposals.add(p);
                }
                SignedMessage::Vote(v) => {
                    if let (VoteType::Precommit, Some(value)) =
                        (v.vote.vote_type, v.vote.block_hash)
                    {
                        if self.locked.is_none_or(|(r, _)| r < v.vote.round) {
                            self.locked = Some((v.vote.round, value));
                            self.valid = Some((v.vote.round, value));
                            self.proposals.set_validity(value, true);
                        }
                    }
                    self.votes.add(v, &self.validators);
                }
            }
        }
        highest
    }

    /// L19: broadcast <PROPOSAL, h, round, value, pol_round>, or the recorded proposal of this
    /// (height, round) if there is one.
    pub(super) fn propose(
        &mut self,
        value: BlockHash,
        pol_round: Option<Round>,
        out: &mut Vec<Output>,
    ) {
        let Some(me) = self.me else { return };
        let proposal = Proposal {
            height: self.height,
            round: self.round,
            block_hash: value,
            pol_round,
            proposer: me,
        };
        let signed = match self.sign_or_resend(SignStep::Proposal, out, |chain, signer| {
            SignedMessage::Proposal(proposal.sign(chain, signer))
        }) {
            Some(SignedMessage::Proposal(p)) => p,
            _ => return,
        };
        self.votes.note_round(me, signed.proposal.round);
        self.count_own_proposal(signed, out);
    }

    fn count_own_proposal(&mut self, signed: SignedProposal, out: &mut Vec<Output>) {
        // Counted like a received one. Equivocation is impossible short of a second process
        // signing with this key; it is then reported like any other.
        if let AddProposal::Equivocation(e) = self.proposals.add(signed) {
            self.stats.equivocations += 1;
            out.push(Output::Evidence(e));
        }
    }

    /// Broadcasts this validator's vote of `vote_type` for `value` in the current round (or the
    /// recorded one), and counts it. A follower only moves through the steps.
    pub(super) fn send_vote(
        &mut self,
        vote_type: VoteType,
        value: Option<BlockHash>,
        out: &mut Vec<Output>,
    ) {
        let Some(me) = self.me else { return };
        let vote = Vote {
            height: self.height,
            round: self.round,
            vote_type,
            block_hash: value,
            validator: me,
        };
        let signed: SignedVote =
            match self.sign_or_resend(vote_type.into(), out, |chain, signer| {
                SignedMessage::Vote(vote.sign(chain, signer))
            }) {
                Some(SignedMessage::Vote(v)) => v,
                _ => return,
            };
        self.count_vote(signed, out);
    }

    /// The signing record's rule: the recorded message of (height, round, step) if any is
    /// re-sent (Broadcast only); otherwise a new one is signed, recorded, and emitted as
    /// Persist then Broadcast.
    fn sign_or_resend(
        &mut self,
        step: SignStep,
        out: &mut Vec<Output>,
        sign: impl FnOnce(&tally_crypto::ChainId, &dyn crate::signer::Signer) -> SignedMessage,
    ) -> Option<SignedMessage> {
        if let Some(recorded) = self.record.get(self.height, self.round, step) {
            let recorded = recorded.clone();
            out.push(Output::Broadcast(recorded.clone()));
            return Some(recorded);
        }
        let signer = self.signer.as_deref()?;
        let message = sign(&self.config.chain_id, signer);
        let fresh = self.record.insert(message.clone());
        assert!(fresh, "the record had no entry for this (height, round, step)");
        out.push(Output::Persist(message.clone()));
        out.push(Output::Broadcast(message.clone()));
        Some(message)
    }

    pub(super) fn schedule_timeout(&mut self, step: TimeoutStep, out: &mut Vec<Output>) {
        let timeout = Timeout { height: self.height, round: self.round, step };
        let duration_ms = self.config.timeouts.duration_ms(step, self.round);
        out.push(Output::ScheduleTimeout { timeout, duration_ms });
    }
}
