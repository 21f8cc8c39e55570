//! `tally`: the tally validator node and its command-line tools.

use clap::Parser as _;

/// jemalloc instead of the system allocator: glibc's malloc returned large buffers (block
/// encodings, tx batches) to the kernel and faulted fresh zeroed pages in for the next
/// ones, and its arenas kept growing under load (docs/performance.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
