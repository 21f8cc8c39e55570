//! Deterministic execution of transfers, and the checks the mempool shares with it.
//!
//! Rules, applied to each tx in block order on the state left by the txs before it:
//! 1. stateless: amount > 0, sender != recipient ([`Tx::check_stateless`]);
//! 2. the signature verifies (all of a block's signatures are checked in one batch, through a
//!    [`TxVerifier`], before any tx is applied);
//! 3. `nonce` equals the sender's nonce (its count of sent txs);
//! 4. the sender's balance covers `amount`;
//! 5. the recipient's balance plus `amount` fits in a u64 (it always does when the genesis
//!    supply fits, which genesis validation checks; the check stays as a guard).
//!
//! A valid tx moves `amount` and increments the sender's nonce. There are no fees. A block
//! containing any invalid tx is invalid as a whole: a proposer must only include valid txs
//! (see [`crate::select_txs`], which skips them).

use crate::account::Account;
use crate::limits::BLOCK_TXS_MAX;
use crate::state_tree::StateTree;
use crate::tx::{StatelessError, Tx, TxHash};
use crate::tx_merkle::tx_root;
use std::collections::BTreeMap;
use tally_crypto::{ChainId, Hash, PublicKey, SignedItem, Verifier, VerifyError};

/// Read access to account state. An account never touched reads as the default.
pub trait AccountState {
    fn account(&self, public_key: &PublicKey) -> Account;
}

impl AccountState for StateTree {
    fn account(&self, public_key: &PublicKey) -> Account {
        self.get(public_key).unwrap_or_default()
    }
}

