//! The store and the ledger on a [`SimDisk`] that loses power at every point of their life:
//! after each write, between the writes and the sync of a commit, with each kind of tear.
//! After every cut the store must reopen at a whole tip: the last block whose commit returned
//! Ok, or the one that was being committed, never less and never a broken state, with the
//! same block hashes, certificates and accounts as a run that never crashed. Then it must
//! carry on to the end of the chain.
//!
//! Each run cuts the power once at operation `k` (a write, a `set_len` or a sync) with one
//! tear. By default a cut gets: nothing kept, everything kept, scattered sectors from four
//! seeds and up to eight prefixes (every prefix when eight or fewer pieces are pending);
//! `TALLY_SIM_DISK_EXHAUSTIVE=1` tries every prefix, that is the last write cut at every
//! sector boundary (minutes instead of seconds).

mod common;

use common::{certificate, genesis, transfer, user, validator, verifier, GENESIS_TIME_MS};
use std::collections::BTreeMap;
use tally_consensus::{CommitCertificate, Height};
use tally_crypto::PublicKey;
use tally_ledger::sim_disk::Tear;
use tally_ledger::{Account, Block, DiskImage, Genesis, Ledger, Store, Tx, TxIndex};

const USERS: usize = 8;

/// A block as a run that never crashed committed it, and the accounts after it.
struct Committed {
    block: Block,
    certificate: CommitCertificate,
    changes: BTreeMap<PublicKey, Account>,
    accounts: Vec<(PublicKey, Account)>,
}

/// The chain every run commits, built once by a ledger on a disk that never fails.
struct Reference {
    genesis: Genesis,
    genesis_accounts: Vec<(PublicKey, Account)>,
    blocks: Vec<Committed>,
}

impl Reference {
    /// Blocks with `sizes[i]` transfers each (user i % USERS pays 1 to the next user).
    fn new(sizes: &[usize]) -> Reference {
        let genesis = genesis(USERS);
        let dir = tempfile::tempdir().expect("a temp dir");
        let image = DiskImage::new();
        let mut ledger = Ledger::open_with_backend(
            image.disk(),
            TxIndex::open(dir.path()).expect("tx index"),
            genesis.clone(),
        )
        .expect("the ledger opens on a SimDisk");
        let genesis_accounts = accounts(ledger.store());
        let mut nonces = [0u64; USERS];
        let mut blocks = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let txs: Vec<Tx> = (0..size)
                .map(|n| {
                    let from = n % USERS;
                    let tx =
                        transfer(&user(from), user((from + 1) % USERS).public(), 1, nonces[from]);
                    nonces[from] += 1;
                    tx
                })
                .collect();
            let time_ms = GENESIS_TIME_MS + 1000 * (i as u64 + 1);
            let built = ledger.build_block(&txs, time_ms, validator(0).public(), &verifier());
            assert!(built.skipped.is_empty(), "{:?}", built.skipped);
            let block = built.block;
            let certificate = certificate(block.height(), block.hash());
            let changes = built.outcome.changes.clone();
            ledger.commit(&block, &certificate, built.outcome).expect("commit");
            blocks.push(Committed {
                block,
                certificate,
                changes,
                accounts: accounts(ledger.store()),
            });
        }
        Reference { genesis, genesis_accounts, blocks }
    }

    fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn at(&self, height: u64) -> &Committed {
        &self.blocks[height as usize - 1]
    }

    fn accounts_at(&self, height: u64) -> &[(PublicKey, Account)] {
        match height {
            0 => &self.genesis_accounts,
            h => &self.at(h).accounts,
        }
    }
}

fn accounts(store: &Store) -> Vec<(PublicKey, Account)> {
    store.accounts_iter().expect("accounts").collect::<Result<_, _>>().expect("accounts")
}

/// How far a run got before the power went.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// `init_genesis` returned Ok.
    genesis: bool,
    /// The last height whose commit returned Ok (0: none).
    acked: u64,
    /// The height being committed when the power went (`acked` if none was).
    attempted: u64,
}

/// Where a run starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// An empty disk: the cut can come while redb creates the file.
    Empty,
    /// A store created with the genesis and closed cleanly (saves the ~10 ms redb takes to
    /// create a file in a debug build).
    Created,
}

