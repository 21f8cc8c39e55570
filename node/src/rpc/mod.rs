//! The JSON-RPC server (jsonrpsee, HTTP and WebSocket on one port, 127.0.0.1 by default).
//!
//! Method names, parameters and result fields follow CometBFT's RPC where the two overlap:
//! parameters by name (`{"height":"5"}`) or by position (`["5"]`), 64-bit integers as decimal
//! strings (numbers are accepted too), txs as base64 of their borsh encoding. tally's own
//! methods: `account`, `broadcast_tx_batch`, `consensus_state`.
//!
//! The RPC room: nothing imports it but the node's wiring (`run.rs`). It reads through the
//! chain's [`ChainReader`], submits through the admission room, waits and subscribes
//! through the notify room. Its files: the methods here, every JSON shape in `json.rs`,
//! subscriptions in `subscriptions.rs` and their queries in `query.rs`, the status page and
//! the connection-limit error in `http_layer.rs`, per-method metrics in `middleware.rs`.

mod http_layer;
mod json;
mod middleware;
pub mod refusals;
mod subscriptions;
mod ws;

pub use http_layer::{STATUS_PAGE, TOO_MANY_CONNECTIONS};
pub use subscriptions::{subscribe_in_process, Subscription};

use crate::admission::{Admission, SubmitError};
use crate::chain::query::EventQuery;
use crate::chain::search::{Page, SearchError};
use crate::chain::{ChainReader, Search};
use crate::config::RpcConfig;
use crate::metrics::Metrics;
use crate::notify::Notify;
use json::{b64, BlockResult, CommitJson, HeaderJson};
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, PingConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use middleware::RpcMetrics;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tally_consensus::Height;
use tally_crypto::{Hash, PublicKey};
use tally_ledger::{Block, Header, Tx, TxHash};
use tally_network::NetworkHandle;

/// The node's identity, for `status` and `net_info`.
pub struct NodeInfo {
    pub peer_id: String,
    /// The node key (the libp2p identity): `node_info.id` is CometBFT's id of it.
    pub node_key: PublicKey,
    pub listen_addr: String,
    pub moniker: String,
    pub validator_key: Option<PublicKey>,
}

/// What the RPC methods reach: the other rooms' public sides, and the RPC's own config.
pub struct RpcContext {
    admission: Arc<Admission>,
    chain: ChainReader,
    search: Arc<Search>,
    notify: Arc<Notify>,
    metrics: Arc<Metrics>,
    config: RpcConfig,
    info: NodeInfo,
    net: NetworkHandle,
    subscriptions: subscriptions::Registry,
    /// One permit per open WebSocket connection (`rpc.connections_max` of them).
    ws_slots: Arc<tokio::sync::Semaphore>,
}

impl RpcContext {
    pub fn new(
        admission: Arc<Admission>,
        chain: ChainReader,
        search: Arc<Search>,
        notify: Arc<Notify>,
        metrics: Arc<Metrics>,
        config: RpcConfig,
        info: NodeInfo,
        net: NetworkHandle,
    ) -> RpcContext {
        let ws_slots = Arc::new(tokio::sync::Semaphore::new(config.connections_max as usize));
        RpcContext {
            ws_slots,
            admission,
            chain,
            search,
            notify,
            metrics,
            config,
            info,
            net,
            subscriptions: subscriptions::Registry::default(),
        }
    }

    /// Open WebSocket subscriptions, on all connections.
    pub fn subscriptions_open(&self) -> usize {
        self.subscriptions.len()
    }
}

pub mod codes {
    /// JSON-RPC's own: the parameters are malformed (missing, wrong type, bad hex/base64).
    pub const INVALID_PARAMS: i32 = -32602;
    /// What was asked for does not exist (a height above the tip, an unknown tx).
    pub const NOT_FOUND: i32 = -32004;
    /// The tx is well-formed but was refused (bad signature, nonce, balance, mempool full).
    pub const TX_REJECTED: i32 = -32010;
    /// The node cannot serve this now (waiting too long, too many waiters).
    pub const UNAVAILABLE: i32 = -32011;
    pub const INTERNAL: i32 = -32603;
}

pub(crate) type RpcResult<T> = Result<T, ErrorObjectOwned>;

