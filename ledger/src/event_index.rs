//! The index of committed transfers by account, for searches ("every transfer sent by X
//! between heights A and B"): a redb file beside the ledger, written after the ledger by a
//! follower off the consensus path, and rebuilt from the ledger's blocks whenever it is
//! behind (it holds nothing the ledger does not).
//!
//! Two tables, each keyed by `account (32) ‖ height (8, big-endian) ‖ index (4, big-endian)`
//! with no value: `by_sender` and `by_recipient`. A search is a range scan over one
//! account's keys between two heights, in either order, so its cost is the number of keys
//! it visits, whatever the size of the index. `meta` holds the height indexed so far.
//!
//! Writes commit without fsync ([`redb::Durability::None`]) and make every
//! [`EventIndex::SYNC_EVERY_BLOCKS`]th block durable: after a crash the file is back at its
//! last durable height and the follower indexes the blocks after it again (inserting a
//! key twice is harmless).

use crate::Block;
use redb::{Database, Durability, TableDefinition};
use std::ops::ControlFlow;
use std::path::Path;
use tally_crypto::PublicKey;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const BY_SENDER: TableDefinition<'_, [u8; 44], ()> = TableDefinition::new("by_sender");
const BY_RECIPIENT: TableDefinition<'_, [u8; 44], ()> = TableDefinition::new("by_recipient");
const INDEXED_HEIGHT: &str = "indexed_height";

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
    Database(#[from] redb::DatabaseError),
    #[error("event index: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("event index: {0}")]
    Table(#[from] redb::TableError),
    #[error("event index: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("event index: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("event index: block {got} given after block {indexed}; blocks are indexed in order")]
    OutOfOrder { indexed: u64, got: u64 },
}

pub struct EventIndex {
    db: Database,
}

fn key(account: &PublicKey, height: u64, index: u32) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..32].copy_from_slice(&account.0);
    k[32..40].copy_from_slice(&height.to_be_bytes());
    k[40..].copy_from_slice(&index.to_be_bytes());
    k
}

impl EventIndex {
    /// Every this many blocks, a write is made durable (fsync).
    pub const SYNC_EVERY_BLOCKS: u64 = 64;

    /// Opens (or creates) the index file, with `cache_bytes` of redb page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<EventIndex, EventIndexError> {
        let db = Database::builder().set_cache_size(cache_bytes).create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(META)?;
        tx.open_table(BY_SENDER)?;
        tx.open_table(BY_RECIPIENT)?;
        tx.commit()?;
        Ok(EventIndex { db })
    }

    /// The last height indexed (0 before the first block).
    pub fn indexed_height(&self) -> Result<u64, EventIndexError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(INDEXED_HEIGHT)?.map_or(0, |v| v.value()))
    }

    /// Indexes `blocks`, which follow the indexed height in order, in one write.
    pub fn index_blocks(&self, blocks: &[Block]) -> Result<(), EventIndexError> {
        let Some(last) = blocks.last() else { return Ok(()) };
        let mut indexed = self.indexed_height()?;
        let mut tx = self.db.begin_write()?;
        let last_height = last.header.height.0;
        let durable = last_height / Self::SYNC_EVERY_BLOCKS != indexed / Self::SYNC_EVERY_BLOCKS;
        tx.set_durability(if durable { Durability::Immediate } else { Durability::None });
        {
            let mut senders = tx.open_table(BY_SENDER)?;
            let mut recipients = tx.open_table(BY_RECIPIENT)?;
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
                    senders.insert(key(&t.transfer.from, h, i), ())?;
                    recipients.insert(key(&t.transfer.to, h, i), ())?;
                }
                indexed = h;
            }
            tx.open_table(META)?.insert(INDEXED_HEIGHT, indexed)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves the indexed height up to `height` without indexing (a node restored from a
    /// snapshot holds no block at or below it).
    pub fn skip_to(&self, height: u64) -> Result<(), EventIndexError> {
        if height <= self.indexed_height()? {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.insert(INDEXED_HEIGHT, height)?;
        tx.commit()?;
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
        let tx = self.db.begin_read()?;
        let table = tx.open_table(match role {
            Role::Sender => BY_SENDER,
            Role::Recipient => BY_RECIPIENT,
        })?;
        let range = table.range(key(account, from, 0)..=key(account, to, u32::MAX))?;
        let mut read = 0;
        let mut each = |entry: Result<
            (redb::AccessGuard<'_, [u8; 44]>, redb::AccessGuard<'_, ()>),
            redb::StorageError,
        >| {
            let k = entry?.0.value();
            read += 1;
            let h = u64::from_be_bytes(k[32..40].try_into().expect("8 bytes"));
            let i = u32::from_be_bytes(k[40..].try_into().expect("4 bytes"));
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
        let ix = EventIndex::open(&dir.path().join("i.redb"), 1 << 20).unwrap();
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
        let path = dir.path().join("i.redb");
        let a = Keypair::derive_insecure("a").public();
        {
            let ix = EventIndex::open(&path, 1 << 20).unwrap();
            let blocks: Vec<Block> =
                (1..=EventIndex::SYNC_EVERY_BLOCKS).map(|h| block(h, vec![(a, a)])).collect();
            ix.index_blocks(&blocks).unwrap();
        }
        let ix = EventIndex::open(&path, 1 << 20).unwrap();
        assert_eq!(ix.indexed_height().unwrap(), EventIndex::SYNC_EVERY_BLOCKS);
        assert_eq!(
            scan(&ix, Role::Sender, &a, 0, u64::MAX, true).len() as u64,
            EventIndex::SYNC_EVERY_BLOCKS
        );
    }
}
