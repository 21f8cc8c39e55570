//! Every JSON shape the RPC answers with, field for field as CometBFT v0.38 writes it
//! (amino-JSON): 64-bit integers as decimal strings, hashes as upper-case hex, bytes as
//! base64, times as RFC 3339 with nanoseconds, validators by their 20-byte address and
//! `tendermint/PubKeyEd25519` key. Where tally has no such concept the field is present with
//! CometBFT's empty value; tally's own data rides in extra fields, which CometBFT's clients
//! ignore. The other rooms hand typed values to the RPC; only this file turns them into
//! JSON.
//!
//! The field-by-field requirements of a stock client are in
//! `docs/design/cometbft-rpc-client.md`.

use super::RpcContext;
use crate::chain::{AccountView, TipView};
use crate::notify::BlockEvent;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Digest as _;
use tally_consensus::{CommitCertificate, StateSummary, ValidatorSet};
use tally_crypto::{Hash, PublicKey};
use tally_ledger::{Block, Genesis, Header, Tx, TxHash, TxProof};

/// The CometBFT RPC dialect tally speaks, as `node_info.version` (clients that pick their
/// dialect from the version read 0.38); tally's own version is in `node_info.other` and
/// `abci_info`.
pub const COMETBFT_VERSION: &str = concat!("0.38.0-tally.", env!("CARGO_PKG_VERSION"));

/// CometBFT's block protocol version (`header.version.block`).
const BLOCK_PROTOCOL: &str = "11";
/// CometBFT's p2p protocol version.
const P2P_PROTOCOL: &str = "8";
/// tally's application version (`header.version.app`, `abci_info.app_version`).
pub const APP_VERSION: &str = "1";

/// The "no time" of an absent commit signature (Go's zero time).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A hash as CometBFT writes it: upper-case hex.
pub fn upper(h: &Hash) -> String {
    hex::encode_upper(h.0)
}

/// CometBFT's 20-byte address of an ed25519 key: the first 20 bytes of its SHA-256.
pub fn address(key: &PublicKey) -> [u8; 20] {
    let digest = sha2::Sha256::digest(key.0);
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest[..20]);
    out
}

/// [`address`] as upper-case hex, how CometBFT writes validator addresses.
pub fn address_hex(key: &PublicKey) -> String {
    hex::encode_upper(address(key))
}

/// CometBFT's node id of a node key: its address, lower-case hex.
pub fn node_id(key: &PublicKey) -> String {
    hex::encode(address(key))
}

pub fn pub_key(key: &PublicKey) -> Value {
    json!({ "type": "tendermint/PubKeyEd25519", "value": b64(&key.0) })
}

#[derive(Serialize)]
pub struct PartSetHeader {
    pub total: u32,
    pub hash: String,
}

/// CometBFT's block id. tally sends blocks whole, not in parts: `parts` is CometBFT's empty
/// part-set header.
#[derive(Serialize)]
pub struct BlockId {
    pub hash: String,
    pub parts: PartSetHeader,
}

impl BlockId {
    pub fn of(hash: &Hash) -> BlockId {
        BlockId { hash: upper(hash), parts: PartSetHeader { total: 0, hash: String::new() } }
    }

    pub fn empty() -> BlockId {
        BlockId { hash: String::new(), parts: PartSetHeader { total: 0, hash: String::new() } }
    }
}

#[derive(Serialize)]
pub struct Version {
    pub block: &'static str,
    pub app: &'static str,
}

#[derive(Serialize)]
pub struct HeaderJson {
    pub version: Version,
    pub chain_id: String,
    pub height: String,
    pub time: String,
    /// The parent's block id; empty at height 1 (CometBFT's rule), whose parent hash is the
    /// genesis hash (in `prev_block_hash`).
    pub last_block_id: BlockId,
    /// tally's blocks carry no last commit, results or evidence: empty.
    pub last_commit_hash: String,
    /// Root of the block's tx Merkle tree.
    pub data_hash: String,
    pub validators_hash: String,
    /// The set is fixed by genesis: the same as `validators_hash`.
    pub next_validators_hash: String,
    pub consensus_hash: String,
    /// Root of the account state *after* this block (CometBFT's is the state after the
    /// previous block).
    pub app_hash: String,
    pub last_results_hash: String,
    pub evidence_hash: String,
    pub proposer_address: String,
    // tally's own.
    pub time_ms: String,
    pub num_txs: String,
    pub prev_block_hash: String,
    pub proposer_pub_key: String,
}

