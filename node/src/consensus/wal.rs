//! The consensus write-ahead log of the height in progress (`data/consensus.wal`): what a
//! validator received and the blocks it proposed, so that after a restart it resumes its
//! round with the proposal, the votes and the timeouts it had, instead of waiting the round
//! out and for peers to re-send everything.
//!
//! What it is not: the safety record. Never signing twice is the signing record's job
//! (`signing_record.rs`, fsynced before anything leaves the process); the log only saves
//! time. Hence the write policy: entries are written with one `write` each (a killed process
//! loses nothing the kernel has) and fsynced only for this validator's own blocks and at the
//! start of a height; a power cut may lose the last entries, which peers re-send anyway.
//!
//! Format: a sequence of frames, `len: u32 LE || crc32(payload): u32 LE || payload`, where the
//! payload is `borsh(WalEntry)`. The first entry is `Height(h)`; a new height truncates the
//! file and starts again. Reading stops at the first frame that is short, too long, fails its
//! CRC or does not decode: that tail (a write cut by a crash, or corruption) is cut off and
//! logged, and everything before it is replayed. A log of another height than the one the
//! ledger resumes at is stale and ignored.
//!
//! Errors ([`WalError`]) name the operation and the file. After a failed write or fsync the
//! file's end is unknown (a frame may be half written), so the log refuses appends until the
//! next [`Wal::start_height`], which empties the file; the driver drops the log on any error
//! anyway and runs without it until a restart.
//!
//! Bounded: an entry already in the log of the height (peers re-send their messages every
//! `rebroadcast_interval_ms`, and gossip forgets duplicates after a few seconds) is not
//! written again, and past `WAL_BYTES_MAX` nothing more is written for the height (a stall
//! of many rounds with large proposals; the node then replays what the log holds).

use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use tally_consensus::{Height, Round, Timeout};
use tally_ledger::Block;
use tally_network::ConsensusMsg;

/// Bytes before each payload: length and CRC.
const FRAME_HEADER_BYTES: usize = 8;
/// Larger frames are corruption: a block is bounded by the genesis `block_bytes_max`, far
/// below this.
pub const FRAME_BYTES_MAX: usize = 256 << 20;
/// The log of one height stops growing here.
pub const WAL_BYTES_MAX: u64 = 256 << 20;

/// What went wrong with the log, by operation; the IO error is kept whole.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot open the consensus log {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read the consensus log {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot cut the torn tail of the consensus log {} at byte {offset}: {source}", path.display())]
    CutTail { path: PathBuf, offset: u64, source: io::Error },
    #[error("cannot empty the consensus log {} for height {height}: {source}", path.display())]
    StartHeight { path: PathBuf, height: Height, source: io::Error },
    #[error("cannot write to the consensus log {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot fsync the consensus log {}: {source}", path.display())]
    Sync { path: PathBuf, source: io::Error },
    /// `append` before `start_height`, or after a failed write or fsync.
    #[error("the consensus log has no height: not started, or a write to it failed")]
    NoHeight,
    #[error("a consensus log entry of {bytes} bytes; the limit is {FRAME_BYTES_MAX}")]
    EntryTooLarge { bytes: usize },
    #[error("cannot encode a consensus log entry: {0}")]
    Encode(#[source] io::Error),
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum WalEntry {
    /// The height the log is for; always the first entry.
    Height(Height),
    /// A consensus message from a peer that verified, as the core received it.
    Received(ConsensusMsg),
    /// A block this validator built to propose in `round` (its signed proposal is in the
    /// signing record), so that it can re-send the proposal after a restart.
    OwnBlock { round: Round, block: Block },
    /// A timeout that elapsed and was fed to the core.
    Timeout(Timeout),
}

/// [`WalEntry`] by reference, for writing without copying a block: the same variants in the
/// same order, so the same bytes (checked by a test).
#[derive(Clone, Copy, Debug, BorshSerialize)]
pub enum WalEntryRef<'a> {
    Height(Height),
    Received(&'a ConsensusMsg),
    OwnBlock { round: Round, block: &'a Block },
    Timeout(Timeout),
}

/// A torn or corrupt tail found when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where the good part ends (the file's new length).
    pub offset: u64,
    /// Bytes cut off.
    pub bytes: u64,
    pub reason: String,
}

/// What the log held when it was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The height of the entries (`None` for an empty or wholly corrupt log).
    pub height: Option<Height>,
    /// The entries after the `Height` one, in the order they were written.
    pub entries: Vec<WalEntry>,
    pub cut: Option<Cut>,
}

