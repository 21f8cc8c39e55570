//! Snapshots on disk: the folder a node keeps them in, and the one-file export format.
//!
//! Folder layout (`HOME/data/snapshots/`):
//!
//! ```text
//! <height, 20 digits>/offer          borsh(SnapshotOffer)
//! <height, 20 digits>/chunk-<index>  the chunk's bytes (index: 6 digits)
//! .tmp-<height>/                     a snapshot being written; removed at open
//! ```
//!
//! A snapshot is written into a temporary folder, every file fsynced, then renamed into place
//! and the parent fsynced, so a crash leaves either the whole snapshot or a temporary folder
//! that the next open removes. Readers check everything they read as if it came from a peer
//! (the folder may be damaged), so serving a snapshot never trusts the disk either.
//!
//! Export file (`tally snapshot export`): `b"TALLYSNP" || format: u32 LE || offer_len: u32 LE
//! || offer || count: u32 LE || count * (chunk_len: u32 LE || chunk)`, every length checked
//! against its limit before it is read.

use super::{SnapshotOffer, CHUNKS_MAX, CHUNK_BYTES_MAX, OFFER_BYTES_MAX, SNAPSHOT_FORMAT};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use tally_consensus::Height;

const EXPORT_MAGIC: &[u8; 8] = b"TALLYSNP";
const OFFER_FILE: &str = "offer";
const TMP_PREFIX: &str = ".tmp-";

/// Why a snapshot cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no snapshot of height {0} is stored")]
    NotFound(Height),
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SnapshotFileError + '_ {
    move |source| SnapshotFileError::Io { path: path.to_path_buf(), source }
}

/// The snapshots a node keeps. Cheap to clone; safe to use from several threads (a snapshot
/// appears only by an atomic rename, and disappears only by [`SnapshotDir::prune`]).
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    root: PathBuf,
}

impl SnapshotDir {
    /// Opens (creating) the folder and removes what an interrupted write left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<SnapshotDir, SnapshotFileError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_at(&root))?;
        for entry in fs::read_dir(&root).map_err(io_at(&root))? {
            let entry = entry.map_err(io_at(&root))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io_at(&path))?;
            }
        }
        Ok(SnapshotDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, height: Height) -> PathBuf {
        self.root.join(format!("{:020}", height.0))
    }

    /// Writes a snapshot durably; an existing snapshot of the same height is kept as it is
    /// (honest snapshots of one height are identical).
    pub fn write(
        &self,
        offer: &SnapshotOffer,
        chunks: &[Vec<u8>],
    ) -> Result<(), SnapshotFileError> {
        let height = offer.height();
        let target = self.dir_of(height);
        if target.exists() {
            return Ok(());
        }
        let tmp = self.root.join(format!("{TMP_PREFIX}{}", height.0));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_at(&tmp))?;
        write_synced(&tmp.join(OFFER_FILE), &offer.encode())?;
        for (index, chunk) in chunks.iter().enumerate() {
            write_synced(&tmp.join(chunk_file(index as u32)), chunk)?;
        }
        sync_dir(&tmp)?;
        fs::rename(&tmp, &target).map_err(io_at(&target))?;
        sync_dir(&self.root)
    }

    /// Heights of the stored snapshots, lowest first.
    pub fn heights(&self) -> Result<Vec<Height>, SnapshotFileError> {
        let mut heights = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let entry = entry.map_err(io_at(&self.root))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(h) = name.parse::<u64>() {
                    heights.push(Height(h));
                }
            }
        }
        heights.sort();
        Ok(heights)
    }

    /// The stored offer of `height`, decoded under its limit.
    pub fn offer(&self, height: Height) -> Result<SnapshotOffer, SnapshotFileError> {
        let path = self.dir_of(height).join(OFFER_FILE);
        let bytes = read_limited(&path, OFFER_BYTES_MAX, height)?;
        let offer = SnapshotOffer::decode(&bytes).map_err(|e| SnapshotFileError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if offer.height() != height {
            return Err(SnapshotFileError::Malformed {
                path,
                reason: format!("holds the snapshot of height {}", offer.height()),
            });
        }
        Ok(offer)
    }

    /// The bytes of chunk `index` of the snapshot of `height` (at most [`CHUNK_BYTES_MAX`]).
    pub fn chunk(&self, height: Height, index: u32) -> Result<Vec<u8>, SnapshotFileError> {
        if index >= CHUNKS_MAX {
            return Err(SnapshotFileError::NotFound(height));
        }
        read_limited(&self.dir_of(height).join(chunk_file(index)), CHUNK_BYTES_MAX, height)
    }

    /// Deletes all but the `keep` highest snapshots; returns the heights deleted.
    pub fn prune(&self, keep: usize) -> Result<Vec<Height>, SnapshotFileError> {
        let heights = self.heights()?;
        let remove = heights.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for height in heights.into_iter().take(remove) {
            let dir = self.dir_of(height);
            fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
            removed.push(height);
        }
        Ok(removed)
    }

    /// Writes the stored snapshot of `height` as one export file at `out`.
    pub fn export(&self, height: Height, out: &Path) -> Result<u64, SnapshotFileError> {
        let offer = self.offer(height)?;
        let chunks = (0..offer.manifest.chunks())
            .map(|i| self.chunk(height, i))
            .collect::<Result<Vec<_>, _>>()?;
        write_export(out, &offer, &chunks)
    }
}

