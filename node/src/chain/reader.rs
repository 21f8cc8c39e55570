//! [`ChainReader`]: the read-only side of the chain, for queries (the RPC, block sync
//! serving, the metrics). It can take the locks only to read, and answers up to the tip:
//! a block the store already holds while the state has not moved to it yet is not found.

use super::Chain;
use std::sync::Arc;
use tally_consensus::{BlockHash, CommitCertificate, Height};
use tally_crypto::{Hash, PublicKey};
use tally_ledger::{
    store::ReadError, Account, AccountProof, Block, Header, Tx, TxHash, TxIndexError, TxProof,
};

/// A committed tx, found by hash.
pub struct FoundTx {
    pub height: Height,
    pub index: u32,
    pub tx: Tx,
    /// With `prove`: the tx's Merkle proof and the root of its block's tx tree.
    pub proof: Option<(TxProof, Hash)>,
}

/// An account at the tip, with what the mempool adds.
pub struct AccountView {
    /// The committed account; zeros when it does not exist (`exists` says which).
    pub account: Account,
    /// Whether the state holds this account (an account exists once it received funds).
    pub exists: bool,
    pub height: u64,
    /// The nonce a new tx of this sender needs (after its pending txs).
    pub next_nonce: u64,
    /// With `prove`: whether the account is present, the state root and the proof.
    pub proof: Option<(bool, Hash, AccountProof)>,
}

/// The tip, for `status`.
pub struct TipView {
    pub tip: Option<(Height, BlockHash)>,
    pub header: Option<Header>,
    /// The first height whose block this node holds, and its header (none before the first
    /// block).
    pub earliest: (u64, Option<Header>),
}

/// Why a query failed (a store read; never the caller's fault).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    TxIndex(#[from] TxIndexError),
    #[error("the store is inconsistent: {0}")]
    Inconsistent(String),
}

/// Read-only access to the chain (cheap to clone).
#[derive(Clone)]
pub struct ChainReader {
    chain: Arc<Chain>,
}

impl ChainReader {
    pub(super) fn new(chain: Arc<Chain>) -> ChainReader {
        ChainReader { chain }
    }

    pub fn genesis(&self) -> &tally_ledger::Genesis {
        self.chain.genesis()
    }

    pub fn validators(&self) -> &tally_consensus::ValidatorSet {
        self.chain.validators()
    }

    /// The node's signature verifier (for checks outside the admission path: evidence).
    pub fn verifier(&self) -> &tally_crypto::Verifier {
        self.chain.verifier()
    }

    pub fn tip_height(&self) -> Option<Height> {
        self.chain.tip_height()
    }

    pub fn block(&self, h: Height) -> Result<Option<Block>, QueryError> {
        Ok(self.chain.ledger.read().store().block(h)?)
    }

    pub fn header(&self, h: Height) -> Result<Option<Header>, QueryError> {
        Ok(self.chain.ledger.read().store().header(h)?)
    }

    pub fn certificate(&self, h: Height) -> Result<Option<CommitCertificate>, QueryError> {
        Ok(self.chain.ledger.read().store().certificate(h)?)
    }

    /// The height of the snapshot the store was restored from, if it was.
    pub fn base(&self) -> Option<Height> {
        self.chain.ledger.read().store().base().ok().flatten()
    }

    /// A committed block by hash.
    pub fn block_by_hash(&self, hash: Hash) -> Result<Option<Block>, QueryError> {
        let ledger = self.chain.ledger.read();
        let block = ledger.store().block_by_hash(&BlockHash(hash))?;
        Ok(block.filter(|b| ledger.tip().is_some_and(|(tip, _)| b.header.height <= tip)))
    }

    /// Blocks with their certificates from `from` on, at most `count` of them and about
    /// `bytes_max` bytes of blocks; stops at the first height the store lacks.
    pub fn blocks_from(
        &self,
        from: Height,
        count: u32,
        bytes_max: usize,
    ) -> Vec<(Block, CommitCertificate)> {
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        for h in from.0..from.0.saturating_add(u64::from(count)) {
            let ledger = self.chain.ledger.read();
            let store = ledger.store();
            match (store.block(Height(h)), store.certificate(Height(h))) {
                (Ok(Some(b)), Ok(Some(c))) => {
                    bytes += b.encoded_len();
                    blocks.push((b, c));
                }
                _ => break,
            }
            if bytes >= bytes_max {
                break;
            }
        }
        blocks
    }

    /// A committed tx by hash, with its Merkle proof when `prove`.
    pub fn tx(&self, hash: TxHash, prove: bool) -> Result<Option<FoundTx>, QueryError> {
        let ledger = self.chain.ledger.read();
        let Some((height, index, tx)) = ledger.tx(&hash)? else { return Ok(None) };
        // The tx index holds a block's txs as soon as its write lands, a moment before the
        // state (and `status`) move to it: until then the tx is not reported.
        if ledger.tip().is_none_or(|(tip, _)| height > tip) {
            return Ok(None);
        }
        let proof = if prove {
            let block = ledger.store().block(height)?.ok_or_else(|| {
                QueryError::Inconsistent(format!("tx index points at missing block {height}"))
            })?;
            let hashes: Vec<TxHash> = block.txs.iter().map(Tx::hash).collect();
            let proof = tally_ledger::tx_proof(&hashes, index).ok_or_else(|| {
                QueryError::Inconsistent(format!("tx index {index} outside block {height}"))
            })?;
            Some((proof, block.header.tx_root))
        } else {
            None
        };
        Ok(Some(FoundTx { height, index, tx, proof }))
    }

    /// The committed account at the tip; with `prove`, its proof of presence or absence
    /// under the tip header's state root (read under one ledger lock, so the proof, the
    /// account and the height belong together).
    pub fn account(&self, key: &PublicKey, prove: bool) -> AccountView {
        let mempool = self.chain.mempool.lock();
        let ledger = self.chain.ledger.read();
        let account = ledger.account(key);
        let exists = ledger.state().get(key).is_some();
        let proof = if prove {
            let (_, proof) = ledger.account_with_proof(key);
            Some((exists, ledger.state().root(), proof))
        } else {
            None
        };
        let height = ledger.tip().map_or(0, |(h, _)| h.0);
        let next_nonce = mempool.next_nonce(key, &account);
        AccountView { next_nonce, account, exists, height, proof }
    }

    /// Pending txs and their bytes.
    pub fn mempool_size(&self) -> (usize, u64) {
        let m = self.chain.mempool.lock();
        (m.len(), m.bytes())
    }

    /// Up to `limit` pending txs, oldest first.
    pub fn pending_txs(&self, limit: usize) -> Vec<Tx> {
        self.chain.oldest_pending(limit)
    }

    pub fn tip(&self) -> TipView {
        let ledger = self.chain.ledger.read();
        let tip = ledger.tip();
        let header = tip.and_then(|(h, _)| ledger.store().header(h).ok().flatten());
        let first = match ledger.store().base().ok().flatten() {
            Some(base) => base.next().0,
            None => u64::from(tip.is_some()),
        };
        let first_header = match first {
            0 => None,
            h => ledger.store().header(Height(h)).ok().flatten(),
        };
        TipView { tip, header, earliest: (first, first_header) }
    }
}
