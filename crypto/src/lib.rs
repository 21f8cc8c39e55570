//! tally-crypto: hashes, keys and signatures for tally.
//!
//! - [`Hash`]: blake3, 32 bytes.
//! - [`Keypair`], [`PublicKey`], [`Signature`]: ed25519 (keys and signing by ed25519-dalek).
//! - Domain-separated signing: every signed payload is prefixed by a [`Domain`] tag and the
//!   chain id ([`signing_bytes`]), so a signature made for one purpose or chain never
//!   verifies for another.
//! - One verification rule, shared by single and batch verification ([`verify`]), so that a
//!   crafted signature cannot make two validators disagree about a block's validity.
//! - [`Verifier`]: rayon-parallel batch verification with a bounded cache of decompressed
//!   public keys and a bounded cache of verified signatures.
//!
//! This crate knows nothing about blocks, votes or IO.

mod batch;
mod cache;
mod hash;
mod keys;
mod verifier;
mod verify;

pub use batch::{verify_batch, BatchError};
pub use cache::{KeyCache, SigCache};
pub use hash::{Hash, HexError};
pub use keys::{signing_bytes, ChainId, ChainIdError, Domain, Keypair, PublicKey, Signature};
pub use verifier::{SignedItem, Verifier, VerifierConfig};
pub use verify::{verify, ParsedKey, VerifyError};
