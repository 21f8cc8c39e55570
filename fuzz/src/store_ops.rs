//! Target `store_ops`: the ledger's redb `Store` under arbitrary commits, reads, injected IO
//! failures and crashes, against a model (the committed blocks, a tx index and a BTreeMap of
//! accounts).
//!
//! The store runs on [`FailingBackend`]: an operation armed to fail makes every later IO
//! fail; the first store call that returns a database error is treated as the process dying
//! there (a process crash or a power cut), and the store is reopened from what survives.
//!
//! Oracles: logical refusals (wrong height or parent, a duplicate tx) are the expected error
//! and change nothing; after every crash and reopen the store holds exactly the last
//! committed state: every block, every tx location and every account as the model says
//! (the one commit that failed with an IO error may have landed or not, but wholly or not at
//! all); reads always agree with the model.

use crate::failing_backend::{Crash, FailingBackend};
use crate::fixtures::{account_key, chain_id, keypair};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tally_consensus::{BlockHash, CommitCertificate, CommitSig, Height, Round, ValidatorIndex};
use tally_crypto::{PublicKey, Signature};
use tally_ledger::store::{CommitError, ReadError};
use tally_ledger::{
    tx_root, Account, Block, ConsensusParams, Genesis, GenesisAccount, GenesisValidator, Header,
    Store, Transfer, Tx, TxHash,
};

const OPS_MAX: usize = 60;
const ACCOUNTS: u8 = 6;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: chain_id(),
        genesis_time_ms: 1_700_000_000_000,
        validators: vec![GenesisValidator {
            name: "v0".into(),
            public_key: keypair(0).public(),
            power: 1,
        }],
        accounts: (0..ACCOUNTS)
            .map(|i| GenesisAccount { public_key: account_key(i), balance: 1000 + u64::from(i) })
            .collect(),
        params: ConsensusParams::default(),
    }
}

/// What the store must hold.
#[derive(Clone)]
struct Model {
    genesis_hash: BlockHash,
    blocks: Vec<Block>,
    txs: BTreeMap<TxHash, (Height, u32)>,
    accounts: BTreeMap<PublicKey, Account>,
}

impl Model {
    fn tip(&self) -> Option<(Height, BlockHash)> {
        self.blocks.last().map(|b| (b.header.height, b.hash()))
    }

    fn next(&self) -> (Height, BlockHash) {
        match self.tip() {
            Some((h, hash)) => (h.next(), hash),
            None => (Height(1), self.genesis_hash),
        }
    }

    fn apply(&mut self, block: &Block, changes: &BTreeMap<PublicKey, Account>) {
        for (i, tx) in block.txs.iter().enumerate() {
            self.txs.insert(tx.hash(), (block.header.height, u32::try_from(i).expect("small")));
        }
        self.accounts.extend(changes.iter().map(|(k, a)| (*k, *a)));
        self.blocks.push(block.clone());
    }
}

/// A database error from any store call: the process dies there.
struct Died;

fn read<T>(r: Result<T, ReadError>) -> Result<T, Died> {
    match r {
        Ok(v) => Ok(v),
        Err(ReadError::Db(_)) => Err(Died),
        Err(e) => panic!("store read failed without an IO error: {e}"),
    }
}

fn tx(n: u64) -> Tx {
    let transfer = Transfer {
        from: account_key((n % u64::from(ACCOUNTS)) as u8),
        to: account_key(((n + 1) % u64::from(ACCOUNTS)) as u8),
        amount: 1 + n,
        nonce: n,
    };
    // The store does not verify signatures; the ledger did before committing.
    Tx { transfer, signature: Signature([0; 64]) }
}

/// A certificate for `block` from validators 0, 1 and 2. The store does not verify its
/// signatures (the ledger did before committing), so they are placeholders: signing three
/// votes per commit took a quarter of this target's time.
fn certificate(block: &Block) -> CommitCertificate {
    let signatures = (0..3u8)
        .map(|i| CommitSig {
            validator: ValidatorIndex(u32::from(i)),
            signature: Signature([i; 64]),
        })
        .collect();
    CommitCertificate {
        height: block.header.height,
        round: Round(0),
        block_hash: block.hash(),
        signatures,
    }
}

