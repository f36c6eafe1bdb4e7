//! Write coalescing under the `otlp` exporter's HTTP/2 connection: many DATA frames per
//! `writev` instead of one.
//!
//! h2 writes every DATA frame larger than 256 bytes with its own write and then flushes
//! (`FramedWrite` keeps at most one chained frame). Against a server that advertises
//! HTTP/2's default 16 KiB frame size — Go gRPC servers, Jaeger, the OpenTelemetry
//! Collector — a 4 MiB batch became 256 `writev` calls of 16 KiB; on the forwarding path
//! that was ~20,000 syscalls per second, each paying TCP's per-send work and a wakeup of the
//! peer (`strace`/`perf`, README's Performance section).
//!
//! [`Coalescing`] holds writes — copied into its buffer, or, for bytes of a request body
//! the sender registered in [`SharedBuffers`], by reference — up to [`LIMIT`] bytes, and
//! writes them with one `writev`. It answers a flush that follows new writes by
//! *deferring* it: it wakes the task and reports success. The HTTP/2 connection task,
//! polled again, either queues more frames (which join the buffer) or, having nothing more
//! to send, flushes again — and that second flush in a row, with no write between, goes to
//! the socket. A read also writes what is held first (a TLS handshake writes, flushes once
//! and then only reads; h2 reads at the start of every poll). A full buffer is written at
//! once. So every byte is on the socket at most one task poll after it was flushed;
//! nothing waits for a timer or for more data. The contract this relies on: a user that
//! flushes and is woken polls the stream again (reads, writes or flushes) — h2 and
//! tokio-rustls, the only users (through [`CoalescingConnector`]), do. Reads, and writes
//! of [`LIMIT`] bytes or more with nothing held, pass through. Below TLS (the connector
//! wraps the TCP stream; rustls sits on top) it coalesces TLS records the same way; those
//! are never registered, so they are copied.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held before they are written.
pub const LIMIT: usize = 256 * 1024;

/// Writes at least this long may be held by reference (see [`SharedBuffers`]).
const SHARE_MIN: usize = 1024;

/// The most slices handed to one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 512;

/// Buffers in flight whose bytes a [`Coalescing`] stream holds by reference instead of
/// copying them.
///
/// The `otlp` exporter's request bodies are [`Bytes`] (the requests as they arrived), and
/// h2 writes each DATA frame's payload straight from them. Copying those payloads into
/// the coalescing buffer was ~7% of weft's CPU on the forwarding path (`perf`, README's
/// Performance section). So a sender registers its body here for the time of its call
/// ([`SharedBuffers::register`]); a write whose bytes lie inside a registered buffer is
/// then held as a [`Bytes::slice_ref`] of it — a reference count, not a copy — and goes to
/// the socket with the frame headers around it in one `writev`. The bytes are the same:
/// `Bytes` memory is immutable and stays allocated while a `Bytes` holds it, and the
/// registry holds one for as long as the registration lasts; the stream keeps its own
/// slice until the bytes are written.
#[derive(Clone, Default)]
pub struct SharedBuffers(Arc<Mutex<Vec<(u64, Bytes)>>>);

/// A registration: the buffers leave the registry when it is dropped.
pub struct Registered {
    shared: SharedBuffers,
    id: u64,
}

impl SharedBuffers {
    /// Registers `bufs` (clones of the `Bytes`, no copy) until the returned guard drops.
    pub fn register<'a>(&self, bufs: impl IntoIterator<Item = &'a Bytes>) -> Registered {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.extend(
            bufs.into_iter()
                .filter(|b| b.len() >= SHARE_MIN)
                .map(|b| (id, b.clone())),
        );
        Registered {
            shared: self.clone(),
            id,
        }
    }

    /// The registered buffer that holds all of `data`, if one does.
    fn find(&self, data: &[u8]) -> Option<Bytes> {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.iter()
            .find(|(_, b)| contains(b, data))
            .map(|(_, b)| b.clone())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut v = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|(id, _)| *id != self.id);
    }
}

/// Whether `data` lies inside `buf`'s memory (compared as addresses; no access).
fn contains(buf: &Bytes, data: &[u8]) -> bool {
    let (base, at) = (buf.as_ptr() as usize, data.as_ptr() as usize);
    at >= base && at + data.len() <= base + buf.len()
}

/// Bytes held for the socket, in order.
enum Held {
    /// `buf[start..end]`, copied.
    Copied { start: usize, end: usize },
    /// A slice of a registered buffer.
    Shared(Bytes),
}

impl Held {
    fn bytes<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Held::Copied { start, end } => &buf[*start..*end],
            Held::Shared(b) => b,
        }
    }
}

/// A stream whose writes are coalesced (see the module docs).
pub struct Coalescing<T> {
    inner: T,
    /// The copied bytes; [`Held::Copied`] ranges index it.
    buf: Vec<u8>,
    held: VecDeque<Held>,
    /// Bytes in `held` not yet written.
    pending: usize,
    /// Bytes of the first of `held` already written to `inner`.
    done: usize,
    /// Writes arrived since the last flush was deferred.
    fresh: bool,
    shared: Option<SharedBuffers>,
    /// The registered buffer the last shared write came from: frames of one body arrive
    /// in order, so most lookups end here without taking the registry's lock.
    last: Option<Bytes>,
}

