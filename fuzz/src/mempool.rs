//! Target `mempool`: `tally_node::chain::mempool::Mempool` under arbitrary insert / commit / reap
//! sequences, against a model that keeps the pool as one list in arrival order and recomputes
//! everything from it.
//!
//! Oracles, after every operation: the same verdict for each insert (same error), the same
//! reaped and oldest txs in the same order, the same number of txs dropped by an update, and
//! the same length, byte total, membership and next nonce per sender.

use crate::fixtures::account_key;
use std::collections::BTreeMap;
use tally_crypto::{PublicKey, Signature};
use tally_ledger::{Account, Transfer, Tx, TxHash};
use tally_node::chain::mempool::{Mempool, MempoolError, MempoolLimits};

const ACCOUNTS: u8 = 4;
const OPS_MAX: usize = 300;

struct Entry {
    hash: TxHash,
    tx: Tx,
    bytes: u64,
}

/// The model: arrival order is the list order.
struct Model {
    limits: MempoolLimits,
    entries: Vec<Entry>,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    fn pending<'a>(&'a self, from: &'a PublicKey) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.tx.transfer.from == *from)
    }

    fn insert(
        &mut self,
        tx: Tx,
        hash: TxHash,
        bytes: u64,
        committed: &Account,
    ) -> Result<(), MempoolError> {
        if self.entries.iter().any(|e| e.hash == hash) {
            return Err(MempoolError::AlreadyKnown(hash));
        }
        let total = self.bytes();
        if self.entries.len() >= self.limits.txs_max
            || total.saturating_add(bytes) > self.limits.bytes_max
        {
            return Err(MempoolError::Full { txs: self.entries.len(), bytes: total });
        }
        let t = tx.transfer;
        let count = self.pending(&t.from).count();
        if count >= self.limits.txs_per_sender_max {
            return Err(MempoolError::SenderFull(count));
        }
        let spent = self.pending(&t.from).fold(0u64, |s, e| s.saturating_add(e.tx.transfer.amount));
        let expected = committed.nonce.saturating_add(count as u64);
        let available = committed.balance.saturating_sub(spent);
        if t.nonce != expected {
            return Err(MempoolError::BadNonce { expected, got: t.nonce });
        }
        if t.amount > available {
            return Err(MempoolError::InsufficientBalance { available, amount: t.amount });
        }
        self.entries.push(Entry { hash, tx, bytes });
        Ok(())
    }

    fn reap(&self, txs_max: usize, bytes_max: u64) -> Vec<Tx> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for e in &self.entries {
            if out.len() >= txs_max || bytes + e.bytes > bytes_max {
                break;
            }
            bytes += e.bytes;
            out.push(e.tx);
        }
        out
    }

    /// Removes the committed txs, then keeps of each touched account's pending txs only the
    /// run that still applies (consecutive nonces from the committed one, affordable).
    fn update(
        &mut self,
        committed: &[TxHash],
        touched: &[PublicKey],
        accounts: &BTreeMap<PublicKey, Account>,
    ) -> usize {
        self.entries.retain(|e| !committed.contains(&e.hash));
        let mut dropped = 0;
        for from in touched.iter().copied().collect::<std::collections::BTreeSet<_>>() {
            let account = accounts.get(&from).copied().unwrap_or_default();
            let mut mine: Vec<(u64, TxHash, u64)> = self
                .pending(&from)
                .map(|e| (e.tx.transfer.nonce, e.hash, e.tx.transfer.amount))
                .collect();
            mine.sort();
            let (mut next, mut available) = (account.nonce, account.balance);
            let mut stale = Vec::new();
            for (nonce, hash, amount) in mine {
                if nonce == next && amount <= available {
                    next += 1;
                    available -= amount;
                } else {
                    stale.push(hash);
                }
            }
            dropped += stale.len();
            self.entries.retain(|e| !stale.contains(&e.hash));
        }
        dropped
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

fn tx(from: u8, to: u8, amount: u64, nonce: u64) -> Tx {
    let transfer = Transfer { from: account_key(from), to: account_key(to), amount, nonce };
    // The mempool never checks signatures (admission does, before it).
    Tx { transfer, signature: Signature([0; 64]) }
}

pub fn run(data: &[u8]) {
    let mut r = Reader(data);
    let limits = MempoolLimits {
        txs_max: 1 + usize::from(r.byte() % 16),
        bytes_max: 50 * u64::from(r.byte()),
        txs_per_sender_max: 1 + usize::from(r.byte() % 6),
    };
    let mut accounts: BTreeMap<PublicKey, Account> = (0..ACCOUNTS)
        .map(|i| (account_key(i), Account { balance: 10 * u64::from(r.byte()), nonce: 0 }))
        .collect();
    let mut pool = Mempool::new(limits);
    let mut model = Model { limits, entries: Vec::new() };
    let mut ops = 0;
    while !r.0.is_empty() && ops < OPS_MAX {
        ops += 1;
        match r.byte() % 5 {
            0 | 1 => {
                let (from, to) = (r.byte() % ACCOUNTS, r.byte() % ACCOUNTS);
                let account = accounts[&account_key(from)];
                // Mostly the next nonce, sometimes a gap or a stale one.
                let delta = r.byte();
                let nonce = match delta % 8 {
                    0 => account.nonce.saturating_sub(1),
                    1 => pool.next_nonce(&account_key(from), &account) + 1,
                    _ => pool.next_nonce(&account_key(from), &account),
                };
                let amount = u64::from(r.byte());
                let bytes = if r.byte() % 4 == 0 {
                    u64::from(r.byte())
                } else {
                    tally_ledger::TX_BYTES as u64
                };
                let t = tx(from, to, amount, nonce);
                let got = pool.insert(t, t.hash(), bytes, |_| account);
                let want = model.insert(t, t.hash(), bytes, &account);
                assert_eq!(got, want, "insert verdicts differ");
            }
            2 => {
                let (n, b) = (usize::from(r.byte() % 20), 40 * u64::from(r.byte()));
                assert_eq!(pool.reap(n, b), model.reap(n, b), "reap differs");
                let n = usize::from(r.byte() % 20);
                assert_eq!(pool.oldest(n), model.reap(n, u64::MAX), "oldest differs");
            }
            3 => {
                // A block commits the first `n` txs the pool would reap (those that still
                // apply), plus possibly one tx from elsewhere that spends a sender's nonce.
                let n = usize::from(r.byte() % 8);
                let mut committed = Vec::new();
                let mut touched = Vec::new();
                for t in pool.reap(n, u64::MAX) {
                    let a = accounts.get_mut(&t.transfer.from).expect("known sender");
                    if t.transfer.nonce == a.nonce && t.transfer.amount <= a.balance {
                        a.nonce += 1;
                        a.balance -= t.transfer.amount;
                        let to = accounts.get_mut(&t.transfer.to).expect("known recipient");
                        to.balance = to.balance.saturating_add(t.transfer.amount);
                        committed.push(t.hash());
                        touched.extend([t.transfer.from, t.transfer.to]);
                    }
                }
                let other = r.byte();
                if other % 3 == 0 {
                    let from = account_key(other / 3 % ACCOUNTS);
                    let a = accounts.get_mut(&from).expect("known sender");
                    let spend = u64::from(r.byte()).min(a.balance);
                    a.balance -= spend;
                    let foreign =
                        tx(other / 3 % ACCOUNTS, (other / 3 + 1) % ACCOUNTS, spend.max(1), a.nonce);
                    a.nonce += 1;
                    committed.push(foreign.hash());
                    touched.extend([foreign.transfer.from, foreign.transfer.to]);
                    let to = accounts.get_mut(&foreign.transfer.to).expect("known recipient");
                    to.balance = to.balance.saturating_add(spend);
                }
                let read = |k: &PublicKey| accounts.get(k).copied().unwrap_or_default();
                let got = pool.update(&committed, &touched, read);
                let want = model.update(&committed, &touched, &accounts);
                assert_eq!(got, want, "update dropped a different number of txs");
            }
            _ => {
                // A block of txs from outside the pool pays an account: a commit that
                // touched only it.
                let to = account_key(r.byte() % ACCOUNTS);
                let a = accounts.get_mut(&to).expect("known account");
                a.balance = a.balance.saturating_add(u64::from(r.byte()));
                let read = |k: &PublicKey| accounts.get(k).copied().unwrap_or_default();
                let got = pool.update(&[], &[to], read);
                let want = model.update(&[], &[to], &accounts);
                assert_eq!(got, want, "update dropped a different number of txs");
            }
        }
        assert_eq!(pool.len(), model.entries.len());
        assert_eq!(pool.is_empty(), model.entries.is_empty());
        assert_eq!(pool.bytes(), model.bytes());
        for e in &model.entries {
            assert!(pool.contains(&e.hash));
        }
        for i in 0..ACCOUNTS {
            let key = account_key(i);
            let account = accounts[&key];
            let pending = model.pending(&key).count() as u64;
            assert_eq!(pool.next_nonce(&key, &account), account.nonce + pending);
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    // limits (3 bytes), 4 balances, then ops: see `run`.
    let mut fill = vec![10, 200, 4, 50, 50, 50, 50];
    for i in 0..6u8 {
        fill.extend([0, i % 4, (i + 1) % 4, 2, 5 + i, 1]);
    }
    fill.extend([2, 10, 255, 5, 3, 3, 0, 2, 10, 255, 10]);
    let mut gaps = vec![3, 20, 2, 5, 5, 5, 5];
    gaps.extend([
        0, 0, 1, 2, 3, 1, 0, 0, 1, 1, 3, 1, 0, 0, 1, 0, 3, 1, 3, 1, 3, 4, 1, 100, 0, 0, 1, 2, 200,
        1,
    ]);
    let mut sizes = vec![15, 10, 5, 9, 9, 9, 9];
    sizes.extend([1, 2, 3, 2, 4, 0, 90, 1, 2, 3, 2, 4, 0, 200, 2, 3, 1, 2, 9, 3, 4]);
    vec![fill, gaps, sizes]
}
