//! Who signs this validator's messages. A trait so that the simulator and benches can use a
//! fast stand-in; the node uses [`tally_crypto::Keypair`].

use tally_crypto::{Keypair, PublicKey, Signature};

/// Signs exact signing bytes (built by [`crate::Vote::signing_bytes`] or
/// [`crate::Proposal::signing_bytes`]). Implementations must be deterministic for the
/// double-signing record to make sense: ed25519 is.
pub trait Signer {
    fn public_key(&self) -> PublicKey;
    fn sign(&self, message: &[u8]) -> Signature;
}

impl Signer for Keypair {
    fn public_key(&self) -> PublicKey {
        self.public()
    }

    fn sign(&self, message: &[u8]) -> Signature {
        self.sign_raw(message)
    }
}
