//! Table-driven step tests of one core: validator 0 of four equal-power validators (unless a
//! test says otherwise). Proposers at height 1: round 0 -> 1, round 1 -> 2, round 2 -> 3,
//! round 3 -> 0. Each row feeds one input and lists what the outputs must contain; a row
//! without a `Vote` expectation also asserts that no vote was sent.

mod common;

use common::{the_vote, value, Harness};
use tally_consensus::{
    BlockHash, CommitCertificate, Core, CoreConfig, Evidence, Height, Input, Output, Round,
    SignedMessage, Step, Timeout, TimeoutStep, ValidatorIndex, VoteType,
};

use VoteType::{Precommit, Prevote};

#[derive(Debug)]
enum Expect {
    /// No output at all.
    Nothing,
    /// Exactly one vote, persisted before it is broadcast.
    Vote(VoteType, Option<BlockHash>),
    Timeout(TimeoutStep, u32),
    Validate(BlockHash),
    GetValue(u32),
    Propose(BlockHash, Option<u32>),
    Decide(BlockHash, u32),
    Evidence,
}

fn check(out: &[Output], expects: &[Expect], row: usize) {
    let mut vote_expected = false;
    for e in expects {
        let found = match e {
            Expect::Nothing => out.is_empty(),
            Expect::Vote(t, v) => {
                vote_expected = true;
                the_vote(out) == (*t, *v) && persisted_before_broadcast(out)
            }
            Expect::Timeout(s, r) => out.iter().any(|o| {
                matches!(o, Output::ScheduleTimeout { timeout, .. }
                    if timeout.step == *s && timeout.round == Round(*r))
            }),
            Expect::Validate(v) => out
                .iter()
                .any(|o| matches!(o, Output::ValidateValue { block_hash, .. } if block_hash == v)),
            Expect::GetValue(r) => {
                out.iter().any(|o| matches!(o, Output::GetValue { round, .. } if round.0 == *r))
            }
            Expect::Propose(v, pol) => out.iter().any(|o| {
                matches!(o, Output::Broadcast(SignedMessage::Proposal(p))
                    if p.proposal.block_hash == *v && p.proposal.pol_round == pol.map(Round))
            }),
            Expect::Decide(v, r) => out.iter().any(|o| {
                matches!(o, Output::Decide { certificate }
                    if certificate.block_hash == *v && certificate.round == Round(*r))
            }),
            Expect::Evidence => out.iter().any(|o| matches!(o, Output::Evidence(_))),
        };
        assert!(found, "row {row}: expected {e:?} in {out:#?}");
    }
    if !vote_expected {
        assert!(common::broadcast_votes(out).is_empty(), "row {row}: unexpected vote {out:#?}");
    }
}

fn persisted_before_broadcast(out: &[Output]) -> bool {
    let persist = out.iter().position(|o| matches!(o, Output::Persist(_)));
    let broadcast = out.iter().position(|o| matches!(o, Output::Broadcast(_)));
    matches!((persist, broadcast), (Some(p), Some(b)) if p < b)
}

fn run(h: &mut Harness, table: Vec<(Input, Vec<Expect>)>) {
    for (row, (input, expects)) in table.into_iter().enumerate() {
        let out = h.step(input);
        check(&out, &expects, row);
    }
}

fn validity(v: BlockHash, valid: bool) -> Input {
    Input::ValueValidity { height: Height(1), round: Round(0), block_hash: v, valid }
}

fn timeout(step: TimeoutStep, round: u32) -> Input {
    Input::TimeoutElapsed(Timeout { height: Height(1), round: Round(round), step })
}

