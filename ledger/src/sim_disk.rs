//! [`SimDisk`]: a redb storage backend in memory for deterministic simulation, which loses
//! power on demand and then keeps exactly what was made durable, plus a torn part of what
//! was not.
//!
//! The bytes live in a [`DiskImage`], shared by every [`SimDisk`] opened on it (a node's
//! disk outlives the process that had it open). The image holds the durable bytes (what the
//! last successful `sync_data` left on the platter) and the operations since that sync, in
//! order (pending: what sits in the page cache). A `SimDisk` reads and writes the volatile
//! view, the durable bytes with the pending operations applied, as a process sees its file.
//! `sync_data` makes the pending operations durable (`eventual` syncs are full syncs: a
//! stronger promise than redb asks for).
//!
//! # The tear model
//!
//! A power cut ([`DiskImage::crash`], [`DiskImage::crash_with`]) keeps the durable bytes and
//! a subset of the pending operations, chosen by a [`Tear`], applied in their original order
//! to the durable bytes; the rest is lost. The unit of a write that survives is a 512-byte
//! sector (writes are recorded as the sector-aligned pieces they dirty, each with the whole
//! sector as it was right after the write), so a sector is never half old, half new, but a
//! write spanning several sectors can survive in part, and a sector written twice since the
//! sync can come back as it was after either write. The kinds of tear:
//!
//! - [`Tear::Nothing`]: every pending operation is lost (the cut came before any writeback).
//! - [`Tear::Everything`]: every pending operation survives (the process died and the OS
//!   wrote its page cache back; also the cut that came right after the last write).
//! - [`Tear::Prefix`]: the first `n` pending pieces survive: a device that writes in order;
//!   the last write kept may be cut short at a sector boundary.
//! - [`Tear::Scattered`]: each pending sector piece survives or not, by a coin from the
//!   tear's bits: a page cache and a device that write back in any order, the model redb's
//!   one-fsync commit is designed for (docs/design.md in redb: "1-phase + checksum durable
//!   commits": a torn transaction fails its checksums and is rolled back to the previous
//!   one).
//!
//! One restriction on the reordering: a change of the file's length (`set_len`) is never
//! lost when a later write survives. redb grows the file before it writes pages in the new
//! space and a header whose layout covers it, and its open asserts that the file's length
//! fits the layout: a tear that dropped the growth but kept a later write panics inside
//! redb 2.6 (`page_manager.rs`, `assert_eq!(layout.len(), storage.raw_file_len()?)`; seen
//! with the growth test of `tests/sim_disk.rs`). So the model takes size changes to be
//! ordered before later writes. POSIX does not promise that without an fsync in between
//! (a file system may write the header's block back before it commits the new size): the
//! case is a limit of redb's one-fsync commit, which this backend does not simulate. A
//! `set_len` after the last surviving write survives or not like any other piece.
//!
//! # Faults and determinism
//!
//! [`DiskImage::crash_after`] schedules a power cut before the n-th later mutating operation
//! (write, set_len, sync_data), so that a test can cut the power at every point of a
//! commit; [`DiskImage::fail_sync_after`] makes one later `sync_data` fail (its writes stay
//! pending: they may or may not survive a later cut). After a cut, the `SimDisk`s opened
//! before it fail every call (the process that held them is gone); a new one opened on the
//! image sees what survived. There is no clock and no hidden random state: the same calls
//! with the same bits give the same bytes.
//!
//! Cost: a write costs its bytes rounded out to sectors (kept until the next sync), a sync
//! costs the bytes written since the previous one, a read costs the bytes read. Only a power
//! cut copies the whole image (once), which a reopen's repair scan costs anyway.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// The unit a torn write keeps or loses whole.
pub const SECTOR_BYTES: usize = 512;

/// Which of the operations pending at a power cut survive it. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// None: the disk holds what the last sync made durable.
    Nothing,
    /// All: the disk holds everything written.
    Everything,
    /// The first `n` pending pieces (a `set_len`, or one sector of a write), in order.
    Prefix(usize),
    /// Each pending piece independently, by a coin drawn from these bits.
    Scattered(u64),
}

