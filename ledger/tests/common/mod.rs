//! Helpers shared by the integration tests: keys, a small genesis, signed transfers.
#![allow(dead_code)]

use tally_consensus::{BlockHash, CommitCertificate, Height, Round};
use tally_crypto::{ChainId, Keypair, PublicKey, Verifier, VerifierConfig};
use tally_ledger::{Genesis, GenesisAccount, GenesisValidator, Transfer, Tx};

pub const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
pub const INITIAL_BALANCE: u64 = 1_000;

pub fn chain_id() -> ChainId {
    ChainId::new("tally-test").expect("a valid chain id")
}

pub fn validator(i: usize) -> Keypair {
    Keypair::derive_insecure(&format!("validator/{i}"))
}

pub fn user(i: usize) -> Keypair {
    Keypair::derive_insecure(&format!("user/{i}"))
}

/// Four validators of power 10; users 0..accounts funded with INITIAL_BALANCE.
pub fn genesis(accounts: usize) -> Genesis {
    let validators = (0..4)
        .map(|i| GenesisValidator {
            name: format!("validator-{i}"),
            public_key: validator(i).public(),
            power: 10,
        })
        .collect();
    let accounts = (0..accounts)
        .map(|i| GenesisAccount { public_key: user(i).public(), balance: INITIAL_BALANCE })
        .collect();
    Genesis::new(chain_id(), GENESIS_TIME_MS, validators, accounts)
}

pub fn transfer(from: &Keypair, to: PublicKey, amount: u64, nonce: u64) -> Tx {
    Tx::sign(Transfer { from: from.public(), to, amount, nonce }, from, &chain_id())
}

pub fn verifier() -> Verifier {
    Verifier::new(VerifierConfig::default())
}

/// A certificate with no signatures: the store and the ledger do not verify certificates
/// (consensus does), they only check that it names the block.
pub fn certificate(height: Height, block_hash: BlockHash) -> CommitCertificate {
    CommitCertificate { height, round: Round(0), block_hash, signatures: vec![] }
}