impl<T> Coalescing<T> {
    pub fn new(inner: T) -> Coalescing<T> {
        Coalescing {
            inner,
            buf: Vec::new(),
            held: VecDeque::new(),
            pending: 0,
            done: 0,
            fresh: false,
            shared: None,
            last: None,
        }
    }

    /// A stream that holds writes from `shared`'s buffers by reference.
    pub fn with_shared(inner: T, shared: SharedBuffers) -> Coalescing<T> {
        Coalescing {
            shared: Some(shared),
            ..Coalescing::new(inner)
        }
    }

    /// `data` as a slice of a registered buffer, if it lies in one.
    fn shared_slice(&mut self, data: &[u8]) -> Option<Bytes> {
        if data.len() < SHARE_MIN {
            return None;
        }
        if let Some(b) = &self.last
            && contains(b, data)
        {
            return Some(b.slice_ref(data));
        }
        let b = self.shared.as_ref()?.find(data)?;
        let slice = b.slice_ref(data);
        self.last = Some(b);
        Some(slice)
    }

    /// Holds `data`: by reference when it lies in a registered buffer, else copied.
    fn hold(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(b) = self.shared_slice(data) {
            self.held.push_back(Held::Shared(b));
        } else {
            if self.buf.capacity() == 0 {
                // Allocated once, at its full size, and kept for the connection's lifetime.
                self.buf.reserve_exact(LIMIT);
            }
            let start = self.buf.len();
            self.buf.extend_from_slice(data);
            let end = self.buf.len();
            match self.held.back_mut() {
                Some(Held::Copied { end: e, .. }) if *e == start => *e = end,
                _ => self.held.push_back(Held::Copied { start, end }),
            }
        }
        self.pending += data.len();
    }
}

