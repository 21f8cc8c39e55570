//! Execution rules: nonce, balance, overflow, self-transfer, signatures, whole-block verdicts,
//! and the proposer's selection.

mod common;

use common::{chain_id, transfer, user, verifier};
use std::cell::Cell;
use tally_crypto::{SignedItem, VerifyError};
use tally_ledger::{
    check_tx_against, execute_block, select_txs, Account, AccountState, ExecError, Overlay,
    SelectLimits, StateTree, StatelessError, Tx, TxError, TxHash, TxVerifier,
};

fn state(balances: &[(usize, u64)]) -> StateTree {
    StateTree::from_accounts(
        balances.iter().map(|(i, b)| (user(*i).public(), Account { balance: *b, nonce: 0 })),
    )
}

fn invalid_at(result: Result<tally_ledger::ExecutionOutcome, ExecError>) -> (u32, TxError) {
    match result {
        Err(ExecError::InvalidTx { index, error, .. }) => (index, error),
        other => panic!("expected an invalid tx, got {other:?}"),
    }
}

#[test]
fn valid_transfers_move_balance_and_bump_nonce() {
    let s = state(&[(0, 100)]);
    let txs = [
        transfer(&user(0), user(1).public(), 30, 0),
        transfer(&user(0), user(2).public(), 20, 1),
        transfer(&user(1), user(2).public(), 5, 0),
    ];
    let out = execute_block(&s, &txs, &chain_id(), &verifier()).unwrap();
    assert_eq!(out.changes[&user(0).public()], Account { balance: 50, nonce: 2 });
    assert_eq!(out.changes[&user(1).public()], Account { balance: 25, nonce: 1 });
    assert_eq!(out.changes[&user(2).public()], Account { balance: 25, nonce: 0 });
    assert_eq!(out.state_root, s.apply(&out.changes).root());
    assert_eq!(out.state().account(&user(2).public()).balance, 25);
    assert_eq!(out.parent_state_root, s.root());
    assert_eq!(out.tx_root, tally_ledger::tx_root(&out.tx_hashes));
    // Execution is a pure function of its inputs.
    let again = execute_block(&s, &txs, &chain_id(), &verifier()).unwrap();
    assert_eq!(again.state_root, out.state_root);
}

#[test]
fn empty_block_keeps_the_state_root() {
    let s = state(&[(0, 100)]);
    let out = execute_block(&s, &[], &chain_id(), &verifier()).unwrap();
    assert_eq!(out.state_root, s.root());
    assert!(out.changes.is_empty());
}

#[test]
fn nonce_must_equal_the_senders_count_of_sent_txs() {
    let s = state(&[(0, 100)]);
    let ahead = transfer(&user(0), user(1).public(), 1, 1);
    assert_eq!(check_tx_against(&s, &ahead), Err(TxError::BadNonce { expected: 0, got: 1 }));
    let replay =
        [transfer(&user(0), user(1).public(), 1, 0), transfer(&user(0), user(1).public(), 1, 0)];
    let (index, error) = invalid_at(execute_block(&s, &replay, &chain_id(), &verifier()));
    assert_eq!((index, error), (1, TxError::BadNonce { expected: 1, got: 0 }));
}

#[test]
fn balance_must_cover_the_amount() {
    let s = state(&[(0, 100)]);
    let tx = transfer(&user(0), user(1).public(), 101, 0);
    let expected = TxError::InsufficientBalance { balance: 100, amount: 101 };
    assert_eq!(check_tx_against(&s, &tx), Err(expected));
    assert_eq!(invalid_at(execute_block(&s, &[tx], &chain_id(), &verifier())), (0, expected));
    let unknown_sender = transfer(&user(5), user(1).public(), 1, 0);
    assert_eq!(
        check_tx_against(&s, &unknown_sender),
        Err(TxError::InsufficientBalance { balance: 0, amount: 1 })
    );
}

