//! WebSocket subscriptions: `subscribe {query}`, `unsubscribe {query}`, `unsubscribe_all`,
//! as in CometBFT (see `query.rs` for the queries and the notification shape).
//!
//! Notifications arrive as JSON-RPC notifications of method `event`, whose
//! `params.result` is CometBFT's `{query, data, events}`. jsonrpsee also registers
//! `unsubscribe_id` (by subscription id), which its clients call when a subscription
//! handle is dropped.
//!
//! Bounds, so that no client can hold memory or slow consensus:
//! - `rpc.subscriptions_per_connection_max` subscriptions per connection (jsonrpsee
//!   refuses one more with "Too many subscriptions on the connection");
//! - a subscriber may fall `rpc.subscription_lag_blocks_max` blocks behind the event
//!   channel; beyond that it is dropped with the reason `lagged`;
//! - a notification waits at most `rpc.subscription_send_timeout_ms` for room in the
//!   connection's buffer (`rpc.ws_message_buffer_max` messages); then the subscription is
//!   dropped with the reason `slow_client`.
//!
//! A dropped subscription ends with an error notification naming the reason, is logged and
//! counted in `tally_subscriptions_dropped_total{reason}`.

use super::query::EventQuery;
use super::{codes, err, invalid, parse, RpcContext, RpcResult};
use crate::notify::BlockEvent;
use jsonrpsee::core::server::{
    ConnectionId, Extensions, PendingSubscriptionSink, SendTimeoutError, SubscriptionMessage,
    SubscriptionSink,
};
use jsonrpsee::core::SubscriptionError;
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// The subscriptions of every open connection, so `unsubscribe {query}` can find them.
/// Entries are removed by the subscription's own task when it ends, whatever the cause.
#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    by_connection: Mutex<HashMap<usize, Vec<Entry>>>,
}

struct Entry {
    id: u64,
    query: String,
    cancel: oneshot::Sender<()>,
}

impl Registry {
    fn add(&self, conn: ConnectionId, query: String) -> (u64, oneshot::Receiver<()>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (cancel, cancelled) = oneshot::channel();
        self.by_connection.lock().entry(conn.0).or_default().push(Entry { id, query, cancel });
        (id, cancelled)
    }

    fn remove(&self, conn: ConnectionId, id: u64) {
        let mut map = self.by_connection.lock();
        if let Some(list) = map.get_mut(&conn.0) {
            list.retain(|e| e.id != id);
            if list.is_empty() {
                map.remove(&conn.0);
            }
        }
    }

    /// Cancels the connection's subscriptions with this query (all of them for `None`);
    /// returns how many.
    fn cancel(&self, conn: ConnectionId, query: Option<&str>) -> usize {
        let mut map = self.by_connection.lock();
        let Some(list) = map.get_mut(&conn.0) else { return 0 };
        let (gone, kept): (Vec<Entry>, Vec<Entry>) =
            list.drain(..).partition(|e| query.is_none_or(|q| e.query == q));
        *list = kept;
        if list.is_empty() {
            map.remove(&conn.0);
        }
        let n = gone.len();
        for e in gone {
            let _ = e.cancel.send(());
        }
        n
    }

    /// Open subscriptions on all connections.
    pub fn len(&self) -> usize {
        self.by_connection.lock().values().map(Vec::len).sum()
    }
}

#[derive(Deserialize, Default)]
struct QueryParams {
    query: Option<String>,
}

/// Removes the registry entry when the subscription task ends, however it ends.
struct EntryGuard<'a> {
    shared: &'a RpcContext,
    conn: ConnectionId,
    id: u64,
}

impl Drop for EntryGuard<'_> {
    fn drop(&mut self) {
        self.shared.subscriptions.remove(self.conn, self.id);
    }
}

/// The methods that only make sense on a WebSocket connection (not in the URI form).
pub const METHODS: [&str; 4] = ["subscribe", "unsubscribe_id", "unsubscribe", "unsubscribe_all"];

