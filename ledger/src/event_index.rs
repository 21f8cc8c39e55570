//! The index of committed transfers by account, for searches ("every transfer sent by X
//! between heights A and B"): an LSM tree (fjall) in a directory beside the ledger, written
//! after the ledger by a follower off the consensus path, and rebuilt from the ledger's
//! blocks whenever it is behind (it holds nothing the ledger does not).
//!
//! Two partitions, each keyed by `account (32) ‖ height (8, big-endian) ‖ index (4,
//! big-endian)` with an empty value: `by_sender` and `by_recipient`. A search is a range
//! scan over one account's keys between two heights, in either order, so its cost is the
//! number of keys it visits, whatever the size of the index. `meta` holds the height
//! indexed so far, written in the same atomic batch as the block's keys.
//!
//! An LSM tree, not a redb table: these keys arrive in random order (by account), and a
//! B-tree pays for each random insert with a page copy. A first version in redb cost the
//! local testnet 18% of its open-loop throughput and 90 MiB per node; the tx index by hash
//! moved to an LSM tree for the same reason (`tx_index.rs`). Batches are not fsynced:
//! after a crash the index may be behind (never ahead of the ledger or half-written) and
//! the follower indexes the blocks after it again.

use crate::Block;
use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle};
use std::ops::ControlFlow;
use std::path::Path;
use tally_crypto::PublicKey;

const INDEXED_HEIGHT: &[u8] = b"indexed_height";
/// The journal and memtable bound: what is written before a flush to a sorted file.
const WRITE_BUFFER_BYTES: u64 = 16 << 20;
/// Journals kept before the oldest memtable is flushed.
const JOURNAL_BYTES_MAX: u64 = 64 << 20;

/// Which side of a transfer an account is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender,
    Recipient,
}

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EventIndexError {
    #[error("event index: {0}")]
    Storage(#[from] fjall::Error),
    #[error("event index: corrupt: {0}")]
    Corrupt(String),
    #[error("event index: block {got} given after block {indexed}; blocks are indexed in order")]
    OutOfOrder { indexed: u64, got: u64 },
}

pub struct EventIndex {
    keyspace: Keyspace,
    by_sender: PartitionHandle,
    by_recipient: PartitionHandle,
    meta: PartitionHandle,
}

fn key(account: &PublicKey, height: u64, index: u32) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..32].copy_from_slice(&account.0);
    k[32..40].copy_from_slice(&height.to_be_bytes());
    k[40..].copy_from_slice(&index.to_be_bytes());
    k
}

