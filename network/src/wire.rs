//! The wire format of every message tally's nodes exchange: gossip (consensus messages, tx
//! batches) and block sync (requests and responses).
//!
//! Layout (this comment is the reference; every integer is little-endian):
//!
//! ```text
//! envelope      = version: u8 (= WIRE_VERSION) || borsh(Message)
//! Message       = 0 Consensus(ConsensusMsg) | 1 TxBatch | 2 SyncRequest | 3 SyncResponse
//! ConsensusMsg  = 0 Proposal { SignedProposal, Block } | 1 Vote(SignedVote)
//!               | 2 Certificate { CommitCertificate, Block }
//!               | 3 CompactProposal { SignedProposal, CompactBlock }
//! CompactBlock  = Header || count: u32 (<= BLOCK_TXS_MAX) || count * TxHash (32 bytes)
//! TxBatch       = count: u32 (<= TX_BATCH_TXS_MAX) || count * Tx
//! SyncRequest   = 0 Blocks { from: Height (u64), count: u32 (<= SYNC_BLOCKS_MAX) }
//!               | 1 Snapshots
//!               | 2 SnapshotChunk { height: Height (u64), index: u32 (< CHUNKS_MAX) }
//!               | 3 BlockTxs { height: Height (u64), block: BlockHash (32 bytes),
//!                              count: u32 (<= BLOCK_TXS_MAX) || count * index: u32 }
//! SyncResponse  = 0 Blocks(count: u32 (<= SYNC_BLOCKS_MAX) || count * (Block, CommitCertificate))
//!               | 1 Error(len: u32 (<= SYNC_ERROR_BYTES_MAX) || utf-8)
//!               | 2 Snapshots(count: u32 (<= SNAPSHOT_OFFERS_MAX) || count * SnapshotOffer)
//!               | 3 SnapshotChunk(len: u32 (<= CHUNK_BYTES_MAX) || bytes)
//!               | 4 BlockTxs(count: u32 (<= BLOCK_TXS_MAX) || count * Tx)
//! ```
//!
//! `SnapshotOffer` and the chunk bytes are laid out in `tally_ledger::snapshot` (a manifest
//! lists at most `CHUNKS_MAX` chunk hashes, checked when its count is read).
//!
//! borsh is little-endian with u32 length prefixes. Untrusted bytes are decoded under explicit
//! limits: the total length is checked before anything is decoded, every count is checked
//! against its maximum when its prefix is read (before any element is decoded), and trailing
//! bytes are rejected, so one message has exactly one encoding and its blake3 hash (the
//! gossip message id) identifies it. The encoder enforces the same limits, so a node never
//! sends what its peers would reject.
//!
//! A new version byte is a breaking change: nodes drop envelopes of a version they do not
//! speak (counted as decode failures), so a mixed-version network partitions rather than
//! misreads.

use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;
use std::io::{self, Read};
use tally_consensus::{BlockHash, CommitCertificate, Evidence, Height, SignedProposal, SignedVote};
use tally_ledger::limits::{BLOCK_TXS_MAX, TX_BYTES};
use tally_ledger::snapshot::{SnapshotOffer, CHUNKS_MAX, CHUNK_BYTES_MAX};
use tally_ledger::{Block, Header, Tx, TxHash};

/// The version byte every envelope starts with.
pub const WIRE_VERSION: u8 = 1;

/// Most transactions in one gossiped [`TxBatch`]. 8192 txs of 144 bytes are about 1.2 MB,
/// well inside the gossip size limit; the mempool sends smaller batches.
pub const TX_BATCH_TXS_MAX: u32 = 8192;

/// Most blocks one sync request may ask for and one sync response may carry. The responder
/// also trims a response to the byte limit, so large blocks yield fewer per response.
pub const SYNC_BLOCKS_MAX: u32 = 128;

/// Longest error text in a [`SyncResponse::Error`], in bytes.
pub const SYNC_ERROR_BYTES_MAX: u32 = 256;

/// Most snapshot offers in one [`SyncResponse::Snapshots`]: a node keeps a few snapshots
/// and offers its newest.
pub const SNAPSHOT_OFFERS_MAX: u32 = 4;

