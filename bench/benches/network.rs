//! network benches: the wire format, encoding and decoding the messages of the hot path.
//!
//! Expected: the wire format is borsh (fields copied in order, lengths as u32), so encoding
//! is a memory copy and decoding a copy plus the count checks of `wire::decode`: a vote
//! (~130 bytes) well under 1 µs each way; a gossip batch of 2,000 txs (~290 KB) and a
//! proposal carrying a 10,000-tx block (~1.4 MB) at memory-copy speed with a per-tx cost
//! of a few tens of ns, so about 0.1 ms and 0.5-1 ms. Against the ~20 µs of verifying one
//! signature, the wire costs well under 1% of a tx's path. A compact proposal of the same
//! block (header and 10,000 tx hashes, ~320 KB) about a quarter of the whole proposal; its
//! receiver also checks the hashes against the header's Merkle root, 2n blake3
//! compressions of 64 bytes or so: about 1-2 ms, the price of not receiving the txs.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_consensus::{
    BlockHash, Height, Proposal, Round, SignedProposal, SignedVote, ValidatorIndex, Vote, VoteType,
};
use tally_crypto::{ChainId, Keypair, Verifier, VerifierConfig};
use tally_ledger::{Genesis, GenesisAccount, GenesisValidator, Ledger, Transfer, Tx};
use tally_network::wire::{self, Message};
use tally_network::{CompactBlock, ConsensusMsg, TxBatch};

/// A decode limit large enough for every message here.
const BYTES_MAX: usize = 4 << 20;

fn chain() -> ChainId {
    ChainId::new("tally-bench").expect("valid chain id")
}

fn transfers(keys: &[Keypair]) -> Vec<Tx> {
    keys.iter()
        .enumerate()
        .map(|(i, from)| {
            let to = keys[(i + 1) % keys.len()].public();
            Tx::sign(Transfer { from: from.public(), to, amount: 1, nonce: 0 }, from, &chain())
        })
        .collect()
}

fn bench_message(c: &mut Criterion, name: &str, msg: &Message) {
    let bytes = wire::encode(msg, BYTES_MAX).expect("encodes");
    let mut group = c.benchmark_group(format!("network::{name}"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| wire::encode(msg, BYTES_MAX).expect("encodes")));
    group
        .bench_function("decode", |b| b.iter(|| wire::decode(&bytes, BYTES_MAX).expect("decodes")));
    group.finish();
}

fn bench_wire(c: &mut Criterion) {
    let validator = Keypair::derive_insecure("bench/validator");
    let vote = Vote {
        height: Height(7),
        round: Round(0),
        vote_type: VoteType::Prevote,
        block_hash: Some(BlockHash(tally_crypto::Hash::digest(b"block"))),
        validator: ValidatorIndex(0),
    };
    let signature = validator.sign_raw(&vote.signing_bytes(&chain()));
    let vote = Message::Consensus(ConsensusMsg::Vote(SignedVote { vote, signature }));
    bench_message(c, "vote", &vote);

    let keys: Vec<Keypair> =
        (0..10_000).map(|i| Keypair::derive_insecure(&format!("bench/net/{i}"))).collect();
    let txs = transfers(&keys);
    let batch = Message::TxBatch(TxBatch(txs[..2_000].to_vec()));
    bench_message(c, "tx_batch/txs=2000", &batch);

    let genesis = Genesis::new(
        chain(),
        1_700_000_000_000,
        vec![GenesisValidator { name: "v".into(), public_key: validator.public(), power: 1 }],
        keys.iter()
            .map(|k| GenesisAccount { public_key: k.public(), balance: 1_000_000 })
            .collect(),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(&dir.path().join("l.redb"), genesis).expect("open");
    let verifier = Verifier::new(VerifierConfig::default());
    let built = ledger.build_block(&txs, 1_700_000_001_000, validator.public(), &verifier);
    assert_eq!(built.block.txs.len(), 10_000);
    let proposal = Proposal {
        height: built.block.height(),
        round: Round(0),
        block_hash: built.block.hash(),
        pol_round: None,
        proposer: ValidatorIndex(0),
    };
    let signature = validator.sign_raw(&proposal.signing_bytes(&chain()));
    let signed = SignedProposal { proposal, signature };
    let compact = CompactBlock::of(&built.block);
    let whole = ConsensusMsg::Proposal { proposal: signed.clone(), block: built.block };
    bench_message(c, "proposal/txs=10000", &Message::Consensus(whole));
    let compact = ConsensusMsg::CompactProposal { proposal: signed, block: compact };
    bench_message(c, "compact_proposal/txs=10000", &Message::Consensus(compact.clone()));
    let ConsensusMsg::CompactProposal { block, .. } = compact else { unreachable!() };
    c.bench_function("network::compact_proposal/txs=10000/check_hashes", |b| {
        b.iter(|| assert!(block.hashes_match_header()))
    });
}

criterion_group!(benches, bench_wire);
criterion_main!(benches);