#[test]
fn recipient_overflow_is_rejected() {
    let s = state(&[(0, 100), (1, u64::MAX - 5)]);
    let tx = transfer(&user(0), user(1).public(), 6, 0);
    let expected = TxError::RecipientOverflow { balance: u64::MAX - 5, amount: 6 };
    assert_eq!(check_tx_against(&s, &tx), Err(expected));
    let fits = transfer(&user(0), user(1).public(), 5, 0);
    assert_eq!(check_tx_against(&s, &fits), Ok(()));
}

#[test]
fn self_transfer_and_zero_amount_are_rejected_before_signatures() {
    let s = state(&[(0, 100)]);
    let to_self = transfer(&user(0), user(0).public(), 1, 0);
    assert_eq!(check_tx_against(&s, &to_self), Err(StatelessError::SelfTransfer.into()));
    let zero = transfer(&user(0), user(1).public(), 0, 0);
    assert_eq!(check_tx_against(&s, &zero), Err(StatelessError::ZeroAmount.into()));
    let calls = Cell::new(0);
    let counting = |items: &[SignedItem<'_>]| {
        calls.set(calls.get() + 1);
        vec![Ok(()); items.len()]
    };
    let txs = [transfer(&user(0), user(1).public(), 1, 0), to_self];
    let (index, error) = invalid_at(execute_block(&s, &txs, &chain_id(), &counting));
    assert_eq!((index, error), (1, TxError::Stateless(StatelessError::SelfTransfer)));
    assert_eq!(calls.get(), 0, "no signature work for a block that fails stateless checks");
}

#[test]
fn all_signatures_are_verified_in_one_batch_and_a_bad_one_rejects_the_block() {
    let s = state(&[(0, 100), (1, 100)]);
    let mut txs: Vec<Tx> = (0..10).map(|n| transfer(&user(0), user(1).public(), 1, n)).collect();
    let calls = Cell::new(0);
    let v = verifier();
    let counting = |items: &[SignedItem<'_>]| {
        calls.set(calls.get() + 1);
        assert_eq!(items.len(), 10);
        v.verify_many(items)
    };
    execute_block(&s, &txs, &chain_id(), &counting).unwrap();
    assert_eq!(calls.get(), 1);
    txs[6].signature.0[3] ^= 1;
    let (index, error) = invalid_at(execute_block(&s, &txs, &chain_id(), &verifier()));
    assert_eq!(index, 6);
    assert!(matches!(error, TxError::BadSignature(_)));
    // A tx signed for another chain does not verify here.
    let other = tally_crypto::ChainId::new("other-chain").unwrap();
    let foreign = Tx::sign(txs[0].transfer, &user(0), &other);
    let (_, error) = invalid_at(execute_block(&s, &[foreign], &chain_id(), &verifier()));
    assert!(matches!(error, TxError::BadSignature(_)));
}

/// Knows some txs (by hash) to be verified, as a node's mempool does; counts what it checks.
struct Knowing {
    known: Vec<TxHash>,
    checked: Cell<usize>,
}

