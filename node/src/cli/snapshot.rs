//! `tally snapshot`: list, create, export and import snapshots of a node's account state.
//!
//! `create` and `import` open the node's ledger, so the node must be stopped (redb holds an
//! exclusive lock on its file); `list` and `export` read only `data/snapshots/` and work while
//! the node runs. `import` trusts nothing in the file: the header's certificate is checked
//! against the genesis and every chunk against the manifest, and the accounts must rebuild
//! the certified state root, before anything is written.

use crate::config::Home;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use tally_consensus::Height;
use tally_crypto::{Verifier, VerifierConfig};
use tally_ledger::snapshot::files::read_export;
use tally_ledger::snapshot::make_snapshot;
use tally_ledger::{verify_offer, Genesis, Ledger, Restore, SnapshotDir};

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// The snapshots in HOME/data/snapshots, newest last.
    List(HomeArg),
    /// Write a snapshot of the ledger's tip now (the node must be stopped).
    Create(HomeArg),
    /// Write a stored snapshot (the newest unless --height) to one file, for backups.
    Export(ExportArgs),
    /// Restore a node with an empty ledger from an exported snapshot file (node stopped).
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct HomeArg {
    /// The node's home folder.
    #[arg(long)]
    pub home: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub home: PathBuf,
    /// The snapshot's height; the newest stored one if absent.
    #[arg(long)]
    pub height: Option<u64>,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[arg(long)]
    pub home: PathBuf,
    /// A file written by `tally snapshot export`.
    #[arg(long)]
    pub file: PathBuf,
}

pub fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::List(args) => list(&Home::new(args.home)),
        SnapshotCommand::Create(args) => create(&Home::new(args.home)),
        SnapshotCommand::Export(args) => export(&args),
        SnapshotCommand::Import(args) => import(&args),
    }
}

fn list(home: &Home) -> anyhow::Result<()> {
    let dir = SnapshotDir::open(home.snapshots())?;
    for height in dir.heights()? {
        match dir.offer(height) {
            Ok(offer) => println!(
                "{:>10}  accounts {:>10}  chunks {:>5}  state root {}  manifest {}",
                height.0,
                offer.manifest.accounts,
                offer.manifest.chunks(),
                offer.manifest.state_root,
                offer.manifest.hash()
            ),
            Err(e) => println!("{:>10}  unreadable: {e}", height.0),
        }
    }
    Ok(())
}

fn create(home: &Home) -> anyhow::Result<()> {
    let genesis = Genesis::load(&home.genesis()).context("loading genesis.json")?;
    let ledger = Ledger::open(&home.ledger_db(), genesis)
        .context("opening the ledger (is the node still running?)")?;
    let Some((height, _)) = ledger.tip() else {
        bail!("the ledger holds no block yet: nothing to snapshot");
    };
    let store = ledger.store();
    let header = store.header(height)?.context("the tip's header is missing")?;
    let certificate = store.certificate(height)?.context("the tip's certificate is missing")?;
    let started = Instant::now();
    let (offer, chunks) = make_snapshot(ledger.state(), &header, &certificate);
    let dir = SnapshotDir::open(home.snapshots())?;
    dir.write(&offer, &chunks)?;
    println!(
        "snapshot of height {} written: {} accounts in {} chunks, {} ms",
        height.0,
        offer.manifest.accounts,
        chunks.len(),
        started.elapsed().as_millis()
    );
    Ok(())
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let home = Home::new(args.home.clone());
    let dir = SnapshotDir::open(home.snapshots())?;
    let height = match args.height {
        Some(h) => Height(h),
        None => *dir
            .heights()?
            .last()
            .context("no snapshot stored; `tally snapshot create` writes one")?,
    };
    let started = Instant::now();
    let bytes = dir.export(height, &args.out)?;
    println!(
        "exported the snapshot of height {} to {}: {bytes} bytes, {} ms",
        height.0,
        args.out.display(),
        started.elapsed().as_millis()
    );
    Ok(())
}

fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let home = Home::new(args.home.clone());
    let genesis = Genesis::load(&home.genesis()).context("loading genesis.json")?;
    let started = Instant::now();
    let (offer, chunks) = read_export(&args.file)?;
    let verifier = Verifier::new(VerifierConfig::default());
    verify_offer(&genesis, &offer, &verifier).context("the snapshot's header does not verify")?;
    let mut restore = Restore::new(offer.manifest.clone());
    for (index, chunk) in chunks.iter().enumerate() {
        restore.add_chunk(index as u32, chunk)?;
    }
    let (state, accounts) = restore.finish()?;
    std::fs::create_dir_all(home.data()).context("creating the data folder")?;
    let mut ledger = Ledger::open(&home.ledger_db(), genesis)
        .context("opening the ledger (is the node still running?)")?;
    if let Some((tip, _)) = ledger.tip() {
        bail!("the ledger already holds blocks up to {tip}; import needs an empty data folder");
    }
    ledger.install_snapshot(&offer, state, &accounts)?;
    SnapshotDir::open(home.snapshots())?.write(&offer, &chunks)?;
    println!(
        "imported the snapshot of height {}: {} accounts, state root {}, {} ms",
        offer.height().0,
        accounts.len(),
        offer.manifest.state_root,
        started.elapsed().as_millis()
    );
    Ok(())
}
