//! How one core treats a validator that signs two different votes for one (height, round,
//! type): evidence, and counting.

mod common;

use common::{the_vote, value, Harness};
use tally_consensus::{Height, Input, Output, Round, VoteType};

/// Found by the simulator (seed 292): the conflicting prevote of validator 3 must count for
/// its own value, or the polka for x that the other validators saw is never seen here.
#[test]
fn n4_conflicting_prevote_is_reported_and_counts_for_its_value() {
    let mut h = Harness::new(4, 0);
    let x = value("x");
    h.step(Input::StartHeight(Height(1)));
    let proposal = h.proposal(1, 0, x, None);
    h.step(proposal);
    let valid =
        Input::ValueValidity { height: Height(1), round: Round(0), block_hash: x, valid: true };
    assert_eq!(the_vote(&h.step(valid)), (VoteType::Prevote, Some(x)));

    let nil_first = h.vote(3, VoteType::Prevote, 1, 0, None);
    h.step(nil_first);
    let x_second = h.vote(3, VoteType::Prevote, 1, 0, Some(x));
    let out = h.step(x_second);
    assert!(out.iter().any(|o| matches!(o, Output::Evidence(_))), "equivocation reported");

    // Validators 0 (this one), 1 and 3 prevoted x: 3 of 4 is a polka, so lock and precommit.
    let vote_1 = h.vote(1, VoteType::Prevote, 1, 0, Some(x));
    let out = h.step(vote_1);
    assert_eq!(the_vote(&out), (VoteType::Precommit, Some(x)));
    assert_eq!(h.core.locked(), Some((Round(0), x)));
}
