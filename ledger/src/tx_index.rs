//! The tx index: tx hash -> (height, position in the block), for `tx` queries by hash.
//!
//! It lives beside the redb store in an LSM tree (fjall), not in a redb table. Tx hashes are
//! random, and a B-tree pays for each random insert with a page copy: in redb, indexing
//! the 5,000 txs of one block cost 50 ms with 250,000 txs indexed and 100 ms with 2 million,
//! and the cost kept growing with the chain (it was most of a block commit, on the consensus
//! path). An LSM tree appends inserts to a journal and a memtable and sorts them into files
//! in the background: about 3.6 us of CPU per entry with 2 million indexed, flat as the
//! chain grows (docs/performance.md).
//!
//! The index is derived data. Each block's entries are written in one atomic batch
//! together with a marker, the height and hash of the last block indexed, after the block's
//! redb transaction has committed. The batch is not fsynced: after a crash the index may
//! be behind the store, never ahead of it or half-written, and [`TxIndex::catch_up`]
//! indexes the missing blocks from the store when the ledger opens. A marker that names a
//! block the store does not hold (another chain's index, a store replaced by a snapshot
//! restore) makes the ledger drop the index and rebuild it from the store's blocks.

use crate::block::Block;
use crate::store::{decode_tip, encode_tip, ReadError, Store};
use crate::tx::TxHash;
use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tally_consensus::{BlockHash, Height};

/// The journal and memtable bound: what is written before a flush to a sorted file.
const WRITE_BUFFER_BYTES: u64 = 16 << 20;
/// Journals kept before the oldest memtable is flushed.
const JOURNAL_BYTES_MAX: u64 = 64 << 20;
/// Block cache for lookups (queries by hash are rare next to inserts).
const CACHE_BYTES: u64 = 8 << 20;
/// The marker's key in the `meta` partition: height (u64 BE) || block hash (32 bytes), the
/// encoding of the store's `meta.tip`.
const MARKER: &[u8] = b"indexed";

#[derive(Debug, thiserror::Error)]
pub enum TxIndexError {
    #[error("tx index storage error: {0}")]
    Storage(#[from] fjall::Error),
    #[error("cannot remove the stale tx index at {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("reading the store to index its blocks: {0}")]
    Read(#[from] ReadError),
    #[error("corrupt tx index: {0}")]
    Corrupt(String),
    #[error("the store's block {height} is missing; the tx index cannot be rebuilt past it")]
    MissingBlock { height: Height },
}

/// The tx index of one ledger. `Send + Sync`; every method takes `&self`.
pub struct TxIndex {
    inner: Inner,
}

enum Inner {
    /// The node's index: an LSM tree in a directory.
    Lsm {
        /// Dropped before the directory is removed by [`TxIndex::reset`].
        keyspace: Keyspace,
        txs: PartitionHandle,
        meta: PartitionHandle,
        dir: PathBuf,
    },
    /// For the simulator: the same contract in memory, lost with the process (the crash
    /// an index must survive anyway: it is rebuilt from the store when the ledger opens).
    /// No files and no background threads, so a simulated node starts and stops cheaply.
    Memory(Mutex<MemoryIndex>),
}

#[derive(Default)]
struct MemoryIndex {
    txs: HashMap<TxHash, (Height, u32)>,
    marker: Option<(Height, BlockHash)>,
}

impl std::fmt::Debug for TxIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Lsm { dir, .. } => f.debug_struct("TxIndex").field("dir", dir).finish(),
            Inner::Memory(_) => f.debug_struct("TxIndex").field("dir", &"(memory)").finish(),
        }
    }
}

/// Where the index of the store at `store_path` lives: `<store file name>.txindex` beside it.
pub fn index_dir(store_path: &Path) -> PathBuf {
    let mut name = store_path.file_name().unwrap_or_default().to_os_string();
    name.push(".txindex");
    store_path.with_file_name(name)
}

