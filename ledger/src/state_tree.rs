//! The account-state commitment: a compact sparse Merkle tree over 256-bit keys.
//!
//! Layout. An account's key is `blake3(public_key)`, read most significant bit first as a path
//! from the root (0 = left, 1 = right). The tree is the full 256-level sparse Merkle tree with
//! one rule that keeps it small: a subtree holding exactly one account is represented by that
//! account's leaf, wherever it sits (the "compact" SMT of Diem/Aptos' Jellyfish tree). So the
//! hash of a subtree is:
//! - empty: [`EMPTY_SUBTREE`] (32 zero bytes, which no blake3 output is known to hit);
//! - one account: its leaf hash `blake3(0x00 || key || borsh(account))`;
//! - two or more: `blake3(0x01 || left || right)`.
//!
//! The root is a function of the set of (key, account) pairs only, not of the order of
//! updates. Leaves carry their full key, so a leaf that moved up stays bound to its path, and
//! the 0x00/0x01 prefixes keep leaves and inner nodes apart. With n random keys the tree is
//! about log2(n) levels deep.
//!
//! Cost. Nodes are immutable and shared (`Arc`): applying k changed accounts builds a new root
//! that shares every untouched subtree with the old one, hashing only the nodes on the k paths:
//! O(k log n) hashes, never a pass over all accounts. Accounts are never deleted (a transfer
//! only creates or changes accounts), so there is no removal. The tree lives in memory and is
//! rebuilt from the store's accounts table when the ledger opens (O(n) hashes).
//!
//! Proofs. [`AccountProof`] lists the sibling hashes from the root down to where the key's path
//! ends: at the key's own leaf (presence), at an empty subtree, or at the leaf of another
//! account whose key shares the path so far (both absence). The verifier recomputes every leaf
//! hash itself, so no inner node can be passed off as a leaf.

use crate::account::Account;
use crate::codec::encode;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tally_crypto::{Hash, PublicKey};

/// Hash of an empty subtree.
pub const EMPTY_SUBTREE: Hash = Hash::ZERO;

/// Bits in a key: the depth of the full tree and the longest possible proof.
pub const KEY_BITS: usize = 256;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Subtrees with at least this many leaves are built on two rayon tasks.
const PARALLEL_LEAVES_MIN: usize = 4096;

/// The path of an account in the tree: blake3 of its public key.
pub fn state_key(public_key: &PublicKey) -> Hash {
    Hash::digest(public_key.as_bytes())
}

/// `blake3(0x00 || key || borsh(account))`.
pub fn account_leaf_hash(key: &Hash, account: &Account) -> Hash {
    Hash::digest_parts(&[&[LEAF_PREFIX], key.as_bytes(), &encode(account)])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[NODE_PREFIX], left.as_bytes(), right.as_bytes()])
}

