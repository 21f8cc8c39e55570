//! Blocks: a header that commits to everything, and the transactions.
//!
//! A block's identity is `blake3(borsh(header))`; the header commits to the txs through
//! `tx_root` (see [`crate::tx_merkle`]) and to the state after executing them through
//! `state_root` (see [`crate::state_tree`]), so a header and its commit certificate are enough
//! to check a tx or an account proof offline.

use crate::codec::{decode_bounded, encode, DecodeError};
use crate::limits::BLOCK_BYTES_MAX;
use crate::tx::{Tx, TxHash};
use crate::tx_merkle::{tx_proof, tx_root, ProofError, TxProof};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use tally_consensus::{BlockHash, Height};
use tally_crypto::{ChainId, Hash, PublicKey};

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub chain_id: ChainId,
    /// 1 for the first block; height 0 is the genesis state.
    pub height: Height,
    /// Proposer's time, milliseconds since the Unix epoch; strictly greater than the parent's
    /// (the genesis time for height 1).
    pub time_ms: u64,
    /// The parent block's hash; for height 1, the genesis hash (so a chain is bound to its
    /// genesis file, not only to its chain id).
    pub prev_block_hash: BlockHash,
    /// [`crate::tx_root`] of the block's tx hashes.
    pub tx_root: Hash,
    /// Number of txs in the block.
    pub tx_count: u32,
    /// State root after executing this block's txs on the parent's state.
    pub state_root: Hash,
    pub proposer: PublicKey,
    /// `ValidatorSet::hash()` of the set that commits this block.
    pub validators_hash: Hash,
}

impl Header {
    /// Length of the borsh encoding without the chain id's bytes: u32 length prefix (4),
    /// height (8), time (8), four hashes and a key (5 * 32), tx count (4).
    pub const FIXED_ENCODED_LEN: usize = 4 + 8 + 8 + 5 * 32 + 4;

    /// blake3 of the borsh encoding.
    pub fn hash(&self) -> BlockHash {
        BlockHash(Hash::digest(&encode(self)))
    }

    pub fn encoded_len(&self) -> usize {
        Self::FIXED_ENCODED_LEN + self.chain_id.as_str().len()
    }