pub struct Wal {
    file: File,
    path: PathBuf,
    /// The height the file's entries belong to.
    height: Option<Height>,
    /// blake3 of every payload in the file, so that nothing is written twice.
    written: HashSet<[u8; 32]>,
    /// The file's length.
    len: u64,
    /// Whether the cap was reached (warned once per height).
    full: bool,
}

/// What `append` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Written,
    /// The same entry is already in the log.
    Duplicate,
    /// The log of this height reached `WAL_BYTES_MAX`; `first` the first time.
    Full {
        first: bool,
    },
}

impl Wal {
    /// Opens (or creates) the log, reads what it holds and cuts a bad tail off the file.
    pub fn open(path: &Path) -> Result<(Wal, Recovered), WalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| WalError::Open { path: path.to_path_buf(), source })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| WalError::Read { path: path.to_path_buf(), source })?;
        let (recovered, written) = parse_frames(&bytes);
        let len = match &recovered.cut {
            Some(cut) => {
                let offset = cut.offset;
                file.set_len(offset).and_then(|()| file.sync_data()).map_err(|source| {
                    WalError::CutTail { path: path.to_path_buf(), offset, source }
                })?;
                offset
            }
            None => bytes.len() as u64,
        };
        file.seek(SeekFrom::Start(len))
            .map_err(|source| WalError::Open { path: path.to_path_buf(), source })?;
        let wal = Wal {
            file,
            path: path.to_path_buf(),
            height: recovered.height,
            written,
            len,
            full: false,
        };
        Ok((wal, recovered))
    }

    pub fn height(&self) -> Option<Height> {
        self.height
    }

    /// Makes the log the log of `height`: kept as it is if it already is (a restart resuming
    /// it), else emptied and started with `Height(height)`, fsynced.
    pub fn start_height(&mut self, height: Height) -> Result<(), WalError> {
        if self.height == Some(height) {
            return Ok(());
        }
        let frame = encode_frame(WalEntryRef::Height(height))?;
        self.height = None;
        self.written.clear();
        self.full = false;
        self.len = 0;
        let file = &mut self.file;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .map_err(|source| WalError::StartHeight { path: self.path.clone(), height, source })?;
        self.write(&frame, true)?;
        self.height = Some(height);
        Ok(())
    }

    /// Appends `entry` unless it is already in the log or the log is full; `sync` fsyncs it.
    /// After a failed write or fsync the log has no height (see the module documentation).
    pub fn append(&mut self, entry: WalEntryRef<'_>, sync: bool) -> Result<Appended, WalError> {
        if self.height.is_none() {
            return Err(WalError::NoHeight);
        }
        let frame = encode_frame(entry)?;
        let digest = tally_crypto::Hash::digest(&frame[FRAME_HEADER_BYTES..]).0;
        if self.written.contains(&digest) {
            return Ok(Appended::Duplicate);
        }
        if self.len + frame.len() as u64 > WAL_BYTES_MAX {
            let first = !self.full;
            self.full = true;
            return Ok(Appended::Full { first });
        }
        self.write(&frame, sync)?;
        self.written.insert(digest);
        Ok(Appended::Written)
    }

    /// Writes `frame` at the end, fsynced if `sync`. On failure the log loses its height:
    /// the file may end in part of the frame.
    fn write(&mut self, frame: &[u8], sync: bool) -> Result<(), WalError> {
        if let Err(source) = self.file.write_all(frame) {
            self.height = None;
            return Err(WalError::Write { path: self.path.clone(), source });
        }
        self.len += frame.len() as u64;
        if sync {
            if let Err(source) = self.file.sync_data() {
                self.height = None;
                return Err(WalError::Sync { path: self.path.clone(), source });
            }
        }
        Ok(())
    }
}