/// Rows that lock validator 0 on `v` in round 0 and bring it to round 1.
fn lock_in_round_0(h: &Harness, v: BlockHash) -> Vec<(Input, Vec<Expect>)> {
    vec![
        (Input::StartHeight(Height(1)), vec![Expect::Timeout(TimeoutStep::Propose, 0)]),
        (h.proposal(1, 0, v, None), vec![Expect::Validate(v)]),
        (validity(v, true), vec![Expect::Vote(Prevote, Some(v))]),
        (h.vote(1, Prevote, 1, 0, Some(v)), vec![]),
        // L36: polka for v: lock and precommit v.
        (h.vote(2, Prevote, 1, 0, Some(v)), vec![Expect::Vote(Precommit, Some(v))]),
        (h.vote(1, Precommit, 1, 0, None), vec![]),
        // L47: 2f+1 precommits of any kind.
        (h.vote(2, Precommit, 1, 0, None), vec![Expect::Timeout(TimeoutStep::Precommit, 0)]),
        // L65: next round.
        (timeout(TimeoutStep::Precommit, 0), vec![Expect::Timeout(TimeoutStep::Propose, 1)]),
    ]
}

#[test]
fn l22_valid_proposal_gets_a_prevote_for_it() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![Expect::Timeout(TimeoutStep::Propose, 0)]),
        (h.proposal(1, 0, a, None), vec![Expect::Validate(a)]),
        (validity(a, true), vec![Expect::Vote(Prevote, Some(a))]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.current_step(), Step::Prevote);
}

#[test]
fn l22_invalid_proposal_gets_a_nil_prevote() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.proposal(1, 0, a, None), vec![Expect::Validate(a)]),
        (validity(a, false), vec![Expect::Vote(Prevote, None)]),
        // A second verdict changes nothing: valid(v) is deterministic.
        (validity(a, true), vec![Expect::Nothing]),
    ];
    run(&mut h, table);
}

#[test]
fn l57_l61_timeouts_prevote_then_precommit_nil() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (timeout(TimeoutStep::Propose, 0), vec![Expect::Vote(Prevote, None)]),
        (h.vote(1, Prevote, 1, 0, Some(a)), vec![]),
        // L34: 2f+1 prevotes of any kind schedule the prevote timeout.
        (h.vote(2, Prevote, 1, 0, Some(a)), vec![Expect::Timeout(TimeoutStep::Prevote, 0)]),
        (timeout(TimeoutStep::Prevote, 0), vec![Expect::Vote(Precommit, None)]),
        // Already precommitted: the same timeout again is stale.
        (timeout(TimeoutStep::Prevote, 0), vec![Expect::Nothing]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.stats().stale_timeouts, 1);
}

#[test]
fn l44_nil_polka_precommits_nil() {
    let mut h = Harness::new(4, 0);
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (timeout(TimeoutStep::Propose, 0), vec![Expect::Vote(Prevote, None)]),
        (h.vote(1, Prevote, 1, 0, None), vec![]),
        (h.vote(3, Prevote, 1, 0, None), vec![Expect::Vote(Precommit, None)]),
    ];
    run(&mut h, table);
}

#[test]
fn l36_polka_locks_and_sets_valid_value() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let rows = lock_in_round_0(&h, a);
    run(&mut h, rows);
    assert_eq!(h.core.locked(), Some((Round(0), a)));
    assert_eq!(h.core.valid(), Some((Round(0), a)));
    assert_eq!(h.core.round(), Round(1));
}

#[test]
fn locked_on_v_in_round_0_prevotes_nil_for_other_value_without_pol() {
    let mut h = Harness::new(4, 0);
    let (a, b) = (value("a"), value("b"));
    let rows = lock_in_round_0(&h, a);
    run(&mut h, rows);
    let table = vec![
        (h.proposal(1, 1, b, None), vec![Expect::Validate(b)]),
        // L23: valid(b) but locked on a and no POL: prevote nil.
        (validity(b, true), vec![Expect::Vote(Prevote, None)]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.locked(), Some((Round(0), a)));
}

#[test]
fn locked_on_v_prevotes_for_locked_value_reproposed() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let rows = lock_in_round_0(&h, a);
    run(&mut h, rows);
    // a is already known valid: the prevote follows the proposal at once (L23, lockedValue = v).
    let table = vec![(h.proposal(1, 1, a, Some(0)), vec![Expect::Vote(Prevote, Some(a))])];
    run(&mut h, table);
}