impl HeaderJson {
    pub fn new(h: &Header) -> HeaderJson {
        HeaderJson {
            version: Version { block: BLOCK_PROTOCOL, app: APP_VERSION },
            chain_id: h.chain_id.to_string(),
            height: h.height.0.to_string(),
            time: rfc3339_ms(h.time_ms),
            last_block_id: if h.height.0 <= 1 {
                BlockId::empty()
            } else {
                BlockId::of(&h.prev_block_hash.0)
            },
            last_commit_hash: String::new(),
            data_hash: upper(&h.tx_root),
            validators_hash: upper(&h.validators_hash),
            next_validators_hash: upper(&h.validators_hash),
            consensus_hash: String::new(),
            app_hash: upper(&h.state_root),
            last_results_hash: String::new(),
            evidence_hash: String::new(),
            proposer_address: address_hex(&h.proposer),
            time_ms: h.time_ms.to_string(),
            num_txs: h.tx_count.to_string(),
            prev_block_hash: upper(&h.prev_block_hash.0),
            proposer_pub_key: h.proposer.to_hex(),
        }
    }
}

/// One validator's entry in a commit: every validator of the set, in index order.
#[derive(Serialize)]
pub struct CommitSigJson {
    /// 1: absent, 2: signed for the block (tally's certificates hold only those).
    pub block_id_flag: u8,
    pub validator_address: String,
    /// tally's votes carry no time: a signature shows the time of the block it commits.
    pub timestamp: String,
    pub signature: Option<String>,
}

#[derive(Serialize)]
pub struct CommitJson {
    pub height: String,
    pub round: u32,
    pub block_id: BlockId,
    pub signatures: Vec<CommitSigJson>,
}

impl CommitJson {
    /// The commit of `c`, whose block was made at `time_ms`.
    pub fn new(c: &CommitCertificate, validators: &ValidatorSet, time_ms: u64) -> CommitJson {
        let time = rfc3339_ms(time_ms);
        let signatures = validators
            .indexed()
            .map(|(i, v)| match c.signatures.iter().find(|s| s.validator == i) {
                Some(s) => CommitSigJson {
                    block_id_flag: 2,
                    validator_address: address_hex(&v.public_key),
                    timestamp: time.clone(),
                    signature: Some(b64(&s.signature.0)),
                },
                None => CommitSigJson {
                    block_id_flag: 1,
                    validator_address: String::new(),
                    timestamp: ZERO_TIME.to_string(),
                    signature: None,
                },
            })
            .collect();
        CommitJson {
            height: c.height.0.to_string(),
            round: c.round.0,
            block_id: BlockId::of(&c.block_hash.0),
            signatures,
        }
    }
}

#[derive(Serialize)]
pub struct BlockData {
    pub txs: Vec<String>,
}

#[derive(Serialize)]
pub struct EvidenceList {
    pub evidence: Vec<Value>,
}

#[derive(Serialize)]
pub struct BlockJson {
    pub header: HeaderJson,
    pub data: BlockData,
    pub evidence: EvidenceList,
    /// The commit of the previous height (null at height 1, and where this node does not
    /// hold it).
    pub last_commit: Option<CommitJson>,
}

#[derive(Serialize)]
pub struct BlockResult {
    pub block_id: BlockId,
    pub block: BlockJson,
}

impl BlockResult {
    pub fn new(block: &Block, last_commit: Option<CommitJson>) -> BlockResult {
        BlockResult {
            block_id: BlockId::of(&block.hash().0),
            block: BlockJson {
                header: HeaderJson::new(&block.header),
                data: BlockData { txs: block.txs.iter().map(|t| b64(&t.encode())).collect() },
                evidence: EvidenceList { evidence: Vec::new() },
                last_commit,
            },
        }
    }
}

/// `blockchain`'s entry for one block.
pub fn block_meta(block: &Block) -> Value {
    json!({
        "block_id": BlockId::of(&block.hash().0),
        "block_size": block.encoded_len().to_string(),
        "header": HeaderJson::new(&block.header),
        "num_txs": block.txs.len().to_string(),
    })
}

