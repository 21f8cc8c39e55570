//! Installing a snapshot's state into an empty store (state sync and `tally snapshot import`).

use super::error::CommitError;
use super::read::{chain_id_in, tip_in};
use super::tables::{
    encode_tip, height_key, ACCOUNTS, CERTIFICATES, HEADERS, META, META_BASE, META_TIP,
};
use super::Store;
use crate::account::Account;
use crate::block::Header;
use crate::codec::encode;
use redb::WriteTransaction;
use tally_consensus::{CommitCertificate, Height};
use tally_crypto::PublicKey;

impl Store {
    /// Makes this store, which has a genesis and no block, hold the state after `header`'s
    /// block: the accounts replace the genesis accounts, the header and its certificate are
    /// stored at their height, which becomes the tip and the store's base (blocks up to it
    /// are never in this store). One durable write transaction. The caller has verified the
    /// certificate and that the accounts rebuild `header.state_root`.
    pub fn install_snapshot(
        &self,
        header: &Header,
        certificate: &CommitCertificate,
        accounts: &[(PublicKey, Account)],
    ) -> Result<(), CommitError> {
        let txn = self.db.begin_write()?;
        match write_snapshot(&txn, header, certificate, accounts) {
            Ok(()) => {
                txn.commit()?;
                Ok(())
            }
            Err(e) => Err(super::commit::abandon(txn, e)),
        }
    }

    /// The height of the snapshot this store was restored from; `None` if it holds every
    /// block from height 1.
    pub fn base(&self) -> Result<Option<Height>, super::ReadError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let base = meta.get(META_BASE)?.map(|v| {
            let bytes: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| super::Corrupt::new("meta", "base is not 8 bytes"))?;
            Ok::<_, super::Corrupt>(Height(u64::from_be_bytes(bytes)))
        });
        Ok(base.transpose()?)
    }
}

fn write_snapshot(
    txn: &WriteTransaction,
    header: &Header,
    certificate: &CommitCertificate,
    accounts: &[(PublicKey, Account)],
) -> Result<(), CommitError> {
    {
        let meta = txn.open_table(META)?;
        let chain_id = chain_id_in(&meta)?.ok_or(CommitError::NoGenesis)?;
        if header.chain_id != chain_id {
            return Err(CommitError::WrongChainId {
                expected: chain_id.to_string(),
                got: header.chain_id.to_string(),
            });
        }
        if let Some((height, _)) = tip_in(&meta)? {
            return Err(CommitError::NotEmpty { tip: height });
        }
    }
    let hash = header.hash();
    if certificate.height != header.height || certificate.block_hash != hash {
        return Err(CommitError::CertificateMismatch {
            cert_height: certificate.height,
            cert_block: certificate.block_hash,
        });
    }
    // The genesis accounts go: the snapshot's accounts are the whole state.
    txn.delete_table(ACCOUNTS)?;
    {
        let mut table = txn.open_table(ACCOUNTS)?;
        for (public_key, account) in accounts {
            table.insert(public_key.0, encode(account).as_slice())?;
        }
    }
    let key = height_key(header.height);
    txn.open_table(HEADERS)?.insert(key, encode(header).as_slice())?;
    txn.open_table(CERTIFICATES)?.insert(key, encode(certificate).as_slice())?;
    let mut meta = txn.open_table(META)?;
    meta.insert(META_TIP, encode_tip(header.height, &hash).as_slice())?;
    meta.insert(META_BASE, key.as_slice())?;
    Ok(())
}
