//! Target `signatures`: batch and single ed25519 verification agree on every input.
//!
//! Items are honest signatures by test keys, and crafted edge cases the fuzzer combines:
//! keys and nonces with a small-order (torsion) component, small-order and non-canonical
//! encodings, non-canonical `S` (S + L), and bit flips in key, message or signature.
//!
//! Oracles: `verify_batch` names exactly the items `verify` refuses, with the same error; a
//! key that does not parse is refused by `verify` with the parse error; the cached, parallel
//! `Verifier::verify_many` (one instance for the whole run, so its caches are exercised)
//! returns exactly the single verdicts, and so does `Verifier::verify`.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use std::sync::OnceLock;
use tally_crypto::{
    verify, verify_batch, Hash, ParsedKey, PublicKey, Signature, SignedItem, Verifier,
    VerifierConfig, VerifyError,
};

const ITEMS_MAX: usize = 12;

/// The group order L, little endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

fn scalar(label: &[u8], i: u8) -> Scalar {
    Scalar::from_bytes_mod_order(Hash::digest_parts(&[b"tally-fuzz/scalar", label, &[i]]).0)
}

/// Little-endian 256-bit addition (S + L never overflows 256 bits for S < 2^253).
fn add_l(s: [u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

struct Item {
    key: PublicKey,
    message: Vec<u8>,
    signature: Signature,
}

/// One item from 5 bytes of input: key kind, nonce kind, message, tamper kind, tamper spot.
fn item(r: &mut Reader<'_>) -> Item {
    let (key_kind, nonce_kind, msg, tamper, spot) =
        (r.byte(), r.byte(), r.byte(), r.byte(), r.byte());
    let a = scalar(b"key", key_kind % 4);
    let mut a_point = ED25519_BASEPOINT_POINT * a;
    if key_kind & 0x10 != 0 {
        a_point += EIGHT_TORSION[usize::from(key_kind >> 5)];
    }
    let mut key = PublicKey(a_point.compress().0);
    if key_kind & 0x0c == 0x0c {
        // A small-order key, or one of the non-canonical encodings of y.
        key.0 = if key_kind & 0x80 != 0 {
            EIGHT_TORSION[usize::from(key_kind >> 4 & 7)].compress().0
        } else {
            let mut y = [0xff; 32];
            y[31] = 0x7f;
            y[0] = 0xed + (key_kind >> 4 & 7).min(0x12);
            y
        };
    }
    let message = vec![msg; usize::from(msg % 5)];
    let rs = scalar(b"nonce", nonce_kind);
    let mut r_point: EdwardsPoint = ED25519_BASEPOINT_POINT * rs;
    if nonce_kind & 0x40 != 0 {
        r_point += EIGHT_TORSION[usize::from(nonce_kind & 7)];
    }
    let r_bytes = r_point.compress().0;
    let k = Scalar::from_hash(
        Sha512::new().chain_update(r_bytes).chain_update(key.0).chain_update(&message),
    );
    let s = rs + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    let mut item = Item { key, message, signature: Signature(sig) };
    match tamper % 8 {
        0 => {
            let mut s_bytes = [0u8; 32];
            s_bytes.copy_from_slice(&item.signature.0[32..]);
            item.signature.0[32..].copy_from_slice(&add_l(s_bytes));
        }
        1 => item.signature.0[usize::from(spot % 64)] ^= 1 << (spot % 8),
        2 => item.key.0[usize::from(spot % 32)] ^= 1 << (spot % 8),
        3 => item.message.push(spot),
        4 => item.signature.0[..32]
            .copy_from_slice(&EIGHT_TORSION[usize::from(spot % 8)].compress().0),
        _ => {}
    }
    item
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| Verifier::new(VerifierConfig::default()))
}

pub fn run(data: &[u8]) {
    let mut r = Reader(data);
    let mut items = Vec::new();
    while !r.0.is_empty() && items.len() < ITEMS_MAX {
        items.push(item(&mut r));
    }
    let single: Vec<Result<(), VerifyError>> =
        items.iter().map(|i| verify(&i.key, &i.message, &i.signature)).collect();

    let parsed: Vec<(usize, ParsedKey)> = items
        .iter()
        .enumerate()
        .filter_map(|(n, i)| match ParsedKey::parse(&i.key) {
            Ok(k) => Some((n, k)),
            Err(e) => {
                assert_eq!(single[n], Err(e), "verify and ParsedKey::parse disagree");
                None
            }
        })
        .collect();
    let batch: Vec<(&ParsedKey, &[u8], &Signature)> = parsed
        .iter()
        .map(|(n, k)| (k, items[*n].message.as_slice(), &items[*n].signature))
        .collect();
    let expected: Vec<(usize, VerifyError)> = parsed
        .iter()
        .enumerate()
        .filter_map(|(b, (n, _))| single[*n].err().map(|e| (b, e)))
        .collect();
    match verify_batch(&batch) {
        Ok(()) => assert!(expected.is_empty(), "batch accepts what single refuses: {expected:?}"),
        Err(e) => assert_eq!(e.failures, expected, "batch and single disagree"),
    }

    let signed: Vec<SignedItem<'_>> = items
        .iter()
        .map(|i| SignedItem { key: &i.key, message: &i.message, signature: &i.signature })
        .collect();
    assert_eq!(verifier().verify_many(&signed), single, "verify_many disagrees");
    for (item, want) in signed.iter().zip(&single) {
        assert_eq!(verifier().verify(*item), *want, "Verifier::verify disagrees");
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        // Honest items by different keys.
        vec![0, 1, 2, 5, 0, 1, 2, 3, 5, 0, 2, 3, 4, 5, 0],
        // Torsion in the key and in R (cofactored rule accepts both).
        vec![0x10 | 0x20, 1, 2, 5, 0, 0, 0x41, 3, 5, 0, 3, 4, 4, 5, 0],
        // Non-canonical S, bit flips, small-order R, small-order and non-canonical keys.
        vec![0, 1, 2, 0, 0, 1, 2, 3, 1, 9, 2, 3, 4, 4, 3, 0x8c, 1, 1, 5, 0, 0x1c, 2, 2, 5, 0],
    ]
}
