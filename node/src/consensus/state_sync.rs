//! State sync: a node whose ledger holds no block starts from a peer's snapshot instead of
//! replaying the chain from genesis, then block-syncs the rest as any node that is behind.
//!
//! 1. Discovery: ask every connected peer for its snapshot offers; check each against the
//!    genesis (`tally_ledger::verify_offer`: a certified header whose height, hash and state
//!    root the manifest repeats). A peer whose offer does not verify is penalized. Offers are
//!    grouped by manifest hash: honest nodes chunk deterministically, so every peer with the
//!    same manifest can serve any of its chunks.
//! 2. Choice: the highest height, then the most peers.
//! 3. Fetch: chunks are requested from those peers in turn, a few at a time
//!    (`state_sync.chunk_requests_in_flight`). A chunk that does not match its manifest hash
//!    or layout is refused, its sender penalized and dropped for this snapshot, and the chunk
//!    asked of another peer. A peer that fails three times is dropped too.
//! 4. Restore: the accounts must rebuild the certified state root, or the snapshot is
//!    dropped with every peer that offered it, and discovery starts over without it.
//! 5. Install: accounts, header and certificate in one redb transaction; the snapshot is also
//!    kept in `data/snapshots/` so this node serves it in turn.
//!
//! Nothing a peer sends is trusted: the worst a Byzantine peer can do is cost time. If no
//! snapshot is found within `state_sync.discovery_timeout_ms`, the node falls back to block
//! sync from genesis. While this runs the node answers no RPC and takes no part in consensus;
//! gossip that arrives meanwhile is dropped (the driver catches up by block sync afterwards).

use crate::config::StateSyncConfig;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};
use tally_consensus::Height;
use tally_crypto::{Hash, Verifier};
use tally_ledger::{verify_offer, Genesis, Ledger, Restore, SnapshotDir, SnapshotOffer};
use tally_network::{NetworkEvents, NetworkHandle, PeerId, SyncResponse};

/// Failed chunk requests after which a peer is no longer asked for this snapshot.
const PEER_FAILURES_MAX: u32 = 3;

/// What state sync needs from the node being started.
pub struct StateSync<'a> {
    pub config: &'a StateSyncConfig,
    pub genesis: &'a Genesis,
    pub verifier: &'a Verifier,
    pub net: &'a NetworkHandle,
    pub events: &'a mut NetworkEvents,
    pub snapshots: Option<&'a SnapshotDir>,
}

/// A snapshot offered by one or more peers, checked against the genesis.
struct Candidate {
    offer: SnapshotOffer,
    peers: Vec<PeerId>,
}