/// A power cut that happened: the tear applied, and how many pieces were pending then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub tear: Tear,
    pub pending: usize,
}

/// The tear of a scheduled power cut: drawn from bits when it happens, or given.
#[derive(Clone, Copy, Debug)]
enum Planned {
    Bits(u64),
    Tear(Tear),
}

/// One pending operation, as a crash may keep it.
#[derive(Debug)]
enum Piece {
    SetLen(usize),
    /// Sector `index` as it was right after a write that touched it (shorter than a sector
    /// when the file ended inside it).
    Sector {
        index: usize,
        bytes: Box<[u8]>,
    },
}

impl Piece {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Piece::SetLen(len) => set_len(bytes, *len),
            Piece::Sector { index, bytes: sector } => {
                let start = index * SECTOR_BYTES;
                let end = start + sector.len();
                if bytes.len() < end {
                    set_len(bytes, end);
                }
                bytes[start..end].copy_from_slice(sector);
            }
        }
    }
}

/// `bytes.resize(len, 0)` by whole slices: the simulator runs in debug builds, where
/// `resize` fills byte by byte (a redb file starts at 1.5 MiB).
fn set_len(bytes: &mut Vec<u8>, len: usize) {
    const ZEROS: [u8; 4096] = [0; 4096];
    if len <= bytes.len() {
        bytes.truncate(len);
        return;
    }
    bytes.reserve(len - bytes.len());
    while bytes.len() < len {
        let n = (len - bytes.len()).min(ZEROS.len());
        bytes.extend_from_slice(&ZEROS[..n]);
    }
}

#[derive(Debug, Default)]
struct Disk {
    /// What survives a power cut for sure.
    durable: Vec<u8>,
    /// `durable` with `pending` applied: what reads see.
    volatile: Vec<u8>,
    /// Operations since the last successful sync, in order.
    pending: Vec<Piece>,
    /// Bumped by each power cut; a `SimDisk` of an older generation is dead.
    generation: u64,
    /// Mutating operations done (write, set_len, sync_data; failed ones included).
    ops: u64,
    /// Successful syncs.
    syncs: u64,
    /// Power cuts.
    crashes: u64,
    /// Successful syncs left before one fails.
    fail_sync_in: Option<u64>,
    /// Mutating operations left before the power is cut, and its tear.
    crash_in: Option<(u64, Planned)>,
    last_cut: Option<Cut>,
}

impl Disk {
    fn crash(&mut self, planned: Planned) -> Cut {
        let pending = std::mem::take(&mut self.pending);
        let tear = match planned {
            Planned::Bits(bits) => tear_from_bits(bits, pending.len()),
            Planned::Tear(tear) => tear,
        };
        let mut keep: Vec<bool> = match tear {
            Tear::Nothing => vec![false; pending.len()],
            Tear::Everything => vec![true; pending.len()],
            Tear::Prefix(n) => (0..pending.len()).map(|i| i < n).collect(),
            Tear::Scattered(bits) => {
                let mut rng = SplitMix64(bits);
                (0..pending.len()).map(|_| rng.next() & 1 == 1).collect()
            }
        };
        // A length change is never lost when a later write survives (see the module doc).
        let mut later_kept = false;
        for (piece, keep) in pending.iter().zip(keep.iter_mut()).rev() {
            if matches!(piece, Piece::SetLen(_)) && later_kept {
                *keep = true;
            }
            later_kept |= *keep;
        }
        for (piece, keep) in pending.iter().zip(keep) {
            if keep {
                piece.apply(&mut self.durable);
            }
        }
        self.volatile = self.durable.as_slice().to_vec();
        self.generation += 1;
        self.crashes += 1;
        self.crash_in = None;
        let cut = Cut { tear, pending: pending.len() };
        self.last_cut = Some(cut);
        cut
    }