/// Batch signature verification: verdict i is item i's. [`Verifier`] implements it (with its
/// caches), and so does any closure of the same shape (tests, benches, a node without cache).
pub trait TxVerifier {
    fn verify_many(&self, items: &[SignedItem<'_>]) -> Vec<Result<(), VerifyError>>;

    /// Whether the tx with this hash is known to carry a good signature, so that it need not
    /// be checked again (a node: the tx is in its mempool, which admits only verified txs).
    /// The hash covers the whole tx, signature included. None is known by default.
    fn known_verified(&self, _tx_hash: &TxHash) -> bool {
        false
    }
}

impl TxVerifier for Verifier {
    fn verify_many(&self, items: &[SignedItem<'_>]) -> Vec<Result<(), VerifyError>> {
        Verifier::verify_many(self, items)
    }
}

impl<F> TxVerifier for F
where
    F: Fn(&[SignedItem<'_>]) -> Vec<Result<(), VerifyError>>,
{
    fn verify_many(&self, items: &[SignedItem<'_>]) -> Vec<Result<(), VerifyError>> {
        self(items)
    }
}

/// Why a tx cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error(transparent)]
    Stateless(#[from] StatelessError),
    #[error("bad signature: {0}")]
    BadSignature(VerifyError),
    #[error("nonce {got} does not match the sender's next nonce {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("balance {balance} does not cover the amount {amount}")]
    InsufficientBalance { balance: u64, amount: u64 },
    #[error("recipient balance {balance} plus {amount} overflows")]
    RecipientOverflow { balance: u64, amount: u64 },
    #[error("sender's nonce is exhausted")]
    NonceOverflow,
}

/// The sender's and recipient's accounts after `tx`, or why it cannot apply. Pure.
fn transfer_result(state: &impl AccountState, tx: &Tx) -> Result<(Account, Account), TxError> {
    let t = &tx.transfer;
    let sender = state.account(&t.from);
    if t.nonce != sender.nonce {
        return Err(TxError::BadNonce { expected: sender.nonce, got: t.nonce });
    }
    let balance = sender
        .balance
        .checked_sub(t.amount)
        .ok_or(TxError::InsufficientBalance { balance: sender.balance, amount: t.amount })?;
    let nonce = sender.nonce.checked_add(1).ok_or(TxError::NonceOverflow)?;
    let recipient = state.account(&t.to);
    let credited = recipient
        .balance
        .checked_add(t.amount)
        .ok_or(TxError::RecipientOverflow { balance: recipient.balance, amount: t.amount })?;
    Ok((Account { balance, nonce }, Account { balance: credited, nonce: recipient.nonce }))
}

/// The mempool's check of a tx whose signature it verified: stateless rules, then nonce,
/// balance and overflow against `state`. A mempool holding a sender's earlier txs checks
/// later ones against an [`Overlay`] with the earlier ones applied; `BadNonce` with
/// `got > expected` tells it the tx may become valid later.
pub fn check_tx_against(state: &impl AccountState, tx: &Tx) -> Result<(), TxError> {
    tx.check_stateless()?;
    transfer_result(state, tx).map(|_| ())
}

/// Changes to a base state, applied tx by tx.
#[derive(Debug)]
pub struct Overlay<'a, S: AccountState> {
    base: &'a S,
    /// Every account a successful tx touched, with its latest value.
    changes: BTreeMap<PublicKey, Account>,
}

impl<S: AccountState> AccountState for Overlay<'_, S> {
    fn account(&self, public_key: &PublicKey) -> Account {
        match self.changes.get(public_key) {
            Some(account) => *account,
            None => self.base.account(public_key),
        }
    }
}

impl<'a, S: AccountState> Overlay<'a, S> {
    pub fn new(base: &'a S) -> Overlay<'a, S> {
        Overlay { base, changes: BTreeMap::new() }
    }

    /// Applies `tx` (whose signature the caller verified), or changes nothing and says why.
    pub fn apply(&mut self, tx: &Tx) -> Result<(), TxError> {
        tx.check_stateless()?;
        let (sender, recipient) = transfer_result(self, tx)?;
        self.changes.insert(tx.transfer.from, sender);
        self.changes.insert(tx.transfer.to, recipient);
        Ok(())
    }

    pub fn changes(&self) -> &BTreeMap<PublicKey, Account> {
        &self.changes
    }

    pub fn into_changes(self) -> BTreeMap<PublicKey, Account> {
        self.changes
    }
}

/// What executing a block's txs on a parent state gives.
#[derive(Clone, Debug)]
pub struct ExecutionOutcome {
    /// Final value of every account the block touched; what the store writes.
    pub changes: BTreeMap<PublicKey, Account>,
    /// Root of the state after the block.
    pub state_root: Hash,
    pub tx_root: Hash,
    /// The txs' hashes in block order (for the tx index).
    pub tx_hashes: Vec<TxHash>,
    /// Root of the state the block was executed on; commit checks it is still current.
    pub parent_state_root: Hash,
    /// The state after the block (shares all untouched nodes with the parent's tree).
    pub(crate) state: StateTree,
}

impl ExecutionOutcome {
    /// The state after the block.
    pub fn state(&self) -> &StateTree {
        &self.state
    }

    /// Builds the outcome of applying `changes` (from valid txs) to `parent`.
    pub(crate) fn new(
        parent: &StateTree,
        changes: BTreeMap<PublicKey, Account>,
        tx_hashes: Vec<TxHash>,
    ) -> ExecutionOutcome {
        let state = parent.apply(&changes);
        ExecutionOutcome {
            state_root: state.root(),
            tx_root: tx_root(&tx_hashes),
            tx_hashes,
            parent_state_root: parent.root(),
            changes,
            state,
        }
    }
}

/// Why a block's txs do not execute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("{count} txs, more than the limit of {max}")]
    TooManyTxs { count: usize, max: u32 },
    #[error("tx {index} ({tx_hash}) is invalid: {error}")]
    InvalidTx { index: u32, tx_hash: TxHash, error: TxError },
}

/// Verifies the signatures of `txs` (whose hashes are `tx_hashes`) in one `verify_many`
/// call, except those the verifier already knows to be good; verdict i is tx i's.
pub fn verify_tx_signatures(
    txs: &[Tx],
    tx_hashes: &[TxHash],
    chain_id: &ChainId,
    verifier: &impl TxVerifier,
) -> Vec<Result<(), VerifyError>> {
    assert_eq!(txs.len(), tx_hashes.len(), "one hash per tx");
    let unknown: Vec<usize> =
        (0..txs.len()).filter(|&i| !verifier.known_verified(&tx_hashes[i])).collect();
    let messages: Vec<Vec<u8>> = unknown.iter().map(|&i| txs[i].signing_bytes(chain_id)).collect();
    let items: Vec<SignedItem<'_>> = unknown
        .iter()
        .zip(&messages)
        .map(|(&i, message)| SignedItem {
            key: txs[i].from(),
            message,
            signature: &txs[i].signature,
        })
        .collect();
    let checked = verifier.verify_many(&items);
    assert_eq!(checked.len(), items.len(), "a TxVerifier returns one verdict per item");
    let mut verdicts = vec![Ok(()); txs.len()];
    for (&i, verdict) in unknown.iter().zip(checked) {
        verdicts[i] = verdict;
    }
    verdicts
}

/// Executes a block's `txs` on `state`. Fails on the first invalid tx: stateless rules are
/// checked for every tx first (cheap), then all signatures in one batch, then txs are applied
/// in order. Deterministic: the verdict depends only on `state`, `txs` and `chain_id`.
pub fn execute_block(
    state: &StateTree,
    txs: &[Tx],
    chain_id: &ChainId,
    verifier: &impl TxVerifier,
) -> Result<ExecutionOutcome, ExecError> {
    // Checked again by `execute_block_hashed`; here so that an oversized list is refused
    // before it is hashed.
    if txs.len() > BLOCK_TXS_MAX as usize {
        return Err(ExecError::TooManyTxs { count: txs.len(), max: BLOCK_TXS_MAX });
    }
    execute_block_hashed(state, txs, txs.iter().map(Tx::hash).collect(), chain_id, verifier)
}

/// [`execute_block`] for a caller that already hashed the txs (`tx_hashes[i]` is the hash of
/// `txs[i]`; a wrong hash makes a wrong outcome, so only pass hashes computed from `txs`).
pub fn execute_block_hashed(
    state: &StateTree,
    txs: &[Tx],
    tx_hashes: Vec<TxHash>,
    chain_id: &ChainId,
    verifier: &impl TxVerifier,
) -> Result<ExecutionOutcome, ExecError> {
    assert_eq!(txs.len(), tx_hashes.len(), "one hash per tx");
    if txs.len() > BLOCK_TXS_MAX as usize {
        return Err(ExecError::TooManyTxs { count: txs.len(), max: BLOCK_TXS_MAX });
    }
    let invalid = |index: usize, error: TxError| ExecError::InvalidTx {
        index: u32::try_from(index).expect("at most BLOCK_TXS_MAX txs, checked above"),
        tx_hash: tx_hashes[index],
        error,
    };
    if let Some((index, error)) =
        txs.iter().enumerate().find_map(|(i, tx)| tx.check_stateless().err().map(|e| (i, e)))
    {
        return Err(invalid(index, error.into()));
    }
    let verdicts = verify_tx_signatures(txs, &tx_hashes, chain_id, verifier);
    let mut overlay = Overlay::new(state);
    for (index, (tx, verdict)) in txs.iter().zip(verdicts).enumerate() {
        verdict.map_err(|e| invalid(index, TxError::BadSignature(e)))?;
        overlay.apply(tx).map_err(|e| invalid(index, e))?;
    }
    Ok(ExecutionOutcome::new(state, overlay.into_changes(), tx_hashes))
}
