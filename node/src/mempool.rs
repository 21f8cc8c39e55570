//! The mempool: pending transactions, bounded in count and bytes, deduplicated by hash, kept
//! in nonce order per sender.
//!
//! Admission (the caller has already checked the signature): the nonce must be the sender's
//! next one, counting its pending transactions (committed nonce + pending count), and the
//! committed balance minus the pending spends must cover the amount. So every pending
//! transaction is executable in order on top of the committed state, as long as no conflicting
//! transaction (same sender and nonce, admitted by another node) commits first; `update`
//! removes those after each commit.
//!
//! Each sender with pending txs keeps a copy of its committed account, read once (when its
//! first pending tx is admitted) instead of from the state tree for every tx: under load most
//! admissions are of senders that already have txs pending. So `update` must be told of
//! every account a commit changes, recipients included (a recipient's balance grows).
//!
//! Reaping takes transactions in arrival order, which per sender is nonce order.
//!
//! The mempool also remembers the tx hashes of the last blocks this node found valid or
//! committed (up to `txs_max` hashes, at least the last block's), a little like CometBFT's
//! mempool cache. Under load, a proposal often arrives before the gossip of its newest
//! txs: the node fetches them from a peer and verifies them with the block, and their
//! gossiped copies arrive after that, some after the commit. Dropping those copies before
//! their signatures are checked keeps a node that fell behind from verifying each tx twice.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use tally_consensus::BlockHash;
use tally_crypto::PublicKey;
use tally_ledger::{Account, Tx, TxHash};

#[derive(Clone, Copy, Debug)]
pub struct MempoolLimits {
    pub txs_max: usize,
    pub bytes_max: u64,
    pub txs_per_sender_max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("tx {0} is already in the mempool")]
    AlreadyKnown(TxHash),
    #[error("mempool is full ({txs} txs, {bytes} bytes)")]
    Full { txs: usize, bytes: u64 },
    #[error("sender has {0} pending txs, the most allowed")]
    SenderFull(usize),
    #[error("wrong nonce: expected {expected}, got {got}")]
    BadNonce { expected: u64, got: u64 },
    #[error("insufficient balance: available {available}, amount {amount}")]
    InsufficientBalance { available: u64, amount: u64 },
}

struct Entry {
    tx: Tx,
    bytes: u64,
    seq: u64,
}

struct Sender {
    /// The committed account, as of the last commit that changed it.
    committed: Account,
    /// Pending txs by nonce; nonces are contiguous from the committed nonce.
    by_nonce: BTreeMap<u64, TxHash>,
    /// Sum of the pending amounts.
    spent: u64,
}

/// Hashed with foldhash (seeded per process): cheaper than SipHash on the admission path,
/// and still keyed, since senders choose their keys and, by grinding, their tx hashes.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

pub struct Mempool {
    limits: MempoolLimits,
    by_hash: Map<TxHash, Entry>,
    senders: Map<PublicKey, Sender>,
    /// Arrival order; the reaping order.
    order: BTreeMap<u64, TxHash>,
    next_seq: u64,
    bytes: u64,
    /// The tx hashes of the last blocks found valid or committed, oldest first.
    recent: VecDeque<(BlockHash, Set<TxHash>)>,
    /// Hashes in `recent`, in all.
    recent_len: usize,
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            by_hash: Map::default(),
            senders: Map::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            recent: VecDeque::new(),
            recent_len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Whether the tx is in one of the last blocks found valid or committed (see the module
    /// docs).
    pub fn in_recent_block(&self, hash: &TxHash) -> bool {
        self.recent.iter().rev().any(|(_, set)| set.contains(hash))
    }

    /// Remembers the tx hashes of a block found valid or committed (once per block),
    /// forgetting the oldest blocks' beyond `txs_max` hashes in all (the newest block's are
    /// always kept).
    pub fn remember_block(&mut self, block: BlockHash, hashes: &[TxHash]) {
        if hashes.is_empty() || self.recent.iter().any(|(b, _)| *b == block) {
            return;
        }
        while !self.recent.is_empty() && self.recent_len + hashes.len() > self.limits.txs_max {
            let (_, oldest) = self.recent.pop_front().expect("not empty");
            self.recent_len -= oldest.len();
        }
        let set: Set<TxHash> = hashes.iter().copied().collect();
        self.recent_len += set.len();
        self.recent.push_back((block, set));
    }

    pub fn get(&self, hash: &TxHash) -> Option<&Tx> {
        self.by_hash.get(hash).map(|e| &e.tx)
    }

    /// The nonce the sender's next tx must carry, given its committed account.
    pub fn next_nonce(&self, sender: &PublicKey, committed: &Account) -> u64 {
        let pending = self.senders.get(sender).map_or(0, |s| s.by_nonce.len() as u64);
        committed.nonce.saturating_add(pending)
    }

    /// A [`Sifter`] for gossiped txs; `committed` reads the committed account of a sender
    /// with no pending tx.
    pub fn sifter<F: Fn(&PublicKey) -> Account>(&self, committed: F) -> Sifter<'_, F> {
        Sifter { mempool: self, expected: Map::default(), committed }
    }

