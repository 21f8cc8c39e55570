//! Block and snapshot sync over request-response: our requests (bounded in flight, answered through a
//! oneshot) and peers' requests (handed to the node with a responder, answered busy when
//! the node's queue is full, trimmed to the response limit).

use super::{Reply, SwarmTask};
use crate::codec::fit_response;
use crate::error::RequestError;
use crate::events::{InboundSyncRequest, SyncResponder};
use crate::stats::NetworkStats;
use crate::wire::{SyncRequest, SyncResponse};
use futures::FutureExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::PeerId;
use tokio::sync::oneshot;

impl SwarmTask {
    pub(super) fn send_sync_request(&mut self, peer: PeerId, request: SyncRequest, reply: Reply) {
        let max = self.config.sync_requests_in_flight_max;
        if self.outbound.len() >= max {
            let _ = reply.send(Err(RequestError::TooManyInFlight { max }));
            return;
        }
        NetworkStats::inc(&self.stats.sync_requests_out);
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.outbound.insert(id, reply);
    }

    pub(super) fn on_sync_event(
        &mut self,
        event: request_response::Event<SyncRequest, SyncResponse>,
    ) {
        use request_response::{Event, Message};
        match event {
            Event::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                self.on_sync_request(peer, request, channel);
            }
            Event::Message { message: Message::Response { request_id, response }, .. } => {
                self.complete_request(request_id, Ok(response));
            }
            Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(%peer, error = %error, "sync request failed");
                let error = match error {
                    request_response::OutboundFailure::Timeout => RequestError::Timeout {
                        timeout_ms: u64::try_from(self.config.sync_request_timeout.as_millis())
                            .unwrap_or(u64::MAX),
                    },
                    other => RequestError::Failed { reason: other.to_string() },
                };
                self.complete_request(request_id, Err(error));
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, error = %error, "inbound sync request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    pub(super) fn complete_request(
        &mut self,
        id: OutboundRequestId,
        result: Result<SyncResponse, RequestError>,
    ) {
        if matches!(result, Err(_) | Ok(SyncResponse::Error(_))) {
            NetworkStats::inc(&self.stats.sync_requests_failed);
        }
        if let Some(reply) = self.outbound.remove(&id) {
            let _ = reply.send(result);
        }
    }

    pub(super) fn on_sync_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        NetworkStats::inc(&self.stats.sync_requests_in);
        if self.inbound.len() >= self.config.sync_inbound_pending_max {
            return self.answer_busy(channel);
        }
        let (tx, rx) = oneshot::channel();
        let event =
            InboundSyncRequest { peer, request, responder: SyncResponder { tx, _pending: None } };
        if self.channels.sync_requests.try_send(event).is_err() {
            return self.answer_busy(channel);
        }
        let timeout = self.config.sync_request_timeout;
        self.inbound.push(
            async move {
                let answer = tokio::time::timeout(timeout, rx).await.ok().and_then(Result::ok);
                (channel, answer)
            }
            .boxed(),
        );
    }

    pub(super) fn answer_busy(&mut self, channel: ResponseChannel<SyncResponse>) {
        NetworkStats::inc(&self.stats.sync_requests_busy);
        let busy = SyncResponse::Error("busy".to_string());
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, busy);
    }

    pub(super) fn answer_sync(
        &mut self,
        channel: ResponseChannel<SyncResponse>,
        answer: Option<SyncResponse>,
    ) {
        let response = match answer {
            Some(response) => fit_response(response, self.config.sync_response_bytes_max),
            None => SyncResponse::Error("not served".to_string()),
        };
        // Err means the requester is gone (timed out, disconnected): nothing to do.
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
    }
}
