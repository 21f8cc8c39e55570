//! A jsonrpsee RPC middleware that counts calls, errors and call time by method
//! (`tally_rpc_requests_total`, `tally_rpc_errors_total`, `tally_rpc_seconds`).
//!
//! The `method` label takes only the names the module registers; anything else is
//! `unknown`, so a client sending random method names cannot grow the metric set.
//! Calls inside a JSON-RPC batch are counted as requests (the batch itself does not pass
//! through `call`), without timing.

use crate::metrics::{Labels, Metrics};
use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, Request, RpcServiceT};
use jsonrpsee::MethodResponse;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct RpcMetrics<S> {
    service: S,
    metrics: Arc<Metrics>,
    known: Arc<BTreeSet<String>>,
}

impl<S> RpcMetrics<S> {
    pub fn new(service: S, metrics: Arc<Metrics>, known: Arc<BTreeSet<String>>) -> RpcMetrics<S> {
        RpcMetrics { service, metrics, known }
    }
}

pub(super) fn labels(known: &BTreeSet<String>, method: &str) -> Labels {
    let name = if known.contains(method) { method } else { "unknown" };
    vec![("method", name.to_string())]
}

impl<S> RpcServiceT for RpcMetrics<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let labels = labels(&self.known, &req.method);
        let service = self.service.clone();
        let metrics = self.metrics.clone();
        async move {
            let started = Instant::now();
            let response = service.call(req).await;
            let m = &metrics;
            m.rpc_requests.get_or_create(&labels).inc();
            m.rpc_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            if response.is_error() {
                m.rpc_errors.get_or_create(&labels).inc();
            }
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        for entry in batch.iter() {
            let name = match entry {
                Ok(BatchEntry::Call(req)) => req.method.as_ref(),
                Ok(BatchEntry::Notification(n)) => n.method.as_ref(),
                Err(_) => "unknown",
            };
            self.metrics.rpc_requests.get_or_create(&labels(&self.known, name)).inc();
        }
        self.service.batch(batch)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.service.notification(n)
    }
}