pub(crate) fn err(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

pub(crate) fn invalid(message: impl Into<String>) -> ErrorObjectOwned {
    err(codes::INVALID_PARAMS, message)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    err(codes::INTERNAL, format!("internal error: {e}"))
}

fn submit_err(e: SubmitError) -> ErrorObjectOwned {
    let code = match e {
        SubmitError::Encoding(_) | SubmitError::Decode(_) => codes::INVALID_PARAMS,
        SubmitError::Syncing
        | SubmitError::TooManyWaiters(_)
        | SubmitError::TooManyAsync(_)
        | SubmitError::ShuttingDown => codes::UNAVAILABLE,
        _ => codes::TX_REJECTED,
    };
    ErrorObjectOwned::owned(code, e.to_string(), Some(json!({ "reason": e.reason() })))
}

/// Parses named or positional parameters into `T`; no parameters give `T::default()`.
pub(crate) fn parse<T: DeserializeOwned + Default>(params: &Params<'_>) -> RpcResult<T> {
    if params.as_str().is_none_or(|s| s.trim().is_empty() || s.trim() == "null") {
        return Ok(T::default());
    }
    params.parse::<T>().map_err(|e| {
        // jsonrpsee keeps serde's reason (which field, what was wrong) in the error's data.
        let reason = e.data().and_then(|d| serde_json::from_str::<String>(d.get()).ok());
        match reason {
            Some(reason) => invalid(format!("invalid params: {reason}")),
            None => invalid(e.message().to_string()),
        }
    })
}

/// A 64-bit integer given as a JSON number or a decimal string.
#[derive(Debug, Clone, Copy)]
struct IntParam(u64);

impl<'de> Deserialize<'de> for IntParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IntParam, D::Error> {
        let refuse = |v: &dyn std::fmt::Display| {
            serde::de::Error::custom(format!(
                "{v} is not an integer from 0 to 2^64-1, as a number or a decimal string"
            ))
        };
        match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().map(IntParam).ok_or_else(|| refuse(&n)),
            Value::String(s) => s.parse().map(IntParam).map_err(|_| refuse(&format!("{s:?}"))),
            other => Err(refuse(&other)),
        }
    }
}

impl IntParam {
    fn get(self) -> u64 {
        self.0
    }
}

/// A boolean given as JSON `true`/`false` or as the string `"true"`/`"false"` (what
/// CometBFT's clients and the URI form send).
#[derive(Debug, Clone, Copy, Default)]
struct BoolParam(bool);

impl<'de> Deserialize<'de> for BoolParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BoolParam, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bool(bool),
            Str(String),
        }
        match Either::deserialize(d)? {
            Either::Bool(b) => Ok(BoolParam(b)),
            Either::Str(s) => match s.as_str() {
                "true" => Ok(BoolParam(true)),
                "false" => Ok(BoolParam(false)),
                _ => Err(serde::de::Error::custom(format!(
                    "{s:?} is not a boolean: give true or false"
                ))),
            },
        }
    }
}

#[derive(Deserialize, Default)]
struct HeightParams {
    height: Option<IntParam>,
}

#[derive(Deserialize, Default)]
struct HashParams {
    hash: Option<String>,
    #[serde(default)]
    prove: BoolParam,
}

#[derive(Deserialize, Default)]
struct TxParams {
    tx: Option<String>,
}

#[derive(Deserialize, Default)]
struct TxBatchParams {
    txs: Option<Vec<String>>,
}

/// `broadcast_tx_batch`'s answer, serialized from these types rather than built as a JSON
/// value (a map allocated per tx, on the hot path of submission).
#[derive(Serialize, Clone)]
struct TxBatchAnswer {
    accepted: usize,
    results: Vec<TxBatchItem>,
}

/// One tx's result: `{code: 0, hash}` or `{code: 1, log, reason}`.
#[derive(Serialize, Clone)]
struct TxBatchItem {
    code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[derive(Deserialize, Default)]
struct AccountParams {
    address: Option<String>,
    #[serde(default)]
    prove: BoolParam,
}

/// A 32-byte hash as hex (either case, with or without `0x`) or as base64 (how CometBFT's
/// clients send `[]byte` parameters).
fn parse_hash(s: Option<&str>) -> RpcResult<Hash> {
    let s = s.ok_or_else(|| invalid("missing parameter: hash"))?;
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Hash::from_hex(&hex.to_ascii_lowercase())
            .map_err(|e| invalid(format!("hash: {e}")));
    }
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map(Hash)
            .map_err(|_| invalid(format!("hash: {} bytes of base64; a hash is 32", bytes.len()))),
        Err(_) => Err(invalid(format!(
            "hash: {s:?} is neither 64 hex digits (with or without 0x) nor the base64 of 32 bytes"
        ))),
    }
}

/// The height asked for, or the latest one.
fn resolve_height(ctx: &RpcContext, p: &HeightParams) -> RpcResult<Height> {
    let tip = ctx.chain.tip_height();
    match p.height.map(IntParam::get) {
        None => tip.ok_or_else(|| err(codes::NOT_FOUND, "no block has been committed yet")),
        Some(0) => Err(invalid("height must be greater than 0")),
        Some(h) if tip.is_none_or(|t| h > t.0) => Err(err(
            codes::NOT_FOUND,
            format!("height {h} is above the latest height {}", tip.map_or(0, |t| t.0)),
        )),
        Some(h) => Ok(Height(h)),
    }
}

/// "`what` at h", or why: h is at or below the snapshot this node was restored from.
fn below_base_or(ctx: &RpcContext, h: Height, what: &str) -> String {
    match ctx.chain.base() {
        Some(base) if h <= base => format!(
            "{what} at {h}: this node was restored from a snapshot of height {base} and holds \
             blocks from {} on",
            base.next()
        ),
        _ => format!("{what} at {h}"),
    }
}

