//! tally-ledger: what the validators agree on and how it is stored.
//!
//! - Data model: [`Tx`] (a signed [`Transfer`]), [`Block`] and [`Header`], [`Genesis`],
//!   [`Account`].
//! - Commitments: the RFC 6962 tx Merkle tree ([`tx_root`], [`TxProof`]) and the compact
//!   sparse Merkle tree of accounts ([`StateTree`], [`AccountProof`]).
//! - Execution: deterministic transfers ([`execute_block`], [`check_tx_against`]) and the
//!   proposer's tx selection ([`select_txs`]).
//! - Storage: [`Store`], a redb database; byte layout in docs/ledger-format.md. The tx index
//!   by hash sits beside it in an LSM tree ([`tx_index`]).
//! - Simulation: [`SimDisk`], a redb storage backend in memory whose [`DiskImage`] loses
//!   power on demand, keeping what was synced and a torn part of the rest ([`sim_disk`]).
//! - Snapshots: the account state at a height, chunked, with a certified manifest
//!   ([`snapshot`]), kept on disk ([`SnapshotDir`]) and restored by state sync.
//! - [`Ledger`]: the store, the state tree and the genesis together, for the node.
//!
//! No network IO and no clock: time comes in as block headers' `time_ms`.

mod account;
mod block;
mod codec;
pub mod event_index;
mod execute;
mod genesis;
mod ledger;
pub mod light;
pub mod limits;
mod select;
pub mod sim_disk;
pub mod snapshot;
pub mod state_tree;
pub mod store;
mod tx;
pub mod tx_index;
pub mod tx_merkle;
mod validate;

pub use account::Account;
pub use block::{Block, Header};
pub use codec::{decode_bounded, DecodeError};
pub use event_index::{EventIndex, EventIndexError};
pub use execute::{
    check_tx_against, execute_block, execute_block_hashed, verify_tx_signatures, AccountState,
    ExecError, ExecutionOutcome, Overlay, TxError, TxVerifier,
};
pub use genesis::{
    ConsensusParams, Genesis, GenesisAccount, GenesisError, GenesisLoadError, GenesisSaveError,
    GenesisValidator,
};
pub use ledger::{BuiltBlock, Ledger, LedgerCommitError, LedgerOpenError, Tip};
pub use light::{verify_account, verify_header, verify_tx, LightError};
pub use limits::{BLOCK_BYTES_MAX, BLOCK_TXS_MAX, TX_BYTES, TX_BYTES_MAX};
pub use select::{select_txs, SelectLimits, Selection, SkippedTx};
pub use sim_disk::{DiskImage, SimDisk};
pub use snapshot::files::{SnapshotDir, SnapshotFileError};
pub use snapshot::{verify_offer, Manifest, Restore, SnapshotError, SnapshotOffer};
pub use state_tree::{AccountProof, AccountProofError, OtherLeaf, StateTree};
pub use store::{Store, FORMAT_VERSION};
pub use tx::{StatelessError, Transfer, Tx, TxHash};
pub use tx_index::{TxIndex, TxIndexError};
pub use tx_merkle::{tx_proof, tx_root, ProofError, TxProof};
pub use validate::BlockError;

/// Compile-time check that the ledger can be moved to another thread and shared behind a lock.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Ledger>();
    send_sync::<StateTree>();
};
