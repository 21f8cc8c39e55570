//! Follows the chain on one node: every new block is fetched and its txs matched against the
//! run's; each of ours gets its submit-to-commit latency, filed under the second
//! of the run in which its block was seen committed.
//!
//! A block of 15,000 txs is a 3 MB reply, parsed on the cores the nodes use: its txs are read
//! as text borrowed from the reply and found in the run by sender and nonce
//! ([`Presigned::find`]).

use super::micros_since;
use super::presign::Presigned;
use super::rpc::Client;
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What was committed in one second of the run.
#[derive(Clone, Debug, Default)]
pub struct Second {
    pub committed: u64,
    /// Latencies of our txs committed in this second, milliseconds.
    pub latencies_ms: Vec<u32>,
    pub blocks: u64,
}

#[derive(Default)]
pub struct Followed {
    pub seconds: Vec<Second>,
    /// Our txs seen committed, in all.
    pub committed: u64,
    /// Other txs in the blocks (not submitted by this run).
    pub foreign: u64,
    pub first_height: u64,
    pub last_height: u64,
}

/// Of a `block` reply, only its txs are read.
#[derive(Deserialize)]
struct BlockReply<'a> {
    #[serde(borrow)]
    block: BlockTxs<'a>,
}

#[derive(Deserialize)]
struct BlockTxs<'a> {
    #[serde(borrow)]
    data: BlockData<'a>,
}

#[derive(Deserialize)]
struct BlockData<'a> {
    /// Borrowed from the reply unless the text has escapes (base64 never does).
    #[serde(borrow)]
    txs: Vec<Cow<'a, str>>,
}

pub struct Follower<'a> {
    pub client: Client,
    pub pre: &'a Presigned,
    pub submitted_at: &'a [AtomicU64],
    pub start: Instant,
    /// Set when submission ended; the follower then drains until every accepted tx is seen
    /// or `drain` has passed.
    pub done: &'a AtomicBool,
    pub accepted: &'a AtomicU64,
    pub drain: Duration,
    pub out: &'a Mutex<Followed>,
}

impl Follower<'_> {
    pub fn run(&self) -> Result<(), String> {
        let mut body = Vec::new();
        let mut next = self.client.height()? + 1;
        self.out.lock().expect("lock").first_height = next;
        let mut seen_done: Option<Instant> = None;
        loop {
            let tip = match self.client.height() {
                Ok(tip) => tip,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            while next <= tip {
                self.client.call_into("block", json!({ "height": next.to_string() }), &mut body)?;
                let block: BlockReply<'_> = self.client.result("block", &body)?;
                let at = micros_since(self.start);
                let second = (at / 1_000_000) as usize;
                let txs = block.block.data.txs;
                let mut out = self.out.lock().expect("lock");
                if out.seconds.len() <= second {
                    out.seconds.resize(second + 1, Second::default());
                }
                out.seconds[second].blocks += 1;
                for tx in &txs {
                    let Some(i) = self.pre.find(tx) else {
                        out.foreign += 1;
                        continue;
                    };
                    let sent = self.submitted_at[i as usize].load(Ordering::Relaxed);
                    // A tx committed before its batch's answer came back has no time yet:
                    // then the commit was seen no later than now, counted as 0 ms.
                    let latency_ms = (at.saturating_sub(sent) / 1000) as u32;
                    out.committed += 1;
                    out.seconds[second].committed += 1;
                    out.seconds[second].latencies_ms.push(if sent == 0 { 0 } else { latency_ms });
                }
                out.last_height = next;
                next += 1;
            }
            if self.done.load(Ordering::Relaxed) {
                let since = *seen_done.get_or_insert_with(Instant::now);
                let committed = self.out.lock().expect("lock").committed;
                if committed >= self.accepted.load(Ordering::Relaxed)
                    || since.elapsed() > self.drain
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}
