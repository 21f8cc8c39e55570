//! A minimal blocking JSON-RPC client (one keep-alive connection per `Client`).
//!
//! The load generator shares the machine with the nodes it measures, so its own work counts:
//! requests are serialized from borrowed data, and replies are read whole and parsed from
//! the bytes (`serde_json::from_reader` reads byte by byte, and was most of the load
//! generator's CPU) into typed results where the caller has one.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Read as _;
use std::time::Duration;

pub struct Client {
    agent: ureq::Agent,
    pub url: String,
}

#[derive(Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: u32,
    method: &'a str,
    params: P,
}

#[derive(Deserialize)]
struct Reply<T> {
    result: Option<T>,
    error: Option<Value>,
}

impl Client {
    pub fn new(url: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .max_idle_connections_per_host(1)
            .build();
        Client { agent, url: url.to_string() }
    }

    /// The call's result as `T`, or its error as text (a transport failure included).
    pub fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        params: impl Serialize,
    ) -> Result<T, String> {
        let mut body = Vec::new();
        self.call_into(method, params, &mut body)?;
        self.result(method, &body)
    }

    /// Sends the call and reads its whole reply into `body` (cleared first), so that a
    /// caller can parse a result that borrows from it ([`Client::result`]).
    pub fn call_into(
        &self,
        method: &str,
        params: impl Serialize,
        body: &mut Vec<u8>,
    ) -> Result<(), String> {
        let request = serde_json::to_vec(&Request { jsonrpc: "2.0", id: 1, method, params })
            .map_err(|e| self.fail(method, &e))?;
        self.send(method, &request, body)
    }

    /// Sends `request`, a whole JSON-RPC request for `method` that the caller wrote, and
    /// reads its reply into `body` (cleared first).
    pub fn send(&self, method: &str, request: &[u8], body: &mut Vec<u8>) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| self.fail(method, e);
        let response = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .send_bytes(request)
            .map_err(|e| fail(&e))?;
        body.clear();
        response.into_reader().read_to_end(body).map_err(|e| fail(&e))?;
        Ok(())
    }

    /// The result in a reply `body` of `method`, or its error as text.
    pub fn result<'de, T: Deserialize<'de>>(
        &self,
        method: &str,
        body: &'de [u8],
    ) -> Result<T, String> {
        let fail = |e: &dyn std::fmt::Display| self.fail(method, e);
        let reply: Reply<T> = serde_json::from_slice(body).map_err(|e| fail(&e))?;
        match (reply.result, reply.error) {
            (_, Some(e)) => Err(fail(&e)),
            (Some(r), None) => Ok(r),
            (None, None) => Err(fail(&"malformed reply")),
        }
    }

    /// An error of a call, as text naming the method and the node.
    fn fail(&self, method: &str, e: &dyn std::fmt::Display) -> String {
        format!("{method} on {}: {e}", self.url)
    }

    /// The call's result as JSON.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.call_as(method, params)
    }

    pub fn height(&self) -> Result<u64, String> {
        let status = self.call("status", json!({}))?;
        status["sync_info"]["latest_block_height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| format!("status on {}: no latest_block_height", self.url))
    }
}
