//! crypto benches.
//!
//! Expected, on this project's machine class (2 cores with AVX-512 IFMA, the build of
//! `.cargo/config.toml`): one ed25519 verification about 40 µs (two scalar multiplications);
//! one batch of n on one thread amortises that to about 9 µs per signature at n = 1,024
//! (one multiscalar multiplication of 2n+1 points, Pippenger's method from n ≈ 190 on),
//! less well at small n, where each signature's fixed costs (decompressing R, SHA-512) weigh
//! more. `verify_many` splits its input evenly over rayon's two threads in batches of at
//! least 256 and at most 1,024, so n <= 256 runs as one batch on one thread (the one-thread
//! figure), n = 1,024 as two batches of 512 and n = 4,096 as four of 1,024: the latter
//! should approach twice the one-thread rate, about 200,000 signatures/s, the figure
//! ed25519-dalek's own `verify_batch` reaches on this machine. Keys are parsed before the
//! timing, as a node's key cache holds the keys of active accounts. Signing about 15 µs;
//! blake3 of a 144-byte tx well under 1 µs.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tally_bench::signed_messages;
use tally_crypto::{
    verify, verify_batch, ChainId, Domain, Hash, Keypair, ParsedKey, SignedItem, Verifier,
    VerifierConfig,
};

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
    let mut group = c.benchmark_group("crypto::batch");
    for n in [16usize, 64, 256, 1024] {
        let msgs = signed_messages(n, n);
        let keys: Vec<ParsedKey> =
            msgs.iter().map(|(k, _, _)| ParsedKey::parse(k).expect("valid key")).collect();
        let items: Vec<(&ParsedKey, &[u8], &tally_crypto::Signature)> =
            keys.iter().zip(&msgs).map(|(key, (_, m, s))| (key, m.as_slice(), s)).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("sigs", n), &items, |b, items| {
            b.iter(|| verify_batch(items).expect("valid"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("crypto::verify_many");
    for n in [16usize, 64, 256, 1024, 4096] {
        let msgs = signed_messages(n, n);
        let items: Vec<SignedItem<'_>> =
            msgs.iter().map(|(k, m, s)| SignedItem { key: k, message: m, signature: s }).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("sigs", n), &items, |b, items| {
            b.iter_batched(
                // A fresh verifier each time (no verified-signature cache hits) with every
                // key already in its key cache; only the verification is timed.
                || {
                    let v = Verifier::new(VerifierConfig::default());
                    for item in items {
                        v.key_cache().parse(item.key).expect("valid key");
                    }
                    v
                },
                |v| {
                    let verdicts = v.verify_many(items);
                    assert!(verdicts.iter().all(Result::is_ok));
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_single, bench_batches);
criterion_main!(benches);
