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
//! [`Coalescing`] copies writes into a buffer of up to [`LIMIT`] bytes and answers a flush
//! that follows new writes by *deferring* it: it wakes the task and reports success. The
//! HTTP/2 connection task, polled again, either queues more frames (which join the buffer)
//! or, having nothing more to send, flushes again — and that second flush in a row, with no
//! write between, goes to the socket. A read also writes what is buffered first (a TLS
//! handshake writes, flushes once and then only reads; h2 reads at the start of every
//! poll). A full buffer is written at once. So every byte is on the socket at most one task
//! poll after it was flushed; nothing waits for a timer or for more data. The contract this
//! relies on: a user that flushes and is woken polls the stream again (reads, writes or
//! flushes) — h2 and tokio-rustls, the only users (through [`CoalescingConnector`]), do. Reads, and writes of [`LIMIT`] bytes or more into an empty buffer, pass
//! through. Below TLS (the connector wraps the TCP stream; rustls sits on top) it coalesces
//! TLS records the same way.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held before they are written.
pub const LIMIT: usize = 256 * 1024;

/// A stream whose writes are coalesced (see the module docs).
pub struct Coalescing<T> {
    inner: T,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    done: usize,
    /// Writes arrived since the last flush was deferred.
    fresh: bool,
}

impl<T> Coalescing<T> {
    pub fn new(inner: T) -> Coalescing<T> {
        Coalescing {
            inner,
            buf: Vec::new(),
            done: 0,
            fresh: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalescing<T> {
    /// Writes the whole buffer to the socket (or stays Pending with the rest kept).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.done < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.done += n;
        }
        self.done = 0;
        self.buf.clear();
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
        if this.done < this.buf.len()
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
        if this.buf.len() + total > LIMIT && !this.buf.is_empty() {
            ready!(this.poll_drain(cx))?;
        }
        if total >= LIMIT {
            // Nothing buffered: a write this large gains nothing from a copy.
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        if this.buf.capacity() == 0 {
            // Allocated once, at its full size, and kept for the connection's lifetime.
            this.buf.reserve_exact(LIMIT);
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        this.fresh = true;
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fresh && this.buf.len() < LIMIT {
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
#[derive(Clone)]
pub struct CoalescingConnector(pub HttpConnector);

impl CoalescingConnector {
    /// An HTTP connector set up as tonic's own: any scheme (TLS is tonic's), and `nodelay`.
    pub fn new(nodelay: bool, connect_timeout: Option<std::time::Duration>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(nodelay);
        http.set_connect_timeout(connect_timeout);
        CoalescingConnector(http)
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
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let fut = self.0.call(uri);
        Box::pin(async move {
            let io = fut.await?;
            Ok(TokioIo::new(Coalescing::new(io.into_inner())))
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
}
