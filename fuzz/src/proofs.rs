//! Target `proofs`: tx inclusion proofs and account proofs, honest ones tampered with.
//!
//! Oracles: every honest proof verifies; a tx proof that verifies against the header (root
//! and tx count) is the honest proof of its index and its leaf is the tx at that index; an
//! account proof that verifies proves the true statement (the account the tree holds for
//! that key, or its absence), whatever proof bytes were used.

use crate::fixtures::{account_key, block};
use tally_consensus::BlockHash;
use tally_crypto::Hash;
use tally_ledger::state_tree::state_key;
use tally_ledger::{tx_proof, tx_root, Account, OtherLeaf, StateTree, TxHash};

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

fn leaf(i: u8) -> TxHash {
    TxHash(Hash::digest_parts(&[b"tally-fuzz/leaf", &[i]]))
}

/// Tampering steps read from the input; each changes one thing.
const TAMPER_MAX: usize = 8;

pub fn run(data: &[u8]) {
    let mut r = Reader(data);
    if r.byte() % 2 == 0 {
        tx_proofs(&mut r);
    } else {
        account_proofs(&mut r);
    }
}

fn tx_proofs(r: &mut Reader<'_>) {
    let n = 1 + r.byte() % 40;
    let hashes: Vec<TxHash> = (0..n).map(leaf).collect();
    let root = tx_root(&hashes);
    let mut header = block(1, vec![], BlockHash(Hash::ZERO)).header;
    header.tx_root = root;
    header.tx_count = u32::from(n);
    let index = u32::from(r.byte() % n);
    let mut proof = tx_proof(&hashes, index).expect("index is in range");
    let mut claimed = hashes[index as usize];
    assert_eq!(header.verify_tx_proof(&proof, &claimed), Ok(()), "honest tx proof refused");
    for _ in 0..TAMPER_MAX {
        if r.0.is_empty() {
            break;
        }
        let (op, a, b) = (r.byte(), r.byte(), r.byte());
        match op % 8 {
            0 => proof.index = u32::from(a),
            1 => proof.total = u32::from(a),
            2 => {
                let len = proof.path.len().max(1);
                if let Some(h) = proof.path.get_mut(usize::from(a) % len) {
                    h.0[usize::from(b) % 32] ^= 1 << (b % 8);
                }
            }
            3 => proof.path.truncate(usize::from(a) % (proof.path.len() + 1)),
            4 => proof.path.insert(
                usize::from(a) % (proof.path.len() + 1),
                if b % 2 == 0 { leaf(b).0 } else { tx_root(&hashes[..usize::from(b % n) + 1]) },
            ),
            5 => {
                // A sibling from another leaf's honest proof.
                let other = tx_proof(&hashes, u32::from(a % n)).expect("in range");
                let len = proof.path.len().max(1);
                if let (Some(h), Some(o)) = (
                    proof.path.get_mut(usize::from(b) % len),
                    other.path.get(usize::from(b) % other.path.len().max(1)),
                ) {
                    *h = *o;
                }
            }
            6 => claimed = if a % 4 == 0 { TxHash(root) } else { hashes[usize::from(a % n)] },
            _ => {
                let len = proof.path.len();
                if len > 0 {
                    proof.path.swap(usize::from(a) % len, usize::from(b) % len);
                }
            }
        }
        if header.verify_tx_proof(&proof, &claimed).is_ok() {
            let i = proof.index as usize;
            assert_eq!(
                Some(&proof),
                tx_proof(&hashes, proof.index).as_ref(),
                "a forged tx proof verifies"
            );
            assert_eq!(claimed, hashes[i], "a tx proof verifies for a tx not at its index");
        }
    }
}

fn account_proofs(r: &mut Reader<'_>) {
    let k = r.byte() % 12;
    let tree = StateTree::from_accounts((0..k).map(|i| {
        (account_key(i * 3 % 32), Account { balance: u64::from(i) + 1, nonce: u64::from(i % 3) })
    }));
    let root = tree.root();
    let mut key = account_key(r.byte() % 32);
    let (mut claimed, mut proof) = tree.prove(&key);
    assert_eq!(claimed, tree.get(&key), "prove and get disagree");
    assert_eq!(proof.verify(&root, &key, claimed.as_ref()), Ok(()), "honest account proof refused");
    for _ in 0..TAMPER_MAX {
        if r.0.is_empty() {
            break;
        }
        let (op, a, b) = (r.byte(), r.byte(), r.byte());
        match op % 8 {
            0 => {
                let len = proof.siblings.len().max(1);
                if let Some(h) = proof.siblings.get_mut(usize::from(a) % len) {
                    h.0[usize::from(b) % 32] ^= 1 << (b % 8);
                }
            }
            1 => proof.siblings.truncate(usize::from(a) % (proof.siblings.len() + 1)),
            2 => proof.siblings.insert(
                usize::from(a) % (proof.siblings.len() + 1),
                if b % 2 == 0 { Hash::ZERO } else { root },
            ),
            3 => {
                proof.other_leaf = (a % 3 != 0).then(|| {
                    let other = account_key(b % 32);
                    OtherLeaf {
                        key: state_key(&other),
                        account: tree.get(&other).unwrap_or_default(),
                    }
                })
            }
            4 => {
                claimed = match a % 3 {
                    0 => None,
                    1 => Some(Account { balance: u64::from(b), nonce: u64::from(b % 3) }),
                    _ => tree.get(&account_key(b % 32)),
                }
            }
            5 => key = account_key(a % 32),
            6 => {
                // Another key's honest proof, for this key.
                proof = tree.prove(&account_key(a % 32)).1;
            }
            _ => {
                let len = proof.siblings.len();
                if len > 0 {
                    proof.siblings.swap(usize::from(a) % len, usize::from(b) % len);
                }
            }
        }
        if proof.verify(&root, &key, claimed.as_ref()).is_ok() {
            assert_eq!(claimed, tree.get(&key), "an account proof verifies a false statement");
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        vec![0, 7, 3, 2, 0, 5],
        vec![0, 33, 20, 5, 1, 3, 6, 2, 0],
        vec![0, 1, 0, 1, 2, 0, 4, 0, 2],
        vec![1, 9, 3, 4, 0, 4, 1, 2, 2],
        vec![1, 11, 5, 3, 1, 6, 5, 3, 0],
        vec![1, 0, 0, 3, 1, 3, 2, 0, 0],
    ]
}
