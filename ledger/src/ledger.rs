//! [`Ledger`]: the store, the in-memory state tree and the genesis, kept in step.
//!
//! The node holds one `Ledger` behind a lock. Reads for the mempool and RPC go to
//! [`Ledger::state`] (a cheap snapshot can be cloned out of the lock); consensus asks
//! [`Ledger::build_block`] for a proposal and [`Ledger::validate_block`] for valid(v); a decision
//! ends in [`Ledger::commit`], which writes the block durably and only then moves the
//! in-memory state forward. If that write fails the node must stop (STYLE.md: a failed write
//! to the ledger is fatal), since consensus has already decided the block.

use crate::account::Account;
use crate::block::{Block, Header};
use crate::execute::{check_tx_against, ExecutionOutcome, TxError, TxVerifier};
use crate::genesis::{Genesis, GenesisError};
use crate::select::{select_txs, SelectLimits, SkippedTx};
use crate::snapshot::SnapshotOffer;
use crate::state_tree::{AccountProof, StateTree};
use crate::store::{CommitError, InitGenesisError, OpenError, ReadError, Store};
use crate::tx::{Tx, TxHash};
use crate::tx_index::{index_dir, TxIndex, TxIndexError};
use crate::validate::{validate_block, BlockError, Expected};
use std::path::Path;
use tally_consensus::{BlockHash, CommitCertificate, Height, ValidatorSet};
use tally_crypto::{Hash, PublicKey};

