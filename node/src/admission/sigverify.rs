//! The node's signature-verification stage for incoming txs (RPC submissions and gossip).
//!
//! Every caller hands its signatures to one thread, which takes everything queued at that
//! moment and verifies it as one `verify_many` call spread over rayon's threads. Under load
//! the batches grow by themselves (whatever arrives while one batch is verified makes up the
//! next), and large batches are where batch verification pays: a multiscalar multiplication
//! of 2n+1 points switches from Straus to Pippenger near n = 95 signatures, and batches of
//! 1,024 verify about 25% more signatures per second than batches of 64
//! (`cargo bench -p tally-bench --bench crypto -- verify_many`). A batch of fewer than
//! `LINGER_BELOW` signatures waits up to `LINGER` (3 ms) for more callers before it goes.
//!
//! The stage does not use the verified-signature cache: what it verifies is new to the node
//! (gossip admission first drops txs the mempool holds), and a verified tx lives on as a
//! mempool entry, which is what block validation looks up first (`TxVerifier::known_verified`).
//! Probing and filling the cache cost a digest of every tx and a lock, for a hit on few.

use crate::metrics::SignatureBatches;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;
use tally_crypto::{PublicKey, Signature, SignedItem, Verifier, VerifyError};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Jobs queued for the stage at most (each an RPC submission or batch, or a round of
/// gossiped batches). A caller beyond it waits for a job to finish: async callers without
/// holding a thread, blocking callers on their blocking-pool thread. Nothing is dropped;
/// the callers are themselves bounded (RPC connections and batch lengths, the network's tx
/// queue).
pub const JOBS_MAX: usize = 1024;

/// Signatures verified in one go at most; more waits for the next batch. Large enough for
/// Pippenger's gain, small enough that a caller behind a batch waits tens of milliseconds.
const COMBINED_SIGNATURES_MAX: usize = 8192;
/// A batch smaller than this waits up to `LINGER` for more jobs before it is verified.
/// Under load, what arrives in that time makes the batch cheaper per signature (see
/// `tally_crypto::Verifier::verify_many`); an idle node adds at most `LINGER` to a submission,
/// next to block intervals of hundreds of milliseconds.
const LINGER_BELOW: usize = 1024;
const LINGER: std::time::Duration = std::time::Duration::from_millis(3);

/// One signature, owned: the exact signed bytes ([`tally_ledger::Tx::signing_bytes`]).
pub struct OwnedItem {
    pub key: PublicKey,
    pub message: Vec<u8>,
    pub signature: Signature,
}

struct Job {
    items: Vec<OwnedItem>,
    reply: oneshot::Sender<Vec<Result<(), VerifyError>>>,
    /// The job's place in the queue, given back once its verdicts are sent.
    _slot: OwnedSemaphorePermit,
}

/// Cheap to clone; the thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct SigVerifyStage {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    /// One thread combining every caller's signatures (a running node).
    Thread {
        jobs: mpsc::Sender<Job>,
        /// Places in the queue: [`JOBS_MAX`].
        slots: Arc<Semaphore>,
    },
    /// Each caller's signatures verified at once on its own thread (the simulator).
    Inline { verifier: Arc<Verifier>, metrics: SignatureBatches },
}

/// Verdicts of one job, when they are ready.
pub struct Pending(oneshot::Receiver<Vec<Result<(), VerifyError>>>);

impl Pending {
    fn ready(verdicts: Vec<Result<(), VerifyError>>) -> Pending {
        let (reply, rx) = oneshot::channel();
        let _ = reply.send(verdicts);
        Pending(rx)
    }

    pub async fn wait(self) -> Vec<Result<(), VerifyError>> {
        self.0.await.unwrap_or_default()
    }

    /// For callers on a blocking thread (never on the async runtime's threads, except
    /// for verdicts already given, as an inline stage gives them).
    pub fn wait_blocking(mut self) -> Vec<Result<(), VerifyError>> {
        match self.0.try_recv() {
            Ok(verdicts) => verdicts,
            Err(oneshot::error::TryRecvError::Closed) => Vec::new(),
            Err(oneshot::error::TryRecvError::Empty) => self.0.blocking_recv().unwrap_or_default(),
        }
    }
}

impl SigVerifyStage {
    pub fn start(verifier: Arc<Verifier>, metrics: SignatureBatches) -> std::io::Result<Self> {
        // Unbounded as a channel, bounded by `slots`: a job is sent only with a slot.
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tally-sigverify".into())
            .spawn(move || run(&verifier, &metrics, rx))?;
        Ok(SigVerifyStage {
            mode: Mode::Thread { jobs, slots: Arc::new(Semaphore::new(JOBS_MAX)) },
        })
    }

    /// A stage without a thread: each submission is verified at once by the caller (the
    /// deterministic simulator, where nothing may run beside the one scheduler thread).
    pub fn inline(verifier: Arc<Verifier>, metrics: SignatureBatches) -> Self {
        SigVerifyStage { mode: Mode::Inline { verifier, metrics } }
    }

