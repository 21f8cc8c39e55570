//! The 32-byte blake3 hash used for blocks, transactions, Merkle trees and state.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A blake3 digest. Serialized as 32 raw bytes (borsh) or 64 lowercase hex characters (serde).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

/// A hex string that is not the expected number of hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected_len} hex characters, got {got:?}")]
pub struct HexError {
    pub expected_len: usize,
    pub got: String,
}

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);
    pub const LEN: usize = 32;

    /// blake3 of `data`.
    pub fn digest(data: &[u8]) -> Hash {
        Hash(*blake3::hash(data).as_bytes())
    }

    /// blake3 of the concatenation of `parts`, without building the concatenation.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (upper or lower case, no prefix).
    pub fn from_hex(s: &str) -> Result<Hash, HexError> {
        decode_hex_array::<32>(s).map(Hash)
    }
}

/// Decodes exactly `N` bytes of hex; shared by hashes, keys and signatures.
pub(crate) fn decode_hex_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let err = || HexError { expected_len: N * 2, got: s.chars().take(2 * N + 8).collect() };
    if s.len() != N * 2 {
        return Err(err());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
    Ok(out)
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..12])
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parts_equals_digest_of_concatenation() {
        assert_eq!(Hash::digest_parts(&[b"ab", b"", b"cd"]), Hash::digest(b"abcd"));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::digest(b"tally");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Ok(h));
        assert!(Hash::from_hex("abcd").is_err());
        assert!(Hash::from_hex(&"zz".repeat(32)).is_err());
        let json = serde_json_like(&h);
        assert_eq!(json.len(), 64);
    }

    fn serde_json_like(h: &Hash) -> String {
        h.to_string()
    }
}
