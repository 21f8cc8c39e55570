//! The block sync protocol's codec for libp2p request-response: one request and one response
//! per stream, each a frame of `length: u32 (little endian) || envelope` (see [`crate::wire`]).
//!
//! The length prefix is checked against the read limit before anything is allocated, so a
//! peer announcing a huge frame costs nothing; the envelope is then decoded under the same
//! limit. The responder trims what it sends to fit ([`fit_response`]), so an honest response
//! never exceeds the requester's limit (both come from the same config constants).

use crate::stats::NetworkStats;
use crate::wire::{
    self, Message, SyncRequest, SyncResponse, SYNC_BLOCKS_MAX, SYNC_RESPONSE_OVERHEAD_BYTES,
};
use async_trait::async_trait;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;
use std::io;
use std::sync::Arc;

/// The sync protocol's name: `/tally/<chain_id>/sync/1`.
pub(crate) fn sync_protocol(chain_id: &tally_crypto::ChainId) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/tally/{chain_id}/sync/1"))
        .expect("a protocol name starting with '/' is valid")
}

/// Borsh codec with size caps; `Clone` because request-response clones it per stream.
#[derive(Clone)]
pub(crate) struct SyncCodec {
    pub request_bytes_max: usize,
    pub response_bytes_max: usize,
    pub stats: Arc<NetworkStats>,
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, more than the limit of {max}"),
        ));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

fn invalid_data(e: wire::WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl SyncCodec {
    fn decode_failed(&self, e: wire::WireError) -> io::Error {
        NetworkStats::inc(&self.stats.decode_failures);
        invalid_data(e)
    }
}

#[async_trait]
impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, self.request_bytes_max).await?;
        wire::decode_sync_request(&bytes, self.request_bytes_max).map_err(|e| self.decode_failed(e))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, self.response_bytes_max).await?;
        wire::decode_sync_response(&bytes, self.response_bytes_max)
            .map_err(|e| self.decode_failed(e))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = wire::encode(&Message::SyncRequest(request), self.request_bytes_max)
            .map_err(invalid_data)?;
        write_frame(io, &bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = wire::encode(&Message::SyncResponse(response), self.response_bytes_max)
            .map_err(invalid_data)?;
        write_frame(io, &bytes).await
    }
}

/// Trims a response to what the wire allows: at most [`SYNC_BLOCKS_MAX`] blocks and at most
/// `bytes_max` bytes encoded, dropping blocks from the end (a prefix of consecutive blocks is
/// still a valid answer). If not even the first block fits, the answer is an error; an
/// over-long error text is cut at a character boundary. Snapshot offers are trimmed the same
/// way; a chunk over its limit becomes an error.
pub fn fit_response(response: SyncResponse, bytes_max: usize) -> SyncResponse {
    match response {
        SyncResponse::Blocks(mut blocks) => {
            blocks.truncate(SYNC_BLOCKS_MAX as usize);
            let mut used = SYNC_RESPONSE_OVERHEAD_BYTES;
            let mut fit = 0;
            for item in &blocks {
                let len = borsh::object_length(item).unwrap_or(usize::MAX);
                match used.checked_add(len) {
                    Some(total) if total <= bytes_max => used = total,
                    _ => break,
                }
                fit += 1;
            }
            if fit == 0 && !blocks.is_empty() {
                return SyncResponse::Error("block too large for a sync response".to_string());
            }
            blocks.truncate(fit);
            SyncResponse::Blocks(blocks)
        }
        SyncResponse::Snapshots(mut offers) => {
            offers.truncate(wire::SNAPSHOT_OFFERS_MAX as usize);
            let mut used = SYNC_RESPONSE_OVERHEAD_BYTES;
            let fit = offers
                .iter()
                .take_while(|offer| {
                    let len = borsh::object_length(*offer).unwrap_or(usize::MAX);
                    used = used.saturating_add(len);
                    used <= bytes_max
                })
                .count();
            offers.truncate(fit);
            SyncResponse::Snapshots(offers)
        }
        SyncResponse::SnapshotChunk(bytes)
            if bytes.len() > tally_ledger::snapshot::CHUNK_BYTES_MAX
                || bytes.len().saturating_add(SYNC_RESPONSE_OVERHEAD_BYTES) > bytes_max =>
        {
            SyncResponse::Error("snapshot chunk too large for a sync response".to_string())
        }
        SyncResponse::SnapshotChunk(bytes) => SyncResponse::SnapshotChunk(bytes),
        // All or nothing: the requester needs every tx it asked for. Every tx encodes to
        // TX_BYTES, so the size is counted, not encoded.
        SyncResponse::BlockTxs(txs)
            if txs.len() > tally_ledger::BLOCK_TXS_MAX as usize
                || SYNC_RESPONSE_OVERHEAD_BYTES + txs.len() * tally_ledger::TX_BYTES
                    > bytes_max =>
        {
            SyncResponse::Error("block txs too large for a sync response".to_string())
        }
        SyncResponse::BlockTxs(txs) => SyncResponse::BlockTxs(txs),
        SyncResponse::Error(mut text) => {
            let max = wire::SYNC_ERROR_BYTES_MAX as usize;
            if text.len() > max {
                let mut cut = max;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            SyncResponse::Error(text)
        }
    }
}