/// `len || crc || borsh(entry)`.
pub fn encode_frame(entry: WalEntryRef<'_>) -> Result<Vec<u8>, WalError> {
    let mut frame = vec![0u8; FRAME_HEADER_BYTES];
    borsh::to_writer(&mut frame, &entry).map_err(WalError::Encode)?;
    let payload_len = frame.len() - FRAME_HEADER_BYTES;
    let len = frame_len(payload_len)?;
    let crc = crc32fast::hash(&frame[FRAME_HEADER_BYTES..]);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// The length field of a frame whose payload is `payload_len` bytes.
fn frame_len(payload_len: usize) -> Result<u32, WalError> {
    match u32::try_from(payload_len) {
        Ok(len) if payload_len <= FRAME_BYTES_MAX => Ok(len),
        _ => Err(WalError::EntryTooLarge { bytes: payload_len }),
    }
}

/// Reads frames until the end or the first bad one.
pub fn parse(bytes: &[u8]) -> Recovered {
    parse_frames(bytes).0
}

/// `parse`, and the blake3 of each entry's payload.
fn parse_frames(bytes: &[u8]) -> (Recovered, HashSet<[u8; 32]>) {
    let mut recovered = Recovered::default();
    let mut written = HashSet::new();
    let mut offset = 0usize;
    let cut = |offset: usize, reason: String| Cut {
        offset: offset as u64,
        bytes: (bytes.len() - offset) as u64,
        reason,
    };
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < FRAME_HEADER_BYTES {
            recovered.cut = Some(cut(offset, "a frame header cut short".into()));
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > FRAME_BYTES_MAX {
            recovered.cut = Some(cut(offset, format!("a frame length of {len} bytes")));
            break;
        }
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            let reason =
                format!("a frame of {len} bytes with {} present", rest.len() - FRAME_HEADER_BYTES);
            recovered.cut = Some(cut(offset, reason));
            break;
        };
        if crc32fast::hash(payload) != crc {
            recovered.cut = Some(cut(offset, "a frame whose CRC does not match".into()));
            break;
        }
        let entry = match borsh::from_slice::<WalEntry>(payload) {
            Ok(entry) => entry,
            Err(e) => {
                recovered.cut = Some(cut(offset, format!("a frame that does not decode: {e}")));
                break;
            }
        };
        match (recovered.height, entry) {
            (None, WalEntry::Height(h)) => recovered.height = Some(h),
            (None, _) => {
                recovered.cut =
                    Some(cut(offset, "a log that does not start with its height".into()));
                break;
            }
            (Some(_), WalEntry::Height(_)) => {
                recovered.cut = Some(cut(offset, "a second height entry".into()));
                break;
            }
            (Some(_), entry) => {
                written.insert(tally_crypto::Hash::digest(payload).0);
                recovered.entries.push(entry);
            }
        }
        offset += FRAME_HEADER_BYTES + len;
    }
    (recovered, written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_consensus::TimeoutStep;

    fn timeout(round: u32) -> WalEntry {
        WalEntry::Timeout(Timeout {
            height: Height(7),
            round: Round(round),
            step: TimeoutStep::Propose,
        })
    }

    fn by_ref(entry: &WalEntry) -> WalEntryRef<'_> {
        match entry {
            WalEntry::Height(h) => WalEntryRef::Height(*h),
            WalEntry::Received(m) => WalEntryRef::Received(m),
            WalEntry::OwnBlock { round, block } => WalEntryRef::OwnBlock { round: *round, block },
            WalEntry::Timeout(t) => WalEntryRef::Timeout(*t),
        }
    }

    fn written(entries: &[WalEntry]) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("consensus.wal");
        let (mut wal, recovered) = Wal::open(&path).expect("open");
        assert_eq!(recovered.height, None);
        wal.start_height(Height(7)).expect("start");
        let mut ends = vec![std::fs::metadata(&path).expect("meta").len()];
        for e in entries {
            wal.append(by_ref(e), false).expect("append");
            ends.push(std::fs::metadata(&path).expect("meta").len());
        }
        (dir, path, ends)
    }

    #[test]
    fn entries_by_reference_encode_like_owned_ones() {
        let chain = tally_crypto::ChainId::new("wal-test").expect("chain id");
        let key = tally_crypto::Keypair::from_seed([9; 32]);
        let vote = tally_consensus::Vote {
            height: Height(7),
            round: Round(1),
            vote_type: tally_consensus::VoteType::Prevote,
            block_hash: None,
            validator: tally_consensus::ValidatorIndex(2),
        }
        .sign(&chain, &key);
        let block = Block {
            header: tally_ledger::Header {
                chain_id: chain.clone(),
                height: Height(7),
                time_ms: 1_700_000_000_000,
                prev_block_hash: tally_consensus::BlockHash(tally_crypto::Hash::digest(b"p")),
                tx_root: tally_crypto::Hash::digest(b"t"),
                tx_count: 0,
                state_root: tally_crypto::Hash::digest(b"s"),
                proposer: key.public(),
                validators_hash: tally_crypto::Hash::digest(b"v"),
            },
            txs: Vec::new(),
        };
        let entries = [
            WalEntry::Height(Height(7)),
            WalEntry::Received(ConsensusMsg::Vote(vote)),
            WalEntry::OwnBlock { round: Round(3), block },
            timeout(4),
        ];
        for entry in &entries {
            let frame = encode_frame(by_ref(entry)).expect("encode");
            assert_eq!(&frame[FRAME_HEADER_BYTES..], borsh::to_vec(entry).expect("borsh"));
            let decoded: WalEntry =
                borsh::from_slice(&frame[FRAME_HEADER_BYTES..]).expect("decode");
            assert_eq!(&decoded, entry);
        }
    }

    #[test]
    fn entries_come_back_in_order() {
        let entries = vec![timeout(0), timeout(1), timeout(2)];
        let (_dir, path, _) = written(&entries);
        let (wal, recovered) = Wal::open(&path).expect("reopen");
        assert_eq!(recovered.height, Some(Height(7)));
        assert_eq!(recovered.entries, entries);
        assert_eq!(recovered.cut, None);
        assert_eq!(wal.height(), Some(Height(7)));
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_length_and_the_rest_replays() {
        let entries = vec![timeout(0), timeout(1), timeout(2)];
        let (_dir, path, ends) = written(&entries);
        let full = std::fs::read(&path).expect("read");
        for len in 0..full.len() {
            std::fs::write(&path, &full[..len]).expect("write");
            let (_, recovered) = Wal::open(&path).expect("a torn log opens");
            let whole = ends.iter().filter(|&&end| end as usize <= len).count();
            assert_eq!(recovered.height.is_some(), whole >= 1, "len {len}");
            assert_eq!(recovered.entries, entries[..whole.saturating_sub(1)], "len {len}");
            let good = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(recovered.cut.is_some(), good as usize != len, "len {len}");
            assert_eq!(std::fs::metadata(&path).expect("meta").len(), good, "cut to {good}");
        }
    }

    #[test]
    fn a_flipped_bit_cuts_from_its_frame_on() {
        let entries = vec![timeout(0), timeout(1), timeout(2)];
        let (_dir, path, ends) = written(&entries);
        let mut bytes = std::fs::read(&path).expect("read");
        // A bit of the second entry's payload.
        bytes[ends[1] as usize + FRAME_HEADER_BYTES + 2] ^= 0x10;
        std::fs::write(&path, &bytes).expect("write");
        let (mut wal, recovered) = Wal::open(&path).expect("open");
        assert_eq!(recovered.entries, entries[..1]);
        let cut = recovered.cut.expect("cut");
        assert_eq!(cut.offset, ends[1]);
        assert!(cut.reason.contains("CRC"), "{}", cut.reason);
        // Appending after the cut continues a well-formed log.
        wal.append(by_ref(&timeout(5)), false).expect("append");
        let (_, again) = Wal::open(&path).expect("reopen");
        assert_eq!(again.entries, vec![timeout(0), timeout(5)]);
        assert_eq!(again.cut, None);
    }

    #[test]
    fn garbage_and_huge_lengths_are_cut_not_allocated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("consensus.wal");
        std::fs::write(&path, [0xff; 64]).expect("write");
        let (mut wal, recovered) = Wal::open(&path).expect("open");
        assert_eq!(recovered.height, None);
        assert_eq!(recovered.cut.expect("cut").bytes, 64);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0);
        wal.start_height(Height(3)).expect("start");
        assert_eq!(Wal::open(&path).expect("reopen").1.height, Some(Height(3)));
    }

    #[test]
    fn an_entry_is_written_once_per_height_also_after_a_reopen() {
        let (_dir, path, _) = written(&[timeout(0)]);
        let (mut wal, _) = Wal::open(&path).expect("open");
        assert_eq!(wal.append(by_ref(&timeout(0)), false).expect("append"), Appended::Duplicate);
        assert_eq!(wal.append(by_ref(&timeout(1)), false).expect("append"), Appended::Written);
        assert_eq!(wal.append(by_ref(&timeout(1)), false).expect("append"), Appended::Duplicate);
        assert_eq!(Wal::open(&path).expect("reopen").1.entries, vec![timeout(0), timeout(1)]);
        wal.start_height(Height(8)).expect("next height");
        assert_eq!(wal.append(by_ref(&timeout(1)), false).expect("append"), Appended::Written);
    }

    #[test]
    fn opening_a_directory_is_an_open_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Wal::open(dir.path()).err().expect("a directory is not a log");
        assert!(matches!(&e, WalError::Open { path, .. } if path == dir.path()), "{e}");
        assert!(e.to_string().contains(&dir.path().display().to_string()), "{e}");
    }

    #[test]
    fn an_entry_longer_than_a_frame_allows_is_refused() {
        assert_eq!(frame_len(FRAME_BYTES_MAX).expect("the largest frame"), FRAME_BYTES_MAX as u32);
        let e = frame_len(FRAME_BYTES_MAX + 1).expect_err("too large");
        assert!(matches!(e, WalError::EntryTooLarge { bytes } if bytes == FRAME_BYTES_MAX + 1));
    }

    #[test]
    fn appending_before_a_height_is_no_height() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(&dir.path().join("consensus.wal")).expect("open");
        let e = wal.append(by_ref(&timeout(0)), false).expect_err("no height yet");
        assert!(matches!(e, WalError::NoHeight), "{e}");
    }

    /// A handle that cannot write (as after the disk went read-only): an append is a write
    /// error, the log then refuses appends (its end is unknown) until a new height empties
    /// it, and a new height on that handle is a start-height error. With a working handle
    /// again the log starts over, well-formed.
    #[test]
    fn write_failures_are_typed_and_stop_appends_until_a_new_height() {
        let (_dir, path, _) = written(&[timeout(0)]);
        let (mut wal, _) = Wal::open(&path).expect("open");
        wal.file = File::open(&path).expect("a read-only handle");
        let e = wal.append(by_ref(&timeout(1)), true).expect_err("read-only");
        assert!(matches!(&e, WalError::Write { path: p, .. } if *p == path), "{e}");
        assert_eq!(wal.height(), None);
        let e = wal.append(by_ref(&timeout(2)), false).expect_err("after a failed write");
        assert!(matches!(e, WalError::NoHeight), "{e}");
        let e = wal.start_height(Height(8)).expect_err("cannot empty a read-only handle");
        assert!(matches!(e, WalError::StartHeight { height: Height(8), .. }), "{e}");

        wal.file = OpenOptions::new().read(true).write(true).open(&path).expect("writable");
        wal.start_height(Height(8)).expect("start");
        assert_eq!(wal.append(by_ref(&timeout(3)), true).expect("append"), Appended::Written);
        let (_, recovered) = Wal::open(&path).expect("reopen");
        assert_eq!((recovered.height, recovered.entries), (Some(Height(8)), vec![timeout(3)]));
        assert_eq!(recovered.cut, None);
    }

    #[test]
    fn a_new_height_starts_an_empty_log_and_the_same_height_keeps_it() {
        let (_dir, path, _) = written(&[timeout(0)]);
        let (mut wal, _) = Wal::open(&path).expect("open");
        wal.start_height(Height(7)).expect("same height");
        assert_eq!(Wal::open(&path).expect("reopen").1.entries, vec![timeout(0)]);
        wal.start_height(Height(8)).expect("next height");
        let (_, recovered) = Wal::open(&path).expect("reopen");
        assert_eq!(recovered.height, Some(Height(8)));
        assert!(recovered.entries.is_empty());
    }
}
