//! Decoding OTLP request bodies (protobuf or JSON; identity, gzip or zstd) with a size
//! limit that also applies after decompression, and the one table mapping errors to HTTP
//! and gRPC statuses (after the Collector's otlpreceiver `errors.go` and the OTLP spec).

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use crate::data::{Batch, Signal};
use crate::pipeline::ConsumeError;

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl From<ConsumeError> for ReceiveError {
    fn from(e: ConsumeError) -> Self {
        match e {
            ConsumeError::Refused {
                reason,
                retry_after,
            } => ReceiveError::Unavailable {
                reason,
                retry_after,
            },
            ConsumeError::Invalid(m) => ReceiveError::BadRequest(m),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn from_content_type(ct: Option<&str>) -> Result<Encoding, ReceiveError> {
        let ct = ct.unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            "" => Err(ReceiveError::UnsupportedMediaType(
                "missing Content-Type: use application/x-protobuf or application/json".into(),
            )),
            other => Err(ReceiveError::UnsupportedMediaType(format!(
                "unsupported Content-Type {other:?}: use application/x-protobuf or application/json"
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decompresses per `Content-Encoding`, refusing output larger than `limit` bytes.
/// An uncompressed body is borrowed, not copied.
pub fn decompress<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    limit: u64,
) -> Result<std::borrow::Cow<'a, [u8]>, ReceiveError> {
    let enc = encoding.unwrap_or("").trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let res = match enc.as_str() {
        "" | "identity" => return Ok(std::borrow::Cow::Borrowed(body)),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body)
            .take(limit + 1)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(body)
            .take(limit + 1)
            .read_to_end(&mut out),
        "zstd" => match zstd::stream::read::Decoder::new(body) {
            Ok(d) => d.take(limit + 1).read_to_end(&mut out),
            Err(e) => Err(e),
        },
        other => {
            return Err(ReceiveError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?}: use gzip, zstd or none"
            )));
        }
    };
    match res {
        Ok(_) if out.len() as u64 > limit => Err(ReceiveError::TooLarge(format!(
            "decompressed body exceeds the limit of {limit} bytes"
        ))),
        Ok(_) => Ok(std::borrow::Cow::Owned(out)),
        Err(e) => Err(ReceiveError::BadRequest(format!("invalid {enc} body: {e}"))),
    }
}

/// Decodes and validates an export request body.
pub fn decode(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<Batch, ReceiveError> {
    let batch = match encoding {
        Encoding::Protobuf => Batch::decode_proto(signal, body),
        Encoding::Json => Batch::decode_json(signal, body),
    }
    .map_err(|e| ReceiveError::BadRequest(format!("cannot decode {signal} request: {e}")))?;
    batch
        .validate_ids()
        .map_err(|e| ReceiveError::BadRequest(format!("invalid {signal} request: {e}")))?;
    Ok(batch)
}

/// A protobuf request body: kept as bytes (scanned for well-formedness, ids and counts;
/// see `crate::data::raw`) when every pipeline of the signal only forwards, decoded and
/// validated otherwise.
pub fn accept_proto(signal: Signal, body: Bytes, raw: bool) -> Result<Batch, ReceiveError> {
    if !raw {
        return decode(signal, Encoding::Protobuf, &body);
    }
    Batch::from_proto_bytes(signal, body).map_err(|e| match e {
        crate::data::DecodeError::Wire(w @ crate::data::wire::WireError::IdLength { .. }) => {
            ReceiveError::BadRequest(format!("invalid {signal} request: {w}"))
        }
        e => ReceiveError::BadRequest(format!("cannot decode {signal} request: {e}")),
    })
}

/// HTTP status and gRPC code for an error.
pub fn status_for(e: &ReceiveError) -> (u16, tonic::Code) {
    match e {
        ReceiveError::BadRequest(_) => (400, tonic::Code::InvalidArgument),
        ReceiveError::TooLarge(_) => (413, tonic::Code::ResourceExhausted),
        ReceiveError::UnsupportedMediaType(_) => (415, tonic::Code::InvalidArgument),
        ReceiveError::Unavailable { .. } => (503, tonic::Code::Unavailable),
    }
}

/// `google.rpc.Status`, the error body OTLP/HTTP specifies.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip)]
    pub details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.rpc.Status` with a `RetryInfo` detail when a delay is given.
pub fn rpc_status(code: tonic::Code, message: &str, retry_after: Option<Duration>) -> RpcStatus {
    let details = retry_after
        .map(|d| {
            vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration {
                        seconds: d.as_secs() as i64,
                        nanos: d.subsec_nanos() as i32,
                    }),
                }
                .encode_to_vec(),
            }]
        })
        .unwrap_or_default();
    RpcStatus {
        code: code as i32,
        message: message.to_string(),
        details,
    }
}

/// The gRPC status for an error, with RetryInfo for retryable refusals.
pub fn grpc_status(e: &ReceiveError) -> tonic::Status {
    let (_, code) = status_for(e);
    let retry_after = match e {
        ReceiveError::Unavailable { retry_after, .. } => {
            Some(retry_after.unwrap_or(Duration::from_secs(1)))
        }
        _ => None,
    };
    let st = rpc_status(code, &e.to_string(), retry_after);
    tonic::Status::with_details(code, e.to_string(), st.encode_to_vec().into())
}

/// Parses the RetryInfo delay out of a gRPC status (used by the otlp exporter).
pub fn retry_delay_of(status: &tonic::Status) -> Option<Duration> {
    let st = RpcStatus::decode(status.details()).ok()?;
    st.details
        .iter()
        .find(|d| d.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|d| RetryInfo::decode(d.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_content_type(Some("application/x-protobuf")).unwrap(),
            Encoding::Protobuf
        );
        assert!(matches!(
            Encoding::from_content_type(Some("text/plain")),
            Err(ReceiveError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn decompression_limits_and_errors() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(Some("gzip"), &gz, 20_000).unwrap().len(), 10_000);
        assert!(matches!(
            decompress(Some("gzip"), &gz, 1_000),
            Err(ReceiveError::TooLarge(_))
        ));
        assert!(matches!(
            decompress(Some("gzip"), b"not gzip", 1_000),
            Err(ReceiveError::BadRequest(_))
        ));
        let z = zstd::encode_all(&b"hello"[..], 1).unwrap();
        assert_eq!(&*decompress(Some("zstd"), &z, 100).unwrap(), b"hello");
        assert!(matches!(
            decompress(Some("br"), b"", 100),
            Err(ReceiveError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn retry_info_round_trips() {
        let st = grpc_status(&ReceiveError::Unavailable {
            reason: "full".into(),
            retry_after: Some(Duration::from_secs(3)),
        });
        assert_eq!(st.code(), tonic::Code::Unavailable);
        assert_eq!(retry_delay_of(&st), Some(Duration::from_secs(3)));
    }

    #[test]
    fn truncated_protobuf_is_bad_request() {
        let b = Batch::Traces(vec![Default::default()]);
        let mut bytes = b.encode_proto();
        bytes.extend_from_slice(&[0x0a, 0x05, 0x01]);
        assert!(matches!(
            decode(Signal::Traces, Encoding::Protobuf, &bytes),
            Err(ReceiveError::BadRequest(_))
        ));
    }
}

/// A gRPC codec that passes bytes through untouched: for clients that send pre-encoded
/// export requests (the load generator) and for tests that send malformed ones.
#[derive(Clone, Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A pass-through gRPC codec over [`Bytes`]. Decoding hands the message body over as is
/// (after tonic's decompression and size limit, in an exactly sized buffer): the receiver
/// scans it instead of decoding it. Encoding writes a sequence of chunks: the
/// otlp exporter sends a raw batch's requests without first concatenating them, and the
/// receiver answers with no chunks (an empty `Export*ServiceResponse` is zero bytes).
#[derive(Clone, Default)]
pub struct BytesCodec;

pub struct BytesEncoder;
pub struct BytesDecoder;

impl tonic::codec::Encoder for BytesEncoder {
    type Item = Vec<Bytes>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<Bytes>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        // One allocation of the whole size: growing tonic's buffer by doubling copied the
        // bytes written so far again at every step (5% of weft's CPU on the fast path).
        buf.reserve(item.iter().map(Bytes::len).sum());
        for chunk in &item {
            buf.put_slice(chunk);
        }
        Ok(())
    }
}

impl tonic::codec::Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf;
        // Copied into an allocation of exactly the message's size: a slice of tonic's
        // receive buffer would keep that whole buffer (grown by doubling, up to twice the
        // message) alive for as long as the batch waits in a queue, and a queue bounded in
        // bytes would hold up to twice its bound. One memcpy per request is the price.
        let n = buf.remaining();
        let mut v = Vec::with_capacity(n);
        while buf.has_remaining() {
            let chunk = buf.chunk();
            v.extend_from_slice(chunk);
            let len = chunk.len();
            buf.advance(len);
        }
        Ok(Some(Bytes::from(v)))
    }
}

impl tonic::codec::Codec for BytesCodec {
    type Encode = Vec<Bytes>;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
}