impl StateSync<'_> {
    /// Restores the newest snapshot the peers offer into `ledger` (which holds no block).
    /// Returns the height restored, or `None` when no usable snapshot was found in time.
    pub async fn run(mut self, ledger: &mut Ledger) -> anyhow::Result<Option<Height>> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.config.discovery_timeout_ms);
        let mut refused: HashSet<Hash> = HashSet::new();
        tracing::info!("state sync: looking for snapshots");
        while Instant::now() < deadline {
            let Some(candidate) = self.discover(&refused, deadline).await else {
                break;
            };
            let height = candidate.offer.height();
            let manifest_hash = candidate.offer.manifest.hash();
            tracing::info!(
                height = height.0,
                accounts = candidate.offer.manifest.accounts,
                chunks = candidate.offer.manifest.chunks(),
                peers = candidate.peers.len(),
                "state sync: restoring snapshot"
            );
            match self.fetch(&candidate).await {
                Ok((state, accounts, chunks)) => {
                    ledger.install_snapshot(&candidate.offer, state, &accounts)?;
                    if let Some(dir) = self.snapshots {
                        if let Err(e) = dir.write(&candidate.offer, &chunks) {
                            tracing::warn!(error = %e, "state sync: cannot keep the snapshot for serving");
                        }
                    }
                    tracing::info!(
                        height = height.0,
                        accounts = accounts.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "state sync: snapshot restored; block sync continues from here"
                    );
                    return Ok(Some(height));
                }
                Err(reason) => {
                    tracing::warn!(height = height.0, %reason, "state sync: snapshot refused");
                    refused.insert(manifest_hash);
                }
            }
        }
        tracing::warn!(
            "state sync: no usable snapshot within {} ms; block-syncing from genesis",
            self.config.discovery_timeout_ms
        );
        Ok(None)
    }

    /// Asks the connected peers for offers until some verify (then waits
    /// `discovery_settle_ms` for more peers and asks again) or the deadline passes.
    async fn discover(&mut self, refused: &HashSet<Hash>, deadline: Instant) -> Option<Candidate> {
        let settle = Duration::from_millis(self.config.discovery_settle_ms);
        let mut settled = false;
        loop {
            let found = self.poll_offers(refused).await;
            if !found.is_empty() && (settled || Instant::now() + settle >= deadline) {
                return best(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let wait = if found.is_empty() { Duration::from_millis(500) } else { settle };
            settled = !found.is_empty();
            self.drain_for(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// One round of offer requests to every connected peer, verified and grouped.
    async fn poll_offers(&mut self, refused: &HashSet<Hash>) -> Vec<Candidate> {
        let peers: Vec<PeerId> = match self.net.peers().await {
            Ok(peers) => peers.into_iter().map(|p| p.peer_id).collect(),
            Err(_) => return Vec::new(),
        };
        let net = self.net.clone();
        let requests: FuturesUnordered<_> = peers
            .into_iter()
            .map(|peer| {
                let net = net.clone();
                async move { (peer, net.request_snapshots(peer).await) }
            })
            .collect();
        let answers: Vec<_> = self.drain_while(requests.collect::<Vec<_>>()).await;
        let mut by_manifest: BTreeMap<Hash, Candidate> = BTreeMap::new();
        for (peer, answer) in answers {
            let offers = match answer {
                Ok(offers) => offers,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "state sync: no snapshot offers");
                    continue;
                }
            };
            for offer in offers {
                if let Err(e) = verify_offer(self.genesis, &offer, self.verifier) {
                    tracing::warn!(%peer, error = %e, "state sync: peer offered a snapshot that does not verify");
                    let _ = self.net.penalize(peer).await;
                    continue;
                }
                let hash = offer.manifest.hash();
                if refused.contains(&hash) {
                    continue;
                }
                let entry =
                    by_manifest.entry(hash).or_insert_with(|| Candidate { offer, peers: vec![] });
                if !entry.peers.contains(&peer) {
                    entry.peers.push(peer);
                }
            }
        }
        by_manifest.into_values().collect()
    }

    /// Fetches and checks every chunk; returns the restored state, its accounts and the raw
    /// chunks, or why the snapshot cannot be restored.
    async fn fetch(
        &mut self,
        candidate: &Candidate,
    ) -> Result<(tally_ledger::StateTree, Vec<AccountEntry>, Vec<Vec<u8>>), String> {
        let height = candidate.offer.height();
        let mut restore = Restore::new(candidate.offer.manifest.clone());
        let mut raw: Vec<Vec<u8>> = vec![Vec::new(); candidate.offer.manifest.chunks() as usize];
        let mut queue: VecDeque<u32> = restore.missing().into();
        let mut sources = candidate.peers.clone();
        let mut failures: HashMap<PeerId, u32> = HashMap::new();
        let mut turn = 0usize;
        let mut in_flight = FuturesUnordered::new();
        let timeout = Duration::from_millis(self.config.chunk_request_timeout_ms);
        let total = candidate.offer.manifest.chunks();
        while !restore.is_complete() {
            while in_flight.len() < self.config.chunk_requests_in_flight {
                let Some(index) = queue.pop_front() else { break };
                if sources.is_empty() {
                    return Err("no peer left that serves this snapshot correctly".into());
                }
                let peer = sources[turn % sources.len()];
                turn += 1;
                let net = self.net.clone();
                in_flight.push(async move {
                    let answer =
                        tokio::time::timeout(timeout, net.request_chunk(peer, height, index))
                            .await
                            .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))
                            .and_then(|r| r.map_err(|e| e.to_string()));
                    (peer, index, answer)
                });
            }
            let Some((peer, index, answer)) = self.drain_while(in_flight.next()).await else {
                return Err("no chunk request could be made".into());
            };
            let bytes = match answer {
                Ok(bytes) => bytes,
                Err(reason) => {
                    tracing::debug!(%peer, index, %reason, "state sync: chunk request failed");
                    let count = failures.entry(peer).or_default();
                    *count += 1;
                    if *count >= PEER_FAILURES_MAX {
                        sources.retain(|p| *p != peer);
                    }
                    queue.push_back(index);
                    continue;
                }
            };
            if let Err(e) = restore.add_chunk(index, &bytes) {
                tracing::warn!(%peer, index, error = %e, "state sync: peer served a bad chunk; asking another peer");
                let _ = self.net.penalize(peer).await;
                sources.retain(|p| *p != peer);
                queue.push_back(index);
                continue;
            }
            raw[index as usize] = bytes;
            let done = total - restore.missing().len() as u32;
            if done.is_multiple_of(16) || done == total {
                tracing::info!(done, total, "state sync: chunks");
            }
        }
        match restore.finish() {
            Ok((state, accounts)) => Ok((state, accounts, raw)),
            Err(e) => {
                for peer in &candidate.peers {
                    let _ = self.net.penalize(*peer).await;
                }
                Err(e.to_string())
            }
        }
    }

    /// Runs `future` while dropping what the network delivers meanwhile, so the swarm never
    /// blocks on a full consensus channel: gossip is dropped (this node is not in consensus
    /// yet) and peers' sync requests are refused.
    async fn drain_while<F: Future>(&mut self, future: F) -> F::Output {
        tokio::pin!(future);
        loop {
            tokio::select! {
                output = &mut future => return output,
                Some(_) = self.events.consensus.recv() => {}
                Some(_) = self.events.txs.recv() => {}
                Some(request) = self.events.sync_requests.recv() => {
                    request.responder.respond(SyncResponse::Error("state syncing".into()));
                }
            }
        }
    }

    async fn drain_for(&mut self, duration: Duration) {
        self.drain_while(tokio::time::sleep(duration)).await;
    }
}

type AccountEntry = (tally_crypto::PublicKey, tally_ledger::Account);

/// The highest snapshot, then the one the most peers offer.
fn best(candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.into_iter().max_by_key(|c| (c.offer.height(), c.peers.len()))
}