pub fn register(m: &mut RpcModule<RpcContext>) -> anyhow::Result<()> {
    m.register_subscription(
        "subscribe",
        "event",
        "unsubscribe_id",
        |p, pending, s, _| async move { subscribe(p, pending, s).await },
    )?;
    m.register_method("unsubscribe", |p, s, ext| {
        let conn = connection(ext)?;
        let q: QueryParams = parse(&p)?;
        let query = q.query.ok_or_else(|| invalid("missing parameter: query"))?;
        match s.subscriptions.cancel(conn, Some(query.trim())) {
            0 => Err(err(
                codes::NOT_FOUND,
                format!("no subscription to {query:?} on this connection"),
            )),
            _ => RpcResult::Ok(json!({})),
        }
    })?;
    m.register_method("unsubscribe_all", |_, s, ext| {
        let conn = connection(ext)?;
        match s.subscriptions.cancel(conn, None) {
            0 => Err(err(codes::NOT_FOUND, "no subscriptions on this connection")),
            _ => RpcResult::Ok(json!({})),
        }
    })?;
    Ok(())
}

fn connection(ext: &Extensions) -> RpcResult<ConnectionId> {
    ext.get::<ConnectionId>()
        .copied()
        .ok_or_else(|| err(codes::INTERNAL, "the server did not say which connection this is"))
}

async fn subscribe(
    p: Params<'static>,
    pending: PendingSubscriptionSink,
    shared: Arc<RpcContext>,
) -> Result<(), SubscriptionError> {
    let parsed = parse::<QueryParams>(&p).and_then(|q| {
        let query = q.query.ok_or_else(|| invalid("missing parameter: query"))?;
        let parsed = EventQuery::parse(&query).map_err(|e| invalid(format!("query: {e}")))?;
        Ok((query.trim().to_string(), parsed))
    });
    let (query, parsed) = match parsed {
        Ok(q) => q,
        Err(e) => {
            pending.reject(e).await;
            return Ok(());
        }
    };
    // Subscribe to the channel before answering, so no block committed in between is lost.
    let rx = shared.notify.subscribe_blocks();
    let conn = pending.connection_id();
    let Ok(sink) = pending.accept().await else { return Ok(()) };
    let (id, cancelled) = shared.subscriptions.add(conn, query.clone());
    let _guard = EntryGuard { shared: &shared, conn, id };
    shared.metrics.subscriptions_opened.inc();
    let outcome = pump(&shared, &sink, rx, cancelled, &query, &parsed).await;
    match outcome {
        Ended::Cancelled | Ended::Disconnected => Ok(()),
        Ended::Dropped { reason, detail } => {
            shared.metrics.subscription_dropped(reason);
            tracing::info!(connection = conn.0, %query, reason, %detail, "dropped a subscriber");
            Err(SubscriptionError::from(format!("subscription dropped ({reason}): {detail}")))
        }
    }
}

enum Ended {
    Cancelled,
    Disconnected,
    Dropped { reason: &'static str, detail: String },
}

/// Forwards events to one subscriber until it unsubscribes, disconnects or is dropped.
async fn pump(
    shared: &RpcContext,
    sink: &SubscriptionSink,
    mut rx: broadcast::Receiver<Arc<BlockEvent>>,
    mut cancelled: oneshot::Receiver<()>,
    query: &str,
    parsed: &EventQuery,
) -> Ended {
    let send_timeout = Duration::from_millis(shared.config.subscription_send_timeout_ms);
    loop {
        let event = tokio::select! {
            _ = &mut cancelled => return Ended::Cancelled,
            _ = sink.closed() => return Ended::Disconnected,
            event = rx.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                return Ended::Dropped {
                    reason: "lagged",
                    detail: format!(
                        "fell {missed} blocks behind (rpc.subscription_lag_blocks_max = {})",
                        shared.config.subscription_lag_blocks_max
                    ),
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Ended::Dropped { reason: "shutdown", detail: "the node is stopping".into() }
            }
        };
        for note in parsed.notifications(query, &event) {
            match send(sink, &note, send_timeout).await {
                Ok(()) => {}
                Err(SendTimeoutError::Closed(_)) => return Ended::Disconnected,
                Err(SendTimeoutError::Timeout(_)) => {
                    return Ended::Dropped {
                        reason: "slow_client",
                        detail: format!(
                            "the connection's buffer stayed full for {} ms",
                            send_timeout.as_millis()
                        ),
                    }
                }
            }
        }
    }
}

async fn send(
    sink: &SubscriptionSink,
    note: &Value,
    timeout: Duration,
) -> Result<(), SendTimeoutError> {
    let raw = serde_json::value::to_raw_value(note).unwrap_or_else(|_| {
        serde_json::value::to_raw_value(&Value::Null).expect("null serializes")
    });
    sink.send_timeout(SubscriptionMessage::from(raw), timeout).await
}
