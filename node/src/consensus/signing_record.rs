//! The durable signing record: every proposal and vote this validator signs is written here,
//! fsynced, before it leaves the process; after a restart the core is loaded from it
//! (`Core::restore_signed`) so that it never signs a different message for a (height,
//! round, step) it already signed.
//!
//! A redb file (`data/signing-record.redb`), one table: key = height (u64 BE) || round (u32
//! BE) || step (u8: 0 proposal, 1 prevote, 2 precommit), value = borsh(SignedMessage). Heights
//! more than `KEEP_HEIGHTS` below the latest are pruned.
//!
//! A second table keeps the block of each precommit for a value (key = height || round,
//! value = borsh(Block)), written in the same transaction as the precommit. A precommit is
//! a lock: after a restart the core comes back locked on that value (`restore_signed`), and
//! a locked validator prevotes for nothing else until it sees a newer polka. Without the
//! block it could neither re-propose the value nor help decide it, and when enough
//! validators are locked on a block none of them holds, the height stalls for good (the
//! full-node simulator found this, seed 8721, with the consensus log lost in crashes). So
//! the block of a lock is as durable as the lock, and never depends on the consensus log.
//! Only the latest height's blocks are kept.

use redb::{Database, ReadableTable, StorageBackend, TableDefinition};
use std::path::Path;
use tally_consensus::{Height, Round, SignedMessage, VoteType};
use tally_ledger::Block;

const SIGNED: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("signed");
/// The blocks of precommits for a value: height (u64 BE) || round (u32 BE) -> borsh(Block).
const LOCKED_BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("locked_blocks");
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
    #[error("the signing record holds a locked block that does not decode at height {height} round {round}: {source}")]
    UndecodableBlock { height: u64, round: u32, source: std::io::Error },
    #[error("cannot encode a signed message: {0}")]
    Encode(#[source] std::io::Error),
    /// The file starts with zeros: a crash cut its creation short (on a first start), or
    /// its first page is damaged. Which, only the operator can tell, so nothing is emptied
    /// by itself: a damaged record would silently lose what keeps this validator from
    /// signing twice.
    #[error(
        "the signing record {0} has no redb header (a crash during this validator's first \
         start, or a damaged file): if this validator has never signed anything, delete the \
         file and start again; otherwise restore it from a backup"
    )]
    NoHeader(String),
}