/// The reference chain and a disk image of the store created with its genesis.
struct Fixture {
    r: Reference,
    created: Vec<u8>,
}

impl Fixture {
    fn new(sizes: &[usize]) -> Fixture {
        let r = Reference::new(sizes);
        let image = DiskImage::new();
        let store = Store::open_with_backend(image.disk()).expect("open");
        store.init_genesis(&r.genesis).expect("genesis");
        drop(store);
        Fixture { r, created: image.durable_bytes() }
    }

    fn image(&self, start: Start) -> (DiskImage, Progress) {
        match start {
            Start::Empty => (DiskImage::new(), Progress::default()),
            Start::Created => (
                DiskImage::from_bytes(self.created.clone()),
                Progress { genesis: true, ..Progress::default() },
            ),
        }
    }

    /// Mutating operations of a run from `start` that never crashes.
    fn ops(&self, start: Start) -> u64 {
        let (image, mut progress) = self.image(start);
        let store = drive_store(&self.r, &image, &mut progress).expect("no cut");
        assert_eq!(check_store(&self.r, &store, progress, "no cut"), self.r.height());
        let ops = image.ops();
        discard(&image, store);
        ops
    }

    /// One run from `start`: the power goes at mutating operation `k` with `tear`; the store
    /// reopens, is checked, and finishes the chain. Returns what the run had done before the
    /// cut and the tip it reopened at.
    fn cut_at(&self, start: Start, k: u64, tear: Tear) -> (Progress, u64) {
        let (image, mut progress) = self.image(start);
        image.crash_after_with(k, tear);
        let store = drive_store(&self.r, &image, &mut progress);
        assert!(store.is_none(), "the power went at operation {k}");
        let tip = reopen_and_finish(&self.r, &image, progress, &format!("op {k}, {tear:?}"));
        (progress, tip)
    }

    /// Every operation of a run from `start` (a `stride` of 1) or every `stride`-th, with
    /// the tears `tears` gives for the number of pieces pending at the cut and `k`. Returns
    /// how many runs had a commit cut short and how many of those reopened with its block
    /// and without it.
    fn cut_everywhere(
        &self,
        start: Start,
        stride: u64,
        tears: impl Fn(usize, u64) -> Vec<Tear>,
    ) -> [u64; 3] {
        let mut counts = [0; 3];
        for k in (0..self.ops(start)).step_by(stride as usize) {
            // A cut that keeps everything tells how much was pending at `k`.
            let (image, mut progress) = self.image(start);
            image.crash_after_with(k, Tear::Everything);
            assert!(drive_store(&self.r, &image, &mut progress).is_none());
            let pending = image.last_cut().expect("a cut").pending;
            for tear in tears(pending, k) {
                let (progress, tip) = self.cut_at(start, k, tear);
                if progress.attempted > progress.acked {
                    counts[0] += 1;
                    counts[if tip == progress.attempted { 1 } else { 2 }] += 1;
                }
            }
        }
        counts
    }
}

/// The tears tried at a cut with `pending` pieces pending (see the module documentation).
fn tears(pending: usize, k: u64) -> Vec<Tear> {
    let exhaustive = std::env::var_os("TALLY_SIM_DISK_EXHAUSTIVE").is_some();
    let mut tears = vec![Tear::Nothing, Tear::Everything];
    if exhaustive || pending <= 9 {
        tears.extend((1..pending).map(Tear::Prefix));
    } else {
        tears.extend((1..=8).map(|i| Tear::Prefix(i * (pending - 1) / 8)));
    }
    tears.extend((0..4).map(|seed| Tear::Scattered(seed << 32 | k)));
    tears
}

/// Opens the store on `image` and commits the reference chain from its tip on, until an
/// operation fails (the power went) or the chain is done.
fn drive_store(r: &Reference, image: &DiskImage, progress: &mut Progress) -> Option<Store> {
    let store = Store::open_with_backend(image.disk()).ok()?;
    store.init_genesis(&r.genesis).ok()?;
    progress.genesis = true;
    finish(r, &store, progress).ok()?;
    Some(store)
}

