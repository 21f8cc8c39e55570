//! Subscriptions as CometBFT serves them on its WebSocket (`ws.rs` carries the frames):
//! `subscribe {query}` answers `{}`, and each event is then a JSON-RPC response carrying
//! the subscribe call's id, with `result.query` (the query exactly as given),
//! `result.data {type, value}` and `result.events` (the event's attributes by composite
//! key); `unsubscribe {query}` and `unsubscribe_all` end them. Queries are CometBFT's
//! (`query.rs`), on tally's events: `tm.event` `NewBlock`, `NewBlockHeader`,
//! `NewBlockEvents` and `Tx` (one per committed transfer, with its `transfer.*`
//! attributes), `Vote` (each verified vote, own or a peer's) and `NewRound`;
//! `ValidatorSetUpdates` is accepted and never fires (the set is fixed by genesis).
//! CometBFT's other step events are refused: tally does not publish them.
//!
//! The consensus room publishes one [`BlockEvent`] per committed block through the notify
//! room's bounded broadcast channel (capacity `rpc.subscription_lag_blocks_max`).
//! Publishing never waits. Bounds, so that no client can hold memory or slow consensus:
//! - `rpc.subscriptions_per_connection_max` subscriptions per connection;
//! - a subscriber may fall `rpc.subscription_lag_blocks_max` blocks behind the event
//!   channel; beyond that it is dropped with the reason `lagged`;
//! - an event waits at most `rpc.subscription_send_timeout_ms` for room in the connection's
//!   buffer (`rpc.ws_message_buffer_max` messages); then the subscription is dropped with the
//!   reason `slow_client`.
//!
//! A dropped subscription ends with an error response (the subscribe call's id, the reason
//! in `error.data`), is logged and counted in `tally_subscriptions_dropped_total{reason}`.

use super::json::{new_block_data, new_block_events_data, new_block_header_data, tx_data};
use super::RpcContext;
use crate::chain::query::{block_values, tx_values, EventQuery, BLOCK_KEYS, TX_KEYS};
use crate::notify::{BlockEvent, ConsensusEvent};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The methods served on a WebSocket connection only (not over HTTP).
pub const METHODS: [&str; 3] = ["subscribe", "unsubscribe", "unsubscribe_all"];

/// The `tm.event` values tally publishes.
const EVENTS: [&str; 7] = [
    "NewBlock",
    "NewBlockHeader",
    "NewBlockEvents",
    "Tx",
    "Vote",
    "NewRound",
    "ValidatorSetUpdates",
];
/// CometBFT's events tally does not publish (refused, rather than never firing silently).
const UNPUBLISHED: [&str; 7] =
    ["NewRoundStep", "CompleteProposal", "Polka", "Lock", "Unlock", "Relock", "TimeoutPropose"];

/// Open subscriptions on all connections (for the metrics).
#[derive(Default)]
pub struct Registry {
    open: AtomicUsize,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Checks a query for a subscription: it parses, and asks for no event tally does not
/// publish.
pub fn parse_for_subscription(query: &str) -> Result<EventQuery, String> {
    let parsed = EventQuery::parse(query).map_err(|e| format!("query: {e}"))?;
    if let Some(kinds) = parsed.event_kinds() {
        if let Some(k) = kinds.iter().find(|k| UNPUBLISHED.contains(k)) {
            return Err(format!(
                "tally does not publish {k} events; it publishes {}",
                EVENTS.join(", ")
            ));
        }
    }
    Ok(parsed)
}

/// The attributes of one of tally's events, by composite key.
enum Source<'a> {
    Block { kind: &'static str, event: &'a BlockEvent },
    Tx { event: &'a BlockEvent, index: usize },
}

impl Source<'_> {
    fn values(&self, key: &str) -> Vec<Cow<'static, str>> {
        match *self {
            Source::Block { kind, event } => block_values(kind, event.height.0, key),
            Source::Tx { event, index } => {
                tx_values(&event.block.txs[index], &event.tx_hashes[index], event.height.0, key)
            }
        }
    }

    /// CometBFT's `result.events`: every attribute of the event.
    fn events(&self) -> Value {
        let keys: &[&str] = match self {
            Source::Block { .. } => &BLOCK_KEYS,
            Source::Tx { .. } => &TX_KEYS,
        };
        let map: Map<String, Value> =
            keys.iter().map(|k| (k.to_string(), json!(self.values(k)))).collect();
        Value::Object(map)
    }

    fn data(&self) -> Value {
        match *self {
            Source::Block { kind: "NewBlockHeader", event } => new_block_header_data(event),
            Source::Block { kind: "NewBlockEvents", event } => new_block_events_data(event),
            Source::Block { event, .. } => new_block_data(event),
            Source::Tx { event, index } => tx_data(event, index),
        }
    }
}