/// The answer of `broadcast_tx_sync`/`_async`: accepted (code 0), or refused with the
/// refusal's stable code; refusals about the request or the node are JSON-RPC errors.
fn broadcast_answer(bytes: &[u8], outcome: Result<TxHash, SubmitError>) -> RpcResult<Value> {
    match outcome {
        Ok(hash) => Ok(json!({
            "code": 0, "data": "", "log": "", "codespace": "", "hash": json::upper(&hash.0),
        })),
        Err(e) if e.is_about_the_tx() => Ok(json!({
            "code": e.code(),
            "data": "",
            "log": e.to_string(),
            "codespace": refusals::CODESPACE,
            "hash": json::upper(&Hash::digest(bytes)),
            "reason": e.reason(),
        })),
        Err(e) => Err(submit_err(e)),
    }
}

#[derive(Deserialize, Default)]
struct BlockchainParams {
    #[serde(alias = "minHeight")]
    min_height: Option<IntParam>,
    #[serde(alias = "maxHeight")]
    max_height: Option<IntParam>,
}

#[derive(Deserialize, Default)]
struct ValidatorsParams {
    height: Option<IntParam>,
    page: Option<IntParam>,
    per_page: Option<IntParam>,
}

#[derive(Deserialize, Default)]
struct SearchParams {
    query: Option<String>,
    #[serde(default)]
    prove: BoolParam,
    page: Option<IntParam>,
    per_page: Option<IntParam>,
    order_by: Option<String>,
}

impl SearchParams {
    /// The parsed query and the page asked for (`per_page` 1 to 100, default 30, as
    /// CometBFT; `order_by` "asc" (default) or "desc").
    fn plan(&self) -> RpcResult<(EventQuery, u64, u64, bool)> {
        let query = self.query.as_deref().ok_or_else(|| invalid("missing parameter: query"))?;
        let query = EventQuery::parse(query).map_err(|e| invalid(format!("query: {e}")))?;
        let ascending = match self.order_by.as_deref().unwrap_or("") {
            "" | "asc" => true,
            "desc" => false,
            other => return Err(invalid(format!("order_by: {other:?}; give \"asc\" or \"desc\""))),
        };
        let per_page = self.per_page.map_or(PER_PAGE_DEFAULT, IntParam::get).clamp(1, PER_PAGE_MAX);
        let page = self.page.map_or(1, IntParam::get);
        if page == 0 {
            return Err(invalid("page should be 1 or more"));
        }
        Ok((query, page, per_page, ascending))
    }
}

fn search_err(e: SearchError) -> ErrorObjectOwned {
    match e {
        SearchError::Off | SearchError::TooBroad(_) => invalid(e.to_string()),
        SearchError::AboveTip(_) => err(codes::NOT_FOUND, e.to_string()),
        SearchError::Behind { .. } => err(codes::UNAVAILABLE, e.to_string()),
        e => internal(e),
    }
}

#[derive(Deserialize, Default)]
struct EvidenceParams {
    evidence: Option<Value>,
}

/// tally's equivocation evidence, as the base64 of its borsh encoding or as tally's JSON of
/// it (`{"DuplicateVote": {"first": ..., "second": ...}}`). CometBFT's evidence types are
/// refused: their votes sign CometBFT's bytes, which tally's validators never sign.
fn parse_evidence(v: Value) -> RpcResult<tally_consensus::Evidence> {
    match v {
        Value::String(s) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| invalid(format!("evidence: not base64: {e}")))?;
            if bytes.len() > EVIDENCE_BYTES_MAX {
                return Err(invalid(format!("evidence: more than {EVIDENCE_BYTES_MAX} bytes")));
            }
            borsh::from_slice(&bytes)
                .map_err(|e| invalid(format!("evidence: does not decode: {e}")))
        }
        Value::Object(o)
            if o.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("tendermint/")) =>
        {
            Err(invalid(
                "evidence: CometBFT's evidence types sign CometBFT's vote bytes, which tally's \
                 validators never sign; give tally's evidence (base64 of its borsh encoding, or \
                 its JSON)",
            ))
        }
        other => serde_json::from_value(other).map_err(|e| invalid(format!("evidence: {e}"))),
    }
}

/// Largest evidence accepted: two signed proposals or votes are a few hundred bytes.
const EVIDENCE_BYTES_MAX: usize = 4096;

#[derive(Deserialize, Default)]
struct LimitParams {
    limit: Option<IntParam>,
}

#[derive(Deserialize, Default)]
struct ChunkParams {
    chunk: Option<IntParam>,
}

#[derive(Deserialize, Default)]
struct AbciQueryParams {
    path: Option<String>,
    data: Option<String>,
    height: Option<IntParam>,
    #[serde(default)]
    prove: BoolParam,
}

/// Most block metas one `blockchain` call returns (CometBFT's).
const BLOCKCHAIN_METAS_MAX: u64 = 20;
/// `per_page` of `validators` when not given, and its most (CometBFT's).
const PER_PAGE_DEFAULT: u64 = 30;
const PER_PAGE_MAX: u64 = 100;
/// The size of one `genesis_chunked` chunk (CometBFT's 16 MiB).
const GENESIS_CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// `page` and `per_page` checked as CometBFT checks them: pages from 1, `per_page` 1 to
/// [`PER_PAGE_MAX`] (larger is clamped); returns (skip, take).
fn paging(page: Option<IntParam>, per_page: Option<IntParam>, total: u64) -> RpcResult<(u64, u64)> {
    let per_page = per_page.map_or(PER_PAGE_DEFAULT, IntParam::get).clamp(1, PER_PAGE_MAX);
    let pages = total.div_ceil(per_page).max(1);
    let page = page.map_or(1, IntParam::get);
    if page == 0 || page > pages {
        return Err(invalid(format!("page should be within [1, {pages}] range, given {page}")));
    }
    Ok(((page - 1) * per_page, per_page))
}