/// Bytes of a block sync request: version, message tag, request tag, height, count.
pub const SYNC_REQUEST_BYTES: usize = 1 + 1 + 1 + 8 + 4;

/// Largest sync request: a [`SyncRequest::BlockTxs`] asking for every tx of the largest
/// block (version, tags, height, block hash, count, indices).
pub const SYNC_REQUEST_BYTES_MAX: usize = 1 + 1 + 1 + 8 + 32 + 4 + 4 * BLOCK_TXS_MAX as usize;

/// Bytes of the framing around the items of a [`SyncResponse::Blocks`]: version, message
/// tag, response tag and the u32 count.
pub const SYNC_RESPONSE_OVERHEAD_BYTES: usize = 1 + 1 + 1 + 4;

/// A consensus message, gossiped on the consensus topic.
///
/// Validators propose with [`ConsensusMsg::CompactProposal`]: the block's header and tx
/// hashes, about a fifth of the block's bytes. Peers rebuild the block from their mempools
/// and fetch the txs they lack from a peer ([`SyncRequest::BlockTxs`]). A full
/// [`ConsensusMsg::Proposal`] is also accepted, and is what a node records in its consensus
/// log once it has the block. A certificate carries its block, so that a validator that
/// missed it can act on the message alone.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ConsensusMsg {
    Proposal {
        proposal: SignedProposal,
        block: Block,
    },
    Vote(SignedVote),
    Certificate {
        certificate: CommitCertificate,
        block: Block,
    },
    CompactProposal {
        proposal: SignedProposal,
        block: CompactBlock,
    },
    /// Proof that a validator equivocated (two conflicting signed messages), relayed so
    /// every node learns of it, whatever height it is at.
    Evidence(Evidence),
}

/// A block by its header and the hashes of its txs, in block order (at most
/// `BLOCK_TXS_MAX`). Nothing ties the hashes to the header until
/// [`CompactBlock::hashes_match_header`] says so: check it before trusting them.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize)]
pub struct CompactBlock {
    pub header: Header,
    pub tx_hashes: Vec<TxHash>,
}

impl CompactBlock {
    /// `block` by its tx hashes (`tx_hashes` must be the hashes of `block.txs`, in order).
    pub fn new(block: &Block, tx_hashes: Vec<TxHash>) -> CompactBlock {
        debug_assert_eq!(block.txs.len(), tx_hashes.len());
        CompactBlock { header: block.header.clone(), tx_hashes }
    }

    /// `block`, hashing its txs.
    pub fn of(block: &Block) -> CompactBlock {
        CompactBlock::new(block, block.txs.iter().map(Tx::hash).collect())
    }

    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// The encoded length of the full block ([`Block::encoded_len`]): every tx has the
    /// same size.
    pub fn block_encoded_len(&self) -> usize {
        self.header.encoded_len() + 4 + self.tx_hashes.len() * TX_BYTES
    }

    /// Whether the hashes are the ones the (signed) header commits to: as many as its
    /// `tx_count`, with its `tx_root`. A relay that changed them is caught here, before
    /// the block they would rebuild is judged.
    pub fn hashes_match_header(&self) -> bool {
        self.tx_hashes.len() == self.header.tx_count as usize
            && tally_ledger::tx_root(&self.tx_hashes) == self.header.tx_root
    }
}

impl BorshDeserialize for CompactBlock {
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        let header = Header::deserialize_reader(reader)?;
        let tx_hashes = read_bounded_vec(reader, BLOCK_TXS_MAX, "compact block tx hashes")?;
        Ok(CompactBlock { header, tx_hashes })
    }
}

/// Transactions gossiped together on the tx topic; at most [`TX_BATCH_TXS_MAX`].
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize)]
pub struct TxBatch(pub Vec<Tx>);

/// A block sync request, sent over request-response to one peer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize)]
pub enum SyncRequest {
    /// Committed blocks `from`, `from + 1`, ... (at most `count`, at most [`SYNC_BLOCKS_MAX`]),
    /// each with its commit certificate.
    Blocks { from: Height, count: u32 },
    /// The responder's newest snapshots (at most [`SNAPSHOT_OFFERS_MAX`]), as offers that the
    /// requester checks against a certified header.
    Snapshots,
    /// Chunk `index` of the responder's snapshot of `height`.
    SnapshotChunk { height: Height, index: u32 },
    /// The txs at `indices` (strictly increasing, at most `BLOCK_TXS_MAX`) of the block
    /// `block_hash` proposed at `height`: what a compact proposal's receiver could not find
    /// in its mempool.
    BlockTxs { height: Height, block_hash: BlockHash, indices: Vec<u32> },
}

