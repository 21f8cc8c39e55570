//! Batch verification under the rule of [`crate::verify`].
//!
//! A batch checks `[8]( [Σ z_i S_i]B - Σ [z_i]R_i - Σ [z_i k_i]A_i ) = 0` with independent
//! random 128-bit coefficients z_i, in one multiscalar multiplication. Each item's encodings
//! are checked exactly as single verification checks them, so a batch accepts exactly the
//! items that single verification accepts (up to a 2^-128 chance for an item that fails,
//! which the random coefficients make unpredictable to whoever crafted it). When a batch
//! fails, every item is verified on its own to name the bad ones.

use crate::verify::{parse_signature, verify_parsed, ParsedKey, VerifyError};
use crate::Signature;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand::RngCore;

/// The items of a batch that do not verify, each with its reason, by index into the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} of the batch's signatures do not verify", failures.len())]
pub struct BatchError {
    pub failures: Vec<(usize, VerifyError)>,
}

/// Verifies every `(key, message, signature)` item; on failure names each bad item.
pub fn verify_batch(items: &[(&ParsedKey, &[u8], &Signature)]) -> Result<(), BatchError> {
    if items.is_empty() {
        return Ok(());
    }
    if items.len() == 1 || batch_equation_holds(items) != Some(true) {
        let failures: Vec<(usize, VerifyError)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, (k, m, s))| verify_parsed(k, m, s).err().map(|e| (i, e)))
            .collect();
        return if failures.is_empty() { Ok(()) } else { Err(BatchError { failures }) };
    }
    Ok(())
}

/// `None` when an item fails its encoding checks (the fallback then names it).
fn batch_equation_holds(items: &[(&ParsedKey, &[u8], &Signature)]) -> Option<bool> {
    let mut rng = rand::thread_rng();
    let n = items.len();
    let mut scalars: Vec<Scalar> = Vec::with_capacity(2 * n + 1);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(2 * n + 1);
    let mut b_coefficient = Scalar::ZERO;
    scalars.push(Scalar::ZERO); // placeholder for the basepoint's coefficient
    points.push(ED25519_BASEPOINT_POINT);
    for (key, message, sig) in items {
        let parsed = parse_signature(key, message, sig).ok()?;
        let mut z_bytes = [0u8; 32];
        rng.fill_bytes(&mut z_bytes[..16]);
        let z = Scalar::from_bytes_mod_order(z_bytes);
        b_coefficient += z * parsed.s;
        scalars.push(-z);
        points.push(parsed.r);
        scalars.push(-(z * parsed.k));
        points.push(key.point);
    }
    scalars[0] = b_coefficient;
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars.iter(), points.iter());
    Some(sum.mul_by_cofactor().is_identity())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{signing_bytes, ChainId, Domain, Keypair};

    fn signed(n: usize) -> Vec<(ParsedKey, Vec<u8>, Signature)> {
        let chain = ChainId::new("c").unwrap();
        (0..n)
            .map(|i| {
                let kp = Keypair::derive_insecure(&format!("k{}", i % 7));
                let msg = signing_bytes(Domain::Tx, &chain, &(i as u64).to_le_bytes());
                let sig = kp.sign_raw(&msg);
                (ParsedKey::parse(&kp.public()).unwrap(), msg, sig)
            })
            .collect()
    }

    fn as_items(v: &[(ParsedKey, Vec<u8>, Signature)]) -> Vec<(&ParsedKey, &[u8], &Signature)> {
        v.iter().map(|(k, m, s)| (k, m.as_slice(), s)).collect()
    }

    #[test]
    fn valid_batch_passes() {
        let v = signed(64);
        assert_eq!(verify_batch(&as_items(&v)), Ok(()));
        assert_eq!(verify_batch(&[]), Ok(()));
    }

    #[test]
    fn bad_items_are_named() {
        let mut v = signed(32);
        v[3].1.push(0); // message changed
        v[17].2 .0[0] ^= 1; // R changed
        let err = verify_batch(&as_items(&v)).unwrap_err();
        let idx: Vec<usize> = err.failures.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![3, 17]);
    }
}
