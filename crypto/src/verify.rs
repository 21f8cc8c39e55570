//! tally's one ed25519 verification rule, shared by single and batch verification.
//!
//! The rule (call it "strict cofactored"):
//! 1. S is canonical: S < l (the group order).
//! 2. The public key A is a canonical encoding of a curve point (it re-encodes to the same
//!    bytes) and is not of small order.
//! 3. R is a canonical encoding (y < p) of a curve point that is not of small order.
//! 4. The cofactored equation holds: `[8]([S]B - R - [k]A) = 0`, `k = SHA-512(R || A || M)`.
//!
//! Why cofactored: batch verification can only check the cofactored equation soundly (random
//! coefficients do not cancel torsion components reliably), so single verification must check
//! the same equation, or a signer could craft a signature (R with a torsion component) that a
//! batch accepts with probability 1/8 while single verification rejects it: two honest
//! validators would then disagree about a block. With the cofactored equation on both paths,
//! and the encoding checks done identically before either, batch and single verification
//! accept exactly the same signatures. Rules 2 and 3 reject the degenerate keys and nonces of
//! "Taming the many EdDSAs" that make a signature valid for any message.

use crate::keys::{PublicKey, Signature};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha512};

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("public key is not a canonical encoding of a curve point")]
    KeyEncoding,
    #[error("public key is of small order")]
    KeySmallOrder,
    #[error("signature R is not a canonical encoding of a curve point")]
    REncoding,
    #[error("signature R is of small order")]
    RSmallOrder,
    #[error("signature S is not below the group order")]
    SNotCanonical,
    #[error("signature does not match the public key and message")]
    Equation,
}

/// A public key that passed rule 2, decompressed once; cache these (see [`crate::KeyCache`]).
#[derive(Clone, Copy, Debug)]
pub struct ParsedKey {
    pub(crate) encoded: PublicKey,
    pub(crate) point: EdwardsPoint,
}

impl ParsedKey {
    pub fn parse(key: &PublicKey) -> Result<ParsedKey, VerifyError> {
        let point = CompressedEdwardsY(key.0).decompress().ok_or(VerifyError::KeyEncoding)?;
        if point.compress().0 != key.0 {
            return Err(VerifyError::KeyEncoding);
        }
        if point.is_small_order() {
            return Err(VerifyError::KeySmallOrder);
        }
        Ok(ParsedKey { encoded: *key, point })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.encoded
    }
}

/// A signature whose R and S passed rules 1 and 3, with its challenge k computed.
pub(crate) struct ParsedSignature {
    pub(crate) r: EdwardsPoint,
    pub(crate) s: Scalar,
    pub(crate) k: Scalar,
}

/// y < p = 2^255 - 19, on the little-endian encoding with the sign bit cleared. Encodings
/// with x = 0 and the sign bit set are also non-canonical; those points (y = 1 or y = -1) are
/// of small order and are rejected by that check.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    if top != 0x7f || bytes[1..31].iter().any(|&b| b != 0xff) {
        return true;
    }
    bytes[0] < 0xed
}

pub(crate) fn parse_signature(
    key: &ParsedKey,
    message: &[u8],
    sig: &Signature,
) -> Result<ParsedSignature, VerifyError> {
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(VerifyError::SNotCanonical)?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig.0[..32]);
    if !y_is_canonical(&r_bytes) {
        return Err(VerifyError::REncoding);
    }
    let r = CompressedEdwardsY(r_bytes).decompress().ok_or(VerifyError::REncoding)?;
    if r.is_small_order() {
        return Err(VerifyError::RSmallOrder);
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.encoded.0);
    h.update(message);
    let k = Scalar::from_hash(h);
    Ok(ParsedSignature { r, s, k })
}

/// Verifies one signature under tally's rule, with an already parsed key.
pub fn verify_parsed(key: &ParsedKey, message: &[u8], sig: &Signature) -> Result<(), VerifyError> {
    let p = parse_signature(key, message, sig)?;
    // [S]B - [k]A - R, then clear the cofactor.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-key.point, &p.s);
    if (sb_minus_ka - p.r).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(VerifyError::Equation)
    }
}

/// Verifies one signature over exactly `message` (build it with [`crate::signing_bytes`]).
pub fn verify(key: &PublicKey, message: &[u8], sig: &Signature) -> Result<(), VerifyError> {
    verify_parsed(&ParsedKey::parse(key)?, message, sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChainId, Domain, Keypair};

    #[test]
    fn honest_signature_verifies_and_tampering_fails() {
        let kp = Keypair::derive_insecure("v");
        let chain = ChainId::new("c").unwrap();
        let msg = crate::signing_bytes(Domain::Tx, &chain, b"payload");
        let sig = kp.sign_raw(&msg);
        assert_eq!(verify(&kp.public(), &msg, &sig), Ok(()));
        let mut other = msg.clone();
        other[0] ^= 1;
        assert_eq!(verify(&kp.public(), &other, &sig), Err(VerifyError::Equation));
        let wrong_key = Keypair::derive_insecure("w").public();
        assert_eq!(verify(&wrong_key, &msg, &sig), Err(VerifyError::Equation));
        // S + l is the same scalar mod l but not canonical.
        let mut high_s = sig;
        high_s.0[63] |= 0xf0;
        assert_eq!(verify(&kp.public(), &msg, &high_s), Err(VerifyError::SNotCanonical));
    }

    #[test]
    fn signature_for_another_domain_or_chain_fails() {
        let kp = Keypair::derive_insecure("v");
        let chain = ChainId::new("c").unwrap();
        let sig = kp.sign(Domain::Prevote, &chain, b"vote");
        let as_precommit = crate::signing_bytes(Domain::Precommit, &chain, b"vote");
        assert!(verify(&kp.public(), &as_precommit, &sig).is_err());
        let other_chain =
            crate::signing_bytes(Domain::Prevote, &ChainId::new("d").unwrap(), b"vote");
        assert!(verify(&kp.public(), &other_chain, &sig).is_err());
    }

    #[test]
    fn identity_key_is_rejected() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(ParsedKey::parse(&PublicKey(identity)).err(), Some(VerifyError::KeySmallOrder));
    }

    #[test]
    fn y_canonical_boundary() {
        let mut p = [0xffu8; 32];
        p[31] = 0x7f;
        p[0] = 0xec; // p - 1
        assert!(y_is_canonical(&p));
        p[0] = 0xed; // p
        assert!(!y_is_canonical(&p));
        p[31] = 0xff; // sign bit does not matter
        assert!(!y_is_canonical(&p));
    }
}
