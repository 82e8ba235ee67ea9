//! The range-sync protocol: one borsh-encoded request per stream, one borsh-encoded
//! response back, each read with a hard byte limit before it is decoded.
//!
//! Server-side rule: a node answers `Blocks { from, count }` / `Headers { from, count }`
//! with at most `count` consecutive items starting at `from` (fewer at the head of its
//! chain, or when the next item would push the encoded response past
//! [`crate::NetworkConfig::max_sync_response_bytes`]; check with
//! [`SyncResponse::encoded_len`]). `count` itself is at most [`MAX_SYNC_ITEMS`]: the codec
//! refuses larger requests and responses with more items.

use std::io;

use borsh::{BorshDeserialize, BorshSerialize};
use chain::codec::{CodecError, decode_limited};
use chain::{BlockHash, Height, Weight};
use futures::prelude::*;
use libp2p::StreamProtocol;
use libp2p::request_response;

/// Most blocks or headers asked for in one request, and sent in one response.
pub const MAX_SYNC_ITEMS: u32 = 128;
/// Largest encoded request (the largest variant is 13 bytes).
pub const MAX_SYNC_REQUEST_BYTES: usize = 64;
/// Longest reason in [`SyncResponse::Error`], in bytes.
pub const MAX_SYNC_ERROR_BYTES: usize = 256;

/// What a peer asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SyncRequest {
    /// The peer's genesis and head, to decide whom to sync from.
    Status,
    /// Up to `count` encoded blocks of the peer's best chain, from height `from` upwards.
    Blocks { from: Height, count: u32 },
    /// Up to `count` encoded headers of the peer's best chain, from height `from` upwards.
    Headers { from: Height, count: u32 },
}

/// What a peer answers.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SyncResponse {
    /// The answer to [`SyncRequest::Status`].
    Status {
        genesis: BlockHash,
        head_height: Height,
        head_hash: BlockHash,
        total_weight: Weight,
    },
    /// Canonically encoded blocks, in height order.
    Blocks(Vec<Vec<u8>>),
    /// Canonically encoded headers, in height order.
    Headers(Vec<Vec<u8>>),
    /// The peer could not answer; the reason is for logs only.
    Error(String),
}

fn malformed(what: &'static str, reason: String) -> CodecError {
    CodecError::Malformed { what, reason }
}

