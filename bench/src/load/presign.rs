//! Every transfer of a run, signed before it starts (rayon, all cores), kept as one flat
//! buffer of txs in the base64 form the RPC takes (each `TX_BASE64` characters long): the
//! submitting threads copy text and encode nothing while the nodes they measure share their
//! cores.
//!
//! A tx's place in the run follows from its sender and nonce (tx `i` is the `j`-th transfer
//! of account `a`, `i = j * accounts + a`), so a committed tx is recognised by decoding it and
//! comparing its text with ours at that place: no index by hash, whose millions of entries
//! made every lookup two cache misses.

use base64::Engine as _;
use rayon::prelude::*;
use std::collections::HashMap;
use tally_crypto::{ChainId, Keypair, PublicKey};
use tally_ledger::{Transfer, Tx, TX_BYTES};

/// Base64 characters of one encoded tx (`TX_BYTES` is a multiple of 3: no padding).
pub const TX_BASE64: usize = TX_BYTES / 3 * 4;

pub struct Presigned {
    /// `count * TX_BASE64` ASCII characters: tx i at `i * TX_BASE64`.
    text: String,
    count: usize,
    accounts: usize,
    per_account: u64,
    /// Each sender's position in the run's accounts and its first nonce of the run.
    senders: HashMap<PublicKey, (u32, u64), foldhash::fast::RandomState>,
    /// Per connection, its tx indices in submission order.
    pub streams: Vec<Vec<u32>>,
}

impl Presigned {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Tx `i` in base64, as `broadcast_tx_batch` takes it.
    pub fn tx_base64(&self, i: u32) -> &str {
        let at = i as usize * TX_BASE64;
        &self.text[at..at + TX_BASE64]
    }

    /// The place in the run of a tx given in base64 (as a block carries it), if it is ours.
    pub fn find(&self, base64: &str) -> Option<u32> {
        if base64.len() != TX_BASE64 {
            return None;
        }
        let mut bytes = [0u8; TX_BYTES];
        base64::engine::general_purpose::STANDARD.decode_slice(base64, &mut bytes).ok()?;
        let transfer = Tx::decode(&bytes).ok()?.transfer;
        let &(a, first) = self.senders.get(&transfer.from)?;
        let j = transfer.nonce.checked_sub(first).filter(|j| *j < self.per_account)?;
        let i = u32::try_from(j as usize * self.accounts + a as usize).ok()?;
        (self.tx_base64(i) == base64).then_some(i)
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
    text.par_chunks_mut(TX_BASE64).enumerate().for_each(|(i, out)| {
        let (a, j) = (i % accounts, (i / accounts) as u64);
        let transfer =
            Transfer { from: keys[a].public(), to: recipient, amount: 1, nonce: nonces[a] + j };
        let tx = Tx::sign(transfer, &keys[a], chain_id);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(tx.encode(), out)
            .expect("TX_BASE64 characters hold one tx");
        debug_assert_eq!(written, TX_BASE64);
    });
    let text = String::from_utf8(text).expect("base64 is ASCII");
    let senders = keys
        .iter()
        .zip(nonces)
        .enumerate()
        .map(|(a, (k, n))| (k.public(), (a as u32, *n)))
        .collect();
    let connections = connections.max(1);
    let mut streams = vec![Vec::new(); connections];
    for j in 0..per_account as usize {
        for a in 0..accounts {
            streams[a % connections].push((j * accounts + a) as u32);
        }
    }
    Presigned { text, count, accounts, per_account, senders, streams }
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
                assert_eq!(pre.find(pre.tx_base64(i)), Some(i));
                let from = tx.transfer.from;
                let a = keys.iter().position(|k| k.public() == from).expect("a sender");
                assert_eq!(a % 2, pre.streams.iter().position(|s| s == stream).expect("stream"));
                let expected = last.get(&from).map_or(nonces[a], |n| n + 1);
                assert_eq!(tx.transfer.nonce, expected);
                last.insert(from, tx.transfer.nonce);
            }
        }
    }

    #[test]
    fn only_the_runs_own_txs_are_found() {
        let chain = ChainId::new("presign-test").expect("chain id");
        let keys: Vec<Keypair> =
            (0..3).map(|i| Keypair::derive_insecure(&format!("q/{i}"))).collect();
        let recipient = Keypair::derive_insecure("q/r").public();
        let pre = presign(&chain, &keys, &[4, 0, 9], recipient, 5, 2);
        let engine = &base64::engine::general_purpose::STANDARD;
        let text = |tx: &Tx| engine.encode(tx.encode());
        let signed = |from: &Keypair, amount: u64, nonce: u64| {
            Tx::sign(Transfer { from: from.public(), to: recipient, amount, nonce }, from, &chain)
        };
        // Account 2's third transfer (nonce 9 + 2) is tx 2 * 3 + 2.
        assert_eq!(pre.find(&text(&signed(&keys[2], 1, 11))), Some(8));
        // The same sender and nonce with another amount, a nonce before or after the run's,
        // a sender outside the run, and text that is not a tx.
        assert_eq!(pre.find(&text(&signed(&keys[2], 2, 11))), None);
        assert_eq!(pre.find(&text(&signed(&keys[0], 1, 3))), None);
        assert_eq!(pre.find(&text(&signed(&keys[0], 1, 9))), None);
        assert_eq!(pre.find(&text(&signed(&Keypair::derive_insecure("q/x"), 1, 0))), None);
        assert_eq!(pre.find(&pre.tx_base64(3)[..100]), None);
        assert_eq!(pre.find(&"!".repeat(TX_BASE64)), None);
    }
}
