//! The durable signing record: every proposal and vote this validator signs is written here,
//! fsynced, before it leaves the process; after a restart the core is loaded from it
//! (`Core::restore_signed`) so that it never signs a different message for a (height,
//! round, step) it already signed.
//!
//! A redb file (`data/signing-record.redb`), one table: key = height (u64 BE) || round (u32
//! BE) || step (u8: 0 proposal, 1 prevote, 2 precommit), value = borsh(SignedMessage). Heights
//! more than `KEEP_HEIGHTS` below the latest are pruned.

use anyhow::Context as _;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;
use tally_consensus::{Height, SignedMessage, VoteType};

const SIGNED: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("signed");
const KEEP_HEIGHTS: u64 = 16;

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
    pub fn open(path: &Path) -> anyhow::Result<SigningRecord> {
        let db = Database::create(path)
            .with_context(|| format!("opening the signing record {}", path.display()))?;
        let w = db.begin_write()?;
        w.open_table(SIGNED)?;
        w.commit()?;
        Ok(SigningRecord { db, last_pruned_below: 0 })
    }

    /// Records `message` durably, unless a different one is recorded for its key.
    pub fn persist(&mut self, message: &SignedMessage) -> anyhow::Result<Persisted> {
        let key = key_of(message);
        let bytes = borsh::to_vec(message).context("encoding a signed message")?;
        let w = self.db.begin_write()?;
        let outcome = {
            let mut table = w.open_table(SIGNED)?;
            let existing = table.get(key.as_slice())?.map(|v| v.value().to_vec());
            match existing {
                Some(old) if old == bytes => Persisted::Again,
                Some(old) => {
                    let recorded: SignedMessage = borsh::from_slice(&old)
                        .context("the signing record holds an undecodable message")?;
                    Persisted::Conflict(recorded)
                }
                None => {
                    table.insert(key.as_slice(), bytes.as_slice())?;
                    Persisted::New
                }
            }
        };
        if outcome == Persisted::New {
            w.commit().context("committing the signing record")?;
        } else {
            w.abort()?;
        }
        let height = message.height().0;
        if height >= self.last_pruned_below + 2 * KEEP_HEIGHTS {
            self.prune_below(height.saturating_sub(KEEP_HEIGHTS))?;
        }
        Ok(outcome)
    }

    /// Everything recorded at `height` or above, to load into the core after a restart.
    pub fn from_height(&self, height: Height) -> anyhow::Result<Vec<SignedMessage>> {
        let r = self.db.begin_read()?;
        let table = r.open_table(SIGNED)?;
        let start = height.0.to_be_bytes();
        let mut out = Vec::new();
        for entry in table.range(start.as_slice()..)? {
            let (_, v) = entry?;
            let message: SignedMessage = borsh::from_slice(v.value())
                .context("the signing record holds an undecodable message")?;
            out.push(message);
        }
        Ok(out)
    }

    fn prune_below(&mut self, height: u64) -> anyhow::Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut table = w.open_table(SIGNED)?;
            let end = height.to_be_bytes();
            table.retain_in(..end.as_slice(), |_, _| false)?;
        }
        w.commit()?;
        self.last_pruned_below = height;
        Ok(())
    }
}
