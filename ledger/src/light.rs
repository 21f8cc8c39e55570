//! Light-client verification: with nothing but the genesis, check offline that a header was
//! committed by the chain, then that a transaction or an account state is under it.
//!
//! A header is trusted when its commit certificate carries valid precommits of validators
//! holding more than 2/3 of the genesis validator set's power, for exactly this header's
//! hash, on this chain. The validator set is fixed by genesis (tally has no validator-set
//! changes yet), so no chain of headers is needed: any single certified header can be checked
//! on its own. Everything the caller passes in is untrusted; each check says precisely why it
//! fails.

use crate::account::Account;
use crate::block::Header;
use crate::genesis::Genesis;
use crate::state_tree::{AccountProof, AccountProofError};
use crate::tx::{Tx, TxHash};
use crate::tx_merkle::{ProofError, TxProof};
use tally_consensus::{CertificateError, CommitCertificate, Height, ValidatorSetError};
use tally_crypto::{PublicKey, Verifier};

/// Why a light-client check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    #[error("the genesis validator set is invalid: {0}")]
    Genesis(#[from] ValidatorSetError),
    #[error("header is for chain {header:?}, the genesis is for {genesis:?}")]
    WrongChain { header: String, genesis: String },
    #[error("header's validators hash {header} is not the genesis validator set's {genesis}")]
    WrongValidators { header: String, genesis: String },
    #[error("certificate is for height {certificate}, header is at {header}")]
    HeightMismatch { certificate: Height, header: Height },
    #[error("certificate is for block {certificate}, the header hashes to {header}")]
    BlockMismatch { certificate: String, header: String },
    #[error("commit certificate does not verify: {0}")]
    Certificate(#[from] CertificateError),
    #[error("tx proof does not verify: {0}")]
    TxProof(#[from] ProofError),
    #[error("account proof does not verify: {0}")]
    AccountProof(#[from] AccountProofError),
}

/// Checks that `header` is certified by `certificate` under `genesis`.
pub fn verify_header(
    genesis: &Genesis,
    header: &Header,
    certificate: &CommitCertificate,
    verifier: &Verifier,
) -> Result<(), LightError> {
    if header.chain_id != genesis.chain_id {
        return Err(LightError::WrongChain {
            header: header.chain_id.to_string(),
            genesis: genesis.chain_id.to_string(),
        });
    }
    let validators = genesis.validator_set()?;
    if header.validators_hash != validators.hash() {
        return Err(LightError::WrongValidators {
            header: header.validators_hash.to_hex(),
            genesis: validators.hash().to_hex(),
        });
    }
    if certificate.height != header.height {
        return Err(LightError::HeightMismatch {
            certificate: certificate.height,
            header: header.height,
        });
    }
    let hash = header.hash();
    if certificate.block_hash != hash {
        return Err(LightError::BlockMismatch {
            certificate: certificate.block_hash.to_string(),
            header: hash.to_string(),
        });
    }
    certificate.verify(&genesis.chain_id, &validators, verifier)?;
    Ok(())
}

/// Checks that `tx` is in the block of `header` (certified by `certificate`).
pub fn verify_tx(
    genesis: &Genesis,
    header: &Header,
    certificate: &CommitCertificate,
    tx: &Tx,
    proof: &TxProof,
    verifier: &Verifier,
) -> Result<TxHash, LightError> {
    verify_header(genesis, header, certificate, verifier)?;
    let hash = tx.hash();
    header.verify_tx_proof(proof, &hash)?;
    Ok(hash)
}

/// Checks that after the block of `header`, `public_key` holds `account` (`Some`) or has
/// never appeared (`None`).
pub fn verify_account(
    genesis: &Genesis,
    header: &Header,
    certificate: &CommitCertificate,
    public_key: &PublicKey,
    account: Option<&Account>,
    proof: &AccountProof,
    verifier: &Verifier,
) -> Result<(), LightError> {
    verify_header(genesis, header, certificate, verifier)?;
    proof.verify(&header.state_root, public_key, account)?;
    Ok(())
}
