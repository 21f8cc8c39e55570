//! The wire format: every message round-trips, and malformed or oversized input is refused
//! with the precise error, before anything large is allocated.

mod common;

use tally_consensus::Height;
use tally_ledger::BLOCK_TXS_MAX;
use tally_network::wire::{
    self, decode, encode, Message, MessageKind, SYNC_BLOCKS_MAX, SYNC_ERROR_BYTES_MAX,
    TX_BATCH_TXS_MAX, WIRE_VERSION,
};
use tally_network::{
    fit_response, CompactBlock, ConsensusMsg, SyncRequest, SyncResponse, TxBatch, WireError,
};

const MAX: usize = 1 << 20;

fn samples() -> Vec<Message> {
    let b1 = common::block(1, 3);
    let b2 = common::block(2, 0);
    vec![
        Message::Consensus(ConsensusMsg::Proposal {
            proposal: common::proposal(&b1),
            block: b1.clone(),
        }),
        Message::Consensus(ConsensusMsg::Vote(common::vote(5))),
        Message::Consensus(ConsensusMsg::Certificate {
            certificate: common::certificate(&b1),
            block: b1.clone(),
        }),
        Message::TxBatch(TxBatch(common::txs(10))),
        Message::TxBatch(TxBatch(Vec::new())),
        Message::SyncRequest(SyncRequest::Blocks { from: Height(7), count: 20 }),
        Message::SyncResponse(SyncResponse::Blocks(vec![
            (b1.clone(), common::certificate(&b1)),
            (b2.clone(), common::certificate(&b2)),
        ])),
        Message::SyncResponse(SyncResponse::Blocks(Vec::new())),
        Message::SyncResponse(SyncResponse::Error("busy".to_string())),
        Message::Consensus(ConsensusMsg::CompactProposal {
            proposal: common::proposal(&b1),
            block: CompactBlock::of(&b1),
        }),
        Message::SyncRequest(SyncRequest::BlockTxs {
            height: Height(1),
            block_hash: b1.hash(),
            indices: vec![0, 2],
        }),
        Message::SyncResponse(SyncResponse::BlockTxs(b1.txs.clone())),
    ]
}

#[test]
fn a_compact_block_is_checked_against_its_header() {
    let block = common::block(1, 5);
    let compact = CompactBlock::of(&block);
    assert!(compact.hashes_match_header());
    assert_eq!(compact.hash(), block.hash());
    assert_eq!(compact.block_encoded_len(), block.encoded_len());
    // A relay that swaps, drops or replaces a hash is caught.
    let mut swapped = compact.clone();
    swapped.tx_hashes.swap(0, 1);
    assert!(!swapped.hashes_match_header());
    let mut dropped = compact.clone();
    dropped.tx_hashes.pop();
    assert!(!dropped.hashes_match_header());
    let mut replaced = compact;
    replaced.tx_hashes[4] = common::txs(6)[5].hash();
    assert!(!replaced.hashes_match_header());
}

#[test]
fn the_largest_block_txs_request_fits_the_request_limit() {
    let request = Message::SyncRequest(SyncRequest::BlockTxs {
        height: Height(u64::MAX),
        block_hash: common::block(1, 0).hash(),
        indices: (0..BLOCK_TXS_MAX).collect(),
    });
    let bytes = encode(&request, wire::SYNC_REQUEST_BYTES_MAX).unwrap();
    assert_eq!(bytes.len(), wire::SYNC_REQUEST_BYTES_MAX);
    // One index more is refused by the encoder, and on its count prefix by the decoder.
    let over = Message::SyncRequest(SyncRequest::BlockTxs {
        height: Height(1),
        block_hash: common::block(1, 0).hash(),
        indices: (0..=BLOCK_TXS_MAX).collect(),
    });
    assert!(matches!(encode(&over, usize::MAX), Err(WireError::TooMany { .. })));
    let mut bytes = vec![WIRE_VERSION, 2, 3];
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&[0; 32]);
    bytes.extend_from_slice(&(BLOCK_TXS_MAX + 1).to_le_bytes());
    assert!(matches!(
        decode(&bytes, usize::MAX),
        Err(WireError::TooMany { what: "block tx indices", .. })
    ));
}