impl SyncRequest {
    const NAME: &'static str = "sync request";

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh serialization into a Vec cannot fail")
    }

    /// Strict decoding: size limit, no trailing bytes, canonical form, `count` within
    /// [`MAX_SYNC_ITEMS`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let request: Self = decode_limited(bytes, MAX_SYNC_REQUEST_BYTES, Self::NAME)?;
        request.check()?;
        Ok(request)
    }

    /// Refuses a `count` above [`MAX_SYNC_ITEMS`].
    pub fn check(&self) -> Result<(), CodecError> {
        match *self {
            SyncRequest::Status => Ok(()),
            SyncRequest::Blocks { count, .. } | SyncRequest::Headers { count, .. } => {
                if count > MAX_SYNC_ITEMS {
                    return Err(malformed(
                        Self::NAME,
                        format!("count {count} is more than the limit of {MAX_SYNC_ITEMS}"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The request's kind, for messages.
    pub const fn kind(&self) -> &'static str {
        match self {
            SyncRequest::Status => "status",
            SyncRequest::Blocks { .. } => "blocks",
            SyncRequest::Headers { .. } => "headers",
        }
    }

    /// Whether `response` is a legal answer to this request: the matching variant with at
    /// most `count` items, or an error.
    pub fn accepts(&self, response: &SyncResponse) -> bool {
        match (self, response) {
            (_, SyncResponse::Error(_)) => true,
            (SyncRequest::Status, SyncResponse::Status { .. }) => true,
            (SyncRequest::Blocks { count, .. }, SyncResponse::Blocks(items))
            | (SyncRequest::Headers { count, .. }, SyncResponse::Headers(items)) => {
                u32::try_from(items.len()).is_ok_and(|n| n <= *count)
            }
            _ => false,
        }
    }
}

impl SyncResponse {
    const NAME: &'static str = "sync response";

    /// An error answer, its reason cut to [`MAX_SYNC_ERROR_BYTES`] on a char boundary.
    pub fn error(reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_SYNC_ERROR_BYTES {
            let mut end = MAX_SYNC_ERROR_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        SyncResponse::Error(reason)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh serialization into a Vec cannot fail")
    }

    /// Length of [`Self::encode`] without encoding, to fill a response up to a budget.
    pub fn encoded_len(&self) -> usize {
        borsh::object_length(self).expect("borsh length of an in-memory value cannot fail")
    }

    /// The response's kind, for messages.
    pub const fn kind(&self) -> &'static str {
        match self {
            SyncResponse::Status { .. } => "status",
            SyncResponse::Blocks(_) => "blocks",
            SyncResponse::Headers(_) => "headers",
            SyncResponse::Error(_) => "error",
        }
    }

    /// Strict decoding under `max` bytes: no trailing bytes, canonical form, at most
    /// [`MAX_SYNC_ITEMS`] items, an error reason within [`MAX_SYNC_ERROR_BYTES`].
    pub fn decode(bytes: &[u8], max: usize) -> Result<Self, CodecError> {
        let response: Self = decode_limited(bytes, max, Self::NAME)?;
        response.check()?;
        Ok(response)
    }

    /// Refuses more than [`MAX_SYNC_ITEMS`] items or an over-long error reason.
    pub fn check(&self) -> Result<(), CodecError> {
        match self {
            SyncResponse::Status { .. } => Ok(()),
            SyncResponse::Blocks(items) | SyncResponse::Headers(items) => {
                if u32::try_from(items.len()).map_or(true, |n| n > MAX_SYNC_ITEMS) {
                    return Err(malformed(
                        Self::NAME,
                        format!(
                            "{} items, more than the limit of {MAX_SYNC_ITEMS}",
                            items.len()
                        ),
                    ));
                }
                Ok(())
            }
            SyncResponse::Error(reason) => {
                if reason.len() > MAX_SYNC_ERROR_BYTES {
                    return Err(malformed(
                        Self::NAME,
                        format!(
                            "error reason of {} bytes, more than the limit of {MAX_SYNC_ERROR_BYTES}",
                            reason.len()
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Reads the whole stream, refusing it as soon as it exceeds `max` bytes.
pub(crate) async fn read_frame<T>(io: &mut T, max: usize, what: &'static str) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    io.take(limit).read_to_end(&mut bytes).await?;
    if bytes.len() > max {
        return Err(invalid_data(CodecError::TooLarge {
            what,
            len: bytes.len(),
            max,
        }));
    }
    Ok(bytes)
}

fn invalid_data(error: CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// The libp2p codec for the sync protocol. The request limit is fixed
/// ([`MAX_SYNC_REQUEST_BYTES`]); the response limit is the node's configured one and is
/// applied both when writing and when reading.
#[derive(Debug, Clone)]
pub(crate) struct SyncCodec {
    pub(crate) max_response_bytes: usize,
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_SYNC_REQUEST_BYTES, SyncRequest::NAME).await?;
        SyncRequest::decode(&bytes).map_err(invalid_data)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, self.max_response_bytes, SyncResponse::NAME).await?;
        SyncResponse::decode(&bytes, self.max_response_bytes).map_err(invalid_data)
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
        request.check().map_err(invalid_data)?;
        io.write_all(&request.encode()).await
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
        response.check().map_err(invalid_data)?;
        let bytes = response.encode();
        if bytes.len() > self.max_response_bytes {
            return Err(invalid_data(CodecError::TooLarge {
                what: SyncResponse::NAME,
                len: bytes.len(),
                max: self.max_response_bytes,
            }));
        }
        io.write_all(&bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    fn status() -> SyncResponse {
        SyncResponse::Status {
            genesis: BlockHash::from_bytes([7; 32]),
            head_height: Height(42),
            head_hash: BlockHash::from_bytes([9; 32]),
            total_weight: Weight::from_u64(1_000_000),
        }
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            SyncRequest::Status,
            SyncRequest::Blocks {
                from: Height(1),
                count: MAX_SYNC_ITEMS,
            },
            SyncRequest::Headers {
                from: Height(u64::MAX),
                count: 0,
            },
        ] {
            assert_eq!(SyncRequest::decode(&request.encode()), Ok(request));
        }
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            status(),
            SyncResponse::Blocks(vec![vec![1, 2, 3], Vec::new()]),
            SyncResponse::Headers(vec![vec![0; 100]; MAX_SYNC_ITEMS as usize]),
            SyncResponse::error("not found"),
        ] {
            let bytes = response.encode();
            assert_eq!(bytes.len(), response.encoded_len());
            assert_eq!(SyncResponse::decode(&bytes, 1 << 20), Ok(response));
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = SyncRequest::Status.encode();
        bytes.push(0);
        assert!(matches!(
            SyncRequest::decode(&bytes),
            Err(CodecError::Malformed { .. })
        ));
        let mut bytes = status().encode();
        bytes.push(0);
        assert!(matches!(
            SyncResponse::decode(&bytes, 1 << 20),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_tag_and_truncation_are_refused() {
        assert!(SyncRequest::decode(&[3]).is_err());
        assert!(SyncRequest::decode(&[]).is_err());
        let bytes = status().encode();
        assert!(SyncResponse::decode(&bytes[..bytes.len() - 1], 1 << 20).is_err());
    }

    #[test]
    fn oversize_messages_are_refused() {
        let response = SyncResponse::Blocks(vec![vec![0; 1000]]);
        let bytes = response.encode();
        assert_eq!(
            SyncResponse::decode(&bytes, 1000),
            Err(CodecError::TooLarge {
                what: "sync response",
                len: bytes.len(),
                max: 1000
            })
        );
        let request = [1u8; MAX_SYNC_REQUEST_BYTES + 1];
        assert!(matches!(
            SyncRequest::decode(&request),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn counts_above_the_limit_are_refused() {
        let request = SyncRequest::Blocks {
            from: Height(0),
            count: MAX_SYNC_ITEMS + 1,
        };
        assert!(SyncRequest::decode(&request.encode()).is_err());
        let response = SyncResponse::Headers(vec![Vec::new(); MAX_SYNC_ITEMS as usize + 1]);
        assert!(SyncResponse::decode(&response.encode(), 1 << 20).is_err());
        let long = SyncResponse::Error("x".repeat(MAX_SYNC_ERROR_BYTES + 1));
        assert!(SyncResponse::decode(&long.encode(), 1 << 20).is_err());
    }

    #[test]
    fn error_reason_is_cut_on_a_char_boundary() {
        let SyncResponse::Error(reason) = SyncResponse::error("é".repeat(MAX_SYNC_ERROR_BYTES))
        else {
            panic!("SyncResponse::error builds the Error variant");
        };
        assert!(reason.len() <= MAX_SYNC_ERROR_BYTES);
        assert!(reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn requests_accept_only_matching_responses() {
        let blocks = SyncRequest::Blocks {
            from: Height(5),
            count: 2,
        };
        assert!(blocks.accepts(&SyncResponse::Blocks(vec![vec![1], vec![2]])));
        assert!(!blocks.accepts(&SyncResponse::Blocks(vec![vec![1], vec![2], vec![3]])));
        assert!(!blocks.accepts(&SyncResponse::Headers(Vec::new())));
        assert!(blocks.accepts(&SyncResponse::error("busy")));
        assert!(SyncRequest::Status.accepts(&status()));
        assert!(!SyncRequest::Status.accepts(&SyncResponse::Blocks(Vec::new())));
    }

    #[test]
    fn codec_refuses_oversize_frames_on_read_and_write() {
        use request_response::Codec as _;
        let protocol = StreamProtocol::new("/test/sync/1");
        let mut codec = SyncCodec {
            max_response_bytes: 100,
        };
        let big = SyncResponse::Blocks(vec![vec![0; 200]]);

        let mut sink = Cursor::new(Vec::new());
        let err = block_on(codec.write_response(&protocol, &mut sink, big.clone()))
            .expect_err("a response over the limit is not written");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(sink.get_ref().is_empty());

        let mut source = Cursor::new(big.encode());
        let err = block_on(codec.read_response(&protocol, &mut source))
            .expect_err("a response over the limit is not read");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let small = SyncResponse::Blocks(vec![vec![0; 10]]);
        let mut sink = Cursor::new(Vec::new());
        block_on(codec.write_response(&protocol, &mut sink, small.clone())).expect("fits");
        let mut source = Cursor::new(sink.into_inner());
        let read = block_on(codec.read_response(&protocol, &mut source)).expect("fits");
        assert_eq!(read, small);

        let mut source = Cursor::new(vec![0u8; MAX_SYNC_REQUEST_BYTES * 2]);
        let err = block_on(codec.read_request(&protocol, &mut source))
            .expect_err("a request over the limit is not read");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
