//! The verifier a node keeps: key cache, verified-signature cache, rayon-parallel batches.

use crate::batch::verify_batch;
use crate::cache::{KeyCache, SigCache};
use crate::verify::{verify_parsed, ParsedKey, VerifyError};
use crate::{Hash, PublicKey, Signature};
use rayon::prelude::*;

/// The fewest signatures `verify_many` gives one rayon thread. A batch's cost per signature
/// falls with its size (one thread, `cargo bench -p tally-bench --bench crypto -- batch`:
/// 72k signatures/s at 64, 100k at 256, 112k at 1,024), so splitting a small batch across
/// threads buys a little latency with a lot of throughput; on a loaded node the other cores
/// have other work.
const PARALLEL_CHUNK_MIN: usize = 256;

/// One signature to check: `message` is the exact signed bytes ([`crate::signing_bytes`]).
#[derive(Clone, Copy, Debug)]
pub struct SignedItem<'a> {
    pub key: &'a PublicKey,
    pub message: &'a [u8],
    pub signature: &'a Signature,
}

#[derive(Clone, Copy, Debug)]
pub struct VerifierConfig {
    /// Decompressed public keys kept (one per active account or validator).
    pub key_cache_max: usize,
    /// Verified signatures remembered (at least the mempool's capacity, so that block
    /// validation finds every tx that the mempool verified).
    pub sig_cache_max: usize,
    /// Most signatures per batch handed to one rayon task. `verify_many` splits its input
    /// evenly over rayon's threads in batches of at most this many: larger batches verify
    /// more signatures per second (Pippenger's multiscalar multiplication), and an even split
    /// keeps every core busy.
    pub batch_size: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig { key_cache_max: 1 << 20, sig_cache_max: 1 << 20, batch_size: 1024 }
    }
}

pub struct Verifier {
    keys: KeyCache,
    sigs: SigCache,
    batch_size: usize,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Verifier {
        assert!(config.batch_size > 0, "batch_size must be positive");
        Verifier {
            keys: KeyCache::new(config.key_cache_max),
            sigs: SigCache::new(config.sig_cache_max),
            batch_size: config.batch_size,
        }
    }

    pub fn key_cache(&self) -> &KeyCache {
        &self.keys
    }

    pub fn sig_cache(&self) -> &SigCache {
        &self.sigs
    }

    /// Verifies one signature, using and filling both caches.
    pub fn verify(&self, item: SignedItem<'_>) -> Result<(), VerifyError> {
        let digest = SigCache::digest(item.key, item.message, item.signature);
        if self.sigs.contains(&digest) {
            return Ok(());
        }
        let key = self.keys.parse(item.key)?;
        verify_parsed(&key, item.message, item.signature)?;
        self.sigs.insert(digest);
        Ok(())
    }

    /// Verifies every item, in batches spread over rayon's threads (at least
    /// `PARALLEL_CHUNK_MIN` signatures per thread); the result at index i is item i's
    /// verdict. Items found in the verified-signature cache are not verified again; those
    /// verified now are added to it.
    pub fn verify_many(&self, items: &[SignedItem<'_>]) -> Vec<Result<(), VerifyError>> {
        self.verify_many_with(items, true)
    }

    /// [`Verifier::verify_many`] without the verified-signature cache: for items that are
    /// new to the caller (a node's tx admission, which keeps what it verified in its
    /// mempool), where probing and filling the cache costs a digest of each item for
    /// nothing.
    pub fn verify_many_uncached(&self, items: &[SignedItem<'_>]) -> Vec<Result<(), VerifyError>> {
        self.verify_many_with(items, false)
    }

    fn verify_many_with(
        &self,
        items: &[SignedItem<'_>],
        cached: bool,
    ) -> Vec<Result<(), VerifyError>> {
        let mut out = vec![Ok(()); items.len()];
        let chunks = (items.len() / PARALLEL_CHUNK_MIN).clamp(1, rayon::current_num_threads());
        let chunk = items.len().div_ceil(chunks).clamp(1, self.batch_size);
        out.par_chunks_mut(chunk)
            .zip(items.par_chunks(chunk))
            .for_each(|(verdicts, chunk)| self.verify_chunk(chunk, verdicts, cached));
        out
    }

    fn verify_chunk(
        &self,
        chunk: &[SignedItem<'_>],
        verdicts: &mut [Result<(), VerifyError>],
        cached: bool,
    ) {
        let mut pending: Vec<(usize, Option<Hash>, ParsedKey)> = Vec::with_capacity(chunk.len());
        for (i, item) in chunk.iter().enumerate() {
            let digest = cached.then(|| SigCache::digest(item.key, item.message, item.signature));
            if digest.is_some_and(|d| self.sigs.contains(&d)) {
                continue;
            }
            match self.keys.parse(item.key) {
                Ok(key) => pending.push((i, digest, key)),
                Err(e) => verdicts[i] = Err(e),
            }
        }
        let batch: Vec<(&ParsedKey, &[u8], &Signature)> = pending
            .iter()
            .map(|(i, _, key)| (key, chunk[*i].message, chunk[*i].signature))
            .collect();
        let failures = verify_batch(&batch).err().map(|e| e.failures).unwrap_or_default();
        let mut failed = failures.iter().peekable();
        let mut verified = Vec::with_capacity(if cached { pending.len() } else { 0 });
        for (pos, (i, digest, _)) in pending.iter().enumerate() {
            match failed.peek() {
                Some((bad, err)) if *bad == pos => {
                    verdicts[*i] = Err(*err);
                    failed.next();
                }
                _ => verified.extend(*digest),
            }
        }
        if cached {
            self.sigs.insert_many(verified);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{signing_bytes, ChainId, Domain, Keypair};

    #[test]
    fn verify_many_matches_single_and_fills_cache() {
        let chain = ChainId::new("c").unwrap();
        let kps: Vec<Keypair> = (0..5).map(|i| Keypair::derive_insecure(&i.to_string())).collect();
        let mut msgs = Vec::new();
        let mut sigs = Vec::new();
        let mut keys = Vec::new();
        for i in 0..100u32 {
            let kp = &kps[i as usize % 5];
            let m = signing_bytes(Domain::Tx, &chain, &i.to_le_bytes());
            sigs.push(kp.sign_raw(&m));
            msgs.push(m);
            keys.push(kp.public());
        }
        sigs[42].0[40] ^= 1;
        let v = Verifier::new(VerifierConfig { batch_size: 16, ..Default::default() });
        let items: Vec<SignedItem<'_>> = (0..100)
            .map(|i| SignedItem { key: &keys[i], message: &msgs[i], signature: &sigs[i] })
            .collect();
        let verdicts = v.verify_many(&items);
        for (i, verdict) in verdicts.iter().enumerate() {
            assert_eq!(verdict.is_ok(), i != 42, "item {i}");
            assert_eq!(*verdict, v.verify(items[i]));
        }
        assert_eq!(v.sig_cache().len(), 99);
        assert_eq!(v.key_cache().len(), 5);

        // Uncached: the same verdicts, and the signature cache is neither read nor filled.
        let fresh = Verifier::new(VerifierConfig { batch_size: 16, ..Default::default() });
        assert_eq!(fresh.verify_many_uncached(&items), verdicts);
        assert_eq!(fresh.sig_cache().len(), 0);
        assert_eq!(fresh.key_cache().len(), 5);
    }
}
