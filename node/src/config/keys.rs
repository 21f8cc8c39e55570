//! Key files: `keys/validator_key.json` (signs proposals and votes) and `keys/node_key.json`
//! (the libp2p identity). Both hold a 32-byte ed25519 seed in hex and are written with mode
//! 0600.

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tally_crypto::{Keypair, PublicKey};

#[derive(Serialize, Deserialize)]
struct KeyFile {
    public_key: PublicKey,
    secret_seed: String,
}

pub fn save_key(path: &Path, keypair: &Keypair) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = KeyFile { public_key: keypair.public(), secret_seed: hex::encode(keypair.seed()) };
    let text = serde_json::to_string_pretty(&file).context("encoding key file")?;
    write_private(path, text.as_bytes())
}

pub fn load_key(path: &Path) -> anyhow::Result<Keypair> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: KeyFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(file.secret_seed.trim(), &mut seed)
        .with_context(|| format!("{}: secret_seed is not 64 hex characters", path.display()))?;
    let keypair = Keypair::from_seed(seed);
    if keypair.public() != file.public_key {
        bail!("{}: public_key does not match secret_seed", path.display());
    }
    Ok(keypair)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/k.json");
        let kp = Keypair::derive_insecure("x");
        save_key(&path, &kp).unwrap();
        assert_eq!(load_key(&path).unwrap().public(), kp.public());
        let text = std::fs::read_to_string(&path).unwrap();
        let other = Keypair::derive_insecure("y").public().to_hex();
        std::fs::write(&path, text.replace(&kp.public().to_hex(), &other)).unwrap();
        assert!(load_key(&path).unwrap_err().to_string().contains("does not match"));
    }
}
