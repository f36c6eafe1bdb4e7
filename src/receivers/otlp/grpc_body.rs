//! Uncompressed unary gRPC requests read straight from the HTTP/2 body into one exactly
//! sized buffer, and the answer written without tonic's codec: the receiver's path for
//! requests without `grpc-encoding` (compressed ones still go through tonic, which
//! decompresses).
//!
//! tonic's server copies each request from h2's frames into a growing buffer (reallocating
//! as it doubles) and hands the pass-through codec a view of it, which the receiver then
//! copied once more into an exactly sized buffer (so a queued batch does not pin twice its
//! size). Here the 5-byte gRPC prefix gives the message length up front, so the frames are
//! copied once, into the final buffer. That length is the client's claim, so at most
//! `UPFRONT` of it is reserved before the bytes arrive; a larger message's buffer grows
//! by doubling up to exactly its length.
//!
//! Errors are what tonic answers for the same input: a message over the size limit is
//! RESOURCE_EXHAUSTED, a compressed-flag message without `grpc-encoding`, a missing or
//! truncated message or a second message in a unary call is INTERNAL, and a body that
//! fails in transport maps as tonic maps it.

use std::convert::Infallible;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body::{Body, Frame};
use tonic::Status;

/// Reads the one message of an uncompressed unary request body (at most `limit` bytes).
pub async fn read_message<B>(body: B, limit: usize) -> Result<Bytes, Status>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    let mut body = pin!(body);
    let mut head = [0u8; 5];
    let mut head_len = 0;
    let mut msg: Vec<u8> = Vec::new();
    let mut want = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| Status::from_error(e.into()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // request trailers: nothing in them for us
        };
        while data.has_remaining() {
            if head_len < 5 {
                let n = (5 - head_len).min(data.remaining());
                head[head_len..head_len + n].copy_from_slice(&data[..n]);
                data.advance(n);
                head_len += n;
                if head_len == 5 {
                    if head[0] != 0 {
                        return Err(Status::internal(
                            "compressed message flag set, but no grpc-encoding header",
                        ));
                    }
                    want = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    if want > limit {
                        return Err(Status::resource_exhausted(format!(
                            "decoded message length too large: found {want} bytes, the limit is: {limit} bytes"
                        )));
                    }
                    msg = Vec::with_capacity(want.min(UPFRONT));
                }
                continue;
            }
            let n = (want - msg.len()).min(data.remaining());
            if n == 0 {
                return Err(Status::internal("more than one message in a unary request"));
            }
            grow(&mut msg, n, want);
            msg.extend_from_slice(&data[..n]);
            data.advance(n);
        }
    }
    if head_len == 0 {
        return Err(Status::internal("missing request message"));
    }
    if head_len < 5 || msg.len() < want {
        return Err(Status::internal(
            "request body ended inside the gRPC message",
        ));
    }
    Ok(Bytes::from(msg))
}

/// How much of a declared message length is reserved before any of it has arrived. The
/// length prefix is the client's claim: reserving all of it up front (up to the receive
/// limit, 4 MiB by default) for every open stream would let clients that declare large
/// messages and send nothing make weft reserve memory it never fills. Messages up to this
/// size (OTLP requests are typically tens of KiB) still get their exact buffer at once.
const UPFRONT: usize = 256 * 1024;

/// Makes room for `n` more bytes of a message of `want` bytes: doubling, never beyond
/// `want`, so a message larger than `UPFRONT` is copied O(log) times and its final
/// buffer is exactly sized.
fn grow(msg: &mut Vec<u8>, n: usize, want: usize) {
    if msg.capacity() - msg.len() >= n {
        return;
    }
    let target = (msg.capacity() * 2).max(msg.len() + n).min(want);
    msg.reserve_exact(target - msg.len());
}

