//! The WebSocket endpoint, as CometBFT serves it: an upgrade on `/websocket` (or on any
//! other path, the root included) opens a connection on which every method can be called
//! (the response carries the request's id, whatever its type) and `subscribe`,
//! `unsubscribe` and `unsubscribe_all` manage subscriptions (`subscriptions.rs`).
//!
//! tally serves this connection itself rather than through jsonrpsee, whose subscription
//! messages (a notification naming a subscription id) CometBFT's clients cannot route.
//! Calls go to the same method table as HTTP (`Methods::raw_json_request`), one at a time
//! per connection, in order.
//!
//! Bounds: at most `rpc.connections_max` WebSocket connections at once (beside as many
//! HTTP connections; one more upgrade is refused with the JSON-RPC error -32005); a message
//! of at most `rpc.body_bytes_max` bytes; a response of at most `rpc.response_bytes_max`
//! bytes (a larger one is replaced by an error); `rpc.ws_message_buffer_max` messages
//! queued for the client; a ping every [`PING_INTERVAL`], and a connection from which
//! nothing (not even a pong) arrived for [`IDLE_MAX`] is closed.

use super::subscriptions::{self, error_response, response, Subscription};
use super::{codes, middleware, RpcContext};
use futures::io::{BufReader, BufWriter};
use http::StatusCode;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use jsonrpsee::Methods;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::compat::TokioAsyncReadCompatExt as _;

/// How often the server pings (CometBFT's clients close a connection silent for 30 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection from which nothing arrived for this long is closed.
pub const IDLE_MAX: Duration = Duration::from_secs(90);

/// JSON-RPC's codes for a request that is not JSON, or not a request.
const PARSE_ERROR: i32 = -32700;
const INVALID_REQUEST: i32 = -32600;

/// What a connection calls: the server's method table, and its method names (for the
/// metrics' labels).
#[derive(Clone)]
pub struct Tables {
    pub methods: Methods,
    pub known: Arc<BTreeSet<String>>,
}

/// Answers an upgrade request: the handshake response, and the connection's task spawned
/// to run once the upgrade completes. `permit` holds the connection's slot.
pub fn accept<B>(
    ctx: Arc<RpcContext>,
    tables: Tables,
    mut req: HttpRequest<B>,
    permit: OwnedSemaphorePermit,
) -> HttpResponse {
    let mut server = soketto::handshake::http::Server::new();
    let handshake = match server.receive_request(&req) {
        Ok(response) => response,
        Err(e) => {
            let mut r =
                HttpResponse::new(HttpBody::from(format!("WebSocket handshake failed: {e}")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let io = hyper_util::rt::TokioIo::new(upgraded).compat();
        let mut builder = server.into_builder(BufReader::new(BufWriter::new(io)));
        builder.set_max_message_size(ctx.config.body_bytes_max as usize);
        let (sender, receiver) = builder.finish();
        serve(ctx, tables, sender, receiver).await;
        drop(permit);
    });
    handshake.map(|()| HttpBody::default())
}

type Io = BufReader<
    BufWriter<tokio_util::compat::Compat<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>>,
>;

async fn serve(
    ctx: Arc<RpcContext>,
    tables: Tables,
    mut sender: soketto::Sender<Io>,
    mut receiver: soketto::Receiver<Io>,
) {
    let (out, mut queue) =
        mpsc::channel::<String>(ctx.config.ws_message_buffer_max.max(1) as usize);
    // The writer: queued messages, and pings.
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        loop {
            let sent = tokio::select! {
                message = queue.recv() => match message {
                    Some(m) => sender.send_text_owned(m).await,
                    None => break,
                },
                _ = ping.tick() => sender.send_ping(soketto::data::ByteSlice125::try_from(&b""[..]).expect("empty")).await,
            };
            if sent.and(sender.flush().await).is_err() {
                break;
            }
        }
        let _ = sender.close().await;
    });
    let mut subs: Vec<Subscription> = Vec::new();
    let mut message = Vec::new();
    let mut last_heard = Instant::now();
    loop {
        message.clear();
        let idle_left = IDLE_MAX.saturating_sub(last_heard.elapsed());
        let received = tokio::select! {
            r = receiver.receive(&mut message) => r,
            _ = tokio::time::sleep(idle_left) => break,
            _ = out.closed() => break,
        };
        last_heard = Instant::now();
        match received {
            Ok(soketto::Incoming::Data(soketto::Data::Text(_) | soketto::Data::Binary(_))) => {}
            Ok(soketto::Incoming::Pong(_)) => continue,
            Ok(soketto::Incoming::Closed(_)) | Err(_) => break,
        }
        let answer = handle(&ctx, &tables, &out, &mut subs, &message).await;
        if let Some(answer) = answer {
            if out.send(answer).await.is_err() {
                break;
            }
        }
    }
    for s in subs {
        s.cancel();
    }
    drop(out);
    let _ = writer.await;
}

