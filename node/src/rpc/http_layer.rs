//! A tower HTTP middleware in front of the jsonrpsee server:
//! - `GET /` (not a WebSocket upgrade) answers the status page (`status_page.html`, a
//!   static page embedded in the binary, no build step, no external assets), when
//!   `rpc.status_page` is on;
//! - a request refused because `rpc.connections_max` connections are open gets a JSON-RPC
//!   error body (code -32005) instead of jsonrpsee's plain-text 429, so every refusal is a
//!   JSON-RPC error; it is counted in `tally_rpc_connections_refused_total`;
//! - everything else (POST, WebSocket) passes through untouched.

use super::RpcContext;
use futures::future::BoxFuture;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The status page: polls JSON-RPC from the browser and draws its charts inline.
pub const STATUS_PAGE: &str = include_str!("status_page.html");

/// The JSON-RPC error code of a request refused at `rpc.connections_max`.
pub const TOO_MANY_CONNECTIONS: i32 = -32005;

#[derive(Clone)]
pub struct NodeHttpLayer {
    ctx: Arc<RpcContext>,
}

impl NodeHttpLayer {
    pub fn new(ctx: Arc<RpcContext>) -> NodeHttpLayer {
        NodeHttpLayer { ctx }
    }
}

impl<S> Layer<S> for NodeHttpLayer {
    type Service = NodeHttp<S>;

    fn layer(&self, inner: S) -> NodeHttp<S> {
        NodeHttp { inner, ctx: self.ctx.clone() }
    }
}

#[derive(Clone)]
pub struct NodeHttp<S> {
    inner: S,
    ctx: Arc<RpcContext>,
}

impl<S, B> Service<HttpRequest<B>> for NodeHttp<S>
where
    S: Service<HttpRequest<B>, Response = HttpResponse, Error = BoxError>,
    S::Future: Send + 'static,
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

fn page_response() -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::from(STATUS_PAGE));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn too_many_connections(max: u32) -> HttpResponse {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": TOO_MANY_CONNECTIONS,
            "message": format!(
                "too many open connections: this node serves at most {max} at once \
                 (rpc.connections_max); retry later"
            ),
        },
    });
    let mut response = HttpResponse::new(HttpBody::from(body.to_string()));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
