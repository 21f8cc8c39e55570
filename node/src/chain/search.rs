//! Searches over committed txs and blocks with CometBFT's query language (`tx_search`,
//! `block_search`), and the follower that keeps the event index (`tally_ledger::event_index`)
//! up with the ledger, off the consensus path.
//!
//! How a tx search runs, cheapest first:
//! 1. `tx.hash = '...'`: the tx index by hash gives the one candidate;
//! 2. `transfer.sender = '...'` or `transfer.recipient = '...'`: a range scan of the event
//!    index over that account's transfers, between the heights the `tx.height` conditions
//!    allow;
//! 3. otherwise: the blocks between those heights, each tx a candidate.
//!
//! Each candidate is checked against every condition (its block is read only when a
//! condition needs more than the scan gave), counted, and kept only if it falls in the
//! page asked for: memory is bounded by the page, never by the number of matches. The work
//! one search may do is bounded too: it examines at most `tx_index.scan_max` candidates,
//! then fails with an error saying how to narrow the query.

use super::query::{block_values, tx_values, EventQuery};
use super::{Chain, FoundTx};
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tally_consensus::Height;
use tally_crypto::PublicKey;
use tally_ledger::event_index::Role;
use tally_ledger::{Account, Block, EventIndex, Tx, TxHash};

/// How often the follower looks for newly committed blocks.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// Most blocks the follower indexes in one write.
const FOLLOW_BATCH_BLOCKS: u64 = 4;

/// Which part of the matches to return.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub skip: u64,
    pub take: u64,
    pub ascending: bool,
}

/// A page of matches and how many there are in all.
pub struct Found<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("tx indexing is off on this node (tx_index.indexer = \"null\")")]
    Off,
    #[error(
        "the search examined {0} candidates (tx_index.scan_max) without finishing; narrow \
         it with transfer.sender, transfer.recipient, tx.hash or a tx.height range"
    )]
    TooBroad(u64),
    #[error("the event index is at height {indexed}, behind the tip {tip}; retry in a moment")]
    Behind { indexed: u64, tip: u64 },
    #[error("height {0} is above the latest height")]
    AboveTip(u64),
    #[error(transparent)]
    Index(#[from] tally_ledger::EventIndexError),
    #[error("reading the ledger: {0}")]
    Read(String),
}

/// The searches, and the event index behind them (none when indexing is off).
pub struct Search {
    chain: Arc<Chain>,
    /// Set once at start ([`Search::attach`]) when indexing is on.
    index: OnceLock<EventIndex>,
    scan_max: u64,
}

/// What a search knows of a candidate when it checks it.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    /// The scan that found it decides every condition.
    Decided,
    /// The tx itself.
    Known(&'a Tx, &'a TxHash),
    /// Only where it is, in a scan of whole blocks: its block is read (once for all its
    /// txs).
    InBlock,
    /// Only where it is, found by the index: the tx alone is read out of its block.
    At,
}

/// The block last read by a scan, so that consecutive candidates of one block read it once.
struct BlockCache {
    block: Option<Block>,
}

impl BlockCache {
    fn get(&mut self, chain: &Chain, h: u64) -> Result<Option<&Block>, SearchError> {
        if self.block.as_ref().is_none_or(|b| b.header.height.0 != h) {
            let ledger = chain.ledger.read();
            self.block =
                ledger.store().block(Height(h)).map_err(|e| SearchError::Read(e.to_string()))?;
        }
        Ok(self.block.as_ref())
    }
}

impl Search {
    /// Searches with no index yet: tx searches fail with [`SearchError::Off`] until
    /// [`Search::attach`].
    pub fn new(chain: Arc<Chain>, scan_max: u64) -> Search {
        Search { chain, index: OnceLock::new(), scan_max }
    }

    /// Turns indexing on with `index` (once; a second index is refused and returned).
    pub fn attach(&self, index: EventIndex) -> Result<(), EventIndex> {
        self.index.set(index)
    }

    pub fn is_on(&self) -> bool {
        self.index.get().is_some()
    }

    /// The highest height searches see: the index's, and never above the tip.
    fn searchable_height(&self) -> Result<u64, SearchError> {
        let index = self.index.get().ok_or(SearchError::Off)?;
        let tip = self.chain.tip_height().map_or(0, |h| h.0);
        Ok(index.indexed_height()?.min(tip))
    }