fn block(height: Height, parent: BlockHash, txs: Vec<Tx>) -> Block {
    let hashes: Vec<TxHash> = txs.iter().map(Tx::hash).collect();
    let mut b = crate::fixtures::block(height.0, txs, parent);
    b.header = Header { tx_root: tx_root(&hashes), ..b.header };
    b
}

struct Harness {
    backend: FailingBackend,
    store: Store,
    model: Model,
    next_tx: u64,
}

/// The redb region size of the template database. redb's default (4 GiB a region) makes every
/// open, commit and close walk allocator bitmaps for a million pages, which held this target
/// to about 20 execs/s; small regions also make the store grow over several regions.
#[cfg_attr(not(fuzzing), allow(dead_code))]
const REGION_BYTES: u64 = 256 * 1024;

/// The image of a store that has just been created with [`REGION_BYTES`] regions, been given
/// its tables and the genesis, and been closed cleanly. Built once per process: every input
/// starts from a copy, as if it had been created by that input (no failure is armed before
/// the first op either way). redb keeps the region size in the file header, so the store
/// reopened from this image keeps the small regions.
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let backend = FailingBackend::default();
        #[cfg_attr(not(fuzzing), allow(unused_mut))]
        let mut builder = redb::Database::builder();
        // `set_region_size` exists only under `--cfg fuzzing`, which cargo-fuzz always sets.
        #[cfg(fuzzing)]
        builder.set_region_size(REGION_BYTES);
        drop(builder.create_with_backend(backend.clone()).expect("a fresh database is created"));
        let store = Store::open_with_backend(backend.clone()).expect("a fresh store opens");
        store.init_genesis(&genesis()).expect("genesis is written");
        drop(store);
        backend.written_image()
    })
}

impl Harness {
    fn new() -> Harness {
        let backend = FailingBackend::from_image(template().to_vec());
        let store = Store::open_with_backend(backend.clone()).expect("the template store opens");
        let g = genesis();
        store.init_genesis(&g).expect("the template store has this genesis");
        let model = Model {
            genesis_hash: BlockHash(g.hash()),
            blocks: Vec::new(),
            txs: BTreeMap::new(),
            accounts: g.initial_accounts().collect(),
        };
        Harness { backend, store, model, next_tx: 0 }
    }

    /// The process dies; the store is reopened from what survives and checked against the
    /// model (`pending`: the commit in flight, which may or may not have landed).
    fn crash(&mut self, how: Crash, pending: Option<(Block, BTreeMap<PublicKey, Account>)>) {
        let backend = self.backend.crash(how);
        let store = Store::open_with_backend(backend.clone())
            .unwrap_or_else(|e| panic!("the store does not reopen after a {how:?}: {e}"));
        store.init_genesis(&genesis()).expect("the reopened store has this genesis");
        self.backend = backend;
        self.store = store;
        let tip = read(self.store.tip()).unwrap_or_else(|_| panic!("IO failed while not armed"));
        if let Some((block, changes)) = pending {
            if tip == Some((block.header.height, block.hash())) {
                self.model.apply(&block, &changes);
            }
        }
        assert_eq!(tip, self.model.tip(), "after a {how:?} the tip is not the last commit");
        if self.check_all().is_err() {
            panic!("IO failed while not armed");
        }
    }

    fn check_all(&self) -> Result<(), Died> {
        for b in &self.model.blocks {
            assert_eq!(read(self.store.block(b.header.height))?.as_ref(), Some(b), "block differs");
        }
        let (next, _) = self.model.next();
        assert_eq!(read(self.store.block(next))?, None, "a block above the tip");
        for (hash, (h, i)) in &self.model.txs {
            let found = read(self.store.tx_at(*h, *i))?.map(|t| t.hash());
            assert_eq!(found.as_ref(), Some(hash), "tx at its position differs");
        }
        for i in 0..ACCOUNTS + 1 {
            let k = account_key(i);
            let want = self.model.accounts.get(&k).copied().unwrap_or_default();
            assert_eq!(read(self.store.account(&k))?, want, "account differs");
        }
        Ok(())
    }

