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
//! Gossiped txs are sifted before their signatures are checked ([`Sifter`]): txs already
//! pending, and txs whose nonce the mempool cannot take (used, or after a gap), are dropped
//! unverified. Under overload most of what arrives is such txs (a node that dropped one tx
//! of a sender for lack of room cannot admit the sender's later ones), and verifying them
//! only for the mempool to refuse them took the CPU that commits blocks.

use std::collections::{BTreeMap, HashMap, HashSet};
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

impl Sender {
    /// The nonce its next tx must carry: pending nonces are contiguous from the committed one.
    fn next_nonce(&self) -> u64 {
        self.committed.nonce.saturating_add(self.by_nonce.len() as u64)
    }
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
}

/// A sender's checks on its next tx: room among its pending txs, the nonce after them, and
/// the balance left after them.
fn check_sender_with(limits: &MempoolLimits, sender: &Sender, tx: &Tx) -> Result<(), MempoolError> {
    let t = &tx.transfer;
    if sender.by_nonce.len() >= limits.txs_per_sender_max {
        return Err(MempoolError::SenderFull(sender.by_nonce.len()));
    }
    let expected = sender.next_nonce();
    let available = sender.committed.balance.saturating_sub(sender.spent);
    if t.nonce != expected {
        Err(MempoolError::BadNonce { expected, got: t.nonce })
    } else if t.amount > available {
        Err(MempoolError::InsufficientBalance { available, amount: t.amount })
    } else {
        Ok(())
    }
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
        Sifter { mempool: self, nonces: Map::default(), passed: Set::default(), committed }
    }

    /// Whether [`Mempool::insert`] would admit this signature-checked tx, without admitting
    /// it (CometBFT's `check_tx`): the same checks in the same order.
    pub fn check(
        &self,
        tx: &Tx,
        hash: &TxHash,
        bytes: u64,
        committed: impl FnOnce(&PublicKey) -> Account,
    ) -> Result<(), MempoolError> {
        self.check_room(hash, bytes)?;
        let t = &tx.transfer;
        match self.senders.get(&t.from) {
            Some(sender) => check_sender_with(&self.limits, sender, tx),
            None => {
                let sender =
                    Sender { committed: committed(&t.from), by_nonce: BTreeMap::new(), spent: 0 };
                check_sender_with(&self.limits, &sender, tx)
            }
        }
    }

    fn check_room(&self, hash: &TxHash, bytes: u64) -> Result<(), MempoolError> {
        if self.by_hash.contains_key(hash) {
            return Err(MempoolError::AlreadyKnown(*hash));
        }
        if self.by_hash.len() >= self.limits.txs_max
            || self.bytes.saturating_add(bytes) > self.limits.bytes_max
        {
            return Err(MempoolError::Full { txs: self.by_hash.len(), bytes: self.bytes });
        }
        Ok(())
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
        self.check_room(&hash, bytes)?;
        let t = &tx.transfer;
        let sender = self.senders.entry(t.from).or_insert_with(|| Sender {
            committed: committed(&t.from),
            by_nonce: BTreeMap::new(),
            spent: 0,
        });
        let verdict = check_sender_with(&self.limits, sender, &tx);
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
    /// It is in the mempool, or was let through earlier by the same sifter.
    Pending,
    /// Its nonce is one the mempool cannot take: already used (committed or pending), or
    /// after a gap.
    Nonce,
}

/// Picks, among gossiped txs taken in order, those the mempool could admit once their
/// signatures verify, so that the others are not verified for nothing.
///
/// A sender's tx passes if its nonce is between the one the mempool expects next and one
/// past the highest nonce already let through. Several txs with the same nonce all pass:
/// the sifter has not checked their signatures, so one with a forged signature must not
/// take the slot of the genuine one (a peer could otherwise keep a sender's txs out of the
/// mempool by sending forgeries first). Forgeries cost only their verification, as before.
pub struct Sifter<'a, F> {
    mempool: &'a Mempool,
    /// Per sender: the nonce the mempool expects, and one past the highest let through.
    nonces: Map<PublicKey, (u64, u64)>,
    /// Hashes let through: a second copy of one is dropped as pending.
    passed: Set<TxHash>,
    committed: F,
}

impl<F: Fn(&PublicKey) -> Account> Sifter<'_, F> {
    pub fn check(&mut self, tx: &Tx, hash: &TxHash) -> Result<(), Skip> {
        let m = self.mempool;
        if m.contains(hash) || self.passed.contains(hash) {
            return Err(Skip::Pending);
        }
        let from = tx.transfer.from;
        let (expected, next) = self.nonces.entry(from).or_insert_with(|| {
            let expected = match m.senders.get(&from) {
                Some(s) => s.next_nonce(),
                None => (self.committed)(&from).nonce,
            };
            (expected, expected)
        });
        let nonce = tx.transfer.nonce;
        if nonce < *expected || nonce > *next {
            return Err(Skip::Nonce);
        }
        if nonce == *next {
            *next += 1;
        }
        self.passed.insert(*hash);
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
        let reads = std::cell::Cell::new(0);
        let mut sifter = m.sifter(|_| {
            reads.set(reads.get() + 1);
            Account { balance: 100, nonce: 1 }
        });
        let mut check = |t: &Tx| sifter.check(t, &t.hash());
        assert_eq!(check(&pending), Err(Skip::Pending));
        // `a` is pending at nonce 3: 4 is next, then 5; 3 is used, 7 is after a gap.
        let a4 = tx(&a, &b, 1, 4);
        assert_eq!(check(&a4), Ok(()));
        assert_eq!(check(&a4), Err(Skip::Pending), "a second copy");
        assert_eq!(check(&tx(&a, &b, 2, 3)), Err(Skip::Nonce));
        assert_eq!(check(&tx(&a, &b, 1, 7)), Err(Skip::Nonce));
        assert_eq!(check(&tx(&a, &b, 1, 5)), Ok(()));
        // `c` has nothing pending: its committed account says nonce 1 (read once); a
        // committed tx (nonce 0) is used.
        assert_eq!(check(&tx(&c, &b, 1, 0)), Err(Skip::Nonce));
        assert_eq!(check(&tx(&c, &b, 1, 1)), Ok(()));
        assert_eq!(check(&tx(&c, &b, 1, 2)), Ok(()));
        assert_eq!(reads.get(), 1);
        // Sifting admits nothing.
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_forged_tx_does_not_take_the_nonce_of_the_genuine_one() {
        let (a, b) = (Keypair::derive_insecure("a"), Keypair::derive_insecure("b"));
        let m = Mempool::new(limits());
        let mut sifter = m.sifter(|_| Account { balance: 100, nonce: 0 });
        let genuine = tx(&a, &b, 1, 0);
        let mut forged = genuine;
        forged.signature.0[0] ^= 1;
        let mut check = |t: &Tx| sifter.check(t, &t.hash());
        // The forgery comes first: both pass, verification tells them apart.
        assert_eq!(check(&forged), Ok(()));
        assert_eq!(check(&genuine), Ok(()));
        assert_eq!(check(&tx(&a, &b, 1, 1)), Ok(()));
        assert_eq!(check(&tx(&a, &b, 1, 3)), Err(Skip::Nonce));
    }
}
