//! Decoding untrusted borsh bytes under an explicit size limit.

use borsh::BorshDeserialize;

/// Why bytes from a peer, a client or the disk do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} is followed by {count} trailing bytes")]
    TrailingBytes { what: &'static str, count: usize },
}

/// Decodes exactly one `T` from `bytes`. The length is checked before any decoding, so an
/// oversized input costs nothing; bytes left over after the value are an error, so that one
/// value has exactly one encoding (hashes of encodings are identities).
pub fn decode_bounded<T: BorshDeserialize>(
    bytes: &[u8],
    max: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge { what, len: bytes.len(), max });
    }
    let mut rest = bytes;
    let value = T::deserialize(&mut rest)
        .map_err(|e| DecodeError::Malformed { what, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { what, count: rest.len() });
    }
    Ok(value)
}

/// borsh encoding of a value whose encoding cannot fail (no maps with failing keys, no IO).
pub(crate) fn encode<T: borsh::BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec does not fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_checked_before_decoding() {
        let bytes = vec![0u8; 9];
        let err = decode_bounded::<u64>(&bytes, 8, "thing").unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { what: "thing", len: 9, max: 8 });
    }

    #[test]
    fn trailing_and_short_input_are_rejected() {
        let mut bytes = 7u32.to_le_bytes().to_vec();
        assert_eq!(decode_bounded::<u32>(&bytes, 8, "n"), Ok(7));
        bytes.push(0);
        assert_eq!(
            decode_bounded::<u32>(&bytes, 8, "n"),
            Err(DecodeError::TrailingBytes { what: "n", count: 1 })
        );
        assert!(matches!(
            decode_bounded::<u64>(&bytes[..3], 8, "n"),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