impl TxIndex {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path) -> Result<TxIndex, TxIndexError> {
        let keyspace = Config::new(dir)
            .max_write_buffer_size(WRITE_BUFFER_BYTES)
            .max_journaling_size(JOURNAL_BYTES_MAX)
            .cache_size(CACHE_BYTES)
            // Four validators share two cores on the local testnet: one thread of each kind.
            .flush_workers(1)
            .compaction_workers(1)
            .open()?;
        // Hashes do not compress; lookups of unknown hashes are answered by the bloom filters.
        let options = PartitionCreateOptions::default()
            .compression(fjall::CompressionType::None)
            .max_memtable_size(WRITE_BUFFER_BYTES as u32);
        let txs = keyspace.open_partition("txs", options.clone())?;
        let meta = keyspace.open_partition("meta", options)?;
        Ok(TxIndex { inner: Inner::Lsm { keyspace, txs, meta, dir: dir.to_path_buf() } })
    }

    /// An empty index in memory (for the simulator): the contract of [`TxIndex::open`]
    /// without the files, empty again at each start.
    pub fn in_memory() -> TxIndex {
        TxIndex { inner: Inner::Memory(Mutex::new(MemoryIndex::default())) }
    }

    fn memory(index: &Mutex<MemoryIndex>) -> MutexGuard<'_, MemoryIndex> {
        // The map is updated in one statement per entry; a panic elsewhere leaves it whole.
        index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The last block indexed, if any.
    pub fn marker(&self) -> Result<Option<(Height, BlockHash)>, TxIndexError> {
        let meta = match &self.inner {
            Inner::Lsm { meta, .. } => meta,
            Inner::Memory(index) => return Ok(TxIndex::memory(index).marker),
        };
        let Some(value) = meta.get(MARKER)? else { return Ok(None) };
        let marker = decode_tip(&value).map_err(|e| TxIndexError::Corrupt(e.to_string()))?;
        Ok(Some(marker))
    }

    /// Indexes the txs of the block `height` (hash `block_hash`), whose tx hashes in block
    /// order are `tx_hashes`, and moves the marker to it, in one atomic batch.
    pub fn index_block(
        &self,
        height: Height,
        block_hash: &BlockHash,
        tx_hashes: &[TxHash],
    ) -> Result<(), TxIndexError> {
        let (keyspace, txs, meta) = match &self.inner {
            Inner::Lsm { keyspace, txs, meta, .. } => (keyspace, txs, meta),
            Inner::Memory(index) => {
                let mut index = TxIndex::memory(index);
                for (position, hash) in tx_hashes.iter().enumerate() {
                    let position = u32::try_from(position).expect("a block's tx count is a u32");
                    index.txs.insert(*hash, (height, position));
                }
                index.marker = Some((height, *block_hash));
                return Ok(());
            }
        };
        let mut batch = fjall::Batch::with_capacity(keyspace.clone(), tx_hashes.len() + 1);
        let mut entries: Vec<(&TxHash, u32)> = tx_hashes
            .iter()
            .enumerate()
            .map(|(position, hash)| {
                (hash, u32::try_from(position).expect("a block's tx count is a u32"))
            })
            .collect();
        entries.sort_unstable_by_key(|(hash, _)| *hash);
        for (hash, position) in entries {
            batch.insert(txs, hash.0 .0, location(height, position));
        }
        batch.insert(meta, MARKER, encode_tip(height, block_hash));
        batch.commit()?;
        Ok(())
    }

    /// Where the tx `hash` was included, if it is indexed.
    pub fn get(&self, hash: &TxHash) -> Result<Option<(Height, u32)>, TxIndexError> {
        let txs = match &self.inner {
            Inner::Lsm { txs, .. } => txs,
            Inner::Memory(index) => return Ok(TxIndex::memory(index).txs.get(hash).copied()),
        };
        let Some(value) = txs.get(hash.0 .0)? else { return Ok(None) };
        let bytes: [u8; 12] = value
            .as_ref()
            .try_into()
            .map_err(|_| TxIndexError::Corrupt("a location is not 12 bytes".into()))?;
        Ok(Some(location_parts(bytes)))
    }

    /// Brings the index level with `store`: drops it and starts over if its marker names a
    /// block the store does not hold, then indexes every stored block above the marker (or
    /// above the store's first block). Returns how many blocks it indexed.
    pub fn catch_up(self, store: &Store) -> Result<(TxIndex, u64), TxIndexError> {
        let tip = store.tip()?.map_or(Height(0), |(h, _)| h);
        let base = store.base()?.unwrap_or(Height(0));
        let mut index = self;
        let mut from = base;
        if let Some((height, hash)) = index.marker()? {
            let stored = if height <= tip {
                store.header(height)?.map(|header| header.hash())
            } else {
                None
            };
            if stored == Some(hash) && height >= base {
                from = height;
            } else {
                tracing::warn!(
                    index = ?index,
                    marker_height = height.0,
                    "the tx index does not match the store; rebuilding it from the store's blocks"
                );
                index = index.reset()?;
            }
        }
        let mut indexed = 0;
        let mut height = from;
        while height < tip {
            height = height.next();
            let block = store.block(height)?.ok_or(TxIndexError::MissingBlock { height })?;
            index.index_stored(&block)?;
            indexed += 1;
        }
        Ok((index, indexed))
    }

    fn index_stored(&self, block: &Block) -> Result<(), TxIndexError> {
        let hashes: Vec<TxHash> = block.txs.iter().map(|tx| tx.hash()).collect();
        self.index_block(block.header.height, &block.hash(), &hashes)
    }

    /// Deletes the index and opens an empty one in its place.
    fn reset(self) -> Result<TxIndex, TxIndexError> {
        let dir = match self.inner {
            Inner::Lsm { keyspace, txs, meta, dir } => {
                // Closed before its files are removed.
                drop((txs, meta, keyspace));
                dir
            }
            Inner::Memory(_) => return Ok(TxIndex::in_memory()),
        };
        std::fs::remove_dir_all(&dir)
            .map_err(|source| TxIndexError::Remove { path: dir.clone(), source })?;
        TxIndex::open(&dir)
    }
}

