//! Every transfer of a run, signed before it starts (rayon, all cores), kept as one flat
//! buffer of encoded txs (each `TX_BYTES` long) with their hashes.

use rayon::prelude::*;
use std::collections::HashMap;
use tally_crypto::{ChainId, Keypair, PublicKey};
use tally_ledger::{Transfer, Tx, TxHash, TX_BYTES};

pub struct Presigned {
    /// `count * TX_BYTES` bytes: tx i at `i * TX_BYTES`.
    bytes: Vec<u8>,
    pub hashes: Vec<TxHash>,
    /// Tx index by hash, to recognise ours in committed blocks.
    pub index: HashMap<TxHash, u32>,
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

    pub fn tx_bytes(&self, i: u32) -> &[u8] {
        let at = i as usize * TX_BYTES;
        &self.bytes[at..at + TX_BYTES]
    }

    pub fn tx(&self, i: u32) -> Tx {
        Tx::decode(self.tx_bytes(i)).expect("a tx this process encoded")
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
    let mut bytes = vec![0u8; count * TX_BYTES];
    let hashes: Vec<TxHash> = bytes
        .par_chunks_mut(TX_BYTES)
        .enumerate()
        .map(|(i, out)| {
            let (a, j) = (i % accounts, (i / accounts) as u64);
            let transfer =
                Transfer { from: keys[a].public(), to: recipient, amount: 1, nonce: nonces[a] + j };
            let tx = Tx::sign(transfer, &keys[a], chain_id);
            out.copy_from_slice(&tx.encode());
            tx.hash()
        })
        .collect();
    let index = hashes.iter().enumerate().map(|(i, h)| (*h, i as u32)).collect();
    let connections = connections.max(1);
    let mut streams = vec![Vec::new(); connections];
    for j in 0..per_account as usize {
        for a in 0..accounts {
            streams[a % connections].push((j * accounts + a) as u32);
        }
    }
    Presigned { bytes, hashes, index, streams }
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