impl<T: AsyncWrite + Unpin> Coalescing<T> {
    /// Writes everything held to the socket (or stays Pending with the rest kept).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending > 0 {
            let n = {
                let mut slices = Vec::with_capacity(self.held.len().min(MAX_IOVECS));
                for (i, h) in self.held.iter().take(MAX_IOVECS).enumerate() {
                    let b = h.bytes(&self.buf);
                    slices.push(io::IoSlice::new(if i == 0 { &b[self.done..] } else { b }));
                }
                ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending -= n;
            // Past the fully written ones; `done` into the one a short write ended in.
            let mut n = n + self.done;
            self.done = 0;
            while let Some(h) = self.held.front() {
                let len = h.bytes(&self.buf).len();
                if n < len {
                    self.done = n;
                    break;
                }
                n -= len;
                self.held.pop_front();
            }
        }
        self.done = 0;
        self.held.clear();
        self.buf.clear();
        self.last = None;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalescing<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A deferred flush completes here at the latest: whoever waits for the peer's
        // answer reads (h2's connection task, a TLS handshake), and the request must be on
        // the socket before an answer can come. A socket that takes no more bytes now does
        // not hold up the read; the rest goes with the next read, write or flush.
        if this.pending > 0
            && let Poll::Ready(Err(e)) = this.poll_drain(cx)
        {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, dst)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalescing<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.pending + total > LIMIT && this.pending > 0 {
            ready!(this.poll_drain(cx))?;
        }
        if total >= LIMIT {
            // Nothing held: a write this large gains nothing from being held.
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            this.hold(b);
        }
        this.fresh = true;
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fresh && this.pending < LIMIT {
            // Defer: the task runs again at once and either adds frames or flushes again.
            this.fresh = false;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        this.fresh = false;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// hyper's HTTP connector with [`Coalescing`] around each TCP connection: the connector
/// the `otlp` exporter hands to tonic (TLS, when configured, is layered on top by tonic).
/// Its streams hold writes from its [`SharedBuffers`] by reference.
#[derive(Clone)]
pub struct CoalescingConnector {
    http: HttpConnector,
    shared: SharedBuffers,
}

impl CoalescingConnector {
    /// An HTTP connector set up as tonic's own: any scheme (TLS is tonic's), and `nodelay`.
    pub fn new(nodelay: bool, connect_timeout: Option<std::time::Duration>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(nodelay);
        http.set_connect_timeout(connect_timeout);
        CoalescingConnector {
            http,
            shared: SharedBuffers::default(),
        }
    }

    /// The registry whose buffers this connector's streams hold by reference: a sender
    /// registers its request bodies there (see [`SharedBuffers`]).
    pub fn shared(&self) -> SharedBuffers {
        self.shared.clone()
    }
}

/// The connection type of [`CoalescingConnector`].
pub type CoalescedTcp = TokioIo<Coalescing<tokio::net::TcpStream>>;

impl Connection for Coalescing<tokio::net::TcpStream> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

impl tower::Service<http::Uri> for CoalescingConnector {
    type Response = CoalescedTcp;
    type Error = <HttpConnector as tower::Service<http::Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<CoalescedTcp, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let fut = self.http.call(uri);
        let shared = self.shared.clone();
        Box::pin(async move {
            let io = fut.await?;
            Ok(TokioIo::new(Coalescing::with_shared(
                io.into_inner(),
                shared,
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes written in pieces of every size — small ones, ones that overflow the buffer,
    /// ones larger than it — arrive complete and in order through a pipe that takes only
    /// 4 KiB at a time (so draining the buffer meets a full peer and resumes).
    #[tokio::test]
    async fn every_byte_arrives_in_order_through_a_narrow_pipe() {
        let (near, mut far) = tokio::io::duplex(4096);
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
        let expect = data.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut w = Coalescing::new(near);
        let sizes = [9usize, 16_384, 1, LIMIT, 300, LIMIT + 1, 70_000, 5];
        let (mut at, mut i) = (0, 0);
        while at < data.len() {
            let n = sizes[i % sizes.len()].min(data.len() - at);
            w.write_all(&data[at..at + n]).await.unwrap();
            at += n;
            i += 1;
            if i % 3 == 0 {
                w.flush().await.unwrap();
            }
        }
        w.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), expect);
    }

    /// A deferred flush is completed by the flush that follows it with no write between,
    /// or by a read, so the peer sees the bytes without the writer closing the stream.
    #[tokio::test]
    async fn second_flush_puts_buffered_bytes_on_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let mut w = Coalescing::new(sock);
        w.write_all(b"hello").await.unwrap();
        w.flush().await.unwrap(); // deferred: still buffered
        assert_eq!(w.buf.len(), 5);
        w.flush().await.unwrap(); // written
        assert!(w.buf.is_empty());
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        // Write, flush once (deferred), then wait for the answer: the read sends the
        // request, as a TLS handshake needs.
        w.write_all(b"ping").await.unwrap();
        w.flush().await.unwrap();
        let answer = tokio::spawn(async move {
            let mut got = [0u8; 4];
            peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            peer.write_all(b"pong").await.unwrap();
            peer
        });
        let mut back = [0u8; 4];
        w.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
        answer.await.unwrap();
    }

    /// HTTP/2-like DATA frames — a 9-byte header from the writer's own memory, then a
    /// payload that is a slice of a registered body — are held without copying the
    /// payloads, and arrive complete and in order through a narrow pipe.
    #[tokio::test]
    async fn registered_payloads_are_held_by_reference_and_arrive_in_order() {
        let (near, mut far) = tokio::io::duplex(4096);
        let body = Bytes::from(
            (0..1_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        let shared = SharedBuffers::default();
        let registered = shared.register([&body]);
        let mut expect = Vec::new();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut w = Coalescing::with_shared(near, shared.clone());
        let (mut at, mut frame) = (0, 0u32);
        while at < body.len() {
            let n = [16_384, 5_000, 300, 16_384, 1_024][frame as usize % 5].min(body.len() - at);
            let mut header = [0u8; 9];
            header[..4].copy_from_slice(&frame.to_be_bytes());
            let payload = &body[at..at + n];
            let n = w
                .write_vectored(&[io::IoSlice::new(&header), io::IoSlice::new(payload)])
                .await
                .unwrap();
            assert_eq!(n, 9 + payload.len(), "a held write takes all of it");
            expect.extend_from_slice(&header);
            expect.extend_from_slice(payload);
            at += n;
            frame += 1;
            if frame == 4 {
                // Four frames held: only the headers and the short payload were copied.
                assert_eq!(w.buf.len(), 4 * 9 + 300);
                assert_eq!(w.pending, 4 * 9 + 16_384 + 5_000 + 300 + 16_384);
            }
            if frame % 7 == 0 {
                w.flush().await.unwrap();
            }
        }
        // The registration may end before the bytes are written: the stream holds its
        // own slices.
        drop(registered);
        drop(body);
        w.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), expect);
        assert!(shared.0.lock().unwrap().is_empty());
    }

    /// Bytes that merely equal a registered buffer's, from other memory, are copied; so
    /// are bytes that were never registered.
    #[tokio::test]
    async fn only_writes_from_registered_memory_are_shared() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let body = Bytes::from(vec![7u8; 4096]);
        let twin = vec![7u8; 4096];
        let shared = SharedBuffers::default();
        let mut w = Coalescing::with_shared(near, shared.clone());
        {
            let _r = shared.register([&body]);
            w.write_all(&twin).await.unwrap();
            assert_eq!(w.buf.len(), 4096, "equal bytes elsewhere are copied");
            w.write_all(&body[1..4000]).await.unwrap();
            assert_eq!(w.buf.len(), 4096, "a registered slice is not");
        }
        w.flush().await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.pending, 0);
        let other = Bytes::from(vec![9u8; 2048]);
        w.write_all(&other).await.unwrap();
        assert_eq!(w.buf.len(), 2048, "never registered");
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 4096 + 3999 + 2048);
        assert!(got[..8095].iter().all(|b| *b == 7) && got[8095..].iter().all(|b| *b == 9));
    }
}