#[test]
fn l28_newer_pol_unlocks_for_another_value() {
    let mut h = Harness::new(4, 0);
    let (a, b) = (value("a"), value("b"));
    let rows = lock_in_round_0(&h, a);
    run(&mut h, rows);
    let table = vec![
        // Round 1: no proposal reaches us; others form a polka for b.
        (timeout(TimeoutStep::Propose, 1), vec![Expect::Vote(Prevote, None)]),
        (h.vote(1, Prevote, 1, 1, Some(b)), vec![]),
        (h.vote(2, Prevote, 1, 1, Some(b)), vec![Expect::Timeout(TimeoutStep::Prevote, 1)]),
        (h.vote(3, Prevote, 1, 1, Some(b)), vec![]),
        (timeout(TimeoutStep::Prevote, 1), vec![Expect::Vote(Precommit, None)]),
        (h.vote(1, Precommit, 1, 1, None), vec![]),
        (h.vote(2, Precommit, 1, 1, None), vec![Expect::Timeout(TimeoutStep::Precommit, 1)]),
        (timeout(TimeoutStep::Precommit, 1), vec![Expect::Timeout(TimeoutStep::Propose, 2)]),
        // Round 2: b re-proposed with vr = 1 > lockedRound = 0 (L28-L30).
        (h.proposal(1, 2, b, Some(1)), vec![Expect::Validate(b)]),
        (validity(b, true), vec![Expect::Vote(Prevote, Some(b))]),
    ];
    run(&mut h, table);
}

#[test]
fn l28_proposal_with_pol_waits_for_the_polka() {
    let mut h = Harness::new(4, 0);
    let b = value("b");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (timeout(TimeoutStep::Propose, 0), vec![Expect::Vote(Prevote, None)]),
        (timeout(TimeoutStep::Prevote, 0), vec![Expect::Vote(Precommit, None)]),
        // f+1 from round 1: skip there (L55).
        (h.vote(1, Precommit, 1, 1, None), vec![]),
        (h.vote(3, Precommit, 1, 1, None), vec![Expect::Timeout(TimeoutStep::Propose, 1)]),
        (h.proposal(1, 1, b, Some(0)), vec![Expect::Validate(b)]),
        // vr = 0 but no polka for b in round 0 yet: wait.
        (validity(b, true), vec![]),
        (h.vote(1, Prevote, 1, 0, Some(b)), vec![]),
        (h.vote(2, Prevote, 1, 0, Some(b)), vec![]),
        (h.vote(3, Prevote, 1, 0, Some(b)), vec![Expect::Vote(Prevote, Some(b))]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.round(), Round(1));
}

#[test]
fn l55_f_plus_one_from_a_higher_round_skips_to_it() {
    let mut h = Harness::new(4, 0);
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        // One validator (1/4 of the power) is not f+1.
        (h.vote(1, Prevote, 1, 5, None), vec![Expect::Nothing]),
        (h.vote(2, Precommit, 1, 5, None), vec![Expect::Timeout(TimeoutStep::Propose, 5)]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.round(), Round(5));
    assert_eq!(h.core.current_step(), Step::Propose);
}

#[test]
fn l55_messages_beyond_the_round_window_still_count_for_the_skip() {
    let mut h = Harness::new(4, 0);
    let far = 10_000;
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.vote(1, Prevote, 1, far, None), vec![Expect::Nothing]),
        (h.vote(2, Prevote, 1, far, None), vec![Expect::Timeout(TimeoutStep::Propose, far)]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.round(), Round(far));
    assert_eq!(h.core.stats().too_far_ahead, 2);
}

#[test]
fn duplicate_vote_becomes_evidence_and_is_not_counted() {
    let mut h = Harness::new(4, 0);
    let (a, b) = (value("a"), value("b"));
    let first = h.vote(1, Prevote, 1, 0, Some(a));
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (first.clone(), vec![Expect::Nothing]),
        (first, vec![Expect::Nothing]),
        (h.vote(1, Prevote, 1, 0, Some(b)), vec![Expect::Evidence]),
        (h.vote(1, Prevote, 1, 0, None), vec![Expect::Evidence]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.state_summary().prevote_power.0, 1);
    assert_eq!(h.core.stats().duplicates, 1);
    assert_eq!(h.core.stats().equivocations, 2);
}

