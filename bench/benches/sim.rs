//! sim benches: how fast the deterministic cluster simulator runs consensus.
//!
//! Expected: a fault-free height of n validators delivers about n * (n - 1) * 2 votes plus
//! n - 1 proposals, and processes about as many timer and application events, so n = 4 is
//! ~60 events and n = 10 ~300. Each event is a core step (a few BTreeMap operations and
//! clones, ~1 µs) plus a blake3 MAC check of the fast stand-in signer (~0.3 µs for ~150
//! bytes): ~60-100 µs per height for n = 4, i.e. >= 10,000 simulated heights/s on one core
//! (the target), and ~5x slower for n = 10 (votes grow as n^2): ~2,000 heights/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tally_consensus::sim::{Scheme, SimParams, Simulation};

/// Heights per simulated run: long enough that start-up is noise.
const HEIGHTS: u64 = 50;

fn bench_heights(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim::heights");
    group.sample_size(20);
    for n in [4usize, 10] {
        group.throughput(Throughput::Elements(HEIGHTS));
        group.bench_with_input(BenchmarkId::from_parameter(format!("n={n}")), &n, |b, n| {
            b.iter(|| {
                let params = SimParams::quiet(7, *n, HEIGHTS, Scheme::Fast);
                let report = Simulation::new(params).run();
                assert!(report.violation.is_none(), "{:?}", report.violation);
                assert!(report.heights_decided >= HEIGHTS);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_heights);
criterion_main!(benches);
