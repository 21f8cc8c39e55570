//! Every JSON shape the RPC answers with, after CometBFT's where the two overlap: 64-bit
//! integers as decimal strings, hashes as upper-case-free hex, txs as base64 of their borsh
//! bytes. The other rooms hand typed values to the RPC; only this file turns them into JSON.

use super::RpcContext;
use crate::chain::{AccountView, TipView};
use crate::notify::BlockEvent;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use tally_consensus::{CommitCertificate, StateSummary};
use tally_crypto::{Hash, PublicKey};
use tally_ledger::{Block, Header, Tx, TxHash, TxProof};

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

/// `status`: the node's identity, the tip and this validator's power.
pub fn status(ctx: &RpcContext, tip: TipView) -> Value {
    let TipView { tip, header, earliest } = tip;
    let validators = ctx.chain.validators();
    let validator_info = match ctx.info.validator_key {
        Some(key) => {
            let power = validators.index_of(&key).map_or(0, |i| validators.power_of(i).0);
            json!({ "address": key.to_hex(), "pub_key": { "type": "tally/PubKeyEd25519",
                "value": b64(&key.0) }, "voting_power": power.to_string() })
        }
        None => json!({ "address": "", "voting_power": "0" }),
    };
    json!({
        "node_info": {
            "id": ctx.info.peer_id,
            "listen_addr": ctx.info.listen_addr,
            "network": ctx.chain.genesis().chain_id.as_str(),
            "version": env!("CARGO_PKG_VERSION"),
            "moniker": ctx.info.moniker,
        },
        "sync_info": {
            "latest_block_hash": tip.map(|(_, h)| h.0.to_hex()).unwrap_or_default(),
            "latest_app_hash": header.as_ref().map(|h| h.state_root.to_hex()).unwrap_or_default(),
            "latest_block_height": tip.map_or(0, |(h, _)| h.0).to_string(),
            "latest_block_time": header.as_ref().map(|h| rfc3339_ms(h.time_ms)).unwrap_or_default(),
            "earliest_block_height": earliest.to_string(),
            "catching_up": ctx.notify.catching_up(),
        },
        "validator_info": validator_info,
    })
}

/// `net_info`: this node's listener and its connected peers.
pub fn net_info(listen_addr: &str, peers: &[tally_network::PeerInfo]) -> Value {
    json!({
        "listening": true,
        "listeners": [listen_addr],
        "n_peers": peers.len().to_string(),
        "peers": peers.iter().map(|p| json!({ "node_info": { "id": p.peer_id.to_string() } })).collect::<Vec<_>>(),
    })
}

/// `consensus_state`: tally's own summary of the round in progress.
pub fn consensus_state(summary: Option<StateSummary>) -> Value {
    match summary {
        Some(s) => serde_json::to_value(s).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// `account`: the committed account, the nonce its next tx needs, and with `prove` its
/// proof of presence or absence.
pub fn account(key: &PublicKey, view: AccountView) -> Result<Value, std::io::Error> {
    let mut out = json!({
        "address": key.to_hex(),
        // An absent account reads as zeros, and says so.
        "exists": view.exists,
        "balance": view.account.balance.to_string(),
        "nonce": view.account.nonce.to_string(),
        "next_nonce": view.next_nonce.to_string(),
        "height": view.height.to_string(),
    });
    if let Some((present, root, proof)) = view.proof {
        out["proof"] = json!({
            "present": present,
            "state_root": root.to_hex(),
            // borsh(AccountProof), for `tally verify` and other light clients.
            "raw": b64(&borsh::to_vec(&proof)?),
        });
    }
    Ok(out)
}

/// A tx's Merkle proof, under the root of its block's tx tree.
pub fn tx_proof(
    tx: &Tx,
    hash: &TxHash,
    proof: &TxProof,
    tx_root: &Hash,
) -> Result<Value, std::io::Error> {
    Ok(json!({
        "root_hash": tx_root.to_hex(),
        "data": b64(&tx.encode()),
        "proof": {
            "total": proof.total.to_string(),
            "index": proof.index.to_string(),
            "leaf_hash": tally_ledger::tx_merkle::tx_leaf_hash(hash).to_hex(),
            "aunts": proof.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
            // borsh(TxProof), for `tally verify` and other light clients.
            "raw": b64(&borsh::to_vec(proof)?),
        },
    }))
}

/// A `tm.event='NewBlock'` notification.
pub fn new_block_event(query: &str, event: &BlockEvent) -> Value {
    let block = serde_json::to_value(BlockResult::new(&event.block)).unwrap_or(Value::Null);
    json!({
        "query": query,
        "data": {
            "type": "tendermint/event/NewBlock",
            "value": { "block": block["block"], "block_id": block["block_id"] },
        },
        "events": {
            "tm.event": ["NewBlock"],
            "block.height": [event.height.0.to_string()],
        },
    })
}

/// A `tm.event='Tx'` notification for the block's tx at `index`.
pub fn tx_event(query: &str, event: &BlockEvent, index: usize, hash: &TxHash) -> Value {
    let tx = &event.block.txs[index];
    json!({
        "query": query,
        "data": {
            "type": "tendermint/event/Tx",
            "value": {
                "TxResult": {
                    "height": event.height.0.to_string(),
                    "index": index,
                    "tx": b64(&tx.encode()),
                    "result": { "code": 0, "log": "" },
                },
            },
        },
        "events": {
            "tm.event": ["Tx"],
            "tx.hash": [hash.0.to_hex()],
            "tx.height": [event.height.0.to_string()],
        },
    })
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
