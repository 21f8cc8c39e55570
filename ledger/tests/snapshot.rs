//! Snapshots: a real snapshot restores exactly the certified state (into a fresh store that
//! then extends the chain); every tampered offer, manifest field and chunk is refused with
//! its reason; the folder and the export file survive round trips and refuse damage.

mod common;

use common::{chain_id, genesis, transfer, user, validator, verifier, GENESIS_TIME_MS};
use tally_consensus::{
    CommitCertificate, Height, Round, SignedVote, ValidatorIndex, Vote, VoteType,
};
use tally_crypto::{Hash, Keypair};
use tally_ledger::snapshot::files::{read_export, write_export, SnapshotDir};
use tally_ledger::snapshot::{
    chunk_hash, decode_chunk, make_snapshot, verify_offer, Manifest, Restore, SnapshotError,
    SnapshotOffer, CHUNK_ACCOUNTS,
};
use tally_ledger::store::CommitError;
use tally_ledger::{Block, Genesis, Ledger, LedgerCommitError, LightError};

/// 20,000 accounts: three chunks of 8192, 8192 and 3616.
const ACCOUNTS: usize = 20_000;

struct Chain {
    _dir: tempfile::TempDir,
    genesis: Genesis,
    ledger: Ledger,
    block: Block,
    offer: SnapshotOffer,
    chunks: Vec<Vec<u8>>,
}

fn certify(block: &Block, signers: &[usize]) -> CommitCertificate {
    let votes: Vec<SignedVote> = signers
        .iter()
        .map(|&i| {
            Vote {
                height: block.height(),
                round: Round(0),
                vote_type: VoteType::Precommit,
                block_hash: Some(block.hash()),
                validator: ValidatorIndex(i as u32),
            }
            .sign(&chain_id(), &validator(i))
        })
        .collect();
    CommitCertificate::from_precommits(block.height(), Round(0), block.hash(), votes.iter())
}

/// Commits one block of transfers (one to a new account) and snapshots the state after it.
fn chain() -> Chain {
    let dir = tempfile::tempdir().expect("temp dir");
    let g = genesis(ACCOUNTS);
    let mut ledger = Ledger::open(&dir.path().join("l.redb"), g.clone()).expect("open");
    let newcomer = Keypair::derive_insecure("newcomer").public();
    let txs =
        vec![transfer(&user(0), user(1).public(), 100, 0), transfer(&user(2), newcomer, 5, 0)];
    let built =
        ledger.build_block(&txs, GENESIS_TIME_MS + 1000, validator(0).public(), &verifier());
    let certificate = certify(&built.block, &[0, 1, 2]);
    ledger.commit(&built.block, &certificate, built.outcome).expect("commit");
    let (offer, chunks) = make_snapshot(ledger.state(), &built.block.header, &certificate);
    Chain { _dir: dir, genesis: g, ledger, block: built.block, offer, chunks }
}

fn restore(offer: &SnapshotOffer, chunks: &[Vec<u8>]) -> Result<Restore, SnapshotError> {
    let mut restore = Restore::new(offer.manifest.clone());
    for (i, chunk) in chunks.iter().enumerate().rev() {
        restore.add_chunk(i as u32, chunk)?;
    }
    Ok(restore)
}