#[test]
fn duplicate_vote_evidence_names_both_votes() {
    let mut h = Harness::new(4, 0);
    let (a, b) = (value("a"), value("b"));
    h.step(Input::StartHeight(Height(1)));
    h.step(h.vote(3, Precommit, 1, 0, Some(a)));
    let out = h.step(h.vote(3, Precommit, 1, 0, Some(b)));
    match &out[..] {
        [Output::Evidence(Evidence::DuplicateVote { first, second })] => {
            assert_eq!(first.vote.block_hash, Some(a));
            assert_eq!(second.vote.block_hash, Some(b));
            assert_eq!(first.vote.validator, ValidatorIndex(3));
        }
        other => panic!("expected one piece of evidence, got {other:#?}"),
    }
}

#[test]
fn duplicate_proposal_becomes_evidence_and_the_first_counts() {
    let mut h = Harness::new(4, 0);
    let (a, b) = (value("a"), value("b"));
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.proposal(1, 0, a, None), vec![Expect::Validate(a)]),
        (h.proposal(1, 0, b, None), vec![Expect::Evidence]),
        (validity(a, true), vec![Expect::Vote(Prevote, Some(a))]),
    ];
    run(&mut h, table);
}

#[test]
fn proposal_from_a_non_proposer_is_dropped() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.proposal_from(3, 1, 0, a, None), vec![Expect::Nothing]),
        // pol_round not below round: dropped too.
        (h.proposal_from(1, 1, 0, a, Some(0)), vec![Expect::Nothing]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.stats().invalid_proposals, 2);
}

#[test]
fn stale_and_future_timeouts_are_ignored_and_counted() {
    let mut h = Harness::new(4, 0);
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (timeout(TimeoutStep::Propose, 3), vec![Expect::Nothing]),
        (timeout(TimeoutStep::Prevote, 0), vec![Expect::Nothing]),
        (timeout(TimeoutStep::Precommit, 1), vec![Expect::Nothing]),
        (
            Input::TimeoutElapsed(Timeout {
                height: Height(0),
                round: Round(0),
                step: TimeoutStep::Propose,
            }),
            vec![Expect::Nothing],
        ),
    ];
    run(&mut h, table);
    assert_eq!(h.core.stats().stale_timeouts, 4);
}

#[test]
fn commit_certificate_for_the_current_height_decides() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let precommits: Vec<_> = (1..4u32)
        .map(|i| common::signed_vote(&h.keys[i as usize], i, Precommit, 1, 2, Some(a)))
        .collect();
    let cert = CommitCertificate::from_precommits(Height(1), Round(2), a, &precommits);
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (Input::Certificate(cert.clone()), vec![Expect::Validate(a)]),
        (validity(a, true), vec![Expect::Decide(a, 2)]),
        // Decided: later inputs for this height change nothing.
        (h.vote(1, Prevote, 1, 0, None), vec![Expect::Nothing]),
        (timeout(TimeoutStep::Propose, 0), vec![Expect::Nothing]),
    ];
    run(&mut h, table);
    assert_eq!(h.core.decision(), Some(&cert));
    assert_eq!(h.core.current_step(), Step::Commit);
    // The node commits, then starts the next height.
    let out = h.step(Input::StartHeight(Height(2)));
    assert!(out.iter().any(|o| matches!(o, Output::ScheduleTimeout { .. })));
    assert_eq!(h.core.height(), Height(2));
}

#[test]
fn certificate_for_a_known_valid_value_decides_at_once() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let precommits: Vec<_> = [1u32, 2, 3]
        .iter()
        .map(|i| common::signed_vote(&h.keys[*i as usize], *i, Precommit, 1, 0, Some(a)))
        .collect();
    let cert = CommitCertificate::from_precommits(Height(1), Round(0), a, &precommits);
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.proposal(1, 0, a, None), vec![Expect::Validate(a)]),
        (validity(a, true), vec![Expect::Vote(Prevote, Some(a))]),
        (Input::Certificate(cert), vec![Expect::Decide(a, 0)]),
    ];
    run(&mut h, table);
}

