//! Sample protocol data for the network's tests. Signatures are not checked by the network,
//! so consensus messages carry dummy ones; txs are signed for realism.

#![allow(dead_code)]

use tally_consensus::{
    BlockHash, CommitCertificate, CommitSig, Height, Proposal, Round, SignedProposal, SignedVote,
    ValidatorIndex, Vote, VoteType,
};
use tally_crypto::{ChainId, Hash, Keypair, Signature};
use tally_ledger::{Block, Header, Transfer, Tx};

pub fn chain_id() -> ChainId {
    ChainId::new("tally-net-test").expect("valid chain id")
}

pub fn txs(count: u64) -> Vec<Tx> {
    let alice = Keypair::derive_insecure("alice");
    let bob = Keypair::derive_insecure("bob").public();
    (0..count)
        .map(|nonce| {
            let transfer = Transfer { from: alice.public(), to: bob, amount: 1 + nonce, nonce };
            Tx::sign(transfer, &alice, &chain_id())
        })
        .collect()
}

pub fn block(height: u64, tx_count: u64) -> Block {
    let txs = txs(tx_count);
    let header = Header {
        chain_id: chain_id(),
        height: Height(height),
        time_ms: 1_700_000_000_000 + height,
        prev_block_hash: BlockHash(Hash::digest(&height.to_le_bytes())),
        tx_root: tally_ledger::tx_root(&txs.iter().map(Tx::hash).collect::<Vec<_>>()),
        tx_count: u32::try_from(txs.len()).expect("few txs"),
        state_root: Hash::digest(b"state"),
        proposer: Keypair::derive_insecure("validator/0").public(),
        validators_hash: Hash::digest(b"validators"),
    };
    Block { header, txs }
}

pub fn certificate(block: &Block) -> CommitCertificate {
    CommitCertificate {
        height: block.height(),
        round: Round(0),
        block_hash: block.hash(),
        signatures: (0..3)
            .map(|i| CommitSig {
                validator: ValidatorIndex(i),
                signature: Signature([i as u8; 64]),
            })
            .collect(),
    }
}

pub fn proposal(block: &Block) -> SignedProposal {
    SignedProposal {
        proposal: Proposal {
            height: block.height(),
            round: Round(1),
            block_hash: block.hash(),
            pol_round: Some(Round(0)),
            proposer: ValidatorIndex(2),
        },
        signature: Signature([7; 64]),
    }
}

pub fn vote(height: u64) -> SignedVote {
    SignedVote {
        vote: Vote {
            height: Height(height),
            round: Round(0),
            vote_type: VoteType::Precommit,
            block_hash: Some(BlockHash(Hash::digest(b"block"))),
            validator: ValidatorIndex(1),
        },
        signature: Signature([9; 64]),
    }
}
