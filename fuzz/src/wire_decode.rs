//! Target `wire_decode`: every network message as a peer sends it.
//!
//! Oracles: decoding never panics; it allocates at most a bound linear in the input (a
//! length prefix must not reserve memory the bytes do not back); what decodes re-encodes to
//! exactly the same bytes, also under a byte limit equal to its length (one message, one
//! encoding: the gossip id is its hash); the typed decoders agree with the generic one.

use crate::fixtures::{block, certificate, proposal, signed_tx, vote};
use tally_consensus::{BlockHash, Height, VoteType};
use tally_crypto::Hash;
use tally_network::wire::{
    decode, decode_consensus, decode_sync_request, decode_sync_response, decode_tx_batch, encode,
    Message, WireError, TX_BATCH_BYTES_MAX,
};
use tally_network::{ConsensusMsg, SyncRequest, SyncResponse, TxBatch};

/// The largest limit a node passes to `decode` (a full tx batch).
const BYTES_MAX: usize = TX_BATCH_BYTES_MAX;

/// Allowed peak allocation while decoding `len` bytes: a fixed allowance plus a small
/// multiple of the input (decoded structs are larger than their encodings).
fn allocation_bound(len: usize) -> usize {
    64 * 1024 + 16 * len
}

pub fn run(data: &[u8]) {
    let (decoded, peak) = crate::alloc::peak_during(|| decode(data, BYTES_MAX));
    assert!(
        peak <= allocation_bound(data.len()),
        "decoding {} bytes allocated {peak} bytes at once",
        data.len()
    );
    check_typed_decoders(data, &decoded);
    let Ok(message) = decoded else { return };
    let encoded = encode(&message, BYTES_MAX).expect("a decoded message re-encodes");
    assert_eq!(encoded, data, "re-encoding differs from the decoded bytes");
    assert_eq!(encode(&message, data.len()).as_deref(), Ok(data), "exact limit refused");
    if !data.is_empty() {
        assert!(matches!(decode(data, data.len() - 1), Err(WireError::TooLarge { .. })));
    }
}

/// Each typed decoder returns the generic decoder's message when the kind matches and an
/// error otherwise.
fn check_typed_decoders(data: &[u8], generic: &Result<Message, WireError>) {
    let consensus = decode_consensus(data, BYTES_MAX).ok().map(Message::Consensus);
    let batch = decode_tx_batch(data, BYTES_MAX).ok().map(Message::TxBatch);
    let request = decode_sync_request(data, BYTES_MAX).ok().map(Message::SyncRequest);
    let response = decode_sync_response(data, BYTES_MAX).ok().map(Message::SyncResponse);
    let typed: Vec<Message> = [consensus, batch, request, response].into_iter().flatten().collect();
    match generic {
        Ok(message) => assert_eq!(typed, vec![message.clone()], "typed decoders disagree"),
        Err(_) => assert!(typed.is_empty(), "a typed decoder accepted what decode refused"),
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let value = BlockHash(Hash::digest(b"tally-fuzz/value"));
    let genesis = BlockHash(Hash::digest(b"tally-fuzz/genesis"));
    let b1 = block(1, vec![signed_tx(1, 2, 5, 0), signed_tx(2, 1, 3, 0)], genesis);
    let b2 = block(2, vec![], b1.hash());
    let messages = vec![
        Message::Consensus(ConsensusMsg::Vote(vote(1, VoteType::Prevote, 1, 0, Some(value)))),
        Message::Consensus(ConsensusMsg::Vote(vote(2, VoteType::Precommit, 3, 1, None))),
        Message::Consensus(ConsensusMsg::Proposal {
            proposal: proposal(0, 1, 0, b1.hash()),
            block: b1.clone(),
        }),
        Message::Consensus(ConsensusMsg::Certificate {
            certificate: certificate(&b2),
            block: b2.clone(),
        }),
        Message::TxBatch(TxBatch(vec![signed_tx(1, 2, 7, 0), signed_tx(3, 1, 1, 4)])),
        Message::TxBatch(TxBatch(vec![])),
        Message::SyncRequest(SyncRequest::Blocks { from: Height(1), count: 16 }),
        Message::SyncResponse(SyncResponse::Blocks(vec![
            (b1.clone(), certificate(&b1)),
            (b2.clone(), certificate(&b2)),
        ])),
        Message::SyncResponse(SyncResponse::Error("busy".into())),
        Message::SyncRequest(SyncRequest::Snapshots),
        Message::SyncRequest(SyncRequest::SnapshotChunk { height: Height(2), index: 1 }),
        Message::SyncResponse(SyncResponse::Snapshots(vec![snapshot_offer(&b2)])),
        Message::SyncResponse(SyncResponse::SnapshotChunk(snapshot_chunk())),
        Message::Consensus(ConsensusMsg::CompactProposal {
            proposal: proposal(0, 1, 0, b1.hash()),
            block: tally_network::CompactBlock::of(&b1),
        }),
        Message::SyncRequest(SyncRequest::BlockTxs {
            height: Height(1),
            block_hash: b1.hash(),
            indices: vec![0, 1],
        }),
        Message::SyncResponse(SyncResponse::BlockTxs(b1.txs.clone())),
    ];
    messages
        .iter()
        .map(|m| encode(m, BYTES_MAX).expect("seed messages are within limits"))
        .collect()
}

/// A snapshot offer of the state after `block` (two accounts), with its certificate.
fn snapshot_offer(block: &tally_ledger::Block) -> tally_ledger::SnapshotOffer {
    let manifest = tally_ledger::Manifest {
        format: tally_ledger::snapshot::SNAPSHOT_FORMAT,
        chain_id: block.header.chain_id.clone(),
        height: block.header.height,
        block_hash: block.hash(),
        state_root: block.header.state_root,
        accounts: 2,
        chunk_hashes: vec![tally_ledger::snapshot::chunk_hash(&snapshot_chunk())],
    };
    tally_ledger::SnapshotOffer {
        manifest,
        header: block.header.clone(),
        certificate: certificate(block),
    }
}

/// One chunk of two accounts: count, then (public key, balance, nonce) each.
fn snapshot_chunk() -> Vec<u8> {
    let mut bytes = 2u32.to_le_bytes().to_vec();
    for (key, balance, nonce) in [(1u8, 10u64, 0u64), (2, 20, 3)] {
        bytes.extend_from_slice(&[key; 32]);
        bytes.extend_from_slice(&balance.to_le_bytes());
        bytes.extend_from_slice(&nonce.to_le_bytes());
    }
    bytes
}
