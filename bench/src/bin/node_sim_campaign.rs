//! node_sim_campaign: runs the whole-node simulator (`tally_node::sim`) over a range of
//! seeds and prints a summary: seeds, seeds/s, heights, acknowledged transfers, crashes,
//! forged blocks served by the lying peer, and every violation with the command that
//! replays its seed.
//!
//! `cargo run --release -p tally-bench --bin node_sim_campaign -- --from 0 --to 100000 --threads 2`
//! `--bug send-before-persist|ack-before-durable|skip-sync-certificate` plants a node bug.

use clap::Parser;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tally_node::sim::{run_seed, NodeBug};

#[derive(Parser, Debug)]
#[command(about = "Run the whole-node simulator over seeds FROM..TO")]
struct Args {
    /// First seed (inclusive).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Last seed (exclusive).
    #[arg(long, default_value_t = 1_000)]
    to: u64,
    /// Worker threads (each runs whole seeds; the summary does not depend on it).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Plant a node bug in every run.
    #[arg(long)]
    bug: Option<String>,
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    heights: u64,
    acked: u64,
    crashes: u64,
    forged: u64,
    byzantine_runs: u64,
    failures: Vec<String>,
}

fn main() {
    let args = Args::parse();
    let bug = match args.bug.as_deref() {
        None => None,
        Some("send-before-persist") => Some(NodeBug::SendBeforePersist),
        Some("ack-before-durable") => Some(NodeBug::AckBeforeDurable),
        Some("skip-sync-certificate") => Some(NodeBug::SkipSyncCertificate),
        Some(other) => {
            eprintln!("unknown bug {other:?}");
            std::process::exit(2);
        }
    };
    let next = AtomicU64::new(args.from);
    let totals = Mutex::new(Totals::default());
    let started = Instant::now();
    let total = args.to.saturating_sub(args.from);
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= args.to {
                    return;
                }
                let outcome = run_seed(seed, bug);
                let mut t = totals.lock().expect("totals");
                t.seeds += 1;
                match outcome {
                    Ok(r) => {
                        t.heights += r.height;
                        t.acked += r.acked as u64;
                        t.crashes += r.crashes as u64;
                        t.forged += r.forged_served;
                        t.byzantine_runs += u64::from(r.byzantine > 0);
                    }
                    Err(f) => {
                        eprintln!("\n{f}");
                        t.failures.push(format!("{}: {}", f.seed, f.violations[0]));
                    }
                }
                if t.seeds % 50 == 0 || t.seeds == total {
                    let rate = t.seeds as f64 / started.elapsed().as_secs_f64();
                    eprint!(
                        "\r{}/{} seeds, {:.1} seeds/s, {} failed",
                        t.seeds,
                        total,
                        rate,
                        t.failures.len()
                    );
                    let _ = std::io::stderr().flush();
                }
            });
        }
    });
    let t = totals.into_inner().expect("totals");
    let secs = started.elapsed().as_secs_f64();
    println!();
    println!(
        "seeds {}..{}: {} run in {:.0} s, {:.2} seeds/s",
        args.from,
        args.to,
        t.seeds,
        secs,
        t.seeds as f64 / secs
    );
    println!("heights (lowest honest tip, summed): {}", t.heights);
    println!("acknowledged transfers: {}", t.acked);
    println!("crashes: {}", t.crashes);
    println!("runs with Byzantine validators: {}", t.byzantine_runs);
    println!("forged blocks served by the lying peer: {}", t.forged);
    println!("violations: {}", t.failures.len());
    for f in &t.failures {
        println!("  seed {f}");
    }
    if !t.failures.is_empty() && bug.is_none() {
        std::process::exit(1);
    }
}