#[test]
fn every_message_round_trips() {
    for msg in samples() {
        let bytes = encode(&msg, MAX).unwrap();
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode(&bytes, MAX).unwrap(), msg, "{:?}", msg.kind());
    }
}

#[test]
fn typed_decoders_insist_on_their_kind() {
    let vote = Message::Consensus(ConsensusMsg::Vote(common::vote(1)));
    let bytes = encode(&vote, MAX).unwrap();
    assert!(wire::decode_consensus(&bytes, MAX).is_ok());
    assert_eq!(
        wire::decode_tx_batch(&bytes, MAX),
        Err(WireError::UnexpectedKind {
            expected: MessageKind::TxBatch,
            got: MessageKind::Consensus
        })
    );
    let request = Message::SyncRequest(SyncRequest::Blocks { from: Height(1), count: 1 });
    let bytes = encode(&request, MAX).unwrap();
    assert_eq!(bytes.len(), wire::SYNC_REQUEST_BYTES);
    assert!(wire::decode_sync_request(&bytes, wire::SYNC_REQUEST_BYTES).is_ok());
    assert!(matches!(
        wire::decode_sync_response(&bytes, MAX),
        Err(WireError::UnexpectedKind { expected: MessageKind::SyncResponse, .. })
    ));
}

#[test]
fn oversized_input_is_refused_by_length_first() {
    let msg = Message::TxBatch(TxBatch(common::txs(5)));
    let bytes = encode(&msg, MAX).unwrap();
    let max = bytes.len() - 1;
    assert_eq!(decode(&bytes, max), Err(WireError::TooLarge { len: bytes.len(), max }));
    // Garbage over the limit is refused on its length alone, whatever it holds.
    let garbage = vec![0xff; MAX + 1];
    assert_eq!(decode(&garbage, MAX), Err(WireError::TooLarge { len: MAX + 1, max: MAX }));
    // The encoder refuses what a peer would refuse.
    assert_eq!(encode(&msg, max), Err(WireError::TooLarge { len: bytes.len(), max }));
}

#[test]
fn count_prefix_over_the_limit_is_refused_before_reading_items() {
    // A tx batch claiming u32::MAX txs in 7 bytes: refused on the prefix, nothing allocated.
    let mut bytes = vec![WIRE_VERSION, 1];
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    let max = u64::from(TX_BATCH_TXS_MAX);
    assert_eq!(
        decode(&bytes, MAX),
        Err(WireError::TooMany { what: "tx batch", count: u64::from(u32::MAX), max })
    );

    // A sync response claiming one block too many.
    let mut bytes = vec![WIRE_VERSION, 3, 0];
    bytes.extend_from_slice(&(SYNC_BLOCKS_MAX + 1).to_le_bytes());
    assert!(matches!(decode(&bytes, MAX), Err(WireError::TooMany { what: "sync response", .. })));

    // A sync request asking for too many blocks.
    let mut bytes = vec![WIRE_VERSION, 2, 0];
    bytes.extend_from_slice(&5u64.to_le_bytes());
    bytes.extend_from_slice(&(SYNC_BLOCKS_MAX + 1).to_le_bytes());
    assert!(matches!(decode(&bytes, MAX), Err(WireError::TooMany { what: "sync request", .. })));

    // An error text over its limit.
    let mut bytes = vec![WIRE_VERSION, 3, 1];
    bytes.extend_from_slice(&(SYNC_ERROR_BYTES_MAX + 1).to_le_bytes());
    assert!(matches!(decode(&bytes, MAX), Err(WireError::TooMany { .. })));
}

