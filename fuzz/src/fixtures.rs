//! Real protocol objects for seed corpora and for targets that mix valid and garbage input:
//! test keys, signed txs, blocks, votes, proposals and certificates.

use std::sync::OnceLock;
use tally_consensus::{
    BlockHash, CommitCertificate, CommitSig, Height, Proposal, Round, SignedProposal, SignedVote,
    ValidatorIndex, Vote, VoteType,
};
use tally_crypto::{ChainId, Hash, Keypair, PublicKey};
use tally_ledger::{tx_root, Block, Header, Transfer, Tx};

pub fn chain_id() -> ChainId {
    ChainId::new("tally-fuzz").expect("a valid chain id")
}

/// Test key `i` (insecure, derived from a label). Derived once per process: deriving costs a
/// base-point multiplication, which showed in every target that signs per input.
pub fn keypair(i: u8) -> Keypair {
    static KEYS: [OnceLock<Keypair>; 256] = [const { OnceLock::new() }; 256];
    KEYS[usize::from(i)]
        .get_or_init(|| Keypair::derive_insecure(&format!("tally-fuzz/key/{i}")))
        .clone()
}

/// A transfer from test key `from` to test key `to`, signed by `from`.
pub fn signed_tx(from: u8, to: u8, amount: u64, nonce: u64) -> Tx {
    let kp = keypair(from);
    let transfer = Transfer { from: kp.public(), to: keypair(to).public(), amount, nonce };
    Tx::sign(transfer, &kp, &chain_id())
}

/// A block at `height` with `txs`, its header consistent with them (tx root and count).
pub fn block(height: u64, txs: Vec<Tx>, parent: BlockHash) -> Block {
    let hashes: Vec<_> = txs.iter().map(Tx::hash).collect();
    let header = Header {
        chain_id: chain_id(),
        height: Height(height),
        time_ms: 1_700_000_000_000 + height,
        prev_block_hash: parent,
        tx_root: tx_root(&hashes),
        tx_count: u32::try_from(txs.len()).expect("fixture blocks are small"),
        state_root: Hash::digest(b"tally-fuzz/state"),
        proposer: keypair(0).public(),
        validators_hash: Hash::digest(b"tally-fuzz/validators"),
    };
    Block { header, txs }
}

pub fn vote(
    signer: u8,
    vote_type: VoteType,
    height: u64,
    round: u32,
    value: Option<BlockHash>,
) -> SignedVote {
    Vote {
        height: Height(height),
        round: Round(round),
        vote_type,
        block_hash: value,
        validator: ValidatorIndex(u32::from(signer)),
    }
    .sign(&chain_id(), &keypair(signer))
}

pub fn proposal(signer: u8, height: u64, round: u32, value: BlockHash) -> SignedProposal {
    Proposal {
        height: Height(height),
        round: Round(round),
        block_hash: value,
        pol_round: None,
        proposer: ValidatorIndex(u32::from(signer)),
    }
    .sign(&chain_id(), &keypair(signer))
}

/// A certificate for `block` signed by test keys 0, 1 and 2 as validators 0, 1 and 2.
pub fn certificate(block: &Block) -> CommitCertificate {
    let hash = block.hash();
    let height = block.header.height.0;
    let signatures = (0..3u8)
        .map(|i| CommitSig {
            validator: ValidatorIndex(u32::from(i)),
            signature: vote(i, VoteType::Precommit, height, 0, Some(hash)).signature,
        })
        .collect();
    CommitCertificate { height: Height(height), round: Round(0), block_hash: hash, signatures }
}

/// A public key for an account index, for targets that need many distinct accounts cheaply.
pub fn account_key(i: u8) -> PublicKey {
    PublicKey(Hash::digest_parts(&[b"tally-fuzz/account", &[i]]).0)
}
