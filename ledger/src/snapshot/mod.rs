//! Snapshots of the account state: what a node writes every `snapshot_interval_blocks`, serves
//! to peers, exports for backups, and what a new node restores from instead of replaying every
//! block since genesis.
//!
//! A snapshot of height `h` is the account state after block `h`, cut into chunks, plus a
//! [`Manifest`] that names them by hash. It travels as a [`SnapshotOffer`]: the manifest with
//! the header of block `h` and that header's commit certificate, so that a node with nothing but
//! the genesis file can check it (rules in [`verify_offer`]):
//!
//! 1. the certificate carries valid precommits of more than 2/3 of the genesis voting power for
//!    the header's hash (the light client's [`crate::verify_header`]);
//! 2. the manifest's height, block hash and state root are the header's;
//! 3. every chunk hashes (tagged blake3) to the manifest's entry for its index;
//! 4. each chunk holds exactly its share of accounts, in strictly increasing state-key order,
//!    and the chunks follow each other in that order ([`Restore`]);
//! 5. the accounts rebuild a state tree whose root is the certified state root.
//!
//! Rules 1, 2 and 5 make a restored state exactly the certified one: a peer can cost a
//! syncing node time (a chunk that fails rule 3 or 4 is refetched from another peer, a
//! manifest that fails rule 5 is dropped with every peer that offered it), never correctness.
//! Chunking is deterministic (state-key order, [`CHUNK_ACCOUNTS`] a chunk), so honest nodes
//! produce byte-identical manifests for the same height and a syncing node can fetch the
//! chunks of one manifest from all of them.
//!
//! Byte layouts: docs/wire-format.md ("Snapshots"); files on disk: [`files`].

pub mod files;

use crate::account::Account;
use crate::block::Header;
use crate::codec::{decode_bounded, encode, DecodeError};
use crate::genesis::Genesis;
use crate::light::{verify_header, LightError};
use crate::state_tree::{state_key, StateTree};
use borsh::{BorshDeserialize, BorshSerialize};
use std::io::{self, Read};
use tally_consensus::{BlockHash, CommitCertificate, Height};
use tally_crypto::{ChainId, Hash, PublicKey, Verifier};

/// Version of the snapshot format (manifest, chunk and export layouts).
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Accounts in every chunk but the last, which holds the rest (1 to this many).
pub const CHUNK_ACCOUNTS: u32 = 8192;

/// Encoded bytes of one account entry in a chunk: public key (32) and account (16).
pub const ENTRY_BYTES: usize = 32 + Account::ENCODED_LEN;

/// Largest encoded chunk: the u32 count and [`CHUNK_ACCOUNTS`] entries (393,220 bytes).
pub const CHUNK_BYTES_MAX: usize = 4 + CHUNK_ACCOUNTS as usize * ENTRY_BYTES;

/// Most chunks a manifest may list: 16,384 chunks hold 134 million accounts.
pub const CHUNKS_MAX: u32 = 16_384;

/// Largest encoded [`SnapshotOffer`]: the manifest with [`CHUNKS_MAX`] hashes, a header and a
/// certificate of up to 1,024 signatures, with room to spare.
pub const OFFER_BYTES_MAX: usize = 1 << 20;

const CHUNK_TAG: &[u8] = b"tally/snapshot/chunk/v1";
const MANIFEST_TAG: &[u8] = b"tally/snapshot/manifest/v1";

/// What a snapshot holds, named by hash. Honest nodes write byte-identical manifests for the
/// same height.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize)]
pub struct Manifest {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    pub chain_id: ChainId,
    /// The state is the one after this block.
    pub height: Height,
    pub block_hash: BlockHash,
    /// The header's `state_root`.
    pub state_root: Hash,
    /// Number of accounts in all chunks.
    pub accounts: u64,
    /// `chunk_hash` of each chunk, in order; at most [`CHUNKS_MAX`].
    pub chunk_hashes: Vec<Hash>,
}

impl BorshDeserialize for Manifest {
    /// Reads the chunk count and rejects one over [`CHUNKS_MAX`] before reading any hash.
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        let format = u32::deserialize_reader(reader)?;
        let chain_id = ChainId::deserialize_reader(reader)?;
        let height = Height::deserialize_reader(reader)?;
        let block_hash = BlockHash::deserialize_reader(reader)?;
        let state_root = Hash::deserialize_reader(reader)?;
        let accounts = u64::deserialize_reader(reader)?;
        let count = u32::deserialize_reader(reader)?;
        if count > CHUNKS_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("manifest lists {count} chunks, more than the limit of {CHUNKS_MAX}"),
            ));
        }
        let mut chunk_hashes = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            chunk_hashes.push(Hash::deserialize_reader(reader)?);
        }
        Ok(Manifest { format, chain_id, height, block_hash, state_root, accounts, chunk_hashes })
    }
}