    /// Checks that `tx_hash` is in this block: the proof is for `tx_count` leaves and leads
    /// to `tx_root`.
    pub fn verify_tx_proof(&self, proof: &TxProof, tx_hash: &TxHash) -> Result<(), ProofError> {
        if proof.total != self.tx_count {
            let header_count = self.tx_count;
            return Err(ProofError::TotalMismatch { proof_total: proof.total, header_count });
        }
        proof.verify(&self.tx_root, tx_hash)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<Tx>,
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    pub fn height(&self) -> Height {
        self.header.height
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Length of [`Block::encode`] without encoding: header, u32 tx count, the txs.
    pub fn encoded_len(&self) -> usize {
        self.header.encoded_len() + 4 + self.txs.len() * crate::limits::TX_BYTES
    }

    /// Decodes untrusted bytes under the hard limit [`BLOCK_BYTES_MAX`]. The chain's own
    /// (smaller) `block_bytes_max` is enforced by block validation.
    pub fn decode(bytes: &[u8]) -> Result<Block, DecodeError> {
        Self::decode_with_limit(bytes, BLOCK_BYTES_MAX)
    }

    /// Decodes untrusted bytes, at most `max` of them (capped at [`BLOCK_BYTES_MAX`]).
    pub fn decode_with_limit(bytes: &[u8], max: usize) -> Result<Block, DecodeError> {
        decode_bounded(bytes, max.min(BLOCK_BYTES_MAX), "block")
    }

    pub fn tx_hashes(&self) -> Vec<TxHash> {
        self.txs.iter().map(Tx::hash).collect()
    }

    /// [`tx_root`] of this block's txs, computed (not read from the header).
    pub fn compute_tx_root(&self) -> Hash {
        tx_root(&self.tx_hashes())
    }

    /// Whether the txs are the ones the header commits to: `tx_count` of them, with root
    /// `tx_root`. The block hash covers only the header, so a body swapped under an
    /// honest header keeps the hash: check this before keeping a block received from a
    /// peer under that hash.
    pub fn body_matches_header(&self) -> bool {
        self.txs.len() == self.header.tx_count as usize
            && self.compute_tx_root() == self.header.tx_root
    }

    /// Inclusion proof of tx `index` against `header.tx_root`.
    pub fn tx_proof(&self, index: u32) -> Option<TxProof> {
        tx_proof(&self.tx_hashes(), index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::Transfer;
    use tally_crypto::Keypair;

    fn sample_block(txs_count: u64) -> Block {
        let chain_id = ChainId::new("tally-test").unwrap();
        let alice = Keypair::derive_insecure("alice");
        let bob = Keypair::derive_insecure("bob").public();
        let txs: Vec<Tx> = (0..txs_count)
            .map(|nonce| {
                let transfer = Transfer { from: alice.public(), to: bob, amount: 1, nonce };
                Tx::sign(transfer, &alice, &chain_id)
            })
            .collect();
        let tx_hashes: Vec<TxHash> = txs.iter().map(Tx::hash).collect();
        let header = Header {
            chain_id,
            height: Height(1),
            time_ms: 1_700_000_000_000,
            prev_block_hash: BlockHash(Hash::digest(b"genesis")),
            tx_root: tx_root(&tx_hashes),
            tx_count: txs.len() as u32,
            state_root: Hash::digest(b"state"),
            proposer: Keypair::derive_insecure("validator/0").public(),
            validators_hash: Hash::digest(b"validators"),
        };
        Block { header, txs }
    }

    #[test]
    fn encoded_len_matches_encoding() {
        for n in [0, 1, 7] {
            let block = sample_block(n);
            assert_eq!(block.encoded_len(), block.encode().len());
            assert_eq!(block.header.encoded_len(), encode(&block.header).len());
        }
    }

    /// The offsets of docs/ledger-format.md.
    #[test]
    fn header_layout_matches_the_format_document() {
        let block = sample_block(2);
        let h = &block.header;
        let bytes = encode(h);
        let l = h.chain_id.as_str().len();
        assert_eq!(&bytes[..4], &(l as u32).to_le_bytes());
        assert_eq!(&bytes[4..4 + l], h.chain_id.as_str().as_bytes());
        assert_eq!(&bytes[4 + l..12 + l], &h.height.0.to_le_bytes());
        assert_eq!(&bytes[12 + l..20 + l], &h.time_ms.to_le_bytes());
        assert_eq!(&bytes[20 + l..52 + l], h.prev_block_hash.0.as_bytes());
        assert_eq!(&bytes[52 + l..84 + l], h.tx_root.as_bytes());
        assert_eq!(&bytes[84 + l..88 + l], &h.tx_count.to_le_bytes());
        assert_eq!(&bytes[88 + l..120 + l], h.state_root.as_bytes());
        assert_eq!(&bytes[120 + l..152 + l], h.proposer.as_bytes());
        assert_eq!(&bytes[152 + l..], h.validators_hash.as_bytes());
        let block_bytes = block.encode();
        let tx1 = 184 + l + 4 + crate::limits::TX_BYTES;
        assert_eq!(&block_bytes[tx1..], &block.txs[1].encode()[..]);
    }

    #[test]
    fn round_trip_and_hash_is_header_hash() {
        let block = sample_block(3);
        let decoded = Block::decode(&block.encode()).unwrap();
        assert_eq!(decoded, block);
        assert_eq!(block.hash(), BlockHash(Hash::digest(&encode(&block.header))));
        let mut other = block.clone();
        other.header.time_ms += 1;
        assert_ne!(other.hash(), block.hash());
    }

    #[test]
    fn a_body_swapped_under_the_header_is_caught() {
        let block = sample_block(3);
        assert!(block.body_matches_header());
        // Same header, so same hash: only the body check tells them apart.
        let mut emptied = block.clone();
        emptied.txs.clear();
        assert_eq!(emptied.hash(), block.hash());
        assert!(!emptied.body_matches_header());
        let mut swapped = block.clone();
        swapped.txs.swap(0, 2);
        assert!(!swapped.body_matches_header());
        let mut replaced = block.clone();
        replaced.txs[1] = sample_block(4).txs[3];
        assert!(!replaced.body_matches_header());
    }

    #[test]
    fn decode_limits_and_trailing_bytes() {
        let block = sample_block(3);
        let bytes = block.encode();
        let limited = Block::decode_with_limit(&bytes, bytes.len() - 1);
        assert!(matches!(limited, Err(DecodeError::TooLarge { .. })));
        let mut long = bytes.clone();
        long.extend_from_slice(&[0, 0]);
        assert!(matches!(Block::decode(&long), Err(DecodeError::TrailingBytes { count: 2, .. })));
        let huge = vec![0u8; BLOCK_BYTES_MAX + 1];
        assert!(matches!(Block::decode(&huge), Err(DecodeError::TooLarge { .. })));
        // A tx count far beyond the bytes present fails cleanly, without a huge allocation.
        let mut lying = encode(&block.header);
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Block::decode(&lying), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn tx_proofs_verify_against_header_root() {
        let block = sample_block(5);
        for (i, hash) in block.tx_hashes().iter().enumerate() {
            let proof = block.tx_proof(i as u32).unwrap();
            assert_eq!(block.header.verify_tx_proof(&proof, hash), Ok(()));
        }
        let mut wrong_total = block.tx_proof(4).unwrap();
        wrong_total.total = 6;
        let err = block.header.verify_tx_proof(&wrong_total, &block.tx_hashes()[4]);
        assert!(matches!(err, Err(ProofError::TotalMismatch { .. })));
    }

    #[test]
    fn json_round_trip() {
        let block = sample_block(2);
        let json = serde_json::to_string(&block).unwrap();
        assert!(json.contains(&block.header.state_root.to_hex()));
        assert_eq!(serde_json::from_str::<Block>(&json).unwrap(), block);
    }
}
