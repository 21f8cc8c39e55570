//! Queries. Each runs in one read transaction, so it sees one committed state.

use super::error::{Corrupt, ReadError};
use super::tables::{
    decode_account, decode_hash, decode_row, decode_tip, height_from_key, height_key, ACCOUNTS,
    BLOCKS, BLOCK_HEIGHTS, CERTIFICATES, HEADERS, META, META_CHAIN_ID, META_GENESIS_HASH, META_TIP,
};
use super::Store;
use crate::account::Account;
use crate::block::{Block, Header};
use crate::limits::TX_BYTES;
use crate::tx::Tx;
use borsh::BorshDeserialize;
use redb::ReadableTable;
use tally_consensus::{BlockHash, CommitCertificate, Height};
use tally_crypto::{ChainId, Hash, PublicKey};

/// The tip recorded in `meta`, from a read or a write transaction's table.
pub(crate) fn tip_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<(Height, BlockHash)>, ReadError> {
    match meta.get(META_TIP)? {
        Some(v) => Ok(Some(decode_tip(v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn genesis_hash_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Hash>, ReadError> {
    match meta.get(META_GENESIS_HASH)? {
        Some(v) => Ok(Some(decode_hash("meta", v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn chain_id_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<ChainId>, ReadError> {
    let Some(v) = meta.get(META_CHAIN_ID)? else {
        return Ok(None);
    };
    let s = std::str::from_utf8(v.value()).map_err(|e| Corrupt::new("meta", e.to_string()))?;
    let chain_id = ChainId::new(s).map_err(|e| Corrupt::new("meta", e.to_string()))?;
    Ok(Some(chain_id))
}

/// Iterates over the accounts table in public-key order; holds a read transaction open.
pub struct AccountsIter {
    range: redb::Range<'static, [u8; 32], &'static [u8]>,
}

impl std::fmt::Debug for AccountsIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountsIter")
    }
}

impl Iterator for AccountsIter {
    type Item = Result<(PublicKey, Account), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = self.range.next()?;
        Some(
            row.map_err(ReadError::from).and_then(|(key, value)| {
                Ok((PublicKey(key.value()), decode_account(value.value())?))
            }),
        )
    }
}

impl Store {
    /// The last committed block's height and hash; `None` before block 1.
    pub fn tip(&self) -> Result<Option<(Height, BlockHash)>, ReadError> {
        tip_in(&self.db.begin_read()?.open_table(META)?)
    }

    /// The genesis hash the store was initialised with, if it was.
    pub fn genesis_hash(&self) -> Result<Option<Hash>, ReadError> {
        genesis_hash_in(&self.db.begin_read()?.open_table(META)?)
    }

    pub fn chain_id(&self) -> Result<Option<ChainId>, ReadError> {
        chain_id_in(&self.db.begin_read()?.open_table(META)?)
    }

    pub fn block(&self, height: Height) -> Result<Option<Block>, ReadError> {
        let table = self.db.begin_read()?.open_table(BLOCKS)?;
        let row = table.get(height_key(height))?;
        Ok(row.map(|v| decode_row("blocks", v.value())).transpose()?)
    }

    pub fn header(&self, height: Height) -> Result<Option<Header>, ReadError> {
        let table = self.db.begin_read()?.open_table(HEADERS)?;
        let row = table.get(height_key(height))?;
        Ok(row.map(|v| decode_row("headers", v.value())).transpose()?)
    }

    pub fn height_of(&self, hash: &BlockHash) -> Result<Option<Height>, ReadError> {
        let table = self.db.begin_read()?.open_table(BLOCK_HEIGHTS)?;
        let row = table.get(hash.0 .0)?;
        Ok(row.map(|v| height_from_key(v.value())))
    }

    pub fn block_by_hash(&self, hash: &BlockHash) -> Result<Option<Block>, ReadError> {
        let txn = self.db.begin_read()?;
        let heights = txn.open_table(BLOCK_HEIGHTS)?;
        let Some(height) = heights.get(hash.0 .0)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let blocks = txn.open_table(BLOCKS)?;
        let row =
            blocks.get(height)?.ok_or_else(|| Corrupt::new("blocks", "indexed block missing"))?;
        Ok(Some(decode_row("blocks", row.value())?))
    }

    pub fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, ReadError> {
        let table = self.db.begin_read()?.open_table(CERTIFICATES)?;
        let row = table.get(height_key(height))?;
        Ok(row.map(|v| decode_row("certificates", v.value())).transpose()?)
    }

    /// Tx `position` of the block at `height`, if the store holds that block and it has that
    /// many txs. Reads the tx straight out of the block's bytes (txs are fixed-width) instead
    /// of decoding the whole block. Finding a tx by hash is the tx index's job
    /// ([`crate::Ledger::tx`]).
    pub fn tx_at(&self, height: Height, position: u32) -> Result<Option<Tx>, ReadError> {
        let table = self.db.begin_read()?.open_table(BLOCKS)?;
        let Some(row) = table.get(height_key(height))? else { return Ok(None) };
        Ok(tx_at(row.value(), position)?)
    }

    /// The account's state; the default (zero) for an account the ledger never saw.
    pub fn account(&self, public_key: &PublicKey) -> Result<Account, ReadError> {
        let table = self.db.begin_read()?.open_table(ACCOUNTS)?;
        let row = table.get(public_key.0)?;
        Ok(row.map(|v| decode_account(v.value())).transpose()?.unwrap_or_default())
    }

    /// Every stored account, for rebuilding the state tree.
    pub fn accounts_iter(&self) -> Result<AccountsIter, ReadError> {
        let table = self.db.begin_read()?.open_table(ACCOUNTS)?;
        Ok(AccountsIter { range: table.range::<[u8; 32]>(..)? })
    }
}

/// Tx `position` of an encoded block (`None` past its last tx): skip the header and the u32
/// count, then index into the fixed-width txs.
fn tx_at(block_bytes: &[u8], position: u32) -> Result<Option<Tx>, Corrupt> {
    let corrupt = |reason: &str| Corrupt::new("blocks", reason);
    let mut rest = block_bytes;
    Header::deserialize(&mut rest).map_err(|e| Corrupt::new("blocks", e.to_string()))?;
    let count = u32::deserialize(&mut rest).map_err(|e| Corrupt::new("blocks", e.to_string()))?;
    if position >= count {
        return Ok(None);
    }
    let start = usize::try_from(position).map_err(|_| corrupt("tx position"))? * TX_BYTES;
    let bytes =
        rest.get(start..start + TX_BYTES).ok_or_else(|| corrupt("block shorter than its txs"))?;
    decode_row("blocks", bytes).map(Some)
}
