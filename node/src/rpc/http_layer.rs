//! A tower HTTP middleware in front of the jsonrpsee server:
//! - `GET /` (not a WebSocket upgrade) answers the status page (`status_page.html`, a
//!   static page embedded in the binary, no build step, no external assets), when
//!   `rpc.status_page` is on;
//! - `GET /<method>?name=value&...` (CometBFT's URI form: `GET /status`,
//!   `GET /block?height=5`, `GET /tx?hash=0xAB..&prove=true`) is turned into the JSON-RPC
//!   call `{"jsonrpc":"2.0","id":0,"method":<method>,"params":{...}}` and answered as
//!   one, for every method but the subscriptions (see [`uri_call`] for how values are read;
//!   CometBFT answers with id -1, which jsonrpsee does not take as an id);
//! - a request refused because `rpc.connections_max` connections are open gets a JSON-RPC
//!   error body (code -32005) instead of jsonrpsee's plain-text 429, so every refusal is a
//!   JSON-RPC error; it is counted in `tally_rpc_connections_refused_total`;
//! - a WebSocket upgrade, on any path, is served by `ws.rs` (CometBFT's WebSocket);
//! - everything else (POST) passes through untouched.

use super::RpcContext;
use futures::future::BoxFuture;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The status page: polls JSON-RPC from the browser and draws its charts inline.
pub const STATUS_PAGE: &str = include_str!("status_page.html");

/// JSON-RPC's own code for a request that cannot be served as sent.
pub const INVALID_REQUEST: i32 = -32600;

/// The JSON-RPC error code of a request refused at `rpc.connections_max`.
pub const TOO_MANY_CONNECTIONS: i32 = -32005;

#[derive(Clone)]
pub struct NodeHttpLayer {
    ctx: Arc<RpcContext>,
    /// The methods the URI form may call (the server's, without the subscriptions).
    uri_methods: Arc<BTreeSet<String>>,
    /// What WebSocket connections call.
    tables: super::ws::Tables,
}

impl NodeHttpLayer {
    pub fn new(
        ctx: Arc<RpcContext>,
        uri_methods: Arc<BTreeSet<String>>,
        tables: super::ws::Tables,
    ) -> NodeHttpLayer {
        NodeHttpLayer { ctx, uri_methods, tables }
    }
}

impl<S> Layer<S> for NodeHttpLayer {
    type Service = NodeHttp<S>;

    fn layer(&self, inner: S) -> NodeHttp<S> {
        NodeHttp {
            inner,
            ctx: self.ctx.clone(),
            uri_methods: self.uri_methods.clone(),
            tables: self.tables.clone(),
        }
    }
}

#[derive(Clone)]
pub struct NodeHttp<S> {
    inner: S,
    ctx: Arc<RpcContext>,
    uri_methods: Arc<BTreeSet<String>>,
    tables: super::ws::Tables,
}

impl<S, B> Service<HttpRequest<B>> for NodeHttp<S>
where
    S: Service<HttpRequest<B>, Response = HttpResponse, Error = BoxError>,
    S::Future: Send + 'static,
    B: From<String>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<HttpResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        let is_page = req.method() == Method::GET
            && matches!(req.uri().path(), "/" | "/index.html")
            && !jsonrpsee::server::ws::is_upgrade_request(&req);
        if is_page && self.ctx.config.status_page {
            return Box::pin(async { Ok(page_response()) });
        }
        if jsonrpsee::server::ws::is_upgrade_request(&req) {
            let response = match self.ctx.ws_slots.clone().try_acquire_owned() {
                Ok(permit) => super::ws::accept(self.ctx.clone(), self.tables.clone(), req, permit),
                Err(_) => {
                    self.ctx.metrics.rpc_connections_refused.inc();
                    too_many_connections(self.ctx.config.connections_max)
                }
            };
            return Box::pin(async move { Ok(response) });
        }
        let req = match self.uri_form(req) {
            Ok(req) => req,
            Err(refused) => return Box::pin(async move { Ok(refused) }),
        };
        let future = self.inner.call(req);
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let response = future.await?;
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                return Ok(response);
            }
            ctx.metrics.rpc_connections_refused.inc();
            Ok(too_many_connections(ctx.config.connections_max))
        })
    }
}