/// tally's own view of a transfer, beside CometBFT's base64 bytes.
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
            hash: upper(&hash.0),
            from: tx.transfer.from.to_hex(),
            to: tx.transfer.to.to_hex(),
            amount: tx.transfer.amount.to_string(),
            nonce: tx.transfer.nonce.to_string(),
        }
    }
}

fn attribute(key: &str, value: String) -> Value {
    json!({ "key": key, "value": value, "index": true })
}

/// The events a committed transfer emits (`transfer.sender`, `transfer.recipient`,
/// `transfer.amount`, `transfer.nonce`; accounts as tally writes them, the public key's
/// lower-case hex).
pub fn tx_events(tx: &Tx) -> Value {
    let t = &tx.transfer;
    json!([{
        "type": "transfer",
        "attributes": [
            attribute("sender", t.from.to_hex()),
            attribute("recipient", t.to.to_hex()),
            attribute("amount", t.amount.to_string()),
            attribute("nonce", t.nonce.to_string()),
        ],
    }])
}

/// CometBFT's `ExecTxResult` of a committed tx: every tx in a tally block executed (a block
/// with a tx that fails is not valid), so the code is 0. tally has no gas.
pub fn exec_tx_result(tx: &Tx) -> Value {
    json!({
        "code": 0,
        "data": null,
        "log": "",
        "info": "",
        "gas_wanted": "0",
        "gas_used": "0",
        "events": tx_events(tx),
        "codespace": "",
    })
}

/// CometBFT's `ResponseCheckTx`: code 0 (with the tx's hash as `data`), or a refusal's
/// stable code with `codespace` "tally" and what is wrong in `log`.
pub fn check_tx_result(code: u32, log: &str) -> Value {
    json!({
        "code": code,
        "data": null,
        "log": log,
        "info": "",
        "gas_wanted": "0",
        "gas_used": "0",
        "events": [],
        "codespace": if code == 0 { "" } else { super::refusals::CODESPACE },
    })
}

/// `tx` and each of `tx_search`'s results.
pub fn tx_result(
    tx: &Tx,
    hash: &TxHash,
    height: u64,
    index: u32,
    proof: Option<(&TxProof, &Hash)>,
) -> Result<Value, std::io::Error> {
    let mut out = json!({
        "hash": upper(&hash.0),
        "height": height.to_string(),
        "index": index,
        "tx_result": exec_tx_result(tx),
        "tx": b64(&tx.encode()),
        "transfer": TxJson::new(tx, hash),
    });
    if let Some((proof, root)) = proof {
        out["proof"] = tx_proof(tx, hash, proof, root)?;
    }
    Ok(out)
}

/// `block_results`: each tx's result and events.
pub fn block_results(block: &Block) -> Value {
    json!({
        "height": block.header.height.0.to_string(),
        "txs_results": block.txs.iter().map(exec_tx_result).collect::<Vec<_>>(),
        "finalize_block_events": [],
        "validator_updates": [],
        "consensus_param_updates": null,
        "app_hash": b64(&block.header.state_root.0),
    })
}

/// One validator as CometBFT lists it.
pub fn validator(key: &PublicKey, power: u64, name: Option<&str>) -> Value {
    let mut v = json!({
        "address": address_hex(key),
        "pub_key": pub_key(key),
        "voting_power": power.to_string(),
        "proposer_priority": "0",
    });
    if let Some(name) = name {
        v["name"] = json!(name);
    }
    v
}

/// `consensus_params` as CometBFT writes them; tally's own parameters (timeouts, the most
/// txs of a block) in `tally`.
pub fn consensus_params(genesis: &Genesis) -> Value {
    let p = &genesis.params;
    json!({
        "block": { "max_bytes": p.block_bytes_max.to_string(), "max_gas": "-1" },
        "evidence": {
            // tally keeps no evidence window: evidence is checked whenever it is seen.
            "max_age_num_blocks": "0",
            "max_age_duration": "0",
            "max_bytes": "0",
        },
        "validator": { "pub_key_types": ["ed25519"] },
        "version": { "app": APP_VERSION },
        "abci": { "vote_extensions_enable_height": "0" },
        "tally": p,
    })
}

