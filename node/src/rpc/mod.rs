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
mod query;
mod subscriptions;

pub use http_layer::{STATUS_PAGE, TOO_MANY_CONNECTIONS};
pub use query::{EventQuery, QueryError, QUERY_BYTES_MAX};

use crate::admission::{Admission, SubmitError};
use crate::chain::ChainReader;
use crate::config::RpcConfig;
use crate::metrics::Metrics;
use crate::notify::Notify;
use json::{b64, BlockResult, CommitJson, HeaderJson, TxJson};
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
use tally_ledger::TxHash;
use tally_network::NetworkHandle;

/// The node's identity, for `status` and `net_info`.
pub struct NodeInfo {
    pub peer_id: String,
    pub listen_addr: String,
    pub moniker: String,
    pub validator_key: Option<PublicKey>,
}

/// What the RPC methods reach: the other rooms' public sides, and the RPC's own config.
pub struct RpcContext {
    admission: Arc<Admission>,
    chain: ChainReader,
    notify: Arc<Notify>,
    metrics: Arc<Metrics>,
    config: RpcConfig,
    info: NodeInfo,
    net: NetworkHandle,
    subscriptions: subscriptions::Registry,
}

impl RpcContext {
    pub fn new(
        admission: Arc<Admission>,
        chain: ChainReader,
        notify: Arc<Notify>,
        metrics: Arc<Metrics>,
        config: RpcConfig,
        info: NodeInfo,
        net: NetworkHandle,
    ) -> RpcContext {
        RpcContext {
            admission,
            chain,
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

pub fn module(ctx: Arc<RpcContext>) -> anyhow::Result<RpcModule<RpcContext>> {
    let mut m = RpcModule::from_arc(ctx);
    m.register_method("health", |_, _, _| RpcResult::Ok(json!({})))?;
    m.register_method("status", |_, s, _| RpcResult::Ok(json::status(s, s.chain.tip())))?;
    m.register_method("genesis", |_, s, _| RpcResult::Ok(json!({ "genesis": s.chain.genesis() })))?;
    m.register_async_method("net_info", |_, s, _| async move {
        let peers = s.net.peers().await.unwrap_or_default();
        RpcResult::Ok(json::net_info(&s.info.listen_addr, &peers))
    })?;
    m.register_method("consensus_state", |_, s, _| {
        RpcResult::Ok(json::consensus_state(s.notify.consensus()))
    })?;
    m.register_method("num_unconfirmed_txs", |_, s, _| {
        let (n, bytes) = s.chain.mempool_size();
        RpcResult::Ok(json!({
            "n_txs": n.to_string(), "total": n.to_string(), "total_bytes": bytes.to_string()
        }))
    })?;
    m.register_blocking_method("block", |p, s, _| {
        let h = resolve_height(&s, &parse(&p)?)?;
        let block = s.chain.block(h).map_err(internal)?;
        let block = block.ok_or_else(|| err(codes::NOT_FOUND, below_base_or(&s, h, "no block")))?;
        serde_json::to_value(BlockResult::new(&block)).map_err(internal)
    })?;
    m.register_blocking_method("block_by_hash", |p, s, _| {
        let q: HashParams = parse(&p)?;
        let hash = parse_hash(q.hash.as_deref())?;
        let block = s.chain.block_by_hash(hash).map_err(internal)?;
        let block = block.ok_or_else(|| err(codes::NOT_FOUND, format!("no block {hash}")))?;
        serde_json::to_value(BlockResult::new(&block)).map_err(internal)
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
                "commit": CommitJson::new(&cert, s.chain.validators()),
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
        let h = resolve_height(s, &parse(&p)?)?;
        let vals: Vec<Value> = s
            .chain
            .validators()
            .indexed()
            .map(|(i, v)| {
                json!({
                    "index": i.0,
                    "address": v.public_key.to_hex(),
                    "pub_key": { "type": "tally/PubKeyEd25519", "value": b64(&v.public_key.0) },
                    "voting_power": v.voting_power.0.to_string(),
                    "proposer_priority": "0",
                })
            })
            .collect();
        RpcResult::Ok(json!({
            "block_height": h.0.to_string(),
            "count": vals.len().to_string(),
            "total": vals.len().to_string(),
            "validators": vals,
        }))
    })?;
    m.register_blocking_method("tx", |p, s, _| {
        let q: HashParams = parse(&p)?;
        let hash = TxHash(parse_hash(q.hash.as_deref())?);
        let found = s.chain.tx(hash, q.prove.0).map_err(internal)?;
        let found = found.ok_or_else(|| err(codes::NOT_FOUND, format!("tx {hash} not found")))?;
        let mut out = json!({
            "hash": hash.0.to_hex(),
            "height": found.height.0.to_string(),
            "index": found.index,
            "tx_result": { "code": 0, "log": "" },
            "tx": b64(&found.tx.encode()),
            "transfer": TxJson::new(&found.tx, &hash),
        });
        if let Some((proof, root)) = &found.proof {
            out["proof"] = json::tx_proof(&found.tx, &hash, proof, root).map_err(internal)?;
        }
        RpcResult::Ok(out)
    })?;
    m.register_blocking_method("account", |p, s, _| {
        let q: AccountParams = parse(&p)?;
        let a = q.address.ok_or_else(|| invalid("missing parameter: address"))?;
        let key = PublicKey::from_hex(a.strip_prefix("0x").unwrap_or(&a))
            .map_err(|e| invalid(format!("address: {e}")))?;
        json::account(&key, s.chain.account(&key, q.prove.0)).map_err(internal)
    })?;
    m.register_async_method("broadcast_tx_async", |p, s, _| async move {
        let q: TxParams = parse(&p)?;
        let bytes = s.admission.decode_tx_param(q.tx.as_deref()).map_err(submit_err)?;
        let hash = s.admission.submit_tx_async(bytes).map_err(submit_err)?;
        RpcResult::Ok(
            json!({ "code": 0, "data": "", "log": "", "codespace": "", "hash": hash.0.to_hex() }),
        )
    })?;
    m.register_async_method("broadcast_tx_sync", |p, s, _| async move {
        let q: TxParams = parse(&p)?;
        let bytes = s.admission.decode_tx_param(q.tx.as_deref()).map_err(submit_err)?;
        let hash = s.admission.submit_tx(bytes).await.map_err(submit_err)?;
        RpcResult::Ok(
            json!({ "code": 0, "data": "", "log": "", "codespace": "", "hash": hash.0.to_hex() }),
        )
    })?;
    m.register_async_method("broadcast_tx_commit", |p, s, _| async move {
        let q: TxParams = parse(&p)?;
        let bytes = s.admission.decode_tx_param(q.tx.as_deref()).map_err(submit_err)?;
        let waiter = s.admission.commit_waiter_for(&bytes).map_err(submit_err)?;
        let hash = s.admission.submit_tx(bytes).await.map_err(submit_err)?;
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
        RpcResult::Ok(json!({
            "check_tx": { "code": 0, "log": "" },
            "tx_result": { "code": 0, "log": "" },
            "hash": hash.0.to_hex(),
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
                Ok(h) => TxBatchItem { code: 0, hash: Some(h.0.to_hex()), log: None, reason: None },
                Err(e) => TxBatchItem {
                    code: 1,
                    hash: None,
                    log: Some(e.to_string()),
                    reason: Some(e.reason()),
                },
            })
            .collect();
        RpcResult::Ok(TxBatchAnswer { accepted, results })
    })?;
    subscriptions::register(&mut m)?;
    Ok(m)
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
    let metrics = ctx.metrics.clone();
    let rpc_middleware = RpcServiceBuilder::new()
        .layer_fn(move |service| RpcMetrics::new(service, metrics.clone(), known.clone()));
    let http_middleware = tower::ServiceBuilder::new()
        .layer(http_layer::NodeHttpLayer::new(ctx.clone(), uri_methods));
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
