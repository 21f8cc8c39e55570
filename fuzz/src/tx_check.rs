//! Target `tx_check`: a transaction as `broadcast_tx_*` receives it, after base64: decode,
//! the stateless checks, then the signature under the chain id.
//!
//! Oracles: no panic; what decodes re-encodes to the same bytes and has a stable hash; the
//! stateless check refuses exactly a zero amount or a self transfer; the cached, batching
//! `Verifier` agrees with the plain `verify` on the tx's signing bytes.

use crate::fixtures::{chain_id, signed_tx};
use std::sync::OnceLock;
use tally_crypto::{verify, ChainId, Hash, SignedItem, Verifier, VerifierConfig};
use tally_ledger::{StatelessError, Tx, TX_BYTES_MAX};

struct Env {
    chain_id: ChainId,
    verifier: Verifier,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env {
        chain_id: chain_id(),
        verifier: Verifier::new(VerifierConfig::default()),
    })
}

pub fn run(data: &[u8]) {
    let Ok(tx) = Tx::decode(data) else {
        return;
    };
    assert!(data.len() <= TX_BYTES_MAX, "decoded a tx longer than the limit");
    assert_eq!(tx.encode(), data, "a tx has one encoding");
    assert_eq!(tx.hash().0, Hash::digest(data), "the tx hash is the hash of its bytes");
    let t = &tx.transfer;
    let expected = if t.amount == 0 {
        Err(StatelessError::ZeroAmount)
    } else if t.from == t.to {
        Err(StatelessError::SelfTransfer)
    } else {
        Ok(())
    };
    assert_eq!(tx.check_stateless(), expected);
    if expected.is_err() {
        return;
    }
    let env = env();
    let message = tx.signing_bytes(&env.chain_id);
    let single = verify(&tx.transfer.from, &message, &tx.signature);
    let item = SignedItem { key: &tx.transfer.from, message: &message, signature: &tx.signature };
    // Twice: the second answer may come from the verifier's cache and must not differ.
    assert_eq!(env.verifier.verify(item), single, "verifier disagrees with verify");
    assert_eq!(env.verifier.verify(item), single, "cached verdict differs");
}

pub fn seeds() -> Vec<Vec<u8>> {
    let good = signed_tx(1, 2, 10, 0);
    let mut bad_sig = signed_tx(2, 3, 1, 7);
    bad_sig.signature.0[40] ^= 1;
    let mut zero = signed_tx(1, 2, 1, 0);
    zero.transfer.amount = 0;
    let mut to_self = signed_tx(4, 4, 3, 1);
    to_self.transfer.to = to_self.transfer.from;
    let mut truncated = good.encode();
    truncated.pop();
    vec![good.encode(), bad_sig.encode(), zero.encode(), to_self.encode(), truncated]
}
