//! Hard limits of the ledger format, fixed at compile time.
//!
//! Genesis parameters (`block_txs_max`, `block_bytes_max`) may choose smaller values per chain;
//! these constants are the ceilings every chain shares, so that a decoder can reject oversized
//! input before it allocates or hashes anything. Validator-set limits (count, total power) are
//! consensus's: `tally_consensus::limits`.

/// Size of an encoded [`crate::Tx`] today: from (32) + to (32) + amount (8) + nonce (8) +
/// signature (64).
pub const TX_BYTES: usize = 144;

/// Largest encoded transaction accepted by [`crate::Tx::decode`]. Larger than [`TX_BYTES`] so
/// that a later tx version can grow without changing the wire limit; today every valid tx is
/// exactly [`TX_BYTES`] long and anything else fails to decode.
pub const TX_BYTES_MAX: usize = 256;

/// Largest encoded block accepted by [`crate::Block::decode`], whatever the chain's
/// parameters say. The network layer sizes its message limits from this value.
pub const BLOCK_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Most transactions a chain may allow in one block. 50_000 txs of [`TX_BYTES`] fit in
/// [`BLOCK_BYTES_MAX`].
pub const BLOCK_TXS_MAX: u32 = 50_000;

/// Smallest `block_bytes_max` a genesis may set: a header with the longest chain id and a
/// handful of transactions must fit, or the chain could never include a tx.
pub const BLOCK_BYTES_MIN: u64 = 4096;

/// Most accounts a genesis may list.
pub const GENESIS_ACCOUNTS_MAX: usize = 1_000_000;

/// Longest genesis file [`crate::Genesis::load`] reads.
pub const GENESIS_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Longest validator name in a genesis file, in bytes.
pub const VALIDATOR_NAME_BYTES_MAX: usize = 64;

/// Largest consensus timeout (base or per-round delta) a genesis may set: one hour.
pub const TIMEOUT_MS_MAX: u64 = 3_600_000;

/// Largest `block_interval_ms` a genesis may set: one minute.
pub const BLOCK_INTERVAL_MS_MAX: u64 = 60_000;

const _: () = assert!(TX_BYTES <= TX_BYTES_MAX);
const _: () = assert!((BLOCK_TXS_MAX as usize) * TX_BYTES + 1024 <= BLOCK_BYTES_MAX);
const _: () = assert!(BLOCK_BYTES_MIN as usize <= BLOCK_BYTES_MAX);
