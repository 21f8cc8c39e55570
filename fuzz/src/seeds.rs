//! Writing a target's seed corpus. Every target calls [`write_if_requested`] from its libFuzzer
//! init hook, so regenerating the committed corpus needs no extra binary (and no extra build):
//!
//! ```text
//! TALLY_FUZZ_WRITE_SEEDS=corpus/wire_decode cargo +nightly fuzz run wire_decode
//! ```

use std::path::Path;

/// The environment variable naming the directory to write seeds into.
pub const ENV: &str = "TALLY_FUZZ_WRITE_SEEDS";

/// If [`ENV`] is set, writes `seeds()` into that directory (one file per seed, named
/// `seed-NN`) and exits the process; otherwise does nothing.
pub fn write_if_requested(seeds: fn() -> Vec<Vec<u8>>) {
    let Some(dir) = std::env::var_os(ENV) else { return };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("seed directory can be created");
    for (i, seed) in seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("seed file can be written");
    }
    eprintln!("wrote {} seeds to {}", seeds().len(), dir.display());
    std::process::exit(0);
}
