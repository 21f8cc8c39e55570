//! `tally`: the tally validator node and its command-line tools.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = tally_node::cli::Cli::parse();
    match tally_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