/// Commits the reference chain from the store's tip on.
fn finish(r: &Reference, store: &Store, progress: &mut Progress) -> Result<(), String> {
    let tip = store.tip().map_err(|e| e.to_string())?.map_or(0, |(h, _)| h.0);
    for h in tip + 1..=r.height() {
        progress.attempted = h;
        let c = r.at(h);
        store.commit_block(&c.block, &c.certificate, &c.changes).map_err(|e| e.to_string())?;
        progress.acked = h;
    }
    Ok(())
}

/// Drops a store without redb's clean close (which a test does not need and which costs
/// ~10 ms in a debug build): the power goes first, keeping everything.
fn discard(image: &DiskImage, store: Store) {
    image.crash_with(Tear::Everything);
    drop(store);
}

/// The store holds a whole tip that `progress` allows, and exactly the reference's blocks,
/// certificates and accounts up to it. Returns the tip.
fn check_store(r: &Reference, store: &Store, progress: Progress, what: &str) -> u64 {
    let tip = store.tip().expect("tip").map_or(0, |(h, _)| h.0);
    assert!(
        progress.acked <= tip && tip <= progress.attempted.max(progress.acked),
        "{what}: tip {tip} after {progress:?}"
    );
    if progress.genesis {
        assert_eq!(store.genesis_hash().expect("genesis"), Some(r.genesis.hash()), "{what}");
    }
    for h in 1..=tip {
        let c = r.at(h);
        let block = store.block(Height(h)).expect("block").expect("every height to the tip");
        assert_eq!(block.hash(), c.block.hash(), "{what}: block {h}");
        assert_eq!(store.certificate(Height(h)).expect("cert"), Some(c.certificate.clone()));
    }
    assert_eq!(store.block(Height(tip + 1)).expect("block"), None, "{what}: nothing past the tip");
    if store.genesis_hash().expect("genesis").is_some() {
        assert_eq!(accounts(store), r.accounts_at(tip), "{what}: accounts at {tip}");
    } else {
        assert_eq!(tip, 0, "{what}");
        assert!(accounts(store).is_empty(), "{what}: accounts without a genesis");
    }
    tip
}

/// Reopens the store after a cut, checks it, and commits the rest of the chain on it.
/// Returns the tip it reopened at.
fn reopen_and_finish(r: &Reference, image: &DiskImage, progress: Progress, what: &str) -> u64 {
    let store = match Store::open_with_backend(image.disk()) {
        Ok(store) => store,
        Err(e) => panic!("{what}: the store does not reopen after {progress:?}: {e}"),
    };
    let tip = check_store(r, &store, progress, what);
    let mut after = Progress { acked: tip, attempted: tip, ..progress };
    if !after.genesis {
        store.init_genesis(&r.genesis).expect("genesis after a reopen");
        after.genesis = true;
    }
    finish(r, &store, &mut after).unwrap_or_else(|e| panic!("{what}: after a reopen: {e}"));
    assert_eq!(check_store(r, &store, after, what), r.height());
    discard(image, store);
    tip
}

/// A cut while redb creates the file or the genesis is written: the store reopens empty or
/// with the genesis (a file left without redb's magic number is created again).
#[test]
fn store_cut_while_it_is_created_reopens_empty_or_with_its_genesis() {
    let f = Fixture::new(&[1]);
    let creation = {
        let image = DiskImage::new();
        let store = Store::open_with_backend(image.disk()).expect("open");
        store.init_genesis(&f.r.genesis).expect("genesis");
        image.ops()
    };
    let mut runs = 0;
    for k in 0..creation {
        let (image, mut progress) = f.image(Start::Empty);
        image.crash_after_with(k, Tear::Everything);
        assert!(drive_store(&f.r, &image, &mut progress).is_none());
        for tear in tears(image.last_cut().expect("a cut").pending, k) {
            f.cut_at(Start::Empty, k, tear);
            runs += 1;
        }
    }
    assert!(runs > 20, "{runs} runs");
}

/// Every operation of four commits, every kind of tear.
#[test]
fn store_cut_at_every_operation_of_its_commits_reopens_at_a_whole_tip() {
    let f = Fixture::new(&[0, 3, 40, 1]);
    let [cut_short, kept, rolled_back] = f.cut_everywhere(Start::Created, 1, tears);
    // Both ends of a commit cut short happen: kept whole (the header swap and every page
    // it names made it) and rolled back.
    assert!(cut_short > 100, "{cut_short} commits cut short");
    assert!(kept > 0 && rolled_back > 0, "{kept} kept, {rolled_back} rolled back");
}

