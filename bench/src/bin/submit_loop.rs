//! `submit_loop`: a simple closed-loop submitter for a running testnet.
//!
//! Each of `--connections` threads owns a slice of the test accounts and one node; it signs
//! the next transfer of each of its accounts, submits them with one `broadcast_tx_batch`,
//! and repeats, for `--seconds`. Refused txs (mempool full) are retried with the same nonce.
//! At the end it reads the blocks committed during the run and prints the committed tx/s,
//! measured between the first and the last block of the window by their header times.
//!
//!     cargo run --release -p tally-bench --bin submit_loop -- --seconds 60

use base64::Engine as _;
use clap::Parser;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_crypto::{ChainId, Keypair};
use tally_ledger::{Transfer, Tx};

#[derive(Parser, Debug)]
struct Args {
    /// RPC addresses of the nodes to submit to.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:26657,http://127.0.0.1:26667,http://127.0.0.1:26677,http://127.0.0.1:26687"
    )]
    rpc: Vec<String>,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Test accounts that send (the testnet must fund at least this many + 1).
    #[arg(long, default_value_t = 1000)]
    accounts: u32,
    /// Threads, each with its own connection.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    #[arg(long, default_value = "tally-testnet")]
    account_seed: String,
}

fn call(agent: &ureq::Agent, url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let reply: Value = agent
        .post(url)
        .send_json(body)
        .map_err(|e| e.to_string())?
        .into_json()
        .map_err(|e| e.to_string())?;
    match reply.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(reply["error"].to_string()),
    }
}

fn height(agent: &ureq::Agent, url: &str) -> u64 {
    call(agent, url, "status", json!({}))
        .ok()
        .and_then(|s| s["sync_info"]["latest_block_height"].as_str()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let status = call(&agent, &args.rpc[0], "status", json!({}))?;
    let chain_id = ChainId::new(status["node_info"]["network"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let keys: Vec<Keypair> = (0..args.accounts)
        .map(|i| Keypair::derive_insecure(&format!("{}/account/{i}", args.account_seed)))
        .collect();
    let mut nonces = Vec::with_capacity(keys.len());
    for k in &keys {
        let a = call(&agent, &args.rpc[0], "account", json!({ "address": k.public().to_hex() }))?;
        nonces.push(a["next_nonce"].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0));
    }
    let recipient =
        Keypair::derive_insecure(&format!("{}/account/{}", args.account_seed, args.accounts))
            .public();
    let start_height = height(&agent, &args.rpc[0]);
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let keys = Arc::new(keys);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut threads = Vec::new();
    for t in 0..args.connections {
        let (keys, accepted, refused, stop) =
            (keys.clone(), accepted.clone(), refused.clone(), stop.clone());
        let url = args.rpc[t as usize % args.rpc.len()].clone();
        let chain_id = chain_id.clone();
        let mine: Vec<usize> =
            (0..keys.len()).filter(|i| *i as u32 % args.connections == t).collect();
        let mut my_nonces: Vec<u64> = mine.iter().map(|&i| nonces[i]).collect();
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let txs: Vec<String> = mine
                    .iter()
                    .zip(&my_nonces)
                    .map(|(&i, &nonce)| {
                        let k = &keys[i];
                        let transfer =
                            Transfer { from: k.public(), to: recipient, amount: 1, nonce };
                        base64::engine::general_purpose::STANDARD
                            .encode(Tx::sign(transfer, k, &chain_id).encode())
                    })
                    .collect();
                let Ok(reply) = call(&agent, &url, "broadcast_tx_batch", json!({ "txs": txs }))
                else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let results = reply["results"].as_array().cloned().unwrap_or_default();
                let mut any_refused = false;
                for (n, r) in my_nonces.iter_mut().zip(&results) {
                    if r["code"] == 0 || r["reason"] == "already_known" {
                        *n += 1;
                        accepted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        any_refused = true;
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if any_refused {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }));
    }
    let started = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(5));
        eprintln!(
            "{:>4}s  accepted {:>9}  refused {:>7}  height {}",
            started.elapsed().as_secs(),
            accepted.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            height(&agent, &args.rpc[0])
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let end_height = height(&agent, &args.rpc[0]);
    let mut txs = 0u64;
    let mut first_ms = None;
    let mut last_ms = 0u64;
    for h in (start_height + 1)..=end_height {
        let b = call(&agent, &args.rpc[0], "block", json!({ "height": h.to_string() }))?;
        let header = &b["block"]["header"];
        let t: u64 = header["time_ms"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        let n: u64 = header["num_txs"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        if first_ms.is_none() {
            first_ms = Some(t);
        } else {
            txs += n; // txs of blocks after the first, over the time since the first
        }
        last_ms = t;
    }
    let span_s = (last_ms.saturating_sub(first_ms.unwrap_or(last_ms))) as f64 / 1000.0;
    let blocks = end_height.saturating_sub(start_height);
    println!(
        "submitted for {}s: accepted {}, refused {}; blocks {}..={} ({} blocks, {:.2} blocks/s); committed {} txs in {:.1}s = {:.0} tx/s",
        args.seconds,
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        start_height + 1,
        end_height,
        blocks,
        if span_s > 0.0 { blocks.saturating_sub(1) as f64 / span_s } else { 0.0 },
        txs,
        span_s,
        if span_s > 0.0 { txs as f64 / span_s } else { 0.0 }
    );
    Ok(())
}
