//! The Merkle tree over a block's tx hashes, RFC 6962 (Certificate Transparency) style, with
//! blake3 in place of SHA-256.
//!
//! - Empty tree: `blake3("")` ([`EMPTY_TX_ROOT`]).
//! - Leaf: `blake3(0x00 || tx_hash)`.
//! - Inner node: `blake3(0x01 || left || right)`.
//! - n > 1 leaves split at k, the largest power of two below n: the left subtree holds the first
//!   k leaves, the right the rest. Equivalently: pair nodes level by level and promote an
//!   unpaired last node unchanged.
//!
//! The 0x00/0x01 prefixes keep a leaf from being passed off as an inner node (second-preimage
//! attack on unprefixed trees). Inclusion proofs are RFC 6962 audit paths, leaf to root, and
//! are verified with the algorithm of RFC 9162 §2.1.3.2.

use crate::tx::TxHash;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use tally_crypto::Hash;

/// Root of a tree with no leaves: blake3 of the empty string, as in RFC 6962.
pub const EMPTY_TX_ROOT: Hash = Hash([
    0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9, 0x49,
    0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f, 0x32, 0x62,
]);

/// Longest audit path: a tree of at most 2^32 leaves is at most 32 levels deep.
pub const TX_PROOF_PATH_MAX: usize = 32;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

pub fn tx_leaf_hash(tx_hash: &TxHash) -> Hash {
    Hash::digest_parts(&[&[LEAF_PREFIX], tx_hash.0.as_bytes()])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[NODE_PREFIX], left.as_bytes(), right.as_bytes()])
}

/// The largest power of two strictly below `n` (n >= 2).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2, "only trees of two or more leaves split");
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root over `tx_hashes` in block order.
pub fn tx_root(tx_hashes: &[TxHash]) -> Hash {
    if tx_hashes.is_empty() {
        return EMPTY_TX_ROOT;
    }
    subtree_root(tx_hashes)
}