/// A block large enough that the file grows (redb's `set_len`) inside its commit; a cut at
/// one operation in forty, with four tears (nothing, everything, half, scattered).
#[test]
fn store_cut_while_a_commit_grows_the_file_reopens_at_a_whole_tip() {
    let f = Fixture::new(&[2, 8000, 5]);
    let grown = {
        let (image, mut progress) = f.image(Start::Created);
        let store = drive_store(&f.r, &image, &mut progress).expect("no cut");
        let len = image.volatile_bytes().len();
        discard(&image, store);
        len
    };
    assert!(grown > f.created.len(), "the file grew: {grown} > {}", f.created.len());
    let stride = (f.ops(Start::Created) / 40).max(1);
    let tears = |pending: usize, k: u64| {
        vec![Tear::Nothing, Tear::Everything, Tear::Prefix(pending / 2), Tear::Scattered(k)]
    };
    let [cut_short, ..] = f.cut_everywhere(Start::Created, stride, tears);
    assert!(cut_short > 50, "{cut_short} commits cut short");
}

/// A sync that fails fails the commit; whatever a later cut keeps, the store reopens at a
/// whole tip.
#[test]
fn a_failed_sync_fails_the_commit_and_the_store_reopens_at_a_whole_tip() {
    let f = Fixture::new(&[1, 2, 3]);
    let syncs = {
        let image = DiskImage::new();
        let store = drive_store(&f.r, &image, &mut Progress::default()).expect("no cut");
        let syncs = image.syncs();
        discard(&image, store);
        syncs
    };
    for n in 0..syncs {
        for bits in 0..6 {
            let (image, mut progress) = f.image(Start::Empty);
            image.fail_sync_after(n);
            assert!(drive_store(&f.r, &image, &mut progress).is_none(), "sync {n} failed");
            let cut = image.crash(bits);
            reopen_and_finish(&f.r, &image, progress, &format!("sync {n} failed, then {cut:?}"));
        }
    }
}

/// Power cuts one after another: each seed cuts the power at random points, up to six
/// times, and the store resumes after each one until the chain is done.
#[test]
fn repeated_cuts_with_random_tears_converge_on_the_reference_chain() {
    let f = Fixture::new(&[0, 5, 30, 2, 12, 1]);
    let total = f.ops(Start::Empty);
    // redb 2.6.4 sometimes panics while it recovers a torn image (an assertion in its page
    // allocator, `buddy_allocator.rs:477`, reached from `Database::new`; seen on seed 33,
    // cut 4, in about one run in four). It is a known, unfixed finding (docs/testing.md,
    // "Known: redb's recovery"), counted here; every image redb does open must still hold
    // a whole tip.
    let mut redb_panics = Vec::new();
    'seeds: for seed in 0..40u64 {
        let image = DiskImage::new();
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut progress = Progress::default();
        for cut in 0..6 {
            image.crash_after(next() % (total / 2).max(1), next());
            if let Some(store) = drive_store(&f.r, &image, &mut progress) {
                assert_eq!(check_store(&f.r, &store, progress, "done"), f.r.height());
                discard(&image, store);
                break;
            }
            let what = format!("seed {seed} cut {cut} {:?}", image.last_cut());
            let disk = image.disk();
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Store::open_with_backend(disk)
            }));
            let store = match opened {
                Ok(store) => store.unwrap_or_else(|e| panic!("{what}: {e}")),
                Err(_) => {
                    redb_panics.push(what);
                    continue 'seeds;
                }
            };
            let tip = check_store(&f.r, &store, progress, &what);
            progress = Progress { acked: tip, attempted: tip, ..progress };
            discard(&image, store);
        }
    }
    if !redb_panics.is_empty() {
        eprintln!("redb panicked recovering {} torn images: {redb_panics:?}", redb_panics.len());
    }
    assert!(redb_panics.len() < 8, "redb panicked on {} of 40 seeds", redb_panics.len());
}

