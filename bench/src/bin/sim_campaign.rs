//! sim_campaign: runs the deterministic cluster simulation over a range of seeds and prints
//! a summary (seeds, heights decided, rounds per height p50/p99, messages, violations,
//! seeds/s). Each violation prints the command that replays its seed.
//!
//! `cargo run --release -p tally-bench --bin sim_campaign -- --from 0 --to 1000000`

use clap::Parser;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_consensus::sim::{run_seed, Scheme, SimReport};

#[derive(Parser, Debug)]
#[command(about = "Run the consensus simulator over seeds FROM..TO")]
struct Args {
    /// First seed (inclusive).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Last seed (exclusive).
    #[arg(long, default_value_t = 10_000)]
    to: u64,
    /// Sign with real ed25519 keys instead of the fast stand-in.
    #[arg(long)]
    ed25519: bool,
    /// Worker threads (each runs whole seeds; the summary does not depend on it).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Rounds per height are counted up to this; more go in the last bucket.
const ROUNDS_BUCKETS: usize = 1024;

/// Totals over all seeds run so far.
struct Summary {
    seeds: u64,
    heights: u64,
    messages: u64,
    events: u64,
    rejected: u64,
    evidence: u64,
    crashes: u64,
    crashes_after_persist: u64,
    /// rounds_histogram[k]: heights decided after k + 1 rounds.
    rounds_histogram: Vec<u64>,
    violations: Vec<(u64, String)>,
}

impl Summary {
    fn new() -> Summary {
        Summary {
            seeds: 0,
            heights: 0,
            messages: 0,
            events: 0,
            rejected: 0,
            evidence: 0,
            crashes: 0,
            crashes_after_persist: 0,
            rounds_histogram: vec![0; ROUNDS_BUCKETS],
            violations: Vec::new(),
        }
    }

    fn add(&mut self, report: &SimReport) {
        self.seeds += 1;
        self.heights += report.heights_decided;
        self.messages += report.messages;
        self.events += report.events;
        self.rejected += report.rejected;
        self.evidence += report.evidence;
        self.crashes += report.crashes;
        self.crashes_after_persist += report.crashes_after_persist;
        for round in &report.rounds {
            let bucket = (*round as usize).min(ROUNDS_BUCKETS - 1);
            self.rounds_histogram[bucket] += 1;
        }
        if let Some(v) = &report.violation {
            self.violations.push((report.seed, v.to_string()));
        }
    }

    /// Rounds per height at quantile `q` (0..=1).
    fn rounds_quantile(&self, q: f64) -> usize {
        let total: u64 = self.rounds_histogram.iter().sum();
        let wanted = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, count) in self.rounds_histogram.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return k + 1;
            }
        }
        0
    }
}

fn main() {
    let args = Args::parse();
    let scheme = if args.ed25519 { Scheme::Ed25519 } else { Scheme::Fast };
    let test = if args.ed25519 { "sim_seeds_ed25519" } else { "sim_seeds" };
    let total = args.to.saturating_sub(args.from);
    let next = AtomicU64::new(args.from);
    let summary = Mutex::new(Summary::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= args.to {
                    break;
                }
                let report = run_seed(seed, scheme);
                if let Some(v) = &report.violation {
                    eprintln!(
                        "\nseed {seed}: {v}\nreproduce: SIM_SEED={seed} cargo test -p \
                         tally-consensus --test sim {test} -- --exact"
                    );
                }
                summary.lock().expect("no worker panics holding the lock").add(&report);
            });
        }
        s.spawn(|| progress(&summary, total, started));
    });
    let summary = summary.into_inner().expect("no worker panicked");
    print_summary(&summary, started.elapsed(), &args, test);
    if !summary.violations.is_empty() {
        std::process::exit(1);
    }
}

/// A progress bar on stderr, redrawn twice a second until every seed has run.
fn progress(summary: &Mutex<Summary>, total: u64, started: Instant) {
    const WIDTH: u64 = 40;
    loop {
        let (done, violations) = {
            let s = summary.lock().expect("no worker panics holding the lock");
            (s.seeds, s.violations.len())
        };
        let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH).min(WIDTH);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let eta = if rate > 0.0 { (total - done) as f64 / rate } else { 0.0 };
        eprint!(
            "\r[{}{}] {done}/{total} seeds, {rate:.0} seeds/s, {violations} violations, eta {eta:.0}s ",
            "#".repeat(filled as usize),
            "-".repeat((WIDTH - filled) as usize),
        );
        let _ = std::io::stderr().flush();
        if done >= total {
            eprintln!();
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_summary(s: &Summary, elapsed: Duration, args: &Args, test: &str) {
    let secs = elapsed.as_secs_f64();
    println!("seeds:              {} ({}..{})", s.seeds, args.from, args.to);
    println!("signatures:         {}", if args.ed25519 { "ed25519" } else { "fast stand-in" });
    println!("heights decided:    {}", s.heights);
    println!(
        "rounds per height:  p50 {} p99 {} max {}",
        s.rounds_quantile(0.50),
        s.rounds_quantile(0.99),
        s.rounds_quantile(1.0)
    );
    println!("messages delivered: {} ({} rejected as garbage)", s.messages, s.rejected);
    println!("events:             {}", s.events);
    println!("evidence reported:  {}", s.evidence);
    println!(
        "crashes:            {} ({} between a persist and its broadcast)",
        s.crashes, s.crashes_after_persist
    );
    println!("violations:         {}", s.violations.len());
    println!("elapsed:            {secs:.1} s, {:.0} seeds/s", s.seeds as f64 / secs.max(1e-9));
    for (seed, v) in s.violations.iter().take(20) {
        println!("  seed {seed}: {v}");
        println!("  reproduce: SIM_SEED={seed} cargo test -p tally-consensus --test sim {test} -- --exact");
    }
}