/// Wraps any redb error (each call returns its own type) in `wrap`.
fn wrap_db<E: Into<redb::Error>>(
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
    /// Opens the record at `path`, creating it if it does not exist. A file without a redb
    /// header is refused ([`SigningRecordError::NoHeader`]), never emptied.
    pub fn open(path: &Path) -> Result<SigningRecord, SigningRecordError> {
        if let Ok(bytes) = std::fs::read(path) {
            let head = &bytes[..bytes.len().min(16)];
            if tally_ledger::store::creation_interrupted(bytes.len() as u64, head) {
                return Err(SigningRecordError::NoHeader(path.display().to_string()));
            }
        }
        SigningRecord::init(Database::create(path).map_err(wrap_db(SigningRecordError::Open))?)
    }

    /// [`SigningRecord::open`] on a redb storage backend instead of a file (in the
    /// simulator, a `tally_ledger::SimDisk`).
    pub fn open_with_backend(
        backend: impl StorageBackend,
    ) -> Result<SigningRecord, SigningRecordError> {
        let len = backend.len().map_err(|e| SigningRecordError::Open(e.into()))?;
        let head = backend
            .read(0, usize::try_from(len.min(16)).unwrap_or(0))
            .map_err(|e| SigningRecordError::Open(e.into()))?;
        if tally_ledger::store::creation_interrupted(len, &head) {
            return Err(SigningRecordError::NoHeader("(storage backend)".into()));
        }
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(wrap_db(SigningRecordError::Open))?;
        SigningRecord::init(db)
    }

    fn init(db: Database) -> Result<SigningRecord, SigningRecordError> {
        let open = SigningRecordError::Open;
        let w = db.begin_write().map_err(wrap_db(open))?;
        w.open_table(SIGNED).map_err(wrap_db(open))?;
        w.open_table(LOCKED_BLOCKS).map_err(wrap_db(open))?;
        w.commit().map_err(wrap_db(open))?;
        Ok(SigningRecord { db, last_pruned_below: 0 })
    }

    /// Records `message` durably, unless a different one is recorded for its key. On
    /// `Ok(New | Again)` the message is on disk and may be sent; on an error other than
    /// [`SigningRecordError::Prune`] it may not be.
    ///
    /// `locked_block` is the block of a precommit for a value (the caller passes the block
    /// whose hash the precommit names; `None` for anything else): recorded in the same
    /// transaction, replacing the blocks of lower heights.
    pub fn persist(
        &mut self,
        message: &SignedMessage,
        locked_block: Option<&Block>,
    ) -> Result<Persisted, SigningRecordError> {
        let persist = SigningRecordError::Persist;
        let key = key_of(message);
        let bytes = borsh::to_vec(message).map_err(SigningRecordError::Encode)?;
        let w = self.db.begin_write().map_err(wrap_db(persist))?;
        let outcome = {
            let mut table = w.open_table(SIGNED).map_err(wrap_db(persist))?;
            let existing =
                table.get(key.as_slice()).map_err(wrap_db(persist))?.map(|v| v.value().to_vec());
            match existing {
                Some(old) if old == bytes => Persisted::Again,
                Some(old) => Persisted::Conflict(decode(&key, &old)?),
                None => {
                    table.insert(key.as_slice(), bytes.as_slice()).map_err(wrap_db(persist))?;
                    Persisted::New
                }
            }
        };
        if let (Persisted::New, Some(block)) = (&outcome, locked_block) {
            let block_bytes = borsh::to_vec(block).map_err(SigningRecordError::Encode)?;
            let mut table = w.open_table(LOCKED_BLOCKS).map_err(wrap_db(persist))?;
            let below = message.height().0.to_be_bytes();
            table.retain_in(..below.as_slice(), |_, _| false).map_err(wrap_db(persist))?;
            table.insert(&key[..12], block_bytes.as_slice()).map_err(wrap_db(persist))?;
        }
        if outcome == Persisted::New {
            w.commit().map_err(wrap_db(persist))?;
        } else {
            w.abort().map_err(wrap_db(persist))?;
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
        let r = self.db.begin_read().map_err(wrap_db(read))?;
        let table = r.open_table(SIGNED).map_err(wrap_db(read))?;
        let start = height.0.to_be_bytes();
        let mut out = Vec::new();
        for entry in table.range(start.as_slice()..).map_err(wrap_db(read))? {
            let (k, v) = entry.map_err(wrap_db(read))?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The blocks recorded with precommits at `height`, by round: after a restart, the
    /// blocks the core may be locked on.
    pub fn locked_blocks(&self, height: Height) -> Result<Vec<(Round, Block)>, SigningRecordError> {
        let read = SigningRecordError::Read;
        let r = self.db.begin_read().map_err(wrap_db(read))?;
        let table = r.open_table(LOCKED_BLOCKS).map_err(wrap_db(read))?;
        let start = height.0.to_be_bytes();
        let end = height.0.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for entry in table.range(start.as_slice()..end.as_slice()).map_err(wrap_db(read))? {
            let (k, v) = entry.map_err(wrap_db(read))?;
            let round = k
                .value()
                .get(8..12)
                .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap_or([0; 4])));
            let block = borsh::from_slice(v.value()).map_err(|source| {
                SigningRecordError::UndecodableBlock { height: height.0, round, source }
            })?;
            out.push((Round(round), block));
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

#[cfg(test)]
mod tests {
    use super::*;
    use tally_consensus::{BlockHash, Proposal, Round, ValidatorIndex, Vote};
    use tally_crypto::{ChainId, Hash, Keypair};
    use tally_ledger::sim_disk::Tear;
    use tally_ledger::DiskImage;

    fn chain() -> ChainId {
        ChainId::new("record-test").expect("chain id")
    }

    fn key() -> Keypair {
        Keypair::from_seed([7; 32])
    }

    fn hash(byte: u8) -> BlockHash {
        BlockHash(Hash::digest(&[byte]))
    }

    fn vote(height: u64, round: u32, vote_type: VoteType, block: Option<u8>) -> SignedMessage {
        let vote = Vote {
            height: Height(height),
            round: Round(round),
            vote_type,
            block_hash: block.map(hash),
            validator: ValidatorIndex(1),
        };
        SignedMessage::Vote(vote.sign(&chain(), &key()))
    }

    fn proposal(height: u64, round: u32, block: u8) -> SignedMessage {
        let proposal = Proposal {
            height: Height(height),
            round: Round(round),
            block_hash: hash(block),
            pol_round: None,
            proposer: ValidatorIndex(1),
        };
        SignedMessage::Proposal(proposal.sign(&chain(), &key()))
    }

    fn in_memory() -> SigningRecord {
        SigningRecord::open_with_backend(redb::backends::InMemoryBackend::new()).expect("open")
    }

    fn block(height: u64, time_ms: u64) -> Block {
        let header = tally_ledger::Header {
            chain_id: chain(),
            height: Height(height),
            time_ms,
            prev_block_hash: hash(0),
            tx_root: Hash::digest(b"no txs"),
            tx_count: 0,
            state_root: Hash::digest(b"state"),
            proposer: key().public(),
            validators_hash: Hash::digest(b"validators"),
        };
        Block { header, txs: Vec::new() }
    }

    fn precommit_of(height: u64, round: u32, block: &Block) -> SignedMessage {
        let vote = Vote {
            height: Height(height),
            round: Round(round),
            vote_type: VoteType::Precommit,
            block_hash: Some(block.hash()),
            validator: ValidatorIndex(1),
        };
        SignedMessage::Vote(vote.sign(&chain(), &key()))
    }

    #[test]
    fn a_locked_block_is_recorded_with_its_precommit_and_only_the_latest_height_is_kept() {
        let mut record = in_memory();
        let (a, b, c) = (block(5, 1), block(5, 2), block(6, 3));
        record.persist(&precommit_of(5, 0, &a), Some(&a)).expect("persist");
        // Again and a conflict record no block.
        record.persist(&precommit_of(5, 0, &a), Some(&b)).expect("again");
        record.persist(&precommit_of(5, 0, &b), Some(&b)).expect("conflict");
        assert_eq!(record.locked_blocks(Height(5)).expect("read"), vec![(Round(0), a.clone())]);
        record.persist(&precommit_of(5, 2, &b), Some(&b)).expect("persist");
        assert_eq!(
            record.locked_blocks(Height(5)).expect("read"),
            vec![(Round(0), a), (Round(2), b.clone())]
        );
        assert!(record.locked_blocks(Height(6)).expect("read").is_empty());
        record.persist(&precommit_of(6, 1, &c), Some(&c)).expect("persist");
        assert!(record.locked_blocks(Height(5)).expect("read").is_empty());
        assert_eq!(record.locked_blocks(Height(6)).expect("read"), vec![(Round(1), c)]);
    }

    #[test]
    fn a_locked_block_survives_a_power_cut_after_its_precommit_was_recorded() {
        let image = DiskImage::new();
        let a = block(3, 7);
        {
            let mut record = SigningRecord::open_with_backend(image.disk()).expect("open");
            record.persist(&precommit_of(3, 1, &a), Some(&a)).expect("persist");
        }
        image.crash_with(Tear::Nothing);
        let record = SigningRecord::open_with_backend(image.disk()).expect("reopen");
        assert_eq!(record.locked_blocks(Height(3)).expect("read"), vec![(Round(1), a)]);
    }

    #[test]
    fn persist_is_new_then_again_and_a_different_message_for_the_key_conflicts() {
        let mut record = in_memory();
        for (first, other) in [
            (proposal(3, 0, 1), proposal(3, 0, 2)),
            (vote(3, 0, VoteType::Prevote, Some(1)), vote(3, 0, VoteType::Prevote, None)),
            (vote(3, 0, VoteType::Precommit, Some(1)), vote(3, 0, VoteType::Precommit, Some(2))),
        ] {
            assert_eq!(record.persist(&first, None).expect("persist"), Persisted::New);
            assert_eq!(record.persist(&first, None).expect("again"), Persisted::Again);
            assert_eq!(
                record.persist(&other, None).expect("other"),
                Persisted::Conflict(first.clone())
            );
        }
        // Another round, step or height is another key.
        assert_eq!(record.persist(&proposal(3, 1, 2), None).expect("round"), Persisted::New);
        assert_eq!(record.persist(&proposal(4, 0, 2), None).expect("height"), Persisted::New);
        let recorded = record.from_height(Height(3)).expect("read");
        assert_eq!(
            recorded,
            vec![
                proposal(3, 0, 1),
                vote(3, 0, VoteType::Prevote, Some(1)),
                vote(3, 0, VoteType::Precommit, Some(1)),
                proposal(3, 1, 2),
                proposal(4, 0, 2),
            ],
            "in (height, round, step) order, and no conflicting message recorded"
        );
        assert_eq!(record.from_height(Height(4)).expect("read"), vec![proposal(4, 0, 2)]);
        assert!(record.from_height(Height(5)).expect("read").is_empty());
    }

    #[test]
    fn heights_more_than_keep_heights_below_the_latest_are_pruned() {
        let mut record = in_memory();
        for h in 1..2 * KEEP_HEIGHTS {
            record.persist(&vote(h, 0, VoteType::Prevote, None), None).expect("persist");
        }
        assert_eq!(record.from_height(Height(0)).expect("read").len() as u64, 2 * KEEP_HEIGHTS - 1);
        // Height 2 * KEEP_HEIGHTS prunes everything below KEEP_HEIGHTS.
        record.persist(&vote(2 * KEEP_HEIGHTS, 0, VoteType::Prevote, None), None).expect("persist");
        let heights: Vec<u64> =
            record.from_height(Height(0)).expect("read").iter().map(|m| m.height().0).collect();
        assert_eq!(heights, (KEEP_HEIGHTS..=2 * KEEP_HEIGHTS).collect::<Vec<_>>());
        // A pruned key can be recorded again (the core never signs that far back).
        let old = vote(1, 0, VoteType::Prevote, Some(9));
        assert_eq!(record.persist(&old, None).expect("persist"), Persisted::New);
    }

    #[test]
    fn from_height_after_a_reopen_returns_what_was_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing-record.redb");
        let messages = [
            proposal(5, 0, 1),
            vote(5, 0, VoteType::Prevote, Some(1)),
            vote(5, 0, VoteType::Precommit, Some(1)),
            vote(5, 1, VoteType::Prevote, None),
            vote(6, 0, VoteType::Prevote, Some(3)),
        ];
        {
            let mut record = SigningRecord::open(&path).expect("open");
            for m in &messages {
                assert_eq!(record.persist(m, None).expect("persist"), Persisted::New);
            }
        }
        let mut record = SigningRecord::open(&path).expect("reopen");
        assert_eq!(record.from_height(Height(5)).expect("read"), messages);
        assert_eq!(record.from_height(Height(6)).expect("read"), messages[4..]);
        let other = vote(5, 1, VoteType::Prevote, Some(2));
        assert_eq!(
            record.persist(&other, None).expect("persist"),
            Persisted::Conflict(messages[3].clone())
        );
    }

    #[test]
    fn a_file_that_is_not_a_record_is_an_open_error_and_one_without_a_header_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing-record.redb");
        std::fs::write(&path, b"something else").expect("write");
        let e = SigningRecord::open(&path).err().expect("refused");
        assert!(matches!(e, SigningRecordError::Open(_)), "{e}");
        // A cut creation and a zeroed first page look alike: refused, never emptied (an
        // emptied record would let this validator sign twice).
        std::fs::write(&path, vec![0; 4096]).expect("write");
        let e = SigningRecord::open(&path).err().expect("refused");
        assert!(matches!(e, SigningRecordError::NoHeader(_)), "{e}");
        assert_eq!(std::fs::read(&path).expect("read").len(), 4096, "the file is left alone");
        let image = DiskImage::from_bytes(vec![0; 4096]);
        let e = SigningRecord::open_with_backend(image.disk()).err().expect("refused");
        assert!(matches!(e, SigningRecordError::NoHeader(_)), "{e}");
    }

    #[test]
    fn a_directory_is_an_open_error_and_a_failed_disk_a_persist_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = SigningRecord::open(dir.path()).err().expect("a directory");
        assert!(matches!(e, SigningRecordError::Open(_)), "{e}");

        let image = DiskImage::new();
        let mut record = SigningRecord::open_with_backend(image.disk()).expect("open");
        image.fail_sync_after(0);
        let e = record.persist(&proposal(1, 0, 1), None).expect_err("the fsync failed");
        assert!(matches!(e, SigningRecordError::Persist(_)), "{e}");
        // redb refuses every later write until the database is reopened.
        let e = record.persist(&proposal(1, 1, 1), None).expect_err("after a failed fsync");
        assert!(matches!(e, SigningRecordError::Persist(_)), "{e}");
    }

    /// What the driver persists over a few heights: a proposal every third height, both
    /// votes, a second round every fourth height, a repeat and a conflicting attempt.
    fn script() -> Vec<SignedMessage> {
        let mut out = Vec::new();
        for h in 1..=40u64 {
            let b = h as u8;
            if h % 3 == 0 {
                out.push(proposal(h, 0, b));
            }
            out.push(vote(h, 0, VoteType::Prevote, Some(b)));
            out.push(vote(h, 0, VoteType::Prevote, Some(b)));
            out.push(vote(h, 0, VoteType::Precommit, None));
            if h % 4 == 0 {
                out.push(vote(h, 1, VoteType::Prevote, Some(b)));
                out.push(vote(h, 1, VoteType::Prevote, None));
            }
        }
        out
    }

    /// A power cut at every third operation of the script (after each write, between the
    /// writes and the sync of a commit, in a prune), with tears from two seeds: the reopened
    /// record holds every message whose persist returned Ok, among the heights it keeps, and
    /// nothing that was not persisted; and it refuses to sign over them.
    #[test]
    fn a_reopen_after_a_power_cut_keeps_every_message_whose_persist_returned_ok() {
        let script = script();
        let created = {
            let image = DiskImage::new();
            drop(SigningRecord::open_with_backend(image.disk()).expect("open"));
            image.durable_bytes()
        };
        let total = {
            let image = DiskImage::from_bytes(created.clone());
            let mut record = SigningRecord::open_with_backend(image.disk()).expect("open");
            for m in &script {
                record.persist(m, None).expect("persist");
            }
            image.ops()
        };
        let mut cut_short = 0;
        for k in (0..total).step_by(3) {
            for bits in 0..2u64 {
                let image = DiskImage::from_bytes(created.clone());
                image.crash_after(k, bits << 32 | k);
                let mut acked: Vec<&SignedMessage> = Vec::new();
                let mut attempted = None;
                if let Ok(mut record) = SigningRecord::open_with_backend(image.disk()) {
                    for m in &script {
                        attempted = Some(m);
                        match record.persist(m, None) {
                            Ok(Persisted::New | Persisted::Again) => acked.push(m),
                            Ok(Persisted::Conflict(_)) => {}
                            Err(_) => break,
                        }
                    }
                }
                let cut = image.last_cut().expect("the power went");
                let what = format!("op {k}, {cut:?}");
                let mut record = SigningRecord::open_with_backend(image.disk())
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let held = record.from_height(Height(0)).expect("read");
                let latest = attempted.map_or(0, |m| m.height().0);
                for m in &acked {
                    if m.height().0 + KEEP_HEIGHTS >= latest {
                        assert!(held.contains(m), "{what}: lost {m:?}");
                    }
                }
                for m in &held {
                    assert!(script.contains(m), "{what}: holds {m:?}, never persisted");
                }
                if attempted.is_some_and(|m| held.contains(m) && !acked.contains(&m)) {
                    cut_short += 1;
                }
                if let Some(m) = acked.last() {
                    let mut other = (*m).clone();
                    match &mut other {
                        SignedMessage::Proposal(p) => p.proposal.block_hash = hash(200),
                        SignedMessage::Vote(v) => v.vote.block_hash = Some(hash(200)),
                    }
                    let outcome = record.persist(&other, None).expect("persist");
                    assert_eq!(outcome, Persisted::Conflict((*m).clone()), "{what}");
                }
                image.crash_with(Tear::Everything);
            }
        }
        assert!(cut_short > 0, "some cut kept a message whose persist did not return");
    }
}