/// A page past the last one is refused, as CometBFT does (page 1 of nothing is fine).
fn check_page(page: u64, per_page: u64, total: u64) -> RpcResult<()> {
    let pages = total.div_ceil(per_page).max(1);
    if page > pages {
        return Err(invalid(format!("page should be within [1, {pages}] range, given {page}")));
    }
    Ok(())
}

/// The commit of height `h` in CometBFT's form, if this node holds its certificate and
/// header.
fn commit_at(ctx: &RpcContext, h: Height) -> RpcResult<Option<(Header, CommitJson)>> {
    let header = ctx.chain.header(h).map_err(internal)?;
    let cert = ctx.chain.certificate(h).map_err(internal)?;
    Ok(match (header, cert) {
        (Some(header), Some(cert)) => {
            let commit = CommitJson::new(&cert, ctx.chain.validators(), header.time_ms);
            Some((header, commit))
        }
        _ => None,
    })
}

/// `block` and `block_by_hash`'s answer, with the previous height's commit.
fn block_answer(ctx: &RpcContext, block: &Block) -> RpcResult<Value> {
    let h = block.header.height;
    let last_commit = match h.0 {
        0 | 1 => None,
        _ => commit_at(ctx, Height(h.0 - 1))?.map(|(_, c)| c),
    };
    serde_json::to_value(BlockResult::new(block, last_commit)).map_err(internal)
}

fn block_at(ctx: &RpcContext, h: Height) -> RpcResult<Block> {
    let block = ctx.chain.block(h).map_err(internal)?;
    block.ok_or_else(|| err(codes::NOT_FOUND, below_base_or(ctx, h, "no block")))
}

/// The genesis document `genesis` answers, as bytes (for `genesis_chunked`).
fn genesis_bytes(ctx: &RpcContext) -> RpcResult<Vec<u8>> {
    serde_json::to_vec(&json::genesis(ctx.chain.genesis())).map_err(internal)
}