#[test]
fn l49_quorum_of_precommits_decides_without_the_proposal() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.vote(1, Precommit, 1, 0, Some(a)), vec![]),
        (h.vote(2, Precommit, 1, 0, Some(a)), vec![]),
        // The node is asked about a block it never saw proposed: it fetches it.
        (h.vote(3, Precommit, 1, 0, Some(a)), vec![Expect::Validate(a)]),
        (validity(a, true), vec![Expect::Decide(a, 0)]),
    ];
    run(&mut h, table);
    let cert = h.core.decision().unwrap();
    let signers: Vec<u32> = cert.signatures.iter().map(|s| s.validator.0).collect();
    assert_eq!(signers, vec![1, 2, 3]);
}

#[test]
fn future_height_messages_are_buffered_and_replayed_at_start_height() {
    let mut h = Harness::new(4, 0);
    let (a, b) = (value("a"), value("b"));
    let precommits: Vec<_> = [1u32, 2, 3]
        .iter()
        .map(|i| common::signed_vote(&h.keys[*i as usize], *i, Precommit, 1, 0, Some(a)))
        .collect();
    let cert = CommitCertificate::from_precommits(Height(1), Round(0), a, &precommits);
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.vote(1, Precommit, 2, 0, Some(b)), vec![Expect::Nothing]),
        (h.vote(2, Precommit, 2, 0, Some(b)), vec![Expect::Nothing]),
        (h.vote(3, Precommit, 2, 0, Some(b)), vec![Expect::Nothing]),
        // Too far ahead (future_heights_max = 2): dropped.
        (h.vote(3, Precommit, 9, 0, Some(b)), vec![Expect::Nothing]),
        (Input::Certificate(cert), vec![Expect::Validate(a)]),
        (validity(a, true), vec![Expect::Decide(a, 0)]),
        (Input::StartHeight(Height(2)), vec![Expect::Validate(b)]),
    ];
    run(&mut h, table);
    let stats = h.core.stats();
    assert_eq!((stats.future_buffered, stats.too_far_ahead), (3, 1));
    let out = h.step(Input::ValueValidity {
        height: Height(2),
        round: Round(0),
        block_hash: b,
        valid: true,
    });
    check(&out, &[Expect::Decide(b, 0)], 99);
}

#[test]
fn proposer_asks_for_a_value_and_proposes_it() {
    let mut h = Harness::new(4, 1); // validator 1 proposes (1, 0)
    let a = value("a");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![Expect::GetValue(0)]),
        (
            Input::ProposeValue { height: Height(1), round: Round(0), block_hash: a },
            vec![Expect::Propose(a, None), Expect::Vote(Prevote, Some(a))],
        ),
        // A second answer is stale.
        (
            Input::ProposeValue { height: Height(1), round: Round(0), block_hash: a },
            vec![Expect::Nothing],
        ),
    ];
    run(&mut h, table);
}

#[test]
fn proposer_reproposes_its_valid_value_with_its_pol_round() {
    // Validator 3 proposes (1, 2); it sees a polka for a in round 0 and proposes a with vr 0.
    let mut h = Harness::new(4, 3);
    let a = value("a");
    let table = vec![
        (Input::StartHeight(Height(1)), vec![]),
        (h.proposal(1, 0, a, None), vec![Expect::Validate(a)]),
        (validity(a, true), vec![Expect::Vote(Prevote, Some(a))]),
        (h.vote(1, Prevote, 1, 0, Some(a)), vec![]),
        (h.vote(2, Prevote, 1, 0, Some(a)), vec![Expect::Vote(Precommit, Some(a))]),
        (h.vote(1, Precommit, 1, 2, None), vec![]),
        (
            h.vote(2, Precommit, 1, 2, None),
            vec![Expect::Propose(a, Some(0)), Expect::Vote(Prevote, Some(a))],
        ),
    ];
    run(&mut h, table);
}