/// The ledger on a SimDisk (`Ledger::open_with_backend`, its tx index in a directory): cut at
/// every operation of its life, its clean close included, with tears drawn from two seeds,
/// it reopens at a whole tip (its own open checks that the accounts rebuild to the tip
/// header's state root), finds every committed tx, and validates and commits the rest of the
/// chain to the same tip.
#[test]
fn ledger_cut_at_every_operation_reopens_at_a_whole_tip_and_carries_on() {
    let f = Fixture::new(&[2, 0, 25, 3]);
    let r = &f.r;
    // Operations until the chain is committed, and until the ledger is closed too.
    let (committed, closed) = {
        let (image, mut progress) = f.image(Start::Created);
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut ledger = Ledger::open_with_backend(
            image.disk(),
            TxIndex::open(dir.path()).expect("tx index"),
            r.genesis.clone(),
        )
        .expect("the ledger opens");
        commit_rest(r, &mut ledger, &mut progress).expect("no cut");
        let committed = image.ops();
        drop(ledger);
        (committed, image.ops())
    };
    // fjall's monitor thread sleeps 250 ms at a time and closing the index waits for it: the
    // runs are spread over threads that mostly sleep.
    let threads = 8;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let f = &f;
            scope.spawn(move || {
                for k in (t..closed).step_by(threads as usize) {
                    for bits in 0..2u64 {
                        ledger_cut_at(f, k, bits << 32 | k, k >= committed);
                    }
                }
            });
        }
    });
}

/// Validates and commits the reference chain from the ledger's tip on.
fn commit_rest(r: &Reference, ledger: &mut Ledger, progress: &mut Progress) -> Result<(), String> {
    for h in ledger.next_height().0..=r.height() {
        progress.attempted = h;
        let c = r.at(h);
        let outcome = ledger.validate_block(&c.block, &verifier()).expect("valid");
        ledger.commit(&c.block, &c.certificate, outcome).map_err(|e| e.to_string())?;
        progress.acked = h;
    }
    Ok(())
}

/// One run of the ledger test: the power goes at operation `k` with a tear from `bits`
/// (after the last commit when `in_close`).
fn ledger_cut_at(f: &Fixture, k: u64, bits: u64, in_close: bool) {
    let r = &f.r;
    let (image, mut progress) = f.image(Start::Created);
    let dir = tempfile::tempdir().expect("a temp dir");
    image.crash_after(k, bits);
    let finished = Ledger::open_with_backend(
        image.disk(),
        TxIndex::open(dir.path()).expect("tx index"),
        r.genesis.clone(),
    )
    .map_err(|e| e.to_string())
    .and_then(|mut ledger| commit_rest(r, &mut ledger, &mut progress).map(|()| ledger));
    // A cut after the last commit hits the clean close (the drop), which it tears.
    assert_eq!(finished.is_ok(), in_close, "op {k}");
    drop(finished);
    let what = format!("op {k}, {:?}", image.last_cut());
    let mut ledger = Ledger::open_with_backend(
        image.disk(),
        TxIndex::open(dir.path()).expect("tx index"),
        r.genesis.clone(),
    )
    .unwrap_or_else(|e| panic!("{what}: the ledger does not reopen: {e}"));
    let tip = check_store(r, ledger.store(), progress, &what);
    assert_eq!(ledger.next_height(), Height(tip + 1), "{what}");
    let root = match tip {
        0 => r.genesis.state_tree().root(),
        h => r.at(h).block.header.state_root,
    };
    assert_eq!(ledger.state().root(), root, "{what}");
    for h in 1..=tip {
        for tx in &r.at(h).block.txs {
            let found = ledger.tx(&tx.hash()).expect("tx index");
            assert_eq!(found.map(|(height, _, _)| height), Some(Height(h)), "{what}");
        }
    }
    let mut after = Progress { acked: tip, attempted: tip, ..progress };
    commit_rest(r, &mut ledger, &mut after).unwrap_or_else(|e| panic!("{what}: {e}"));
    let last = r.at(r.height()).block.hash();
    assert_eq!(ledger.tip(), Some((Height(r.height()), last)), "{what}");
    image.crash_with(Tear::Everything);
}
