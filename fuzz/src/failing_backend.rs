//! A redb storage backend in memory that fails on demand and can crash.
//!
//! It keeps two images of the file: `written` (what the OS has: every write) and `durable`
//! (what survives a power cut: the image at the last successful `sync_data`). A crash freezes
//! the backend (the dropped database can write nothing more) and the store is reopened from
//! one of the two images: `written` for a process crash, `durable` for a power cut.

use parking::Mutex;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

mod parking {
    /// `std::sync::Mutex` without poisoning: a panicking fuzz iteration aborts anyway.
    #[derive(Debug, Default)]
    pub struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Images {
    written: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug)]
struct State {
    images: Mutex<Images>,
    /// Operations left before every operation fails; `u64::MAX` when nothing is armed.
    ops_left: AtomicU64,
    crashed: AtomicBool,
    failures: AtomicU64,
}

/// How the process died, which decides what the reopened store sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// The process died; the OS kept every write.
    Process,
    /// The machine lost power; only synced data survives.
    PowerLoss,
}

#[derive(Debug, Clone)]
pub struct FailingBackend(Arc<State>);

impl Default for FailingBackend {
    fn default() -> Self {
        FailingBackend::from_image(Vec::new())
    }
}

impl FailingBackend {
    /// A backend holding `image` as both its written and its durable image, nothing armed.
    pub fn from_image(image: Vec<u8>) -> FailingBackend {
        FailingBackend(Arc::new(State {
            images: Mutex::new(Images { written: image.clone(), durable: image }),
            ops_left: AtomicU64::new(u64::MAX),
            crashed: AtomicBool::new(false),
            failures: AtomicU64::new(0),
        }))
    }

    /// After `ops` more successful operations, every operation fails.
    pub fn fail_after(&self, ops: u64) {
        self.0.ops_left.store(ops, Ordering::SeqCst);
    }

    /// How many operations have failed so far.
    pub fn failures(&self) -> u64 {
        self.0.failures.load(Ordering::SeqCst)
    }

    /// What the OS has (every write so far), for use as a template with [`Self::from_image`].
    pub fn written_image(&self) -> Vec<u8> {
        self.0.images.lock().written.clone()
    }

    /// Freezes this backend and returns a fresh one holding what survives `crash`.
    pub fn crash(&self, crash: Crash) -> FailingBackend {
        self.0.crashed.store(true, Ordering::SeqCst);
        let images = self.0.images.lock().clone();
        FailingBackend::from_image(match crash {
            Crash::Process => images.written,
            Crash::PowerLoss => images.durable,
        })
    }

    fn check(&self) -> io::Result<()> {
        if self.0.crashed.load(Ordering::SeqCst) {
            return Err(io::Error::other("the process crashed"));
        }
        let left = self.0.ops_left.load(Ordering::SeqCst);
        if left == 0 {
            self.0.failures.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other("injected IO failure"));
        }
        if left != u64::MAX {
            self.0.ops_left.store(left - 1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn index(offset: u64, len: usize) -> io::Result<(usize, usize)> {
    let start = usize::try_from(offset).map_err(io::Error::other)?;
    let end = start.checked_add(len).ok_or_else(|| io::Error::other("offset overflows"))?;
    Ok((start, end))
}

impl redb::StorageBackend for FailingBackend {
    fn len(&self) -> io::Result<u64> {
        self.check()?;
        Ok(self.0.images.lock().written.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.check()?;
        let (start, end) = index(offset, len)?;
        let images = self.0.images.lock();
        images
            .written
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.0.images.lock().written.resize(len, 0);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        self.check()?;
        let mut images = self.0.images.lock();
        images.durable = images.written.clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        let (start, end) = index(offset, data.len())?;
        let mut images = self.0.images.lock();
        if images.written.len() < end {
            images.written.resize(end, 0);
        }
        images.written[start..end].copy_from_slice(data);
        Ok(())
    }
}
