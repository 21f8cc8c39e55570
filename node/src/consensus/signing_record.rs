//! The durable signing record: every proposal and vote this validator signs is written here,
//! fsynced, before it leaves the process; after a restart the core is loaded from it
//! (`Core::restore_signed`) so that it never signs a different message for a (height,
//! round, step) it already signed.
//!
//! A redb file (`data/signing-record.redb`), one table: key = height (u64 BE) || round (u32
//! BE) || step (u8: 0 proposal, 1 prevote, 2 precommit), value = borsh(SignedMessage). Heights
//! more than `KEEP_HEIGHTS` below the latest are pruned.

use redb::{Database, ReadableTable, StorageBackend, TableDefinition};
use std::path::Path;
use tally_consensus::{Height, SignedMessage, VoteType};

const SIGNED: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("signed");
const KEEP_HEIGHTS: u64 = 16;

/// What went wrong, by operation. Every redb failure is kept whole.
#[derive(Debug, thiserror::Error)]
pub enum SigningRecordError {
    #[error("cannot open the signing record: {0}")]
    Open(#[source] redb::Error),
    /// Nothing was recorded: the message must not be sent.
    #[error("cannot record a signed message: {0}")]
    Persist(#[source] redb::Error),
    #[error("cannot read the signing record: {0}")]
    Read(#[source] redb::Error),
    /// The message was recorded; only pruning the heights below `below` failed.
    #[error("cannot prune the signing record below height {below}: {source}")]
    Prune { below: u64, source: redb::Error },
    /// A recorded message does not decode: the file was damaged or written by something else.
    #[error(
        "the signing record holds a message that does not decode at height {height} round \
         {round} step {step}: {source}"
    )]
    Undecodable { height: u64, round: u32, step: u8, source: std::io::Error },
    #[error("cannot encode a signed message: {0}")]
    Encode(#[source] std::io::Error),
}

/// Wraps any redb error (each call returns its own type) in `wrap`.
fn db<E: Into<redb::Error>>(
    wrap: fn(redb::Error) -> SigningRecordError,
) -> impl FnOnce(E) -> SigningRecordError {
    move |e| wrap(e.into())
}

pub struct SigningRecord {
    db: Database,
    last_pruned_below: u64,
}

fn key_of(message: &SignedMessage) -> [u8; 13] {
    let (height, round, step) = match message {
        SignedMessage::Proposal(p) => (p.proposal.height, p.proposal.round, 0u8),
        SignedMessage::Vote(v) => (
            v.vote.height,
            v.vote.round,
            match v.vote.vote_type {
                VoteType::Prevote => 1,
                VoteType::Precommit => 2,
            },
        ),
    };
    let mut key = [0u8; 13];
    key[..8].copy_from_slice(&height.0.to_be_bytes());
    key[8..12].copy_from_slice(&round.0.to_be_bytes());
    key[12] = step;
    key
}

/// What `persist` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Persisted {
    /// Newly recorded.
    New,
    /// The identical message was already recorded (safe to send again).
    Again,
    /// A different message is recorded for this (height, round, step): this one must not
    /// be sent; the recorded one is returned instead.
    Conflict(SignedMessage),
}

impl SigningRecord {
    /// Opens the record at `path`, creating it if it does not exist (or if a crash cut its
    /// creation short: nothing can have been recorded in it then).
    pub fn open(path: &Path) -> Result<SigningRecord, SigningRecordError> {
        tally_ledger::store::redo_interrupted_creation(path)
            .map_err(|e| SigningRecordError::Open(e.into()))?;
        SigningRecord::init(Database::create(path).map_err(db(SigningRecordError::Open))?)
    }