    fn commit(&mut self, r: &mut Reader<'_>) -> Result<(), Died> {
        let (kind, count, change) = (r.byte(), r.byte(), r.byte());
        let (mut height, mut parent) = self.model.next();
        let mut txs: Vec<Tx> = (0..u64::from(count % 4)).map(|i| tx(self.next_tx + i)).collect();
        let mut expect_ok = true;
        match kind % 8 {
            0 => {
                height = Height(height.0 + 1);
                expect_ok = false;
            }
            1 => {
                parent = BlockHash(tally_crypto::Hash::digest(b"not the parent"));
                expect_ok = false;
            }
            2 => {
                // A tx already committed, or one twice in this block: the store takes it
                // (spent nonces keep it out of valid blocks; the store does not execute).
                let dup = match self.model.blocks.iter().rev().find_map(|b| b.txs.last()) {
                    Some(t) if change % 2 == 0 => Some(*t),
                    _ => txs.first().copied(),
                };
                txs.extend(dup);
            }
            _ => {}
        }
        let b = block(height, parent, txs);
        let mut cert = certificate(&b);
        if kind % 8 == 3 {
            cert.height = Height(cert.height.0 + 1);
            expect_ok = false;
        }
        let changes: BTreeMap<PublicKey, Account> = (0..change % 4)
            .map(|i| {
                let k = account_key((change / 4 + i) % (ACCOUNTS + 1));
                (k, Account { balance: u64::from(change) * 7 + u64::from(i), nonce: u64::from(i) })
            })
            .collect();
        match self.store.commit_block(&b, &cert, &changes) {
            Ok(()) => {
                assert!(expect_ok, "the store accepted a block it must refuse");
                self.next_tx += b.txs.len() as u64;
                self.model.apply(&b, &changes);
            }
            Err(CommitError::Db(_)) => {
                let how = if change % 2 == 0 { Crash::Process } else { Crash::PowerLoss };
                self.crash(how, expect_ok.then_some((b, changes)));
                // The txs may have landed: never reuse them.
                self.next_tx += 4;
            }
            Err(e) => {
                assert!(!expect_ok, "a valid commit was refused: {e}");
                assert!(
                    matches!(
                        e,
                        CommitError::WrongHeight { .. }
                            | CommitError::WrongParent { .. }
                            | CommitError::CertificateMismatch { .. }
                    ),
                    "unexpected refusal: {e}"
                );
            }
        }
        Ok(())
    }
}

pub fn run(data: &[u8]) {
    let mut r = Reader(data);
    let mut h = Harness::new();
    let mut ops = 0;
    while !r.0.is_empty() && ops < OPS_MAX {
        ops += 1;
        let op = r.byte();
        let outcome = match op % 6 {
            0..=2 => h.commit(&mut r),
            3 => {
                h.backend.fail_after(u64::from(r.byte()));
                Ok(())
            }
            4 => {
                let how = if r.byte() % 2 == 0 { Crash::Process } else { Crash::PowerLoss };
                h.crash(how, None);
                Ok(())
            }
            _ => h.check_all().and_then(|()| {
                assert_eq!(read(h.store.tip())?, h.model.tip());
                Ok(())
            }),
        };
        if outcome.is_err() {
            // A read hit the injected failure: the process dies without a commit in flight.
            h.crash(Crash::Process, None);
        }
    }
    if h.backend.failures() == 0 {
        h.crash(Crash::PowerLoss, None);
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        // Commits, a check, a power cut.
        vec![0, 4, 2, 9, 1, 6, 5, 2, 4, 0, 5, 4, 1],
        // Refused commits (gap, wrong parent, duplicate tx, wrong certificate).
        vec![0, 4, 3, 5, 0, 0, 1, 0, 1, 1, 1, 2, 1, 1, 0, 3, 2, 2, 5],
        // Failures armed at different points of a commit, both crash kinds.
        vec![0, 4, 2, 3, 3, 0, 5, 1, 8, 3, 20, 1, 4, 2, 4, 1, 9, 0, 6, 3, 60, 2, 4, 3, 5],
    ]
}