impl Manifest {
    /// `blake3("tally/snapshot/manifest/v1" || borsh(manifest))`: the snapshot's identity.
    pub fn hash(&self) -> Hash {
        Hash::digest_parts(&[MANIFEST_TAG, &encode(self)])
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u32 {
        u32::try_from(self.chunk_hashes.len()).expect("at most CHUNKS_MAX chunks")
    }

    /// Accounts chunk `index` must hold: [`CHUNK_ACCOUNTS`], the rest for the last one.
    pub fn chunk_len(&self, index: u32) -> u64 {
        let before = u64::from(index) * u64::from(CHUNK_ACCOUNTS);
        self.accounts.saturating_sub(before).min(u64::from(CHUNK_ACCOUNTS))
    }
}

/// A snapshot as peers offer it and as it is stored: the manifest, the header of its block
/// and that header's commit certificate.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotOffer {
    pub manifest: Manifest,
    pub header: Header,
    pub certificate: CommitCertificate,
}

impl SnapshotOffer {
    pub fn height(&self) -> Height {
        self.manifest.height
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes an offer from untrusted bytes, at most [`OFFER_BYTES_MAX`].
    pub fn decode(bytes: &[u8]) -> Result<SnapshotOffer, DecodeError> {
        decode_bounded(bytes, OFFER_BYTES_MAX, "snapshot offer")
    }
}

/// Why a snapshot offer, a chunk or a restored state is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot format {got}, this node reads format {supported}")]
    Format { got: u32, supported: u32 },
    #[error("snapshot is for chain {got:?}, this node is on {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("the header does not verify: {0}")]
    Header(#[from] LightError),
    #[error("manifest {field} does not match the certified header")]
    ManifestMismatch { field: &'static str },
    #[error("manifest lists {got} chunks; {accounts} accounts need {expected}")]
    ChunkCount { accounts: u64, expected: u64, got: u64 },
    #[error("chunk index {index} is out of range (the snapshot has {chunks} chunks)")]
    NoSuchChunk { index: u32, chunks: u32 },
    #[error("chunk {index} hashes to {got}, the manifest says {expected}")]
    ChunkHash { index: u32, expected: Hash, got: Hash },
    #[error("chunk {index} does not decode: {reason}")]
    ChunkMalformed { index: u32, reason: String },
    #[error("chunk {index} holds {got} accounts, it must hold {expected}")]
    ChunkLength { index: u32, expected: u64, got: u64 },
    #[error("chunk {index}: accounts are not in strictly increasing state-key order")]
    ChunkOrder { index: u32 },
    #[error("chunks {missing} of {chunks} are missing")]
    Incomplete { missing: u32, chunks: u32 },
    #[error("the accounts rebuild to state root {rebuilt}, the certified root is {certified}")]
    StateRoot { certified: Hash, rebuilt: Hash },
}

/// `blake3("tally/snapshot/chunk/v1" || chunk bytes)`.
pub fn chunk_hash(bytes: &[u8]) -> Hash {
    Hash::digest_parts(&[CHUNK_TAG, bytes])
}

/// Encodes one chunk: `count: u32 LE || count * (public key || borsh(account))`.
fn encode_chunk(entries: &[(PublicKey, Account)]) -> Vec<u8> {
    let count = u32::try_from(entries.len()).expect("at most CHUNK_ACCOUNTS per chunk");
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_BYTES);
    out.extend_from_slice(&count.to_le_bytes());
    for (public_key, account) in entries {
        out.extend_from_slice(&public_key.0);
        out.extend_from_slice(&account.balance.to_le_bytes());
        out.extend_from_slice(&account.nonce.to_le_bytes());
    }
    out
}

/// Decodes one chunk from untrusted bytes: the count is checked against [`CHUNK_ACCOUNTS`]
/// and the length against the count before any entry is read.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<(PublicKey, Account)>, String> {
    let (count, rest) = bytes.split_first_chunk::<4>().ok_or("shorter than its count")?;
    let count = u32::from_le_bytes(*count);
    if count > CHUNK_ACCOUNTS {
        return Err(format!("{count} accounts, more than the limit of {CHUNK_ACCOUNTS}"));
    }
    if rest.len() != count as usize * ENTRY_BYTES {
        return Err(format!("{} bytes for {count} accounts of {ENTRY_BYTES}", rest.len()));
    }
    let entries = rest
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| {
            let u64_at = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&entry[at..at + 8]);
                u64::from_le_bytes(b)
            };
            let mut key = [0u8; 32];
            key.copy_from_slice(&entry[..32]);
            (PublicKey(key), Account { balance: u64_at(32), nonce: u64_at(40) })
        })
        .collect();
    Ok(entries)
}

/// Cuts `state` (the state after `header`'s block) into chunks and writes their manifest.
/// The certificate must be the header's; [`verify_offer`] checks it on the receiving side.
pub fn make_snapshot(
    state: &StateTree,
    header: &Header,
    certificate: &CommitCertificate,
) -> (SnapshotOffer, Vec<Vec<u8>>) {
    assert_eq!(state.root(), header.state_root, "a snapshot is of the state its header commits");
    let accounts = state.accounts();
    let chunks: Vec<Vec<u8>> = accounts.chunks(CHUNK_ACCOUNTS as usize).map(encode_chunk).collect();
    let manifest = Manifest {
        format: SNAPSHOT_FORMAT,
        chain_id: header.chain_id.clone(),
        height: header.height,
        block_hash: header.hash(),
        state_root: header.state_root,
        accounts: accounts.len() as u64,
        chunk_hashes: chunks.iter().map(|c| chunk_hash(c)).collect(),
    };
    let offer =
        SnapshotOffer { manifest, header: header.clone(), certificate: certificate.clone() };
    (offer, chunks)
}

