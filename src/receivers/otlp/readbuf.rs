//! A read buffer in front of an accepted connection, so that the HTTP/2 stack under the
//! gRPC receiver reads the socket in large chunks.
//!
//! h2 (under hyper and tonic) reads its connection into a buffer with 8 KiB of free space,
//! so under load the receiver made one `recvfrom` per 4–16 KiB: ~11 syscalls per request of
//! 100 spans, ~13% of weft's CPU on the forwarding path (`perf`, README's Performance
//! section). [`ReadBuffered`] reads up to [`CAPACITY`] bytes per syscall and serves h2's
//! small reads from memory (one memcpy, far cheaper than a syscall). The buffer exists only
//! while data flows: it is allocated on the first read and freed whenever the socket has
//! nothing more to give, so an idle connection costs no buffer memory. Writes pass through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bytes read from the socket per syscall at most.
pub const CAPACITY: usize = 64 * 1024;

/// An accepted TCP connection with a read buffer (see the module docs).
pub struct ReadBuffered {
    inner: tokio::net::TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl ReadBuffered {
    pub fn new(inner: tokio::net::TcpStream) -> ReadBuffered {
        ReadBuffered {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl AsyncRead for ReadBuffered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.buf.len() {
            // Empty: a large read goes straight to the socket; a small one refills.
            if dst.remaining() >= CAPACITY {
                this.release();
                return Pin::new(&mut this.inner).poll_read(cx, dst);
            }
            this.buf.clear();
            this.buf.reserve_exact(CAPACITY);
            let mut rb = ReadBuf::uninit(this.buf.spare_capacity_mut());
            let r = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            // SAFETY: `ReadBuf` guarantees its first `filled().len()` bytes are initialized,
            // and they are the first `n` bytes of the vector's spare capacity.
            unsafe { this.buf.set_len(n) };
            this.pos = 0;
            if n == 0 {
                // Nothing to read now (or EOF, or an error): keep no buffer while idle.
                this.release();
            }
            ready!(r)?;
        }
        let n = dst.remaining().min(this.buf.len() - this.pos);
        dst.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl ReadBuffered {
    fn release(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
    }
}

impl AsyncWrite for ReadBuffered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for ReadBuffered {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Whatever the sizes of the reader's reads, the bytes come out complete and in order,
    /// EOF is seen, and the buffer is gone once the peer has nothing more to send.
    #[tokio::test]
    async fn small_and_large_reads_see_every_byte_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            for chunk in sent.chunks(10_007) {
                s.write_all(chunk).await.unwrap();
            }
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            back
        });
        let (sock, _) = listener.accept().await.unwrap();
        let mut r = ReadBuffered::new(sock);
        let mut got = Vec::new();
        let sizes = [1usize, 9, 8192, 100, CAPACITY, 3, 70_000];
        let mut i = 0;
        loop {
            let mut b = vec![0u8; sizes[i % sizes.len()]];
            i += 1;
            let n = r.read(&mut b).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes reordered or changed");
        assert_eq!(r.buf.capacity(), 0, "buffer kept after EOF");
        r.write_all(b"pong").await.unwrap();
        r.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"pong");
    }
}