    /// Admits a signature-checked tx. `committed` reads the sender's committed account; it is
    /// called only if the sender has no pending tx yet.
    pub fn insert(
        &mut self,
        tx: Tx,
        hash: TxHash,
        bytes: u64,
        committed: impl FnOnce(&PublicKey) -> Account,
    ) -> Result<(), MempoolError> {
        if self.by_hash.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown(hash));
        }
        if self.by_hash.len() >= self.limits.txs_max
            || self.bytes.saturating_add(bytes) > self.limits.bytes_max
        {
            return Err(MempoolError::Full { txs: self.by_hash.len(), bytes: self.bytes });
        }
        let t = &tx.transfer;
        let sender = self.senders.entry(t.from).or_insert_with(|| Sender {
            committed: committed(&t.from),
            by_nonce: BTreeMap::new(),
            spent: 0,
        });
        if sender.by_nonce.len() >= self.limits.txs_per_sender_max {
            return Err(MempoolError::SenderFull(sender.by_nonce.len()));
        }
        let committed = sender.committed;
        let expected = committed.nonce.saturating_add(sender.by_nonce.len() as u64);
        let available = committed.balance.saturating_sub(sender.spent);
        let verdict = if t.nonce != expected {
            Err(MempoolError::BadNonce { expected, got: t.nonce })
        } else if t.amount > available {
            Err(MempoolError::InsufficientBalance { available, amount: t.amount })
        } else {
            Ok(())
        };
        if let Err(e) = verdict {
            if sender.by_nonce.is_empty() {
                self.senders.remove(&t.from);
            }
            return Err(e);
        }
        sender.by_nonce.insert(t.nonce, hash);
        sender.spent = sender.spent.saturating_add(t.amount);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, hash);
        self.bytes += bytes;
        self.by_hash.insert(hash, Entry { tx, bytes, seq });
        Ok(())
    }

    /// Up to `txs_max` txs and `bytes_max` bytes, in arrival order, for a block proposal.
    pub fn reap(&self, txs_max: usize, bytes_max: u64) -> Vec<Tx> {
        self.reap_hashed(txs_max, bytes_max).0
    }

    /// [`Mempool::reap`], with the txs' hashes (`.1[i]` is the hash of `.0[i]`).
    pub fn reap_hashed(&self, txs_max: usize, bytes_max: u64) -> (Vec<Tx>, Vec<TxHash>) {
        let len = txs_max.min(self.by_hash.len());
        let (mut txs, mut hashes) = (Vec::with_capacity(len), Vec::with_capacity(len));
        let mut bytes = 0u64;
        for hash in self.order.values() {
            if txs.len() >= txs_max {
                break;
            }
            let entry = &self.by_hash[hash];
            if bytes + entry.bytes > bytes_max {
                break;
            }
            bytes += entry.bytes;
            txs.push(entry.tx);
            hashes.push(*hash);
        }
        (txs, hashes)
    }

    /// The `limit` oldest pending txs, in arrival order (for re-gossip).
    pub fn oldest(&self, limit: usize) -> Vec<Tx> {
        self.order.values().take(limit).map(|h| self.by_hash[h].tx).collect()
    }

    /// After a commit: drops the `committed` txs, then for each account in `touched` (every
    /// account the commit changed: the senders and recipients of its txs) that has pending
    /// txs, takes its new committed account from `account` and drops the txs that can no
    /// longer execute (nonce already used, a gap, or spends above the balance). Returns how
    /// many were dropped as no longer valid.
    pub fn update(
        &mut self,
        committed: &[TxHash],
        touched: &[PublicKey],
        account: impl Fn(&PublicKey) -> Account,
    ) -> usize {
        for hash in committed {
            self.remove(hash);
        }
        let mut touched = touched.to_vec();
        touched.sort_unstable();
        touched.dedup();
        let mut dropped = 0;
        for key in touched {
            if self.senders.contains_key(&key) {
                dropped += self.revalidate_sender(&key, account(&key));
            }
        }
        dropped
    }

    fn revalidate_sender(&mut self, from: &PublicKey, committed: Account) -> usize {
        let Some(sender) = self.senders.get_mut(from) else { return 0 };
        sender.committed = committed;
        // Pending nonces are contiguous, so all of them still apply exactly when the first
        // is the committed nonce and the balance covers their sum: the usual case (the
        // block took a prefix of this sender's txs, or paid it), checked without a walk.
        if sender.by_nonce.keys().next() == Some(&committed.nonce)
            && sender.spent <= committed.balance
        {
            return 0;
        }
        let sender = &*sender;
        let mut keep_until_nonce = committed.nonce;
        let mut available = committed.balance;
        let mut stale: Vec<TxHash> = Vec::new();
        for (&nonce, hash) in &sender.by_nonce {
            let amount = self.by_hash[hash].tx.transfer.amount;
            if nonce == keep_until_nonce && amount <= available {
                keep_until_nonce += 1;
                available -= amount;
            } else {
                stale.push(*hash);
            }
        }
        for hash in &stale {
            self.remove(hash);
        }
        stale.len()
    }

    fn remove(&mut self, hash: &TxHash) -> Option<Tx> {
        let entry = self.by_hash.remove(hash)?;
        self.order.remove(&entry.seq);
        self.bytes -= entry.bytes;
        let t = &entry.tx.transfer;
        if let Some(sender) = self.senders.get_mut(&t.from) {
            sender.by_nonce.remove(&t.nonce);
            sender.spent = sender.spent.saturating_sub(t.amount);
            if sender.by_nonce.is_empty() {
                self.senders.remove(&t.from);
            }
        }
        Some(entry.tx)
    }
}