fn chunk_file(index: u32) -> String {
    format!("chunk-{index:06}")
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SnapshotFileError> {
    let mut file = File::create(path).map_err(io_at(path))?;
    file.write_all(bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

fn sync_dir(path: &Path) -> Result<(), SnapshotFileError> {
    File::open(path).and_then(|d| d.sync_all()).map_err(io_at(path))
}

fn read_limited(path: &Path, max: usize, height: Height) -> Result<Vec<u8>, SnapshotFileError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SnapshotFileError::NotFound(height))
        }
        Err(e) => return Err(io_at(path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(io_at(path))?;
    if bytes.len() > max {
        return Err(SnapshotFileError::Malformed {
            path: path.to_path_buf(),
            reason: format!("longer than the limit of {max} bytes"),
        });
    }
    Ok(bytes)
}

/// Writes an export file (layout in the module doc) and fsyncs it; returns its size in bytes.
pub fn write_export(
    out: &Path,
    offer: &SnapshotOffer,
    chunks: &[Vec<u8>],
) -> Result<u64, SnapshotFileError> {
    let file = File::create(out).map_err(io_at(out))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let offer_bytes = offer.encode();
    let mut put = |bytes: &[u8]| w.write_all(bytes).map_err(io_at(out));
    put(EXPORT_MAGIC)?;
    put(&SNAPSHOT_FORMAT.to_le_bytes())?;
    put(&len_u32(offer_bytes.len()).to_le_bytes())?;
    put(&offer_bytes)?;
    put(&len_u32(chunks.len()).to_le_bytes())?;
    for chunk in chunks {
        put(&len_u32(chunk.len()).to_le_bytes())?;
        put(chunk)?;
    }
    let file = w.into_inner().map_err(|e| io_at(out)(e.into_error()))?;
    file.sync_all().map_err(io_at(out))?;
    file.metadata().map(|m| m.len()).map_err(io_at(out))
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("lengths are bounded by the snapshot limits")
}

/// Reads an export file: the offer and the chunks, every length checked before it is read.
/// Nothing is verified here beyond the layout: pass the result to
/// [`super::verify_offer`] and [`super::Restore`].
pub fn read_export(path: &Path) -> Result<(SnapshotOffer, Vec<Vec<u8>>), SnapshotFileError> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let malformed =
        |reason: String| SnapshotFileError::Malformed { path: path.to_path_buf(), reason };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(io_at(path))?;
    if &magic != EXPORT_MAGIC {
        return Err(malformed("not a tally snapshot export (bad magic bytes)".into()));
    }
    let format = read_u32(&mut r, path)?;
    if format != SNAPSHOT_FORMAT {
        return Err(malformed(format!(
            "snapshot format {format}, this build reads {SNAPSHOT_FORMAT}"
        )));
    }
    let offer_bytes = read_sized(&mut r, path, OFFER_BYTES_MAX, "offer")?;
    let offer = SnapshotOffer::decode(&offer_bytes).map_err(|e| malformed(e.to_string()))?;
    let count = read_u32(&mut r, path)?;
    if count > CHUNKS_MAX || count != offer.manifest.chunks() {
        return Err(malformed(format!(
            "{count} chunks, the manifest lists {}",
            offer.manifest.chunks()
        )));
    }
    let chunks = (0..count)
        .map(|_| read_sized(&mut r, path, CHUNK_BYTES_MAX, "chunk"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rest = [0u8; 1];
    if r.read(&mut rest).map_err(io_at(path))? != 0 {
        return Err(malformed("trailing bytes after the last chunk".into()));
    }
    Ok((offer, chunks))
}

fn read_u32(r: &mut impl Read, path: &Path) -> Result<u32, SnapshotFileError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(io_at(path))?;
    Ok(u32::from_le_bytes(b))
}

fn read_sized(
    r: &mut impl Read,
    path: &Path,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, SnapshotFileError> {
    let len = read_u32(r, path)? as usize;
    if len > max {
        return Err(SnapshotFileError::Malformed {
            path: path.to_path_buf(),
            reason: format!("{what} of {len} bytes, more than the limit of {max}"),
        });
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes).map_err(io_at(path))?;
    Ok(bytes)
}
