//! JSON shapes of the RPC results, after CometBFT's where the two overlap: 64-bit integers as
//! decimal strings, hashes as upper-case-free hex, txs as base64 of their borsh bytes.

use base64::Engine as _;
use serde::Serialize;
use tally_consensus::CommitCertificate;
use tally_ledger::{Block, Header, Tx, TxHash};

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Serialize)]
pub struct BlockId {
    pub hash: String,
}

#[derive(Serialize)]
pub struct HeaderJson {
    pub chain_id: String,
    pub height: String,
    pub time: String,
    pub time_ms: String,
    pub last_block_id: BlockId,
    /// Root of the block's tx Merkle tree (CometBFT's data_hash).
    pub data_hash: String,
    pub num_txs: String,
    /// Root of the account state after this block (CometBFT's app_hash).
    pub app_hash: String,
    pub validators_hash: String,
    pub proposer_address: String,
}

impl HeaderJson {
    pub fn new(h: &Header) -> HeaderJson {
        HeaderJson {
            chain_id: h.chain_id.to_string(),
            height: h.height.0.to_string(),
            time: rfc3339_ms(h.time_ms),
            time_ms: h.time_ms.to_string(),
            last_block_id: BlockId { hash: h.prev_block_hash.0.to_hex() },
            data_hash: h.tx_root.to_hex(),
            num_txs: h.tx_count.to_string(),
            app_hash: h.state_root.to_hex(),
            validators_hash: h.validators_hash.to_hex(),
            proposer_address: h.proposer.to_hex(),
        }
    }
}

#[derive(Serialize)]
pub struct CommitSigJson {
    pub validator_index: u32,
    pub validator_address: String,
    pub signature: String,
}

#[derive(Serialize)]
pub struct CommitJson {
    pub height: String,
    pub round: u32,
    pub block_id: BlockId,
    pub signatures: Vec<CommitSigJson>,
}

impl CommitJson {
    pub fn new(c: &CommitCertificate, validators: &tally_consensus::ValidatorSet) -> CommitJson {
        CommitJson {
            height: c.height.0.to_string(),
            round: c.round.0,
            block_id: BlockId { hash: c.block_hash.0.to_hex() },
            signatures: c
                .signatures
                .iter()
                .map(|s| CommitSigJson {
                    validator_index: s.validator.0,
                    validator_address: validators
                        .get(s.validator)
                        .map(|v| v.public_key.to_hex())
                        .unwrap_or_default(),
                    signature: b64(&s.signature.0),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct BlockData {
    pub txs: Vec<String>,
}

#[derive(Serialize)]
pub struct BlockJson {
    pub header: HeaderJson,
    pub data: BlockData,
}

#[derive(Serialize)]
pub struct BlockResult {
    pub block_id: BlockId,
    pub block: BlockJson,
}

impl BlockResult {
    pub fn new(block: &Block) -> BlockResult {
        BlockResult {
            block_id: BlockId { hash: block.hash().0.to_hex() },
            block: BlockJson {
                header: HeaderJson::new(&block.header),
                data: BlockData { txs: block.txs.iter().map(|t| b64(&t.encode())).collect() },
            },
        }
    }
}

#[derive(Serialize)]
pub struct TxJson {
    pub hash: String,
    pub from: String,
    pub to: String,
    pub amount: String,
    pub nonce: String,
}

impl TxJson {
    pub fn new(tx: &Tx, hash: &TxHash) -> TxJson {
        TxJson {
            hash: hash.0.to_hex(),
            from: tx.transfer.from.to_hex(),
            to: tx.transfer.to.to_hex(),
            amount: tx.transfer.amount.to_string(),
            nonce: tx.transfer.nonce.to_string(),
        }
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC (`2026-11-25T09:32:14.123Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339_ms(1_795_599_134_123), "2026-11-25T09:32:14.123Z");
        assert_eq!(super::rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
