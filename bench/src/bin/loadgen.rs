//! `loadgen`: the load generator for a running tally testnet (`testnet/bench.sh` starts a
//! fresh one, runs this for 60 s and stops it). See `tally_bench::load` for how it works.
//!
//!     cargo run --release -p tally-bench --bin loadgen -- --seconds 60            # open loop
//!     cargo run --release -p tally-bench --bin loadgen -- --seconds 60 --rate 10000
//!
//! It prints a progress bar while it runs and a summary at the end, and writes a JSON report
//! (`--report`) and an SVG chart of tx/s and latency over time (`--chart`).

use clap::Parser;
use serde_json::json;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_bench::load::follow::{Followed, Follower};
use tally_bench::load::report::{memory_json, rss_mib, series, Memory, Summary};
use tally_bench::load::rpc::Client;
use tally_bench::load::submit::Connection;
use tally_bench::load::{bound, chart, presign, Counters};
use tally_crypto::{ChainId, Keypair};

#[derive(Parser, Debug)]
#[command(about = "Submit pre-signed transfers to a tally testnet and measure what commits")]
struct Args {
    /// RPC addresses of the nodes to submit to (connections are spread over them).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:26657,http://127.0.0.1:26667,http://127.0.0.1:26677,http://127.0.0.1:26687"
    )]
    rpc: Vec<String>,
    /// Length of the load, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Target rate in tx/s over all connections; 0 runs open loop (as fast as accepted).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Pre-signed txs for an open-loop run, per second of it (a bound on what it can send).
    #[arg(long, default_value_t = 40_000)]
    open_loop_presign_rate: u64,
    /// Funded test accounts that send (the testnet must fund at least this many + 1).
    #[arg(long, default_value_t = 1000)]
    accounts: u32,
    /// The testnet's account key seed (`tally testnet --account-seed`).
    #[arg(long, default_value = "tally-testnet")]
    account_seed: String,
    /// Submitting connections, each a thread with its own HTTP connection.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Txs per `broadcast_tx_batch` call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// After the load, how long to wait for accepted txs to commit.
    #[arg(long, default_value_t = 15)]
    drain_seconds: u64,
    /// Files holding the pids of the nodes whose memory is sampled (e.g.
    /// testnet/data/node0.pid); repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pid_file: Vec<PathBuf>,
    /// How long to measure the batch-verification bound before the load (0: skip).
    #[arg(long, default_value_t = 3.0)]
    bound_seconds: f64,
    #[arg(long, default_value = "loadgen-report.json")]
    report: PathBuf,
    #[arg(long, default_value = "loadgen-chart.svg")]
    chart: PathBuf,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.rpc.is_empty() || args.connections == 0 || args.batch == 0 || args.accounts == 0 {
        return Err("--rpc, --connections, --batch and --accounts must not be empty or 0".into());
    }
    let nodes: Vec<Client> = args.rpc.iter().map(|u| Client::new(u)).collect();
    let status = nodes[0].call("status", json!({}))?;
    let chain_id = ChainId::new(status["node_info"]["network"].as_str().unwrap_or_default())
        .map_err(|e| format!("the node's chain id: {e}"))?;
    let key = |i: u32| Keypair::derive_insecure(&format!("{}/account/{i}", args.account_seed));
    let keys: Vec<Keypair> = (0..args.accounts).map(key).collect();
    let mut nonces = Vec::with_capacity(keys.len());
    for k in &keys {
        let a = nodes[0].call("account", json!({ "address": k.public().to_hex() }))?;
        nonces.push(a["next_nonce"].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0));
    }
    let per_second = if args.rate > 0 { args.rate } else { args.open_loop_presign_rate };
    let total = per_second * args.seconds;
    let per_account = total.div_ceil(u64::from(args.accounts)).max(1);
    let signing = Instant::now();
    let pre = presign::presign(
        &chain_id,
        &keys,
        &nonces,
        key(args.accounts).public(),
        per_account,
        args.connections,
    );
    eprintln!(
        "loadgen: signed {} transfers from {} accounts in {:.1} s ({}, {} connections over {} nodes)",
        pre.len(),
        args.accounts,
        signing.elapsed().as_secs_f64(),
        if args.rate > 0 { format!("target {} tx/s", args.rate) } else { "open loop".into() },
        args.connections,
        nodes.len()
    );
    let sigs_per_second = if args.bound_seconds > 0.0 {
        let sps = bound::signatures_per_second(&pre, &chain_id, args.bound_seconds);
        eprintln!(
            "loadgen: batch verification on this machine: {sps:.0} signatures/s on all cores \
             (batches of {}); bound for four validators verifying every tx once: {:.0} tx/s",
            bound::BATCH,
            sps / 4.0
        );
        Some(sps)
    } else {
        None
    };

    let memory: Vec<(String, u32)> = args
        .pid_file
        .iter()
        .filter_map(|p| {
            let pid = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
            let name = p.file_stem()?.to_string_lossy().trim_end_matches(".pid").to_string();
            Some((name, pid))
        })
        .collect();
    let mut memory: Vec<Memory> =
        memory.into_iter().map(|(name, pid)| Memory { name, pid, rss_mib: Vec::new() }).collect();

    let submitted_at: Vec<AtomicU64> = (0..pre.len()).map(|_| AtomicU64::new(0)).collect();
    let counters = Counters::default();
    let done = AtomicBool::new(false);
    let followed = Mutex::new(Followed::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let rate_per_connection = args.rate as f64 / args.connections as f64;
    let follow_result = std::thread::scope(|scope| {
        let follower = Follower {
            client: Client::new(&args.rpc[0]),
            pre: &pre,
            submitted_at: &submitted_at,
            start,
            done: &done,
            accepted: &counters.accepted,
            drain: Duration::from_secs(args.drain_seconds),
            out: &followed,
        };
        let following = scope.spawn(move || follower.run());
        let mut submitting = Vec::new();
        for (c, stream) in pre.streams.iter().enumerate() {
            let connection = Connection {
                client: Client::new(&args.rpc[c % args.rpc.len()]),
                stream,
                pre: &pre,
                batch: args.batch,
                rate: rate_per_connection,
                start,
                deadline,
                submitted_at: &submitted_at,
                counters: &counters,
            };
            submitting.push(scope.spawn(move || connection.run()));
        }
        let tty = std::io::stderr().is_terminal();
        let mut last_committed = 0u64;
        let mut tick = start;
        while !following.is_finished() {
            tick += Duration::from_secs(1);
            std::thread::sleep(tick.saturating_duration_since(Instant::now()));
            for m in &mut memory {
                m.rss_mib.push(rss_mib(m.pid).unwrap_or(0.0));
            }
            if submitting.iter().all(|t| t.is_finished()) {
                done.store(true, Ordering::Relaxed);
            }
            let committed = followed.lock().expect("lock").committed;
            let line = progress(
                start.elapsed().as_secs(),
                args.seconds,
                committed - last_committed,
                committed,
                &counters,
            );
            last_committed = committed;
            if tty {
                eprint!("\r{line}");
            } else if start.elapsed().as_secs().is_multiple_of(5) {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
        }
        if tty {
            eprintln!();
        }
        following.join().expect("the follower panicked")
    });
    follow_result?;

    let followed = followed.into_inner().expect("lock");
    let summary = Summary::new(&followed, args.seconds);
    let bound_tps = sigs_per_second.map(|s| s / 4.0);
    let fraction = bound_tps.map(|b| summary.sustained_tps / b);
    let report = json!({
        "config": {
            "nodes": args.rpc,
            "seconds": args.seconds,
            "target_rate": args.rate,
            "connections": args.connections,
            "batch": args.batch,
            "accounts": args.accounts,
            "presigned": pre.len(),
        },
        "summary": {
            "accepted": Counters::get(&counters.accepted),
            "refused_and_retried": Counters::get(&counters.refused),
            "rejected": Counters::get(&counters.rejected),
            "call_errors": Counters::get(&counters.errors),
            "committed": followed.committed,
            "committed_during_run": summary.committed_in_run,
            "committed_tx_per_second": summary.committed_tps,
            "sustained_tx_per_second": summary.sustained_tps,
            "warmup_seconds": summary.warmup,
            "latency_ms": { "p50": summary.p50, "p90": summary.p90, "p99": summary.p99, "max": summary.max },
            "blocks": summary.blocks,
            "heights": [followed.first_height, followed.last_height],
            "foreign_txs": followed.foreign,
        },
        "bound": {
            "signatures_per_second": sigs_per_second,
            "bound_tx_per_second": bound_tps,
            "fraction_of_bound": fraction,
        },
        "memory": memory_json(&memory),
        "series": series(&followed, &memory),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&args.report, text)
        .map_err(|e| format!("writing {}: {e}", args.report.display()))?;
    let title = format!(
        "tally: {:.0} tx/s sustained, latency p50 {} ms, p99 {} ms ({} s, {})",
        summary.sustained_tps,
        summary.p50,
        summary.p99,
        args.seconds,
        if args.rate > 0 { format!("target {} tx/s", args.rate) } else { "open loop".into() }
    );
    std::fs::write(&args.chart, chart::svg(&followed, args.seconds, args.rate as f64, &title))
        .map_err(|e| format!("writing {}: {e}", args.chart.display()))?;

    println!(
        "committed {} of {} accepted txs; during the {} s run {:.0} tx/s, sustained (after {} s) \
         {:.0} tx/s; latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms; {} blocks",
        followed.committed,
        Counters::get(&counters.accepted),
        args.seconds,
        summary.committed_tps,
        summary.warmup,
        summary.sustained_tps,
        summary.p50,
        summary.p90,
        summary.p99,
        summary.max,
        summary.blocks
    );
    if let (Some(sps), Some(b), Some(f)) = (sigs_per_second, bound_tps, fraction) {
        println!(
            "batch-verification bound: {sps:.0} signatures/s / 4 = {b:.0} tx/s; tally reached \
             {:.1}% of it",
            f * 100.0
        );
    }
    for m in &memory {
        println!(
            "memory {}: max {:.0} MiB; by third of the run at most {} MiB; growth {:+.1} MiB/min \
             (a fit from the first second, warm-up included)",
            m.name,
            m.max(),
            m.peaks(3).iter().map(|p| format!("{p:.0}")).collect::<Vec<_>>().join(" / "),
            m.slope_per_minute()
        );
    }
    println!("report: {}, chart: {}", args.report.display(), args.chart.display());
    let refused = Counters::get(&counters.rejected);
    if refused > 0 {
        println!("{refused} txs were refused for good (see the nodes' logs)");
    }
    if followed.committed == 0 {
        return Err("none of the submitted txs was committed".into());
    }
    Ok(())
}

fn progress(elapsed: u64, seconds: u64, last: u64, committed: u64, c: &Counters) -> String {
    const WIDTH: u64 = 30;
    let filled = (elapsed.min(seconds) * WIDTH / seconds.max(1)) as usize;
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH as usize - filled));
    let phase = if elapsed > seconds { "draining" } else { "load" };
    format!(
        "[{bar}] {phase} {elapsed:>3}/{seconds} s  {last:>6} tx/s  committed {committed:>9}  accepted {:>9}  retried {:>7}  ",
        Counters::get(&c.accepted),
        Counters::get(&c.refused)
    )
}