    /// [`SigningRecord::open`] on a redb storage backend instead of a file (in the
    /// simulator, a `tally_ledger::SimDisk`).
    pub fn open_with_backend(
        backend: impl StorageBackend,
    ) -> Result<SigningRecord, SigningRecordError> {
        tally_ledger::store::redo_interrupted_creation_on(&backend)
            .map_err(|e| SigningRecordError::Open(e.into()))?;
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(db(SigningRecordError::Open))?;
        SigningRecord::init(db)
    }

    fn init(db: Database) -> Result<SigningRecord, SigningRecordError> {
        let open = SigningRecordError::Open;
        let w = db.begin_write().map_err(db(open))?;
        w.open_table(SIGNED).map_err(db(open))?;
        w.commit().map_err(db(open))?;
        Ok(SigningRecord { db, last_pruned_below: 0 })
    }

    /// Records `message` durably, unless a different one is recorded for its key. On
    /// `Ok(New | Again)` the message is on disk and may be sent; on an error other than
    /// [`SigningRecordError::Prune`] it may not be.
    pub fn persist(&mut self, message: &SignedMessage) -> Result<Persisted, SigningRecordError> {
        let persist = SigningRecordError::Persist;
        let key = key_of(message);
        let bytes = borsh::to_vec(message).map_err(SigningRecordError::Encode)?;
        let w = self.db.begin_write().map_err(db(persist))?;
        let outcome = {
            let mut table = w.open_table(SIGNED).map_err(db(persist))?;
            let existing =
                table.get(key.as_slice()).map_err(db(persist))?.map(|v| v.value().to_vec());
            match existing {
                Some(old) if old == bytes => Persisted::Again,
                Some(old) => Persisted::Conflict(decode(&key, &old)?),
                None => {
                    table.insert(key.as_slice(), bytes.as_slice()).map_err(db(persist))?;
                    Persisted::New
                }
            }
        };
        if outcome == Persisted::New {
            w.commit().map_err(db(persist))?;
        } else {
            w.abort().map_err(db(persist))?;
        }
        let height = message.height().0;
        if height >= self.last_pruned_below + 2 * KEEP_HEIGHTS {
            self.prune_below(height.saturating_sub(KEEP_HEIGHTS))?;
        }
        Ok(outcome)
    }

    /// Everything recorded at `height` or above, to load into the core after a restart, in
    /// the order of (height, round, step).
    pub fn from_height(&self, height: Height) -> Result<Vec<SignedMessage>, SigningRecordError> {
        let read = SigningRecordError::Read;
        let r = self.db.begin_read().map_err(db(read))?;
        let table = r.open_table(SIGNED).map_err(db(read))?;
        let start = height.0.to_be_bytes();
        let mut out = Vec::new();
        for entry in table.range(start.as_slice()..).map_err(db(read))? {
            let (k, v) = entry.map_err(db(read))?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn prune_below(&mut self, below: u64) -> Result<(), SigningRecordError> {
        let prune = |e: redb::Error| SigningRecordError::Prune { below, source: e };
        let w = self.db.begin_write().map_err(|e| prune(e.into()))?;
        {
            let mut table = w.open_table(SIGNED).map_err(|e| prune(e.into()))?;
            let end = below.to_be_bytes();
            table.retain_in(..end.as_slice(), |_, _| false).map_err(|e| prune(e.into()))?;
        }
        w.commit().map_err(|e| prune(e.into()))?;
        self.last_pruned_below = below;
        Ok(())
    }
}

/// The message recorded under `key`.
fn decode(key: &[u8], bytes: &[u8]) -> Result<SignedMessage, SigningRecordError> {
    borsh::from_slice(bytes).map_err(|source| {
        let field = |range: std::ops::Range<usize>| {
            key.get(range).map_or(0, |b| b.iter().fold(0u64, |n, &x| n << 8 | u64::from(x)))
        };
        SigningRecordError::Undecodable {
            height: field(0..8),
            round: u32::try_from(field(8..12)).unwrap_or(u32::MAX),
            step: key.get(12).copied().unwrap_or(0),
            source,
        }
    })
}