    /// Indexes the blocks committed since the last call (at most a batch of them); returns
    /// whether it indexed any. Called by the follower task.
    pub fn follow_once(&self) -> Result<bool, SearchError> {
        let Some(index) = self.index.get() else { return Ok(false) };
        let tip = self.chain.tip_height().map_or(0, |h| h.0);
        let from = index.indexed_height()? + 1;
        if from > tip {
            return Ok(false);
        }
        let to = tip.min(from + FOLLOW_BATCH_BLOCKS - 1);
        let mut blocks = Vec::new();
        for h in from..=to {
            // The ledger's lock is taken per block, never across the batch: commits wait
            // for one block read at most.
            let block = self.chain.ledger.read().store().block(Height(h));
            match block {
                Ok(Some(b)) => blocks.push(b),
                // A node restored from a snapshot holds no block at or below its base:
                // there is nothing to index there.
                Ok(None) => break,
                Err(e) => return Err(SearchError::Read(e.to_string())),
            }
        }
        if blocks.is_empty() {
            // A node restored from a snapshot holds no block at or below its base: its
            // index starts after the base.
            let base = self.chain.ledger.read().store().base().ok().flatten();
            if let Some(base) = base.filter(|b| b.0 >= from) {
                index.skip_to(base.0)?;
                return Ok(true);
            }
            return Ok(false);
        }
        index.index_blocks(&blocks)?;
        Ok(true)
    }

