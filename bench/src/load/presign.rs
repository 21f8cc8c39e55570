//! Every transfer of a run, signed before it starts (rayon, all cores), kept as one flat
//! buffer of txs in the base64 form the RPC takes (each `TX_BASE64` characters long) with
//! their hashes: the submitting threads send borrowed text and encode nothing while the
//! nodes they measure share their cores.

use base64::Engine as _;
use rayon::prelude::*;
use std::collections::HashMap;
use tally_crypto::{ChainId, Keypair, PublicKey};
use tally_ledger::{Transfer, Tx, TxHash, TX_BYTES};

/// Base64 characters of one encoded tx (`TX_BYTES` is a multiple of 3: no padding).
pub const TX_BASE64: usize = TX_BYTES / 3 * 4;

/// Maps keyed by tx hash, hashed with foldhash (seeded per process): the follower looks up
/// every committed tx, and SipHash was a visible part of the load generator's profile.
pub type HashIndex = HashMap<TxHash, u32, foldhash::fast::RandomState>;

pub struct Presigned {
    /// `count * TX_BASE64` ASCII characters: tx i at `i * TX_BASE64`.
    text: String,
    pub hashes: Vec<TxHash>,
    /// Tx index by hash, to recognise ours in committed blocks.
    pub index: HashIndex,
    /// Per connection, its tx indices in submission order.
    pub streams: Vec<Vec<u32>>,
}

impl Presigned {
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Tx `i` in base64, as `broadcast_tx_batch` takes it.
    pub fn tx_base64(&self, i: u32) -> &str {
        let at = i as usize * TX_BASE64;
        &self.text[at..at + TX_BASE64]
    }

    pub fn tx(&self, i: u32) -> Tx {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.tx_base64(i))
            .expect("base64 this process encoded");
        Tx::decode(&bytes).expect("a tx this process encoded")
    }
}

/// Signs `per_account` transfers of 1 from each of `keys` (starting at its next nonce in
/// `nonces`) to `recipient`, and splits them into `connections` streams by account.
pub fn presign(
    chain_id: &ChainId,
    keys: &[Keypair],
    nonces: &[u64],
    recipient: PublicKey,
    per_account: u64,
    connections: usize,
) -> Presigned {
    let accounts = keys.len();
    let count = accounts * per_account as usize;
    assert!(count <= u32::MAX as usize, "too many txs for one run");
    let mut text = vec![0u8; count * TX_BASE64];
    let hashes: Vec<TxHash> = text
        .par_chunks_mut(TX_BASE64)
        .enumerate()
        .map(|(i, out)| {
            let (a, j) = (i % accounts, (i / accounts) as u64);
            let transfer =
                Transfer { from: keys[a].public(), to: recipient, amount: 1, nonce: nonces[a] + j };
            let tx = Tx::sign(transfer, &keys[a], chain_id);
            let written = base64::engine::general_purpose::STANDARD
                .encode_slice(tx.encode(), out)
                .expect("TX_BASE64 characters hold one tx");
            debug_assert_eq!(written, TX_BASE64);
            tx.hash()
        })
        .collect();
    let text = String::from_utf8(text).expect("base64 is ASCII");
    let index = hashes.iter().enumerate().map(|(i, h)| (*h, i as u32)).collect();
    let connections = connections.max(1);
    let mut streams = vec![Vec::new(); connections];
    for j in 0..per_account as usize {
        for a in 0..accounts {
            streams[a % connections].push((j * accounts + a) as u32);
        }
    }
    Presigned { text, hashes, index, streams }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_holds_its_accounts_in_nonce_order() {
        let chain = ChainId::new("presign-test").expect("chain id");
        let keys: Vec<Keypair> =
            (0..5).map(|i| Keypair::derive_insecure(&format!("p/{i}"))).collect();
        let nonces = [0, 3, 0, 7, 1];
        let recipient = Keypair::derive_insecure("p/r").public();
        let pre = presign(&chain, &keys, &nonces, recipient, 4, 2);
        assert_eq!(pre.len(), 20);
        assert_eq!(pre.streams.iter().map(Vec::len).sum::<usize>(), 20);
        for stream in &pre.streams {
            let mut last: HashMap<PublicKey, u64> = HashMap::new();
            for &i in stream {
                let tx = pre.tx(i);
                assert_eq!(tx.hash(), pre.hashes[i as usize]);
                assert_eq!(pre.index[&tx.hash()], i);
                let from = tx.transfer.from;
                let a = keys.iter().position(|k| k.public() == from).expect("a sender");
                assert_eq!(a % 2, pre.streams.iter().position(|s| s == stream).expect("stream"));
                let expected = last.get(&from).map_or(nonces[a], |n| n + 1);
                assert_eq!(tx.transfer.nonce, expected);
                last.insert(from, tx.transfer.nonce);
            }
        }
    }
}