impl<S> NodeHttp<S> {
    /// A `GET /<method>?...` for a known method becomes the JSON-RPC POST it stands for; an
    /// unparsable one is answered here with a JSON-RPC error; anything else passes as is.
    fn uri_form<B: From<String>>(
        &self,
        req: HttpRequest<B>,
    ) -> Result<HttpRequest<B>, HttpResponse> {
        if req.method() != Method::GET || jsonrpsee::server::ws::is_upgrade_request(&req) {
            return Ok(req);
        }
        let method = req.uri().path().trim_start_matches('/');
        if super::subscriptions::METHODS.contains(&method) {
            let message = format!("{method} is served on a WebSocket connection only");
            return Err(json_error(StatusCode::OK, INVALID_REQUEST, message));
        }
        if !self.uri_methods.contains(method) {
            return Ok(req);
        }
        let body = uri_call(method, req.uri().query().unwrap_or(""))
            .map_err(|message| json_error(StatusCode::OK, super::codes::INVALID_PARAMS, message))?;
        let (mut parts, _) = req.into_parts();
        parts.method = Method::POST;
        parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        Ok(HttpRequest::from_parts(parts, B::from(body)))
    }
}

/// The JSON-RPC request body for `GET /<method>?<query>`. Values are read as CometBFT reads
/// them: `"..."` is a string (quotes removed), `true` and `false` are booleans, and
/// anything else (`5`, `0xAB12`) is passed as the string it is, which every tally method
/// takes for integers and hashes. Names and values are percent-decoded; a name given twice
/// is refused.
pub fn uri_call(method: &str, query: &str) -> Result<String, String> {
    let mut params = Map::new();
    for (name, raw) in form_urlencoded::parse(query.as_bytes()) {
        if name.is_empty() {
            continue;
        }
        let value = match raw.as_ref() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            v if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') => {
                Value::String(v[1..v.len() - 1].to_string())
            }
            v if v.starts_with('"') || v.ends_with('"') => {
                return Err(format!("parameter {name}: unbalanced quotes in {v}"));
            }
            v => Value::String(v.to_string()),
        };
        if params.insert(name.to_string(), value).is_some() {
            return Err(format!("parameter {name} is given twice"));
        }
    }
    let call = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": method,
        "params": params,
    });
    Ok(call.to_string())
}

fn page_response() -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::from(STATUS_PAGE));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn too_many_connections(max: u32) -> HttpResponse {
    let message = format!(
        "too many open connections: this node serves at most {max} at once \
         (rpc.connections_max); retry later"
    );
    json_error(StatusCode::TOO_MANY_REQUESTS, TOO_MANY_CONNECTIONS, message)
}

/// A JSON-RPC error response (id null) with HTTP `status`.
fn json_error(status: StatusCode, code: i32, message: String) -> HttpResponse {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    let mut response = HttpResponse::new(HttpBody::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::uri_call;
    use serde_json::{json, Value};

    fn call(method: &str, query: &str) -> Value {
        serde_json::from_str(&uri_call(method, query).expect("a call")).expect("JSON")
    }

    #[test]
    fn uri_values_are_read_as_cometbft_reads_them() {
        assert_eq!(
            call("status", ""),
            json!({"jsonrpc": "2.0", "id": 0, "method": "status", "params": {}})
        );
        assert_eq!(call("block", "height=5")["params"], json!({"height": "5"}));
        assert_eq!(
            call("tx", "hash=0xAB12&prove=true")["params"],
            json!({"hash": "0xAB12", "prove": true})
        );
        assert_eq!(
            call("tx_search", "query=%22transfer.sender%3D%27ab%27%22&page=2")["params"],
            json!({"query": "transfer.sender='ab'", "page": "2"})
        );
        assert_eq!(call("account", "address=%22%22")["params"], json!({"address": ""}));
        assert_eq!(call("x", "a+b=c+d&=ignored")["params"], json!({"a b": "c d"}));
    }

    #[test]
    fn unbalanced_quotes_and_repeated_names_are_refused() {
        assert!(uri_call("tx", "hash=%22AB").expect_err("open quote").contains("unbalanced"));
        assert!(uri_call("tx", "hash=AB%22").expect_err("close quote").contains("unbalanced"));
        assert!(uri_call("tx", "hash=%22").expect_err("one quote").contains("unbalanced"));
        assert!(uri_call("block", "height=1&height=2").expect_err("twice").contains("twice"));
    }
}
