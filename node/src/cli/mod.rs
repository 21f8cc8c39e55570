//! The command line: `tally testnet`, `tally start`, `tally tx transfer`, `tally verify`,
//! `tally snapshot`.
//!
//! The CLI room: every command but `start` lives here, and nothing imports it.

pub mod client;
pub mod snapshot;
pub mod testnet;
pub mod verify;

use crate::config::Home;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "tally",
    version,
    about = "tally: a Byzantine-fault-tolerant replicated ledger node"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a local testnet: keys, genesis and one home folder per validator.
    Testnet(testnet::TestnetArgs),
    /// Run a node from its home folder.
    Start(StartArgs),
    /// Build, sign and submit transactions over JSON-RPC.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Check, offline from the genesis file, that a tx or an account state is in the ledger.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// List, create, export and import snapshots of the account state.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The node's home folder (config.toml, genesis.json, keys/, data/).
    #[arg(long)]
    pub home: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum TxCommand {
    /// Transfer an amount from one account to another.
    Transfer(client::TransferArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Testnet(args) => testnet::write_testnet(&args),
        Command::Start(args) => {
            let home = Home::new(args.home);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("tally")
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(crate::run::run(home))
        }
        Command::Snapshot(command) => snapshot::run(command),
        Command::Verify(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(verify::run(command))
        }
        Command::Tx(TxCommand::Transfer(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(client::transfer(args))
        }
    }
}