#[test]
fn a_snapshot_restores_the_certified_state_into_a_fresh_store_that_extends_the_chain() {
    let c = chain();
    assert_eq!(c.offer.manifest.accounts, ACCOUNTS as u64 + 1);
    assert_eq!(c.chunks.len(), 3);
    verify_offer(&c.genesis, &c.offer, &verifier()).expect("offer verifies");
    // Chunks arrive in any order; one arriving twice counts once.
    let mut r = restore(&c.offer, &c.chunks).expect("chunks");
    r.add_chunk(1, &c.chunks[1]).expect("again");
    assert!(r.is_complete());
    let (state, accounts) = r.finish().expect("restores");
    assert_eq!(state.root(), c.ledger.state().root());

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new.redb");
    let mut fresh = Ledger::open(&path, c.genesis.clone()).expect("open fresh");
    fresh.install_snapshot(&c.offer, state, &accounts).expect("install");
    assert_eq!(fresh.tip(), c.ledger.tip());
    for u in [0, 1, 2, 3, ACCOUNTS - 1] {
        let key = user(u).public();
        assert_eq!(fresh.account_with_proof(&key), c.ledger.account_with_proof(&key), "user {u}");
    }
    drop(fresh);

    // Reopened, it rebuilds the same root from its accounts, knows its base, and takes the
    // next block exactly as the original ledger does.
    let mut fresh = Ledger::open(&path, c.genesis.clone()).expect("reopen");
    assert_eq!(fresh.store().base().expect("base"), Some(Height(1)));
    assert_eq!(fresh.store().block(Height(1)).expect("read"), None);
    assert_eq!(fresh.store().header(Height(1)).expect("read"), Some(c.block.header.clone()));
    let mut original = c.ledger;
    let txs = vec![transfer(&user(1), user(0).public(), 7, 0)];
    let next =
        original.build_block(&txs, GENESIS_TIME_MS + 2000, validator(1).public(), &verifier());
    let cert = certify(&next.block, &[1, 2, 3]);
    let outcome = fresh.validate_block(&next.block, &verifier()).expect("valid on the restored");
    fresh.commit(&next.block, &cert, outcome).expect("commit on the restored");
    original.commit(&next.block, &cert, next.outcome).expect("commit on the original");
    assert_eq!(fresh.state().root(), original.state().root());

    // A snapshot installs only into an empty store.
    let (state, accounts) = restore(&c.offer, &c.chunks).expect("chunks").finish().expect("ok");
    assert!(matches!(
        fresh.install_snapshot(&c.offer, state, &accounts),
        Err(LedgerCommitError::Store(CommitError::NotEmpty { .. }))
    ));
}

#[test]
fn honest_snapshots_of_one_height_are_byte_identical() {
    let c = chain();
    let (again, chunks) = make_snapshot(c.ledger.state(), &c.block.header, &c.offer.certificate);
    assert_eq!(again, c.offer);
    assert_eq!(chunks, c.chunks);
    assert_eq!(again.manifest.hash(), c.offer.manifest.hash());
}

#[test]
fn every_tampered_manifest_field_and_certificate_is_refused() {
    let c = chain();
    let v = verifier();
    let check = |offer: &SnapshotOffer| verify_offer(&c.genesis, offer, &v);
    let tamper = |f: &dyn Fn(&mut SnapshotOffer)| {
        let mut o = c.offer.clone();
        f(&mut o);
        o
    };
    assert!(matches!(
        check(&tamper(&|o| o.manifest.format = 2)),
        Err(SnapshotError::Format { got: 2, .. })
    ));
    assert!(matches!(
        check(&tamper(&|o| {
            o.manifest.chain_id = tally_crypto::ChainId::new("other").expect("id")
        })),
        Err(SnapshotError::WrongChain { .. })
    ));
    assert!(matches!(
        check(&tamper(&|o| o.manifest.height = Height(2))),
        Err(SnapshotError::ManifestMismatch { field: "height" })
    ));
    assert!(matches!(
        check(&tamper(&|o| o.manifest.block_hash.0 .0[0] ^= 1)),
        Err(SnapshotError::ManifestMismatch { field: "block hash" })
    ));
    assert!(matches!(
        check(&tamper(&|o| o.manifest.state_root.0[31] ^= 1)),
        Err(SnapshotError::ManifestMismatch { field: "state root" })
    ));
    assert!(matches!(
        check(&tamper(&|o| o.manifest.accounts += u64::from(CHUNK_ACCOUNTS))),
        Err(SnapshotError::ChunkCount { .. })
    ));
    assert!(matches!(
        check(&tamper(&|o| {
            o.manifest.chunk_hashes.pop();
        })),
        Err(SnapshotError::ChunkCount { .. })
    ));
    // The header: any field changes its hash, so the certificate no longer names it.
    assert!(matches!(
        check(&tamper(&|o| o.header.state_root = Hash::digest(b"forged"))),
        Err(SnapshotError::Header(LightError::BlockMismatch { .. }))
    ));
    assert!(matches!(
        check(&tamper(&|o| o.header.time_ms += 1)),
        Err(SnapshotError::Header(LightError::BlockMismatch { .. }))
    ));
    // The certificate: too little power, none at all, a duplicate, another block.
    let two = certify(&c.block, &[0, 1]);
    assert!(matches!(
        check(&tamper(&|o| o.certificate = two.clone())),
        Err(SnapshotError::Header(LightError::Certificate(_)))
    ));
    assert!(check(&tamper(&|o| o.certificate.signatures.clear())).is_err());
    assert!(check(&tamper(&|o| {
        let first = o.certificate.signatures[0].clone();
        o.certificate.signatures.insert(1, first);
    }))
    .is_err());
    assert!(matches!(
        check(&tamper(&|o| o.certificate.block_hash.0 .0[3] ^= 1)),
        Err(SnapshotError::Header(LightError::BlockMismatch { .. }))
    ));
    // The honest offer still passes after all that.
    check(&c.offer).expect("honest offer");
}

