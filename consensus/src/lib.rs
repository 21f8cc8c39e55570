//! tally-consensus: the Tendermint consensus core of tally, sans-IO.
//!
//! - Protocol data: [`Height`], [`Round`], [`ValidatorIndex`], [`VotingPower`], [`BlockHash`],
//!   [`Vote`], [`SignedVote`], [`Proposal`], [`SignedProposal`], [`Evidence`].
//! - [`ValidatorSet`]: thresholds (> 2/3, > 1/3) and deterministic weighted proposer selection.
//! - [`CommitCertificate`]: > 2/3 precommits for a block, verifiable offline.
//! - [`Core`]: the Tendermint state machine, `step(Input, &mut Vec<Output>)`, sans-IO.
//!
//! This crate never does IO, reads a clock or draws random numbers, and knows nothing of
//! what is inside a block: it agrees on [`BlockHash`]es.

mod certificate;
mod core;
mod evidence;
pub mod limits;
mod proposal;
mod signer;
#[cfg(feature = "testing")]
pub mod sim;
mod types;
mod validators;
mod vote;

#[cfg(feature = "testing")]
pub use crate::core::Bug;
pub use crate::core::{
    ConfigError, Core, CoreConfig, Input, Output, SignedMessage, StateSummary, Stats, Step,
    Timeout, TimeoutParams, TimeoutStep,
};
pub use certificate::{CertificateError, CommitCertificate, CommitSig};
pub use evidence::{Evidence, EvidenceError};
pub use proposal::{Proposal, ProposalError, SignedProposal};
pub use signer::Signer;
pub use types::{BlockHash, Height, Round, ValidatorIndex, VoteType, VotingPower};
pub use validators::{Validator, ValidatorSet, ValidatorSetError};
pub use vote::{SignedVote, Vote, VoteError};
