//! Writing a committed block: one write transaction, all or nothing.

use super::error::CommitError;
use super::read::{chain_id_in, genesis_hash_in, tip_in};
use super::tables::{
    encode_tip, height_key, ACCOUNTS, BLOCKS, BLOCK_HEIGHTS, CERTIFICATES, HEADERS, META, META_TIP,
};
use super::Store;
use crate::account::Account;
use crate::block::Block;
use crate::codec::encode;
use redb::WriteTransaction;
use std::collections::BTreeMap;
use tally_consensus::{BlockHash, CommitCertificate, Height};
use tally_crypto::PublicKey;

impl Store {
    /// Appends `block` with its certificate and the account `changes` its execution
    /// produced, in one durable write transaction. Checks first that the block extends the
    /// tip (height and parent), is for this chain, and that the certificate is for this
    /// block. The caller has validated the block and computed `changes` (see
    /// [`crate::Ledger::commit`]); execution is what keeps a tx from being committed twice
    /// (its nonce is spent). The tx index is not here: see [`crate::tx_index`].
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
    let mut accounts = txn.open_table(ACCOUNTS)?;
    for (public_key, account) in changes {
        accounts.insert(public_key.0, encode(account).as_slice())?;
    }
    txn.open_table(META)?.insert(META_TIP, encode_tip(height, &hash).as_slice())?;
    Ok(())
}
