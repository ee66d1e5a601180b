//! Kafka's framing: a 4-byte big-endian size, then the request header (its version
//! follows from the API key and version) and body; responses are size, response header
//! and body. Bad input is an error that closes the connection, as a Kafka broker closes
//! it: a size beyond the request limit (`socket.request.max.bytes`), an unknown API key,
//! a body that does not decode.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind},
    protocol::{Decodable, Encodable},
};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Default of `--kafka-max-request-bytes`: Kafka's `socket.request.max.bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the client closed the connection")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("request of {size} bytes is larger than the limit of {limit} bytes (--kafka-max-request-bytes)")]
    TooLarge { size: i64, limit: usize },
    #[error("request too short for a request header ({0} bytes)")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("malformed {api:?} v{version} request: {why}")]
    Malformed { api: ApiKey, version: i16, why: String },
}

/// Reads one request frame. End of stream before a size is [`FrameError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, limit: usize) -> Result<Bytes, FrameError> {
    let mut size = [0u8; 4];
    match r.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > limit {
        return Err(FrameError::TooLarge { size: i64::from(size), limit });
    }
    // Read what the peer actually sends, growing as it arrives: a client announcing a
    // large frame and sending nothing holds no memory.
    let mut buf = BytesMut::with_capacity((size as usize).min(64 * 1024));
    let mut left = size as usize;
    while left > 0 {
        let chunk = left.min(1024 * 1024);
        let start = buf.len();
        buf.resize(start + chunk, 0);
        r.read_exact(&mut buf[start..]).await?;
        left -= chunk;
    }
    Ok(buf.freeze())
}

/// The API key and version of a frame, before its header is decoded.
pub fn peek_api(frame: &Bytes) -> Result<(i16, i16), FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let mut b = &frame[..4];
    Ok((b.get_i16(), b.get_i16()))
}

/// The correlation id of a frame (bytes 4..8), to answer a request whose header does
/// not decode in full (ApiVersions of an unknown version).
pub fn peek_correlation_id(frame: &Bytes) -> i32 {
    let mut b = &frame[4..8];
    b.get_i32()
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes header and body of a frame whose API key and version are supported.
pub fn decode(mut frame: Bytes, api: ApiKey, version: i16) -> Result<Request, FrameError> {
    let malformed = |e: anyhow::Error| FrameError::Malformed { api, version, why: format!("{e:#}") };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).map_err(malformed)?;
    let body = RequestKind::decode(api, &mut frame, version).map_err(malformed)?;
    Ok(Request { api, version, header, body })
}

/// Encodes a response frame: size, response header, body.
pub fn encode(api: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_bounded_and_negative_sizes_refused() {
        let mut two_gib: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        assert!(matches!(read_frame(&mut two_gib, 1024).await, Err(FrameError::TooLarge { .. })));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut negative, 1024).await, Err(FrameError::TooLarge { .. })));
        let mut cut: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(read_frame(&mut cut, 1024).await, Err(FrameError::Io(_))));
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut empty, 1024).await, Err(FrameError::Closed)));
        let mut ok: &[u8] = &[0, 0, 0, 2, 7, 8];
        assert_eq!(read_frame(&mut ok, 1024).await.expect("frame"), Bytes::from_static(&[7, 8]));
    }
}