    /// `tx_search`: the committed transfers matching `query`, a page of them.
    pub fn txs(
        &self,
        query: &EventQuery,
        page: Page,
        prove: bool,
    ) -> Result<Found<FoundTx>, SearchError> {
        let top = self.searchable_height()?;
        let kinds = query.event_kinds();
        if kinds.is_some_and(|k| !k.contains(&"Tx")) {
            return Ok(Found { items: Vec::new(), total: 0 });
        }
        let (lo, hi) = query.height_bounds("tx.height", 1, top);
        let mut total = 0u64;
        let mut hits: Vec<(u64, u32)> = Vec::new();
        let mut examined = 0u64;
        let mut cache = BlockCache { block: None };
        let mut failure: Option<SearchError> = None;
        // Checks one candidate; breaks when the budget is spent or a read fails.
        let mut consider = |h: u64, i: u32, tx: Candidate<'_>, cache: &mut BlockCache| {
            examined += 1;
            if examined > self.scan_max {
                failure = Some(SearchError::TooBroad(self.scan_max));
                return ControlFlow::Break(());
            }
            let matched = match tx {
                Candidate::Decided => true,
                Candidate::Known(tx, hash) => query.matches(|k| tx_values(tx, hash, h, k)),
                Candidate::At => match read_tx(&self.chain, h, i) {
                    Ok(Some(tx)) => {
                        let hash = tx.hash();
                        query.matches(|k| tx_values(&tx, &hash, h, k))
                    }
                    Ok(None) => false,
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                },
                Candidate::InBlock => match cache.get(&self.chain, h) {
                    Ok(Some(block)) => match block.txs.get(i as usize) {
                        Some(tx) => {
                            let hash = tx.hash();
                            query.matches(|k| tx_values(tx, &hash, h, k))
                        }
                        None => false,
                    },
                    Ok(None) => false,
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                },
            };
            if matched {
                if total >= page.skip && total < page.skip + page.take {
                    hits.push((h, i));
                }
                total += 1;
            }
            ControlFlow::Continue(())
        };
        if let Some(hash) = query.equal_string("tx.hash") {
            let Some(hash) = parse_tx_hash(hash) else {
                return Ok(Found { items: Vec::new(), total: 0 });
            };
            let found = self
                .chain
                .reader()
                .tx(hash, false)
                .map_err(|e| SearchError::Read(e.to_string()))?;
            if let Some(f) = found.filter(|f| f.height.0 >= lo && f.height.0 <= hi) {
                let _ = consider(f.height.0, f.index, Candidate::Known(&f.tx, &hash), &mut cache);
            }
        } else if let Some((role, account)) = account_condition(query) {
            let index = self.index.get().ok_or(SearchError::Off)?;
            // The scan alone decides a query on the account and heights only.
            let scan_decides = query.only_on(&["tm.event", "tx.height", role_key(role)]);
            let how = if scan_decides { Candidate::Decided } else { Candidate::At };
            index.scan(role, &account, lo, hi, page.ascending, |h, i| {
                consider(h, i, how, &mut cache)
            })?;
        } else {
            let heights: Box<dyn Iterator<Item = u64>> =
                if page.ascending { Box::new(lo..=hi) } else { Box::new((lo..=hi).rev()) };
            'blocks: for h in heights {
                let n = match cache.get(&self.chain, h)? {
                    Some(b) => b.txs.len() as u32,
                    None => continue,
                };
                let order: Box<dyn Iterator<Item = u32>> =
                    if page.ascending { Box::new(0..n) } else { Box::new((0..n).rev()) };
                for i in order {
                    if consider(h, i, Candidate::InBlock, &mut cache).is_break() {
                        break 'blocks;
                    }
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let reader = self.chain.reader();
        let mut items = Vec::with_capacity(hits.len());
        for (h, i) in hits {
            let Some(tx) = read_tx(&self.chain, h, i)? else { continue };
            let found = if prove {
                reader.tx(tx.hash(), true).map_err(|e| SearchError::Read(e.to_string()))?
            } else {
                None
            };
            let proof = found.and_then(|f| f.proof);
            items.push(FoundTx { height: Height(h), index: i, tx, proof });
        }
        Ok(Found { items, total })
    }

    /// The account `key` as it was after block `height`, from its state `now` after block
    /// `now_height`: the transfers it sent and received after `height` (found in the event
    /// index, read from their blocks) are undone. No proof: the state tree of a past height
    /// is not kept.
    pub fn account_at(
        &self,
        key: &PublicKey,
        height: u64,
        now: Account,
        now_height: u64,
    ) -> Result<Account, SearchError> {
        if height > now_height {
            return Err(SearchError::AboveTip(height));
        }
        let index = self.index.get().ok_or(SearchError::Off)?;
        let indexed = index.indexed_height()?;
        if indexed < now_height {
            return Err(SearchError::Behind { indexed, tip: now_height });
        }
        let (mut balance, mut nonce) = (i128::from(now.balance), now.nonce);
        let mut examined = 0u64;
        let mut failure = None;
        for role in [Role::Sender, Role::Recipient] {
            index.scan(role, key, height + 1, now_height, true, |h, i| {
                examined += 1;
                if examined > self.scan_max {
                    failure = Some(SearchError::TooBroad(self.scan_max));
                    return ControlFlow::Break(());
                }
                match read_tx(&self.chain, h, i) {
                    Ok(Some(tx)) => {
                        let amount = i128::from(tx.transfer.amount);
                        if role == Role::Sender {
                            balance += amount;
                            nonce = nonce.saturating_sub(1);
                        } else {
                            balance -= amount;
                        }
                        ControlFlow::Continue(())
                    }
                    Ok(None) => ControlFlow::Continue(()),
                    Err(e) => {
                        failure = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let balance = u64::try_from(balance).map_err(|_| {
            SearchError::Read(format!("account {key} undone to a balance of {balance}"))
        })?;
        Ok(Account { balance, nonce })
    }

    /// `block_search`: the heights of the committed blocks matching `query` (on
    /// `block.height`; tally's blocks emit no other attribute), a page of them.
    pub fn blocks(&self, query: &EventQuery, page: Page) -> Result<Found<u64>, SearchError> {
        let tip = self.chain.tip_height().map_or(0, |h| h.0);
        let earliest =
            self.chain.ledger.read().store().base().ok().flatten().map_or(1, |b| b.0 + 1);
        let (lo, hi) = query.height_bounds("block.height", earliest, tip);
        if lo > hi || !query.only_on(&["tm.event", "block.height"]) {
            return Ok(Found { items: Vec::new(), total: 0 });
        }
        if hi - lo + 1 > self.scan_max {
            return Err(SearchError::TooBroad(self.scan_max));
        }
        let heights: Box<dyn Iterator<Item = u64>> =
            if page.ascending { Box::new(lo..=hi) } else { Box::new((lo..=hi).rev()) };
        let mut total = 0;
        let mut items = Vec::new();
        for h in heights {
            if query.matches(|k| block_values("NewBlock", h, k)) {
                if total >= page.skip && total < page.skip + page.take {
                    items.push(h);
                }
                total += 1;
            }
        }
        Ok(Found { items, total })
    }
}

/// Tx `i` of the block at height `h`, read alone out of the block's bytes.
fn read_tx(chain: &Chain, h: u64, i: u32) -> Result<Option<Tx>, SearchError> {
    let ledger = chain.ledger.read();
    ledger.store().tx_at(Height(h), i).map_err(|e| SearchError::Read(e.to_string()))
}

fn role_key(role: Role) -> &'static str {
    match role {
        Role::Sender => "transfer.sender",
        Role::Recipient => "transfer.recipient",
    }
}

/// The account of an `=` condition on the sender or recipient, if the query has one.
fn account_condition(query: &EventQuery) -> Option<(Role, PublicKey)> {
    [Role::Sender, Role::Recipient].into_iter().find_map(|role| {
        let hex = query.equal_string(role_key(role))?;
        // Not a key: no transfer can match; the scan of an all-zero key finds none.
        Some((role, PublicKey::from_hex(hex).unwrap_or(PublicKey([0; 32]))))
    })
}

fn parse_tx_hash(hex: &str) -> Option<TxHash> {
    tally_crypto::Hash::from_hex(&hex.to_ascii_lowercase()).ok().map(TxHash)
}

/// Starts the follower on a thread of its own at the lowest priority (on Linux, nice 19):
/// it indexes each block once the ledger holds it, until `stop` is set. When the cores are
/// saturated, consensus and signature checks go first and the index falls behind; it
/// catches up when the load drops.
pub fn spawn_follower(
    search: Arc<Search>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("tally-indexer".into()).spawn(move || {
        lower_priority();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match search.follow_once() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the event index could not follow the ledger")
                }
            }
            std::thread::sleep(FOLLOW_INTERVAL);
        }
    })
}

/// Lowers this thread's scheduling priority (where the OS lets it; otherwise it stays).
fn lower_priority() {
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::debug!(error = ?e, "could not lower the indexer thread's priority");
    }
}