/// The `result` a query yields for one consensus event, if it matches.
pub fn consensus_notification(
    query: &EventQuery,
    event: &ConsensusEvent,
    validators: &tally_consensus::ValidatorSet,
) -> Option<Value> {
    let (kind, data) = match event {
        ConsensusEvent::Vote(v) => ("Vote", super::json::vote_data(v, validators)),
        ConsensusEvent::NewRound { height, round, proposer } => {
            ("NewRound", super::json::new_round_data(height.0, round.0, *proposer, validators))
        }
    };
    let values = |key: &str| -> Vec<Cow<'static, str>> {
        match key {
            "tm.event" => vec![Cow::Borrowed(kind)],
            _ => Vec::new(),
        }
    };
    query
        .matches(values)
        .then(|| json!({ "query": query.source(), "data": data, "events": { "tm.event": [kind] } }))
}

/// Whether `query` may match a consensus event (`Vote`, `NewRound`): only those receive
/// them.
fn wants_consensus(query: &EventQuery) -> bool {
    query.event_kinds().is_some_and(|k| k.iter().any(|k| matches!(*k, "Vote" | "NewRound")))
}

/// The `result`s a query yields for one committed block, in order: the block's events
/// (NewBlock, NewBlockHeader, NewBlockEvents), then one per matching tx.
pub fn notifications(query: &EventQuery, event: &BlockEvent) -> Vec<Value> {
    let kinds = query.event_kinds();
    let wants = |k: &str| kinds.as_ref().is_none_or(|ks| ks.contains(&k));
    let mut out = Vec::new();
    for kind in ["NewBlock", "NewBlockHeader", "NewBlockEvents"] {
        let source = Source::Block { kind, event };
        if wants(kind) && query.matches(|k| source.values(k)) {
            out.push(json!({ "query": query.source(), "data": source.data(), "events": source.events() }));
        }
    }
    if wants("Tx") {
        for index in 0..event.block.txs.len() {
            let source = Source::Tx { event, index };
            if query.matches(|k| source.values(k)) {
                out.push(json!({ "query": query.source(), "data": source.data(), "events": source.events() }));
            }
        }
    }
    out
}

/// A subscription inside the process: the events of `query`, as the JSON texts a
/// WebSocket client gets (responses to id 0), through a queue of `buffer` messages, with
/// the same bounds (a reader that falls behind is dropped). The queue closes when the
/// subscription ends.
pub fn subscribe_in_process(
    ctx: &Arc<RpcContext>,
    query: &str,
    buffer: usize,
) -> Result<(mpsc::Receiver<String>, Subscription), String> {
    let parsed = parse_for_subscription(query)?;
    let (out, rx) = mpsc::channel(buffer.max(1));
    Ok((rx, start(ctx.clone(), out, json!(0), parsed, None)))
}

/// One subscription of a connection.
pub struct Subscription {
    pub query: String,
    cancel: oneshot::Sender<()>,
}

impl Subscription {
    pub fn cancel(self) {
        let _ = self.cancel.send(());
    }

    /// Whether its task ended (it was dropped).
    pub fn is_finished(&self) -> bool {
        self.cancel.is_closed()
    }
}

/// The JSON text of a response to `id` with `result`.
pub fn response(id: &Value, result: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string()
}

