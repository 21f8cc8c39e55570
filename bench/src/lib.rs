//! tally-bench: criterion benches (`benches/`), shared fixtures for them, and the load
//! generator (`load`, the `loadgen` binary).

use tally_crypto::{signing_bytes, ChainId, Domain, Keypair, PublicKey, Signature};

/// `n` signed messages from `keys` distinct keys: (key, signed bytes, signature).
pub fn signed_messages(n: usize, keys: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
    let chain = ChainId::new("tally-bench").expect("valid chain id");
    let keypairs: Vec<Keypair> =
        (0..keys.max(1)).map(|i| Keypair::derive_insecure(&format!("bench/{i}"))).collect();
    (0..n)
        .map(|i| {
            let kp = &keypairs[i % keypairs.len()];
            let message = signing_bytes(Domain::Tx, &chain, &(i as u64).to_le_bytes());
            let signature = kp.sign_raw(&message);
            (kp.public(), message, signature)
        })
        .collect()
}

pub mod load;