impl TxVerifier for Knowing {
    fn verify_many(&self, items: &[SignedItem<'_>]) -> Vec<Result<(), VerifyError>> {
        self.checked.set(self.checked.get() + items.len());
        verifier().verify_many(items)
    }

    fn known_verified(&self, tx_hash: &TxHash) -> bool {
        self.known.contains(tx_hash)
    }
}

#[test]
fn txs_known_verified_are_not_checked_again_and_the_rest_are() {
    let s = state(&[(0, 100), (1, 100)]);
    let mut txs: Vec<Tx> = (0..6).map(|n| transfer(&user(0), user(1).public(), 1, n)).collect();
    let known = Knowing { known: txs[..4].iter().map(Tx::hash).collect(), checked: Cell::new(0) };
    let outcome = execute_block(&s, &txs, &chain_id(), &known).unwrap();
    assert_eq!(known.checked.get(), 2, "only the two unknown txs are verified");
    assert_eq!(outcome.tx_hashes, txs.iter().map(Tx::hash).collect::<Vec<_>>());
    // A bad signature among the unknown txs still rejects the block. (A tx whose signature
    // was changed has another hash, so it is never "known" by the hash of the good one.)
    txs[5].signature.0[3] ^= 1;
    let (index, error) = invalid_at(execute_block(&s, &txs, &chain_id(), &known));
    assert_eq!(index, 5);
    assert!(matches!(error, TxError::BadSignature(_)));
    txs[2].signature.0[3] ^= 1;
    let (index, _) = invalid_at(execute_block(&s, &txs, &chain_id(), &known));
    assert_eq!(index, 2, "a changed tx is not the known one");
}

#[test]
fn overlay_chains_pending_txs_for_the_mempool() {
    let s = state(&[(0, 10)]);
    let mut overlay = Overlay::new(&s);
    overlay.apply(&transfer(&user(0), user(1).public(), 4, 0)).unwrap();
    let next = transfer(&user(0), user(1).public(), 4, 1);
    assert_eq!(check_tx_against(&overlay, &next), Ok(()));
    overlay.apply(&next).unwrap();
    let third = transfer(&user(0), user(1).public(), 4, 2);
    assert_eq!(overlay.apply(&third), Err(TxError::InsufficientBalance { balance: 2, amount: 4 }));
    assert_eq!(overlay.account(&user(1).public()).balance, 8);
    assert_eq!(s.account(&user(1).public()), Account::default(), "the base is untouched");
}

#[test]
fn selection_skips_invalid_candidates_and_respects_limits() {
    let s = state(&[(0, 100), (1, 100)]);
    let mut bad_sig = transfer(&user(1), user(2).public(), 1, 0);
    bad_sig.signature.0[0] ^= 1;
    let candidates = vec![
        transfer(&user(0), user(2).public(), 10, 0),
        transfer(&user(0), user(2).public(), 10, 5), // nonce gap
        bad_sig,
        transfer(&user(0), user(0).public(), 1, 1), // self-transfer
        transfer(&user(0), user(2).public(), 500, 1), // too much
        transfer(&user(0), user(2).public(), 10, 1),
        transfer(&user(1), user(2).public(), 10, 0),
        transfer(&user(1), user(2).public(), 10, 1),
    ];
    let limits = SelectLimits { txs_max: 3, tx_bytes_max: u64::MAX };
    let sel = select_txs(&s, &candidates, &chain_id(), limits, &verifier());
    assert_eq!(sel.txs, vec![candidates[0], candidates[5], candidates[6]]);
    let skipped: Vec<usize> = sel.skipped.iter().map(|s| s.index).collect();
    assert_eq!(skipped, vec![1, 2, 3, 4]);
    assert_eq!(sel.skipped[0].error, TxError::BadNonce { expected: 1, got: 5 });
    assert!(matches!(sel.skipped[1].error, TxError::BadSignature(_)));
    assert_eq!(sel.considered, 7);
    // The selection is exactly what block execution accepts.
    let out = execute_block(&s, &sel.txs, &chain_id(), &verifier()).unwrap();
    assert_eq!(out.state_root, sel.outcome.state_root);
    // The byte budget binds too: two txs' worth of bytes.
    let limits = SelectLimits { txs_max: 100, tx_bytes_max: 2 * tally_ledger::TX_BYTES as u64 + 1 };
    let sel = select_txs(&s, &candidates, &chain_id(), limits, &verifier());
    assert_eq!(sel.txs.len(), 2);
}

#[test]
fn too_many_txs_is_rejected_without_work() {
    let s = state(&[]);
    let tx = transfer(&user(0), user(1).public(), 1, 0);
    let txs = vec![tx; tally_ledger::BLOCK_TXS_MAX as usize + 1];
    let never = |_: &[SignedItem<'_>]| -> Vec<Result<(), VerifyError>> { unreachable!() };
    assert!(matches!(
        execute_block(&s, &txs, &chain_id(), &never),
        Err(ExecError::TooManyTxs { .. })
    ));
}
