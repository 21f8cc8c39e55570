//! One submitting connection: its stream of txs, in order, in `broadcast_tx_batch` calls to
//! one node, paced to a rate or open loop, until the stream ends or the deadline.

use super::presign::Presigned;
use super::rpc::Client;
use super::{micros_since, Counters};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Connection<'a> {
    pub client: Client,
    pub stream: &'a [u32],
    pub pre: &'a Presigned,
    pub batch: usize,
    /// Txs per second for this connection; 0: open loop.
    pub rate: f64,
    pub start: Instant,
    pub deadline: Instant,
    /// Per tx, when the batch that a node accepted it in was sent (µs since `start`).
    pub submitted_at: &'a [AtomicU64],
    pub counters: &'a Counters,
}

const METHOD: &str = "broadcast_tx_batch";

/// Writes the `broadcast_tx_batch` request for `txs` (base64, which JSON strings hold
/// without escapes) into `out`: a copy of each tx's text, where serde_json checked every
/// character for escaping (2.6% of the profile of node 0 and the load generator together).
fn batch_request<'a>(txs: impl Iterator<Item = &'a str>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"method":""#);
    out.extend_from_slice(METHOD.as_bytes());
    out.extend_from_slice(br#"","params":{"txs":["#);
    for (k, tx) in txs.enumerate() {
        debug_assert!(!tx.contains(['"', '\\']), "base64 needs no escapes");
        if k > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(tx.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"]}}");
}

#[derive(Deserialize)]
struct BatchReply {
    results: Vec<TxResult>,
}

/// One tx's answer in a `broadcast_tx_batch` reply (its `hash` is not needed).
#[derive(Deserialize)]
struct TxResult {
    code: u32,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    log: String,
}

/// How the node answered for one tx.
enum Verdict {
    Accepted,
    /// Try the same tx again after a pause (mempool full, busy, syncing, a nonce ahead of
    /// what the node has: an earlier tx of the account is still on its way).
    Retry,
    /// Give up on this tx.
    Reject,
}

fn verdict(result: &TxResult) -> Verdict {
    if result.code == 0 {
        return Verdict::Accepted;
    }
    match result.reason.as_str() {
        "already_known" => Verdict::Accepted,
        "mempool_full" | "busy" | "syncing" => Verdict::Retry,
        "bad_nonce" => {
            // "wrong nonce: expected E, got G": G below E means it is already in.
            let log = result.log.as_str();
            let number = |key: &str| -> Option<u64> {
                log.split(key).nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
            };
            match (number("expected "), number("got ")) {
                (Some(expected), Some(got)) if got < expected => Verdict::Accepted,
                _ => Verdict::Retry,
            }
        }
        _ => Verdict::Reject,
    }
}

/// Retries of one tx before it is given up on.
const RETRIES_MAX: u32 = 200;

/// The pause before a refused tx is sent again: 20 ms, doubling with each refusal in a row
/// up to 160 ms, as a well-behaved client backs off a full node (the node still parses
/// every call it refuses, on the same cores as the nodes being measured).
fn backoff(retries: u32) -> Duration {
    Duration::from_millis(20 << retries.saturating_sub(1).min(3))
}

impl Connection<'_> {
    pub fn run(&self) {
        // Paced: at most a tenth of a second's worth of txs per call, so the rate holds
        // within the second, not only on average.
        let batch_len = if self.rate > 0.0 {
            self.batch.min(((self.rate / 10.0) as usize).max(1))
        } else {
            self.batch
        };
        let (mut request, mut body) = (Vec::new(), Vec::new());
        let mut pos = 0usize;
        let mut retries = 0u32;
        while pos < self.stream.len() && Instant::now() < self.deadline {
            if self.rate > 0.0 {
                let due = self.start + Duration::from_secs_f64(pos as f64 / self.rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep((due - now).min(self.deadline - now));
                    continue;
                }
            }
            let end = (pos + batch_len).min(self.stream.len());
            let batch = &self.stream[pos..end];
            batch_request(batch.iter().map(|&i| self.pre.tx_base64(i)), &mut request);
            let sent = micros_since(self.start);
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            let reply = match self
                .client
                .send(METHOD, &request, &mut body)
                .and_then(|()| self.client.result::<BatchReply>(METHOD, &body))
            {
                Ok(reply) => reply,
                Err(_) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let results = reply.results;
            let mut stalled = false;
            for (&i, result) in batch.iter().zip(&results) {
                match verdict(result) {
                    Verdict::Accepted => {
                        let at = &self.submitted_at[i as usize];
                        if at
                            .compare_exchange(0, sent, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                        {
                            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        pos += 1;
                        retries = 0;
                    }
                    Verdict::Reject => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        pos += 1;
                    }
                    Verdict::Retry => {
                        // The rest of the batch follows this tx in nonce order for some
                        // account: send them again after a pause, from here.
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        retries += 1;
                        if retries > RETRIES_MAX {
                            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                            pos += 1;
                            retries = 0;
                        }
                        stalled = true;
                        break;
                    }
                }
            }
            if results.len() < batch.len() && !stalled {
                // A malformed reply: try the rest again.
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                stalled = true;
            }
            if stalled {
                std::thread::sleep(backoff(retries));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_in_a_row_back_off_to_160_ms() {
        let ms: Vec<u128> = (0..7).map(|r| backoff(r).as_millis()).collect();
        assert_eq!(ms, [20, 20, 40, 80, 160, 160, 160]);
    }

    #[test]
    fn a_batch_request_is_the_json_rpc_call_serde_would_write() {
        let mut out = Vec::new();
        batch_request(["AAAA", "b+/="].into_iter(), &mut out);
        let written: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        let expected = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_batch",
            "params": { "txs": ["AAAA", "b+/="] },
        });
        assert_eq!(written, expected);
        batch_request(std::iter::empty(), &mut out);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).expect("JSON")["params"]["txs"],
            serde_json::json!([])
        );
    }

    #[test]
    fn verdicts_follow_the_refusal_reason() {
        use serde_json::json;
        let v = |r: serde_json::Value| match verdict(&serde_json::from_value(r).unwrap()) {
            Verdict::Accepted => "accepted",
            Verdict::Retry => "retry",
            Verdict::Reject => "reject",
        };
        assert_eq!(v(json!({ "code": 0, "hash": "00" })), "accepted");
        assert_eq!(v(json!({ "code": 1, "reason": "already_known" })), "accepted");
        assert_eq!(v(json!({ "code": 1, "reason": "mempool_full" })), "retry");
        let nonce = |log: &str| json!({ "code": 1, "reason": "bad_nonce", "log": log });
        assert_eq!(v(nonce("wrong nonce: expected 5, got 3")), "accepted");
        assert_eq!(v(nonce("wrong nonce: expected 5, got 9")), "retry");
        assert_eq!(v(json!({ "code": 1, "reason": "bad_signature" })), "reject");
    }
}