/// Bit `depth` of `key`, most significant bit of byte 0 first.
fn bit(key: &Hash, depth: usize) -> bool {
    (key.0[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

struct Leaf {
    key: Hash,
    public_key: PublicKey,
    account: Account,
    hash: Hash,
}

/// Invariant: at least two leaves below, so never (empty, leaf), (leaf, empty) or two empties.
struct Inner {
    left: Option<Node>,
    right: Option<Node>,
    hash: Hash,
}

#[derive(Clone)]
enum Node {
    Leaf(Arc<Leaf>),
    Inner(Arc<Inner>),
}

fn subtree_hash(node: Option<&Node>) -> Hash {
    match node {
        None => EMPTY_SUBTREE,
        Some(Node::Leaf(leaf)) => leaf.hash,
        Some(Node::Inner(inner)) => inner.hash,
    }
}

/// A subtree built or updated, with what it cost and how many new keys it gained.
struct Built {
    node: Option<Node>,
    hashes: u64,
    added: u64,
}

fn make_inner(left: Built, right: Built) -> Built {
    let hash = node_hash(&subtree_hash(left.node.as_ref()), &subtree_hash(right.node.as_ref()));
    let node = Node::Inner(Arc::new(Inner { left: left.node, right: right.node, hash }));
    Built {
        node: Some(node),
        hashes: left.hashes + right.hashes + 1,
        added: left.added + right.added,
    }
}

/// Index of the first leaf whose bit `depth` is 1; `leaves` are sorted by key and share their
/// first `depth` bits.
fn split_at_bit(leaves: &[Arc<Leaf>], depth: usize) -> usize {
    leaves.partition_point(|leaf| !bit(&leaf.key, depth))
}

fn both<A, B>(big: bool, a: A, b: B) -> (Built, Built)
where
    A: FnOnce() -> Built + Send,
    B: FnOnce() -> Built + Send,
{
    if big {
        rayon::join(a, b)
    } else {
        (a(), b())
    }
}

/// The subtree at `depth` holding exactly `leaves` (sorted, distinct keys, common prefix).
fn build(depth: usize, leaves: &[Arc<Leaf>]) -> Built {
    match leaves {
        [] => Built { node: None, hashes: 0, added: 0 },
        [only] => Built { node: Some(Node::Leaf(only.clone())), hashes: 0, added: 1 },
        _ => {
            assert!(depth < KEY_BITS, "distinct 256-bit keys differ in some bit");
            let mid = split_at_bit(leaves, depth);
            let (l, r) = both(
                leaves.len() >= PARALLEL_LEAVES_MIN,
                || build(depth + 1, &leaves[..mid]),
                || build(depth + 1, &leaves[mid..]),
            );
            make_inner(l, r)
        }
    }
}

/// `node` (at `depth`) with `changes` written into it (sorted, distinct keys, all sharing the
/// node's path prefix). Untouched subtrees are shared, not copied.
fn update(node: Option<&Node>, depth: usize, changes: &[Arc<Leaf>]) -> Built {
    if changes.is_empty() {
        return Built { node: node.cloned(), hashes: 0, added: 0 };
    }
    match node {
        None => build(depth, changes),
        Some(Node::Leaf(existing)) => {
            let mut merged = changes.to_vec();
            let replaced = match merged.binary_search_by(|l| l.key.cmp(&existing.key)) {
                Ok(_) => true,
                Err(pos) => {
                    merged.insert(pos, existing.clone());
                    false
                }
            };
            let mut built = build(depth, &merged);
            // `build` counted every leaf as new; the existing key was not.
            built.added -= 1;
            debug_assert!(replaced || built.added == changes.len() as u64);
            built
        }
        Some(Node::Inner(inner)) => {
            let mid = split_at_bit(changes, depth);
            let (l, r) = both(
                changes.len() >= PARALLEL_LEAVES_MIN,
                || update(inner.left.as_ref(), depth + 1, &changes[..mid]),
                || update(inner.right.as_ref(), depth + 1, &changes[mid..]),
            );
            make_inner(l, r)
        }
    }
}

fn make_leaf(public_key: PublicKey, account: Account) -> Arc<Leaf> {
    let key = state_key(&public_key);
    let hash = account_leaf_hash(&key, &account);
    Arc::new(Leaf { key, public_key, account, hash })
}

/// The state tree. Cloning is O(1) and the clone is an independent snapshot: later
/// [`StateTree::apply`] calls return new trees and never change this one.
#[derive(Clone, Default)]
pub struct StateTree {
    root: Option<Node>,
    /// Number of accounts (leaves).
    len: u64,
}

impl std::fmt::Debug for StateTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateTree {{ root: {:?}, len: {} }}", self.root(), self.len)
    }
}

impl StateTree {
    /// The tree with no accounts; its root is [`EMPTY_SUBTREE`].
    pub fn new() -> StateTree {
        StateTree::default()
    }

    /// Builds the tree from scratch (O(n) hashes). A key listed twice keeps its last account.
    pub fn from_accounts(accounts: impl IntoIterator<Item = (PublicKey, Account)>) -> StateTree {
        let by_key: BTreeMap<Hash, Arc<Leaf>> = accounts
            .into_iter()
            .map(|(public_key, account)| {
                let leaf = make_leaf(public_key, account);
                (leaf.key, leaf)
            })
            .collect();
        let leaves: Vec<Arc<Leaf>> = by_key.into_values().collect();
        let built = build(0, &leaves);
        StateTree { root: built.node, len: built.added }
    }

    pub fn root(&self) -> Hash {
        subtree_hash(self.root.as_ref())
    }

    /// The number of accounts.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The account stored for `public_key`, `None` if the tree has none.
    pub fn get(&self, public_key: &PublicKey) -> Option<Account> {
        let key = state_key(public_key);
        let mut node = self.root.as_ref();
        let mut depth = 0;
        loop {
            match node? {
                Node::Leaf(leaf) => return (leaf.key == key).then_some(leaf.account),
                Node::Inner(inner) => {
                    node =
                        if bit(&key, depth) { inner.right.as_ref() } else { inner.left.as_ref() };
                    depth += 1;
                }
            }
        }
    }

    /// A new tree with `changes` written in; `self` is unchanged. O(k log n) hashes.
    pub fn apply(&self, changes: &BTreeMap<PublicKey, Account>) -> StateTree {
        self.apply_counting(changes).0
    }

    /// [`StateTree::apply`], also returning how many hashes it computed (for tests and benches).
    pub fn apply_counting(&self, changes: &BTreeMap<PublicKey, Account>) -> (StateTree, u64) {
        let mut leaves: Vec<Arc<Leaf>> =
            changes.iter().map(|(public_key, account)| make_leaf(*public_key, *account)).collect();
        leaves.sort_by_key(|leaf| leaf.key);
        let built = update(self.root.as_ref(), 0, &leaves);
        let tree = StateTree { root: built.node, len: self.len + built.added };
        (tree, built.hashes + leaves.len() as u64)
    }

    /// Every account, in key-hash order (for snapshots and tests).
    pub fn accounts(&self) -> Vec<(PublicKey, Account)> {
        let mut out = Vec::new();
        let mut stack: Vec<&Node> = self.root.iter().collect();
        while let Some(node) = stack.pop() {
            match node {
                Node::Leaf(leaf) => out.push((leaf.public_key, leaf.account)),
                Node::Inner(inner) => stack.extend(inner.right.iter().chain(inner.left.iter())),
            }
        }
        out
    }

    /// The account of `public_key` (if any) and a proof of it against [`StateTree::root`].
    pub fn prove(&self, public_key: &PublicKey) -> (Option<Account>, AccountProof) {
        let key = state_key(public_key);
        let mut siblings = Vec::new();
        let mut node = self.root.as_ref();
        let mut depth = 0;
        loop {
            match node {
                None => return (None, AccountProof { siblings, other_leaf: None }),
                Some(Node::Leaf(leaf)) if leaf.key == key => {
                    return (Some(leaf.account), AccountProof { siblings, other_leaf: None });
                }
                Some(Node::Leaf(leaf)) => {
                    let other = OtherLeaf { key: leaf.key, account: leaf.account };
                    return (None, AccountProof { siblings, other_leaf: Some(other) });
                }
                Some(Node::Inner(inner)) => {
                    let (next, sibling) = if bit(&key, depth) {
                        (inner.right.as_ref(), inner.left.as_ref())
                    } else {
                        (inner.left.as_ref(), inner.right.as_ref())
                    };
                    siblings.push(subtree_hash(sibling));
                    node = next;
                    depth += 1;
                }
            }
        }
    }
}

/// The leaf of another account where an absence proof's path ends. It carries the account,
/// not a hash, so that the verifier computes the leaf hash itself.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct OtherLeaf {
    /// `blake3(public_key)` of the other account.
    pub key: Hash,
    pub account: Account,
}