fn location(height: Height, position: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&height.0.to_be_bytes());
    out[8..].copy_from_slice(&position.to_be_bytes());
    out
}

fn location_parts(value: [u8; 12]) -> (Height, u32) {
    let mut height = [0u8; 8];
    height.copy_from_slice(&value[..8]);
    let mut position = [0u8; 4];
    position.copy_from_slice(&value[8..]);
    (Height(u64::from_be_bytes(height)), u32::from_be_bytes(position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_crypto::Hash;

    fn hash(i: u64) -> TxHash {
        TxHash(Hash::digest(&i.to_le_bytes()))
    }

    #[test]
    fn entries_and_marker_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("i");
        let block = BlockHash(Hash::digest(b"block 7"));
        {
            let index = TxIndex::open(&path).expect("open");
            assert_eq!(index.marker().expect("marker"), None);
            index.index_block(Height(7), &block, &[hash(1), hash(2)]).expect("index");
        }
        let index = TxIndex::open(&path).expect("reopen");
        assert_eq!(index.marker().expect("marker"), Some((Height(7), block)));
        assert_eq!(index.get(&hash(2)).expect("get"), Some((Height(7), 1)));
        assert_eq!(index.get(&hash(3)).expect("get"), None);
    }

    #[test]
    fn the_memory_index_keeps_the_same_contract_until_it_is_dropped() {
        let block = BlockHash(Hash::digest(b"block 7"));
        let later = BlockHash(Hash::digest(b"block 8"));
        let index = TxIndex::in_memory();
        assert_eq!(index.marker().expect("marker"), None);
        index.index_block(Height(7), &block, &[hash(1), hash(2)]).expect("index");
        index.index_block(Height(8), &later, &[hash(3)]).expect("index");
        assert_eq!(index.marker().expect("marker"), Some((Height(8), later)));
        assert_eq!(index.get(&hash(2)).expect("get"), Some((Height(7), 1)));
        assert_eq!(index.get(&hash(3)).expect("get"), Some((Height(8), 0)));
        assert_eq!(index.get(&hash(4)).expect("get"), None);
        let index = index.reset().expect("reset");
        assert_eq!(index.marker().expect("marker"), None);
        assert_eq!(index.get(&hash(1)).expect("get"), None);
    }

    #[test]
    fn the_directory_sits_beside_the_store() {
        assert_eq!(index_dir(Path::new("/d/ledger.redb")), PathBuf::from("/d/ledger.redb.txindex"));
    }

    #[test]
    fn locations_round_trip() {
        assert_eq!(location_parts(location(Height(3), 0x0a0b)), (Height(3), 0x0a0b));
    }
}