/// The answer to a [`SyncRequest`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize)]
pub enum SyncResponse {
    /// Consecutive blocks from the requested height, possibly fewer than asked (the responder
    /// has no more, or the rest did not fit the response size limit); empty if it has none.
    Blocks(Vec<(Block, CommitCertificate)>),
    /// The responder could not serve the request (busy, internal error); at most
    /// [`SYNC_ERROR_BYTES_MAX`] bytes of text.
    Error(String),
    /// Snapshot offers, newest first; at most [`SNAPSHOT_OFFERS_MAX`], possibly none.
    Snapshots(Vec<SnapshotOffer>),
    /// One snapshot chunk's bytes, at most [`CHUNK_BYTES_MAX`]; checked by the requester
    /// against the manifest's hash.
    SnapshotChunk(Vec<u8>),
    /// The txs asked for by a [`SyncRequest::BlockTxs`], in the order asked; checked by the
    /// requester against the compact block's hashes.
    BlockTxs(Vec<Tx>),
}

/// Every message on the wire, inside the versioned envelope.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    Consensus(ConsensusMsg),
    TxBatch(TxBatch),
    SyncRequest(SyncRequest),
    SyncResponse(SyncResponse),
}

/// The variant of a [`Message`], for errors and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Consensus,
    TxBatch,
    SyncRequest,
    SyncResponse,
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Consensus => "consensus",
            MessageKind::TxBatch => "tx batch",
            MessageKind::SyncRequest => "sync request",
            MessageKind::SyncResponse => "sync response",
        })
    }
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Consensus(_) => MessageKind::Consensus,
            Message::TxBatch(_) => MessageKind::TxBatch,
            Message::SyncRequest(_) => MessageKind::SyncRequest,
            Message::SyncResponse(_) => MessageKind::SyncResponse,
        }
    }
}

/// Why bytes are not a valid message, or a message cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("message is empty")]
    Empty,
    #[error("wire version {got} is not supported (this node speaks {supported})")]
    UnsupportedVersion { got: u8, supported: u8 },
    #[error("{what}: {count} items, more than the limit of {max}")]
    TooMany { what: &'static str, count: u64, max: u64 },
    #[error("malformed message: {reason}")]
    Malformed { reason: String },
    #[error("message is followed by {count} trailing bytes")]
    TrailingBytes { count: usize },
    #[error("expected a {expected} message, got a {got} message")]
    UnexpectedKind { expected: MessageKind, got: MessageKind },
}

/// A count over its limit, raised inside a borsh reader and turned back into
/// [`WireError::TooMany`] by [`decode`].
#[derive(Debug, thiserror::Error)]
#[error("{what}: {count} items, more than the limit of {max}")]
struct LimitExceeded {
    what: &'static str,
    count: u64,
    max: u64,
}

fn limit_exceeded(what: &'static str, count: u64, max: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LimitExceeded { what, count, max })
}

/// Reads a borsh `Vec<T>`, rejecting a length prefix above `max` before reading any element.
fn read_bounded_vec<T: BorshDeserialize, R: Read>(
    reader: &mut R,
    max: u32,
    what: &'static str,
) -> io::Result<Vec<T>> {
    let len = u32::deserialize_reader(reader)?;
    if len > max {
        return Err(limit_exceeded(what, u64::from(len), u64::from(max)));
    }
    // Reserve at most 4 KiB up front (as borsh does): a 6-byte tx batch header claiming
    // 8192 txs made the decoder reserve 1.2 MB for nothing (found by the `wire_decode` fuzz
    // target). The Vec grows as elements actually decode.
    let reserve = (len as usize).min(4096 / std::mem::size_of::<T>().max(1));
    let mut items = Vec::with_capacity(reserve);
    for _ in 0..len {
        items.push(T::deserialize_reader(reader)?);
    }
    Ok(items)
}