/// A manifest whose chunk hashes name `chunks` (a liar can write any hashes: only height,
/// block hash and state root are certified).
fn forged(offer: &SnapshotOffer, chunks: &[Vec<u8>]) -> Manifest {
    let mut m = offer.manifest.clone();
    m.chunk_hashes = chunks.iter().map(|c| chunk_hash(c)).collect();
    m
}

#[test]
fn every_tampered_chunk_is_refused_and_a_liar_cannot_pass_off_another_state() {
    let c = chain();
    let mut r = Restore::new(c.offer.manifest.clone());
    // A flipped bit anywhere: the hash no longer matches; the chunk can come again.
    for at in [0usize, 4, 40, c.chunks[0].len() - 1] {
        let mut bad = c.chunks[0].clone();
        bad[at] ^= 1;
        assert!(matches!(r.add_chunk(0, &bad), Err(SnapshotError::ChunkHash { index: 0, .. })));
    }
    assert!(matches!(r.add_chunk(3, &c.chunks[0]), Err(SnapshotError::NoSuchChunk { .. })));
    assert!(matches!(r.add_chunk(1, &c.chunks[0]), Err(SnapshotError::ChunkHash { .. })));
    r.add_chunk(0, &c.chunks[0]).expect("the honest chunk after the bad ones");
    assert_eq!(r.missing(), vec![1, 2]);
    assert!(matches!(r.finish(), Err(SnapshotError::Incomplete { missing: 2, chunks: 3 })));

    let entries = |i: usize| decode_chunk(&c.chunks[i]).expect("honest chunk decodes");
    let encode = |e: &[(tally_crypto::PublicKey, tally_ledger::Account)]| {
        let mut out = (e.len() as u32).to_le_bytes().to_vec();
        for (pk, a) in e {
            out.extend_from_slice(&pk.0);
            out.extend_from_slice(&a.balance.to_le_bytes());
            out.extend_from_slice(&a.nonce.to_le_bytes());
        }
        out
    };
    let with_chunk = |i: usize, bytes: Vec<u8>| {
        let mut chunks = c.chunks.clone();
        chunks[i] = bytes;
        chunks
    };
    let attempt = |chunks: &[Vec<u8>]| {
        let mut r = Restore::new(forged(&c.offer, chunks));
        for (i, chunk) in chunks.iter().enumerate() {
            r.add_chunk(i as u32, chunk)?;
        }
        r.finish().map(|_| ())
    };
    // Two entries swapped inside a chunk.
    let mut e = entries(0);
    e.swap(10, 11);
    assert!(matches!(
        attempt(&with_chunk(0, encode(&e))),
        Err(SnapshotError::ChunkOrder { index: 0 })
    ));
    // An entry dropped or added.
    let mut e = entries(2);
    e.pop();
    assert!(matches!(
        attempt(&with_chunk(2, encode(&e))),
        Err(SnapshotError::ChunkLength { index: 2, .. })
    ));
    // Length bytes that do not match the count.
    let mut bad = c.chunks[2].clone();
    bad.push(0);
    assert!(matches!(attempt(&with_chunk(2, bad)), Err(SnapshotError::ChunkMalformed { .. })));
    // Chunks in the wrong order (each well formed on its own).
    let mut swapped = c.chunks.clone();
    swapped.swap(0, 1);
    assert!(matches!(attempt(&swapped), Err(SnapshotError::ChunkOrder { index: 1 })));
    // A richer account: every chunk checks out, but the state is not the certified one.
    let mut e = entries(1);
    e[5].1.balance += 1;
    assert!(matches!(attempt(&with_chunk(1, encode(&e))), Err(SnapshotError::StateRoot { .. })));
    // A nonce changed in the last chunk: not the certified state either.
    let mut e = entries(2);
    let last = e.len() - 1;
    e[last].1.nonce += 1;
    assert!(matches!(attempt(&with_chunk(2, encode(&e))), Err(SnapshotError::StateRoot { .. })));
}