/// Checks an offer from an untrusted source against the genesis: the certificate, the
/// manifest's agreement with the header, and the chunk count (rules 1 and 2 of the module).
pub fn verify_offer(
    genesis: &Genesis,
    offer: &SnapshotOffer,
    verifier: &Verifier,
) -> Result<(), SnapshotError> {
    let m = &offer.manifest;
    if m.format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::Format { got: m.format, supported: SNAPSHOT_FORMAT });
    }
    if m.chain_id != genesis.chain_id {
        return Err(SnapshotError::WrongChain {
            expected: genesis.chain_id.to_string(),
            got: m.chain_id.to_string(),
        });
    }
    verify_header(genesis, &offer.header, &offer.certificate, verifier)?;
    let mismatch = |field| Err(SnapshotError::ManifestMismatch { field });
    if m.height != offer.header.height {
        return mismatch("height");
    }
    if m.block_hash != offer.header.hash() {
        return mismatch("block hash");
    }
    if m.state_root != offer.header.state_root {
        return mismatch("state root");
    }
    let expected = m.accounts.div_ceil(u64::from(CHUNK_ACCOUNTS));
    let got = m.chunk_hashes.len() as u64;
    if got != expected {
        return Err(SnapshotError::ChunkCount { accounts: m.accounts, expected, got });
    }
    Ok(())
}

/// A restore in progress: chunks arrive in any order from any source, each is checked on
/// arrival (rules 3 and 4), and [`Restore::finish`] checks the whole (rule 5).
#[derive(Debug)]
pub struct Restore {
    manifest: Manifest,
    /// Decoded chunks by index; `None` until received.
    chunks: Vec<Option<Vec<(PublicKey, Account)>>>,
    received: u32,
}

impl Restore {
    /// Starts restoring the snapshot of a manifest that [`verify_offer`] accepted.
    pub fn new(manifest: Manifest) -> Restore {
        let chunks = vec![None; manifest.chunk_hashes.len()];
        Restore { manifest, chunks, received: 0 }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Indices of the chunks not received yet, in order.
    pub fn missing(&self) -> Vec<u32> {
        (0..self.manifest.chunks()).filter(|&i| self.chunks[i as usize].is_none()).collect()
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.manifest.chunks()
    }

    /// Checks chunk `index` and keeps it. A chunk received twice is checked again and kept
    /// once. On error nothing is kept: fetch the chunk from another source.
    pub fn add_chunk(&mut self, index: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let chunks = self.manifest.chunks();
        let Some(&expected) = self.manifest.chunk_hashes.get(index as usize) else {
            return Err(SnapshotError::NoSuchChunk { index, chunks });
        };
        let got = chunk_hash(bytes);
        if got != expected {
            return Err(SnapshotError::ChunkHash { index, expected, got });
        }
        let entries = decode_chunk(bytes)
            .map_err(|reason| SnapshotError::ChunkMalformed { index, reason })?;
        let expected_len = self.manifest.chunk_len(index);
        if entries.len() as u64 != expected_len {
            return Err(SnapshotError::ChunkLength {
                index,
                expected: expected_len,
                got: entries.len() as u64,
            });
        }
        let keys: Vec<Hash> = entries.iter().map(|(pk, _)| state_key(pk)).collect();
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SnapshotError::ChunkOrder { index });
        }
        let slot = &mut self.chunks[index as usize];
        if slot.is_none() {
            self.received += 1;
        }
        *slot = Some(entries);
        Ok(())
    }

    /// Every chunk is here: checks the order across chunks and that the accounts rebuild the
    /// certified state root, and returns the state tree (O(n) hashes).
    pub fn finish(self) -> Result<(StateTree, Vec<(PublicKey, Account)>), SnapshotError> {
        let chunks = self.manifest.chunks();
        if !self.is_complete() {
            return Err(SnapshotError::Incomplete { missing: chunks - self.received, chunks });
        }
        let mut accounts = Vec::with_capacity(self.manifest.accounts as usize);
        let mut last_key: Option<Hash> = None;
        for (index, chunk) in self.chunks.into_iter().enumerate() {
            let chunk = chunk.expect("complete");
            if let (Some(last), Some((first, _))) = (last_key, chunk.first()) {
                if state_key(first) <= last {
                    return Err(SnapshotError::ChunkOrder { index: index as u32 });
                }
            }
            last_key = chunk.last().map(|(pk, _)| state_key(pk)).or(last_key);
            accounts.extend(chunk);
        }
        let state = StateTree::from_accounts(accounts.iter().copied());
        if state.root() != self.manifest.state_root {
            return Err(SnapshotError::StateRoot {
                certified: self.manifest.state_root,
                rebuilt: state.root(),
            });
        }
        Ok((state, accounts))
    }
}
