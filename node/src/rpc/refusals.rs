//! The codes of a refused tx (`code` in `broadcast_tx_*`, `check_tx` and
//! `broadcast_tx_batch` results, in codespace [`CODESPACE`]), stable across versions: a
//! client may act on them. The README lists them. They are `SubmitError::code()`; this file
//! names the codespace and the codes that are not about a tx.

/// CometBFT's `codespace` of every tally refusal.
pub const CODESPACE: &str = "tally";

/// `abci_query` of a path tally does not serve.
pub const UNKNOWN_PATH: u32 = 12;

/// Every code, its `data.reason` name and what it means, in code order (the README's table).
pub const TABLE: &[(u32, &str, &str)] = &[
    (1, "bad_tx", "the bytes do not decode as a tally tx (or are larger than TX_BYTES_MAX)"),
    (2, "malformed_tx", "the tx decodes but breaks a stateless rule (zero amount, to itself)"),
    (3, "bad_signature", "the signature does not verify for the sender's key and chain id"),
    (4, "already_known", "the tx is already in this node's mempool"),
    (5, "bad_nonce", "the nonce is not the sender's next (after its pending txs)"),
    (6, "insufficient_balance", "the amount is more than the balance left after pending txs"),
    (7, "mempool_full", "the mempool, or the sender's share of it, is full; retry later"),
    (8, "busy", "too many waiting calls (broadcast_tx_commit, broadcast_tx_async); retry"),
    (9, "syncing", "the node is catching up (block sync); submit elsewhere or retry"),
    (10, "shutting_down", "the node is stopping"),
    (11, "bad_encoding", "the tx parameter is not base64 (broadcast_tx_batch only)"),
    (12, "unknown_path", "abci_query of a path other than /account"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::SubmitError;
    use crate::chain::mempool::MempoolError;

    #[test]
    fn the_table_lists_each_refusals_code_and_reason() {
        let hash = tally_ledger::TxHash(tally_crypto::Hash([0; 32]));
        let every = [
            SubmitError::Decode("x".into()),
            SubmitError::Stateless(tally_ledger::StatelessError::ZeroAmount),
            SubmitError::Signature(tally_crypto::VerifyError::KeyEncoding),
            SubmitError::Mempool(MempoolError::AlreadyKnown(hash)),
            SubmitError::Mempool(MempoolError::BadNonce { expected: 1, got: 2 }),
            SubmitError::Mempool(MempoolError::InsufficientBalance { available: 0, amount: 1 }),
            SubmitError::Mempool(MempoolError::Full { txs: 1, bytes: 1 }),
            SubmitError::TooManyWaiters(1),
            SubmitError::Syncing,
            SubmitError::ShuttingDown,
            SubmitError::Encoding("x".into()),
        ];
        for e in &every {
            let row = TABLE.iter().find(|(code, _, _)| *code == e.code());
            assert_eq!(row.map(|r| r.1), Some(e.reason()), "{e}");
        }
        assert_eq!(TABLE.len(), every.len() + 1, "and unknown_path");
        assert!(TABLE
            .iter()
            .any(|(code, reason, _)| *code == UNKNOWN_PATH && *reason == "unknown_path"));
    }
}
