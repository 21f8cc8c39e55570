//! The redb tables and the byte encodings of their keys and values. docs/ledger-format.md
//! describes the same layout for readers who do not read Rust; keep the two in step.
//!
//! Integer keys are fixed-width big endian, so redb's byte order is numeric order. Values that
//! are whole protocol objects (blocks, headers, certificates, accounts) are their borsh
//! encoding (little-endian integers), the same bytes that are hashed and sent on the wire.

use super::error::Corrupt;
use crate::account::Account;
use redb::TableDefinition;
use tally_consensus::{BlockHash, Height};
use tally_crypto::Hash;

/// Version of the layout below. A store with another version is refused at open, except
/// version 1, which [`super::Store::open`] upgrades in place (see [`LEGACY_TX_INDEX`]).
pub const FORMAT_VERSION: u32 = 2;

/// meta: small named values; see the `META_*` keys.
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// blocks: height (u64 BE) -> borsh(Block).
pub(crate) const BLOCKS: TableDefinition<'_, [u8; 8], &[u8]> = TableDefinition::new("blocks");
/// headers: height (u64 BE) -> borsh(Header), so header queries do not read whole blocks.
pub(crate) const HEADERS: TableDefinition<'_, [u8; 8], &[u8]> = TableDefinition::new("headers");
/// block_heights: block hash (32 bytes) -> height (u64 BE).
pub(crate) const BLOCK_HEIGHTS: TableDefinition<'_, [u8; 32], [u8; 8]> =
    TableDefinition::new("block_heights");
/// certificates: height (u64 BE) -> borsh(CommitCertificate).
pub(crate) const CERTIFICATES: TableDefinition<'_, [u8; 8], &[u8]> =
    TableDefinition::new("certificates");
/// tx_index, format version 1 only: tx hash (32 bytes) -> height (u64 BE) || position
/// (u32 BE). Version 2 keeps the tx index outside redb ([`crate::tx_index`]); opening a
/// version-1 store deletes this table, and the ledger rebuilds the index from the blocks.
pub(crate) const LEGACY_TX_INDEX: TableDefinition<'_, [u8; 32], [u8; 12]> =
    TableDefinition::new("tx_index");
/// accounts: public key (32 bytes) -> borsh(Account) (16 bytes).
pub(crate) const ACCOUNTS: TableDefinition<'_, [u8; 32], &[u8]> = TableDefinition::new("accounts");

/// meta key: [`FORMAT_VERSION`] as u32 BE.
pub(crate) const META_FORMAT_VERSION: &str = "format_version";
/// meta key: the chain id, UTF-8.
pub(crate) const META_CHAIN_ID: &str = "chain_id";
/// meta key: the genesis hash, 32 bytes. Present once genesis is initialised.
pub(crate) const META_GENESIS_HASH: &str = "genesis_hash";
/// meta key: the last committed block, height (u64 BE) || block hash (32 bytes). Absent
/// until block 1 is committed.
pub(crate) const META_TIP: &str = "tip";
/// meta key: the height of the snapshot this store was restored from (u64 BE). Blocks up to
/// it are not in the store (only the header and certificate of that height are). Absent in a
/// store that holds every block from height 1.
pub(crate) const META_BASE: &str = "base";

pub(crate) fn height_key(height: Height) -> [u8; 8] {
    height.0.to_be_bytes()
}

pub(crate) fn height_from_key(key: [u8; 8]) -> Height {
    Height(u64::from_be_bytes(key))
}

pub(crate) fn encode_tip(height: Height, hash: &BlockHash) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&height.0.to_be_bytes());
    out[8..].copy_from_slice(hash.0.as_bytes());
    out
}

pub(crate) fn decode_tip(bytes: &[u8]) -> Result<(Height, BlockHash), Corrupt> {
    let bytes: &[u8; 40] =
        bytes.try_into().map_err(|_| Corrupt::new("meta", "tip is not 40 bytes"))?;
    let mut height = [0u8; 8];
    height.copy_from_slice(&bytes[..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[8..]);
    Ok((Height(u64::from_be_bytes(height)), BlockHash(Hash(hash))))
}

pub(crate) fn decode_hash(table: &'static str, bytes: &[u8]) -> Result<Hash, Corrupt> {
    let bytes: [u8; 32] =
        bytes.try_into().map_err(|_| Corrupt::new(table, "hash is not 32 bytes"))?;
    Ok(Hash(bytes))
}

pub(crate) fn decode_u32_be(table: &'static str, bytes: &[u8]) -> Result<u32, Corrupt> {
    let bytes: [u8; 4] = bytes.try_into().map_err(|_| Corrupt::new(table, "u32 is not 4 bytes"))?;
    Ok(u32::from_be_bytes(bytes))
}

pub(crate) fn decode_account(bytes: &[u8]) -> Result<Account, Corrupt> {
    decode_row("accounts", bytes)
}

/// Decodes a borsh row written by this store; any failure means the file is damaged.
pub(crate) fn decode_row<T: borsh::BorshDeserialize>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, Corrupt> {
    borsh::from_slice(bytes).map_err(|e| Corrupt::new(table, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_big_endian_and_round_trip() {
        assert_eq!(height_key(Height(0x0102)), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(height_from_key(height_key(Height(77))), Height(77));
        let hash = BlockHash(Hash::digest(b"b"));
        assert_eq!(decode_tip(&encode_tip(Height(9), &hash)), Ok((Height(9), hash)));
        assert!(decode_tip(&[0; 39]).is_err());
    }
}