impl BorshDeserialize for TxBatch {
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        read_bounded_vec(reader, TX_BATCH_TXS_MAX, "tx batch").map(TxBatch)
    }
}

impl BorshDeserialize for SyncRequest {
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        match u8::deserialize_reader(reader)? {
            0 => {
                let from = Height::deserialize_reader(reader)?;
                let count = u32::deserialize_reader(reader)?;
                if count > SYNC_BLOCKS_MAX {
                    return Err(limit_exceeded(
                        "sync request",
                        u64::from(count),
                        u64::from(SYNC_BLOCKS_MAX),
                    ));
                }
                Ok(SyncRequest::Blocks { from, count })
            }
            1 => Ok(SyncRequest::Snapshots),
            2 => {
                let height = Height::deserialize_reader(reader)?;
                let index = u32::deserialize_reader(reader)?;
                if index >= CHUNKS_MAX {
                    return Err(limit_exceeded(
                        "snapshot chunk index",
                        u64::from(index),
                        u64::from(CHUNKS_MAX),
                    ));
                }
                Ok(SyncRequest::SnapshotChunk { height, index })
            }
            3 => {
                let height = Height::deserialize_reader(reader)?;
                let block_hash = BlockHash::deserialize_reader(reader)?;
                let indices = read_bounded_vec(reader, BLOCK_TXS_MAX, "block tx indices")?;
                Ok(SyncRequest::BlockTxs { height, block_hash, indices })
            }
            tag => Err(bad_tag("sync request", tag)),
        }
    }
}

impl BorshDeserialize for SyncResponse {
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        match u8::deserialize_reader(reader)? {
            0 => {
                read_bounded_vec(reader, SYNC_BLOCKS_MAX, "sync response").map(SyncResponse::Blocks)
            }
            1 => {
                let bytes: Vec<u8> =
                    read_bounded_vec(reader, SYNC_ERROR_BYTES_MAX, "sync error text")?;
                String::from_utf8(bytes)
                    .map(SyncResponse::Error)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            }
            2 => read_bounded_vec(reader, SNAPSHOT_OFFERS_MAX, "snapshot offers")
                .map(SyncResponse::Snapshots),
            3 => read_bounded_vec(reader, CHUNK_BYTES_MAX as u32, "snapshot chunk bytes")
                .map(SyncResponse::SnapshotChunk),
            4 => read_bounded_vec(reader, BLOCK_TXS_MAX, "block txs").map(SyncResponse::BlockTxs),
            tag => Err(bad_tag("sync response", tag)),
        }
    }
}

fn bad_tag(what: &'static str, tag: u8) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unknown {what} variant {tag}"))
}

/// Checks the counts the decoder would check, so that nothing over a limit is sent.
fn check_counts(msg: &Message) -> Result<(), WireError> {
    let too_many = |what, count: usize, max: u32| {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        if count > u64::from(max) {
            Err(WireError::TooMany { what, count, max: u64::from(max) })
        } else {
            Ok(())
        }
    };
    match msg {
        Message::Consensus(ConsensusMsg::CompactProposal { block, .. }) => {
            too_many("compact block tx hashes", block.tx_hashes.len(), BLOCK_TXS_MAX)
        }
        Message::Consensus(_) => Ok(()),
        Message::TxBatch(TxBatch(txs)) => too_many("tx batch", txs.len(), TX_BATCH_TXS_MAX),
        Message::SyncRequest(SyncRequest::Blocks { count, .. }) => {
            too_many("sync request", *count as usize, SYNC_BLOCKS_MAX)
        }
        Message::SyncResponse(SyncResponse::Blocks(blocks)) => {
            too_many("sync response", blocks.len(), SYNC_BLOCKS_MAX)
        }
        Message::SyncResponse(SyncResponse::Error(text)) => {
            too_many("sync error text", text.len(), SYNC_ERROR_BYTES_MAX)
        }
        Message::SyncRequest(SyncRequest::Snapshots) => Ok(()),
        Message::SyncRequest(SyncRequest::SnapshotChunk { index, .. }) => {
            too_many("snapshot chunk index", *index as usize + 1, CHUNKS_MAX)
        }
        Message::SyncResponse(SyncResponse::Snapshots(offers)) => {
            too_many("snapshot offers", offers.len(), SNAPSHOT_OFFERS_MAX)
        }
        Message::SyncResponse(SyncResponse::SnapshotChunk(bytes)) => {
            too_many("snapshot chunk bytes", bytes.len(), CHUNK_BYTES_MAX as u32)
        }
        Message::SyncRequest(SyncRequest::BlockTxs { indices, .. }) => {
            too_many("block tx indices", indices.len(), BLOCK_TXS_MAX)
        }
        Message::SyncResponse(SyncResponse::BlockTxs(txs)) => {
            too_many("block txs", txs.len(), BLOCK_TXS_MAX)
        }
    }
}