/// The JSON text of an error response to `id`.
pub fn error_response(id: &Value, code: i32, message: &str, data: Option<String>) -> String {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = json!(data);
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string()
}

/// Starts forwarding the events of `query` to the connection's outgoing queue `out`, as
/// responses to `id`, until cancelled, the connection closes or the subscriber is dropped.
/// `answer`, the subscribe call's own answer, is queued first: the event receiver is taken
/// before it, so no block committed in between is lost, and no event overtakes it.
pub fn start(
    ctx: Arc<RpcContext>,
    out: mpsc::Sender<String>,
    id: Value,
    query: EventQuery,
    answer: Option<String>,
) -> Subscription {
    let rx = ctx.notify.subscribe_blocks();
    let consensus_rx = wants_consensus(&query).then(|| ctx.notify.subscribe_consensus());
    let (cancel, cancelled) = oneshot::channel();
    let source = query.source().to_string();
    ctx.subscriptions.open.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.subscriptions_opened.inc();
    tokio::spawn(async move {
        let answered = match answer {
            Some(a) => out.send(a).await.is_ok(),
            None => true,
        };
        let ended = if answered {
            pump(&ctx, &out, rx, consensus_rx, cancelled, &id, &query).await
        } else {
            Ended::Disconnected
        };
        ctx.subscriptions.open.fetch_sub(1, Ordering::Relaxed);
        if let Ended::Dropped { reason, detail } = ended {
            ctx.metrics.subscription_dropped(reason);
            tracing::info!(query = %query.source(), reason, %detail, "dropped a subscriber");
            let message = format!("subscription was cancelled ({reason})");
            let _ = out.try_send(error_response(&id, -32000, &message, Some(detail)));
        }
    });
    Subscription { query: source, cancel }
}

enum Ended {
    Cancelled,
    Disconnected,
    Dropped { reason: &'static str, detail: String },
}

async fn pump(
    ctx: &RpcContext,
    out: &mpsc::Sender<String>,
    mut rx: broadcast::Receiver<Arc<BlockEvent>>,
    mut consensus_rx: Option<broadcast::Receiver<Arc<ConsensusEvent>>>,
    mut cancelled: oneshot::Receiver<()>,
    id: &Value,
    query: &EventQuery,
) -> Ended {
    let send_timeout = Duration::from_millis(ctx.config.subscription_send_timeout_ms);
    loop {
        let consensus_event = async {
            match consensus_rx.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            _ = &mut cancelled => return Ended::Cancelled,
            _ = out.closed() => return Ended::Disconnected,
            event = rx.recv() => event,
            event = consensus_event => {
                let results = match event {
                    Ok(event) => consensus_notification(query, &event, ctx.chain.validators()),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        return Ended::Dropped {
                            reason: "lagged",
                            detail: format!("fell {missed} consensus events behind"),
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Ended::Dropped { reason: "shutdown", detail: "the node is stopping".into() }
                    }
                };
                if let Some(result) = results {
                    if let Err(ended) = forward(out, id, result, send_timeout).await {
                        return ended;
                    }
                }
                continue;
            }
        };
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                return Ended::Dropped {
                    reason: "lagged",
                    detail: format!(
                        "fell {missed} blocks behind (rpc.subscription_lag_blocks_max = {})",
                        ctx.config.subscription_lag_blocks_max
                    ),
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Ended::Dropped { reason: "shutdown", detail: "the node is stopping".into() }
            }
        };
        for result in notifications(query, &event) {
            if let Err(ended) = forward(out, id, result, send_timeout).await {
                return ended;
            }
        }
    }
}

/// Queues one event for the client, waiting at most `send_timeout` for room.
async fn forward(
    out: &mpsc::Sender<String>,
    id: &Value,
    result: Value,
    send_timeout: Duration,
) -> Result<(), Ended> {
    match out.send_timeout(response(id, result), send_timeout).await {
        Ok(()) => Ok(()),
        Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Ended::Disconnected),
        Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Ended::Dropped {
            reason: "slow_client",
            detail: format!(
                "the connection's buffer stayed full for {} ms",
                send_timeout.as_millis()
            ),
        }),
    }
}
