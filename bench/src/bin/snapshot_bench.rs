//! Snapshot and proof figures at scale (issue "A verifiable ledger"): for a state of N
//! accounts (default 1,000,000), the time and size of writing a snapshot, exporting it to one
//! file, and importing it (read, check every chunk, rebuild the state tree, check the
//! certified root, install into a fresh redb store); and the sizes of account and tx proofs.
//!
//! `cargo run --release -p tally-bench --bin snapshot_bench -- --accounts 1000000`
//!
//! Expected: chunking is a walk of the tree (fast); writing and exporting move 48 bytes an
//! account (48 MB for a million) through the page cache with one fsync a file; importing is
//! dominated by rebuilding the tree (~2n blake3, parallel on rayon) and by redb inserting n
//! rows in one transaction.

use clap::Parser;
use std::time::Instant;
use tally_consensus::{
    BlockHash, CommitCertificate, Height, Round, SignedVote, ValidatorIndex, Vote, VoteType,
};
use tally_crypto::{ChainId, Hash, Keypair, Verifier, VerifierConfig};
use tally_ledger::snapshot::files::{read_export, write_export};
use tally_ledger::snapshot::make_snapshot;
use tally_ledger::{
    tx_proof, verify_offer, Account, Genesis, GenesisAccount, GenesisValidator, Header, Ledger,
    Restore, SnapshotDir, StateTree, TxHash,
};

#[derive(Parser, Debug)]
struct Args {
    /// Accounts in the state.
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let chain = ChainId::new("tally-bench")?;
    let validators: Vec<Keypair> =
        (0..4).map(|i| Keypair::derive_insecure(&format!("bench/validator/{i}"))).collect();
    let genesis = Genesis::new(
        chain.clone(),
        1_700_000_000_000,
        validators
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                public_key: k.public(),
                power: 10,
            })
            .collect(),
        vec![GenesisAccount { public_key: validators[0].public(), balance: 1 }],
    );
    let set = genesis.validator_set()?;

    // Account keys need not be real ed25519 keys for the state: any 32 bytes are a key.
    let t = Instant::now();
    let state = StateTree::from_accounts((0..args.accounts).map(|i| {
        let key = tally_crypto::PublicKey(*Hash::digest(&i.to_le_bytes()).as_bytes());
        (key, Account { balance: 1_000 + i, nonce: i % 7 })
    }));
    println!("state tree of {} accounts built in {:.2} s", state.len(), t.elapsed().as_secs_f64());

    let header = Header {
        chain_id: chain.clone(),
        height: Height(1000),
        time_ms: 1_700_000_100_000,
        prev_block_hash: BlockHash(Hash::digest(b"parent")),
        tx_root: Hash::ZERO,
        tx_count: 0,
        state_root: state.root(),
        proposer: validators[0].public(),
        validators_hash: set.hash(),
    };
    let votes: Vec<SignedVote> = (0..3)
        .map(|i| {
            Vote {
                height: header.height,
                round: Round(0),
                vote_type: VoteType::Precommit,
                block_hash: Some(header.hash()),
                validator: ValidatorIndex(i as u32),
            }
            .sign(&chain, &validators[i])
        })
        .collect();
    let certificate =
        CommitCertificate::from_precommits(header.height, Round(0), header.hash(), votes.iter());

    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let (offer, chunks) = make_snapshot(&state, &header, &certificate);
    let chunk_secs = t.elapsed().as_secs_f64();
    let snapshots = SnapshotDir::open(dir.path().join("snapshots"))?;
    let t = Instant::now();
    snapshots.write(&offer, &chunks)?;
    let write_secs = t.elapsed().as_secs_f64();
    let export_path = dir.path().join("snapshot.bin");
    let t = Instant::now();
    let size = write_export(&export_path, &offer, &chunks)?;
    let export_secs = t.elapsed().as_secs_f64();
    println!(
        "snapshot: {} chunks; chunking {:.2} s, writing the folder {:.2} s, export {:.2} s, \
         export file {} bytes ({:.1} MB)",
        chunks.len(),
        chunk_secs,
        write_secs,
        export_secs,
        size,
        size as f64 / 1e6
    );
    drop((chunks, state));

    let t = Instant::now();
    let (offer, chunks) = read_export(&export_path)?;
    let read_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    verify_offer(&genesis, &offer, &Verifier::new(VerifierConfig::default()))?;
    let mut restore = Restore::new(offer.manifest.clone());
    for (i, chunk) in chunks.iter().enumerate() {
        restore.add_chunk(i as u32, chunk)?;
    }
    let check_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (restored, accounts) = restore.finish()?;
    let rebuild_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut ledger = Ledger::open(&dir.path().join("ledger.redb"), genesis)?;
    ledger.install_snapshot(&offer, restored, &accounts)?;
    let install_secs = t.elapsed().as_secs_f64();
    println!(
        "import: read {read_secs:.2} s, verify offer and chunks {check_secs:.2} s, rebuild and \
         check the root {rebuild_secs:.2} s, install into redb {install_secs:.2} s; total {:.2} s",
        read_secs + check_secs + rebuild_secs + install_secs
    );

    // Proof sizes.
    let state = ledger.state();
    let samples = 1000u64;
    let mut siblings = 0usize;
    let mut bytes = 0usize;
    let mut max_bytes = 0usize;
    for i in 0..samples {
        let key = tally_crypto::PublicKey(
            *Hash::digest(&(i * (args.accounts / samples)).to_le_bytes()).as_bytes(),
        );
        let (_, proof) = state.prove(&key);
        let len = borsh::to_vec(&proof)?.len();
        siblings += proof.siblings.len();
        bytes += len;
        max_bytes = max_bytes.max(len);
    }
    let absent = state.prove(&Keypair::derive_insecure("absent").public()).1;
    println!(
        "account proof at {} accounts: {:.1} siblings, {:.0} bytes on average, {} at most; \
         an absence proof {} bytes",
        args.accounts,
        siblings as f64 / samples as f64,
        bytes as f64 / samples as f64,
        max_bytes,
        borsh::to_vec(&absent)?.len()
    );
    for n in [1u32, 100, 5_000, 10_000] {
        let hashes: Vec<TxHash> = (0..n).map(|i| TxHash(Hash::digest(&i.to_le_bytes()))).collect();
        let proof = tx_proof(&hashes, n / 2).ok_or("index in range")?;
        println!(
            "tx proof in a block of {n} txs: {} siblings, {} bytes",
            proof.path.len(),
            borsh::to_vec(&proof)?.len()
        );
    }
    Ok(())
}