    /// Counts a mutating operation, and cuts the power first if one is scheduled now.
    fn mutate(&mut self) -> io::Result<()> {
        self.ops += 1;
        match self.crash_in {
            Some((0, planned)) => {
                self.crash(planned);
                Err(io::Error::other("simulated power cut"))
            }
            Some((left, planned)) => {
                self.crash_in = Some((left - 1, planned));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// A deterministic generator for the tear's coins (splitmix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The tear [`DiskImage::crash`] applies for `rng_bits` when `pending` pieces are pending:
/// one kind in four each (nothing, everything, a prefix, scattered).
fn tear_from_bits(rng_bits: u64, pending: usize) -> Tear {
    let mut rng = SplitMix64(rng_bits);
    match rng.next() % 4 {
        0 => Tear::Nothing,
        1 => Tear::Everything,
        2 => Tear::Prefix((rng.next() % (pending as u64 + 1)) as usize),
        _ => Tear::Scattered(rng.next()),
    }
}

/// The contents of one simulated disk, shared by the [`SimDisk`]s opened on it and by the
/// test or simulator that cuts its power. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct DiskImage(Arc<Mutex<Disk>>);

impl DiskImage {
    /// An empty disk.
    pub fn new() -> DiskImage {
        DiskImage::default()
    }

    /// A disk holding `bytes`, durably.
    pub fn from_bytes(bytes: Vec<u8>) -> DiskImage {
        let disk = Disk { volatile: bytes.clone(), durable: bytes, ..Disk::default() };
        DiskImage(Arc::new(Mutex::new(disk)))
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // A panic while the lock was held cannot leave the disk half-updated in a way that
        // matters more than the panic itself; keep going so that the test reports it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A backend on this disk for `redb::Builder::create_with_backend` (or
    /// [`crate::Store::open_with_backend`]). It works until the next power cut.
    pub fn disk(&self) -> SimDisk {
        SimDisk { image: self.clone(), generation: self.lock().generation }
    }

    /// Cuts the power now, with a tear drawn from `rng_bits` (one kind in four: nothing,
    /// everything, a prefix, scattered sectors), and returns the cut. The `SimDisk`s opened
    /// so far fail from now on.
    pub fn crash(&self, rng_bits: u64) -> Cut {
        self.lock().crash(Planned::Bits(rng_bits))
    }

    /// Cuts the power now with this tear.
    pub fn crash_with(&self, tear: Tear) -> Cut {
        self.lock().crash(Planned::Tear(tear))
    }

    /// Cuts the power, as [`DiskImage::crash`] with `rng_bits` does, when the `ops`-th later
    /// mutating operation (write, set_len, sync_data) is attempted: `ops` more succeed, the
    /// next one fails and did not happen. Replaces an earlier schedule.
    pub fn crash_after(&self, ops: u64, rng_bits: u64) {
        self.lock().crash_in = Some((ops, Planned::Bits(rng_bits)));
    }

    /// [`DiskImage::crash_after`] with this tear.
    pub fn crash_after_with(&self, ops: u64, tear: Tear) {
        self.lock().crash_in = Some((ops, Planned::Tear(tear)));
    }

    /// The last power cut, if there was one.
    pub fn last_cut(&self) -> Option<Cut> {
        self.lock().last_cut
    }

    /// Makes one `sync_data` fail: `n` more succeed, the next one returns an error and makes
    /// nothing durable (its writes stay pending). Replaces an earlier schedule; one shot.
    pub fn fail_sync_after(&self, n: u64) {
        self.lock().fail_sync_in = Some(n);
    }

    /// Successful `sync_data` calls so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Mutating operations (write, set_len, sync_data) attempted so far, for
    /// [`DiskImage::crash_after`].
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Power cuts so far.
    pub fn crashes(&self) -> u64 {
        self.lock().crashes
    }

    /// Pieces written since the last sync (what a [`Tear::Prefix`] counts).
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// A copy of the durable bytes.
    pub fn durable_bytes(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// A copy of the bytes a process reads now.
    pub fn volatile_bytes(&self) -> Vec<u8> {
        self.lock().volatile.clone()
    }
}

/// A redb storage backend on a [`DiskImage`]. Dead after the image's next power cut.
#[derive(Debug)]
pub struct SimDisk {
    image: DiskImage,
    generation: u64,
}

impl SimDisk {
    /// A backend on a new empty disk, and the disk.
    pub fn new() -> (SimDisk, DiskImage) {
        let image = DiskImage::new();
        (image.disk(), image)
    }

    /// The image's lock, if this disk survived every power cut so far.
    fn live(&self) -> io::Result<MutexGuard<'_, Disk>> {
        let disk = self.image.lock();
        if disk.generation != self.generation {
            return Err(io::Error::other("the power was cut; open a new SimDisk on the image"));
        }
        Ok(disk)
    }
}

fn range(offset: u64, len: usize) -> io::Result<(usize, usize)> {
    let start = usize::try_from(offset).map_err(io::Error::other)?;
    let end = start.checked_add(len).ok_or_else(|| io::Error::other("offset overflows"))?;
    Ok((start, end))
}

impl redb::StorageBackend for SimDisk {
    fn len(&self) -> io::Result<u64> {
        Ok(self.live()?.volatile.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let (start, end) = range(offset, len)?;
        let disk = self.live()?;
        disk.volatile
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let mut disk = self.live()?;
        disk.mutate()?;
        set_len(&mut disk.volatile, len);
        disk.pending.push(Piece::SetLen(len));
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        let mut disk = self.live()?;
        disk.mutate()?;
        match disk.fail_sync_in {
            Some(0) => {
                disk.fail_sync_in = None;
                return Err(io::Error::other("injected fsync failure"));
            }
            Some(n) => disk.fail_sync_in = Some(n - 1),
            None => {}
        }
        let disk = &mut *disk;
        for piece in disk.pending.drain(..) {
            piece.apply(&mut disk.durable);
        }
        debug_assert_eq!(disk.durable.len(), disk.volatile.len());
        disk.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (start, end) = range(offset, data.len())?;
        let mut disk = self.live()?;
        disk.mutate()?;
        if data.is_empty() {
            return Ok(());
        }
        let disk = &mut *disk;
        if disk.volatile.len() < end {
            set_len(&mut disk.volatile, end);
        }
        disk.volatile[start..end].copy_from_slice(data);
        for index in start / SECTOR_BYTES..=(end - 1) / SECTOR_BYTES {
            let from = index * SECTOR_BYTES;
            let to = (from + SECTOR_BYTES).min(disk.volatile.len());
            disk.pending.push(Piece::Sector { index, bytes: disk.volatile[from..to].into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend as _;

    /// Writes a few overlapping, unaligned pieces and a length change after a sync.
    fn scribble(disk: &SimDisk) {
        disk.write(0, &[1; 1000]).expect("write");
        disk.sync_data(false).expect("sync");
        disk.write(700, &[2; 600]).expect("write");
        disk.set_len(4096).expect("set_len");
        disk.write(3000, &[3; 100]).expect("write");
        disk.write(0, &[4; 10]).expect("write");
    }

    fn synced() -> Vec<u8> {
        vec![1; 1000]
    }

    #[test]
    fn reads_see_every_write_and_a_sync_makes_them_durable() {
        let (disk, image) = SimDisk::new();
        scribble(&disk);
        let volatile = image.volatile_bytes();
        assert_eq!(volatile.len(), 4096);
        assert_eq!(disk.read(0, 4096).expect("read"), volatile);
        assert_eq!(&volatile[..10], &[4; 10]);
        assert_eq!(&volatile[700..1300], &[2; 600][..]);
        assert_eq!(image.durable_bytes(), synced());
        assert!(disk.read(4000, 97).is_err(), "a read past the end fails");
        disk.sync_data(true).expect("sync");
        assert_eq!(image.durable_bytes(), volatile);
        assert_eq!(image.pending(), 0);
        assert_eq!(image.syncs(), 2);
    }

    #[test]
    fn a_cut_keeps_what_its_tear_says_and_kills_the_old_disk() {
        let (disk, image) = SimDisk::new();
        scribble(&disk);
        let volatile = image.volatile_bytes();
        image.crash_with(Tear::Nothing);
        assert_eq!(image.volatile_bytes(), synced());
        assert!(disk.read(0, 1).is_err() && disk.write(0, &[0]).is_err() && disk.len().is_err());
        let disk = image.disk();
        assert_eq!(disk.read(0, 1000).expect("read"), synced());

        scribble(&disk);
        image.crash_with(Tear::Everything);
        assert_eq!(image.durable_bytes(), volatile);
        assert_eq!(image.crashes(), 2);
    }

    /// `image[from..from + len]`, zero-filled past its end (a file grown by `set_len`).
    fn window(image: &[u8], from: usize, len: usize) -> Vec<u8> {
        (from..from + len).map(|i| image.get(i).copied().unwrap_or(0)).collect()
    }

    #[test]
    fn every_sector_after_a_tear_is_as_it_was_at_some_point_since_the_sync() {
        for bits in 0..256u64 {
            let (disk, image) = SimDisk::new();
            disk.write(0, &[1; 1000]).expect("write");
            disk.sync_data(false).expect("sync");
            let mut versions = vec![image.volatile_bytes()];
            disk.write(700, &[2; 600]).expect("write");
            versions.push(image.volatile_bytes());
            disk.set_len(4096).expect("set_len");
            versions.push(image.volatile_bytes());
            disk.write(3000, &[3; 100]).expect("write");
            versions.push(image.volatile_bytes());
            disk.write(0, &[4; 10]).expect("write");
            versions.push(image.volatile_bytes());
            disk.set_len(2000).expect("set_len");
            versions.push(image.volatile_bytes());
            let tear = image.crash(bits).tear;
            let after = image.durable_bytes();
            for (i, sector) in after.chunks(SECTOR_BYTES).enumerate() {
                let from = i * SECTOR_BYTES;
                assert!(
                    versions.iter().any(|v| window(v, from, sector.len()) == sector),
                    "{tear:?}: sector {i} is {sector:?}"
                );
            }
            // The length grows only with something written after the growth.
            if after.len() > 2000 {
                assert_eq!(after.len(), 4096, "{tear:?}");
            }
        }
    }

    #[test]
    fn a_prefix_tear_cuts_the_last_write_at_a_sector_boundary() {
        let (disk, image) = SimDisk::new();
        disk.write(0, &[7; 2048]).expect("write");
        assert_eq!(image.pending(), 4);
        image.crash_with(Tear::Prefix(3));
        assert_eq!(image.durable_bytes(), vec![7; 1536]);
    }

    #[test]
    fn the_same_bits_give_the_same_bytes() {
        let run = |bits| {
            let (disk, image) = SimDisk::new();
            scribble(&disk);
            (image.crash(bits), image.durable_bytes())
        };
        for bits in [0, 1, 2, 3, 99, u64::MAX] {
            assert_eq!(run(bits), run(bits));
        }
    }

    #[test]
    fn a_scheduled_cut_fails_that_operation_and_a_failed_sync_keeps_writes_pending() {
        let (disk, image) = SimDisk::new();
        image.crash_after(2, 1);
        disk.write(0, &[1; 10]).expect("first");
        disk.write(10, &[2; 10]).expect("second");
        assert!(disk.sync_data(false).is_err(), "the third operation meets the cut");
        assert_eq!(image.crashes(), 1);
        assert_eq!(image.ops(), 3);
        let cut = image.last_cut().expect("a cut");
        assert_eq!(cut.pending, 2);

        let disk = image.disk();
        disk.set_len(0).expect("set_len");
        disk.write(0, &[5; 600]).expect("write");
        image.fail_sync_after(1);
        disk.sync_data(false).expect("the first sync succeeds");
        disk.write(600, &[6; 10]).expect("write");
        assert!(disk.sync_data(false).is_err(), "the second fails");
        assert_eq!(image.durable_bytes(), vec![5; 600]);
        assert_eq!(image.pending(), 1);
        disk.sync_data(false).expect("one shot: the third succeeds");
        assert_eq!(image.durable_bytes().len(), 610);
        assert_eq!(image.syncs(), 2);
    }
}