/// Encodes `msg` in its envelope, refusing anything a peer would reject: a count over its
/// limit or more than `bytes_max` bytes in all.
pub fn encode(msg: &Message, bytes_max: usize) -> Result<Vec<u8>, WireError> {
    check_counts(msg)?;
    let mut out = vec![WIRE_VERSION];
    msg.serialize(&mut out).expect("borsh encoding into a Vec does not fail");
    if out.len() > bytes_max {
        return Err(WireError::TooLarge { len: out.len(), max: bytes_max });
    }
    Ok(out)
}

/// Decodes one envelope from untrusted bytes: at most `bytes_max` of them (checked first),
/// a supported version, every count within its limit, no trailing bytes.
pub fn decode(bytes: &[u8], bytes_max: usize) -> Result<Message, WireError> {
    if bytes.len() > bytes_max {
        return Err(WireError::TooLarge { len: bytes.len(), max: bytes_max });
    }
    let (&version, mut rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { got: version, supported: WIRE_VERSION });
    }
    let msg = Message::deserialize_reader(&mut rest).map_err(from_io)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { count: rest.len() });
    }
    Ok(msg)
}

fn from_io(e: io::Error) -> WireError {
    if let Some(limit) = e.get_ref().and_then(|inner| inner.downcast_ref::<LimitExceeded>()) {
        return WireError::TooMany { what: limit.what, count: limit.count, max: limit.max };
    }
    WireError::Malformed { reason: e.to_string() }
}

/// [`decode`], then insists on a consensus message (the consensus topic carries nothing else).
pub fn decode_consensus(bytes: &[u8], bytes_max: usize) -> Result<ConsensusMsg, WireError> {
    match decode(bytes, bytes_max)? {
        Message::Consensus(msg) => Ok(msg),
        other => Err(unexpected(MessageKind::Consensus, &other)),
    }
}

/// [`decode`], then insists on a tx batch (the tx topic carries nothing else).
pub fn decode_tx_batch(bytes: &[u8], bytes_max: usize) -> Result<TxBatch, WireError> {
    match decode(bytes, bytes_max)? {
        Message::TxBatch(batch) => Ok(batch),
        other => Err(unexpected(MessageKind::TxBatch, &other)),
    }
}

/// [`decode`], then insists on a sync request.
pub fn decode_sync_request(bytes: &[u8], bytes_max: usize) -> Result<SyncRequest, WireError> {
    match decode(bytes, bytes_max)? {
        Message::SyncRequest(request) => Ok(request),
        other => Err(unexpected(MessageKind::SyncRequest, &other)),
    }
}

/// [`decode`], then insists on a sync response.
pub fn decode_sync_response(bytes: &[u8], bytes_max: usize) -> Result<SyncResponse, WireError> {
    match decode(bytes, bytes_max)? {
        Message::SyncResponse(response) => Ok(response),
        other => Err(unexpected(MessageKind::SyncResponse, &other)),
    }
}

fn unexpected(expected: MessageKind, got: &Message) -> WireError {
    WireError::UnexpectedKind { expected, got: got.kind() }
}

/// Largest encoded tx batch: the envelope, the count and [`TX_BATCH_TXS_MAX`] txs of the
/// largest size the ledger accepts.
pub const TX_BATCH_BYTES_MAX: usize =
    1 + 1 + 4 + (TX_BATCH_TXS_MAX as usize) * tally_ledger::limits::TX_BYTES_MAX;
