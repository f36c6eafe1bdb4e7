//! A gRPC unary call whose request message is written as the byte chunks it already is,
//! or gzipped by weft's own encoder: the `otlp` exporter's send path for `compression:
//! none` and `gzip` (its default, as in the Collector).
//!
//! tonic's client encodes every message into one buffer before framing it, so a raw batch
//! (the requests as they arrived, [`crate::data::raw`]) was copied once more on its way out,
//! into a fresh multi-megabyte allocation per send (4–8% of weft's CPU on the forwarding
//! path, plus the page faults of that buffer). Here the HTTP/2 request body yields the
//! 5-byte gRPC message prefix and then each chunk as its own DATA payload; h2 sends them
//! from the shared [`Bytes`] without copying.
//!
//! With gzip the chunks are joined and compressed by [`crate::exporters::deflate`] (or by
//! zlib, at a `compression_params.level` of 2–9) into one message with the compressed
//! flag and `grpc-encoding: gzip`. tonic compresses at flate2's level 6 and offers no other
//! level: with it, forwarding the benchmark's spans cost ~10× the CPU (README,
//! Performance). Compressing chunk by chunk, to save the join, was tried and measured:
//! each request became its own block with its own Huffman tables, +15% CPU.
//!
//! The answer is read as tonic reads it: `grpc-status` (and `grpc-message`,
//! `grpc-status-details-bin`) from the trailers, or from the headers of a trailers-only
//! response; without either, the HTTP status maps to a gRPC code per gRPC's
//! `http-grpc-status-mapping.md`. Transport failures keep their source error, so the
//! exporter classifies them as retryable exactly as it does tonic's. One difference from
//! tonic, on purpose: an OK status without a response message (a trailers-only OK) is
//! success here, where tonic reports INTERNAL "Missing response message"; the server said
//! it took the data, and OTLP's response carries nothing weft needs.
//! (tests/otlp_exporter.rs runs both paths against the same servers.)

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, TE};
use http_body::{Body, Frame, SizeHint};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use crate::exporters::coalesce::SharedBuffers;
use crate::exporters::deflate::Shape;
use crate::exporters::http_client::GzipLevel;

/// A request body of known chunks: the gRPC prefix, then the message's chunks.
struct Chunks {
    chunks: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.next();
        if let Some(c) = &next {
            self.remaining -= c.len() as u64;
        }
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }
    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Buffers kept between gzipped calls (the joined message, the compressed one), so a
/// multi-megabyte message is not joined and compressed into freshly faulted pages each time
/// (the kernel's page clearing was ~2% of weft's CPU forwarding with gzip, `perf`). Process-wide and
/// small: at most [`MAX_SPARE`] buffers, none over [`MAX_SPARE_BYTES`].
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
const MAX_SPARE: usize = 4;
const MAX_SPARE_BYTES: usize = 64 << 20;

/// An empty buffer, kept from an earlier call when there is one.
fn spare() -> Vec<u8> {
    SPARE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
        .unwrap_or_default()
}

/// Keeps `buf` for a later call, if there is room.
fn keep(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_SPARE_BYTES {
        return;
    }
    buf.clear();
    let mut spare = SPARE.lock().unwrap_or_else(|p| p.into_inner());
    if spare.len() < MAX_SPARE {
        spare.push(buf);
    }
}

/// Takes the compressed message's buffer back when dropped, if nothing else holds it.
struct Reclaim(Option<Bytes>);

impl Drop for Reclaim {
    fn drop(&mut self) {
        if let Some(Ok(b)) = self.0.take().map(Bytes::try_into_mut) {
            keep(b.into());
        }
    }
}

/// Calls `path` on `channel` with the message made of `message` (chunks concatenated),
/// gzipped at that level when `gzip` is set, and the given request headers (metadata).
/// The message's chunks are registered in `shared` (the registry of the channel's
/// [`CoalescingConnector`](super::coalesce::CoalescingConnector); `None` under TLS) for
/// the call, so the connection writes them without copying them.
/// The response message is not needed (OTLP's `Export*ServiceResponse` partial-success
/// details are only informational).
pub async fn call(
    channel: Channel,
    shared: Option<&SharedBuffers>,
    path: &'static str,
    mut headers: http::HeaderMap,
    message: Vec<Bytes>,
    gzip: Option<GzipLevel>,
) -> Result<(), Status> {
    // Declared before the request, so dropped after it; a buffer still held elsewhere
    // (a cancelled call) is not taken back.
    let mut reclaim = Reclaim(None);
    let message = if let Some(level) = gzip {
        headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
        let mut out = spare();
        match &message[..] {
            // An OTLP message: protobuf, so the same-distance resync.
            [one] => level.gzip_shaped_into(one, &mut out, Shape::Proto),
            chunks => {
                let mut joined = spare();
                for c in chunks {
                    joined.extend_from_slice(c);
                }
                level.gzip_shaped_into(&joined, &mut out, Shape::Proto);
                keep(joined);
            }
        }
        let out = Bytes::from(out);
        reclaim.0 = Some(out.clone());
        vec![out]
    } else {
        message
    };
    let len: usize = message.iter().map(Bytes::len).sum();
    let len32 = u32::try_from(len)
        .map_err(|_| Status::resource_exhausted(format!("message of {len} bytes exceeds 4 GiB")))?;
    let mut prefix = [0u8; 5];
    prefix[0] = u8::from(gzip.is_some());
    prefix[1..].copy_from_slice(&len32.to_be_bytes());
    // For the call's lifetime; a frame written after it (a cancelled call) is copied.
    let _registered = shared.map(|s| s.register(&message));
    let mut chunks = Vec::with_capacity(message.len() + 1);
    chunks.push(Bytes::copy_from_slice(&prefix));
    chunks.extend(message.into_iter().filter(|c| !c.is_empty()));
    let body = Chunks {
        chunks: chunks.into_iter(),
        remaining: len as u64 + 5,
    };
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let mut req = http::Request::new(tonic::body::Body::new(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::from_static(path);
    *req.version_mut() = http::Version::HTTP_2;
    *req.headers_mut() = headers;
    let transport = |e: tonic::transport::Error| Status::from_error(Box::new(e));
    let mut channel = channel;
    let resp = channel
        .ready()
        .await
        .map_err(transport)?
        .call(req)
        .await
        .map_err(transport)?;
    let (parts, mut body) = resp.into_parts();
    // A trailers-only response carries the status in its headers.
    if let Some(st) = Status::from_header_map(&parts.headers) {
        return ok_or(st);
    }
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame?.into_trailers() {
            Ok(t) => trailers = Some(t),
            Err(_data) => {} // the response message: not needed
        }
    }
    if let Some(st) = trailers.as_ref().and_then(Status::from_header_map) {
        return ok_or(st);
    }
    let code = match parts.status {
        http::StatusCode::BAD_REQUEST => Code::Internal,
        http::StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        http::StatusCode::FORBIDDEN => Code::PermissionDenied,
        http::StatusCode::NOT_FOUND => Code::Unimplemented,
        http::StatusCode::TOO_MANY_REQUESTS
        | http::StatusCode::BAD_GATEWAY
        | http::StatusCode::SERVICE_UNAVAILABLE
        | http::StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        // 200 without grpc-status: the stream ended without a final status.
        http::StatusCode::OK => Code::Unknown,
        _ => Code::Unknown,
    };
    Err(Status::new(
        code,
        format!("HTTP {} without grpc-status", parts.status.as_u16()),
    ))
}

fn ok_or(st: Status) -> Result<(), Status> {
    if st.code() == Code::Ok {
        Ok(())
    } else {
        Err(st)
    }
}
