//! The admission room: transactions on their way into the mempool. RPC submissions and
//! gossiped batches are decoded under size limits, given mempool room before any
//! signature work, verified in combined batches on one stage ([`sigverify`]), and admitted
//! to the chain's mempool; txs admitted through RPC are queued for gossip in batches
//! ([`ingress::run_tx_gossip`]).
//!
//! Every queue here is bounded, with what is dropped when it is full:
//! - the signature stage's job queue ([`sigverify::JOBS_MAX`]): a caller waits for room
//!   (RPC submissions and gossip ingress are themselves bounded upstream);
//! - the gossip queue ([`GOSSIP_QUEUE_MAX`]): a full queue drops the tx from gossip (it
//!   stays in this node's mempool and reaches the chain when this node proposes), counted;
//! - `broadcast_tx_async` checks in flight ([`ASYNC_CHECKS_MAX`]): beyond it a call is
//!   refused as busy.

pub mod ingress;
pub mod sigverify;

use crate::chain::mempool::MempoolError;
use crate::chain::{Chain, Source};
use crate::exec::Exec;
use crate::metrics::Metrics;
use crate::notify::{CommitWaiter, Notify};
use base64::Engine as _;
use sigverify::{OwnedItem, SigVerifyStage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tally_crypto::VerifyError;
use tally_ledger::{DecodeError, StatelessError, Tx, TxHash};
use tokio::sync::{mpsc, Semaphore};

/// Txs admitted through RPC and waiting for the gossip batcher. Full: the tx is not
/// gossiped (counted in `tally_gossip_txs_dropped`), but stays in the mempool.
pub const GOSSIP_QUEUE_MAX: usize = 65_536;

/// `broadcast_tx_async` calls whose checks run in the background at once, at most; more
/// are refused as busy (each holds a task and a tx until its signature is checked).
pub const ASYNC_CHECKS_MAX: usize = 4096;

/// Why a submitted tx was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("tx is not valid base64: {0}")]
    Encoding(String),
    #[error("tx does not decode: {0}")]
    Decode(String),
    #[error("tx is malformed: {0}")]
    Stateless(#[from] StatelessError),
    #[error("invalid signature: {0}")]
    Signature(#[from] VerifyError),
    #[error("{0}")]
    Mempool(#[from] MempoolError),
    #[error("too many broadcast_tx_commit calls are waiting ({0}); try again later")]
    TooManyWaiters(usize),
    #[error("too many broadcast_tx_async checks are running ({0}); try again later")]
    TooManyAsync(usize),
    #[error("the node is catching up with its peers (block sync); submit to a node that is not syncing, or retry later")]
    Syncing,
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl SubmitError {
    /// The stable code of the refusal (CometBFT's `code`, in codespace "tally"; the README
    /// lists them). 0 is never used: it means accepted.
    pub fn code(&self) -> u32 {
        match self {
            SubmitError::Decode(_) => 1,
            SubmitError::Stateless(_) => 2,
            SubmitError::Signature(_) => 3,
            SubmitError::Mempool(MempoolError::AlreadyKnown(_)) => 4,
            SubmitError::Mempool(MempoolError::BadNonce { .. }) => 5,
            SubmitError::Mempool(MempoolError::InsufficientBalance { .. }) => 6,
            SubmitError::Mempool(MempoolError::Full { .. } | MempoolError::SenderFull(_)) => 7,
            SubmitError::TooManyWaiters(_) | SubmitError::TooManyAsync(_) => 8,
            SubmitError::Syncing => 9,
            SubmitError::ShuttingDown => 10,
            SubmitError::Encoding(_) => 11,
        }
    }

    /// Whether the refusal is about the tx (a result with a code) rather than about the
    /// request or the node's state (a JSON-RPC error): the base64 is broken, or the node
    /// is syncing, busy or stopping.
    pub fn is_about_the_tx(&self) -> bool {
        !matches!(
            self,
            SubmitError::Encoding(_)
                | SubmitError::Syncing
                | SubmitError::TooManyWaiters(_)
                | SubmitError::TooManyAsync(_)
                | SubmitError::ShuttingDown
        )
    }

    /// A stable machine-readable reason, in the error's `data.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            SubmitError::Encoding(_) => "bad_encoding",
            SubmitError::Decode(_) => "bad_tx",
            SubmitError::Stateless(_) => "malformed_tx",
            SubmitError::Signature(_) => "bad_signature",
            SubmitError::Mempool(MempoolError::AlreadyKnown(_)) => "already_known",
            SubmitError::Mempool(MempoolError::Full { .. } | MempoolError::SenderFull(_)) => {
                "mempool_full"
            }
            SubmitError::Mempool(MempoolError::BadNonce { .. }) => "bad_nonce",
            SubmitError::Mempool(MempoolError::InsufficientBalance { .. }) => {
                "insufficient_balance"
            }
            SubmitError::TooManyWaiters(_) | SubmitError::TooManyAsync(_) => "busy",
            SubmitError::Syncing => "syncing",
            SubmitError::ShuttingDown => "shutting_down",
        }
    }
}

impl From<DecodeError> for SubmitError {
    fn from(e: DecodeError) -> Self {
        SubmitError::Decode(e.to_string())
    }
}

/// The admission path, shared by the RPC methods and the gossip ingress.
pub struct Admission {
    chain: Arc<Chain>,
    notify: Arc<Notify>,
    sigverify: SigVerifyStage,
    gossip: mpsc::Sender<Tx>,
    gossip_dropped: AtomicU64,
    async_checks: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    exec: Exec,
}

impl Admission {
    /// Starts the signature stage (its thread, or inline under [`Exec::Inline`]); `gossip`
    /// is the sending side of the queue the gossip batcher ([`ingress::run_tx_gossip`])
    /// reads (capacity [`GOSSIP_QUEUE_MAX`]).
    pub fn start(
        chain: Arc<Chain>,
        notify: Arc<Notify>,
        gossip: mpsc::Sender<Tx>,
        metrics: Arc<Metrics>,
        exec: Exec,
    ) -> std::io::Result<Admission> {
        let (verifier, batches) = (chain.verifier().clone(), metrics.signature_batches());
        let sigverify = match exec {
            Exec::Threads => SigVerifyStage::start(verifier, batches)?,
            Exec::Inline { .. } => SigVerifyStage::inline(verifier, batches),
        };
        Ok(Admission {
            chain,
            notify,
            sigverify,
            gossip,
            gossip_dropped: AtomicU64::new(0),
            async_checks: Arc::new(Semaphore::new(ASYNC_CHECKS_MAX)),
            metrics,
            exec,
        })
    }

    /// Txs admitted through RPC that the gossip queue had no room for.
    pub fn gossip_dropped(&self) -> u64 {
        self.gossip_dropped.load(Ordering::Relaxed)
    }

    /// The bytes of a base64 tx parameter, its size bounded before decoding.
    pub fn decode_tx_param(&self, param: Option<&str>) -> Result<Vec<u8>, SubmitError> {
        let s = param.ok_or_else(|| SubmitError::Encoding("missing parameter: tx".into()))?;
        // An upper bound on the decoded size, checked before decoding anything.
        if s.len() > tally_ledger::TX_BYTES_MAX * 4 / 3 + 4 {
            return Err(SubmitError::Decode(format!(
                "tx is larger than the limit of {} bytes",
                tally_ledger::TX_BYTES_MAX
            )));
        }
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| SubmitError::Encoding(e.to_string()))
    }

    /// A syncing node's state is behind its peers': its nonce and balance checks would
    /// judge against old state, and it does not propose, so txs are refused outright.
    pub fn refuse_while_syncing(&self) -> Result<(), SubmitError> {
        if self.notify.catching_up() {
            self.metrics.tx_refused_syncing.inc();
            return Err(SubmitError::Syncing);
        }
        Ok(())
    }

    fn decode_checked(&self, bytes: &[u8]) -> Result<Tx, SubmitError> {
        let tx = Tx::decode(bytes)?;
        tx.check_stateless()?;
        Ok(tx)
    }

    /// Registers interest in the commit of the tx in `bytes` (before submitting it, so that
    /// a fast commit is not missed).
    pub fn commit_waiter_for(&self, bytes: &[u8]) -> Result<CommitWaiter, SubmitError> {
        self.refuse_while_syncing()?;
        let tx = self.decode_checked(bytes)?;
        self.notify.commit_waiter(tx.hash()).map_err(|e| SubmitError::TooManyWaiters(e.0))
    }

    /// Decodes, checks the signature and admits one tx to the mempool, then queues it for
    /// gossip.
    pub async fn submit_tx(&self, bytes: Vec<u8>) -> Result<TxHash, SubmitError> {
        self.refuse_while_syncing()?;
        let tx = self.decode_checked(&bytes)?;
        let room = self.chain.claim_room(1, Source::Rpc);
        if room.granted() == 0 {
            self.metrics.refused_full("rpc", 1);
            return Err(self.chain.mempool_full().into());
        }
        self.verify_signature(&tx).await?;
        self.admit(tx, bytes.len() as u64)
    }

    /// Checks one tx's signature on the signature stage.
    async fn verify_signature(&self, tx: &Tx) -> Result<(), SubmitError> {
        let item = OwnedItem {
            key: tx.transfer.from,
            message: tx.signing_bytes(self.chain.chain_id()),
            signature: tx.signature,
        };
        match self.sigverify.submit(vec![item]).await.wait().await.pop() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.into()),
            None => Err(SubmitError::ShuttingDown),
        }
    }

    /// Runs every check `submit_tx` runs (decoding, the stateless rules, the signature, the
    /// mempool's nonce, balance and room), admitting nothing (CometBFT's `check_tx`).
    pub async fn check_tx(&self, bytes: Vec<u8>) -> Result<TxHash, SubmitError> {
        let tx = self.decode_checked(&bytes)?;
        self.verify_signature(&tx).await?;
        let hash = tx.hash();
        self.chain.check(&tx, &hash, bytes.len() as u64)?;
        Ok(hash)
    }

    /// Like `submit_tx`, but answers once the tx decodes; the checks run in the background
    /// (CometBFT's broadcast_tx_async), at most [`ASYNC_CHECKS_MAX`] at once. A refusal
    /// then is only logged.
    pub fn submit_tx_async(self: &Arc<Self>, bytes: Vec<u8>) -> Result<TxHash, SubmitError> {
        self.refuse_while_syncing()?;
        let tx = self.decode_checked(&bytes)?;
        let hash = tx.hash();
        let permit = self
            .async_checks
            .clone()
            .try_acquire_owned()
            .map_err(|_| SubmitError::TooManyAsync(ASYNC_CHECKS_MAX))?;
        let admission = self.clone();
        tokio::spawn(async move {
            if let Err(e) = admission.submit_tx(bytes).await {
                tracing::debug!(%hash, error = %e, "async tx refused");
            }
            drop(permit);
        });
        Ok(hash)
    }

    /// Submits many base64 txs: signatures batch-verified in parallel, then admitted in
    /// order.
    pub async fn submit_batch(
        self: &Arc<Self>,
        txs: Vec<String>,
    ) -> Vec<Result<TxHash, SubmitError>> {
        if let Err(e) = self.refuse_while_syncing() {
            return vec![Err(e)];
        }
        let admission = self.clone();
        let work = self.exec.run(move || admission.submit_batch_blocking(txs));
        match work.await {
            Ok(results) => results,
            Err(e) => vec![Err(SubmitError::Decode(format!("batch task failed: {e}")))],
        }
    }

    fn submit_batch_blocking(&self, txs: Vec<String>) -> Vec<Result<TxHash, SubmitError>> {
        // Room is claimed first: the txs beyond it are refused, in submission order, before
        // they are even decoded (a client retrying a full node costs it little). A tx that
        // does not decode uses none of this batch's share (its claim is held until the
        // batch is admitted, like the rest).
        let room = self.chain.claim_room(txs.len(), Source::Rpc);
        let mut left = room.granted();
        let mut full: Option<SubmitError> = None;
        let mut refused = 0;
        let decoded: Vec<Result<(Tx, u64), SubmitError>> = txs
            .iter()
            .map(|s| {
                if left == 0 {
                    refused += 1;
                    return Err(full
                        .get_or_insert_with(|| self.chain.mempool_full().into())
                        .clone());
                }
                let bytes = self.decode_tx_param(Some(s))?;
                let tx = self.decode_checked(&bytes)?;
                left -= 1;
                Ok((tx, bytes.len() as u64))
            })
            .collect();
        if refused > 0 {
            self.metrics.refused_full("rpc", refused);
        }
        let (ok, items): (Vec<usize>, Vec<OwnedItem>) = decoded
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref().ok().map(|(tx, _)| {
                    let item = OwnedItem {
                        key: tx.transfer.from,
                        message: tx.signing_bytes(self.chain.chain_id()),
                        signature: tx.signature,
                    };
                    (i, item)
                })
            })
            .unzip();
        let count = items.len();
        let verdicts = if count == 0 {
            Vec::new()
        } else {
            let started = Instant::now();
            let verdicts = self.sigverify.submit_blocking(items).wait_blocking();
            self.metrics.signature_batch("rpc", count, started.elapsed().as_secs_f64());
            verdicts
        };
        let mut sig_ok = vec![true; decoded.len()];
        let mut sig_err: HashMap<usize, VerifyError> = HashMap::new();
        for (pos, i) in ok.iter().enumerate() {
            match verdicts.get(pos) {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    sig_ok[*i] = false;
                    sig_err.insert(*i, *e);
                }
                None => sig_ok[*i] = false,
            }
        }
        decoded
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let (tx, len) = r?;
                if !sig_ok[i] {
                    return Err(sig_err
                        .get(&i)
                        .map_or(SubmitError::ShuttingDown, |e| SubmitError::Signature(*e)));
                }
                self.admit(tx, len)
            })
            .collect()
    }

    fn admit(&self, tx: Tx, len: u64) -> Result<TxHash, SubmitError> {
        let hash = tx.hash();
        self.chain.insert(tx, hash, len)?;
        if self.gossip.try_send(tx).is_err() {
            self.gossip_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(hash)
    }
}
