//! How the rooms run work that blocks a thread (a redb write with its fsync, a batch of
//! signature checks, a store read for a peer), and where the wall clock comes from.
//!
//! A running node uses tokio's blocking pool and the system clock. The deterministic
//! simulator (`sim`, with the `sim` feature) runs the same code with the work done inline,
//! on the one thread that runs every task, and with a clock that follows tokio's paused
//! time: then the order of everything that happens depends only on the seed.
//!
//! This room imports no other; every room may import it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;

/// Where blocking work runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exec {
    /// On tokio's blocking pool (a running node).
    #[default]
    Threads,
    /// At once, on the caller's thread, its result handed over `latency_ms` of (simulated)
    /// time later, as a disk or a busy core would (the deterministic simulator).
    Inline { latency_ms: u64 },
}

/// Work started by [`Exec::spawn`]: a future of its result.
pub enum Work<T> {
    Pending(JoinHandle<T>),
    Done(Option<T>),
    Later(Option<T>, Pin<Box<tokio::time::Sleep>>),
}

/// The work panicked (or was cancelled with the runtime).
#[derive(Debug, thiserror::Error)]
#[error("blocking work failed: {0}")]
pub struct WorkFailed(String);

impl<T: Unpin> Future for Work<T> {
    type Output = Result<T, WorkFailed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Work::Pending(handle) => {
                Pin::new(handle).poll(cx).map(|r| r.map_err(|e| WorkFailed(e.to_string())))
            }
            Work::Done(value) => match value.take() {
                Some(v) => Poll::Ready(Ok(v)),
                None => Poll::Ready(Err(WorkFailed("polled after completion".into()))),
            },
            Work::Later(value, sleep) => match sleep.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => match value.take() {
                    Some(v) => Poll::Ready(Ok(v)),
                    None => Poll::Ready(Err(WorkFailed("polled after completion".into()))),
                },
            },
        }
    }
}

impl Exec {
    /// Starts `f`: on the blocking pool, or runs it now.
    pub fn spawn<T, F>(self, f: F) -> Work<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self {
            Exec::Threads => Work::Pending(tokio::task::spawn_blocking(f)),
            Exec::Inline { latency_ms: 0 } => Work::Done(Some(f())),
            Exec::Inline { latency_ms } => {
                let done = f();
                let sleep = tokio::time::sleep(std::time::Duration::from_millis(latency_ms));
                Work::Later(Some(done), Box::pin(sleep))
            }
        }
    }

    /// Runs `f` (see [`Exec::spawn`]) and waits for it.
    pub async fn run<T, F>(self, f: F) -> Result<T, WorkFailed>
    where
        T: Send + Unpin + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.spawn(f).await
    }
}

/// Milliseconds since the Unix epoch, for block times.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// A clock that reads `start_ms` plus the tokio time elapsed since it was made: under
/// tokio's paused clock (the simulator) it moves only with simulated time.
pub fn tokio_clock(start_ms: u64) -> Clock {
    let origin = tokio::time::Instant::now();
    Arc::new(move || start_ms + origin.elapsed().as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_kinds_of_work_give_their_result() {
        assert_eq!(Exec::Threads.run(|| 2 + 2).await.unwrap(), 4);
        assert_eq!(Exec::Inline { latency_ms: 0 }.run(|| 3 + 3).await.unwrap(), 6);
        let failed = Exec::Threads.run(|| -> u8 { panic!("boom") }).await;
        assert!(failed.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn inline_work_with_latency_is_handed_over_later() {
        let started = tokio::time::Instant::now();
        let v = Exec::Inline { latency_ms: 7 }.run(|| 5).await.unwrap();
        assert_eq!((v, started.elapsed().as_millis()), (5, 7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let clock = tokio_clock(1_000);
        assert_eq!(clock(), 1_000);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(clock(), 1_250);
    }
}