/// One incoming message: a request or a batch; the answer to send, if any.
async fn handle(
    ctx: &Arc<RpcContext>,
    tables: &Tables,
    out: &mpsc::Sender<String>,
    subs: &mut Vec<Subscription>,
    message: &[u8],
) -> Option<String> {
    let value: Value = match serde_json::from_slice(message) {
        Ok(v) => v,
        Err(e) => {
            return Some(error_response(
                &Value::Null,
                PARSE_ERROR,
                &format!("parse error: {e}"),
                None,
            ))
        }
    };
    match value {
        Value::Array(calls) => {
            if calls.is_empty() || calls.len() > ctx.config.batch_len_max as usize {
                let message = format!(
                    "a batch holds 1 to {} calls (rpc.batch_len_max); this one {}",
                    ctx.config.batch_len_max,
                    calls.len()
                );
                return Some(error_response(&Value::Null, INVALID_REQUEST, &message, None));
            }
            let mut answers = Vec::new();
            for call in calls {
                if let Some(a) = call_one(ctx, tables, out, subs, call).await {
                    answers.push(a);
                }
            }
            (!answers.is_empty()).then(|| format!("[{}]", answers.join(",")))
        }
        call => call_one(ctx, tables, out, subs, call).await,
    }
}

async fn call_one(
    ctx: &Arc<RpcContext>,
    tables: &Tables,
    out: &mpsc::Sender<String>,
    subs: &mut Vec<Subscription>,
    call: Value,
) -> Option<String> {
    let id = call.get("id").cloned();
    let method = call.get("method").and_then(Value::as_str).unwrap_or("").to_string();
    let labels = middleware::labels(&tables.known, &method);
    let started = Instant::now();
    let (answer, failed) = match method.as_str() {
        "subscribe" | "unsubscribe" | "unsubscribe_all" => {
            let id = id.clone().unwrap_or(Value::Null);
            let params = call.get("params").cloned().unwrap_or(Value::Null);
            match subscription_call(ctx, out, subs, &method, &params, &id) {
                // A subscription queues its own answer, ahead of its events.
                Ok(None) => (None, false),
                Ok(Some(result)) => (Some(response(&id, result)), false),
                Err((code, message)) => (Some(error_response(&id, code, &message, None)), true),
            }
        }
        _ => {
            let text = call.to_string();
            match tables.methods.raw_json_request(&text, 1).await {
                Ok((answer, _)) => {
                    let answer = answer.get().to_string();
                    // jsonrpsee writes `jsonrpc`, `id`, then `result` or `error`: whichever
                    // key comes first is the answer's kind.
                    let at = |key: &str| answer.find(key).unwrap_or(usize::MAX);
                    let failed = at("\"error\":") < at("\"result\":");
                    if answer.len() > ctx.config.response_bytes_max as usize {
                        let message = format!(
                            "the response is larger than rpc.response_bytes_max ({} bytes)",
                            ctx.config.response_bytes_max
                        );
                        let id = id.clone().unwrap_or(Value::Null);
                        (Some(error_response(&id, codes::INTERNAL, &message, None)), true)
                    } else {
                        // A notification (no id) gets no answer.
                        (id.is_some().then_some(answer), failed)
                    }
                }
                Err(e) => {
                    let id = id.clone().unwrap_or(Value::Null);
                    (
                        Some(error_response(
                            &id,
                            INVALID_REQUEST,
                            &format!("invalid request: {e}"),
                            None,
                        )),
                        true,
                    )
                }
            }
        }
    };
    let m = &ctx.metrics;
    m.rpc_requests.get_or_create(&labels).inc();
    m.rpc_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    if failed {
        m.rpc_errors.get_or_create(&labels).inc();
    }
    answer
}

fn subscription_call(
    ctx: &Arc<RpcContext>,
    out: &mpsc::Sender<String>,
    subs: &mut Vec<Subscription>,
    method: &str,
    params: &Value,
    id: &Value,
) -> Result<Option<Value>, (i32, String)> {
    let invalid = |m: String| (codes::INVALID_PARAMS, m);
    let query = || -> Result<String, (i32, String)> {
        let q = match params {
            Value::Object(o) => o.get("query"),
            Value::Array(a) => a.first(),
            _ => None,
        };
        q.and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid("missing parameter: query".into()))
    };
    subs.retain(|s| !s.is_finished());
    match method {
        "subscribe" => {
            let query = query()?;
            let parsed = subscriptions::parse_for_subscription(&query).map_err(invalid)?;
            let max = ctx.config.subscriptions_per_connection_max as usize;
            if subs.len() >= max {
                return Err((
                    codes::UNAVAILABLE,
                    format!("too many subscriptions on this connection (rpc.subscriptions_per_connection_max = {max})"),
                ));
            }
            if subs.iter().any(|s| s.query == query) {
                return Err(invalid(format!("already subscribed to {query:?}")));
            }
            let answer = response(id, json!({}));
            subs.push(subscriptions::start(
                ctx.clone(),
                out.clone(),
                id.clone(),
                parsed,
                Some(answer),
            ));
            Ok(None)
        }
        "unsubscribe" => {
            let query = query()?;
            let Some(i) = subs.iter().position(|s| s.query == query) else {
                return Err((
                    codes::NOT_FOUND,
                    format!("no subscription to {query:?} on this connection"),
                ));
            };
            subs.swap_remove(i).cancel();
            Ok(Some(json!({})))
        }
        _ => {
            if subs.is_empty() {
                return Err((codes::NOT_FOUND, "no subscriptions on this connection".into()));
            }
            for s in subs.drain(..) {
                s.cancel();
            }
            Ok(Some(json!({})))
        }
    }
}