fn subtree_root(leaves: &[TxHash]) -> Hash {
    match leaves {
        [only] => tx_leaf_hash(only),
        _ => {
            let k = split_point(leaves.len());
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// Proof that the tx hash at `index` is in a tree of `total` leaves: the sibling hashes from the
/// leaf up to the root.
///
/// The root alone does not bind `total` (proofs for different totals can share a path shape),
/// so a verifier checks `total` against the header's `tx_count`: use
/// [`crate::Header::verify_tx_proof`], which does both.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxProof {
    pub index: u32,
    pub total: u32,
    /// At most [`TX_PROOF_PATH_MAX`] hashes, leaf to root.
    pub path: Vec<Hash>,
}

/// Why a tx inclusion proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not below the leaf count {total}")]
    IndexOutOfRange { index: u32, total: u32 },
    #[error("path of {len} hashes is longer than the maximum {max}")]
    PathTooLong { len: usize, max: usize },
    #[error("path length does not match index {index} in a tree of {total} leaves")]
    WrongPathLength { index: u32, total: u32 },
    #[error("computed root {computed} differs from the expected root {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
    #[error("proof is for a tree of {proof_total} txs, the header has {header_count}")]
    TotalMismatch { proof_total: u32, header_count: u32 },
}

/// The audit path for leaf `index`, or `None` when `index` is out of range or the tree holds
/// more than `u32::MAX` leaves (a block never does).
pub fn tx_proof(tx_hashes: &[TxHash], index: u32) -> Option<TxProof> {
    let total = u32::try_from(tx_hashes.len()).ok()?;
    if index >= total {
        return None;
    }
    let mut path = Vec::new();
    audit_path(tx_hashes, usize::try_from(index).ok()?, &mut path);
    Some(TxProof { index, total, path })
}

/// RFC 6962 PATH(m, D[n]), appended deepest sibling first.
fn audit_path(leaves: &[TxHash], m: usize, path: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    if m < k {
        audit_path(&leaves[..k], m, path);
        path.push(subtree_root(&leaves[k..]));
    } else {
        audit_path(&leaves[k..], m - k, path);
        path.push(subtree_root(&leaves[..k]));
    }
}

impl TxProof {
    /// Checks that `tx_hash` is leaf `index` of the tree of `total` leaves whose root is `root`.
    pub fn verify(&self, root: &Hash, tx_hash: &TxHash) -> Result<(), ProofError> {
        let computed = self.compute_root(tx_hash)?;
        if computed != *root {
            return Err(ProofError::RootMismatch { computed, expected: *root });
        }
        Ok(())
    }

    /// The root implied by the proof and the leaf (RFC 9162 §2.1.3.2, steps 1 to 5).
    pub fn compute_root(&self, tx_hash: &TxHash) -> Result<Hash, ProofError> {
        let (index, total) = (self.index, self.total);
        if index >= total {
            return Err(ProofError::IndexOutOfRange { index, total });
        }
        if self.path.len() > TX_PROOF_PATH_MAX {
            return Err(ProofError::PathTooLong { len: self.path.len(), max: TX_PROOF_PATH_MAX });
        }
        let mut f_n = index;
        let mut s_n = total - 1;
        let mut r = tx_leaf_hash(tx_hash);
        for p in &self.path {
            if s_n == 0 {
                return Err(ProofError::WrongPathLength { index, total });
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = node_hash(p, &r);
                // A right-edge node with no sibling at these levels is promoted unchanged.
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        if s_n != 0 {
            return Err(ProofError::WrongPathLength { index, total });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<TxHash> {
        (0..n as u32).map(|i| TxHash(Hash::digest(&i.to_le_bytes()))).collect()
    }

    /// An independent construction: pair nodes level by level, promote an odd last node.
    fn reference_root(tx_hashes: &[TxHash]) -> Hash {
        if tx_hashes.is_empty() {
            return Hash::digest(b"");
        }
        let mut level: Vec<Hash> = tx_hashes.iter().map(tx_leaf_hash).collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| if pair.len() == 2 { node_hash(&pair[0], &pair[1]) } else { pair[0] })
                .collect();
        }
        level[0]
    }

    #[test]
    fn empty_root_constant_is_blake3_of_nothing() {
        assert_eq!(EMPTY_TX_ROOT, Hash::digest(b""));
        assert_eq!(tx_root(&[]), EMPTY_TX_ROOT);
    }

    #[test]
    fn small_trees_by_hand() {
        let l = leaves(3);
        assert_eq!(tx_root(&l[..1]), Hash::digest_parts(&[&[0], l[0].0.as_bytes()]));
        let ab = node_hash(&tx_leaf_hash(&l[0]), &tx_leaf_hash(&l[1]));
        assert_eq!(tx_root(&l[..2]), ab);
        assert_eq!(tx_root(&l), node_hash(&ab, &tx_leaf_hash(&l[2])));
    }

    #[test]
    fn roots_for_0_to_20_leaves_match_reference_and_every_proof_verifies() {
        for n in 0..=20 {
            let l = leaves(n);
            let root = tx_root(&l);
            assert_eq!(root, reference_root(&l), "n = {n}");
            for (i, leaf) in l.iter().enumerate() {
                let proof = tx_proof(&l, i as u32).unwrap();
                assert_eq!(proof.verify(&root, leaf), Ok(()), "n = {n}, i = {i}");
                let depth_max = usize::BITS - (n - 1).leading_zeros();
                assert!(proof.path.len() <= depth_max as usize);
            }
            assert_eq!(tx_proof(&l, n as u32), None);
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        let l = leaves(13);
        let root = tx_root(&l);
        let proof = tx_proof(&l, 6).unwrap();
        assert!(matches!(proof.verify(&root, &l[5]), Err(ProofError::RootMismatch { .. })));
        let mut bad = proof.clone();
        bad.path[1].0[0] ^= 1;
        assert!(bad.verify(&root, &l[6]).is_err());
        let mut bad = proof.clone();
        bad.index = 7;
        assert!(bad.verify(&root, &l[6]).is_err());
        let mut bad = proof.clone();
        bad.total = 7;
        assert!(bad.verify(&root, &l[6]).is_err());
        // The root does not bind `total` where the path shape is the same (leaf 6 sits in the
        // full left subtree of 8 for 13 or 14 leaves): hence the header's tx_count check.
        let mut same_shape = proof.clone();
        same_shape.total = 14;
        assert_eq!(same_shape.verify(&root, &l[6]), Ok(()));
        let mut bad = proof.clone();
        bad.path.pop();
        assert!(matches!(bad.verify(&root, &l[6]), Err(ProofError::WrongPathLength { .. })));
        let mut bad = proof.clone();
        bad.path.push(Hash::ZERO);
        assert!(matches!(bad.verify(&root, &l[6]), Err(ProofError::WrongPathLength { .. })));
        let mut bad = proof;
        bad.index = 13;
        assert!(matches!(bad.verify(&root, &l[6]), Err(ProofError::IndexOutOfRange { .. })));
    }

    #[test]
    fn a_leaf_cannot_pass_as_an_inner_node() {
        // The root of two leaves is not the leaf hash of anything: prefixes differ.
        let l = leaves(2);
        let root = tx_root(&l);
        let single = TxProof { index: 0, total: 1, path: vec![] };
        let fake = TxHash(root);
        assert!(single.verify(&root, &fake).is_err());
    }
}