/// `genesis`: CometBFT's genesis document; tally's genesis file whole in `app_state`.
pub fn genesis(genesis: &Genesis) -> Value {
    json!({
        "genesis_time": rfc3339_ms(genesis.genesis_time_ms),
        "chain_id": genesis.chain_id.as_str(),
        "initial_height": "1",
        "consensus_params": consensus_params(genesis),
        "validators": genesis
            .validators
            .iter()
            .map(|v| json!({
                "address": address_hex(&v.public_key),
                "pub_key": pub_key(&v.public_key),
                "power": v.power.to_string(),
                "name": v.name,
            }))
            .collect::<Vec<_>>(),
        "app_hash": "",
        "app_state": genesis,
    })
}

/// `status`: the node's identity, the earliest and latest blocks and this validator's
/// power.
pub fn status(ctx: &RpcContext, tip: TipView) -> Value {
    let TipView { tip, header, earliest } = tip;
    let validators = ctx.chain.validators();
    let genesis = ctx.chain.genesis();
    // A node without a validator key shows its node key, with no power (CometBFT's
    // full nodes show their unused validator key).
    let key = ctx.info.validator_key.unwrap_or(ctx.info.node_key);
    let power = validators.index_of(&key).map_or(0, |i| validators.power_of(i).0);
    let (earliest_hash, earliest_app, earliest_time) = match &earliest.1 {
        Some(h) => (upper(&h.hash().0), upper(&h.state_root), rfc3339_ms(h.time_ms)),
        None => (String::new(), String::new(), rfc3339_ms(genesis.genesis_time_ms)),
    };
    json!({
        "node_info": node_info(ctx),
        "sync_info": {
            "latest_block_hash": tip.map(|(_, h)| upper(&h.0)).unwrap_or_default(),
            "latest_app_hash": header.as_ref().map(|h| upper(&h.state_root)).unwrap_or_default(),
            "latest_block_height": tip.map_or(0, |(h, _)| h.0).to_string(),
            "latest_block_time": header
                .as_ref()
                .map_or_else(|| rfc3339_ms(genesis.genesis_time_ms), |h| rfc3339_ms(h.time_ms)),
            "earliest_block_hash": earliest_hash,
            "earliest_app_hash": earliest_app,
            "earliest_block_height": earliest.0.to_string(),
            "earliest_block_time": earliest_time,
            "catching_up": ctx.notify.catching_up(),
        },
        "validator_info": validator(&key, power, None),
    })
}