#[test]
fn decoders_check_counts_before_reading() {
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(&[0; 48]);
    assert!(decode_chunk(&huge).unwrap_err().contains("more than the limit"));
    assert!(decode_chunk(&[1, 0]).is_err());
    let c = chain();
    let mut bytes = c.offer.encode();
    assert_eq!(SnapshotOffer::decode(&bytes).expect("decodes"), c.offer);
    // The chunk count sits after format (4), chain id (4 + len), height (8), block hash,
    // state root (64) and the account count (8).
    let at = 4 + 4 + chain_id().as_str().len() + 8 + 64 + 8;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = SnapshotOffer::decode(&bytes).unwrap_err().to_string();
    assert!(err.contains("more than the limit"), "{err}");
}

#[test]
fn the_folder_writes_atomically_prunes_and_reads_back_under_limits() {
    let c = chain();
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("snapshots");
    std::fs::create_dir_all(root.join(".tmp-7")).expect("a leftover of a crashed write");
    let dir = SnapshotDir::open(&root).expect("open");
    assert!(!root.join(".tmp-7").exists(), "open removes interrupted writes");
    for h in [1u64, 2, 3] {
        let mut offer = c.offer.clone();
        offer.manifest.height = Height(h);
        dir.write(&offer, &c.chunks).expect("write");
    }
    assert_eq!(dir.heights().expect("list"), vec![Height(1), Height(2), Height(3)]);
    assert_eq!(dir.prune(2).expect("prune"), vec![Height(1)]);
    assert_eq!(dir.heights().expect("list"), vec![Height(2), Height(3)]);
    assert_eq!(dir.chunk(Height(2), 1).expect("chunk"), c.chunks[1]);
    assert!(dir.chunk(Height(2), 3).is_err());
    assert!(dir.offer(Height(9)).is_err());
    // A damaged offer file is an error, not a panic.
    let offer_path = root.join(format!("{:020}", 3)).join("offer");
    std::fs::write(&offer_path, b"garbage").expect("damage");
    assert!(dir.offer(Height(3)).is_err());
}

#[test]
fn export_files_round_trip_and_damage_is_refused() {
    let c = chain();
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("snap.bin");
    let size = write_export(&path, &c.offer, &c.chunks).expect("export");
    assert_eq!(size, std::fs::metadata(&path).expect("meta").len());
    let (offer, chunks) = read_export(&path).expect("import");
    assert_eq!((offer, chunks), (c.offer.clone(), c.chunks.clone()));

    let bytes = std::fs::read(&path).expect("read");
    let damaged = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        std::fs::write(&path, &b).expect("write");
        read_export(&path)
    };
    assert!(damaged(&|b| b[0] = b'X').is_err(), "magic");
    assert!(damaged(&|b| b[8] = 9).is_err(), "format");
    assert!(damaged(&|b| b.truncate(b.len() - 1)).is_err(), "truncated");
    assert!(damaged(&|b| b.push(0)).is_err(), "trailing byte");
    assert!(damaged(&|b| b[12..16].copy_from_slice(&u32::MAX.to_le_bytes())).is_err(), "length");
    // A flipped chunk byte reads back (the layout is fine) but does not restore.
    let (offer, chunks) = damaged(&|b| {
        let last = b.len() - 3;
        b[last] ^= 1;
    })
    .expect("layout intact");
    assert!(restore(&offer, &chunks).is_err());
}
