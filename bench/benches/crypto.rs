//! crypto benches.
//!
//! Expected: one ed25519 verification costs about 40-50 µs in a default build (two scalar
//! multiplications); a batch of n amortises to about half of that per signature (one
//! multiscalar multiplication of 2n+1 points), and rayon over two cores halves it again, so
//! `verify_many/sigs=1024` should approach 1024 / (2 cores x ~6k sigs/s/core x 2) ≈ 40-90 ms
//! → 100k-170k signatures/s on this machine class. blake3 of 144 bytes: well under 1 µs.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tally_bench::signed_messages;
use tally_crypto::{verify, ChainId, Domain, Hash, Keypair, SignedItem, Verifier, VerifierConfig};

fn bench_single(c: &mut Criterion) {
    let msgs = signed_messages(1, 1);
    let (key, message, sig) = &msgs[0];
    c.bench_function("crypto::verify_single", |b| {
        b.iter(|| verify(key, message, sig).expect("valid"))
    });
    let kp = Keypair::derive_insecure("bench/sign");
    let chain = ChainId::new("tally-bench").expect("valid chain id");
    c.bench_function("crypto::sign", |b| b.iter(|| kp.sign(Domain::Tx, &chain, b"payload")));
    let tx_sized = [7u8; 144];
    c.bench_function("crypto::blake3/bytes=144", |b| b.iter(|| Hash::digest(&tx_sized)));
}

fn bench_batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("crypto::verify_many");
    for n in [16usize, 64, 256, 1024] {
        let msgs = signed_messages(n, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("sigs", n), &msgs, |b, msgs| {
            b.iter(|| {
                // A fresh verifier each time: no verified-signature cache hits, only the
                // batch verification (keys are parsed once per verifier).
                let v = Verifier::new(VerifierConfig { batch_size: 256, ..Default::default() });
                let items: Vec<SignedItem<'_>> = msgs
                    .iter()
                    .map(|(k, m, s)| SignedItem { key: k, message: m, signature: s })
                    .collect();
                let verdicts = v.verify_many(&items);
                assert!(verdicts.iter().all(Result::is_ok));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_single, bench_batches);
criterion_main!(benches);