/// Why a gossiped tx is dropped before its signature is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// It is in the mempool.
    Pending,
    /// It is in a block this node recently found valid or committed.
    InBlock,
    /// Its nonce is not the one the mempool would take: already used, or after a gap.
    Nonce,
}

/// Picks, among gossiped txs taken in order, those the mempool could admit once their
/// signatures verify, so that the others are not verified for nothing (see
/// `Shared::sift_gossip`). It counts the txs it let through: a sender's next tx must carry
/// the nonce after them.
pub struct Sifter<'a, F> {
    mempool: &'a Mempool,
    expected: Map<PublicKey, u64>,
    committed: F,
}

impl<F: Fn(&PublicKey) -> Account> Sifter<'_, F> {
    pub fn check(&mut self, tx: &Tx, hash: &TxHash) -> Result<(), Skip> {
        let m = self.mempool;
        if m.contains(hash) {
            return Err(Skip::Pending);
        }
        if m.in_recent_block(hash) {
            return Err(Skip::InBlock);
        }
        let from = tx.transfer.from;
        let next = self.expected.entry(from).or_insert_with(|| match m.senders.get(&from) {
            Some(s) => s.committed.nonce.saturating_add(s.by_nonce.len() as u64),
            None => (self.committed)(&from).nonce,
        });
        if tx.transfer.nonce != *next {
            return Err(Skip::Nonce);
        }
        *next += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_crypto::{ChainId, Keypair};
    use tally_ledger::Transfer;

    fn tx(from: &Keypair, to: &Keypair, amount: u64, nonce: u64) -> Tx {
        let chain = ChainId::new("t").unwrap();
        let transfer = Transfer { from: from.public(), to: to.public(), amount, nonce };
        Tx::sign(transfer, from, &chain)
    }

    fn limits() -> MempoolLimits {
        MempoolLimits { txs_max: 10, bytes_max: 10_000, txs_per_sender_max: 5 }
    }

    fn add(m: &mut Mempool, t: &Tx, acct: &Account) -> Result<(), MempoolError> {
        m.insert(*t, t.hash(), 150, |_| *acct)
    }

    #[test]
    fn nonce_order_dedup_and_balance() {
        let (a, b) = (Keypair::derive_insecure("a"), Keypair::derive_insecure("b"));
        let acct = Account { balance: 100, nonce: 3 };
        let mut m = Mempool::new(limits());
        assert_eq!(
            add(&mut m, &tx(&a, &b, 1, 4), &acct),
            Err(MempoolError::BadNonce { expected: 3, got: 4 })
        );
        let t3 = tx(&a, &b, 60, 3);
        add(&mut m, &t3, &acct).unwrap();
        assert_eq!(add(&mut m, &t3, &acct), Err(MempoolError::AlreadyKnown(t3.hash())));
        assert_eq!(
            add(&mut m, &tx(&a, &b, 50, 4), &acct),
            Err(MempoolError::InsufficientBalance { available: 40, amount: 50 })
        );
        add(&mut m, &tx(&a, &b, 40, 4), &acct).unwrap();
        assert_eq!(m.next_nonce(&a.public(), &acct), 5);
        assert_eq!(m.len(), 2);
        assert_eq!(m.bytes(), 300);
        let reaped = m.reap(10, 10_000);
        assert_eq!(reaped.iter().map(|t| t.transfer.nonce).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(m.reap(1, 10_000).len(), 1);
        assert_eq!(m.oldest(1).iter().map(|t| t.transfer.nonce).collect::<Vec<_>>(), vec![3]);
        assert_eq!(m.reap(10, 299).len(), 1);
        let (txs, hashes) = m.reap_hashed(10, 10_000);
        assert_eq!(hashes, txs.iter().map(Tx::hash).collect::<Vec<_>>());
    }

    #[test]
    fn limits_refuse() {
        let b = Keypair::derive_insecure("b");
        let mut m = Mempool::new(limits());
        let a = Keypair::derive_insecure("a");
        let acct = Account { balance: 1000, nonce: 0 };
        for n in 0..5 {
            add(&mut m, &tx(&a, &b, 1, n), &acct).unwrap();
        }
        assert_eq!(add(&mut m, &tx(&a, &b, 1, 5), &acct), Err(MempoolError::SenderFull(5)));
        for i in 0..5 {
            let s = Keypair::derive_insecure(&format!("s{i}"));
            add(&mut m, &tx(&s, &b, 1, 0), &acct).unwrap();
        }
        let s = Keypair::derive_insecure("late");
        assert!(matches!(add(&mut m, &tx(&s, &b, 1, 0), &acct), Err(MempoolError::Full { .. })));
    }

    #[test]
    fn update_removes_committed_and_conflicting() {
        let (a, b) = (Keypair::derive_insecure("a"), Keypair::derive_insecure("b"));
        let acct = Account { balance: 100, nonce: 0 };
        let mut m = Mempool::new(limits());
        let txs: Vec<_> = (0..4).map(|n| tx(&a, &b, 10, n)).collect();
        for t in &txs {
            add(&mut m, t, &acct).unwrap();
        }
        // Another node's tx with nonce 0 and amount 80 committed instead of ours,
        // followed by our nonce 1: ours with nonce 0 is gone, 2 and 3 stay.
        let after = Account { balance: 100 - 80 - 10, nonce: 2 };
        let dropped = m.update(&[txs[1].hash()], &[a.public()], |_| after);
        assert_eq!(dropped, 2, "nonce 0 is used; nonce 3 no longer fits the balance");
        assert_eq!(m.len(), 1);
        assert!(m.contains(&txs[2].hash()));
        assert_eq!(m.bytes(), 150);
        let dropped =
            m.update(&[txs[2].hash()], &[a.public()], |_| Account { balance: 0, nonce: 3 });
        assert_eq!(dropped, 0);
        assert!(m.is_empty());
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn a_sender_account_is_read_once_and_refreshed_by_update() {
        let (a, b) = (Keypair::derive_insecure("a"), Keypair::derive_insecure("b"));
        let mut m = Mempool::new(limits());
        let mut reads = 0;
        let t0 = tx(&a, &b, 10, 0);
        m.insert(t0, t0.hash(), 150, |_| {
            reads += 1;
            Account { balance: 10, nonce: 0 }
        })
        .unwrap();
        // The pending sender's copy is used: the closure's richer account is not read.
        let t1 = tx(&a, &b, 5, 1);
        let refused = m.insert(t1, t1.hash(), 150, |_| Account { balance: 1_000, nonce: 0 });
        assert_eq!(refused, Err(MempoolError::InsufficientBalance { available: 0, amount: 5 }));
        assert_eq!(reads, 1);
        // A commit paid `a` (it is a recipient of the block): told through `update`.
        let dropped =
            m.update(&[], &[a.public(), b.public()], |_| Account { balance: 15, nonce: 0 });
        assert_eq!(dropped, 0);
        m.insert(t1, t1.hash(), 150, |_| unreachable!("a is pending")).unwrap();
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn block_tx_hashes_are_remembered_for_txs_max_txs_and_at_least_one_block() {
        let (a, b) = (Keypair::derive_insecure("a"), Keypair::derive_insecure("b"));
        let hashes: Vec<TxHash> = (0..30).map(|n| tx(&a, &b, 1, n).hash()).collect();
        let block = |n: u8| BlockHash(tally_crypto::Hash([n; 32]));
        let mut m = Mempool::new(limits()); // txs_max 10
        m.remember_block(block(1), &hashes[0..4]);
        m.remember_block(block(2), &[]);
        m.remember_block(block(3), &hashes[4..10]);
        // Found valid, then committed: remembered once.
        m.remember_block(block(3), &hashes[4..10]);
        assert_eq!(m.recent_len, 10);
        assert!(hashes[0..10].iter().all(|h| m.in_recent_block(h)));
        assert!(!m.in_recent_block(&hashes[10]));
        // One more block: the oldest goes, as a whole.
        m.remember_block(block(4), &hashes[10..13]);
        assert!(hashes[0..4].iter().all(|h| !m.in_recent_block(h)));
        assert!(hashes[4..13].iter().all(|h| m.in_recent_block(h)));
        // A block larger than txs_max is kept whole, alone.
        m.remember_block(block(5), &hashes[13..30]);
        assert!(hashes[4..13].iter().all(|h| !m.in_recent_block(h)));
        assert!(hashes[13..30].iter().all(|h| m.in_recent_block(h)));
        assert_eq!(m.recent.len(), 1);
        // Remembering is not holding: the mempool itself is untouched.
        assert!(m.is_empty());
    }

    #[test]
    fn the_sifter_lets_through_what_the_mempool_could_admit() {
        let (a, b, c) = (
            Keypair::derive_insecure("a"),
            Keypair::derive_insecure("b"),
            Keypair::derive_insecure("c"),
        );
        let acct = Account { balance: 100, nonce: 3 };
        let mut m = Mempool::new(limits());
        let pending = tx(&a, &b, 1, 3);
        add(&mut m, &pending, &acct).unwrap();
        let committed = tx(&c, &b, 1, 0);
        let block = BlockHash(tally_crypto::Hash([7; 32]));
        m.remember_block(block, &[committed.hash()]);
        let reads = std::cell::Cell::new(0);
        let mut sifter = m.sifter(|_| {
            reads.set(reads.get() + 1);
            Account { balance: 100, nonce: 1 }
        });
        let mut check = |t: &Tx| sifter.check(t, &t.hash());
        assert_eq!(check(&pending), Err(Skip::Pending));
        assert_eq!(check(&committed), Err(Skip::InBlock));
        // `a` is pending at nonce 3: 4 is next, then 5; 4 again is used, 7 is after a gap.
        assert_eq!(check(&tx(&a, &b, 1, 4)), Ok(()));
        assert_eq!(check(&tx(&a, &b, 1, 4)), Err(Skip::Nonce));
        assert_eq!(check(&tx(&a, &b, 1, 7)), Err(Skip::Nonce));
        assert_eq!(check(&tx(&a, &b, 1, 5)), Ok(()));
        // `c` has nothing pending: its committed account says nonce 1 (read once).
        assert_eq!(check(&tx(&c, &b, 2, 0)), Err(Skip::Nonce));
        assert_eq!(check(&tx(&c, &b, 1, 1)), Ok(()));
        assert_eq!(check(&tx(&c, &b, 1, 2)), Ok(()));
        assert_eq!(reads.get(), 1);
        // Sifting admits nothing.
        assert_eq!(m.len(), 1);
    }
}
