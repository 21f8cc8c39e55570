//! The store's errors, one enum per operation. Every redb failure is kept whole (`Db`);
//! bytes that do not decode are `Corrupt`: the file was damaged or written by something else.

/// A row that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt row in table {table}: {reason}")]
pub struct Corrupt {
    pub table: &'static str,
    pub reason: String,
}

impl Corrupt {
    pub(crate) fn new(table: &'static str, reason: impl Into<String>) -> Corrupt {
        Corrupt { table, reason: reason.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("store format version {found}, this build reads version {supported}")]
    FormatVersion { found: u32, supported: u32 },
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

#[derive(Debug, thiserror::Error)]
pub enum InitGenesisError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("the store was initialised with genesis {stored}, not {given}")]
    GenesisMismatch { stored: tally_crypto::Hash, given: tally_crypto::Hash },
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    #[error("the store has no genesis; call init_genesis first")]
    NoGenesis,
    #[error("block is for chain {got}, the store holds chain {expected}")]
    WrongChainId { expected: String, got: String },
    #[error("block height {got}, the next height is {expected}")]
    WrongHeight { expected: tally_consensus::Height, got: tally_consensus::Height },
    #[error("block's parent is {got}, the tip is {expected}")]
    WrongParent { expected: tally_consensus::BlockHash, got: tally_consensus::BlockHash },
    #[error("certificate is for {cert_block} at height {cert_height}, not this block")]
    CertificateMismatch {
        cert_height: tally_consensus::Height,
        cert_block: tally_consensus::BlockHash,
    },
    #[error("the store already holds blocks up to height {tip}; a snapshot installs only into an empty store")]
    NotEmpty { tip: tally_consensus::Height },
}

/// redb returns a different error type from each call; all of them fit in `redb::Error`.
macro_rules! from_redb {
    ($($target:ty),*) => {$(
        impl From<redb::DatabaseError> for $target {
            fn from(e: redb::DatabaseError) -> Self { redb::Error::from(e).into() }
        }
        impl From<redb::TransactionError> for $target {
            fn from(e: redb::TransactionError) -> Self { redb::Error::from(e).into() }
        }
        impl From<redb::TableError> for $target {
            fn from(e: redb::TableError) -> Self { redb::Error::from(e).into() }
        }
        impl From<redb::StorageError> for $target {
            fn from(e: redb::StorageError) -> Self { redb::Error::from(e).into() }
        }
        impl From<redb::CommitError> for $target {
            fn from(e: redb::CommitError) -> Self { redb::Error::from(e).into() }
        }
    )*};
}
from_redb!(OpenError, InitGenesisError, ReadError, CommitError);

impl From<ReadError> for CommitError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Db(e) => CommitError::Db(e),
            ReadError::Corrupt(e) => CommitError::Corrupt(e),
        }
    }
}

impl From<ReadError> for InitGenesisError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Db(e) => InitGenesisError::Db(e),
            ReadError::Corrupt(e) => InitGenesisError::Corrupt(e),
        }
    }
}
