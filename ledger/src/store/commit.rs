//! Writing a committed block: one write transaction, all or nothing.

use super::error::CommitError;
use super::read::{chain_id_in, genesis_hash_in, tip_in};
use super::tables::{
    encode_tip, height_key, tx_location, tx_location_parts, ACCOUNTS, BLOCKS, BLOCK_HEIGHTS,
    CERTIFICATES, HEADERS, META, META_TIP, TX_INDEX,
};
use super::Store;
use crate::account::Account;
use crate::block::Block;
use crate::codec::encode;
use crate::tx::Tx;
use redb::WriteTransaction;
use std::collections::BTreeMap;
use tally_consensus::{BlockHash, CommitCertificate, Height};
use tally_crypto::PublicKey;

impl Store {
    /// Appends `block` with its certificate, its tx index entries and the account `changes`
    /// its execution produced, in one durable write transaction. Checks first that the block
    /// extends the tip (height and parent), is for this chain, and that the certificate is
    /// for this block; a tx already in the index aborts the whole commit. The caller has
    /// validated the block and computed `changes` (see [`crate::Ledger::commit`]).
    pub fn commit_block(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        changes: &BTreeMap<PublicKey, Account>,
    ) -> Result<(), CommitError> {
        let txn = self.db.begin_write()?;
        match write_block(&txn, block, certificate, changes) {
            Ok(()) => {
                txn.commit()?;
                Ok(())
            }
            Err(e) => Err(abandon(txn, e)),
        }
    }
}

/// Ends a write transaction whose writing failed with `error`, leaving nothing behind, and
/// returns the error to report. After a database error the storage may have failed midway:
/// redb then refuses an explicit abort (it panics), and dropping the transaction is the way
/// out (the drop rolls back what it can and the next transaction recovers the file). A refusal
/// (wrong height, duplicate tx, ...) is aborted explicitly, so a failing abort is reported.
pub(super) fn abandon(txn: WriteTransaction, error: CommitError) -> CommitError {
    if matches!(error, CommitError::Db(_)) {
        drop(txn);
        return error;
    }
    match txn.abort() {
        Ok(()) => error,
        Err(abort) => abort.into(),
    }
}

/// The checks a block must pass against the stored chain before anything is written.
fn check_extends_tip(
    txn: &WriteTransaction,
    block: &Block,
    certificate: &CommitCertificate,
) -> Result<(), CommitError> {
    let meta = txn.open_table(META)?;
    let genesis_hash = genesis_hash_in(&meta)?.ok_or(CommitError::NoGenesis)?;
    let chain_id = chain_id_in(&meta)?.ok_or(CommitError::NoGenesis)?;
    if block.header.chain_id != chain_id {
        return Err(CommitError::WrongChainId {
            expected: chain_id.to_string(),
            got: block.header.chain_id.to_string(),
        });
    }
    let (expected_height, expected_parent) = match tip_in(&meta)? {
        Some((height, hash)) => (height.next(), hash),
        None => (Height(1), BlockHash(genesis_hash)),
    };
    if block.header.height != expected_height {
        return Err(CommitError::WrongHeight {
            expected: expected_height,
            got: block.header.height,
        });
    }
    if block.header.prev_block_hash != expected_parent {
        return Err(CommitError::WrongParent {
            expected: expected_parent,
            got: block.header.prev_block_hash,
        });
    }
    if certificate.height != block.header.height || certificate.block_hash != block.hash() {
        return Err(CommitError::CertificateMismatch {
            cert_height: certificate.height,
            cert_block: certificate.block_hash,
        });
    }
    Ok(())
}

fn write_block(
    txn: &WriteTransaction,
    block: &Block,
    certificate: &CommitCertificate,
    changes: &BTreeMap<PublicKey, Account>,
) -> Result<(), CommitError> {
    check_extends_tip(txn, block, certificate)?;
    let height = block.header.height;
    let key = height_key(height);
    let hash = block.hash();
    txn.open_table(BLOCKS)?.insert(key, encode(block).as_slice())?;
    txn.open_table(HEADERS)?.insert(key, encode(&block.header).as_slice())?;
    txn.open_table(BLOCK_HEIGHTS)?.insert(hash.0 .0, key)?;
    txn.open_table(CERTIFICATES)?.insert(key, encode(certificate).as_slice())?;
    index_txs(txn, height, &block.txs)?;
    let mut accounts = txn.open_table(ACCOUNTS)?;
    for (public_key, account) in changes {
        accounts.insert(public_key.0, encode(account).as_slice())?;
    }
    txn.open_table(META)?.insert(META_TIP, encode_tip(height, &hash).as_slice())?;
    Ok(())
}

/// Adds each tx to the index; a tx hash already present (in an earlier block or earlier in
/// this one) is an error, which aborts the transaction. The entries go in in key order: tx
/// hashes are random, and consecutive inserts into the same B-tree leaf cost much less than
/// a jump to a random leaf for each (`cargo bench -p tally-bench --bench ledger --
/// store_commit`).
fn index_txs(txn: &WriteTransaction, height: Height, txs: &[Tx]) -> Result<(), CommitError> {
    let mut entries: Vec<([u8; 32], u32)> = txs
        .iter()
        .enumerate()
        .map(|(position, tx)| {
            (tx.hash().0 .0, u32::try_from(position).expect("a block's tx count is a u32"))
        })
        .collect();
    // Equal hashes keep their block order, so a duplicate within the block is reported at
    // its second position, pointing at the first.
    entries.sort_unstable();
    let mut index = txn.open_table(TX_INDEX)?;
    for (hash, position) in entries {
        let previous = index.insert(hash, tx_location(height, position))?;
        if let Some(previous) = previous {
            let (height, index) = tx_location_parts(previous.value());
            return Err(CommitError::DuplicateTx {
                tx_hash: crate::tx::TxHash(tally_crypto::Hash(hash)),
                height,
                index,
            });
        }
    }
    Ok(())
}