fn node_info(ctx: &RpcContext) -> Value {
    json!({
        "protocol_version": { "p2p": P2P_PROTOCOL, "block": BLOCK_PROTOCOL, "app": APP_VERSION },
        "id": node_id(&ctx.info.node_key),
        "listen_addr": ctx.info.listen_addr,
        "network": ctx.chain.genesis().chain_id.as_str(),
        "version": COMETBFT_VERSION,
        "channels": "",
        "moniker": ctx.info.moniker,
        "other": {
            "tx_index": if ctx.search.is_on() { "on" } else { "off" },
            "rpc_address": ctx.config.listen_addr.to_string(),
            "peer_id": ctx.info.peer_id,
            "tally_version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// CometBFT's node id of a libp2p peer: the address of the ed25519 key its peer id
/// embeds (every tally node's is); the peer id itself otherwise.
pub fn peer_node_id(peer: &libp2p::PeerId) -> String {
    let hash = peer.as_ref();
    let key = (hash.code() == 0)
        .then(|| libp2p::identity::PublicKey::try_decode_protobuf(hash.digest()).ok())
        .flatten()
        .and_then(|k| k.try_into_ed25519().ok());
    match key {
        Some(k) => node_id(&PublicKey(k.to_bytes())),
        None => peer.to_string(),
    }
}

/// CometBFT's flow-rate monitor, empty: tally does not measure per-connection rates.
fn monitor() -> Value {
    json!({
        "Active": true, "Start": ZERO_TIME, "Duration": "0", "Idle": "0", "Bytes": "0",
        "Samples": "0", "InstRate": "0", "CurRate": "0", "AvgRate": "0", "PeakRate": "0",
        "BytesRem": "0", "TimeRem": "0", "Progress": 0,
    })
}

/// `net_info`: this node's listener and its connected peers. tally knows a peer's identity
/// and chain, not its moniker, address or traffic: those fields are empty (`remote_ip`
/// 0.0.0.0).
pub fn net_info(listen_addr: &str, chain_id: &str, peers: &[tally_network::PeerInfo]) -> Value {
    json!({
        "listening": true,
        "listeners": [listen_addr],
        "n_peers": peers.len().to_string(),
        "peers": peers
            .iter()
            .map(|p| json!({
                "node_info": {
                    "protocol_version": { "p2p": P2P_PROTOCOL, "block": BLOCK_PROTOCOL, "app": APP_VERSION },
                    "id": peer_node_id(&p.peer_id),
                    "listen_addr": "",
                    "network": chain_id,
                    "version": "",
                    "channels": "",
                    "moniker": "",
                    "other": { "tx_index": "off", "rpc_address": "", "peer_id": p.peer_id.to_string() },
                },
                "is_outbound": false,
                "connection_status": {
                    "Duration": "0", "SendMonitor": monitor(), "RecvMonitor": monitor(), "Channels": [],
                },
                "remote_ip": "0.0.0.0",
            }))
            .collect::<Vec<_>>(),
    })
}

/// CometBFT's `round_state`, from tally's consensus summary (kept whole in `tally`) and
/// the votes of the height on the status board. tally's votes carry no time: the vote
/// strings show Go's zero time, and `start_time` is zero too.
pub fn round_state(
    summary: Option<StateSummary>,
    votes: (tally_consensus::Height, crate::notify::RoundVotes),
    validators: &ValidatorSet,
) -> Value {
    let Some(s) = summary else {
        return json!({
            "height/round/step": "0/0/0",
            "start_time": ZERO_TIME,
            "proposal_block_hash": "",
            "locked_block_hash": "",
            "valid_block_hash": "",
            "height_vote_set": [],
            "proposer": { "address": "", "index": -1 },
            "tally": null,
        });
    };
    // CometBFT's RoundStepType numbers.
    let step = match s.step {
        tally_consensus::Step::Unstarted => 1,
        tally_consensus::Step::Propose => 3,
        tally_consensus::Step::Prevote => 4,
        tally_consensus::Step::Precommit => 6,
        tally_consensus::Step::Commit => 8,
    };
    let hash = |h: Option<tally_consensus::BlockHash>| h.map(|h| upper(&h.0)).unwrap_or_default();
    let proposer = validators.get(s.proposer).map(|v| address_hex(&v.public_key));
    let (votes_height, rounds) = votes;
    let rounds: Vec<_> = if votes_height == s.height { rounds } else { Vec::new() };
    // CometBFT lists every round from 0 to the next one.
    let height_vote_set: Vec<Value> = (0..=s.round.0.saturating_add(1))
        .map(|r| {
            let round = rounds.iter().find(|(x, _, _)| x.0 == r);
            let empty = Vec::new();
            let (pre, com) = round.map_or((&empty, &empty), |(_, p, c)| (p, c));
            json!({
                "round": r,
                "prevotes": vote_strings(pre, validators),
                "prevotes_bit_array": bit_array(pre, validators),
                "precommits": vote_strings(com, validators),
                "precommits_bit_array": bit_array(com, validators),
            })
        })
        .collect();
    json!({
        "height/round/step": format!("{}/{}/{}", s.height.0, s.round.0, step),
        "start_time": ZERO_TIME,
        "proposal_block_hash": hash(s.valid_value),
        "locked_block_hash": hash(s.locked_value),
        "valid_block_hash": hash(s.valid_value),
        "height_vote_set": height_vote_set,
        "proposer": { "address": proposer.unwrap_or_default(), "index": s.proposer.0 },
        "tally": s,
    })
}

/// One entry per validator, in set order: its vote as CometBFT prints one
/// (`Vote{IDX:ADDR H/RR/T(Type) BLOCK SIG @ TIME}`, fingerprints of 6 bytes), or
/// `nil-Vote` when none was received.
fn vote_strings(votes: &[tally_consensus::SignedVote], validators: &ValidatorSet) -> Vec<String> {
    let fingerprint = |b: &[u8]| {
        let mut f = [0u8; 6];
        let n = b.len().min(6);
        f[..n].copy_from_slice(&b[..n]);
        hex::encode_upper(f)
    };
    validators
        .indexed()
        .map(|(i, v)| match votes.iter().find(|x| x.vote.validator == i) {
            Some(x) => {
                let (t, name) = match x.vote.vote_type {
                    tally_consensus::VoteType::Prevote => (1, "Prevote"),
                    tally_consensus::VoteType::Precommit => (2, "Precommit"),
                };
                let block = x.vote.block_hash.map(|h| h.0 .0.to_vec()).unwrap_or_default();
                format!(
                    "Vote{{{}:{} {}/{:02}/{}({}) {} {} @ {}}}",
                    i.0,
                    fingerprint(&address(&v.public_key)),
                    x.vote.height.0,
                    x.vote.round.0,
                    t,
                    name,
                    fingerprint(&block),
                    fingerprint(&x.signature.0),
                    ZERO_TIME
                )
            }
            None => "nil-Vote".to_string(),
        })
        .collect()
}

/// CometBFT's bit array of who voted, with the power counted: `BA{4:xx_x} 30/40 = 0.75`.
fn bit_array(votes: &[tally_consensus::SignedVote], validators: &ValidatorSet) -> String {
    let bits: String = validators
        .indexed()
        .map(|(i, _)| if votes.iter().any(|x| x.vote.validator == i) { 'x' } else { '_' })
        .collect();
    let power: u64 = votes.iter().map(|x| validators.power_of(x.vote.validator).0).sum();
    let total = validators.total_power().0.max(1);
    format!(
        "BA{{{}:{bits}}} {power}/{total} = {:.2}",
        validators.len(),
        power as f64 / total as f64
    )
}

/// `account` (and `abci_query /account`): the committed account, the nonce its next tx
/// needs, and with `prove` its proof of presence or absence.
pub fn account(key: &PublicKey, view: &AccountView) -> Result<Value, std::io::Error> {
    let mut out = json!({
        "address": key.to_hex(),
        // An absent account reads as zeros, and says so.
        "exists": view.exists,
        "balance": view.account.balance.to_string(),
        "nonce": view.account.nonce.to_string(),
        "next_nonce": view.next_nonce.to_string(),
        "height": view.height.to_string(),
    });
    if let Some((present, root, proof)) = &view.proof {
        out["proof"] = json!({
            "present": present,
            "state_root": root.to_hex(),
            // borsh(AccountProof), for `tally verify` and other light clients.
            "raw": b64(&borsh::to_vec(proof)?),
        });
    }
    Ok(out)
}

/// A tx's Merkle proof under the root of its block's tx tree, in CometBFT's `TxProof` form
/// (hashes as base64; tally's tree is blake3, docs/wire-format.md).
pub fn tx_proof(
    tx: &Tx,
    hash: &TxHash,
    proof: &TxProof,
    tx_root: &Hash,
) -> Result<Value, std::io::Error> {
    Ok(json!({
        "root_hash": upper(tx_root),
        "data": b64(&tx.encode()),
        "proof": {
            "total": proof.total.to_string(),
            "index": proof.index.to_string(),
            "leaf_hash": b64(&tally_ledger::tx_merkle::tx_leaf_hash(hash).0),
            "aunts": proof.path.iter().map(|h| b64(&h.0)).collect::<Vec<_>>(),
            // borsh(TxProof), for `tally verify` and other light clients.
            "raw": b64(&borsh::to_vec(proof)?),
        },
    }))
}

/// A `tm.event='NewBlock'` event's `data`.
pub fn new_block_data(event: &BlockEvent) -> Value {
    let block = BlockResult::new(&event.block, None);
    json!({
        "type": "tendermint/event/NewBlock",
        "value": {
            "block": block.block,
            "block_id": block.block_id,
            "result_finalize_block": {
                "events": [],
                "tx_results": event.block.txs.iter().map(exec_tx_result).collect::<Vec<_>>(),
                "validator_updates": [],
                "app_hash": b64(&event.block.header.state_root.0),
            },
        },
    })
}

/// A `tm.event='NewBlockHeader'` event's `data`.
pub fn new_block_header_data(event: &BlockEvent) -> Value {
    json!({
        "type": "tendermint/event/NewBlockHeader",
        "value": { "header": HeaderJson::new(&event.block.header) },
    })
}

/// A `tm.event='NewBlockEvents'` event's `data`.
pub fn new_block_events_data(event: &BlockEvent) -> Value {
    json!({
        "type": "tendermint/event/NewBlockEvents",
        "value": {
            "height": event.height.0.to_string(),
            "events": [],
            "num_txs": event.block.txs.len().to_string(),
        },
    })
}

/// A `tm.event='Vote'` event's `data`: the vote as CometBFT writes one (type 1 prevote, 2
/// precommit; tally's votes carry no time; the block id is empty for nil).
pub fn vote_data(vote: &tally_consensus::SignedVote, validators: &ValidatorSet) -> Value {
    let v = &vote.vote;
    let address = validators.get(v.validator).map(|x| address_hex(&x.public_key));
    json!({
        "type": "tendermint/event/Vote",
        "value": { "Vote": {
            "type": match v.vote_type { tally_consensus::VoteType::Prevote => 1, tally_consensus::VoteType::Precommit => 2 },
            "height": v.height.0.to_string(),
            "round": v.round.0,
            "block_id": v.block_hash.map_or_else(BlockId::empty, |h| BlockId::of(&h.0)),
            "timestamp": ZERO_TIME,
            "validator_address": address.unwrap_or_default(),
            "validator_index": v.validator.0,
            "signature": b64(&vote.signature.0),
        }},
    })
}

/// A `tm.event='NewRound'` event's `data`.
pub fn new_round_data(
    height: u64,
    round: u32,
    proposer: tally_consensus::ValidatorIndex,
    validators: &ValidatorSet,
) -> Value {
    let address = validators.get(proposer).map(|x| address_hex(&x.public_key));
    json!({
        "type": "tendermint/event/NewRound",
        "value": {
            "height": height.to_string(),
            "round": round,
            "step": "RoundStepNewRound",
            "proposer": { "address": address.unwrap_or_default(), "index": proposer.0 },
        },
    })
}

/// A `tm.event='Tx'` event's `data` for the block's tx at `index`.
pub fn tx_data(event: &BlockEvent, index: usize) -> Value {
    let tx = &event.block.txs[index];
    json!({
        "type": "tendermint/event/Tx",
        "value": {
            "TxResult": {
                "height": event.height.0.to_string(),
                "index": index,
                "tx": b64(&tx.encode()),
                "result": {
                    "data": null,
                    "log": "",
                    "gas_wanted": "0",
                    "gas_used": "0",
                    "events": tx_events(tx),
                },
            },
        },
    })
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with nanoseconds
/// (`2026-11-25T09:32:14.123000000Z`).
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
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_ms(1_795_599_134_123), "2026-11-25T09:32:14.123000000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn votes_print_as_cometbft_prints_them_in_six_tokens() {
        let keys: Vec<_> =
            (0..2).map(|i| tally_crypto::Keypair::derive_insecure(&format!("v{i}"))).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| tally_consensus::Validator {
                    public_key: k.public(),
                    voting_power: tally_consensus::VotingPower(10),
                })
                .collect(),
        )
        .unwrap();
        let chain = tally_crypto::ChainId::new("t").unwrap();
        let vote = tally_consensus::Vote {
            height: tally_consensus::Height(7),
            round: tally_consensus::Round(1),
            vote_type: tally_consensus::VoteType::Precommit,
            block_hash: None,
            validator: tally_consensus::ValidatorIndex(1),
        }
        .sign(&chain, &keys[1]);
        let strings = vote_strings(&[vote], &set);
        assert_eq!(strings[0], "nil-Vote");
        let tokens: Vec<&str> = strings[1].split(' ').collect();
        assert_eq!(tokens.len(), 6, "{}", strings[1]);
        assert!(tokens[0].starts_with("Vote{1:") && tokens[0].len() == "Vote{1:".len() + 12);
        assert_eq!(tokens[1], "7/01/2(Precommit)");
        assert_eq!(tokens[2], "000000000000", "nil's block fingerprint");
        assert_eq!(tokens[5], "0001-01-01T00:00:00Z}");
        let bits = bit_array(&[], &set);
        assert_eq!(bits, "BA{2:__} 0/20 = 0.00");
    }

    #[test]
    fn addresses_are_the_first_20_bytes_of_the_keys_sha256() {
        // Computed with Python's hashlib: sha256(bytes(range(32)))[:20].
        let key = PublicKey(std::array::from_fn(|i| i as u8));
        assert_eq!(address_hex(&key), "630DCD2966C4336691125448BBB25B4FF412A49C");
        assert_eq!(node_id(&key), "630dcd2966c4336691125448bbb25b4ff412a49c");
    }
}