pub fn module(ctx: Arc<RpcContext>) -> anyhow::Result<RpcModule<RpcContext>> {
    let mut m = RpcModule::from_arc(ctx);
    m.register_method("health", |_, _, _| RpcResult::Ok(json!({})))?;
    m.register_method("status", |_, s, _| RpcResult::Ok(json::status(s, s.chain.tip())))?;
    m.register_method("genesis", |_, s, _| {
        RpcResult::Ok(json!({ "genesis": json::genesis(s.chain.genesis()) }))
    })?;
    m.register_method("genesis_chunked", |p, s, _| {
        let q: ChunkParams = parse(&p)?;
        let bytes = genesis_bytes(s)?;
        let chunks: Vec<&[u8]> = bytes.chunks(GENESIS_CHUNK_BYTES).collect();
        let i = q.chunk.map_or(0, IntParam::get);
        let chunk = usize::try_from(i).ok().and_then(|i| chunks.get(i)).ok_or_else(|| {
            invalid(format!("there are {} chunks, numbered from 0; given {i}", chunks.len()))
        })?;
        RpcResult::Ok(json!({
            "chunk": i.to_string(), "total": chunks.len().to_string(), "data": b64(chunk),
        }))
    })?;
    m.register_async_method("net_info", |_, s, _| async move {
        let peers = s.net.peers().await.unwrap_or_default();
        RpcResult::Ok(json::net_info(
            &s.info.listen_addr,
            s.chain.genesis().chain_id.as_str(),
            &peers,
        ))
    })?;
    m.register_method("consensus_state", |_, s, _| {
        let round_state =
            json::round_state(s.notify.consensus(), s.notify.votes(), s.chain.validators());
        RpcResult::Ok(json!({ "round_state": round_state }))
    })?;
    m.register_async_method("dump_consensus_state", |_, s, _| async move {
        let round_state =
            json::round_state(s.notify.consensus(), s.notify.votes(), s.chain.validators());
        let peers = s.net.peers().await.unwrap_or_default();
        let peers: Vec<Value> = peers
            .iter()
            .map(|p| json!({ "node_address": p.peer_id.to_string(), "peer_state": {} }))
            .collect();
        RpcResult::Ok(json!({ "round_state": round_state, "peers": peers }))
    })?;
    m.register_method("consensus_params", |p, s, _| {
        let h = resolve_height(s, &parse(&p)?)?;
        RpcResult::Ok(json!({
            "block_height": h.0.to_string(),
            "consensus_params": json::consensus_params(s.chain.genesis()),
        }))
    })?;
    m.register_method("num_unconfirmed_txs", |_, s, _| {
        let (n, bytes) = s.chain.mempool_size();
        RpcResult::Ok(json!({
            "n_txs": n.to_string(), "total": n.to_string(), "total_bytes": bytes.to_string(),
            "txs": null,
        }))
    })?;
    m.register_method("unconfirmed_txs", |p, s, _| {
        let q: LimitParams = parse(&p)?;
        let limit = q.limit.map_or(PER_PAGE_DEFAULT, IntParam::get).clamp(1, PER_PAGE_MAX);
        let (n, bytes) = s.chain.mempool_size();
        let txs: Vec<String> =
            s.chain.pending_txs(limit as usize).iter().map(|t| b64(&t.encode())).collect();
        RpcResult::Ok(json!({
            "n_txs": txs.len().to_string(), "total": n.to_string(),
            "total_bytes": bytes.to_string(), "txs": txs,
        }))
    })?;
    m.register_method("abci_info", |_, s, _| {
        let tip = s.chain.tip();
        RpcResult::Ok(json!({ "response": {
            "data": "tally",
            "version": env!("CARGO_PKG_VERSION"),
            "app_version": json::APP_VERSION,
            "last_block_height": tip.tip.map_or(0, |(h, _)| h.0).to_string(),
            "last_block_app_hash": tip.header.map(|h| b64(&h.state_root.0)).unwrap_or_default(),
        }}))
    })?;
    m.register_blocking_method("abci_query", |p, s, _| abci_query(&s, &parse(&p)?))?;
    m.register_blocking_method("block", |p, s, _| {
        let h = resolve_height(&s, &parse(&p)?)?;
        block_answer(&s, &block_at(&s, h)?)
    })?;
    m.register_blocking_method("block_by_hash", |p, s, _| {
        let q: HashParams = parse(&p)?;
        let hash = parse_hash(q.hash.as_deref())?;
        match s.chain.block_by_hash(hash).map_err(internal)? {
            Some(block) => block_answer(&s, &block),
            // CometBFT's answer for a hash it does not know.
            None => RpcResult::Ok(json!({ "block_id": json::BlockId::empty(), "block": null })),
        }
    })?;
    m.register_blocking_method("header", |p, s, _| {
        let h = resolve_height(&s, &parse(&p)?)?;
        let header = s.chain.header(h).map_err(internal)?;
        let header =
            header.ok_or_else(|| err(codes::NOT_FOUND, below_base_or(&s, h, "no header")))?;
        RpcResult::Ok(json!({ "header": HeaderJson::new(&header) }))
    })?;
    m.register_blocking_method("header_by_hash", |p, s, _| {
        let q: HashParams = parse(&p)?;
        let hash = parse_hash(q.hash.as_deref())?;
        let block = s.chain.block_by_hash(hash).map_err(internal)?;
        RpcResult::Ok(json!({ "header": block.map(|b| HeaderJson::new(&b.header)) }))
    })?;
    m.register_blocking_method("blockchain", |p, s, _| {
        let q: BlockchainParams = parse(&p)?;
        let tip = s.chain.tip_height().map_or(0, |h| h.0);
        let base = s.chain.base().map_or(1, |b| b.0 + 1);
        let max = q.max_height.map_or(tip, IntParam::get).min(tip);
        let max = if max == 0 { tip } else { max };
        let min = q.min_height.map_or(1, IntParam::get).max(base);
        let min = min.max(max.saturating_sub(BLOCKCHAIN_METAS_MAX - 1));
        if tip > 0 && min > max {
            return Err(invalid(format!(
                "min height {min} can't be greater than max height {max}"
            )));
        }
        let mut metas = Vec::new();
        for h in (min..=max).rev().take_while(|h| *h > 0) {
            metas.push(json::block_meta(&block_at(&s, Height(h))?));
        }
        RpcResult::Ok(json!({ "last_height": tip.to_string(), "block_metas": metas }))
    })?;
    m.register_blocking_method("block_results", |p, s, _| {
        let h = resolve_height(&s, &parse(&p)?)?;
        RpcResult::Ok(json::block_results(&block_at(&s, h)?))
    })?;
    m.register_blocking_method("commit", |p, s, _| {
        let h = resolve_height(&s, &parse(&p)?)?;
        // The header, not the block: a node restored from a snapshot has the header and
        // certificate of its base height but not that block.
        let header = s.chain.header(h).map_err(internal)?;
        let cert = s.chain.certificate(h).map_err(internal)?;
        let (Some(header), Some(cert)) = (header, cert) else {
            return Err(err(codes::NOT_FOUND, below_base_or(&s, h, "no commit")));
        };
        let raw = |v: Result<Vec<u8>, std::io::Error>| v.map(|b| b64(&b)).map_err(internal);
        RpcResult::Ok(json!({
            "signed_header": {
                "header": HeaderJson::new(&header),
                "commit": CommitJson::new(&cert, s.chain.validators(), header.time_ms),
            },
            "canonical": true,
            // borsh(Header) and borsh(CommitCertificate), for `tally verify` and other
            // light clients (docs/wire-format.md).
            "raw": {
                "header": raw(borsh::to_vec(&header))?,
                "certificate": raw(borsh::to_vec(&cert))?,
            },
        }))
    })?;
    m.register_method("validators", |p, s, _| {
        // The validator set is fixed by genesis: the same at every height.
        let q: ValidatorsParams = parse(&p)?;
        let h = resolve_height(s, &HeightParams { height: q.height })?;
        let set = s.chain.validators();
        let total = set.len() as u64;
        let (skip, take) = paging(q.page, q.per_page, total)?;
        let names = &s.chain.genesis().validators;
        let vals: Vec<Value> = set
            .indexed()
            .skip(skip as usize)
            .take(take as usize)
            .map(|(i, v)| {
                let name = names.get(i.0 as usize).map(|g| g.name.as_str());
                json::validator(&v.public_key, v.voting_power.0, name)
            })
            .collect();
        RpcResult::Ok(json!({
            "block_height": h.0.to_string(),
            "count": vals.len().to_string(),
            "total": total.to_string(),
            "validators": vals,
        }))
    })?;
    m.register_blocking_method("tx", |p, s, _| {
        let q: HashParams = parse(&p)?;
        let hash = TxHash(parse_hash(q.hash.as_deref())?);
        let found = s.chain.tx(hash, q.prove.0).map_err(internal)?;
        let found = found.ok_or_else(|| err(codes::NOT_FOUND, format!("tx {hash} not found")))?;
        let proof = found.proof.as_ref().map(|(p, root)| (p, root));
        json::tx_result(&found.tx, &hash, found.height.0, found.index, proof).map_err(internal)
    })?;
    m.register_blocking_method("tx_search", |p, s, _| {
        let q: SearchParams = parse(&p)?;
        let (query, page, per_page, ascending) = q.plan()?;
        let want = Page { skip: (page - 1).saturating_mul(per_page), take: per_page, ascending };
        let found = s.search.txs(&query, want, q.prove.0).map_err(search_err)?;
        check_page(page, per_page, found.total)?;
        let txs = found
            .items
            .iter()
            .map(|f| {
                let proof = f.proof.as_ref().map(|(p, root)| (p, root));
                json::tx_result(&f.tx, &f.tx.hash(), f.height.0, f.index, proof)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        RpcResult::Ok(json!({ "txs": txs, "total_count": found.total.to_string() }))
    })?;
    m.register_blocking_method("block_search", |p, s, _| {
        let q: SearchParams = parse(&p)?;
        let (query, page, per_page, ascending) = q.plan()?;
        let want = Page { skip: (page - 1).saturating_mul(per_page), take: per_page, ascending };
        let found = s.search.blocks(&query, want).map_err(search_err)?;
        check_page(page, per_page, found.total)?;
        let mut blocks = Vec::with_capacity(found.items.len());
        for h in found.items {
            let block = block_at(&s, Height(h))?;
            let result = BlockResult::new(&block, None);
            blocks.push(serde_json::to_value(result).map_err(internal)?);
        }
        RpcResult::Ok(json!({ "blocks": blocks, "total_count": found.total.to_string() }))
    })?;
    m.register_async_method("broadcast_evidence", |p, s, _| async move {
        let q: EvidenceParams = parse(&p)?;
        let evidence = q.evidence.ok_or_else(|| invalid("missing parameter: evidence"))?;
        let evidence = parse_evidence(evidence)?;
        let (chain_id, validators) = (&s.chain.genesis().chain_id, s.chain.validators());
        evidence
            .verify(chain_id, validators, s.chain.verifier())
            .map_err(|e| invalid(format!("evidence: {e}")))?;
        let bytes = borsh::to_vec(&evidence).map_err(internal)?;
        s.metrics.evidence.inc();
        tracing::warn!(?evidence, "equivocation evidence submitted over RPC");
        s.net
            .broadcast_consensus(tally_network::ConsensusMsg::Evidence(evidence))
            .await
            .map_err(|e| err(codes::UNAVAILABLE, format!("gossiping the evidence: {e}")))?;
        RpcResult::Ok(json!({ "hash": b64(&Hash::digest(&bytes).0) }))
    })?;
    m.register_blocking_method("account", |p, s, _| {
        let q: AccountParams = parse(&p)?;
        let a = q.address.ok_or_else(|| invalid("missing parameter: address"))?;
        let key = PublicKey::from_hex(a.strip_prefix("0x").unwrap_or(&a))
            .map_err(|e| invalid(format!("address: {e}")))?;
        json::account(&key, &s.chain.account(&key, q.prove.0)).map_err(internal)
    })?;
    m.register_async_method("check_tx", |p, s, _| async move {
        let q: TxParams = parse(&p)?;
        let bytes = s.admission.decode_tx_param(q.tx.as_deref()).map_err(submit_err)?;
        match s.admission.check_tx(bytes).await {
            Ok(_) => RpcResult::Ok(json::check_tx_result(0, "")),
            Err(e) if e.is_about_the_tx() => {
                RpcResult::Ok(json::check_tx_result(e.code(), &e.to_string()))
            }
            Err(e) => Err(submit_err(e)),
        }
    })?;
    m.register_async_method("broadcast_tx_async", |p, s, _| async move {
        let q: TxParams = parse(&p)?;
        let bytes = s.admission.decode_tx_param(q.tx.as_deref()).map_err(submit_err)?;
        let outcome = s.admission.submit_tx_async(bytes.clone());
        broadcast_answer(&bytes, outcome)
    })?;
    m.register_async_method("broadcast_tx_sync", |p, s, _| async move {
        let q: TxParams = parse(&p)?;
        let bytes = s.admission.decode_tx_param(q.tx.as_deref()).map_err(submit_err)?;
        let outcome = s.admission.submit_tx(bytes.clone()).await;
        broadcast_answer(&bytes, outcome)
    })?;
    m.register_async_method("broadcast_tx_commit", |p, s, _| async move {
        let q: TxParams = parse(&p)?;
        let bytes = s.admission.decode_tx_param(q.tx.as_deref()).map_err(submit_err)?;
        let refused = |e: SubmitError, bytes: &[u8]| -> RpcResult<Value> {
            if !e.is_about_the_tx() {
                return Err(submit_err(e));
            }
            Ok(json!({
                "check_tx": json::check_tx_result(e.code(), &e.to_string()),
                "tx_result": {},
                "hash": json::upper(&Hash::digest(bytes)),
                "height": "0",
            }))
        };
        let waiter = match s.admission.commit_waiter_for(&bytes) {
            Ok(w) => w,
            Err(e) => return refused(e, &bytes),
        };
        let hash = match s.admission.submit_tx(bytes.clone()).await {
            Ok(hash) => hash,
            Err(e) => return refused(e, &bytes),
        };
        let timeout = Duration::from_millis(s.config.tx_commit_timeout_ms);
        let (height, index) = match tokio::time::timeout(timeout, waiter.wait()).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(err(codes::UNAVAILABLE, "the node is shutting down")),
            Err(_) => {
                return Err(err(
                    codes::UNAVAILABLE,
                    format!(
                        "tx {hash} was accepted but did not commit within {} ms",
                        timeout.as_millis()
                    ),
                ))
            }
        };
        let tx = Tx::decode(&bytes).map_err(internal)?;
        RpcResult::Ok(json!({
            "check_tx": json::check_tx_result(0, ""),
            "tx_result": json::exec_tx_result(&tx),
            "hash": json::upper(&hash.0),
            "height": height.0.to_string(),
            "index": index,
        }))
    })?;
    m.register_async_method("broadcast_tx_batch", |p, s, _| async move {
        let q: TxBatchParams = parse(&p)?;
        let txs = q.txs.ok_or_else(|| invalid("missing parameter: txs"))?;
        if txs.len() > s.config.tx_batch_len_max as usize {
            return Err(invalid(format!(
                "{} txs in one batch; at most {} allowed",
                txs.len(),
                s.config.tx_batch_len_max
            )));
        }
        let results = s.admission.submit_batch(txs).await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        let results = results
            .into_iter()
            .map(|r| match r {
                Ok(h) => {
                    TxBatchItem { code: 0, hash: Some(json::upper(&h.0)), log: None, reason: None }
                }
                Err(e) => TxBatchItem {
                    code: e.code(),
                    hash: None,
                    log: Some(e.to_string()),
                    reason: Some(e.reason()),
                },
            })
            .collect();
        RpcResult::Ok(TxBatchAnswer { accepted, results })
    })?;
    for method in subscriptions::METHODS {
        m.register_method(method, move |_, _, _| -> RpcResult<Value> {
            Err(err(
                http_layer::INVALID_REQUEST,
                format!("{method} is served on a WebSocket connection only (ws://<rpc>/websocket)"),
            ))
        })?;
    }
    Ok(m)
}

/// `abci_query`: path `/account` with `data` the account's public key (hex), answering
/// the borsh `Account` (balance, nonce) as `value` and, with `prove`, its proof of presence
/// or absence under the state root as `proof_ops`. At a past `height` the account is
/// rebuilt from the event index (its later transfers undone), without a proof: tally keeps
/// the state tree of the latest height only.
fn abci_query(s: &RpcContext, q: &AbciQueryParams) -> RpcResult<Value> {
    let path = q.path.as_deref().unwrap_or("");
    if path != "/account" {
        return RpcResult::Ok(json!({ "response": {
            "code": refusals::UNKNOWN_PATH, "log": format!("unknown path {path:?}; tally answers /account"),
            "info": "", "index": "0", "key": null, "value": null, "proofOps": null,
            "height": "0", "codespace": refusals::CODESPACE,
        }}));
    }
    let data = q.data.as_deref().ok_or_else(|| invalid("missing parameter: data"))?;
    let key = PublicKey::from_hex(&data.strip_prefix("0x").unwrap_or(data).to_ascii_lowercase())
        .map_err(|e| invalid(format!("data: an account's public key as hex: {e}")))?;
    let view = s.chain.account(&key, q.prove.0);
    if let Some(h) = q.height.map(IntParam::get).filter(|h| *h != 0 && *h != view.height) {
        // A past height: the account rebuilt from the event index, without a proof.
        if q.prove.0 {
            return Err(invalid(format!(
                "height {h}: proofs are given at the latest height ({}) only; the state \
                 tree of a past height is not kept",
                view.height
            )));
        }
        let account =
            s.search.account_at(&key, h, view.account, view.height).map_err(search_err)?;
        let value = borsh::to_vec(&account).map_err(internal)?;
        return RpcResult::Ok(json!({ "response": {
            "code": 0, "log": "", "info": "", "index": "0", "key": b64(&key.0),
            "value": b64(&value), "proofOps": null, "height": h.to_string(), "codespace": "",
            "account": { "address": key.to_hex(), "balance": account.balance.to_string(),
                "nonce": account.nonce.to_string(), "height": h.to_string() },
        }}));
    }
    let value = borsh::to_vec(&view.account).map_err(internal)?;
    let proof_ops = match &view.proof {
        Some((present, root, proof)) => json!({ "ops": [{
            "type": if *present { "tally/account-presence" } else { "tally/account-absence" },
            "key": b64(&key.0),
            "data": b64(&borsh::to_vec(proof).map_err(internal)?),
            "root": json::upper(root),
        }]}),
        None => Value::Null,
    };
    RpcResult::Ok(json!({ "response": {
        "code": 0, "log": if view.exists { "exists" } else { "does not exist" }, "info": "",
        "index": "0", "key": b64(&key.0), "value": b64(&value), "proofOps": proof_ops,
        "height": view.height.to_string(), "codespace": "",
        "account": json::account(&key, &view).map_err(internal)?,
    }}))
}

/// Starts the server on `runtime` (the RPC's own, see `rpc.worker_threads`).
pub async fn start(
    ctx: Arc<RpcContext>,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<(ServerHandle, std::net::SocketAddr)> {
    let c = &ctx.config;
    let batch = if c.batch_len_max == 0 {
        BatchRequestConfig::Disabled
    } else {
        BatchRequestConfig::Limit(c.batch_len_max)
    };
    let server_config = ServerConfig::builder()
        .max_request_body_size(c.body_bytes_max)
        .max_response_body_size(c.response_bytes_max)
        .max_connections(c.connections_max)
        .max_subscriptions_per_connection(c.subscriptions_per_connection_max)
        .set_message_buffer_capacity(c.ws_message_buffer_max)
        // Pings find WebSocket clients that vanished without closing, so their
        // subscriptions and connection slot are released.
        .enable_ws_ping(PingConfig::new())
        .set_batch_request_config(batch)
        .custom_tokio_runtime(runtime)
        .build();
    let methods = module(ctx.clone())?;
    let known: Arc<BTreeSet<String>> =
        Arc::new(methods.method_names().map(str::to_string).collect());
    // The URI form (`GET /status`) reaches every method but the subscriptions, which need
    // a WebSocket.
    let uri_methods: Arc<BTreeSet<String>> = Arc::new(
        known.iter().filter(|m| !subscriptions::METHODS.contains(&m.as_str())).cloned().collect(),
    );
    let tables = ws::Tables { methods: methods.clone(), known: known.clone() };
    let metrics = ctx.metrics.clone();
    let rpc_middleware = RpcServiceBuilder::new()
        .layer_fn(move |service| RpcMetrics::new(service, metrics.clone(), known.clone()));
    let http_middleware = tower::ServiceBuilder::new().layer(http_layer::NodeHttpLayer::new(
        ctx.clone(),
        uri_methods,
        tables,
    ));
    let server = Server::builder()
        .set_config(server_config)
        .set_rpc_middleware(rpc_middleware)
        .set_http_middleware(http_middleware)
        .build(c.listen_addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the RPC server to {}: {e}", c.listen_addr))?;
    let addr = server.local_addr()?;
    let handle = server.start(methods);
    Ok((handle, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_taken_as_hex_of_either_case_with_or_without_0x_or_as_base64() {
        let hash = Hash::digest(b"a tx");
        let hex = hash.to_hex();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(hash.0);
        for given in [
            hex.clone(),
            hex.to_uppercase(),
            format!("0x{hex}"),
            format!("0X{}", hex.to_uppercase()),
            b64,
        ] {
            assert_eq!(parse_hash(Some(&given)).expect(&given), hash);
        }
        let e = parse_hash(Some("AAEC")).expect_err("3 bytes");
        assert!(e.message().contains("3 bytes"), "{}", e.message());
        let e = parse_hash(Some("not a hash!")).expect_err("neither");
        assert!(e.message().contains("neither"), "{}", e.message());
        assert!(parse_hash(None).expect_err("missing").message().contains("missing"));
    }

    #[test]
    fn booleans_and_integers_are_taken_as_json_or_as_strings_and_refusals_say_why() {
        let b = |v: Value| serde_json::from_value::<BoolParam>(v).map(|b| b.0);
        assert!(b(json!(true)).expect("bool"));
        assert!(b(json!("true")).expect("string"));
        assert!(!b(json!("false")).expect("string"));
        assert!(b(json!("yes")).expect_err("yes").to_string().contains("not a boolean"));
        let i = |v: Value| serde_json::from_value::<IntParam>(v).map(IntParam::get);
        assert_eq!(i(json!(5)).expect("number"), 5);
        assert_eq!(i(json!("18446744073709551615")).expect("string"), u64::MAX);
        for bad in [json!(-1), json!("abc"), json!([1]), json!(1.5)] {
            let e = i(bad.clone()).expect_err("refused").to_string();
            assert!(e.contains("not an integer"), "{bad}: {e}");
        }
    }
}