/// The answer to a successful export: an empty response message (an
/// `Export*ServiceResponse` without partial success encodes to zero bytes) and status OK
/// in the trailers.
pub fn ok_response() -> http::Response<tonic::body::Body> {
    let mut r = http::Response::new(tonic::body::Body::new(OkBody(0)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static("gzip,zstd"),
    );
    r
}

/// The success body: the empty message's 5-byte frame, then the OK trailers.
struct OkBody(u8);

impl Body for OkBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let step = self.0;
        self.0 = step.saturating_add(1);
        Poll::Ready(match step {
            0 => Some(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])))),
            1 => {
                let mut t = HeaderMap::new();
                t.insert("grpc-status", HeaderValue::from_static("0"));
                Some(Ok(Frame::trailers(t)))
            }
            _ => None,
        })
    }
    fn is_end_stream(&self) -> bool {
        self.0 >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_is_reserved_only_as_data_arrives_and_ends_exact() {
        let want = 4 * 1024 * 1024 + 7;
        let mut msg: Vec<u8> = Vec::with_capacity(want.min(UPFRONT));
        assert!(
            msg.capacity() < 2 * UPFRONT,
            "nothing beyond UPFRONT before data"
        );
        let mut grows = 0;
        while msg.len() < want {
            let n = (want - msg.len()).min(16 * 1024);
            let cap = msg.capacity();
            grow(&mut msg, n, want);
            grows += usize::from(msg.capacity() != cap);
            assert!(msg.capacity() <= want.max(UPFRONT));
            msg.extend_from_slice(&vec![1u8; n]);
        }
        assert_eq!(msg.len(), want);
        assert_eq!(msg.capacity(), want, "the final buffer is exactly sized");
        assert!(grows <= 6, "doubling: {grows} regrowths");
        // A small message keeps its one exact buffer.
        let mut small: Vec<u8> = Vec::with_capacity(1000usize.min(UPFRONT));
        let cap = small.capacity();
        grow(&mut small, 1000, 1000);
        assert_eq!(small.capacity(), cap);
    }

    /// A body of the given DATA frames.
    struct Frames(std::collections::VecDeque<Bytes>);
    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn frames(bytes: &[u8], cuts: &[usize]) -> Frames {
        let mut v = std::collections::VecDeque::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            v.push_back(Bytes::copy_from_slice(&bytes[at..c]));
            at = c;
        }
        Frames(v)
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend((msg.len() as u32).to_be_bytes());
        v.extend(msg);
        v
    }

    #[tokio::test]
    async fn a_message_split_anywhere_across_frames_reads_whole() {
        let msg: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let body = framed(&msg);
        for cuts in [
            vec![],
            vec![1],
            vec![3, 5],
            vec![5, 6, 900],
            vec![2, 4, 5, 500, 1004],
        ] {
            let got = read_message(frames(&body, &cuts), 4096).await.unwrap();
            assert_eq!(&got[..], &msg[..], "cuts {cuts:?}");
            assert_eq!(got.len(), msg.len());
        }
        let empty = read_message(frames(&framed(&[]), &[]), 10).await.unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn bad_bodies_get_the_status_tonic_gives() {
        let code = |r: Result<Bytes, Status>| r.unwrap_err().code();
        let msg = framed(&[7; 100]);
        use tonic::Code;
        assert_eq!(
            code(read_message(frames(&msg, &[]), 99).await),
            Code::ResourceExhausted
        );
        assert_eq!(
            code(read_message(frames(&msg[..60], &[]), 999).await),
            Code::Internal
        );
        assert_eq!(
            code(read_message(frames(&msg[..3], &[]), 999).await),
            Code::Internal
        );
        assert_eq!(
            code(read_message(Frames(Default::default()), 999).await),
            Code::Internal
        );
        let mut two = msg.clone();
        two.extend(&msg);
        assert_eq!(
            code(read_message(frames(&two, &[105]), 999).await),
            Code::Internal
        );
        let mut flagged = msg.clone();
        flagged[0] = 1;
        assert_eq!(
            code(read_message(frames(&flagged, &[]), 999).await),
            Code::Internal
        );
    }
}
