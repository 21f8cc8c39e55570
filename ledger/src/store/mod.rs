//! The ledger's redb store: blocks, headers, commit certificates, accounts and metadata, in
//! one database file (the tx index is kept beside it: [`crate::tx_index`]). Byte layout:
//! [`tables`] and docs/ledger-format.md.
//!
//! Every committed block is written in one durable write transaction (redb's default
//! `Durability::Immediate` fsyncs on commit), so after a crash the store holds either the
//! whole block, with its certificate and account changes, or none of it. A
//! commit that fails a check midway aborts its transaction and leaves nothing behind.

mod commit;
mod error;
mod read;
mod restore;
mod tables;

pub use error::{CommitError, Corrupt, InitGenesisError, OpenError, ReadError};
pub use read::AccountsIter;
pub use tables::FORMAT_VERSION;
/// The (height, block hash) encoding of `meta.tip`, which the tx index's marker shares.
pub(crate) use tables::{decode_tip, encode_tip};

use crate::genesis::Genesis;
use redb::{Database, ReadableTable, StorageBackend, WriteTransaction};
use std::path::Path;
use tables::{
    decode_hash, decode_u32_be, ACCOUNTS, BLOCKS, BLOCK_HEIGHTS, CERTIFICATES, HEADERS,
    LEGACY_TX_INDEX, META, META_CHAIN_ID, META_FORMAT_VERSION, META_GENESIS_HASH,
};

/// The database of one node. `Send + Sync`; every method takes `&self` and runs in its own
/// redb transaction (redb allows one writer and many readers at a time).
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens the database at `path`, creating it (and its tables) if it does not exist.
    /// Refuses a store written in another format version.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        Store::init(Database::create(path)?)
    }

    /// [`Store::open`] with a page cache of at most `cache_bytes` (redb's default is 1 GiB).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, OpenError> {
        Store::init(Database::builder().set_cache_size(cache_bytes).create(path)?)
    }

    /// [`Store::open`] over any redb storage backend instead of a file: an in-memory one, or
    /// one that injects IO failures (the fuzz target `store_ops` crashes the store that way).
    pub fn open_with_backend(backend: impl StorageBackend) -> Result<Store, OpenError> {
        Store::init(Database::builder().create_with_backend(backend)?)
    }

    /// Creates the tables and checks or writes the format version. A version-1 store is
    /// upgraded: its tx index table is deleted (the ledger rebuilds the index outside redb).
    fn init(db: Database) -> Result<Store, OpenError> {
        let txn = db.begin_write()?;
        create_tables(&txn)?;
        {
            let mut meta = txn.open_table(META)?;
            let found = match meta.get(META_FORMAT_VERSION)? {
                Some(v) => Some(decode_u32_be("meta", v.value())?),
                None => None,
            };
            match found {
                Some(1) => {
                    txn.delete_table(LEGACY_TX_INDEX)?;
                    meta.insert(META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes().as_slice())?;
                }
                Some(found) if found != FORMAT_VERSION => {
                    return Err(OpenError::FormatVersion { found, supported: FORMAT_VERSION });
                }
                Some(_) => {}
                None => {
                    meta.insert(META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes().as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Writes the chain id, the genesis hash and the genesis accounts, once. On a store that
    /// already has a genesis, checks that it is this one and writes nothing.
    pub fn init_genesis(&self, genesis: &Genesis) -> Result<(), InitGenesisError> {
        let given = genesis.hash();
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let stored = match meta.get(META_GENESIS_HASH)? {
                Some(v) => Some(decode_hash("meta", v.value())?),
                None => None,
            };
            if let Some(stored) = stored {
                return if stored == given {
                    Ok(())
                } else {
                    Err(InitGenesisError::GenesisMismatch { stored, given })
                };
            }
            meta.insert(META_CHAIN_ID, genesis.chain_id.as_str().as_bytes())?;
            meta.insert(META_GENESIS_HASH, given.as_bytes().as_slice())?;
            let mut accounts = txn.open_table(ACCOUNTS)?;
            for (public_key, account) in genesis.initial_accounts() {
                accounts.insert(public_key.0, crate::codec::encode(&account).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Creates every table, so that read transactions never meet a missing one.
fn create_tables(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(META)?;
    txn.open_table(BLOCKS)?;
    txn.open_table(HEADERS)?;
    txn.open_table(BLOCK_HEIGHTS)?;
    txn.open_table(CERTIFICATES)?;
    txn.open_table(ACCOUNTS)?;
    Ok(())
}
