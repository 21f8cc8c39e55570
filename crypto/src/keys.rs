//! Keys, signatures, domain tags and the exact bytes that are signed.

use crate::hash::{decode_hex_array, HexError};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What a signature is for. Each domain has its own tag, so a signature made for one
/// purpose never verifies as another. Changing a tag is a breaking change of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    Tx,
    Proposal,
    Prevote,
    Precommit,
}

impl Domain {
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Domain::Tx => b"tally/tx/v1",
            Domain::Proposal => b"tally/proposal/v1",
            Domain::Prevote => b"tally/prevote/v1",
            Domain::Precommit => b"tally/precommit/v1",
        }
    }
}

/// The chain id: 1 to [`ChainId::LEN_MAX`] characters from `[A-Za-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize)]
pub struct ChainId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chain id {0:?}: want 1 to 50 characters from [A-Za-z0-9._-]")]
pub struct ChainIdError(pub String);

impl ChainId {
    pub const LEN_MAX: usize = 50;

    pub fn new(s: impl Into<String>) -> Result<ChainId, ChainIdError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= Self::LEN_MAX
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(ChainId(s))
        } else {
            Err(ChainIdError(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl BorshDeserialize for ChainId {
    /// Checks the length prefix against [`ChainId::LEN_MAX`] before reading the text: borsh's
    /// `String` reserves up to 1 MiB for whatever length a peer claims (found by the
    /// `wire_decode` fuzz target: 465 bytes of input made the decoder allocate 1 MiB).
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let len = u32::deserialize_reader(reader)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > ChainId::LEN_MAX {
            return Err(invalid(format!(
                "chain id of {len} bytes, more than the maximum {}",
                ChainId::LEN_MAX
            )));
        }
        let mut bytes = vec![0u8; len];
        reader.read_exact(&mut bytes)?;
        let s = String::from_utf8(bytes).map_err(|e| invalid(e.to_string()))?;
        ChainId::new(s).map_err(|e| invalid(e.to_string()))
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

impl Serialize for ChainId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ChainId::new(<String as Deserialize>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The bytes an ed25519 signature covers: `tag || 0x00 || len(chain_id) as u8 || chain_id ||
/// payload`. The zero byte ends the tag, the length byte makes the chain id unambiguous.
pub fn signing_bytes(domain: Domain, chain_id: &ChainId, payload: &[u8]) -> Vec<u8> {
    let tag = domain.tag();
    let chain = chain_id.as_str().as_bytes();
    let mut out = Vec::with_capacity(tag.len() + 2 + chain.len() + payload.len());
    out.extend_from_slice(tag);
    out.push(0);
    // ChainId::new caps the length at 50, so it fits in one byte.
    out.push(u8::try_from(chain.len()).expect("chain id length is at most 50"));
    out.extend_from_slice(chain);
    out.extend_from_slice(payload);
    out
}

/// An ed25519 public key as its 32-byte encoding. Whether the encoding is a valid key is
/// decided when it is used to verify (see [`crate::ParsedKey`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Result<PublicKey, HexError> {
        decode_hex_array::<32>(s).map(PublicKey)
    }
}

/// An ed25519 signature: R (32 bytes) then S (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Result<Signature, HexError> {
        decode_hex_array::<64>(s).map(Signature)
    }
}

macro_rules! hex_serde_and_fmt {
    ($ty:ident, $name:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({})"), &self.to_hex()[..12])
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                $ty::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_serde_and_fmt!(PublicKey, "PublicKey");
hex_serde_and_fmt!(Signature, "Signature");

/// An ed25519 signing key. Its 32-byte seed is the secret; `Debug` never prints it.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl Keypair {
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Keypair { signing, public }
    }

    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Keypair {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let keypair = Keypair::from_seed(seed);
        zeroize::Zeroize::zeroize(&mut seed);
        keypair
    }

    /// A key derived from a label: blake3 of `tally/derive/v1 || label`. For test accounts
    /// and testnets only: anyone who knows the label knows the key.
    pub fn derive_insecure(label: &str) -> Keypair {
        let seed = crate::Hash::digest_parts(&[b"tally/derive/v1", label.as_bytes()]);
        Keypair::from_seed(seed.0)
    }

    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs `payload` for `domain` on `chain_id` (see [`signing_bytes`]).
    pub fn sign(&self, domain: Domain, chain_id: &ChainId, payload: &[u8]) -> Signature {
        self.sign_raw(&signing_bytes(domain, chain_id, payload))
    }

    /// Signs exactly `message`; callers build it with [`signing_bytes`].
    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.public)
    }
}

#[cfg(test)]
mod tests {

    /// Regression (fuzz target `wire_decode`): a chain id's length prefix is checked before
    /// anything is reserved, and the decoder still reads what the encoder writes.
    #[test]
    fn chain_id_decode_checks_the_length_first() {
        let id = ChainId::new("tally-test").unwrap();
        let bytes = borsh::to_vec(&id).unwrap();
        assert_eq!(borsh::from_slice::<ChainId>(&bytes).unwrap(), id);
        let mut huge = 0x00ff_ffffu32.to_le_bytes().to_vec();
        huge.extend_from_slice(b"abc");
        assert!(borsh::from_slice::<ChainId>(&huge).is_err());
        let long = borsh::to_vec(&"x".repeat(ChainId::LEN_MAX + 1)).unwrap();
        assert!(borsh::from_slice::<ChainId>(&long).is_err());
        assert!(borsh::from_slice::<ChainId>(&[3, 0, 0, 0, b'a']).is_err());
    }
    use super::*;

    #[test]
    fn signing_bytes_layout() {
        let chain = ChainId::new("t-1").unwrap();
        let bytes = signing_bytes(Domain::Tx, &chain, b"xy");
        assert_eq!(bytes, b"tally/tx/v1\x00\x03t-1xy".to_vec());
    }

    #[test]
    fn domain_tags_are_distinct_and_not_prefixes_of_each_other() {
        let all = [Domain::Tx, Domain::Proposal, Domain::Prevote, Domain::Precommit];
        for a in all {
            for b in all {
                if a != b {
                    assert!(!a.tag().starts_with(b.tag()), "{a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn chain_id_rules() {
        assert!(ChainId::new("tally-local_1.0").is_ok());
        assert!(ChainId::new("").is_err());
        assert!(ChainId::new("a b").is_err());
        assert!(ChainId::new("x".repeat(51)).is_err());
        let bad = borsh::to_vec(&"a b".to_string()).unwrap();
        assert!(borsh::from_slice::<ChainId>(&bad).is_err());
    }

    #[test]
    fn derived_keys_are_stable() {
        let a = Keypair::derive_insecure("account/0");
        let b = Keypair::derive_insecure("account/0");
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), Keypair::derive_insecure("account/1").public());
        assert_eq!(Keypair::from_seed(a.seed()).public(), a.public());
    }
}