#[test]
fn encoder_refuses_counts_over_the_limit() {
    let too_many = TX_BATCH_TXS_MAX as usize + 1;
    let batch = Message::TxBatch(TxBatch(vec![common::txs(1)[0]; too_many]));
    assert!(matches!(encode(&batch, usize::MAX), Err(WireError::TooMany { what: "tx batch", .. })));
    let request =
        Message::SyncRequest(SyncRequest::Blocks { from: Height(1), count: SYNC_BLOCKS_MAX + 1 });
    assert!(matches!(encode(&request, MAX), Err(WireError::TooMany { .. })));
}

#[test]
fn malformed_input_gets_precise_errors() {
    assert_eq!(decode(&[], MAX), Err(WireError::Empty));
    assert_eq!(
        decode(&[2, 0], MAX),
        Err(WireError::UnsupportedVersion { got: 2, supported: WIRE_VERSION })
    );
    assert!(matches!(decode(&[WIRE_VERSION, 9], MAX), Err(WireError::Malformed { .. })));

    let msg = Message::Consensus(ConsensusMsg::Vote(common::vote(3)));
    let mut bytes = encode(&msg, MAX).unwrap();
    bytes.extend_from_slice(&[0, 0, 0]);
    assert_eq!(decode(&bytes, MAX), Err(WireError::TrailingBytes { count: 3 }));

    let bytes = encode(&msg, MAX).unwrap();
    for cut in 1..bytes.len() {
        assert!(
            matches!(decode(&bytes[..cut], MAX), Err(WireError::Malformed { .. })),
            "truncated at {cut}"
        );
    }
}

#[test]
fn responses_are_trimmed_to_fit() {
    let items: Vec<_> = (1..=5)
        .map(|h| {
            let b = common::block(h, 4);
            let c = common::certificate(&b);
            (b, c)
        })
        .collect();
    let one = borsh::object_length(&items[0]).unwrap();
    let max = wire::SYNC_RESPONSE_OVERHEAD_BYTES + 2 * one + one / 2;
    let SyncResponse::Blocks(kept) = fit_response(SyncResponse::Blocks(items.clone()), max) else {
        panic!("expected blocks");
    };
    assert_eq!(kept, items[..2].to_vec());
    let bytes = encode(&Message::SyncResponse(SyncResponse::Blocks(kept)), max).unwrap();
    assert!(bytes.len() <= max);

    let tiny = fit_response(SyncResponse::Blocks(items), one / 2);
    assert!(matches!(tiny, SyncResponse::Error(_)));

    let long = "é".repeat(SYNC_ERROR_BYTES_MAX as usize);
    let SyncResponse::Error(cut) = fit_response(SyncResponse::Error(long), MAX) else {
        panic!("expected an error");
    };
    assert!(cut.len() <= SYNC_ERROR_BYTES_MAX as usize);
}

/// Regression (fuzz target `wire_decode`): a tx batch header that claims the maximum count
/// but carries no txs is refused as malformed; the decoder reserves memory only as txs
/// actually decode, not for the claimed count.
#[test]
fn batch_header_without_txs_is_malformed() {
    let mut bytes = vec![tally_network::wire::WIRE_VERSION, 1];
    bytes.extend_from_slice(&tally_network::wire::TX_BATCH_TXS_MAX.to_le_bytes());
    let result = tally_network::wire::decode(&bytes, 1 << 20);
    assert!(matches!(result, Err(tally_network::WireError::Malformed { .. })), "got {result:?}");
}

#[test]
fn a_block_txs_response_is_whole_or_an_error() {
    let txs = common::txs(7);
    let bytes = encode(&Message::SyncResponse(SyncResponse::BlockTxs(txs.clone())), MAX).unwrap();
    // Exactly its encoded size fits; a byte less turns it into an error, not a shorter list.
    let exact = fit_response(SyncResponse::BlockTxs(txs.clone()), bytes.len());
    assert_eq!(exact, SyncResponse::BlockTxs(txs.clone()));
    let short = fit_response(SyncResponse::BlockTxs(txs), bytes.len() - 1);
    assert!(matches!(short, SyncResponse::Error(_)), "{short:?}");
}