impl EventIndex {
    /// Opens (or creates) the index in the directory `path`, with `cache_bytes` of block
    /// cache.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<EventIndex, EventIndexError> {
        let keyspace = Config::new(path)
            .max_write_buffer_size(WRITE_BUFFER_BYTES)
            .max_journaling_size(JOURNAL_BYTES_MAX)
            .cache_size(cache_bytes as u64)
            // Four validators share two cores on the local testnet: one thread of each kind.
            .flush_workers(1)
            .compaction_workers(1)
            .open()?;
        // Keys are public keys: they do not compress. Size-tiered compaction rewrites each
        // key fewer times than leveled (the index is written far more than it is read; a
        // scan visits a few more sorted files).
        let options = PartitionCreateOptions::default()
            .compression(fjall::CompressionType::None)
            .compaction_strategy(fjall::compaction::Strategy::SizeTiered(
                fjall::compaction::SizeTiered::default(),
            ))
            .max_memtable_size(WRITE_BUFFER_BYTES as u32);
        let by_sender = keyspace.open_partition("by_sender", options.clone())?;
        let by_recipient = keyspace.open_partition("by_recipient", options.clone())?;
        let meta = keyspace.open_partition("meta", options)?;
        Ok(EventIndex { keyspace, by_sender, by_recipient, meta })
    }

    /// The last height indexed (0 before the first block).
    pub fn indexed_height(&self) -> Result<u64, EventIndexError> {
        let Some(v) = self.meta.get(INDEXED_HEIGHT)? else { return Ok(0) };
        let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| {
            EventIndexError::Corrupt(format!("indexed height of {} bytes", v.len()))
        })?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// Indexes `blocks`, which follow the indexed height in order, in one atomic batch.
    pub fn index_blocks(&self, blocks: &[Block]) -> Result<(), EventIndexError> {
        let mut indexed = self.indexed_height()?;
        let txs: usize = blocks.iter().map(|b| b.txs.len()).sum();
        let mut batch = fjall::Batch::with_capacity(self.keyspace.clone(), 2 * txs + 1);
        for block in blocks {
            let h = block.header.height.0;
            if h <= indexed {
                continue;
            }
            if h != indexed + 1 {
                return Err(EventIndexError::OutOfOrder { indexed, got: h });
            }
            for (i, t) in block.txs.iter().enumerate() {
                let i = i as u32;
                batch.insert(&self.by_sender, key(&t.transfer.from, h, i), []);
                batch.insert(&self.by_recipient, key(&t.transfer.to, h, i), []);
            }
            indexed = h;
        }
        batch.insert(&self.meta, INDEXED_HEIGHT, indexed.to_be_bytes());
        batch.commit()?;
        Ok(())
    }

    /// Moves the indexed height up to `height` without indexing (a node restored from a
    /// snapshot holds no block at or below it).
    pub fn skip_to(&self, height: u64) -> Result<(), EventIndexError> {
        if height > self.indexed_height()? {
            self.meta.insert(INDEXED_HEIGHT, height.to_be_bytes())?;
        }
        Ok(())
    }

    /// Visits the (height, index) of `account`'s transfers as `role` with heights in
    /// `from..=to`, ascending or not, until `visit` breaks. Returns how many keys it read.
    pub fn scan(
        &self,
        role: Role,
        account: &PublicKey,
        from: u64,
        to: u64,
        ascending: bool,
        mut visit: impl FnMut(u64, u32) -> ControlFlow<()>,
    ) -> Result<u64, EventIndexError> {
        if from > to {
            return Ok(0);
        }
        let partition = match role {
            Role::Sender => &self.by_sender,
            Role::Recipient => &self.by_recipient,
        };
        let range = partition.range(key(account, from, 0)..=key(account, to, u32::MAX));
        let mut read = 0;
        let mut each = |entry: Result<(fjall::Slice, fjall::Slice), fjall::Error>| {
            let (k, _) = entry?;
            read += 1;
            let corrupt = || EventIndexError::Corrupt(format!("a key of {} bytes", k.len()));
            let h = u64::from_be_bytes(
                k.get(32..40).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?,
            );
            let i = u32::from_be_bytes(
                k.get(40..44).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?,
            );
            Ok::<_, EventIndexError>(visit(h, i))
        };
        if ascending {
            for entry in range {
                if each(entry)?.is_break() {
                    break;
                }
            }
        } else {
            for entry in range.rev() {
                if each(entry)?.is_break() {
                    break;
                }
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Block, Header, Transfer, Tx};
    use tally_consensus::{BlockHash, Height};
    use tally_crypto::{ChainId, Hash, Keypair, Signature};

    fn block(h: u64, txs: Vec<(PublicKey, PublicKey)>) -> Block {
        let txs: Vec<Tx> = txs
            .into_iter()
            .enumerate()
            .map(|(i, (from, to))| Tx {
                transfer: Transfer { from, to, amount: 1, nonce: i as u64 },
                signature: Signature([0; 64]),
            })
            .collect();
        Block {
            header: Header {
                chain_id: ChainId::new("t".to_string()).unwrap(),
                height: Height(h),
                time_ms: h,
                prev_block_hash: BlockHash(Hash([0; 32])),
                tx_root: Hash([0; 32]),
                tx_count: txs.len() as u32,
                state_root: Hash([0; 32]),
                proposer: Keypair::derive_insecure("p").public(),
                validators_hash: Hash([0; 32]),
            },
            txs,
        }
    }

    fn scan(
        ix: &EventIndex,
        role: Role,
        who: &PublicKey,
        from: u64,
        to: u64,
        asc: bool,
    ) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        ix.scan(role, who, from, to, asc, |h, i| {
            out.push((h, i));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn transfers_are_found_by_account_and_height_range_in_either_order() {
        let dir = tempfile::tempdir().unwrap();
        let ix = EventIndex::open(&dir.path().join("index"), 1 << 20).unwrap();
        let (a, b, c) = (
            Keypair::derive_insecure("a").public(),
            Keypair::derive_insecure("b").public(),
            Keypair::derive_insecure("c").public(),
        );
        ix.index_blocks(&[block(1, vec![(a, b), (b, c)]), block(2, vec![])]).unwrap();
        ix.index_blocks(&[block(3, vec![(a, c), (c, a), (a, b)])]).unwrap();
        assert_eq!(ix.indexed_height().unwrap(), 3);
        assert_eq!(scan(&ix, Role::Sender, &a, 1, 3, true), vec![(1, 0), (3, 0), (3, 2)]);
        assert_eq!(scan(&ix, Role::Sender, &a, 2, 3, false), vec![(3, 2), (3, 0)]);
        assert_eq!(scan(&ix, Role::Recipient, &a, 0, u64::MAX, true), vec![(3, 1)]);
        assert_eq!(scan(&ix, Role::Recipient, &b, 1, 1, true), vec![(1, 0)]);
        // Blocks already indexed are skipped; a gap is refused.
        ix.index_blocks(&[block(3, vec![(b, b)])]).unwrap();
        assert_eq!(scan(&ix, Role::Sender, &b, 0, 9, true), vec![(1, 1)]);
        let e = ix.index_blocks(&[block(5, vec![])]).unwrap_err();
        assert!(e.to_string().contains("after block 3"), "{e}");
    }

    #[test]
    fn the_index_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let a = Keypair::derive_insecure("a").public();
        {
            let ix = EventIndex::open(&path, 1 << 20).unwrap();
            let blocks: Vec<Block> = (1..=64).map(|h| block(h, vec![(a, a)])).collect();
            ix.index_blocks(&blocks).unwrap();
        }
        let ix = EventIndex::open(&path, 1 << 20).unwrap();
        assert_eq!(ix.indexed_height().unwrap(), 64);
        assert_eq!(scan(&ix, Role::Sender, &a, 0, u64::MAX, true).len(), 64);
    }
}