    /// Queues `items` once the queue has room; verdict i of the result is item i's. An
    /// empty result means the stage has stopped (the node is shutting down): treat it as
    /// "not verified".
    pub async fn submit(&self, items: Vec<OwnedItem>) -> Pending {
        let slots = match &self.mode {
            _ if items.is_empty() => return Pending::ready(Vec::new()),
            Mode::Inline { verifier, metrics } => return verify_now(verifier, metrics, &items),
            Mode::Thread { slots, .. } => slots.clone(),
        };
        match slots.acquire_owned().await {
            Ok(slot) => self.queue(items, slot),
            Err(_) => Pending::ready(Vec::new()),
        }
    }

    /// [`SigVerifyStage::submit`] for callers on a blocking thread (never on the async
    /// runtime's threads): waits for room on this thread.
    pub fn submit_blocking(&self, items: Vec<OwnedItem>) -> Pending {
        let slots = match &self.mode {
            _ if items.is_empty() => return Pending::ready(Vec::new()),
            Mode::Inline { verifier, metrics } => return verify_now(verifier, metrics, &items),
            Mode::Thread { slots, .. } => slots.clone(),
        };
        match futures::executor::block_on(slots.acquire_owned()) {
            Ok(slot) => self.queue(items, slot),
            Err(_) => Pending::ready(Vec::new()),
        }
    }

    fn queue(&self, items: Vec<OwnedItem>, slot: OwnedSemaphorePermit) -> Pending {
        let (reply, rx) = oneshot::channel();
        if let Mode::Thread { jobs, .. } = &self.mode {
            // A send error drops the job and its reply sender: the caller sees an empty
            // verdict list.
            let _ = jobs.send(Job { items, reply, _slot: slot });
        }
        Pending(rx)
    }
}

/// Verifies `items` now, on the caller's thread (rayon may help, but the call returns only
/// with every verdict, so nothing runs beside the caller's task).
fn verify_now(verifier: &Verifier, metrics: &SignatureBatches, items: &[OwnedItem]) -> Pending {
    let signed: Vec<SignedItem<'_>> = items
        .iter()
        .map(|i| SignedItem { key: &i.key, message: &i.message, signature: &i.signature })
        .collect();
    let started = Instant::now();
    let verdicts = verifier.verify_many_uncached(&signed);
    metrics.observe("combined", items.len(), started.elapsed().as_secs_f64());
    Pending::ready(verdicts)
}

fn run(verifier: &Verifier, metrics: &SignatureBatches, rx: mpsc::Receiver<Job>) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut total = first.items.len();
        let mut jobs = vec![first];
        let linger_until = Instant::now() + LINGER;
        while total < COMBINED_SIGNATURES_MAX {
            // A small batch waits a moment for company; a large one goes at once.
            let next = if total < LINGER_BELOW {
                match linger_until.checked_duration_since(Instant::now()) {
                    Some(left) => rx.recv_timeout(left).map_err(|_| ()),
                    None => rx.try_recv().map_err(|_| ()),
                }
            } else {
                rx.try_recv().map_err(|_| ())
            };
            match next {
                Ok(job) if total + job.items.len() > COMBINED_SIGNATURES_MAX => {
                    carried = Some(job);
                    break;
                }
                Ok(job) => {
                    total += job.items.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let items: Vec<SignedItem<'_>> = jobs
            .iter()
            .flat_map(|j| &j.items)
            .map(|i| SignedItem { key: &i.key, message: &i.message, signature: &i.signature })
            .collect();
        let started = Instant::now();
        let mut verdicts = verifier.verify_many_uncached(&items).into_iter();
        metrics.observe("combined", items.len(), started.elapsed().as_secs_f64());
        drop(items);
        for job in jobs {
            let mine: Vec<Result<(), VerifyError>> =
                verdicts.by_ref().take(job.items.len()).collect();
            let _ = job.reply.send(mine);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_crypto::{signing_bytes, ChainId, Domain, Keypair, VerifierConfig};

    fn items(n: usize, bad: Option<usize>) -> Vec<OwnedItem> {
        let chain = ChainId::new("c").unwrap();
        (0..n)
            .map(|i| {
                let kp = Keypair::derive_insecure(&format!("k{}", i % 3));
                let message = signing_bytes(Domain::Tx, &chain, &(i as u64).to_le_bytes());
                let mut signature = kp.sign_raw(&message);
                if bad == Some(i) {
                    signature.0[5] ^= 1;
                }
                OwnedItem { key: kp.public(), message, signature }
            })
            .collect()
    }

    #[test]
    fn concurrent_jobs_each_get_their_own_verdicts() {
        let verifier = Arc::new(Verifier::new(VerifierConfig::default()));
        let stage =
            SigVerifyStage::start(verifier, crate::metrics::Metrics::new().signature_batches())
                .unwrap();
        let jobs: Vec<(usize, Option<usize>, Pending)> = (0..20)
            .map(|j| {
                let n = 1 + j * 37 % 300;
                let bad = (j % 3 == 0).then_some(j % n);
                (n, bad, stage.submit_blocking(items(n, bad)))
            })
            .collect();
        for (n, bad, pending) in jobs {
            let verdicts = pending.wait_blocking();
            assert_eq!(verdicts.len(), n);
            for (i, v) in verdicts.iter().enumerate() {
                assert_eq!(v.is_err(), bad == Some(i), "item {i} of {n}");
            }
        }
        assert!(stage.submit_blocking(Vec::new()).wait_blocking().is_empty());
    }
}