/// The last committed block, or the genesis (height 0, the genesis hash, the genesis time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    pub height: Height,
    pub hash: BlockHash,
    pub time_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerOpenError {
    #[error("invalid genesis: {0}")]
    Genesis(#[from] GenesisError),
    #[error("cannot open the store: {0}")]
    Open(#[from] OpenError),
    #[error("cannot initialise the store with this genesis: {0}")]
    InitGenesis(#[from] InitGenesisError),
    #[error("cannot read the store: {0}")]
    Read(#[from] ReadError),
    #[error("cannot open the tx index: {0}")]
    TxIndex(#[from] TxIndexError),
    #[error("the store's tip is height {height} but its header is missing")]
    MissingTipHeader { height: Height },
    #[error(
        "accounts rebuild to state root {rebuilt}, the header at height {height} says {stored}"
    )]
    StateRootMismatch { height: Height, stored: Hash, rebuilt: Hash },
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerCommitError {
    #[error("the outcome was computed on state {outcome_parent}, the current state is {current}")]
    StaleOutcome { outcome_parent: Hash, current: Hash },
    #[error("the outcome's roots do not match the block header's")]
    OutcomeMismatch,
    #[error("store commit failed: {0}")]
    Store(#[from] CommitError),
    #[error("the block is stored but its txs could not be indexed: {0}")]
    TxIndex(#[from] TxIndexError),
    #[error("the snapshot's state root {snapshot} is not its header's {header}")]
    SnapshotRoot { snapshot: Hash, header: Hash },
}

/// A proposal built by [`Ledger::build_block`].
#[derive(Clone, Debug)]
pub struct BuiltBlock {
    pub block: Block,
    pub outcome: ExecutionOutcome,
    /// Invalid candidates that were left out.
    pub skipped: Vec<SkippedTx>,
    /// Candidates looked at; those from this index on did not fit.
    pub considered: usize,
}

/// The ledger of one node. `Send + Sync`.
#[derive(Debug)]
pub struct Ledger {
    store: Store,
    tx_index: TxIndex,
    genesis: Genesis,
    genesis_hash: Hash,
    validators: ValidatorSet,
    validators_hash: Hash,
    /// The state after the tip; its root equals the tip header's `state_root`.
    state: StateTree,
    tip: Tip,
}

/// The store's page cache when no size is given: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

impl Ledger {
    /// Opens (or creates) the store at `path` for `genesis`, and rebuilds the state tree from
    /// its accounts; the rebuilt root must match the tip header's state root. A store created
    /// for another genesis is refused. The tx index (in `<path>.txindex`) is brought level
    /// with the store: blocks it missed (a crash, an upgrade from format version 1) are
    /// indexed now.
    pub fn open(path: &Path, genesis: Genesis) -> Result<Ledger, LedgerOpenError> {
        Ledger::open_with_cache(path, genesis, DEFAULT_CACHE_BYTES)
    }

    /// [`Ledger::open`] with the store's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(
        path: &Path,
        genesis: Genesis,
        cache_bytes: usize,
    ) -> Result<Ledger, LedgerOpenError> {
        Ledger::open_store(
            genesis,
            || TxIndex::open(&index_dir(path)),
            || Store::open_with_cache(path, cache_bytes),
        )
    }

    /// [`Ledger::open`] with the store on a redb storage backend instead of a file (in the
    /// simulator, a [`crate::SimDisk`]) and the tx index given: [`TxIndex::open`] on a
    /// directory, or [`TxIndex::in_memory`].
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
        tx_index: TxIndex,
        genesis: Genesis,
    ) -> Result<Ledger, LedgerOpenError> {
        Ledger::open_store(genesis, || Ok(tx_index), || Store::open_with_backend(backend))
    }

    /// Checks `genesis`, then opens the store with `open` and the tx index with `open_index`.
    fn open_store(
        genesis: Genesis,
        open_index: impl FnOnce() -> Result<TxIndex, TxIndexError>,
        open: impl FnOnce() -> Result<Store, OpenError>,
    ) -> Result<Ledger, LedgerOpenError> {
        genesis.validate()?;
        let validators = genesis.validator_set().map_err(GenesisError::from)?;
        let store = open()?;
        store.init_genesis(&genesis)?;
        let genesis_hash = genesis.hash();
        let (tip, expected_root) = match store.tip()? {
            Some((height, hash)) => {
                let header =
                    store.header(height)?.ok_or(LedgerOpenError::MissingTipHeader { height })?;
                (Tip { height, hash, time_ms: header.time_ms }, header.state_root)
            }
            None => {
                let tip = Tip {
                    height: Height(0),
                    hash: BlockHash(genesis_hash),
                    time_ms: genesis.genesis_time_ms,
                };
                (tip, genesis.state_tree().root())
            }
        };
        let accounts = store.accounts_iter()?.collect::<Result<Vec<_>, ReadError>>()?;
        let state = StateTree::from_accounts(accounts);
        if state.root() != expected_root {
            return Err(LedgerOpenError::StateRootMismatch {
                height: tip.height,
                stored: expected_root,
                rebuilt: state.root(),
            });
        }
        let (tx_index, indexed) = open_index()?.catch_up(&store)?;
        if indexed > 0 {
            tracing::info!(blocks = indexed, "indexed the txs of blocks the tx index had missed");
        }
        let validators_hash = validators.hash();
        Ok(Ledger {
            store,
            tx_index,
            genesis,
            genesis_hash,
            validators,
            validators_hash,
            state,
            tip,
        })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    pub fn validator_set(&self) -> &ValidatorSet {
        &self.validators
    }

    pub fn validators_hash(&self) -> Hash {
        self.validators_hash
    }

    /// The store, for queries (blocks, certificates, txs).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A committed tx by hash, with its height and position in the block.
    pub fn tx(&self, hash: &TxHash) -> Result<Option<(Height, u32, Tx)>, TxIndexError> {
        let Some((height, position)) = self.tx_index.get(hash)? else { return Ok(None) };
        match self.store.tx_at(height, position)? {
            Some(tx) if tx.hash() == *hash => Ok(Some((height, position, tx))),
            // A location that names another tx is damage, reported as such.
            Some(_) => Err(TxIndexError::Corrupt(format!(
                "tx {hash} is indexed at height {height} position {position}, which holds another tx"
            ))),
            // The block is not held (below a restored snapshot's height).
            None => Ok(None),
        }
    }

    /// The state after the tip. Clone it (O(1)) to read outside the node's lock.
    pub fn state(&self) -> &StateTree {
        &self.state
    }

    /// The last committed block, or `None` before block 1.
    pub fn tip(&self) -> Option<(Height, BlockHash)> {
        (self.tip.height.0 > 0).then_some((self.tip.height, self.tip.hash))
    }

    /// The tip as height, hash and time, with the genesis as height 0.
    pub fn tip_info(&self) -> Tip {
        self.tip
    }

    pub fn next_height(&self) -> Height {
        self.tip.height.next()
    }

    /// The mempool's check of a tx (signature already verified) against the current state.
    /// The committed account of `public_key` (zero balance and nonce if it never appeared).
    pub fn account(&self, public_key: &PublicKey) -> Account {
        self.state.get(public_key).unwrap_or_default()
    }

    pub fn check_tx(&self, tx: &Tx) -> Result<(), TxError> {
        check_tx_against(&self.state, tx)
    }

    /// An account and its proof against the current state root (the tip's `state_root`).
    pub fn account_with_proof(&self, public_key: &PublicKey) -> (Account, AccountProof) {
        let (account, proof) = self.state.prove(public_key);
        (account.unwrap_or_default(), proof)
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            chain_id: &self.genesis.chain_id,
            height: self.next_height(),
            parent: self.tip.hash,
            parent_time_ms: self.tip.time_ms,
            validators: &self.validators,
            validators_hash: self.validators_hash,
            params: &self.genesis.params,
        }
    }

    /// valid(v) for the next height: header, limits, roots, signatures and execution (see
    /// [`crate::validate`]). The outcome is what [`Ledger::commit`] needs.
    pub fn validate_block(
        &self,
        block: &Block,
        verifier: &impl TxVerifier,
    ) -> Result<ExecutionOutcome, BlockError> {
        validate_block(block, &self.expected(), &self.state, None, verifier)
    }

    /// [`Ledger::validate_block`] with the hashes of `block.txs` already computed by the
    /// caller (from this very block: they decide the tx root that is checked).
    pub fn validate_block_hashed(
        &self,
        block: &Block,
        tx_hashes: Vec<TxHash>,
        verifier: &impl TxVerifier,
    ) -> Result<ExecutionOutcome, BlockError> {
        validate_block(block, &self.expected(), &self.state, Some(tx_hashes), verifier)
    }

    /// The proposer's block for the next height: `candidates` in order, invalid ones skipped,
    /// up to the chain's limits. The time is `time_ms`, raised to the parent's time + 1 if it
    /// is not later, so the block always satisfies the time rule.
    pub fn build_block(
        &self,
        candidates: &[Tx],
        time_ms: u64,
        proposer: PublicKey,
        verifier: &impl TxVerifier,
    ) -> BuiltBlock {
        let params = &self.genesis.params;
        let mut header = Header {
            chain_id: self.genesis.chain_id.clone(),
            height: self.next_height(),
            time_ms: time_ms.max(self.tip.time_ms.saturating_add(1)),
            prev_block_hash: self.tip.hash,
            tx_root: Hash::ZERO,
            tx_count: 0,
            state_root: Hash::ZERO,
            proposer,
            validators_hash: self.validators_hash,
        };
        let overhead = (header.encoded_len() + 4) as u64;
        let limits = SelectLimits {
            txs_max: params.block_txs_max,
            tx_bytes_max: params.block_bytes_max.saturating_sub(overhead),
        };
        let chain_id = &self.genesis.chain_id;
        let selection = select_txs(&self.state, candidates, chain_id, limits, verifier);
        header.tx_root = selection.outcome.tx_root;
        header.tx_count = u32::try_from(selection.txs.len()).expect("at most block_txs_max txs");
        header.state_root = selection.outcome.state_root;
        let block = Block { header, txs: selection.txs };
        debug_assert!(block.encoded_len() as u64 <= params.block_bytes_max);
        BuiltBlock {
            block,
            outcome: selection.outcome,
            skipped: selection.skipped,
            considered: selection.considered,
        }
    }

    /// Installs a snapshot's state (checked by [`crate::snapshot::verify_offer`] and
    /// [`crate::snapshot::Restore`]) into this ledger, which must hold no block yet. The
    /// snapshot's height becomes the tip; the next block is the one after it.
    pub fn install_snapshot(
        &mut self,
        offer: &SnapshotOffer,
        state: StateTree,
        accounts: &[(PublicKey, Account)],
    ) -> Result<(), LedgerCommitError> {
        let header = &offer.header;
        if state.root() != header.state_root {
            return Err(LedgerCommitError::SnapshotRoot {
                snapshot: state.root(),
                header: header.state_root,
            });
        }
        self.store.install_snapshot(header, &offer.certificate, accounts)?;
        self.state = state;
        self.tip = Tip { height: header.height, hash: header.hash(), time_ms: header.time_ms };
        Ok(())
    }

    /// Writes a decided block with its certificate (verified by consensus) and the outcome of
    /// [`Ledger::validate_block`] (or [`Ledger::build_block`]) in one durable transaction, then
    /// moves the in-memory state to the block's. On error nothing changed, on disk or here.
    pub fn commit(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
        outcome: ExecutionOutcome,
    ) -> Result<(), LedgerCommitError> {
        self.persist(block, certificate, &outcome)?;
        self.apply_persisted(block, outcome);
        Ok(())
    }

    /// The first half of [`Ledger::commit`], under a shared borrow: checks the outcome and
    /// writes the block in one durable transaction. Until [`Ledger::apply_persisted`] runs,
    /// this ledger's tip and state stay the parent's (the store already holds the block), so
    /// a node can keep admitting txs against the parent state while the write and its fsync
    /// run. On error nothing changed.
    pub fn persist(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        outcome: &ExecutionOutcome,
    ) -> Result<(), LedgerCommitError> {
        if outcome.parent_state_root != self.state.root() {
            return Err(LedgerCommitError::StaleOutcome {
                outcome_parent: outcome.parent_state_root,
                current: self.state.root(),
            });
        }
        if outcome.state_root != block.header.state_root
            || outcome.tx_root != block.header.tx_root
            || outcome.state.root() != outcome.state_root
            || block.header.height != self.next_height()
        {
            return Err(LedgerCommitError::OutcomeMismatch);
        }
        self.store.commit_block(block, certificate, &outcome.changes)?;
        self.tx_index.index_block(block.header.height, &block.hash(), &outcome.tx_hashes)?;
        Ok(())
    }

    /// The second half of [`Ledger::commit`]: moves the in-memory state to `block`, which
    /// [`Ledger::persist`] wrote with this `outcome`.
    pub fn apply_persisted(&mut self, block: &Block, outcome: ExecutionOutcome) {
        debug_assert_eq!(block.header.height, self.next_height());
        self.state = outcome.state;
        self.tip =
            Tip { height: block.header.height, hash: block.hash(), time_ms: block.header.time_ms };
    }
}