/// A proof that an account has a given state, or is absent, under a state root.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AccountProof {
    /// Sibling subtree hashes along the key's path, root side first; at most [`KEY_BITS`].
    pub siblings: Vec<Hash>,
    /// Set only in an absence proof whose path ends at another account's leaf.
    pub other_leaf: Option<OtherLeaf>,
}

/// Why an account proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountProofError {
    #[error("proof has {len} siblings, more than the {max} levels of the tree")]
    TooLong { len: usize, max: usize },
    #[error("a proof of presence must not end at another account's leaf")]
    UnexpectedOtherLeaf,
    #[error("the other leaf of an absence proof has the queried key")]
    OtherLeafHasSameKey,
    #[error("the other leaf's key leaves the queried key's path above depth {depth}")]
    OtherLeafOffPath { depth: usize },
    #[error("computed root {computed} differs from the expected root {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
}

/// Length of the common prefix of two keys, in bits.
fn common_prefix_bits(a: &Hash, b: &Hash) -> usize {
    for (i, (x, y)) in a.0.iter().zip(b.0.iter()).enumerate() {
        let diff = x ^ y;
        if diff != 0 {
            return i * 8 + diff.leading_zeros() as usize;
        }
    }
    KEY_BITS
}

impl AccountProof {
    /// Checks that under `root`, `public_key` holds `account` (`Some`) or is absent (`None`).
    pub fn verify(
        &self,
        root: &Hash,
        public_key: &PublicKey,
        account: Option<&Account>,
    ) -> Result<(), AccountProofError> {
        let depth = self.siblings.len();
        if depth > KEY_BITS {
            return Err(AccountProofError::TooLong { len: depth, max: KEY_BITS });
        }
        let key = state_key(public_key);
        let mut acc = match (account, &self.other_leaf) {
            (Some(account), None) => account_leaf_hash(&key, account),
            (Some(_), Some(_)) => return Err(AccountProofError::UnexpectedOtherLeaf),
            (None, None) => EMPTY_SUBTREE,
            (None, Some(other)) => {
                if other.key == key {
                    return Err(AccountProofError::OtherLeafHasSameKey);
                }
                if common_prefix_bits(&other.key, &key) < depth {
                    return Err(AccountProofError::OtherLeafOffPath { depth });
                }
                account_leaf_hash(&other.key, &other.account)
            }
        };
        for (d, sibling) in self.siblings.iter().enumerate().rev() {
            acc = if bit(&key, d) { node_hash(sibling, &acc) } else { node_hash(&acc, sibling) };
        }
        if acc != *root {
            return Err(AccountProofError::RootMismatch { computed: acc, expected: *root });
        }
        Ok(())
    }
}