#[test]
fn restarted_validator_resends_its_recorded_vote_and_keeps_its_lock() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let rows = lock_in_round_0(&h, a);
    run(&mut h, rows);
    let record = h.core.own_messages();
    assert_eq!(record.len(), 2, "a prevote and a precommit for a in round 0");

    // Restart: a fresh core with the record, at the same height.
    let mut again = Harness::new(4, 0);
    assert_eq!(again.core.restore_signed(record.clone()), 2);
    again.step(Input::StartHeight(Height(1)));
    assert_eq!(again.core.locked(), Some((Round(0), a)));
    assert_eq!(again.core.round(), Round(0));
    // The propose timeout would prevote nil, but a prevote for a was signed: re-send it.
    let out = again.step(timeout(TimeoutStep::Propose, 0));
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))), "{out:#?}");
    assert_eq!(out, vec![Output::Broadcast(record[0].clone())]);
}

#[test]
fn follower_never_signs_but_decides() {
    let keys = common::keys(4);
    let validators = common::validator_set(&keys, &[1, 1, 1, 1]);
    let config = CoreConfig::new(common::chain());
    let outsider = Box::new(tally_crypto::Keypair::derive_insecure("not a validator"));
    let mut core = Core::new(config, validators, Some(outsider)).unwrap();
    assert_eq!(core.me(), None);
    let a = value("a");
    let mut out = Vec::new();
    core.step(Input::StartHeight(Height(1)), &mut out);
    let mut input = |i: Input, out: &mut Vec<Output>| {
        core.step(i, out);
        core.invariants().unwrap();
    };
    for i in 1..4u32 {
        let v = common::signed_vote(&keys[i as usize], i, Precommit, 1, 0, Some(a));
        input(Input::Vote(v), &mut out);
    }
    input(validity(a, true), &mut out);
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_) | Output::Broadcast(_))));
    assert!(out.iter().any(|o| matches!(o, Output::Decide { .. })));
}

#[test]
fn byzantine_garbage_is_dropped_and_counted_never_a_panic() {
    let mut h = Harness::new(4, 0);
    let a = value("a");
    let unknown = common::signed_vote(&h.keys[1], 99, Prevote, 1, 0, Some(a));
    let table = vec![
        (h.vote(1, Prevote, 1, 0, Some(a)), vec![]), // before StartHeight: buffered
        (Input::StartHeight(Height(1)), vec![]),
        (Input::StartHeight(Height(1)), vec![Expect::Nothing]),
        (Input::Vote(unknown), vec![Expect::Nothing]),
        (h.vote(1, Prevote, 0, 0, Some(a)), vec![Expect::Nothing]),
        (h.vote(1, Prevote, u64::MAX, u32::MAX, Some(a)), vec![Expect::Nothing]),
        (h.proposal(1, u32::MAX, a, None), vec![]),
        (
            Input::ProposeValue { height: Height(1), round: Round(0), block_hash: a },
            vec![Expect::Nothing],
        ),
    ];
    run(&mut h, table);
    let s = h.core.stats();
    assert_eq!(s.unknown_validators, 1);
    assert_eq!(s.stale_messages, 1);
    assert_eq!(s.stale_node_inputs, 2);
    assert_eq!(s.future_buffered, 1);
    assert!(s.too_far_ahead >= 2);
    assert_eq!(h.core.state_summary().prevote_power.0, 1, "the buffered vote was replayed");
}

#[test]
fn timeouts_grow_with_the_round() {
    let mut h = Harness::new(4, 0);
    let durations = |out: &[Output]| -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                Output::ScheduleTimeout { duration_ms, .. } => Some(*duration_ms),
                _ => None,
            })
            .collect()
    };
    let first = durations(&h.step(Input::StartHeight(Height(1))));
    h.step(h.vote(1, Prevote, 1, 4, None));
    let skipped = durations(&h.step(h.vote(2, Prevote, 1, 4, None)));
    let t = tally_consensus::TimeoutParams::default();
    assert_eq!(first, vec![t.propose_base_ms]);
    assert_eq!(skipped, vec![t.propose_base_ms + 4 * t.propose_delta_ms]);
}
