//! The ledger's redb store: blocks, headers, commit certificates, accounts and metadata, in
//! one database file (the tx index is kept beside it: [`crate::tx_index`]). Byte layout:
//! [`tables`] and docs/ledger-format.md.
//!
//! Every committed block is written in one durable write transaction (redb's default
//! `Durability::Immediate` fsyncs on commit), so after a crash the store holds either the
//! whole block, with its certificate and account changes, or none of it. A
//! commit that fails a check midway aborts its transaction and leaves nothing behind.
//!
//! A crash while redb creates the file leaves a file that redb refuses forever: it sizes
//! the file and writes its header and allocator state first, and the magic number that
//! makes the file a redb database last, so the crash leaves a file that starts with zeros
//! (found by `tests/sim_disk.rs`). Nothing can have been committed to such a file; opening
//! it empties it and creates the database again. A file that starts with anything else is
//! left to redb, which refuses what is not a redb database.

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
        redo_interrupted_creation(path).map_err(redb::Error::from)?;
        Store::init(Database::create(path)?)
    }

    /// [`Store::open`] with a page cache of at most `cache_bytes` (redb's default is 1 GiB).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, OpenError> {
        redo_interrupted_creation(path).map_err(redb::Error::from)?;
        Store::init(Database::builder().set_cache_size(cache_bytes).create(path)?)
    }

    /// [`Store::open`] over any redb storage backend instead of a file: an in-memory one, or
    /// one that injects IO failures (the fuzz target `store_ops` crashes the store that way).
    pub fn open_with_backend(backend: impl StorageBackend) -> Result<Store, OpenError> {
        redo_interrupted_creation_on(&backend).map_err(redb::Error::from)?;
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

/// The length of redb's magic number, the first bytes of a redb file.
const REDB_MAGIC_BYTES: u64 = 9;

/// Whether a file of `len` bytes that starts with `head` (its first bytes, up to
/// [`REDB_MAGIC_BYTES`]) was left by a crash while redb created it: not empty, and no magic
/// number yet (see the module documentation).
pub fn creation_interrupted(len: u64, head: &[u8]) -> bool {
    len > 0 && head.iter().all(|&b| b == 0)
}

/// Empties the redb file at `path` if a crash interrupted its creation (see the module
/// documentation), so that redb creates it again; returns whether it did. A missing file is
/// fine. For any redb file whose creation a crash may cut (the node's signing record too).
pub fn redo_interrupted_creation(path: &Path) -> std::io::Result<bool> {
    use std::io::Read as _;
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut head = Vec::new();
    (&mut file).take(REDB_MAGIC_BYTES).read_to_end(&mut head)?;
    if !creation_interrupted(len, &head) {
        return Ok(false);
    }
    tracing::warn!(path = %path.display(), bytes = len, "a crash interrupted the creation of this redb file; creating it again");
    file.set_len(0)?;
    file.sync_all()?;
    Ok(true)
}

/// [`redo_interrupted_creation`] on a redb storage backend.
pub fn redo_interrupted_creation_on(backend: &impl StorageBackend) -> std::io::Result<bool> {
    let len = backend.len()?;
    let head = backend.read(0, usize::try_from(len.min(REDB_MAGIC_BYTES)).unwrap_or(0))?;
    if !creation_interrupted(len, &head) {
        return Ok(false);
    }
    tracing::warn!(
        bytes = len,
        "a crash interrupted the creation of this redb database; creating it again"
    );
    backend.set_len(0)?;
    backend.sync_data(false)?;
    Ok(true)
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
