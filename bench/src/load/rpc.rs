//! A minimal blocking JSON-RPC client (one keep-alive connection per `Client`).

use serde_json::{json, Value};
use std::time::Duration;

pub struct Client {
    agent: ureq::Agent,
    pub url: String,
}

impl Client {
    pub fn new(url: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .max_idle_connections_per_host(1)
            .build();
        Client { agent, url: url.to_string() }
    }

    /// The call's result, or its error as text (a transport failure included).
    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let reply: Value = self
            .agent
            .post(&self.url)
            .send_json(body)
            .map_err(|e| format!("{method} on {}: {e}", self.url))?
            .into_json()
            .map_err(|e| format!("{method} on {}: {e}", self.url))?;
        match (reply.get("result"), reply.get("error")) {
            (Some(r), None) => Ok(r.clone()),
            (_, Some(e)) => Err(format!("{method} on {}: {e}", self.url)),
            _ => Err(format!("{method} on {}: malformed reply", self.url)),
        }
    }

    pub fn height(&self) -> Result<u64, String> {
        let status = self.call("status", json!({}))?;
        status["sync_info"]["latest_block_height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| format!("status on {}: no latest_block_height", self.url))
    }
}
